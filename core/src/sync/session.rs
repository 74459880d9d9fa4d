//! The sync session: a sans-IO state machine, one per connection (or bundle).
//!
//! Frames in ([`Session::handle_frame`]), frames out ([`Session::poll_transmit`]), store
//! writes at [`Session::flush`]. No sockets, clocks or threads: the driver (QUIC, a
//! bundle file, a simulation) moves the bytes and says when a batch of input is done.
//! The protocol is described in `docs/protocol.md`.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use automerge::sync::{self as am_sync, SyncDoc};
use automerge::{Automerge, ChangeHash, ReadDoc};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};

use super::admission::{Admission, EvidenceVerdict, Incoming, Uploader, incoming_heads};
use super::frame::{
    CAP_ACTORS, CAP_SET_DIGEST, Frame, FrameError, MAX_ACTOR_BINDINGS, MAX_WANT_DOCS, MAX_WANT_IDS,
    PROTOCOL_VERSION, WANT_WINDOW_BYTES, WANT_WINDOW_FRAMES, WireBinding, WireEntry, doc_id,
};
use super::inflate::{InflateError, decoded_size, split_chunk};
use super::limits::{IntakeLimits, MAX_DECODED_FRAME, MAX_DOC_OPS};
use super::sharing::{REGISTRATION_KIND, share_keys};
use super::storage::{
    ActorBinding, CatalogEntry, Hash, Heads, PeerRecord, StartQuery, StartReads, StorageError,
    SyncBatch, SyncStorage, SyncWrite,
};
use crate::doc::{Snapshot, has_conflicts};
use crate::ids::DocId;
use crate::schema::DocKind;

/// Who the relay is talking to, from the verified device certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAccess {
    /// The device id from the certificate.
    pub device_id: String,
    /// The device name from the certificate.
    pub device_name: String,
    /// The offices whose documents the device may read and write.
    pub offices: Vec<String>,
}

/// Progress of a session, for progress bars.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Documents this session has to bring in line.
    pub docs_total: u64,
    /// Of those, documents known to be in line.
    pub docs_done: u64,
    /// Bytes of frames handed to the driver.
    pub bytes_sent: u64,
    /// Bytes of frames received.
    pub bytes_received: u64,
}

/// What a finished session did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncOutcome {
    /// Documents whose changes (or whole content) this side sent.
    pub docs_sent: u64,
    /// Documents this side wrote because of what it received.
    pub docs_received: u64,
    /// Documents touched by this session that now hold concurrent values of a field.
    pub conflicted: Vec<DocId>,
    /// Documents the peer refused, with its reason code.
    pub rejected: Vec<(DocId, String)>,
    /// Flights the device sent that needed an answer (device side only).
    pub round_trips: u64,
    /// Frame bytes sent.
    pub bytes_sent: u64,
    /// Frame bytes received.
    pub bytes_received: u64,
}

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// A frame could not be decoded.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A frame arrived that the protocol does not allow now.
    #[error("protocol error: unexpected '{frame}' frame while {state}")]
    Unexpected {
        /// The frame's name.
        frame: &'static str,
        /// What the session was doing.
        state: &'static str,
    },
    /// The peers speak different protocol versions.
    #[error("protocol version mismatch: this side speaks {ours}, the peer {theirs}")]
    Version {
        /// Ours.
        ours: u32,
        /// Theirs.
        theirs: u32,
    },
    /// The peer ended the session with an error.
    #[error("the peer ended the sync: {message} ({code})")]
    Remote {
        /// Its code.
        code: String,
        /// Its sentence.
        message: String,
    },
    /// This side refused the peer (the same was sent to it as an `error` frame).
    #[error("refused: {message} ({code})")]
    Refused {
        /// The code sent.
        code: &'static str,
        /// The sentence sent.
        message: String,
    },
    /// Document data from our own store failed to load.
    #[error("document {doc} could not be loaded for sync: {reason}")]
    Document {
        /// Short id.
        doc: String,
        /// What failed.
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Relay: waiting for `hello`.
    AwaitHello,
    /// Device: `hello` sent, waiting for `welcome`.
    AwaitWelcome,
    /// Documents are being exchanged.
    Syncing,
    /// Caught up.
    Finished,
    /// Ended by an error.
    Failed,
}

impl Phase {
    fn describe(self) -> &'static str {
        match self {
            Phase::AwaitHello => "waiting for hello",
            Phase::AwaitWelcome => "waiting for welcome",
            Phase::Syncing => "syncing documents",
            Phase::Finished => "finished",
            Phase::Failed => "failed",
        }
    }
}

enum Role {
    Device {
        offices: Vec<String>,
        /// Our sequence number when the session started.
        start_seq: u64,
        /// From `welcome`: the relay's store id and sequence number.
        relay: Option<(String, u64)>,
        /// Whole documents announced in `welcome`.
        expected_full: HashSet<DocId>,
        /// Documents we changed whose first round is still to be sent, started by
        /// [`Session::poll_transmit`] within the outgoing window.
        unstarted: VecDeque<DocId>,
        /// Whether a flight is open (sent, not yet answered).
        flight_open: bool,
        round_trips: u64,
        digest: [u8; 32],
    },
    Relay {
        access: PeerAccess,
        /// The rules every incoming document's new state must pass.
        admission: Arc<dyn Admission>,
        /// Documents of other offices the device may read (registration-gated sharing),
        /// fixed at `hello`.
        shared: HashSet<DocId>,
        /// Actors confirmed as this device's in this session.
        own_actors: HashSet<Vec<u8>>,
        /// Forget the device's sync states at the first flush.
        reset: bool,
    },
}

/// One document open in the session.
struct Slot {
    doc: Automerge,
    state: am_sync::State,
    kind: Option<String>,
    office: Option<String>,
    /// Whether our store has the document.
    stored: bool,
    /// Heads as stored (to write only what is new).
    stored_heads: Vec<ChangeHash>,
    /// Our store's sequence number of the document when it was loaded.
    base_seq: u64,
    /// Whether a sync state with this peer was stored before this session.
    had_state: bool,
    doc_dirty: bool,
    state_dirty: bool,
    sent_changes: bool,
    /// Relay: the card evidence verified for a registration new to the store, written
    /// with it.
    evidence: Option<EvidenceVerdict>,
    /// Bytes of the document as stored when loaded (its chunks).
    stored_bytes: u64,
    /// Relay: another office's stored document, answered as if the relay did not have
    /// it (an empty slot); any change to it is refused.
    foreign: bool,
    /// A document this store lacked, as it arrived whole and loaded strictly: stored as
    /// these bytes (not saved again) while `doc` still has their heads.
    arrived: Option<Arrived>,
    /// Relay: whether `doc` held concurrent values at these heads, as the admission rules
    /// found while reading it ([`Admitted::conflicts`]).
    admitted_conflicts: Option<(Vec<ChangeHash>, bool)>,
}

/// Most threads [`Session::handle_frames`] decodes whole documents on.
pub const MAX_DECODE_THREADS: usize = 4;

/// Most frames of a batch whose documents are decoded ahead at once (each decoded survey
/// holds about 100 KB; the QUIC driver passes at most 64 frames a batch anyway).
const PREDECODE_FRAMES: usize = 64;

/// Records of documents sent whole written per commit once a device has said `done`
/// ([`Session::record_sent_whole`]).
pub const SENT_WHOLE_BATCH: usize = 1024;

/// A `doc_data` frame's bytes decoded ahead, on another thread, by
/// [`Session::handle_frames`]: what [`Snapshot::load`] gave for them after they passed the
/// decode bound. Used only for the frame it was decoded from, and only where the session
/// would load those bytes whole itself.
struct Predecoded {
    id: DocId,
    /// What the bytes decode to ([`decoded_size`]), within [`MAX_DECODED_FRAME`].
    decoded: u64,
    snapshot: Snapshot,
    doc: Automerge,
}

/// Whether `doc_data` bytes may be a whole document: they begin with a saved document's
/// chunk, as every musubi peer sends a document the other side lacks (a store's snapshot,
/// with any later changes behind it). Changes of a document the receiver holds are never
/// tried as a whole document: that decode would be wasted, and automerge logs a load of
/// changes without their parents as an error.
fn may_be_whole(bytes: &[u8]) -> bool {
    split_chunk(bytes).is_ok_and(|(chunk, _)| chunk.is_document())
}

/// `bytes` (which [`may_be_whole`]) as a whole document, if they are one: they load
/// strictly and lack no change.
fn whole_document(bytes: Vec<u8>) -> Option<(Snapshot, Automerge)> {
    Snapshot::load(bytes)
        .ok()
        .filter(|(_, doc)| doc.get_missing_deps(&[]).is_empty())
}

/// Decodes the whole documents of a batch of `doc_data` frames on up to `threads` threads:
/// per frame, in order, what [`Session::on_doc_data`] would load strictly if the document
/// is new to this store. Frames of other kinds, data over the decode bound or that does not
/// load come back as `None` (the session then handles them as it would have).
fn predecode(frames: &[Vec<u8>], threads: usize) -> Vec<Option<Predecoded>> {
    let one = |bytes: &Vec<u8>| -> Option<Predecoded> {
        let Ok(Frame::DocData { id, bytes }) = Frame::decode(bytes) else {
            return None;
        };
        let id = doc_id(&id).ok()?;
        if !may_be_whole(&bytes) {
            return None;
        }
        let decoded = decoded_size(&bytes, MAX_DECODED_FRAME).ok()?;
        let (snapshot, doc) = whole_document(bytes.into_vec())?;
        Some(Predecoded {
            id,
            decoded,
            snapshot,
            doc,
        })
    };
    let per_thread = frames.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = frames
            .chunks(per_thread)
            .map(|part| scope.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            // A thread that panicked decoded nothing: its frames are handled as usual.
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// A whole document as it arrived (see [`Slot::arrived`]).
struct Arrived {
    snapshot: Snapshot,
    /// The heads of `snapshot`, as automerge gives them.
    heads: Vec<ChangeHash>,
    /// What the bytes decode to ([`decoded_size`]): the document's size for the
    /// per-document limit (its compressed size would let a repetitive document through).
    decoded: u64,
}

impl Slot {
    /// A document this store does not hold; `foreign` marks another office's id (see
    /// [`Slot::foreign`]).
    fn empty(foreign: bool) -> Slot {
        Slot {
            doc: Automerge::new(),
            state: am_sync::State::new(),
            kind: None,
            office: None,
            stored: false,
            base_seq: 0,
            had_state: false,
            stored_heads: Vec::new(),
            doc_dirty: false,
            state_dirty: false,
            sent_changes: false,
            evidence: None,
            stored_bytes: 0,
            foreign,
            arrived: None,
            admitted_conflicts: None,
        }
    }
}

/// Relay: the actor bindings sent to a device that asked for them (`hello` caps), so its
/// audit history can show which device the relay attests for each change.
#[derive(Default)]
struct Attest {
    /// Whether the device named [`CAP_ACTORS`] in `hello`.
    enabled: bool,
    /// Per document, the heads up to which its changes' actors were collected.
    scanned: HashMap<DocId, Vec<ChangeHash>>,
    /// Actors collected and not yet looked up.
    pending: BTreeSet<Vec<u8>>,
    /// Actors looked up already in this session (bound or not).
    done: HashSet<Vec<u8>>,
}

impl Attest {
    /// Collects the actors of `doc`'s changes not collected before (if the device asked).
    fn note(&mut self, id: DocId, doc: &Automerge) {
        if !self.enabled {
            return;
        }
        let heads = doc.get_heads();
        let have: Vec<ChangeHash> = match self.scanned.get(&id) {
            Some(h) if *h == heads => return,
            // Start from what was scanned, as far as this copy of the document holds it.
            Some(h) => h
                .iter()
                .copied()
                .filter(|c| doc.get_change_meta_by_hash(c).is_some())
                .collect(),
            None => Vec::new(),
        };
        for meta in doc.get_changes_meta(&have) {
            let actor = meta.actor.to_bytes().to_vec();
            if !self.done.contains(&actor) {
                self.pending.insert(actor);
            }
        }
        self.scanned.insert(id, heads);
    }

    /// Collects the actors of a whole saved document read from its header (see
    /// [`saved_doc_header`]). Its heads are not kept: a document sent whole is not opened
    /// again in the session unless the device changes it, and then [`Attest::note`] scans
    /// it once from the start (actors already sent are skipped). Keeping them cost a map
    /// entry per document of a first sync.
    fn note_header(&mut self, actors: Vec<Vec<u8>>) {
        if !self.enabled {
            return;
        }
        for actor in actors {
            if !self.done.contains(&actor) {
                self.pending.insert(actor);
            }
        }
    }
}

/// An unsigned LEB128 number and the bytes after it.
fn uleb128(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, bytes.get(i + 1..)?));
        }
    }
    None
}

/// The actor table and heads at the start of a saved document (`Automerge::save`: one
/// document chunk of the automerge binary format: magic bytes, checksum, chunk type 0,
/// length, then the actors and the heads), read without decoding the document. `None` for
/// anything else (a change chunk, several chunks); the caller then loads the document.
fn saved_doc_header(bytes: &[u8]) -> Option<(Vec<Vec<u8>>, Vec<ChangeHash>)> {
    const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
    let rest = bytes.strip_prefix(&MAGIC)?.get(4..)?; // after the checksum
    let (&chunk_type, rest) = rest.split_first()?;
    if chunk_type != 0 {
        return None;
    }
    let (len, rest) = uleb128(rest)?;
    // One chunk, exactly: a save with more chunks after it is not read this way.
    if usize::try_from(len).ok()? != rest.len() {
        return None;
    }
    let (count, mut rest) = uleb128(rest)?;
    let mut actors = Vec::new();
    for _ in 0..count {
        let (n, r) = uleb128(rest)?;
        let n = usize::try_from(n).ok()?;
        actors.push(r.get(..n)?.to_vec());
        rest = r.get(n..)?;
    }
    let (count, mut rest) = uleb128(rest)?;
    let mut heads = Vec::new();
    for _ in 0..count {
        let hash: [u8; 32] = rest.get(..32)?.try_into().ok()?;
        heads.push(ChangeHash(hash));
        rest = rest.get(32..)?;
    }
    Some((actors, heads))
}

/// A binding as sent to a device, or `None` if the certificate's device id cannot travel
/// (a name that cannot is left out).
fn wire_binding(b: ActorBinding) -> Option<WireBinding> {
    let mut w = WireBinding {
        actor: ByteBuf::from(b.actor),
        device: b.device,
        name: b.device_name.filter(|n| !n.is_empty()),
    };
    if w.check().is_err() {
        w.name = None;
        w.check().ok()?;
    }
    Some(w)
}

/// Why a document is queued to be sent whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queued {
    /// Announced in `welcome`'s `full`: what the device lacks of it is sent unasked.
    Announced,
    /// The device asked for it in `want`.
    Asked,
    /// Newly shared with the device (a registration stored meanwhile).
    Shared,
}

