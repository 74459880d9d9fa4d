//! Hostile registrations as the relay receives them: the card-evidence statement parser
//! and the evidence check never panic; a statement that parses prints back to exactly the
//! same text (one canonical form); and nothing the fuzzer makes verifies, since it holds
//! no key of a trusted root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use musubi_core::card::evidence::{Statement, check_registration};
use musubi_core::card::roots::TrustStore;
use musubi_core::ids::DocId;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(st) = Statement::parse(&text) {
        assert_eq!(
            st.to_text(),
            text,
            "a statement parsed from a non-canonical text"
        );
    }
    if let Ok(reg) = serde_json::from_slice::<serde_json::Value>(data) {
        let store = TrustStore::bundled().expect("bundled roots");
        let id = DocId::from_bytes([7; 16]);
        assert!(check_registration(id, &reg, &store).is_err());
    }
});
