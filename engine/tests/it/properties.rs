//! Property tests: any survey built from the catalog's own codes validates and round-trips
//! through automerge; out-of-range codes are refused at the right path; the validator
//! never panics on arbitrary JSON. Failing cases are persisted under proptest-regressions/
//! and committed.

use super::example;
use automerge::ActorId;
use musubi_engine::doc::{Author, CareDoc};
use musubi_engine::ids::DocId;
use musubi_engine::schema::{DocKind, ItemKind, Pointer, SurveyCatalog, validate_document};
use proptest::prelude::*;
use serde_json::{Value, json};

fn author() -> Author {
    Author {
        device: "d".into(),
        device_name: "d".into(),
        staff: None,
        action: "set".into(),
        time_ms: 0,
    }
}

/// A random but valid `items` object drawn from the catalog.
fn items_strategy() -> impl Strategy<Value = Value> {
    let catalog = SurveyCatalog::embedded().unwrap();
    let per_item: Vec<BoxedStrategy<Option<(String, Value)>>> = catalog
        .items
        .iter()
        .map(|item| {
            let key = item.key.clone();
            let codes: Vec<i64> = item.choices.iter().map(|c| c.code).collect();
            let exclusive = item.exclusive.clone();
            let s: BoxedStrategy<Value> = match item.kind {
                ItemKind::Single => proptest::sample::select(codes)
                    .prop_map(Value::from)
                    .boxed(),
                ItemKind::Multi => proptest::sample::subsequence(codes.clone(), 0..=codes.len())
                    .prop_map(move |mut set| {
                        if set.iter().any(|c| exclusive.contains(c)) {
                            set.retain(|c| exclusive.contains(c));
                        }
                        json!(set)
                    })
                    .prop_filter("1-1/1-2 need one choice", |v| {
                        v.as_array().is_some_and(|a| !a.is_empty())
                    })
                    .boxed(),
            };
            proptest::option::of(s.prop_map(move |v| (key.clone(), v))).boxed()
        })
        .collect();
    per_item.prop_map(|entries| Value::Object(entries.into_iter().flatten().collect()))
}

fn note_text() -> impl Strategy<Value = String> {
    // Any text without long digit runs (those could look like a 個人番号 and be refused).
    "[^0-9０-９]{1,80}".prop_map(|s| s)
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map("[a-z0-9_-]{1,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn generated_surveys_validate_and_round_trip(items in items_strategy(), notes in proptest::collection::vec(("[1-5]-[1-9]", note_text()), 0..4)) {
        let mut v = example("survey");
        v["items"] = items;
        v["special_notes"] = Value::Array(notes.into_iter().map(|(item, text)| json!({"item": item, "text": text})).collect());
        let (_, report) = validate_document(&v).unwrap();
        prop_assert!(report.is_ok(), "{:?}", report.issues);
        let doc = CareDoc::create(DocId::random(), DocKind::Survey, &v, ActorId::random(), &author()).unwrap();
        prop_assert_eq!(doc.to_json().unwrap(), v);
    }

    #[test]
    fn edits_land_exactly(items in items_strategy(), target in items_strategy()) {
        let mut v = example("survey");
        v["items"] = items;
        let mut doc = CareDoc::create(DocId::random(), DocKind::Survey, &v, ActorId::random(), &author()).unwrap();
        let Value::Object(target) = target else { unreachable!() };
        for (key, value) in target {
            let ptr = Pointer::parse(&format!("/items/{key}")).unwrap();
            doc.set(&ptr, &value, &author()).unwrap();
            v["items"][key.as_str()] = value;
        }
        prop_assert_eq!(doc.to_json().unwrap(), v);
    }

    #[test]
    fn out_of_range_codes_are_refused_at_their_path(idx in 0usize..100, code in 10i64..1000) {
        let catalog = SurveyCatalog::embedded().unwrap();
        let single: Vec<_> = catalog.items.iter().filter(|i| i.kind == ItemKind::Single).collect();
        let item = single[idx % single.len()];
        let mut v = example("survey");
        v["items"][item.key.as_str()] = json!(code);
        let (_, report) = validate_document(&v).unwrap();
        let paths: Vec<String> = report.errors().map(|e| e.path.clone()).collect();
        prop_assert_eq!(paths, vec![format!("/items/{}", item.key)]);
    }

    #[test]
    fn validator_never_panics_on_arbitrary_json(v in arb_json(), kind in proptest::sample::select(vec!["survey", "subject", "registration", "visit-record", "case", "x"])) {
        let mut v = v;
        if let Value::Object(m) = &mut v {
            m.insert("kind".into(), json!(kind));
        }
        let (_, report) = validate_document(&v).unwrap();
        if !v.is_object() {
            prop_assert!(!report.is_ok());
        }
    }

    #[test]
    fn validator_never_panics_inside_a_survey(v in arb_json(), field in proptest::sample::select(vec!["/subject", "/overview", "/items", "/special_notes", "/overview/services", "/items/1-1"])) {
        let mut doc = example("survey");
        *doc.pointer_mut(field).unwrap() = v;
        let _ = validate_document(&doc).unwrap();
    }
}
