//! 要介護認定 progress (`case` documents, reference §3): the current phase, the 30-day rule
//! of 介護保険法 第27条第11項, exceptions, and the listing a care manager reads.
//! Pure functions over the interchange JSON; dates are YYYY-MM-DD.

use crate::date::CalendarDate;
use serde::Serialize;
use serde_json::{Value, json};

/// Rules with their legal or assumed values. Every field can be overridden on the
/// command line; see docs/care-rules.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaseRules {
    /// Days from the application within which the decision (or a 延期通知) is due:
    /// 30, 介護保険法 第27条第11項 [V].
    pub decision_days: i64,
    /// Days before 認定有効期間（終了） from which a 更新申請 is flagged as due: 60,
    /// confirmed by municipal sources only [P].
    pub renewal_window_days: i64,
}

impl Default for CaseRules {
    fn default() -> Self {
        CaseRules {
            decision_days: 30,
            renewal_window_days: 60,
        }
    }
}

/// Days since 1970-01-01 of a valid YYYY-MM-DD date ([`CalendarDate::parse`]).
pub fn days_of(date: &str) -> Option<i64> {
    CalendarDate::parse(date)
        .ok()
        .map(CalendarDate::days_since_epoch)
}

/// The YYYY-MM-DD date of a day number ("" outside the years 1 to 9999, which no day
/// number made from valid dates reaches).
pub fn date_of(days: i64) -> String {
    CalendarDate::from_days_since_epoch(days)
        .map(|d| d.to_string())
        .unwrap_or_default()
}

/// The phase fields in order, with their Japanese titles and kind.
pub const PHASE_FIELDS: &[(&str, &str, FieldKind)] = &[
    ("survey_requested", "調査依頼日", FieldKind::Date),
    ("survey_visited", "訪問調査日", FieldKind::Date),
    ("survey_received", "調査票受領日", FieldKind::Date),
    ("opinion_requested", "主治医意見書依頼日", FieldKind::Date),
    ("opinion_received", "主治医意見書入手日", FieldKind::Date),
    ("primary_judgement_date", "一次判定日", FieldKind::Date),
    ("primary_result", "一次判定結果", FieldKind::CareLevel),
    (
        "standard_minutes",
        "要介護認定等基準時間",
        FieldKind::Minutes,
    ),
    (
        "committee_scheduled",
        "介護認定審査会予定日",
        FieldKind::Date,
    ),
    ("committee_held", "介護認定審査会開催日", FieldKind::Date),
    ("committee_panel", "合議体", FieldKind::Text),
    ("decision_date", "要介護認定日", FieldKind::Date),
    ("secondary_result", "二次判定結果", FieldKind::CareLevel),
    ("valid_from", "認定有効期間（開始）", FieldKind::Date),
    ("valid_to", "認定有効期間（終了）", FieldKind::Date),
    ("valid_months", "認定有効月数", FieldKind::Months),
];

/// The 被保険者区分 and 特定疾病 to store for `musubi case details`: `category` as typed
/// (1, 2, or the label), `disease` as the item number of 介護保険法施行令第2条 (1–16) or
/// its name, `current` the case's stored 被保険者区分. A 特定疾病 needs 第2号被保険者
/// (typed now or already stored). One rule for the command line and the request import:
/// an error says which input was wrong (`false` 被保険者区分, `true` 特定疾病) and why, in
/// Japanese, without the value.
pub fn details_values(
    category: Option<&str>,
    disease: Option<&str>,
    current: Option<&str>,
) -> Result<(Option<String>, Option<String>), (bool, String)> {
    const FIRST: &str = "第1号被保険者";
    const SECOND: &str = "第2号被保険者";
    let category = match category.map(str::trim) {
        None => None,
        Some("1" | "第1号" | FIRST) => Some(FIRST.to_owned()),
        Some("2" | "第2号" | SECOND) => Some(SECOND.to_owned()),
        Some(_) => {
            return Err((
                false,
                "1（第1号被保険者）または 2（第2号被保険者）を入力してください".to_owned(),
            ));
        }
    };
    let disease = match disease.map(str::trim) {
        None => None,
        Some(d) => {
            let list = super::code_list("specified-disease");
            let found = match d.parse::<usize>() {
                Ok(n) if (1..=list.len()).contains(&n) => list.get(n - 1),
                _ => list.iter().find(|(c, _)| c == d),
            };
            let Some((name, _)) = found else {
                return Err((
                    true,
                    "介護保険法施行令第2条の番号（1〜16）か疾病名を入力してください".to_owned(),
                ));
            };
            if category.as_deref().or(current) != Some(SECOND) {
                return Err((
                    true,
                    "特定疾病は第2号被保険者だけに記録します（被保険者区分を 2 にしてください）"
                        .to_owned(),
                ));
            }
            Some(name.clone())
        }
    };
    Ok((category, disease))
}

