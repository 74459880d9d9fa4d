//! Office work, once for the command line and the app: the 認定調査票 as PDF or CSV, the
//! municipality's request file, the survey workflow steps and the progress of a case.
//! The rules live in `musubi_engine::care` and `musubi_engine::export`; this module loads
//! what they need from the store, writes what they decide, and says what was wrong in
//! Japanese ([`OfficeError::Input`]) so both front ends show the same sentence.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use musubi_engine::care::case;
use musubi_engine::care::request::{self, Request};
use musubi_engine::care::workflow::{self, WorkflowError};
use musubi_engine::date::CalendarDate;
use musubi_engine::export::csv::{Encoding, export_csv_with_cases};
use musubi_engine::export::pdf::{
    PdfLayout, PdfOutput, export_pdf_with_layout, export_plan_request_pdf,
};
use musubi_engine::export::{ExportError, Labels};
use musubi_engine::fsutil::{self, Existing};
use musubi_engine::ids::DocId;
use musubi_engine::schema::{DocKind, Pointer};
use musubi_engine::{Engine, EngineError};
use serde_json::{Value, json};

/// IPAexGothic (IPA Font License, see app/assets/fonts/), compiled in once: embedded as a
/// subset in PDFs, and the font the app draws its screens with.
pub const FONT: &[u8] = include_bytes!("../assets/fonts/ipaexg.ttf");

/// Why office work was refused or failed. Nothing was written in any case.
#[derive(Debug, thiserror::Error)]
pub enum OfficeError {
    /// The input was wrong: a Japanese sentence that names the field or row, never its
    /// value.
    #[error("{0}")]
    Input(String),
    /// A survey workflow step refused (wrong status, hard rules, no reason …): a
    /// Japanese sentence, like [`OfficeError::Input`].
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    /// The store or a document (boxed: an engine error is large, office errors are passed
    /// around often).
    #[error(transparent)]
    Engine(Box<EngineError>),
    /// Rendering the PDF or CSV.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// Reading or writing a file (the path is named; the contents never).
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl From<EngineError> for OfficeError {
    fn from(e: EngineError) -> Self {
        OfficeError::Engine(Box::new(e))
    }
}

/// Now, in milliseconds since the epoch (the engine's time stamps).
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn pointer(p: &str) -> Result<Pointer, OfficeError> {
    Pointer::parse(p).map_err(|e| OfficeError::Input(e.to_string()))
}

/// The JSON of document `id`, which must be of kind `want` (else refused, naming both
/// kinds in Japanese).
pub fn load_kind(engine: &Engine, id: DocId, want: DocKind) -> Result<Value, OfficeError> {
    let doc = engine.load(id)?;
    if doc.kind() != want {
        return Err(OfficeError::Input(format!(
            "{id} は{}ではありません（{}）",
            want.label(),
            doc.kind().label()
        )));
    }
    Ok(doc.to_json().map_err(EngineError::from)?)
}

/// The PDF of a survey (認定調査票) or of a 居宅サービス計画作成依頼（変更）届出書, which prints
/// its person from the subject document.
pub fn pdf(engine: &Engine, id: DocId, layout: PdfLayout) -> Result<PdfOutput, OfficeError> {
    let json = engine.export(id)?;
    let labels = Labels::embedded()?;
    if json.get("kind").and_then(Value::as_str) == Some(DocKind::PlanRequest.as_str()) {
        let subject_id = json
            .get("subject_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .parse::<DocId>()
            .map_err(|_| {
                OfficeError::Input(format!(
                    "{id}: subject_id（被保険者）が文書IDではありません"
                ))
            })?;
        let subject = engine.export(subject_id).map_err(|e| {
            OfficeError::Input(format!(
                "{id}: 被保険者の文書 {subject_id} を読めません（{e}）"
            ))
        })?;
        return Ok(export_plan_request_pdf(
            &labels,
            &id.to_string(),
            &json,
            &subject,
            FONT,
        )?);
    }
    Ok(export_pdf_with_layout(
        &labels,
        &id.to_string(),
        &json,
        FONT,
        layout,
    )?)
}

/// Surveys as CSV, one row each in the order given (every survey in the store, oldest
/// first, when `ids` is empty), with the columns of the case each belongs to. Returns the
/// bytes and the number of rows.
pub fn csv(
    engine: &Engine,
    ids: &[DocId],
    encoding: Encoding,
) -> Result<(Vec<u8>, usize), OfficeError> {
    let mut wanted: Vec<DocId> = Vec::with_capacity(ids.len());
    for id in ids {
        if !wanted.contains(id) {
            wanted.push(*id);
        }
    }
    if wanted.is_empty() {
        let mut all: Vec<_> = engine
            .list()?
            .into_iter()
            .filter(|d| d.kind == DocKind::Survey.as_str())
            .collect();
        all.sort_by_key(|d| (d.created_at, d.id));
        wanted = all.into_iter().map(|d| d.id).collect();
    }
    let mut docs = Vec::with_capacity(wanted.len());
    for id in wanted {
        docs.push((id.to_string(), engine.export(id)?));
    }
    let mut cases = HashMap::new();
    for (_, d) in &docs {
        let Some(cid) = d.get("case_id").and_then(Value::as_str) else {
            continue;
        };
        if cases.contains_key(cid) {
            continue;
        }
        let Ok(case_id) = cid.parse::<DocId>() else {
            continue;
        };
        if let Ok(c) = engine.export(case_id)
            && c.get("kind").and_then(Value::as_str) == Some(DocKind::Case.as_str())
        {
            cases.insert(cid.to_owned(), c);
        }
    }
    let labels = Labels::embedded()?;
    let bytes = export_csv_with_cases(&labels, &docs, &cases, encoding)?;
    Ok((bytes, docs.len()))
}

/// Writes `bytes` to `out` with the one durable write (`musubi_engine::fsutil`: a private
/// temp file beside it, fsync, rename, directory fsync); an existing file is replaced only
/// if `force`. Never half a file, nothing at all on refusal.
pub fn write_new_file(out: &Path, bytes: &[u8], force: bool) -> Result<(), OfficeError> {
    let existing = if force {
        Existing::Replace
    } else {
        Existing::Refuse
    };
    fsutil::write_file(out, bytes, existing).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            exists(out)
        } else {
            OfficeError::Io {
                what: format!("writing {}", out.display()),
                source: e,
            }
        }
    })
}

