//! One row per 認定調査票 as CSV (RFC 4180: header row, CRLF, fields quoted when they hold
//! a comma, a quote, CR or LF; quotes doubled). UTF-8 output starts with a BOM so that
//! spreadsheets detect the encoding; Shift_JIS output (Windows-31J, as `encoding_rs`
//! implements the WHATWG Shift_JIS) refuses any character it cannot hold faithfully,
//! naming row, column and code point, instead of writing '?'. The column layout is
//! documented in `docs/csv-layout.md`; [`columns`] is its single source.

use super::{ExportError, Labels, ServiceKind, at, ensure_survey, str_at};
use crate::schema::ItemKind;
use serde_json::Value;

/// Output encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8 with a byte-order mark.
    Utf8,
    /// Shift_JIS (Windows-31J: JIS X 0208 plus the NEC and IBM extensions).
    ShiftJis,
}

impl Encoding {
    /// Name used in messages and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::ShiftJis => "shift_jis",
        }
    }
}

/// Where the values of a column come from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    /// The document id.
    Id,
    /// A string or number at a path, written as it is stored.
    Plain(String),
    /// `used` of a service row: 1 ticked, 0 not.
    ServiceUsed(String),
    /// The amount or text of a service row.
    ServiceValue(String, &'static str),
    /// A single-select 基本調査 item: its code.
    Item(String),
    /// One part of a multi-select item: 1 ない, 2 ある (the per-part data
    /// representation of national-software data, reference §1.4 [P]).
    Part(String, i64),
    /// All 特記事項 as `（item）text`, one per line.
    Notes,
    /// A string or number at a path of the survey's case document (`case_id`), empty
    /// when the survey has no case or the case is not given.
    Case(String),
}

/// One CSV column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// The header text.
    pub header: String,
    source: Source,
}

/// The columns, in order.
pub fn columns(labels: &Labels) -> Result<Vec<Column>, ExportError> {
    let mut cols = Vec::new();
    let mut push = |header: String, source: Source| cols.push(Column { header, source });
    push("文書ID".to_owned(), Source::Id);
    for p in ["/if_version", "/status", "/office"] {
        push(labels.title(p)?, Source::Plain(p.to_owned()));
    }
    for f in [
        "insurer_number",
        "insured_number",
        "name",
        "name_kana",
        "birth_date",
        "sex",
        "postal_code",
        "address",
        "phone",
    ] {
        let p = format!("/subject/{f}");
        push(labels.title(&p)?, Source::Plain(p));
    }
    for f in [
        "date",
        "time",
        "place",
        "place_name",
        "surveyor_name",
        "surveyor_kana",
        "affiliation",
    ] {
        let p = format!("/overview/conducted/{f}");
        push(labels.title(&p)?, Source::Plain(p));
    }
    for f in [
        "past_certification",
        "previous_certification_date",
        "previous_result",
    ] {
        let p = format!("/overview/history/{f}");
        push(labels.title(&p)?, Source::Plain(p));
    }
    let contact = labels.title("/overview/history/family_contact")?;
    for f in ["postal_code", "address", "phone", "name", "relationship"] {
        let p = format!("/overview/history/family_contact/{f}");
        push(format!("{contact} {}", labels.title(&p)?), Source::Plain(p));
    }
    for row in labels.service_rows()? {
        let base = format!("/overview/services/{}", row.row);
        let head = format!("在宅利用{} {}", row.row, row.title);
        push(format!("{head} 利用"), Source::ServiceUsed(base.clone()));
        match row.kind {
            ServiceKind::Count | ServiceKind::Items => {
                let unit = row.unit.as_deref().unwrap_or("");
                push(
                    format!("{head} 利用量（{unit}）"),
                    Source::ServiceValue(base, "amount"),
                );
            }
            ServiceKind::Text => {
                let t = labels.title(&format!("{base}/text"))?;
                push(format!("{head} {t}"), Source::ServiceValue(base, "text"));
            }
            ServiceKind::YesNo => {}
        }
    }
    push(
        labels.title("/overview/facility/type")?,
        Source::Plain("/overview/facility/type".to_owned()),
    );
    for f in ["name", "postal_code", "phone", "address"] {
        let p = format!("/overview/facility/{f}");
        let t = labels.title(&p)?;
        let header = if f == "name" {
            t
        } else {
            format!("施設等 {t}")
        };
        push(header, Source::Plain(p));
    }
    let env_title = labels.title("/overview/environment")?;
    // 置かれている環境等（家族状況、…） → 置かれている環境等
    let env = env_title
        .split('（')
        .next()
        .unwrap_or(&env_title)
        .to_owned();
    for f in [
        "family_situation",
        "family",
        "living",
        "facility_life",
        "equipment",
        "other",
    ] {
        let p = format!("/overview/environment/{f}");
        let t = labels.title(&p)?;
        let header = if f == "other" {
            format!("{t}（{env}）")
        } else {
            t
        };
        push(header, Source::Plain(p));
    }
    for (seq, item, part) in labels.catalog.counted_questions() {
        match part {
            Some(c) => push(
                format!("{seq} {} {}（{}）", item.key, item.short, c.label),
                Source::Part(item.key.clone(), c.code),
            ),
            None => push(
                format!("{seq} {} {}", item.key, item.title),
                Source::Item(item.key.clone()),
            ),
        }
    }
    for item in labels.catalog.items.iter().filter(|i| !i.counted) {
        push(
            format!("{} {}", item.key, item.title),
            Source::Item(item.key.clone()),
        );
    }
    push(labels.title("/special_notes")?, Source::Notes);
    // musubi's own columns after the form's (docs/csv-layout.md): the administrative
    // fields of the survey, then those of its case.
    let contractor = labels.title("/administration/contractor")?;
    for f in [
        "survey_kind",
        "survey_count",
        "second_survey_date",
        "request_received",
        "contractor/office_number",
        "contractor/name",
        "surveyor_number",
        "current_situation",
        "service_category",
    ] {
        let p = format!("/administration/{f}");
        let t = labels.title(&p)?;
        let header = if f == "contractor/name" && !t.starts_with(&contractor) {
            format!("{contractor} {t}")
        } else {
            t
        };
        push(header, Source::Plain(p));
    }
    for p in [
        "/application/insured_category",
        "/application/specified_disease",
        "/physician/name",
        "/physician/institution",
        "/phases/opinion_requested",
        "/phases/opinion_received",
    ] {
        push(labels.case_title(p)?, Source::Case(p.to_owned()));
    }
    Ok(cols)
}

