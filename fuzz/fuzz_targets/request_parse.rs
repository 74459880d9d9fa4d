//! Any bytes as a municipality request file (CSV or JSON, UTF-8 or Shift_JIS): the parser
//! refuses or accepts, never panics; every accepted request yields a subject, a case and
//! a draft survey that validate against their schemas, and a row error names a row >= 1.
#![no_main]

use libfuzzer_sys::fuzz_target;
use musubi_core::care::request::{self, RequestError};
use musubi_core::schema::validate_document;

const ID: &str = "5f0c2a9e7b3d41c68e2f90a1b4c7d3e2";

fuzz_target!(|data: &[u8]| {
    match request::parse_requests(data) {
        Ok(list) => {
            assert!(!list.is_empty());
            for r in &list {
                for doc in [
                    request::subject_doc(r),
                    request::case_doc(r, ID),
                    request::survey_doc(r, ID),
                ] {
                    let (_, report) = validate_document(&doc).expect("embedded schemas");
                    assert!(
                        report.is_ok(),
                        "accepted request gives an invalid document: {report:?}"
                    );
                }
            }
        }
        Err(RequestError::Field { row, .. }) => assert!(row >= 1),
        Err(RequestError::Format(_)) => {}
    }
});
