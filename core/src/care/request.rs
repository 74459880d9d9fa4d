//! The municipality's survey request (認定調査依頼): 保険者番号, 被保険者番号, the person's
//! details, 申請区分 and 申請日, from CSV or JSON, so the surveyor starts from a filled
//! header (reference §1.2, §3). Parsing is all-or-nothing: a bad row names the row and the
//! field (never the value) and nothing is produced.
//!
//! CSV: a header row, then one row per request; RFC 4180 quoting; UTF-8 (BOM allowed) or
//! Shift_JIS (detected when the bytes are not UTF-8). Headers may be the Japanese field
//! names or the JSON keys. JSON: an array of objects with the JSON keys, or
//! `{"requests": [...]}`.

use crate::identifiers::{Verdict, check_insured_number, check_insurer_number};
use serde::Serialize;
use serde_json::{Value, json};

/// Largest request file accepted.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;

/// One request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Request {
    /// 保険者番号.
    pub insurer_number: String,
    /// 被保険者番号.
    pub insured_number: String,
    /// 氏名.
    pub name: String,
    /// ふりがな.
    pub name_kana: String,
    /// 生年月日.
    pub birth_date: String,
    /// 性別 code ("1" 男, "2" 女).
    pub sex: i64,
    /// 住所.
    pub address: String,
    /// 郵便番号.
    pub postal_code: Option<String>,
    /// 電話.
    pub phone: Option<String>,
    /// 申請区分 code.
    pub application_kind: String,
    /// 申請日.
    pub application_date: String,
    /// The optional administrative columns (issue 19), each absent when the column is
    /// missing or empty.
    pub admin: RequestAdmin,
}

/// Optional administrative fields of a request: where each goes is in
/// [`survey_doc`] / [`case_doc`] and docs/care-rules.md §5.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RequestAdmin {
    /// 被保険者区分 (label text, survey schema `case.application.insured_category`).
    pub insured_category: Option<String>,
    /// 特定疾病 (label text); only with 第2号被保険者.
    pub specified_disease: Option<String>,
    /// 主治医氏名.
    pub physician_name: Option<String>,
    /// 医療機関名.
    pub physician_institution: Option<String>,
    /// 調査区分（依頼区分）, an 申請区分 code.
    pub survey_kind: Option<String>,
    /// 調査回数.
    pub survey_count: Option<i64>,
    /// 委託先事業所番号.
    pub contractor_office: Option<String>,
    /// 委託先名称.
    pub contractor_name: Option<String>,
    /// 調査員番号.
    pub surveyor_number: Option<String>,
    /// 受領日（調査依頼）.
    pub request_received: Option<String>,
    /// 現在の状況 (在宅 / 施設).
    pub current_situation: Option<String>,
    /// サービス区分 (予防 / 介護 / なし).
    pub service_category: Option<String>,
}

impl Request {
    /// The duplicate key: 保険者番号 + 被保険者番号 + 申請日.
    pub fn key(&self) -> (String, String, String) {
        (
            self.insurer_number.clone(),
            self.insured_number.clone(),
            self.application_date.clone(),
        )
    }
}

