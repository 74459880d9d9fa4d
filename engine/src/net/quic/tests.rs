//! Transport tests on real QUIC over 127.0.0.1 with real certificates (a throwaway CA made
//! with rcgen, mutual TLS 1.3).

use super::*;
use crate::engine::Engine;
use crate::net::pki::{
    DeviceSubject, OfficeCa, PeerIdentity, issue_device_cert, issue_device_cert_now,
    issue_relay_cert,
};
use crate::net::tls::{NothingRevoked, RevocationCheck};
use crate::store::{InitOptions, SecretString};
use crate::sync::PeerAccess;
use std::collections::VecDeque;
use std::path::Path;
use std::time::SystemTime;

const OFFICE: &str = "1370100016";

/// An office CA with its relay certificate (the real PKI of `net::pki`).
struct Office {
    ca: OfficeCa,
    relay: crate::net::pki::CertKey,
}

impl Office {
    fn new() -> Office {
        let ca = OfficeCa::generate("relay-test").unwrap();
        let relay = issue_relay_cert(&ca, &[]).unwrap();
        Office { ca, relay }
    }

    fn server_tls(&self, revocation: Arc<dyn RevocationCheck>) -> rustls::ServerConfig {
        tls::server_config(&self.relay, self.ca.cert_pem(), revocation).unwrap()
    }

    fn creds_for(
        &self,
        subject: &DeviceSubject,
        cert: crate::net::pki::CertKey,
    ) -> DeviceCredentials {
        DeviceCredentials {
            device_id: subject.device_id.clone(),
            device_name: subject.device_name.clone(),
            office: subject.office.clone(),
            cert_pem: cert.cert_pem,
            key_pem: cert.key_pem,
            office_ca_pem: self.ca.cert_pem().to_owned(),
            relay_address: "127.0.0.1:9".to_owned(),
        }
    }

    fn device(&self, name: &str, office: &str) -> DeviceCredentials {
        let subject = DeviceSubject::new_random(name, office).unwrap();
        let cert = issue_device_cert_now(&self.ca, &subject).unwrap();
        self.creds_for(&subject, cert)
    }
}