/// How a phase field's value is typed on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// YYYY-MM-DD.
    Date,
    /// 要介護状態区分コード (01, 12, 21 …).
    CareLevel,
    /// Minutes (number).
    Minutes,
    /// Whole months.
    Months,
    /// Free text.
    Text,
}

/// Exception kinds with their Japanese names.
pub const EXCEPTIONS: &[(&str, &str)] = &[
    ("postponement", "延期通知"),
    ("withdrawal", "取下げ"),
    ("rejection", "却下"),
    ("resurvey", "再調査"),
];

/// The stored key of an exception kind given in English or Japanese.
pub fn exception_kind(s: &str) -> Option<&'static str> {
    EXCEPTIONS
        .iter()
        .find(|(k, j)| *k == s || *j == s || (*j == "取下げ" && s == "取り下げ"))
        .map(|(k, _)| *k)
}

/// Converts a command-line value for a phase field into JSON; errors name the field.
pub fn phase_value(field: &str, raw: &str) -> Result<Value, String> {
    let Some((_, title, kind)) = PHASE_FIELDS.iter().find(|(f, _, _)| *f == field) else {
        let names: Vec<&str> = PHASE_FIELDS.iter().map(|(f, _, _)| *f).collect();
        return Err(format!(
            "{field}: 進捗の項目ではありません（{}）",
            names.join(", ")
        ));
    };
    match kind {
        FieldKind::Date => {
            if days_of(raw).is_some() {
                Ok(json!(raw))
            } else {
                Err(format!(
                    "{field}（{title}）: 日付は YYYY-MM-DD で入力してください"
                ))
            }
        }
        FieldKind::CareLevel => Ok(json!(raw)),
        FieldKind::Minutes => raw
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .map(|x| json!(x))
            .ok_or_else(|| format!("{field}（{title}）: 分を数値で入力してください")),
        FieldKind::Months => raw
            .parse::<i64>()
            .map(|x| json!(x))
            .map_err(|_| format!("{field}（{title}）: 月数を整数で入力してください")),
        FieldKind::Text => Ok(json!(raw)),
    }
}

/// Dates that must not precede the application date; returns the offending field.
pub fn date_order_problem(case: &Value) -> Option<String> {
    let app = case
        .pointer("/application/date")
        .and_then(Value::as_str)
        .and_then(days_of)?;
    for (f, title, kind) in PHASE_FIELDS {
        if *kind != FieldKind::Date || *f == "valid_from" {
            continue;
        }
        if let Some(d) = case
            .pointer(&format!("/phases/{f}"))
            .and_then(Value::as_str)
            .and_then(days_of)
            && d < app
        {
            return Some(format!("{f}（{title}）が申請日より前になっています"));
        }
    }
    let from = case
        .pointer("/phases/valid_from")
        .and_then(Value::as_str)
        .and_then(days_of);
    let to = case
        .pointer("/phases/valid_to")
        .and_then(Value::as_str)
        .and_then(days_of);
    if let (Some(a), Some(b)) = (from, to)
        && b < a
    {
        return Some("valid_to（認定有効期間（終了））が開始より前になっています".to_owned());
    }
    None
}

