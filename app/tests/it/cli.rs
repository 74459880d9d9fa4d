//! The happy paths of the CLI: import/export round trip, set, history, conflicts-free
//! state, passphrase change and office recovery.

use super::*;
use serde_json::json;

#[test]
fn import_export_round_trips_every_field() {
    let t = Tablet::new();
    let input = example();
    let id = t.import(&input);
    assert_eq!(id.len(), 32);
    let out = t.export(&id);
    let Value::Object(inp) = &input else { panic!() };
    for (k, v) in inp {
        assert_eq!(out.get(k), Some(v), "field {k} round-trips");
    }
    // The store filled in the owning office.
    assert_eq!(
        out["office"],
        input.get("office").cloned().unwrap_or(json!(OFFICE))
    );
    // Re-importing the export gives the same export again.
    let id2 = t.import(&out);
    assert_eq!(t.export(&id2), out);
}

#[test]
fn import_of_several_files_prints_ids_in_order() {
    let t = Tablet::new();
    let mut a = example();
    a["subject"]["name"] = json!("試験 一郎");
    let mut b = example();
    b["subject"]["name"] = json!("試験 二郎");
    let pa = t.write_json("a.json", &a);
    let pb = t.write_json("b.json", &b);
    let out = t.ok(&["doc", "import", pa.to_str().unwrap(), pb.to_str().unwrap()]);
    let ids: Vec<&str> = out.lines().collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(t.export(ids[0])["subject"]["name"], "試験 一郎");
    assert_eq!(t.export(ids[1])["subject"]["name"], "試験 二郎");
    assert_eq!(t.list().as_array().unwrap().len(), 2);
}

