//! Store tests: real SQLCipher on temp directories. Each test names the bug it catches.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, Automerge, ChangeHash, ROOT, ReadDoc, ScalarValue, Value};

use super::config::StoreFile;
use super::db::{Db, LATEST_VERSION};
use super::keys::DataKey;
use super::thread::StoreEvent;
use super::*;
use crate::doc::Snapshot;
use crate::sync::storage::SyncStorage;

/// scrypt work factor for tests: fast, and still a real scrypt stanza.
const KDF: u8 = 10;

fn pass(s: &str) -> SecretString {
    SecretString::from(s)
}

fn opts() -> InitOptions {
    InitOptions {
        office: "1370000001".into(),
        device_name: "test tablet".into(),
        staff: Some("staff-01".into()),
        recovery_recipient: None,
        kdf_work_factor: Some(KDF),
    }
}

fn data_dir(tmp: &tempfile::TempDir) -> PathBuf {
    tmp.path().join("data")
}

fn init(dir: &Path) -> Store {
    Store::init(dir, &pass("correct horse battery"), opts()).unwrap()
}

fn open(dir: &Path) -> Store {
    Store::open(dir, &pass("correct horse battery")).unwrap()
}

/// A document with one string field; returns it and its `save()` bytes.
fn make_doc(field: &str, text: &str) -> (AutoCommit, Vec<u8>) {
    let mut doc = AutoCommit::new();
    doc.put(ROOT, field, text).unwrap();
    let bytes = doc.save();
    (doc, bytes)
}

/// A new store in `tmp`, its database opened with the bare connection (no store thread).
fn bare_db(tmp: &tempfile::TempDir) -> Db {
    let dir = data_dir(tmp);
    init(&dir).close().unwrap();
    let key = unlock(&dir, &pass("correct horse battery")).unwrap();
    Db::open(&dir.join("musubi.db"), key, false).unwrap()
}

fn new_doc(id: DocId, bytes: Vec<u8>) -> NewDoc {
    NewDoc {
        id,
        kind: "survey".into(),
        office: "1370000001".into(),
        title: "title".into(),
        bytes: loaded(bytes),
        keys: None,
    }
}

fn loaded(bytes: Vec<u8>) -> Snapshot {
    Snapshot::load(bytes).unwrap().0
}

/// Rebuilds a document from stored chunks the way callers are told to.
fn rebuild(stored: &StoredDoc) -> Automerge {
    let mut doc = Automerge::load(&stored.chunks[0]).unwrap();
    for c in &stored.chunks[1..] {
        doc.load_incremental(c).unwrap();
    }
    doc
}

fn get_str(doc: &impl ReadDoc, field: &str) -> Option<String> {
    match doc.get(ROOT, field).unwrap() {
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        _ => None,
    }
}

fn sorted_heads(mut heads: Vec<ChangeHash>) -> Vec<ChangeHash> {
    heads.sort();
    heads
}

/// Every file under `dir` with its bytes (a byte-for-byte picture of the directory).
fn snapshot_dir(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(
                    path.strip_prefix(dir).unwrap().to_path_buf(),
                    fs::read(&path).unwrap(),
                );
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------
// Lifecycle
// ---------------------------------------------------------------------------------------

/// Catches: documents or metadata not surviving close + reopen.
#[test]
fn init_insert_reopen_load() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let store = init(&dir);
    let info = store.info().clone();
    assert_eq!(info.office, "1370000001");
    assert_eq!(info.device_id.len(), 32);
    assert_eq!(info.actor_hex.len(), 32);
    assert_ne!(info.device_id, info.actor_hex);

    let (mut a, a_bytes) = make_doc("name", "alpha");
    let (_b, b_bytes) = make_doc("name", "beta");
    let (ida, idb) = (DocId::random(), DocId::random());
    store
        .insert_docs(vec![new_doc(ida, a_bytes), new_doc(idb, b_bytes)])
        .unwrap();
    a.put(ROOT, "name", "alpha 2").unwrap();
    store
        .append_changes(ida, vec![a.save_incremental()], "new title".into())
        .unwrap();
    store.close().unwrap();

    let store = open(&dir);
    assert_eq!(store.info(), &info);
    let loaded = store.load_doc(ida).unwrap().unwrap();
    assert_eq!(loaded.kind, "survey");
    assert_eq!(loaded.office, "1370000001");
    assert_eq!(loaded.chunks.len(), 2);
    let doc = rebuild(&loaded);
    assert_eq!(get_str(&doc, "name").as_deref(), Some("alpha 2"));
    assert_eq!(sorted_heads(doc.get_heads()), sorted_heads(a.get_heads()));
    assert_eq!(
        get_str(&rebuild(&store.load_doc(idb).unwrap().unwrap()), "name").as_deref(),
        Some("beta")
    );
    assert!(store.load_doc(DocId::random()).unwrap().is_none());

    let list = store.list_docs().unwrap();
    assert_eq!(list.len(), 2);
    let sa = list.iter().find(|s| s.id == ida).unwrap();
    assert_eq!(sa.title, "new title");
    assert_eq!(sa.pending_changes, 1);
    assert!(sa.updated_at >= sa.created_at && sa.created_at > 0);
    let sb = list.iter().find(|s| s.id == idb).unwrap();
    assert_eq!(sb.pending_changes, 0);
    // Most recently updated first.
    assert_eq!(list[0].id, ida);
    drop(store); // Drop without close must shut down cleanly too.
    let store = open(&dir);
    assert_eq!(store.list_docs().unwrap().len(), 2);
    store.close().unwrap();

    // The layout the brief describes.
    assert!(dir.join("store.toml").is_file());
    assert!(dir.join("keys/passphrase.age").is_file());
    assert!(!dir.join("keys/recovery.age").exists());
    assert!(dir.join("musubi.db").is_file());
}

/// Catches: init overwriting an existing store (and with it the only key to its data).
#[test]
fn init_refuses_an_existing_store_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    init(&dir).close().unwrap();
    let before = snapshot_dir(&dir);
    let err = Store::init(&dir, &pass("another"), opts()).unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyInitialised { .. }),
        "{err:?}"
    );
    assert_eq!(snapshot_dir(&dir), before);
}

/// Catches: options that would write garbage into store.toml, or an empty passphrase.
#[test]
fn init_validates_options_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let bad = |o: InitOptions| Store::init(&dir, &pass("p"), o).unwrap_err();
    assert!(matches!(
        bad(InitOptions {
            office: String::new(),
            ..opts()
        }),
        StoreError::BadConfig { field: "office" }
    ));
    assert!(matches!(
        bad(InitOptions {
            recovery_recipient: Some("age1nope".into()),
            ..opts()
        }),
        StoreError::BadConfig {
            field: "recovery_recipient"
        }
    ));
    assert!(matches!(
        bad(InitOptions {
            kdf_work_factor: Some(40),
            ..opts()
        }),
        StoreError::BadConfig {
            field: "kdf_work_factor"
        }
    ));
    assert!(matches!(
        Store::init(&dir, &pass(""), opts()).unwrap_err(),
        StoreError::EmptyPassphrase
    ));
    assert!(!dir.exists(), "nothing may be created for invalid options");
}