/// The current phase: the furthest phase with a recorded date (codes/case-phase.json).
pub fn phase(case: &Value) -> (&'static str, &'static str) {
    let has = |f: &str| {
        case.pointer(&format!("/phases/{f}"))
            .is_some_and(|v| !v.is_null())
    };
    if has("decision_date") || has("secondary_result") {
        ("decision", "認定・結果通知")
    } else if has("committee_scheduled") || has("committee_held") {
        ("committee", "介護認定審査会")
    } else if has("primary_judgement_date") || has("primary_result") {
        ("primary_judgement", "一次判定")
    } else if has("opinion_requested") || has("survey_requested") || has("survey_visited") {
        // 認定調査 and 主治医意見書 run in parallel: report the one still outstanding.
        let survey_done = has("survey_received");
        let opinion_done = has("opinion_received");
        if survey_done && !opinion_done {
            ("opinion", "主治医意見書")
        } else {
            ("survey", "認定調査")
        }
    } else {
        ("application", "申請受付")
    }
}

/// Where a case stands against the 30-day rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Deadline {
    /// Application date + decision_days.
    pub due: String,
    /// Days since the application (negative if in the future).
    pub days_elapsed: i64,
    /// Past the due date without a decision, a 延期通知 or a closing exception.
    pub overdue: bool,
    /// A 延期通知 was recorded (with its 処理見込期間 if given).
    pub postponed_until: Option<String>,
    /// Past the 処理見込期間 of the 延期通知 without a decision.
    pub postponement_overdue: bool,
    /// 更新申請 whose applicant agreed to omit the 延期通知 (`postponement_waiver`): the
    /// last day of the current 認定有効期間, up to which the case is not flagged past
    /// the 30-day limit. None when no such agreement applies.
    pub waived_until: Option<String>,
}

fn exceptions(case: &Value) -> Vec<&Value> {
    case.get("exceptions")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn has_exception(case: &Value, kind: &str) -> bool {
    exceptions(case)
        .iter()
        .any(|e| e.get("kind").and_then(Value::as_str) == Some(kind))
}

/// The 30-day rule for a case on `today` (YYYY-MM-DD). None when the application date
/// is missing or invalid.
pub fn deadline(case: &Value, today: &str, rules: &CaseRules) -> Option<Deadline> {
    let app = case
        .pointer("/application/date")
        .and_then(Value::as_str)
        .and_then(days_of)?;
    let now = days_of(today)?;
    let due = app + rules.decision_days;
    let decided = case
        .pointer("/phases/decision_date")
        .is_some_and(|v| v.is_string());
    let closed = has_exception(case, "withdrawal") || has_exception(case, "rejection");
    let postponement = exceptions(case)
        .into_iter()
        .rev()
        .find(|e| e.get("kind").and_then(Value::as_str) == Some("postponement"));
    let postponed_until = postponement.map(|p| {
        p.get("expected_by")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    });
    let postponement_overdue = !decided
        && !closed
        && postponed_until
            .as_deref()
            .and_then(days_of)
            .is_some_and(|until| now > until);
    let waived_until = waiver_until(case);
    // With the applicant's agreement, a 更新申請 decided within the current validity
    // needs no 延期通知; past that day the exemption no longer holds.
    let waived = waived_until.is_some_and(|until| now <= until);
    Some(Deadline {
        due: date_of(due),
        days_elapsed: now - app,
        overdue: !decided && !closed && postponement.is_none() && !waived && now > due,
        postponed_until: postponed_until.filter(|s| !s.is_empty()),
        postponement_overdue,
        waived_until: waived_until.map(date_of),
    })
}

/// The day up to which the 延期通知 may be omitted: a 更新申請 (申請区分 2) with the
/// applicant's agreement recorded (`postponement_waiver.agreed_on` and `recorded_by`)
/// and the current validity's last day (`application.current_valid_to`).
pub fn waiver_until(case: &Value) -> Option<i64> {
    let renewal = case.pointer("/application/kind").and_then(Value::as_str) == Some("2");
    let agreed = case
        .pointer("/postponement_waiver/agreed_on")
        .and_then(Value::as_str)
        .and_then(days_of)
        .is_some()
        && case
            .pointer("/postponement_waiver/recorded_by")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.trim().is_empty());
    if !(renewal && agreed) {
        return None;
    }
    case.pointer("/application/current_valid_to")
        .and_then(Value::as_str)
        .and_then(days_of)
}

