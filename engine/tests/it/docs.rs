//! Documents over automerge: round trips of every kind, minimal edits, sets and texts
//! that merge, conflicts with their device, history.

use super::example;
use automerge::ActorId;
use musubi_engine::doc::{Author, CareDoc};
use musubi_engine::ids::DocId;
use musubi_engine::schema::{DocKind, Pointer, validate_document};
use serde_json::json;

fn author(device: &str, staff: &str, t: i64) -> Author {
    Author {
        device: format!("id-{device}"),
        device_name: device.to_owned(),
        staff: Some(staff.to_owned()),
        action: "set".to_owned(),
        time_ms: t,
    }
}

fn actor(b: u8) -> ActorId {
    ActorId::from(vec![b; 16])
}

#[test]
fn every_example_is_valid_and_round_trips() {
    for kind in DocKind::ALL {
        let v = example(kind.as_str());
        let (k, report) = validate_document(&v).unwrap();
        assert_eq!(k, kind);
        assert!(report.is_ok(), "{kind:?}: {:?}", report.issues);
        let mut doc =
            CareDoc::create(DocId::random(), kind, &v, actor(1), &author("a", "s", 1)).unwrap();
        assert_eq!(doc.to_json().unwrap(), v, "{kind:?} round-trips");
        // Through save/load as well.
        let bytes = doc.save();
        let loaded = CareDoc::load(doc.id(), &[bytes], actor(2)).unwrap();
        assert_eq!(loaded.kind(), kind);
        assert_eq!(loaded.to_json().unwrap(), v);
    }
}

