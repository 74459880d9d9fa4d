//! What a sync session needs from a store, as a trait: the encrypted [`Store`] implements it
//! (one transaction per [`SyncBatch`]), and so does the in-memory [`MemoryStorage`] used by
//! the seeded simulations and benchmarks.
//!
//! [`Store`]: crate::store::Store
//! [`MemoryStorage`]: super::MemoryStorage

use std::collections::HashSet;
use std::fmt;

use super::admission::EvidenceVerdict;
use super::sharing::ShareKeys;
use crate::doc::Snapshot;
use crate::ids::DocId;

/// One automerge change hash.
pub type Hash = [u8; 32];

/// A document's heads, sorted.
pub type Heads = Vec<Hash>;

/// A document id with its heads.
#[derive(Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    /// The document.
    pub id: DocId,
    /// Its heads, sorted.
    pub heads: Heads,
}

impl fmt::Debug for CatalogEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}h", self.id.short(), self.heads.len())
    }
}

/// What we remember about one peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerRecord {
    /// The peer's store id that `cursor` refers to (a relay restored from another store
    /// has another id, and the cursor is then worthless).
    pub epoch: Option<String>,
    /// The peer's sequence number up to which we have all its changes.
    pub cursor: u64,
    /// Our sequence number up to which the peer has all our changes.
    pub pushed_seq: u64,
    /// When the last sync with this peer completed (unix ms).
    pub last_ok_ms: Option<i64>,
}

/// A document loaded for sync.
#[derive(Clone)]
pub struct SyncDocRecord {
    /// Its kind.
    pub kind: String,
    /// Its owning office.
    pub office: String,
    /// The snapshot first, then change chunks.
    pub chunks: Vec<Vec<u8>>,
    /// The persisted automerge sync state with this peer, if any.
    pub sync_state: Option<Vec<u8>>,
    /// The store's sequence number of the document's latest write.
    pub seq: u64,
}

impl fmt::Debug for SyncDocRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncDocRecord")
            .field("kind", &self.kind)
            .field("office", &self.office)
            .field("chunks", &self.chunks.len())
            .field("sync_state", &self.sync_state.is_some())
            .finish()
    }
}

/// One write of a sync batch.
#[derive(Clone)]
pub enum SyncWrite {
    /// A document new to this store.
    Insert {
        /// Its id.
        id: DocId,
        /// Its kind.
        kind: String,
        /// Its owning office.
        office: String,
        /// Listing title (personal data: stored encrypted, never logged).
        title: String,
        /// The whole document, known to load (no store decodes it again).
        bytes: Snapshot,
        /// Its heads after the write.
        heads: Heads,
        /// Its sharing keys (registration-gated sharing).
        keys: ShareKeys,
    },
    /// New changes to a document this store has.
    Append {
        /// Its id.
        id: DocId,
        /// Raw change chunks (`save_after` output).
        changes: Vec<Vec<u8>>,
        /// Its heads after the write, valid only if nothing else wrote the document since
        /// it was loaded at `base_seq` (otherwise the store recomputes them).
        heads: Heads,
        /// The document's sequence number when the session loaded it.
        base_seq: u64,
        /// Listing title after the write.
        title: String,
        /// Sharing keys after the write (kept only if `heads` are exact).
        keys: ShareKeys,
    },
    /// The sync state with the batch's peer.
    State {
        /// The document.
        id: DocId,
        /// `sync::State::encode()`.
        state: Vec<u8>,
        /// The peer is known to have exactly `heads` of this document.
        in_sync: bool,
        /// The heads the peer has; `in_sync` counts only if the store holds these.
        heads: Heads,
    },
    /// Keeps the card evidence the relay verified for a registration it stores in the same
    /// batch, and binds the card certificate to the person (the first binding stays; a
    /// verdict whose certificate is bound to another person meanwhile is not kept).
    Evidence {
        /// The registration.
        id: DocId,
        /// What was verified.
        verdict: EvidenceVerdict,
    },
    /// Binds an automerge actor to the device that first sent changes under it: on the
    /// relay from the device certificate; on a device only from the relay's `actors`
    /// frame. The first binding of an actor stays.
    BindActor {
        /// The actor id bytes.
        actor: Vec<u8>,
        /// The device id.
        device: String,
        /// The device name (from the certificate), if known.
        device_name: Option<String>,
    },
}

impl fmt::Debug for SyncWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncWrite::Insert { id, bytes, .. } => {
                write!(f, "Insert({}, {} bytes)", id.short(), bytes.len())
            }
            SyncWrite::Append { id, changes, .. } => {
                write!(f, "Append({}, {} chunks)", id.short(), changes.len())
            }
            SyncWrite::State { id, in_sync, .. } => {
                write!(f, "State({}, in_sync={in_sync})", id.short())
            }
            SyncWrite::Evidence { id, .. } => write!(f, "Evidence({})", id.short()),
            SyncWrite::BindActor { device, .. } => write!(f, "BindActor(device {device})"),
        }
    }
}

