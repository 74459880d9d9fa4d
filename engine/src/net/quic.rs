//! The QUIC transport of sync: quinn endpoints over the office's mutual-TLS configuration,
//! length-prefixed frames on one bidirectional stream per session, a driver that runs a
//! sans-IO [`Session`](crate::sync::Session) over that stream, and the device side's
//! [`sync_once`] with reconnection.
//!
//! # Wire
//!
//! The device opens one bidirectional stream per sync session and sends first. Each frame
//! is a `u32` big-endian length followed by that many bytes (at most
//! [`MAX_FRAME_BYTES`](crate::sync::MAX_FRAME_BYTES)); a longer length is refused before
//! anything is allocated. When a side's session is finished and its last frame is queued,
//! it finishes its send stream. The device, which receives last, closes the connection
//! with [`close::DONE`] once the relay has finished its stream.
//!
//! # Refusals
//!
//! The relay closes a connection it will not serve with one of the [`close`] codes and a
//! fixed English phrase as the reason; [`SyncFailure`] turns these (and TLS alerts from the
//! handshake) into a reason an office administrator can act on.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Re-exported so the relay and the app can name QUIC types without their own dependency.
pub use quinn;
use quinn::{ConnectionError, Endpoint, TransportErrorCode, VarInt};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::tls::{self, DeviceCredentials, FailureReason};
use crate::store::Store;
use crate::sync::{Progress, Session, SyncError, SyncOutcome, SyncStorage};

/// Application close codes (QUIC `CONNECTION_CLOSE` with an application error code).
pub mod close {
    /// The session completed.
    pub const DONE: u32 = 0;
    /// The device is not enrolled at this relay.
    pub const UNKNOWN_DEVICE: u32 = 1;
    /// The relay does not serve the device's office.
    pub const WRONG_OFFICE: u32 = 2;
    /// The device's certificate is revoked.
    pub const REVOKED: u32 = 3;
    /// The peer broke the sync protocol; the reason carries the message.
    pub const PROTOCOL: u32 = 4;
    /// The relay is at its session limit; try again later.
    pub const BUSY: u32 = 5;
    /// The relay is shutting down; try again later.
    pub const SHUTTING_DOWN: u32 = 6;
    /// The relay failed internally (its store); try again later.
    pub const INTERNAL: u32 = 7;
    /// The device's certificate has expired.
    pub const EXPIRED: u32 = 8;
}

/// Timeouts of the QUIC connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransportSettings {
    /// A connection with no packet from the peer for this long is dead.
    pub idle_timeout: Duration,
    /// How often an otherwise quiet side sends a keep-alive (well under `idle_timeout`).
    pub keep_alive: Duration,
    /// Longest wait for the handshake to complete.
    pub handshake_timeout: Duration,
    /// After a session finished, longest wait for the peer to finish its side.
    pub closing_timeout: Duration,
}

impl Default for TransportSettings {
    fn default() -> Self {
        TransportSettings {
            idle_timeout: Duration::from_secs(15),
            keep_alive: Duration::from_secs(4),
            handshake_timeout: Duration::from_secs(10),
            closing_timeout: Duration::from_secs(10),
        }
    }
}

impl TransportSettings {
    /// Settings with the given idle timeout, the keep-alive at a third of it and the other
    /// timeouts no longer than it.
    pub fn with_idle_timeout(idle: Duration) -> TransportSettings {
        let idle = idle.max(Duration::from_millis(300));
        let d = TransportSettings::default();
        TransportSettings {
            idle_timeout: idle,
            keep_alive: idle / 3,
            handshake_timeout: d.handshake_timeout.min(idle),
            closing_timeout: d.closing_timeout.min(idle),
        }
    }

    /// The quinn transport configuration.
    pub fn transport_config(&self) -> Arc<quinn::TransportConfig> {
        let mut t = quinn::TransportConfig::default();
        // At most 2^62 ms; anything longer is clamped to an hour, which is plenty.
        let idle = quinn::IdleTimeout::try_from(self.idle_timeout)
            .unwrap_or_else(|_| quinn::IdleTimeout::from(VarInt::from_u32(3_600_000)));
        t.max_idle_timeout(Some(idle));
        t.keep_alive_interval(Some(self.keep_alive));
        // One sync stream per connection; a few spare for a reconnect racing a close.
        t.max_concurrent_bidi_streams(VarInt::from_u32(4));
        t.max_concurrent_uni_streams(VarInt::from_u32(0));
        Arc::new(t)
    }
}

