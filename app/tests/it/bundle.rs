//! `musubi bundle export` / `musubi bundle import` through the real binary: two tablets
//! exchange documents and concurrent edits on a "USB stick" (a temp file), and every bad
//! bundle is refused with the documented exit code while the store stays byte-identical.

use super::*;
use serde_json::json;

const BUNDLE_PASS: &str = "usb stick passphrase";
const OTHER_OFFICE: &str = "1370100024";

fn tablet(office: &str, name: &str) -> Tablet {
    let t = Tablet {
        tmp: tempfile::tempdir().unwrap(),
    };
    let out = t.run(&["init", "--office", office, "--device-name", name]);
    assert!(out.status.success(), "init failed: {}", stderr(&out));
    t
}

fn bundle_cmd(t: &Tablet, args: &[&str]) -> Output {
    t.cmd()
        .env("MUSUBI_BUNDLE_PASSPHRASE", BUNDLE_PASS)
        .arg("bundle")
        .args(args)
        .output()
        .unwrap()
}

fn export_to(t: &Tablet, file: &Path) {
    let out = bundle_cmd(t, &["export", "--to", file.to_str().unwrap()]);
    assert!(out.status.success(), "export failed: {}", stderr(&out));
    assert!(out.stdout.is_empty(), "export prints nothing on stdout");
}

fn import_from(t: &Tablet, file: &Path) -> Value {
    let out = bundle_cmd(t, &["import", file.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "import failed ({:?}): {}",
        out.status.code(),
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn counts(report: &Value) -> (u64, u64, u64) {
    (
        report["new"].as_u64().unwrap(),
        report["updated"].as_u64().unwrap(),
        report["unchanged"].as_u64().unwrap(),
    )
}

fn stick(t: &Tablet, name: &str) -> PathBuf {
    t.tmp.path().join(name)
}

#[test]
fn two_tablets_exchange_documents_and_concurrent_edits() {
    let a = tablet(OFFICE, "tablet-a");
    let b = tablet(OFFICE, "tablet-b");
    let id = a.import(&example());
    a.ok(&["doc", "set", &id, "/items/1-3", "1"]);

    let file = stick(&a, "a.bundle");
    export_to(&a, &file);
    let report = import_from(&b, &file);
    assert_eq!(counts(&report), (1, 0, 0));
    assert_eq!(report["offices"], json!([OFFICE]));
    assert_eq!(report["conflicted"], json!([]));
    // Byte-identical interchange JSON, same listing.
    assert_eq!(a.ok(&["doc", "export", &id]), b.ok(&["doc", "export", &id]));
    assert_eq!(a.list()[0]["title"], b.list()[0]["title"]);

    // Importing the same bundle again changes nothing.
    let list = b.list();
    assert_eq!(counts(&import_from(&b, &file)), (0, 0, 1));
    assert_eq!(b.list(), list);

    // Offline on both tablets: the same item, differently.
    a.ok(&["doc", "set", &id, "/items/1-3", "2"]);
    b.ok(&["doc", "set", &id, "/items/1-3", "3"]);
    let from_b = stick(&b, "b.bundle");
    export_to(&b, &from_b);
    let report = import_from(&a, &from_b);
    assert_eq!(counts(&report), (0, 1, 0));
    assert_eq!(report["conflicted"], json!([id]));
    let from_a = stick(&a, "a2.bundle");
    export_to(&a, &from_a);
    assert_eq!(counts(&import_from(&b, &from_a)), (0, 1, 0));

    assert_eq!(a.ok(&["doc", "export", &id]), b.ok(&["doc", "export", &id]));
    for t in [&a, &b] {
        let c: Value = serde_json::from_str(&t.ok(&["doc", "conflicts", &id, "--json"])).unwrap();
        assert_eq!(c[0]["path"], "/items/1-3");
        let mut devices: Vec<&str> = c[0]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["device"].as_str().unwrap())
            .collect();
        devices.sort_unstable();
        assert_eq!(devices, ["tablet-a", "tablet-b"]);
    }
}

#[test]
fn the_bundle_file_holds_no_readable_personal_data() {
    let a = tablet(OFFICE, "tablet-a");
    let mut survey = example();
    survey["subject"]["name"] = json!("秘密 花子");
    a.import(&survey);
    let file = stick(&a, "a.bundle");
    export_to(&a, &file);
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    for needle in ["秘密 花子".as_bytes(), b"musubi-bundle", OFFICE.as_bytes()] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "plaintext found in the bundle file"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "only the owner may read the bundle");
    }
}