/// The device an automerge actor is bound to (the relay's `actors` table, or its copy on
/// a device).
#[derive(Clone, PartialEq, Eq)]
pub struct ActorBinding {
    /// The actor id bytes.
    pub actor: Vec<u8>,
    /// The device id from the certificate.
    pub device: String,
    /// The device name from the certificate, if known (bindings made before names were
    /// kept have none).
    pub device_name: Option<String>,
}

impl fmt::Debug for ActorBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActorBinding(device {})", self.device)
    }
}

/// Everything a session writes at one flush: committed in ONE transaction.
#[derive(Clone, Debug, Default)]
pub struct SyncBatch {
    /// The peer the states and the record belong to.
    pub peer: String,
    /// Forget every sync state with this peer first (the peer lost its data).
    pub reset_peer: bool,
    /// Document, state and actor writes, in order.
    pub writes: Vec<SyncWrite>,
    /// The new peer record, if it changes.
    pub peer_record: Option<PeerRecord>,
}

impl SyncBatch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        !self.reset_peer && self.writes.is_empty() && self.peer_record.is_none()
    }
}

/// Documents of other offices that a device may read (registration-gated sharing, see
/// [`super::sharing`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharedDocs {
    /// Every such document.
    pub ids: HashSet<DocId>,
    /// Those not known to be in sync with the peer, sorted by id.
    pub changed: Vec<CatalogEntry>,
}

/// Documents and stored bytes (snapshots + change chunks as stored) of one office, and
/// those written by batches whose `SyncBatch::peer` is `peer` (on the relay: a device id).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Documents of the office.
    pub office_docs: u64,
    /// Bytes stored for the office's documents.
    pub office_bytes: u64,
    /// Documents inserted by the peer's batches.
    pub peer_docs: u64,
    /// Bytes written by the peer's batches (snapshots and change chunks).
    pub peer_bytes: u64,
}

/// What a session reads from its store when it starts: a device before its `hello`, the
/// relay to answer one. One call ([`SyncStorage::session_start`]), so a store that serves
/// calls on a thread of its own hands them over once, not five times.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StartQuery {
    /// The peer.
    pub peer: String,
    /// The offices whose documents the session covers.
    pub offices: Vec<String>,
    /// Changed documents are those written after this sequence number; `None`: after the
    /// peer record's `pushed_seq` (a device).
    pub since: Option<u64>,
    /// List every document written after `since`, in sync with the peer or not.
    pub ignore_states: bool,
    /// The relay: the device's actor, whose binding is read.
    pub actor: Option<Vec<u8>>,
    /// The relay: read the documents of other offices shared with the device too.
    pub shared: bool,
}

/// What [`SyncStorage::session_start`] read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StartReads {
    /// [`SyncStorage::peer`].
    pub record: PeerRecord,
    /// [`SyncStorage::current_seq`], read before the changed documents.
    pub seq: u64,
    /// [`SyncStorage::changed_for_peer`].
    pub changed: Vec<CatalogEntry>,
    /// [`SyncStorage::catalog_digest`].
    pub digest: [u8; 32],
    /// [`SyncStorage::actor_owner`] of the query's actor (`None` without one).
    pub actor_owner: Option<String>,
    /// [`SyncStorage::shared_for_peer`] (empty unless asked for).
    pub shared: SharedDocs,
}

/// A failure of the storage underneath a session (message without personal data).
#[derive(Debug, Clone, thiserror::Error)]
#[error("storage: {0}")]
pub struct StorageError(pub String);