/// Errors of the transport itself (setting up endpoints, framing, the stream).
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    /// The TLS configuration is not usable for QUIC (no TLS 1.3 initial cipher suite).
    #[error("the TLS configuration cannot be used for QUIC: {0}")]
    TlsConfig(String),
    /// A socket could not be bound.
    #[error("cannot open a UDP socket on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The peer announced a frame longer than the limit.
    #[error("frame of {len} bytes refused (limit {limit} bytes)")]
    FrameTooLong {
        /// The announced length.
        len: u64,
        /// The limit.
        limit: usize,
    },
    /// The stream ended inside a frame.
    #[error("the stream ended inside a frame")]
    Truncated,
    /// The peer ended its stream before the session was finished.
    #[error("the peer ended the sync stream before the session was finished")]
    EndedEarly,
    /// Reading or writing the stream failed (usually: the connection was lost).
    #[error("stream: {0}")]
    Stream(#[from] std::io::Error),
    /// The connection failed or was closed.
    #[error("connection: {0}")]
    Connection(#[from] ConnectionError),
    /// The other side did not finish in time after the session was done.
    #[error("timed out waiting for the peer to finish the session")]
    ClosingTimeout,
    /// The session ended itself with an error while producing frames.
    #[error("the session failed and sent its error to the peer")]
    SessionFailed,
    /// The peer sent no frame for longer than the idle deadline.
    #[error("no frame from the peer within {0:?}")]
    IdleDeadline(Duration),
    /// The peer began a frame and did not finish it within the frame deadline.
    #[error("a frame was not completed within {0:?}")]
    FrameDeadline(Duration),
}

impl QuicError {
    /// The connection error underneath, if any.
    pub fn connection_error(&self) -> Option<&ConnectionError> {
        match self {
            QuicError::Connection(e) => Some(e),
            QuicError::Stream(io) => io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<quinn::ReadError>())
                .and_then(|r| match r {
                    quinn::ReadError::ConnectionLost(c) => Some(c),
                    _ => None,
                })
                .or_else(|| {
                    io.get_ref()
                        .and_then(|inner| inner.downcast_ref::<quinn::WriteError>())
                        .and_then(|w| match w {
                            quinn::WriteError::ConnectionLost(c) => Some(c),
                            _ => None,
                        })
                }),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Framing

/// Reads one frame body. `Ok(None)` when the stream ended cleanly between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    recv: &mut R,
    limit: usize,
) -> Result<Option<Vec<u8>>, QuicError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < header.len() {
        let n = recv.read(&mut header[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(QuicError::Truncated)
            };
        }
        got += n;
    }
    let len = u32::from_be_bytes(header);
    let len_usize = usize::try_from(len).map_err(|_| QuicError::FrameTooLong {
        len: u64::from(len),
        limit,
    })?;
    if len_usize > limit {
        return Err(QuicError::FrameTooLong {
            len: u64::from(len),
            limit,
        });
    }
    let mut body = vec![0u8; len_usize];
    match recv.read_exact(&mut body).await {
        Ok(_) => Ok(Some(body)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(QuicError::Truncated),
        Err(e) => Err(QuicError::Stream(e)),
    }
}

/// Deadlines for reading a peer's frames (the relay's protection against a peer that holds
/// a stream open without finishing what it began).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadDeadlines {
    /// Longest wait for the first byte of the next frame (including the first frame,
    /// `hello`). `None`: no limit.
    pub idle: Option<Duration>,
    /// Longest time from the first byte of a frame to its last. `None`: no limit.
    pub frame: Option<Duration>,
}

/// [`read_frame`] under `deadlines`.
pub async fn read_frame_within<R: AsyncRead + Unpin>(
    recv: &mut R,
    limit: usize,
    deadlines: ReadDeadlines,
) -> Result<Option<Vec<u8>>, QuicError> {
    if deadlines == ReadDeadlines::default() {
        return read_frame(recv, limit).await;
    }
    let mut first = [0u8; 1];
    let n = match deadlines.idle {
        Some(t) => tokio::time::timeout(t, recv.read(&mut first))
            .await
            .map_err(|_| QuicError::IdleDeadline(t))??,
        None => recv.read(&mut first).await?,
    };
    if n == 0 {
        return Ok(None);
    }
    let rest = async {
        let mut header = [first[0], 0, 0, 0];
        recv.read_exact(&mut header[1..]).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                QuicError::Truncated
            } else {
                QuicError::Stream(e)
            }
        })?;
        let len = u32::from_be_bytes(header);
        let len_usize =
            usize::try_from(len)
                .ok()
                .filter(|l| *l <= limit)
                .ok_or(QuicError::FrameTooLong {
                    len: u64::from(len),
                    limit,
                })?;
        let mut body = vec![0u8; len_usize];
        match recv.read_exact(&mut body).await {
            Ok(_) => Ok(Some(body)),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(QuicError::Truncated),
            Err(e) => Err(QuicError::Stream(e)),
        }
    };
    match deadlines.frame {
        Some(t) => tokio::time::timeout(t, rest)
            .await
            .map_err(|_| QuicError::FrameDeadline(t))?,
        None => rest.await,
    }
}

/// Writes one frame (length prefix and body).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    send: &mut W,
    body: &[u8],
    limit: usize,
) -> Result<(), QuicError> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|_| body.len() <= limit)
        .ok_or(QuicError::FrameTooLong {
            len: u64::try_from(body.len()).unwrap_or(u64::MAX),
            limit,
        })?;
    send.write_all(&len.to_be_bytes()).await?;
    send.write_all(body).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Driving a session over a stream

/// What the transport needs from a sync session. Implemented for
/// [`Session`](crate::sync::Session); tests can drive their own.
pub trait FrameSession: Send {
    /// The session's error.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Takes one received frame body.
    fn handle_frame(&mut self, frame: &[u8]) -> Result<(), Self::Error>;
    /// Takes a batch of received frame bodies, in order (a session may decode them in
    /// parallel first).
    fn handle_frames(&mut self, frames: &[Vec<u8>]) -> Result<(), Self::Error> {
        frames.iter().try_for_each(|f| self.handle_frame(f))
    }
    /// The next frame body to send, if any. A session makes output only from what it
    /// takes: once this answers `None`, it answers `None` again until frames are handled
    /// (the driver does not ask in between).
    fn poll_transmit(&mut self) -> Option<Vec<u8>>;
    /// Commits what the received frames changed (called after each batch).
    fn flush(&mut self) -> Result<(), Self::Error>;
    /// True when this side has nothing more to do.
    fn is_finished(&self) -> bool;
    /// True when the session ended itself with an error (already queued for the peer).
    fn is_failed(&self) -> bool {
        false
    }
}

