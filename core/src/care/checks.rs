//! Consistency checks of a 認定調査票 (care-domain reference §1.6): the 57 national
//! 警告コード, the app-level hard rules that block completion, and the app-level soft
//! rules. Pure functions over the interchange JSON; cheap enough to run on every edit.
//!
//! Messages are Japanese, name items and option labels only, never a person's data or a
//! note's text.

use super::frequency::{self, Band};
use crate::schema::{ItemKind, SurveyCatalog};
use serde::Serialize;
use serde_json::{Map, Value};
use std::sync::OnceLock;

/// One condition: item key and the option code that makes it true.
pub type Cond = (&'static str, i64);

/// One national consistency rule: the warning fires when every condition of `a` and of
/// `b` holds. `a` is the first item of the reference's table, `b` the contradicting one.
#[derive(Clone, Copy, Debug)]
pub struct NationalRule {
    /// 警告コード "01" … "57".
    pub code: &'static str,
    /// First item(s).
    pub a: &'static [Cond],
    /// Contradicting item(s).
    pub b: &'static [Cond],
}

const ALL_3_2_TO_3_7: &[Cond] = &[
    ("3-2", 1),
    ("3-3", 1),
    ("3-4", 1),
    ("3-5", 1),
    ("3-6", 1),
    ("3-7", 1),
];

macro_rules! rule {
    ($code:literal, $ai:literal = $av:literal, $bi:literal = $bv:literal) => {
        NationalRule {
            code: $code,
            a: &[($ai, $av)],
            b: &[($bi, $bv)],
        }
    };
}

/// The 57 警告コード of the 認定調査員テキスト2009改訂版 §2-3(2) (reference §1.6 [V]).
pub const NATIONAL_RULES: [NationalRule; 57] = [
    rule!("01", "1-3" = 3, "1-10" = 1),
    rule!("02", "1-4" = 3, "1-8" = 1),
    rule!("03", "1-4" = 3, "1-10" = 1),
    rule!("04", "1-5" = 3, "1-9" = 1),
    rule!("05", "1-5" = 4, "1-6" = 1),
    rule!("06", "1-5" = 4, "1-7" = 1),
    rule!("07", "1-5" = 4, "1-8" = 1),
    rule!("08", "1-5" = 4, "1-9" = 1),
    rule!("09", "1-5" = 4, "1-10" = 1),
    rule!("10", "1-6" = 3, "1-7" = 1),
    rule!("11", "1-6" = 3, "1-8" = 1),
    rule!("12", "1-6" = 3, "1-9" = 1),
    rule!("13", "1-7" = 1, "2-1" = 4),
    rule!("14", "1-7" = 3, "1-9" = 1),
    rule!("15", "2-1" = 4, "1-9" = 1),
    rule!("16", "1-8" = 3, "1-9" = 1),
    rule!("17", "2-3" = 3, "2-4" = 1),
    rule!("18", "2-3" = 3, "5-1" = 1),
    rule!("19", "1-11" = 1, "4-11" = 3),
    rule!("20", "5-1" = 1, "4-11" = 3),
    rule!("21", "5-2" = 1, "3-8" = 3),
    rule!("22", "5-2" = 1, "4-9" = 3),
    rule!("23", "5-2" = 1, "4-10" = 3),
    rule!("24", "5-2" = 1, "4-11" = 3),
    rule!("25", "1-12" = 5, "3-1" = 1),
    rule!("26", "1-13" = 5, "3-1" = 1),
    NationalRule {
        code: "27",
        a: &[("1-12", 5)],
        b: ALL_3_2_TO_3_7,
    },
    NationalRule {
        code: "28",
        a: &[("1-13", 5)],
        b: ALL_3_2_TO_3_7,
    },
    rule!("29", "1-13" = 5, "5-3" = 1),
    rule!("30", "1-12" = 5, "5-3" = 1),
    rule!("31", "1-13" = 5, "2-6" = 1),
    rule!("32", "3-1" = 4, "5-3" = 1),
    rule!("33", "1-13" = 5, "2-5" = 1),
    rule!("34", "1-13" = 5, "2-2" = 1),
    rule!("35", "4-11" = 3, "5-3" = 1),
    rule!("36", "3-5" = 2, "5-3" = 1),
    rule!("37", "1-12" = 5, "2-6" = 1),
    rule!("38", "1-12" = 5, "2-5" = 1),
    rule!("39", "1-12" = 5, "2-2" = 1),
    rule!("40", "1-5" = 4, "5-5" = 1),
    rule!("41", "2-8" = 3, "5-6" = 1),
    rule!("42", "2-9" = 3, "5-6" = 1),
    rule!("43", "5-2" = 3, "5-5" = 1),
    rule!("44", "5-3" = 4, "5-5" = 1),
    rule!("45", "3-1" = 4, "5-5" = 1),
    rule!("46", "4-11" = 3, "4-14" = 1),
    rule!("47", "1-3" = 3, "1-4" = 1),
    rule!("48", "1-3" = 3, "1-8" = 1),
    rule!("49", "1-4" = 1, "1-5" = 4),
    rule!("50", "1-7" = 1, "2-2" = 4),
    rule!("51", "2-1" = 4, "1-8" = 1),
    rule!("52", "1-10" = 1, "2-8" = 3),
    rule!("53", "1-10" = 1, "2-10" = 4),
    rule!("54", "1-10" = 1, "2-11" = 4),
    rule!("55", "2-8" = 3, "1-11" = 1),
    rule!("56", "1-11" = 1, "1-12" = 5),
    rule!("57", "2-10" = 4, "2-11" = 1),
];

/// Codes of the app-level rules (musubi's own, distinct from the national "01"–"57").
pub mod codes {
    /// Hard: a required item is not answered (or answered with an import-only code).
    pub const UNANSWERED: &str = "E01";
    /// Hard: 1-1 / 1-2 "ない" chosen together with a body part.
    pub const EXCLUSIVE: &str = "E02";
    /// Hard: an answer that is not one of the item's options (or of the wrong shape).
    pub const INVALID_ANSWER: &str = "E03";
    /// Hard: a code that the survey's 厚労省IF識別コード (if_version) does not have, e.g.
    /// 前回認定結果 11 (経過的要介護) in a 09B survey.
    pub const NOT_IN_IF_VERSION: &str = "E04";
    /// Soft: a 特記事項 is expected for an item (answer differs from what was seen, or
    /// the help given was judged inappropriate and corrected).
    pub const NOTE_EXPECTED: &str = "M01";
    /// Soft: a 特記事項 points at an item number that does not exist.
    pub const NOTE_NO_ITEM: &str = "M02";
    /// Soft: a 特記事項 uses frequency words without a number.
    pub const NOTE_VAGUE_FREQUENCY: &str = "M03";
    /// Soft: a 特記事項 states a frequency that contradicts the option chosen for an
    /// item the text defines by frequency (3-8, 3-9, 第4群, 5-4).
    pub const NOTE_FREQUENCY_MISMATCH: &str = "M04";
}

/// A hard problem: blocks completion and submission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// "E01" …
    pub code: String,
    /// Item numbers concerned.
    pub items: Vec<String>,
    /// Japanese message.
    pub message: String,
}

