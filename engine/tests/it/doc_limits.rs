//! The per-document limits against a heavily edited survey: the limits the relay applies
//! (`sync::limits`) must leave a real survey a wide margin.

use super::example;
use automerge::ActorId;
use musubi_engine::doc::{Author, CareDoc};
use musubi_engine::ids::DocId;
use musubi_engine::schema::{DocKind, Pointer};
use musubi_engine::sync::limits::{MAX_DOC_BYTES, MAX_DOC_CHANGES};
use serde_json::Value;

fn leaves(v: &Value, path: String, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                leaves(x, format!("{path}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                leaves(x, format!("{path}/{i}"), out);
            }
        }
        other => out.push((path, other.clone())),
    }
}

/// Catches: limits that a real, heavily edited survey would hit. Three surveyors on three
/// tablets each re-enter every text field and re-answer every item ten times (each
/// answer its own change, as the app commits per field), and the long notes are
/// rewritten forty times each, growing. Measured: the changes and the bytes the relay
/// would hold for the document (changes as stored, uncompressed), and the saved size.
#[test]
fn a_heavily_edited_survey_fits_the_document_limits_with_room() {
    let json = example("survey");
    let mut paths = Vec::new();
    leaves(&json, String::new(), &mut paths);
    let author = |d: &str| Author {
        device: format!("id-{d}"),
        device_name: d.to_owned(),
        staff: Some("staff".to_owned()),
        action: "set".to_owned(),
        time_ms: 1,
    };
    let mut doc = CareDoc::create(
        DocId::random(),
        DocKind::Survey,
        &json,
        ActorId::from(vec![1u8; 16]),
        &author("a"),
    )
    .unwrap();
    let editable: Vec<&(String, Value)> = paths
        .iter()
        .filter(|(p, v)| {
            !p.starts_with("/kind") && !p.starts_with("/office") && !v.is_null() && !v.is_boolean()
        })
        .collect();
    let mut changes = 1u64;
    for surveyor in 0..3u8 {
        let mut fork = doc.fork_with_actor(ActorId::from(vec![surveyor + 2; 16]));
        let who = author(&format!("t{surveyor}"));
        for round in 0..10 {
            for (p, v) in &editable {
                let value = match v {
                    Value::String(s) if s.chars().count() > 60 => {
                        // Long notes: rewritten, growing.
                        Value::String(format!("{s}（追記{round}）"))
                    }
                    Value::String(s) => Value::String(format!("{s}{round}")),
                    other => (*other).clone(),
                };
                let ptr = Pointer::parse(p).unwrap();
                // Elements of multi-select items are set as a whole: skipped.
                if let Ok(Some(_)) = fork.set(&ptr, &value, &who) {
                    changes += 1;
                }
            }
        }
        for round in 0..40 {
            for (p, v) in editable
                .iter()
                .filter(|(_, v)| matches!(v, Value::String(s) if s.chars().count() > 60))
            {
                let Value::String(s) = v else { unreachable!() };
                let value = Value::String(format!("{s}{}", "追記あり。".repeat(round)));
                if fork
                    .set(&Pointer::parse(p).unwrap(), &value, &who)
                    .unwrap()
                    .is_some()
                {
                    changes += 1;
                }
            }
        }
        doc.merge(&mut fork).unwrap();
    }
    let am = doc.automerge().document().clone();
    let all = am.get_changes(&[]);
    let raw: u64 = all.iter().map(|c| c.raw_bytes().len() as u64).sum();
    let saved = doc.save().len() as u64;
    assert_eq!(all.len() as u64, changes);
    eprintln!(
        "heavily edited survey: {} changes, {raw} bytes of changes, saved {saved} bytes; limits {MAX_DOC_CHANGES} changes, {MAX_DOC_BYTES} bytes",
        all.len()
    );
    assert!(
        all.len() as u64 * 4 <= MAX_DOC_CHANGES,
        "changes: {}",
        all.len()
    );
    assert!(raw * 4 <= MAX_DOC_BYTES, "bytes: {raw}");
}