/// Relay: documents to send (announced in `welcome`, asked for in `want`, or newly
/// shared), produced lazily by [`Session::poll_transmit`] within the outgoing window, so
/// a session holds only the few documents in flight however large the office is.
#[derive(Default)]
struct Wants {
    /// Ids still to send, in order, and why each is queued.
    queue: VecDeque<(DocId, Queued)>,
    /// Whether `hello` started afresh (cursor 0 or another relay's epoch): announced
    /// documents are then sent whole whatever sync state the relay kept.
    fresh: bool,
    /// Ids sent or queued whole, answered `unknown`, or sent in `welcome`'s `full` in this
    /// session: not again.
    whole: HashSet<DocId>,
    /// Distinct ids the device asked for in this session (at most [`MAX_WANT_DOCS`]).
    asked: usize,
    /// An `idle` owed once the queue is empty: the count of document frames received at
    /// the flush that owed it.
    idle_due: Option<u64>,
    /// Documents sent whole, with their heads: once the device has said `done` (it
    /// received everything), the relay records that the device holds them, without
    /// loading them again (the device does not answer a whole document it lacked).
    sent_whole: SentWhole,
}

/// The documents a relay sent whole in a session, with their heads, kept until the device
/// says `done`: an entry per document of a first sync, so each is small and holds no
/// allocation of its own when the document has one head (almost every document; several
/// only while concurrent edits are not merged yet).
#[derive(Default)]
struct SentWhole {
    one_head: Vec<(DocId, ChangeHash)>,
    more_heads: Vec<(DocId, Vec<ChangeHash>)>,
}

impl SentWhole {
    fn push(&mut self, id: DocId, heads: Vec<ChangeHash>) {
        match heads.as_slice() {
            [one] => self.one_head.push((id, *one)),
            _ => self.more_heads.push((id, heads)),
        }
    }

    /// Every entry, leaving none.
    fn take(&mut self) -> impl Iterator<Item = (DocId, Vec<ChangeHash>)> + use<> {
        let one = std::mem::take(&mut self.one_head);
        let more = std::mem::take(&mut self.more_heads);
        one.into_iter()
            .map(|(id, head)| (id, vec![head]))
            .chain(more)
    }
}

/// A sync session (device or relay side).
pub struct Session<S: SyncStorage> {
    storage: S,
    role: Role,
    peer: String,
    phase: Phase,
    out: VecDeque<Vec<u8>>,
    /// Bytes held in `out`.
    out_bytes: usize,
    wants: Wants,
    slots: HashMap<DocId, Slot>,
    /// Documents in sync with the peer whose slot was released (see
    /// [`Self::release_settled`]), with their heads then.
    settled: HashMap<DocId, SettledHeads>,
    /// Device: the whole document of the frame being handled, decoded ahead by
    /// [`Session::handle_frames`] (see [`Predecoded`]).
    predecoded: Option<Predecoded>,
    active: BTreeSet<DocId>,
    pending: Vec<SyncWrite>,
    peer_record: Option<PeerRecord>,
    doc_frames_sent: u64,
    doc_frames_received: u64,
    last_idle_sent: Option<(u64, u64)>,
    peer_idle: Option<(u64, u64)>,
    sent_docs: HashSet<DocId>,
    received_docs: HashSet<DocId>,
    rejected: Vec<(DocId, String)>,
    bytes_sent: u64,
    bytes_received: u64,
    conflicted: Vec<DocId>,
    /// Documents refused in this session (relay: by us; device: by the relay), with the
    /// code: no further sync messages are exchanged for them.
    refused: HashMap<DocId, String>,
    attest: Attest,
    /// Relay: what the session may take in.
    limits: IntakeLimits,
    /// Relay: bytes the automerge data received so far decoded to.
    decoded_in: u64,
    /// Relay: documents and bytes written by this session's flushes.
    written_docs: u64,
    written_bytes: u64,
    /// Relay: the shared set is to be worked out again before the next batch.
    shared_stale: bool,
    /// Relay: …and before the next queued document is sent (set with `shared_stale`; a
    /// check made for sending does not stand in for the next batch's).
    send_stale: bool,
}

/// What the decode bound says about incoming automerge data.
enum Intake {
    Fits,
    /// The document is refused with this code; the session goes on.
    Refuse(&'static str),
    /// The session has taken in all it may.
    SessionOver,
}

impl<S: SyncStorage> std::fmt::Debug for Session<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("phase", &self.phase)
            .field("active", &self.active.len())
            .finish_non_exhaustive()
    }
}

/// The digest of a catalog: the XOR of every entry's [`entry_digest`]. It does not depend
/// on order, so a store keeps it per office and up to date on every write (adding an
/// entry's part and taking away the one it replaces), and the digest of several offices
/// is the XOR of theirs: a no-op sync never reads the whole catalog.
pub fn catalog_digest(entries: &[CatalogEntry]) -> [u8; 32] {
    let mut digest = [0u8; 32];
    for e in entries {
        xor_into(&mut digest, &entry_digest(e.id, &e.heads));
    }
    digest
}

/// One catalog entry's part of [`catalog_digest`]: SHA-256 over the document id's 16 bytes
/// followed by its sorted heads, 32 bytes each (the stores' packed `heads` column).
pub fn entry_digest(id: DocId, heads: &[Hash]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(id.as_bytes());
    for head in heads {
        h.update(head);
    }
    h.finalize().into()
}

/// `acc ^= part`, byte by byte.
pub fn xor_into(acc: &mut [u8; 32], part: &[u8; 32]) {
    for (a, p) in acc.iter_mut().zip(part) {
        *a ^= p;
    }
}

/// The digest devices before [`CAP_SET_DIGEST`] compare: SHA-256 over the sorted entries
/// (id, number of heads, heads). A relay computes it from the whole catalog for such a
/// device only.
pub fn legacy_catalog_digest(entries: &[CatalogEntry]) -> [u8; 32] {
    let mut h = Sha256::new();
    for e in entries {
        h.update(e.id.as_bytes());
        h.update((e.heads.len() as u64).to_be_bytes());
        for head in &e.heads {
            h.update(head);
        }
    }
    h.finalize().into()
}

/// The heads a released document had (see [`Session::release_settled`]): kept for every
/// document a session exchanged, so the one head almost every document has is kept inline,
/// without an allocation of its own.
#[derive(Debug, PartialEq, Eq)]
enum SettledHeads {
    One(Hash),
    Several(Box<[Hash]>),
}

impl SettledHeads {
    /// From sorted heads.
    fn of(heads: Heads) -> Self {
        match heads.as_slice() {
            [one] => Self::One(*one),
            _ => Self::Several(heads.into_boxed_slice()),
        }
    }

    /// Whether these are `heads` (sorted).
    fn is(&self, heads: &[Hash]) -> bool {
        match self {
            Self::One(one) => heads == [*one],
            Self::Several(several) => **several == *heads,
        }
    }
}

fn sorted(heads: Vec<ChangeHash>) -> Heads {
    let mut h: Heads = heads.into_iter().map(|c| c.0).collect();
    h.sort_unstable();
    h
}

fn id_buf(id: DocId) -> ByteBuf {
    ByteBuf::from(id.as_bytes().to_vec())
}

/// A document that could not be loaded, named by its short id only.
fn doc_error(id: DocId, e: &automerge::AutomergeError) -> SyncError {
    SyncError::Document {
        doc: id.short(),
        reason: e.to_string(),
    }
}

/// Threads that decode a batch's whole documents: the machine's cores, at most
/// [`MAX_DECODE_THREADS`]. Asked of the system once per process (on Linux the answer reads
/// the cgroup's files: a system call per batch otherwise).
fn decode_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .min(MAX_DECODE_THREADS)
    })
}

pub(crate) fn load_chunks(chunks: &[Vec<u8>]) -> Result<Automerge, automerge::AutomergeError> {
    let mut doc = Automerge::new();
    for c in chunks {
        doc.load_incremental(c)?;
    }
    Ok(doc)
}

/// A root string property of a document (kind, office).
pub(crate) fn root_str(doc: &Automerge, key: &str) -> Option<String> {
    match doc.get(automerge::ROOT, key).ok().flatten()? {
        (automerge::Value::Scalar(s), _) => match s.as_ref() {
            automerge::ScalarValue::Str(v) => Some(v.to_string()),
            _ => None,
        },
        (automerge::Value::Object(automerge::ObjType::Text), obj) => doc.text(&obj).ok(),
        _ => None,
    }
}

/// A string at a path of map keys (scalar or text).
fn path_str(doc: &Automerge, path: &[&str]) -> Option<String> {
    let mut obj = automerge::ROOT;
    let (last, parents) = path.split_last()?;
    for key in parents {
        match doc.get(&obj, *key).ok().flatten()? {
            (automerge::Value::Object(automerge::ObjType::Map), id) => obj = id,
            _ => return None,
        }
    }
    match doc.get(&obj, *last).ok().flatten()? {
        (automerge::Value::Scalar(s), _) => match s.as_ref() {
            automerge::ScalarValue::Str(v) => Some(v.to_string()),
            _ => None,
        },
        (automerge::Value::Object(automerge::ObjType::Text), id) => doc.text(&id).ok(),
        _ => None,
    }
}

/// The listing title, read straight from the automerge document (same rule as
/// [`crate::doc::title_of`], without building the whole JSON).
pub(crate) fn title_from(doc: &Automerge, kind: DocKind) -> String {
    let name = crate::doc::TITLE_NAMES
        .iter()
        .find_map(|p| path_str(doc, p));
    let date = crate::doc::TITLE_DATES
        .iter()
        .find_map(|p| path_str(doc, p));
    let mut parts = vec![kind.label().to_owned()];
    parts.extend(name);
    parts.extend(date);
    parts.join(" ")
}

/// Whether one document write fits the quotas and the session's caps.
enum WriteCheck {
    Fits,
    /// Over a storage quota: the document is refused (`quota`), the session goes on.
    Quota,
    /// Over the session's caps: the rest of the session is refused (`limit`).
    SessionOver,
}

/// Checks a write of `(docs, bytes)` for `office` by the session's device against the
/// session's caps (`written`: what the session wrote, this flush included) and the
/// storage quotas (usage counters read once per office and flush, plus this flush).
fn admit_write<S: SyncStorage>(
    storage: &S,
    peer: &str,
    limits: &IntakeLimits,
    usage: &mut HashMap<String, super::storage::Usage>,
    office: &str,
    (docs, bytes): (u64, u64),
    (written_docs, written_bytes): (u64, u64),
) -> Result<WriteCheck, SyncError> {
    if written_docs + docs > limits.session_docs || written_bytes + bytes > limits.session_bytes {
        return Ok(WriteCheck::SessionOver);
    }
    let u = match usage.get_mut(office) {
        Some(u) => u,
        None => usage
            .entry(office.to_owned())
            .or_insert(storage.usage(office, peer)?),
    };
    let q = &limits.quota;
    if u.peer_docs + docs > q.device_docs
        || u.peer_bytes + bytes > q.device_bytes
        || u.office_docs + docs > q.office_docs
        || u.office_bytes + bytes > q.office_bytes
    {
        return Ok(WriteCheck::Quota);
    }
    u.peer_docs += docs;
    u.peer_bytes += bytes;
    u.office_docs += docs;
    u.office_bytes += bytes;
    Ok(WriteCheck::Fits)
}

impl<S: SyncStorage> Session<S> {
    /// A device's session with the relay whose store id is unknown yet; `relay_key` names
    /// the relay installation in our per-peer state (e.g. a hash of its CA).
    pub fn device(
        storage: S,
        relay_key: &str,
        offices: Vec<String>,
        actor: Vec<u8>,
    ) -> Result<Self, SyncError> {
        let StartReads {
            record,
            seq: start_seq,
            changed,
            digest,
            ..
        } = storage.session_start(&StartQuery {
            peer: relay_key.to_owned(),
            offices: offices.clone(),
            ..StartQuery::default()
        })?;
        let mut s = Session::new(
            storage,
            relay_key.to_owned(),
            Phase::AwaitWelcome,
            Role::Device {
                offices,
                start_seq,
                relay: None,
                expected_full: HashSet::new(),
                unstarted: changed.iter().map(|e| e.id).collect(),
                flight_open: false,
                round_trips: 0,
                digest,
            },
        );
        s.send(&Frame::Hello {
            protocol: PROTOCOL_VERSION,
            actor: ByteBuf::from(actor),
            epoch: record.epoch.clone(),
            cursor: record.cursor,
            changed: changed.iter().map(WireEntry::from).collect(),
            digest: ByteBuf::from(digest.to_vec()),
            caps: vec![CAP_ACTORS.to_owned(), CAP_SET_DIGEST.to_owned()],
        });
        // The first round of every changed document follows the hello, a window at a
        // time (see `start_unstarted`).
        s.active.extend(changed.iter().map(|e| e.id));
        Ok(s)
    }

    /// The relay's session with an authenticated device; every document the device sends
    /// must pass `admission` (see [`super::admission`]).
    pub fn relay(
        storage: S,
        access: PeerAccess,
        admission: Arc<dyn Admission>,
    ) -> Result<Self, SyncError> {
        Ok(Session::new(
            storage,
            access.device_id.clone(),
            Phase::AwaitHello,
            Role::Relay {
                access,
                admission,
                shared: HashSet::new(),
                own_actors: HashSet::new(),
                reset: false,
            },
        ))
    }

    fn new(storage: S, peer: String, phase: Phase, role: Role) -> Self {
        Session {
            storage,
            role,
            peer,
            phase,
            out: VecDeque::new(),
            out_bytes: 0,
            wants: Wants::default(),
            slots: HashMap::new(),
            settled: HashMap::new(),
            predecoded: None,
            active: BTreeSet::new(),
            pending: Vec::new(),
            peer_record: None,
            doc_frames_sent: 0,
            doc_frames_received: 0,
            last_idle_sent: None,
            peer_idle: None,
            sent_docs: HashSet::new(),
            received_docs: HashSet::new(),
            rejected: Vec::new(),
            bytes_sent: 0,
            bytes_received: 0,
            conflicted: Vec::new(),
            refused: HashMap::new(),
            attest: Attest::default(),
            limits: IntakeLimits::default(),
            decoded_in: 0,
            written_docs: 0,
            written_bytes: 0,
            shared_stale: false,
            send_stale: false,
        }
    }

    /// Relay: what this session may take in from its device (defaults otherwise).
    #[must_use]
    pub fn with_limits(mut self, limits: IntakeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Bounds what incoming automerge data decodes to before automerge sees it (see
    /// [`super::inflate`]): at most [`MAX_DECODED_FRAME`] per frame and, on the relay,
    /// what is left of the session's budget.
    fn check_decoded<'a>(&mut self, chunks: impl Iterator<Item = &'a [u8]>) -> Intake {
        let left = if self.is_device() {
            MAX_DECODED_FRAME
        } else {
            self.limits.session_decoded.saturating_sub(self.decoded_in)
        };
        let budget = left.min(MAX_DECODED_FRAME);
        let mut total = 0u64;
        for chunk in chunks {
            match decoded_size(chunk, budget - total) {
                Ok(n) => total += n,
                Err(InflateError::TooLarge { .. }) if budget < MAX_DECODED_FRAME => {
                    return Intake::SessionOver;
                }
                Err(InflateError::TooLarge { .. } | InflateError::TooManyRows) => {
                    return Intake::Refuse("too_large");
                }
                Err(InflateError::Malformed(_)) => return Intake::Refuse("invalid"),
            }
        }
        self.decoded_in = self.decoded_in.saturating_add(total);
        Intake::Fits
    }

    /// Acts on the decode bound's verdict on incoming automerge data for `id`: true to go
    /// on with it; false when the relay refused it or ended the session; on a device, data
    /// from the relay over the bound is an error naming `field`.
    fn take_in<'a>(
        &mut self,
        id: DocId,
        chunks: impl Iterator<Item = &'a [u8]>,
        field: &'static str,
    ) -> Result<bool, SyncError> {
        match self.check_decoded(chunks) {
            Intake::Fits => Ok(true),
            Intake::Refuse(_) if self.is_device() => {
                tracing::warn!(doc = %id.short(), field, "automerge data from the relay over the decode bound or malformed");
                Err(FrameError::Field(field).into())
            }
            Intake::Refuse(code) => {
                self.reject_doc(id, code);
                Ok(false)
            }
            Intake::SessionOver => {
                self.session_over("decoded data");
                Ok(false)
            }
        }
    }

