//! Admission: the rules a store applies to documents that arrive from outside (a relay
//! session, a bundle), so that the relay and a bundle import enforce every rule a tablet
//! enforces on its own edits.
//!
//! - [`document`]: the document rules, pure functions over the interchange JSON
//!   ([`check_document`]): 個人番号 guard, schema and care rules, kind and office, the
//!   submitted-survey lock, append-only registrations; and [`check_incoming`], the same
//!   on an [`Incoming`](crate::sync::admission::Incoming) automerge document.
//! - [`rejection_text`]: the Japanese and English text of every refusal code a relay
//!   sends (`doc_rejected`) or a bundle import reports.
//!
//! The card evidence of a new registration is checked by `card::evidence`; the
//! [`Admission`](crate::sync::admission::Admission) that combines both is the relay's and
//! the tablet's rule set.

pub mod document;
#[cfg(feature = "card")]
pub mod rules;

pub use document::{DocumentRules, check_document, check_incoming, my_number_path};

/// Every refusal code a document can get (`doc_rejected` in a sync session, the refusal
/// of a bundle import), in a stable order.
pub const REJECTION_CODES: &[&str] = &[
    "forbidden",
    "actor",
    "invalid",
    "unknown",
    "my_number",
    "submitted",
    "vital_signs",
    "case_dates",
    "registration",
    "evidence",
    "card_reused",
    "quota",
    "too_large",
];

/// What a refusal code means, in Japanese (official terms; shown first) and English.
/// Unknown codes (from a newer relay) get a generic text.
pub fn rejection_text(code: &str) -> (&'static str, &'static str) {
    match code {
        "forbidden" => (
            "この文書には書き込めません（他の事業所の文書、または文書の種類・事業所番号の変更）",
            "not allowed: a document of another office, or a change of its kind or office",
        ),
        "actor" => (
            "他の端末の名義で記録された変更は受け付けられません",
            "changes recorded under another device's identity are refused",
        ),
        "invalid" => (
            "様式（スキーマ）の定めに合わない内容があります",
            "the document does not pass its schema",
        ),
        "unknown" => (
            "指定された文書は中継サーバーにありません",
            "the relay has no such document",
        ),
        "my_number" => (
            "個人番号（マイナンバー）と思われる12桁の数字が含まれています。個人番号は保存できません",
            "contains what looks like a 12-digit 個人番号 (My Number), which is never stored",
        ),
        "submitted" => (
            "提出済みの認定調査票は、訂正の理由を記録する「訂正」の手続きでのみ変更できます",
            "a submitted survey changes only by amendment (musubi survey amend)",
        ),
        "vital_signs" => (
            "バイタルサインにありえない値があります",
            "a vital sign is outside the possible range",
        ),
        "case_dates" => (
            "要介護認定の日付が申請日より前です",
            "a date of the care-need certification is before the application date",
        ),
        "registration" => (
            "本人確認・担当事業所登録は、同意の記録と同意の撤回の追記のほかは変更できません",
            "a registration changes only by recording consent or appending a withdrawal",
        ),
        "evidence" => (
            "本人確認の証跡（マイナンバーカードの署名）を確認できません",
            "the card evidence of the registration could not be verified",
        ),
        "card_reused" => (
            "このマイナンバーカードの証明書は別の方の本人確認に使われています",
            "this card's certificate is already bound to another person",
        ),
        "quota" => (
            "中継サーバーの保存容量の上限（この端末または事業所の分）に達したため、この文書は受け付けられませんでした。端末には残っています。管理者に連絡してください",
            "the relay's storage quota for this device or office is reached; the document stays on the tablet",
        ),
        "too_large" => (
            "文書が大きすぎるか変更の回数が多すぎるため、受け付けられませんでした（1文書あたりの上限）",
            "the document is over the per-document size or change-count limit",
        ),
        _ => (
            "中継サーバーが文書を受け付けませんでした",
            "the document was refused",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_own_text_japanese_first() {
        let generic = rejection_text("no-such-code");
        let mut seen = std::collections::HashSet::new();
        for code in REJECTION_CODES {
            let (ja, en) = rejection_text(code);
            assert_ne!((ja, en), generic, "{code} has its own text");
            assert!(seen.insert(ja), "{code}: Japanese text is unique");
            assert!(!ja.is_ascii(), "{code}: Japanese text is Japanese");
            assert!(
                en.is_ascii() || en.contains("個人番号"),
                "{code}: English text"
            );
            assert!(!ja.is_empty() && !en.is_empty());
        }
        assert_eq!(seen.len(), REJECTION_CODES.len());
    }
}
