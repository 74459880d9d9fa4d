//! The storage contract: one suite every `SyncStorage` backend passes — the in-memory
//! store of the simulations, the SQLCipher store of devices and the embedded relay, and
//! the PostgreSQL store of relay clusters. Each test is a function over a store; the
//! `contract!` macro runs it against each backend (a fresh store per test).
//!
//! The property test at the end checks that the three backends and the Rust reference
//! rule (`sharing::shared_ids`) agree on `shared_for_peer` over generated catalogs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, Automerge, ObjId, ObjType, ReadDoc};
use musubi_engine::doc::Snapshot;
use musubi_engine::ids::DocId;
use musubi_engine::store::{InitOptions, SecretString, Store};
use musubi_engine::sync::admission::EvidenceVerdict;
use musubi_engine::sync::frame::heads_of;
use musubi_engine::sync::sharing::{ShareRow, person_key, share_keys, shared_ids};
use musubi_engine::sync::storage::{ActorBinding, PeerRecord, StartQuery, SyncWrite};
use musubi_engine::sync::{MemoryStorage, SyncBatch, SyncStorage, catalog_digest, xor_into};
use musubi_relay_pg::{DataKeys, PgOptions, PgStorage};
use serde_json::{Value, json};

// ---------------------------------------------------------------- backends

type Dyn = Box<dyn SyncStorage + Send + Sync>;

struct Fixture {
    store: Dyn,
    _keep: Option<Box<dyn std::any::Any>>,
}

impl std::ops::Deref for Fixture {
    type Target = dyn SyncStorage + Send + Sync;
    fn deref(&self) -> &Self::Target {
        &*self.store
    }
}

fn memory() -> Fixture {
    Fixture {
        store: Box::new(MemoryStorage::new("memory-store")),
        _keep: None,
    }
}

fn sqlcipher() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::init(
        &tmp.path().join("store"),
        &SecretString::from("contract suite passphrase"),
        InitOptions {
            office: "1370000001".into(),
            device_name: "relay".into(),
            kdf_work_factor: Some(10),
            ..InitOptions::default()
        },
    )
    .unwrap();
    Fixture {
        store: Box::new(store),
        _keep: Some(Box::new(tmp)),
    }
}

