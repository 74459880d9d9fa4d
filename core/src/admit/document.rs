//! The document rules of admission, over the interchange JSON of three states of one
//! document: `before` (as this store holds it; `None` when new here), `own` (the state the
//! incoming changes produce on their own history) and `merged` (stored ∪ incoming).
//!
//! They are the rules a tablet applies to its own edits (`Engine::import`, `set`,
//! `apply_edits`, `card::register`), so a document that a tablet would never write is
//! not admitted from anyone else either:
//!
//! 1. 個人番号 guard on every string (and number, and object key) of `merged` and `own`:
//!    `my_number`;
//! 2. `kind` and `office` never change: `forbidden`;
//! 3. schema hard errors and the care guards (vital signs, case dates): accepted if
//!    `merged` passes, else if `own` passes (two valid concurrent edits that merge badly
//!    are a conflict for a person to resolve, not a violation); else `invalid`,
//!    `vital_signs` or `case_dates`;
//! 4. surveys: a submitted survey changes only as `musubi survey amend` changes it (each
//!    changed field covered by a new amendment record that truthfully records the earlier
//!    value; earlier records, status, workflow and dismissals unchanged): `submitted`; an
//!    edited survey that is completed or submitted still passes the hard rules: `invalid`;
//! 5. registrations are append-only: `verification` and `subject_id` never change,
//!    earlier withdrawals stay as they are, consent is added once (not after a
//!    withdrawal) and never changed or removed: `registration`.
//!
//! A registration new to the store is judged here by its schema only; its card evidence
//! is checked by `card::evidence`. Every refusal names the field (a JSON pointer), never
//! a value.

use automerge::{Automerge, ChangeHash};
use serde_json::Value;

use crate::care::{self, checks::check_survey, workflow};
use crate::doc::{DocError, json_and_conflicts_of, json_of};
use crate::identifiers::contains_my_number;
use crate::schema::{self, DocKind, Pointer, escape_token};
use crate::sync::admission::{Admission, Admitted, Incoming, Refused};

/// Checks one document against every document rule (see the module docs). `before` is
/// the state this store holds (`None`: new here), `own` the state the incoming changes
/// produce on their own history, `merged` the state after merging them into `before`.
pub fn check_document(
    kind: DocKind,
    before: Option<&Value>,
    own: &Value,
    merged: &Value,
) -> Result<(), Refused> {
    let own_is_merged = std::ptr::eq(own, merged) || own == merged;
    if let Some(path) = my_number_path(merged) {
        return Err(Refused::at("my_number", path));
    }
    if !own_is_merged && let Some(path) = my_number_path(own) {
        return Err(Refused::at("my_number", path));
    }
    identity(kind, before, own, merged)?;
    if hard_problem(kind, merged).is_some() {
        let own_problem = if own_is_merged {
            hard_problem(kind, merged)
        } else {
            hard_problem(kind, own)
        };
        if let Some(refused) = own_problem {
            return Err(refused);
        }
    }
    let Some(before) = before else {
        return Ok(());
    };
    match kind {
        DocKind::Survey => survey_rules(before, own),
        DocKind::Registration => registration_rules(before, own),
        _ => Ok(()),
    }
}

/// The rules of [`check_document`] that a tablet's own validation (schema, care guards)
/// does not already apply, for a local write `before` → `candidate` (`before`: `None`
/// for an import): the 個人番号 guard over every value, `kind` and `office`, the survey
/// lock with the hard rules of a completed or submitted survey, append-only
/// registrations. `Engine` runs it on every write, so a tablet never writes what the
/// relay would refuse.
pub fn check_local(
    kind: DocKind,
    before: Option<&Value>,
    candidate: &Value,
) -> Result<(), Refused> {
    if let Some(path) = my_number_path(candidate) {
        return Err(Refused::at("my_number", path));
    }
    identity(kind, before, candidate, candidate)?;
    match (kind, before) {
        (DocKind::Survey, Some(b)) => survey_rules(b, candidate),
        (DocKind::Registration, Some(b)) => registration_rules(b, candidate),
        _ => Ok(()),
    }
}