/// Catches: open on an empty directory creating a store silently.
#[test]
fn open_without_store_is_not_initialised() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Store::open(tmp.path(), &pass("x")).unwrap_err();
    assert!(matches!(err, StoreError::NotInitialised { .. }), "{err:?}");
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
}

// ---------------------------------------------------------------------------------------
// Passphrase and recovery
// ---------------------------------------------------------------------------------------

/// Catches: a wrong passphrase touching any file (e.g. opening SQLite, which creates
/// -wal/-shm, or rewriting key files) before the passphrase is verified.
#[test]
fn wrong_passphrase_changes_no_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let store = init(&dir);
    let (_d, bytes) = make_doc("name", "x");
    store
        .insert_docs(vec![new_doc(DocId::random(), bytes)])
        .unwrap();
    store.close().unwrap();
    let before = snapshot_dir(&dir);

    let err = Store::open(&dir, &pass("wrong")).unwrap_err();
    assert!(matches!(err, StoreError::WrongPassphrase), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the passphrase is wrong; nothing was changed"
    );
    let err = Store::change_passphrase(&dir, &pass("wrong"), &pass("new one")).unwrap_err();
    assert!(matches!(err, StoreError::WrongPassphrase), "{err:?}");
    assert_eq!(snapshot_dir(&dir), before);
}

/// Catches: change_passphrase leaving the old passphrase usable, or touching the data.
#[test]
fn change_passphrase_switches_passphrases_and_keeps_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let store = init(&dir);
    let id = DocId::random();
    let (_d, bytes) = make_doc("name", "kept");
    store.insert_docs(vec![new_doc(id, bytes)]).unwrap();
    store.close().unwrap();
    let before = snapshot_dir(&dir);

    Store::change_passphrase(
        &dir,
        &pass("correct horse battery"),
        &pass("new passphrase"),
    )
    .unwrap();
    let after = snapshot_dir(&dir);
    let changed: Vec<_> = before
        .iter()
        .filter(|(p, b)| after.get(*p) != Some(*b))
        .map(|(p, _)| p.clone())
        .collect();
    assert_eq!(changed, vec![PathBuf::from("keys/passphrase.age")]);
    assert_eq!(before.len(), after.len());

    assert!(matches!(
        Store::open(&dir, &pass("correct horse battery")).unwrap_err(),
        StoreError::WrongPassphrase
    ));
    let store = Store::open(&dir, &pass("new passphrase")).unwrap();
    assert_eq!(
        get_str(&rebuild(&store.load_doc(id).unwrap().unwrap()), "name").as_deref(),
        Some("kept")
    );
    store.close().unwrap();
}

/// Catches: recovery not working, a wrong identity changing files, recovery.age rewritten.
#[test]
fn recover_with_the_office_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let (identity, recipient) = generate_recovery_identity();
    let store = Store::init(
        &dir,
        &pass("forgotten"),
        InitOptions {
            recovery_recipient: Some(recipient.clone()),
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(
        store.info().recovery_recipient.as_deref(),
        Some(recipient.as_str())
    );
    let id = DocId::random();
    let (_d, bytes) = make_doc("name", "recoverable");
    store.insert_docs(vec![new_doc(id, bytes)]).unwrap();
    store.close().unwrap();
    assert!(dir.join("keys/recovery.age").is_file());
    let before = snapshot_dir(&dir);

    let (other_identity, _) = generate_recovery_identity();
    let err = Store::recover(&dir, &other_identity, &pass("new")).unwrap_err();
    assert!(matches!(err, StoreError::WrongRecoveryIdentity), "{err:?}");
    let err = Store::recover(&dir, "# nothing here\nnot a key\n", &pass("new")).unwrap_err();
    assert!(
        matches!(err, StoreError::MalformedRecoveryIdentity),
        "{err:?}"
    );
    assert_eq!(snapshot_dir(&dir), before);

    Store::recover(&dir, &identity, &pass("brand new")).unwrap();
    let after = snapshot_dir(&dir);
    assert_eq!(
        after.get(Path::new("keys/recovery.age")),
        before.get(Path::new("keys/recovery.age"))
    );
    assert_eq!(
        after.get(Path::new("musubi.db")),
        before.get(Path::new("musubi.db"))
    );
    assert!(matches!(
        Store::open(&dir, &pass("forgotten")).unwrap_err(),
        StoreError::WrongPassphrase
    ));
    let store = Store::open(&dir, &pass("brand new")).unwrap();
    assert_eq!(
        get_str(&rebuild(&store.load_doc(id).unwrap().unwrap()), "name").as_deref(),
        Some("recoverable")
    );
    store.close().unwrap();
}

/// Catches: recover on a store created without an office key pretending to work.
#[test]
fn recover_without_recovery_key_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    init(&dir).close().unwrap();
    let before = snapshot_dir(&dir);
    let (identity, _) = generate_recovery_identity();
    let err = Store::recover(&dir, &identity, &pass("new")).unwrap_err();
    assert!(matches!(err, StoreError::NoRecoveryKey), "{err:?}");
    assert_eq!(snapshot_dir(&dir), before);
}

// ---------------------------------------------------------------------------------------
// Damage: quarantine, missing database, newer schema
// ---------------------------------------------------------------------------------------

fn quarantine_folders(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir.join("quarantine"))
        .map(|it| it.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Opens a store whose database was damaged by `damage`, checks that it is quarantined
/// byte for byte, and that the next open starts a fresh database.
fn assert_quarantined_after(damage: impl FnOnce(&mut Vec<u8>)) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let store = init(&dir);
    let docs = (0..20)
        .map(|i| {
            new_doc(
                DocId::random(),
                make_doc("n", &format!("doc {i} {}", "x".repeat(500))).1,
            )
        })
        .collect();
    store.insert_docs(docs).unwrap();
    store.close().unwrap();

    let db_path = dir.join("musubi.db");
    let mut bytes = fs::read(&db_path).unwrap();
    damage(&mut bytes);
    fs::write(&db_path, &bytes).unwrap();

    let err = Store::open(&dir, &pass("correct horse battery")).unwrap_err();
    let StoreError::Quarantined { moved_to, reason } = &err else {
        panic!("expected Quarantined, got {err:?}");
    };
    assert!(!reason.is_empty());
    let msg = err.to_string();
    assert!(
        msg.contains("was moved to") && msg.contains("nothing was deleted"),
        "{msg}"
    );
    assert!(moved_to.starts_with(dir.join("quarantine")));
    assert_eq!(
        fs::read(moved_to.join("musubi.db")).unwrap(),
        bytes,
        "moved, not changed"
    );
    assert!(!db_path.exists());
    assert_eq!(quarantine_folders(&dir), vec![moved_to.clone()]);

    // Next open: fresh, empty database; the quarantined bytes stay.
    let store = open(&dir);
    assert!(store.list_docs().unwrap().is_empty());
    store.close().unwrap();
    assert_eq!(fs::read(moved_to.join("musubi.db")).unwrap(), bytes);
    let store = open(&dir);
    store.close().unwrap();
    assert_eq!(
        quarantine_folders(&dir).len(),
        1,
        "a healthy reopen quarantines nothing"
    );
}