/// A connected pair: (server endpoint, server connection, client endpoint, client
/// connection).
async fn pair(
    settings: &TransportSettings,
) -> (Endpoint, quinn::Connection, Endpoint, quinn::Connection) {
    let office = Office::new();
    let creds = office.device("tablet-1", OFFICE);
    let server = server_endpoint(
        office.server_tls(Arc::new(NothingRevoked)),
        "127.0.0.1:0".parse().unwrap(),
        settings,
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    let client = client_endpoint(tls::client_config(&creds).unwrap(), addr, settings).unwrap();
    let accept = async {
        let incoming = server.accept().await.unwrap();
        incoming.await.unwrap()
    };
    let connect = async {
        client
            .connect(addr, tls::RELAY_SERVER_NAME)
            .unwrap()
            .await
            .unwrap()
    };
    let (s, c) = tokio::join!(accept, connect);
    (server, s, client, c)
}

/// Test session: sends `count` frames of `size` bytes at once (the device also waits for
/// as many answers); the answering side echoes every frame it receives.
struct Echo {
    out: VecDeque<Vec<u8>>,
    received: usize,
    expect: usize,
    echo: bool,
    flushes: usize,
    /// The last `poll_transmit` answered `None` and nothing was handled since.
    drained: bool,
    /// `poll_transmit` calls made while `drained` (each one a blocking call for nothing).
    asked_drained: usize,
}

impl Echo {
    fn sender(count: usize, size: usize) -> Echo {
        Echo {
            out: (0..count).map(|i| frame_of(i, size)).collect(),
            received: 0,
            expect: count,
            echo: false,
            flushes: 0,
            drained: false,
            asked_drained: 0,
        }
    }
    fn echoer(count: usize) -> Echo {
        Echo {
            out: VecDeque::new(),
            received: 0,
            expect: count,
            echo: true,
            flushes: 0,
            drained: false,
            asked_drained: 0,
        }
    }
}

fn frame_of(i: usize, size: usize) -> Vec<u8> {
    let mut f = vec![u8::try_from(i % 251).unwrap(); size.max(8)];
    f[..8].copy_from_slice(&(i as u64).to_be_bytes());
    f
}

#[derive(Debug, thiserror::Error)]
#[error("echo: {0}")]
struct EchoError(&'static str);

impl FrameSession for Echo {
    type Error = EchoError;
    fn handle_frame(&mut self, frame: &[u8]) -> Result<(), EchoError> {
        let n = u64::from_be_bytes(frame[..8].try_into().map_err(|_| EchoError("short"))?);
        if n != self.received as u64 {
            return Err(EchoError("out of order"));
        }
        if frame != frame_of(self.received, frame.len()).as_slice() {
            return Err(EchoError("corrupted"));
        }
        self.received += 1;
        self.drained = false;
        if self.echo {
            self.out.push_back(frame.to_vec());
        }
        Ok(())
    }
    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.drained {
            self.asked_drained += 1;
        }
        let next = self.out.pop_front();
        self.drained = next.is_none();
        next
    }
    fn flush(&mut self) -> Result<(), EchoError> {
        self.flushes += 1;
        Ok(())
    }
    fn is_finished(&self) -> bool {
        self.received == self.expect && self.out.is_empty()
    }
}

async fn run_echo(count: usize, size: usize, sender_on_both: bool) {
    let settings = TransportSettings::default();
    let (_server, sconn, client, cconn) = pair(&settings).await;
    let device = async {
        let (send, recv) = cconn.open_bi().await.unwrap();
        let mut s = Echo::sender(count, size);
        let stats = drive(
            &mut s,
            send,
            recv,
            1 << 20,
            settings.closing_timeout,
            |_| {},
        )
        .await
        .unwrap();
        cconn.close(VarInt::from_u32(close::DONE), b"done");
        (s, stats)
    };
    let relay = async {
        let (send, recv) = sconn.accept_bi().await.unwrap();
        let mut s = if sender_on_both {
            Echo::sender(count, size)
        } else {
            Echo::echoer(count)
        };
        let stats = drive(
            &mut s,
            send,
            recv,
            1 << 20,
            settings.closing_timeout,
            |_| {},
        )
        .await
        .unwrap();
        let closed = sconn.closed().await;
        (s, stats, closed)
    };
    let ((d, dstats), (r, rstats, closed)) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(device, relay)
    })
    .await
    .expect("the exchange finishes");
    assert_eq!(d.received, count);
    assert_eq!(r.received, count);
    assert_eq!(dstats.frames_out, count as u64);
    assert_eq!(dstats.frames_in, count as u64);
    assert_eq!(rstats.frames_in, count as u64);
    assert_eq!(dstats.bytes_out, rstats.bytes_in);
    assert!(d.flushes >= 1 && d.flushes <= count);
    // A session that answered `None` is not asked again before it takes frames.
    assert_eq!((d.asked_drained, r.asked_drained), (0, 0));
    assert!(
        matches!(closed, ConnectionError::ApplicationClosed(ref c) if c.error_code == VarInt::from_u32(close::DONE)),
        "{closed:?}"
    );
    client.wait_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_exchange_completes_and_closes_cleanly() {
    run_echo(50, 300, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_sending_much_at_once_does_not_deadlock() {
    // 96 frames of 256 KiB each way, all queued before either side reads: more than the
    // stream windows and queues hold, so a driver that stopped reading while writing
    // would hang here.
    run_echo(96, 256 * 1024, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_round_trip_and_end_cleanly() {
    let settings = TransportSettings::default();
    let (_server, sconn, _client, cconn) = pair(&settings).await;
    let (mut send, _r) = cconn.open_bi().await.unwrap();
    let bodies = [vec![], vec![7u8], vec![1u8; 100_000]];
    for b in &bodies {
        write_frame(&mut send, b, 1 << 20).await.unwrap();
    }
    send.finish().unwrap();
    let (_s, mut recv) = sconn.accept_bi().await.unwrap();
    for b in &bodies {
        assert_eq!(
            read_frame(&mut recv, 1 << 20).await.unwrap().as_ref(),
            Some(b)
        );
    }
    assert_eq!(read_frame(&mut recv, 1 << 20).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_truncated_frames_are_refused() {
    let settings = TransportSettings::default();
    let (_server, sconn, _client, cconn) = pair(&settings).await;

    // Too long: refused from the header, before any allocation.
    let (mut send, _r) = cconn.open_bi().await.unwrap();
    send.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    send.write_all(b"xx").await.unwrap();
    let (_s, mut recv) = sconn.accept_bi().await.unwrap();
    let err = read_frame(&mut recv, 1024).await.unwrap_err();
    assert!(
        matches!(err, QuicError::FrameTooLong { len, limit: 1024 } if len == u64::from(u32::MAX)),
        "{err:?}"
    );

    // The stream ends inside a frame.
    let (mut send, _r) = cconn.open_bi().await.unwrap();
    send.write_all(&10u32.to_be_bytes()).await.unwrap();
    send.write_all(b"abc").await.unwrap();
    send.finish().unwrap();
    let (_s, mut recv) = sconn.accept_bi().await.unwrap();
    assert!(matches!(
        read_frame(&mut recv, 1024).await,
        Err(QuicError::Truncated)
    ));

    // The stream ends inside a header.
    let (mut send, _r) = cconn.open_bi().await.unwrap();
    send.write_all(&[0, 0]).await.unwrap();
    send.finish().unwrap();
    let (_s, mut recv) = sconn.accept_bi().await.unwrap();
    assert!(matches!(
        read_frame(&mut recv, 1024).await,
        Err(QuicError::Truncated)
    ));

    // Writing refuses a body over the limit.
    let (mut send, _r) = cconn.open_bi().await.unwrap();
    assert!(matches!(
        write_frame(&mut send, &[0u8; 2000], 1024).await,
        Err(QuicError::FrameTooLong { len: 2000, .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_error_reaches_the_caller_and_the_peer_sees_the_stream_end() {
    let settings = TransportSettings::default();
    let (_server, sconn, _client, cconn) = pair(&settings).await;
    let device = async {
        let (send, recv) = cconn.open_bi().await.unwrap();
        // Frames numbered from 5: the echoer expects 0 first and refuses.
        let mut s = Echo::sender(3, 16);
        s.out = (5..8).map(|i| frame_of(i, 16)).collect();
        drive(&mut s, send, recv, 1024, Duration::from_secs(2), |_| {}).await
    };
    let relay = async {
        let (send, recv) = sconn.accept_bi().await.unwrap();
        let mut s = Echo::echoer(3);
        let r = drive(&mut s, send, recv, 1024, Duration::from_secs(2), |_| {}).await;
        sconn.close(VarInt::from_u32(close::PROTOCOL), b"out of order");
        r
    };
    let (d, r) = tokio::join!(device, relay);
    assert!(
        matches!(r, Err(DriveError::Session(EchoError("out of order")))),
        "{r:?}"
    );
    let d = d.unwrap_err();
    let DriveError::Transport(t) = &d else {
        panic!("expected a transport error, got {d:?}");
    };
    let failure = match t.connection_error() {
        Some(c) => classify_connection_error(c, "127.0.0.1:1"),
        None => classify_connection_error(&cconn.closed().await, "127.0.0.1:1"),
    };
    assert_eq!(
        failure,
        SyncFailure::RelayProtocol {
            message: "out of order".to_owned()
        }
    );
}

#[test]
fn refusal_codes_and_tls_alerts_map_to_clear_failures() {
    let app = |code: u32, reason: &str| {
        ConnectionError::ApplicationClosed(quinn::ApplicationClose {
            error_code: VarInt::from_u32(code),
            reason: reason.as_bytes().to_vec().into(),
        })
    };
    let peer_alert = |alert: u8| {
        ConnectionError::ConnectionClosed(quinn::ConnectionClose {
            error_code: TransportErrorCode::crypto(alert),
            frame_type: None,
            reason: Vec::new().into(),
        })
    };
    let a = "relay:1";
    assert_eq!(
        classify_connection_error(&app(close::UNKNOWN_DEVICE, ""), a),
        SyncFailure::UnknownDevice
    );
    assert_eq!(
        classify_connection_error(&app(close::WRONG_OFFICE, ""), a),
        SyncFailure::WrongOffice
    );
    assert_eq!(
        classify_connection_error(&app(close::REVOKED, ""), a),
        SyncFailure::Revoked
    );
    assert!(classify_connection_error(&app(close::BUSY, ""), a).is_transient());
    assert!(classify_connection_error(&app(close::SHUTTING_DOWN, ""), a).is_transient());
    assert_eq!(
        classify_connection_error(&peer_alert(44), a),
        SyncFailure::Revoked
    );
    assert_eq!(
        classify_connection_error(&peer_alert(45), a),
        SyncFailure::CertificateExpired
    );
    assert_eq!(
        classify_connection_error(&peer_alert(48), a),
        SyncFailure::UnknownDevice
    );
    assert!(classify_connection_error(&ConnectionError::TimedOut, a).is_transient());
    assert!(!SyncFailure::Revoked.is_transient());
    // Messages say what happened and what to do.
    assert!(SyncFailure::Revoked.to_string().contains("revoked"));
    assert!(
        SyncFailure::Revoked
            .to_string()
            .contains("contact the office")
    );
}

#[test]
fn backoff_grows_and_is_capped() {
    let p = RetryPolicy {
        max_attempts: 5,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
        deadline: Duration::from_secs(10),
    };
    let b1 = p.backoff(1);
    let b3 = p.backoff(3);
    let b10 = p.backoff(10);
    assert!(b1 >= Duration::from_millis(100) && b1 <= Duration::from_millis(125));
    assert!(b3 >= Duration::from_millis(400) && b3 <= Duration::from_millis(500));
    assert!(b10 >= Duration::from_secs(1) && b10 <= Duration::from_millis(1250));
}

// ---------------------------------------------------------------------------------------
// sync_once against a small in-test relay (real stores, real sessions, real QUIC)

fn new_store(dir: &Path, name: &str) -> Arc<Store> {
    let pass = SecretString::from("test passphrase".to_owned());
    let store = Store::init(
        dir,
        &pass,
        InitOptions {
            office: OFFICE.to_owned(),
            device_name: name.to_owned(),
            staff: None,
            recovery_recipient: None,
            kdf_work_factor: Some(10),
        },
    )
    .unwrap();
    Arc::new(store)
}

/// A device store holding the example survey (imported through the engine).
fn device_store_with_survey(dir: &Path) -> Arc<Store> {
    let pass = SecretString::from("test passphrase".to_owned());
    let store = new_store(dir, "tablet-1");
    let store = Arc::into_inner(store).unwrap();
    let engine = Engine::new(store, None).unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/examples/survey.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    engine
        .import(&[("survey.json".into(), json)], 1_000)
        .unwrap();
    engine.close().unwrap();
    Arc::new(Store::open(dir, &pass).unwrap())
}

/// Revokes the device ids in the set.
struct Revoked(Vec<String>);

impl RevocationCheck for Revoked {
    fn is_revoked(&self, peer: &PeerIdentity) -> bool {
        self.0.contains(&peer.device_id)
    }
}

/// A minimal relay: accepts connections and runs a relay session for each, like
/// `musubi-relay serve` does.
async fn spawn_relay(
    tls_config: rustls::ServerConfig,
    store: Arc<Store>,
) -> (Endpoint, SocketAddr) {
    let settings = TransportSettings::default();
    let endpoint = server_endpoint(tls_config, "127.0.0.1:0".parse().unwrap(), &settings).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let ep = endpoint.clone();
    tokio::spawn(async move {
        while let Some(incoming) = ep.accept().await {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                let Some(certs) = peer_certificates(&conn) else {
                    return;
                };
                let id = crate::net::pki::peer_identity(certs[0].as_ref()).unwrap();
                let Ok((send, recv)) = conn.accept_bi().await else {
                    return;
                };
                let access = PeerAccess {
                    device_id: id.device_id,
                    device_name: id.device_name,
                    offices: vec![id.office],
                };
                let rules = Arc::new(crate::admit::rules::Rules::bundled().unwrap());
                let mut session = Session::relay(store, access, rules).unwrap();
                let r = drive(
                    &mut session,
                    send,
                    recv,
                    crate::sync::MAX_FRAME_BYTES,
                    Duration::from_secs(5),
                    |_| {},
                )
                .await;
                if r.is_ok() {
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
                } else {
                    conn.close(VarInt::from_u32(close::PROTOCOL), b"relay session failed");
                }
            });
        }
    });
    (endpoint, addr)
}

fn options(addr: SocketAddr) -> SyncOptions {
    SyncOptions {
        relay: Some(addr.to_string()),
        transport: TransportSettings::with_idle_timeout(Duration::from_secs(3)),
        retry: RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            deadline: Duration::from_secs(20),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_once_sends_a_survey_to_the_relay_then_is_a_no_op() {
    let tmp = tempfile::tempdir().unwrap();
    let office = Office::new();
    let relay_store = new_store(&tmp.path().join("relay"), "relay");
    let device_store = device_store_with_survey(&tmp.path().join("device"));
    let (_ep, addr) = spawn_relay(
        office.server_tls(Arc::new(NothingRevoked)),
        Arc::clone(&relay_store),
    )
    .await;
    let creds = office.device("tablet-1", OFFICE);

    let mut progress = Vec::new();
    let report = sync_once(Arc::clone(&device_store), &creds, &options(addr), |p| {
        progress.push(p)
    })
    .await
    .unwrap();
    assert_eq!(report.outcome.docs_sent, 1, "{report:?}");
    assert_eq!(report.connections, 1);
    assert!(!progress.is_empty());
    let ours = device_store.list_docs().unwrap();
    let theirs = relay_store.list_docs().unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].id, ours[0].id);

    let again = sync_once(Arc::clone(&device_store), &creds, &options(addr), |_| {})
        .await
        .unwrap();
    assert_eq!(again.outcome.docs_sent, 0, "{again:?}");
    assert_eq!(again.outcome.docs_received, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_devices_get_a_clear_reason_and_no_retry() {
    let tmp = tempfile::tempdir().unwrap();
    let office = Office::new();
    let relay_store = new_store(&tmp.path().join("relay"), "relay");
    let device_store = new_store(&tmp.path().join("device"), "tablet-1");
    let revoked = office.device("tablet-r", OFFICE);
    let (_ep, addr) = spawn_relay(
        office.server_tls(Arc::new(Revoked(vec![revoked.device_id.clone()]))),
        Arc::clone(&relay_store),
    )
    .await;

    let started = Instant::now();
    let err = sync_once(Arc::clone(&device_store), &revoked, &options(addr), |_| {})
        .await
        .unwrap_err();
    assert_eq!(err, SyncFailure::Revoked);
    assert!(started.elapsed() < Duration::from_secs(3), "not retried");

    // A certificate of another office CA.
    let mut stranger = Office::new().device("tablet-x", OFFICE);
    stranger.office_ca_pem = office.ca.cert_pem().to_owned();
    let err = sync_once(Arc::clone(&device_store), &stranger, &options(addr), |_| {})
        .await
        .unwrap_err();
    assert_eq!(err, SyncFailure::UnknownDevice);

    // An expired certificate of the right CA.
    let subject = DeviceSubject::new_random("tablet-old", OFFICE).unwrap();
    let day = Duration::from_secs(86_400);
    let cert = issue_device_cert(
        &office.ca,
        &subject,
        SystemTime::now() - 30 * day,
        SystemTime::now() - 2 * day,
    )
    .unwrap();
    let expired = office.creds_for(&subject, cert);
    let err = sync_once(Arc::clone(&device_store), &expired, &options(addr), |_| {})
        .await
        .unwrap_err();
    assert_eq!(err, SyncFailure::CertificateExpired);

    // A relay whose certificate is from another CA than the one the device pins.
    // The impostor accepts any device of the first office, so only the device's check of
    // the relay can refuse.
    let other = Office::new();
    let server =
        tls::server_config(&other.relay, office.ca.cert_pem(), Arc::new(NothingRevoked)).unwrap();
    let (_ep2, addr2) = spawn_relay(server, Arc::clone(&relay_store)).await;
    let good = office.device("tablet-1", OFFICE);
    let err = sync_once(Arc::clone(&device_store), &good, &options(addr2), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, SyncFailure::RelayUntrusted { .. }), "{err:?}");
    assert!(relay_store.list_docs().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_relay_is_retried_then_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let office = Office::new();
    let device_store = new_store(&tmp.path().join("device"), "tablet-1");
    // A bound UDP socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let mut opts = options(addr);
    opts.transport = TransportSettings::with_idle_timeout(Duration::from_millis(400));
    let creds = office.device("tablet-1", OFFICE);
    let err = sync_once(device_store, &creds, &opts, |_| {})
        .await
        .unwrap_err();
    match err {
        SyncFailure::Unreachable { attempts, .. } => assert_eq!(attempts, 2),
        other => panic!("expected unreachable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_loop_syncs_at_start_and_on_trigger_and_reports_status() {
    use crate::net::sync_loop::{SyncActivity, SyncLoop};
    let tmp = tempfile::tempdir().unwrap();
    let office = Office::new();
    let relay_store = new_store(&tmp.path().join("relay"), "relay");
    let device_store = device_store_with_survey(&tmp.path().join("device"));
    let (_ep, addr) = spawn_relay(
        office.server_tls(Arc::new(NothingRevoked)),
        Arc::clone(&relay_store),
    )
    .await;
    let creds = office.device("tablet-1", OFFICE);
    // A long interval: only the start and the trigger cause syncs.
    let sync = SyncLoop::spawn(
        Arc::clone(&device_store),
        creds,
        Duration::from_secs(3600),
        options(addr),
    )
    .unwrap();
    let mut status = sync.status();
    let first = tokio::time::timeout(
        Duration::from_secs(20),
        status.wait_for(|s| s.last_success.is_some() && s.activity == SyncActivity::Idle),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    assert_eq!(first.last_report.as_ref().unwrap().outcome.docs_sent, 1);
    assert!(first.last_error.is_none());
    assert_eq!(relay_store.list_docs().unwrap().len(), 1);

    // A document arrives at the relay from elsewhere; a trigger brings it here.
    let other = device_store_with_survey(&tmp.path().join("other"));
    let other_creds = office.device("tablet-2", OFFICE);
    sync_once(other, &other_creds, &options(addr), |_| {})
        .await
        .unwrap();
    let before = first.last_success;
    sync.trigger();
    let second = tokio::time::timeout(
        Duration::from_secs(20),
        status.wait_for(|s| s.last_success != before && s.activity == SyncActivity::Idle),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    assert_eq!(
        second.last_report.as_ref().unwrap().outcome.docs_received,
        1
    );
    assert_eq!(device_store.list_docs().unwrap().len(), 2);
    sync.stop().await;
    assert_eq!(status.borrow().activity, SyncActivity::Stopped);
}

/// The relay socket asks for a large receive buffer and gets what the kernel allows: at
/// most `net.core.rmem_max` (Linux reports twice the size it grants).
#[cfg(target_os = "linux")]
#[test]
fn relay_socket_gets_the_large_receive_buffer_the_kernel_allows() {
    let read = |name: &str| -> usize {
        std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let (rmem_max, rmem_default) = (read("rmem_max"), read("rmem_default"));
    let (socket, granted) = server_socket("127.0.0.1:0".parse().unwrap()).unwrap();
    assert!(socket.local_addr().unwrap().port() != 0);
    assert!(granted >= SERVER_RECV_BUFFER.min(rmem_max), "{granted}");
    // On a kernel that allows more than its default, the relay has more than the default.
    if rmem_max > rmem_default {
        assert!(granted > rmem_default, "{granted} <= {rmem_default}");
    }
}
