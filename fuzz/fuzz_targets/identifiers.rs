//! Any string through the four identifier checks: never panic (NFKC, full-width digits,
//! separators, long runs).
#![no_main]

use libfuzzer_sys::fuzz_target;
use musubi_core::identifiers::{
    check_insured_number, check_insurer_number, check_office_number, contains_my_number,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = check_insurer_number(&text);
    let _ = check_office_number(&text);
    let _ = check_insured_number(&text);
    let _ = contains_my_number(&text);
});
