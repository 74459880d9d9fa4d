//! Two relay nodes (two `PgStorage` with their own pools) on one database, writing at the
//! same time: no change is lost, and a cursor read at either node never skips a write.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::Arc;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, Automerge};
use musubi_engine::ids::DocId;
use musubi_engine::sync::frame::heads_of;
use musubi_engine::sync::storage::SyncWrite;
use musubi_engine::sync::{SyncBatch, SyncStorage};
use musubi_relay_pg::{DataKeys, PgOptions, PgStorage};

const OFFICE: &str = "1370000001";

fn node(url: &str, key: &str) -> Arc<PgStorage> {
    Arc::new(PgStorage::open(&PgOptions::new(url), DataKeys::from_hex(key).unwrap()).unwrap())
}

fn insert(id: DocId, doc: &mut AutoCommit) -> SyncWrite {
    let (bytes, am) = musubi_engine::doc::Snapshot::load(doc.save()).unwrap();
    SyncWrite::Insert {
        id,
        kind: "survey".into(),
        office: OFFICE.into(),
        title: "t".into(),
        bytes,
        heads: heads_of(&am),
        keys: Default::default(),
    }
}

#[test]
fn concurrent_appends_through_two_nodes_lose_nothing() {
    let db = musubi_pgtest::database();
    let key = DataKeys::generate_hex().unwrap();
    let nodes = [node(&db.url(), &key), node(&db.url(), &key)];
    assert_eq!(
        nodes[0].store_id(),
        nodes[1].store_id(),
        "one store id for every node"
    );
    let d = DocId::random();
    let mut base = AutoCommit::new();
    base.put(automerge::ROOT, "kind", "survey").unwrap();
    base.commit();
    nodes[0]
        .commit(SyncBatch {
            peer: "dev".into(),
            writes: vec![insert(d, &mut base)],
            ..Default::default()
        })
        .unwrap();

    let mut workers = Vec::new();
    for t in 0..4usize {
        let node = Arc::clone(&nodes[t % 2]);
        workers.push(std::thread::spawn(move || {
            for i in 0..8 {
                let rec = node.load_for_sync("dev", d).unwrap().unwrap();
                let mut doc = AutoCommit::new();
                for c in &rec.chunks {
                    doc.load_incremental(c).unwrap();
                }
                let before = doc.get_heads();
                doc.put(automerge::ROOT, format!("w{t}_{i}").as_str(), i as i64)
                    .unwrap();
                doc.commit();
                let am = Automerge::load(&doc.save()).unwrap();
                node.commit(SyncBatch {
                    peer: format!("dev-{t}"),
                    writes: vec![SyncWrite::Append {
                        id: d,
                        changes: vec![doc.save_after(&before)],
                        heads: heads_of(&am),
                        base_seq: rec.seq,
                        title: "t".into(),
                        keys: Default::default(),
                    }],
                    ..Default::default()
                })
                .unwrap();
            }
        }));
    }
    for w in workers {
        w.join().unwrap();
    }
    for n in &nodes {
        let rec = n.load_for_sync("dev", d).unwrap().unwrap();
        let mut doc = Automerge::new();
        for c in &rec.chunks {
            doc.load_incremental(c).unwrap();
        }
        for t in 0..4 {
            for i in 0..8 {
                let key = format!("w{t}_{i}");
                assert!(
                    automerge::ReadDoc::get(&doc, automerge::ROOT, key.as_str())
                        .unwrap()
                        .is_some(),
                    "{key} lost"
                );
            }
        }
        assert_eq!(n.current_seq().unwrap(), 33, "one insert and 32 appends");
        // The stored heads are the document's real heads, whatever the interleaving.
        assert_eq!(
            n.catalog(&[OFFICE.to_owned()]).unwrap()[0].heads,
            heads_of(&doc)
        );
    }
}

