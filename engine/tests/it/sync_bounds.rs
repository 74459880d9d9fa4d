//! Bounds of the relay's answers to `want` (issue 15): ids per frame capped while
//! decoding, no id twice in a frame, a document sent whole at most once per session, at
//! most `MAX_WANT_DOCS` documents asked for per session, another office's id answered like
//! a missing one, and whole documents loaded lazily within a small outgoing window, with
//! `idle` only after the last of them. Session level, on `MemoryStorage` behind a store
//! that counts what the relay reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ROOT};
use musubi_engine::ids::DocId;
use musubi_engine::sync::admission::AdmitAllForSimulation;
use musubi_engine::sync::frame::{
    MAX_WANT_DOCS, MAX_WANT_IDS, WANT_WINDOW_BYTES, WANT_WINDOW_FRAMES, WireEntry,
};
use musubi_engine::sync::storage::{ActorBinding, SyncDocRecord, Usage};
use musubi_engine::sync::{
    CatalogEntry, Frame, FrameError, MemoryStorage, PeerAccess, PeerRecord, Session, SharedDocs,
    StorageError, SyncBatch, SyncError, SyncStorage,
};
use serde_bytes::ByteBuf;

const OFFICE_A: &str = "1370100016";
const OFFICE_B: &str = "1370100024";

/// A `MemoryStorage` that counts the relay's reads of documents.
struct Counting {
    inner: Arc<MemoryStorage>,
    loads: AtomicUsize,
    lookups: AtomicUsize,
    shared_reads: AtomicUsize,
    /// The most writes one commit carried.
    most_writes: AtomicUsize,
}

impl Counting {
    fn new(inner: &Arc<MemoryStorage>) -> Arc<Counting> {
        Arc::new(Counting {
            inner: inner.clone(),
            loads: AtomicUsize::new(0),
            lookups: AtomicUsize::new(0),
            shared_reads: AtomicUsize::new(0),
            most_writes: AtomicUsize::new(0),
        })
    }
    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
    fn reads(&self) -> usize {
        self.loads() + self.lookups.load(Ordering::SeqCst)
    }
}

impl SyncStorage for Counting {
    fn store_id(&self) -> String {
        self.inner.store_id()
    }
    fn current_seq(&self) -> Result<u64, StorageError> {
        self.inner.current_seq()
    }
    fn changed_for_peer(
        &self,
        peer: &str,
        since: u64,
        offices: &[String],
        ignore_states: bool,
    ) -> Result<Vec<CatalogEntry>, StorageError> {
        self.inner
            .changed_for_peer(peer, since, offices, ignore_states)
    }
    fn catalog(&self, offices: &[String]) -> Result<Vec<CatalogEntry>, StorageError> {
        self.inner.catalog(offices)
    }
    fn lookup(&self, ids: &[DocId]) -> Result<Vec<(DocId, String, Vec<[u8; 32]>)>, StorageError> {
        self.lookups.fetch_add(ids.len(), Ordering::SeqCst);
        self.inner.lookup(ids)
    }
    fn peer(&self, peer: &str) -> Result<PeerRecord, StorageError> {
        self.inner.peer(peer)
    }
    fn load_for_sync(&self, peer: &str, id: DocId) -> Result<Option<SyncDocRecord>, StorageError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load_for_sync(peer, id)
    }
    fn actor_owner(&self, actor: &[u8]) -> Result<Option<String>, StorageError> {
        self.inner.actor_owner(actor)
    }
    fn actor_bindings(&self, actors: &[Vec<u8>]) -> Result<Vec<ActorBinding>, StorageError> {
        self.inner.actor_bindings(actors)
    }
    fn cert_person(&self, fingerprint: &str) -> Result<Option<String>, StorageError> {
        self.inner.cert_person(fingerprint)
    }
    fn shared_for_peer(
        &self,
        peer: &str,
        offices: &[String],
        ignore_states: bool,
    ) -> Result<SharedDocs, StorageError> {
        self.shared_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.shared_for_peer(peer, offices, ignore_states)
    }
    fn usage(&self, office: &str, peer: &str) -> Result<Usage, StorageError> {
        self.inner.usage(office, peer)
    }
    fn commit(&self, batch: SyncBatch) -> Result<(), StorageError> {
        self.most_writes
            .fetch_max(batch.writes.len(), Ordering::SeqCst);
        self.inner.commit(batch)
    }
}