impl<S: SyncStorage + Send> FrameSession for Session<S> {
    type Error = SyncError;
    fn handle_frame(&mut self, frame: &[u8]) -> Result<(), SyncError> {
        Session::handle_frame(self, frame)
    }
    fn handle_frames(&mut self, frames: &[Vec<u8>]) -> Result<(), SyncError> {
        Session::handle_frames(self, frames)
    }
    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        Session::poll_transmit(self)
    }
    fn flush(&mut self) -> Result<(), SyncError> {
        Session::flush(self)
    }
    fn is_finished(&self) -> bool {
        Session::is_finished(self)
    }
    fn is_failed(&self) -> bool {
        Session::is_failed(self)
    }
}

/// Why driving a session stopped.
#[derive(Debug, thiserror::Error)]
pub enum DriveError<E: std::error::Error + 'static> {
    /// The session refused a frame or could not commit.
    #[error("sync session: {0}")]
    Session(#[source] E),
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] QuicError),
}

/// Frames received before the session takes them (a bound keeps memory finite while the
/// session is busy; QUIC flow control then holds the peer back).
const IN_QUEUE: usize = 64;
/// Frames handed to the writer but not yet on the stream.
const OUT_QUEUE: usize = 16;
/// Most frames handled between two flushes.
const MAX_BATCH: usize = 64;

/// Runs a blocking session call without stalling the runtime's other tasks.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Counters of one driven session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriveStats {
    /// Frames received.
    pub frames_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Bytes received (frame bodies and prefixes).
    pub bytes_in: u64,
    /// Bytes sent (frame bodies and prefixes).
    pub bytes_out: u64,
}

/// Runs `session` over one bidirectional stream until both sides are finished.
///
/// Reading and writing happen on their own tasks, so a session that has much to send
/// never stops taking the peer's frames (no deadlock when both sides send a lot at once).
/// Received frames are handed to the session in batches, each followed by one
/// [`FrameSession::flush`]; `on_batch` is called after each batch. When the session is
/// finished and its last frame is written, the send stream is finished; the function
/// returns once the peer has finished its stream too and ours is acknowledged.
///
/// On a session error, frames the session queued (such as an error frame for the peer) are
/// still sent, best effort, before the error is returned.
pub async fn drive<T, F>(
    session: &mut T,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    limit: usize,
    closing_timeout: Duration,
    on_batch: F,
) -> Result<DriveStats, DriveError<T::Error>>
where
    T: FrameSession,
    F: FnMut(&T),
{
    drive_within(
        session,
        send,
        recv,
        limit,
        closing_timeout,
        ReadDeadlines::default(),
        on_batch,
    )
    .await
}

/// [`drive`] with deadlines on the peer's frames (the relay's side).
pub async fn drive_within<T, F>(
    session: &mut T,
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    limit: usize,
    closing_timeout: Duration,
    deadlines: ReadDeadlines,
    mut on_batch: F,
) -> Result<DriveStats, DriveError<T::Error>>
where
    T: FrameSession,
    F: FnMut(&T),
{
    let mut stats = DriveStats::default();
    let (in_tx, mut in_rx) = mpsc::channel::<Result<Vec<u8>, QuicError>>(IN_QUEUE);
    let reader = tokio::spawn(async move {
        loop {
            match read_frame_within(&mut recv, limit, deadlines).await {
                Ok(Some(f)) => {
                    if in_tx.send(Ok(f)).await.is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = in_tx.send(Err(e)).await;
                    break;
                }
            }
        }
        // Dropping `recv` here after the end is harmless; on early return it stops the
        // peer's stream, which is what we want.
    });
    let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(OUT_QUEUE);
    let mut writer = Some(tokio::spawn(write_all_frames(send, out_rx, limit)));
    let mut out_tx = Some(out_tx);

    let result = drive_loop(
        session,
        &mut in_rx,
        &mut out_tx,
        &mut writer,
        &mut stats,
        closing_timeout,
        &mut on_batch,
    )
    .await;
    match result {
        Ok(()) => {
            reader.abort();
            Ok(stats)
        }
        Err(e) => {
            // Send what the session queued for the peer (an error frame), briefly.
            if let Some(tx) = out_tx.take() {
                while let Some(f) = blocking(|| session.poll_transmit()) {
                    if tx.try_send(f).is_err() {
                        break;
                    }
                }
                drop(tx);
                let _ = tokio::time::timeout(Duration::from_millis(500), join_writer(&mut writer))
                    .await;
            }
            if let Some(w) = writer {
                w.abort();
            }
            reader.abort();
            Err(e)
        }
    }
}

async fn write_all_frames(
    mut send: quinn::SendStream,
    mut out_rx: mpsc::Receiver<Vec<u8>>,
    limit: usize,
) -> Result<(), QuicError> {
    while let Some(f) = out_rx.recv().await {
        write_frame(&mut send, &f, limit).await?;
    }
    // All queued: end the stream and wait until the peer has acknowledged every byte.
    let _ = send.finish();
    match send.stopped().await {
        Ok(_) => Ok(()),
        Err(quinn::StoppedError::ConnectionLost(e)) => Err(QuicError::Connection(e)),
        Err(quinn::StoppedError::ZeroRttRejected) => Err(QuicError::EndedEarly),
    }
}