    /// Relay: ends the session because it has taken in all it may; what it wrote stays,
    /// and the device syncs the rest in a later session.
    fn session_over(&mut self, what: &str) {
        tracing::warn!(device = %self.peer, what, "session limit reached; refusing the rest of the session");
        self.send(&Frame::Error {
            code: "limit".to_owned(),
            message: format!(
                "this session reached its limit of {what}; sync again later to continue"
            ),
        });
        self.wants.queue.clear();
        self.phase = Phase::Failed;
    }

    fn is_device(&self) -> bool {
        matches!(self.role, Role::Device { .. })
    }

    /// Relay: whether `id` is another office's document the device may read.
    fn is_shared(&self, id: DocId) -> bool {
        matches!(&self.role, Role::Relay { shared, .. } if shared.contains(&id))
    }

    fn offices(&self) -> &[String] {
        match &self.role {
            Role::Device { offices, .. } => offices,
            Role::Relay { access, .. } => &access.offices,
        }
    }

    fn send(&mut self, frame: &Frame) {
        if frame.is_doc_frame() {
            self.doc_frames_sent += 1;
        }
        self.push_out(frame.encode());
    }

    fn push_out(&mut self, bytes: Vec<u8>) {
        self.out_bytes += bytes.len();
        self.out.push_back(bytes);
    }

    /// Whether the session is over (successfully).
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// Whether the session ended with an error.
    pub fn is_failed(&self) -> bool {
        self.phase == Phase::Failed
    }

