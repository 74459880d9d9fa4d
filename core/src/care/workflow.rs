//! The survey workflow: draft → completed (hard rules pass) → submitted (locked).
//! After submission the only local edit path is an amendment that records the earlier
//! value, the reason, who and when in the document itself.
//!
//! Pure functions: they read the current interchange JSON and return the edits to make
//! (pointer, value). The engine validates the resulting document and writes the edits
//! as one batch. Sync merges are not refused (a CRDT cannot refuse a peer's change); the
//! lock holds for every local edit path (`doc set`, the app, `survey amend`).

use super::checks::check_survey;
use crate::schema::Pointer;
use serde_json::{Value, json};

/// The state of a survey.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// 作成中.
    Draft,
    /// 調査完了.
    Completed,
    /// 提出済み (locked).
    Submitted,
}

impl Status {
    /// The state recorded in a survey (absent = draft).
    pub fn of(doc: &Value) -> Status {
        match doc.get("status").and_then(Value::as_str) {
            Some("completed") => Status::Completed,
            Some("submitted") => Status::Submitted,
            _ => Status::Draft,
        }
    }

    /// The stored value.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Completed => "completed",
            Status::Submitted => "submitted",
        }
    }

    /// The Japanese label.
    pub fn label(self) -> &'static str {
        match self {
            Status::Draft => "作成中",
            Status::Completed => "調査完了",
            Status::Submitted => "提出済み",
        }
    }
}

/// Why a workflow step was refused. Messages are Japanese and name fields, never values,
/// and name no command: the command line and the app add their own hints.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    /// The survey is not in the state the step needs.
    #[error("{0}")]
    WrongState(String),
    /// Hard rules fail; the problems are listed.
    #[error("必須の確認でエラーが{count}件あります")]
    HardRules {
        /// Number of hard problems.
        count: usize,
    },
    /// The field may not be changed this way.
    #[error("{0}")]
    Refused(String),
    /// No such warning to dismiss.
    #[error("{0}")]
    NoSuchWarning(String),
}

/// One edit: set `pointer` to `value`.
pub type Edit = (Pointer, Value);

fn ptr(s: &str) -> Pointer {
    // Only called with the constant pointers of this module.
    Pointer::parse(s).unwrap_or_else(|_| Pointer::root())
}

/// Top-level fields that only the workflow commands write.
pub const WORKFLOW_FIELDS: &[&str] = &["status", "workflow", "amendments", "dismissals"];

/// Fields an amendment may not touch (identity of the document and the workflow record).
pub const NOT_AMENDABLE: &[&str] = &[
    "kind",
    "office",
    "status",
    "workflow",
    "amendments",
    "dismissals",
];

fn workflow_with(doc: &Value, fields: &[(&str, &str)]) -> Value {
    let mut w = doc
        .get("workflow")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (k, v) in fields {
        w.insert((*k).to_owned(), Value::String((*v).to_owned()));
    }
    Value::Object(w)
}

/// draft → completed, when the hard rules pass.
pub fn complete(doc: &Value, by: &str, at: &str) -> Result<Vec<Edit>, WorkflowError> {
    match Status::of(doc) {
        Status::Draft => {}
        s => {
            return Err(WorkflowError::WrongState(format!(
                "この調査票はすでに「{}」です",
                s.label()
            )));
        }
    }
    let check = check_survey(doc);
    if !check.can_complete() {
        return Err(WorkflowError::HardRules {
            count: check.errors.len(),
        });
    }
    Ok(vec![
        (ptr("/status"), json!("completed")),
        (
            ptr("/workflow"),
            workflow_with(doc, &[("completed_by", by), ("completed_at", at)]),
        ),
    ])
}

/// completed → draft (to correct before submission).
pub fn reopen(doc: &Value) -> Result<Vec<Edit>, WorkflowError> {
    match Status::of(doc) {
        Status::Completed => Ok(vec![(ptr("/status"), json!("draft"))]),
        s => Err(WorkflowError::WrongState(format!(
            "「{}」の調査票は作成中に戻せません（提出後は訂正 musubi survey amend を使います）",
            s.label()
        ))),
    }
}

/// completed → submitted (locked); the hard rules are checked again.
pub fn submit(doc: &Value, by: &str, at: &str) -> Result<Vec<Edit>, WorkflowError> {
    match Status::of(doc) {
        Status::Completed => {}
        Status::Draft => {
            return Err(WorkflowError::WrongState(
                "作成中の調査票は提出できません。先に調査完了にしてください".to_owned(),
            ));
        }
        Status::Submitted => {
            return Err(WorkflowError::WrongState(
                "この調査票はすでに提出済みです".to_owned(),
            ));
        }
    }
    let check = check_survey(doc);
    if !check.can_complete() {
        return Err(WorkflowError::HardRules {
            count: check.errors.len(),
        });
    }
    Ok(vec![
        (ptr("/status"), json!("submitted")),
        (
            ptr("/workflow"),
            workflow_with(doc, &[("submitted_by", by), ("submitted_at", at)]),
        ),
    ])
}