/// Catches: a database with a damaged header (SQLCipher salt) being deleted, or opened.
#[test]
fn corrupt_head_is_quarantined_not_deleted() {
    assert_quarantined_after(|bytes| bytes[..64].fill(0xA5));
}

/// Catches: a database damaged in the middle of its first page (schema) being used.
#[test]
fn corrupt_first_page_is_quarantined_not_deleted() {
    assert_quarantined_after(|bytes| bytes[1000..1100].fill(0x5A));
}

/// Catches: damage past the schema pages being "repaired" (deleted, moved away, or
/// silently skipped). The open sequence reads only the schema, so such a database opens;
/// the damaged reads fail with `Corrupt` and change nothing, while the store stays usable
/// for whatever the app can still read or sync (moving it aside is a person's decision).
#[test]
fn corrupt_middle_is_reported_and_never_moved_or_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let db_path = dir.join("musubi.db");
    init(&dir).close().unwrap();
    // The pages of the empty store: header, schema, metadata, and free pages the
    // migrations left (which the documents may reuse).
    let before = fs::read(&db_path).unwrap();
    let store = open(&dir);
    let ids: Vec<DocId> = (0..20).map(|_| DocId::random()).collect();
    let docs = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            // Random text: automerge compresses repeated text to almost nothing.
            let text: String = (0..40).map(|_| DocId::random().to_string()).collect();
            new_doc(*id, make_doc("n", &format!("doc {i} {text}")).1)
        })
        .collect();
    store.insert_docs(docs).unwrap();
    store.close().unwrap();

    let mut bytes = fs::read(&db_path).unwrap();
    // Damage every page the documents were written to: those that differ from the empty
    // store's, except the first (the header, which every write touches, and the schema).
    let mut damaged = 0;
    for (n, page) in bytes.chunks_mut(4096).enumerate().skip(1) {
        if before.chunks(4096).nth(n) != Some(&page[..]) {
            page[100..164].fill(0x33);
            damaged += 1;
        }
    }
    assert!(damaged >= 3, "the documents span several pages ({damaged})");
    fs::write(&db_path, &bytes).unwrap();

    let store = open(&dir);
    let err = store.list_docs().unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("nothing was changed"), "{err}");
    let err = store.load_doc(ids[7]).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let err = store
        .insert_docs(vec![new_doc(DocId::random(), make_doc("n", "new").1)])
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    drop(store);
    assert_eq!(
        fs::read(&db_path).unwrap(),
        bytes,
        "nothing was written or repaired"
    );
    assert!(!dir.join("quarantine").exists());
}

/// Catches: a missing database being replaced silently by an empty one.
#[test]
fn missing_database_without_quarantine_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    init(&dir).close().unwrap();
    fs::remove_file(dir.join("musubi.db")).unwrap();
    let before = snapshot_dir(&dir);
    let err = Store::open(&dir, &pass("correct horse battery")).unwrap_err();
    assert!(matches!(err, StoreError::DatabaseMissing { .. }), "{err:?}");
    assert_eq!(snapshot_dir(&dir), before);
    assert!(!dir.join("musubi.db").exists());
}

/// Catches: an older binary "upgrading" or truncating a database from a newer one.
#[test]
fn newer_schema_is_refused_and_left_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let db = bare_db(&tmp);
    let dir = data_dir(&tmp);
    db.execute_batch_for_tests("PRAGMA user_version = 99;")
        .unwrap();
    db.close().unwrap();
    let before = fs::read(dir.join("musubi.db")).unwrap();

    let err = Store::open(&dir, &pass("correct horse battery")).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NewerSchema {
                found: 99,
                supported: LATEST_VERSION
            }
        ),
        "{err:?}"
    );
    assert_eq!(fs::read(dir.join("musubi.db")).unwrap(), before);
    assert!(
        !dir.join("quarantine").exists(),
        "a newer schema is not damage"
    );
}

// ---------------------------------------------------------------------------------------
// Batches and compaction
// ---------------------------------------------------------------------------------------

/// Catches: a batch half-written when one of its documents collides.
#[test]
fn insert_batch_with_a_duplicate_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let store = init(&dir);
    let existing = DocId::random();
    store
        .insert_docs(vec![new_doc(existing, make_doc("n", "first").1)])
        .unwrap();

    let fresh1 = DocId::random();
    let fresh2 = DocId::random();
    let err = store
        .insert_docs(vec![
            new_doc(fresh1, make_doc("n", "a").1),
            new_doc(existing, make_doc("n", "b").1),
            new_doc(fresh2, make_doc("n", "c").1),
        ])
        .unwrap_err();
    assert!(
        matches!(err, StoreError::DuplicateDoc(id) if id == existing),
        "{err:?}"
    );
    // The same id twice inside one batch.
    let err = store
        .insert_docs(vec![
            new_doc(fresh1, make_doc("n", "a").1),
            new_doc(fresh1, make_doc("n", "b").1),
        ])
        .unwrap_err();
    assert!(
        matches!(err, StoreError::DuplicateDoc(id) if id == fresh1),
        "{err:?}"
    );
    // Garbage bytes cannot become a `Snapshot`, so they never reach the store.
    assert!(Snapshot::load(b"not automerge".to_vec()).is_err());

    let ids: Vec<DocId> = store
        .list_docs()
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, vec![existing]);
    assert_eq!(
        get_str(&rebuild(&store.load_doc(existing).unwrap().unwrap()), "n").as_deref(),
        Some("first")
    );
    store.close().unwrap();
}

/// Catches: appending to a document that does not exist creating orphan change rows.
#[test]
fn append_to_unknown_doc_is_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let store = init(&data_dir(&tmp));
    let (mut d, _) = make_doc("n", "x");
    d.put(ROOT, "n", "y").unwrap();
    let id = DocId::random();
    let err = store
        .append_changes(id, vec![d.save_incremental()], "t".into())
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(e) if e == id), "{err:?}");
    assert!(err.to_string().contains(&id.short()));
    assert!(!err.to_string().contains(&id.to_string()));
    let err = store
        .append_changes(id, vec![b"garbage".to_vec()], "t".into())
        .unwrap_err();
    assert!(matches!(err, StoreError::Automerge(_)), "{err:?}");
    store.close().unwrap();
}

