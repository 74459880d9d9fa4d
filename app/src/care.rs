//! `musubi survey …`, `musubi case …`, `musubi visit …` and `musubi request import`:
//! thin commands over `musubi_engine::care` (the rules live there).

use crate::common::{InputError, load_kind, now_ms, office_error, parse_id, today};
use anyhow::Result;
use clap::{Args, Subcommand};
use musubi_app::office::{self, CaseException, OfficeError, RowPlan, SurveyStep};
use musubi_engine::Engine;
use musubi_engine::care::case::{self, CaseRules};
use musubi_engine::care::workflow::{Status, WorkflowError};
use musubi_engine::care::{check_survey, visit};
use musubi_engine::date::CalendarDate;
use musubi_engine::schema::{DocKind, Pointer};
use serde_json::{Value, json};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum SurveyCommand {
    /// Hard problems and consistency warnings (警告コード) of a survey.
    Check {
        id: String,
        /// Machine-readable output: {"errors": [...], "warnings": [...]}.
        #[arg(long)]
        json: bool,
    },
    /// draft → completed (調査完了), when every hard rule passes.
    Complete { id: String },
    /// completed → draft, to correct before submission.
    Reopen { id: String },
    /// completed → submitted (提出済み); the survey is locked afterwards.
    Submit { id: String },
    /// Correct a submitted survey; the earlier value stays in the document and its history.
    Amend {
        id: String,
        /// JSON pointer, e.g. /items/1-3.
        pointer: String,
        /// JSON value, e.g. 2.
        value: String,
        /// 訂正理由 (required).
        #[arg(long)]
        reason: String,
    },
    /// Mark a warning as checked (確認済み) with a reason; it stays listed, marked dismissed.
    Dismiss {
        id: String,
        /// Warning code, e.g. 01 or M03.
        code: String,
        /// 理由 (required).
        #[arg(long)]
        reason: String,
        /// Item numbers of the warning when several share the code, e.g. 1-3,1-10.
        #[arg(long, value_delimiter = ',')]
        items: Option<Vec<String>>,
    },
}