#[test]
fn every_example_kind_imports() {
    let t = Tablet::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/examples");
    for name in ["survey", "subject", "visit-record", "case"] {
        let p = dir.join(format!("{name}.json"));
        let out = t.ok(&["doc", "import", p.to_str().unwrap()]);
        let id = out.trim();
        assert_eq!(t.export(id)["kind"], name);
    }
    // A registration is written only by `musubi card verify`.
    let p = dir.join("registration.json");
    let out = t.run(&["doc", "import", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(t.list().as_array().unwrap().len(), 4);
}

#[test]
fn set_edits_one_field_and_history_shows_it() {
    let t = Tablet::new();
    let mut input = example();
    input["items"]["1-3"] = json!(1);
    let id = t.import(&input);
    t.ok(&["doc", "set", &id, "/items/1-3", "2"]);
    t.ok(&[
        "doc",
        "set",
        &id,
        "/special_notes/-",
        r#"{"item":"1-3","text":"ベッド柵につかまる。"}"#,
    ]);
    t.ok(&["doc", "set", &id, "/items/1-1", "[2,4]"]);
    let out = t.export(&id);
    assert_eq!(out["items"]["1-3"], 2);
    assert_eq!(out["items"]["1-1"], json!([2, 4]));
    let notes = out["special_notes"].as_array().unwrap();
    assert_eq!(notes.last().unwrap()["text"], "ベッド柵につかまる。");

    let hist: Value = serde_json::from_str(&t.ok(&["doc", "history", &id, "--json"])).unwrap();
    let hist = hist.as_array().unwrap();
    assert_eq!(hist.len(), 4, "import + three edits");
    assert_eq!(hist[0]["action"], "import");
    assert_eq!(hist[1]["action"], "set");
    assert_eq!(hist[1]["device_name"], "tablet-a");
    assert_eq!(hist[1]["staff"], "調査員テスト");
    assert_eq!(
        hist[1]["fields"],
        json!([{"path": "/items/1-3", "before": 1, "after": 2}])
    );
    assert!(hist[1]["time_ms"].as_i64().unwrap() > 1_700_000_000_000);

    let readable = t.ok(&["doc", "history", &id]);
    assert!(
        readable.contains("/items/1-3: 1 つかまらないでできる → 2 何かにつかまればできる"),
        "{readable}"
    );
    assert!(readable.contains("tablet-a"), "{readable}");
    assert!(readable.contains("調査員テスト"), "{readable}");

    // Setting the same value again records nothing.
    t.ok(&["doc", "set", &id, "/items/1-3", "2"]);
    let hist2: Value = serde_json::from_str(&t.ok(&["doc", "history", &id, "--json"])).unwrap();
    assert_eq!(hist2.as_array().unwrap().len(), 4);
}

#[test]
fn conflicts_of_a_single_device_document_are_empty() {
    let t = Tablet::new();
    let id = t.import(&example());
    let out: Value = serde_json::from_str(&t.ok(&["doc", "conflicts", &id, "--json"])).unwrap();
    assert_eq!(out, json!([]));
    assert!(t.ok(&["doc", "conflicts", &id]).contains("no conflicts"));
}

#[test]
fn passphrase_change_and_office_recovery() {
    let tmp = tempfile::tempdir().unwrap();
    let idfile = tmp.path().join("office.txt");
    let recipient = {
        let out = Command::new(env!("CARGO_BIN_EXE_musubi"))
            .args([
                "recovery-key",
                "generate",
                "--out",
                idfile.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    assert!(recipient.starts_with("age1"));
    let t = Tablet::with_init_args(&["--recovery-recipient", &recipient]);
    let id = t.import(&example());
    let before = t.export(&id);

    // Change the passphrase.
    let out = t
        .cmd()
        .args(["passphrase", "change"])
        .env("MUSUBI_NEW_PASSPHRASE", "second passphrase 2")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let old = t.run(&["doc", "list"]);
    assert_eq!(old.status.code(), Some(3), "old passphrase refused");
    let with_new = t
        .cmd()
        .args(["doc", "export", &id])
        .env("MUSUBI_PASSPHRASE", "second passphrase 2")
        .output()
        .unwrap();
    assert!(with_new.status.success(), "{}", stderr(&with_new));

    // Forget it; recover with the office identity.
    let out = t
        .cmd()
        .args(["recover", "--identity", idfile.to_str().unwrap()])
        .env("MUSUBI_NEW_PASSPHRASE", "third passphrase 3")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let recovered = t
        .cmd()
        .args(["doc", "export", &id])
        .env("MUSUBI_PASSPHRASE", "third passphrase 3")
        .output()
        .unwrap();
    assert!(recovered.status.success(), "{}", stderr(&recovered));
    let after: Value = serde_json::from_slice(&recovered.stdout).unwrap();
    assert_eq!(after, before);
}

/// The data directory: `--data-dir`, else `MUSUBI_DATA_DIR`, else the platform's
/// (`$XDG_DATA_HOME/musubi`, else `~/.local/share/musubi` on Linux).
#[cfg(target_os = "linux")]
#[test]
fn the_data_directory_is_the_flag_then_the_variable_then_the_platform_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, xdg) = (tmp.path().join("home"), tmp.path().join("xdg"));
    std::fs::create_dir_all(&home).unwrap();
    let init = |env: &[(&str, &Path)], flag: Option<&Path>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_musubi"));
        if let Some(dir) = flag {
            c.arg("--data-dir").arg(dir);
        }
        c.args(["init", "--office", OFFICE, "--device-name", "tablet-a"])
            .env("HOME", &home)
            .env_remove("XDG_DATA_HOME")
            .env_remove("MUSUBI_DATA_DIR")
            .env_remove("MUSUBI_NEW_PASSPHRASE")
            .env_remove("MUSUBI_LOG")
            .env("MUSUBI_PASSPHRASE", PASS)
            .env("MUSUBI_KDF_WORK_FACTOR", "10");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "init failed: {}", stderr(&out));
    };
    let store_in = |dir: &Path| dir.join("store.toml").is_file();

    init(&[], None);
    assert!(store_in(&home.join(".local/share/musubi")));
    init(&[("XDG_DATA_HOME", &xdg)], None);
    assert!(store_in(&xdg.join("musubi")));
    let by_env = tmp.path().join("by-env");
    init(
        &[("XDG_DATA_HOME", &xdg), ("MUSUBI_DATA_DIR", &by_env)],
        None,
    );
    assert!(store_in(&by_env));
    let by_flag = tmp.path().join("by-flag");
    init(&[("MUSUBI_DATA_DIR", &by_env)], Some(&by_flag));
    assert!(store_in(&by_flag));
}