/// Catches: compaction changing the document (lost or reordered changes).
#[test]
fn explicit_compaction_keeps_heads_and_empties_pending() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let store = init(&dir);
    let id = DocId::random();
    let (mut doc, bytes) = make_doc("n", "v0");
    store.insert_docs(vec![new_doc(id, bytes)]).unwrap();
    for i in 1..=10 {
        doc.put(ROOT, "n", format!("v{i}")).unwrap();
        doc.put(ROOT, format!("k{i}"), i64::from(i)).unwrap();
        store
            .append_changes(id, vec![doc.save_incremental()], format!("t{i}"))
            .unwrap();
    }
    let before = rebuild(&store.load_doc(id).unwrap().unwrap());
    assert_eq!(store.list_docs().unwrap()[0].pending_changes, 10);

    store.compact(id).unwrap();
    let stored = store.load_doc(id).unwrap().unwrap();
    assert_eq!(stored.chunks.len(), 1);
    let after = rebuild(&stored);
    assert_eq!(
        sorted_heads(after.get_heads()),
        sorted_heads(doc.get_heads())
    );
    assert_eq!(
        sorted_heads(after.get_heads()),
        sorted_heads(before.get_heads())
    );
    assert_eq!(get_str(&after, "n").as_deref(), Some("v10"));
    assert_eq!(store.list_docs().unwrap()[0].pending_changes, 0);
    assert_eq!(store.list_docs().unwrap()[0].title, "t10");
    // Compacting again is a no-op; unknown ids are NotFound.
    store.compact(id).unwrap();
    assert!(matches!(
        store.compact(DocId::random()),
        Err(StoreError::NotFound(_))
    ));
    store.close().unwrap();
}

/// Catches: compaction dropping changes whose dependencies are not stored (automerge's
/// `save()` silently leaves queued changes out).
#[test]
fn compaction_refuses_when_dependencies_are_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = init(&data_dir(&tmp));
    let id = DocId::random();
    let (mut doc, bytes) = make_doc("n", "v0");
    store.insert_docs(vec![new_doc(id, bytes)]).unwrap();
    doc.put(ROOT, "n", "v1").unwrap();
    let _skipped = doc.save_incremental(); // never stored: a gap in the history
    doc.put(ROOT, "n", "v2").unwrap();
    store
        .append_changes(id, vec![doc.save_incremental()], "t".into())
        .unwrap();
    let err = store.compact(id).unwrap_err();
    assert!(
        matches!(err, StoreError::MissingDependencies { missing: 1, .. }),
        "{err:?}"
    );
    let stored = store.load_doc(id).unwrap().unwrap();
    assert_eq!(stored.chunks.len(), 2, "nothing deleted");
    store.close().unwrap();
}

/// Catches: background compaction not running, or changing the document.
#[test]
fn background_compaction_after_threshold() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    init(&dir).close().unwrap();
    let (events_tx, events) = sync_channel(64);
    let store = Store::open_with_events(&dir, &pass("correct horse battery"), events_tx).unwrap();
    let id = DocId::random();
    let (mut doc, bytes) = make_doc("n", "v0");
    store.insert_docs(vec![new_doc(id, bytes)]).unwrap();
    let threshold = u32::try_from(COMPACT_AFTER_CHANGES).unwrap();
    for i in 1..=threshold {
        doc.put(ROOT, "n", format!("v{i}")).unwrap();
        store
            .append_changes(id, vec![doc.save_incremental()], "t".into())
            .unwrap();
    }
    // Explicit signal from the store thread; the timeout only bounds a hang.
    let event = events.recv_timeout(Duration::from_secs(120)).unwrap();
    assert_eq!(event, StoreEvent::Compacted(id));
    let stored = store.load_doc(id).unwrap().unwrap();
    assert_eq!(stored.chunks.len(), 1);
    assert_eq!(
        sorted_heads(rebuild(&stored).get_heads()),
        sorted_heads(doc.get_heads())
    );
    assert_eq!(store.list_docs().unwrap()[0].pending_changes, 0);
    store.close().unwrap();
}

/// Catches: an imported document whose heads and sharing keys are left for the next sync
/// to derive, which then loads every imported document again (twice) on the store thread.
#[test]
fn an_insert_stores_the_heads_and_keys_it_is_given() {
    let tmp = tempfile::tempdir().unwrap();
    let mut db = bare_db(&tmp);
    let with_keys = NewDoc {
        keys: Some(crate::sync::sharing::ShareKeys::default()),
        ..new_doc(DocId::random(), make_doc("n", "a").1)
    };
    let heads = with_keys.bytes.heads().to_vec();
    db.insert_docs(std::slice::from_ref(&with_keys), 1).unwrap();
    assert_eq!(
        db.ensure_heads().unwrap(),
        0,
        "heads came with the snapshot"
    );
    assert_eq!(
        db.ensure_share_keys().unwrap(),
        0,
        "keys came with the insert"
    );
    let entry = db.catalog(&["1370000001".to_owned()]).unwrap();
    assert_eq!(entry[0].heads, heads);
    // Without keys the store still derives them when a sync needs them.
    db.insert_docs(&[new_doc(DocId::random(), make_doc("n", "b").1)], 2)
        .unwrap();
    assert_eq!(db.ensure_heads().unwrap(), 0);
    assert_eq!(db.ensure_share_keys().unwrap(), 1);
    db.close().unwrap();
}

/// Catches: a backlog left by a previous run (e.g. a crash before compaction) never being
/// compacted, because compaction would only be triggered by new appends.
#[test]
fn background_compaction_picks_up_backlog_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    init(&dir).close().unwrap();
    // Write the backlog with the bare connection: no store thread, so no compaction.
    let id = DocId::random();
    let (mut doc, bytes) = make_doc("n", "v0");
    let mut chunks = Vec::new();
    for i in 1..=COMPACT_AFTER_CHANGES {
        doc.put(ROOT, "n", format!("v{i}")).unwrap();
        chunks.push(doc.save_incremental());
    }
    let key = unlock(&dir, &pass("correct horse battery")).unwrap();
    let mut db = Db::open(&dir.join("musubi.db"), key, false).unwrap();
    db.insert_docs(&[new_doc(id, bytes)], 1).unwrap();
    assert_eq!(
        db.append_changes(id, &chunks, "t", 2).unwrap().0,
        COMPACT_AFTER_CHANGES
    );
    db.close().unwrap();

    let (events_tx, events) = sync_channel(64);
    let store = Store::open_with_events(&dir, &pass("correct horse battery"), events_tx).unwrap();
    // Explicit signal from the store thread; the timeout only bounds a hang.
    let event = events.recv_timeout(Duration::from_secs(120)).unwrap();
    assert_eq!(event, StoreEvent::Compacted(id));
    assert_eq!(store.list_docs().unwrap()[0].pending_changes, 0);
    assert_eq!(
        sorted_heads(rebuild(&store.load_doc(id).unwrap().unwrap()).get_heads()),
        sorted_heads(doc.get_heads())
    );
    store.close().unwrap();
}

// ---------------------------------------------------------------------------------------
// Privacy
// ---------------------------------------------------------------------------------------

