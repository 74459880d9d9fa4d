//! `musubi-relay backup` and `restore` against real processes: a tablet store syncs into a
//! serving relay, backups are taken while it serves (one during a sync, one between
//! syncs), restored into new directories and served; devices sync against the restored
//! relays and hold byte-identical documents. A wrong passphrase, a cut or changed file, a
//! file that is no backup, an existing target: clear errors, exit codes, nothing created.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use musubi_engine::Engine;
use musubi_engine::ids::DocId;
use musubi_engine::net::tls::DeviceCredentials;
use musubi_engine::store::Store;

use common::{OFFICE, Serving, add_surveys, enrolled, s, tablet};

const BACKUP_PASS: &str = "backup passphrase for tests";

/// `musubi-relay` with the test's backup passphrase.
fn relay_cmd() -> Command {
    let mut c = common::relay_cmd();
    c.env("MUSUBI_BACKUP_PASSPHRASE", BACKUP_PASS);
    c
}

fn run(args: &[&str]) -> Output {
    relay_cmd().args(args).output().unwrap()
}

fn ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "musubi-relay {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A running `musubi-relay serve` of the relay in `dir`.
fn serve(dir: &Path) -> Serving {
    let log = dir.with_extension(format!("{}.log", std::process::id()));
    let mut cmd = relay_cmd();
    cmd.args(["serve", "--dir", s(dir), "--listen", "127.0.0.1:0"]);
    Serving::spawn(cmd, log, false)
}

/// One complete sync: (documents sent, documents received).
fn sync(
    rt: &tokio::runtime::Runtime,
    store: &Arc<Store>,
    creds: &DeviceCredentials,
    listen: &str,
) -> (u64, u64) {
    let outcome = common::sync(rt, store, creds, listen);
    (outcome.docs_sent, outcome.docs_received)
}

/// (automerge save, heads, interchange JSON) of a document.
fn doc_bytes(store: &Arc<Store>, id: DocId) -> (Vec<u8>, Vec<String>, String) {
    let engine = Engine::with_shared_store(Arc::clone(store), None).unwrap();
    let mut doc = engine.load(id).unwrap();
    let json = serde_json::to_string(&engine.export(id).unwrap()).unwrap();
    (doc.save(), doc.heads_hex(), json)
}