/// A recorded dismissal of a warning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Dismissal {
    /// Why it is fine.
    pub reason: String,
    /// Who dismissed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// When.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

/// A soft warning: never blocks; shown next to every item in `items`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// "01"–"57" for the national 警告コード, "M01"… for musubi's own soft rules.
    pub code: String,
    /// Item numbers concerned (the first item, then the contradicting one(s)).
    pub items: Vec<String>,
    /// Japanese message.
    pub message: String,
    /// Present when someone dismissed this warning with a reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dismissed: Option<Dismissal>,
}

impl Warning {
    /// True for the national 警告コード.
    pub fn is_national(&self) -> bool {
        self.code.len() == 2 && self.code.bytes().all(|b| b.is_ascii_digit())
    }
}

/// The result of checking a survey.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SurveyCheck {
    /// Hard problems (block completion).
    pub errors: Vec<Problem>,
    /// Soft warnings (never block).
    pub warnings: Vec<Warning>,
}

impl SurveyCheck {
    /// True when nothing blocks completion.
    pub fn can_complete(&self) -> bool {
        self.errors.is_empty()
    }

    /// The codes of the warnings that are not dismissed, in order.
    pub fn open_warning_codes(&self) -> Vec<&str> {
        self.warnings
            .iter()
            .filter(|w| w.dismissed.is_none())
            .map(|w| w.code.as_str())
            .collect()
    }
}

fn catalog() -> Option<&'static SurveyCatalog> {
    static CATALOG: OnceLock<Option<SurveyCatalog>> = OnceLock::new();
    CATALOG
        .get_or_init(|| SurveyCatalog::embedded().ok())
        .as_ref()
}

