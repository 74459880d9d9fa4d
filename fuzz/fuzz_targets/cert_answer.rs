//! Certificate exchange answers as the tablet reads them (`net/certx.rs`): any bytes as one
//! frame body, read as the answer to `enroll` and as the answer to `renew`, with the
//! fixture's identity, office CA and device key.
//!
//! Oracles: `CertFrame::decode` never panics, and a frame it accepts encodes and decodes
//! back to itself. `certx::read_answer` never panics; credentials come only from the
//! expected answer (`enrolled` to enroll, `renewed` to renew) and are exactly the
//! fixture's device id, name, office, relay address, CA and key, with a certificate the
//! fixture office CA issued that validates with that key; a refusal's code and message
//! are cut to 64 and 200 characters; every failure has a Japanese sentence.
#![no_main]

use libfuzzer_sys::fuzz_target;
use musubi_engine::net::certx::{self, CertFrame, EnrollFailure, Exchange};
use musubi_engine::net::pki::{self, DeviceKey};
use musubi_fuzz::enroll_fixture;
use std::sync::OnceLock;

fn key() -> &'static DeviceKey {
    static KEY: OnceLock<DeviceKey> = OnceLock::new();
    KEY.get_or_init(enroll_fixture::device_key)
}

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = CertFrame::decode(data) else {
        return;
    };
    assert!(
        CertFrame::decode(&frame.encode()).ok() == Some(frame.clone()),
        "a decoded frame round-trips: {frame:?}"
    );
    let subject = enroll_fixture::subject();
    for exchange in [Exchange::Enroll, Exchange::Renew] {
        let result = certx::read_answer(
            exchange,
            frame.clone(),
            &subject,
            enroll_fixture::RELAY_ADDRESS,
            enroll_fixture::OFFICE_CA_PEM,
            key(),
        );
        match result {
            Ok(creds) => {
                let expected = match exchange {
                    Exchange::Enroll => "enrolled",
                    Exchange::Renew => "renewed",
                };
                assert_eq!(frame.name(), expected, "credentials only from {expected}");
                assert_eq!(creds.device_id, subject.device_id);
                assert_eq!(creds.device_name, subject.device_name);
                assert_eq!(creds.office, subject.office);
                assert_eq!(creds.relay_address, enroll_fixture::RELAY_ADDRESS);
                assert_eq!(creds.office_ca_pem, enroll_fixture::OFFICE_CA_PEM);
                assert_eq!(creds.key_pem.as_str(), key().key_pem.as_str());
                creds.validate().expect("the credentials validate");
                let der = pki::cert_der_from_pem(&creds.cert_pem, "device certificate")
                    .expect("the certificate parses");
                let ca = pki::cert_der_from_pem(enroll_fixture::OFFICE_CA_PEM, "office CA")
                    .expect("fixture CA");
                assert!(pki::issued_by(&der, &ca), "issued by the pinned office CA");
                assert_eq!(
                    pki::cert_spki(&der).expect("a key"),
                    key().spki_der,
                    "for this device's key"
                );
            }
            Err(failure) => {
                assert!(!failure.japanese().is_empty());
                let _ = failure.to_string();
                if let EnrollFailure::Refused { code, message } = &failure {
                    assert!(code.chars().count() <= 64);
                    assert!(message.chars().count() <= 200);
                }
            }
        }
    }
});
