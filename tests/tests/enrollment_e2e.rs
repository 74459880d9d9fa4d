//! Keys born on the device (issue 15): enrollment files without a private key, redeemed
//! once, online, at a real `musubi-relay serve`; renewal over the sync connection; and
//! re-enrollment of an expired tablet that keeps its unsent work. Devices are the real
//! `musubi` binary on real encrypted stores; the hostile client writes its own frames.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use musubi_engine::net::certx::{self, CertFrame, EnrollFailure, refusal};
use musubi_engine::net::enroll;
use musubi_engine::net::pki::{self, DeviceKey};
use musubi_engine::net::quic::{self, TransportSettings, close, quinn};
use musubi_engine::net::tls;
use musubi_engine::store::{SecretString, Store};
use musubi_engine::sync::{Frame, MAX_FRAME_BYTES, PROTOCOL_VERSION};
use musubi_relay::RelayDir;
use musubi_tests::e2e::{Device, OFFICE, PASS, Relay, stderr, survey_path};
use serde_bytes::ByteBuf;

/// The credentials kept in a device's encrypted store.
fn stored_creds(d: &Device) -> musubi_engine::net::tls::DeviceCredentials {
    let store = Store::open(&d.data, &SecretString::from(PASS.to_owned())).unwrap();
    let creds = enroll::load_credentials(&store).unwrap().unwrap();
    store.close().unwrap();
    creds
}

fn fingerprint_of(cert_pem: &str) -> String {
    hex::encode(pki::fingerprint(
        &pki::cert_der_from_pem(cert_pem, "device certificate").unwrap(),
    ))
}

fn serve_config(root: &Path, name: &str, text: &str) -> String {
    let path = root.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn the_file_carries_no_key_and_a_used_code_cannot_enroll_a_second_tablet() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let relay = Relay::init(root, OFFICE);
    let server = relay.serve();
    let addr = server.addr.to_string();
    let (file, code) = relay.enroll("tablet-a", Some(OFFICE), &addr);

    // The enrollment file, opened and parsed: no private key, no device certificate.
    let bytes = std::fs::read(&file).unwrap();
    let plain = enroll::decrypt(&bytes, &code).unwrap();
    let text = std::str::from_utf8(&plain).unwrap();
    let table: toml::Table = toml::from_str(text).unwrap();
    let mut keys: Vec<&str> = table.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "device_id",
            "device_name",
            "format",
            "office",
            "office_ca_pem",
            "relay_address",
            "secret"
        ]
    );
    assert!(!text.contains("PRIVATE KEY"));
    assert_eq!(
        text.matches("BEGIN CERTIFICATE").count(),
        1,
        "the office CA only"
    );
    let ticket = enroll::open(&bytes, &code).unwrap();
    let secret_hex = hex::encode(ticket.secret.as_slice());

    // The first tablet redeems it with a key it made itself.
    let a = Device::init(root, "tablet-a", OFFICE);
    a.enroll(&file, &code);
    let creds = stored_creds(&a);
    assert_eq!(creds.device_id, ticket.device_id);
    let dir = RelayDir::open(&relay.dir).unwrap();
    let record = dir.device(&ticket.device_id).unwrap().unwrap();
    assert_eq!(record.fingerprint, fingerprint_of(&creds.cert_pem));

    // The same file and code on a second tablet: refused, in Japanese, nothing stored.
    let b = Device::init(root, "tablet-b", OFFICE);
    let out = b.try_enroll(&file, &code);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("すでに別の端末の登録に使われています"),
        "{}",
        stderr(&out)
    );
    let out = b.sync(&[]);
    assert_eq!(out.status.code(), Some(4), "not enrolled: {}", stderr(&out));

    // Reported at the relay: in its log (without the secret or code) and in status.
    let log = server.log_text();
    assert!(log.contains("ENROLLMENT REUSED"), "{log}");
    assert!(!log.contains(&secret_hex) && !log.contains(&code), "{log}");
    let status = relay.status();
    assert_eq!(status["enrollments"][0]["reuse_attempts"], 1, "{status}");
    assert_eq!(status["devices"][0]["enrollment_reused"], 1, "{status}");
    let dir_arg = relay.dir.to_string_lossy().into_owned();
    let human = relay.ok(&["status", "--dir", &dir_arg]);
    assert!(human.contains("REUSED 1 time"), "{human}");
    // The registry holds the secret's hash, never the secret.
    let registry = std::fs::read_to_string(relay.dir.join("devices.toml")).unwrap();
    assert!(!registry.contains(&secret_hex));

    // The registry still admits only the first tablet's certificate, which keeps syncing.
    assert_eq!(
        dir.device(&ticket.device_id).unwrap().unwrap().fingerprint,
        record.fingerprint
    );
    a.import(&[&survey_path()]);
    let s = a.sync_ok(&[]);
    assert_eq!(s["docs_sent"], 1, "{s}");
}

