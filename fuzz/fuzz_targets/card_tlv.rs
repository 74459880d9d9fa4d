//! Hostile bytes as the card's BER-TLV files: the TLV parser, the header sizing used for
//! READ BINARY, and the 券面事項入力補助AP parsers (basic four EF 0002, CV certificate
//! EF 0004, integrity check against EF 0003). First byte picks the split point between
//! the three files. Never panics; the check never succeeds on unsigned input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use musubi_core::card::{basic4, tlv};

fuzz_target!(|data: &[u8]| {
    let _ = tlv::parse_all(data, true);
    let _ = tlv::total_len_from_header(data);
    let _ = basic4::parse_basic4(data);
    let _ = basic4::parse_cv_cert(data);
    if let Some((&split, rest)) = data.split_first() {
        let a = (usize::from(split) * rest.len()) / 256;
        let (ef2, tail) = rest.split_at(a);
        let (ef3, ef4) = tail.split_at(tail.len() / 2);
        let _ = basic4::check(ef2, zeroize::Zeroizing::new(ef3.to_vec()), ef4);
    }
});