/// The header texts, in order.
pub fn headers(labels: &Labels) -> Result<Vec<String>, ExportError> {
    Ok(columns(labels)?.into_iter().map(|c| c.header).collect())
}

fn scalar(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => u8::from(*b).to_string(),
        _ => String::new(),
    }
}

/// The field values of one survey, in column order; `case` is the survey's case document
/// (its `case_id`), if the caller has it.
pub fn row(
    labels: &Labels,
    cols: &[Column],
    id: &str,
    json: &Value,
    case: Option<&Value>,
) -> Vec<String> {
    cols.iter()
        .map(|c| match &c.source {
            Source::Id => id.to_owned(),
            Source::Plain(p) => scalar(at(json, p)),
            Source::ServiceUsed(base) => {
                let used = at(json, base)
                    .and_then(|r| r.get("used"))
                    .and_then(Value::as_bool);
                if used == Some(true) { "1" } else { "0" }.to_owned()
            }
            Source::ServiceValue(base, key) => scalar(at(json, base).and_then(|r| r.get(*key))),
            Source::Item(key) => match json.get("items").and_then(|i| i.get(key)) {
                Some(Value::Number(n)) => n.to_string(),
                _ => String::new(),
            },
            Source::Part(key, code) => {
                let multi = labels
                    .catalog
                    .item(key)
                    .is_some_and(|i| i.kind == ItemKind::Multi);
                match json
                    .get("items")
                    .and_then(|i| i.get(key))
                    .and_then(Value::as_array)
                {
                    Some(codes) if multi => if codes.iter().any(|v| v.as_i64() == Some(*code)) {
                        "2"
                    } else {
                        "1"
                    }
                    .to_owned(),
                    _ => String::new(),
                }
            }
            Source::Notes => json
                .get("special_notes")
                .and_then(Value::as_array)
                .map(|notes| {
                    notes
                        .iter()
                        .map(|n| format!("（{}）{}", str_at(n, "item"), str_at(n, "text")))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default(),
            Source::Case(p) => scalar(case.and_then(|c| at(c, p))),
        })
        .collect()
}

/// Appends one field, quoted when it holds a comma, a quote, CR or LF. Works on the
/// encoded bytes: in UTF-8 and in Shift_JIS those four bytes only ever stand for
/// themselves (UTF-8 continuation bytes are 0x80–0xBF, Shift_JIS trail bytes 0x40–0xFC),
/// so quoting the encoded field is quoting the text.
fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    if field
        .iter()
        .any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'))
    {
        out.push(b'"');
        for &b in field {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(field);
    }
}

/// JIS X 0208 characters whose usual Unicode mapping differs from Windows-31J's (the
/// "wave dash problem"): the same JIS code position, written with the code point that
/// `encoding_rs` (WHATWG Shift_JIS = Windows-31J) maps there. 〜 typed on a phone becomes
/// the 0x8160 that spreadsheets show as ～.
const JIS_TO_CP932: [(char, char); 6] = [
    ('\u{301C}', '\u{FF5E}'), // 〜 WAVE DASH
    ('\u{2016}', '\u{2225}'), // ‖ DOUBLE VERTICAL LINE
    ('\u{2212}', '\u{FF0D}'), // − MINUS SIGN
    ('\u{00A2}', '\u{FFE0}'), // ¢
    ('\u{00A3}', '\u{FFE1}'), // £
    ('\u{00AC}', '\u{FFE2}'), // ¬
];

/// `field` with the JIS X 0208 code points of [`JIS_TO_CP932`] replaced.
fn to_cp932_points(field: &str) -> std::borrow::Cow<'_, str> {
    if field.is_ascii()
        || !field
            .chars()
            .any(|c| JIS_TO_CP932.iter().any(|(j, _)| *j == c))
    {
        return std::borrow::Cow::Borrowed(field);
    }
    std::borrow::Cow::Owned(
        field
            .chars()
            .map(|c| {
                JIS_TO_CP932
                    .iter()
                    .find(|(j, _)| *j == c)
                    .map_or(c, |(_, w)| *w)
            })
            .collect(),
    )
}

/// `field` in Shift_JIS, when every character survives the round trip; otherwise the
/// 1-based position and code point of the first one that does not.
fn sjis_bytes(field: &str) -> Result<std::borrow::Cow<'_, [u8]>, (usize, u32)> {
    if field.is_ascii() {
        // ASCII is identical in Windows-31J except that the WHATWG decoder keeps 0x5C
        // and 0x7E as backslash and tilde, so it round-trips.
        return Ok(std::borrow::Cow::Borrowed(field.as_bytes()));
    }
    if let Some(bytes) = faithful_sjis(field) {
        return Ok(bytes);
    }
    // Find the culprit character by character (only on the failure path).
    for (i, ch) in field.chars().enumerate() {
        let mut buf = [0u8; 4];
        if faithful_sjis(ch.encode_utf8(&mut buf)).is_none() {
            return Err((i + 1, u32::from(ch)));
        }
    }
    // Every character round-trips on its own but the whole does not: cannot happen in a
    // stateless encoding, but never write something unfaithful.
    Err((1, field.chars().next().map_or(0, u32::from)))
}

