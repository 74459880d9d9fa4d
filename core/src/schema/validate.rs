//! The validator: walks an instance alongside its schema and collects issues that name
//! the JSON path. Messages describe the rule, never the offending value (it may be
//! personal data); codes and counts may appear.

use super::{DocKind, Node, Pointer, Registry, SchemaError};
use crate::date::CalendarDate;
use crate::identifiers::{self, Verdict};
use serde_json::Value;

/// How bad an issue is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Refused: nothing is written.
    Error,
    /// Shown, never blocking.
    Warning,
}

/// One finding, tied to a JSON path.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Issue {
    /// Error or warning.
    pub severity: Severity,
    /// What kind of problem, a stable code from [`ISSUE_CODES`] (for programs, logs and
    /// tests; people read [`Issue::ja`]).
    pub code: &'static str,
    /// JSON Pointer of the offending field.
    pub path: String,
    /// What is wrong, without the value (English, for logs and the CLI).
    pub message: String,
    /// The same in Japanese for the people who fill in the form: names the field by its
    /// title, never by its JSON path, and never repeats the value.
    pub ja: String,
}

impl Issue {
    /// An error of kind `code` (one of [`ISSUE_CODES`]) at `path`: `message` in English,
    /// `ja` in Japanese (see [`Issue::ja`]).
    pub fn error(
        code: &'static str,
        path: impl Into<String>,
        message: impl Into<String>,
        ja: impl Into<String>,
    ) -> Issue {
        Issue {
            severity: Severity::Error,
            code,
            path: path.into(),
            message: message.into(),
            ja: ja.into(),
        }
    }

    /// A warning of kind `code`, as [`Issue::error`].
    pub fn warning(
        code: &'static str,
        path: impl Into<String>,
        message: impl Into<String>,
        ja: impl Into<String>,
    ) -> Issue {
        Issue {
            severity: Severity::Warning,
            ..Issue::error(code, path, message, ja)
        }
    }
}

/// Every code an [`Issue`] can carry, with what it means in Japanese (for help screens,
/// documentation and the tests that hold the list complete). A document refused on arrival
/// carries one of [`crate::admit::REJECTION_CODES`] instead, whose texts are
/// [`crate::admit::rejection_text`]. Codes are stable: programs and logs may rely on them;
/// a new rule gets a new code.
pub const ISSUE_CODES: &[(&str, &str)] = &[
    ("type", "入力の種類（数値・文字など）が違います"),
    ("const", "この書類では変えられない値です"),
    ("enum", "選択肢にない値です"),
    ("code", "コード表にない値です"),
    ("one_of", "決められた形のどれにも合いません"),
    ("minimum", "下限より小さい値です"),
    ("maximum", "上限より大きい値です"),
    ("empty", "入力されていません（空です）"),
    ("min_length", "文字数が足りません"),
    ("max_length", "文字数が多すぎます"),
    ("pattern", "書き方が違います"),
    ("date", "実在する日付ではありません"),
    ("time", "時刻の書き方が違います"),
    (
        "identifier",
        "番号が正しくありません（桁数・文字・検査数字）",
    ),
    ("identifier_unverified", "番号の検査数字を確かめられません"),
    (
        "my_number",
        "個人番号（マイナンバー）らしい数字が含まれています",
    ),
    ("min_items", "選ぶ数が足りません"),
    ("max_items", "選べる数を超えています"),
    ("repeat", "同じ選択肢が二度選ばれています"),
    ("exclusive", "ほかと一緒には選べない選択肢です"),
    ("required", "必須の項目が入力されていません"),
    ("unknown_field", "この書類にない項目です"),
    ("kind", "書類の種類がないか、知らない種類です"),
    ("note_item", "特記事項が認定調査票にない項目を指しています"),
    ("kind_change", "書類の種類は変更できません"),
    ("path", "書類の形と合わない場所には書き込めません"),
    ("read_only", "他の事業所の文書は閲覧のみです"),
    (
        "registration",
        "本人確認・担当事業所登録は決められた手順でのみ作成・変更できます",
    ),
    (
        "workflow",
        "調査票の状態（完了・提出・修正）に合わない操作です",
    ),
    ("vital_signs", "ありえないバイタルサインの値です"),
    ("case_dates", "要介護認定の日付の順序が合いません"),
    (
        "plan_request",
        "居宅サービス計画作成依頼届出の内容が合いません",
    ),
    ("survey_check", "認定調査票の整合性の警告です"),
];