    /// The next frame body to send, if any. The relay loads the documents a device asked
    /// for here, a few at a time (see [`WANT_WINDOW_FRAMES`]), so call it only when the
    /// transport can take a frame.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.produce_wanted();
        self.start_unstarted();
        let frame = self.out.pop_front()?;
        self.out_bytes = self.out_bytes.saturating_sub(frame.len());
        self.bytes_sent += frame.len() as u64;
        if let Role::Device {
            flight_open,
            round_trips,
            ..
        } = &mut self.role
            && !*flight_open
            && self.phase != Phase::Finished
        {
            *flight_open = true;
            *round_trips += 1;
        }
        Some(frame)
    }

    /// Progress so far.
    pub fn progress(&self) -> Progress {
        let done = self
            .active
            .iter()
            .filter(|id| match self.slots.get(id) {
                Some(slot) => Self::slot_in_sync(slot),
                None => self.settled.contains_key(id),
            })
            .count();
        Progress {
            docs_total: self.active.len() as u64,
            docs_done: done as u64,
            bytes_sent: self.bytes_sent,
            bytes_received: self.bytes_received,
        }
    }

    /// What the session did (complete once finished).
    pub fn outcome(&self) -> SyncOutcome {
        let round_trips = match &self.role {
            Role::Device { round_trips, .. } => *round_trips,
            Role::Relay { .. } => 0,
        };
        SyncOutcome {
            docs_sent: self.sent_docs.len() as u64,
            docs_received: self.received_docs.len() as u64,
            conflicted: self.conflicted.clone(),
            rejected: self.rejected.clone(),
            round_trips,
            bytes_sent: self.bytes_sent,
            bytes_received: self.bytes_received,
        }
    }

    fn slot_in_sync(slot: &Slot) -> bool {
        let ours = sorted(slot.doc.get_heads());
        slot.state
            .their_heads
            .as_ref()
            .is_some_and(|t| sorted(t.clone()) == ours)
    }

    /// Ends the session with an error frame to the peer.
    fn refuse(&mut self, code: &'static str, message: String) -> SyncError {
        self.send(&Frame::Error {
            code: code.to_owned(),
            message: message.clone(),
        });
        self.phase = Phase::Failed;
        SyncError::Refused { code, message }
    }

    /// Handles a batch of received frame bodies, in order, as [`Self::handle_frame`] does
    /// one by one. On a device, the whole documents of the batch's `doc_data` frames are
    /// decoded first on the machine's cores (at most [`MAX_DECODE_THREADS`]): a first sync
    /// is mostly that decoding.
    pub fn handle_frames(&mut self, frames: &[Vec<u8>]) -> Result<(), SyncError> {
        // A part at a time, so at most `PREDECODE_FRAMES` documents are held decoded
        // ahead however many frames the caller passes.
        for part in frames.chunks(PREDECODE_FRAMES) {
            let mut ready = if self.is_device() && part.len() > 1 && decode_threads() > 1 {
                predecode(part, decode_threads())
            } else {
                Vec::new()
            };
            for (i, frame) in part.iter().enumerate() {
                self.predecoded = ready.get_mut(i).and_then(Option::take);
                let handled = self.handle_frame(frame);
                self.predecoded = None;
                handled?;
            }
        }
        Ok(())
    }

    /// Handles one received frame body.
    pub fn handle_frame(&mut self, bytes: &[u8]) -> Result<(), SyncError> {
        self.bytes_received += bytes.len() as u64;
        if let Role::Device { flight_open, .. } = &mut self.role {
            *flight_open = false;
        }
        let frame = match Frame::decode(bytes) {
            Ok(f) => f,
            Err(e) => {
                let err = self.refuse("protocol", format!("{e}"));
                tracing::warn!(error = %err, "undecodable sync frame");
                return Err(e.into());
            }
        };
        if frame.is_doc_frame() {
            self.doc_frames_received += 1;
        }
        // Not for `done`: after it the relay only answers `done` (nothing of another
        // office's documents is sent or taken in any more).
        let result =
            if self.shared_stale && self.phase == Phase::Syncing && !matches!(frame, Frame::Done) {
                self.share_newly_registered()
            } else {
                Ok(())
            }
            .and_then(|()| self.dispatch(frame));
        if let Err(e) = &result
            && self.phase != Phase::Failed
        {
            match e {
                SyncError::Remote { .. } => {}
                other => {
                    self.send(&Frame::Error {
                        code: "protocol".to_owned(),
                        message: other.to_string(),
                    });
                }
            }
            self.phase = Phase::Failed;
        }
        result
    }

    fn unexpected(&self, frame: &Frame) -> SyncError {
        SyncError::Unexpected {
            frame: frame.name(),
            state: self.phase.describe(),
        }
    }

    /// Device: the relay ended the session at its cap (`error: limit`). It answered some
    /// of this session's documents before its flush found them over the cap, so sync
    /// states this session flushed may say the relay holds changes it never wrote. They
    /// are forgotten (the cursor and the pushed sequence stay), and the next session
    /// compares every document written since the last completed sync afresh; without
    /// this, a document could wait on the tablet until it is edited again.
    fn forget_states_after_limit(&mut self) {
        let batch = SyncBatch {
            peer: self.peer.clone(),
            reset_peer: true,
            ..SyncBatch::default()
        };
        if let Err(e) = self.storage.commit(batch) {
            tracing::warn!(error = %e, "sync states with the relay not reset after its session limit");
        }
    }

    fn dispatch(&mut self, frame: Frame) -> Result<(), SyncError> {
        if let Frame::Error { code, message } = frame {
            self.phase = Phase::Failed;
            if self.is_device() && code == "limit" {
                self.forget_states_after_limit();
            }
            return Err(SyncError::Remote { code, message });
        }
        match (self.phase, self.is_device()) {
            (Phase::AwaitHello, false) => match frame {
                Frame::Hello {
                    protocol,
                    actor,
                    epoch,
                    cursor,
                    changed,
                    // The relay compares nothing: the device compares the relay's answer.
                    digest: _,
                    caps,
                } => {
                    self.attest.enabled = caps.iter().any(|c| c == CAP_ACTORS);
                    let legacy_digest = !caps.iter().any(|c| c == CAP_SET_DIGEST);
                    self.on_hello(
                        protocol,
                        actor.into_vec(),
                        epoch,
                        cursor,
                        changed,
                        legacy_digest,
                    )
                }
                other => Err(self.unexpected(&other)),
            },
            (Phase::AwaitWelcome, true) => match frame {
                Frame::Welcome {
                    protocol,
                    relay,
                    seq,
                    changed,
                    full,
                    digest,
                } => self.on_welcome(protocol, relay, seq, changed, full, digest),
                // The relay may answer pipelined documents before we read its welcome.
                other => Err(self.unexpected(&other)),
            },
            (Phase::Syncing, _) => self.on_syncing(frame),
            (Phase::Finished, false) => Err(self.unexpected(&frame)),
            _ => Err(self.unexpected(&frame)),
        }
    }

    fn on_syncing(&mut self, frame: Frame) -> Result<(), SyncError> {
        match frame {
            Frame::DocData { id, bytes } => self.on_doc_data(doc_id(&id)?, &bytes),
            Frame::DocSync { id, msg } => self.on_doc_sync(doc_id(&id)?, &msg),
            Frame::Want { ids } if !self.is_device() => self.on_want(&ids),
            Frame::Catalog { entries } if !self.is_device() => self.on_catalog(entries),
            Frame::CatalogDiff { differ, missing } if self.is_device() => {
                self.on_catalog_diff(differ, missing)
            }
            Frame::DocRejected { id, code } => {
                let id = doc_id(&id)?;
                tracing::warn!(doc = %id.short(), code = %code, "the peer refused a document");
                // Stop exchanging sync messages for it, but keep what the peer sent of its
                // own version (the relay sends its stored document with a refusal), so the
                // device learns, e.g., that a survey was submitted meanwhile.
                self.active.remove(&id);
                match &mut self.role {
                    // An announced document the relay no longer lets us read.
                    Role::Device { expected_full, .. } => {
                        expected_full.remove(&id);
                    }
                    Role::Relay { .. } => {
                        self.slots.remove(&id);
                    }
                }
                // Data and sync message of one document may both be refused.
                if !self.rejected.iter().any(|(r, c)| *r == id && *c == code) {
                    self.rejected.push((id, code.clone()));
                }
                self.refused.insert(id, code);
                Ok(())
            }
            Frame::Actors { bindings } if self.is_device() => self.on_actors(bindings),
            Frame::Idle { sent, received } => {
                self.peer_idle = Some((sent, received));
                Ok(())
            }
            Frame::Done if !self.is_device() => {
                self.phase = Phase::Finished;
                Ok(())
            }
            other => Err(self.unexpected(&other)),
        }
    }

    // ----- relay: hello --------------------------------------------------------------

    fn on_hello(
        &mut self,
        protocol: u32,
        actor: Vec<u8>,
        epoch: Option<String>,
        cursor: u64,
        changed: Vec<WireEntry>,
        legacy_digest: bool,
    ) -> Result<(), SyncError> {
        if protocol != PROTOCOL_VERSION {
            self.send(&Frame::Error {
                code: "version".to_owned(),
                message: format!(
                    "protocol version {protocol} is not supported; this relay speaks {PROTOCOL_VERSION}"
                ),
            });
            self.phase = Phase::Failed;
            return Err(SyncError::Version {
                ours: PROTOCOL_VERSION,
                theirs: protocol,
            });
        }
        if actor.is_empty() || actor.len() > 32 {
            return Err(FrameError::Field("hello actor").into());
        }
        let device = self.peer.clone();
        let device_name = match &self.role {
            Role::Relay { access, .. } => Some(access.device_name.clone()),
            Role::Device { .. } => None,
        };
        let my_id = self.storage.store_id();
        let fresh = cursor == 0 || epoch.as_deref() != Some(my_id.as_str());
        let offices = self.offices().to_vec();
        // One read of the store for all of `hello`'s answer (see `SyncStorage::session_start`).
        let StartReads {
            seq,
            changed: mut relay_changed,
            digest,
            actor_owner,
            shared,
            ..
        } = self.storage.session_start(&StartQuery {
            peer: self.peer.clone(),
            offices: offices.clone(),
            since: Some(if fresh { 0 } else { cursor }),
            ignore_states: fresh,
            actor: Some(actor.clone()),
            shared: true,
        })?;
        match actor_owner {
            Some(owner) if owner != device => {
                return Err(self.refuse(
                    "actor",
                    "this device's automerge actor is bound to another device".to_owned(),
                ));
            }
            Some(_) => {}
            None => self.pending.push(SyncWrite::BindActor {
                actor: actor.clone(),
                device,
                device_name,
            }),
        }
        // Other offices' documents shared through a valid registration: sent while the
        // device has not got their current state (new registrations included).
        if !shared.changed.is_empty() {
            relay_changed.extend(shared.changed);
            relay_changed.sort_by_key(|e| e.id);
            relay_changed.dedup_by_key(|e| e.id);
        }
        let device_changed: Vec<CatalogEntry> = changed
            .iter()
            .map(WireEntry::decode)
            .collect::<Result<_, _>>()?;
        let device_ids: HashSet<DocId> = device_changed.iter().map(|e| e.id).collect();
        // The digest the device compares with its own: the one its store keeps, or for a
        // device that predates it, the legacy one from the whole catalog.
        let digest = if legacy_digest {
            legacy_catalog_digest(&self.storage.catalog(&offices)?)
        } else {
            digest
        };
        // Data the device lacks, sent without being asked: whole documents it never
        // synced with us, otherwise the changes after the heads it is known to have. Only
        // announced here; each is loaded when the outgoing window has room for it (see
        // `send_announced`).
        self.wants.fresh = fresh;
        let mut full = Vec::new();
        for entry in relay_changed.iter().filter(|e| !device_ids.contains(&e.id)) {
            full.push(id_buf(entry.id));
            self.wants.whole.insert(entry.id);
            self.wants.queue.push_back((entry.id, Queued::Announced));
            self.active.insert(entry.id);
        }
        if let Role::Relay {
            own_actors,
            reset,
            shared: readable,
            ..
        } = &mut self.role
        {
            own_actors.insert(actor);
            *reset = fresh;
            *readable = shared.ids;
        }
        // `changed` stays empty: every document it would list is in `full` (its data
        // follows), and a device skips the entries of `full` (one of an older relay still
        // lists them there). Listing them again cost each side an entry per document of a
        // first sync, and the device a store lookup of every id.
        drop(relay_changed);
        self.send(&Frame::Welcome {
            protocol: PROTOCOL_VERSION,
            relay: my_id,
            seq,
            changed: Vec::new(),
            full,
            digest: ByteBuf::from(digest.to_vec()),
        });
        self.phase = Phase::Syncing;
        Ok(())
    }

    // ----- device: welcome ----------------------------------------------------------

    fn on_welcome(
        &mut self,
        protocol: u32,
        relay: String,
        seq: u64,
        changed: Vec<WireEntry>,
        full: Vec<ByteBuf>,
        digest: ByteBuf,
    ) -> Result<(), SyncError> {
        if protocol != PROTOCOL_VERSION {
            return Err(SyncError::Version {
                ours: PROTOCOL_VERSION,
                theirs: protocol,
            });
        }
        let relay_changed: Vec<CatalogEntry> = changed
            .iter()
            .map(WireEntry::decode)
            .collect::<Result<_, _>>()?;
        let full: HashSet<DocId> = full.iter().map(|b| doc_id(b)).collect::<Result<_, _>>()?;
        let my_digest = match &mut self.role {
            Role::Device {
                relay: r,
                expected_full,
                digest: d,
                ..
            } => {
                *r = Some((relay.clone(), seq));
                expected_full.clone_from(&full);
                *d
            }
            Role::Relay { .. } => {
                return Err(SyncError::Unexpected {
                    frame: "welcome",
                    state: "serving a device",
                });
            }
        };
        self.phase = Phase::Syncing;
        // Entries whose data follows (`full`) are skipped below, so they are not looked up;
        // a relay of this version lists none of them (no store call at all).
        let ids: Vec<DocId> = relay_changed
            .iter()
            .map(|e| e.id)
            .filter(|id| !full.contains(id))
            .collect();
        let local: HashMap<DocId, Heads> = if ids.is_empty() {
            HashMap::new()
        } else {
            self.storage
                .lookup(&ids)?
                .into_iter()
                .map(|(id, _, heads)| (id, heads))
                .collect()
        };
        let mut want = Vec::new();
        for entry in &relay_changed {
            if full.contains(&entry.id) || self.active.contains(&entry.id) {
                continue;
            }
            match local.get(&entry.id) {
                Some(heads) if *heads == entry.heads => {}
                Some(_) => self.start_doc(entry.id)?,
                None => want.push(id_buf(entry.id)),
            }
        }
        for id in &full {
            self.active.insert(*id);
        }
        if !want.is_empty() {
            for w in &want {
                self.active.insert(doc_id(w)?);
            }
            self.send_wants(want);
        }
        let nothing_changed = relay_changed.is_empty() && self.active.is_empty();
        if nothing_changed && digest.as_slice() != my_digest.as_slice() {
            // Neither side changed anything, yet the catalogs differ: compare them whole.
            let offices = self.offices().to_vec();
            let entries = self.storage.catalog(&offices)?;
            tracing::info!(
                docs = entries.len(),
                "catalog digests differ; comparing catalogs"
            );
            self.send(&Frame::Catalog {
                entries: entries.iter().map(WireEntry::from).collect(),
            });
        }
        Ok(())
    }

    // ----- catalog comparison (rare path) -------------------------------------------

    fn on_catalog(&mut self, entries: Vec<WireEntry>) -> Result<(), SyncError> {
        let theirs: HashMap<DocId, Heads> = entries
            .iter()
            .map(|e| e.decode().map(|c| (c.id, c.heads)))
            .collect::<Result<_, _>>()?;
        let offices = self.offices().to_vec();
        let ours = self.storage.catalog(&offices)?;
        let our_ids: HashSet<DocId> = ours.iter().map(|e| e.id).collect();
        let differ: Vec<WireEntry> = ours
            .iter()
            .filter(|e| theirs.get(&e.id) != Some(&e.heads))
            .map(WireEntry::from)
            .collect();
        let unknown: Vec<DocId> = theirs
            .keys()
            .filter(|id| !our_ids.contains(id))
            .copied()
            .collect();
        // Ids held by another office are neither listed nor revealed.
        let elsewhere: HashSet<DocId> = self
            .storage
            .lookup(&unknown)?
            .into_iter()
            .map(|(id, _, _)| id)
            .collect();
        let missing = unknown
            .into_iter()
            .filter(|id| !elsewhere.contains(id))
            .map(id_buf)
            .collect();
        self.send(&Frame::CatalogDiff { differ, missing });
        Ok(())
    }

    fn on_catalog_diff(
        &mut self,
        differ: Vec<WireEntry>,
        missing: Vec<ByteBuf>,
    ) -> Result<(), SyncError> {
        let differ: Vec<CatalogEntry> = differ
            .iter()
            .map(WireEntry::decode)
            .collect::<Result<_, _>>()?;
        let ids: Vec<DocId> = differ.iter().map(|e| e.id).collect();
        let local: HashSet<DocId> = self
            .storage
            .lookup(&ids)?
            .into_iter()
            .map(|(id, _, _)| id)
            .collect();
        let mut want = Vec::new();
        for e in &differ {
            if local.contains(&e.id) {
                self.start_doc(e.id)?;
            } else {
                self.active.insert(e.id);
                want.push(id_buf(e.id));
            }
        }
        self.send_wants(want);
        for raw in missing {
            let id = doc_id(&raw)?;
            self.send_full(id)?;
        }
        Ok(())
    }

    // ----- documents ----------------------------------------------------------------

    /// Loads a document into a slot (or an empty one when we do not have it).
    fn open_slot(&mut self, id: DocId) -> Result<&mut Slot, SyncError> {
        self.open_slot_keeping(id, false).map(|(slot, _)| slot)
    }

    /// [`Self::open_slot`]; with `keep`, also the stored bytes of a document stored as one
    /// chunk (its snapshot) when this call loaded it.
    fn open_slot_keeping(
        &mut self,
        id: DocId,
        keep: bool,
    ) -> Result<(&mut Slot, Option<Vec<u8>>), SyncError> {
        let mut kept = None;
        if !self.slots.contains_key(&id) {
            let slot = match self.storage.load_for_sync(&self.peer, id)? {
                Some(mut rec) => {
                    let doc = load_chunks(&rec.chunks).map_err(|e| doc_error(id, &e))?;
                    let had_state = rec.sync_state.is_some();
                    let state = rec
                        .sync_state
                        .and_then(|b| am_sync::State::decode(&b).ok())
                        .unwrap_or_default();
                    let slot = Slot {
                        base_seq: rec.seq,
                        had_state,
                        stored_heads: doc.get_heads(),
                        doc,
                        state,
                        kind: Some(rec.kind),
                        office: Some(rec.office),
                        stored: true,
                        doc_dirty: false,
                        state_dirty: false,
                        sent_changes: false,
                        evidence: None,
                        stored_bytes: rec.chunks.iter().map(|c| c.len() as u64).sum(),
                        foreign: false,
                        arrived: None,
                        admitted_conflicts: None,
                    };
                    if keep && rec.chunks.len() == 1 {
                        kept = rec.chunks.pop();
                    }
                    slot
                }
                None => Slot::empty(false),
            };
            self.slots.insert(id, slot);
        }
        let slot = self.slots.get_mut(&id).ok_or(SyncError::Document {
            doc: id.short(),
            reason: "slot vanished".to_owned(),
        })?;
        Ok((slot, kept))
    }

    /// Device: the first message for a document we changed (or that differs).
    fn start_doc(&mut self, id: DocId) -> Result<(), SyncError> {
        self.active.insert(id);
        let (slot, stored) = self.open_slot_keeping(id, true)?;
        // Send what the relay lacks right away (the whole document if it never synced it
        // with us, else the changes after the heads it is known to have), then the first
        // sync message, which settles the rest.
        let bytes = if !slot.stored {
            Vec::new()
        } else if !slot.had_state {
            // The stored snapshot as it is when it is one saved document with exactly
            // these heads (as the relay sends one), instead of saving the document again.
            let heads = sorted(slot.doc.get_heads());
            match stored.filter(|b| saved_doc_header(b).is_some_and(|(_, h)| sorted(h) == heads)) {
                Some(bytes) => bytes,
                None => slot.doc.save(),
            }
        } else if slot.state.shared_heads.is_empty() {
            Vec::new()
        } else {
            slot.doc.save_after(&slot.state.shared_heads)
        };
        if !bytes.is_empty() {
            self.send(&Frame::DocData {
                id: id_buf(id),
                bytes: ByteBuf::from(bytes),
            });
            self.sent_docs.insert(id);
        }
        self.reply(id);
        Ok(())
    }

    /// Sends our next sync message for `id`, if automerge has one.
    fn reply(&mut self, id: DocId) {
        if self.refused.contains_key(&id) {
            return;
        }
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        if let Some(msg) = slot.doc.generate_sync_message(&mut slot.state) {
            if !msg.changes.is_empty() {
                slot.sent_changes = true;
            }
            slot.state_dirty = true;
            let has_changes = slot.sent_changes;
            let bytes = msg.encode();
            self.send(&Frame::DocSync {
                id: id_buf(id),
                msg: ByteBuf::from(bytes),
            });
            if has_changes {
                self.sent_docs.insert(id);
            }
        }
    }

    /// Device: asks for documents whole, at most [`MAX_WANT_IDS`] per `want` frame.
    fn send_wants(&mut self, want: Vec<ByteBuf>) {
        for chunk in want.chunks(MAX_WANT_IDS) {
            self.send(&Frame::Want {
                ids: chunk.to_vec(),
            });
        }
    }

    /// Relay: takes a `want` frame. Ids are checked and queued; the documents are loaded
    /// and sent by [`Self::poll_transmit`] within the outgoing window. An id named twice in
    /// the frame ends the session; one already sent whole (or answered) in this session is
    /// not sent again; a session asks for at most [`MAX_WANT_DOCS`] documents.
    fn on_want(&mut self, ids: &[ByteBuf]) -> Result<(), SyncError> {
        // The decoder already refuses longer lists.
        if ids.len() > MAX_WANT_IDS {
            return Err(FrameError::TooMany("want ids", MAX_WANT_IDS).into());
        }
        let mut seen = HashSet::with_capacity(ids.len());
        let mut fresh = Vec::with_capacity(ids.len());
        for raw in ids {
            let id = doc_id(raw)?;
            if !seen.insert(id) {
                return Err(FrameError::Repeated("want ids").into());
            }
            if !self.wants.whole.contains(&id) {
                fresh.push(id);
            }
        }
        if self.wants.asked + fresh.len() > MAX_WANT_DOCS {
            return Err(self.refuse(
                "protocol",
                format!(
                    "frame field 'want ids': a session may ask for at most {MAX_WANT_DOCS} documents"
                ),
            ));
        }
        self.wants.asked += fresh.len();
        for id in fresh {
            self.wants.whole.insert(id);
            self.wants.queue.push_back((id, Queued::Asked));
        }
        Ok(())
    }

    /// Relay: queues a newly shared document to send whole (unless sent whole already).
    fn queue_shared(&mut self, id: DocId) {
        if self.wants.whole.insert(id) {
            self.wants.queue.push_back((id, Queued::Shared));
        }
    }

    /// Relay: sends queued whole documents while the outgoing window has room, then the
    /// `idle` owed once the queue is empty. A store failure here ends the session with an
    /// `error` frame.
    fn produce_wanted(&mut self) {
        if self.phase != Phase::Syncing || self.is_device() {
            return;
        }
        if self.send_stale && !self.wants.queue.is_empty() {
            let batch_stale = self.shared_stale;
            if let Err(e) = self.share_newly_registered() {
                self.fail_while_sending(&e);
                return;
            }
            // The device's next frames may come after a later change of policy.
            self.shared_stale = batch_stale;
        }
        while self.out.len() < WANT_WINDOW_FRAMES && self.out_bytes < WANT_WINDOW_BYTES {
            let Some((id, why)) = self.wants.queue.pop_front() else {
                break;
            };
            let sent = match why {
                // Shared when queued, withdrawn since: nothing is sent, nothing answered.
                Queued::Shared if !self.is_shared(id) => continue,
                Queued::Announced => self.send_announced(id),
                Queued::Asked | Queued::Shared => self.send_full(id),
            };
            if let Err(e) = sent {
                self.fail_while_sending(&e);
                return;
            }
        }
        if self.wants.queue.is_empty()
            && let Some(received) = self.wants.idle_due.take()
            && let Err(e) = self.send_idle(received)
        {
            self.fail_while_sending(&e);
        }
    }

    /// Device: sends the first round of the documents we changed while the outgoing
    /// window has room, so a tablet with many changes holds only a window of them open.
    fn start_unstarted(&mut self) {
        if matches!(self.phase, Phase::Failed | Phase::Finished) {
            return;
        }
        while self.out.len() < WANT_WINDOW_FRAMES && self.out_bytes < WANT_WINDOW_BYTES {
            let Role::Device { unstarted, .. } = &mut self.role else {
                return;
            };
            let Some(id) = unstarted.pop_front() else {
                return;
            };
            if !self.active.contains(&id) || self.slots.contains_key(&id) {
                // Refused meanwhile, or already opened by the relay's frames.
                continue;
            }
            if let Err(e) = self.start_doc(id) {
                self.fail_while_sending(&e);
                return;
            }
        }
    }

    /// Ends the session because of a failure outside `handle_frame`/`flush`.
    fn fail_while_sending(&mut self, e: &SyncError) {
        tracing::warn!(error = %e, "sync session failed while sending documents");
        let code = match e {
            SyncError::Storage(_) => "storage",
            _ => "protocol",
        };
        self.send(&Frame::Error {
            code: code.to_owned(),
            message: e.to_string(),
        });
        self.wants.queue.clear();
        self.phase = Phase::Failed;
    }

    /// Relay: sends a document announced in `welcome`'s `full`: as stored when the device
    /// never synced it with us (or the hello started afresh), otherwise the changes after
    /// the heads the device is known to have. The frame is sent even when it carries no
    /// bytes (the device has all of it): the device answers with a sync message, which
    /// settles the rest. A document that is no longer the device's to read (a share
    /// withdrawn since `welcome`) is answered `unknown`.
    fn send_announced(&mut self, id: DocId) -> Result<(), SyncError> {
        let offices = self.offices().to_vec();
        let rec = self
            .storage
            .load_for_sync(&self.peer, id)?
            .filter(|r| offices.contains(&r.office) || self.is_shared(id));
        let Some(rec) = rec else {
            self.active.remove(&id);
            self.send(&Frame::DocRejected {
                id: id_buf(id),
                code: "unknown".to_owned(),
            });
            return Ok(());
        };
        let known = if self.wants.fresh {
            None
        } else {
            rec.sync_state
                .as_deref()
                .and_then(|b| am_sync::State::decode(b).ok())
        };
        let bytes = match known {
            None => {
                let (bytes, heads) = self.whole_bytes(id, rec.chunks)?;
                self.wants.sent_whole.push(id, heads);
                bytes
            }
            Some(state) => {
                let doc = load_chunks(&rec.chunks).map_err(|e| doc_error(id, &e))?;
                self.attest.note(id, &doc);
                if state.shared_heads.is_empty() {
                    Vec::new()
                } else {
                    doc.save_after(&state.shared_heads)
                }
            }
        };
        if bytes.is_empty() {
            // Not sent whole after all: the device may still ask for it.
            self.wants.whole.remove(&id);
        } else {
            self.sent_docs.insert(id);
        }
        self.send(&Frame::DocData {
            id: id_buf(id),
            bytes: ByteBuf::from(bytes),
        });
        Ok(())
    }

    /// Relay, once the device has said `done`: records that it holds every document sent
    /// whole to it in this session (see [`Wants::sent_whole`]), in batches of
    /// [`SENT_WHOLE_BATCH`], so the records cost a batch of memory rather than one entry
    /// per document of the office at once. Each record only spares a later session sending
    /// the document whole again: one that is not written (a failure between two batches)
    /// loses nothing. A document with a slot of its own wrote its state in the flush.
    fn record_sent_whole(&mut self) -> Result<(), SyncError> {
        let mut writes = Vec::new();
        let mut records = self
            .wants
            .sent_whole
            .take()
            .filter(|(id, _)| !self.slots.contains_key(id) && !self.refused.contains_key(id))
            .peekable();
        while records.peek().is_some() {
            writes.extend(records.by_ref().take(SENT_WHOLE_BATCH).map(|(id, heads)| {
                let mut state = am_sync::State::new();
                state.shared_heads = heads.clone();
                SyncWrite::State {
                    id,
                    state: state.encode(),
                    in_sync: true,
                    heads: sorted(heads),
                }
            }));
            self.storage.commit(SyncBatch {
                peer: self.peer.clone(),
                writes: std::mem::take(&mut writes),
                ..SyncBatch::default()
            })?;
        }
        Ok(())
    }

    /// Sends a whole document the peer asked for, if it may see it. Another office's
    /// document and a missing one get the same answer (`unknown`), and the former is not
    /// loaded.
    fn send_full(&mut self, id: DocId) -> Result<(), SyncError> {
        let offices = self.offices().to_vec();
        let readable = self.is_shared(id)
            || self
                .storage
                .lookup(&[id])?
                .first()
                .is_some_and(|(_, office, _)| offices.contains(office));
        let rec = if readable {
            self.storage.load_for_sync(&self.peer, id)?
        } else {
            None
        };
        let Some(rec) = rec.filter(|r| offices.contains(&r.office) || self.is_shared(id)) else {
            self.send(&Frame::DocRejected {
                id: id_buf(id),
                code: "unknown".to_owned(),
            });
            return Ok(());
        };
        let (bytes, heads) = self.whole_bytes(id, rec.chunks)?;
        self.active.insert(id);
        self.sent_docs.insert(id);
        self.wants.sent_whole.push(id, heads);
        self.send(&Frame::DocData {
            id: id_buf(id),
            bytes: ByteBuf::from(bytes),
        });
        Ok(())
    }

    /// Relay: a stored document's bytes to send whole, and its heads; its actors are noted
    /// for the `actors` frame. A document stored as one snapshot goes as it is, its actors
    /// and heads read from the snapshot's header without decoding it; any other is loaded
    /// and saved as one.
    fn whole_bytes(
        &mut self,
        id: DocId,
        chunks: Vec<Vec<u8>>,
    ) -> Result<(Vec<u8>, Vec<ChangeHash>), SyncError> {
        if let [one] = chunks.as_slice()
            && let Some((actors, heads)) = saved_doc_header(one)
        {
            self.attest.note_header(actors);
            return Ok((chunks.into_iter().next().unwrap_or_default(), heads));
        }
        let doc = load_chunks(&chunks).map_err(|e| doc_error(id, &e))?;
        self.attest.note(id, &doc);
        Ok((doc.save(), doc.get_heads()))
    }

    /// Checks, on the relay, what a document gained from the device: office access, actor
    /// binding, and the document rules of [`super::admission`] on the state the new
    /// changes produce (including, for a new registration, its card evidence). Returns the
    /// refusal code, if any; nothing of a refused document is kept.
    fn check_incoming(
        &mut self,
        id: DocId,
        before: &[ChangeHash],
    ) -> Result<Option<&'static str>, SyncError> {
        let Role::Relay {
            own_actors,
            access,
            shared,
            admission,
            ..
        } = &mut self.role
        else {
            return Ok(None);
        };
        let Some(slot) = self.slots.get_mut(&id) else {
            return Ok(None);
        };
        // Office: an existing document keeps the office it was stored under; a new one
        // must name one of the device's offices.
        let office = if slot.stored {
            slot.office.clone()
        } else if slot.doc.get_heads().is_empty() {
            return Ok(None);
        } else {
            root_str(&slot.doc, "office")
        };
        let office = match office {
            Some(o) if access.offices.contains(&o) => o,
            // Shared documents are read-only: sync messages pass, new changes do not.
            Some(_) if shared.contains(&id) && slot.doc.get_heads() == before => {
                return Ok(None);
            }
            _ => return Ok(Some("forbidden")),
        };
        let kind = match slot.kind.clone() {
            Some(k) => k,
            None => match root_str(&slot.doc, "kind").filter(|k| DocKind::parse(k).is_some()) {
                Some(k) => k,
                None => return Ok(Some("invalid")),
            },
        };
        // Size, changes and operations of the document with what this session added. A
        // whole document that arrived as it stands is measured by what its bytes decode
        // to; changes and operations are automerge's counts, read without encoding any
        // change.
        let heads_now = slot.doc.get_heads();
        let stats = automerge::ReadDoc::stats(&slot.doc);
        let (changes, ops) = (stats.num_changes, stats.num_ops);
        let bytes = match &slot.arrived {
            Some(arrived) if arrived.heads == heads_now => arrived.decoded,
            _ => {
                slot.stored_bytes
                    + slot
                        .doc
                        .get_changes(&slot.stored_heads)
                        .iter()
                        .map(|c| c.raw_bytes().len() as u64)
                        .sum::<u64>()
            }
        };
        if bytes > self.limits.doc_bytes || changes > self.limits.doc_changes || ops > MAX_DOC_OPS {
            tracing::warn!(
                doc = %id.short(),
                device = %access.device_id,
                bytes,
                changes,
                ops,
                "refused a document over the per-document limits"
            );
            return Ok(Some("too_large"));
        }
        let mut new_actors: Vec<Vec<u8>> = Vec::new();
        for change in slot.doc.get_changes_meta(before) {
            let actor = change.actor.to_bytes().to_vec();
            if !own_actors.contains(&actor) && !new_actors.contains(&actor) {
                new_actors.push(actor);
            }
        }
        let mut bind = Vec::new();
        for actor in &new_actors {
            match self.storage.actor_owner(actor)? {
                Some(owner) if owner != access.device_id => return Ok(Some("actor")),
                Some(_) => {}
                None => bind.push(actor.clone()),
            }
        }
        if heads_now != before {
            let stored = slot
                .stored
                .then(|| slot.doc.fork_at(&slot.stored_heads))
                .transpose()
                .map_err(|e| SyncError::Document {
                    doc: id.short(),
                    reason: e.to_string(),
                })?;
            let own_heads = incoming_heads(stored.as_ref(), &slot.doc);
            let incoming = Incoming {
                id,
                kind: &kind,
                office: &office,
                uploader: Uploader::Device(&access.device_id),
                stored: stored.as_ref(),
                merged: &slot.doc,
                own_heads: &own_heads,
            };
            match admission.admit(&incoming) {
                Ok(admitted) => {
                    slot.admitted_conflicts = admitted.conflicts.map(|c| (heads_now.clone(), c));
                    if let Some(verdict) = admitted.evidence {
                        // One card certificate serves one person at this relay.
                        match self.storage.cert_person(&verdict.cert_fingerprint)? {
                            Some(p) if p != verdict.person => {
                                tracing::warn!(
                                    doc = %id.short(),
                                    device = %access.device_id,
                                    "refused a registration: its card certificate is bound to another person here"
                                );
                                return Ok(Some("card_reused"));
                            }
                            _ => slot.evidence = Some(verdict),
                        }
                    }
                }
                Err(refused) => {
                    tracing::warn!(
                        doc = %id.short(),
                        device = %access.device_id,
                        code = refused.code,
                        field = refused.field.as_deref().unwrap_or(""),
                        "refused a document that breaks a rule"
                    );
                    return Ok(Some(refused.code));
                }
            }
        }
        if slot.foreign {
            // Checked as a new document (so every other refusal is the one a missing id
            // gets); one that would be accepted is refused like a new document naming
            // another office.
            return Ok(Some("forbidden"));
        }
        for actor in bind {
            self.pending.push(SyncWrite::BindActor {
                actor,
                device: access.device_id.clone(),
                device_name: Some(access.device_name.clone()),
            });
        }
        own_actors.extend(new_actors);
        Ok(None)
    }

    /// Relay: refuses a document's new data, forgetting what this session merged.
    fn reject_doc(&mut self, id: DocId, code: &'static str) {
        tracing::warn!(doc = %id.short(), code, "refused document data from a device");
        self.slots.remove(&id);
        self.active.remove(&id);
        if self.refused.insert(id, code.to_owned()).is_none() {
            self.send_stored_after_refusal(id);
        }
        self.send(&Frame::DocRejected {
            id: id_buf(id),
            code: code.to_owned(),
        });
    }

    /// Relay: with the first refusal of a document the device may read, sends the stored
    /// document whole, so the device learns what the relay holds (a survey submitted
    /// meanwhile, a registration as verified). Best effort: the refusal stands either way.
    fn send_stored_after_refusal(&mut self, id: DocId) {
        if self.is_device() {
            return;
        }
        let rec = match self.storage.load_for_sync(&self.peer, id) {
            Ok(Some(rec)) => rec,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(doc = %id.short(), error = %e, "stored document not sent after a refusal");
                return;
            }
        };
        if !self.offices().contains(&rec.office) && !self.is_shared(id) {
            return;
        }
        match self.whole_bytes(id, rec.chunks) {
            Ok((bytes, _)) => self.send(&Frame::DocData {
                id: id_buf(id),
                bytes: ByteBuf::from(bytes),
            }),
            Err(e) => {
                tracing::debug!(doc = %id.short(), error = %e, "stored document not sent after a refusal");
            }
        }
    }

    /// Relay: a document already refused in this session is refused again without looking
    /// at what came (the device may still be answering our earlier messages).
    fn refused_again(&mut self, id: DocId) -> bool {
        if self.is_device() {
            return false;
        }
        let Some(code) = self.refused.get(&id).cloned() else {
            return false;
        };
        self.send(&Frame::DocRejected {
            id: id_buf(id),
            code,
        });
        true
    }

    /// Relay: a stored document of another office (not shared with the device) is
    /// answered as if the relay did not have it: the session works on an empty slot
    /// that is never loaded from the store, and any change to it is refused `forbidden`
    /// (as for a new document naming another office). So `doc_data` and `doc_sync` for
    /// such an id get the answers a missing id gets.
    fn shadow_foreign(&mut self, id: DocId) -> Result<(), SyncError> {
        if self.is_device() || self.is_shared(id) || self.slots.contains_key(&id) {
            return Ok(());
        }
        let offices = self.offices().to_vec();
        let foreign = self
            .storage
            .lookup(&[id])?
            .first()
            .is_some_and(|(_, office, _)| !offices.contains(office));
        if foreign {
            self.slots.insert(id, Slot::empty(true));
        }
        Ok(())
    }

    fn on_doc_data(&mut self, id: DocId, bytes: &[u8]) -> Result<(), SyncError> {
        if self.refused_again(id) {
            return Ok(());
        }
        let predecoded = self.predecoded.take().filter(|p| p.id == id);
        let decoded = match &predecoded {
            // These bytes passed the same bound (a device's is one frame's) when they
            // were decoded ahead: counted, not inflated again.
            Some(p) => {
                debug_assert!(self.is_device(), "only a device decodes ahead");
                self.decoded_in = self.decoded_in.saturating_add(p.decoded);
                p.decoded
            }
            None => {
                let before = self.decoded_in;
                if !self.take_in(id, std::iter::once(bytes), "doc_data bytes")? {
                    return Ok(());
                }
                self.decoded_in.saturating_sub(before)
            }
        };
        self.shadow_foreign(id)?;
        if !self.refused.contains_key(&id) {
            self.active.insert(id);
        }
        if let Role::Device { expected_full, .. } = &mut self.role {
            expected_full.remove(&id);
        }
        let slot = self.open_slot(id)?;
        let before = slot.doc.get_heads();
        let lacked = !slot.stored && before.is_empty();
        // A whole document we lack is decoded once, strictly, and its bytes are what the
        // store keeps; anything else (changes, or bytes with chunks that do not parse) is
        // merged leniently as before.
        let whole = match predecoded {
            _ if !lacked => None,
            Some(p) => Some((p.snapshot, p.doc)),
            None if may_be_whole(bytes) => whole_document(bytes.to_vec()),
            None => None,
        };
        let loaded = match whole {
            Some((snapshot, doc)) => {
                slot.arrived = Some(Arrived {
                    snapshot,
                    heads: doc.get_heads(),
                    decoded,
                });
                slot.doc = doc;
                Ok(())
            }
            None => crate::doc::contain_panic(|| slot.doc.load_incremental(bytes))
                .map_err(|p| p.to_string())
                .and_then(|r| r.map(drop).map_err(|e| e.to_string())),
        };
        if let Err(e) = loaded {
            if self.is_device() {
                tracing::warn!(doc = %id.short(), error = %e, "undecodable document data from the relay");
                // The half-decoded document is not kept.
                self.slots.remove(&id);
                return Err(FrameError::Field("doc_data bytes").into());
            }
            self.reject_doc(id, "invalid");
            return Ok(());
        }
        if let Some(code) = self.check_incoming(id, &before)? {
            self.reject_doc(id, code);
            return Ok(());
        }
        let device = self.is_device();
        if let Some(slot) = self.slots.get_mut(&id)
            && slot.doc.get_heads() != before
        {
            slot.doc_dirty = true;
            if lacked && device && slot.doc.get_missing_deps(&[]).is_empty() {
                // A whole document we lacked, as the relay holds it: in line with the
                // relay as it stands. No answer is needed (the relay records this when
                // the session completes), so neither side loads it again; it is released
                // at the next flush.
                let heads = slot.doc.get_heads();
                slot.state.shared_heads.clone_from(&heads);
                slot.state.last_sent_heads.clone_from(&heads);
                slot.state.their_heads = Some(heads);
                slot.state_dirty = true;
                return Ok(());
            }
        }
        self.reply(id);
        Ok(())
    }

    fn on_doc_sync(&mut self, id: DocId, msg: &[u8]) -> Result<(), SyncError> {
        if self.refused_again(id) {
            return Ok(());
        }
        let message = match am_sync::Message::decode(msg) {
            Ok(m) => m,
            Err(_) if !self.is_device() => {
                self.reject_doc(id, "invalid");
                return Ok(());
            }
            Err(_) => return Err(FrameError::Field("doc_sync message").into()),
        };
        // The message keeps its changes as raw chunks: bound them before automerge
        // decodes them.
        if !self.take_in(id, message.changes.iter(), "doc_sync message")? {
            return Ok(());
        }
        if !self.slots.contains_key(&id)
            && message.changes.is_empty()
            && self
                .settled
                .get(&id)
                .is_some_and(|h| h.is(&sorted(message.heads.clone())))
        {
            // A released document the peer holds exactly as we do (a late or repeated
            // message): nothing to send either way, and no need to load it again.
            return Ok(());
        }
        self.shadow_foreign(id)?;
        if !self.refused.contains_key(&id) {
            self.active.insert(id);
        }
        let slot = self.open_slot(id)?;
        let before = slot.doc.get_heads();
        let received =
            crate::doc::contain_panic(|| slot.doc.receive_sync_message(&mut slot.state, message))
                .map_err(|p| p.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(reason) = received {
            if self.is_device() {
                // The half-decoded document is not kept.
                self.slots.remove(&id);
                return Err(SyncError::Document {
                    doc: id.short(),
                    reason,
                });
            }
            self.reject_doc(id, "invalid");
            return Ok(());
        }
        slot.state_dirty = true;
        if slot.doc.get_heads() != before {
            slot.doc_dirty = true;
            if let Some(code) = self.check_incoming(id, &before)? {
                self.reject_doc(id, code);
                return Ok(());
            }
        }
        self.reply(id);
        Ok(())
    }

    // ----- flush and termination ----------------------------------------------------

    /// Commits what the frames handled so far changed (one transaction), then decides
    /// whether the session is complete. Call after each batch of `handle_frame` calls.
    pub fn flush(&mut self) -> Result<(), SyncError> {
        if matches!(self.phase, Phase::Failed) {
            return Ok(());
        }
        let device_done = self.device_can_finish();
        let finishing = device_done || self.phase == Phase::Finished;
        let mut batch = SyncBatch {
            peer: self.peer.clone(),
            ..SyncBatch::default()
        };
        if let Role::Relay { reset, .. } = &mut self.role {
            batch.reset_peer = std::mem::take(reset);
        }
        batch.writes.append(&mut self.pending);
        let mut state_writes = Vec::new();
        let mut wrote_registration = false;
        // Relay: storage quotas and the session's caps, checked per document write
        // against the usage counters read once per office in this flush.
        let relay = !self.is_device();
        let mut usage: HashMap<String, super::storage::Usage> = HashMap::new();
        let (mut batch_docs, mut batch_bytes) = (0u64, 0u64);
        let mut over_quota: Vec<DocId> = Vec::new();
        let mut over_session = false;
        let mut ids: Vec<DocId> = self.slots.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(slot) = self.slots.get_mut(&id) else {
                continue;
            };
            if slot.doc_dirty && over_session {
                continue;
            }
            if slot.doc_dirty {
                let heads = slot.doc.get_heads();
                let kind_s = slot
                    .kind
                    .clone()
                    .or_else(|| root_str(&slot.doc, "kind"))
                    .unwrap_or_default();
                let Some(kind) = DocKind::parse(&kind_s) else {
                    // Without a kind the document cannot be stored; it stays in memory
                    // until more of it arrives.
                    continue;
                };
                let title = title_from(&slot.doc, kind);
                wrote_registration |= kind_s == REGISTRATION_KIND;
                if slot.stored {
                    // One row per change: each is checked on its own by the store (a
                    // multi-change chunk would be loaded as a document to check it).
                    let changes: Vec<Vec<u8>> = slot
                        .doc
                        .get_changes(&slot.stored_heads)
                        .iter()
                        .map(|c| c.raw_bytes().to_vec())
                        .collect();
                    if relay {
                        let size = changes.iter().map(|c| c.len() as u64).sum();
                        let office = slot.office.clone().unwrap_or_default();
                        match admit_write(
                            &self.storage,
                            &self.peer,
                            &self.limits,
                            &mut usage,
                            &office,
                            (0, size),
                            (
                                self.written_docs + batch_docs,
                                self.written_bytes + batch_bytes,
                            ),
                        )? {
                            WriteCheck::Fits => batch_bytes += size,
                            WriteCheck::Quota => {
                                over_quota.push(id);
                                continue;
                            }
                            WriteCheck::SessionOver => {
                                over_session = true;
                                continue;
                            }
                        }
                    }
                    batch.writes.push(SyncWrite::Append {
                        id,
                        changes,
                        heads: sorted(heads.clone()),
                        base_seq: slot.base_seq,
                        title,
                        keys: share_keys(&slot.doc, &kind_s),
                    });
                } else {
                    let Some(office) = slot
                        .office
                        .clone()
                        .or_else(|| root_str(&slot.doc, "office"))
                    else {
                        continue;
                    };
                    let bytes = match slot.arrived.take() {
                        Some(arrived) if arrived.heads == heads => arrived.snapshot,
                        _ => Snapshot::of(&slot.doc),
                    };
                    if relay {
                        let size = bytes.len() as u64;
                        match admit_write(
                            &self.storage,
                            &self.peer,
                            &self.limits,
                            &mut usage,
                            &office,
                            (1, size),
                            (
                                self.written_docs + batch_docs,
                                self.written_bytes + batch_bytes,
                            ),
                        )? {
                            WriteCheck::Fits => {
                                batch_docs += 1;
                                batch_bytes += size;
                            }
                            WriteCheck::Quota => {
                                over_quota.push(id);
                                continue;
                            }
                            WriteCheck::SessionOver => {
                                over_session = true;
                                continue;
                            }
                        }
                    }
                    batch.writes.push(SyncWrite::Insert {
                        id,
                        kind: kind_s.clone(),
                        office: office.clone(),
                        title,
                        bytes,
                        heads: sorted(heads.clone()),
                        keys: share_keys(&slot.doc, &kind_s),
                    });
                    if let Some(verdict) = slot.evidence.take() {
                        batch.writes.push(SyncWrite::Evidence { id, verdict });
                    }
                    slot.stored = true;
                    slot.kind = Some(kind_s);
                    slot.office = Some(office);
                }
                slot.stored_heads = heads;
                slot.doc_dirty = false;
                slot.state_dirty = true;
                self.received_docs.insert(id);
                let conflicts = match &slot.admitted_conflicts {
                    Some((heads, found)) if *heads == slot.doc.get_heads() => *found,
                    _ => has_conflicts(&slot.doc),
                };
                if conflicts && !self.conflicted.contains(&id) {
                    self.conflicted.push(id);
                }
            }
            if (slot.state_dirty || finishing) && slot.stored {
                state_writes.push(SyncWrite::State {
                    id,
                    state: slot.state.encode(),
                    in_sync: Self::slot_in_sync(slot),
                    heads: sorted(slot.doc.get_heads()),
                });
                slot.state_dirty = false;
            }
        }
        batch.writes.extend(state_writes);
        if device_done
            && let Role::Device {
                start_seq, relay, ..
            } = &self.role
        {
            let (epoch, cursor) = relay.clone().unwrap_or_default();
            batch.peer_record = Some(PeerRecord {
                epoch: Some(epoch),
                cursor,
                pushed_seq: *start_seq,
                last_ok_ms: None,
            });
            self.peer_record.clone_from(&batch.peer_record);
        }
        self.storage.commit(batch)?;
        if relay && finishing {
            self.record_sent_whole()?;
        }
        self.written_docs += batch_docs;
        self.written_bytes += batch_bytes;
        self.release_settled();
        for id in over_quota {
            tracing::warn!(doc = %id.short(), device = %self.peer, "refused a document: storage quota reached");
            self.reject_doc(id, "quota");
        }
        if over_session {
            self.session_over("documents or bytes written");
            return Ok(());
        }
        if wrote_registration && !self.is_device() {
            self.share_newly_registered()?;
        } else if !self.is_device() && self.phase == Phase::Syncing {
            self.shared_stale = true;
            self.send_stale = true;
        }
        if device_done {
            self.send(&Frame::Done);
            self.phase = Phase::Finished;
            return Ok(());
        }
        if self.phase == Phase::Syncing && !self.is_device() {
            let counts = (self.doc_frames_sent, self.doc_frames_received);
            if self.last_idle_sent != Some(counts) {
                if self.wants.queue.is_empty() {
                    self.wants.idle_due = None;
                    self.send_idle(counts.1)?;
                } else {
                    // Documents asked for are still to be sent: `idle` (everything
                    // answered) follows the last of them (see `produce_wanted`).
                    self.wants.idle_due = Some(counts.1);
                }
            }
        }
        Ok(())
    }

    /// Relay: tells the device that everything received up to `received` document frames
    /// is answered, after the actor bindings of what was exchanged.
    fn send_idle(&mut self, received: u64) -> Result<(), SyncError> {
        if self.last_idle_sent == Some((self.doc_frames_sent, received)) {
            return Ok(());
        }
        // Who bound the actors of what was exchanged, ahead of the idle the device
        // finishes on (`actors` frames are not document frames: the counts stay).
        self.send_actor_bindings()?;
        let counts = (self.doc_frames_sent, received);
        self.last_idle_sent = Some(counts);
        self.push_out(
            Frame::Idle {
                sent: counts.0,
                received: counts.1,
            }
            .encode(),
        );
        Ok(())
    }

    /// Relay, for a device that asked (`hello` caps): sends the bindings of the actors of
    /// the session's documents not sent yet, as `actors` frames of at most
    /// [`MAX_ACTOR_BINDINGS`] each. Runs after the flush's commit, so actors bound in it are
    /// included.
    fn send_actor_bindings(&mut self) -> Result<(), SyncError> {
        if !self.attest.enabled {
            return Ok(());
        }
        for id in &self.active {
            if let Some(slot) = self.slots.get(id) {
                self.attest.note(*id, &slot.doc);
            }
        }
        if self.attest.pending.is_empty() {
            return Ok(());
        }
        let actors: Vec<Vec<u8>> = std::mem::take(&mut self.attest.pending)
            .into_iter()
            .collect();
        let bindings = self.storage.actor_bindings(&actors)?;
        self.attest.done.extend(actors);
        let mut wire: Vec<WireBinding> = bindings.into_iter().filter_map(wire_binding).collect();
        wire.sort_by(|a, b| a.actor.cmp(&b.actor));
        for chunk in wire.chunks(MAX_ACTOR_BINDINGS) {
            self.send(&Frame::Actors {
                bindings: chunk.to_vec(),
            });
        }
        Ok(())
    }

    /// Device: keeps the relay's actor bindings (committed at the next flush; the first
    /// binding of an actor stays). Nothing else binds actors on a device.
    fn on_actors(&mut self, bindings: Vec<WireBinding>) -> Result<(), SyncError> {
        if bindings.len() > MAX_ACTOR_BINDINGS {
            return Err(FrameError::Field("actors bindings").into());
        }
        for b in &bindings {
            b.check()?;
        }
        for b in bindings {
            self.pending.push(SyncWrite::BindActor {
                actor: b.actor.into_vec(),
                device: b.device,
                device_name: b.name,
            });
        }
        Ok(())
    }

    /// Relay: works out again which other offices' documents the device may read. A
    /// registration just stored may share more documents: those are sent in this same
    /// session. A consent withdrawn or a registration changed meanwhile (by any session or
    /// import) takes effect at once: a document no longer shared is dropped from the
    /// session and nothing more of it is sent. Runs after a flush that stored a
    /// registration, and before the first frame of each later batch is handled (and
    /// before queued documents are sent), so a change of policy reaches an open session
    /// with the device's next frames.
    fn share_newly_registered(&mut self) -> Result<(), SyncError> {
        self.shared_stale = false;
        self.send_stale = false;
        let offices = self.offices().to_vec();
        let now = self.storage.shared_for_peer(&self.peer, &offices, false)?;
        let Role::Relay { shared, .. } = &mut self.role else {
            return Ok(());
        };
        let withdrawn: Vec<DocId> = shared.difference(&now.ids).copied().collect();
        let fresh: Vec<DocId> = now
            .changed
            .iter()
            .map(|e| e.id)
            .filter(|id| !shared.contains(id))
            .collect();
        // Withdrawals take effect at once as well: a document no longer shared is no
        // longer served in this session.
        *shared = now.ids;
        for id in withdrawn {
            let foreign = self
                .slots
                .get(&id)
                .is_some_and(|s| s.office.as_ref().is_some_and(|o| !offices.contains(o)));
            if foreign {
                tracing::info!(doc = %id.short(), device = %self.peer, "no longer shared with the device; dropped from its session");
                self.slots.remove(&id);
                self.active.remove(&id);
            }
        }
        for id in fresh {
            if !self.active.contains(&id) {
                self.queue_shared(id);
            }
        }
        Ok(())
    }

    fn device_can_finish(&self) -> bool {
        let Role::Device {
            expected_full,
            unstarted,
            ..
        } = &self.role
        else {
            return false;
        };
        self.phase == Phase::Syncing
            && expected_full.is_empty()
            && unstarted.is_empty()
            && self.out.is_empty()
            && self.peer_idle == Some((self.doc_frames_received, self.doc_frames_sent))
            && self.active.iter().all(|id| match self.slots.get(id) {
                Some(slot) => Self::slot_in_sync(slot),
                None => self.settled.contains_key(id),
            })
    }

    /// Drops the documents that are in sync with the peer and fully written (after a
    /// commit), so a session holds only the documents in flight however many it
    /// exchanges. A later frame for one loads it again from the store, with the sync
    /// state just written.
    fn release_settled(&mut self) {
        let done: Vec<DocId> = self
            .slots
            .iter()
            .filter(|(_, s)| {
                s.stored && !s.foreign && !s.doc_dirty && !s.state_dirty && Self::slot_in_sync(s)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(slot) = self.slots.remove(&id) {
                if self.attest.enabled {
                    // Its actors are still owed to the device in the next `actors` frame.
                    self.attest.note(id, &slot.doc);
                }
                self.settled
                    .insert(id, SettledHeads::of(sorted(slot.doc.get_heads())));
            }
        }
    }

    /// The peer record written when the session completed (device side).
    pub fn completed_record(&self) -> Option<&PeerRecord> {
        self.peer_record.as_ref()
    }
}

