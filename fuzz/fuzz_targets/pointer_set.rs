//! `musubi doc set` on the example survey: the input is a pointer line and a JSON value
//! (`POINTER\nVALUE`). Pointer parsing, `apply_pointer` and, when the result validates,
//! `CareDoc::set` must never panic; and as the engine relies on it, a successful set must
//! leave the document equal to the validated candidate (set-like arrays compared sorted
//! unless `MUSUBI_FUZZ_STRICT_SET_ORDER=1`).
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use musubi_core::doc::{CareDoc, apply_pointer};
use musubi_core::schema::{DocKind, Pointer, validate_document};
use musubi_fuzz::{actor, author, canonical_sets, doc_id, example_survey, split_line};
use serde_json::Value;

thread_local! {
    static BASE: RefCell<(Value, CareDoc)> = RefCell::new({
        let json = example_survey();
        let doc = CareDoc::create(doc_id(), DocKind::Survey, &json, actor(), &author())
            .expect("the example builds");
        (json, doc)
    });
}

fuzz_target!(|data: &[u8]| {
    let Some((pointer_text, value_bytes)) = split_line(data) else {
        return;
    };
    let Ok(pointer) = Pointer::parse(pointer_text) else {
        return;
    };
    let Ok(value) = serde_json::from_slice::<Value>(value_bytes) else {
        return;
    };
    BASE.with(|base| {
        let mut base = base.borrow_mut();
        let mut candidate = base.0.clone();
        if apply_pointer(&mut candidate, &pointer, value.clone()).is_err() {
            return;
        }
        // The engine refuses to change the kind before it gets here.
        if pointer.tokens().first().map(String::as_str) == Some("kind") {
            return;
        }
        let Ok((kind, report)) = validate_document(&candidate) else {
            return;
        };
        if kind != DocKind::Survey || !report.is_ok() {
            return;
        }
        let mut doc = base.1.fork_with_actor(actor());
        if let Ok(change) = doc.set(&pointer, &value, &author()) {
            let after = doc.to_json().expect("an edited document reads back");
            // Set-like arrays come back sorted; compared in order only in strict mode.
            assert_eq!(
                canonical_sets(kind, &after),
                canonical_sets(kind, &candidate),
                "CareDoc::set result differs from the validated candidate"
            );
            if change.is_none() {
                assert_eq!(
                    canonical_sets(kind, &candidate),
                    canonical_sets(kind, &base.0),
                    "set reported no change but the JSON changed"
                );
            }
        }
    });
});