/// The JSON pointer of the first string, number or object key that contains what looks
/// like a 個人番号 ([`contains_my_number`]), if any.
pub fn my_number_path(doc: &Value) -> Option<String> {
    fn walk(v: &Value, path: &mut String) -> bool {
        match v {
            Value::String(s) => contains_my_number(s),
            Value::Number(n) => contains_my_number(&n.to_string()),
            Value::Array(list) => list.iter().enumerate().any(|(i, x)| {
                let len = path.len();
                path.push('/');
                path.push_str(&i.to_string());
                let found = walk(x, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            Value::Object(map) => map.iter().any(|(k, x)| {
                let len = path.len();
                path.push('/');
                path.push_str(&escape_token(k));
                let found = contains_my_number(k) || walk(x, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            Value::Null | Value::Bool(_) => false,
        }
    }
    let mut path = String::new();
    walk(doc, &mut path).then_some(path)
}

/// `kind` and `office` are those of the stored document (or, when new, the same in `own`
/// and `merged`).
fn identity(
    kind: DocKind,
    before: Option<&Value>,
    own: &Value,
    merged: &Value,
) -> Result<(), Refused> {
    for doc in [Some(own), Some(merged), before].into_iter().flatten() {
        if doc.get("kind").and_then(Value::as_str) != Some(kind.as_str()) {
            return Err(Refused::at("forbidden", "/kind"));
        }
    }
    let office = before.unwrap_or(own).get("office");
    if own.get("office") != office || merged.get("office") != office {
        return Err(Refused::at("forbidden", "/office"));
    }
    Ok(())
}

/// The first hard problem of a document: a schema error (`invalid`), then the care guards
/// (`vital_signs`, `case_dates`).
fn hard_problem(kind: DocKind, doc: &Value) -> Option<Refused> {
    let report = match schema::validate_document(doc) {
        Ok((k, report)) if k == kind => report,
        Ok(_) => return Some(Refused::at("invalid", "/kind")),
        Err(_) => return Some(Refused::new("invalid")),
    };
    if let Some(e) = report.errors().next() {
        return Some(Refused::at("invalid", e.path.clone()));
    }
    let domain = care::guard_import(kind, doc);
    let first = domain.first()?;
    let code = match kind {
        DocKind::VisitRecord => "vital_signs",
        DocKind::Case => "case_dates",
        _ => "invalid",
    };
    Some(Refused::at(code, first.path.clone()))
}

fn array<'a>(doc: &'a Value, key: &str) -> &'a [Value] {
    doc.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The survey lock and the hard rules of a completed or submitted survey.
fn survey_rules(before: &Value, own: &Value) -> Result<(), Refused> {
    if own == before {
        return Ok(());
    }
    if workflow::Status::of(before) == workflow::Status::Submitted {
        amendments_only(before, own)?;
    }
    if workflow::Status::of(own) != workflow::Status::Draft {
        let check = check_survey(own);
        if let Some(problem) = check.errors.first() {
            let field = problem
                .items
                .first()
                .map(|i| format!("/items/{}", escape_token(i)))
                .unwrap_or_else(|| "/status".to_owned());
            let code = if workflow::Status::of(before) == workflow::Status::Submitted {
                "submitted"
            } else {
                "invalid"
            };
            return Err(Refused::at(code, field));
        }
    }
    Ok(())
}

/// A submitted survey (`before`) may have become `own` only as `workflow::amend` changes
/// it: new amendment records appended, each naming an amendable field and recording the
/// value that field had; every changed field covered by one of them.
fn amendments_only(before: &Value, own: &Value) -> Result<(), Refused> {
    let refuse = |field: String| Err(Refused::at("submitted", field));
    for field in ["status", "workflow", "dismissals"] {
        if before.get(field) != own.get(field) {
            return refuse(format!("/{field}"));
        }
    }
    let earlier = array(before, "amendments");
    let now = array(own, "amendments");
    if now.len() < earlier.len() || now[..earlier.len()] != *earlier {
        return refuse("/amendments".to_owned());
    }
    let mut covered: Vec<Vec<String>> = Vec::new();
    for (i, record) in now[earlier.len()..].iter().enumerate() {
        let at = format!("/amendments/{}/pointer", earlier.len() + i);
        let Some(pointer) = record
            .get("pointer")
            .and_then(Value::as_str)
            .and_then(|p| Pointer::parse(p).ok())
        else {
            return refuse(at);
        };
        let tokens = pointer.tokens().to_vec();
        match tokens.first() {
            Some(first) if !workflow::NOT_AMENDABLE.contains(&first.as_str()) => {}
            _ => return refuse(at),
        }
        // The record keeps the earlier value (absent when there was none), unless an
        // earlier record of this batch already touched the same place.
        let overlaps = covered
            .iter()
            .any(|c| covers(c, &tokens) || covers(&tokens, c));
        if !overlaps && record.get("before") != value_at(before, &tokens) {
            return refuse(format!("/amendments/{}/before", earlier.len() + i));
        }
        covered.push(tokens);
    }
    let strip = |doc: &Value| {
        let mut d = doc.clone();
        if let Value::Object(map) = &mut d {
            map.remove("amendments");
        }
        d
    };
    let mut changed = Vec::new();
    diff(
        Some(&strip(before)),
        Some(&strip(own)),
        &mut Vec::new(),
        &mut changed,
    );
    for path in changed {
        if !covered.iter().any(|c| covers(c, &path)) {
            let mut p = Pointer::root();
            for t in path {
                p.push(t);
            }
            return refuse(p.to_string());
        }
    }
    Ok(())
}

/// The value at a pointer's tokens (`-` and missing places: none).
fn value_at<'a>(doc: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    let mut cur = doc;
    for t in tokens {
        cur = match cur {
            Value::Object(m) => m.get(t)?,
            Value::Array(a) => a.get(t.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Whether an amendment at `pointer` covers a change at `path`: the pointer is a prefix
/// of the path (`-`, an append, stands for any list index).
fn covers(pointer: &[String], path: &[String]) -> bool {
    pointer.len() <= path.len()
        && pointer
            .iter()
            .zip(path)
            .all(|(p, q)| p == q || (p == "-" && q.parse::<usize>().is_ok()))
}

/// The places where `a` and `b` differ: a path per differing scalar, per member present
/// on one side only, per change of type.
fn diff(a: Option<&Value>, b: Option<&Value>, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match (a, b) {
        (None, None) => {}
        (Some(x), Some(y)) if x == y => {}
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            for key in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                path.push(key.clone());
                diff(x.get(key), y.get(key), path, out);
                path.pop();
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            for i in 0..x.len().max(y.len()) {
                path.push(i.to_string());
                diff(x.get(i), y.get(i), path, out);
                path.pop();
            }
        }
        _ => out.push(path.clone()),
    }
}

/// A registration is append-only: see the module docs.
fn registration_rules(before: &Value, own: &Value) -> Result<(), Refused> {
    let refuse = |field: &str| Err(Refused::at("registration", field));
    for field in ["verification", "subject_id"] {
        if before.get(field) != own.get(field) {
            return refuse(&format!("/{field}"));
        }
    }
    let earlier = array(before, "withdrawals");
    let now = array(own, "withdrawals");
    if now.len() < earlier.len() || now[..earlier.len()] != *earlier {
        return refuse("/withdrawals");
    }
    match (before.get("consent"), own.get("consent")) {
        (Some(b), Some(o)) if b == o => {}
        (Some(_), _) => return refuse("/consent"),
        (None, Some(_)) if !earlier.is_empty() => return refuse("/consent"),
        (None, _) => {}
    }
    // Nothing else may change (the schema allows no other field; this holds even if it
    // ever does).
    let known = [
        "kind",
        "office",
        "verification",
        "subject_id",
        "withdrawals",
        "consent",
    ];
    let keys = |d: &Value| {
        d.as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    for key in keys(before).into_iter().chain(keys(own)) {
        if !known.contains(&key.as_str()) && before.get(&key) != own.get(&key) {
            return refuse(&format!("/{}", escape_token(&key)));
        }
    }
    Ok(())
}

/// The document rules on an incoming automerge document: reads `stored`, `merged` at the
/// incoming heads (`own`) and `merged` as JSON and runs [`check_document`]. Nothing new
/// (no incoming heads) is nothing to check.
pub fn check_incoming(incoming: &Incoming<'_>) -> Result<(), Refused> {
    checked_merged(incoming).map(|_| ())
}

/// [`check_incoming`], giving back the merged state it read as JSON and whether that
/// state holds concurrent values (`None`: nothing new arrived), for rules that look further
/// at it and for the session's conflict report.
pub(crate) fn checked_merged(incoming: &Incoming<'_>) -> Result<Option<(Value, bool)>, Refused> {
    let kind = DocKind::parse(incoming.kind).ok_or_else(|| Refused::at("invalid", "/kind"))?;
    if incoming.own_heads.is_empty() {
        return Ok(None);
    }
    let refusal = |e: DocError| match e {
        DocError::TooDeep { field } => Refused::at("invalid", field),
        _ => Refused::new("invalid"),
    };
    let read = |doc: &Automerge| json_of(doc, kind).map_err(refusal);
    let (merged, conflicts) = json_and_conflicts_of(incoming.merged, kind).map_err(refusal)?;
    let own = if same_heads(&incoming.merged.get_heads(), incoming.own_heads) {
        None
    } else {
        let fork = incoming
            .merged
            .fork_at(incoming.own_heads)
            .map_err(|_| Refused::new("invalid"))?;
        Some(read(&fork)?)
    };
    let before = incoming.stored.map(read).transpose()?;
    check_document(
        kind,
        before.as_ref(),
        own.as_ref().unwrap_or(&merged),
        &merged,
    )?;
    Ok(Some((merged, conflicts)))
}

fn same_heads(a: &[ChangeHash], b: &[ChangeHash]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

/// The document rules alone as an [`Admission`]: [`check_incoming`] on every document.
/// It verifies no card evidence, so it never vouches for a registration
/// ([`Admitted::evidence`] stays empty: a registration admitted by it grants no sharing).
/// For tests and fuzzing of the document rules; the relay and every bundle import use
/// `admit::rules::Rules`, which adds the evidence check.
#[derive(Clone, Copy, Debug, Default)]
pub struct DocumentRules;

impl Admission for DocumentRules {
    fn admit(&self, incoming: &Incoming<'_>) -> Result<Admitted, Refused> {
        let read = checked_merged(incoming)?;
        Ok(Admitted {
            conflicts: read.map(|(_, conflicts)| conflicts),
            ..Admitted::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Synthetic values only.
    const OFFICE: &str = "1370100016";

    fn survey_example() -> Value {
        serde_json::from_str(include_str!("../../../schemas/examples/survey.json"))
            .expect("example parses")
    }

    /// A complete survey that passes the hard rules, submitted.
    fn submitted() -> Value {
        let mut s = survey_example();
        s["office"] = json!(OFFICE);
        s["status"] = json!("submitted");
        s["workflow"] = json!({
            "completed_by": "職員A", "completed_at": "2026-09-01T10:00:00+09:00",
            "submitted_by": "職員A", "submitted_at": "2026-09-02T10:00:00+09:00",
        });
        assert!(
            check_survey(&s).can_complete(),
            "{:?}",
            check_survey(&s).errors
        );
        s
    }

    fn check(kind: DocKind, before: Option<&Value>, own: &Value) -> Result<(), Refused> {
        check_document(kind, before, own, own)
    }

    fn code(r: Result<(), Refused>) -> (&'static str, Option<String>) {
        let e = r.expect_err("refused");
        (e.code, e.field)
    }

    /// Applies `amend` as the tablet does.
    fn amended(doc: &Value, pointer: &str, value: Value) -> Value {
        let edits = workflow::amend(
            doc,
            &Pointer::parse(pointer).expect("pointer"),
            value,
            "記入誤り",
            "職員B",
            "2026-09-03T10:00:00+09:00",
        )
        .expect("amend");
        let mut out = doc.clone();
        for (p, v) in edits {
            crate::doc::apply_pointer(&mut out, &p, v).expect("apply");
        }
        out
    }

    /// A registration as written before card evidence existed (shared test fixture).
    fn registration() -> Value {
        serde_json::from_str(include_str!(
            "../../../engine/tests/data/registration-without-evidence.json"
        ))
        .unwrap()
    }

    fn consent() -> Value {
        json!({
            "consented_by": "試験 花子",
            "relationship": "本人",
            "scope": ["介護情報基盤での担当事業所としての情報の閲覧"],
            "date": "2026-09-01",
            "method": "signature"
        })
    }

    // A valid 個人番号 made up for the test (check digit computed).
    fn my_number() -> String {
        let body = *b"12345678901";
        let digits: Vec<u8> = body.iter().map(|b| b - b'0').collect();
        let arr: [u8; 11] = digits.try_into().expect("11");
        format!(
            "12345678901{}",
            crate::identifiers::my_number_check_digit(&arr)
        )
    }

    #[test]
    fn a_valid_new_document_passes() {
        let s = submitted();
        check(DocKind::Survey, None, &s).expect("admitted");
        check(DocKind::Registration, None, &registration()).expect("admitted");
    }

    #[test]
    fn my_number_anywhere_is_refused_with_its_path_only() {
        let n = my_number();
        let mut s = submitted();
        s["special_notes"] = json!([{"item": "1-1", "text": format!("番号 {n}")}]);
        let (c, f) = code(check(DocKind::Survey, None, &s));
        assert_eq!(
            (c, f.as_deref()),
            ("my_number", Some("/special_notes/0/text"))
        );
        // Where the schema has no type (an amendment's earlier value), as a number too.
        let mut s = submitted();
        s["amendments"] = json!([{"pointer": "/items/1-3", "before": n.parse::<u64>().expect("digits"),
            "after": 1, "reason": "r", "by": "b", "at": "2026-09-03T10:00:00+09:00"}]);
        let (c, f) = code(check(DocKind::Survey, None, &s));
        assert_eq!(
            (c, f.as_deref()),
            ("my_number", Some("/amendments/0/before"))
        );
        // In `own` even when the merged state no longer shows it.
        let mut own = submitted();
        own["special_notes"] = json!([{"item": "1-1", "text": n}]);
        let merged = submitted();
        let r = check_document(DocKind::Survey, None, &own, &merged).expect_err("refused");
        assert_eq!(r.code, "my_number");
        assert!(!r.to_string().contains(&n));
        // An object key.
        let v = json!({"a": {n.clone(): 1}});
        assert_eq!(
            my_number_path(&v).as_deref(),
            Some(format!("/a/{n}").as_str())
        );
        assert_eq!(my_number_path(&json!({"tel": "03-1234-5678"})), None);
    }

    #[test]
    fn kind_and_office_never_change() {
        let before = submitted();
        let mut own = before.clone();
        own["office"] = json!("1370100024");
        assert_eq!(
            code(check(DocKind::Survey, Some(&before), &own)).0,
            "forbidden"
        );
        let mut own = before.clone();
        own["kind"] = json!("subject");
        assert_eq!(
            code(check(DocKind::Survey, Some(&before), &own)),
            ("forbidden", Some("/kind".to_owned()))
        );
        // New: own and merged must agree.
        let mut merged = before.clone();
        merged["office"] = json!("1370100024");
        assert_eq!(
            code(check_document(DocKind::Survey, None, &before, &merged)),
            ("forbidden", Some("/office".to_owned()))
        );
    }

    #[test]
    fn schema_errors_refused_unless_own_passes() {
        let mut bad = submitted();
        bad["items"]["1-3"] = json!(9);
        assert_eq!(
            code(check(DocKind::Survey, None, &bad)),
            ("invalid", Some("/items/1-3".to_owned()))
        );
        // Merged fails, own passes: a conflict for people, admitted.
        let mut draft = survey_example();
        draft["office"] = json!(OFFICE);
        let mut merged = draft.clone();
        merged["unknown_field"] = json!(1);
        check_document(DocKind::Survey, Some(&draft), &draft, &merged).expect("admitted");
        // Both fail: refused, naming own's problem.
        let mut own = draft.clone();
        own["items"]["1-3"] = json!(9);
        assert_eq!(
            code(check_document(DocKind::Survey, Some(&draft), &own, &merged)),
            ("invalid", Some("/items/1-3".to_owned()))
        );
    }

    #[test]
    fn care_guards_have_their_codes() {
        let mut visit: Value =
            serde_json::from_str(include_str!("../../../schemas/examples/visit-record.json"))
                .expect("example");
        visit["office"] = json!(OFFICE);
        check(DocKind::VisitRecord, None, &visit).expect("example admitted");
        visit["vitals"]["systolic_bp"] = json!(120);
        visit["vitals"]["diastolic_bp"] = json!(130);
        assert_eq!(
            code(check(DocKind::VisitRecord, None, &visit)).0,
            "vital_signs"
        );
        let mut case: Value =
            serde_json::from_str(include_str!("../../../schemas/examples/case.json"))
                .expect("example");
        case["office"] = json!(OFFICE);
        check(DocKind::Case, None, &case).expect("example admitted");
        case["application"]["date"] = json!("2099-01-01");
        let (c, f) = code(check(DocKind::Case, None, &case));
        assert_eq!((c, f.as_deref()), ("case_dates", Some("/phases")));
        // 居宅サービス計画作成依頼（変更）届出書: its consistency rules, not only its schema.
        let mut notice: Value =
            serde_json::from_str(include_str!("../../../schemas/examples/plan-request.json"))
                .expect("example");
        notice["office"] = json!(OFFICE);
        check(DocKind::PlanRequest, None, &notice).expect("example admitted");
        notice["category"] = json!("新規");
        let (c, f) = code(check(DocKind::PlanRequest, None, &notice));
        assert_eq!((c, f.as_deref()), ("invalid", Some("/change")));
    }

    #[test]
    fn a_submitted_survey_changes_only_by_amendment() {
        let before = submitted();
        // An amendment made as the tablet makes it passes, also two in a row.
        let one = amended(&before, "/items/1-3", json!(1));
        check(DocKind::Survey, Some(&before), &one).expect("amendment admitted");
        let two = amended(
            &one,
            "/special_notes/-",
            json!({"item": "1-3", "text": "訂正"}),
        );
        check(DocKind::Survey, Some(&before), &two).expect("two amendments admitted");
        check(DocKind::Survey, Some(&one), &two).expect("the second on its own");
        // A plain edit.
        let mut own = before.clone();
        own["items"]["1-3"] = json!(1);
        assert_eq!(
            code(check(DocKind::Survey, Some(&before), &own)),
            ("submitted", Some("/items/1-3".to_owned()))
        );
        // An amendment of one field plus an unrecorded edit of another.
        let mut own = one.clone();
        own["items"]["1-4"] = json!(1);
        assert_eq!(
            code(check(DocKind::Survey, Some(&before), &own)),
            ("submitted", Some("/items/1-4".to_owned()))
        );
        // Status, workflow and dismissals stay.
        for (p, v) in [
            ("status", json!("draft")),
            ("workflow", json!({})),
            ("dismissals", json!([])),
        ] {
            let mut own = before.clone();
            own[p] = v;
            assert_eq!(
                code(check(DocKind::Survey, Some(&before), &own)),
                ("submitted", Some(format!("/{p}")))
            );
        }
        // Earlier amendments stay as they are.
        let mut own = two.clone();
        own["amendments"][0]["reason"] = json!("別の理由");
        assert_eq!(
            code(check(DocKind::Survey, Some(&one), &own)),
            ("submitted", Some("/amendments".to_owned()))
        );
        let mut own = two.clone();
        own["amendments"].as_array_mut().expect("list").remove(0);
        assert_eq!(
            code(check(DocKind::Survey, Some(&one), &own)).0,
            "submitted"
        );
        // A record that lies about the earlier value.
        let mut own = one.clone();
        own["amendments"][0]["before"] = json!(4);
        assert_eq!(
            code(check(DocKind::Survey, Some(&before), &own)),
            ("submitted", Some("/amendments/0/before".to_owned()))
        );
        // A record naming a field that cannot be amended.
        let mut own = before.clone();
        own["amendments"] = json!([{"pointer": "/status", "before": "submitted", "after": "draft",
            "reason": "r", "by": "b", "at": "2026-09-03T10:00:00+09:00"}]);
        assert_eq!(
            code(check(DocKind::Survey, Some(&before), &own)),
            ("submitted", Some("/amendments/0/pointer".to_owned()))
        );
        // An amendment that breaks the hard rules.
        let mut own = before.clone();
        own["items"].as_object_mut().expect("items").remove("2-4");
        own["amendments"] = json!([{"pointer": "/items/2-4", "before": before["items"]["2-4"],
            "reason": "r", "by": "b", "at": "2026-09-03T10:00:00+09:00"}]);
        assert_eq!(
            code(check(DocKind::Survey, Some(&before), &own)),
            ("submitted", Some("/items/2-4".to_owned()))
        );
        // A draft is edited freely.
        let mut draft = survey_example();
        draft["office"] = json!(OFFICE);
        let mut own = draft.clone();
        own["items"]["1-3"] = json!(1);
        check(DocKind::Survey, Some(&draft), &own).expect("draft edit admitted");
    }

    #[test]
    fn a_completed_survey_keeps_passing_the_hard_rules() {
        let mut before = submitted();
        before["status"] = json!("completed");
        let mut own = before.clone();
        own["items"].as_object_mut().expect("items").remove("2-4");
        assert_eq!(
            code(check(DocKind::Survey, Some(&before), &own)),
            ("invalid", Some("/items/2-4".to_owned()))
        );
        // Reopened (draft) it may.
        own["status"] = json!("draft");
        check(DocKind::Survey, Some(&before), &own).expect("reopened and edited");
    }

    #[test]
    fn registrations_are_append_only() {
        let before = registration();
        // Consent added, then a withdrawal appended: the tablet's two edits.
        let mut with_consent = before.clone();
        with_consent["consent"] = consent();
        check(DocKind::Registration, Some(&before), &with_consent).expect("consent");
        let mut withdrawn = with_consent.clone();
        withdrawn["withdrawals"] = json!([{"date": "2026-10-01"}]);
        check(DocKind::Registration, Some(&with_consent), &withdrawn).expect("withdrawal");
        check(DocKind::Registration, Some(&before), &withdrawn).expect("both");
        let mut twice = withdrawn.clone();
        twice["withdrawals"] = json!([{"date": "2026-10-01"}, {"date": "2026-10-02"}]);
        check(DocKind::Registration, Some(&withdrawn), &twice).expect("second withdrawal");

        let refused = |b: &Value, o: &Value| code(check(DocKind::Registration, Some(b), o));
        let mut own = before.clone();
        own["verification"]["result"] = json!("failed");
        assert_eq!(
            refused(&before, &own),
            ("registration", Some("/verification".to_owned()))
        );
        let mut own = before.clone();
        own["verification"]["staff"] = json!("誰か");
        assert_eq!(refused(&before, &own).1.as_deref(), Some("/verification"));
        let mut own = before.clone();
        own["subject_id"] = json!("00000000000000000000000000000001");
        assert_eq!(
            refused(&before, &own),
            ("registration", Some("/subject_id".to_owned()))
        );
        // Withdrawals are never removed or changed.
        let mut own = withdrawn.clone();
        own["withdrawals"] = json!([]);
        assert_eq!(
            refused(&withdrawn, &own),
            ("registration", Some("/withdrawals".to_owned()))
        );
        let mut own = withdrawn.clone();
        own["withdrawals"][0]["date"] = json!("2026-10-05");
        assert_eq!(refused(&withdrawn, &own).1.as_deref(), Some("/withdrawals"));
        // Consent is never changed or removed, nor added after a withdrawal.
        let mut own = with_consent.clone();
        own["consent"]["method"] = json!("verbal");
        assert_eq!(
            refused(&with_consent, &own),
            ("registration", Some("/consent".to_owned()))
        );
        let mut own = with_consent.clone();
        own.as_object_mut().expect("object").remove("consent");
        assert_eq!(refused(&with_consent, &own).1.as_deref(), Some("/consent"));
        let mut only_withdrawn = before.clone();
        only_withdrawn["withdrawals"] = json!([{"date": "2026-10-01"}]);
        let mut own = only_withdrawn.clone();
        own["consent"] = consent();
        assert_eq!(
            refused(&only_withdrawn, &own).1.as_deref(),
            Some("/consent")
        );
        // A new registration is judged by its schema only here.
        let mut bad = registration();
        bad["verification"]["result"] = json!("maybe");
        assert_eq!(code(check(DocKind::Registration, None, &bad)).0, "invalid");
    }
}

#[cfg(test)]
mod incoming_tests {
    use super::*;
    use crate::doc::{Author, CareDoc};
    use crate::ids::DocId;
    use crate::sync::admission::{Uploader, incoming_heads};
    use automerge::ActorId;
    use serde_json::json;

    fn author() -> Author {
        Author {
            device: "id-x".to_owned(),
            device_name: "x".to_owned(),
            staff: None,
            action: "set".to_owned(),
            time_ms: 1,
        }
    }

    fn am(doc: &mut CareDoc) -> Automerge {
        Automerge::load(&doc.save()).expect("loads")
    }

    fn set(doc: &mut CareDoc, p: &str, v: Value) {
        doc.set(&Pointer::parse(p).expect("pointer"), &v, &author())
            .expect("set")
            .expect("changed");
    }

    /// Admits `theirs` into a store holding `ours` (None: new), as a relay or bundle does.
    fn admit(ours: Option<&mut CareDoc>, theirs: &mut CareDoc) -> Result<(), Refused> {
        let kind = theirs.kind().as_str();
        let stored = ours.map(am);
        let mut merged = stored.clone().unwrap_or_default();
        merged.merge(&mut am(theirs)).expect("merges");
        let own_heads = incoming_heads(stored.as_ref(), &merged);
        DocumentRules
            .admit(&Incoming {
                id: theirs.id(),
                kind,
                office: "1370100016",
                uploader: Uploader::TabletBundle,
                stored: stored.as_ref(),
                merged: &merged,
                own_heads: &own_heads,
            })
            .map(|_| ())
    }

    fn visit() -> CareDoc {
        let mut v: Value =
            serde_json::from_str(include_str!("../../../schemas/examples/visit-record.json"))
                .expect("example");
        v["office"] = json!("1370100016");
        CareDoc::create(
            DocId::random(),
            DocKind::VisitRecord,
            &v,
            ActorId::random(),
            &author(),
        )
        .expect("create")
    }

    #[test]
    fn new_and_unchanged_documents() {
        let mut a = visit();
        admit(None, &mut a).expect("a valid new document");
        let mut same = a.fork_with_actor(ActorId::random());
        admit(Some(&mut a), &mut same).expect("nothing new");
        let mut bad = a.fork_with_actor(ActorId::random());
        set(&mut bad, "/vitals/pulse", json!(400));
        assert_eq!(admit(None, &mut bad).map_err(|r| r.code), Err("invalid"));
    }

    #[test]
    fn valid_concurrent_edits_that_merge_badly_are_admitted() {
        // Stored: systolic lowered to 100 (diastolic 78). Incoming, concurrently:
        // diastolic raised to 110 (systolic 138). Each is possible; together they are not.
        let mut base = visit();
        let mut ours = base.fork_with_actor(ActorId::random());
        let mut theirs = base.fork_with_actor(ActorId::random());
        set(&mut ours, "/vitals/systolic_bp", json!(100));
        set(&mut theirs, "/vitals/diastolic_bp", json!(110));
        admit(Some(&mut ours), &mut theirs).expect("a conflict for people, not a violation");
        // Impossible on its own history: refused.
        set(&mut theirs, "/vitals/systolic_bp", json!(105));
        assert_eq!(
            admit(Some(&mut ours), &mut theirs).map_err(|r| r.code),
            Err("vital_signs")
        );
    }

    #[test]
    fn an_edit_of_the_draft_arriving_after_submission_is_refused() {
        let mut s: Value =
            serde_json::from_str(include_str!("../../../schemas/examples/survey.json"))
                .expect("example");
        s["office"] = json!("1370100016");
        let mut base = CareDoc::create(
            DocId::random(),
            DocKind::Survey,
            &s,
            ActorId::random(),
            &author(),
        )
        .expect("create");
        let mut offline = base.fork_with_actor(ActorId::random());
        set(&mut base, "/status", json!("submitted"));
        set(&mut offline, "/items/1-3", json!(1));
        let r = admit(Some(&mut base), &mut offline).expect_err("refused");
        assert_eq!((r.code, r.field.as_deref()), ("submitted", Some("/status")));
    }
}
