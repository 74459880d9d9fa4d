//! `musubi export pdf|csv` through the real binary on a real store: the files, the
//! refusals (exit code 2, nothing written, no temp file left) and no personal data in
//! messages.

use super::*;
use serde_json::json;
use std::process::Command;

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn out_dir(t: &Tablet) -> PathBuf {
    let d = t.tmp.path().join("out");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn example_of(kind: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../schemas/examples/{kind}.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn pdftotext(pdf: &Path) -> String {
    let out = Command::new("pdftotext")
        .arg("-raw")
        .arg(pdf)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils; scripts/setup.sh installs it)");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}

fn read_csv(bytes: &[u8]) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(bytes)
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

#[test]
fn pdf_of_a_stored_survey() {
    let t = Tablet::new();
    let id = t.import(&example());
    let dir = out_dir(&t);
    let pdf = dir.join("調査票.pdf");
    let out = t.run(&["export", "pdf", &id, "--out", pdf.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("PDF written") && err.contains("A4"), "{err}");
    assert!(!err.contains("結城"), "{err}");
    let bytes = std::fs::read(&pdf).unwrap();
    assert!(bytes.starts_with(b"%PDF-"));
    let text = pdftotext(&pdf);
    assert!(text.contains("1-3寝返り"));
    assert!(text.contains("②何かにつかまればできる"));
    assert!(text.contains(&format!("文書ID{id}")));
    // The official layout by default; musubi's numbered layout on request.
    assert!(text.contains("非該当・要支援（"), "official layout");
    assert!(!text.contains("〔10〕"));
    let numbered = dir.join("numbered.pdf");
    let out = t.run(&[
        "export",
        "pdf",
        &id,
        "--layout",
        "numbered",
        "--out",
        numbered.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let n = pdftotext(&numbered);
    assert!(
        n.contains("〔10〕") && n.contains("①自宅内"),
        "numbered layout"
    );
    std::fs::remove_file(&numbered).unwrap();
    assert_eq!(files_in(&dir), ["調査票.pdf"], "no temp file left");

    // An existing file is not replaced without --force, and stays as it was.
    std::fs::write(&pdf, b"old").unwrap();
    let out = t.run(&["export", "pdf", &id, "--out", pdf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--force"));
    assert_eq!(std::fs::read(&pdf).unwrap(), b"old");
    let out = t.run(&[
        "export",
        "pdf",
        &id,
        "--out",
        pdf.to_str().unwrap(),
        "--force",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::read(&pdf).unwrap().starts_with(b"%PDF-"));
    assert_eq!(files_in(&dir), ["調査票.pdf"]);
}

#[test]
fn pdf_refuses_a_document_that_is_not_a_survey() {
    let t = Tablet::new();
    let id = t.import(&example_of("visit-record"));
    let dir = out_dir(&t);
    let pdf = dir.join("x.pdf");
    let out = t.run(&["export", "pdf", &id, "--out", pdf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("not a survey") && err.contains("visit-record"),
        "{err}"
    );
    assert!(files_in(&dir).is_empty(), "nothing written");
    // A malformed id is refused before the store is opened.
    let out = t.run(&["export", "pdf", "xyz", "--out", pdf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(files_in(&dir).is_empty());
}

#[test]
fn csv_of_all_surveys_in_utf8_and_shift_jis() {
    let t = Tablet::new();
    let a = t.import(&example());
    let mut second = example();
    second["special_notes"][0]["text"] = json!("\"引用\", カンマ\n改行");
    let b = t.import(&second);
    t.import(&example_of("case"));
    let dir = out_dir(&t);

    let utf8 = dir.join("all.csv");
    let out = t.run(&["export", "csv", "--out", utf8.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("2 surveys"), "{}", stderr(&out));
    let bytes = std::fs::read(&utf8).unwrap();
    assert!(bytes.starts_with(b"\xEF\xBB\xBF"), "UTF-8 with BOM");
    let rows = read_csv(&bytes[3..]);
    assert_eq!(
        rows.len(),
        3,
        "header + one row per survey (the case is left out)"
    );
    assert_eq!(rows[1][0], a);
    assert_eq!(rows[2][0], b);
    let notes = rows[0].iter().position(|h| h == "特記事項").unwrap();
    assert!(rows[2][notes].starts_with("（1-1）\"引用\", カンマ\n改行\n（1-2）"));

    let sjis = dir.join("sjis.csv");
    let out = t.run(&[
        "export",
        "csv",
        &b,
        &a,
        "--out",
        sjis.to_str().unwrap(),
        "--encoding",
        "shift_jis",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let raw = std::fs::read(&sjis).unwrap();
    let (text, _, errors) = encoding_rs::SHIFT_JIS.decode(&raw);
    assert!(!errors);
    let rows = read_csv(text.as_bytes());
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1][0], b, "rows in the order given");
    assert_eq!(rows[2][0], a);
    let name = rows[0].iter().position(|h| h == "氏名").unwrap();
    assert_eq!(rows[1][name], "結城 花子");
    assert_eq!(files_in(&dir), ["all.csv", "sjis.csv"]);
}

#[test]
fn csv_shift_jis_refuses_and_writes_nothing() {
    let t = Tablet::new();
    t.import(&example());
    let mut s = example();
    s["overview"]["environment"]["other"] = json!("𠮷田医院に通院🙂");
    let bad = t.import(&s);
    let dir = out_dir(&t);
    let csv = dir.join("out.csv");
    let out = t.run(&[
        "export",
        "csv",
        "--out",
        csv.to_str().unwrap(),
        "--encoding",
        "shift_jis",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&bad), "names the document: {err}");
    assert!(err.contains("row 2"), "names the row: {err}");
    assert!(
        err.contains("その他（置かれている環境等"),
        "names the column: {err}"
    );
    assert!(err.contains("U+20BB7"), "names the character: {err}");
    assert!(err.contains("nothing was written"), "{err}");
    for secret in ["田医院", "結城", "0000012345"] {
        assert!(!err.contains(secret), "no personal data: {err}");
    }
    assert!(files_in(&dir).is_empty(), "no file, no temp file");
    // The same data goes out as UTF-8.
    let out = t.run(&["export", "csv", "--out", csv.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The 居宅サービス計画作成依頼（変更）届出書: created from a subject, refused when its
/// parts disagree (nothing written), printed with the person from the subject document.
#[test]
fn plan_request_created_from_a_subject_and_printed() {
    let t = Tablet::new();
    let subject = t.import(&example_of("subject"));
    let base = [
        "plan-request",
        "new",
        "--subject",
        &subject,
        "--plan",
        "居宅",
        "--provider-type",
        "居宅介護支援事業所",
        "--provider-number",
        "1370100016",
        "--provider-name",
        "架空ケアプランセンター結び",
        "--start",
        "2026-11-01",
        "--filer",
        "本人",
    ];
    // 変更 without what changed: refused at the field, nothing stored.
    let before = t.ok(&["doc", "list", "--json"]);
    let out = t.run(&[&base[..], &["--category", "変更"]].concat());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("変更年月日と変更事由"), "{err}");
    assert_eq!(t.ok(&["doc", "list", "--json"]), before, "nothing written");
    // A survey is not a subject.
    let survey = t.import(&example());
    let mut wrong = base.to_vec();
    wrong[3] = &survey;
    let out = t.run(&[&wrong[..], &["--category", "新規"]].concat());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("調査対象者ではありません"),
        "{}",
        stderr(&out)
    );

    let out = t.run(
        &[
            &base[..],
            &[
                "--category",
                "変更",
                "--change-date",
                "2026-11-01",
                "--change-reason",
                "転居のため",
                "--previous-name",
                "架空居宅介護支援事業所あおば",
                "--filed",
                "2026-10-25",
            ],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let dir = out_dir(&t);
    let pdf = dir.join("届出書.pdf");
    let out = t.run(&["export", "pdf", &id, "--out", pdf.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("結城"),
        "no personal data in messages"
    );
    let text = pdftotext(&pdf);
    for expected in [
        "居宅サービス計画作成依頼（変更）届出書",
        // From the subject document, not from the notice.
        "結城花子",
        "ユウキハナコ",
        "昭和19年5月12日",
        "被保険者番号0000012345",
        "架空ケアプランセンター結び",
        "令和8年11月1日",
        "転居のため",
        "上記の事業者に居宅サービス計画の作成を依頼することを届け出ます。",
        "令和8年10月25日",
        &format!("文書ID{id}"),
    ] {
        assert!(text.contains(expected), "{expected} missing in: {text}");
    }
    // The 個人番号 box is printed empty: the label is followed by the next label.
    let mynumber = text.find("個人番号").expect("the box is printed");
    assert!(
        text[mynumber..].starts_with("個人番号生年月日"),
        "{}",
        &text[mynumber..]
    );
}
