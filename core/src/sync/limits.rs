//! Limits on what one device may bring into the relay: per document, per session, and
//! storage quotas per device and per office. The values and their reasons are listed in
//! docs/protocol.md "Bounds" (relay/tests/bounds_table.rs reads them against these
//! constants).

/// Most bytes a document may hold at the relay: its stored chunks plus the changes a
/// session adds, uncompressed.
pub const MAX_DOC_BYTES: u64 = 16 << 20;
/// Most changes a document may have.
pub const MAX_DOC_CHANGES: u64 = 100_000;
/// Most operations a document may hold at the relay: what one load may hold at all
/// ([`super::inflate::MAX_DECODED_ROWS`]), so a document the relay keeps always loads
/// within the decode bound.
pub const MAX_DOC_OPS: u64 = super::inflate::MAX_DECODED_ROWS;
/// Most bytes the automerge data of one `doc_data` or `doc_sync` frame may decode to
/// (compressed columns and changes counted inflated), checked before automerge sees it.
pub const MAX_DECODED_FRAME: u64 = 64 << 20;

/// Defaults of [`IntakeLimits`] (relay.toml `[limits]` overrides them).
pub const DEFAULT_SESSION_DOCS: u64 = 10_000;
/// See [`IntakeLimits::session_bytes`].
pub const DEFAULT_SESSION_BYTES: u64 = 256 << 20;
/// See [`IntakeLimits::session_decoded`].
pub const DEFAULT_SESSION_DECODED: u64 = 512 << 20;
/// See [`Quota::device_docs`].
pub const DEFAULT_DEVICE_DOCS: u64 = 50_000;
/// See [`Quota::device_bytes`].
pub const DEFAULT_DEVICE_BYTES: u64 = 2 << 30;
/// See [`Quota::office_docs`].
pub const DEFAULT_OFFICE_DOCS: u64 = 500_000;
/// See [`Quota::office_bytes`].
pub const DEFAULT_OFFICE_BYTES: u64 = 20 << 30;

/// Storage quotas: what the relay stores for one device and for one office.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Documents one device may create at the relay.
    pub device_docs: u64,
    /// Bytes one device may write at the relay (snapshots and change chunks as stored).
    pub device_bytes: u64,
    /// Documents one office may hold.
    pub office_docs: u64,
    /// Bytes one office may hold.
    pub office_bytes: u64,
}

impl Default for Quota {
    fn default() -> Self {
        Quota {
            device_docs: DEFAULT_DEVICE_DOCS,
            device_bytes: DEFAULT_DEVICE_BYTES,
            office_docs: DEFAULT_OFFICE_DOCS,
            office_bytes: DEFAULT_OFFICE_BYTES,
        }
    }
}

/// What one relay session may take in from its device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntakeLimits {
    /// Most bytes per document ([`MAX_DOC_BYTES`] by default).
    pub doc_bytes: u64,
    /// Most changes per document ([`MAX_DOC_CHANGES`] by default).
    pub doc_changes: u64,
    /// Documents one session may write; the rest of the session is refused (`limit`).
    pub session_docs: u64,
    /// Bytes one session may write.
    pub session_bytes: u64,
    /// Bytes the automerge data one session receives may decode to, in all.
    pub session_decoded: u64,
    /// Storage quotas.
    pub quota: Quota,
}

impl Default for IntakeLimits {
    fn default() -> Self {
        IntakeLimits {
            doc_bytes: MAX_DOC_BYTES,
            doc_changes: MAX_DOC_CHANGES,
            session_docs: DEFAULT_SESSION_DOCS,
            session_bytes: DEFAULT_SESSION_BYTES,
            session_decoded: DEFAULT_SESSION_DECODED,
            quota: Quota::default(),
        }
    }
}