/// The Japanese meaning of an issue code ([`ISSUE_CODES`], then the refusal codes).
pub fn issue_code_text(code: &str) -> Option<&'static str> {
    ISSUE_CODES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, ja)| *ja)
        .or_else(|| {
            crate::admit::REJECTION_CODES
                .contains(&code)
                .then(|| crate::admit::rejection_text(code).0)
        })
}

/// Everything found in one document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Errors and warnings in document order.
    pub issues: Vec<Issue>,
}

impl Report {
    /// True when nothing blocks writing.
    pub fn is_ok(&self) -> bool {
        !self.issues.iter().any(|i| i.severity == Severity::Error)
    }

    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Issue> {
        self.issues.iter().filter(|i| i.severity == Severity::Error)
    }

    /// The warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Issue> {
        self.issues
            .iter()
            .filter(|i| i.severity == Severity::Warning)
    }

    pub(crate) fn push_error(
        &mut self,
        code: &'static str,
        path: impl Into<String>,
        message: impl Into<String>,
        ja: impl Into<String>,
    ) {
        self.issues.push(Issue::error(code, path, message, ja));
    }

    pub(crate) fn push_warning(
        &mut self,
        code: &'static str,
        path: impl Into<String>,
        message: impl Into<String>,
        ja: impl Into<String>,
    ) {
        self.issues.push(Issue::warning(code, path, message, ja));
    }
}

/// Validates `value` as a document of `kind`.
pub(crate) fn validate(
    reg: &Registry,
    kind: DocKind,
    value: &Value,
) -> Result<Report, SchemaError> {
    let root = reg.root(kind)?;
    let mut v = Walker {
        reg,
        report: Report::default(),
    };
    let mut path = Pointer::root();
    v.check(root, value, &mut path)?;
    if kind == DocKind::Survey {
        survey_rules(reg, root, value, &mut v.report)?;
    }
    Ok(v.report)
}

struct Walker<'r> {
    reg: &'r Registry,
    report: Report,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(expected: &str, v: &Value) -> bool {
    match expected {
        "number" => v.is_number(),
        "integer" => match v {
            Value::Number(n) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            _ => false,
        },
        other => type_name(v) == other,
    }
}

/// Equality of JSON values as JSON Schema defines it for `const`, `enum` and
/// `uniqueItems`: numbers are equal when they are mathematically equal (`1` and `1.0`),
/// arrays item by item, objects key by key; everything else as `serde_json` compares it.
pub(crate) fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers_equal(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// Whether two JSON numbers are mathematically equal. Integral values (integers, and
/// floats without a fraction) compare exactly as integers, so `u64::MAX` and a float near
/// it do not round into each other; other floats compare as floats.
fn numbers_equal(x: &serde_json::Number, y: &serde_json::Number) -> bool {
    fn integral(n: &serde_json::Number) -> Option<i128> {
        if let Some(i) = n.as_i64() {
            return Some(i128::from(i));
        }
        if let Some(u) = n.as_u64() {
            return Some(i128::from(u));
        }
        let f = n.as_f64()?;
        // Below 1e30 (< 2^100) every integral f64 converts to i128 exactly.
        (f.fract() == 0.0 && f.abs() < 1e30).then_some(f as i128)
    }
    match (integral(x), integral(y)) {
        (Some(a), Some(b)) => a == b,
        (None, None) => x.as_f64() == y.as_f64(),
        _ => false,
    }
}

/// The keywords of one schema node that the walker reads, gathered in a single pass over
/// the node's few entries. Looking each keyword up by name (about twenty hashed lookups
/// per instance node) was a fifth of the time of a CSV export, which validates every row.
#[derive(Default)]
struct Keywords<'a> {
    reference: Option<&'a Value>,
    ty: Option<&'a Value>,
    constant: Option<&'a Value>,
    enumeration: Option<&'a Value>,
    one_of: Option<&'a Value>,
    minimum: Option<&'a Value>,
    maximum: Option<&'a Value>,
    min_length: Option<&'a Value>,
    max_length: Option<&'a Value>,
    pattern: Option<&'a Value>,
    format: Option<&'a Value>,
    x_check: Option<&'a Value>,
    min_items: Option<&'a Value>,
    max_items: Option<&'a Value>,
    unique_items: Option<&'a Value>,
    x_exclusive: Option<&'a Value>,
    items: Option<&'a Value>,
    properties: Option<&'a Value>,
    required: Option<&'a Value>,
    additional: Option<&'a Value>,
}