/// A survey-kind document of `office`, with `payload` bytes in it.
fn put_doc(store: &MemoryStorage, office: &str, n: u32, payload: usize) -> DocId {
    let mut doc = Automerge::new().with_actor(ActorId::from(vec![0xA1; 16]));
    let mut tx = doc.transaction();
    tx.put(ROOT, "kind", "survey").unwrap();
    tx.put(ROOT, "office", office).unwrap();
    tx.put(ROOT, "n", i64::from(n)).unwrap();
    if payload > 0 {
        // Incompressible, so the frame is as large as the payload.
        let mut x = u64::from(n) + 1;
        let bytes: Vec<u8> = (0..payload)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        tx.put(ROOT, "blob", automerge::ScalarValue::Bytes(bytes))
            .unwrap();
    }
    tx.commit();
    let mut raw = [0u8; 16];
    raw[..4].copy_from_slice(&n.to_be_bytes());
    raw[4..8].copy_from_slice(office.as_bytes()[..4].try_into().unwrap());
    let id = DocId::from_bytes(raw);
    store.put_local(id, "survey", office, doc.save()).unwrap();
    id
}

fn buf(id: DocId) -> ByteBuf {
    ByteBuf::from(id.as_bytes().to_vec())
}

/// The relay's session with device `dev-a` of office A.
fn relay_for_office_a(storage: &Arc<Counting>) -> Session<Arc<Counting>> {
    let access = PeerAccess {
        device_id: "dev-a".into(),
        device_name: "tablet-a".into(),
        offices: vec![OFFICE_A.into()],
    };
    Session::relay(storage.clone(), access, Arc::new(AdmitAllForSimulation)).unwrap()
}

/// A relay session of a device of office A that has said `hello` with the relay's current
/// cursor (so nothing is sent unasked), and the frames it answered.
fn relay_after_hello(storage: &Arc<Counting>) -> (Session<Arc<Counting>>, Vec<Frame>) {
    let mut relay = relay_for_office_a(storage);
    let hello = crate::hello_at_current_cursor(storage.as_ref());
    relay.handle_frame(&hello.encode()).unwrap();
    relay.flush().unwrap();
    let frames = drain(&mut relay);
    (relay, frames)
}

use crate::drain;

fn want(ids: Vec<ByteBuf>) -> Vec<u8> {
    Frame::Want { ids }.encode()
}

/// The ids of the `doc_data` frames, in order.
fn doc_data_ids(frames: &[Frame]) -> Vec<DocId> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::DocData { id, .. } => Some(DocId::from_bytes(id.as_ref().try_into().unwrap())),
            _ => None,
        })
        .collect()
}

fn error_message(frames: &[Frame]) -> String {
    match frames.last() {
        Some(Frame::Error { code, message }) if code == "protocol" => message.clone(),
        other => panic!("expected error: protocol, got {other:?}"),
    }
}

/// Catches: a no-op session reading the shared set again for the device's `done` (after
/// which nothing more of any document is sent): one query of the heaviest kind and one
/// crossing to the store thread per session, on every sync of every tablet.
#[test]
fn a_no_op_session_reads_the_shared_set_once() {
    let mem = Arc::new(MemoryStorage::new("relay-store"));
    put_doc(&mem, OFFICE_A, 1, 0);
    let storage = Counting::new(&mem);
    let (mut relay, frames) = relay_after_hello(&storage);
    assert!(
        matches!(frames.first(), Some(Frame::Welcome { .. })),
        "{frames:?}"
    );
    relay.handle_frame(&Frame::Done.encode()).unwrap();
    relay.flush().unwrap();
    assert!(relay.is_finished());
    assert_eq!(storage.shared_reads.load(Ordering::SeqCst), 1);
}

