//! Metrics and health of `musubi-relay serve` (`--metrics ADDR`, `metrics_listen`).
//!
//! - [`Metrics`]: plain atomic counters shared by every connection task (behind an
//!   `Arc`). The serve loop adds to them where it learns what happened: a handshake
//!   failed, a connection was refused (with its close code), a session ended (with its
//!   outcome, documents and duration). [`Metered`] wraps a session while it is driven and
//!   counts what crosses it: frame bytes both ways, and the `doc_rejected` and `error`
//!   codes the relay sends.
//! - [`serve_http`]: a small hand-written HTTP/1.1 listener answering `GET /metrics`
//!   (Prometheus text format 0.0.4, [`Metrics::render`]) and `GET /healthz` (200 `ok`
//!   when the store answers, 503 otherwise). One request per connection, at most
//!   [`MAX_REQUEST_BYTES`] of it read, [`REQUEST_TIMEOUT`] to send it, at most
//!   [`MAX_HTTP_CONNECTIONS`] connections at once; a malformed request gets 400, another
//!   method 405, another path 404.
//!
//! Labels are codes and fixed words only: no device id or name, no office number, nothing
//! from a document. The listener has no authentication: bind it to loopback or an
//! administration network (docs/threat-model.md).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use musubi_engine::net::quic::{FrameSession, close};
use musubi_engine::sync::{Frame, SyncStorage};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Most bytes of a request read (request line and headers); more is a 400.
pub const MAX_REQUEST_BYTES: usize = 4096;
/// Time a client has to send its whole request; a slower one is disconnected.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the response.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP connections served at once; more are closed at once.
pub const MAX_HTTP_CONNECTIONS: usize = 8;
/// Frames the relay sends up to this size are decoded to read their code (`doc_rejected`
/// and `error` frames are a few hundred bytes; document frames are not inspected).
const INSPECT_FRAME_BYTES: usize = 16 * 1024;

/// Codes of the `error` frames a relay session sends (docs/protocol.md); any other is
/// counted as `other`.
pub const ERROR_CODES: &[&str] = &["protocol", "version", "actor", "storage", "busy", "limit"];
/// How a session that got a session slot ended.
pub const SESSION_OUTCOMES: &[&str] = &["finished", "failed", "access_lost", "deadline"];
/// Why a connection did not become an authenticated device connection.
pub const HANDSHAKE_FAILURES: &[&str] = &["tls", "timeout", "limit"];
/// The close codes (`net::quic::close`) a connection is refused with before a session;
/// any other is counted as `other`.
pub const REFUSAL_CODES: &[&str] = &[
    "unknown_device",
    "revoked",
    "wrong_office",
    "busy",
    "internal",
];
/// Upper bounds (seconds) of the session duration histogram's buckets.
pub const DURATION_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0];

/// How a session that held a session slot ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// Both sides were caught up.
    Finished = 0,
    /// The session or its connection failed (including no sync stream, a store failure).
    Failed = 1,
    /// The device was revoked (or its office dropped) while connected.
    AccessLost = 2,
    /// The session reached its deadline.
    Deadline = 3,
}

/// A counter per code of a fixed list, plus `other` for codes from outside it.
struct CodeCounter {
    codes: &'static [&'static str],
    /// One per code, then `other` if the list is open.
    counts: Vec<AtomicU64>,
}