/// Entries of `parent` (to prove a failed restore left nothing, hidden or not).
fn entries(parent: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_backup_taken_while_serving_restores_to_a_relay_devices_sync_against() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let dir = root.join("relay");
    ok(&["init", "--dir", s(&dir), "--office", OFFICE]);
    let mut relay = serve(&dir);
    let rt = runtime();

    // A tablet syncs two surveys into the serving relay.
    let creds = enrolled(&rt, &dir, "tablet-1", &relay.listen);
    let t1 = tablet(&root.join("tablet-1"), "tablet-1");
    let mut ids = add_surveys(&t1, 2);
    assert_eq!(sync(&rt, &t1, &creds, &relay.listen), (2, 0));

    // A backup runs during the tablet's next sync (twelve more surveys on the way).
    ids.extend(add_surveys(&t1, 12));
    let during = root.join("during.musubi-backup");
    let syncing = {
        let (t1, creds, listen) = (Arc::clone(&t1), creds.clone(), relay.listen.clone());
        std::thread::spawn(move || {
            let rt = runtime();
            sync(&rt, &t1, &creds, &listen)
        })
    };
    let out = ok(&[
        "backup",
        "--dir",
        s(&dir),
        "--to",
        s(&during),
        "--include-store-key",
    ]);
    assert_eq!(syncing.join().unwrap(), (12, 0));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("IS in this backup"), "{said}");

    // And one between syncs, without the store key.
    let between = root.join("between.musubi-backup");
    let out = ok(&["backup", "--dir", s(&dir), "--to", s(&between)]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("store key is NOT in this backup"), "{said}");

    // The files are age-encrypted, private, and hold nothing readable.
    for f in [&during, &between] {
        let bytes = std::fs::read(f).unwrap();
        assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
        assert!(
            !bytes.windows(6).any(|w| w == b"BEGIN "),
            "PEM in the clear"
        );
        assert!(!bytes.windows(8).any(|w| w == b"relay_id"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(f).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "backup readable by others: {mode:o}");
        }
    }
    // No temporary file or snapshot left beside them.
    let names = entries(root);
    assert!(
        !names
            .iter()
            .any(|n| n.contains(".partial") || n.contains(".backup-")),
        "{names:?}"
    );
    // A backup never overwrites a file.
    let again = run(&["backup", "--dir", s(&dir), "--to", s(&between)]);
    assert_eq!(again.status.code(), Some(2));

    // The original relay is stopped; the between backup is restored elsewhere. Without
    // the store key it cannot serve (exit 4); with the key copied in, it serves.
    relay.stop();
    let restored = root.join("restored").join("relay");
    let out = ok(&["restore", "--from", s(&between), "--dir", s(&restored)]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("holds no store key"), "{said}");
    assert!(!restored.join("store.key").exists());
    let no_key = run(&["serve", "--dir", s(&restored), "--listen", "127.0.0.1:0"]);
    assert_eq!(no_key.status.code(), Some(4));
    std::fs::copy(dir.join("store.key"), restored.join("store.key")).unwrap();
    for rel in [
        "relay.toml",
        "serve.toml",
        "devices.toml",
        "ca/office-ca.pem",
        "ca/office-ca.key",
        "tls/relay.pem",
        "tls/relay.key",
        "store/store.toml",
        "store/keys/passphrase.age",
    ] {
        assert_eq!(
            std::fs::read(dir.join(rel)).unwrap(),
            std::fs::read(restored.join(rel)).unwrap(),
            "{rel}"
        );
    }
    let mut back = serve(&restored);

    // A fresh device enrolled at the restored relay receives every document,
    // byte-identical to the tablet's.
    let fresh_creds = enrolled(&rt, &restored, "tablet-new", &back.listen);
    let fresh = tablet(&root.join("tablet-new"), "tablet-new");
    assert_eq!(sync(&rt, &fresh, &fresh_creds, &back.listen), (0, 14));
    for id in &ids {
        assert_eq!(doc_bytes(&t1, *id), doc_bytes(&fresh, *id));
    }
    // The first tablet (enrolled before the backup) is still known: nothing to exchange.
    assert_eq!(sync(&rt, &t1, &creds, &back.listen), (0, 0));
    back.stop();

    // The backup taken during the sync restores to a consistent relay with its store
    // key: whatever the sync had not committed when the snapshot began, the tablet sends
    // again, and everything converges.
    let restored2 = root.join("restored2");
    ok(&["restore", "--from", s(&during), "--dir", s(&restored2)]);
    assert_eq!(
        std::fs::read(dir.join("store.key")).unwrap(),
        std::fs::read(restored2.join("store.key")).unwrap()
    );
    let mut back2 = serve(&restored2);
    let (sent, received) = sync(&rt, &t1, &creds, &back2.listen);
    assert!(sent <= 12 && received == 0, "{sent} {received}");
    let fresh2_creds = enrolled(&rt, &restored2, "tablet-new2", &back2.listen);
    let fresh2 = tablet(&root.join("tablet-new2"), "tablet-new2");
    assert_eq!(sync(&rt, &fresh2, &fresh2_creds, &back2.listen), (0, 14));
    for id in &ids {
        assert_eq!(doc_bytes(&t1, *id), doc_bytes(&fresh2, *id));
    }
    back2.stop();
}