/// A refused request file. Names the row (1 = first data row) and the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not CSV or JSON we understand.
    #[error("{0}")]
    Format(String),
    /// A field of a row is missing or invalid.
    #[error("{row}行目 {field}: {problem}")]
    Field {
        /// Data row (1-based; the CSV header is row 0).
        row: usize,
        /// Japanese field name.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// (JSON key, Japanese header, alternative headers, required)
const FIELDS: &[(&str, &str, &[&str], bool)] = &[
    ("insurer_number", "保険者番号", &[], true),
    ("insured_number", "被保険者番号", &[], true),
    ("name", "氏名", &["被保険者氏名"], true),
    ("name_kana", "ふりがな", &["フリガナ", "氏名カナ"], true),
    ("birth_date", "生年月日", &[], true),
    ("sex", "性別", &[], true),
    ("address", "住所", &[], true),
    ("postal_code", "郵便番号", &[], false),
    ("phone", "電話番号", &["電話"], false),
    ("application_kind", "申請区分", &[], true),
    ("application_date", "申請日", &["申請年月日"], true),
    // Optional administrative columns (issue 19), indexes 11 ….
    ("insured_category", "被保険者区分", &[], false),
    ("specified_disease", "特定疾病", &[], false),
    ("physician_name", "主治医氏名", &["主治医"], false),
    (
        "physician_institution",
        "医療機関名",
        &["主治医医療機関名"],
        false,
    ),
    ("survey_kind", "調査区分", &["依頼区分"], false),
    ("survey_count", "調査回数", &[], false),
    (
        "contractor_office_number",
        "委託先事業所番号",
        &["委託先"],
        false,
    ),
    ("contractor_name", "委託先名称", &[], false),
    ("surveyor_number", "調査員番号", &[], false),
    ("request_received", "受領日", &["依頼受領日"], false),
    ("current_situation", "現在の状況", &[], false),
    ("service_category", "サービス区分", &[], false),
];

/// The values of an `enum` in an embedded schema file (the stored label texts).
fn enum_values(file: &str, pointer: &str) -> Vec<String> {
    let Ok(reg) = crate::schema::Registry::embedded() else {
        return Vec::new();
    };
    reg.file(file)
        .and_then(|n| n.schema.pointer(pointer))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The optional administrative fields of one row; `vals` holds every field, trimmed.
fn build_admin(
    vals: &[Option<String>],
    err: &dyn Fn(usize, &str) -> RequestError,
) -> Result<RequestAdmin, RequestError> {
    let mut a = RequestAdmin::default();
    let (category, disease) =
        super::case::details_values(vals[11].as_deref(), vals[12].as_deref(), None)
            .map_err(|(disease, m)| err(if disease { 12 } else { 11 }, &m))?;
    a.insured_category = category;
    a.specified_disease = disease;
    a.physician_name = vals[13].clone();
    a.physician_institution = vals[14].clone();
    if let Some(v) = &vals[15] {
        let kinds = super::code_list("application-kind");
        let Some((kind, _)) = kinds.iter().find(|(c, l)| c == v || l == v) else {
            return Err(err(
                15,
                "調査区分は申請区分のコード（1〜6）または名称で入力してください",
            ));
        };
        a.survey_kind = Some(kind.clone());
    }
    if let Some(v) = &vals[16] {
        match v.parse::<i64>() {
            Ok(n) if (1..=9).contains(&n) => a.survey_count = Some(n),
            _ => return Err(err(16, "1〜9 の数字で入力してください")),
        }
    }
    if let Some(v) = &vals[17] {
        if let Verdict::Invalid(m) = crate::identifiers::check_office_number(v) {
            return Err(err(17, &m));
        }
        a.contractor_office = Some(v.clone());
    }
    a.contractor_name = vals[18].clone();
    if let Some(v) = &vals[19] {
        let ok = (1..=20).contains(&v.len())
            && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return Err(err(19, "英数字と - の20文字以内で入力してください"));
        }
        a.surveyor_number = Some(v.clone());
    }
    if let Some(v) = &vals[20] {
        if !check_date(v) {
            return Err(err(20, "日付は YYYY-MM-DD で入力してください"));
        }
        a.request_received = Some(v.clone());
    }
    for (i, pointer, hint) in [
        (
            21,
            "/properties/administration/properties/current_situation/enum",
            "在宅 または 施設 を入力してください",
        ),
        (
            22,
            "/properties/administration/properties/service_category/enum",
            "予防・介護・なし のどれかを入力してください",
        ),
    ] {
        if let Some(v) = &vals[i] {
            if !enum_values("survey.schema.json", pointer).contains(v) {
                return Err(err(i, hint));
            }
            if i == 21 {
                a.current_situation = Some(v.clone());
            } else {
                a.service_category = Some(v.clone());
            }
        }
    }
    Ok(a)
}

fn field_of(header: &str) -> Option<usize> {
    let h = header.trim();
    FIELDS
        .iter()
        .position(|(k, j, alt, _)| *k == h || *j == h || alt.contains(&h))
}

/// Decodes bytes as UTF-8 (BOM stripped) or, failing that, Shift_JIS.
fn decode(bytes: &[u8]) -> Result<String, RequestError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Ok(s) = std::str::from_utf8(bytes) {
        return Ok(s.to_owned());
    }
    let (text, _, had_errors) = encoding_rs::SHIFT_JIS.decode(bytes);
    if had_errors {
        return Err(RequestError::Format(
            "文字コードが UTF-8 でも Shift_JIS でもありません".to_owned(),
        ));
    }
    Ok(text.into_owned())
}