#[test]
fn concurrent_edits_of_one_item_are_a_conflict_with_both_devices() {
    let mut v = example("survey");
    v["items"]["1-3"] = json!(1);
    let mut a = CareDoc::create(
        DocId::random(),
        DocKind::Survey,
        &v,
        actor(1),
        &author("a", "佐藤", 1_000),
    )
    .unwrap();
    let mut b = a.fork_with_actor(actor(2));
    a.set(
        &Pointer::parse("/items/1-3").unwrap(),
        &json!(2),
        &author("a", "佐藤", 2_000),
    )
    .unwrap();
    b.set(
        &Pointer::parse("/items/1-3").unwrap(),
        &json!(3),
        &author("b", "鈴木", 3_000),
    )
    .unwrap();
    a.merge(&mut b).unwrap();
    b.merge(&mut a).unwrap();
    assert_eq!(a.to_json().unwrap(), b.to_json().unwrap(), "converged");
    let conflicts = a.conflicts().unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let c = &conflicts[0];
    assert_eq!(c.path, "/items/1-3");
    let mut seen: Vec<(i64, &str, Option<&str>)> = c
        .values
        .iter()
        .map(|v| {
            (
                v.value.as_i64().unwrap(),
                v.device.as_str(),
                v.staff.as_deref(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(seen, vec![(2, "a", Some("佐藤")), (3, "b", Some("鈴木"))]);
    assert_eq!(c.values.iter().filter(|v| v.current).count(), 1);
    let shown = a.to_json().unwrap()["items"]["1-3"].clone();
    assert_eq!(c.values.iter().find(|v| v.current).unwrap().value, shown);
    // Resolving is an ordinary edit, even when the chosen value is the one shown now:
    // afterwards no conflict, on both devices once they have merged.
    a.set(
        &Pointer::parse("/items/1-3").unwrap(),
        &shown,
        &author("office", "管理者", 4_000),
    )
    .unwrap()
    .expect("resolving records a change");
    assert!(a.conflicts().unwrap().is_empty());
    b.merge(&mut a).unwrap();
    assert!(b.conflicts().unwrap().is_empty());
    assert_eq!(b.to_json().unwrap()["items"]["1-3"], shown);
}

#[test]
fn multi_select_choices_merge_as_a_set() {
    let mut v = example("survey");
    v["items"]["1-1"] = json!([2]);
    let mut a = CareDoc::create(
        DocId::random(),
        DocKind::Survey,
        &v,
        actor(1),
        &author("a", "s", 1),
    )
    .unwrap();
    let mut b = a.fork_with_actor(actor(2));
    a.set(
        &Pointer::parse("/items/1-1").unwrap(),
        &json!([2, 4]),
        &author("a", "s", 2),
    )
    .unwrap();
    b.set(
        &Pointer::parse("/items/1-1").unwrap(),
        &json!([2, 5]),
        &author("b", "s", 3),
    )
    .unwrap();
    a.merge(&mut b).unwrap();
    assert_eq!(a.to_json().unwrap()["items"]["1-1"], json!([2, 4, 5]));
    assert!(a.conflicts().unwrap().is_empty());
}

#[test]
fn concurrent_typing_in_a_note_keeps_every_character() {
    let mut v = example("survey");
    v["special_notes"] = json!([{"item": "1-3", "text": "寝返りは自立。"}]);
    let mut a = CareDoc::create(
        DocId::random(),
        DocKind::Survey,
        &v,
        actor(1),
        &author("a", "s", 1),
    )
    .unwrap();
    let mut b = a.fork_with_actor(actor(2));
    let p = Pointer::parse("/special_notes/0/text").unwrap();
    a.set(&p, &json!("朝は寝返りは自立。"), &author("a", "s", 2))
        .unwrap();
    b.set(
        &p,
        &json!("寝返りは自立。夜間は柵を使用。"),
        &author("b", "s", 3),
    )
    .unwrap();
    a.merge(&mut b).unwrap();
    assert_eq!(
        a.to_json().unwrap()["special_notes"][0]["text"],
        "朝は寝返りは自立。夜間は柵を使用。"
    );
    // Two devices adding notes at once: both survive.
    let mut c = a.fork_with_actor(actor(3));
    a.set(
        &Pointer::parse("/special_notes/-").unwrap(),
        &json!({"item": "2-1", "text": "A"}),
        &author("a", "s", 4),
    )
    .unwrap();
    c.set(
        &Pointer::parse("/special_notes/-").unwrap(),
        &json!({"item": "2-2", "text": "C"}),
        &author("c", "s", 5),
    )
    .unwrap();
    a.merge(&mut c).unwrap();
    assert_eq!(
        a.to_json().unwrap()["special_notes"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn setting_the_same_value_makes_no_change_and_history_records_each_edit() {
    let v = example("survey");
    let mut a = CareDoc::create(
        DocId::random(),
        DocKind::Survey,
        &v,
        actor(1),
        &author("a", "佐藤", 10),
    )
    .unwrap();
    let same = v["items"]["1-3"].clone();
    assert!(
        a.set(
            &Pointer::parse("/items/1-3").unwrap(),
            &same,
            &author("a", "佐藤", 11)
        )
        .unwrap()
        .is_none()
    );
    let other = if same == json!(1) { json!(2) } else { json!(1) };
    assert!(
        a.set(
            &Pointer::parse("/items/1-3").unwrap(),
            &other,
            &author("a", "佐藤", 12)
        )
        .unwrap()
        .is_some()
    );
    let h = a.history().unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[1].origin.time_ms, 12);
    assert_eq!(h[1].origin.staff.as_deref(), Some("佐藤"));
    assert_eq!(h[1].fields.len(), 1);
    assert_eq!(h[1].fields[0].path, "/items/1-3");
    assert_eq!(h[1].fields[0].before, Some(same));
    assert_eq!(h[1].fields[0].after, Some(other));
}

#[test]
fn debug_output_never_shows_content() {
    let v = example("survey");
    let doc = CareDoc::create(
        DocId::random(),
        DocKind::Survey,
        &v,
        actor(1),
        &author("a", "s", 1),
    )
    .unwrap();
    let dbg = format!("{doc:?}");
    let name = v["subject"]["name"].as_str().unwrap();
    assert!(!dbg.contains(name));
}