/// The current value at a pointer (None when absent). `-` (append) is absent.
fn value_at<'a>(doc: &'a Value, pointer: &Pointer) -> Option<&'a Value> {
    let mut cur = doc;
    for t in pointer.tokens() {
        cur = match cur {
            Value::Object(m) => m.get(t)?,
            Value::Array(a) => a.get(t.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// A correction of a submitted survey: sets the field and appends a record with the
/// earlier value to `/amendments`. The survey stays submitted; the engine checks the
/// resulting document against the schema and the caller against the hard rules.
pub fn amend(
    doc: &Value,
    pointer: &Pointer,
    value: Value,
    reason: &str,
    by: &str,
    at: &str,
) -> Result<Vec<Edit>, WorkflowError> {
    if Status::of(doc) != Status::Submitted {
        return Err(WorkflowError::WrongState(
            "訂正は提出済みの調査票だけに使います。作成中・調査完了の調査票はそのまま修正できます"
                .to_owned(),
        ));
    }
    let first = pointer.tokens().first().map(String::as_str);
    match first {
        None => {
            return Err(WorkflowError::Refused(
                "訂正する項目（JSON ポインタ）を指定してください".to_owned(),
            ));
        }
        Some(f) if NOT_AMENDABLE.contains(&f) => {
            return Err(WorkflowError::Refused(format!(
                "{pointer} は訂正できません（文書の種類・状態・記録の欄です）"
            )));
        }
        _ => {}
    }
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(WorkflowError::Refused(
            "訂正理由を入力してください".to_owned(),
        ));
    }
    let before = value_at(doc, pointer).cloned();
    if before.as_ref() == Some(&value) {
        return Err(WorkflowError::Refused(format!(
            "{pointer} はすでにその値です（訂正なし）"
        )));
    }
    let mut record = serde_json::Map::new();
    record.insert("pointer".to_owned(), json!(pointer.to_string()));
    if let Some(b) = before {
        record.insert("before".to_owned(), b);
    }
    record.insert("after".to_owned(), value.clone());
    record.insert("reason".to_owned(), json!(reason));
    record.insert("by".to_owned(), json!(by));
    record.insert("at".to_owned(), json!(at));
    let record = Value::Object(record);
    let mut candidate = doc.clone();
    crate::doc::apply_pointer(&mut candidate, pointer, value.clone())
        .map_err(|reason| WorkflowError::Refused(format!("{pointer}: {reason}")))?;
    let check = check_survey(&candidate);
    if !check.can_complete() {
        return Err(WorkflowError::HardRules {
            count: check.errors.len(),
        });
    }
    let log_edit = if doc.get("amendments").is_some_and(Value::is_array) {
        (ptr("/amendments/-"), record)
    } else {
        (ptr("/amendments"), Value::Array(vec![record]))
    };
    Ok(vec![(pointer.clone(), value), log_edit])
}

/// Records that someone checked a warning and found it fine. `items` picks one warning
/// when several share a code; when `None`, the code must be unambiguous.
pub fn dismiss(
    doc: &Value,
    code: &str,
    items: Option<&[String]>,
    reason: &str,
    by: &str,
    at: &str,
) -> Result<Vec<Edit>, WorkflowError> {
    if Status::of(doc) == Status::Submitted {
        return Err(WorkflowError::WrongState(
            "提出済みの調査票は変更できません".to_owned(),
        ));
    }
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(WorkflowError::Refused(
            "確認済みにする理由を入力してください".to_owned(),
        ));
    }
    let check = check_survey(doc);
    let matches: Vec<_> = check
        .warnings
        .iter()
        .filter(|w| w.code == code)
        .filter(|w| {
            items.is_none_or(|want| {
                want.len() == w.items.len() && want.iter().all(|i| w.items.contains(i))
            })
        })
        .collect();
    let w = match matches.as_slice() {
        [] => {
            return Err(WorkflowError::NoSuchWarning(format!(
                "警告コード{code}の警告は現在出ていません"
            )));
        }
        [one] => *one,
        _ => {
            return Err(WorkflowError::NoSuchWarning(format!(
                "警告コード{code}の警告が複数あります。--items で項目番号を指定してください"
            )));
        }
    };
    if w.dismissed.is_some() {
        return Err(WorkflowError::Refused(format!(
            "警告コード{code}はすでに確認済みです"
        )));
    }
    let record = json!({
        "code": w.code,
        "items": w.items,
        "reason": reason,
        "by": by,
        "at": at,
    });
    let edit = if doc.get("dismissals").is_some_and(Value::is_array) {
        (ptr("/dismissals/-"), record)
    } else {
        (ptr("/dismissals"), Value::Array(vec![record]))
    };
    Ok(vec![edit])
}

/// The guard of the generic local edit path (`doc set`, the app's field edits) for a
/// survey: refuses any change to a submitted survey, changes to the workflow fields, and
/// edits of a completed survey that would break the hard rules.
pub fn guard_set(before: &Value, candidate: &Value, pointer: &Pointer) -> Result<(), String> {
    let status = Status::of(before);
    if status == Status::Submitted {
        return Err(
            "提出済みの調査票は変更できません。訂正は musubi survey amend ID POINTER VALUE --reason 理由 で行います"
                .to_owned(),
        );
    }
    if let Some(first) = pointer.tokens().first()
        && WORKFLOW_FIELDS.contains(&first.as_str())
    {
        return Err(format!(
            "/{first} は musubi survey complete / submit / dismiss / amend だけが書き込みます"
        ));
    }
    if status == Status::Completed && !check_survey(candidate).can_complete() {
        return Err(
            "調査完了の調査票を必須の確認に通らない状態にはできません（作成中に戻すには musubi survey reopen）"
                .to_owned(),
        );
    }
    Ok(())
}

/// The lock for batch edits (`Engine::apply_edits`): a submitted survey accepts only the
/// `amend` action. Returns the refusal message, if any.
pub fn guard_batch(kind: crate::schema::DocKind, before: &Value, action: &str) -> Option<String> {
    (kind == crate::schema::DocKind::Survey
        && Status::of(before) == Status::Submitted
        && action != "amend")
        .then(|| {
            "提出済みの調査票は変更できません。訂正は musubi survey amend で行います".to_owned()
        })
}