fn pg() -> Fixture {
    let db = musubi_pgtest::database();
    let keys = DataKeys::from_hex(&DataKeys::generate_hex().unwrap()).unwrap();
    let store = PgStorage::open(&PgOptions::new(&db.url()), keys).unwrap();
    Fixture {
        store: Box::new(store),
        _keep: Some(Box::new(db)),
    }
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod memory { $( #[test] fn $name() { super::$name(&super::memory()); } )* }
        mod sqlcipher { $( #[test] fn $name() { super::$name(&super::sqlcipher()); } )* }
        mod pg { $( #[test] fn $name() { super::$name(&super::pg()); } )* }
    };
}

contract!(
    empty_store_answers_empty,
    sequence_catalog_lookup_and_digest,
    a_failed_batch_leaves_nothing,
    append_keeps_heads_only_over_the_state_it_loaded,
    an_insert_that_meets_an_existing_document_keeps_both,
    sync_states_decide_what_is_changed_for_a_peer,
    peer_records_keep_their_epoch,
    the_first_actor_binding_stays,
    the_first_card_certificate_binding_stays,
    shared_for_peer_follows_valid_attested_registrations,
    load_for_sync_returns_the_document_with_its_state,
    usage_counts_office_and_peer_writes,
    catalog_digest_follows_every_kind_of_write,
    session_start_reads_what_the_single_calls_read,
);

// ---------------------------------------------------------------- helpers

const A: &str = "1370000001";
const B: &str = "1370000002";
const C: &str = "1370000003";

fn offices(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn put_value(doc: &mut AutoCommit, obj: &ObjId, key: &str, v: &Value) {
    match v {
        Value::Object(m) => {
            let o = doc.put_object(obj, key, ObjType::Map).unwrap();
            for (k, v) in m {
                put_value(doc, &o, k, v);
            }
        }
        Value::Array(items) => {
            let l = doc.put_object(obj, key, ObjType::List).unwrap();
            for (i, item) in items.iter().enumerate() {
                let m = doc.insert_object(&l, i, ObjType::Map).unwrap();
                if let Value::Object(fields) = item {
                    for (k, v) in fields {
                        put_value(doc, &m, k, v);
                    }
                }
            }
        }
        Value::String(s) => {
            doc.put(obj, key, s.as_str()).unwrap();
        }
        Value::Bool(b) => {
            doc.put(obj, key, *b).unwrap();
        }
        Value::Number(n) => {
            doc.put(obj, key, n.as_i64().unwrap_or(0)).unwrap();
        }
        Value::Null => {}
    }
}

/// An automerge document holding `json` (one change).
fn am(json: &Value) -> AutoCommit {
    let mut doc = AutoCommit::new();
    if let Value::Object(m) = json {
        for (k, v) in m {
            put_value(&mut doc, &ObjId::Root, k, v);
        }
    }
    doc.commit();
    doc
}

fn kind_of(json: &Value) -> String {
    json["kind"].as_str().unwrap_or("survey").to_owned()
}

fn insert(id: DocId, office: &str, doc: &mut AutoCommit, kind: &str) -> SyncWrite {
    let (bytes, am) = Snapshot::load(doc.save()).unwrap();
    SyncWrite::Insert {
        id,
        kind: kind.to_owned(),
        office: office.to_owned(),
        title: "title".into(),
        bytes,
        heads: heads_of(&am),
        keys: share_keys(&am, kind),
    }
}

fn insert_json(id: DocId, office: &str, json: &Value) -> SyncWrite {
    insert(id, office, &mut am(json), &kind_of(json))
}

/// The changes of `doc` since `before`, as an append loaded at `base_seq`.
fn append(
    id: DocId,
    doc: &mut AutoCommit,
    before: &[automerge::ChangeHash],
    base_seq: u64,
    kind: &str,
) -> SyncWrite {
    let changes = doc.save_after(before);
    let am = Automerge::load(&doc.save()).unwrap();
    SyncWrite::Append {
        id,
        changes: vec![changes],
        heads: heads_of(&am),
        base_seq,
        title: "title".into(),
        keys: share_keys(&am, kind),
    }
}

fn batch(peer: &str, writes: Vec<SyncWrite>) -> SyncBatch {
    SyncBatch {
        peer: peer.into(),
        writes,
        ..SyncBatch::default()
    }
}

fn heads(doc: &mut AutoCommit) -> Vec<[u8; 32]> {
    heads_of(&Automerge::load(&doc.save()).unwrap())
}

fn sorted(mut ids: Vec<DocId>) -> Vec<DocId> {
    ids.sort();
    ids
}

fn ids_of(entries: &[musubi_engine::sync::CatalogEntry]) -> Vec<DocId> {
    entries.iter().map(|e| e.id).collect()
}

fn survey_json(office: &str, insurer: &str, insured: &str) -> Value {
    json!({"kind": "survey", "office": office,
           "subject": {"insurer_number": insurer, "insured_number": insured, "name": "結城 花子"}})
}

fn subject_json(office: &str, insurer: &str, insured: &str) -> Value {
    json!({"kind": "subject", "office": office,
           "person": {"insurer_number": insurer, "insured_number": insured, "name": "結城 花子"}})
}

fn registration_json(office: &str, subject: DocId, consent: bool, withdrawn: bool) -> Value {
    let mut v =
        json!({"kind": "registration", "office": office, "subject_id": subject.to_string()});
    if consent {
        v["consent"] = json!({"date": "2026-09-01", "consented_by": "結城 花子"});
    }
    v["withdrawals"] = if withdrawn {
        json!([{"date": "2026-10-01"}])
    } else {
        json!([])
    };
    v
}

fn evidence(id: DocId, person: &str, cert: &str) -> SyncWrite {
    SyncWrite::Evidence {
        id,
        verdict: EvidenceVerdict {
            person: person.to_owned(),
            cert_fingerprint: cert.to_owned(),
            device: "dev-1".into(),
        },
    }
}

// ---------------------------------------------------------------- the suite

fn empty_store_answers_empty(s: &Fixture) {
    assert_eq!(s.current_seq().unwrap(), 0);
    assert!(s.catalog(&offices(&[A])).unwrap().is_empty());
    assert!(s.catalog(&[]).unwrap().is_empty());
    assert!(
        s.changed_for_peer("p", 0, &offices(&[A]), false)
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.peer("p").unwrap(), PeerRecord::default());
    assert!(s.load_for_sync("p", DocId::random()).unwrap().is_none());
    assert!(s.lookup(&[DocId::random()]).unwrap().is_empty());
    assert!(s.actor_owner(b"nobody").unwrap().is_none());
    assert!(s.cert_person("00").unwrap().is_none());
    assert_eq!(
        s.shared_for_peer("p", &offices(&[A]), false)
            .unwrap()
            .ids
            .len(),
        0
    );
    assert_eq!(
        s.catalog_digest(&offices(&[A])).unwrap(),
        catalog_digest(&[])
    );
    assert!(!s.store_id().is_empty());
    // An empty batch changes nothing.
    s.commit(SyncBatch::default()).unwrap();
    assert_eq!(s.current_seq().unwrap(), 0);
}

fn sequence_catalog_lookup_and_digest(s: &Fixture) {
    let (d1, d2, d3) = (DocId::random(), DocId::random(), DocId::random());
    let mut doc1 = am(&survey_json(A, "131011", "0000000001"));
    let mut doc2 = am(&survey_json(A, "131011", "0000000002"));
    let mut doc3 = am(&survey_json(B, "131011", "0000000003"));
    s.commit(batch(
        "p",
        vec![
            insert(d1, A, &mut doc1, "survey"),
            insert(d2, A, &mut doc2, "survey"),
        ],
    ))
    .unwrap();
    assert_eq!(
        s.current_seq().unwrap(),
        2,
        "one sequence number per document write"
    );
    s.commit(batch("p", vec![insert(d3, B, &mut doc3, "survey")]))
        .unwrap();
    assert_eq!(s.current_seq().unwrap(), 3);

    let cat_a = s.catalog(&offices(&[A])).unwrap();
    assert_eq!(
        ids_of(&cat_a),
        sorted(vec![d1, d2]),
        "office A only, sorted by id"
    );
    for e in &cat_a {
        let want = if e.id == d1 {
            heads(&mut doc1)
        } else {
            heads(&mut doc2)
        };
        assert_eq!(e.heads, want);
    }
    assert_eq!(
        ids_of(&s.catalog(&offices(&[A, B])).unwrap()),
        sorted(vec![d1, d2, d3])
    );
    assert_eq!(
        s.catalog_digest(&offices(&[A])).unwrap(),
        catalog_digest(&cat_a)
    );

    // Lookup reaches every office, keeps the order asked, leaves out unknown ids.
    let found = s.lookup(&[d3, DocId::random(), d1]).unwrap();
    assert_eq!(
        found,
        vec![
            (d3, B.to_owned(), heads(&mut doc3)),
            (d1, A.to_owned(), heads(&mut doc1))
        ]
    );

    // Changed since a cursor.
    assert_eq!(
        ids_of(&s.changed_for_peer("p", 0, &offices(&[A]), false).unwrap()),
        sorted(vec![d1, d2])
    );
    assert_eq!(
        ids_of(
            &s.changed_for_peer("p", 1, &offices(&[A, B]), false)
                .unwrap()
        ),
        sorted(vec![d2, d3])
    );
    assert!(
        s.changed_for_peer("p", 3, &offices(&[A, B]), false)
            .unwrap()
            .is_empty()
    );

    // An append takes the next number; the sequence never goes back.
    let before = doc1.get_heads();
    doc1.put(automerge::ROOT, "status", "completed").unwrap();
    doc1.commit();
    s.commit(batch(
        "p",
        vec![append(d1, &mut doc1, &before, 1, "survey")],
    ))
    .unwrap();
    assert_eq!(s.current_seq().unwrap(), 4);
    let changed = s
        .changed_for_peer("p", 3, &offices(&[A, B]), false)
        .unwrap();
    assert_eq!(ids_of(&changed), vec![d1]);
    assert_eq!(changed[0].heads, heads(&mut doc1));
    assert_eq!(
        s.catalog_digest(&offices(&[A])).unwrap(),
        catalog_digest(&s.catalog(&offices(&[A])).unwrap())
    );
    assert_ne!(
        s.catalog_digest(&offices(&[A])).unwrap(),
        catalog_digest(&cat_a),
        "the digest follows writes"
    );
}

fn a_failed_batch_leaves_nothing(s: &Fixture) {
    let d1 = DocId::random();
    let failing = SyncBatch {
        peer: "p".into(),
        reset_peer: false,
        writes: vec![
            insert_json(d1, A, &survey_json(A, "131011", "0000000001")),
            SyncWrite::BindActor {
                actor: vec![7; 16],
                device: "dev-x".into(),
                device_name: None,
            },
            SyncWrite::Append {
                id: DocId::random(),
                changes: vec![],
                heads: vec![],
                base_seq: 0,
                title: "t".into(),
                keys: Default::default(),
            },
        ],
        peer_record: Some(PeerRecord {
            epoch: Some("e".into()),
            cursor: 5,
            pushed_seq: 5,
            last_ok_ms: Some(1),
        }),
    };
    assert!(
        s.commit(failing).is_err(),
        "an append to a missing document fails the batch"
    );
    assert_eq!(s.current_seq().unwrap(), 0);
    assert!(s.catalog(&offices(&[A])).unwrap().is_empty());
    assert!(s.load_for_sync("p", d1).unwrap().is_none());
    assert!(s.actor_owner(&[7; 16]).unwrap().is_none());
    assert_eq!(s.peer("p").unwrap(), PeerRecord::default());

    // Change bytes that are not automerge fail the batch too, with the insert before
    // them. (A snapshot to insert cannot be such bytes: `Snapshot` is made only by a save
    // or a strict load.)
    let good = insert_json(d1, A, &survey_json(A, "131011", "0000000001"));
    let bad = SyncWrite::Append {
        id: d1,
        changes: vec![b"not automerge".to_vec()],
        heads: vec![],
        base_seq: 0,
        title: "t".into(),
        keys: Default::default(),
    };
    assert!(s.commit(batch("p", vec![good, bad])).is_err());
    assert!(s.catalog(&offices(&[A])).unwrap().is_empty());
    assert_eq!(s.current_seq().unwrap(), 0);
}

fn append_keeps_heads_only_over_the_state_it_loaded(s: &Fixture) {
    let d = DocId::random();
    let mut base = am(&survey_json(A, "131011", "0000000001"));
    s.commit(batch("p", vec![insert(d, A, &mut base, "survey")]))
        .unwrap();
    let base_seq = s.load_for_sync("p", d).unwrap().unwrap().seq;
    let base_heads = base.get_heads();
    // Two sessions (two nodes) load the document at base_seq and append concurrently.
    let mut one = base.fork();
    one.put(automerge::ROOT, "status", "completed").unwrap();
    one.commit();
    let mut two = base.fork();
    two.put(automerge::ROOT, "if_version", "09B").unwrap();
    two.commit();
    s.commit(batch(
        "p",
        vec![append(d, &mut one, &base_heads, base_seq, "survey")],
    ))
    .unwrap();
    assert_eq!(
        s.catalog(&offices(&[A])).unwrap()[0].heads,
        heads(&mut one),
        "exact heads kept"
    );
    // The second append claims heads of its own view only: the store must not keep them.
    s.commit(batch(
        "q",
        vec![append(d, &mut two, &base_heads, base_seq, "survey")],
    ))
    .unwrap();
    let mut merged = one.fork();
    merged.merge(&mut two).unwrap();
    let got = s.catalog(&offices(&[A])).unwrap();
    assert_eq!(
        got[0].heads,
        heads(&mut merged),
        "heads recomputed over both changes"
    );
    assert_eq!(got[0].heads.len(), 2);
    let rec = s.load_for_sync("p", d).unwrap().unwrap();
    let mut loaded = Automerge::new();
    for c in &rec.chunks {
        loaded.load_incremental(c).unwrap();
    }
    assert_eq!(heads_of(&loaded), heads(&mut merged), "no change lost");
}

/// The digest a store answers (kept on write by the SQLCipher store and PostgreSQL) equals
/// the one computed from its catalog, for `offices` and for each of them alone.
fn assert_digest_matches_catalog(s: &Fixture, list: &[&str], when: &str) {
    let kept = s.catalog_digest(&offices(list)).unwrap();
    assert_eq!(
        kept,
        catalog_digest(&s.catalog(&offices(list)).unwrap()),
        "{when}: the digest of {list:?}"
    );
    let mut each = [0u8; 32];
    for o in list {
        xor_into(&mut each, &s.catalog_digest(&offices(&[o])).unwrap());
    }
    assert_eq!(kept, each, "{when}: the offices' digests combine");
}

fn catalog_digest_follows_every_kind_of_write(s: &Fixture) {
    assert_digest_matches_catalog(s, &[A, B], "empty");
    let (d1, d2, d3) = (DocId::random(), DocId::random(), DocId::random());
    let mut doc1 = am(&survey_json(A, "131011", "0000000001"));
    let mut doc2 = am(&survey_json(A, "131011", "0000000002"));
    let mut doc3 = am(&survey_json(B, "131011", "0000000003"));
    s.commit(batch(
        "p",
        vec![
            insert(d1, A, &mut doc1, "survey"),
            insert(d2, A, &mut doc2, "survey"),
            insert(d3, B, &mut doc3, "survey"),
        ],
    ))
    .unwrap();
    assert_digest_matches_catalog(s, &[A, B], "after inserts");
    let before_a = s.catalog_digest(&offices(&[A])).unwrap();
    let b_alone = s.catalog_digest(&offices(&[B])).unwrap();

    // An append with exact heads.
    let seq1 = s.load_for_sync("p", d1).unwrap().unwrap().seq;
    let base = doc1.get_heads();
    doc1.put(automerge::ROOT, "status", "completed").unwrap();
    doc1.commit();
    s.commit(batch(
        "p",
        vec![append(d1, &mut doc1, &base, seq1, "survey")],
    ))
    .unwrap();
    assert_digest_matches_catalog(s, &[A, B], "after an exact append");
    assert_ne!(s.catalog_digest(&offices(&[A])).unwrap(), before_a);
    assert_eq!(
        s.catalog_digest(&offices(&[B])).unwrap(),
        b_alone,
        "another office's digest is untouched"
    );

    // An append over a stale base: the store computes the heads itself.
    let base = doc2.get_heads();
    doc2.put(automerge::ROOT, "if_version", "09B").unwrap();
    doc2.commit();
    s.commit(batch("q", vec![append(d2, &mut doc2, &base, 0, "survey")]))
        .unwrap();
    assert_digest_matches_catalog(s, &[A, B], "after an append over a stale base");

    // An insert that meets an existing document.
    let mut other = am(&json!({"kind": "survey", "status": "draft"}));
    s.commit(batch("r", vec![insert(d3, B, &mut other, "survey")]))
        .unwrap();
    assert_digest_matches_catalog(s, &[A, B], "after an insert over an existing document");
    assert_ne!(s.catalog_digest(&offices(&[B])).unwrap(), b_alone);
}

fn an_insert_that_meets_an_existing_document_keeps_both(s: &Fixture) {
    let d = DocId::random();
    let mut first = am(&survey_json(A, "131011", "0000000001"));
    let mut second = am(&json!({"kind": "survey", "status": "draft"}));
    s.commit(batch("p", vec![insert(d, A, &mut first, "survey")]))
        .unwrap();
    s.commit(batch("q", vec![insert(d, A, &mut second, "survey")]))
        .unwrap();
    assert_eq!(s.current_seq().unwrap(), 2);
    let mut merged = first.fork();
    merged.merge(&mut second).unwrap();
    assert_eq!(
        s.catalog(&offices(&[A])).unwrap()[0].heads,
        heads(&mut merged)
    );
}

fn sync_states_decide_what_is_changed_for_a_peer(s: &Fixture) {
    let (d1, d2) = (DocId::random(), DocId::random());
    let mut doc1 = am(&survey_json(A, "131011", "0000000001"));
    let mut doc2 = am(&survey_json(A, "131011", "0000000002"));
    s.commit(batch(
        "p",
        vec![
            insert(d1, A, &mut doc1, "survey"),
            insert(d2, A, &mut doc2, "survey"),
        ],
    ))
    .unwrap();
    let state = |id, doc: &mut AutoCommit, in_sync| SyncWrite::State {
        id,
        state: vec![1, 2, 3],
        in_sync,
        heads: heads(doc),
    };
    // In sync with exactly our heads: no longer changed for p (still for q).
    s.commit(batch("p", vec![state(d1, &mut doc1, true)]))
        .unwrap();
    let for_p = s.changed_for_peer("p", 0, &offices(&[A]), false).unwrap();
    assert_eq!(ids_of(&for_p), vec![d2]);
    assert_eq!(
        ids_of(&s.changed_for_peer("q", 0, &offices(&[A]), false).unwrap()),
        sorted(vec![d1, d2])
    );
    assert_eq!(
        ids_of(&s.changed_for_peer("p", 0, &offices(&[A]), true).unwrap()),
        sorted(vec![d1, d2]),
        "ignore_states"
    );
    // Claimed in sync with heads we do not hold: counts for nothing.
    let mut other = am(&json!({"x": "y"}));
    s.commit(batch(
        "p",
        vec![SyncWrite::State {
            id: d2,
            state: vec![9],
            in_sync: true,
            heads: heads(&mut other),
        }],
    ))
    .unwrap();
    assert_eq!(
        ids_of(&s.changed_for_peer("p", 0, &offices(&[A]), false).unwrap()),
        vec![d2]
    );
    // Not in sync: changed.
    s.commit(batch("p", vec![state(d2, &mut doc2, false)]))
        .unwrap();
    assert_eq!(
        ids_of(&s.changed_for_peer("p", 0, &offices(&[A]), false).unwrap()),
        vec![d2]
    );
    // A later write of d1 makes it changed again.
    let before = doc1.get_heads();
    doc1.put(automerge::ROOT, "status", "completed").unwrap();
    doc1.commit();
    s.commit(batch(
        "q",
        vec![append(d1, &mut doc1, &before, 1, "survey")],
    ))
    .unwrap();
    assert_eq!(
        ids_of(&s.changed_for_peer("p", 0, &offices(&[A]), false).unwrap()),
        sorted(vec![d1, d2])
    );
    // In sync again, then the peer lost its data: reset forgets every state with it.
    s.commit(batch(
        "p",
        vec![state(d1, &mut doc1, true), state(d2, &mut doc2, true)],
    ))
    .unwrap();
    assert!(
        s.changed_for_peer("p", 0, &offices(&[A]), false)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.load_for_sync("p", d1).unwrap().unwrap().sync_state,
        Some(vec![1, 2, 3])
    );
    s.commit(SyncBatch {
        peer: "p".into(),
        reset_peer: true,
        ..SyncBatch::default()
    })
    .unwrap();
    assert_eq!(
        ids_of(&s.changed_for_peer("p", 0, &offices(&[A]), false).unwrap()),
        sorted(vec![d1, d2])
    );
    assert!(
        s.load_for_sync("p", d1)
            .unwrap()
            .unwrap()
            .sync_state
            .is_none()
    );
}

fn peer_records_keep_their_epoch(s: &Fixture) {
    let rec = PeerRecord {
        epoch: Some("store-1".into()),
        cursor: 42,
        pushed_seq: 7,
        last_ok_ms: Some(1_700_000_000_000),
    };
    s.commit(SyncBatch {
        peer: "dev-a".into(),
        peer_record: Some(rec.clone()),
        ..SyncBatch::default()
    })
    .unwrap();
    assert_eq!(s.peer("dev-a").unwrap(), rec);
    assert_eq!(s.peer("dev-b").unwrap(), PeerRecord::default());
    // Restored from another store: a new epoch replaces the record whole.
    let next = PeerRecord {
        epoch: Some("store-2".into()),
        cursor: 0,
        pushed_seq: 0,
        last_ok_ms: None,
    };
    s.commit(SyncBatch {
        peer: "dev-a".into(),
        peer_record: Some(next.clone()),
        ..SyncBatch::default()
    })
    .unwrap();
    assert_eq!(s.peer("dev-a").unwrap(), next);
    assert_eq!(
        s.current_seq().unwrap(),
        0,
        "peer records take no sequence number"
    );
}

/// Catches: a later binding (another device, another name) replacing the first one,
/// names lost on the way to the table, unbound actors reported as bound.
fn the_first_actor_binding_stays(s: &Fixture) {
    let bind = |actor: u8, device: &str, name: Option<&str>| SyncWrite::BindActor {
        actor: vec![actor; 16],
        device: device.into(),
        device_name: name.map(str::to_owned),
    };
    s.commit(batch(
        "relay",
        vec![bind(1, "dev-x", Some("tablet-x")), bind(2, "dev-y", None)],
    ))
    .unwrap();
    s.commit(batch("relay", vec![bind(1, "dev-z", Some("tablet-z"))]))
        .unwrap();
    let expected = vec![
        ActorBinding {
            actor: vec![1; 16],
            device: "dev-x".into(),
            device_name: Some("tablet-x".into()),
        },
        ActorBinding {
            actor: vec![2; 16],
            device: "dev-y".into(),
            device_name: None,
        },
    ];
    let asked = [vec![1; 16], vec![3; 16], vec![2; 16]];
    assert_eq!(s.actor_bindings(&asked).unwrap(), expected);
    assert_eq!(s.actor_owner(&[1; 16]).unwrap().as_deref(), Some("dev-x"));
    assert!(s.actor_bindings(&[]).unwrap().is_empty());
}

/// Catches: a store's one-call `session_start` reading other than the single calls do (a
/// lost `since`, states ignored or not as asked, the peer record's `pushed_seq` not used
/// for a device, the actor or the shared set of another peer or office).
fn session_start_reads_what_the_single_calls_read(s: &Fixture) {
    let p = person_key("131011", "0000012345");
    let (sa, va, other, sb, reg) = (
        DocId::random(),
        DocId::random(),
        DocId::random(),
        DocId::random(),
        DocId::random(),
    );
    let mut va_doc = am(&survey_json(A, "131011", "0000012345"));
    s.commit(batch(
        "dev-a",
        vec![
            insert_json(sa, A, &subject_json(A, "131011", "0000012345")),
            insert(va, A, &mut va_doc, "survey"),
            SyncWrite::BindActor {
                actor: vec![7; 16],
                device: "dev-a".into(),
                device_name: Some("tablet-a".into()),
            },
        ],
    ))
    .unwrap();
    let middle = s.current_seq().unwrap();
    let mut reg_doc = am(&registration_json(B, sb, true, false));
    let mut other_doc = am(&survey_json(A, "131011", "0000099999"));
    s.commit(batch(
        "dev-b",
        vec![
            insert(other, A, &mut other_doc, "survey"),
            insert_json(sb, B, &subject_json(B, "131011", "0000012345")),
            insert(reg, B, &mut reg_doc, "registration"),
            evidence(reg, &p, "cert-1"),
        ],
    ))
    .unwrap();
    // dev-a holds va as stored, and the relay it syncs with is at `middle`.
    s.commit(SyncBatch {
        peer: "dev-a".into(),
        writes: vec![SyncWrite::State {
            id: va,
            state: vec![1],
            in_sync: true,
            heads: heads(&mut va_doc),
        }],
        peer_record: Some(PeerRecord {
            epoch: Some("relay-1".into()),
            cursor: 3,
            pushed_seq: middle,
            last_ok_ms: None,
        }),
        ..SyncBatch::default()
    })
    .unwrap();
    // A write by another writer meanwhile: `other` now has heads the store works out again
    // (a session start must derive them before it reads).
    let before = other_doc.get_heads();
    other_doc
        .put(automerge::ROOT, "status", "completed")
        .unwrap();
    other_doc.commit();
    s.commit(batch(
        "dev-b",
        vec![append(other, &mut other_doc, &before, 0, "survey")],
    ))
    .unwrap();
    let mut asked = 0;
    for (peer, list, actor) in [
        ("dev-a", vec![A], vec![7; 16]),
        ("dev-b", vec![B], vec![7; 16]),
        ("dev-c", vec![A, B], vec![9; 16]),
    ] {
        for since in [None, Some(0), Some(middle)] {
            for ignore_states in [false, true] {
                for shared in [false, true] {
                    let q = StartQuery {
                        peer: peer.into(),
                        offices: offices(&list),
                        since,
                        ignore_states,
                        actor: shared.then(|| actor.clone()),
                        shared,
                    };
                    let got = s.session_start(&q).unwrap();
                    let record = s.peer(peer).unwrap();
                    let from = since.unwrap_or(record.pushed_seq);
                    let when = format!("{q:?}");
                    assert_eq!(got.record, record, "{when}");
                    assert_eq!(got.seq, s.current_seq().unwrap(), "{when}");
                    assert_eq!(
                        got.changed,
                        s.changed_for_peer(peer, from, &q.offices, ignore_states)
                            .unwrap(),
                        "{when}"
                    );
                    assert_eq!(got.digest, s.catalog_digest(&q.offices).unwrap(), "{when}");
                    let owner = if shared {
                        s.actor_owner(&actor).unwrap()
                    } else {
                        None
                    };
                    assert_eq!(got.actor_owner, owner, "{when}");
                    let want_shared = if shared {
                        s.shared_for_peer(peer, &q.offices, ignore_states).unwrap()
                    } else {
                        musubi_engine::sync::SharedDocs::default()
                    };
                    assert_eq!(got.shared, want_shared, "{when}");
                    asked += 1;
                }
            }
        }
    }
    assert_eq!(asked, 36);
    // The reads are not all empty: the comparisons above compared something.
    let device = s
        .session_start(&StartQuery {
            peer: "dev-a".into(),
            offices: offices(&[A]),
            ..StartQuery::default()
        })
        .unwrap();
    assert_eq!(
        ids_of(&device.changed),
        vec![other],
        "after pushed_seq, va in sync"
    );
    assert_eq!(
        device.changed[0].heads,
        heads(&mut other_doc),
        "heads worked out again before the reads"
    );
    let relay = s
        .session_start(&StartQuery {
            peer: "dev-b".into(),
            offices: offices(&[B]),
            since: Some(0),
            actor: Some(vec![7; 16]),
            shared: true,
            ..StartQuery::default()
        })
        .unwrap();
    assert_eq!(relay.actor_owner.as_deref(), Some("dev-a"));
    assert_eq!(
        relay.shared.ids,
        [sa, va].into_iter().collect::<HashSet<_>>()
    );
}

fn the_first_card_certificate_binding_stays(s: &Fixture) {
    let p = person_key("131011", "0000000001");
    let q = person_key("131011", "0000000002");
    let (subject_p, subject_q, reg_p, reg_q) = (
        DocId::random(),
        DocId::random(),
        DocId::random(),
        DocId::random(),
    );
    s.commit(batch(
        "dev",
        vec![
            insert_json(subject_p, A, &subject_json(A, "131011", "0000000001")),
            insert_json(subject_q, A, &subject_json(A, "131011", "0000000002")),
            insert_json(DocId::random(), A, &survey_json(A, "131011", "0000000002")),
            insert_json(reg_p, B, &registration_json(B, subject_p, true, false)),
            evidence(reg_p, &p, "cert-1"),
        ],
    ))
    .unwrap();
    assert_eq!(
        s.cert_person("cert-1").unwrap().as_deref(),
        Some(p.as_str())
    );
    // The same card certificate for another person: the binding stays, the new
    // registration's evidence is not kept and grants nothing.
    s.commit(batch(
        "dev",
        vec![
            insert_json(reg_q, B, &registration_json(B, subject_q, true, false)),
            evidence(reg_q, &q, "cert-1"),
        ],
    ))
    .unwrap();
    assert_eq!(
        s.cert_person("cert-1").unwrap().as_deref(),
        Some(p.as_str())
    );
    let shared = s.shared_for_peer("dev-b", &offices(&[B]), false).unwrap();
    assert_eq!(
        shared.ids,
        [subject_p].into_iter().collect(),
        "only p's documents"
    );
}

fn shared_for_peer_follows_valid_attested_registrations(s: &Fixture) {
    let p = person_key("131011", "0000012345");
    let (sa, va, visit, case, other) = (
        DocId::random(),
        DocId::random(),
        DocId::random(),
        DocId::random(),
        DocId::random(),
    );
    let (sb, reg) = (DocId::random(), DocId::random());
    let c_survey = DocId::random();
    s.commit(batch(
        "dev-a",
        vec![
            insert_json(sa, A, &subject_json(A, "131011", "0000012345")),
            insert_json(va, A, &survey_json(A, "131011", "0000012345")),
            insert_json(
                visit,
                A,
                &json!({"kind": "visit-record", "subject_id": sa.to_string(),
                                          "observations": "膝が痛む"}),
            ),
            insert_json(
                case,
                A,
                &json!({"kind": "case", "subject_id": sa.to_string(),
                "application": {"insurer_number": "131011", "insured_number": "0000012345"}}),
            ),
            insert_json(other, A, &survey_json(A, "131011", "0000099999")),
            insert_json(c_survey, C, &survey_json(C, "131011", "0000012345")),
        ],
    ))
    .unwrap();
    let b = offices(&[B]);
    assert!(
        s.shared_for_peer("dev-b", &b, false)
            .unwrap()
            .ids
            .is_empty(),
        "no registration"
    );
    let mut reg_doc = am(&registration_json(B, sb, true, false));
    s.commit(batch(
        "dev-b",
        vec![
            insert_json(sb, B, &subject_json(B, "131011", "0000012345")),
            insert(reg, B, &mut reg_doc, "registration"),
        ],
    ))
    .unwrap();
    assert!(
        s.shared_for_peer("dev-b", &b, false)
            .unwrap()
            .ids
            .is_empty(),
        "not attested"
    );
    s.commit(batch("dev-b", vec![evidence(reg, &p, "cert-9")]))
        .unwrap();
    let shared = s.shared_for_peer("dev-b", &b, false).unwrap();
    let want: HashSet<DocId> = [sa, va, visit, case, c_survey].into_iter().collect();
    assert_eq!(
        shared.ids, want,
        "the person's documents at other offices, not others, not B's own"
    );
    assert_eq!(
        ids_of(&shared.changed),
        sorted(want.iter().copied().collect())
    );
    // A's devices see B's subject (A has no registration): nothing.
    assert!(
        s.shared_for_peer("dev-a", &offices(&[A]), false)
            .unwrap()
            .ids
            .is_empty()
    );

    // In sync with dev-b: not changed, still shared; ignore_states lists it again.
    let mut va_doc = am(&survey_json(A, "131011", "0000012345"));
    let _ = &mut va_doc;
    let va_heads = s.lookup(&[va]).unwrap()[0].2.clone();
    s.commit(batch(
        "dev-b",
        vec![SyncWrite::State {
            id: va,
            state: vec![1],
            in_sync: true,
            heads: va_heads,
        }],
    ))
    .unwrap();
    let shared = s.shared_for_peer("dev-b", &b, false).unwrap();
    assert!(shared.ids.contains(&va));
    assert!(!ids_of(&shared.changed).contains(&va));
    assert!(ids_of(&s.shared_for_peer("dev-b", &b, true).unwrap().changed).contains(&va));

    // Consent withdrawn: nothing is shared any more.
    let before = reg_doc.get_heads();
    let seq = s.load_for_sync("dev-b", reg).unwrap().unwrap().seq;
    let list = match reg_doc.get(automerge::ROOT, "withdrawals").unwrap() {
        Some((_, id)) => id,
        None => reg_doc
            .put_object(automerge::ROOT, "withdrawals", ObjType::List)
            .unwrap(),
    };
    let w = reg_doc.insert_object(&list, 0, ObjType::Map).unwrap();
    reg_doc.put(&w, "date", "2026-10-01").unwrap();
    reg_doc.commit();
    let mut withdraw = append(reg, &mut reg_doc, &before, seq, "registration");
    s.commit(batch("dev-b", vec![withdraw.clone()])).unwrap();
    assert!(
        s.shared_for_peer("dev-b", &b, false)
            .unwrap()
            .ids
            .is_empty(),
        "withdrawn consent"
    );
    // (The same rule when the store derives the keys itself: a stale base_seq.)
    if let SyncWrite::Append { base_seq, .. } = &mut withdraw {
        *base_seq = 0;
    }
    let _ = withdraw;

    // A second registration, valid again, then B's subject re-pointed to another person.
    let reg2 = DocId::random();
    s.commit(batch(
        "dev-b",
        vec![
            insert_json(reg2, B, &registration_json(B, sb, true, false)),
            evidence(reg2, &p, "cert-9"),
        ],
    ))
    .unwrap();
    assert_eq!(s.shared_for_peer("dev-b", &b, false).unwrap().ids, want);
    let mut sb_doc = am(&subject_json(B, "131011", "0000012345"));
    let _ = &mut sb_doc;
    let rec = s.load_for_sync("dev-b", sb).unwrap().unwrap();
    let mut sb_doc = AutoCommit::load(&rec.chunks[0]).unwrap();
    let before = sb_doc.get_heads();
    let person = match sb_doc.get(automerge::ROOT, "person").unwrap() {
        Some((_, id)) => id,
        None => panic!("subject without person"),
    };
    sb_doc.put(&person, "insured_number", "0000099999").unwrap();
    sb_doc.commit();
    s.commit(batch(
        "dev-b",
        vec![append(sb, &mut sb_doc, &before, rec.seq, "subject")],
    ))
    .unwrap();
    assert!(
        s.shared_for_peer("dev-b", &b, false)
            .unwrap()
            .ids
            .is_empty(),
        "a re-pointed subject voids the registration"
    );
}

fn load_for_sync_returns_the_document_with_its_state(s: &Fixture) {
    let d = DocId::random();
    let mut doc = am(&survey_json(A, "131011", "0000000001"));
    s.commit(batch("p", vec![insert(d, A, &mut doc, "survey")]))
        .unwrap();
    let before = doc.get_heads();
    doc.put(automerge::ROOT, "status", "completed").unwrap();
    doc.commit();
    s.commit(batch("p", vec![append(d, &mut doc, &before, 1, "survey")]))
        .unwrap();
    s.commit(batch(
        "p",
        vec![SyncWrite::State {
            id: d,
            state: vec![4, 5],
            in_sync: false,
            heads: vec![],
        }],
    ))
    .unwrap();
    let rec = s.load_for_sync("p", d).unwrap().unwrap();
    assert_eq!(
        (rec.kind.as_str(), rec.office.as_str(), rec.seq),
        ("survey", A, 2)
    );
    assert_eq!(rec.sync_state, Some(vec![4, 5]));
    assert!(
        s.load_for_sync("q", d)
            .unwrap()
            .unwrap()
            .sync_state
            .is_none()
    );
    let mut loaded = Automerge::load(&rec.chunks[0]).unwrap();
    for c in &rec.chunks[1..] {
        loaded.load_incremental(c).unwrap();
    }
    assert_eq!(heads_of(&loaded), heads(&mut doc));
}

fn usage_counts_office_and_peer_writes(s: &Fixture) {
    use musubi_engine::sync::storage::Usage;
    assert_eq!(s.usage(A, "dev-a").unwrap(), Usage::default());
    let (d1, d2) = (DocId::random(), DocId::random());
    let mut doc1 = am(&survey_json(A, "131011", "0000000001"));
    let mut doc2 = am(&survey_json(B, "131011", "0000000002"));
    let w1 = insert(d1, A, &mut doc1, "survey");
    let l1 = match &w1 {
        SyncWrite::Insert { bytes, .. } => bytes.len() as u64,
        _ => 0,
    };
    s.commit(batch("dev-a", vec![w1])).unwrap();
    let w2 = insert(d2, B, &mut doc2, "survey");
    let l2 = match &w2 {
        SyncWrite::Insert { bytes, .. } => bytes.len() as u64,
        _ => 0,
    };
    s.commit(batch("dev-b", vec![w2])).unwrap();
    assert_eq!(
        s.usage(A, "dev-a").unwrap(),
        Usage {
            office_docs: 1,
            office_bytes: l1,
            peer_docs: 1,
            peer_bytes: l1
        }
    );
    // dev-b appends to A's document: A's bytes and dev-b's bytes grow, no new document.
    let before = doc1.get_heads();
    doc1.put(automerge::ROOT, "status", "completed").unwrap();
    doc1.commit();
    let ap = append(d1, &mut doc1, &before, 1, "survey");
    let added = match &ap {
        SyncWrite::Append { changes, .. } => changes.iter().map(|c| c.len() as u64).sum(),
        _ => 0,
    };
    s.commit(batch("dev-b", vec![ap])).unwrap();
    // dev-b also inserts d1 again (a concurrent first upload): bytes, not a document.
    let mut again = am(&json!({"kind": "survey", "status": "draft"}));
    let w3 = insert(d1, A, &mut again, "survey");
    let l3 = match &w3 {
        SyncWrite::Insert { bytes, .. } => bytes.len() as u64,
        _ => 0,
    };
    s.commit(batch("dev-b", vec![w3])).unwrap();
    assert_eq!(
        s.usage(A, "dev-b").unwrap(),
        Usage {
            office_docs: 1,
            office_bytes: l1 + added + l3,
            peer_docs: 1,
            peer_bytes: l2 + added + l3
        }
    );
    assert_eq!(
        s.usage(B, "dev-a").unwrap(),
        Usage {
            office_docs: 1,
            office_bytes: l2,
            peer_docs: 1,
            peer_bytes: l1
        }
    );
    // A failed batch counts nothing.
    let before_fail = s.usage(A, "dev-b").unwrap();
    let failing = batch(
        "dev-b",
        vec![
            insert_json(DocId::random(), A, &survey_json(A, "131011", "0000000009")),
            SyncWrite::Append {
                id: DocId::random(),
                changes: vec![],
                heads: vec![],
                base_seq: 0,
                title: "t".into(),
                keys: Default::default(),
            },
        ],
    );
    assert!(s.commit(failing).is_err());
    assert_eq!(s.usage(A, "dev-b").unwrap(), before_fail);
}

// ---------------------------------------------------------------- property test

mod agreement {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Gen {
        Subject {
            office: usize,
            person: usize,
        },
        Survey {
            office: usize,
            person: usize,
        },
        Visit {
            office: usize,
            subject: usize,
        },
        /// A case names a person and points at a subject (possibly of another person).
        Case {
            office: usize,
            person: usize,
            subject: usize,
        },
        Registration {
            office: usize,
            subject: usize,
            consent: bool,
            withdrawn: bool,
            evidence: Option<usize>,
        },
    }

    fn item() -> impl Strategy<Value = Gen> {
        prop_oneof![
            2 => (0..3usize, 0..3usize).prop_map(|(office, person)| Gen::Subject { office, person }),
            1 => (0..3usize, 0..3usize).prop_map(|(office, person)| Gen::Survey { office, person }),
            1 => (0..3usize, 0..6usize).prop_map(|(office, subject)| Gen::Visit { office, subject }),
            1 => (0..3usize, 0..3usize, 0..6usize).prop_map(|(office, person, subject)| Gen::Case { office, person, subject }),
            2 => (0..3usize, 0..6usize, proptest::bool::weighted(0.8), proptest::bool::weighted(0.2), proptest::option::weighted(0.8, 0..3usize))
                .prop_map(|(office, subject, consent, withdrawn, evidence)| Gen::Registration {
                    office, subject, consent, withdrawn, evidence
                }),
        ]
    }

    const OFFICES: [&str; 3] = [A, B, C];

    fn insured(person: usize) -> String {
        format!("00000000{person:02}")
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn shared_for_peer_agrees_across_backends_and_with_the_rust_rule(
            items in proptest::collection::vec(item(), 1..24),
        ) {
            let ids: Vec<DocId> = items.iter().map(|_| DocId::random()).collect();
            // References mostly name a subject item; index 5 names any item (a
            // non-subject), and with no subject at all a missing document.
            let subjects: Vec<DocId> = items.iter().zip(&ids)
                .filter(|(g, _)| matches!(g, Gen::Subject { .. }))
                .map(|(_, id)| *id)
                .collect();
            let missing = DocId::random();
            let refer = |i: usize| match (i, subjects.is_empty()) {
                (5, _) => ids[ids.len() / 2],
                (_, true) => missing,
                (i, false) => subjects[i % subjects.len()],
            };
            let mut writes = Vec::new();
            let mut rows = Vec::new();
            for (n, item) in items.iter().enumerate() {
                let id = ids[n];
                let (office, json, attested) = match item {
                    Gen::Subject { office, person } => (*office, subject_json(OFFICES[*office], "131011", &insured(*person)), None),
                    Gen::Survey { office, person } => (*office, survey_json(OFFICES[*office], "131011", &insured(*person)), None),
                    Gen::Visit { office, subject } => (*office, json!({"kind": "visit-record", "subject_id": refer(*subject).to_string()}), None),
                    Gen::Case { office, person, subject } => (*office, json!({"kind": "case", "subject_id": refer(*subject).to_string(),
                        "application": {"insurer_number": "131011", "insured_number": insured(*person)}}), None),
                    Gen::Registration { office, subject, consent, withdrawn, evidence } => (
                        *office,
                        registration_json(OFFICES[*office], refer(*subject), *consent, *withdrawn),
                        evidence.map(|p| person_key("131011", &insured(p))),
                    ),
                };
                let w = insert_json(id, OFFICES[office], &json);
                if let SyncWrite::Insert { kind, keys, .. } = &w {
                    rows.push(ShareRow { id, kind: kind.clone(), office: OFFICES[office].to_owned(), keys: keys.clone(), attested_person: None });
                }
                writes.push(w);
                if let Some(person) = attested {
                    // One certificate per registration: the binding rule is tested above.
                    writes.push(evidence(id, &person, &format!("cert-{n}")));
                    if let Some(r) = rows.last_mut() { r.attested_person = Some(person); }
                }
            }
            let stores = [memory(), sqlcipher(), pg()];
            for s in &stores {
                s.commit(batch("dev", writes.clone())).unwrap();
            }
            for reading in [vec![A], vec![B], vec![C], vec![A, B]] {
                let reading = offices(&reading);
                let want = shared_ids(&rows, &reading);
                for (name, s) in ["memory", "sqlcipher", "pg"].iter().zip(&stores) {
                    let got = s.shared_for_peer("dev", &reading, false).unwrap();
                    prop_assert_eq!(&got.ids, &want, "{} disagrees with the Rust rule for {:?}", name, reading);
                }
            }
        }
    }
}