fn item_title(key: &str) -> String {
    catalog()
        .and_then(|c| c.item(key))
        .map(|i| format!("{key} {}", i.title))
        .unwrap_or_else(|| key.to_owned())
}

fn choice_label(key: &str, code: i64) -> String {
    catalog()
        .and_then(|c| c.item(key))
        .and_then(|i| i.label_of(code))
        .map(|l| format!("「{l}」"))
        .unwrap_or_else(|| format!("「{code}」"))
}

fn describe(conds: &[Cond]) -> String {
    if conds.len() > 1 && conds.iter().all(|(_, v)| *v == conds[0].1) {
        let first = conds[0].0;
        let last = conds[conds.len() - 1].0;
        return format!(
            "{first}〜{last} がすべて{}",
            choice_label(first, conds[0].1)
        );
    }
    conds
        .iter()
        .map(|(k, v)| format!("{}{}", item_title(k), choice_label(k, *v)))
        .collect::<Vec<_>>()
        .join("・")
}

/// The Japanese message of a national rule.
pub fn national_message(rule: &NationalRule) -> String {
    format!(
        "警告コード{}: {} と {} の組み合わせはまれです。選択に誤りがないか確認してください（誤りでなければ理由を付けて確認済みにできます）。",
        rule.code,
        describe(rule.a),
        describe(rule.b)
    )
}

fn single(items: &Map<String, Value>, key: &str) -> Option<i64> {
    items.get(key).and_then(Value::as_i64)
}

fn holds(items: &Map<String, Value>, conds: &[Cond]) -> bool {
    conds.iter().all(|(k, v)| single(items, k) == Some(*v))
}

