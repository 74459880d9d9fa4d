//! Helpers of the sync benchmark (`benches/sync.rs`; results in `docs/benchmarks.md`).
//!
//! - [`Pki`]: a throwaway office CA (the engine's real PKI) with a relay certificate and
//!   device credentials;
//! - [`serve`]: a relay accept loop over real QUIC (the engine's transport and relay
//!   sessions; the same steps as `musubi-relay serve` without its device registry);
//! - [`device_sync`]: one device sync over a new QUIC connection, with frame and UDP
//!   byte counts;
//! - [`sync_in_process`]: a device session and a relay session driven against each other
//!   in memory, one flight at a time (no transport);
//! - [`samod_first_sync`]: the same documents synced between two `samod` repos
//!   (automerge-repo for Rust) over an in-process channel that counts bytes.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{FutureExt as _, StreamExt as _};
use musubi_engine::identifiers::{Verdict, check_office_number};
use musubi_engine::net::pki::{
    self, CertKey, DeviceSubject, OfficeCa, issue_device_cert_now, issue_relay_cert,
};
use musubi_engine::net::quic::{self, DriveStats, TransportSettings, close};
use musubi_engine::net::tls::{self, DeviceCredentials};
use musubi_engine::sync::{
    MAX_FRAME_BYTES, PeerAccess, Session, SyncError, SyncOutcome, SyncStorage,
};
use quinn::{Endpoint, VarInt};
use serde_json::Value;

use crate::{OFFICE, survey_variant};
use musubi_engine::doc::{Author, CareDoc, Snapshot};
use musubi_engine::ids::DocId;
use musubi_engine::schema::DocKind;
use musubi_engine::store::{InitOptions, SecretString, Store};
use musubi_engine::sync::frame::heads_of;
use musubi_engine::sync::sharing::share_keys;
use musubi_engine::sync::storage::SyncWrite;

/// A throwaway office CA with its relay certificate.
pub struct Pki {
    /// The office CA.
    pub ca: OfficeCa,
    /// The relay's certificate and key.
    pub relay: CertKey,
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    /// A new CA and relay certificate (ECDSA P-256, as at a real office).
    pub fn new() -> Pki {
        let ca = OfficeCa::generate("bench-relay").unwrap();
        let relay = issue_relay_cert(&ca, &[]).unwrap();
        Pki { ca, relay }
    }

    /// Credentials of a new device of `office`, as enrollment would install them.
    pub fn device(&self, name: &str, office: &str) -> DeviceCredentials {
        let subject = DeviceSubject::new_random(name, office).unwrap();
        let cert = issue_device_cert_now(&self.ca, &subject).unwrap();
        DeviceCredentials {
            device_id: subject.device_id,
            device_name: subject.device_name,
            office: subject.office,
            cert_pem: cert.cert_pem,
            key_pem: cert.key_pem,
            office_ca_pem: self.ca.cert_pem().to_owned(),
            relay_address: "127.0.0.1:9".to_owned(),
        }
    }
}

const PASSPHRASE: &str = "bench passphrase 結び目";

/// The passphrase of every bench store.
pub fn passphrase() -> SecretString {
    SecretString::from(PASSPHRASE.to_owned())
}

/// A new store of office [`OFFICE`] in `dir` (cheap key derivation, for benches).
pub fn init_store(dir: &Path, name: &str) -> Store {
    Store::init(
        dir,
        &passphrase(),
        InitOptions {
            office: OFFICE.to_owned(),
            device_name: name.to_owned(),
            staff: None,
            recovery_recipient: None,
            kdf_work_factor: Some(10),
        },
    )
    .unwrap()
}

/// Survey variant `j` of `base`, as a sync writes a document new to the store: the write
/// and the saved bytes.
pub fn survey_insert(base: &Value, j: usize, office: &str, title: String) -> (SyncWrite, Vec<u8>) {
    let author = Author {
        device: "bench".to_owned(),
        device_name: "bench".to_owned(),
        staff: None,
        action: "import".to_owned(),
        time_ms: 1_790_000_000_000,
    };
    let id = DocId::random();
    let mut doc = CareDoc::create(
        id,
        DocKind::Survey,
        &survey_variant_wide(base, j),
        automerge::ActorId::random(),
        &author,
    )
    .unwrap();
    let (snapshot, am) = Snapshot::load(doc.save()).unwrap();
    let bytes = snapshot.as_bytes().to_vec();
    let write = SyncWrite::Insert {
        id,
        kind: "survey".to_owned(),
        office: office.to_owned(),
        title,
        heads: heads_of(&am),
        keys: share_keys(&am, "survey"),
        bytes: snapshot,
    };
    (write, bytes)
}