#[test]
fn a_want_of_100000_copies_of_one_id_is_refused_before_anything_is_loaded() {
    let mem = Arc::new(MemoryStorage::new("relay-store"));
    let id = put_doc(&mem, OFFICE_A, 1, 0);
    let storage = Counting::new(&mem);
    let (mut relay, _) = relay_after_hello(&storage);
    let reads = storage.reads();

    let frame = want(vec![buf(id); 100_000]);
    assert!(frame.len() > 1_500_000);
    let err = relay.handle_frame(&frame).unwrap_err();
    assert!(
        matches!(
            err,
            SyncError::Frame(FrameError::TooMany("want ids", MAX_WANT_IDS))
        ),
        "{err:?}"
    );
    assert!(relay.is_failed());
    relay.flush().unwrap();
    let frames = drain(&mut relay);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert!(error_message(&frames).contains("want ids"));
    assert_eq!(storage.reads(), reads, "the relay read the store");
}

#[test]
fn a_want_naming_an_id_twice_is_refused() {
    let mem = Arc::new(MemoryStorage::new("relay-store"));
    let id = put_doc(&mem, OFFICE_A, 1, 0);
    let other = put_doc(&mem, OFFICE_A, 2, 0);
    let storage = Counting::new(&mem);
    let (mut relay, _) = relay_after_hello(&storage);
    let reads = storage.reads();

    let err = relay
        .handle_frame(&want(vec![buf(id), buf(other), buf(id)]))
        .unwrap_err();
    assert!(
        matches!(err, SyncError::Frame(FrameError::Repeated("want ids"))),
        "{err:?}"
    );
    relay.flush().unwrap();
    let frames = drain(&mut relay);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert!(error_message(&frames).contains("want ids"));
    assert_eq!(storage.reads(), reads);
}

#[test]
fn a_document_is_sent_whole_at_most_once_per_session() {
    let mem = Arc::new(MemoryStorage::new("relay-store"));
    let a = put_doc(&mem, OFFICE_A, 1, 0);
    let b = put_doc(&mem, OFFICE_A, 2, 0);
    let storage = Counting::new(&mem);
    let (mut relay, _) = relay_after_hello(&storage);

    relay.handle_frame(&want(vec![buf(a)])).unwrap();
    relay.flush().unwrap();
    let first = drain(&mut relay);
    // Again, in the same flight and later: only `b` is new.
    relay.handle_frame(&want(vec![buf(a), buf(b)])).unwrap();
    relay.handle_frame(&want(vec![buf(b), buf(a)])).unwrap();
    relay.flush().unwrap();
    let second = drain(&mut relay);
    let sent = [doc_data_ids(&first), doc_data_ids(&second)].concat();
    assert_eq!(sent, vec![a, b]);
    assert_eq!(storage.loads(), 2);
    assert!(!relay.is_failed());
    // The idle counts what was received, repeats included.
    assert!(
        matches!(
            second.last(),
            Some(Frame::Idle {
                sent: 2,
                received: 3
            })
        ),
        "{second:?}"
    );
}