#[test]
fn a_wrong_passphrase_or_a_damaged_file_restores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let dir = root.join("relay");
    ok(&["init", "--dir", s(&dir), "--office", OFFICE]);
    let file = root.join("relay.musubi-backup");
    ok(&["backup", "--dir", s(&dir), "--to", s(&file)]);
    let bytes = std::fs::read(&file).unwrap();
    let target = root.join("out").join("relay");
    std::fs::create_dir(root.join("out")).unwrap();

    let restore = |from: &Path, pass: &str| -> Output {
        relay_cmd()
            .env("MUSUBI_BACKUP_PASSPHRASE", pass)
            .args(["restore", "--from", s(from), "--dir", s(&target)])
            .output()
            .unwrap()
    };
    let nothing_made = |out: &Output, code: i32, words: &str| {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{err}");
        assert!(err.contains(words), "{err}");
        assert!(err.contains("何も作成していません"), "{err}");
        assert!(
            entries(&root.join("out")).is_empty(),
            "{:?}",
            entries(&root.join("out"))
        );
    };

    // Wrong passphrase: exit 3.
    let out = restore(&file, "not the backup passphrase");
    nothing_made(&out, 3, "the backup passphrase is wrong");

    // Cut short (at several places) or changed (one byte, at several places): exit 2.
    for cut in [bytes.len() - 1, bytes.len() - 17, bytes.len() / 2, 200, 30] {
        let f = root.join(format!("cut-{cut}"));
        std::fs::write(&f, &bytes[..cut]).unwrap();
        let out = restore(&f, BACKUP_PASS);
        nothing_made(&out, 2, "");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("damaged") || err.contains("not a musubi-relay backup"),
            "{err}"
        );
    }
    for at in [bytes.len() - 5, bytes.len() / 2, 300] {
        let mut changed = bytes.clone();
        changed[at] ^= 0x40;
        let f = root.join(format!("changed-{at}"));
        std::fs::write(&f, &changed).unwrap();
        let out = restore(&f, BACKUP_PASS);
        nothing_made(&out, 2, "damaged");
    }
    // Not a backup at all; an age file of something else.
    let f = root.join("text");
    std::fs::write(&f, "hello\n").unwrap();
    nothing_made(&restore(&f, BACKUP_PASS), 2, "not a musubi-relay backup");
    let f = root.join("store.key.age");
    std::fs::copy(dir.join("store/keys/passphrase.age"), &f).unwrap();
    let out = restore(&f, BACKUP_PASS);
    assert!(matches!(out.status.code(), Some(2 | 3)), "{out:?}");
    assert!(entries(&root.join("out")).is_empty());

    // The right passphrase restores; a second restore onto it is refused untouched.
    ok(&["restore", "--from", s(&file), "--dir", s(&target)]);
    let before = std::fs::read(target.join("relay.toml")).unwrap();
    let out = run(&["restore", "--from", s(&file), "--dir", s(&target)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
    assert_eq!(std::fs::read(target.join("relay.toml")).unwrap(), before);
    assert_eq!(entries(&root.join("out")), vec!["relay".to_owned()]);
    std::fs::copy(dir.join("store.key"), target.join("store.key")).unwrap();
    let status = ok(&["status", "--dir", s(&target), "--json"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains(OFFICE));

    // A short passphrase or none at all: refused before anything is written.
    let out = relay_cmd()
        .env("MUSUBI_BACKUP_PASSPHRASE", "short")
        .args(["backup", "--dir", s(&dir), "--to", s(&root.join("b2"))])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = relay_cmd()
        .env_remove("MUSUBI_BACKUP_PASSPHRASE")
        .args(["backup", "--dir", s(&dir), "--to", s(&root.join("b2"))])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!root.join("b2").exists());
    // A passphrase file works as well.
    let pf = root.join("pass.txt");
    std::fs::write(&pf, format!("{BACKUP_PASS}\n")).unwrap();
    let out = relay_cmd()
        .env_remove("MUSUBI_BACKUP_PASSPHRASE")
        .args(["backup", "--dir", s(&dir), "--to", s(&root.join("b3"))])
        .args(["--passphrase-file", s(&pf)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn a_cluster_relay_backup_holds_the_directory_and_says_the_database_is_not_in_it() {
    let db = musubi_pgtest::database();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let dir = root.join("relay");
    ok(&[
        "init",
        "--dir",
        s(&dir),
        "--office",
        OFFICE,
        "--database",
        &db.url(),
    ]);
    let file = root.join("cluster.musubi-backup");
    let out = ok(&["backup", "--dir", s(&dir), "--to", s(&file)]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("pg_dump"), "{said}");
    assert!(said.contains("PostgreSQL にあり"), "{said}");
    assert!(said.contains("data.key"), "{said}");

    // Restored: the directory without the data key; the node serves once it is back.
    let restored = root.join("node2");
    let out = ok(&["restore", "--from", s(&file), "--dir", s(&restored)]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("pg_restore"), "{said}");
    assert!(!restored.join("data.key").exists());
    assert!(!restored.join("store").exists());
    for rel in ["relay.toml", "ca/office-ca.key", "tls/relay.key"] {
        assert_eq!(
            std::fs::read(dir.join(rel)).unwrap(),
            std::fs::read(restored.join(rel)).unwrap(),
            "{rel}"
        );
    }
    std::fs::copy(dir.join("data.key"), restored.join("data.key")).unwrap();
    let status = ok(&["status", "--dir", s(&restored), "--json"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains(OFFICE));

    // With --include-store-key the data key comes along.
    let with_key = root.join("with-key.musubi-backup");
    ok(&[
        "backup",
        "--dir",
        s(&dir),
        "--to",
        s(&with_key),
        "--include-store-key",
    ]);
    let node3 = root.join("node3");
    ok(&["restore", "--from", s(&with_key), "--dir", s(&node3)]);
    assert_eq!(
        std::fs::read(dir.join("data.key")).unwrap(),
        std::fs::read(node3.join("data.key")).unwrap()
    );
}