#[test]
fn bad_bundles_are_refused_and_the_store_stays_byte_identical() {
    let a = tablet(OFFICE, "tablet-a");
    a.import(&example());
    let file = stick(&a, "a.bundle");
    export_to(&a, &file);
    let good = std::fs::read(&file).unwrap();

    let b = tablet(OFFICE, "tablet-b");
    let mut other = example();
    other["subject"]["name"] = json!("試験 三郎");
    b.import(&other);
    let before = read_tree(&b.data_dir());
    let bad = stick(&b, "bad.bundle");
    let bad_arg = bad.to_str().unwrap();

    // Cut short at several points, one byte changed at several points.
    let len = good.len();
    let mut cases: Vec<Vec<u8>> = [0, 30, 120, len / 2, len - 1]
        .iter()
        .map(|&cut| good[..cut].to_vec())
        .collect();
    for pos in [len / 3, len / 2, len - 5] {
        let mut changed = good.clone();
        changed[pos] ^= 0x04;
        cases.push(changed);
    }
    cases.push(b"PK\x03\x04 a zip file, not a bundle".to_vec());
    for (n, bytes) in cases.iter().enumerate() {
        std::fs::write(&bad, bytes).unwrap();
        let out = bundle_cmd(&b, &["import", bad_arg]);
        assert_eq!(out.status.code(), Some(2), "case {n}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("nothing was written"),
            "case {n}: {}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty());
        assert_eq!(read_tree(&b.data_dir()), before, "case {n}");
    }

    // Wrong passphrase: exit 3, like the store's.
    let out = b
        .cmd()
        .env("MUSUBI_BUNDLE_PASSPHRASE", "not the passphrase")
        .args(["bundle", "import", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("bundle passphrase is wrong"));

    // No passphrase and no terminal to ask on: a clear error, exit 2.
    let out = b
        .cmd()
        .env_remove("MUSUBI_BUNDLE_PASSPHRASE")
        .args(["bundle", "import", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("MUSUBI_BUNDLE_PASSPHRASE"));

    // A file that does not exist.
    let out = bundle_cmd(&b, &["import", "/nonexistent/x.bundle"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot open the bundle file"));

    assert_eq!(read_tree(&b.data_dir()), before);
    // The good bundle still imports.
    assert_eq!(counts(&import_from(&b, &file)), (1, 0, 0));
}

#[test]
fn a_bundle_of_another_office_is_refused() {
    let a = tablet(OFFICE, "tablet-a");
    a.import(&example());
    let file = stick(&a, "a.bundle");
    export_to(&a, &file);

    let x = tablet(OTHER_OFFICE, "tablet-x");
    let list = x.list();
    let out = bundle_cmd(&x, &["import", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(OFFICE) && err.contains(OTHER_OFFICE), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(x.list(), list);
}

#[test]
fn export_does_not_overwrite_without_force() {
    let a = tablet(OFFICE, "tablet-a");
    a.import(&example());
    let file = stick(&a, "a.bundle");
    std::fs::write(&file, b"an older file").unwrap();
    let out = bundle_cmd(&a, &["export", "--to", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(std::fs::read(&file).unwrap(), b"an older file");

    let out = bundle_cmd(&a, &["export", "--to", file.to_str().unwrap(), "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let b = tablet(OFFICE, "tablet-b");
    assert_eq!(counts(&import_from(&b, &file)), (1, 0, 0));
    // No temporary files left next to the bundle.
    let names: Vec<_> = std::fs::read_dir(a.tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.to_string_lossy().ends_with(".partial")),
        "{names:?}"
    );

    // A short passphrase is refused before anything is written.
    let short = stick(&a, "short.bundle");
    let out = a
        .cmd()
        .env("MUSUBI_BUNDLE_PASSPHRASE", "short")
        .args(["bundle", "export", "--to", short.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!short.exists());
}

#[test]
fn a_bundle_that_breaks_a_rule_is_refused_whole_and_the_store_stays_byte_identical() {
    // Both tablets hold the completed survey; B submits it; A, offline, still edits it.
    let a = tablet(OFFICE, "tablet-a");
    let b = tablet(OFFICE, "tablet-b");
    let id = a.import(&example());
    let extra = a.import(&{
        let mut v = example();
        v["subject"]["name"] = json!("試験 四郎");
        v
    });
    let file = stick(&a, "a.bundle");
    export_to(&a, &file);
    assert_eq!(counts(&import_from(&b, &file)), (2, 0, 0));
    b.ok(&["survey", "submit", &id]);
    a.ok(&["doc", "set", &id, "/items/1-3", "1"]);
    a.ok(&["doc", "set", &extra, "/items/1-3", "1"]);
    let from_a = stick(&a, "a2.bundle");
    export_to(&a, &from_a);

    // The first bundle again: nothing new. (It also fills the store's cache of document
    // heads after the local submit, which a sync or bundle import reads.)
    assert_eq!(counts(&import_from(&b, &file)), (0, 0, 2));
    let before = read_tree(&b.data_dir());
    let out = bundle_cmd(&b, &["import", from_a.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    // Japanese first, naming the document, the code and the field.
    let short = &id[..8];
    assert!(err.contains("バンドルの文書"), "{err}");
    assert!(
        err.contains("提出済みの認定調査票は、訂正の理由を記録する"),
        "{err}"
    );
    // A's edit was made on the completed survey: the status is what differs first.
    assert!(err.contains("submitted /status"), "{err}");
    assert!(err.contains(short), "names the document: {err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert!(out.stdout.is_empty());
    assert_eq!(
        read_tree(&b.data_dir()),
        before,
        "the other survey's edit is not written either"
    );
    assert_eq!(b.export(&extra)["items"]["1-3"], 2);
}
