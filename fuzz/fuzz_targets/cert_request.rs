//! Certificate exchange requests as the relay reads them (`relay/src/cert_serve.rs`): any
//! bytes as one frame body.
//!
//! Oracles: `CertFrame::decode` never panics, and a frame it accepts encodes and decodes
//! back to itself. On an enrollment connection whose handshake certificate asked for the
//! fixture's device id, `certx::enroll_request` accepts only an `enroll` frame of protocol
//! 1 for exactly that id with a 32-byte secret, and hands on only that secret. After a
//! sync session, `certx::renew_request` accepts only a `renew` frame of protocol 1; its
//! public key goes through `pki::device_public_key`, and a key it accepts has at most
//! `MAX_SPKI_BYTES`, and the fixture office CA issues for it a certificate that carries
//! exactly the bytes the device sent (so the key hash the relay records is the key of
//! the certificate).
#![no_main]

use libfuzzer_sys::fuzz_target;
use musubi_engine::net::certx::{self, CertFrame, MAX_CERT_FRAME_BYTES};
use musubi_engine::net::enroll::SECRET_BYTES;
use musubi_engine::net::pki::{self, MAX_SPKI_BYTES};
use musubi_fuzz::enroll_fixture;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

fn office_ca() -> &'static pki::OfficeCa {
    static CA: OnceLock<pki::OfficeCa> = OnceLock::new();
    CA.get_or_init(enroll_fixture::office_ca)
}

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = CertFrame::decode(data) else {
        return;
    };
    assert!(data.len() <= MAX_CERT_FRAME_BYTES);
    let encoded = frame.encode();
    assert!(
        CertFrame::decode(&encoded).ok() == Some(frame.clone()),
        "a decoded frame round-trips: {frame:?}"
    );
    let _ = format!("{frame:?}");

    let asked = enroll_fixture::DEVICE_ID;
    match certx::enroll_request(&frame, asked) {
        Ok(secret) => {
            let CertFrame::Enroll {
                protocol,
                device_id,
                secret: sent,
            } = &frame
            else {
                panic!("enroll_request accepted {frame:?}");
            };
            assert_eq!(*protocol, certx::PROTOCOL);
            assert_eq!(device_id, asked, "only the handshake's device id");
            assert_eq!(secret.len(), SECRET_BYTES);
            assert_eq!(secret, sent.as_slice());
        }
        Err(message) => assert!(!message.is_empty()),
    }

    match certx::renew_request(&frame) {
        Ok(public_key) => {
            let CertFrame::Renew { protocol, .. } = &frame else {
                panic!("renew_request accepted {frame:?}");
            };
            assert_eq!(*protocol, certx::PROTOCOL);
            if pki::device_public_key(public_key).is_ok() {
                assert!(public_key.len() <= MAX_SPKI_BYTES);
                let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
                let end = start + Duration::from_secs(3600);
                let (pem, der) = pki::issue_device_cert_for_key(
                    office_ca(),
                    &enroll_fixture::subject(),
                    public_key,
                    start,
                    end,
                )
                .expect("an accepted key can be certified");
                assert!(pem.contains("BEGIN CERTIFICATE"));
                let certified = pki::cert_spki(&der).expect("the issued certificate parses");
                assert_eq!(
                    certified, public_key,
                    "the certificate carries the key the device sent"
                );
                let identity = pki::peer_identity(&der).expect("an identity");
                assert_eq!(identity.device_id, enroll_fixture::DEVICE_ID);
            }
        }
        Err(message) => assert!(!message.is_empty()),
    }
});
