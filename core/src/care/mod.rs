//! Care-domain rules (care-domain reference §1.4–1.6, §2, §3, §5): survey consistency
//! checks and workflow, 要介護認定 progress, visit-record vital signs, and the import of
//! the municipality's survey requests. Pure functions over the interchange JSON, no I/O;
//! the engine calls [`guard_import`] and [`guard_set`] on every local write.
//!
//! The rules, their sources and what is configurable are listed in docs/care-rules.md.

pub mod case;
pub mod checks;
pub mod frequency;
pub mod plan_request;
pub mod request;
pub mod visit;
pub mod workflow;

pub use checks::{Dismissal, NATIONAL_RULES, Problem, SurveyCheck, Warning, check_survey};

use crate::schema::{DocKind, Issue, Pointer, Severity};
use serde_json::Value;

/// An error of kind `code` from a domain rule (its message is already Japanese and names
/// the field).
fn issue(code: &'static str, path: &str, message: String) -> Issue {
    Issue::error(code, path, message.clone(), message)
}

/// Domain rules a new document must pass besides its schema (impossible vital signs,
/// case dates before the application). Empty when fine.
pub fn guard_import(kind: DocKind, doc: &Value) -> Vec<Issue> {
    match kind {
        DocKind::VisitRecord => visit::hard_errors(doc)
            .into_iter()
            .map(|e| issue("vital_signs", &e.path, e.message))
            .collect(),
        DocKind::Case => case::date_order_problem(doc)
            .map(|m| vec![issue("case_dates", "/phases", m)])
            .unwrap_or_default(),
        DocKind::PlanRequest => plan_request::hard_errors(doc)
            .into_iter()
            .map(|p| issue("plan_request", p.path, p.message.to_owned()))
            .collect(),
        _ => Vec::new(),
    }
}

/// Domain rules of the generic local edit path (`doc set`, the app's field edits):
/// `before` is the stored document, `candidate` the result of the edit. Adds the
/// survey lock (submitted surveys change only by amendment) to [`guard_import`].
pub fn guard_set(
    kind: DocKind,
    before: &Value,
    candidate: &Value,
    pointer: &Pointer,
) -> Vec<Issue> {
    if kind == DocKind::Survey
        && let Err(m) = workflow::guard_set(before, candidate, pointer)
    {
        return vec![issue("workflow", &pointer.to_string(), m)];
    }
    guard_import(kind, candidate)
}

/// The open (not dismissed) consistency warnings of a survey as non-blocking issues,
/// each at the path of its first item, for callers that show `Issue`s (`doc set`).
pub fn open_warnings_as_issues(survey: &Value) -> Vec<Issue> {
    check_survey(survey)
        .warnings
        .into_iter()
        .filter(|w| w.dismissed.is_none())
        .map(|w| Issue {
            severity: Severity::Warning,
            code: "survey_check",
            path: w
                .items
                .first()
                .map(|i| {
                    if i.starts_with("special_notes/") {
                        format!("/{i}")
                    } else {
                        format!("/items/{i}")
                    }
                })
                .unwrap_or_default(),
            message: format!("[{}] {}", w.items.join(", "), w.message),
            ja: format!("{}（{}）", w.message, w.items.join("・")),
        })
        .collect()
}

/// The (code, label) pairs of a code list in `schemas/codes/` (e.g. "care-level"), read
/// from the embedded schemas: labels and codes live once, in `schemas/`.
pub fn code_list(name: &str) -> Vec<(String, String)> {
    let Ok(reg) = crate::schema::Registry::embedded() else {
        return Vec::new();
    };
    let Some(node) = reg.file(&format!("codes/{name}.json")) else {
        return Vec::new();
    };
    node.schema
        .get("oneOf")
        .and_then(Value::as_array)
        .map(|alts| {
            alts.iter()
                .filter_map(|a| {
                    let code = match a.get("const")? {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    Some((code, a.get("title")?.as_str()?.to_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The label of a code in a code list, if any.
pub fn code_label(name: &str, code: &str) -> Option<String> {
    code_list(name)
        .into_iter()
        .find(|(c, _)| c == code)
        .map(|(_, l)| l)
}