#[test]
fn a_cursor_read_at_one_node_never_skips_a_write_made_through_another() {
    let db = musubi_pgtest::database();
    let key = DataKeys::generate_hex().unwrap();
    let nodes = [node(&db.url(), &key), node(&db.url(), &key)];
    let mut writers = Vec::new();
    for n in &nodes {
        let node = Arc::clone(n);
        writers.push(std::thread::spawn(move || {
            let mut ids = Vec::new();
            for _ in 0..40 {
                let id = DocId::random();
                let mut doc = AutoCommit::new();
                doc.put(automerge::ROOT, "kind", "survey").unwrap();
                doc.commit();
                node.commit(SyncBatch {
                    peer: "dev".into(),
                    writes: vec![insert(id, &mut doc)],
                    ..Default::default()
                })
                .unwrap();
                ids.push(id);
            }
            ids
        }));
    }
    // A device syncing with node 1 the whole time: its cursor is the current sequence
    // number read before each listing.
    let reader = Arc::clone(&nodes[1]);
    let mut cursor = 0;
    let mut seen = HashSet::new();
    let offices = [OFFICE.to_owned()];
    while writers.iter().any(|w| !w.is_finished()) {
        let next = reader.current_seq().unwrap();
        for e in reader
            .changed_for_peer("dev-r", cursor, &offices, true)
            .unwrap()
        {
            seen.insert(e.id);
        }
        cursor = next;
    }
    let written: HashSet<DocId> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    for e in reader
        .changed_for_peer("dev-r", cursor, &offices, true)
        .unwrap()
    {
        seen.insert(e.id);
    }
    assert_eq!(written.len(), 80);
    let missed: Vec<_> = written.difference(&seen).collect();
    assert!(
        missed.is_empty(),
        "{} writes skipped by the cursor",
        missed.len()
    );
}

/// A PostgreSQL restart: calls fail cleanly while it is down (a batch writes nothing),
/// and the same store works again once it is back, without reopening.
#[test]
fn a_database_restart_fails_calls_cleanly_and_the_pool_recovers() {
    let db = musubi_pgtest::database();
    let key = DataKeys::generate_hex().unwrap();
    let mut opts = PgOptions::new(&db.url());
    opts.connect_timeout = std::time::Duration::from_secs(2);
    let store = PgStorage::open(&opts, DataKeys::from_hex(&key).unwrap()).unwrap();
    let mut doc = AutoCommit::new();
    doc.put(automerge::ROOT, "kind", "survey").unwrap();
    doc.commit();
    let first = DocId::random();
    store
        .commit(SyncBatch {
            peer: "dev".into(),
            writes: vec![insert(first, &mut doc)],
            ..Default::default()
        })
        .unwrap();

    musubi_pgtest::cluster().stop();
    let lost = DocId::random();
    let err = store
        .commit(SyncBatch {
            peer: "dev".into(),
            writes: vec![insert(lost, &mut doc)],
            ..Default::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("database"), "{err}");
    assert!(store.current_seq().is_err());

    musubi_pgtest::cluster().restart();
    assert_eq!(
        store.current_seq().unwrap(),
        1,
        "the failed batch wrote nothing"
    );
    let second = DocId::random();
    store
        .commit(SyncBatch {
            peer: "dev".into(),
            writes: vec![insert(second, &mut doc)],
            ..Default::default()
        })
        .unwrap();
    let ids: Vec<DocId> = store
        .catalog(&[OFFICE.to_owned()])
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let mut want = vec![first, second];
    want.sort();
    assert_eq!(ids, want);
}

/// The relay opens, uses and drops the store from async code and from `block_in_place`:
/// the synchronous client must neither panic nor block the runtime's own threads there.
#[test]
fn the_store_works_inside_a_tokio_runtime_and_from_block_in_place() {
    let db = musubi_pgtest::database();
    let key = DataKeys::generate_hex().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = node(&db.url(), &key);
        let mut doc = AutoCommit::new();
        doc.put(automerge::ROOT, "kind", "survey").unwrap();
        doc.commit();
        let id = DocId::random();
        store
            .commit(SyncBatch {
                peer: "dev".into(),
                writes: vec![insert(id, &mut doc)],
                ..Default::default()
            })
            .unwrap();
        let s2 = Arc::clone(&store);
        let seq = tokio::task::block_in_place(|| s2.current_seq().unwrap());
        assert_eq!(seq, 1);
        let s3 = Arc::clone(&store);
        tokio::spawn(async move { assert_eq!(s3.lookup(&[id]).unwrap().len(), 1) })
            .await
            .unwrap();
        drop(store);
    });
}