#[cfg(test)]
mod attest_tests {
    //! The `actors` exchange: a device that names the capability in `hello` receives the
    //! relay's bindings of the actors of the session's documents and keeps them; a device
    //! that does not is never sent the frame.

    use std::sync::Arc;

    use automerge::transaction::Transactable;
    use automerge::{ActorId, Automerge, ROOT};

    use super::*;
    use crate::sync::MemoryStorage;
    use crate::sync::admission::AdmitAllForSimulation;

    const OFFICE: &str = "1370100016";

    #[test]
    fn only_bytes_that_begin_with_a_saved_document_are_tried_as_a_whole_document() {
        let mut doc = automerge::AutoCommit::new();
        doc.put(ROOT, "kind", "survey").unwrap();
        doc.commit();
        let saved = doc.save();
        doc.put(ROOT, "status", "draft").unwrap();
        doc.commit();
        let change = doc.save_incremental();
        assert!(may_be_whole(&saved));
        let mut saved_then_change = saved.clone();
        saved_then_change.extend_from_slice(&change);
        assert!(may_be_whole(&saved_then_change));
        assert!(whole_document(saved_then_change).is_some());
        // Changes on their own (a document the receiver holds) are merged, not loaded.
        assert!(!may_be_whole(&change));
        assert!(!may_be_whole(b"not automerge"));
        assert!(!may_be_whole(&[]));
    }

