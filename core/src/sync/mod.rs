//! The sync protocol, sans-IO: frames ([`frame`]), the session state machine
//! ([`Session`]) and what it needs from a store ([`SyncStorage`]).
//!
//! A device and the relay each run a [`Session`] over one ordered byte stream (a QUIC
//! stream, a bundle file, or a simulated link). The device says `hello` with the documents
//! it changed since its last complete sync and a digest of its catalog; the relay answers
//! `welcome` with its own changes since the device's cursor. Only documents that changed
//! on either side are exchanged, each with automerge's sync protocol, all pipelined.
//! Per-peer sync states and cursors are persisted at every flush, so a cut connection
//! resumes where it stopped. See `docs/protocol.md`.

pub mod admission;
pub mod bundle;
pub mod frame;
pub mod inflate;
pub mod limits;
mod memory;
pub mod schedule;
mod session;
pub mod sharing;
pub mod storage;

pub use frame::{Frame, FrameError, FrameReader, MAX_FRAME_BYTES, PROTOCOL_VERSION};
pub use memory::MemoryStorage;
pub use session::{
    PeerAccess, Progress, SENT_WHOLE_BATCH, Session, SyncError, SyncOutcome, catalog_digest,
    entry_digest, legacy_catalog_digest, xor_into,
};
pub use storage::{
    CatalogEntry, PeerRecord, SharedDocs, StartQuery, StartReads, StorageError, SyncBatch,
    SyncStorage, Usage,
};