/// Parses RFC 4180 CSV into records. Errors name the line.
pub fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, RequestError> {
    let mut records = Vec::new();
    let mut record: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    let mut in_quotes = false;
    let mut at_field_start = true;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if at_field_start => {
                in_quotes = true;
                was_quoted = true;
                at_field_start = false;
            }
            '"' => {
                return Err(RequestError::Format(format!(
                    "CSV {line}行目: 引用符（\"）の位置が正しくありません"
                )));
            }
            ',' => {
                record.push(std::mem::take(&mut field));
                at_field_start = true;
                was_quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => {
                record.push(std::mem::take(&mut field));
                if !(record.len() == 1 && record[0].is_empty() && !was_quoted) {
                    records.push(std::mem::take(&mut record));
                } else {
                    record.clear();
                }
                line += 1;
                at_field_start = true;
                was_quoted = false;
            }
            _ if was_quoted && !at_field_start => {
                return Err(RequestError::Format(format!(
                    "CSV {line}行目: 引用符で囲んだ欄の後に文字があります"
                )));
            }
            _ => {
                field.push(c);
                at_field_start = false;
            }
        }
    }
    if in_quotes {
        return Err(RequestError::Format(format!(
            "CSV {line}行目: 引用符（\"）が閉じていません"
        )));
    }
    if !field.is_empty() || !record.is_empty() || was_quoted {
        record.push(field);
        records.push(record);
    }
    Ok(records)
}

fn check_date(s: &str) -> bool {
    crate::date::CalendarDate::parse(s).is_ok()
}

/// Validates one row given as (field index → raw string).
fn build(row: usize, get: &dyn Fn(usize) -> Option<String>) -> Result<Request, RequestError> {
    let err = |i: usize, problem: &str| RequestError::Field {
        row,
        field: FIELDS[i].1,
        problem: problem.to_owned(),
    };
    let mut vals: Vec<Option<String>> = Vec::with_capacity(FIELDS.len());
    for (i, (_, _, _, required)) in FIELDS.iter().enumerate() {
        let v = get(i)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        if *required && v.is_none() {
            return Err(err(i, "必須の欄が空です"));
        }
        if let Some(s) = &v
            && (s.chars().count() > 200 || s.chars().any(char::is_control))
        {
            return Err(err(i, "長すぎるか、制御文字を含んでいます"));
        }
        vals.push(v);
    }
    let take = |i: usize| vals[i].clone().unwrap_or_default();
    let insurer = take(0);
    if let Verdict::Invalid(m) = check_insurer_number(&insurer) {
        return Err(err(0, &m));
    }
    let insured = take(1);
    if let Verdict::Invalid(m) = check_insured_number(&insured) {
        return Err(err(1, &m));
    }
    let birth = take(4);
    if !check_date(&birth) {
        return Err(err(4, "日付は YYYY-MM-DD で入力してください"));
    }
    let sex = match take(5).as_str() {
        "1" | "男" => 1,
        "2" | "女" => 2,
        _ => return Err(err(5, "1（男）または 2（女）を入力してください")),
    };
    let kind_raw = take(9);
    let kinds = super::code_list("application-kind");
    let Some((kind, _)) = kinds.iter().find(|(c, l)| *c == kind_raw || *l == kind_raw) else {
        return Err(err(
            9,
            "申請区分のコード（1〜6）または名称を入力してください",
        ));
    };
    let app_date = take(10);
    if !check_date(&app_date) {
        return Err(err(10, "日付は YYYY-MM-DD で入力してください"));
    }
    if let Some(p) = &vals[7] {
        let digits: String = p.chars().filter(|c| *c != '-').collect();
        if digits.len() != 7 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err(7, "7桁の数字（例 100-0001）で入力してください"));
        }
    }
    if let Some(p) = &vals[8]
        && (p.len() < 6 || !p.chars().all(|c| c.is_ascii_digit() || "+-() ".contains(c)))
    {
        return Err(err(8, "数字と - で入力してください"));
    }
    let admin = build_admin(&vals, &err)?;
    let request = Request {
        admin,
        insurer_number: insurer,
        insured_number: insured,
        name: take(2),
        name_kana: take(3),
        birth_date: birth,
        sex,
        address: take(6),
        postal_code: vals[7].clone(),
        phone: vals[8].clone(),
        application_kind: kind.clone(),
        application_date: app_date,
    };
    documents_validate(row, &request)?;
    Ok(request)
}