/// The automerge actor of a store, as bytes.
pub fn actor_of(store: &Store) -> Vec<u8> {
    let hex = &store.info().actor_hex;
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// A valid 事業所番号 derived from `i` (prefix `1370`, six digits of `i`, check digit).
pub fn office_number(i: usize) -> String {
    let prefix = format!("1370{:05}", i % 100_000);
    (0..10)
        .map(|d| format!("{prefix}{d}"))
        .find(|n| check_office_number(n) == Verdict::Valid)
        .unwrap()
}

/// The example survey with more fields varied than [`survey_variant`]: the subject's
/// name, the 被保険者番号, and the first special note's text.
pub fn survey_variant_wide(base: &Value, i: usize) -> Value {
    let mut v = survey_variant(base, i);
    if let Some(subject) = v.get_mut("subject").and_then(Value::as_object_mut) {
        subject.insert(
            "insured_number".to_owned(),
            Value::String(format!("{:010}", i % 10_000_000_000)),
        );
    }
    if let Some(note) = v
        .get_mut("special_notes")
        .and_then(Value::as_array_mut)
        .and_then(|a| a.first_mut())
        .and_then(Value::as_object_mut)
        && let Some(Value::String(text)) = note.get_mut("text")
    {
        text.push_str(&format!("（記録{i}）"));
    }
    v
}

/// The QUIC client configuration of a device (its certificate, the office CA pinned).
pub fn client_config(
    creds: &DeviceCredentials,
    settings: &TransportSettings,
) -> quinn::ClientConfig {
    let tls = tls::client_config(creds).unwrap();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(settings.transport_config());
    config
}

/// A client endpoint on an ephemeral loopback port (no default configuration: each
/// connection brings its device's).
pub fn client_endpoint() -> Endpoint {
    Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap()
}

/// Counters of a relay accept loop.
#[derive(Debug, Default)]
pub struct RelayCounters {
    /// Sessions that completed.
    pub ok: AtomicU64,
    /// Connections or sessions that failed.
    pub failed: AtomicU64,
}

/// Accepts connections on `endpoint` until it is closed and runs one relay session per
/// connection on `storage`, with access to the office named in the device certificate.
pub async fn serve<S>(endpoint: Endpoint, storage: S, counters: Arc<RelayCounters>)
where
    S: SyncStorage + Clone + Send + Sync + 'static,
{
    let settings = TransportSettings::default();
    // The relay's real rules (schema, care rules, evidence), so its CPU is measured; made
    // once and shared by every session, as the relay does.
    let rules: Arc<dyn musubi_engine::sync::admission::Admission> =
        Arc::new(musubi_engine::admit::rules::Rules::bundled().unwrap());
    while let Some(incoming) = endpoint.accept().await {
        let storage = storage.clone();
        let counters = Arc::clone(&counters);
        let rules = Arc::clone(&rules);
        tokio::spawn(async move {
            let ok = serve_one(incoming, storage, rules, &settings).await;
            let counter = if ok { &counters.ok } else { &counters.failed };
            counter.fetch_add(1, Ordering::Relaxed);
        });
    }
}

async fn serve_one<S>(
    incoming: quinn::Incoming,
    storage: S,
    rules: Arc<dyn musubi_engine::sync::admission::Admission>,
    settings: &TransportSettings,
) -> bool
where
    S: SyncStorage + Send + 'static,
{
    let Ok(conn) = incoming.await else {
        return false;
    };
    let Some(certs) = quic::peer_certificates(&conn) else {
        return false;
    };
    let Some(first) = certs.first() else {
        return false;
    };
    let Ok(id) = pki::peer_identity(first.as_ref()) else {
        return false;
    };
    let Ok(Ok((send, recv))) =
        tokio::time::timeout(Duration::from_secs(60), conn.accept_bi()).await
    else {
        return false;
    };
    let access = PeerAccess {
        device_id: id.device_id,
        device_name: id.device_name,
        offices: vec![id.office],
    };
    let Ok(mut session) = Session::relay(storage, access, rules) else {
        return false;
    };
    let result = quic::drive(
        &mut session,
        send,
        recv,
        MAX_FRAME_BYTES,
        settings.closing_timeout,
        |_| {},
    )
    .await;
    if result.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
        true
    } else {
        conn.close(VarInt::from_u32(close::PROTOCOL), b"relay session failed");
        false
    }
}

