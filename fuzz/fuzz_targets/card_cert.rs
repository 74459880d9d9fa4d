//! Hostile bytes as the card's authentication certificate (EF 000A): the validator refuses
//! without panicking; nothing but a certificate signed by a trust anchor passes, and the
//! fuzzer has no anchor key, so it must always refuse. Also exercises PEM trust-anchor
//! parsing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use musubi_core::card::cert::validate_auth_cert;
use musubi_core::card::roots::TrustStore;

fuzz_target!(|data: &[u8]| {
    let store = TrustStore::bundled().expect("bundled roots");
    assert!(validate_auth_cert(data, &store, 1_800_000_000).is_err());
    let mut s = TrustStore::empty();
    let _ = s.add_pem(&String::from_utf8_lossy(data));
});