/// Catches: personal data reaching the disk unencrypted: in the database, the WAL (before
/// checkpoint), store.toml, key files or temp files, in UTF-8 or Shift_JIS.
#[test]
fn no_plaintext_personal_data_on_disk() {
    let name = "ユニーク検査文字列XYZ";
    let number = "9999912345";
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let store = init(&dir);
    let mut doc = AutoCommit::new();
    doc.put(ROOT, "name", name).unwrap();
    doc.put(ROOT, "insured_number", number).unwrap();
    let bytes = doc.save();
    // Positive control: the plaintext does contain the needles, so the scan can see them.
    assert!(contains(&bytes, name.as_bytes()));
    assert!(contains(&bytes, number.as_bytes()));
    let id = DocId::random();
    store
        .insert_docs(vec![NewDoc {
            id,
            kind: "subject".into(),
            office: "1370000001".into(),
            title: format!("{name} {number}"),
            bytes: loaded(bytes.clone()),
            keys: None,
        }])
        .unwrap();
    doc.put(ROOT, "note", format!("{name}/{number}")).unwrap();
    let change = doc.save_incremental();
    assert!(contains(&change, name.as_bytes()));
    store
        .append_changes(id, vec![change], format!("{name} {number}"))
        .unwrap();

    let (sjis, _, unmappable) = encoding_rs::SHIFT_JIS.encode(name);
    assert!(!unmappable);
    let needles: Vec<(&str, Vec<u8>)> = vec![
        ("utf-8 name", name.as_bytes().to_vec()),
        ("shift_jis name", sjis.into_owned()),
        ("number", number.as_bytes().to_vec()),
        (
            "utf-16le name",
            name.encode_utf16().flat_map(u16::to_le_bytes).collect(),
        ),
    ];
    let find = |files: &BTreeMap<PathBuf, Vec<u8>>| -> Option<String> {
        files.iter().find_map(|(path, bytes)| {
            needles
                .iter()
                .find(|(_, needle)| contains(bytes, needle))
                .map(|(what, _)| format!("{what} found in {}", path.display()))
        })
    };

    // While open: the data sits in the WAL, not yet checkpointed.
    let open_files = snapshot_dir(&dir);
    let wal = open_files
        .get(Path::new("musubi.db-wal"))
        .expect("WAL exists while open");
    assert!(wal.len() > 4096, "the batch is in the WAL");
    assert_eq!(find(&open_files), None);
    // The scanner works: it finds the Shift_JIS needle in a plaintext copy.
    let mut control = BTreeMap::new();
    control.insert(PathBuf::from("control"), needles[1].1.clone());
    assert!(find(&control).is_some());

    store.close().unwrap();
    assert_eq!(find(&snapshot_dir(&dir)), None);
    // The store's temp files (atomic writes) are gone.
    assert!(
        snapshot_dir(&dir)
            .keys()
            .all(|p| !p.to_string_lossy().ends_with(".tmp"))
    );
}

/// Catches: secrets or personal fields leaking through `Debug`.
#[test]
fn debug_output_redacts_personal_fields() {
    let o = InitOptions {
        staff: Some("山田花子".into()),
        ..opts()
    };
    assert!(!format!("{o:?}").contains("山田花子"));
    let d = NewDoc {
        title: "山田花子".into(),
        ..new_doc(DocId::random(), make_doc("n", "x").1)
    };
    assert!(!format!("{d:?}").contains("山田花子"));
}

// ---------------------------------------------------------------------------------------
// Migration snapshot fixtures
// ---------------------------------------------------------------------------------------

fn snapshots_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots")
}

/// The synthetic documents in `tests/snapshots/v1.db`: (id byte, kind, title, field value).
const V1_DOCS: &[(u8, &str, &str, &str)] = &[
    (1, "survey", "fixture survey one", "synthetic value one"),
    (
        2,
        "visit-record",
        "fixture visit two",
        "synthetic value two",
    ),
    (3, "case", "fixture case three", "synthetic value three"),
];

/// Regenerates `engine/tests/snapshots/v1.db` and `v1.key.txt`: the database as schema v1
/// writes it, with synthetic data only. Run ONCE when schema v1 is current:
/// `cargo test -p musubi-engine store::tests::generate_v1_snapshot -- --ignored`. Never
/// regenerate it after v1 has been superseded: the point is to keep the old bytes so every
/// later binary proves it can still open (and migrate) them.
#[test]
#[ignore = "writes the committed v1 fixture; run by hand only while schema v1 is current"]
fn generate_v1_snapshot() {
    assert_eq!(
        LATEST_VERSION, 1,
        "v1 fixtures must be written by a v1 binary"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let store = init(&dir);
    let mut docs = Vec::new();
    for &(b, kind, title, value) in V1_DOCS {
        let (_d, bytes) = make_doc("field", value);
        docs.push(NewDoc {
            id: DocId::from_bytes([b; 16]),
            kind: kind.into(),
            office: "0000000000".into(),
            title: title.into(),
            bytes: loaded(bytes),
            keys: None,
        });
    }
    store.insert_docs(docs).unwrap();
    // The first document also gets pending change rows (exercises the changes table).
    let first = DocId::from_bytes([V1_DOCS[0].0; 16]);
    let mut doc = AutoCommit::load(&store.load_doc(first).unwrap().unwrap().chunks[0]).unwrap();
    doc.put(ROOT, "field", "synthetic value one, edited")
        .unwrap();
    store
        .append_changes(first, vec![doc.save_incremental()], V1_DOCS[0].2.into())
        .unwrap();
    store.close().unwrap();

    let key = unlock(&dir, &pass("correct horse battery")).unwrap();
    let out = snapshots_dir();
    fs::create_dir_all(&out).unwrap();
    fs::copy(dir.join("musubi.db"), out.join("v1.db")).unwrap();
    fs::write(
        out.join("v1.key.txt"),
        format!(
            "# TEST-ONLY KEY. SQLCipher raw key (hex) of engine/tests/snapshots/v1.db, a\n\
             # fixture holding synthetic data only. It protects nothing; never use it elsewhere.\n{}\n",
            key.to_hex().as_str()
        ),
    )
    .unwrap();
}

/// The test-only key of the committed v1 fixture.
fn key_for_fixture() -> DataKey {
    let key_text = fs::read_to_string(snapshots_dir().join("v1.key.txt")).unwrap();
    let key_hex = key_text
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .unwrap();
    DataKey::from_hex(key_hex).unwrap()
}

/// Catches: a schema change (or SQLCipher upgrade) that makes databases written by
/// schema v1 unreadable. Opens the committed fixture through the full public path.
#[test]
fn v1_snapshot_opens_with_current_code() {
    let key_text = fs::read_to_string(snapshots_dir().join("v1.key.txt")).unwrap();
    let key_hex = key_text
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .unwrap();
    let key = DataKey::from_hex(key_hex).unwrap();

    // Build a data directory around a copy (the committed file is never modified).
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    fs::create_dir_all(dir.join("keys")).unwrap();
    fs::copy(snapshots_dir().join("v1.db"), dir.join("musubi.db")).unwrap();
    write_passphrase_file(&dir, &key, &pass("fixture"), Some(KDF)).unwrap();
    StoreFile {
        info: StoreInfo {
            office: "0000000000".into(),
            device_id: "00000000000000000000000000000001".into(),
            device_name: "fixture".into(),
            actor_hex: "00000000000000000000000000000002".into(),
            staff: None,
            created_at: "2000-01-01T00:00:00Z".into(),
            recovery_recipient: None,
        },
        kdf_work_factor: Some(KDF),
    }
    .write(&dir)
    .unwrap();

    let store = Store::open(&dir, &pass("fixture")).unwrap();
    let list = store.list_docs().unwrap();
    assert_eq!(list.len(), V1_DOCS.len());
    for &(b, kind, title, value) in V1_DOCS {
        let id = DocId::from_bytes([b; 16]);
        let summary = list.iter().find(|s| s.id == id).unwrap();
        assert_eq!(summary.kind, kind);
        assert_eq!(summary.title, title);
        assert_eq!(summary.office, "0000000000");
        let stored = store.load_doc(id).unwrap().unwrap();
        let doc = rebuild(&stored);
        let expected = if b == V1_DOCS[0].0 {
            assert_eq!(summary.pending_changes, 1);
            "synthetic value one, edited".to_owned()
        } else {
            assert_eq!(summary.pending_changes, 0);
            value.to_owned()
        };
        assert_eq!(get_str(&doc, "field"), Some(expected));
    }
    // Migration 0006 backfilled the office's usage from what was stored.
    assert_usage_matches_scan(&store, "0000000000");
    // Compaction works on migrated data too, and keeps the counters exact.
    store.compact(DocId::from_bytes([1; 16])).unwrap();
    assert_usage_matches_scan(&store, "0000000000");
    store.close().unwrap();
    // The v1 file was migrated to the latest schema, listing index included.
    let db = Db::open(&dir.join("musubi.db"), key_for_fixture(), false).unwrap();
    assert_eq!(db.pragma_text("user_version"), LATEST_VERSION.to_string());
    assert_eq!(db.pragma_text("index_info(docs_listing)"), "0");
    db.close().unwrap();
}

/// Catches: durability and privacy settings silently not applied (a pragma typo is not an
/// error in SQLite), e.g. `synchronous=NORMAL` losing the last commits on power loss or
/// temp files written to disk.
#[test]
fn connection_settings_are_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let db = bare_db(&tmp);
    assert_eq!(db.pragma_text("journal_mode"), "wal");
    assert_eq!(db.pragma_text("synchronous"), "2", "FULL");
    assert_eq!(db.pragma_text("temp_store"), "2", "MEMORY");
    assert_eq!(db.pragma_text("foreign_keys"), "1");
    assert_eq!(db.pragma_text("cipher_memory_security"), "1");
    assert_eq!(db.pragma_text("user_version"), LATEST_VERSION.to_string());
    db.close().unwrap();
}