    #[test]
    fn conflicts_are_found_in_maps_nested_maps_and_lists() {
        // The walk, and the JSON reader a relay's admission learns the same from, agree.
        let found = |doc: &Automerge| {
            let walked = has_conflicts(doc);
            let (_, read) = crate::doc::json_and_conflicts_of(doc, DocKind::Survey).unwrap();
            assert_eq!(walked, read, "the walk and the JSON reader disagree");
            walked
        };
        let mut base = automerge::AutoCommit::new();
        base.put(ROOT, "kind", "survey").unwrap();
        let items = base
            .put_object(ROOT, "items", automerge::ObjType::Map)
            .unwrap();
        base.put(&items, "1-1", 1).unwrap();
        let notes = base
            .put_object(ROOT, "notes", automerge::ObjType::List)
            .unwrap();
        base.insert(&notes, 0, "a").unwrap();
        let entry = base
            .insert_object(&notes, 1, automerge::ObjType::Map)
            .unwrap();
        base.put(&entry, "text", "b").unwrap();
        // `1-1` is a set in the schema (members are keys set to true); a crafted object
        // inside it is no member and is not read as JSON, yet its conflicts count.
        let set = base
            .put_object(&items, "1-1", automerge::ObjType::Map)
            .unwrap();
        base.put(&set, "1", true).unwrap();
        let hidden = base.put_object(&set, "x", automerge::ObjType::Map).unwrap();
        base.put(&hidden, "k", 0).unwrap();
        base.commit();
        assert!(!found(base.document()));
        // Two tablets make the same kind of edit concurrently, then merge.
        let mut concurrent = |edit: &dyn Fn(&mut automerge::AutoCommit, i64)| {
            let (mut a, mut b) = (base.fork(), base.fork());
            edit(&mut a, 2);
            edit(&mut b, 3);
            a.merge(&mut b).unwrap();
            found(a.document())
        };
        assert!(concurrent(&|d, v| {
            d.put(ROOT, "status", v).unwrap();
        }));
        assert!(concurrent(&|d, v| {
            d.put(&items, "1-1", v).unwrap();
        }));
        assert!(concurrent(&|d, v| {
            d.put(&notes, 0, v).unwrap();
        }));
        assert!(concurrent(&|d, v| {
            d.put(&entry, "text", v).unwrap();
        }));
        assert!(concurrent(&|d, v| {
            d.put(&set, "2", v > 0).unwrap();
        }));
        assert!(concurrent(&|d, v| {
            d.put(&hidden, "k", v).unwrap();
        }));
        // Concurrent edits of different fields are no conflict.
        assert!(!concurrent(&|d, v| {
            d.put(&items, format!("1-{v}"), v).unwrap();
        }));
        // Sequential edits of one field are none either.
        let mut seq = base.fork();
        seq.put(&items, "1-1", 2).unwrap();
        seq.commit();
        seq.put(&items, "1-1", 3).unwrap();
        assert!(!found(seq.document()));
    }