#[test]
fn another_offices_id_and_a_missing_id_get_the_same_answer() {
    let mem = Arc::new(MemoryStorage::new("relay-store"));
    let theirs = put_doc(&mem, OFFICE_B, 1, 0);
    let missing = DocId::from_bytes([0x77; 16]);
    let storage = Counting::new(&mem);
    let (mut relay, _) = relay_after_hello(&storage);
    let loads = storage.loads();

    relay
        .handle_frame(&want(vec![buf(theirs), buf(missing)]))
        .unwrap();
    relay.flush().unwrap();
    let frames = drain(&mut relay);
    let answers: Vec<(DocId, String)> = frames
        .iter()
        .filter_map(|f| match f {
            Frame::DocRejected { id, code } => Some((
                DocId::from_bytes(id.as_ref().try_into().unwrap()),
                code.clone(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        answers,
        vec![(theirs, "unknown".into()), (missing, "unknown".into())]
    );
    // The same frame apart from the id, and the other office's document is not loaded.
    assert_eq!(
        Frame::DocRejected {
            id: buf(theirs),
            code: "unknown".into()
        }
        .encode()
        .len(),
        Frame::DocRejected {
            id: buf(missing),
            code: "unknown".into()
        }
        .encode()
        .len()
    );
    assert_eq!(storage.loads(), loads);
    assert!(!frames.iter().any(|f| matches!(f, Frame::DocData { .. })));
    assert!(matches!(frames.last(), Some(Frame::Idle { .. })));
}

#[test]
fn a_device_finishes_when_a_wanted_id_is_unknown() {
    let store = Arc::new(MemoryStorage::new("dev-store"));
    let mut dev =
        Session::device(store.clone(), "relay", vec![OFFICE_A.into()], vec![1; 16]).unwrap();
    drain(&mut dev);
    let x = DocId::from_bytes([0x42; 16]);
    let welcome = Frame::Welcome {
        protocol: 1,
        relay: "relay-store".into(),
        seq: 5,
        changed: vec![WireEntry {
            id: buf(x),
            heads: ByteBuf::from(vec![9; 32]),
        }],
        full: Vec::new(),
        digest: ByteBuf::from(vec![0; 32]),
    };
    dev.handle_frame(&welcome.encode()).unwrap();
    dev.flush().unwrap();
    let up = drain(&mut dev);
    assert!(
        matches!(up.as_slice(), [Frame::Want { ids }] if ids == &vec![buf(x)]),
        "{up:?}"
    );
    // What the relay answers for another office's id as well as for a missing one.
    for f in [
        Frame::DocRejected {
            id: buf(x),
            code: "unknown".into(),
        },
        Frame::Idle {
            sent: 1,
            received: 1,
        },
    ] {
        dev.handle_frame(&f.encode()).unwrap();
    }
    dev.flush().unwrap();
    assert!(dev.is_finished());
    assert_eq!(dev.outcome().rejected, vec![(x, "unknown".to_owned())]);
    assert!(matches!(drain(&mut dev).as_slice(), [Frame::Done]));
}

#[test]
fn a_session_asks_for_at_most_max_want_docs_documents() {
    let mem = Arc::new(MemoryStorage::new("relay-store"));
    let storage = Counting::new(&mem);
    let (mut relay, _) = relay_after_hello(&storage);
    let id = |n: usize| {
        let mut raw = [0xEE; 16];
        raw[..8].copy_from_slice(&(n as u64).to_be_bytes());
        ByteBuf::from(raw.to_vec())
    };
    for frame in 0..MAX_WANT_DOCS / MAX_WANT_IDS {
        let ids = (0..MAX_WANT_IDS)
            .map(|n| id(frame * MAX_WANT_IDS + n))
            .collect();
        relay.handle_frame(&want(ids)).unwrap();
    }
    // Repeats are not counted, and the queue is not loaded before it is sent.
    relay.handle_frame(&want(vec![id(0), id(1)])).unwrap();
    assert_eq!(storage.reads(), 0);
    let err = relay
        .handle_frame(&want(vec![id(0), id(MAX_WANT_DOCS)]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            SyncError::Refused {
                code: "protocol",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(relay.is_failed());
    relay.flush().unwrap();
    let frames = drain(&mut relay);
    assert!(error_message(&frames).contains("want ids"));
    // A failed session sends nothing it had queued.
    assert_eq!(frames.len(), 1);
    assert_eq!(storage.reads(), 0);
}

#[test]
fn wanted_documents_are_loaded_within_a_window_and_idle_comes_last() {
    let mem = Arc::new(MemoryStorage::new("relay-store"));
    let ids: Vec<DocId> = (0..100).map(|n| put_doc(&mem, OFFICE_A, n, 0)).collect();
    let storage = Counting::new(&mem);
    let (mut relay, _) = relay_after_hello(&storage);
    relay
        .handle_frame(&want(ids.iter().copied().map(buf).collect()))
        .unwrap();
    relay.flush().unwrap();
    assert_eq!(storage.loads(), 0, "loaded before the transport asked");

    let mut frames = Vec::new();
    let mut most_ahead = 0;
    while let Some(b) = relay.poll_transmit() {
        let taken = frames.len() + 1;
        most_ahead = most_ahead.max(storage.loads().saturating_sub(taken));
        frames.push(Frame::decode(&b).unwrap());
    }
    assert!(most_ahead < WANT_WINDOW_FRAMES, "{most_ahead} frames ahead");
    assert_eq!(frames.len(), 101);
    assert_eq!(doc_data_ids(&frames), ids);
    assert!(
        matches!(
            frames.last(),
            Some(Frame::Idle {
                sent: 100,
                received: 1
            })
        ),
        "{:?}",
        frames.last()
    );
}

/// A hand-written `hello` with cursor 0 (a device that lost its data, or one pretending
/// to) in an office of many documents: `welcome` announces them all, but the relay loads
/// none before the transport asks, and then at most a window ahead of what it sent.
#[test]
fn a_fresh_hello_in_a_large_office_loads_documents_within_the_window() {
    let mem = Arc::new(MemoryStorage::new("relay-store"));
    let ids: Vec<DocId> = (0..300).map(|n| put_doc(&mem, OFFICE_A, n, 0)).collect();
    let storage = Counting::new(&mem);
    let mut relay = relay_for_office_a(&storage);
    let hello = Frame::Hello {
        protocol: musubi_engine::sync::PROTOCOL_VERSION,
        actor: ByteBuf::from(vec![0xD1; 16]),
        epoch: None,
        cursor: 0,
        changed: Vec::new(),
        digest: ByteBuf::from(vec![0; 32]),
        caps: Vec::new(),
    };
    relay.handle_frame(&hello.encode()).unwrap();
    relay.flush().unwrap();
    assert_eq!(storage.loads(), 0, "loaded before the transport asked");

    let mut frames = Vec::new();
    let mut most_ahead = 0;
    while let Some(b) = relay.poll_transmit() {
        frames.push(Frame::decode(&b).unwrap());
        let data_sent = frames
            .iter()
            .filter(|f| matches!(f, Frame::DocData { .. }))
            .count();
        most_ahead = most_ahead.max(storage.loads().saturating_sub(data_sent));
    }
    assert!(
        most_ahead <= WANT_WINDOW_FRAMES,
        "{most_ahead} documents ahead"
    );
    let Some(Frame::Welcome { full, changed, .. }) = frames.first() else {
        panic!("no welcome first: {:?}", frames.first());
    };
    assert_eq!(full.len(), ids.len());
    // Documents whose data follows are not listed again with their heads.
    assert!(changed.is_empty(), "{} entries", changed.len());
    assert_eq!(doc_data_ids(&frames), ids);
    assert!(
        matches!(frames.last(), Some(Frame::Idle { sent: 300, .. })),
        "{:?}",
        frames.last()
    );
}

#[test]
fn large_wanted_documents_are_loaded_within_the_byte_window() {
    let mem = Arc::new(MemoryStorage::new("relay-store"));
    // A quarter of the window each: it holds four.
    let ids: Vec<DocId> = (0..8)
        .map(|n| put_doc(&mem, OFFICE_A, n, WANT_WINDOW_BYTES / 4))
        .collect();
    let storage = Counting::new(&mem);
    let (mut relay, _) = relay_after_hello(&storage);
    relay
        .handle_frame(&want(ids.iter().copied().map(buf).collect()))
        .unwrap();
    relay.flush().unwrap();
    let first = relay.poll_transmit().unwrap();
    assert!(first.len() > WANT_WINDOW_BYTES / 4);
    assert_eq!(storage.loads(), 4, "a window of 16 MiB");
    let rest = drain(&mut relay);
    assert_eq!(storage.loads(), 8);
    assert_eq!(rest.len(), 8);
    assert!(matches!(rest.last(), Some(Frame::Idle { sent: 8, .. })));
}

/// Runs a device session and a relay session against each other in memory until neither
/// has more to send (at most 50 rounds); the transport hands the device `chunk` frames at a
/// time, and `on_up` sees every frame the device sends.
fn run_to_end(
    dev: &mut Session<Arc<MemoryStorage>>,
    relay: &mut Session<Arc<Counting>>,
    chunk: usize,
    mut on_up: impl FnMut(&Frame),
) {
    for _ in 0..50 {
        let up: Vec<Vec<u8>> = std::iter::from_fn(|| dev.poll_transmit()).collect();
        for f in &up {
            on_up(&Frame::decode(f).unwrap());
            relay.handle_frame(f).unwrap();
        }
        if !up.is_empty() {
            relay.flush().unwrap();
        }
        // The transport takes a few frames at a time.
        let mut down = 0;
        while let Some(f) = relay.poll_transmit() {
            dev.handle_frame(&f).unwrap();
            down += 1;
            if down % chunk == 0 {
                dev.flush().unwrap();
            }
        }
        if down % chunk != 0 {
            dev.flush().unwrap();
        }
        if up.is_empty() && down == 0 {
            break;
        }
    }
}

/// A device whose record says it is up to date with the relay but whose store is empty: the
/// catalogs differ, it compares them and asks for every document, more than fit in one
/// `want` frame. It asks in frames of at most `MAX_WANT_IDS` ids and finishes with all of
/// them.
#[test]
fn a_device_asks_in_bounded_frames_and_finishes_after_the_lazy_answers() {
    let relay_mem = Arc::new(MemoryStorage::new("relay-store"));
    let n = MAX_WANT_IDS as u32 + 10;
    for i in 0..n {
        put_doc(&relay_mem, OFFICE_A, i, 0);
    }
    let dev_store = Arc::new(MemoryStorage::new("dev-store"));
    dev_store
        .commit(SyncBatch {
            peer: "relay".into(),
            peer_record: Some(PeerRecord {
                epoch: Some(relay_mem.store_id()),
                cursor: relay_mem.current_seq().unwrap(),
                pushed_seq: 0,
                last_ok_ms: None,
            }),
            ..SyncBatch::default()
        })
        .unwrap();
    let storage = Counting::new(&relay_mem);
    let mut relay = relay_for_office_a(&storage);
    let mut dev = Session::device(
        dev_store.clone(),
        "relay",
        vec![OFFICE_A.into()],
        vec![0xA1; 16],
    )
    .unwrap();
    let mut want_sizes = Vec::new();
    run_to_end(&mut dev, &mut relay, 8, |f| {
        if let Frame::Want { ids } = f {
            want_sizes.push(ids.len());
        }
    });
    assert!(dev.is_finished(), "the device did not finish");
    assert!(relay.is_finished());
    assert_eq!(want_sizes, vec![MAX_WANT_IDS, 10]);
    assert_eq!(dev_store.ids().unwrap().len(), n as usize);
    assert_eq!(
        dev_store.catalog(&[OFFICE_A.into()]).unwrap(),
        relay_mem.catalog(&[OFFICE_A.into()]).unwrap()
    );
}

/// Catches: the relay writing, at a device's `done`, the record of every document it sent
/// whole in one batch (memory for an entry per document of the office at once: at 50,000
/// surveys about 26 MB of the relay's 33 MB heap peak), or not writing them all.
#[test]
fn a_first_sync_records_the_documents_sent_whole_in_bounded_batches() {
    use musubi_engine::sync::SENT_WHOLE_BATCH;
    let relay_mem = Arc::new(MemoryStorage::new("relay-store"));
    let n = 2 * SENT_WHOLE_BATCH + 500;
    for i in 0..n {
        put_doc(&relay_mem, OFFICE_A, u32::try_from(i).unwrap(), 0);
    }
    let storage = Counting::new(&relay_mem);
    let mut relay = relay_for_office_a(&storage);
    let dev_store = Arc::new(MemoryStorage::new("dev-store"));
    let mut dev = Session::device(
        dev_store.clone(),
        "relay",
        vec![OFFICE_A.into()],
        vec![0xA1; 16],
    )
    .unwrap();
    run_to_end(&mut dev, &mut relay, 32, |_| {});
    assert!(dev.is_finished() && relay.is_finished());
    assert_eq!(dev_store.ids().unwrap().len(), n);
    let most = storage.most_writes.load(Ordering::SeqCst);
    assert!(most <= SENT_WHOLE_BATCH, "a commit of {most} writes");
    // Every document is recorded as held by the device: none is listed for it again.
    let offices = [OFFICE_A.to_owned()];
    assert_eq!(
        relay_mem
            .changed_for_peer("dev-a", 0, &offices, true)
            .unwrap()
            .len(),
        n
    );
    assert!(
        relay_mem
            .changed_for_peer("dev-a", 0, &offices, false)
            .unwrap()
            .is_empty()
    );
}
