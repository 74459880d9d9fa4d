//! The example survey with fuzzed JSON spliced in at one of `SPLICE_POINTERS` (picked by
//! the first byte; the rest of the input is the JSON). Whatever the validator accepts must
//! build as a `CareDoc` whose `to_json()` is the input again, also after save + load
//! (set-like arrays compared sorted unless `MUSUBI_FUZZ_STRICT_SET_ORDER=1`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use musubi_core::doc::{CareDoc, apply_pointer};
use musubi_core::schema::{Pointer, validate_document};
use musubi_fuzz::{SPLICE_POINTERS, actor, author, canonical_sets, doc_id, example_survey};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(fragment) = serde_json::from_slice::<Value>(rest) else {
        return;
    };
    let pointer = Pointer::parse(SPLICE_POINTERS[usize::from(selector) % SPLICE_POINTERS.len()])
        .expect("fixed pointers parse");
    let mut input = example_survey();
    if apply_pointer(&mut input, &pointer, fragment).is_err() {
        return;
    }
    let Ok((kind, report)) = validate_document(&input) else {
        return;
    };
    if !report.is_ok() {
        return;
    }
    let mut doc = CareDoc::create(doc_id(), kind, &input, actor(), &author())
        .expect("a valid document builds as a CareDoc");
    // Set-like arrays come back sorted; compared in input order only in strict mode.
    let expected = canonical_sets(kind, &input);
    let out = doc.to_json().expect("a built document reads back");
    assert_eq!(
        canonical_sets(kind, &out),
        expected,
        "to_json() differs from the validated input at {pointer}"
    );
    let bytes = doc.save();
    let loaded = CareDoc::load(doc_id(), &[bytes], actor()).expect("a saved document loads");
    assert_eq!(
        canonical_sets(kind, &loaded.to_json().expect("reads back")),
        expected,
        "differs after save + load"
    );
});
