//! An in-memory [`SyncStorage`] with the same rules as the SQLCipher store (sequence
//! numbers, sync states, actor bindings, all-or-nothing batches). Used by the seeded
//! simulations and the benchmarks; "crashing" a peer drops its session and keeps this.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::sharing::{ShareKeys, ShareRow, share_keys, shared_ids};
use super::storage::{
    ActorBinding, CatalogEntry, Heads, PeerRecord, SharedDocs, StorageError, SyncBatch,
    SyncDocRecord, SyncStorage, SyncWrite, Usage,
};
use crate::ids::DocId;

#[derive(Clone)]
struct MemDoc {
    kind: String,
    office: String,
    chunks: Vec<Vec<u8>>,
    seq: u64,
    heads: Option<Heads>,
    /// Sharing keys and the sequence number they were derived at.
    keys: Option<(u64, ShareKeys)>,
}

#[derive(Default, Clone)]
struct Inner {
    docs: BTreeMap<DocId, MemDoc>,
    seq: u64,
    peers: HashMap<String, PeerRecord>,
    states: HashMap<(String, DocId), (Vec<u8>, u64)>,
    /// Actor → (device id, device name).
    actors: HashMap<Vec<u8>, (String, Option<String>)>,
    /// Registration → the person key its verified card evidence names.
    evidence: HashMap<DocId, String>,
    /// Card certificate fingerprint → person key.
    cert_bindings: HashMap<String, String>,
    commits: u64,
    /// Office → (documents, stored bytes), updated with every write.
    office_usage: HashMap<String, (u64, u64)>,
    /// Peer → (documents inserted, bytes written) by its batches.
    peer_usage: HashMap<String, (u64, u64)>,
}

impl Inner {
    /// Writes a chunk under the next sequence number: a new document gets `heads` (if
    /// known), an existing one gets the chunk appended and its heads recomputed later.
    fn put(
        &mut self,
        id: DocId,
        kind: String,
        office: String,
        chunk: Vec<u8>,
        heads: Option<Heads>,
    ) {
        self.seq += 1;
        let seq = self.seq;
        let len = chunk.len() as u64;
        match self.docs.get_mut(&id) {
            Some(d) => {
                let u = self.office_usage.entry(d.office.clone()).or_default();
                u.1 += len;
                d.chunks.push(chunk);
                d.seq = seq;
                d.heads = None;
            }
            None => {
                let u = self.office_usage.entry(office.clone()).or_default();
                u.0 += 1;
                u.1 += len;
                self.docs.insert(
                    id,
                    MemDoc {
                        kind,
                        office,
                        chunks: vec![chunk],
                        seq,
                        heads,
                        keys: None,
                    },
                );
            }
        }
    }
}

/// A store kept in memory.
pub struct MemoryStorage {
    id: String,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for MemoryStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStorage")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn err(what: &str) -> StorageError {
    StorageError(what.to_owned())
}

fn heads_of_chunks(chunks: &[Vec<u8>]) -> Result<Heads, StorageError> {
    let mut doc = automerge::Automerge::new();
    for c in chunks {
        doc.load_incremental(c)
            .map_err(|_| err("stored chunk does not load"))?;
    }
    Ok(super::frame::heads_of(&doc))
}