/// One row of the care manager's listing: the fields a municipal progress service shows
/// (reference §3, S13), plus the phase, flags and exceptions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CaseRow {
    /// Document id.
    pub id: String,
    /// 利用者 (name from the subject document, if present in this store).
    pub name: Option<String>,
    /// 申請日.
    pub application_date: Option<String>,
    /// 申請区分 (code).
    pub application_kind: Option<String>,
    /// 申請区分 label.
    pub application_kind_label: Option<String>,
    /// 訪問調査日.
    pub survey_visited: Option<String>,
    /// 主治医意見書依頼日.
    pub opinion_requested: Option<String>,
    /// 主治医意見書入手日.
    pub opinion_received: Option<String>,
    /// 二次審査日（予定日）: held date, else the scheduled one.
    pub committee_date: Option<String>,
    /// True when committee_date is only the scheduled date.
    pub committee_date_is_scheduled: bool,
    /// 要介護認定日.
    pub decision_date: Option<String>,
    /// 二次審査結果 (要介護状態区分コード).
    pub secondary_result: Option<String>,
    /// 二次審査結果 label.
    pub secondary_result_label: Option<String>,
    /// 認定有効月数.
    pub valid_months: Option<i64>,
    /// 認定有効開始日.
    pub valid_from: Option<String>,
    /// 認定有効終了日.
    pub valid_to: Option<String>,
    /// Current phase key and label.
    pub phase: String,
    /// 進捗 label.
    pub phase_label: String,
    /// 30-day rule.
    pub deadline: Option<Deadline>,
    /// 更新申請 window reached (valid_to within renewal_window_days).
    pub renewal_due: bool,
    /// Exceptions as "延期通知 2026-10-07" etc.
    pub exceptions: Vec<String>,
    /// 被保険者区分 (label text).
    pub insured_category: Option<String>,
    /// 特定疾病 (第2号 only; label text).
    pub specified_disease: Option<String>,
    /// 主治医: name and 医療機関名 as written, either may be missing.
    pub physician: Option<String>,
}