impl CodeCounter {
    /// Counts `codes` and, for any other code, `other`.
    fn open(codes: &'static [&'static str]) -> CodeCounter {
        CodeCounter {
            codes,
            counts: (0..=codes.len()).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Counts `codes` only (callers pass nothing else).
    fn closed(codes: &'static [&'static str]) -> CodeCounter {
        CodeCounter {
            codes,
            counts: (0..codes.len()).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn add(&self, code: &str) {
        let i = self
            .codes
            .iter()
            .position(|c| *c == code)
            .unwrap_or(self.codes.len());
        self.add_index(i);
    }

    fn add_index(&self, i: usize) {
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn render(&self, out: &mut String, name: &str, label: &str, help: &str) {
        header(out, name, "counter", help);
        for (i, count) in self.counts.iter().enumerate() {
            let code = self.codes.get(i).copied().unwrap_or("other");
            let _ = writeln!(
                out,
                "{name}{{{label}=\"{code}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
    }
}

/// A histogram of durations with fixed buckets ([`DURATION_BUCKETS`]).
struct Histogram {
    /// Observations per bucket (not cumulative), then those above the last bound.
    buckets: Vec<AtomicU64>,
    sum_us: AtomicU64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            buckets: (0..=DURATION_BUCKETS.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = DURATION_BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(DURATION_BUCKETS.len());
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, "histogram", help);
        let mut cumulative = 0u64;
        for (i, count) in self.buckets.iter().enumerate() {
            cumulative = cumulative.saturating_add(count.load(Ordering::Relaxed));
            match DURATION_BUCKETS.get(i) {
                Some(le) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        // The count is the +Inf bucket, so the two always agree within one scrape.
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// What the relay counts. Shared by every connection task; all counters only grow
/// (except the live-session gauge) and start at zero when `serve` starts.
pub struct Metrics {
    started: SystemTime,
    sessions: CodeCounter,
    live: AtomicU64,
    durations: Histogram,
    docs_received: AtomicU64,
    docs_sent: AtomicU64,
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
    doc_rejected: CodeCounter,
    errors_sent: CodeCounter,
    refused: CodeCounter,
    handshake_failures: CodeCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every counter at zero.
    pub fn new() -> Metrics {
        Metrics {
            started: SystemTime::now(),
            sessions: CodeCounter::closed(SESSION_OUTCOMES),
            live: AtomicU64::new(0),
            durations: Histogram::new(),
            docs_received: AtomicU64::new(0),
            docs_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            doc_rejected: CodeCounter::open(musubi_engine::admit::REJECTION_CODES),
            errors_sent: CodeCounter::open(ERROR_CODES),
            refused: CodeCounter::open(REFUSAL_CODES),
            handshake_failures: CodeCounter::closed(HANDSHAKE_FAILURES),
        }
    }

    /// A handshake failed (`tls`), timed out (`timeout`) or was refused because too many
    /// were in progress (`limit`).
    pub fn handshake_failed(&self, reason: &'static str) {
        self.handshake_failures.add(reason);
    }

    /// An authenticated connection was refused before a session, with this close code.
    pub fn refused(&self, code: u32) {
        let name = match code {
            close::UNKNOWN_DEVICE => "unknown_device",
            close::REVOKED => "revoked",
            close::WRONG_OFFICE => "wrong_office",
            close::BUSY => "busy",
            close::INTERNAL => "internal",
            _ => "other",
        };
        self.refused.add(name);
    }

    /// A session took its slot: counted live until the record is dropped, which counts
    /// its outcome ([`SessionEnd::Failed`] unless [`SessionRecord::end`] said otherwise)
    /// and duration.
    pub fn session_started(&self) -> SessionRecord<'_> {
        self.live.fetch_add(1, Ordering::Relaxed);
        SessionRecord {
            metrics: self,
            started: Instant::now(),
            end: SessionEnd::Failed,
        }
    }

    /// One frame body the relay sends: its bytes, and the code of a `doc_rejected` or
    /// `error` frame.
    fn frame_sent(&self, frame: &[u8]) {
        self.bytes_sent
            .fetch_add(frame.len() as u64, Ordering::Relaxed);
        if frame.len() > INSPECT_FRAME_BYTES {
            return;
        }
        match Frame::decode(frame) {
            Ok(Frame::DocRejected { code, .. }) => self.doc_rejected.add(&code),
            Ok(Frame::Error { code, .. }) => self.errors_sent.add(&code),
            _ => {}
        }
    }

    /// The metrics in the Prometheus text format (0.0.4); `store` is the store's size, or
    /// `None` if it did not answer.
    pub fn render(&self, store: Option<StoreSize>) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let start = self
            .started
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        single(
            &mut out,
            "musubi_relay_start_time_seconds",
            "gauge",
            "When this relay process started serving (Unix time).",
            start,
        );
        self.sessions.render(
            &mut out,
            "musubi_relay_sessions_total",
            "outcome",
            "Sync sessions ended, by outcome: finished, failed, access_lost (revoked while connected), deadline.",
        );
        single(
            &mut out,
            "musubi_relay_sessions_live",
            "gauge",
            "Sync sessions open now.",
            self.live.load(Ordering::Relaxed),
        );
        self.durations.render(
            &mut out,
            "musubi_relay_session_duration_seconds",
            "Duration of sync sessions, from the session slot to the end.",
        );
        single(
            &mut out,
            "musubi_relay_documents_received_total",
            "counter",
            "Documents the relay wrote because of what devices sent (counted when a session ends).",
            self.docs_received.load(Ordering::Relaxed),
        );
        single(
            &mut out,
            "musubi_relay_documents_sent_total",
            "counter",
            "Documents whose data the relay sent to devices (counted when a session ends).",
            self.docs_sent.load(Ordering::Relaxed),
        );
        single(
            &mut out,
            "musubi_relay_bytes_received_total",
            "counter",
            "Sync frame bytes received from devices.",
            self.bytes_received.load(Ordering::Relaxed),
        );
        single(
            &mut out,
            "musubi_relay_bytes_sent_total",
            "counter",
            "Sync frame bytes sent to devices.",
            self.bytes_sent.load(Ordering::Relaxed),
        );
        self.doc_rejected.render(
            &mut out,
            "musubi_relay_doc_rejected_total",
            "code",
            "Documents refused by the relay (doc_rejected frames sent), by code.",
        );
        self.errors_sent.render(
            &mut out,
            "musubi_relay_errors_sent_total",
            "code",
            "Sessions the relay ended with an error frame, by code.",
        );
        self.refused.render(
            &mut out,
            "musubi_relay_connections_refused_total",
            "code",
            "Authenticated connections refused before a session, by close code.",
        );
        self.handshake_failures.render(
            &mut out,
            "musubi_relay_handshake_failures_total",
            "reason",
            "Connections that never became a device connection: tls (handshake failed, e.g. no or a refused certificate), timeout, limit (too many handshakes).",
        );
        single(
            &mut out,
            "musubi_relay_store_up",
            "gauge",
            "1 when the store answered this scrape, 0 otherwise.",
            u8::from(store.is_some()),
        );
        if let Some(size) = store {
            single(
                &mut out,
                "musubi_relay_store_documents",
                "gauge",
                "Documents stored for the offices served.",
                size.documents,
            );
            single(
                &mut out,
                "musubi_relay_store_bytes",
                "gauge",
                "Bytes stored for the offices served (snapshots and changes, as counted by the store's usage counters).",
                size.bytes,
            );
        }
        out
    }
}

/// One session holding a slot; dropping it records the outcome and duration.
pub struct SessionRecord<'a> {
    metrics: &'a Metrics,
    started: Instant,
    end: SessionEnd,
}

impl SessionRecord<'_> {
    /// How the session ended (the default is [`SessionEnd::Failed`]).
    pub fn end(&mut self, end: SessionEnd) {
        self.end = end;
    }

    /// The documents the session sent and received (its `SyncOutcome`).
    pub fn documents(&self, sent: u64, received: u64) {
        let m = self.metrics;
        m.docs_sent.fetch_add(sent, Ordering::Relaxed);
        m.docs_received.fetch_add(received, Ordering::Relaxed);
    }
}

impl Drop for SessionRecord<'_> {
    fn drop(&mut self) {
        let m = self.metrics;
        m.live.fetch_sub(1, Ordering::Relaxed);
        m.durations.observe(self.started.elapsed());
        m.sessions.add_index(self.end as usize);
    }
}

/// A session as the QUIC driver sees it, counting the bytes that cross it and the codes
/// of the refusals and errors the relay sends.
pub struct Metered<'a, T> {
    session: &'a mut T,
    metrics: &'a Metrics,
}

impl<'a, T> Metered<'a, T> {
    /// Wraps `session` for one drive.
    pub fn new(session: &'a mut T, metrics: &'a Metrics) -> Self {
        Metered { session, metrics }
    }
}

impl<T: FrameSession> FrameSession for Metered<'_, T> {
    type Error = T::Error;

    fn handle_frame(&mut self, frame: &[u8]) -> Result<(), T::Error> {
        self.metrics
            .bytes_received
            .fetch_add(frame.len() as u64, Ordering::Relaxed);
        self.session.handle_frame(frame)
    }

    fn handle_frames(&mut self, frames: &[Vec<u8>]) -> Result<(), T::Error> {
        let bytes: usize = frames.iter().map(Vec::len).sum();
        self.metrics
            .bytes_received
            .fetch_add(bytes as u64, Ordering::Relaxed);
        self.session.handle_frames(frames)
    }

    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let frame = self.session.poll_transmit()?;
        self.metrics.frame_sent(&frame);
        Some(frame)
    }

    fn flush(&mut self) -> Result<(), T::Error> {
        self.session.flush()
    }

    fn is_finished(&self) -> bool {
        self.session.is_finished()
    }

    fn is_failed(&self) -> bool {
        self.session.is_failed()
    }
}

