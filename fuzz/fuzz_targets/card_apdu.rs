//! Hostile bytes as a command APDU (what the virtual card parses) and as a response APDU
//! (what the reader parses): never panic; a command that parses re-encodes to one that
//! parses the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use musubi_core::card::apdu::{Command, Response};

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = Command::parse(data)
        && let Ok(bytes) = cmd.to_bytes()
    {
        assert_eq!(Command::parse(&bytes).ok(), Some(cmd));
    }
    if let Ok(r) = Response::parse(data) {
        assert_eq!(r.to_bytes(), data);
    }
});