#[test]
fn wrong_secrets_are_refused_and_lock_the_pending_enrollment() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let relay = Relay::init(root, OFFICE);
    let server = relay.serve();
    let addr = server.addr.to_string();
    let (file, code) = relay.enroll("tablet-x", Some(OFFICE), &addr);
    let ticket = enroll::open(&std::fs::read(&file).unwrap(), &code).unwrap();
    let rt = runtime();
    let key = DeviceKey::generate().unwrap();
    let mut wrong = ticket.clone();
    for i in 1..=5u8 {
        wrong.secret[0] = ticket.secret[0] ^ i;
        let err = rt
            .block_on(certx::redeem(
                &wrong,
                &key,
                None,
                &TransportSettings::default(),
            ))
            .unwrap_err();
        let expected = if i < 5 {
            EnrollFailure::Unknown
        } else {
            EnrollFailure::Locked
        };
        assert_eq!(err, expected, "attempt {i}");
    }
    // Dead now, even with the right file and code on a real tablet.
    let d = Device::init(root, "tablet-x", OFFICE);
    let out = d.try_enroll(&file, &code);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("誤った登録の試みが多すぎた"),
        "{}",
        stderr(&out)
    );
    let status = relay.status();
    assert_eq!(status["enrollments"][0]["state"], "locked", "{status}");
    assert_eq!(status["enrollments"][0]["failures"], 5, "{status}");
    assert_eq!(status["devices"].as_array().unwrap().len(), 0, "{status}");
}

/// Connects with a self-signed enrollment certificate, offering `alpn`.
fn enrollment_connection(
    rt: &tokio::runtime::Runtime,
    ca_pem: &str,
    device_id: &str,
    alpn: &[u8],
    addr: std::net::SocketAddr,
) -> quic::RelayConnection {
    let key = DeviceKey::generate().unwrap();
    let request = key.enrollment_cert(device_id).unwrap();
    let mut config = tls::enroll_client_config(ca_pem, &request).unwrap();
    config.alpn_protocols = vec![alpn.to_vec()];
    rt.block_on(async {
        let endpoint = quic::client_endpoint(config, addr, &TransportSettings::default()).unwrap();
        let connection = endpoint
            .connect(addr, tls::RELAY_SERVER_NAME)
            .unwrap()
            .await
            .unwrap();
        quic::RelayConnection {
            endpoint,
            connection,
        }
    })
}

fn hello() -> Frame {
    Frame::Hello {
        protocol: PROTOCOL_VERSION,
        actor: ByteBuf::from(vec![7; 16]),
        epoch: None,
        cursor: 0,
        changed: Vec::new(),
        digest: ByteBuf::from(vec![0u8; 32]),
        caps: Vec::new(),
    }
}