impl<'a> Keywords<'a> {
    fn of(schema: &'a Value) -> Self {
        let mut kw = Keywords::default();
        let Value::Object(map) = schema else {
            return kw;
        };
        for (key, value) in map {
            let slot = match key.as_str() {
                "$ref" => &mut kw.reference,
                "type" => &mut kw.ty,
                "const" => &mut kw.constant,
                "enum" => &mut kw.enumeration,
                "oneOf" => &mut kw.one_of,
                "minimum" => &mut kw.minimum,
                "maximum" => &mut kw.maximum,
                "minLength" => &mut kw.min_length,
                "maxLength" => &mut kw.max_length,
                "pattern" => &mut kw.pattern,
                "format" => &mut kw.format,
                "x-check" => &mut kw.x_check,
                "minItems" => &mut kw.min_items,
                "maxItems" => &mut kw.max_items,
                "uniqueItems" => &mut kw.unique_items,
                "x-exclusive" => &mut kw.x_exclusive,
                "items" => &mut kw.items,
                "properties" => &mut kw.properties,
                "required" => &mut kw.required,
                "additionalProperties" => &mut kw.additional,
                _ => continue,
            };
            *slot = Some(value);
        }
        kw
    }
}

/// The title of a schema node as it appears in messages (` (寝返り)`, or nothing).
/// Formatted only when a message is built.
#[derive(Clone, Copy)]
struct Title<'a>(Node<'a>, &'a Registry);

impl Title<'_> {
    /// The field's title in 「」 for a Japanese sentence, or 「この項目」.
    fn ja(&self) -> String {
        match self.1.keyword(self.0, "title").and_then(Value::as_str) {
            Some(t) => format!("「{t}」"),
            None => "この項目".to_owned(),
        }
    }
}

impl std::fmt::Display for Title<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1.keyword(self.0, "title").and_then(Value::as_str) {
            Some(t) => write!(f, " ({t})"),
            None => Ok(()),
        }
    }
}

/// The schema's `time` format: `HH:MM`, 00:00 to 23:59.
pub(crate) fn is_valid_time(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 5 || b[2] != b':' {
        return false;
    }
    let (h, m) = (&s[0..2], &s[3..5]);
    let parse = |p: &str| -> Option<u32> {
        if p.bytes().all(|c| c.is_ascii_digit()) {
            p.parse().ok()
        } else {
            None
        }
    };
    matches!((parse(h), parse(m)), (Some(h), Some(m)) if h < 24 && m < 60)
}

/// The allowed constants of a `oneOf` made only of `const` alternatives.
fn const_choices(list: &[Value]) -> Option<Vec<&Value>> {
    list.iter().map(|alt| alt.get("const")).collect()
}