/// The documents a request becomes must pass their schemas; the schemas are the one
/// place that says how long a name may be or which codes exist, so a request is checked
/// against them rather than against rules of its own. The first problem is reported at
/// the request column it came from, in Japanese.
fn documents_validate(row: usize, r: &Request) -> Result<(), RequestError> {
    // A placeholder id: the real ones are drawn when the documents are stored.
    const ID: &str = "00000000000000000000000000000000";
    for doc in [subject_doc(r), case_doc(r, ID), survey_doc(r, ID)] {
        let report = match crate::schema::validate_document(&doc) {
            Ok((_, report)) => report,
            Err(_) => {
                return Err(RequestError::Format(
                    "申請データを確認できませんでした（内蔵の様式定義を読めません）".to_owned(),
                ));
            }
        };
        if let Some(issue) = report.errors().next() {
            return Err(RequestError::Field {
                row,
                field: column_of(&issue.path),
                problem: issue.ja.clone(),
            });
        }
    }
    Ok(())
}

/// The request column (Japanese header) a path of the built documents comes from.
fn column_of(path: &str) -> &'static str {
    let key = path.rsplit('/').next().unwrap_or_default();
    let key = match (path, key) {
        (p, "date") if p.starts_with("/application/") => "application_date",
        (p, "kind") if p.starts_with("/application/") => "application_kind",
        (p, "name") if p.starts_with("/physician/") => "physician_name",
        (p, "institution") if p.starts_with("/physician/") => "physician_institution",
        (p, "office_number") if p.contains("/contractor/") => "contractor_office_number",
        (p, "name") if p.contains("/contractor/") => "contractor_name",
        (_, k) => k,
    };
    FIELDS
        .iter()
        .find(|(k, ..)| *k == key)
        .map_or("申請データ", |(_, header, ..)| *header)
}

fn parse_csv_requests(text: &str) -> Result<Vec<RowResult>, RequestError> {
    let records = parse_csv(text)?;
    let Some((header, rows)) = records.split_first() else {
        return Err(RequestError::Format(
            "CSV に見出し行がありません".to_owned(),
        ));
    };
    let mut columns: Vec<Option<usize>> = Vec::with_capacity(header.len());
    for h in header {
        let f = field_of(h);
        if f.is_some() && columns.contains(&f) {
            return Err(RequestError::Format(format!(
                "CSV の見出しに同じ欄が2回あります（{}）",
                f.map(|i| FIELDS[i].1).unwrap_or("")
            )));
        }
        columns.push(f);
    }
    for (i, (_, j, _, required)) in FIELDS.iter().enumerate() {
        if *required && !columns.contains(&Some(i)) {
            return Err(RequestError::Format(format!(
                "CSV の見出しに必須の欄「{j}」がありません"
            )));
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for (n, rec) in rows.iter().enumerate() {
        if rec.len() != header.len() {
            out.push(Err(RequestError::Format(format!(
                "CSV {}行目: 欄の数が見出しと違います（見出し {}、この行 {}）",
                n + 1,
                header.len(),
                rec.len()
            ))));
            continue;
        }
        let get = |field: usize| {
            columns
                .iter()
                .position(|c| *c == Some(field))
                .and_then(|col| rec.get(col).cloned())
        };
        out.push(build(n + 1, &get));
    }
    Ok(out)
}

fn parse_json_requests(text: &str) -> Result<Vec<RowResult>, RequestError> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| RequestError::Format(format!("JSON として読めません（{e}）")))?;
    let list = match &v {
        Value::Array(a) => a,
        Value::Object(o) => o.get("requests").and_then(Value::as_array).ok_or_else(|| {
            RequestError::Format("JSON に requests の配列がありません".to_owned())
        })?,
        _ => {
            return Err(RequestError::Format(
                "JSON は依頼の配列か {\"requests\": [...]} にしてください".to_owned(),
            ));
        }
    };
    let mut out = Vec::with_capacity(list.len());
    for (n, obj) in list.iter().enumerate() {
        let Some(map) = obj.as_object() else {
            out.push(Err(RequestError::Format(format!(
                "JSON {}件目: オブジェクトではありません",
                n + 1
            ))));
            continue;
        };
        if let Some(unknown) = map.keys().find(|k| field_of(k).is_none()) {
            // Keys are field names chosen by the sender, not personal data.
            let shown: String = unknown.chars().take(40).collect();
            out.push(Err(RequestError::Format(format!(
                "JSON {}件目: 知らない欄 {shown} があります",
                n + 1
            ))));
            continue;
        }
        let get = |field: usize| {
            let (k, j, alt, _) = FIELDS[field];
            let v = map
                .get(k)
                .or_else(|| map.get(j))
                .or_else(|| alt.iter().find_map(|a| map.get(*a)))?;
            match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => Some(String::from("\u{0}")),
            }
        };
        out.push(build(n + 1, &get));
    }
    Ok(out)
}

