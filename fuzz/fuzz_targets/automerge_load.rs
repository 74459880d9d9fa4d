//! Arbitrary bytes as automerge data, the way the relay receives them: the decode bound
//! (`sync::inflate::decoded_size`) runs first and must never panic, never report more than
//! its budget, and be exact (the size it reports passes as a budget, one byte less does
//! not); only what passes goes on to `CareDoc::load`, which may refuse but must not
//! panic, and a document that loads must be readable (JSON, conflicts, history, title).
//! Data the bound refuses is not loaded: no peer's bytes reach automerge without the bound
//! (sync frames and bundles alike), and automerge spends gigabytes on some such data
//! (`regressions/automerge_load/oom-2gib-bundle-chunk`), which would stop the fuzzer on
//! something the relay never does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use musubi_core::doc::CareDoc;
use musubi_core::sync::inflate::{InflateError, decoded_size};
use musubi_fuzz::{actor, doc_id};

/// A budget small enough that an inflated input cannot slow the fuzzer down.
const BUDGET: u64 = 4 << 20;

fuzz_target!(|data: &[u8]| {
    musubi_fuzz::keep_contained_panics_caught();
    let passes = match decoded_size(data, BUDGET) {
        Ok(n) => {
            assert!(n <= BUDGET);
            assert_eq!(decoded_size(data, n), Ok(n));
            if n > 0 {
                assert_eq!(
                    decoded_size(data, n - 1),
                    Err(InflateError::TooLarge { budget: n - 1 })
                );
            }
            true
        }
        Err(_) => false,
    };
    if passes {
        if let Ok(mut doc) = CareDoc::load(doc_id(), &[data.to_vec()], actor()) {
            let _ = doc.to_json();
            let _ = doc.conflicts();
            let _ = doc.history();
            let _ = doc.title();
        }
    }
});