#[derive(Subcommand, Debug)]
pub enum CaseCommand {
    /// Start a case (申請受付) for a subject document.
    New(CaseNewArgs),
    /// Record a progress date or result: `musubi case advance ID survey_visited 2026-10-14`.
    Advance {
        id: String,
        /// Field: survey_requested, survey_visited, survey_received, opinion_requested,
        /// opinion_received, primary_judgement_date, primary_result, standard_minutes,
        /// committee_scheduled, committee_held, committee_panel, decision_date,
        /// secondary_result, valid_from, valid_to, valid_months.
        field: String,
        value: String,
    },
    /// Record an exception: 延期通知 (postponement), 取下げ (withdrawal), 却下 (rejection),
    /// 再調査 (resurvey).
    Exception {
        id: String,
        kind: String,
        /// Date of the exception (YYYY-MM-DD).
        #[arg(long)]
        date: String,
        /// 延期通知: 処理見込期間, the date by which a decision is expected.
        #[arg(long, value_name = "YYYY-MM-DD")]
        expected_by: Option<String>,
        /// 理由.
        #[arg(long)]
        reason: Option<String>,
    },
    /// 更新申請: record the applicant's agreement to omit the 延期通知 because the decision
    /// still falls within the current 認定有効期間; the case is then not flagged past the
    /// 30-day limit until that validity ends.
    Waive {
        id: String,
        /// 同意日 (YYYY-MM-DD).
        #[arg(long, value_name = "YYYY-MM-DD")]
        agreed_on: String,
        /// 現在の認定有効期間（終了）, if not yet in the case.
        #[arg(long, value_name = "YYYY-MM-DD")]
        current_valid_to: Option<String>,
        /// 備考: how the agreement was given.
        #[arg(long)]
        note: Option<String>,
    },
    /// Record the application's 被保険者区分 and 特定疾病 and the 主治医 (氏名, 医療機関名).
    /// The 主治医意見書's request and receipt dates go in with `case advance ID
    /// opinion_requested|opinion_received DATE`.
    Details {
        id: String,
        /// 被保険者区分: 1 (第1号被保険者) or 2 (第2号被保険者).
        #[arg(long)]
        insured_category: Option<String>,
        /// 特定疾病 (第2号 only): the item number of 介護保険法施行令第2条 (1–16) or the name.
        #[arg(long)]
        specified_disease: Option<String>,
        /// 主治医氏名.
        #[arg(long)]
        physician: Option<String>,
        /// 医療機関名.
        #[arg(long)]
        institution: Option<String>,
    },
    /// The care manager's listing: dates, results, 30-day rule, exceptions.
    List(CaseListArgs),
    /// One case in full, with its phase and the 30-day rule.
    Show {
        id: String,
        #[command(flatten)]
        rules: RuleArgs,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct CaseNewArgs {
    /// Id of the subject document.
    #[arg(long)]
    pub subject: String,
    /// 申請日 (YYYY-MM-DD).
    #[arg(long)]
    pub date: String,
    /// 申請区分 code (1 新規申請, 2 更新申請, 3 区分変更申請, 4 職権, 5 転入申請, 6 資格喪失（死亡）).
    #[arg(long)]
    pub kind: String,
}

#[derive(Args, Debug)]
pub struct RuleArgs {
    /// Today's date for the 30-day rule (default: the local date).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub today: Option<String>,
    /// Days to the decision (介護保険法 第27条第11項: 30).
    #[arg(long, default_value_t = 30)]
    pub decision_days: i64,
    /// Days before 認定有効期間（終了） to flag a 更新申請 (60, from municipal sources [P]).
    #[arg(long, default_value_t = 60)]
    pub renewal_window_days: i64,
}

#[derive(Args, Debug)]
pub struct CaseListArgs {
    #[command(flatten)]
    pub rules: RuleArgs,
    /// Only cases that need attention (30-day rule, postponement overdue, renewal due).
    #[arg(long)]
    pub flagged: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum VisitCommand {
    /// Impossible and unusual vital signs of a 訪問看護記録書Ⅱ.
    Check {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum RequestCommand {
    /// Import the municipality's survey requests (CSV or JSON): subject, case and a draft
    /// survey with the header filled in; duplicates are reported, not doubled.
    Import {
        file: PathBuf,
        /// Machine-readable summary.
        #[arg(long)]
        json: bool,
    },
}

pub fn survey(cmd: SurveyCommand, open: impl FnOnce() -> Result<Engine>) -> Result<()> {
    match cmd {
        SurveyCommand::Check { id, json } => {
            let id = parse_id(&id)?;
            let engine = open()?;
            let doc = load_kind(&engine, id, DocKind::Survey)?;
            let check = check_survey(&doc);
            if json {
                outln!("{}", serde_json::to_string_pretty(&check)?);
                return Ok(());
            }
            let status = Status::of(&doc);
            outln!("状態: {}", status.label());
            if check.errors.is_empty() && check.warnings.is_empty() {
                outln!("問題はありません (no problems)");
            }
            for p in &check.errors {
                outln!("エラー {} [{}] {}", p.code, p.items.join(", "), p.message);
            }
            for w in &check.warnings {
                let mark = match &w.dismissed {
                    Some(d) => format!("（確認済み: {}）", d.reason),
                    None => String::new(),
                };
                outln!(
                    "警告 {} [{}] {}{}",
                    w.code,
                    w.items.join(", "),
                    w.message,
                    mark
                );
            }
            Ok(())
        }
        SurveyCommand::Complete { id } => step(open, &id, SurveyStep::Complete),
        SurveyCommand::Reopen { id } => step(open, &id, SurveyStep::Reopen),
        SurveyCommand::Submit { id } => step(open, &id, SurveyStep::Submit),
        SurveyCommand::Amend {
            id,
            pointer,
            value,
            reason,
        } => {
            let ptr = Pointer::parse(&pointer).map_err(|e| InputError(format!("pointer: {e}")))?;
            let value: Value = serde_json::from_str(&value).map_err(|e| {
                InputError(format!(
                    "value for {ptr}: not valid JSON ({e}); strings need quotes, e.g. '\"text\"'"
                ))
            })?;
            step(
                open,
                &id,
                SurveyStep::Amend {
                    pointer: ptr,
                    value,
                    reason,
                },
            )
        }
        SurveyCommand::Dismiss {
            id,
            code,
            reason,
            items,
        } => step(
            open,
            &id,
            SurveyStep::Dismiss {
                code,
                items,
                reason,
            },
        ),
    }
}

fn step(open: impl FnOnce() -> Result<Engine>, id: &str, step: SurveyStep) -> Result<()> {
    let id = parse_id(id)?;
    let engine = open()?;
    let action = step.action();
    let after = match office::survey_step(&engine, id, step) {
        Ok(after) => after,
        Err(e) => {
            // A survey that fails its hard rules: list them, then refuse.
            if let OfficeError::Workflow(WorkflowError::HardRules { .. }) = &e
                && let Ok(doc) = load_kind(&engine, id, DocKind::Survey)
            {
                for p in check_survey(&doc).errors.iter().take(20) {
                    eprintln!("  エラー {} [{}] {}", p.code, p.items.join(", "), p.message);
                }
                eprintln!("  (musubi survey check {id} で一覧を確認できます)");
            }
            return Err(office_error(e));
        }
    };
    engine.close()?;
    let msg = match action {
        "complete" => "調査完了にしました (completed)",
        "reopen" => "作成中に戻しました (back to draft)",
        "submit" => {
            "提出済みにしました。以後の訂正は musubi survey amend で行います (submitted, locked)"
        }
        "amend" => "訂正しました。訂正前の値は文書と履歴に残ります (amended)",
        "dismiss" => "警告を確認済みにしました (dismissed)",
        _ => "done",
    };
    eprintln!("{msg} — 状態: {}", Status::of(&after).label());
    Ok(())
}

fn rules_of(args: &RuleArgs) -> Result<(CaseRules, String)> {
    let today = match &args.today {
        Some(t) if CalendarDate::parse(t).is_ok() => t.clone(),
        Some(_) => {
            return Err(
                InputError("--today: 日付は YYYY-MM-DD で入力してください".to_owned()).into(),
            );
        }
        None => today(),
    };
    if !(1..=365).contains(&args.decision_days) || !(0..=365).contains(&args.renewal_window_days) {
        return Err(InputError(
            "--decision-days / --renewal-window-days: 0〜365 日で指定してください".to_owned(),
        )
        .into());
    }
    Ok((
        CaseRules {
            decision_days: args.decision_days,
            renewal_window_days: args.renewal_window_days,
        },
        today,
    ))
}

fn flagged(row: &case::CaseRow) -> bool {
    row.renewal_due
        || row
            .deadline
            .as_ref()
            .is_some_and(|d| d.overdue || d.postponement_overdue)
}

fn print_row(r: &case::CaseRow) -> Result<()> {
    let o = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".to_owned());
    let mut flags = Vec::new();
    if let Some(d) = &r.deadline {
        if d.overdue {
            flags.push(format!(
                "⚠ 申請から{}日経過・認定も延期通知もありません（期限 {}、介護保険法第27条第11項）",
                d.days_elapsed, d.due
            ));
        }
        if d.postponement_overdue {
            flags.push("⚠ 延期通知の処理見込期間を過ぎています".to_owned());
        }
        if let Some(until) = &d.waived_until
            && r.decision_date.is_none()
        {
            flags.push(format!(
                "延期通知省略の同意あり（更新申請・現在の認定有効期間 {until} までに認定）"
            ));
        }
    }
    if r.renewal_due {
        flags.push("更新申請の時期です".to_owned());
    }
    outln!(
        "{}  {}  進捗: {}",
        r.id,
        r.name.clone().unwrap_or_else(|| "(利用者不明)".to_owned()),
        r.phase_label
    );
    outln!(
        "    申請日 {}  申請区分 {}  訪問調査日 {}  主治医意見書依頼日 {}  主治医意見書入手日 {}",
        o(&r.application_date),
        o(&r.application_kind_label
            .clone()
            .or(r.application_kind.clone())),
        o(&r.survey_visited),
        o(&r.opinion_requested),
        o(&r.opinion_received)
    );
    outln!(
        "    二次審査日{} {}  要介護認定日 {}  二次審査結果 {}  認定有効月数 {}  認定有効開始日 {}  認定有効終了日 {}",
        if r.committee_date_is_scheduled {
            "（予定日）"
        } else {
            ""
        },
        o(&r.committee_date),
        o(&r.decision_date),
        o(&r.secondary_result_label
            .clone()
            .or(r.secondary_result.clone())),
        r.valid_months
            .map(|m| m.to_string())
            .unwrap_or_else(|| "—".to_owned()),
        o(&r.valid_from),
        o(&r.valid_to)
    );
    for e in &r.exceptions {
        outln!("    例外: {e}");
    }
    for f in flags {
        outln!("    {f}");
    }
    Ok(())
}

pub fn case_cmd(cmd: CaseCommand, open: impl FnOnce() -> Result<Engine>) -> Result<()> {
    match cmd {
        CaseCommand::New(args) => {
            let subject_id = parse_id(&args.subject)?;
            if CalendarDate::parse(&args.date).is_err() {
                return Err(InputError(
                    "--date（申請日）: 日付は YYYY-MM-DD で入力してください".to_owned(),
                )
                .into());
            }
            let engine = open()?;
            let subject = load_kind(&engine, subject_id, DocKind::Subject)?;
            let p = |k: &str| {
                subject
                    .pointer(&format!("/person/{k}"))
                    .cloned()
                    .unwrap_or(Value::Null)
            };
            let doc = json!({
                "kind": "case",
                "subject_id": subject_id.to_string(),
                "application": {
                    "date": args.date,
                    "kind": args.kind,
                    "insurer_number": p("insurer_number"),
                    "insured_number": p("insured_number"),
                },
                "phases": {},
            });
            let outcome = engine.import(&[("case".to_owned(), doc)], now_ms())?;
            engine.close()?;
            for id in outcome.ids {
                outln!("{id}");
            }
            Ok(())
        }
        CaseCommand::Advance { id, field, value } => {
            let id = parse_id(&id)?;
            let engine = open()?;
            let changed =
                office::case_advance(&engine, id, &field, &value).map_err(office_error)?;
            let after = engine.export(id)?;
            engine.close()?;
            if !changed {
                eprintln!("変更なし (already recorded)");
            }
            eprintln!("進捗: {}", case::phase(&after).1);
            Ok(())
        }
        CaseCommand::Exception {
            id,
            kind,
            date,
            expected_by,
            reason,
        } => {
            let id = parse_id(&id)?;
            let exception = CaseException {
                kind,
                date,
                expected_by,
                reason,
            };
            let engine = open()?;
            office::case_exception(&engine, id, &exception).map_err(office_error)?;
            engine.close()?;
            eprintln!("例外を記録しました (exception recorded)");
            Ok(())
        }
        CaseCommand::Waive {
            id,
            agreed_on,
            current_valid_to,
            note,
        } => {
            let id = parse_id(&id)?;
            for (flag, d) in [
                ("--agreed-on", Some(&agreed_on)),
                ("--current-valid-to", current_valid_to.as_ref()),
            ] {
                if d.is_some_and(|d| CalendarDate::parse(d).is_err()) {
                    return Err(InputError(format!(
                        "{flag}: 日付は YYYY-MM-DD で入力してください"
                    ))
                    .into());
                }
            }
            let engine = open()?;
            let doc = load_kind(&engine, id, DocKind::Case)?;
            if doc.pointer("/application/kind").and_then(Value::as_str) != Some("2") {
                return Err(InputError(
                    "延期通知の省略は更新申請（申請区分 2）だけに記録できます".to_owned(),
                )
                .into());
            }
            if current_valid_to.is_none() && doc.pointer("/application/current_valid_to").is_none()
            {
                return Err(InputError(
                    "--current-valid-to（現在の認定有効期間（終了））を指定してください".to_owned(),
                )
                .into());
            }
            let mut waiver = json!({"agreed_on": agreed_on, "recorded_by": engine.who()});
            if let Some(n) = note {
                waiver["note"] = json!(n);
            }
            let mut edits = vec![(
                Pointer::parse("/postponement_waiver").map_err(|e| InputError(e.to_string()))?,
                waiver,
            )];
            if let Some(d) = current_valid_to {
                edits.push((
                    Pointer::parse("/application/current_valid_to")
                        .map_err(|e| InputError(e.to_string()))?,
                    json!(d),
                ));
            }
            engine.apply_edits(id, &edits, "case waive", now_ms())?;
            engine.close()?;
            eprintln!("延期通知省略への同意を記録しました (agreement recorded)");
            Ok(())
        }
        CaseCommand::Details {
            id,
            insured_category,
            specified_disease,
            physician,
            institution,
        } => {
            let id = parse_id(&id)?;
            let engine = open()?;
            let doc = load_kind(&engine, id, DocKind::Case)?;
            let current = doc
                .pointer("/application/insured_category")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let (category, disease) = case::details_values(
                insured_category.as_deref(),
                specified_disease.as_deref(),
                current.as_deref(),
            )
            .map_err(|(disease, m)| {
                let flag = if disease {
                    "--specified-disease"
                } else {
                    "--insured-category"
                };
                InputError(format!("{flag}: {m}"))
            })?;
            let ptr = |p: &str| Pointer::parse(p).map_err(|e| InputError(e.to_string()));
            let mut edits = Vec::new();
            if let Some(c) = category {
                edits.push((ptr("/application/insured_category")?, json!(c)));
            }
            if let Some(d) = disease {
                edits.push((ptr("/application/specified_disease")?, json!(d)));
            }
            if physician.is_some() || institution.is_some() {
                let mut p = doc
                    .get("physician")
                    .filter(|p| p.is_object())
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                if let Some(n) = physician {
                    p["name"] = json!(n);
                }
                if let Some(i) = institution {
                    p["institution"] = json!(i);
                }
                edits.push((ptr("/physician")?, p));
            }
            if edits.is_empty() {
                return Err(InputError(
                    "--insured-category / --specified-disease / --physician / --institution のどれかを指定してください".to_owned(),
                )
                .into());
            }
            engine.apply_edits(id, &edits, "case details", now_ms())?;
            engine.close()?;
            eprintln!("申請の詳細を記録しました (details recorded)");
            Ok(())
        }
        CaseCommand::List(args) => {
            let (rules, today) = rules_of(&args.rules)?;
            let engine = open()?;
            let mut rows = engine.case_rows(&today, &rules)?;
            rows.retain(|r| !args.flagged || flagged(r));
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            if rows.is_empty() {
                outln!("(該当する申請はありません — no cases)");
            }
            for r in &rows {
                print_row(r)?;
            }
            Ok(())
        }
        CaseCommand::Show { id, rules, json } => {
            let id = parse_id(&id)?;
            let (rules, today) = rules_of(&rules)?;
            let engine = open()?;
            let doc = load_kind(&engine, id, DocKind::Case)?;
            let name = engine.case_subject_name(&doc);
            let r = case::row(&id.to_string(), &doc, name, &today, &rules);
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"case": doc, "summary": r}))?
                );
                return Ok(());
            }
            print_row(&r)?;
            for (f, title, _) in case::PHASE_FIELDS {
                if let Some(v) = doc.pointer(&format!("/phases/{f}")) {
                    let s = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    outln!("    {title}: {s}");
                }
            }
            Ok(())
        }
    }
}