/// The refusal to replace an existing file.
pub fn exists(out: &Path) -> OfficeError {
    OfficeError::Input(format!(
        "{} already exists; choose another file or add --force to replace it",
        out.display()
    ))
}

/// `dir/stem.ext`, or `dir/stem-2.ext`, `-3` … when taken: the app never replaces a file.
pub fn free_path(dir: &Path, stem: &str, ext: &str) -> PathBuf {
    let first = dir.join(format!("{stem}.{ext}"));
    if !first.exists() {
        return first;
    }
    (2..)
        .map(|n| dir.join(format!("{stem}-{n}.{ext}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

/// Reads a request file, refusing one larger than the import takes before reading it.
pub fn read_request_file(path: &Path) -> Result<Vec<u8>, OfficeError> {
    let name = path.display();
    let unreadable = |e: std::io::Error| {
        OfficeError::Input(format!("{name}: ファイルを読めません（{}）", io_reason(&e)))
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if meta.len() > request::MAX_REQUEST_BYTES as u64 {
        return Err(OfficeError::Input(format!(
            "{name}: ファイルが大きすぎます（上限 {} バイト）",
            request::MAX_REQUEST_BYTES
        )));
    }
    std::fs::read(path).map_err(unreadable)
}

/// Why a file could not be read, in Japanese.
pub fn io_reason(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::NotFound => "見つかりません",
        std::io::ErrorKind::PermissionDenied => "読む権限がありません",
        std::io::ErrorKind::IsADirectory => "フォルダです",
        _ => "読み込みに失敗しました",
    }
}

/// What importing one row of a request file does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowPlan {
    /// Creates a case and a draft survey; `new_subject`: also the person (else the person
    /// already registered on this tablet is used).
    Create {
        /// The subject document (new or existing).
        subject: DocId,
        /// The new case.
        case: DocId,
        /// The new draft survey.
        survey: DocId,
        /// The person is new to this tablet.
        new_subject: bool,
    },
    /// Already imported (same 保険者番号, 被保険者番号 and 申請日): skipped.
    Duplicate,
    /// The row is refused: why, naming the field, never the value.
    Invalid(String),
}

/// One row of a request file as the preview shows it.
#[derive(Clone, Debug)]
pub struct PlannedRow {
    /// Data row, 1-based.
    pub row: usize,
    /// 氏名 (personal data: shown on screen only, never logged).
    pub name: String,
    /// 申請日.
    pub application_date: String,
    /// 申請区分 as its Japanese label.
    pub application_kind: String,
    /// What the import does with it.
    pub plan: RowPlan,
}

/// A request file checked against this tablet's store: what importing it would do, row by
/// row. Nothing is written until [`import_requests`].
pub struct RequestPlan {
    /// The file's name, for the documents' input names.
    name: String,
    /// Every row, in file order.
    pub rows: Vec<PlannedRow>,
    requests: Vec<Option<Request>>,
}

impl RowPlan {
    /// True when the row would be imported.
    pub fn creates(&self) -> bool {
        matches!(self, RowPlan::Create { .. })
    }
}

/// How many rows of a request file do what: the one count behind the preview's summary,
/// its import button and the report after the import.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RowCounts {
    /// Rows that would be imported.
    pub creates: usize,
    /// Rows already imported.
    pub duplicates: usize,
    /// Rows refused.
    pub invalid: usize,
}

impl RowCounts {
    /// Counts the rows of a plan or of its preview.
    pub fn of(rows: &[PlannedRow]) -> RowCounts {
        let mut c = RowCounts::default();
        for r in rows {
            match r.plan {
                RowPlan::Create { .. } => c.creates += 1,
                RowPlan::Duplicate => c.duplicates += 1,
                RowPlan::Invalid(_) => c.invalid += 1,
            }
        }
        c
    }
}

fn str_at(doc: &Value, p: &str) -> String {
    doc.pointer(p)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

/// Checks a request file against the store: each row is refused on its own problem,
/// skipped as a duplicate of a case already here (or earlier in the file), or planned with
/// fresh document ids, reusing a person already registered. The whole file is refused only
/// when it cannot be read as rows.
pub fn plan_requests(
    engine: &Engine,
    name: &str,
    bytes: &[u8],
) -> Result<RequestPlan, OfficeError> {
    let rows = request::parse_request_rows(bytes)
        .map_err(|e| OfficeError::Input(format!("{name}: {e}")))?;
    let mut existing_keys = Vec::new();
    let mut subjects: Vec<((String, String), DocId)> = Vec::new();
    for d in engine.list()? {
        if d.kind == DocKind::Case.as_str() {
            let c = engine.export(d.id)?;
            existing_keys.push((
                str_at(&c, "/application/insurer_number"),
                str_at(&c, "/application/insured_number"),
                str_at(&c, "/application/date"),
            ));
        } else if d.kind == DocKind::Subject.as_str() {
            let s = engine.export(d.id)?;
            subjects.push((
                (
                    str_at(&s, "/person/insurer_number"),
                    str_at(&s, "/person/insured_number"),
                ),
                d.id,
            ));
        }
    }
    let kinds = musubi_engine::care::code_list("application-kind");
    let mut planned = Vec::with_capacity(rows.len());
    let mut requests = Vec::with_capacity(rows.len());
    for (n, parsed) in rows.into_iter().enumerate() {
        let row = n + 1;
        let r = match parsed {
            Ok(r) => r,
            Err(e) => {
                planned.push(PlannedRow {
                    row,
                    name: String::new(),
                    application_date: String::new(),
                    application_kind: String::new(),
                    plan: RowPlan::Invalid(e.to_string()),
                });
                requests.push(None);
                continue;
            }
        };
        let key = r.key();
        let plan = if existing_keys.contains(&key) {
            RowPlan::Duplicate
        } else {
            existing_keys.push(key);
            let person_key = (r.insurer_number.clone(), r.insured_number.clone());
            let (subject, new_subject) = match subjects.iter().find(|(k, _)| *k == person_key) {
                Some((_, id)) => (*id, false),
                None => {
                    let id = DocId::random();
                    subjects.push((person_key, id));
                    (id, true)
                }
            };
            RowPlan::Create {
                subject,
                case: DocId::random(),
                survey: DocId::random(),
                new_subject,
            }
        };
        planned.push(PlannedRow {
            row,
            name: r.name.clone(),
            application_date: r.application_date.clone(),
            application_kind: kinds
                .iter()
                .find(|(code, _)| *code == r.application_kind)
                .map_or_else(|| r.application_kind.clone(), |(_, label)| label.clone()),
            plan,
        });
        requests.push(Some(r));
    }
    Ok(RequestPlan {
        name: name.to_owned(),
        rows: planned,
        requests,
    })
}

/// Imports the planned rows in one batch: all of them or, on any refusal, none. A plan
/// with a refused row imports nothing: the file is corrected first.
pub fn import_requests(engine: &Engine, plan: &RequestPlan) -> Result<usize, OfficeError> {
    if let Some(bad) = plan.rows.iter().find_map(|r| match &r.plan {
        RowPlan::Invalid(why) => Some(why),
        _ => None,
    }) {
        return Err(OfficeError::Input(format!(
            "{}: 取り込めない行があります。ファイルを直してからもう一度取り込んでください（{bad}）",
            plan.name
        )));
    }
    let name = &plan.name;
    let mut inputs: Vec<(String, DocId, Value)> = Vec::new();
    for (p, r) in plan.rows.iter().zip(&plan.requests) {
        let (
            RowPlan::Create {
                subject,
                case,
                survey,
                new_subject,
            },
            Some(r),
        ) = (&p.plan, r)
        else {
            continue;
        };
        let row = p.row;
        if *new_subject {
            inputs.push((
                format!("{name} {row}行目 利用者"),
                *subject,
                request::subject_doc(r),
            ));
        }
        inputs.push((
            format!("{name} {row}行目 進捗"),
            *case,
            request::case_doc(r, &subject.to_string()),
        ));
        inputs.push((
            format!("{name} {row}行目 調査票"),
            *survey,
            request::survey_doc(r, &case.to_string()),
        ));
    }
    if !inputs.is_empty() {
        engine.import_with_ids(&inputs, now_ms())?;
    }
    Ok(RowCounts::of(&plan.rows).creates)
}

/// A step of the survey workflow (`musubi_engine::care::workflow`).
#[derive(Clone, Debug)]
pub enum SurveyStep {
    /// 作成中 → 調査完了, when every hard rule passes.
    Complete,
    /// 調査完了 → 作成中.
    Reopen,
    /// 調査完了 → 提出済み; locked afterwards.
    Submit,
    /// A correction of a submitted survey, with its reason; the earlier value stays.
    Amend {
        /// The field.
        pointer: Pointer,
        /// The corrected value.
        value: Value,
        /// 訂正理由.
        reason: String,
    },
    /// A warning marked checked, with its reason.
    Dismiss {
        /// The warning code.
        code: String,
        /// Its items when several share the code.
        items: Option<Vec<String>>,
        /// 理由.
        reason: String,
    },
}

impl SurveyStep {
    /// The action recorded in the history.
    pub fn action(&self) -> &'static str {
        match self {
            SurveyStep::Complete => "complete",
            SurveyStep::Reopen => "reopen",
            SurveyStep::Submit => "submit",
            SurveyStep::Amend { .. } => "amend",
            SurveyStep::Dismiss { .. } => "dismiss",
        }
    }
}

/// Applies one workflow step to a survey, recording who and when; returns the survey
/// after it. A refused step writes nothing.
pub fn survey_step(engine: &Engine, id: DocId, step: SurveyStep) -> Result<Value, OfficeError> {
    let doc = load_kind(engine, id, DocKind::Survey)?;
    let by = engine.who();
    let at = chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    let action = step.action();
    let edits = match step {
        SurveyStep::Complete => workflow::complete(&doc, &by, &at),
        SurveyStep::Reopen => workflow::reopen(&doc),
        SurveyStep::Submit => workflow::submit(&doc, &by, &at),
        SurveyStep::Amend {
            pointer,
            value,
            reason,
        } => workflow::amend(&doc, &pointer, value, &reason, &by, &at),
        SurveyStep::Dismiss {
            code,
            items,
            reason,
        } => workflow::dismiss(&doc, &code, items.as_deref(), &reason, &by, &at),
    }?;
    engine.apply_edits(id, &edits, action, now_ms())?;
    Ok(engine.export(id)?)
}

/// Records a progress date or result of a case (`field` one of
/// [`case::PHASE_FIELDS`], `raw` as typed). Returns false when it was already recorded.
pub fn case_advance(
    engine: &Engine,
    id: DocId,
    field: &str,
    raw: &str,
) -> Result<bool, OfficeError> {
    let v = case::phase_value(field, raw).map_err(OfficeError::Input)?;
    let doc = load_kind(engine, id, DocKind::Case)?;
    let mut edits = Vec::new();
    if !doc.get("phases").is_some_and(Value::is_object) {
        edits.push((pointer("/phases")?, json!({})));
    }
    edits.push((pointer(&format!("/phases/{field}"))?, v));
    Ok(engine.apply_edits(id, &edits, "case advance", now_ms())?)
}

/// An exception of a case as typed: 延期通知, 取下げ, 却下 or 再調査.
#[derive(Clone, Debug, Default)]
pub struct CaseException {
    /// The kind, in English or Japanese ([`case::exception_kind`]).
    pub kind: String,
    /// Its date (YYYY-MM-DD).
    pub date: String,
    /// 処理見込期間 (延期通知 only).
    pub expected_by: Option<String>,
    /// 理由.
    pub reason: Option<String>,
}

/// Appends an exception to a case (nothing is replaced). Errors name the field: `種別`,
/// `日付`, `処理見込期間`.
pub fn case_exception(engine: &Engine, id: DocId, e: &CaseException) -> Result<(), OfficeError> {
    let Some(kind) = case::exception_kind(&e.kind) else {
        return Err(OfficeError::Input(
            "種別は 延期通知 / 取下げ / 却下 / 再調査（postponement / withdrawal / rejection / resurvey）"
                .to_owned(),
        ));
    };
    if CalendarDate::parse(&e.date).is_err() {
        return Err(OfficeError::Input(
            "日付: YYYY-MM-DD で入力してください".to_owned(),
        ));
    }
    if e.expected_by.is_some() && kind != "postponement" {
        return Err(OfficeError::Input(
            "処理見込期間は延期通知だけに指定します".to_owned(),
        ));
    }
    if e.expected_by
        .as_deref()
        .is_some_and(|d| CalendarDate::parse(d).is_err())
    {
        return Err(OfficeError::Input(
            "処理見込期間: YYYY-MM-DD で入力してください".to_owned(),
        ));
    }
    let mut entry = json!({"kind": kind, "date": e.date});
    if let Some(r) = &e.reason {
        entry["reason"] = json!(r);
    }
    if let Some(x) = &e.expected_by {
        entry["expected_by"] = json!(x);
    }
    let doc = load_kind(engine, id, DocKind::Case)?;
    let (at, value) = if doc.get("exceptions").is_some_and(Value::is_array) {
        ("/exceptions/-", entry)
    } else {
        ("/exceptions", json!([entry]))
    };
    engine.apply_edits(id, &[(pointer(at)?, value)], "case exception", now_ms())?;
    Ok(())
}