/// What the store holds for the offices served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreSize {
    /// Documents.
    pub documents: u64,
    /// Bytes (the store's usage counters).
    pub bytes: u64,
}

/// The store as `/healthz` and `/metrics` ask it. Its calls block (the store thread or
/// the database); the listener makes them with `block_in_place`.
pub struct Probe {
    store: Arc<dyn SyncStorage + Send + Sync>,
    offices: Box<dyn Fn() -> Vec<String> + Send + Sync>,
}

impl Probe {
    /// `offices` lists the offices served at the time of the call.
    pub fn new(
        store: Arc<dyn SyncStorage + Send + Sync>,
        offices: Box<dyn Fn() -> Vec<String> + Send + Sync>,
    ) -> Probe {
        Probe { store, offices }
    }

    /// Whether the store answers (reads its sequence number).
    pub fn healthy(&self) -> bool {
        match self.store.current_seq() {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "health check: the store did not answer");
                false
            }
        }
    }

    /// Documents and bytes of the offices served, from the store's usage counters
    /// (`SyncStorage::usage`); `None` if the store failed.
    pub fn size(&self) -> Option<StoreSize> {
        let mut size = StoreSize::default();
        for office in (self.offices)() {
            match self.store.usage(&office, "") {
                Ok(u) => {
                    size.documents = size.documents.saturating_add(u.office_docs);
                    size.bytes = size.bytes.saturating_add(u.office_bytes);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: the store did not answer");
                    return None;
                }
            }
        }
        Some(size)
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until `stop` completes (or is dropped),
/// then waits for the connections in progress (at most the request and response
/// timeouts). Needs a multi-threaded runtime (store calls use `block_in_place`).
pub async fn serve_http(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    probe: Arc<Probe>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut stop = std::pin::pin!(stop);
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if conns.len() >= MAX_HTTP_CONNECTIONS {
                        tracing::debug!("metrics listener busy; closing a connection");
                        drop(stream);
                        continue;
                    }
                    let metrics = Arc::clone(&metrics);
                    let probe = Arc::clone(&probe);
                    conns.spawn(async move { answer(stream, &metrics, &probe).await });
                }
                Err(e) => {
                    // E.g. out of file descriptors: do not spin.
                    tracing::warn!(error = %e, "metrics listener cannot accept");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    // Connections still answering finish (their store calls cannot be cut short).
    while conns.join_next().await.is_some() {}
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    Healthz,
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

async fn answer(mut stream: TcpStream, metrics: &Metrics, probe: &Probe) {
    let route = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => route(&head),
        Ok(Ok(None)) => Route::BadRequest,
        // A read error or a client too slow: nothing to answer.
        Ok(Err(_)) | Err(_) => return,
    };
    let response = match route {
        Route::Metrics => {
            let size = tokio::task::block_in_place(|| probe.size());
            response(
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                metrics.render(size).as_bytes(),
                "",
            )
        }
        Route::Healthz => {
            if tokio::task::block_in_place(|| probe.healthy()) {
                response("200 OK", "text/plain; charset=utf-8", b"ok\n", "")
            } else {
                response(
                    "503 Service Unavailable",
                    "text/plain; charset=utf-8",
                    b"store unavailable\n",
                    "",
                )
            }
        }
        Route::NotFound => response(
            "404 Not Found",
            "text/plain; charset=utf-8",
            b"not found: GET /metrics or /healthz\n",
            "",
        ),
        Route::MethodNotAllowed => response(
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            b"only GET\n",
            "Allow: GET\r\n",
        ),
        Route::BadRequest => response(
            "400 Bad Request",
            "text/plain; charset=utf-8",
            b"bad request\n",
            "",
        ),
    };
    let _ = tokio::time::timeout(RESPONSE_TIMEOUT, async {
        stream.write_all(&response).await?;
        stream.shutdown().await
    })
    .await;
}

/// Reads the request head (up to the empty line): `None` if it is longer than
/// [`MAX_REQUEST_BYTES`] or the client stopped before its end.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; MAX_REQUEST_BYTES];
    let mut len = 0;
    loop {
        if len == buf.len() {
            return Ok(None);
        }
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(None);
        }
        len += n;
        if let Some(end) = head_end(&buf[..len]) {
            buf.truncate(end);
            return Ok(Some(buf));
        }
    }
}