#[test]
fn a_self_signed_certificate_without_a_valid_enrollment_gets_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let relay = Relay::init(root, OFFICE);
    let server = relay.serve();
    let addr = server.addr;
    // A real tablet with documents on the relay: nothing of them may leak.
    let a = Device::init(root, "tablet-a", OFFICE);
    let (file, code) = relay.enroll("tablet-a", Some(OFFICE), &addr.to_string());
    a.enroll(&file, &code);
    a.import(&[&survey_path()]);
    a.sync_ok(&[]);
    let ca_pem = RelayDir::open(&relay.dir).unwrap().ca_cert_pem().unwrap();
    let victim = stored_creds(&a).device_id;
    let rt = runtime();

    // 1. The sync ALPN with a self-signed certificate naming the real device: closed as
    //    unknown, not one sync frame answered.
    let conn = enrollment_connection(&rt, &ca_pem, &victim, tls::ALPN, addr);
    rt.block_on(async {
        let (mut send, mut recv) = conn.connection.open_bi().await.unwrap();
        let _ = quic::write_frame(&mut send, &hello().encode(), MAX_FRAME_BYTES).await;
        let got = tokio::time::timeout(
            Duration::from_secs(10),
            quic::read_frame(&mut recv, MAX_FRAME_BYTES),
        )
        .await
        .unwrap();
        assert!(!matches!(got, Ok(Some(_))), "a frame was answered: {got:?}");
        match conn.connection.closed().await {
            quinn::ConnectionError::ApplicationClosed(c) => {
                assert_eq!(c.error_code.into_inner(), u64::from(close::UNKNOWN_DEVICE));
            }
            other => panic!("{other}"),
        }
    });

    // 2. The enrollment ALPN, sending a sync hello instead of enroll: one refusal, then
    //    closed; nothing of the sync protocol.
    let conn = enrollment_connection(&rt, &ca_pem, &victim, tls::ALPN_ENROLL, addr);
    rt.block_on(async {
        let (mut send, mut recv) = conn.connection.open_bi().await.unwrap();
        quic::write_frame(&mut send, &hello().encode(), MAX_FRAME_BYTES)
            .await
            .unwrap();
        let _ = send.finish();
        let body = quic::read_frame(&mut recv, certx::MAX_CERT_FRAME_BYTES)
            .await
            .unwrap()
            .unwrap();
        match CertFrame::decode(&body).unwrap() {
            CertFrame::Refused { code, .. } => assert_eq!(code, refusal::BAD_REQUEST),
            other => panic!("{other:?}"),
        }
        assert!(
            quic::read_frame(&mut recv, MAX_FRAME_BYTES)
                .await
                .unwrap()
                .is_none()
        );
        let closed = tokio::time::timeout(Duration::from_secs(10), conn.connection.closed())
            .await
            .unwrap();
        assert!(matches!(
            closed,
            quinn::ConnectionError::ApplicationClosed(_)
        ));
    });

    // 3. A well-formed enroll for the real (already redeemed) device with a guessed secret:
    //    refused, counted nowhere as a reuse, and the device is untouched.
    let conn = enrollment_connection(&rt, &ca_pem, &victim, tls::ALPN_ENROLL, addr);
    rt.block_on(async {
        let (mut send, mut recv) = conn.connection.open_bi().await.unwrap();
        let frame = CertFrame::Enroll {
            protocol: certx::PROTOCOL,
            device_id: victim.clone(),
            secret: ByteBuf::from(vec![0u8; 32]),
        };
        quic::write_frame(&mut send, &frame.encode(), certx::MAX_CERT_FRAME_BYTES)
            .await
            .unwrap();
        let body = quic::read_frame(&mut recv, certx::MAX_CERT_FRAME_BYTES)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            CertFrame::decode(&body).unwrap(),
            CertFrame::Refused { .. }
        ));
    });

    // 4. An oversized request is refused before it is read (the length is checked first).
    let conn = enrollment_connection(&rt, &ca_pem, &victim, tls::ALPN_ENROLL, addr);
    rt.block_on(async {
        let (mut send, mut recv) = conn.connection.open_bi().await.unwrap();
        let _ = send.write_all(&(1u32 << 30).to_be_bytes()).await;
        let body = quic::read_frame(&mut recv, certx::MAX_CERT_FRAME_BYTES)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            CertFrame::decode(&body).unwrap(),
            CertFrame::Refused { .. }
        ));
    });

    // 5. Silence: closed by the exchange deadline, and the honest tablet still syncs.
    let conn = enrollment_connection(&rt, &ca_pem, &victim, tls::ALPN_ENROLL, addr);
    let started = Instant::now();
    let closed = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), conn.connection.closed()).await
    });
    assert!(closed.is_ok(), "a silent enrollment connection stayed open");
    assert!(started.elapsed() < certx::EXCHANGE_TIMEOUT + Duration::from_secs(5));

    let status = relay.status();
    assert_eq!(status["enrollments"][0]["reuse_attempts"], 0, "{status}");
    assert_eq!(status["devices"].as_array().unwrap().len(), 1, "{status}");
    let s = a.sync_ok(&[]);
    assert_eq!(s["docs_received"], 0, "{s}");
}