type Writer = Option<tokio::task::JoinHandle<Result<(), QuicError>>>;

/// Waits for the writer task; `None` afterwards, so it is never polled again.
async fn join_writer(writer: &mut Writer) -> Result<Result<(), QuicError>, tokio::task::JoinError> {
    match writer {
        Some(handle) => {
            let r = handle.await;
            *writer = None;
            r
        }
        None => std::future::pending().await,
    }
}

async fn drive_loop<T, F>(
    session: &mut T,
    in_rx: &mut mpsc::Receiver<Result<Vec<u8>, QuicError>>,
    out_tx: &mut Option<mpsc::Sender<Vec<u8>>>,
    writer: &mut Writer,
    stats: &mut DriveStats,
    closing_timeout: Duration,
    on_batch: &mut F,
) -> Result<(), DriveError<T::Error>>
where
    T: FrameSession,
    F: FnMut(&T),
{
    // Frames taken from the session for which the writer's channel has room. The session
    // is asked for at most as many frames as the channel takes, in one blocking call (each
    // such call hands the runtime's worker over to another thread), so a frame waits here
    // only until the channel accepts it.
    let mut pending: VecDeque<Vec<u8>> = VecDeque::new();
    // The session answered `None` and has handled nothing since: asking again would answer
    // `None` again (`FrameSession::poll_transmit`).
    let mut drained = false;
    let mut peer_done = false;
    let mut finished_at: Option<tokio::time::Instant> = None;
    loop {
        if pending.is_empty()
            && !drained
            && let Some(tx) = out_tx.as_ref()
        {
            let room = tx.capacity().max(1);
            pending = blocking(|| take_frames(session, room));
            drained = pending.len() < room;
        }
        if pending.is_empty() && session.is_finished() {
            // Our side is done: end our stream once, then wait for the peer's end.
            if out_tx.take().is_some() {
                finished_at = Some(tokio::time::Instant::now() + closing_timeout);
            }
            if peer_done && writer.is_none() {
                return Ok(());
            }
        }
        if peer_done && pending.is_empty() && !session.is_finished() {
            return Err(QuicError::EndedEarly.into());
        }
        if pending.is_empty() && session.is_failed() {
            // The session gave up while producing frames (e.g. its store failed); its
            // error frame is already out.
            return Err(QuicError::SessionFailed.into());
        }
        let deadline = finished_at;
        tokio::select! {
            msg = in_rx.recv(), if !peer_done => match msg {
                Some(Ok(first)) => {
                    let mut batch = vec![first];
                    let mut later_error = None;
                    while batch.len() < MAX_BATCH {
                        match in_rx.try_recv() {
                            Ok(Ok(f)) => batch.push(f),
                            Ok(Err(e)) => {
                                later_error = Some(e);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    for f in &batch {
                        stats.frames_in += 1;
                        stats.bytes_in += 4 + f.len() as u64;
                    }
                    // What the batch made the session send is taken in the same call
                    // (when nothing else is waiting to be sent).
                    let room = match out_tx.as_ref() {
                        Some(tx) if pending.is_empty() => tx.capacity().max(1),
                        _ => 0,
                    };
                    let taken = blocking(|| {
                        session.handle_frames(&batch)?;
                        session.flush()?;
                        Ok(take_frames(session, room))
                    })
                    .map_err(DriveError::Session)?;
                    drained = room > 0 && taken.len() < room;
                    pending.extend(taken);
                    on_batch(session);
                    if finished_at.is_some() {
                        // The peer is still working: give it the full time again.
                        finished_at = Some(tokio::time::Instant::now() + closing_timeout);
                    }
                    if let Some(e) = later_error {
                        return Err(e.into());
                    }
                }
                Some(Err(e)) => return Err(e.into()),
                None => peer_done = true,
            },
            permit = reserve(out_tx.as_ref()), if !pending.is_empty() && out_tx.is_some() => {
                match permit {
                    Some(p) => {
                        if let Some(f) = pending.pop_front() {
                            stats.frames_out += 1;
                            stats.bytes_out += 4 + f.len() as u64;
                            p.send(f);
                        }
                    }
                    // The writer is gone: its error says why.
                    None => return Err(writer_failure(writer).await.into()),
                }
            },
            res = join_writer(writer), if writer.is_some() => {
                match res {
                    Ok(Ok(())) if out_tx.is_none() => {}
                    Ok(Ok(())) => return Err(QuicError::EndedEarly.into()),
                    Ok(Err(e)) => return Err(e.into()),
                    Err(_) => return Err(QuicError::EndedEarly.into()),
                }
            },
            _ = sleep_until(deadline), if deadline.is_some() => {
                return Err(QuicError::ClosingTimeout.into());
            },
        }
    }
}

/// Up to `max` frames the session has to send, in order.
fn take_frames<T: FrameSession>(session: &mut T, max: usize) -> VecDeque<Vec<u8>> {
    let mut frames = VecDeque::new();
    while frames.len() < max {
        match session.poll_transmit() {
            Some(f) => frames.push_back(f),
            None => break,
        }
    }
    frames
}

async fn reserve(tx: Option<&mpsc::Sender<Vec<u8>>>) -> Option<mpsc::Permit<'_, Vec<u8>>> {
    match tx {
        Some(tx) => tx.reserve().await.ok(),
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn writer_failure(writer: &mut Writer) -> QuicError {
    if writer.is_none() {
        return QuicError::EndedEarly;
    }
    match join_writer(writer).await {
        Ok(Err(e)) => e,
        _ => QuicError::EndedEarly,
    }
}

// ---------------------------------------------------------------------------------------
// Endpoints

/// A relay endpoint listening on `listen` with the office's server TLS configuration.
pub fn server_endpoint(
    tls: rustls::ServerConfig,
    listen: SocketAddr,
    settings: &TransportSettings,
) -> Result<Endpoint, QuicError> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| QuicError::TlsConfig(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(settings.transport_config());
    let bind_error = |source| QuicError::Bind {
        addr: listen,
        source,
    };
    let (socket, recv_buffer) = server_socket(listen).map_err(bind_error)?;
    tracing::info!(
        requested = SERVER_RECV_BUFFER,
        granted = recv_buffer,
        "UDP receive buffer of the relay socket (the kernel caps it at net.core.rmem_max)"
    );
    let runtime = quinn::default_runtime()
        .ok_or_else(|| bind_error(std::io::Error::other("no async runtime is running")))?;
    Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(config),
        socket,
        runtime,
    )
    .map_err(bind_error)
}

/// The UDP receive buffer the relay's socket asks for: 4 MiB. When many devices connect
/// at once (every tablet of an office coming back online), their handshake packets
/// arrive faster than one thread drains them. Linux's default buffer (208 KiB) then
/// drops them, and QUIC resends a lost handshake packet only after its probe timeout,
/// seconds later (docs/benchmarks.md, sync note 7). The kernel grants at most
/// `net.core.rmem_max`; docs/relay.md says how to raise it.
pub const SERVER_RECV_BUFFER: usize = 4 * 1024 * 1024;

/// Binds the relay's UDP socket at `listen` with a receive buffer of up to
/// [`SERVER_RECV_BUFFER`]. Returns the socket and the buffer size the kernel reports
/// (Linux reports twice the usable size). A refused resize is not an error: the socket
/// keeps the system default, and the returned size says so.
pub fn server_socket(listen: SocketAddr) -> std::io::Result<(std::net::UdpSocket, usize)> {
    let socket = std::net::UdpSocket::bind(listen)?;
    let state = quinn::udp::UdpSocketState::new((&socket).into())?;
    if let Err(e) = state.set_recv_buffer_size((&socket).into(), SERVER_RECV_BUFFER) {
        tracing::warn!(error = %e, "could not enlarge the UDP receive buffer; keeping the system default");
    }
    let granted = state.recv_buffer_size((&socket).into())?;
    Ok((socket, granted))
}

/// A device endpoint on an ephemeral port of the same address family as `remote`.
pub fn client_endpoint(
    tls: rustls::ClientConfig,
    remote: SocketAddr,
    settings: &TransportSettings,
) -> Result<Endpoint, QuicError> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| QuicError::TlsConfig(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(settings.transport_config());
    let local: SocketAddr = if remote.is_ipv6() {
        SocketAddr::from(([0u16; 8], 0))
    } else {
        SocketAddr::from(([0u8; 4], 0))
    };
    let mut endpoint = Endpoint::client(local).map_err(|source| QuicError::Bind {
        addr: local,
        source,
    })?;
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}

/// The verified certificate chain of the peer (end-entity first), if it sent one.
pub fn peer_certificates(
    connection: &quinn::Connection,
) -> Option<Vec<rustls::pki_types::CertificateDer<'static>>> {
    connection
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()
        .map(|b| *b)
}

// ---------------------------------------------------------------------------------------
// Device side

/// Why a sync did not complete. Every message names the cause and what to do; none
/// carries document content or personal data.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyncFailure {
    /// The office revoked this device.
    #[error("{}", FailureReason::Revoked)]
    Revoked,
    /// The relay does not know this device (another office CA, or not enrolled there).
    #[error("{}", FailureReason::UnknownCertificate)]
    UnknownDevice,
    /// The relay does not serve this device's office.
    #[error(
        "the relay does not serve this device's office (事業所番号); check the relay address, or ask the office"
    )]
    WrongOffice,
    /// This device's certificate has expired.
    #[error("{}", FailureReason::Expired)]
    CertificateExpired,
    /// The relay presented a certificate this device does not trust.
    #[error("{} ({reason})", FailureReason::RelayUntrusted)]
    RelayUntrusted {
        /// What the TLS check said.
        reason: String,
    },
    /// The handshake failed for another reason.
    #[error("the secure connection to the relay failed: {reason}")]
    Handshake {
        /// What the TLS layer said.
        reason: String,
    },
    /// The relay address is not usable.
    #[error("the relay address {address} is not usable: {reason}")]
    BadAddress {
        /// The address as configured.
        address: String,
        /// Why.
        reason: String,
    },
    /// The relay could not be reached, or the connection kept failing, until the retry
    /// budget ran out.
    #[error(
        "the relay at {address} could not be reached ({attempts} attempts; last: {last}). Check the network and that the relay is running; the next sync continues where this one stopped"
    )]
    Unreachable {
        /// The relay address.
        address: String,
        /// Connection attempts made.
        attempts: u32,
        /// The last error.
        last: String,
    },
    /// The relay took in all one session may bring (relay.toml `[limits]`); what it took
    /// is stored, and the next session goes on with the rest.
    #[error("the relay took in all one session may bring; the rest follows in the next session")]
    SessionLimit,
    /// The relay reported a protocol error.
    #[error("the relay reported a protocol error: {message}")]
    RelayProtocol {
        /// The relay's message.
        message: String,
    },
    /// The sync failed on this device (its store, its credentials or its session).
    #[error("sync failed on this device: {message}")]
    Local {
        /// What failed.
        message: String,
    },
}

