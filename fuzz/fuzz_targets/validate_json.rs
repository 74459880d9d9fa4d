//! Any bytes that parse as JSON go through the validator: it must never panic, whatever
//! the shape (wrong types, unknown kinds, deep nesting, odd numbers and strings).
#![no_main]

use libfuzzer_sys::fuzz_target;
use musubi_core::schema::validate_document;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        let _ = validate_document(&value);
    }
});