/// Keys of the items every completed survey answers (in form order), with whether the
/// item is multi-select. Falls back to the reference's list if the catalog is missing.
fn required_items() -> Vec<(&'static str, bool)> {
    static REQUIRED: OnceLock<Vec<(&'static str, bool)>> = OnceLock::new();
    REQUIRED
        .get_or_init(|| {
            let mut keys: Vec<(&'static str, bool)> = Vec::new();
            if let Some(c) = catalog() {
                for i in &c.items {
                    keys.push((i.key.as_str(), i.kind == ItemKind::Multi));
                }
            }
            keys
        })
        .clone()
}

/// The 厚労省IF識別コード of a survey without one (reference §1.1: new surveys are 09B).
pub const DEFAULT_IF_VERSION: &str = "09B";

/// The IF versions a code of a code list belongs to (`x-if-versions`), or None when the
/// code belongs to every version.
pub fn if_versions(list: &str, code: &str) -> Option<Vec<String>> {
    let reg = crate::schema::Registry::embedded().ok()?;
    let node = reg.file(&format!("codes/{list}.json"))?;
    let alt = node
        .schema
        .get("oneOf")?
        .as_array()?
        .iter()
        .find(|a| a.get("const").and_then(Value::as_str) == Some(code))?;
    let versions = alt.get("x-if-versions")?.as_array()?;
    Some(
        versions
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
    )
}

fn has_digit(text: &str) -> bool {
    text.chars().any(|c| {
        c.is_ascii_digit() || ('０'..='９').contains(&c) || "一二三四五六七八九十百毎".contains(c)
    })
}

/// Frequency words the 認定調査員テキスト asks to replace by numbers (§1.6, S1 §3-6).
const VAGUE_FREQUENCY: &[&str] = &["ときどき", "時々", "頻繁に", "たまに", "しばしば"];

fn note_key_ok(key: &str) -> bool {
    key.len() <= 5 && key.bytes().all(|b| b.is_ascii_digit() || b == b'-')
}

/// Checks a survey's interchange JSON. Never panics, whatever the input; values that
/// are not a survey's produce problems, not failures.
pub fn check_survey(doc: &Value) -> SurveyCheck {
    let mut out = SurveyCheck::default();
    let empty = Map::new();
    let items = doc
        .get("items")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let cat = catalog();

    // Hard rules: every item answered with one of its options; ない exclusive.
    for (key, multi) in required_items() {
        let item = cat.and_then(|c| c.item(key));
        let is_valid = |code: i64| {
            item.is_some_and(|i| i.choices.iter().any(|c| c.code == code && !c.import_only))
        };
        match (items.get(key), multi) {
            (None, _) | (Some(Value::Null), _) => out.errors.push(Problem {
                code: codes::UNANSWERED.to_owned(),
                items: vec![key.to_owned()],
                message: format!("{} が未回答です。", item_title(key)),
            }),
            (Some(Value::Number(n)), false) => {
                let code = n.as_i64();
                let import_only = code.is_some_and(|c| {
                    item.is_some_and(|i| i.choices.iter().any(|ch| ch.code == c && ch.import_only))
                });
                if import_only {
                    out.errors.push(Problem {
                        code: codes::UNANSWERED.to_owned(),
                        items: vec![key.to_owned()],
                        message: format!(
                            "{} は取込専用の値（記載なし）のままです。調査で確認した値を選んでください。",
                            item_title(key)
                        ),
                    });
                } else if !code.is_some_and(is_valid) {
                    out.errors.push(invalid_answer(key));
                }
            }
            (Some(Value::Array(list)), true) => {
                let codes: Vec<Option<i64>> = list.iter().map(Value::as_i64).collect();
                let mut seen = Vec::with_capacity(codes.len());
                let mut bad = false;
                for c in &codes {
                    match c {
                        Some(c) if is_valid(*c) && !seen.contains(c) => seen.push(*c),
                        _ => bad = true,
                    }
                }
                if bad {
                    out.errors.push(invalid_answer(key));
                } else if list.is_empty() && key != "6" {
                    out.errors.push(Problem {
                        code: codes::UNANSWERED.to_owned(),
                        items: vec![key.to_owned()],
                        message: format!(
                            "{} が未回答です（なければ「ない」を選んでください）。",
                            item_title(key)
                        ),
                    });
                }
                let exclusive = item.map(|i| i.exclusive.as_slice()).unwrap_or(&[]);
                if seen.len() > 1 && seen.iter().any(|c| exclusive.contains(c)) {
                    out.errors.push(Problem {
                        code: codes::EXCLUSIVE.to_owned(),
                        items: vec![key.to_owned()],
                        message: format!(
                            "{} で「ない」と部位を同時に選ぶことはできません。",
                            item_title(key)
                        ),
                    });
                }
            }
            (Some(_), _) => out.errors.push(invalid_answer(key)),
        }
    }

    // Codes that belong to other IF versions (`x-if-versions` in the code lists).
    let version = doc
        .get("if_version")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_IF_VERSION);
    if let Some(code) = doc
        .pointer("/overview/history/previous_result")
        .and_then(Value::as_str)
        && let Some(versions) = if_versions("previous-result", code)
        && !versions.iter().any(|v| v == version)
    {
        let label = super::code_label("previous-result", code).unwrap_or_default();
        out.errors.push(Problem {
            code: codes::NOT_IN_IF_VERSION.to_owned(),
            items: vec!["previous_result".to_owned()],
            message: format!(
                "前回認定結果「{label}」（{code}）は IF {version} の様式にはありません（{} のみ）。前回の認定結果を確認してください。",
                versions.join("・")
            ),
        });
    }

    // The 57 national 警告コード.
    for rule in &NATIONAL_RULES {
        if holds(items, rule.a) && holds(items, rule.b) {
            out.warnings.push(Warning {
                code: rule.code.to_owned(),
                items: rule
                    .a
                    .iter()
                    .chain(rule.b)
                    .map(|(k, _)| (*k).to_owned())
                    .collect(),
                message: national_message(rule),
                dismissed: None,
            });
        }
    }

    // Soft app rules over the 特記事項.
    let notes: &[Value] = doc
        .get("special_notes")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let note_item = |n: &Value| n.get("item").and_then(Value::as_str).map(str::to_owned);
    let noted: Vec<String> = notes.iter().filter_map(note_item).collect();
    if let Some(bases) = doc.get("selection_basis").and_then(Value::as_array) {
        let mut flagged: Vec<&str> = Vec::new();
        for b in bases {
            if let Some(item) = b.get("item").and_then(Value::as_str)
                && note_key_ok(item)
                && !flagged.contains(&item)
            {
                flagged.push(item);
            }
        }
        for item in flagged {
            // Notes on 6 are keyed by the group as a whole.
            if !noted.iter().any(|n| n == item) {
                out.warnings.push(Warning {
                    code: codes::NOTE_EXPECTED.to_owned(),
                    items: vec![item.to_owned()],
                    message: format!(
                        "{} は日頃の状況と異なる、または介助の方法を適切なものに改めて選択しています。選択根拠を特記事項に記入してください。",
                        item_title(item)
                    ),
                    dismissed: None,
                });
            }
        }
    }
    for (i, note) in notes.iter().enumerate() {
        let Some(item) = note_item(note) else {
            continue;
        };
        let exists = cat.is_some_and(|c| c.item(&item).is_some());
        let shown = if note_key_ok(&item) {
            item.clone()
        } else {
            format!("special_notes/{i}")
        };
        if !exists {
            out.warnings.push(Warning {
                code: codes::NOTE_NO_ITEM.to_owned(),
                items: vec![shown.clone()],
                message: format!(
                    "{}件目の特記事項の項目番号は認定調査票にありません。",
                    i + 1
                ),
                dismissed: None,
            });
        }
        if let Some(text) = note.get("text").and_then(Value::as_str)
            && VAGUE_FREQUENCY.iter().any(|w| text.contains(w))
            && !has_digit(text)
        {
            out.warnings.push(Warning {
                code: codes::NOTE_VAGUE_FREQUENCY.to_owned(),
                items: vec![shown],
                message: format!(
                    "{}件目の特記事項に頻度を表す言葉（ときどき等）がありますが、回数が書かれていません。「週2、3回」のように数字で記入してください。",
                    i + 1
                ),
                dismissed: None,
            });
        }
    }

    // Frequencies in the notes of the items defined by frequency.
    let mut stated: Vec<(&str, Band)> = Vec::new();
    for note in notes {
        let (Some(item), Some(text)) = (
            note.get("item").and_then(Value::as_str),
            note.get("text").and_then(Value::as_str),
        ) else {
            continue;
        };
        if !frequency::is_frequency_item(item) {
            continue;
        }
        if let Some(band) = frequency::band_of(text) {
            match stated.iter_mut().find(|(k, _)| *k == item) {
                Some((_, b)) => *b = (*b).max(band),
                None => stated.push((item, band)),
            }
        }
    }
    for (item, band) in stated {
        let Some(chosen) = single(items, item) else {
            continue;
        };
        let Some(expected) = Band::of_option(chosen) else {
            continue;
        };
        if expected != band {
            out.warnings.push(Warning {
                code: codes::NOTE_FREQUENCY_MISMATCH.to_owned(),
                items: vec![item.to_owned()],
                message: format!(
                    "{} は{}（{}）を選んでいますが、特記事項に書かれた頻度は{}で、{}にあたります。選択か特記事項を確認してください。",
                    item_title(item),
                    choice_label(item, chosen),
                    expected.definition(),
                    band.definition(),
                    choice_label(item, band.option()),
                ),
                dismissed: None,
            });
        }
    }

    apply_dismissals(doc, &mut out.warnings);
    out
}

fn invalid_answer(key: &str) -> Problem {
    Problem {
        code: codes::INVALID_ANSWER.to_owned(),
        items: vec![key.to_owned()],
        message: format!("{} の回答が選択肢のいずれでもありません。", item_title(key)),
    }
}

fn same_items(a: &[String], b: &[Value]) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|x| b.iter().any(|y| y.as_str() == Some(x.as_str())))
}

