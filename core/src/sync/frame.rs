//! Sync frames: what travels on the wire, encoded as CBOR.
//!
//! On a stream each frame is a 4-byte big-endian length followed by that many bytes of
//! CBOR (see `docs/protocol.md`). Decoding never panics: hostile bytes give a
//! [`FrameError`] naming the frame part that was wrong.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::storage::{CatalogEntry, Heads, unpack_heads};
use crate::ids::DocId;

/// The protocol version this build speaks (the `musubi/1` ALPN fixes the framing; the
/// version in `Hello` governs the frame set).
pub const PROTOCOL_VERSION: u32 = 1;

/// The longest frame body accepted (a whole document travels in one frame).
pub const MAX_FRAME_BYTES: usize = 32 * 1024 * 1024;

/// The capability a device names in `hello` to receive `actors` frames.
pub const CAP_ACTORS: &str = "actors";

/// The capability a device names in `hello` when its `digest` is the order-free
/// [`catalog_digest`](super::catalog_digest) (XOR of the entries' SHA-256), which the relay
/// then answers in kind from what its store keeps up to date. Without it the relay answers
/// with [`legacy_catalog_digest`](super::session::legacy_catalog_digest), computed from the
/// whole catalog.
pub const CAP_SET_DIGEST: &str = "set-digest";

/// The most bindings one `actors` frame carries (more go in the next frame).
pub const MAX_ACTOR_BINDINGS: usize = 10_000;

/// The longest automerge actor id accepted on the wire (bytes).
pub const MAX_ACTOR_BYTES: usize = 32;

/// The most document ids one `want` frame may carry (a device sends more in several
/// frames). Checked while decoding, so a longer list is refused before it is held in
/// memory: 4,096 ids are about 70 KB on the wire.
pub const MAX_WANT_IDS: usize = 4096;

/// The most distinct documents a device may ask for whole (`want`) over one session (a
/// relay ends the session with `error: protocol` past it). A device asks only for
/// documents the relay listed without sending them, or that a catalog comparison found, far
/// fewer than this; the ids the relay keeps to skip repeats, and its queue, stay under
/// about 4 MB.
pub const MAX_WANT_DOCS: usize = 16 * MAX_WANT_IDS;

/// Relay: the whole documents a device asked for are loaded and encoded only while fewer
/// than this many frames wait to be sent (a transport takes them one by one as the stream
/// has room), so a `want` of many documents holds a few in memory at a time.
pub const WANT_WINDOW_FRAMES: usize = 32;

/// Relay: ... and while fewer than this many bytes wait (one document may go over it, up to
/// [`MAX_FRAME_BYTES`]).
pub const WANT_WINDOW_BYTES: usize = 16 * 1024 * 1024;

/// What the bounded `want` decoder reports for a list over [`MAX_WANT_IDS`] (turned into
/// [`FrameError::TooMany`] by [`Frame::decode`]).
const WANT_IDS_OVER: &str = "want ids: over the limit";

/// `done` as protocol 1 devices before this build sent it: a bare CBOR text string.
const DONE_BARE: [u8; 5] = [0x64, b'd', b'o', b'n', b'e'];

/// The start of `done` as every frame is sent: a one-key map, key `done` (its value, a
/// map of fields, follows; `done` has none).
const DONE_KEY: [u8; 6] = [0xA1, 0x64, b'd', b'o', b'n', b'e'];

/// The fields of `done` (none; unknown ones are ignored like in every frame).
#[derive(Deserialize)]
struct DoneFields {}

/// Decodes the `ids` of a `want` frame, refusing a list over [`MAX_WANT_IDS`] as soon as
/// it gets there (nothing past the limit is allocated).
fn bounded_want_ids<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ByteBuf>, D::Error> {
    struct Ids;
    impl<'de> serde::de::Visitor<'de> for Ids {
        type Value = Vec<ByteBuf>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a list of at most {MAX_WANT_IDS} document ids")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut ids = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_WANT_IDS));
            while let Some(id) = seq.next_element::<ByteBuf>()? {
                if ids.len() == MAX_WANT_IDS {
                    return Err(serde::de::Error::custom(WANT_IDS_OVER));
                }
                ids.push(id);
            }
            Ok(ids)
        }
    }
    d.deserialize_seq(Ids)
}