impl SyncFailure {
    /// True for failures a later attempt may overcome without anyone's action.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SyncFailure::Unreachable { .. } | SyncFailure::SessionLimit
        )
    }
}

/// How [`sync_once`] retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Consecutive failed attempts (without any progress) before giving up.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled after each failure.
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Give up when this much time has passed since the start, whatever the attempts.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
            deadline: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait after `failures` consecutive failures (1 = the first), with a little
    /// jitter so that many devices do not retry in step.
    pub fn backoff(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(20);
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        // Up to +25 %.
        base + base.mul_f64(f64::from(nanos % 1000) / 4000.0)
    }
}

/// Options of [`sync_once`].
#[derive(Clone, Debug, Default)]
pub struct SyncOptions {
    /// Relay `HOST:PORT` to use instead of the one from enrollment.
    pub relay: Option<String>,
    /// Connection timeouts.
    pub transport: TransportSettings,
    /// Reconnection.
    pub retry: RetryPolicy,
}

/// The id under which this device keeps its per-relay sync state: the hex SHA-256 of the
/// office CA certificate (PEM) it was enrolled with, stable for a relay installation.
pub fn relay_id(creds: &DeviceCredentials) -> String {
    hex::encode(Sha256::digest(creds.office_ca_pem.as_bytes()))
}