/// Catches: SQLCipher built without `OMIT_MEMLOCK` (`.cargo/config.toml`), which makes
/// `cipher_memory_security` call mlock and munlock on every SQLite allocation and free
/// (about a third of a relay's CPU per push session; docs/benchmarks.md sync note
/// 12), or memory security switched off. SQLCipher's own trace log tells both: it names
/// every allocation it guards, and names the mlock call only if the lock is compiled in.
#[test]
fn sqlite_memory_is_wiped_but_not_locked() {
    let tmp = tempfile::tempdir().unwrap();
    let mut db = bare_db(&tmp);
    let log = tmp.path().join("sqlcipher.log");
    db.conn
        .execute_batch(&format!(
            "PRAGMA cipher_log = '{}'; PRAGMA cipher_log_source = MEMORY; \
             PRAGMA cipher_log_level = TRACE;",
            log.display()
        ))
        .unwrap();
    db.insert_docs(&[new_doc(DocId::random(), make_doc("n", "v").1)], 1)
        .unwrap();
    db.conn
        .execute_batch("PRAGMA cipher_log_level = NONE;")
        .unwrap();
    let text = fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("sqlcipher_mem_malloc: calling sqlcipher_mlock"),
        "memory security guards SQLite's allocations (and the log works)"
    );
    assert!(
        !text.contains("sqlcipher_mlock: calling mlock("),
        "SQLCipher was built with mlock: LIBSQLITE3_FLAGS=-DOMIT_MEMLOCK was not applied"
    );
    db.close().unwrap();
}

/// Catches: `Store` losing `Send`/`Sync` (the app shares one store between threads).
#[test]
fn store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
    assert_send_sync::<StoreError>();
}

/// Documents and stored bytes of `office` counted by scanning the tables.
fn scanned_usage(store: &Store, office: &str) -> (u64, u64) {
    let office = office.to_owned();
    store
        .run(move |db| {
            let row = db.query_pair_for_tests(
                "SELECT count(*), coalesce(sum(length(snapshot)), 0)
                   + coalesce((SELECT sum(length(c.data)) FROM changes c
                               JOIN docs d ON d.id = c.doc_id WHERE d.office = ?1), 0)
                 FROM docs WHERE office = ?1",
                &office,
            )?;
            Ok(row)
        })
        .unwrap()
}

fn assert_usage_matches_scan(store: &Store, office: &str) {
    let u = SyncStorage::usage(store, office, "nobody").unwrap();
    let (docs, bytes) = scanned_usage(store, office);
    assert!(docs > 0 && bytes > 0, "the scan sees data");
    assert_eq!((u.office_docs, u.office_bytes), (docs, bytes));
}

