//! The example survey with fuzzed JSON spliced in at one of `SPLICE_POINTERS` (picked by
//! the first byte; the rest of the input is the JSON). Whatever the validator accepts must
//! build as a `CareDoc` whose `to_json()` is the input again, also after save + load.
#![no_main]

use libfuzzer_sys::fuzz_target;
use musubi_engine::doc::{CareDoc, apply_pointer};
use musubi_engine::schema::{Pointer, validate_document};
use musubi_fuzz::{SPLICE_POINTERS, actor, author, doc_id, example_survey};
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
    let out = doc.to_json().expect("a built document reads back");
    assert_eq!(
        out, input,
        "to_json() differs from the validated input at {pointer}"
    );
    let bytes = doc.save();
    let loaded = CareDoc::load(doc_id(), &[bytes], actor()).expect("a saved document loads");
    assert_eq!(
        loaded.to_json().expect("reads back"),
        input,
        "differs after save + load"
    );
});
