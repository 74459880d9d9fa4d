//! No personal data readable on disk: not in the database, the WAL, temp files, the key
//! files or the metadata.

use super::*;
use serde_json::json;

fn encodings(s: &str) -> Vec<(&'static str, Vec<u8>)> {
    let (sjis, _, lossy) = encoding_rs::SHIFT_JIS.encode(s);
    assert!(!lossy, "test strings must be representable in Shift_JIS");
    let utf16le: Vec<u8> = s.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let mut out = vec![("utf-8", s.as_bytes().to_vec()), ("utf-16le", utf16le)];
    if sjis.as_ref() != s.as_bytes() {
        out.push(("shift_jis", sjis.into_owned()));
    }
    out
}

pub fn assert_absent(dir: &Path, needles: &[&str]) {
    let files = read_all(dir);
    assert!(!files.is_empty());
    for (path, bytes) in &files {
        for needle in needles {
            for (enc, pattern) in encodings(needle) {
                let found = bytes
                    .windows(pattern.len())
                    .any(|w| w == pattern.as_slice());
                assert!(
                    !found,
                    "{enc} bytes of a test string found in {}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn personal_data_never_reaches_disk_in_plaintext() {
    let t = Tablet::new();
    let name = "鷺ノ宮識別子花子";
    let address = "東京都架空区識別町九丁目";
    let note = "特記事項識別文字列ゆずりは";
    let insured = "Z987654321";
    let mut survey = example();
    survey["subject"]["name"] = json!(name);
    survey["subject"]["address"] = json!(address);
    survey["subject"]["insured_number"] = json!(insured);
    survey["special_notes"][0]["text"] = json!(note);
    let id = t.import(&survey);
    // Edits leave changes in the WAL; check before and after a later open/close.
    t.ok(&[
        "doc",
        "set",
        &id,
        "/special_notes/1/text",
        &format!("\"{note}（追記）\""),
    ]);
    assert_absent(&t.data_dir(), &[name, address, note, insured]);

    // While a process holds the store open with a fresh uncheckpointed change, copy the
    // files and scan them too: nothing plaintext in the WAL either.
    let mut child = t
        .cmd()
        .args([
            "doc",
            "import",
            t.write_json("again.json", &survey).to_str().unwrap(),
        ])
        .spawn()
        .unwrap();
    let copy = tempfile::tempdir().unwrap();
    for _ in 0..20 {
        for (path, bytes) in read_live(&t.data_dir()) {
            let rel = path.strip_prefix(t.data_dir()).unwrap();
            let dest = copy.path().join(rel);
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::write(dest, bytes).unwrap();
        }
        assert_absent(copy.path(), &[name, address, note, insured]);
    }
    assert!(child.wait().unwrap().success());
    assert_absent(&t.data_dir(), &[name, address, note, insured]);
    // And the data is really there, readable with the passphrase.
    assert_eq!(t.export(&id)["subject"]["name"], name);
}