/// Resolves `HOST:PORT` to a socket address (the first one the resolver gives).
pub async fn resolve(address: &str) -> Result<SocketAddr, SyncFailure> {
    let bad = |reason: String| SyncFailure::BadAddress {
        address: address.to_owned(),
        reason,
    };
    if let Ok(a) = address.parse::<SocketAddr>() {
        return Ok(a);
    }
    if !address.contains(':') {
        return Err(bad("expected HOST:PORT".to_owned()));
    }
    let addrs = tokio::net::lookup_host(address)
        .await
        .map_err(|e| bad(format!("cannot resolve the host name ({e})")))?;
    // Relays usually listen on IPv4; QUIC gives no quick "refused" to fall back on, so
    // an IPv4 address of the name is tried first.
    let mut all: Vec<SocketAddr> = addrs.collect();
    all.sort_by_key(|a| a.is_ipv6());
    all.first()
        .copied()
        .ok_or_else(|| bad("the host name has no address".to_owned()))
}

/// A connection to the relay, with the endpoint it runs on.
pub struct RelayConnection {
    /// The endpoint (kept so that closing can wait for the peer to be told).
    pub endpoint: Endpoint,
    /// The connection.
    pub connection: quinn::Connection,
}

impl RelayConnection {
    /// Closes the connection with `code` and waits (briefly) for the close to be sent.
    pub async fn close(self, code: u32, reason: &str) {
        self.connection
            .close(VarInt::from_u32(code), reason.as_bytes());
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

/// Connects to the relay at `address` (or the enrolled address) with this device's
/// credentials: mutual TLS 1.3, ALPN `musubi/1`, the office CA pinned.
pub async fn connect(
    creds: &DeviceCredentials,
    address: Option<&str>,
    settings: &TransportSettings,
) -> Result<RelayConnection, SyncFailure> {
    let address = address.unwrap_or(&creds.relay_address);
    let remote = resolve(address).await?;
    let tls = tls::client_config(creds).map_err(|e| SyncFailure::Local {
        message: format!("the device credentials are not usable: {e}"),
    })?;
    let endpoint = client_endpoint(tls, remote, settings).map_err(|e| SyncFailure::Local {
        message: e.to_string(),
    })?;
    let connection = connect_on(&endpoint, remote, address, settings).await?;
    Ok(RelayConnection {
        endpoint,
        connection,
    })
}

/// Connects `endpoint` to the relay at `remote` (`address` as configured, for messages).
pub(crate) async fn connect_on(
    endpoint: &Endpoint,
    remote: SocketAddr,
    address: &str,
    settings: &TransportSettings,
) -> Result<quinn::Connection, SyncFailure> {
    let connecting = endpoint
        .connect(remote, tls::RELAY_SERVER_NAME)
        .map_err(|e| SyncFailure::BadAddress {
            address: address.to_owned(),
            reason: e.to_string(),
        })?;
    match tokio::time::timeout(settings.handshake_timeout, connecting).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(classify_connection_error(&e, address)),
        Err(_) => Err(unreachable(address, "the handshake timed out")),
    }
}

fn unreachable(address: &str, last: &str) -> SyncFailure {
    SyncFailure::Unreachable {
        address: address.to_owned(),
        attempts: 1,
        last: last.to_owned(),
    }
}

fn has_crypto_alert(code: TransportErrorCode) -> bool {
    (0x100..0x200).contains(&u64::from(code))
}

/// Turns a connection error seen by the device into a [`SyncFailure`]: the relay's
/// application close codes, then the TLS alerts (through
/// [`tls::classify_connection_error`]), then transport trouble (transient).
pub fn classify_connection_error(e: &ConnectionError, address: &str) -> SyncFailure {
    if let ConnectionError::ApplicationClosed(c) = e {
        let reason = String::from_utf8_lossy(&c.reason).into_owned();
        return match u32::try_from(c.error_code.into_inner()).unwrap_or(u32::MAX) {
            close::UNKNOWN_DEVICE => SyncFailure::UnknownDevice,
            close::WRONG_OFFICE => SyncFailure::WrongOffice,
            close::REVOKED => SyncFailure::Revoked,
            close::EXPIRED => SyncFailure::CertificateExpired,
            close::PROTOCOL => SyncFailure::RelayProtocol { message: reason },
            close::BUSY => unreachable(address, "the relay is busy"),
            close::SHUTTING_DOWN => unreachable(address, "the relay is shutting down"),
            close::INTERNAL => unreachable(address, "the relay had an internal failure"),
            _ => unreachable(
                address,
                &format!("the relay closed the connection ({reason})"),
            ),
        };
    }
    match tls::classify_connection_error(e) {
        FailureReason::Revoked => SyncFailure::Revoked,
        FailureReason::UnknownCertificate => SyncFailure::UnknownDevice,
        FailureReason::Expired => SyncFailure::CertificateExpired,
        FailureReason::RelayUntrusted => SyncFailure::RelayUntrusted {
            reason: match e {
                ConnectionError::TransportError(t) => t.reason.clone(),
                other => other.to_string(),
            },
        },
        FailureReason::Unreachable => unreachable(address, "no answer (timed out)"),
        FailureReason::Other => match e {
            ConnectionError::ConnectionClosed(c) if has_crypto_alert(c.error_code) => {
                SyncFailure::Handshake {
                    reason: c.to_string(),
                }
            }
            ConnectionError::TransportError(t) if has_crypto_alert(t.code) => {
                SyncFailure::Handshake {
                    reason: t.to_string(),
                }
            }
            ConnectionError::VersionMismatch => SyncFailure::Handshake {
                reason: "no common QUIC version".to_owned(),
            },
            ConnectionError::Reset => unreachable(address, "the relay reset the connection"),
            other => unreachable(address, &other.to_string()),
        },
    }
}

/// Turns a failed session run into a [`SyncFailure`]. A failure of this device's own
/// session is reported as such; a transport failure is explained by the connection's close
/// (a relay that refuses us closes the connection with a code and a reason), waiting a
/// moment for that close when only the stream has failed so far.
async fn classify_drive_error(
    e: &DriveError<SyncError>,
    connection: &quinn::Connection,
    address: &str,
) -> SyncFailure {
    let t = match e {
        DriveError::Session(s) => return session_failure(s),
        DriveError::Transport(t) => t,
    };
    if let Some(c) = t.connection_error()
        && !matches!(c, ConnectionError::LocallyClosed)
    {
        return classify_connection_error(c, address);
    }
    let closed = match connection.close_reason() {
        Some(reason) => Some(reason),
        None => tokio::time::timeout(Duration::from_millis(500), connection.closed())
            .await
            .ok(),
    };
    if let Some(reason) = closed
        && !matches!(reason, ConnectionError::LocallyClosed)
    {
        return classify_connection_error(&reason, address);
    }
    match t {
        QuicError::FrameTooLong { .. } => SyncFailure::RelayProtocol {
            message: t.to_string(),
        },
        _ => unreachable(address, &t.to_string()),
    }
}

fn session_failure(e: &SyncError) -> SyncFailure {
    match e {
        SyncError::Remote { code, message } => match code.as_str() {
            "unknown_device" => SyncFailure::UnknownDevice,
            "wrong_office" => SyncFailure::WrongOffice,
            "revoked" => SyncFailure::Revoked,
            "limit" => SyncFailure::SessionLimit,
            _ => SyncFailure::RelayProtocol {
                message: format!("{message} ({code})"),
            },
        },
        other => SyncFailure::Local {
            message: other.to_string(),
        },
    }
}

/// What one [`sync_once`] did over all its connections.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// The sessions' outcomes added up (documents sent and received, conflicts,
    /// round trips).
    pub outcome: SyncOutcome,
    /// Connections made (1 when nothing went wrong).
    pub connections: u32,
    /// Frame counters over all connections.
    pub stats: DriveStats,
    /// Wall time.
    pub elapsed: Duration,
    /// The device's certificate was renewed during this sync (the new credentials are in
    /// the store; the next connection uses them).
    pub renewed: bool,
}