/// Marks the warnings that the document's `dismissals` cover (same code, same items).
fn apply_dismissals(doc: &Value, warnings: &mut [Warning]) {
    let Some(list) = doc.get("dismissals").and_then(Value::as_array) else {
        return;
    };
    for w in warnings.iter_mut() {
        let found = list.iter().rev().find(|d| {
            d.get("code").and_then(Value::as_str) == Some(w.code.as_str())
                && d.get("items")
                    .and_then(Value::as_array)
                    .is_some_and(|items| same_items(&w.items, items))
        });
        if let Some(d) = found {
            let s = |k: &str| d.get(k).and_then(Value::as_str).map(str::to_owned);
            w.dismissed = Some(Dismissal {
                reason: s("reason").unwrap_or_default(),
                by: s("by"),
                at: s("at"),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn codes_are_01_to_57_in_order() {
        for (i, r) in NATIONAL_RULES.iter().enumerate() {
            assert_eq!(r.code, format!("{:02}", i + 1));
        }
    }

    #[test]
    fn empty_and_garbage_do_not_panic() {
        for v in [
            json!(null),
            json!([]),
            json!({"items": 3}),
            json!({"items": {"1-1": "x", "1-3": [1]}, "special_notes": [1, {"item": 5}]}),
        ] {
            let c = check_survey(&v);
            assert!(!c.can_complete());
        }
    }

    #[test]
    fn exclusive_none() {
        let c = check_survey(&json!({"items": {"1-1": [1, 3]}}));
        assert!(
            c.errors
                .iter()
                .any(|p| p.code == "E02" && p.items == ["1-1"])
        );
    }
}
