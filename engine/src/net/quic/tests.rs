//! Transport tests on real QUIC over 127.0.0.1 with real certificates (a throwaway CA made
//! with rcgen, mutual TLS 1.3).

use super::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::collections::VecDeque;

struct TestPki {
    ca: CertificateDer<'static>,
    relay: (CertificateDer<'static>, Vec<u8>),
    device: (CertificateDer<'static>, Vec<u8>),
}

fn pki() -> TestPki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        (cert.der().clone(), key.serialize_der())
    };
    TestPki {
        ca: ca.der().clone(),
        relay: leaf(vec!["relay.test".to_owned()]),
        device: leaf(vec!["device.test".to_owned()]),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &CertificateDer<'static>) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    Arc::new(roots)
}

fn server_tls(p: &TestPki) -> rustls::ServerConfig {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(&p.ca), provider())
            .build()
            .unwrap();
    let mut c = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![p.relay.0.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(p.relay.1.clone())),
        )
        .unwrap();
    c.alpn_protocols = vec![b"musubi/1".to_vec()];
    c
}

fn client_tls(p: &TestPki) -> rustls::ClientConfig {
    let mut c = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots(&p.ca))
        .with_client_auth_cert(
            vec![p.device.0.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(p.device.1.clone())),
        )
        .unwrap();
    c.alpn_protocols = vec![b"musubi/1".to_vec()];
    c
}

/// A connected pair: (server endpoint, server connection, client endpoint, client
/// connection).
async fn pair(
    settings: &TransportSettings,
) -> (Endpoint, quinn::Connection, Endpoint, quinn::Connection) {
    let p = pki();
    let server = server_endpoint(server_tls(&p), "127.0.0.1:0".parse().unwrap(), settings).unwrap();
    let addr = server.local_addr().unwrap();
    let client = client_endpoint(client_tls(&p), addr, settings).unwrap();
    let accept = async {
        let incoming = server.accept().await.unwrap();
        incoming.await.unwrap()
    };
    let connect = async { client.connect(addr, "relay.test").unwrap().await.unwrap() };
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
}

impl Echo {
    fn sender(count: usize, size: usize) -> Echo {
        Echo {
            out: (0..count).map(|i| frame_of(i, size)).collect(),
            received: 0,
            expect: count,
            echo: false,
            flushes: 0,
        }
    }
    fn echoer(count: usize) -> Echo {
        Echo {
            out: VecDeque::new(),
            received: 0,
            expect: count,
            echo: true,
            flushes: 0,
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
        if self.echo {
            self.out.push_back(frame.to_vec());
        }
        Ok(())
    }
    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
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
    // Messages speak to the administrator and name what to do.
    assert!(SyncFailure::Revoked.to_string().contains("revoked"));
    assert!(
        SyncFailure::Revoked
            .to_string()
            .contains("office administrator")
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
