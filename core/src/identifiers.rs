//! Identifier rules: 保険者番号, 被保険者番号, 介護保険事業所番号, and a guard that refuses
//! anything that looks like a 12-digit 個人番号 (My Number).
//!
//! Sources (care-domain reference §2.3–2.5, §7.1): the insurer check digit is modulus 10
//! with weights 2-1-2-1-2 from the left over 5 body digits, products summed digit by digit,
//! CD = (10 − sum mod 10) mod 10. The office check digit uses the same scheme over 9
//! characters with letters A=10 … Z=32 (skipping I, O, Q); the letter handling and
//! medical-derived numbers are unverified, so those only warn.
//!
//! Messages never contain the number itself.

/// The verdict on an identifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Valid.
    Valid,
    /// Probably valid, but a rule could not be confirmed; the message says why.
    Warn(String),
    /// Invalid; the message says why (without the value).
    Invalid(String),
}

/// Weighted "modulus 10, weights 2-1, split" sum over values, weights starting with 2 at
/// the rightmost value.
fn mod10_21(values: &[u32]) -> u32 {
    let sum: u32 = values
        .iter()
        .rev()
        .enumerate()
        .map(|(i, v)| {
            let w = if i % 2 == 0 { 2 } else { 1 };
            // Multi-digit values and products are added digit by digit.
            let p = v * w;
            p.to_string()
                .bytes()
                .map(|b| u32::from(b - b'0'))
                .sum::<u32>()
        })
        .sum();
    (10 - sum % 10) % 10
}

/// Check digit of a 5-digit insurer number body.
pub fn insurer_check_digit(body: &str) -> Option<u32> {
    if body.len() != 5 || !body.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let values: Vec<u32> = body.bytes().map(|b| u32::from(b - b'0')).collect();
    Some(mod10_21(&values))
}

/// 保険者番号: 6 ASCII digits whose last digit is the check digit.
pub fn check_insurer_number(s: &str) -> Verdict {
    if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Verdict::Invalid("保険者番号 must be exactly 6 digits (0-9)".to_owned());
    }
    let (body, cd) = s.split_at(5);
    match insurer_check_digit(body) {
        Some(expected) if cd.bytes().next().map(|b| u32::from(b - b'0')) == Some(expected) => {
            Verdict::Valid
        }
        _ => Verdict::Invalid(
            "保険者番号 check digit does not match (modulus 10, weights 2-1); please re-check the number on the 被保険者証".to_owned(),
        ),
    }
}

/// 被保険者番号: 10 characters of 0-9 / A-Z (no check digit is known, so none is applied).
pub fn check_insured_number(s: &str) -> Verdict {
    if s.chars().count() == 10
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    {
        Verdict::Valid
    } else {
        Verdict::Invalid("被保険者番号 must be exactly 10 characters of 0-9 or A-Z".to_owned())
    }
}

fn office_char_value(c: u8) -> Option<u32> {
    match c {
        b'0'..=b'9' => Some(u32::from(c - b'0')),
        b'A'..=b'Z' if !matches!(c, b'I' | b'O' | b'Q') => {
            // A=10, B=11, … skipping I, O and Q.
            let skipped = [b'I', b'O', b'Q'].iter().filter(|&&s| s < c).count() as u32;
            Some(10 + u32::from(c - b'A') - skipped)
        }
        _ => None,
    }
}

/// 介護保険事業所番号 (10 characters).
pub fn check_office_number(s: &str) -> Verdict {
    let b = s.as_bytes();
    if b.len() != 10 {
        return Verdict::Invalid("事業所番号 must be exactly 10 characters".to_owned());
    }
    let digits_ok = |range: std::ops::Range<usize>| b[range].iter().all(u8::is_ascii_digit);
    if !digits_ok(0..2) || !digits_ok(3..10) {
        return Verdict::Invalid(
            "事業所番号: only the 3rd character may be a letter; all others must be digits"
                .to_owned(),
        );
    }
    let third = b[2];
    if office_char_value(third).is_none() {
        return Verdict::Invalid(
            "事業所番号: the 3rd character must be a digit or an upper-case letter other than I, O, Q".to_owned(),
        );
    }
    let values: Option<Vec<u32>> = b[..9].iter().map(|&c| office_char_value(c)).collect();
    let Some(values) = values else {
        return Verdict::Invalid("事業所番号 contains an invalid character".to_owned());
    };
    let expected = mod10_21(&values);
    let actual = u32::from(b[9] - b'0');
    let medical_derived = matches!(third, b'1' | b'3' | b'4' | b'5' | b'6');
    let letter = third.is_ascii_uppercase();
    if expected == actual {
        Verdict::Valid
    } else if medical_derived {
        Verdict::Warn(
            "事業所番号 looks medical-derived (みなし指定); its check digit follows the 医療機関コード and could not be verified".to_owned(),
        )
    } else if letter {
        Verdict::Warn(
            "事業所番号 check digit does not match; the rule for numbers with a letter is unverified, please confirm the number".to_owned(),
        )
    } else {
        Verdict::Invalid(
            "事業所番号 check digit does not match (modulus 10, weights 2-1)".to_owned(),
        )
    }
}