fn render_consts(values: &[&Value]) -> String {
    values
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Walker<'_> {
    /// Issues reported at `path` since `from` name the field by the title of `target` (a
    /// shared definition such as 年月日); when the node referring to it has a title of its
    /// own (2回目の調査日), that is the name the person filling in the form knows.
    fn rename_title(&mut self, target: Node<'_>, referring: Node<'_>, path: &Pointer, from: usize) {
        let reg = self.reg;
        let (Some(old), Some(new)) = (
            reg.keyword(target, "title").and_then(Value::as_str),
            reg.keyword(referring, "title").and_then(Value::as_str),
        ) else {
            return;
        };
        let (old, new) = (old.to_owned(), new.to_owned());
        if old == new {
            return;
        }
        let here = path.to_string();
        let (old_en, new_en) = (format!(" ({old})"), format!(" ({new})"));
        let (old_ja, new_ja) = (format!("「{old}」"), format!("「{new}」"));
        for issue in self.report.issues[from..]
            .iter_mut()
            .filter(|i| i.path == here)
        {
            issue.message = issue.message.replacen(&old_en, &new_en, 1);
            issue.ja = issue.ja.replacen(&old_ja, &new_ja, 1);
        }
    }

    fn check(
        &mut self,
        node: Node<'_>,
        inst: &Value,
        path: &mut Pointer,
    ) -> Result<(), SchemaError> {
        let errors_before = self.report.issues.len();
        let kw = Keywords::of(node.schema);
        if let Some(r) = kw.reference.and_then(Value::as_str) {
            let target = self.reg.resolve(node.file, r)?;
            // Title of the referring node is the better name; the target carries the rules.
            self.check(target, inst, path)?;
            if self.report.issues.len() > errors_before {
                self.rename_title(target, node, path, errors_before);
                return Ok(());
            }
        }
        // The path and title are formatted only when an issue is reported: most nodes
        // pass, and formatting them eagerly dominated validation time.
        let title = Title(node, self.reg);

        if let Some(t) = kw.ty {
            let ok = match t {
                Value::String(s) => type_matches(s, inst),
                Value::Array(list) => list
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|s| type_matches(s, inst)),
                _ => true,
            };
            if !ok {
                let expected = match t {
                    Value::Array(list) => list
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" or "),
                    other => other.as_str().unwrap_or("?").to_owned(),
                };
                self.report.push_error(
                    "type",
                    path.to_string(),
                    format!(
                        "wrong type{title}: expected {expected}, found {}",
                        type_name(inst)
                    ),
                    format!("{}の入力の種類が違います。", title.ja()),
                );
                return Ok(());
            }
        }

        if let Some(c) = kw.constant
            && !json_equal(c, inst)
        {
            let shown = match c {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            self.report.push_error(
                "const",
                path.to_string(),
                format!("must be {shown}{title}"),
                format!("{}はこの書類では変えられません。", title.ja()),
            );
        }
        if let Some(Value::Array(options)) = kw.enumeration
            && !options.iter().any(|o| json_equal(o, inst))
        {
            let opts: Vec<&Value> = options.iter().collect();
            self.report.push_error(
                "enum",
                path.to_string(),
                format!(
                    "not an allowed value{title} (allowed: {})",
                    render_consts(&opts)
                ),
                format!("{}は選択肢の中から選んでください。", title.ja()),
            );
        }
        if let Some(Value::Array(alts)) = kw.one_of {
            if let Some(consts) = const_choices(alts) {
                let hits = consts.iter().filter(|c| json_equal(c, inst)).count();
                if hits != 1 {
                    self.report.push_error(
                        "code",
                        path.to_string(),
                        format!(
                            "not one of the codes allowed{title} (allowed: {})",
                            render_consts(&consts)
                        ),
                        format!("{}は選択肢の中から選んでください。", title.ja()),
                    );
                }
            } else {
                let mut matched = 0;
                for alt in alts {
                    let mut sub = Walker {
                        reg: self.reg,
                        report: Report::default(),
                    };
                    sub.check(
                        Node {
                            file: node.file,
                            schema: alt,
                        },
                        inst,
                        path,
                    )?;
                    if sub.report.is_ok() {
                        matched += 1;
                    }
                }
                if matched != 1 {
                    self.report.push_error(
                        "one_of",
                        path.to_string(),
                        format!("does not match exactly one of the allowed forms{title}"),
                        format!("{}の入力が決められた形のどれにも合いません。", title.ja()),
                    );
                }
            }
        }

        match inst {
            Value::String(s) => self.check_string(node, &kw, s, path),
            Value::Number(n) => {
                if let (Some(min), Some(x)) = (kw.minimum.and_then(Value::as_f64), n.as_f64())
                    && x < min
                {
                    self.report.push_error(
                        "minimum",
                        path.to_string(),
                        format!("below the minimum {min}{title}"),
                        format!("{}は{min}以上で入力してください。", title.ja()),
                    );
                }
                if let (Some(max), Some(x)) = (kw.maximum.and_then(Value::as_f64), n.as_f64())
                    && x > max
                {
                    self.report.push_error(
                        "maximum",
                        path.to_string(),
                        format!("above the maximum {max}{title}"),
                        format!("{}は{max}以下で入力してください。", title.ja()),
                    );
                }
            }
            Value::Array(list) => self.check_array(node, &kw, list, path)?,
            Value::Object(map) => self.check_object(node, &kw, map, path)?,
            _ => {}
        }
        Ok(())
    }

    fn check_string(&mut self, node: Node<'_>, kw: &Keywords<'_>, s: &str, path: &Pointer) {
        let title = Title(node, self.reg);
        let len = s.chars().count() as u64;
        if let Some(min) = kw.min_length.and_then(Value::as_u64)
            && len < min
        {
            let (code, msg, ja) = if min == 1 {
                (
                    "empty",
                    format!("must not be empty{title}"),
                    format!("{}を入力してください。", title.ja()),
                )
            } else {
                (
                    "min_length",
                    format!("too short{title}: at least {min} characters"),
                    format!("{}は{min}文字以上で入力してください。", title.ja()),
                )
            };
            self.report.push_error(code, path.to_string(), msg, ja);
        }
        if let Some(max) = kw.max_length.and_then(Value::as_u64)
            && len > max
        {
            self.report.push_error(
                "max_length",
                path.to_string(),
                format!("too long{title}: at most {max} characters, found {len}"),
                format!(
                    "{}は{max}文字以内で入力してください（いま{len}文字）。",
                    title.ja()
                ),
            );
        }
        if let Some(p) = kw.pattern.and_then(Value::as_str)
            && let Some(re) = self.reg.regex(p)
            && !re.is_match(s)
        {
            self.report.push_error(
                "pattern",
                path.to_string(),
                format!("wrong format{title}: must match {p}"),
                format!("{}の書き方が違います。", title.ja()),
            );
        }
        match kw.format.and_then(Value::as_str) {
            Some("date") if CalendarDate::parse(s).is_err() => self.report.push_error(
                "date",
                path.to_string(),
                format!("not a valid date{title}: expected YYYY-MM-DD"),
                format!(
                    "{}は実在する日付を 2024-04-01 の形（西暦・1868年以降）で入力してください。",
                    title.ja()
                ),
            ),
            Some("time") if !is_valid_time(s) => self.report.push_error(
                "time",
                path.to_string(),
                format!("not a valid time{title}: expected HH:MM"),
                format!("{}は時刻を 09:30 の形で入力してください。", title.ja()),
            ),
            _ => {}
        }
        let verdict = match kw.x_check.and_then(Value::as_str) {
            Some("insurer-number") => identifiers::check_insurer_number(s),
            Some("insured-number") => identifiers::check_insured_number(s),
            Some("office-number") => identifiers::check_office_number(s),
            _ => Verdict::Valid,
        };
        match verdict {
            Verdict::Valid => {}
            Verdict::Warn(m) => self.report.push_warning("identifier_unverified", 
                path.to_string(),
                m,
                format!(
                    "{}の検査数字を確かめられませんでした。番号をもう一度確認してください。",
                    title.ja()
                ),
            ),
            Verdict::Invalid(m) => self.report.push_error("identifier", 
                path.to_string(),
                m,
                format!(
                    "{}が正しくありません（桁数・文字・検査数字）。被保険者証などの番号をもう一度確認してください。",
                    title.ja()
                ),
            ),
        }
        if identifiers::contains_my_number(s) {
            self.report.push_error("my_number", 
                path.to_string(),
                "contains what looks like a 12-digit 個人番号 (My Number); musubi never stores it — please remove it",
                format!(
                    "{}に個人番号（マイナンバー）らしい12桁の数字があります。個人番号は保存できないため、消してください。",
                    title.ja()
                ),
            );
        }
    }

    fn check_array(
        &mut self,
        node: Node<'_>,
        kw: &Keywords<'_>,
        list: &[Value],
        path: &mut Pointer,
    ) -> Result<(), SchemaError> {
        let title = Title(node, self.reg);
        let n = list.len() as u64;
        if let Some(min) = kw.min_items.and_then(Value::as_u64)
            && n < min
        {
            self.report.push_error(
                "min_items",
                path.to_string(),
                format!("needs at least {min} entries{title}"),
                format!("{}は{min}つ以上選んでください。", title.ja()),
            );
        }
        if let Some(max) = kw.max_items.and_then(Value::as_u64)
            && n > max
        {
            self.report.push_error(
                "max_items",
                path.to_string(),
                format!("allows at most {max} entries{title}, found {n}"),
                format!("{}は{max}つまで選べます。", title.ja()),
            );
        }
        if kw.unique_items.and_then(Value::as_bool) == Some(true) {
            for (i, a) in list.iter().enumerate() {
                if list[..i].iter().any(|b| json_equal(a, b)) {
                    self.report.push_error(
                        "repeat",
                        path.child(i.to_string()).to_string(),
                        format!("repeats an earlier entry{title}; each choice may appear once"),
                        format!("{}で同じ選択肢が二度選ばれています。", title.ja()),
                    );
                }
            }
        }
        if let Some(Value::Array(excl)) = kw.x_exclusive
            && list.len() > 1
            && list.iter().any(|v| excl.iter().any(|e| json_equal(e, v)))
        {
            let codes: Vec<&Value> = excl.iter().collect();
            self.report.push_error(
                "exclusive",
                path.to_string(),
                format!(
                    "code {} excludes every other choice{title}",
                    render_consts(&codes)
                ),
                format!(
                    "{}で「ない」などの選択肢は、ほかの選択肢と一緒には選べません。",
                    title.ja()
                ),
            );
        }
        if let Some(items) = kw.items {
            for (i, v) in list.iter().enumerate() {
                path.push(i.to_string());
                self.check(
                    Node {
                        file: node.file,
                        schema: items,
                    },
                    v,
                    path,
                )?;
                path.pop();
            }
        }
        Ok(())
    }

    fn check_object(
        &mut self,
        node: Node<'_>,
        kw: &Keywords<'_>,
        map: &serde_json::Map<String, Value>,
        path: &mut Pointer,
    ) -> Result<(), SchemaError> {
        let title = Title(node, self.reg);
        let props = kw.properties.and_then(Value::as_object);
        if let Some(Value::Array(req)) = kw.required {
            for name in req.iter().filter_map(Value::as_str) {
                if !map.contains_key(name) {
                    let sub = props.and_then(|p| p.get(name)).map(|s| {
                        Title(
                            Node {
                                file: node.file,
                                schema: s,
                            },
                            self.reg,
                        )
                    });
                    let sub_title = sub.as_ref().map(Title::to_string).unwrap_or_default();
                    let sub_ja = sub
                        .as_ref()
                        .map_or_else(|| "必要な項目".to_owned(), Title::ja);
                    self.report.push_error(
                        "required",
                        path.child(name).to_string(),
                        format!("required field is missing{sub_title}"),
                        format!("{sub_ja}が入力されていません。"),
                    );
                }
            }
        }
        let additional = kw.additional;
        for (key, v) in map {
            path.push(key.clone());
            if let Some(sub) = props.and_then(|p| p.get(key)) {
                self.check(
                    Node {
                        file: node.file,
                        schema: sub,
                    },
                    v,
                    path,
                )?;
            } else {
                match additional {
                    Some(Value::Bool(false)) => {
                        let known: Vec<&str> = props
                            .map(|p| p.keys().map(String::as_str).collect())
                            .unwrap_or_default();
                        let hint = if known.len() <= 12 && !known.is_empty() {
                            format!(" (known fields: {})", known.join(", "))
                        } else {
                            String::new()
                        };
                        self.report.push_error("unknown_field", 
                            path.to_string(),
                            format!("unknown field{title}{hint}"),
                            "この書類にない項目が含まれています（新しい版の端末で作られた可能性があります）。",
                        );
                    }
                    Some(sub @ Value::Object(_)) => self.check(
                        Node {
                            file: node.file,
                            schema: sub,
                        },
                        v,
                        path,
                    )?,
                    _ => {}
                }
            }
            path.pop();
        }
        Ok(())
    }
}