/// One actor binding on the wire (`actors` frame): the device the relay bound an automerge
/// actor to, from the device certificate that first sent changes under it.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WireBinding {
    /// The automerge actor id.
    pub actor: ByteBuf,
    /// The device id from the certificate.
    pub device: String,
    /// The device name from the certificate (absent for bindings made before names were
    /// kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl std::fmt::Debug for WireBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WireBinding(device {})", self.device)
    }
}

/// A device id or name from the wire: non-empty, at most 256 bytes, no control characters.
fn plain_label(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control)
}

impl WireBinding {
    /// Checks the binding's fields (actor 1–32 bytes; device id and name short plain
    /// text), naming the part that was malformed.
    pub fn check(&self) -> Result<(), FrameError> {
        if self.actor.is_empty() || self.actor.len() > MAX_ACTOR_BYTES {
            return Err(FrameError::Field("actors actor"));
        }
        if !plain_label(&self.device) {
            return Err(FrameError::Field("actors device"));
        }
        if self.name.as_deref().is_some_and(|n| !plain_label(n)) {
            return Err(FrameError::Field("actors name"));
        }
        Ok(())
    }
}

/// One catalog entry on the wire: 16-byte id, heads as concatenated 32-byte hashes.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WireEntry {
    /// Document id.
    pub id: ByteBuf,
    /// Heads (n × 32 bytes).
    pub heads: ByteBuf,
}

impl std::fmt::Debug for WireEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WireEntry({} bytes)", self.heads.len())
    }
}

impl From<&CatalogEntry> for WireEntry {
    fn from(e: &CatalogEntry) -> Self {
        WireEntry {
            id: ByteBuf::from(e.id.as_bytes().to_vec()),
            heads: ByteBuf::from(super::storage::pack_heads(&e.heads)),
        }
    }
}

impl WireEntry {
    /// The entry, or which part was malformed.
    pub fn decode(&self) -> Result<CatalogEntry, FrameError> {
        Ok(CatalogEntry {
            id: doc_id(&self.id)?,
            heads: unpack_heads(&self.heads).ok_or(FrameError::Field("entry heads"))?,
        })
    }
}

/// A 16-byte id from the wire.
pub fn doc_id(bytes: &[u8]) -> Result<DocId, FrameError> {
    let arr: [u8; 16] = bytes
        .try_into()
        .map_err(|_| FrameError::Field("document id"))?;
    Ok(DocId::from_bytes(arr))
}

/// Sorted heads from automerge hashes.
pub fn heads_of(doc: &automerge::Automerge) -> Heads {
    let mut h: Heads = doc.get_heads().into_iter().map(|c| c.0).collect();
    h.sort_unstable();
    h
}

