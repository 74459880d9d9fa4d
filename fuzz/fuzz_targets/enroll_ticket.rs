//! Enrollment file content after decryption, and the one-time code as typed.
//!
//! `enroll::open` decrypts with age/scrypt, refuses content that is not UTF-8 and then
//! calls `ticket_from_toml`; scrypt for every input would be far too slow, so this target
//! fuzzes the plaintext parser directly. Oracles: never panics; an accepted ticket passes
//! `validate`, re-encodes with `ticket_to_toml` to text that parses to the same ticket and
//! encodes to the same text again; an error message never repeats a secret-like run of
//! the input. The same bytes (lossy UTF-8) as a typed code: `EnrollmentCode::parse` never
//! panics, and an accepted code shows as `XXXXX-XXXXX-XXXXX-XXXXX`, which parses back to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use musubi_engine::net::enroll::{self, EnrollmentCode};
use musubi_engine::net::pki;

/// The longest run of hexadecimal digits in `text` (where a secret would be).
fn longest_hex_run(text: &str) -> &str {
    let mut best = "";
    for run in text.split(|c: char| !c.is_ascii_hexdigit()) {
        if run.len() > best.len() {
            best = run;
        }
    }
    best
}

fuzz_target!(|data: &[u8]| {
    let typed = String::from_utf8_lossy(data);
    if let Ok(code) = EnrollmentCode::parse(&typed) {
        let shown = code.grouped();
        assert_eq!(shown.len(), 23, "a code shows as four groups of five");
        assert_eq!(shown.matches('-').count(), 3);
        assert!(
            EnrollmentCode::parse(&shown).ok() == Some(code),
            "a shown code parses back to itself"
        );
    }

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match enroll::ticket_from_toml(text) {
        Err(e) => {
            let message = e.to_string();
            let run = longest_hex_run(text);
            if run.len() >= 16 {
                assert!(!message.contains(run), "the error repeats input: {message}");
            }
        }
        Ok(ticket) => {
            ticket.validate().expect("an accepted ticket validates");
            pki::check_device_id(&ticket.device_id).expect("a well-formed device id");
            let again = enroll::ticket_to_toml(&ticket).expect("an accepted ticket encodes");
            let back = enroll::ticket_from_toml(&again).expect("the re-encoded ticket parses");
            assert!(
                back == ticket,
                "the re-encoded ticket parses to the same ticket"
            );
            let third = enroll::ticket_to_toml(&back).expect("encodes again");
            assert_eq!(third.as_str(), again.as_str(), "the encoding is stable");
        }
    }
});
