//! Comparison of the card's basic four items with the subject record: normalised for
//! character width (NFKC) and spaces (ASCII and 全角). The outcome is shown to staff; a
//! mismatch is for them to decide, never silently accepted.

use unicode_normalization::UnicodeNormalization;

/// Outcome of comparing one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldMatch {
    /// Equal after normalisation.
    Match,
    /// Different.
    Mismatch,
    /// Not compared (no value on one side).
    NotCompared,
}

impl FieldMatch {
    /// As recorded: `match`, `mismatch`, `not_compared`.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldMatch::Match => "match",
            FieldMatch::Mismatch => "mismatch",
            FieldMatch::NotCompared => "not_compared",
        }
    }

    /// The recorded form back (exactly `match`, `mismatch`, `not_compared`).
    pub fn parse(s: &str) -> Option<FieldMatch> {
        match s {
            "match" => Some(FieldMatch::Match),
            "mismatch" => Some(FieldMatch::Mismatch),
            "not_compared" => Some(FieldMatch::NotCompared),
            _ => None,
        }
    }
}

/// The subject record's name and birth date, compared with the card's (personal data:
/// in memory only; `Debug` shows nothing).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// 氏名 as recorded.
    pub name: Option<String>,
    /// 生年月日 as recorded (`YYYY-MM-DD`).
    pub birth_date: Option<String>,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Record { .. }")
    }
}

impl Record {
    /// From a person block (`subject.person` / `survey.subject`).
    pub fn of_person(person: &serde_json::Value) -> Record {
        let text = |k: &str| {
            person
                .get(k)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        Record {
            name: text("name"),
            birth_date: text("birth_date"),
        }
    }

    /// Compares with the card's name and birth date: (name, birth date).
    pub fn compare(&self, card_name: &str, card_birth_date: &str) -> (FieldMatch, FieldMatch) {
        (
            compare_name(Some(card_name), self.name.as_deref()),
            compare_date(Some(card_birth_date), self.birth_date.as_deref()),
        )
    }
}

/// NFKC (full-width letters/digits to half-width, half-width kana to full-width), then
/// remove all white space.
pub fn normalise(s: &str) -> String {
    s.nfkc().filter(|c| !c.is_whitespace()).collect()
}

/// Compares names.
pub fn compare_name(card: Option<&str>, record: Option<&str>) -> FieldMatch {
    match (card, record) {
        (Some(a), Some(b)) if normalise(a) == normalise(b) => FieldMatch::Match,
        (Some(_), Some(_)) => FieldMatch::Mismatch,
        _ => FieldMatch::NotCompared,
    }
}

/// Compares birth dates given as `YYYY-MM-DD` (or `YYYYMMDD`).
pub fn compare_date(card: Option<&str>, record: Option<&str>) -> FieldMatch {
    let digits =
        |s: &str| -> String { normalise(s).chars().filter(char::is_ascii_digit).collect() };
    match (card, record) {
        (Some(a), Some(b)) if digits(a).len() == 8 && digits(a) == digits(b) => FieldMatch::Match,
        (Some(_), Some(_)) => FieldMatch::Mismatch,
        _ => FieldMatch::NotCompared,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn width_and_spaces_do_not_matter() {
        assert_eq!(
            compare_name(Some("結城　花子"), Some("結城 花子")),
            FieldMatch::Match
        );
        assert_eq!(
            compare_name(Some("ＡＢＣ　ﾃｽﾄ"), Some("ABC テスト")),
            FieldMatch::Match
        );
        assert_eq!(
            compare_name(Some("結城 花子"), Some("結城 華子")),
            FieldMatch::Mismatch
        );
        assert_eq!(compare_name(None, Some("x")), FieldMatch::NotCompared);
        assert_eq!(
            compare_date(Some("1944-05-12"), Some("19440512")),
            FieldMatch::Match
        );
        assert_eq!(
            compare_date(Some("1944-05-12"), Some("1944-05-13")),
            FieldMatch::Mismatch
        );
    }
}