/// Every frame of protocol version 1.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Frame {
    /// Device → relay, first frame.
    Hello {
        /// Protocol version spoken by the device.
        protocol: u32,
        /// The device's automerge actor (bound to the device on the relay).
        actor: ByteBuf,
        /// The relay store id the cursor refers to (none on a first sync).
        epoch: Option<String>,
        /// The relay sequence number up to which the device has everything.
        cursor: u64,
        /// Documents changed on the device since its last complete sync, with heads.
        changed: Vec<WireEntry>,
        /// SHA-256 over the device's whole catalog (ids and heads, sorted).
        digest: ByteBuf,
        /// Optional frames the device understands ([`CAP_ACTORS`]); absent from older
        /// devices, and ignored by older relays.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        caps: Vec<String>,
    },
    /// Relay → device, answer to `Hello`.
    Welcome {
        /// Protocol version the relay will speak.
        protocol: u32,
        /// The relay's store id (the epoch of `seq`).
        relay: String,
        /// The relay's sequence number when this session started.
        seq: u64,
        /// Documents changed on the relay since the device's cursor, with heads.
        changed: Vec<WireEntry>,
        /// Ids of documents whose data (`doc_data`) follows this frame.
        full: Vec<ByteBuf>,
        /// SHA-256 over the catalog the device may see.
        digest: ByteBuf,
    },
    /// Document data sent without being asked: the whole document (`Automerge::save()`)
    /// for a peer that has never synced it, or the changes after the heads the peer is
    /// known to have (`save_after`). The receiver applies it with `load_incremental`.
    DocData {
        /// Document id.
        id: ByteBuf,
        /// Saved document or changes.
        bytes: ByteBuf,
    },
    /// One automerge sync message for a document.
    DocSync {
        /// Document id.
        id: ByteBuf,
        /// `sync::Message::encode()`.
        msg: ByteBuf,
    },
    /// Device → relay: send these documents whole.
    Want {
        /// Document ids: at most [`MAX_WANT_IDS`], none twice.
        #[serde(deserialize_with = "bounded_want_ids")]
        ids: Vec<ByteBuf>,
    },
    /// Device → relay: the whole catalog (when digests disagree and no change explains it).
    Catalog {
        /// Every document the device has, with heads.
        entries: Vec<WireEntry>,
    },
    /// Relay → device: the answer to `Catalog`.
    CatalogDiff {
        /// Relay documents the device lacks or has with other heads.
        differ: Vec<WireEntry>,
        /// Device documents the relay lacks.
        missing: Vec<ByteBuf>,
    },
    /// A document was refused (the rest of the session goes on).
    DocRejected {
        /// Document id.
        id: ByteBuf,
        /// Machine-readable reason: `forbidden`, `actor`, `invalid`.
        code: String,
    },
    /// Relay → device (only when `hello` named [`CAP_ACTORS`]): the devices the relay bound
    /// the automerge actors of the session's documents to, at most [`MAX_ACTOR_BINDINGS`]
    /// per frame. Not a document frame (not counted in `idle`).
    Actors {
        /// Actor → device bindings.
        bindings: Vec<WireBinding>,
    },
    /// Nothing more to send until the peer says something; counts of document frames.
    Idle {
        /// Document frames this side sent so far.
        sent: u64,
        /// Document frames this side received so far.
        received: u64,
    },
    /// Device → relay: caught up; the session ends. Sent as `{"done": {}}` like every
    /// frame; the bare string `"done"` of older devices is read too (see [`Frame::encode`]
    /// and [`Frame::decode`], which handle this frame themselves).
    #[serde(skip)]
    Done,
    /// The session is over because of an error.
    Error {
        /// Machine-readable code: `protocol`, `version`, `actor`, `storage`, `busy`.
        code: String,
        /// A sentence for people (never personal data).
        message: String,
    },
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Longer than [`MAX_FRAME_BYTES`].
    #[error("frame of {0} bytes is over the limit")]
    TooLong(usize),
    /// Not CBOR of a known frame.
    #[error("frame is not valid CBOR of a known frame type")]
    Malformed,
    /// A field inside a frame is malformed.
    #[error("frame field '{0}' is malformed")]
    Field(&'static str),
    /// A list inside a frame is longer than the protocol allows.
    #[error("frame field '{0}' holds more than {1} items")]
    TooMany(&'static str, usize),
    /// A list inside a frame names the same document twice.
    #[error("frame field '{0}' names a document twice")]
    Repeated(&'static str),
}

impl Frame {
    /// The frame's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Frame::Hello { .. } => "hello",
            Frame::Welcome { .. } => "welcome",
            Frame::DocData { .. } => "doc_data",
            Frame::DocSync { .. } => "doc_sync",
            Frame::Want { .. } => "want",
            Frame::Catalog { .. } => "catalog",
            Frame::CatalogDiff { .. } => "catalog_diff",
            Frame::DocRejected { .. } => "doc_rejected",
            Frame::Actors { .. } => "actors",
            Frame::Idle { .. } => "idle",
            Frame::Done => "done",
            Frame::Error { .. } => "error",
        }
    }

    /// Whether the frame counts in `idle` (document frames, as opposed to the session's
    /// own hello/welcome/idle/done/error).
    pub fn is_doc_frame(&self) -> bool {
        matches!(
            self,
            Frame::DocData { .. }
                | Frame::DocSync { .. }
                | Frame::Want { .. }
                | Frame::Catalog { .. }
                | Frame::CatalogDiff { .. }
                | Frame::DocRejected { .. }
        )
    }

    /// CBOR bytes of the frame (without the length prefix).
    pub fn encode(&self) -> Vec<u8> {
        if let Frame::Done = self {
            // `{"done": {}}`: a one-key map like every frame.
            let mut out = DONE_KEY.to_vec();
            out.push(0xA0);
            return out;
        }
        let mut out = Vec::new();
        // Writing into a Vec cannot fail for these plain data types.
        if ciborium::into_writer(self, &mut out).is_err() {
            out.clear();
        }
        out
    }

    /// Parses a frame body.
    pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
        if bytes.len() > MAX_FRAME_BYTES {
            return Err(FrameError::TooLong(bytes.len()));
        }
        if bytes == DONE_BARE {
            // An older device's `done`.
            return Ok(Frame::Done);
        }
        if let Some(mut rest) = bytes.strip_prefix(&DONE_KEY) {
            // `{"done": {…}}`: the value must be a map (of fields, ignored), and nothing
            // may follow it.
            if !rest.first().is_some_and(|b| (0xA0..=0xBF).contains(b)) {
                return Err(FrameError::Malformed);
            }
            let _: DoneFields =
                ciborium::from_reader(&mut rest).map_err(|_| FrameError::Malformed)?;
            return if rest.is_empty() {
                Ok(Frame::Done)
            } else {
                Err(FrameError::Malformed)
            };
        }
        ciborium::from_reader(bytes).map_err(|e| match e {
            ciborium::de::Error::Semantic(_, msg) if msg == WANT_IDS_OVER => {
                FrameError::TooMany("want ids", MAX_WANT_IDS)
            }
            _ => FrameError::Malformed,
        })
    }
}