fn add_outcome(total: &mut SyncOutcome, one: SyncOutcome) {
    total.docs_sent += one.docs_sent;
    total.docs_received += one.docs_received;
    total.round_trips += one.round_trips;
    for id in one.conflicted {
        if !total.conflicted.contains(&id) {
            total.conflicted.push(id);
        }
    }
    // The relay may refuse the same document for its data and for its sync message.
    for r in one.rejected {
        if !total.rejected.contains(&r) {
            total.rejected.push(r);
        }
    }
}

/// Syncs this device with its relay until both sides are caught up.
///
/// A lost connection is retried with exponential backoff ([`RetryPolicy`]); each new
/// connection starts a new session, which resumes from the per-relay state the store kept.
/// An attempt that made progress resets the attempt count; the deadline bounds the whole.
/// Refusals (revoked, unknown device, wrong office, untrusted relay, protocol errors) are
/// not retried.
pub async fn sync_once<P>(
    store: Arc<Store>,
    creds: &DeviceCredentials,
    options: &SyncOptions,
    mut on_progress: P,
) -> Result<SyncReport, SyncFailure>
where
    P: FnMut(Progress) + Send,
{
    let started = Instant::now();
    let address = options
        .relay
        .clone()
        .unwrap_or_else(|| creds.relay_address.clone());
    let remote = resolve(&address).await?;
    let tls = tls::client_config(creds).map_err(|e| SyncFailure::Local {
        message: format!("the device credentials are not usable: {e}"),
    })?;
    let endpoint =
        client_endpoint(tls, remote, &options.transport).map_err(|e| SyncFailure::Local {
            message: e.to_string(),
        })?;
    let relay = relay_id(creds);
    let mut report = SyncReport::default();
    let mut failures = 0u32;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let attempt = one_session(
            &endpoint,
            remote,
            &address,
            &store,
            &relay,
            creds,
            &options.transport,
            &mut report,
            &mut on_progress,
        )
        .await;
        let (failure, progressed) = match attempt {
            Ok(()) => {
                report.elapsed = started.elapsed();
                let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
                return Ok(report);
            }
            Err(f) => f,
        };
        if !failure.is_transient() {
            return Err(failure);
        }
        failures = if progressed { 1 } else { failures + 1 };
        let wait = options.retry.backoff(failures);
        let out_of_time = started.elapsed() + wait > options.retry.deadline;
        if failures >= options.retry.max_attempts || out_of_time {
            return Err(match failure {
                SyncFailure::Unreachable { address, last, .. } => SyncFailure::Unreachable {
                    address,
                    attempts,
                    last,
                },
                other => other,
            });
        }
        tracing::info!(
            attempt = attempts,
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "sync connection failed; retrying"
        );
        tokio::time::sleep(wait).await;
    }
}