/// One data row of a request file: the request, or why that row is refused.
pub type RowResult = Result<Request, RequestError>;

/// Parses a request file (CSV or JSON, detected from the first non-blank character); the
/// whole file is refused only when it cannot be read as rows at all. Every row is checked
/// on its own, so a preview can show each row's problem.
pub fn parse_request_rows(bytes: &[u8]) -> Result<Vec<RowResult>, RequestError> {
    if bytes.len() > MAX_REQUEST_BYTES {
        return Err(RequestError::Format(format!(
            "ファイルが大きすぎます（上限 {MAX_REQUEST_BYTES} バイト）"
        )));
    }
    let text = decode(bytes)?;
    let first = text.trim_start().chars().next();
    let requests = match first {
        Some('[' | '{') => parse_json_requests(&text)?,
        Some(_) => parse_csv_requests(&text)?,
        None => return Err(RequestError::Format("空のファイルです".to_owned())),
    };
    if requests.is_empty() {
        return Err(RequestError::Format("依頼が1件もありません".to_owned()));
    }
    Ok(requests)
}

/// Parses a request file whose every row must be valid: the first refused row (in file
/// order) refuses the whole file.
pub fn parse_requests(bytes: &[u8]) -> Result<Vec<Request>, RequestError> {
    parse_request_rows(bytes)?.into_iter().collect()
}

/// The person block of the documents.
pub fn person(r: &Request) -> Value {
    let mut p = json!({
        "insurer_number": r.insurer_number,
        "insured_number": r.insured_number,
        "name": r.name,
        "name_kana": r.name_kana,
        "birth_date": r.birth_date,
        "sex": r.sex,
        "address": r.address,
    });
    if let Some(pc) = &r.postal_code {
        p["postal_code"] = json!(pc);
    }
    if let Some(ph) = &r.phone {
        p["phone"] = json!(ph);
    }
    p
}

/// A subject document for a request.
pub fn subject_doc(r: &Request) -> Value {
    json!({"kind": "subject", "person": person(r)})
}

/// A case document for a request: 被保険者区分, 特定疾病 and the 主治医 when the request
/// has them.
pub fn case_doc(r: &Request, subject_id: &str) -> Value {
    let mut c = json!({
        "kind": "case",
        "subject_id": subject_id,
        "application": {
            "date": r.application_date,
            "kind": r.application_kind,
            "insurer_number": r.insurer_number,
            "insured_number": r.insured_number,
        },
        "phases": {},
    });
    let a = &r.admin;
    if let Some(v) = &a.insured_category {
        c["application"]["insured_category"] = json!(v);
    }
    if let Some(v) = &a.specified_disease {
        c["application"]["specified_disease"] = json!(v);
    }
    let mut physician = serde_json::Map::new();
    if let Some(v) = &a.physician_name {
        physician.insert("name".to_owned(), json!(v));
    }
    if let Some(v) = &a.physician_institution {
        physician.insert("institution".to_owned(), json!(v));
    }
    if !physician.is_empty() {
        c["physician"] = Value::Object(physician);
    }
    c
}