    fn access(device: &str, name: &str) -> PeerAccess {
        PeerAccess {
            device_id: device.to_owned(),
            device_name: name.to_owned(),
            offices: vec![OFFICE.to_owned()],
        }
    }

    fn relay_session(relay: &Arc<MemoryStorage>, a: PeerAccess) -> Session<Arc<MemoryStorage>> {
        Session::relay(relay.clone(), a, Arc::new(AdmitAllForSimulation)).unwrap()
    }

    /// A survey-kind document with one change per actor (the first creates it).
    fn doc_by(actors: &[ActorId]) -> (DocId, Vec<u8>) {
        let mut doc = Automerge::new().with_actor(actors[0].clone());
        let mut tx = doc.transaction();
        tx.put(ROOT, "kind", "survey").unwrap();
        tx.put(ROOT, "office", OFFICE).unwrap();
        tx.commit();
        for (n, a) in actors.iter().enumerate().skip(1) {
            doc.set_actor(a.clone());
            let mut tx = doc.transaction();
            tx.put(ROOT, "n", n as i64).unwrap();
            tx.commit();
        }
        (DocId::from_bytes(rand::random()), doc.save())
    }

    /// Runs a device session against a relay session until neither sends anything; the
    /// frames the relay sent, decoded.
    fn run(
        dev: &mut Session<Arc<MemoryStorage>>,
        relay: &mut Session<Arc<MemoryStorage>>,
    ) -> Vec<Frame> {
        let mut from_relay = Vec::new();
        for _ in 0..100 {
            let up: Vec<Vec<u8>> = std::iter::from_fn(|| dev.poll_transmit()).collect();
            if !up.is_empty() {
                for f in &up {
                    relay.handle_frame(f).unwrap();
                }
                relay.flush().unwrap();
            }
            let down: Vec<Vec<u8>> = std::iter::from_fn(|| relay.poll_transmit()).collect();
            if !down.is_empty() {
                for f in &down {
                    from_relay.push(Frame::decode(f).unwrap());
                    dev.handle_frame(f).unwrap();
                }
                dev.flush().unwrap();
            }
            if up.is_empty() && down.is_empty() {
                break;
            }
        }
        from_relay
    }

    fn sync(
        store: &Arc<MemoryStorage>,
        actor: &ActorId,
        relay: &Arc<MemoryStorage>,
        a: PeerAccess,
    ) -> Vec<Frame> {
        let mut dev = Session::device(
            store.clone(),
            "relay",
            vec![OFFICE.to_owned()],
            actor.to_bytes().to_vec(),
        )
        .unwrap();
        let mut rel = relay_session(relay, a);
        let frames = run(&mut dev, &mut rel);
        assert!(dev.is_finished(), "the device did not finish");
        frames
    }

    fn binding(actor: &ActorId, device: &str, name: &str) -> ActorBinding {
        ActorBinding {
            actor: actor.to_bytes().to_vec(),
            device: device.to_owned(),
            device_name: Some(name.to_owned()),
        }
    }

    #[test]
    fn devices_receive_the_relays_bindings_of_their_documents_actors() {
        let relay = Arc::new(MemoryStorage::new("relay-store"));
        let (x, y) = (ActorId::from(vec![0xA1; 16]), ActorId::from(vec![0xB2; 16]));
        let x_store = Arc::new(MemoryStorage::new("x-store"));
        let y_store = Arc::new(MemoryStorage::new("y-store"));
        let (id, bytes) = doc_by(std::slice::from_ref(&x));
        x_store.put_local(id, "survey", OFFICE, bytes).unwrap();

        // X uploads: the relay binds X's actor with the certificate's name, and tells X.
        let frames = sync(&x_store, &x, &relay, access("dev-x", "tablet-x"));
        let expected = vec![binding(&x, "dev-x", "tablet-x")];
        assert_eq!(
            relay.actor_bindings(&[x.to_bytes().to_vec()]).unwrap(),
            expected
        );
        assert!(frames.iter().any(|f| matches!(f, Frame::Actors { .. })));
        assert_eq!(
            x_store.actor_bindings(&[x.to_bytes().to_vec()]).unwrap(),
            expected
        );

        // Y downloads the document: it learns who bound X's actor (not its own, which no
        // document of the session holds).
        let frames = sync(&y_store, &y, &relay, access("dev-y", "tablet-y"));
        let actors: Vec<&Frame> = frames
            .iter()
            .filter(|f| matches!(f, Frame::Actors { .. }))
            .collect();
        assert_eq!(actors.len(), 1, "{frames:?}");
        // The bindings come before the idle the device finishes on.
        let last_actors = frames
            .iter()
            .rposition(|f| matches!(f, Frame::Actors { .. }))
            .unwrap();
        let last_idle = frames
            .iter()
            .rposition(|f| matches!(f, Frame::Idle { .. }))
            .unwrap();
        assert!(last_actors < last_idle);
        let both = [x.to_bytes().to_vec(), y.to_bytes().to_vec()];
        assert_eq!(y_store.actor_bindings(&both).unwrap(), expected);

        // A later session sends the binding again; the first one stays either way.
        let frames = sync(&y_store, &y, &relay, access("dev-y", "tablet-y"));
        assert!(
            !frames.iter().any(|f| matches!(f, Frame::Actors { .. })),
            "no-op"
        );
        assert_eq!(y_store.actor_bindings(&both).unwrap(), expected);
    }

    #[test]
    fn a_device_that_does_not_ask_gets_no_actors_frame() {
        let relay = Arc::new(MemoryStorage::new("relay-store"));
        let x = ActorId::from(vec![0xA1; 16]);
        let x_store = Arc::new(MemoryStorage::new("x-store"));
        let (id, bytes) = doc_by(std::slice::from_ref(&x));
        x_store.put_local(id, "survey", OFFICE, bytes).unwrap();
        sync(&x_store, &x, &relay, access("dev-x", "tablet-x"));

        // An older device: `hello` without caps, then it asks for the document.
        let mut rel = relay_session(&relay, access("dev-old", "tablet-old"));
        let hello = Frame::Hello {
            protocol: PROTOCOL_VERSION,
            actor: ByteBuf::from(vec![0xC3; 16]),
            epoch: None,
            cursor: 0,
            changed: Vec::new(),
            digest: ByteBuf::from(vec![0; 32]),
            caps: Vec::new(),
        };
        rel.handle_frame(&hello.encode()).unwrap();
        rel.flush().unwrap();
        let frames: Vec<Frame> = std::iter::from_fn(|| rel.poll_transmit())
            .map(|b| Frame::decode(&b).unwrap())
            .collect();
        assert!(frames.iter().any(|f| matches!(f, Frame::DocData { .. })));
        assert!(frames.iter().any(|f| matches!(f, Frame::Idle { .. })));
        assert!(!frames.iter().any(|f| matches!(f, Frame::Actors { .. })));
    }

    /// A relay answers a device's `hello` with the digest the device compares: the kept
    /// order-free one when it names `set-digest`, the legacy one from the whole catalog
    /// when it predates it; and a current device in line with the relay finds them equal.
    #[test]
    fn the_relay_answers_each_device_with_the_digest_it_compares() {
        let relay = Arc::new(MemoryStorage::new("relay-store"));
        let (id, bytes) = doc_by(&[ActorId::from(vec![0x11; 16])]);
        relay.put_local(id, "survey", OFFICE, bytes).unwrap();
        let catalog = relay.catalog(&[OFFICE.to_owned()]).unwrap();
        let welcome_digest = |caps: Vec<String>| {
            let mut rel = relay_session(&relay, access("dev-x", "tablet-x"));
            let hello = Frame::Hello {
                protocol: PROTOCOL_VERSION,
                actor: ByteBuf::from(vec![1; 16]),
                epoch: None,
                cursor: 0,
                changed: Vec::new(),
                digest: ByteBuf::from(vec![0; 32]),
                caps,
            };
            rel.handle_frame(&hello.encode()).unwrap();
            rel.flush().unwrap();
            std::iter::from_fn(|| rel.poll_transmit())
                .map(|b| Frame::decode(&b).unwrap())
                .find_map(|f| match f {
                    Frame::Welcome { digest, .. } => Some(digest.into_vec()),
                    _ => None,
                })
                .expect("a welcome")
        };
        let current = welcome_digest(vec![CAP_ACTORS.into(), CAP_SET_DIGEST.into()]);
        assert_eq!(current, catalog_digest(&catalog).to_vec());
        let legacy = welcome_digest(vec![CAP_ACTORS.into()]);
        assert_eq!(legacy, legacy_catalog_digest(&catalog).to_vec());
        assert_ne!(current, legacy);

        // Order-free: the same entries in any order, and XOR per office combines.
        let mut reversed = catalog.clone();
        reversed.push(CatalogEntry {
            id: DocId::random(),
            heads: vec![[7; 32]],
        });
        let forward = catalog_digest(&reversed);
        reversed.reverse();
        assert_eq!(catalog_digest(&reversed), forward);

        // A device that synced with this relay compares equal and sends no catalog.
        let device = Arc::new(MemoryStorage::new("device-store"));
        let frames = sync(
            &device,
            &ActorId::from(vec![0x22; 16]),
            &relay,
            access("dev-y", "tablet-y"),
        );
        // (A device that sent its catalog gets a `catalog_diff` back.)
        assert!(
            !frames
                .iter()
                .any(|f| matches!(f, Frame::CatalogDiff { .. }))
        );
        let again = sync(
            &device,
            &ActorId::from(vec![0x22; 16]),
            &relay,
            access("dev-y", "tablet-y"),
        );
        assert!(
            !again.iter().any(|f| matches!(f, Frame::CatalogDiff { .. })),
            "a no-op compares digests equal"
        );
    }

    #[test]
    fn bindings_travel_in_bounded_frames() {
        let relay = Arc::new(MemoryStorage::new("relay-store"));
        let actors: Vec<ActorId> = (0..MAX_ACTOR_BINDINGS as u32 + 5)
            .map(|n| {
                let mut a = vec![0x5A; 12];
                a.extend(n.to_be_bytes());
                ActorId::from(a)
            })
            .collect();
        let (id, bytes) = doc_by(&actors);
        relay.put_local(id, "survey", OFFICE, bytes).unwrap();
        relay
            .commit(SyncBatch {
                peer: "admin".into(),
                writes: actors
                    .iter()
                    .map(|a| SyncWrite::BindActor {
                        actor: a.to_bytes().to_vec(),
                        device: "dev-x".into(),
                        device_name: Some("tablet-x".into()),
                    })
                    .collect(),
                ..SyncBatch::default()
            })
            .unwrap();
        let y = ActorId::from(vec![0xB2; 16]);
        let y_store = Arc::new(MemoryStorage::new("y-store"));
        let frames = sync(&y_store, &y, &relay, access("dev-y", "tablet-y"));
        let sizes: Vec<usize> = frames
            .iter()
            .filter_map(|f| match f {
                Frame::Actors { bindings } => Some(bindings.len()),
                _ => None,
            })
            .collect();
        assert_eq!(sizes, vec![MAX_ACTOR_BINDINGS, 5]);
        let all: Vec<Vec<u8>> = actors.iter().map(|a| a.to_bytes().to_vec()).collect();
        assert_eq!(y_store.actor_bindings(&all).unwrap().len(), actors.len());
    }

    #[test]
    fn malformed_or_misdirected_actors_frames_end_the_session() {
        let store = Arc::new(MemoryStorage::new("x-store"));
        let mut dev =
            Session::device(store.clone(), "relay", vec![OFFICE.into()], vec![1; 16]).unwrap();
        while dev.poll_transmit().is_some() {}
        let welcome = Frame::Welcome {
            protocol: PROTOCOL_VERSION,
            relay: "relay-store".into(),
            seq: 0,
            changed: Vec::new(),
            full: Vec::new(),
            digest: ByteBuf::from(catalog_digest(&[]).to_vec()),
        };
        dev.handle_frame(&welcome.encode()).unwrap();
        let bad = Frame::Actors {
            bindings: vec![WireBinding {
                actor: ByteBuf::from(Vec::new()),
                device: "dev-x".into(),
                name: None,
            }],
        };
        assert!(matches!(
            dev.handle_frame(&bad.encode()),
            Err(SyncError::Frame(FrameError::Field("actors actor")))
        ));
        assert!(dev.is_failed());
        dev.flush().unwrap();
        assert!(store.actor_bindings(&[Vec::new()]).unwrap().is_empty());

        // A relay takes no bindings from a device.
        let relay = Arc::new(MemoryStorage::new("relay-store"));
        let mut rel = relay_session(&relay, access("dev-x", "tablet-x"));
        let hello = Frame::Hello {
            protocol: PROTOCOL_VERSION,
            actor: ByteBuf::from(vec![1; 16]),
            epoch: None,
            cursor: 0,
            changed: Vec::new(),
            digest: ByteBuf::from(vec![0; 32]),
            caps: vec![CAP_ACTORS.into()],
        };
        rel.handle_frame(&hello.encode()).unwrap();
        let forged = Frame::Actors {
            bindings: vec![WireBinding {
                actor: ByteBuf::from(vec![9; 16]),
                device: "dev-x".into(),
                name: Some("tablet-x".into()),
            }],
        };
        assert!(rel.handle_frame(&forged.encode()).is_err());
        assert!(rel.is_failed());
        assert!(relay.actor_bindings(&[vec![9; 16]]).unwrap().is_empty());
    }

