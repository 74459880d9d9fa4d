//! Typed views of the interchange JSON, for code that reads documents (consistency
//! checks, printing, CSV). Produced from JSON that has passed validation; the schema in
//! `schemas/` stays the single source of labels, codes and rules.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The person block (調査対象者).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// 保険者番号.
    pub insurer_number: String,
    /// 被保険者番号.
    pub insured_number: String,
    /// 氏名.
    pub name: String,
    /// ふりがな.
    pub name_kana: String,
    /// 生年月日 (YYYY-MM-DD).
    pub birth_date: String,
    /// 性別 code.
    pub sex: i64,
    /// 現住所.
    pub address: String,
    /// 郵便番号.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    /// 電話.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// The answer to one 基本調査 item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Answer {
    /// Single-select code.
    Code(i64),
    /// Multi-select codes.
    Codes(Vec<i64>),
}

impl Answer {
    /// The single code, if this is a single-select answer.
    pub fn code(&self) -> Option<i64> {
        match self {
            Answer::Code(c) => Some(*c),
            Answer::Codes(_) => None,
        }
    }
}

/// One 特記事項.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialNote {
    /// Item key ("1-1", "6", "7-2").
    pub item: String,
    /// The note.
    pub text: String,
    /// Who wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// When.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

/// 認定調査票.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Survey {
    /// Always "survey".
    pub kind: String,
    /// 厚労省IF識別コード.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_version: Option<String>,
    /// 事業所番号 of the owning office.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub office: Option<String>,
    /// draft / completed / submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// 調査対象者.
    pub subject: Person,
    /// 概況調査 (kept as JSON; its shape is defined by the schema).
    pub overview: Value,
    /// 基本調査 answers keyed by item number.
    pub items: BTreeMap<String, Answer>,
    /// 特記事項.
    pub special_notes: Vec<SpecialNote>,
}

impl Survey {
    /// Reads a validated survey.
    pub fn from_json(v: &Value) -> Result<Survey, serde_json::Error> {
        Survey::deserialize(v)
    }
}
