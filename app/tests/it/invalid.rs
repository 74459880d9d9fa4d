//! Every invalid-input path: the exit code, a message naming the file/field, and proof
//! that nothing changed.

use super::*;
use serde_json::json;

/// What the store holds, as seen through the CLI.
fn snapshot(t: &Tablet) -> Value {
    let list = t.list();
    let docs: Vec<Value> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let id = d["id"].as_str().unwrap();
            let hist: Value =
                serde_json::from_str(&t.ok(&["doc", "history", id, "--json"])).unwrap();
            json!({"doc": t.export(id), "history_len": hist.as_array().unwrap().len()})
        })
        .collect();
    json!({"list": list, "docs": docs})
}

fn refused_import(mutate: impl FnOnce(&mut Value), path: &str, words: &str) {
    let t = Tablet::new();
    let existing = t.import(&example());
    let before = snapshot(&t);
    let mut bad = example();
    mutate(&mut bad);
    let p = t.write_json("bad-survey.json", &bad);
    let out = t.run(&["doc", "import", p.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "exit code 2 for {path}: {err}");
    assert!(out.stdout.is_empty(), "no id printed");
    assert!(err.contains("bad-survey.json"), "names the file: {err}");
    assert!(err.contains(&format!(": {path}: ")), "names {path}: {err}");
    assert!(err.contains(words), "says '{words}': {err}");
    // No personal data of the input in the message.
    for secret in ["結城", "架空町", "0000012345"] {
        assert!(!err.contains(secret), "message leaks personal data: {err}");
    }
    assert_eq!(snapshot(&t), before, "store unchanged");
    assert_eq!(t.export(&existing), before["docs"][0]["doc"]);
}

#[test]
fn unknown_item_is_refused() {
    refused_import(
        |v| v["items"]["3-10"] = json!(1),
        "/items/3-10",
        "unknown field",
    );
}

#[test]
fn unknown_top_level_field_is_refused() {
    refused_import(
        |v| v["my_number"] = json!("x"),
        "/my_number",
        "unknown field",
    );
}

#[test]
fn wrong_type_is_refused() {
    refused_import(
        |v| v["items"]["1-3"] = json!("2"),
        "/items/1-3",
        "expected integer",
    );
}

#[test]
fn out_of_range_code_is_refused() {
    refused_import(
        |v| v["items"]["1-3"] = json!(4),
        "/items/1-3",
        "allowed: 1, 2, 3",
    );
}

#[test]
fn multi_select_rules_are_enforced() {
    refused_import(
        |v| v["items"]["1-1"] = json!([1, 2]),
        "/items/1-1",
        "excludes every other",
    );
    refused_import(
        |v| v["items"]["1-2"] = json!([2, 2]),
        "/items/1-2/1",
        "repeats",
    );
    refused_import(
        |v| v["items"]["6"] = json!([13]),
        "/items/6/0",
        "not one of the codes",
    );
}

#[test]
fn insurer_number_with_wrong_check_digit_is_refused() {
    refused_import(
        |v| v["subject"]["insurer_number"] = json!("131016"),
        "/subject/insurer_number",
        "check digit",
    );
}

#[test]
fn malformed_insured_number_is_refused() {
    refused_import(
        |v| v["subject"]["insured_number"] = json!("12345"),
        "/subject/insured_number",
        "被保険者番号",
    );
}

#[test]
fn malformed_office_number_is_refused() {
    refused_import(|v| v["office"] = json!("13701000"), "/office", "事業所番号");
    refused_import(
        |v| v["office"] = json!("1370100017"),
        "/office",
        "check digit",
    );
}

#[test]
fn bad_date_and_missing_field_are_refused() {
    refused_import(
        |v| v["subject"]["birth_date"] = json!("1941-02-30"),
        "/subject/birth_date",
        "[date]",
    );
    refused_import(
        |v| {
            v["subject"].as_object_mut().unwrap().remove("name");
        },
        "/subject/name",
        "[required]",
    );
}

#[test]
fn my_number_in_free_text_is_refused_without_echoing_it() {
    // 12 digits with a valid individual-number check digit (synthetic).
    let body = "12345678901";
    let digits: Vec<u32> = body.chars().map(|c| c.to_digit(10).unwrap()).collect();
    let sum: u32 = (1..=11u32)
        .map(|n| digits[11 - n as usize] * if n <= 6 { n + 1 } else { n - 5 })
        .sum();
    let cd = if sum % 11 <= 1 { 0 } else { 11 - sum % 11 };
    let number = format!("{body}{cd}");
    let t = Tablet::new();
    let mut bad = example();
    bad["special_notes"][0]["text"] = json!(format!("個人番号 {number} を控えた"));
    let p = t.write_json("bad-survey.json", &bad);
    let out = t.run(&["doc", "import", p.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("/special_notes/0/text"), "{err}");
    assert!(err.contains("個人番号"), "{err}");
    assert!(!err.contains(&number), "never echoes the number: {err}");
    assert_eq!(t.list(), json!([]));
}

#[test]
fn one_bad_file_in_a_batch_imports_nothing() {
    let t = Tablet::new();
    let good = t.write_json("good.json", &example());
    let mut b = example();
    b["items"]["2-1"] = json!(9);
    let bad = t.write_json("second-bad.json", &b);
    let out = t.run(&[
        "doc",
        "import",
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("second-bad.json"), "{err}");
    assert!(err.contains("/items/2-1"), "{err}");
    assert!(!err.contains("good.json"), "{err}");
    assert!(out.stdout.is_empty());
    assert_eq!(t.list(), json!([]), "nothing of the batch was imported");
}

#[test]
fn unreadable_or_non_json_files_are_refused() {
    let t = Tablet::new();
    let p = t.tmp.path().join("broken.json");
    std::fs::write(&p, b"{\"kind\": \"survey\", ").unwrap();
    let out = t.run(&["doc", "import", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("broken.json: not valid JSON"),
        "{}",
        stderr(&out)
    );
    let missing = t.run(&["doc", "import", "/nonexistent/x.json"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("x.json"));
    std::fs::write(&p, [0xff, 0xfe, 0x00]).unwrap();
    let out = t.run(&["doc", "import", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("UTF-8"));
    let out = t.run(&[
        "doc",
        "import",
        t.write_json("k.json", &json!({"kind": "letter"}))
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/kind"), "{}", stderr(&out));
    assert_eq!(t.list(), json!([]));
}

#[test]
fn invalid_set_changes_nothing() {
    let t = Tablet::new();
    let id = t.import(&example());
    let before = snapshot(&t);
    let cases: &[(&[&str], &str)] = &[
        (&["/items/1-3", "7"], "/items/1-3"),
        (&["/items/1-3", "\"2\""], "/items/1-3"),
        (&["/items/9-9", "1"], "/items/9-9"),
        (
            &["/subject/insurer_number", "\"131016\""],
            "/subject/insurer_number",
        ),
        (&["/kind", "\"case\""], "/kind"),
        (&["/office", "\"1370100024\""], "/office"),
        (&["/nothing/here", "1"], "/nothing/here"),
        (
            &["/special_notes/99/text", "\"x\""],
            "/special_notes/99/text",
        ),
        (&["/items/1-3", "not json"], "/items/1-3"),
        (&["items/1-3", "1"], "pointer"),
    ];
    for (args, names) in cases {
        let mut full = vec!["doc", "set", id.as_str()];
        full.extend_from_slice(args);
        let out = t.run(&full);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(names), "{args:?} names {names}: {err}");
    }
    assert_eq!(snapshot(&t), before);
}

#[test]
fn a_registration_is_created_only_by_card_verify() {
    // The example registration documents the shape; it cannot be imported.
    let t = Tablet::new();
    let existing = t.import(&example());
    let before = snapshot(&t);
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/examples/registration.json");
    let out = t.run(&["doc", "import", p.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(out.stdout.is_empty(), "no id printed");
    assert!(err.contains("registration.json"), "names the file: {err}");
    assert!(err.contains("/kind"), "{err}");
    assert!(
        err.contains("本人確認・事業所登録は musubi card verify"),
        "says how a registration is made: {err}"
    );
    // Not even next to a valid document in one batch.
    let ok = t.write_json("ok.json", &example());
    let out = t.run(&["doc", "import", ok.to_str().unwrap(), p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(snapshot(&t), before, "store unchanged");
    assert_eq!(t.export(&existing), before["docs"][0]["doc"]);
}

#[test]
fn bad_ids_are_refused() {
    let t = Tablet::new();
    for args in [
        vec!["doc", "export", "xyz"],
        vec!["doc", "history", "0123"],
        vec!["doc", "set", "zz", "/items/1-3", "1"],
    ] {
        let out = t.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains("document id"), "{}", stderr(&out));
    }
    let unknown = "0".repeat(32);
    let out = t.run(&["doc", "export", &unknown]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no document"), "{}", stderr(&out));
}

#[test]
fn wrong_passphrase_changes_no_file() {
    let t = Tablet::new();
    t.import(&example());
    let before = read_tree(&t.data_dir());
    for args in [
        vec!["doc", "list"],
        vec!["doc", "import", example_path().to_str().unwrap()],
    ] {
        let out = t
            .cmd()
            .args(&args)
            .env("MUSUBI_PASSPHRASE", "not the passphrase")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        assert!(
            stderr(&out).contains("passphrase is wrong"),
            "{}",
            stderr(&out)
        );
    }
    let out = t
        .cmd()
        .args(["passphrase", "change"])
        .env("MUSUBI_PASSPHRASE", "not the passphrase")
        .env("MUSUBI_NEW_PASSPHRASE", "another passphrase")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(read_tree(&t.data_dir()), before, "files byte-identical");
}

#[test]
fn init_refuses_bad_office_and_existing_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let run = |office: &str| {
        Command::new(env!("CARGO_BIN_EXE_musubi"))
            .args([
                "--data-dir",
                dir.to_str().unwrap(),
                "init",
                "--office",
                office,
            ])
            .env("MUSUBI_PASSPHRASE", PASS)
            .env("MUSUBI_KDF_WORK_FACTOR", "10")
            .output()
            .unwrap()
    };
    let out = run("1370100017");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--office"), "{}", stderr(&out));
    assert!(!dir.exists(), "nothing created");
    assert!(run(OFFICE).status.success());
    let before = read_tree(&dir);
    let again = run(OFFICE);
    assert!(!again.status.success());
    assert_eq!(read_tree(&dir), before);
}

#[test]
fn unopenable_database_is_quarantined_not_deleted() {
    let t = Tablet::new();
    t.import(&example());
    let db = t.data_dir().join("musubi.db");
    let mut bytes = std::fs::read(&db).unwrap();
    for b in bytes.iter_mut().take(4096) {
        *b ^= 0x5a;
    }
    std::fs::write(&db, &bytes).unwrap();
    let out = t.run(&["doc", "list"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("quarantine"), "{err}");
    assert!(!db.exists());
    let moved: Vec<(PathBuf, Vec<u8>)> = read_tree(&t.data_dir().join("quarantine"))
        .into_iter()
        .filter(|(p, _)| p.file_name().unwrap() == "musubi.db")
        .collect();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].1, bytes, "the damaged bytes are kept");
}
