//! A modified client against a real `musubi-relay serve` (issue 14): an enrolled device
//! whose software was replaced (tests/src/raw_client.rs) writes the frames itself and sends
//! hand-made automerge changes. Each attempt to break a rule a tablet enforces is refused
//! with a named reason, and neither the relay nor any other tablet holds anything of it.
//!
//! Needs a genuine card registration at the relay, so it runs in nextest's `pcsc` group.

#![allow(clippy::unwrap_used)]

use musubi_engine::doc::{Author, CareDoc};
use musubi_engine::ids::DocId;
use musubi_engine::schema::{DocKind, Pointer};
use musubi_tests::card::{self, VCard};
use musubi_tests::e2e::{Device, OFFICE, Relay, survey_path};
use musubi_tests::raw_client::{RawClient, credentials};
use serde_json::{Value, json};
use std::collections::HashMap;

/// A 12-digit 個人番号 with a valid check digit (synthetic).
fn my_number() -> String {
    let body: [u8; 11] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1];
    let check = musubi_engine::identifiers::my_number_check_digit(&body);
    let number: String = body.iter().map(|d| char::from(b'0' + d)).collect();
    let n = format!("{number}{check}");
    assert!(musubi_engine::identifiers::contains_my_number(&n));
    n
}

/// The modified client's edit: `value` at `pointer` on the relay's copy of `id`, as the
/// changes after the relay's heads (what a `doc_data` carries).
fn forged(docs: &HashMap<DocId, Vec<u8>>, id: DocId, pointer: &str, value: Value) -> Vec<u8> {
    let mut doc = CareDoc::load(id, &[docs[&id].clone()], automerge::ActorId::random()).unwrap();
    let before = doc.automerge().get_heads();
    let author = Author {
        device: "mallory".into(),
        device_name: "tablet-a".into(),
        staff: None,
        action: "set".into(),
        time_ms: 1_800_000_000_000,
    };
    let changed = doc
        .set(&Pointer::parse(pointer).unwrap(), &value, &author)
        .unwrap();
    assert!(
        changed.is_some(),
        "the forged edit changed nothing at {pointer}"
    );
    doc.automerge().save_after(&before)
}

#[test]
fn a_modified_client_cannot_break_a_rule_through_the_relay() {
    let _g = card::lock();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let relay = Relay::init(root, OFFICE);
    let a = Device::init(root, "tablet-a", OFFICE);
    let card = VCard::new(&root.join("card"), &a);
    let anchor = card.anchor().to_string_lossy().into_owned();
    let server = relay.serve_with("127.0.0.1:0", &["--test-trust-anchor", &anchor]);
    let addr = server.addr.to_string();
    let (file, code) = relay.enroll("tablet-a", Some(OFFICE), &addr);
    a.enroll(&file, &code);

    // The office's honest state: a submitted survey, a draft survey, and a genuine card
    // registration whose consent was later withdrawn.
    let submitted = a.import(&[&survey_path()]).remove(0);
    // The example survey is already 調査完了.
    a.ok(&["survey", "submit", &submitted]);
    let draft = a.import(&[&survey_path()]).remove(0);
    let subject = a.import_value(root, "subject", musubi_tests::example("subject"));
    let reg = card.register(&a, &subject);
    card::consent(&a, &reg);
    a.ok(&[
        "register",
        "withdraw",
        "--registration",
        &reg,
        "--date",
        "2026-11-30",
    ]);
    a.sync_ok(&[]);
    let ids = [
        submitted.clone(),
        draft.clone(),
        subject.clone(),
        reg.clone(),
    ];
    let honest: Vec<Vec<u8>> = ids.iter().map(|id| a.export(id)).collect();

    // Mallory: a stolen tablet of the same office, its software replaced.
    let (file, code) = relay.enroll("mallory", Some(OFFICE), &addr);
    let creds = credentials(&file, &code);
    let mut raw = RawClient::connect(&creds, &addr);
    let welcomed = raw.hello(automerge::ActorId::random().to_bytes());
    let docs: HashMap<DocId, Vec<u8>> = welcomed.docs.into_iter().collect();
    let id = |s: &str| s.parse::<DocId>().unwrap();
    for want in &ids {
        assert!(
            docs.contains_key(&id(want)),
            "the relay did not send {want}"
        );
    }

    let attempts: Vec<(&str, DocId, &str, Value, &str)> = vec![
        (
            "a 個人番号 in a 特記事項",
            id(&draft),
            "/special_notes/0/text",
            json!(format!("本人の番号は{}とのこと", my_number())),
            "my_number",
        ),
        (
            "an edit of a submitted survey",
            id(&submitted),
            "/items/1-3",
            json!(3),
            "submitted",
        ),
        (
            "a submitted survey sent back to draft",
            id(&submitted),
            "/status",
            json!("draft"),
            "submitted",
        ),
        (
            "a registration's verification result",
            id(&reg),
            "/verification/result",
            json!("failed"),
            "registration",
        ),
        (
            "a withdrawal removed",
            id(&reg),
            "/withdrawals",
            json!([]),
            "registration",
        ),
        (
            "a registration re-pointed to another subject",
            id(&reg),
            "/subject_id",
            json!(DocId::random().to_string()),
            "registration",
        ),
        (
            "a code that is not in the code list",
            id(&draft),
            "/items/1-3",
            json!(9),
            "invalid",
        ),
    ];
    raw.finish();
    // One session per attempt: a relay refuses a document once per session and then keeps
    // refusing it with the same code.
    for (what, doc, pointer, value, code) in attempts {
        let bytes = forged(&docs, doc, pointer, value);
        let mut raw = RawClient::connect(&creds, &addr);
        raw.hello(automerge::ActorId::random().to_bytes());
        assert_eq!(
            raw.push(doc, bytes).as_deref(),
            Some(code),
            "{what} was not refused with {code}"
        );
        raw.finish();
    }
    let mut raw = RawClient::connect(&creds, &addr);
    raw.hello(automerge::ActorId::random().to_bytes());

    // A registration written by hand, claiming a verified card check: refused.
    let mut hand = musubi_tests::example("registration");
    hand["office"] = json!(OFFICE);
    hand["subject_id"] = json!(subject);
    let forged_reg = DocId::random();
    let author = Author {
        device: "mallory".into(),
        device_name: "mallory".into(),
        staff: None,
        action: "import".into(),
        time_ms: 1_800_000_000_000,
    };
    let mut doc = CareDoc::create(
        forged_reg,
        DocKind::Registration,
        &hand,
        automerge::ActorId::random(),
        &author,
    )
    .unwrap();
    assert_eq!(
        raw.push(forged_reg, doc.save()).as_deref(),
        Some("evidence"),
        "a hand-written registration was taken"
    );
    raw.finish();

    // Nothing of it anywhere: tablet A's next sync brings nothing new, and a fresh tablet
    // of the office receives exactly the honest documents.
    let s = a.sync_ok(&[]);
    assert_eq!(s["docs_received"], 0, "{s}");
    let c = Device::init(root, "tablet-c", OFFICE);
    let (file, code) = relay.enroll("tablet-c", Some(OFFICE), &addr);
    c.enroll(&file, &code);
    c.sync_ok(&[]);
    assert!(!c.ids().contains(&forged_reg.to_string()));
    for (i, want) in ids.iter().enumerate() {
        assert_eq!(
            c.export(want),
            honest[i],
            "{want} differs on another tablet"
        );
    }
    drop(server);
}