/// Builds the listing row of a case.
pub fn row(
    id: &str,
    case: &Value,
    name: Option<String>,
    today: &str,
    rules: &CaseRules,
) -> CaseRow {
    let s = |p: &str| case.pointer(p).and_then(Value::as_str).map(str::to_owned);
    let held = s("/phases/committee_held");
    let scheduled = s("/phases/committee_scheduled");
    let (phase_key, phase_label) = phase(case);
    let valid_to = s("/phases/valid_to");
    let renewal_due = match (valid_to.as_deref().and_then(days_of), days_of(today)) {
        (Some(to), Some(now)) => now <= to && to - now <= rules.renewal_window_days,
        _ => false,
    };
    let physician = [
        s("/physician/name"),
        s("/physician/institution").map(|i| format!("（{i}）")),
    ]
    .into_iter()
    .flatten()
    .collect::<String>();
    CaseRow {
        id: id.to_owned(),
        name,
        insured_category: s("/application/insured_category"),
        specified_disease: s("/application/specified_disease"),
        physician: (!physician.is_empty()).then_some(physician),
        application_date: s("/application/date"),
        application_kind: s("/application/kind"),
        application_kind_label: s("/application/kind")
            .and_then(|c| super::code_label("application-kind", &c)),
        survey_visited: s("/phases/survey_visited"),
        opinion_requested: s("/phases/opinion_requested"),
        opinion_received: s("/phases/opinion_received"),
        committee_date_is_scheduled: held.is_none() && scheduled.is_some(),
        committee_date: held.or(scheduled),
        decision_date: s("/phases/decision_date"),
        secondary_result: s("/phases/secondary_result"),
        secondary_result_label: s("/phases/secondary_result")
            .and_then(|c| super::code_label("care-level", &c)),
        valid_months: case.pointer("/phases/valid_months").and_then(Value::as_i64),
        valid_from: s("/phases/valid_from"),
        valid_to,
        phase: phase_key.to_owned(),
        phase_label: phase_label.to_owned(),
        deadline: deadline(case, today, rules),
        renewal_due,
        exceptions: exceptions(case)
            .iter()
            .map(|e| {
                let kind = e.get("kind").and_then(Value::as_str).unwrap_or("");
                let label = EXCEPTIONS
                    .iter()
                    .find(|(k, _)| *k == kind)
                    .map(|(_, j)| *j)
                    .unwrap_or(kind);
                let date = e.get("date").and_then(Value::as_str).unwrap_or("");
                match e.get("expected_by").and_then(Value::as_str) {
                    Some(until) => format!("{label} {date}（処理見込 {until}）"),
                    None => format!("{label} {date}"),
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_roundtrip() {
        for d in [
            "1970-01-01",
            "2000-02-29",
            "2026-09-18",
            "2024-12-31",
            "1900-03-01",
        ] {
            assert_eq!(date_of(days_of(d).unwrap_or(i64::MIN)), d);
        }
        assert_eq!(days_of("2026-02-29"), None);
        assert_eq!(days_of("2026-13-01"), None);
        assert_eq!(days_of("2026-1-01"), None);
        assert_eq!(
            days_of("2026-10-18").map(|d| d - days_of("2026-09-18").unwrap_or(0)),
            Some(30)
        );
    }

    #[test]
    fn thirty_day_rule() {
        let rules = CaseRules::default();
        let mut case = json!({"application": {"date": "2026-09-18"}, "phases": {}});
        let d = deadline(&case, "2026-10-18", &rules).unwrap_or_else(|| unreachable!());
        assert_eq!(d.due, "2026-10-18");
        assert!(!d.overdue, "day 30 is still in time");
        assert!(deadline(&case, "2026-10-19", &rules).is_some_and(|d| d.overdue));
        case["exceptions"] =
            json!([{"kind": "postponement", "date": "2026-10-10", "expected_by": "2026-11-10"}]);
        let d = deadline(&case, "2026-10-19", &rules).unwrap_or_else(|| unreachable!());
        assert!(!d.overdue && !d.postponement_overdue);
        assert!(deadline(&case, "2026-11-11", &rules).is_some_and(|d| d.postponement_overdue));
        case["phases"]["decision_date"] = json!("2026-11-05");
        assert!(
            deadline(&case, "2026-12-01", &rules)
                .is_some_and(|d| !d.overdue && !d.postponement_overdue)
        );
    }

    #[test]
    fn renewal_waiver() {
        let rules = CaseRules::default();
        let renewal = json!({
            "application": {"date": "2026-09-18", "kind": "2", "current_valid_to": "2026-10-31"},
            "phases": {},
            "postponement_waiver": {"agreed_on": "2026-10-07", "recorded_by": "架空 太郎"}
        });
        let at = |case: &Value, today: &str| {
            deadline(case, today, &rules).unwrap_or_else(|| unreachable!())
        };
        // Past the 30 days, within the current validity: not overdue.
        let d = at(&renewal, "2026-10-25");
        assert!(!d.overdue);
        assert_eq!(d.waived_until.as_deref(), Some("2026-10-31"));
        assert!(!at(&renewal, "2026-10-31").overdue, "the last valid day");
        // Past the current validity without a decision: overdue again.
        assert!(at(&renewal, "2026-11-01").overdue);
        // Without the agreement, without the validity end, or not a 更新申請: overdue.
        let mut c = renewal.clone();
        c.as_object_mut().map(|o| o.remove("postponement_waiver"));
        assert!(at(&c, "2026-10-25").overdue);
        let mut c = renewal.clone();
        c["postponement_waiver"]["recorded_by"] = json!(" ");
        assert!(at(&c, "2026-10-25").overdue);
        let mut c = renewal.clone();
        c["application"]
            .as_object_mut()
            .map(|o| o.remove("current_valid_to"));
        assert!(at(&c, "2026-10-25").overdue);
        assert_eq!(at(&c, "2026-10-25").waived_until, None);
        for kind in ["1", "3"] {
            let mut c = renewal.clone();
            c["application"]["kind"] = json!(kind);
            assert!(at(&c, "2026-10-25").overdue, "kind {kind}");
        }
        // A current validity that ends before the 30 days changes nothing.
        let mut c = renewal.clone();
        c["application"]["current_valid_to"] = json!("2026-10-10");
        assert!(!at(&c, "2026-10-18").overdue);
        assert!(at(&c, "2026-10-19").overdue);
    }
}