/// `text` in Shift_JIS if it encodes without replacement and decodes back to itself.
fn faithful_sjis(text: &str) -> Option<std::borrow::Cow<'_, [u8]>> {
    let (bytes, _, unmappable) = encoding_rs::SHIFT_JIS.encode(text);
    if unmappable {
        return None;
    }
    let faithful = {
        let (back, bad) = encoding_rs::SHIFT_JIS.decode_without_bom_handling(&bytes);
        !bad && back == text
    };
    faithful.then_some(bytes)
}

/// Appends one row (`fields` in column order) in `encoding`. `row` and `doc` name it in
/// errors; on error `out` may hold part of the row, and the caller drops it.
fn write_row(
    out: &mut Vec<u8>,
    row: usize,
    doc: &str,
    cols: &[Column],
    fields: &[String],
    encoding: Encoding,
) -> Result<(), ExportError> {
    for (c, field) in fields.iter().enumerate() {
        if c > 0 {
            out.push(b',');
        }
        match encoding {
            Encoding::Utf8 => push_field(out, field.as_bytes()),
            Encoding::ShiftJis => {
                let mapped = to_cp932_points(field);
                let bytes = sjis_bytes(&mapped).map_err(|(position, codepoint)| {
                    ExportError::Unencodable {
                        row,
                        doc: doc.to_owned(),
                        column: cols.get(c).map(|c| c.header.clone()).unwrap_or_default(),
                        position,
                        codepoint,
                        encoding: encoding.name(),
                    }
                })?;
                push_field(out, &bytes);
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// The CSV of `docs` (`(document id, interchange JSON)`, one row each, in the given order).
///
/// Every document must be a valid survey. On any error nothing is returned, so a caller
/// that writes the bytes only on success never writes half a file.
pub fn export_csv(
    labels: &Labels,
    docs: &[(String, Value)],
    encoding: Encoding,
) -> Result<Vec<u8>, ExportError> {
    export_csv_with_cases(labels, docs, &std::collections::HashMap::new(), encoding)
}

/// [`export_csv`] with the case documents the surveys name in `case_id` (keyed by case
/// id), for the case columns at the end of each row. A survey whose case is not in
/// `cases` leaves those columns empty.
pub fn export_csv_with_cases(
    labels: &Labels,
    docs: &[(String, Value)],
    cases: &std::collections::HashMap<String, Value>,
    encoding: Encoding,
) -> Result<Vec<u8>, ExportError> {
    let cols = columns(labels)?;
    let mut out = Vec::with_capacity(4096 * (docs.len() + 1));
    if encoding == Encoding::Utf8 {
        out.extend_from_slice(b"\xEF\xBB\xBF");
    }
    let header: Vec<String> = cols.iter().map(|c| c.header.clone()).collect();
    write_row(&mut out, 0, "(header)", &cols, &header, encoding)?;
    for (r, (id, json)) in docs.iter().enumerate() {
        ensure_survey(id, json)?;
        let case = json
            .get("case_id")
            .and_then(Value::as_str)
            .and_then(|c| cases.get(c));
        let fields = row(labels, &cols, id, json, case);
        write_row(&mut out, r + 1, id, &cols, &fields, encoding)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        let mut s = Vec::new();
        push_field(&mut s, "a,b".as_bytes());
        s.push(b'|');
        push_field(&mut s, "say \"hi\"".as_bytes());
        s.push(b'|');
        push_field(&mut s, "line\nbreak".as_bytes());
        s.push(b'|');
        push_field(&mut s, "plain".as_bytes());
        assert_eq!(s, b"\"a,b\"|\"say \"\"hi\"\"\"|\"line\nbreak\"|plain");
        // Shift_JIS: 表 is 0x95 0x5C (a backslash trail byte); the comma alone triggers
        // quoting and the bytes pass through unchanged.
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode("表,示");
        let mut t = Vec::new();
        push_field(&mut t, &sjis);
        assert_eq!(t, [b"\"".as_slice(), &sjis, b"\""].concat());
    }

    #[test]
    fn sjis_check() {
        let sjis_problem = |s: &str| sjis_bytes(s).err();
        assert_eq!(sjis_problem("結城 花子 ①Ⅱ㎡"), None);
        assert_eq!(sjis_problem("吉田𠮷"), Some((3, 0x20BB7)));
        assert_eq!(sjis_problem("ok🙂"), Some((3, 0x1F642)));
        // U+00A5 is encoded as 0x5C, which decodes to a backslash: not faithful.
        assert_eq!(sjis_problem("¥100"), Some((1, 0xA5)));
        // 〜 (JIS X 0208 1-33) is written at its JIS position, 0x8160.
        assert_eq!(sjis_problem("週1〜2回"), Some((3, 0x301C)));
        let mapped = to_cp932_points("週1〜2回−‖");
        assert_eq!(sjis_problem(&mapped), None);
        let (bytes, _, _) = encoding_rs::SHIFT_JIS.encode(&mapped);
        assert_eq!(&bytes[3..5], b"\x81\x60");
    }
}