pub fn visit_cmd(cmd: VisitCommand, open: impl FnOnce() -> Result<Engine>) -> Result<()> {
    match cmd {
        VisitCommand::Check { id, json } => {
            let id = parse_id(&id)?;
            let engine = open()?;
            let doc = load_kind(&engine, id, DocKind::VisitRecord)?;
            let errors: Vec<Value> = visit::hard_errors(&doc)
                .into_iter()
                .map(|e| json!({"path": e.path, "message": e.message}))
                .collect();
            let warnings = visit::soft_warnings(&doc);
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"errors": errors, "warnings": warnings}))?
                );
                return Ok(());
            }
            if errors.is_empty() && warnings.is_empty() {
                outln!("バイタルサインに問題はありません (no problems)");
            }
            for e in &errors {
                outln!(
                    "エラー {} {}",
                    e["path"].as_str().unwrap_or(""),
                    e["message"].as_str().unwrap_or("")
                );
            }
            for w in &warnings {
                outln!("警告 {} [{}] {}", w.code, w.items.join(", "), w.message);
            }
            Ok(())
        }
    }
}

pub fn request_cmd(cmd: RequestCommand, open: impl FnOnce() -> Result<Engine>) -> Result<()> {
    match cmd {
        RequestCommand::Import { file, json } => {
            let name = file.display().to_string();
            // Read and check every row before the store is written.
            let bytes = office::read_request_file(&file).map_err(office_error)?;
            let engine = open()?;
            let plan = office::plan_requests(&engine, &name, &bytes).map_err(office_error)?;
            office::import_requests(&engine, &plan).map_err(office_error)?;
            engine.close()?;
            let mut created = Vec::new();
            let mut duplicates = Vec::new();
            for r in &plan.rows {
                match &r.plan {
                    RowPlan::Create {
                        subject,
                        case,
                        survey,
                        ..
                    } => created.push(json!({"row": r.row, "subject": subject.to_string(), "case": case.to_string(), "survey": survey.to_string()})),
                    RowPlan::Duplicate => duplicates.push(r.row),
                    RowPlan::Invalid(_) => {}
                }
            }
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({"created": created, "duplicates": duplicates})
                    )?
                );
            } else {
                for c in &created {
                    outln!(
                        "{}行目: 調査票 {}  進捗 {}  利用者 {}",
                        c["row"],
                        c["survey"].as_str().unwrap_or(""),
                        c["case"].as_str().unwrap_or(""),
                        c["subject"].as_str().unwrap_or("")
                    );
                }
            }
            for row in &duplicates {
                eprintln!(
                    "{row}行目: 取込済みの依頼です（同じ保険者番号・被保険者番号・申請日）。取り込みませんでした (duplicate, skipped)"
                );
            }
            eprintln!(
                "{}件を取り込みました、重複 {}件 ({} imported, {} duplicates)",
                created.len(),
                duplicates.len(),
                created.len(),
                duplicates.len()
            );
            Ok(())
        }
    }
}
