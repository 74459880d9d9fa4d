//! Any JSON as a survey through `check_survey` (what the tablet runs on every edit):
//! never panics, and the result serialises with every warning naming at least one item.
#![no_main]

use libfuzzer_sys::fuzz_target;
use musubi_core::care::check_survey;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let c = check_survey(&v);
    assert!(c.warnings.iter().all(|w| !w.items.is_empty()));
    assert!(serde_json::to_string(&c).is_ok());
});