/// Catches: usage counters (migration 0006) drifting from what is stored on any write
/// path (local insert, local append, synced insert and append, compaction), counting a
/// peer's writes against another peer, or counting a batch that failed.
#[test]
fn usage_counters_follow_every_write_path() {
    use crate::sync::storage::{SyncWrite, Usage};
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let store = init(&dir);
    let office = "1370000001";
    assert_eq!(
        SyncStorage::usage(&store, office, "dev-a").unwrap(),
        Usage::default()
    );

    // Local writes count for the office, for no peer.
    let local = DocId::random();
    let (mut doc, bytes) = make_doc("n", "v0");
    store.insert_docs(vec![new_doc(local, bytes)]).unwrap();
    doc.put(ROOT, "n", "v1").unwrap();
    store
        .append_changes(local, vec![doc.save_incremental()], "t".into())
        .unwrap();
    assert_usage_matches_scan(&store, office);
    assert_eq!(
        SyncStorage::usage(&store, office, "dev-a")
            .unwrap()
            .peer_docs,
        0
    );

    // A synced insert and append by dev-a.
    let synced = DocId::random();
    let mut am = AutoCommit::new();
    am.put(ROOT, "kind", "survey").unwrap();
    let snapshot = am.save();
    let heads = crate::sync::frame::heads_of(am.document());
    let insert = SyncWrite::Insert {
        id: synced,
        kind: "survey".into(),
        office: office.into(),
        title: String::new(),
        bytes: Snapshot::of(am.document()),
        heads,
        keys: crate::sync::sharing::ShareKeys::default(),
    };
    store.commit(sync_batch("dev-a", vec![insert])).unwrap();
    am.put(ROOT, "n", 1).unwrap();
    let change = am.save_incremental();
    let append = SyncWrite::Append {
        id: synced,
        changes: vec![change.clone()],
        heads: crate::sync::frame::heads_of(am.document()),
        base_seq: 0,
        title: String::new(),
        keys: crate::sync::sharing::ShareKeys::default(),
    };
    store
        .commit(sync_batch("dev-a", vec![append.clone()]))
        .unwrap();
    assert_usage_matches_scan(&store, office);
    let u = SyncStorage::usage(&store, office, "dev-a").unwrap();
    assert_eq!(u.office_docs, 2);
    assert_eq!(
        (u.peer_docs, u.peer_bytes),
        (1, (snapshot.len() + change.len()) as u64)
    );
    assert_eq!(
        SyncStorage::usage(&store, office, "dev-b")
            .unwrap()
            .peer_bytes,
        0
    );

    // A batch that fails (append to a missing document) counts nothing.
    let before = SyncStorage::usage(&store, office, "dev-a").unwrap();
    let SyncWrite::Append { changes, heads, .. } = append else {
        unreachable!()
    };
    let missing = SyncWrite::Append {
        id: DocId::random(),
        changes,
        heads,
        base_seq: 0,
        title: String::new(),
        keys: crate::sync::sharing::ShareKeys::default(),
    };
    store
        .commit(sync_batch("dev-a", vec![missing]))
        .unwrap_err();
    assert_eq!(SyncStorage::usage(&store, office, "dev-a").unwrap(), before);

    // Compaction rewrites the snapshot and deletes chunks: the office's bytes follow.
    store.compact(synced).unwrap();
    store.compact(local).unwrap();
    assert_usage_matches_scan(&store, office);
    store.close().unwrap();

    // The counters are stored, not rebuilt on open.
    let store = open(&dir);
    assert_usage_matches_scan(&store, office);
    assert_eq!(
        SyncStorage::usage(&store, office, "dev-a")
            .unwrap()
            .peer_docs,
        1
    );
    store.close().unwrap();
}

/// Catches: migration 0006 not backfilling the counters of a store written by schema v5
/// (documents and change chunks present before the counters existed).
#[test]
fn usage_and_catalog_digests_are_backfilled_when_a_v5_store_is_migrated() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let store = init(&dir);
    let (mut doc, bytes) = make_doc("n", "v0");
    let id = DocId::random();
    store.insert_docs(vec![new_doc(id, bytes)]).unwrap();
    doc.put(ROOT, "n", "v1").unwrap();
    store
        .append_changes(id, vec![doc.save_incremental()], "t".into())
        .unwrap();
    let expected = scanned_usage(&store, "1370000001");
    let offices = ["1370000001".to_owned()];
    let digest = crate::sync::catalog_digest(&store.catalog(&offices).unwrap());
    store.close().unwrap();
    // Turn the file back into schema v5: no counters, no digests, no triggers.
    let key = unlock(&dir, &pass("correct horse battery")).unwrap();
    let db = Db::open(&dir.join("musubi.db"), key, false).unwrap();
    db.execute_batch_for_tests(
        "DROP TRIGGER usage_doc_insert; DROP TRIGGER usage_doc_delete;
         DROP TRIGGER usage_doc_snapshot; DROP TRIGGER usage_change_insert;
         DROP TRIGGER usage_change_delete; DROP TABLE office_usage; DROP TABLE peer_usage;
         DROP TRIGGER docs_digest_insert; DROP TRIGGER docs_digest_update;
         DROP TRIGGER docs_digest_delete; DROP TABLE office_digest; DROP INDEX docs_changed;
         PRAGMA user_version = 5;",
    )
    .unwrap();
    db.close().unwrap();

    let store = open(&dir);
    let u = SyncStorage::usage(&store, "1370000001", "x").unwrap();
    assert_eq!((u.office_docs, u.office_bytes), expected);
    assert_eq!(expected.0, 1);
    assert_eq!(store.catalog_digest(&offices).unwrap(), digest);
    assert_ne!(digest, [0; 32]);
    // And maintained from then on.
    doc.put(ROOT, "n", "v2").unwrap();
    store
        .append_changes(id, vec![doc.save_incremental()], "t".into())
        .unwrap();
    assert_usage_matches_scan(&store, "1370000001");
    assert_eq!(
        store.catalog_digest(&offices).unwrap(),
        crate::sync::catalog_digest(&store.catalog(&offices).unwrap())
    );
    store.close().unwrap();
}

/// Catches: a backup copy written in plaintext, an inconsistent copy taken while the store
/// is being written, a wrong passphrase leaving a half-made copy, a copy that changes
/// the source.
#[test]
fn snapshot_of_an_open_store_is_encrypted_complete_and_leaves_the_source_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let store = init(&dir);
    let mut ids = Vec::new();
    for i in 0..20 {
        let id = DocId::random();
        let (_, bytes) = make_doc("name", &format!("SECRET-NAME-{i}"));
        store.insert_docs(vec![new_doc(id, bytes)]).unwrap();
        ids.push(id);
    }
    // Keep writing from another thread while the snapshot is taken.
    let store = std::sync::Arc::new(store);
    let writer = {
        let store = std::sync::Arc::clone(&store);
        std::thread::spawn(move || {
            for i in 0..50 {
                let (_, bytes) = make_doc("name", &format!("later-{i}"));
                store
                    .insert_docs(vec![new_doc(DocId::random(), bytes)])
                    .unwrap();
            }
        })
    };
    let dest = tmp.path().join("copy");
    let info = snapshot(&dir, &pass("correct horse battery"), &dest).unwrap();
    writer.join().unwrap();
    assert!(info.db_bytes > 0);
    assert_eq!(info.schema_version, LATEST_VERSION);

    // Encrypted: no SQLite header, no plaintext name anywhere in the copy.
    let db = fs::read(dest.join(DB_FILE)).unwrap();
    assert_ne!(&db[..16], b"SQLite format 3\0");
    assert!(!db.windows(12).any(|w| w == b"SECRET-NAME-"));
    assert!(!dest.join(DB_WAL).exists());
    // Opens with the same passphrase and holds every document committed before it began
    // (and a whole number of the later ones: each insert is one transaction).
    let copy = open(&dest);
    let listed = copy.list_docs().unwrap();
    for id in &ids {
        let stored = copy.load_doc(*id).unwrap().unwrap();
        assert!(
            get_str(&rebuild(&stored), "name")
                .unwrap()
                .starts_with("SECRET-NAME-")
        );
    }
    assert!(listed.len() >= 20 && listed.len() <= 70, "{}", listed.len());
    assert_eq!(copy.info(), store.info());
    copy.close().unwrap();

    // A wrong passphrase creates nothing; an existing destination is refused untouched.
    let other = tmp.path().join("other");
    let err = snapshot(&dir, &pass("wrong passphrase!"), &other).unwrap_err();
    assert!(matches!(err, StoreError::WrongPassphrase), "{err}");
    assert!(!other.exists());
    let err = snapshot(&dir, &pass("correct horse battery"), &dest).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err}");
    assert!(
        dest.join(DB_FILE).is_file(),
        "the earlier copy is untouched"
    );
    let store = std::sync::Arc::into_inner(store).unwrap();
    assert_eq!(store.list_docs().unwrap().len(), 70);
    store.close().unwrap();
}