/// Check digit of an 11-digit individual-number body (番号法施行規則 第5条).
pub fn my_number_check_digit(body: &[u8; 11]) -> u32 {
    let sum: u32 = (1..=11u32)
        .map(|n| {
            let p = u32::from(body[11 - n as usize]);
            let q = if n <= 6 { n + 1 } else { n - 5 };
            p * q
        })
        .sum();
    let r = sum % 11;
    if r <= 1 { 0 } else { 11 - r }
}

/// True when `text` contains a run of exactly 12 digits (after NFKC, so full-width digits
/// count; single spaces or hyphens between digits are ignored) whose last digit is a valid
/// 個人番号 check digit. Such text is refused: musubi never stores a My Number.
///
/// Runs on every string the validator sees, so it does not build the NFKC form: each
/// non-ASCII character is replaced by its compatibility decomposition (NFKD without
/// reordering) as it is read. For this scan the two agree: canonical reordering only moves
/// combining marks, which are never digits, spaces or hyphens, and canonical composition
/// never joins a digit, space or hyphen with what follows. A property test checks the
/// equivalence against the NFKC form.
pub fn contains_my_number(text: &str) -> bool {
    let mut scan = DigitRuns::default();
    for c in text.chars() {
        if c.is_ascii() {
            scan.feed(c);
        } else {
            unicode_normalization::char::decompose_compatible(c, |d| scan.feed(d));
        }
        if scan.found {
            return true;
        }
    }
    scan.finish()
}

/// The digit-run scanner of [`contains_my_number`], fed one normalised character at a time.
#[derive(Default)]
struct DigitRuns {
    run: Vec<u8>,
    pending_sep: bool,
    found: bool,
}

impl DigitRuns {
    fn feed(&mut self, c: char) {
        if c.is_ascii_digit() {
            self.run.push(c as u8 - b'0');
            self.pending_sep = false;
        } else if (c == ' ' || c == '-') && !self.run.is_empty() && !self.pending_sep {
            self.pending_sep = true;
        } else {
            self.end_run();
        }
    }

    fn end_run(&mut self) {
        if self.run.len() == 12 {
            let mut body = [0u8; 11];
            body.copy_from_slice(&self.run[..11]);
            self.found |= my_number_check_digit(&body) == u32::from(self.run[11]);
        }
        self.run.clear();
        self.pending_sep = false;
    }