impl MemoryStorage {
    /// An empty store with the given id.
    pub fn new(id: &str) -> Self {
        MemoryStorage {
            id: id.to_owned(),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, StorageError> {
        self.inner.lock().map_err(|_| err("memory store poisoned"))
    }

    /// Adds or extends a document as a local edit would (bumps the sequence number).
    pub fn put_local(
        &self,
        id: DocId,
        kind: &str,
        office: &str,
        chunk: Vec<u8>,
    ) -> Result<(), StorageError> {
        let mut g = self.lock()?;
        g.put(id, kind.to_owned(), office.to_owned(), chunk, None);
        Ok(())
    }

    /// The document as one automerge document, if present.
    pub fn load(&self, id: DocId) -> Result<Option<automerge::Automerge>, StorageError> {
        let g = self.lock()?;
        let Some(d) = g.docs.get(&id) else {
            return Ok(None);
        };
        let mut doc = automerge::Automerge::new();
        for c in &d.chunks {
            doc.load_incremental(c)
                .map_err(|_| err("stored chunk does not load"))?;
        }
        Ok(Some(doc))
    }

    /// Every document id.
    pub fn ids(&self) -> Result<Vec<DocId>, StorageError> {
        Ok(self.lock()?.docs.keys().copied().collect())
    }

    /// How many batches were committed.
    pub fn commits(&self) -> Result<u64, StorageError> {
        Ok(self.lock()?.commits)
    }

    /// Documents matching `pick` that `peer` is not known to hold at their current seq
    /// (all that match if `ignore_states`), with their heads, sorted by id.
    fn not_in_sync(
        g: &Inner,
        peer: &str,
        ignore_states: bool,
        pick: impl Fn(&DocId, &MemDoc) -> bool,
    ) -> Vec<CatalogEntry> {
        g.docs
            .iter()
            .filter(|(id, d)| pick(id, d))
            .filter(|(id, d)| {
                ignore_states
                    || g.states
                        .get(&(peer.to_owned(), **id))
                        .is_none_or(|(_, synced)| *synced < d.seq)
            })
            .map(|(id, d)| CatalogEntry {
                id: *id,
                heads: d.heads.clone().unwrap_or_default(),
            })
            .collect()
    }

    fn fill_keys(g: &mut Inner) {
        for d in g.docs.values_mut() {
            if d.keys.as_ref().is_none_or(|(seq, _)| *seq != d.seq) {
                let keys = super::session::load_chunks(&d.chunks)
                    .map(|doc| share_keys(&doc, &d.kind))
                    .unwrap_or_default();
                d.keys = Some((d.seq, keys));
            }
        }
    }

    fn fill_heads(g: &mut Inner) -> Result<(), StorageError> {
        for d in g.docs.values_mut() {
            if d.heads.is_none() {
                d.heads = Some(heads_of_chunks(&d.chunks)?);
            }
        }
        Ok(())
    }
}

impl SyncStorage for MemoryStorage {
    fn store_id(&self) -> String {
        self.id.clone()
    }

    fn current_seq(&self) -> Result<u64, StorageError> {
        Ok(self.lock()?.seq)
    }

    fn changed_for_peer(
        &self,
        peer: &str,
        since: u64,
        offices: &[String],
        ignore_states: bool,
    ) -> Result<Vec<CatalogEntry>, StorageError> {
        let mut g = self.lock()?;
        Self::fill_heads(&mut g)?;
        Ok(Self::not_in_sync(&g, peer, ignore_states, |_, d| {
            d.seq > since && offices.contains(&d.office)
        }))
    }

    fn catalog(&self, offices: &[String]) -> Result<Vec<CatalogEntry>, StorageError> {
        let mut g = self.lock()?;
        Self::fill_heads(&mut g)?;
        Ok(g.docs
            .iter()
            .filter(|(_, d)| offices.contains(&d.office))
            .map(|(id, d)| CatalogEntry {
                id: *id,
                heads: d.heads.clone().unwrap_or_default(),
            })
            .collect())
    }

    fn lookup(&self, ids: &[DocId]) -> Result<Vec<(DocId, String, Heads)>, StorageError> {
        let mut g = self.lock()?;
        Self::fill_heads(&mut g)?;
        Ok(ids
            .iter()
            .filter_map(|id| {
                g.docs
                    .get(id)
                    .map(|d| (*id, d.office.clone(), d.heads.clone().unwrap_or_default()))
            })
            .collect())
    }

    fn peer(&self, peer: &str) -> Result<PeerRecord, StorageError> {
        Ok(self.lock()?.peers.get(peer).cloned().unwrap_or_default())
    }

    fn load_for_sync(&self, peer: &str, id: DocId) -> Result<Option<SyncDocRecord>, StorageError> {
        let g = self.lock()?;
        Ok(g.docs.get(&id).map(|d| SyncDocRecord {
            kind: d.kind.clone(),
            office: d.office.clone(),
            chunks: d.chunks.clone(),
            sync_state: g.states.get(&(peer.to_owned(), id)).map(|(s, _)| s.clone()),
            seq: d.seq,
        }))
    }

    fn actor_owner(&self, actor: &[u8]) -> Result<Option<String>, StorageError> {
        Ok(self
            .lock()?
            .actors
            .get(actor)
            .map(|(device, _)| device.clone()))
    }

    fn actor_bindings(&self, actors: &[Vec<u8>]) -> Result<Vec<ActorBinding>, StorageError> {
        let g = self.lock()?;
        Ok(actors
            .iter()
            .filter_map(|a| {
                g.actors.get(a).map(|(device, name)| ActorBinding {
                    actor: a.clone(),
                    device: device.clone(),
                    device_name: name.clone(),
                })
            })
            .collect())
    }

    fn cert_person(&self, fingerprint: &str) -> Result<Option<String>, StorageError> {
        Ok(self.lock()?.cert_bindings.get(fingerprint).cloned())
    }

    fn shared_for_peer(
        &self,
        peer: &str,
        offices: &[String],
        ignore_states: bool,
    ) -> Result<SharedDocs, StorageError> {
        let mut g = self.lock()?;
        Self::fill_heads(&mut g)?;
        Self::fill_keys(&mut g);
        let rows: Vec<ShareRow> = g
            .docs
            .iter()
            .map(|(id, d)| ShareRow {
                id: *id,
                kind: d.kind.clone(),
                office: d.office.clone(),
                keys: d.keys.clone().map(|(_, k)| k).unwrap_or_default(),
                attested_person: g.evidence.get(id).cloned(),
            })
            .collect();
        let ids = shared_ids(&rows, offices);
        let changed = Self::not_in_sync(&g, peer, ignore_states, |id, _| ids.contains(id));
        Ok(SharedDocs { ids, changed })
    }

    fn usage(&self, office: &str, peer: &str) -> Result<Usage, StorageError> {
        let g = self.lock()?;
        let (office_docs, office_bytes) = g.office_usage.get(office).copied().unwrap_or_default();
        let (peer_docs, peer_bytes) = g.peer_usage.get(peer).copied().unwrap_or_default();
        Ok(Usage {
            office_docs,
            office_bytes,
            peer_docs,
            peer_bytes,
        })
    }

    fn commit(&self, batch: SyncBatch) -> Result<(), StorageError> {
        let mut guard = self.lock()?;
        // All or nothing: work on a copy, then swap it in.
        let mut g = guard.clone();
        g.commits += 1;
        if batch.reset_peer {
            g.states.retain(|(p, _), _| *p != batch.peer);
        }
        for w in batch.writes {
            match w {
                SyncWrite::Insert {
                    id,
                    kind,
                    office,
                    bytes,
                    heads,
                    keys,
                    ..
                } => {
                    // A `Snapshot` loads (it was saved or checked when it was made).
                    let u = g.peer_usage.entry(batch.peer.clone()).or_default();
                    let new = !g.docs.contains_key(&id);
                    u.0 += u64::from(new);
                    u.1 += bytes.len() as u64;
                    g.put(id, kind, office, bytes.into_bytes(), Some(heads));
                    // The sharing keys come with a new document, as in the real stores.
                    let seq = g.seq;
                    if let Some(d) = g.docs.get_mut(&id).filter(|_| new) {
                        d.keys = Some((seq, keys));
                    }
                }
                SyncWrite::Append {
                    id,
                    changes,
                    heads,
                    base_seq,
                    ..
                } => {
                    g.seq += 1;
                    let seq = g.seq;
                    let d = g
                        .docs
                        .get_mut(&id)
                        .ok_or_else(|| err("append to a missing document"))?;
                    for c in changes.iter().filter(|c| !c.is_empty()) {
                        crate::doc::check_chunk(c)
                            .map_err(|_| err("change data does not parse"))?;
                    }
                    d.heads = (d.seq == base_seq).then_some(heads);
                    let added: u64 = changes.iter().map(|c| c.len() as u64).sum();
                    d.chunks
                        .extend(changes.into_iter().filter(|c| !c.is_empty()));
                    d.seq = seq;
                    let office = d.office.clone();
                    g.office_usage.entry(office).or_default().1 += added;
                    g.peer_usage.entry(batch.peer.clone()).or_default().1 += added;
                }
                SyncWrite::State {
                    id,
                    state,
                    in_sync,
                    heads,
                } => {
                    let synced = match g.docs.get(&id) {
                        Some(d) if in_sync && d.heads.as_ref() == Some(&heads) => d.seq,
                        _ => 0,
                    };
                    g.states.insert((batch.peer.clone(), id), (state, synced));
                }
                SyncWrite::Evidence { id, verdict } => {
                    let bound = g
                        .cert_bindings
                        .entry(verdict.cert_fingerprint)
                        .or_insert_with(|| verdict.person.clone());
                    if *bound == verdict.person {
                        g.evidence.insert(id, verdict.person);
                    }
                }
                SyncWrite::BindActor {
                    actor,
                    device,
                    device_name,
                } => {
                    g.actors.entry(actor).or_insert((device, device_name));
                }
            }
        }
        if let Some(rec) = batch.peer_record {
            g.peers.insert(batch.peer.clone(), rec);
        }
        *guard = g;
        Ok(())
    }
}

#[cfg(test)]
mod usage_tests {
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ROOT};

    use super::*;

    /// Catches: the in-memory store's usage counters drifting from what it holds, a failed
    /// batch counting, or one peer's writes counted for another.
    #[test]
    fn memory_usage_counts_what_is_held() {
        let store = MemoryStorage::new("m");
        let office = "1370000001";
        let id = DocId::random();
        let mut am = AutoCommit::new();
        am.put(ROOT, "kind", "survey").unwrap();
        let snap = am.save();
        store
            .put_local(DocId::random(), "survey", office, snap.clone())
            .unwrap();
        let insert = SyncWrite::Insert {
            id,
            kind: "survey".into(),
            office: office.into(),
            title: String::new(),
            bytes: crate::doc::Snapshot::of(am.document()),
            heads: super::super::frame::heads_of(am.document()),
            keys: ShareKeys::default(),
        };
        am.put(ROOT, "n", 1).unwrap();
        let change = am.save_incremental();
        let append = SyncWrite::Append {
            id,
            changes: vec![change.clone()],
            heads: super::super::frame::heads_of(am.document()),
            base_seq: 0,
            title: String::new(),
            keys: ShareKeys::default(),
        };
        let batch = |writes| SyncBatch {
            peer: "dev-a".into(),
            writes,
            ..SyncBatch::default()
        };
        store.commit(batch(vec![insert, append.clone()])).unwrap();
        let before = store.usage(office, "dev-a").unwrap();
        let held: u64 = {
            let g = store.lock().unwrap();
            g.docs
                .values()
                .flat_map(|d| &d.chunks)
                .map(|c| c.len() as u64)
                .sum()
        };
        assert_eq!(
            before,
            Usage {
                office_docs: 2,
                office_bytes: held,
                peer_docs: 1,
                peer_bytes: (snap.len() + change.len()) as u64,
            }
        );
        assert_eq!(store.usage(office, "dev-b").unwrap().peer_bytes, 0);
        // A failing batch (its second write appends to a missing document) counts nothing.
        let SyncWrite::Append { changes, heads, .. } = append else {
            unreachable!()
        };
        let missing = SyncWrite::Append {
            id: DocId::random(),
            changes: changes.clone(),
            heads: heads.clone(),
            base_seq: 0,
            title: String::new(),
            keys: ShareKeys::default(),
        };
        let again = SyncWrite::Append {
            id,
            changes,
            heads,
            base_seq: 0,
            title: String::new(),
            keys: ShareKeys::default(),
        };
        store.commit(batch(vec![again, missing])).unwrap_err();
        assert_eq!(store.usage(office, "dev-a").unwrap(), before);
    }
}