/// Where the head ends (after its empty line), if it does.
fn head_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Parses the request line only; headers are ignored.
fn route(head: &[u8]) -> Route {
    let Ok(text) = std::str::from_utf8(head) else {
        return Route::BadRequest;
    };
    let line = text.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0")
        || method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || !target.starts_with('/')
    {
        return Route::BadRequest;
    }
    if method != "GET" {
        return Route::MethodNotAllowed;
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    match path {
        "/metrics" => Route::Metrics,
        "/healthz" => Route::Healthz,
        _ => Route::NotFound,
    }
}

fn response(status: &str, content_type: &str, body: &[u8], extra_headers: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n{extra_headers}\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn routes_one_get_line() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics
        );
        assert_eq!(route(b"GET /healthz?x=1 HTTP/1.0\r\n\r\n"), Route::Healthz);
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Route::MethodNotAllowed
        );
        assert_eq!(
            route(b"HEAD /metrics HTTP/1.1\r\n\r\n"),
            Route::MethodNotAllowed
        );
        for bad in [
            &b"GET /metrics\r\n\r\n"[..],
            b"GET  /metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/2\r\n\r\n",
            b"get /metrics HTTP/1.1\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"\xff\xfe /metrics HTTP/1.1\r\n\r\n",
            b"\r\n\r\n",
            b"GET /metrics HTTP/1.1 extra\r\n\r\n",
        ] {
            assert_eq!(
                route(bad),
                Route::BadRequest,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn head_ends_at_the_empty_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }

    #[test]
    fn every_refusal_code_has_its_own_series() {
        let m = Metrics::new();
        for code in [
            close::UNKNOWN_DEVICE,
            close::REVOKED,
            close::WRONG_OFFICE,
            close::BUSY,
            close::INTERNAL,
        ] {
            m.refused(code);
        }
        let text = m.render(None);
        for name in REFUSAL_CODES {
            let line = format!("musubi_relay_connections_refused_total{{code=\"{name}\"}} 1");
            assert!(text.lines().any(|l| l == line), "{line}");
        }
        assert!(!text.contains("outcome=\"other\""), "{text}");
        assert!(!text.contains("reason=\"other\""), "{text}");
    }

    #[test]
    fn render_counts_sessions_refusals_and_codes() {
        let m = Metrics::new();
        {
            let mut r = m.session_started();
            r.documents(2, 3);
            r.end(SessionEnd::Finished);
            let _failed = m.session_started();
            let text = m.render(None);
            assert!(text.contains("musubi_relay_sessions_live 2\n"), "{text}");
        }
        m.refused(close::REVOKED);
        m.refused(999);
        m.handshake_failed("tls");
        let rejected = Frame::DocRejected {
            id: serde_bytes::ByteBuf::from(vec![7u8; 16]),
            code: "my_number".to_owned(),
        };
        m.frame_sent(&rejected.encode());
        let error = Frame::Error {
            code: "limit".to_owned(),
            message: "enough".to_owned(),
        };
        m.frame_sent(&error.encode());
        m.frame_sent(
            &Frame::Error {
                code: "made-up".to_owned(),
                message: String::new(),
            }
            .encode(),
        );
        let text = m.render(Some(StoreSize {
            documents: 4,
            bytes: 1000,
        }));
        for line in [
            "musubi_relay_sessions_total{outcome=\"finished\"} 1",
            "musubi_relay_sessions_total{outcome=\"failed\"} 1",
            "musubi_relay_sessions_live 0",
            "musubi_relay_session_duration_seconds_count 2",
            "musubi_relay_session_duration_seconds_bucket{le=\"+Inf\"} 2",
            "musubi_relay_documents_sent_total 2",
            "musubi_relay_documents_received_total 3",
            "musubi_relay_connections_refused_total{code=\"revoked\"} 1",
            "musubi_relay_connections_refused_total{code=\"other\"} 1",
            "musubi_relay_handshake_failures_total{reason=\"tls\"} 1",
            "musubi_relay_doc_rejected_total{code=\"my_number\"} 1",
            "musubi_relay_doc_rejected_total{code=\"quota\"} 0",
            "musubi_relay_errors_sent_total{code=\"limit\"} 1",
            "musubi_relay_errors_sent_total{code=\"other\"} 1",
            "musubi_relay_store_up 1",
            "musubi_relay_store_documents 4",
            "musubi_relay_store_bytes 1000",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(!m.render(None).contains("musubi_relay_store_bytes"));
        // Every sample line is `name{labels} value` or `name value` with a number.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = l.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{l}");
        }
    }
}
