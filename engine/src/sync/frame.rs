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

/// The most bindings one `actors` frame carries (more go in the next frame).
pub const MAX_ACTOR_BINDINGS: usize = 10_000;

/// The longest automerge actor id accepted on the wire (bytes).
pub const MAX_ACTOR_BYTES: usize = 32;

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
        /// Document ids.
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
    /// Device → relay: caught up; the session ends.
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
        ciborium::from_reader(bytes).map_err(|_| FrameError::Malformed)
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
