//! The handshake certificate a device presents on the enrollment ALPN, as the relay reads
//! it (the TLS verifier in `net/tls.rs` and `relay/src/cert_serve.rs`): any bytes as DER.
//!
//! Oracles: `pki::enrollment_request`, `pki::cert_spki` and `pki::device_public_key` (the
//! same bytes as a SubjectPublicKeyInfo) never panic; a certificate accepted as an
//! enrollment request names a well-formed device id (`check_device_id`), is not also
//! an office certificate (`peer_identity` refuses it), and its public key reads back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use musubi_engine::net::pki;

fuzz_target!(|data: &[u8]| {
    let spki = pki::cert_spki(data);
    let _ = pki::device_public_key(data);
    if let Some(id) = pki::enrollment_request(data) {
        pki::check_device_id(&id).expect("an enrollment request names a well-formed id");
        assert!(
            pki::peer_identity(data).is_err(),
            "an enrollment request carries no device identity"
        );
        assert!(spki.is_ok(), "an accepted request has a readable key");
    }
});