/// A sync batch of `peer`.
fn sync_batch(peer: &str, writes: Vec<crate::sync::storage::SyncWrite>) -> crate::sync::SyncBatch {
    crate::sync::SyncBatch {
        peer: peer.into(),
        writes,
        ..crate::sync::SyncBatch::default()
    }
}

/// A synced insert of a survey of office 1370000001 whose field `n` is `value`.
fn synced_insert(id: DocId, value: &str) -> crate::sync::storage::SyncWrite {
    let mut am = AutoCommit::new();
    am.put(ROOT, "kind", "survey").unwrap();
    am.put(ROOT, "n", value).unwrap();
    crate::sync::storage::SyncWrite::Insert {
        id,
        kind: "survey".into(),
        office: "1370000001".into(),
        title: String::new(),
        bytes: Snapshot::of(am.document()),
        heads: crate::sync::frame::heads_of(am.document()),
        keys: crate::sync::sharing::ShareKeys::default(),
    }
}

/// Holds the store thread, once it has run `first` on its database, until the returned
/// gate is opened, and queues `batches` behind it as sessions' commits: the gate and
/// each batch's reply.
fn commits_behind_a_held_thread(
    store: &Store,
    first: impl FnOnce(&mut Db) + Send + 'static,
    batches: Vec<crate::sync::SyncBatch>,
) -> (
    std::sync::mpsc::Sender<()>,
    Vec<std::sync::mpsc::Receiver<Result<(), StoreError>>>,
) {
    use super::thread::{Request, reply_channel};
    let queue = store.tx.clone().unwrap();
    let (gate, gate_rx) = std::sync::mpsc::channel::<()>();
    queue
        .send(Request::Run(Box::new(move |db| {
            first(db);
            let _ = gate_rx.recv();
        })))
        .unwrap();
    let replies = batches
        .into_iter()
        .map(|batch| {
            let (reply, rx) = reply_channel();
            queue.send(Request::CommitSync { batch, reply }).unwrap();
            rx
        })
        .collect();
    (gate, replies)
}

/// Catches: sync batches of sessions queued behind each other committed one by one (a
/// transaction and an fsync each), a failing batch taking the others of its group down
/// or leaving part of itself written, and a request taken off the queue while the group
/// was gathered being lost or served before the group's commit.
#[test]
fn queued_sync_batches_commit_together_and_a_failing_one_writes_nothing() {
    use super::thread::{Request, reply_channel};
    use crate::sync::storage::{SyncWrite, Usage};
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    init(&dir).close().unwrap();
    let (events_tx, events) = sync_channel(64);
    let store = Store::open_with_events(&dir, &pass("correct horse battery"), events_tx).unwrap();
    let office = "1370000001";
    let (x, y, missing) = (DocId::random(), DocId::random(), DocId::random());
    let (mut partial, _) = make_doc("n", "p");
    let failing = sync_batch(
        "dev-b",
        vec![
            // Written first, then rolled back with the rest of its batch.
            synced_insert(DocId::random(), "half"),
            SyncWrite::Append {
                id: missing,
                changes: vec![partial.save_incremental()],
                heads: crate::sync::frame::heads_of(partial.document()),
                base_seq: 0,
                title: String::new(),
                keys: crate::sync::sharing::ShareKeys::default(),
            },
        ],
    );

    // Hold the store thread while three sessions' batches and a read queue up behind it.
    let (gate, replies) = commits_behind_a_held_thread(
        &store,
        |_| {},
        vec![
            sync_batch("dev-a", vec![synced_insert(x, "x")]),
            failing,
            sync_batch("dev-c", vec![synced_insert(y, "y")]),
        ],
    );
    let (reply, loaded) = reply_channel();
    store
        .tx
        .as_ref()
        .unwrap()
        .send(Request::LoadDoc { id: y, reply })
        .unwrap();
    gate.send(()).unwrap();

    let results: Vec<_> = replies.iter().map(|rx| rx.recv().unwrap()).collect();
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    assert!(
        matches!(results[1], Err(StoreError::NotFound(id)) if id == missing),
        "{:?}",
        results[1]
    );
    // One transaction for the three (explicit signal; the timeout only bounds a hang).
    assert_eq!(
        events.recv_timeout(Duration::from_secs(60)).unwrap(),
        StoreEvent::CommittedTogether(3)
    );
    // The read queued behind the group is served, after its commit.
    assert!(loaded.recv().unwrap().unwrap().is_some());

    // Durable: after a reopen both documents are there, nothing of the failing batch is,
    // and each peer's usage counts its own batch only.
    store.close().unwrap();
    let store = open(&dir);
    let ids: Vec<DocId> = store.list_docs().unwrap().iter().map(|d| d.id).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&x) && ids.contains(&y));
    let usage = |peer: &str| SyncStorage::usage(&store, office, peer).unwrap();
    assert_eq!(usage("dev-a").peer_docs, 1);
    assert_eq!(
        usage("dev-b"),
        Usage {
            office_docs: 2,
            office_bytes: usage("dev-a").office_bytes,
            ..Usage::default()
        }
    );
    assert_eq!(usage("dev-c").peer_docs, 1);
    store.close().unwrap();
}

/// Catches: a batch that hits a full database inside a group taking the other batches
/// down with it, or leaving part of itself written (SQLite refuses the statement with
/// `SQLITE_FULL`; the group's transaction goes on).
#[test]
fn a_batch_that_fills_the_database_fails_alone_in_its_group() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let store = init(&dir);
    let (x, big, y) = (DocId::random(), DocId::random(), DocId::random());
    // Random text does not compress: about 400 KB that the database has no room for.
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let noise: String = (0..400_000)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            char::from(b'a' + (rng % 26) as u8)
        })
        .collect();

    let (gate, replies) = commits_behind_a_held_thread(
        &store,
        |db| {
            // Room for the small documents, not for the big one.
            let pages: i64 = db
                .conn
                .query_row("PRAGMA page_count", [], |r| r.get(0))
                .unwrap();
            db.conn
                .pragma_update(None, "max_page_count", pages + 24)
                .unwrap();
        },
        vec![
            sync_batch("dev-a", vec![synced_insert(x, "x")]),
            sync_batch(
                "dev-b",
                vec![
                    synced_insert(DocId::random(), "first"),
                    synced_insert(big, &noise),
                ],
            ),
            sync_batch("dev-c", vec![synced_insert(y, "y")]),
        ],
    );
    gate.send(()).unwrap();
    let results: Vec<_> = replies.iter().map(|rx| rx.recv().unwrap()).collect();
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    assert!(
        matches!(results[1], Err(StoreError::DiskFull { .. })),
        "{:?}",
        results[1]
    );
    store.close().unwrap();
    let store = open(&dir);
    let ids: Vec<DocId> = store.list_docs().unwrap().iter().map(|d| d.id).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&x) && ids.contains(&y));
    store.close().unwrap();
}
