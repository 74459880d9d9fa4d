//! Property tests of the sync wire format: any bytes decode to a frame or a clean error
//! (never a panic), frames survive a round trip, and a stream of length-prefixed frames
//! splits back into the same frames however the bytes are cut into reads.

use musubi_engine::sync::frame::{FrameReader, WireEntry, length_prefixed};
use musubi_engine::sync::{Frame, FrameError};
use proptest::prelude::*;
use serde_bytes::ByteBuf;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn entry() -> impl Strategy<Value = WireEntry> {
    (bytes(20), 0usize..4).prop_map(|(id, n)| WireEntry {
        id: ByteBuf::from(id),
        heads: ByteBuf::from(vec![7u8; n * 32]),
    })
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (
            any::<u32>(),
            bytes(32),
            proptest::option::of("[a-f0-9]{0,32}"),
            any::<u64>(),
            proptest::collection::vec(entry(), 0..4),
            bytes(40)
        )
            .prop_map(
                |(protocol, actor, epoch, cursor, changed, digest)| Frame::Hello {
                    protocol,
                    actor: ByteBuf::from(actor),
                    epoch,
                    cursor,
                    changed,
                    digest: ByteBuf::from(digest),
                    caps: Vec::new(),
                }
            ),
        (bytes(20), bytes(300)).prop_map(|(id, b)| Frame::DocData {
            id: ByteBuf::from(id),
            bytes: ByteBuf::from(b),
        }),
        (bytes(20), bytes(300)).prop_map(|(id, m)| Frame::DocSync {
            id: ByteBuf::from(id),
            msg: ByteBuf::from(m),
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(sent, received)| Frame::Idle { sent, received }),
        Just(Frame::Done),
        ("[a-z]{0,10}", ".{0,40}").prop_map(|(code, message)| Frame::Error { code, message }),
    ]
}

proptest! {
    #[test]
    fn any_bytes_decode_or_fail_cleanly(b in bytes(512)) {
        match Frame::decode(&b) {
            Ok(f) => {
                // Whatever decoded re-encodes to something that decodes to the same frame.
                prop_assert_eq!(Frame::decode(&f.encode()).ok(), Some(f));
            }
            Err(e) => prop_assert!(matches!(e, FrameError::Malformed | FrameError::TooLong(_))),
        }
    }

    #[test]
    fn frames_round_trip(f in frame()) {
        prop_assert_eq!(Frame::decode(&f.encode()), Ok(f));
    }

    #[test]
    fn stream_splits_back_into_frames(
        frames in proptest::collection::vec(frame(), 1..6),
        cuts in proptest::collection::vec(1usize..64, 1..20),
    ) {
        let mut stream = Vec::new();
        for f in &frames {
            stream.extend(length_prefixed(&f.encode()));
        }
        let mut reader = FrameReader::new();
        let mut out = Vec::new();
        let mut pos = 0;
        let mut cut = cuts.iter().cycle();
        while pos < stream.len() {
            let n = (*cut.next().unwrap_or(&1)).min(stream.len() - pos);
            reader.push(&stream[pos..pos + n]);
            pos += n;
            while let Some(body) = reader.next_frame().unwrap() {
                out.push(Frame::decode(&body).unwrap());
            }
        }
        prop_assert_eq!(out, frames);
        prop_assert_eq!(reader.pending(), 0);
    }
}