/// A draft survey with the header filled in, and the survey's administrative fields
/// (`administration`) when the request has them.
pub fn survey_doc(r: &Request, case_id: &str) -> Value {
    let mut s = json!({
        "kind": "survey",
        "if_version": "09B",
        "status": "draft",
        "case_id": case_id,
        "subject": person(r),
        "overview": {},
        "items": {},
        "special_notes": [],
    });
    let a = &r.admin;
    let mut admin = serde_json::Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            admin.insert(k.to_owned(), v);
        }
    };
    put("survey_kind", a.survey_kind.as_ref().map(|v| json!(v)));
    put("survey_count", a.survey_count.map(|v| json!(v)));
    put(
        "request_received",
        a.request_received.as_ref().map(|v| json!(v)),
    );
    put(
        "surveyor_number",
        a.surveyor_number.as_ref().map(|v| json!(v)),
    );
    put(
        "current_situation",
        a.current_situation.as_ref().map(|v| json!(v)),
    );
    put(
        "service_category",
        a.service_category.as_ref().map(|v| json!(v)),
    );
    let mut contractor = serde_json::Map::new();
    if let Some(v) = &a.contractor_office {
        contractor.insert("office_number".to_owned(), json!(v));
    }
    if let Some(v) = &a.contractor_name {
        contractor.insert("name".to_owned(), json!(v));
    }
    if !contractor.is_empty() {
        admin.insert("contractor".to_owned(), Value::Object(contractor));
    }
    if !admin.is_empty() {
        s["administration"] = Value::Object(admin);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting() {
        let r = parse_csv("a,\"b,\"\"c\"\"\"\r\n\"x\ny\",z\n").unwrap_or_default();
        assert_eq!(r, vec![vec!["a", "b,\"c\""], vec!["x\ny", "z"]]);
        assert!(parse_csv("a\"b\n").is_err());
        assert!(parse_csv("\"ab\n").is_err());
        assert!(parse_csv("\"a\"b\n").is_err());
    }

    #[test]
    fn bad_row_names_row_and_field() {
        let csv = "保険者番号,被保険者番号,氏名,ふりがな,生年月日,性別,住所,申請区分,申請日\n\
                   131011,0000012345,架空 花子,かくう はなこ,1944-05-12,2,東京都架空町1,2,2026-09-18\n\
                   131012,0000012346,架空 一郎,かくう いちろう,1940-01-02,1,東京都架空町2,1,2026-09-19\n";
        let e = parse_requests(csv.as_bytes()).err();
        assert_eq!(
            e,
            Some(RequestError::Field {
                row: 2,
                field: "保険者番号",
                problem: match check_insurer_number("131012") {
                    Verdict::Invalid(m) => m,
                    _ => String::new(),
                }
            })
        );
    }

    /// Found by the `request_parse` fuzz target: a birth date before 1868 passed the
    /// request file's own date check, and the subject built from it failed validation.
    #[test]
    fn a_date_the_schema_refuses_is_refused_by_row_and_field() {
        let csv = "保険者番号,被保険者番号,氏名,ふりがな,生年月日,性別,住所,申請区分,申請日\n\
                   131011,0000012345,架空 花子,かくう はなこ,1831-05-12,2,東京都架空町1,2,2026-09-18\n";
        assert_eq!(
            parse_requests(csv.as_bytes()).err(),
            Some(RequestError::Field {
                row: 1,
                field: "生年月日",
                problem: "日付は YYYY-MM-DD で入力してください".to_owned(),
            })
        );
    }

    /// Found by the `request_parse` fuzz target: a ふりがな longer than the schema allows
    /// was accepted, and the subject built from it failed validation.
    #[test]
    fn what_the_schemas_refuse_is_refused_at_its_column() {
        let long = "か".repeat(101);
        let csv = format!(
            "保険者番号,被保険者番号,氏名,ふりがな,生年月日,性別,住所,申請区分,申請日\n\
             131011,0000012345,架空 花子,{long},1944-05-12,2,東京都架空町1,2,2026-09-18\n"
        );
        match parse_requests(csv.as_bytes()) {
            Err(RequestError::Field {
                row: 1,
                field: "ふりがな",
                problem,
            }) => assert!(problem.contains("100文字以内"), "{problem}"),
            other => panic!("{other:?}"),
        }
    }
}
