//! Two tablets with their own encrypted stores edit the same survey offline; merging the
//! copies converges, keeps both competing values with their device and staff, and the
//! audit history of the merged document shows every edit with its origin.

#![allow(clippy::unwrap_used)]

use musubi_engine::schema::Pointer;
use musubi_tests::{example, tablet};
use serde_json::json;

#[test]
fn offline_edits_on_two_tablets_merge_with_conflict_and_history() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tablet(&tmp.path().join("a"), "1370100016", "tablet-a", "佐藤");
    let b = tablet(&tmp.path().join("b"), "1370100016", "tablet-b", "鈴木");

    let mut survey = example("survey");
    survey["items"]["1-3"] = json!(1);
    let id = a
        .import(&[("survey.json".into(), survey)], 1_000)
        .unwrap()
        .ids[0];
    // Hand the document to B (later issues do this over QUIC; here: a copy of the bytes).
    let mut copy = a.load(id).unwrap();
    let chunk = copy.snapshot();
    b.store()
        .insert_docs(vec![musubi_engine::store::NewDoc {
            id,
            kind: "survey".into(),
            office: "1370100016".into(),
            title: copy.title(),
            bytes: chunk,
            keys: None,
        }])
        .unwrap();

    let p = Pointer::parse("/items/1-3").unwrap();
    a.set(id, &p, json!(2), 2_000).unwrap();
    b.set(id, &p, json!(3), 3_000).unwrap();
    b.set(
        id,
        &Pointer::parse("/special_notes/-").unwrap(),
        json!({"item": "1-3", "text": "夜間は柵を使う。"}),
        3_500,
    )
    .unwrap();

    let mut from_b = b.load(id).unwrap();
    let mut from_a = a.load(id).unwrap();
    assert!(a.merge_from(&mut from_b).unwrap() >= 2);
    assert!(b.merge_from(&mut from_a).unwrap() >= 1);
    assert_eq!(a.export(id).unwrap(), b.export(id).unwrap(), "converged");

    let conflicts = a.conflicts(id).unwrap();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].path, "/items/1-3");
    let mut devices: Vec<(String, Option<String>, serde_json::Value)> = conflicts[0]
        .values
        .iter()
        .map(|v| (v.device.clone(), v.staff.clone(), v.value.clone()))
        .collect();
    devices.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        devices,
        vec![
            ("tablet-a".into(), Some("佐藤".into()), json!(2)),
            ("tablet-b".into(), Some("鈴木".into()), json!(3)),
        ]
    );

    let history = a.history(id).unwrap();
    let origins: Vec<(&str, i64)> = history
        .iter()
        .map(|h| (h.origin.device_name.as_str(), h.origin.time_ms))
        .collect();
    for expected in [
        ("tablet-a", 1_000),
        ("tablet-a", 2_000),
        ("tablet-b", 3_000),
        ("tablet-b", 3_500),
    ] {
        assert!(origins.contains(&expected), "{expected:?} in {origins:?}");
    }
    // Both stores survive a reopen with the merged state (durable).
    let merged = a.export(id).unwrap();
    a.close().unwrap();
    let pass = musubi_engine::store::SecretString::from("test passphrase".to_owned());
    let reopened = musubi_engine::Engine::new(
        musubi_engine::store::Store::open(&tmp.path().join("a"), &pass).unwrap(),
        None,
    )
    .unwrap();
    assert_eq!(reopened.export(id).unwrap(), merged);
    assert_eq!(reopened.conflicts(id).unwrap().len(), 1);
}