    fn finish(mut self) -> bool {
        self.end_run();
        self.found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn insurer_examples_from_the_reference() {
        for ok in ["122192", "122069", "121012", "131011"] {
            assert_eq!(check_insurer_number(ok), Verdict::Valid, "{ok}");
        }
        assert!(matches!(
            check_insurer_number("131016"),
            Verdict::Invalid(_)
        ));
        assert!(matches!(check_insurer_number("13101"), Verdict::Invalid(_)));
        assert!(matches!(
            check_insurer_number("１３１０１１"),
            Verdict::Invalid(_)
        ));
    }

    #[test]
    fn insured_number_shape() {
        assert_eq!(check_insured_number("0000012345"), Verdict::Valid);
        assert_eq!(check_insured_number("H000012345"), Verdict::Valid);
        assert!(matches!(
            check_insured_number("000001234"),
            Verdict::Invalid(_)
        ));
        assert!(matches!(
            check_insured_number("h000012345"),
            Verdict::Invalid(_)
        ));
    }

    #[test]
    fn office_number_worked_example() {
        assert_eq!(check_office_number("1370100016"), Verdict::Valid);
        assert!(matches!(
            check_office_number("1370100017"),
            Verdict::Invalid(_)
        ));
        // Medical-derived (3rd digit 6: 訪問看護ステーション) only warns.
        assert!(matches!(
            check_office_number("1360100017"),
            Verdict::Warn(_)
        ));
        assert!(matches!(
            check_office_number("13I0100016"),
            Verdict::Invalid(_)
        ));
        assert!(matches!(
            check_office_number("137010001"),
            Verdict::Invalid(_)
        ));
    }

    #[test]
    fn letter_values_skip_i_o_q() {
        assert_eq!(office_char_value(b'A'), Some(10));
        assert_eq!(office_char_value(b'H'), Some(17));
        assert_eq!(office_char_value(b'J'), Some(18));
        assert_eq!(office_char_value(b'P'), Some(23));
        assert_eq!(office_char_value(b'R'), Some(24));
        assert_eq!(office_char_value(b'Z'), Some(32));
        assert_eq!(office_char_value(b'I'), None);
    }

    fn with_cd(body: &str) -> String {
        let mut b = [0u8; 11];
        for (i, c) in body.bytes().enumerate() {
            b[i] = c - b'0';
        }
        format!("{body}{}", my_number_check_digit(&b))
    }

    #[test]
    fn my_number_guard() {
        let n = with_cd("12345678901");
        assert!(contains_my_number(&n));
        assert!(contains_my_number(&format!("番号は{n}です")));
        let spaced = format!("{} {} {}", &n[..4], &n[4..8], &n[8..]);
        assert!(contains_my_number(&spaced));
        let wide: String = n
            .chars()
            .map(|c| char::from_u32(c as u32 - '0' as u32 + '０' as u32).unwrap())
            .collect();
        assert!(contains_my_number(&wide));
        // Wrong check digit, 11 or 13 digits, phone numbers: not flagged.
        let last = n.as_bytes()[11] - b'0';
        let wrong = format!("{}{}", &n[..11], (last + 1) % 10);
        assert!(!contains_my_number(&wrong));
        assert!(!contains_my_number(&n[..11]));
        assert!(!contains_my_number(&format!("{n}7")));
        assert!(!contains_my_number("03-1234-5678"));
    }

    /// The definition, written the slow way: scan the NFKC form.
    fn contains_my_number_nfkc(text: &str) -> bool {
        use unicode_normalization::UnicodeNormalization;
        let mut scan = DigitRuns::default();
        for c in text.nfkc() {
            scan.feed(c);
        }
        scan.finish()
    }

    /// Text mixing digits in several forms (ASCII, full-width, circled, parenthesised,
    /// superscript), separators, combining marks and kana, with a valid 12-digit number
    /// planted in some of them.
    fn tricky_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            "[0-9０-９ \\-－]{1,14}",
            "[①-⑳⑴-⒇⒈-⒛²³¹⁰㉑㊿]{1,3}",
            "[\u{0301}\u{0308}\u{3099}\u{00A8}\u{FF9E}]{1,2}",
            "[あア가ｶa-zＡ-Ｚ（）、]{1,4}",
            "[0-9]{11}".prop_map(|b| with_cd(&b)),
            "[0-9]{11}".prop_map(|b| with_cd(&b)
                .chars()
                .map(|c| char::from_u32(c as u32 - '0' as u32 + '０' as u32).unwrap_or(c))
                .collect::<String>()),
            ".{0,4}",
        ];
        proptest::collection::vec(piece, 0..8).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn my_number_scan_agrees_with_nfkc(s in tricky_text()) {
            prop_assert_eq!(contains_my_number(&s), contains_my_number_nfkc(&s), "{:?}", s);
        }

        #[test]
        fn insurer_every_body_has_exactly_one_valid_cd(body in "[0-9]{5}") {
            let valid = (0..10).filter(|d| check_insurer_number(&format!("{body}{d}")) == Verdict::Valid).count();
            prop_assert_eq!(valid, 1);
        }

        #[test]
        fn checks_never_panic(s in ".*") {
            let _ = check_insurer_number(&s);
            let _ = check_insured_number(&s);
            let _ = check_office_number(&s);
            let _ = contains_my_number(&s);
        }
    }
}