    #[test]
    fn a_saved_documents_header_lists_its_actors_and_heads() {
        let actors: Vec<ActorId> = (1..=200u8).map(|n| ActorId::from(vec![n; 16])).collect();
        for n in [1, 2, 200] {
            let (_, bytes) = doc_by(&actors[..n]);
            let doc = Automerge::load(&bytes).unwrap();
            let (got, heads) = saved_doc_header(&bytes).unwrap();
            let mut want: Vec<Vec<u8>> = doc
                .get_changes_meta(&[])
                .iter()
                .map(|m| m.actor.to_bytes().to_vec())
                .collect();
            want.sort();
            want.dedup();
            let mut got_sorted = got.clone();
            got_sorted.sort();
            assert_eq!(got_sorted, want, "{n} actors");
            let mut heads = heads;
            heads.sort_unstable();
            assert_eq!(heads, doc.get_heads());
            // Anything else is not read as a header.
            assert!(saved_doc_header(&bytes[..bytes.len() - 1]).is_none());
            let mut two = bytes.clone();
            two.extend_from_slice(&bytes);
            assert!(saved_doc_header(&two).is_none());
        }
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        tx.put(ROOT, "kind", "survey").unwrap();
        tx.commit();
        let change = doc.get_last_local_change().unwrap();
        assert!(saved_doc_header(change.raw_bytes()).is_none());
        assert!(saved_doc_header(&[]).is_none());
        assert!(saved_doc_header(&[0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 0, 0xff]).is_none());
    }

    #[test]
    fn a_name_that_cannot_travel_is_left_out() {
        let b = wire_binding(ActorBinding {
            actor: vec![1; 16],
            device: "dev-x".into(),
            device_name: Some("bad\nname".into()),
        })
        .unwrap();
        assert_eq!(b.name, None);
        assert!(
            wire_binding(ActorBinding {
                actor: vec![1; 16],
                device: String::new(),
                device_name: None,
            })
            .is_none()
        );
    }
}

#[cfg(test)]
mod window_tests {
    //! A session holds only the documents in flight: the relay announces what a fresh
    //! device lacks and loads each when the outgoing window has room, and both sides
    //! release a document once it is in sync and written.

    use std::sync::Arc;

    use automerge::transaction::Transactable;
    use automerge::{ActorId, Automerge, ROOT};

    use super::*;
    use crate::sync::MemoryStorage;
    use crate::sync::admission::AdmitAllForSimulation;

    const OFFICE: &str = "1370100016";

    fn survey(actor: &ActorId, n: usize) -> (DocId, Vec<u8>) {
        let mut doc = Automerge::new().with_actor(actor.clone());
        let mut tx = doc.transaction();
        tx.put(ROOT, "kind", "survey").unwrap();
        tx.put(ROOT, "office", OFFICE).unwrap();
        tx.put(ROOT, "n", n as i64).unwrap();
        tx.commit();
        (DocId::from_bytes(rand::random()), doc.save())
    }

    struct Office {
        relay: Arc<MemoryStorage>,
        store: Arc<MemoryStorage>,
        actor: ActorId,
    }

    /// A relay holding `docs` surveys and a fresh device holding `own` of its own.
    fn office(docs: usize, own: usize) -> Office {
        let relay = Arc::new(MemoryStorage::new("relay-store"));
        let store = Arc::new(MemoryStorage::new("device-store"));
        let (a, b) = (ActorId::from(vec![0xA1; 16]), ActorId::from(vec![0xB2; 16]));
        for n in 0..docs {
            let (id, bytes) = survey(&a, n);
            relay.put_local(id, "survey", OFFICE, bytes).unwrap();
        }
        for n in 0..own {
            let (id, bytes) = survey(&b, n);
            store.put_local(id, "survey", OFFICE, bytes).unwrap();
        }
        Office {
            relay,
            store,
            actor: b,
        }
    }

    /// Runs one session over a transport that carries `per_step` frames each way per
    /// step, for at most `steps` steps (the connection is cut there). Returns whether
    /// both sides finished, the most frames either side held to send, and the most
    /// documents either side held open.
    fn session(o: &Office, per_step: usize, steps: usize) -> (bool, usize, usize) {
        let (mut dev, mut rel) = pair(o);
        let (mut peak_out, mut peak_open) = (0, 0);
        for _ in 0..steps {
            let up: Vec<Vec<u8>> = std::iter::from_fn(|| dev.poll_transmit())
                .take(per_step)
                .collect();
            for f in &up {
                rel.handle_frame(f).unwrap();
            }
            if !up.is_empty() {
                rel.flush().unwrap();
            }
            let down: Vec<Vec<u8>> = std::iter::from_fn(|| rel.poll_transmit())
                .take(per_step)
                .collect();
            // In batches, as the QUIC driver hands them (whole documents decoded ahead).
            dev.handle_frames(&down).unwrap();
            if !down.is_empty() {
                dev.flush().unwrap();
            }
            peak_out = peak_out.max(rel.out.len()).max(dev.out.len());
            peak_open = peak_open.max(rel.slots.len()).max(dev.slots.len());
            if dev.is_finished() && rel.is_finished() {
                return (true, peak_out, peak_open);
            }
        }
        (false, peak_out, peak_open)
    }

    /// A device session and a relay session over the office's stores.
    fn pair(o: &Office) -> (Session<Arc<MemoryStorage>>, Session<Arc<MemoryStorage>>) {
        let dev = Session::device(
            o.store.clone(),
            "relay",
            vec![OFFICE.to_owned()],
            o.actor.to_bytes().to_vec(),
        )
        .unwrap();
        let access = PeerAccess {
            device_id: "dev-b".into(),
            device_name: "tablet-b".into(),
            offices: vec![OFFICE.to_owned()],
        };
        let rel = Session::relay(o.relay.clone(), access, Arc::new(AdmitAllForSimulation))
            .unwrap()
            .with_limits(IntakeLimits::default());
        (dev, rel)
    }

    /// Catches: a device that re-encodes a whole document it lacked instead of keeping
    /// the bytes that arrived (decoded ahead in a batch, or one by one), and one that saves
    /// a document of its own again to send it whole instead of sending its stored
    /// snapshot.
    #[test]
    fn whole_documents_are_stored_as_they_arrived() {
        let o = office(0, 0);
        // Each stored uncompressed with a long note: bytes that load to the same document
        // but that a save (which compresses large columns) would not write. Half of them
        // on the relay, half on the device.
        let a = ActorId::from(vec![0xA1; 16]);
        for n in 0..40 {
            let (id, saved) = survey(&a, n);
            let mut doc = Automerge::load(&saved).unwrap();
            let mut tx = doc.transaction();
            tx.put(ROOT, "note", "特記事項".repeat(200)).unwrap();
            tx.commit();
            let bytes = doc.save_nocompress();
            assert_ne!(doc.save(), bytes);
            let side = if n % 2 == 0 { &o.relay } else { &o.store };
            side.put_local(id, "survey", OFFICE, bytes).unwrap();
        }
        let (done, _, _) = session(&o, 7, 10_000);
        assert!(done);
        converged(&o, 40);
        for entry in o.relay.catalog(&[OFFICE.to_owned()]).unwrap() {
            let sent = o.relay.load_for_sync("p", entry.id).unwrap().unwrap();
            let kept = o.store.load_for_sync("p", entry.id).unwrap().unwrap();
            assert_eq!(kept.chunks, sent.chunks);
        }
    }

    /// Catches: a batch decoded ahead that lets through, or stores, a whole document the
    /// device could not load: the session fails on it as it does one frame at a time, and
    /// nothing of it is written.
    #[test]
    fn an_undecodable_document_in_a_batch_fails_the_session_as_alone() {
        for batched in [true, false] {
            let o = office(6, 0);
            let (mut dev, mut rel) = pair(&o);
            let hello: Vec<Vec<u8>> = std::iter::from_fn(|| dev.poll_transmit()).collect();
            for f in &hello {
                rel.handle_frame(f).unwrap();
            }
            rel.flush().unwrap();
            let mut down: Vec<Vec<u8>> = std::iter::from_fn(|| rel.poll_transmit()).collect();
            let bad = down
                .iter()
                .rposition(|f| matches!(Frame::decode(f), Ok(Frame::DocData { .. })))
                .unwrap();
            let Ok(Frame::DocData { id, bytes }) = Frame::decode(&down[bad]) else {
                unreachable!()
            };
            let mut cut = bytes.into_vec();
            cut.truncate(cut.len() / 2);
            down[bad] = Frame::DocData {
                id: id.clone(),
                bytes: ByteBuf::from(cut),
            }
            .encode();
            let handled = if batched {
                dev.handle_frames(&down)
            } else {
                down.iter().try_for_each(|f| dev.handle_frame(f))
            };
            assert!(handled.is_err(), "batched: {batched}");
            dev.flush().unwrap();
            let id = doc_id(&id).unwrap();
            assert!(o.store.load_for_sync("p", id).unwrap().is_none());
        }
    }

    /// Both stores hold the same `n` documents.
    fn converged(o: &Office, n: usize) {
        let offices = [OFFICE.to_owned()];
        assert_eq!(o.store.catalog(&offices).unwrap().len(), n);
        assert_eq!(
            o.relay.catalog(&offices).unwrap(),
            o.store.catalog(&offices).unwrap()
        );
    }

    /// Catches: a device that relies on `welcome`'s `changed` being empty. A relay before
    /// 2026-12-05 listed every document of `full` there too, with its heads; the device
    /// skips them (their data follows), asks for none of them and converges the same.
    #[test]
    fn a_welcome_that_also_lists_its_full_documents_is_synced_as_before() {
        let o = office(5, 0);
        let (mut dev, mut rel) = pair(&o);
        let listed: Vec<WireEntry> = o
            .relay
            .catalog(&[OFFICE.to_owned()])
            .unwrap()
            .iter()
            .map(WireEntry::from)
            .collect();
        let mut asked = 0;
        for _ in 0..100 {
            let up: Vec<Vec<u8>> = std::iter::from_fn(|| dev.poll_transmit()).collect();
            for f in &up {
                asked += usize::from(matches!(Frame::decode(f), Ok(Frame::Want { .. })));
                rel.handle_frame(f).unwrap();
            }
            rel.flush().unwrap();
            let down: Vec<Vec<u8>> = std::iter::from_fn(|| rel.poll_transmit())
                .map(|f| {
                    let mut frame = Frame::decode(&f).unwrap();
                    if let Frame::Welcome { changed, full, .. } = &mut frame {
                        assert!(changed.is_empty());
                        assert_eq!(full.len(), 5);
                        changed.clone_from(&listed);
                    }
                    frame.encode()
                })
                .collect();
            dev.handle_frames(&down).unwrap();
            dev.flush().unwrap();
            if dev.is_finished() && rel.is_finished() {
                break;
            }
        }
        assert!(dev.is_finished() && rel.is_finished());
        assert_eq!(
            asked, 0,
            "the device asked for documents whose data followed"
        );
        converged(&o, 5);
    }

    /// The peaks of one uncut session moving `docs` documents down and `own` up.
    fn peak_while_syncing(docs: usize, own: usize, per_step: usize) -> (usize, usize) {
        let o = office(docs, own);
        let (done, out, open) = session(&o, per_step, 100_000);
        assert!(done, "the session did not finish");
        converged(&o, docs + own);
        (out, open)
    }

    /// What a session may keep, whatever the number of documents: a window of frames
    /// each way (documents wait for their answers behind the peer's window), plus the
    /// frames of one step each way.
    const BOUND: usize = 2 * WANT_WINDOW_FRAMES + 2 * 8;

    #[test]
    fn a_fresh_device_receives_a_large_office_through_a_bounded_window() {
        for docs in [40, 400] {
            let (out, open) = peak_while_syncing(docs, 0, 8);
            // What the relay queues is bounded by its window, not by the office.
            assert!(out <= BOUND, "{docs} documents: {out} frames queued");
            // Each document is released once in sync and written.
            assert!(open <= BOUND, "{docs} documents: {open} held open");
        }
    }

    #[test]
    fn a_device_pushes_many_documents_through_a_bounded_window() {
        for own in [40, 400] {
            let (out, open) = peak_while_syncing(5, own, 8);
            assert!(out <= BOUND, "{own} documents: {out} frames queued");
            assert!(open <= BOUND, "{own} documents: {open} held open");
        }
    }

    #[test]
    fn a_sync_larger_than_the_window_cut_in_the_middle_resumes() {
        let o = office(300, 300);
        // Cut after a few windows each way: some documents arrived, most did not.
        let (done, _, _) = session(&o, 8, 20);
        assert!(!done);
        let offices = [OFFICE.to_owned()];
        let partway = o.store.catalog(&offices).unwrap().len();
        assert!(partway > 300 && partway < 600, "{partway}");
        // The next session carries the rest, still within the window.
        let (done, out, open) = session(&o, 8, 100_000);
        assert!(done, "the resumed session did not finish");
        assert!(out <= BOUND && open <= BOUND, "{out} {open}");
        converged(&o, 600);
    }
}

#[cfg(test)]
mod sent_whole_tests {
    use super::*;

    /// Catches: a released document's heads compared wrongly in their compact form (a
    /// late sync message then absorbed for a document that differs, or loaded again for
    /// one that does not).
    #[test]
    fn settled_heads_match_exactly_the_heads_they_were_made_from() {
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let one = SettledHeads::of(vec![a]);
        assert!(one.is(&[a]));
        assert!(!one.is(&[b]) && !one.is(&[a, b]) && !one.is(&[]));
        let two = SettledHeads::of(vec![a, b]);
        assert!(two.is(&[a, b]));
        assert!(!two.is(&[a]) && !two.is(&[a, c]) && !two.is(&[a, b, c]));
        let none = SettledHeads::of(Vec::new());
        assert!(none.is(&[]) && !none.is(&[a]));
    }

    /// Catches: a document with several heads (concurrent edits not merged yet) losing
    /// all but one of them in the compact record, or an entry lost or given twice.
    #[test]
    fn documents_with_one_head_and_with_several_are_given_back_with_all_their_heads() {
        let hash = |b: u8| ChangeHash([b; 32]);
        let (a, b, c) = (DocId::random(), DocId::random(), DocId::random());
        let mut sent = SentWhole::default();
        sent.push(a, vec![hash(1)]);
        sent.push(b, vec![hash(2), hash(3)]);
        sent.push(c, vec![hash(4)]);
        let mut back: Vec<(DocId, Vec<ChangeHash>)> = sent.take().collect();
        back.sort();
        let mut want = vec![
            (a, vec![hash(1)]),
            (b, vec![hash(2), hash(3)]),
            (c, vec![hash(4)]),
        ];
        want.sort();
        assert_eq!(back, want);
        assert_eq!(sent.take().count(), 0, "taken once");
    }
}