/// What one device sync over QUIC did.
#[derive(Clone, Debug, Default)]
pub struct DeviceRun {
    /// The device session's outcome (round trips, documents, frame bytes).
    pub outcome: SyncOutcome,
    /// Frame counts and bytes on the sync stream (length prefixes included).
    pub stats: DriveStats,
    /// UDP payload bytes sent and received by the device's connection (QUIC and TLS
    /// included: handshake, certificates, acknowledgements, packet headers).
    pub udp_tx: u64,
    /// See `udp_tx`.
    pub udp_rx: u64,
    /// From the connection attempt to the end of the session.
    pub elapsed: Duration,
    /// The QUIC + TLS handshake alone.
    pub handshake: Duration,
}

impl DeviceRun {
    /// Frame bytes in both directions (prefixes included).
    pub fn frame_bytes(&self) -> u64 {
        self.stats.bytes_in + self.stats.bytes_out
    }

    /// UDP payload bytes in both directions.
    pub fn udp_bytes(&self) -> u64 {
        self.udp_tx + self.udp_rx
    }
}

/// Connects to the relay at `addr` with `config` (QUIC + mutual TLS 1.3); returns the
/// connection and how long the handshake took.
pub async fn connect_device(
    endpoint: &Endpoint,
    config: quinn::ClientConfig,
    addr: SocketAddr,
) -> Result<(quinn::Connection, Duration), String> {
    let started = Instant::now();
    let conn = endpoint
        .connect_with(config, addr, tls::RELAY_SERVER_NAME)
        .map_err(|e| format!("connect: {e}"))?
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    Ok((conn, started.elapsed()))
}

/// Runs one device session on `storage` over a new stream of `conn` until both sides are
/// finished, then closes the connection. `elapsed` and `handshake` of the result are left
/// for the caller.
pub async fn device_session<S>(
    conn: &quinn::Connection,
    storage: S,
    relay_key: &str,
    office: &str,
    actor: Vec<u8>,
) -> Result<DeviceRun, String>
where
    S: SyncStorage + Send + 'static,
{
    let (send, recv) = conn.open_bi().await.map_err(|e| format!("stream: {e}"))?;
    let offices = vec![office.to_owned()];
    let mut session =
        tokio::task::block_in_place(|| Session::device(storage, relay_key, offices, actor))
            .map_err(|e| format!("session: {e}"))?;
    let stats = quic::drive(
        &mut session,
        send,
        recv,
        MAX_FRAME_BYTES,
        TransportSettings::default().closing_timeout,
        |_| {},
    )
    .await
    .map_err(|e| format!("sync: {e}"))?;
    let udp = conn.stats();
    conn.close(VarInt::from_u32(close::DONE), b"done");
    Ok(DeviceRun {
        outcome: session.outcome(),
        stats,
        udp_tx: udp.udp_tx.bytes,
        udp_rx: udp.udp_rx.bytes,
        ..DeviceRun::default()
    })
}

/// Connects to the relay and runs one device session (see [`connect_device`] and
/// [`device_session`]).
pub async fn device_sync<S>(
    endpoint: &Endpoint,
    config: quinn::ClientConfig,
    addr: SocketAddr,
    storage: S,
    relay_key: &str,
    office: &str,
    actor: Vec<u8>,
) -> Result<DeviceRun, String>
where
    S: SyncStorage + Send + 'static,
{
    let started = Instant::now();
    let (conn, handshake) = connect_device(endpoint, config, addr).await?;
    let mut run = device_session(&conn, storage, relay_key, office, actor).await?;
    run.elapsed = started.elapsed();
    run.handshake = handshake;
    Ok(run)
}

/// UDP datagrams the kernel dropped because a socket's receive buffer was full
/// (`RcvbufErrors` in `/proc/net/snmp`, for the whole machine).
pub fn udp_receive_buffer_drops() -> u64 {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// What [`sync_in_process`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InProcessRun {
    /// Flights from the device that the relay answered.
    pub round_trips: u64,
    /// Frame bytes device → relay and relay → device (4-byte prefixes included, as on
    /// a stream).
    pub bytes_up: u64,
    /// See `bytes_up`.
    pub bytes_down: u64,
    /// Frames in both directions.
    pub frames: u64,
}

/// Frames handed to a session between two flushes in [`sync_in_process`]: the QUIC
/// driver's most (`MAX_BATCH` in `engine/src/net/quic.rs`).
const IN_PROCESS_BATCH: usize = 64;

