//! Arbitrary bytes as a decrypted sync bundle (the plaintext inside the age layer).
//!
//! The first byte picks the mode: even, the rest is parsed as it is; odd, the rest gets a
//! correct trailer (count and SHA-256) appended first, so the fuzzer can explore the
//! manifest and document frames behind the checksum. Oracles: `bundle::parse` refuses or
//! returns a bundle whose counts agree; `check_doc` never panics; the document rules
//! (`admit::DocumentRules`) never panic; a bundle that imports into an empty in-memory
//! store imports a second time with nothing new.
#![no_main]

use libfuzzer_sys::fuzz_target;
use musubi_core::admit::DocumentRules;
use musubi_core::sync::MemoryStorage;
use musubi_core::sync::admission::Uploader;
use musubi_core::sync::bundle::{self, MAGIC};
use musubi_core::sync::frame::FrameReader;

/// Complete frames after the magic line, minus the manifest.
fn doc_frames(plain: &[u8]) -> u64 {
    let Some(rest) = plain.strip_prefix(MAGIC) else {
        return 0;
    };
    let mut reader = FrameReader::new();
    reader.push(rest);
    let mut n = 0u64;
    while let Ok(Some(_)) = reader.next_frame() {
        n += 1;
    }
    n.saturating_sub(1)
}

fuzz_target!(|data: &[u8]| {
    musubi_fuzz::keep_contained_panics_caught();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut plain = rest.to_vec();
    if mode % 2 == 1 {
        let trailer = bundle::trailer_frame(&plain, doc_frames(&plain));
        plain.extend_from_slice(&trailer);
    }
    let Ok(parsed) = bundle::parse(plain.as_slice()) else {
        return;
    };
    assert_eq!(parsed.docs.len() as u64, parsed.manifest.docs);
    for d in &parsed.docs {
        let _ = bundle::check_doc(d);
    }
    let store = MemoryStorage::new("fuzz");
    let offices = parsed.manifest.offices.clone();
    let import = || {
        bundle::import(&store, &parsed, &offices, &DocumentRules, &|_| {
            Uploader::TabletBundle
        })
    };
    if let Ok(first) = import() {
        let second = import().expect("a bundle that imported once imports again");
        assert_eq!(
            second.new + second.updated,
            0,
            "nothing new the second time"
        );
        assert_eq!(
            second.unchanged,
            first.new + first.updated + first.unchanged
        );
        assert_eq!(second.other_office, first.other_office);
    }
});
