//! The log file in the data directory: written by real runs, owner-only, and free of the
//! personal data those runs handled.

use super::*;
use serde_json::json;

/// The example's personal values: names, numbers, addresses, phone numbers, note text.
fn personal_values(survey: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let s = &survey["subject"];
    for k in [
        "name",
        "name_kana",
        "insured_number",
        "address",
        "phone",
        "birth_date",
    ] {
        out.push(s[k].as_str().unwrap().to_owned());
    }
    let c = &survey["overview"]["history"]["family_contact"];
    for k in ["name", "address", "phone"] {
        out.push(c[k].as_str().unwrap().to_owned());
    }
    for k in ["surveyor_name", "surveyor_kana"] {
        out.push(
            survey["overview"]["conducted"][k]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for n in survey["special_notes"].as_array().unwrap() {
        out.push(n["text"].as_str().unwrap().to_owned());
    }
    for k in ["family", "living", "other"] {
        out.push(
            survey["overview"]["environment"][k]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    out
}

#[test]
fn real_runs_log_to_a_private_file_without_personal_data() {
    let t = Tablet::new();
    let survey = example();
    let values = personal_values(&survey);
    let id = t.import(&survey);
    let out = t.tmp.path();
    // Ordinary work, refusals and failures: what a field report would be about.
    t.ok(&["doc", "list"]);
    t.ok(&[
        "doc",
        "set",
        &id,
        "/special_notes/0/text",
        "\"追記した特記事項のテキスト\"",
    ]);
    t.ok(&["doc", "history", &id]);
    t.ok(&["survey", "check", &id]);
    t.ok(&["case", "list"]);
    t.ok(&[
        "export",
        "pdf",
        &id,
        "--out",
        out.join("s.pdf").to_str().unwrap(),
    ]);
    t.ok(&[
        "export",
        "csv",
        "--out",
        out.join("s.csv").to_str().unwrap(),
    ]);
    let refused = t.run(&[
        "doc",
        "set",
        &id,
        "/subject/name",
        &json!(12345).to_string(),
    ]);
    assert_eq!(refused.status.code(), Some(2));
    let wrong = t
        .cmd()
        .env("MUSUBI_PASSPHRASE", "not the passphrase")
        .args(["doc", "export", &id])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(3));
    let unsynced = t.run(&["sync"]);
    assert_eq!(unsynced.status.code(), Some(4));

    let logs = t.data_dir().join("logs");
    let current = logs.join("musubi.log");
    let text = std::fs::read_to_string(&current).expect("the runs wrote logs/musubi.log");
    // Something a reader can use: the store's own events, with a time stamp.
    assert!(text.contains("store initialised"), "{text}");
    assert!(text.contains("store opened"), "{text}");
    // Which command failed and how, never with its arguments.
    assert!(
        text.contains("command failed command=musubi doc set exit=2"),
        "{text}"
    );
    assert!(
        text.contains("command failed command=musubi doc export exit=3"),
        "{text}"
    );
    assert!(
        text.contains("command failed command=musubi sync exit=4"),
        "{text}"
    );
    assert!(
        text.contains("command done command=musubi export pdf"),
        "{text}"
    );
    assert!(
        !text.contains("s.pdf"),
        "arguments (here a file name) are not logged"
    );
    assert!(
        text.lines().all(|l| l.starts_with("20")),
        "time stamped:\n{text}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&logs), 0o700);
        assert_eq!(mode(&current), 0o600);
    }
    // None of the example's personal values, in any log file (UTF-8, UTF-16, Shift_JIS).
    let needles: Vec<&str> = values.iter().map(String::as_str).collect();
    let log_files: Vec<(PathBuf, Vec<u8>)> = read_all(&logs);
    assert!(!log_files.is_empty());
    for (path, bytes) in &log_files {
        for needle in needles.iter().chain(["追記した特記事項のテキスト"].iter()) {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} found in {}",
                path.display()
            );
        }
    }
    super::privacy::assert_absent(&logs, &needles);
}

#[test]
fn no_log_directory_without_a_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("none");
    let out = Command::new(env!("CARGO_BIN_EXE_musubi"))
        .arg("--data-dir")
        .arg(&dir)
        .env("MUSUBI_PASSPHRASE", PASS)
        .args(["doc", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(
        !dir.exists(),
        "a command on a missing store creates nothing, not even a log"
    );
}