/// Drives a device session and a relay session against each other in memory: every frame
/// one side has queued is delivered as one flight, in batches of at most 64 frames each
/// followed by a flush, until both are finished. Errors if a session fails or the
/// exchange stalls.
pub fn sync_in_process<A, B>(
    dev: &mut Session<A>,
    relay: &mut Session<B>,
) -> Result<InProcessRun, String>
where
    A: SyncStorage,
    B: SyncStorage,
{
    let mut run = InProcessRun::default();
    let err = |side: &str, e: SyncError| format!("{side}: {e}");
    loop {
        let up: Vec<Vec<u8>> = std::iter::from_fn(|| dev.poll_transmit()).collect();
        // Batches of at most `IN_PROCESS_BATCH` frames, each followed by a flush, as the
        // QUIC driver hands them over (a session releases what it settled at a flush).
        for batch in up.chunks(IN_PROCESS_BATCH) {
            for f in batch {
                run.bytes_up += 4 + f.len() as u64;
                run.frames += 1;
            }
            relay.handle_frames(batch).map_err(|e| err("relay", e))?;
            relay.flush().map_err(|e| err("relay", e))?;
        }
        let down: Vec<Vec<u8>> = std::iter::from_fn(|| relay.poll_transmit()).collect();
        for batch in down.chunks(IN_PROCESS_BATCH) {
            for f in batch {
                run.bytes_down += 4 + f.len() as u64;
                run.frames += 1;
            }
            dev.handle_frames(batch).map_err(|e| err("device", e))?;
            dev.flush().map_err(|e| err("device", e))?;
        }
        if dev.is_finished() && relay.is_finished() {
            run.round_trips = dev.outcome().round_trips;
            return Ok(run);
        }
        if up.is_empty() && down.is_empty() {
            return Err("the sessions stalled".to_owned());
        }
    }
}

// ---------------------------------------------------------------------------------------
// samod

/// Where a samod repo keeps its documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SamodStorage {
    /// `samod::storage::InMemoryStorage`.
    Memory,
    /// `samod::storage::TokioFilesystemStorage` in a directory.
    Filesystem,
}

/// What [`samod_first_sync`] measured.
#[derive(Clone, Debug, Default)]
pub struct SamodRun {
    /// From dialing to every document found on the receiving repo with the sender's heads.
    pub elapsed: Duration,
    /// Bytes of samod messages sender → receiver and back (CBOR message bodies; no
    /// framing: the channel carries whole messages).
    pub bytes_down: u64,
    /// See `bytes_down`.
    pub bytes_up: u64,
    /// Messages in both directions.
    pub messages: u64,
    /// Documents whose heads matched at the end.
    pub matched: usize,
    /// Time to `create` the documents on the sending repo (not part of `elapsed`).
    pub create: Duration,
    /// The time limit ran out before every document arrived.
    pub timed_out: bool,
}

#[derive(Default)]
struct Counters {
    down: AtomicU64,
    up: AtomicU64,
    messages: AtomicU64,
}

/// A samod dialer that connects to an acceptor over two in-process channels and counts
/// what crosses them.
struct CountingDialer {
    acceptor: samod::AcceptorHandle,
    counters: Arc<Counters>,
}