/// Rules of the survey that a schema cannot say: a 特記事項 must point at an item that
/// exists (soft; care-domain §1.6).
fn survey_rules(
    reg: &Registry,
    root: Node<'_>,
    value: &Value,
    report: &mut Report,
) -> Result<(), SchemaError> {
    let Some(items_node) = reg.property(root, "items") else {
        return Ok(());
    };
    let item_keys: Vec<&str> = reg
        .chain(items_node)?
        .iter()
        .filter_map(|n| n.schema.get("properties").and_then(Value::as_object))
        .flat_map(|p| p.keys().map(String::as_str))
        .collect();
    if let Some(Value::Array(notes)) = value.get("special_notes") {
        for (i, note) in notes.iter().enumerate() {
            if let Some(item) = note.get("item").and_then(Value::as_str)
                && !item_keys.contains(&item)
            {
                report.push_warning(
                    "note_item",
                    format!("/special_notes/{i}/item"),
                    "this 特記事項 points at an item number that does not exist on the 認定調査票",
                    "この特記事項は、認定調査票にない項目番号を指しています。",
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code an issue can carry, walked: unique, a snake_case name, and a Japanese
    /// text with no English and no path (so a screen can always say what a code means).
    #[test]
    fn every_issue_code_has_its_japanese_text() {
        let mut seen = std::collections::HashSet::new();
        for (code, _) in ISSUE_CODES {
            assert!(seen.insert(*code), "{code} twice in ISSUE_CODES");
        }
        // A refusal code may also be an issue code (`my_number`): the same problem.
        let all = seen
            .iter()
            .copied()
            .chain(crate::admit::REJECTION_CODES.iter().copied());
        for code in all {
            assert!(
                !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code}"
            );
            let ja = issue_code_text(code).unwrap_or_else(|| panic!("{code} has no text"));
            assert!(!ja.is_ascii(), "{code}: {ja}");
            let english: Vec<&str> = ja
                .split(|c: char| !c.is_ascii_alphabetic())
                .filter(|w| w.len() > 1)
                .collect();
            assert!(english.is_empty(), "{code}: English {english:?} in {ja}");
            assert!(!ja.contains('/'), "{code}: {ja}");
        }
        assert_eq!(issue_code_text("no_such_code"), None);
    }

    #[test]
    fn dates_and_times() {
        assert!(CalendarDate::parse("2024-02-29").is_ok());
        assert!(CalendarDate::parse("2023-02-29").is_err());
        assert!(CalendarDate::parse("2023-13-01").is_err());
        assert!(CalendarDate::parse("2023-1-01").is_err());
        assert!(CalendarDate::parse("２０２３-01-01").is_err());
        assert!(is_valid_time("09:30"));
        assert!(!is_valid_time("24:00"));
        assert!(!is_valid_time("9:30"));
    }

    fn mini() -> Registry {
        Registry::from_files([(
            "t.json",
            r#"{"type":"object","additionalProperties":false,"required":["a"],
                "properties":{
                  "a":{"type":"integer","title":"寝返り","oneOf":[{"const":1,"title":"x"},{"const":2,"title":"y"}]},
                  "s":{"type":"array","uniqueItems":true,"x-exclusive":[1],"items":{"type":"integer","oneOf":[{"const":1},{"const":2},{"const":3}]}},
                  "n":{"type":"string","minLength":1,"maxLength":3},
                  "i":{"type":"string","x-check":"insurer-number"}
                }}"#,
        )])
        .unwrap()
    }

    fn run(v: Value) -> Report {
        let reg = mini();
        let mut w = Walker {
            reg: &reg,
            report: Report::default(),
        };
        let root = reg.file("t.json").unwrap();
        w.check(root, &v, &mut Pointer::root()).unwrap();
        w.report
    }

    #[test]
    fn names_the_path_and_never_the_value() {
        let r = run(serde_json::json!({"a": 5, "n": "秘密の名前です", "x": 1, "i": "131016"}));
        let mut paths: Vec<&str> = r.errors().map(|i| i.path.as_str()).collect();
        paths.sort();
        assert_eq!(paths, ["/a", "/i", "/n", "/x"]);
        for issue in r.errors() {
            assert!(!issue.message.contains("秘密"), "{}", issue.message);
            assert!(!issue.message.contains("131016"), "{}", issue.message);
        }
        assert!(
            r.errors()
                .any(|i| i.path == "/a" && i.message.contains("寝返り"))
        );
    }

    #[test]
    fn sets_are_unique_and_exclusive() {
        assert!(run(serde_json::json!({"a": 1, "s": [2, 3]})).is_ok());
        let r = run(serde_json::json!({"a": 1, "s": [2, 2]}));
        assert_eq!(r.errors().next().unwrap().path, "/s/1");
        let r = run(serde_json::json!({"a": 1, "s": [1, 2]}));
        assert_eq!(r.errors().next().unwrap().path, "/s");
        let r = run(serde_json::json!({"a": 1, "s": [4]}));
        assert_eq!(r.errors().next().unwrap().path, "/s/0");
    }

    /// JSON Schema compares `const`, `enum` and `uniqueItems` values mathematically:
    /// 1 and 1.0 are the same number (serde_json's `==` says they differ).
    #[test]
    fn numbers_compare_mathematically_in_const_enum_and_unique_items() {
        let reg = Registry::from_files([(
            "n.json",
            r#"{"type":"object","properties":{
                  "c":{"const":1},
                  "e":{"enum":[2,"two"]},
                  "k":{"oneOf":[{"const":3},{"const":4}]},
                  "u":{"type":"array","uniqueItems":true},
                  "o":{"const":{"v":[1,2.5]}}
                }}"#,
        )])
        .unwrap();
        let check = |v: Value| {
            let mut w = Walker {
                reg: &reg,
                report: Report::default(),
            };
            w.check(reg.file("n.json").unwrap(), &v, &mut Pointer::root())
                .unwrap();
            let mut codes: Vec<&str> = w.report.errors().map(|i| i.code).collect();
            codes.sort_unstable();
            codes.join(",")
        };
        use serde_json::json;
        assert_eq!(
            check(json!({"c": 1.0, "e": 2.0, "k": 3.0, "o": {"v": [1.0, 2.5]}})),
            ""
        );
        assert_eq!(check(json!({"c": 1.5})), "const");
        assert_eq!(check(json!({"e": 2.5})), "enum");
        assert_eq!(check(json!({"k": 3.5})), "code");
        assert_eq!(check(json!({"u": [1, 1.0]})), "repeat");
        assert_eq!(check(json!({"u": [[1], [1.0]]})), "repeat");
        assert_eq!(check(json!({"u": [{"a": 0}, {"a": 0.0}]})), "repeat");
        assert_eq!(check(json!({"u": [1, 1.5, "1", true]})), "");
        // Large integers are not rounded into each other through f64.
        assert_eq!(check(json!({"u": [u64::MAX, u64::MAX - 1]})), "");
        assert!(!json_equal(
            &json!(9_007_199_254_740_993_u64),
            &json!(9_007_199_254_740_992.0)
        ));
    }

    #[test]
    fn missing_required_and_wrong_type() {
        let r = run(serde_json::json!({}));
        assert_eq!(r.errors().next().unwrap().path, "/a");
        let r = run(serde_json::json!({"a": "1"}));
        assert!(
            r.errors()
                .next()
                .unwrap()
                .message
                .contains("expected integer")
        );
        let r = run(serde_json::json!([]));
        assert_eq!(r.errors().next().unwrap().path, "");
    }
}