/// Prefixes a frame body with its length, for stream transports and bundles.
pub fn length_prefixed(body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Splits length-prefixed frames out of a byte stream (sans-IO: feed bytes, take frames).
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame body, if one is buffered. A length over the limit is an
    /// error (the stream must then be dropped).
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let Some(len_bytes) = self.buf.get(..4) else {
            return Ok(None);
        };
        let mut arr = [0u8; 4];
        arr.copy_from_slice(len_bytes);
        let len = usize::try_from(u32::from_be_bytes(arr)).unwrap_or(usize::MAX);
        if len > MAX_FRAME_BYTES {
            return Err(FrameError::TooLong(len));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let body = self.buf[4..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Ok(Some(body))
    }

    /// Bytes buffered but not yet a whole frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let frames = vec![
            Frame::Hello {
                protocol: 1,
                actor: ByteBuf::from(vec![1; 16]),
                epoch: None,
                cursor: 7,
                changed: vec![WireEntry {
                    id: ByteBuf::from(vec![2; 16]),
                    heads: ByteBuf::from(vec![3; 64]),
                }],
                digest: ByteBuf::from(vec![4; 32]),
                caps: vec![CAP_ACTORS.to_owned()],
            },
            Frame::Actors {
                bindings: vec![
                    WireBinding {
                        actor: ByteBuf::from(vec![7; 16]),
                        device: "d".repeat(32),
                        name: Some("tablet-a".into()),
                    },
                    WireBinding {
                        actor: ByteBuf::from(vec![8; 16]),
                        device: "e".repeat(32),
                        name: None,
                    },
                ],
            },
            Frame::DocSync {
                id: ByteBuf::from(vec![5; 16]),
                msg: ByteBuf::from(vec![6; 100]),
            },
            Frame::Idle {
                sent: 3,
                received: 4,
            },
            Frame::Done,
            Frame::Error {
                code: "protocol".into(),
                message: "x".into(),
            },
        ];
        for f in frames {
            let bytes = f.encode();
            assert_eq!(Frame::decode(&bytes).unwrap(), f);
        }
    }

    /// `hello` as protocol 1 had it before `caps`.
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    #[serde(rename_all = "snake_case")]
    enum OldFrame {
        Hello {
            protocol: u32,
            actor: ByteBuf,
            epoch: Option<String>,
            cursor: u64,
            changed: Vec<WireEntry>,
            digest: ByteBuf,
        },
    }

    #[test]
    fn hello_caps_are_optional_both_ways() {
        let old = OldFrame::Hello {
            protocol: 1,
            actor: ByteBuf::from(vec![1; 16]),
            epoch: Some("relay".into()),
            cursor: 3,
            changed: Vec::new(),
            digest: ByteBuf::from(vec![4; 32]),
        };
        let mut bytes = Vec::new();
        ciborium::into_writer(&old, &mut bytes).unwrap();
        // An older device's hello: no capabilities.
        match Frame::decode(&bytes).unwrap() {
            Frame::Hello { caps, cursor, .. } => assert_eq!((caps, cursor), (Vec::new(), 3)),
            other => panic!("{other:?}"),
        }
        // An older relay reads a new hello and ignores the field.
        let new = Frame::Hello {
            protocol: 1,
            actor: ByteBuf::from(vec![1; 16]),
            epoch: Some("relay".into()),
            cursor: 3,
            changed: Vec::new(),
            digest: ByteBuf::from(vec![4; 32]),
            caps: vec![CAP_ACTORS.to_owned()],
        };
        let decoded: OldFrame = ciborium::from_reader(&new.encode()[..]).unwrap();
        assert_eq!(decoded, old);
        // Without capabilities the field is not sent at all.
        let bare = Frame::Hello {
            protocol: 1,
            actor: ByteBuf::from(vec![1; 16]),
            epoch: Some("relay".into()),
            cursor: 3,
            changed: Vec::new(),
            digest: ByteBuf::from(vec![4; 32]),
            caps: Vec::new(),
        };
        assert_eq!(bare.encode(), bytes);
    }

    #[test]
    fn actors_frames_are_not_document_frames_and_check_their_fields() {
        let good = WireBinding {
            actor: ByteBuf::from(vec![1; 16]),
            device: "d".repeat(32),
            name: Some("タブレット1".into()),
        };
        assert_eq!(good.check(), Ok(()));
        assert!(
            !Frame::Actors {
                bindings: vec![good.clone()]
            }
            .is_doc_frame()
        );
        for (bad, field) in [
            (
                WireBinding {
                    actor: ByteBuf::from(vec![1; 33]),
                    ..good.clone()
                },
                "actors actor",
            ),
            (
                WireBinding {
                    device: String::new(),
                    ..good.clone()
                },
                "actors device",
            ),
            (
                WireBinding {
                    name: Some("x".repeat(257)),
                    ..good.clone()
                },
                "actors name",
            ),
            (
                WireBinding {
                    name: Some("a\u{7}b".into()),
                    ..good.clone()
                },
                "actors name",
            ),
        ] {
            assert_eq!(bad.check(), Err(FrameError::Field(field)));
        }
    }

    #[test]
    fn done_is_a_one_key_map_on_the_wire() {
        let bytes = Frame::Done.encode();
        // `{"done": {}}`, like every frame.
        let value: ciborium::Value = ciborium::from_reader(&bytes[..]).unwrap();
        assert_eq!(
            value,
            ciborium::Value::Map(vec![(
                ciborium::Value::Text("done".into()),
                ciborium::Value::Map(Vec::new())
            )])
        );
        assert_eq!(Frame::decode(&bytes), Ok(Frame::Done));
        // Fields a later version may add are ignored, as in every frame.
        let with_field = one_key_map("done", "reason", 1);
        assert_eq!(Frame::decode(&with_field), Ok(Frame::Done));
        // Not a map of fields, or anything after it: refused.
        let mut trailing = bytes.clone();
        trailing.push(0x00);
        for bad in [
            &b"\xa1\x64done\x01"[..],
            b"\xa1\x64done\x80",
            b"\xa1\x64done",
            b"\xa1\x64done\xa1",
            &trailing,
        ] {
            assert_eq!(Frame::decode(bad), Err(FrameError::Malformed), "{bad:02x?}");
        }
    }

    /// CBOR of `{frame: {field: value}}`, for hand-made frames.
    fn one_key_map(frame: &str, field: &str, value: u8) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(
            &std::collections::BTreeMap::from([(
                frame,
                std::collections::BTreeMap::from([(field, value)]),
            )]),
            &mut out,
        )
        .unwrap();
        out
    }

    /// `done` as relays and devices before the one-key map had it.
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    #[serde(rename_all = "snake_case")]
    enum OldDone {
        Done,
    }

    #[test]
    fn a_bare_done_from_an_older_device_is_read() {
        let mut bare = Vec::new();
        ciborium::into_writer(&OldDone::Done, &mut bare).unwrap();
        assert_eq!(bare, b"\x64done");
        assert_eq!(Frame::decode(&bare), Ok(Frame::Done));
        // And an older relay reads the new form (its unit variant takes the map).
        let old: OldDone = ciborium::from_reader(&Frame::Done.encode()[..]).unwrap();
        assert_eq!(old, OldDone::Done);
    }

    #[test]
    fn want_ids_are_capped_while_decoding() {
        let id = ByteBuf::from(vec![5; 16]);
        let at_limit = Frame::Want {
            ids: vec![id.clone(); MAX_WANT_IDS],
        };
        assert_eq!(Frame::decode(&at_limit.encode()), Ok(at_limit));
        let over = Frame::Want {
            ids: vec![id; MAX_WANT_IDS + 1],
        };
        assert_eq!(
            Frame::decode(&over.encode()),
            Err(FrameError::TooMany("want ids", MAX_WANT_IDS))
        );
        // Not a list at all is malformed, as before.
        let not_list = one_key_map("want", "ids", 7);
        assert_eq!(Frame::decode(&not_list), Err(FrameError::Malformed));
    }

    #[test]
    fn bytes_travel_as_cbor_byte_strings() {
        let f = Frame::DocSync {
            id: ByteBuf::from(vec![0; 16]),
            msg: ByteBuf::from(vec![0xAB; 1000]),
        };
        // Overhead of the envelope is small: not one CBOR item per byte.
        assert!(f.encode().len() < 1000 + 64, "{}", f.encode().len());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [&b""[..], b"\xff\xff", b"\xa1\x63abc\x00", &[0x9f; 64]] {
            assert!(Frame::decode(bytes).is_err());
        }
        let bad = WireEntry {
            id: ByteBuf::from(vec![1; 15]),
            heads: ByteBuf::from(vec![0; 32]),
        };
        assert_eq!(bad.decode(), Err(FrameError::Field("document id")));
    }

    #[test]
    fn reader_splits_and_limits() {
        let mut r = FrameReader::new();
        let a = length_prefixed(b"hello");
        let b = length_prefixed(b"world!");
        let mut all = a.clone();
        all.extend_from_slice(&b);
        r.push(&all[..3]);
        assert_eq!(r.next_frame().unwrap(), None);
        r.push(&all[3..]);
        assert_eq!(r.next_frame().unwrap().as_deref(), Some(&b"hello"[..]));
        assert_eq!(r.next_frame().unwrap().as_deref(), Some(&b"world!"[..]));
        assert_eq!(r.next_frame().unwrap(), None);
        r.push(&u32::MAX.to_be_bytes());
        assert!(matches!(r.next_frame(), Err(FrameError::TooLong(_))));
    }
}
