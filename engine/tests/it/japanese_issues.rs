//! Every problem the schema validator reports carries a Japanese sentence for the people
//! filling in the form: it names the field by its title, never by its JSON path, and holds
//! no English (issue 18: no English-only or JSON-path message reaches the app).

use musubi_engine::schema::{ISSUE_CODES, issue_code_text, validate_document};
use serde_json::{Value, json};

fn example() -> Value {
    serde_json::from_str(include_str!("../../../schemas/examples/survey.json")).unwrap()
}

/// One broken document per kind of rule: type, enum and code lists, range, length,
/// pattern, date and time formats, identifier check digits, the 個人番号 guard, array
/// sizes, repeats, exclusive choices, required and unknown fields, the document kind.
fn broken() -> Vec<(&'static str, Value)> {
    let mut out = Vec::new();
    let mut with = |what: &'static str, f: &dyn Fn(&mut Value)| {
        let mut d = example();
        f(&mut d);
        out.push((what, d));
    };
    with("type", &|d| d["items"]["1-3"] = json!("two"));
    with("code", &|d| d["items"]["1-3"] = json!(9));
    with("sex code", &|d| d["subject"]["sex"] = json!(7));
    with("date", &|d| {
        d["subject"]["birth_date"] = json!("1944-02-30")
    });
    with("empty", &|d| d["subject"]["name"] = json!(""));
    with("too long", &|d| {
        d["subject"]["name"] = json!("あ".repeat(500))
    });
    with("insurer", &|d| {
        d["subject"]["insurer_number"] = json!("131016")
    });
    with("insured", &|d| d["subject"]["insured_number"] = json!("12"));
    with("my number", &|d| {
        d["subject"]["address"] = json!("東京都 123456789018")
    });
    with("repeat", &|d| d["items"]["1-1"] = json!([5, 5]));
    with("exclusive", &|d| d["items"]["1-1"] = json!([1, 5]));
    with("required", &|d| {
        d["subject"].as_object_mut().unwrap().remove("name");
    });
    with("unknown", &|d| d["subject"]["nickname"] = json!("はな"));
    with("kind", &|d| d["kind"] = json!("letter"));
    out
}

#[test]
fn every_issue_has_a_japanese_sentence_without_path_or_english() {
    let mut seen = std::collections::BTreeSet::new();
    let mut codes = std::collections::BTreeSet::new();
    for (what, doc) in broken() {
        let (_, report) = validate_document(&doc).unwrap();
        assert!(!report.issues.is_empty(), "{what}: nothing was reported");
        for i in &report.issues {
            let ja = &i.ja;
            assert!(!ja.is_empty(), "{what}: no Japanese for {}", i.message);
            assert!(!ja.contains('/'), "{what}: a path in {ja}");
            let english = ja
                .split(|c: char| !c.is_ascii_alphabetic())
                .filter(|w| w.len() > 1 && *w != "musubi")
                .collect::<Vec<_>>();
            assert!(english.is_empty(), "{what}: English {english:?} in {ja}");
            assert_ne!(ja, &i.message, "{what}: the same text as the English one");
            assert!(
                ISSUE_CODES.iter().any(|(c, _)| *c == i.code),
                "{what}: code {} is not in ISSUE_CODES",
                i.code
            );
            assert!(issue_code_text(i.code).is_some());
            codes.insert(i.code);
            seen.insert(ja.clone());
        }
    }
    // Different rules say different things, each under its own stable code.
    assert!(seen.len() >= 12, "{seen:#?}");
    assert!(codes.len() >= 12, "{codes:?}");
}

#[test]
fn the_field_is_named_by_its_own_title_not_the_shared_definition() {
    let mut d = example();
    d["subject"]["birth_date"] = json!("1944-02-30");
    let (_, report) = validate_document(&d).unwrap();
    let ja: Vec<&str> = report.issues.iter().map(|i| i.ja.as_str()).collect();
    assert!(ja.iter().any(|j| j.contains("「生年月日」")), "{ja:?}");
    assert!(!ja.iter().any(|j| j.contains("「年月日」")), "{ja:?}");
}