/// What a sync session needs from a store. Calls may block (the store thread).
pub trait SyncStorage {
    /// This store's id (the epoch its sequence numbers belong to).
    fn store_id(&self) -> String;
    /// The highest sequence number given out so far.
    fn current_seq(&self) -> Result<u64, StorageError>;
    /// Documents of `offices` written after `since` and not known to be in sync with
    /// `peer` (unless `ignore_states`), sorted by id.
    fn changed_for_peer(
        &self,
        peer: &str,
        since: u64,
        offices: &[String],
        ignore_states: bool,
    ) -> Result<Vec<CatalogEntry>, StorageError>;
    /// Every document of `offices`, sorted by id.
    fn catalog(&self, offices: &[String]) -> Result<Vec<CatalogEntry>, StorageError>;
    /// [`catalog_digest`] of [`catalog`](Self::catalog). This default computes it from the
    /// whole catalog; a store that keeps the per-office digests up to date on write (the
    /// SQLCipher store and PostgreSQL do) answers without reading the catalog.
    ///
    /// [`catalog_digest`]: super::catalog_digest
    fn catalog_digest(&self, offices: &[String]) -> Result<[u8; 32], StorageError> {
        Ok(super::catalog_digest(&self.catalog(offices)?))
    }
    /// The office and heads of each of `ids` this store has (any office).
    fn lookup(&self, ids: &[DocId]) -> Result<Vec<(DocId, String, Heads)>, StorageError>;
    /// What we remember about `peer` (default when nothing).
    fn peer(&self, peer: &str) -> Result<PeerRecord, StorageError>;
    /// A document with its sync state for `peer`, or `None`.
    fn load_for_sync(&self, peer: &str, id: DocId) -> Result<Option<SyncDocRecord>, StorageError>;
    /// The device an actor is bound to, if any.
    fn actor_owner(&self, actor: &[u8]) -> Result<Option<String>, StorageError>;
    /// The bindings of those of `actors` that are bound (in any order; unbound actors are
    /// left out).
    fn actor_bindings(&self, actors: &[Vec<u8>]) -> Result<Vec<ActorBinding>, StorageError>;
    /// The person key a card certificate (SHA-256 hex) is bound to at this store, if any.
    fn cert_person(&self, fingerprint: &str) -> Result<Option<String>, StorageError>;
    /// Documents of other offices shared with a device of `offices` through a valid
    /// registration, and which of them are not known to be in sync with `peer` (all of
    /// them if `ignore_states`).
    fn shared_for_peer(
        &self,
        peer: &str,
        offices: &[String],
        ignore_states: bool,
    ) -> Result<SharedDocs, StorageError>;
    /// Storage used by `office` and written by `peer` (counters maintained on write, in
    /// the same transaction as the write; see [`Usage`]).
    fn usage(&self, office: &str, peer: &str) -> Result<Usage, StorageError>;
    /// Writes a batch in one transaction (all or nothing).
    fn commit(&self, batch: SyncBatch) -> Result<(), StorageError>;
    /// Everything a session reads when it starts, as the single calls would read it, in
    /// that order: [`peer`](Self::peer), [`current_seq`](Self::current_seq),
    /// [`changed_for_peer`](Self::changed_for_peer), [`catalog_digest`](Self::catalog_digest),
    /// then [`actor_owner`](Self::actor_owner) and [`shared_for_peer`](Self::shared_for_peer)
    /// if asked ([`read_start`]). This default makes those calls; a store whose calls each
    /// cross to another thread answers in one crossing (the SQLCipher store does).
    fn session_start(&self, q: &StartQuery) -> Result<StartReads, StorageError> {
        read_start(&mut &*self, q)
    }
}

impl<T: SyncStorage + ?Sized> SyncStorage for std::sync::Arc<T> {
    fn store_id(&self) -> String {
        (**self).store_id()
    }
    fn current_seq(&self) -> Result<u64, StorageError> {
        (**self).current_seq()
    }
    fn changed_for_peer(
        &self,
        peer: &str,
        since: u64,
        offices: &[String],
        ignore_states: bool,
    ) -> Result<Vec<CatalogEntry>, StorageError> {
        (**self).changed_for_peer(peer, since, offices, ignore_states)
    }
    fn catalog(&self, offices: &[String]) -> Result<Vec<CatalogEntry>, StorageError> {
        (**self).catalog(offices)
    }
    fn catalog_digest(&self, offices: &[String]) -> Result<[u8; 32], StorageError> {
        (**self).catalog_digest(offices)
    }
    fn lookup(&self, ids: &[DocId]) -> Result<Vec<(DocId, String, Heads)>, StorageError> {
        (**self).lookup(ids)
    }
    fn peer(&self, peer: &str) -> Result<PeerRecord, StorageError> {
        (**self).peer(peer)
    }
    fn load_for_sync(&self, peer: &str, id: DocId) -> Result<Option<SyncDocRecord>, StorageError> {
        (**self).load_for_sync(peer, id)
    }
    fn actor_owner(&self, actor: &[u8]) -> Result<Option<String>, StorageError> {
        (**self).actor_owner(actor)
    }
    fn actor_bindings(&self, actors: &[Vec<u8>]) -> Result<Vec<ActorBinding>, StorageError> {
        (**self).actor_bindings(actors)
    }
    fn cert_person(&self, fingerprint: &str) -> Result<Option<String>, StorageError> {
        (**self).cert_person(fingerprint)
    }
    fn shared_for_peer(
        &self,
        peer: &str,
        offices: &[String],
        ignore_states: bool,
    ) -> Result<SharedDocs, StorageError> {
        (**self).shared_for_peer(peer, offices, ignore_states)
    }
    fn usage(&self, office: &str, peer: &str) -> Result<Usage, StorageError> {
        (**self).usage(office, peer)
    }
    fn commit(&self, batch: SyncBatch) -> Result<(), StorageError> {
        (**self).commit(batch)
    }
    fn session_start(&self, q: &StartQuery) -> Result<StartReads, StorageError> {
        (**self).session_start(q)
    }
}