fn counted(
    rx: futures::channel::mpsc::UnboundedReceiver<Vec<u8>>,
    counter: Arc<Counters>,
    down: bool,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::convert::Infallible>> + Send + Unpin + 'static
{
    rx.map(move |m| {
        let c = if down { &counter.down } else { &counter.up };
        c.fetch_add(m.len() as u64, Ordering::Relaxed);
        counter.messages.fetch_add(1, Ordering::Relaxed);
        Ok(m)
    })
}

impl samod::Dialer for CountingDialer {
    type Error = std::convert::Infallible;

    fn url(&self) -> samod::Url {
        samod::Url::parse("channel://bench-relay").unwrap()
    }

    fn connect(
        &self,
    ) -> futures::future::BoxFuture<
        'static,
        Result<samod::transport::Transport, samod::DialError<Self::Error>>,
    > {
        let acceptor = self.acceptor.clone();
        let counters = Arc::clone(&self.counters);
        async move {
            let (to_acceptor, from_dialer) = futures::channel::mpsc::unbounded::<Vec<u8>>();
            let (to_dialer, from_acceptor) = futures::channel::mpsc::unbounded::<Vec<u8>>();
            acceptor
                .accept(samod::transport::Transport::new(
                    counted(from_dialer, Arc::clone(&counters), false),
                    to_dialer,
                ))
                .map_err(samod::DialError::transient)?;
            Ok(samod::transport::Transport::new(
                counted(from_acceptor, counters, true),
                to_acceptor,
            ))
        }
        .boxed()
    }
}

async fn samod_repo(storage: SamodStorage, dir: &Path) -> samod::Repo {
    let handle = tokio::runtime::Handle::current();
    match storage {
        SamodStorage::Memory => {
            samod::Repo::builder(handle)
                .with_storage(samod::storage::InMemoryStorage::new())
                .load()
                .await
        }
        SamodStorage::Filesystem => {
            samod::Repo::builder(handle)
                .with_storage(samod::storage::TokioFilesystemStorage::new(dir))
                .load()
                .await
        }
    }
}

/// samod's first sync of `docs` (each `Automerge::save()` bytes): a "relay" repo creates
/// every document, a fresh "device" repo dials it and `find`s every document id,
/// `concurrency` at a time (automerge-repo has no catalog exchange: a peer asks for the
/// ids it knows). Timed from the dial until every document is on the device with the
/// relay's heads, or until `limit` (then `timed_out` is set and `matched` says how far it
/// got).
pub async fn samod_first_sync(
    docs: &[Vec<u8>],
    storage: SamodStorage,
    dir: &Path,
    concurrency: usize,
    limit: Duration,
) -> Result<SamodRun, String> {
    let relay = samod_repo(storage, &dir.join("relay")).await;
    let device = samod_repo(storage, &dir.join("device")).await;
    let started = Instant::now();
    let mut heads = Vec::with_capacity(docs.len());
    for bytes in docs {
        let doc = automerge::Automerge::load(bytes).map_err(|e| format!("load: {e}"))?;
        let mut h = doc.get_heads();
        h.sort();
        let handle = relay.create(doc).await.map_err(|_| "relay stopped")?;
        heads.push((handle.document_id().clone(), h));
    }
    let create = started.elapsed();
    let counters = Arc::new(Counters::default());
    let acceptor = relay
        .make_acceptor(samod::Url::parse("channel://bench-relay").unwrap())
        .map_err(|_| "relay stopped")?;
    let dialer = CountingDialer {
        acceptor,
        counters: Arc::clone(&counters),
    };
    let matched = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let work = async {
        let dial = device
            .dial(samod::BackoffConfig::default(), Arc::new(dialer))
            .map_err(|_| "device stopped")?;
        dial.established()
            .await
            .map_err(|e| format!("dial: {e:?}"))?;
        let fetches = heads.iter().map(|(id, want)| {
            let find = device.find(id.clone());
            let matched = Arc::clone(&matched);
            async move {
                let handle = find
                    .await
                    .map_err(|_| "device stopped".to_owned())?
                    .ok_or_else(|| "a document was not found".to_owned())?;
                // `find` resolves once a peer delivered the document; wait until it also
                // has the relay's heads (normally already true).
                loop {
                    let mut got = handle.with_document(|d| d.get_heads());
                    got.sort();
                    if got == *want {
                        matched.fetch_add(1, Ordering::Relaxed);
                        return Ok::<(), String>(());
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
        let mut stream = futures::stream::iter(fetches).buffer_unordered(concurrency.max(1));
        while let Some(r) = stream.next().await {
            r?;
        }
        Ok::<_, String>(dial)
    };
    let outcome = tokio::time::timeout(limit, work).await;
    let elapsed = started.elapsed();
    let timed_out = outcome.is_err();
    if let Ok(done) = outcome {
        let dial = done?;
        dial.close();
        device.stop().await;
        relay.stop().await;
    }
    // After a timeout the repos are left running: the caller's process exits.
    Ok(SamodRun {
        elapsed,
        bytes_down: counters.down.load(Ordering::Relaxed),
        bytes_up: counters.up.load(Ordering::Relaxed),
        messages: counters.messages.load(Ordering::Relaxed),
        matched: usize::try_from(matched.load(Ordering::Relaxed)).unwrap_or(usize::MAX),
        create,
        timed_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::example_survey;

    #[test]
    fn office_numbers_are_valid_and_distinct() {
        let a = office_number(1);
        let b = office_number(2);
        assert_ne!(a, b);
        assert_eq!(check_office_number(&a), Verdict::Valid);
        assert_eq!(a.len(), 10);
    }

    #[test]
    fn wide_variants_stay_valid() {
        let base = example_survey();
        let v = survey_variant_wide(&base, 12_345);
        let (_, report) = musubi_engine::schema::validate_document(&v).unwrap();
        assert!(report.is_ok(), "{:?}", report.issues);
        assert_ne!(v, survey_variant(&base, 12_345));
    }
}
