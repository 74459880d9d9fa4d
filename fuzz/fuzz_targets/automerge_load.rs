//! Arbitrary bytes as a stored chunk: `CareDoc::load` may refuse them, but must not panic,
//! and a document that loads must be readable (JSON, conflicts, history, title).
#![no_main]

use libfuzzer_sys::fuzz_target;
use musubi_engine::doc::CareDoc;
use musubi_fuzz::{actor, doc_id};

fuzz_target!(|data: &[u8]| {
    if let Ok(mut doc) = CareDoc::load(doc_id(), &[data.to_vec()], actor()) {
        let _ = doc.to_json();
        let _ = doc.conflicts();
        let _ = doc.history();
        let _ = doc.title();
    }
});