/// The reads of [`SyncStorage::session_start`], as one store makes them: through its
/// [`SyncStorage`] calls (every store, by default), or where its connection lives (the
/// SQLCipher store, on its thread). [`read_start`] puts them together, once for all.
pub trait StartSource {
    /// What a read fails with.
    type Error;
    /// [`SyncStorage::peer`].
    fn peer(&mut self, peer: &str) -> Result<PeerRecord, Self::Error>;
    /// [`SyncStorage::current_seq`].
    fn current_seq(&mut self) -> Result<u64, Self::Error>;
    /// [`SyncStorage::changed_for_peer`].
    fn changed_for_peer(
        &mut self,
        peer: &str,
        since: u64,
        offices: &[String],
        ignore_states: bool,
    ) -> Result<Vec<CatalogEntry>, Self::Error>;
    /// [`SyncStorage::catalog_digest`].
    fn catalog_digest(&mut self, offices: &[String]) -> Result<[u8; 32], Self::Error>;
    /// [`SyncStorage::actor_owner`].
    fn actor_owner(&mut self, actor: &[u8]) -> Result<Option<String>, Self::Error>;
    /// [`SyncStorage::shared_for_peer`].
    fn shared_for_peer(
        &mut self,
        peer: &str,
        offices: &[String],
        ignore_states: bool,
    ) -> Result<SharedDocs, Self::Error>;
}

impl<S: SyncStorage + ?Sized> StartSource for &S {
    type Error = StorageError;
    fn peer(&mut self, peer: &str) -> Result<PeerRecord, StorageError> {
        SyncStorage::peer(*self, peer)
    }
    fn current_seq(&mut self) -> Result<u64, StorageError> {
        SyncStorage::current_seq(*self)
    }
    fn changed_for_peer(
        &mut self,
        peer: &str,
        since: u64,
        offices: &[String],
        ignore_states: bool,
    ) -> Result<Vec<CatalogEntry>, StorageError> {
        SyncStorage::changed_for_peer(*self, peer, since, offices, ignore_states)
    }
    fn catalog_digest(&mut self, offices: &[String]) -> Result<[u8; 32], StorageError> {
        SyncStorage::catalog_digest(*self, offices)
    }
    fn actor_owner(&mut self, actor: &[u8]) -> Result<Option<String>, StorageError> {
        SyncStorage::actor_owner(*self, actor)
    }
    fn shared_for_peer(
        &mut self,
        peer: &str,
        offices: &[String],
        ignore_states: bool,
    ) -> Result<SharedDocs, StorageError> {
        SyncStorage::shared_for_peer(*self, peer, offices, ignore_states)
    }
}

/// [`SyncStorage::session_start`] from `source`'s reads, in its order: the peer record, the
/// sequence number (before the changed documents, so a write in between is sent again
/// rather than missed), the changed documents, the digest, then the actor's binding and
/// the shared documents if asked.
pub fn read_start<R: StartSource + ?Sized>(
    source: &mut R,
    q: &StartQuery,
) -> Result<StartReads, R::Error> {
    let record = source.peer(&q.peer)?;
    let seq = source.current_seq()?;
    let since = q.since.unwrap_or(record.pushed_seq);
    let changed = source.changed_for_peer(&q.peer, since, &q.offices, q.ignore_states)?;
    let digest = source.catalog_digest(&q.offices)?;
    let actor_owner = match &q.actor {
        Some(actor) => source.actor_owner(actor)?,
        None => None,
    };
    let shared = if q.shared {
        source.shared_for_peer(&q.peer, &q.offices, q.ignore_states)?
    } else {
        SharedDocs::default()
    };
    Ok(StartReads {
        record,
        seq,
        changed,
        digest,
        actor_owner,
        shared,
    })
}

/// Packs heads for storage: concatenated 32-byte hashes.
pub fn pack_heads(heads: &[Hash]) -> Vec<u8> {
    heads.iter().flat_map(|h| h.iter().copied()).collect()
}

/// Unpacks stored heads; `None` if the length is not a multiple of 32.
pub fn unpack_heads(bytes: &[u8]) -> Option<Heads> {
    if !bytes.len().is_multiple_of(32) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect(),
    )
}