#[test]
fn a_certificate_near_expiry_is_renewed_in_a_normal_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let relay = Relay::init(root, OFFICE);
    // 30-day certificates: always within the 60 days before expiry, so every sync renews.
    let config = serve_config(root, "serve.toml", "device_cert_days = 30\n");
    let server = relay.serve_with("127.0.0.1:0", &["--config", &config]);
    let addr = server.addr.to_string();
    let a = Device::init(root, "tablet-a", OFFICE);
    let (file, code) = relay.enroll("tablet-a", Some(OFFICE), &addr);
    a.enroll(&file, &code);
    let first = stored_creds(&a);
    let id = first.device_id.clone();
    let dir = RelayDir::open(&relay.dir).unwrap();
    let fp1 = fingerprint_of(&first.cert_pem);
    assert_eq!(dir.device(&id).unwrap().unwrap().fingerprint, fp1);

    // A normal sync: the document goes out and the certificate is renewed.
    a.import(&[&survey_path()]);
    let s = a.sync_ok(&[]);
    assert_eq!(s["docs_sent"], 1, "{s}");
    assert_eq!(s["certificate_renewed"], true, "{s}");
    let second = stored_creds(&a);
    let fp2 = fingerprint_of(&second.cert_pem);
    assert_ne!(fp1, fp2);
    assert_ne!(
        first.key_pem.as_str(),
        second.key_pem.as_str(),
        "a fresh key pair"
    );
    assert_eq!(second.device_id, id);
    let rec = dir.device(&id).unwrap().unwrap();
    assert_eq!(rec.fingerprint, fp2, "the registry follows the renewal");
    assert_eq!(rec.previous_fingerprint.as_deref(), Some(fp1.as_str()));

    // The next sync connects with the new certificate: the relay records the certificate
    // a renewal came from, and that is now the second one.
    let s = a.sync_ok(&[]);
    assert_eq!(s["certificate_renewed"], true, "{s}");
    let rec = dir.device(&id).unwrap().unwrap();
    assert_eq!(rec.previous_fingerprint.as_deref(), Some(fp2.as_str()));
    assert_eq!(rec.fingerprint, fingerprint_of(&stored_creds(&a).cert_pem));
    // The first certificate is no longer admitted at all.
    let peer1 = pki::peer_identity(&pki::cert_der_from_pem(&first.cert_pem, "c").unwrap()).unwrap();
    assert!(!rec.admits(&peer1));

    // The revocation check still applies to renewed certificates.
    relay.revoke("tablet-a");
    let out = a.sync(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
    let log = server.log_text();
    assert!(log.contains("device certificate renewed"), "{log}");
}

#[test]
fn an_expired_device_is_re_enrolled_and_keeps_its_unsent_documents() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let relay = Relay::init(root, OFFICE);
    let config = serve_config(root, "serve.toml", "test_device_cert_seconds = 6\n");
    let server = relay.serve_with("127.0.0.1:0", &["--config", &config]);
    let addr = server.addr.to_string();
    let a = Device::init(root, "tablet-a", OFFICE);
    let (file, code) = relay.enroll("tablet-a", Some(OFFICE), &addr);
    a.enroll(&file, &code);
    let before = stored_creds(&a);
    // Work done offline while the certificate runs out.
    let ids = a.import(&[&survey_path(), &survey_path()]);
    std::thread::sleep(Duration::from_secs(7));
    let out = a.sync(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));

    // The office re-enrolls the same device; the tablet redeems the new file.
    let (file2, code2) = relay.enroll_with("tablet-a", None, &addr, &["--renew"]);
    let out = a.try_enroll(&file2, &code2);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("証明書を更新しました"),
        "{}",
        stderr(&out)
    );
    let after = stored_creds(&a);
    assert_eq!(after.device_id, before.device_id, "same device");
    assert_ne!(after.cert_pem, before.cert_pem);
    assert_eq!(a.ids().len(), 2, "the documents are still on the tablet");

    // The unsent documents go out with the new certificate.
    let s = a.sync_ok(&[]);
    assert_eq!(s["docs_sent"], 2, "{s}");
    let status = relay.status();
    let devices = status["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "one device, re-enrolled: {status}");
    assert_eq!(devices[0]["state"], "active");
    assert_eq!(status["enrollments"][1]["reenroll"], true, "{status}");
    // The old file cannot be used again.
    let b = Device::init(root, "tablet-b", OFFICE);
    assert_eq!(b.try_enroll(&file, &code).status.code(), Some(2));
    drop(server);
    let mut expected = ids;
    expected.sort();
    let engine = relay.engine();
    let on_relay: Vec<String> = engine
        .store()
        .list_docs()
        .unwrap()
        .iter()
        .map(|d| d.id.to_string())
        .collect();
    engine.close().unwrap();
    for id in &expected {
        assert!(on_relay.contains(id), "{id} reached the relay");
    }
}
