//! Arbitrary bytes as sync frames. `Frame::decode` refuses them or returns a frame that
//! encodes and decodes back to itself, and the catalog entries and actor bindings inside
//! decode or refuse.
//! The same bytes as a stream through `FrameReader`, fed in pieces: it never panics, and
//! the frames it returns plus what it still holds are exactly the bytes fed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use musubi_core::sync::frame::{Frame, FrameReader, length_prefixed};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = Frame::decode(data) {
        let again = Frame::decode(&frame.encode());
        assert_eq!(again.as_ref(), Ok(&frame), "a decoded frame round-trips");
        let entries = match &frame {
            Frame::Hello { changed, .. } | Frame::Welcome { changed, .. } => changed.clone(),
            Frame::Catalog { entries } => entries.clone(),
            Frame::CatalogDiff { differ, .. } => differ.clone(),
            _ => Vec::new(),
        };
        for e in &entries {
            let _ = e.decode();
        }
        if let Frame::Actors { bindings } = &frame {
            for b in bindings {
                let _ = b.check();
            }
        }
    }

    let step = data.len() % 13 + 1;
    let mut reader = FrameReader::new();
    let mut consumed = 0usize;
    for piece in data.chunks(step) {
        reader.push(piece);
        loop {
            match reader.next_frame() {
                Ok(Some(body)) => {
                    let framed = length_prefixed(&body);
                    assert_eq!(
                        data.get(consumed..consumed + framed.len()),
                        Some(framed.as_slice()),
                        "a frame is the next bytes of the stream"
                    );
                    consumed += framed.len();
                    let _ = Frame::decode(&body);
                }
                Ok(None) => break,
                // Over the length limit: the stream would be dropped.
                Err(_) => return,
            }
        }
    }
    assert_eq!(consumed + reader.pending(), data.len());
});