/// One connection and one session. On failure, says whether the attempt made progress
/// (received at least one frame), which resets the retry count.
#[allow(clippy::too_many_arguments)]
async fn one_session<P>(
    endpoint: &Endpoint,
    remote: SocketAddr,
    address: &str,
    store: &Arc<Store>,
    relay: &str,
    creds: &DeviceCredentials,
    settings: &TransportSettings,
    report: &mut SyncReport,
    on_progress: &mut P,
) -> Result<(), (SyncFailure, bool)>
where
    P: FnMut(Progress) + Send,
{
    let connection = connect_on(endpoint, remote, address, settings)
        .await
        .map_err(|f| (f, false))?;
    report.connections += 1;
    let (send, recv) = match connection.open_bi().await {
        Ok(s) => s,
        Err(e) => return Err((classify_connection_error(&e, address), false)),
    };
    let actor = hex::decode(&store.info().actor_hex).map_err(|_| {
        (
            SyncFailure::Local {
                message: "the store's actor id is not hex".to_owned(),
            },
            false,
        )
    })?;
    let storage = Arc::clone(store);
    let offices = vec![creds.office.clone()];
    let mut session = blocking(move || Session::device(storage, relay, offices, actor))
        .map_err(|e| (session_failure(&e), false))?;
    let result = drive(
        &mut session,
        send,
        recv,
        crate::sync::MAX_FRAME_BYTES,
        settings.closing_timeout,
        |s: &Session<Arc<Store>>| on_progress(s.progress()),
    )
    .await;
    match result {
        Ok(stats) => {
            add_stats(&mut report.stats, stats);
            add_outcome(&mut report.outcome, session.outcome());
            on_progress(session.progress());
            if !report.renewed && super::certx::renewal_due(creds) {
                renew_credentials(&connection, store, creds, report).await;
            }
            connection.close(VarInt::from_u32(close::DONE), b"done");
            Ok(())
        }
        Err(e) => {
            let failure = classify_drive_error(&e, &connection, address).await;
            let progressed = session.progress().bytes_received > 0;
            add_outcome(&mut report.outcome, session.outcome());
            let code = if matches!(e, DriveError::Session(_)) {
                close::PROTOCOL
            } else {
                close::DONE
            };
            connection.close(VarInt::from_u32(code), b"session ended");
            Err((failure, progressed))
        }
    }
}

/// Renews this device's certificate on the finished sync connection and keeps the new
/// credentials in the store. A failure is logged and changes nothing: the current
/// certificate is still valid, and the next sync asks again.
async fn renew_credentials(
    connection: &quinn::Connection,
    store: &Arc<Store>,
    creds: &DeviceCredentials,
    report: &mut SyncReport,
) {
    match super::certx::renew(connection, creds).await {
        Ok(new) => {
            let stored = blocking(|| super::enroll::store_credentials(store, &new));
            match stored {
                Ok(()) => {
                    tracing::info!(device = %new.device_id, "device certificate renewed");
                    report.renewed = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot keep the renewed certificate; the current one stays in use");
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "certificate renewal failed; the current certificate stays in use")
        }
    }
}

fn add_stats(total: &mut DriveStats, one: DriveStats) {
    total.frames_in += one.frames_in;
    total.frames_out += one.frames_out;
    total.bytes_in += one.bytes_in;
    total.bytes_out += one.bytes_out;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
