//! Printable and tabular outputs of 認定調査票 (issue 7): the PDF in the layout of the
//! official form ([`pdf`]) and the one-row-per-survey CSV ([`csv`]).
//!
//! Pure functions: interchange JSON in, bytes out, no I/O. Labels and codes come from the
//! embedded schemas (`schemas/`, [`crate::schema::SurveyCatalog`]), never retyped here.
//! Error messages name fields, rows and code points, never the personal data itself.

pub mod csv;
pub mod pdf;

use crate::date::CalendarDate;
use crate::schema::{self, DocKind, Node, Registry, SchemaError, SurveyCatalog};
use serde_json::Value;

/// Why an export could not be produced. Nothing is written when one of these is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The document is of another kind.
    #[error("document {doc} is a {kind}, not a survey (認定調査票); only surveys can be exported")]
    NotASurvey {
        /// Which document (its id or input name).
        doc: String,
        /// Its kind.
        kind: String,
    },
    /// A document named for a form is of another kind (e.g. a notice's subject).
    #[error("document {doc} is a {kind}, not a {expected}")]
    WrongKind {
        /// Which document.
        doc: String,
        /// Its kind.
        kind: String,
        /// The kind the form needs (its Japanese name).
        expected: &'static str,
    },
    /// The document does not pass its schema.
    #[error("document {doc} does not pass its schema at {}; fix it before exporting", paths.join(", "))]
    Invalid {
        /// Which document.
        doc: String,
        /// JSON pointers of the failing fields.
        paths: Vec<String>,
    },
    /// A character that the chosen CSV encoding cannot hold.
    #[error(
        "row {row} (document {doc}), column {column}: character {position} (U+{codepoint:04X}) cannot be written in {encoding}; nothing was written"
    )]
    Unencodable {
        /// 1-based data row (the header is row 0).
        row: usize,
        /// Document id of that row.
        doc: String,
        /// Column header.
        column: String,
        /// 1-based character position inside the field.
        position: usize,
        /// The code point.
        codepoint: u32,
        /// Encoding name.
        encoding: &'static str,
    },
    /// The font given for the PDF cannot be used.
    #[error("font: {0}")]
    Font(String),
    /// The embedded schemas are broken.
    #[error(transparent)]
    Schema(#[from] SchemaError),
}

/// Checks that `json` is a valid survey (its kind, then the survey schema). `doc` names it
/// in errors. The exporters read the JSON directly, so nothing typed is built here.
pub fn ensure_survey(doc: &str, json: &Value) -> Result<(), ExportError> {
    ensure_document(doc, json, DocKind::Survey)
}

/// Checks that `json` is a valid document of `want` (its kind, then its schema).
pub fn ensure_document(doc: &str, json: &Value, want: DocKind) -> Result<(), ExportError> {
    let kind = json
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("(no kind)");
    if DocKind::parse(kind) != Some(want) {
        // Only a known kind name is echoed, never arbitrary input.
        let kind = DocKind::parse(kind)
            .map(|k| k.as_str().to_owned())
            .unwrap_or_else(|| "document of unknown kind".to_owned());
        return Err(if want == DocKind::Survey {
            ExportError::NotASurvey {
                doc: doc.to_owned(),
                kind,
            }
        } else {
            ExportError::WrongKind {
                doc: doc.to_owned(),
                kind,
                expected: want.label(),
            }
        });
    }
    let (_, report) = schema::validate_document(json)?;
    if !report.is_ok() {
        return Err(ExportError::Invalid {
            doc: doc.to_owned(),
            paths: report.errors().map(|i| i.path.clone()).collect(),
        });
    }
    Ok(())
}

/// One option of a code list or item.
#[derive(Clone, Debug, PartialEq)]
pub struct CodeOption {
    /// The stored value (integer or string const).
    pub code: Value,
    /// The official label.
    pub label: String,
    /// Accepted on import only, never offered on the form.
    pub import_only: bool,
}

/// Titles and code lists of the survey schema, looked up by JSON path.
#[derive(Debug)]
pub struct Labels {
    reg: &'static Registry,
    root: Node<'static>,
    /// The 基本調査 catalog.
    pub catalog: SurveyCatalog,
}

impl Labels {
    /// The labels of the embedded schemas.
    pub fn embedded() -> Result<Labels, ExportError> {
        let reg = Registry::embedded()?;
        Ok(Labels {
            reg,
            root: reg.root(DocKind::Survey)?,
            catalog: SurveyCatalog::load(reg)?,
        })
    }

    fn node(&self, path: &str) -> Result<Node<'static>, ExportError> {
        self.node_in(self.root, path)
    }

    fn node_in(&self, root: Node<'static>, path: &str) -> Result<Node<'static>, ExportError> {
        let tokens: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        self.reg
            .node_at(root, &tokens)
            .ok_or_else(|| missing(path, "no such field"))
    }

    fn title_at(&self, node: Node<'static>, path: &str) -> Result<String, ExportError> {
        self.reg
            .keyword(node, "title")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| missing(path, "field without a title"))
    }

    /// The `title` of the survey field at `path` (e.g. `/overview/conducted/date`).
    pub fn title(&self, path: &str) -> Result<String, ExportError> {
        self.title_at(self.node(path)?, path)
    }

    /// The `title` of a field of a document of `kind` at `path` (e.g. the case's
    /// `/physician/name`, for the case columns the CSV appends).
    pub fn kind_title(&self, kind: DocKind, path: &str) -> Result<String, ExportError> {
        self.title_at(self.node_in(self.reg.root(kind)?, path)?, path)
    }

    /// The `title` of a field of the case schema at `path`.
    pub fn case_title(&self, path: &str) -> Result<String, ExportError> {
        self.kind_title(DocKind::Case, path)
    }

    /// The options (`oneOf` const/title) of the coded survey field at `path`.
    pub fn options(&self, path: &str) -> Result<Vec<CodeOption>, ExportError> {
        self.options_at(self.node(path)?, path)
    }

    /// The options (`oneOf` const/title) of a coded field of a document of `kind`.
    pub fn kind_options(&self, kind: DocKind, path: &str) -> Result<Vec<CodeOption>, ExportError> {
        self.options_at(self.node_in(self.reg.root(kind)?, path)?, path)
    }

    /// The choices (`enum`, stored as their label text) of a field of a document of `kind`.
    pub fn kind_choices(&self, kind: DocKind, path: &str) -> Result<Vec<String>, ExportError> {
        let node = self.node_in(self.reg.root(kind)?, path)?;
        self.reg
            .keyword(node, "enum")
            .and_then(Value::as_array)
            .ok_or_else(|| missing(path, "field without enum"))?
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| missing(path, "enum value that is not text"))
            })
            .collect()
    }

    fn options_at(&self, node: Node<'static>, path: &str) -> Result<Vec<CodeOption>, ExportError> {
        let alts = self
            .reg
            .keyword(node, "oneOf")
            .and_then(Value::as_array)
            .ok_or_else(|| missing(path, "field without oneOf"))?;
        alts.iter()
            .map(|a| {
                Ok(CodeOption {
                    code: a
                        .get("const")
                        .cloned()
                        .ok_or_else(|| missing(path, "option without const"))?,
                    label: a
                        .get("title")
                        .and_then(Value::as_str)
                        .ok_or_else(|| missing(path, "option without title"))?
                        .to_owned(),
                    import_only: a.get("x-import-only").and_then(Value::as_bool) == Some(true),
                })
            })
            .collect()
    }

    /// The rows of the 在宅利用 service table (`codes/services.json` `x-rows`).
    pub fn service_rows(&self) -> Result<Vec<ServiceRow>, ExportError> {
        let file = "codes/services.json";
        let node = self
            .reg
            .file(file)
            .ok_or_else(|| missing(file, "file missing"))?;
        let rows = node
            .schema
            .get("x-rows")
            .and_then(Value::as_array)
            .ok_or_else(|| missing(file, "no x-rows"))?;
        rows.iter()
            .map(|r| {
                let s = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_owned);
                Ok(ServiceRow {
                    row: r
                        .get("row")
                        .and_then(Value::as_u64)
                        .ok_or_else(|| missing(file, "row without a number"))?,
                    title: s("title").ok_or_else(|| missing(file, "row without a title"))?,
                    unit: s("unit"),
                    kind: match s("kind").as_deref() {
                        Some("count") => ServiceKind::Count,
                        Some("items") => ServiceKind::Items,
                        Some("yesno") => ServiceKind::YesNo,
                        Some("text") => ServiceKind::Text,
                        _ => return Err(missing(file, "row with an unknown kind")),
                    },
                })
            })
            .collect()
    }
}

/// One row of 概況調査Ⅲ 在宅利用.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRow {
    /// musubi's row number (the key in `overview.services`).
    pub row: u64,
    /// The row label as printed.
    pub title: String,
    /// 回/月, 日/月 or 品目.
    pub unit: Option<String>,
    /// How the amount is recorded.
    pub kind: ServiceKind,
}

/// How a service row is filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// Times or days per month.
    Count,
    /// Number of 品目.
    Items,
    /// あり・なし.
    YesNo,
    /// Name of the service in brackets.
    Text,
}

fn missing(at: &str, detail: &str) -> ExportError {
    ExportError::Schema(SchemaError::Invalid {
        file: DocKind::Survey.schema_file().to_owned(),
        at: at.to_owned(),
        detail: detail.to_owned(),
    })
}

/// Reads a value at a JSON pointer-like path of object keys.
pub(crate) fn at<'a>(json: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .try_fold(json, |v, k| v.get(k))
}

/// A string at `path`, or "".
pub(crate) fn str_at<'a>(json: &'a Value, path: &str) -> &'a str {
    at(json, path).and_then(Value::as_str).unwrap_or("")
}

/// A Gregorian `YYYY-MM-DD` as the Japanese era date the form prints (e.g. 令和8年10月14日).
/// Returns the input unchanged when it is not such a date.
pub fn era_date(date: &str) -> String {
    match CalendarDate::parse(date) {
        Ok(d) => d.japanese_era(),
        Err(_) => date.to_owned(),
    }
}

/// Full years between `birth` and `on` (both `YYYY-MM-DD`).
pub fn age_on(birth: &str, on: &str) -> Option<u32> {
    let birth = CalendarDate::parse(birth).ok()?;
    let on = CalendarDate::parse(on).ok()?;
    birth.years_until(on).map(u32::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn era_dates() {
        assert_eq!(era_date("2026-10-14"), "令和8年10月14日");
        assert_eq!(era_date("2019-05-01"), "令和元年5月1日");
        assert_eq!(era_date("2019-04-30"), "平成31年4月30日");
        assert_eq!(era_date("1944-05-12"), "昭和19年5月12日");
        assert_eq!(era_date("1926-12-24"), "大正15年12月24日");
        assert_eq!(era_date("1912-07-29"), "明治45年7月29日");
        assert_eq!(era_date("garbage"), "garbage");
    }

    #[test]
    fn ages() {
        assert_eq!(age_on("1944-05-12", "2026-10-14"), Some(82));
        assert_eq!(age_on("1944-10-15", "2026-10-14"), Some(81));
        assert_eq!(age_on("1944-10-14", "2026-10-14"), Some(82));
        assert_eq!(age_on("2030-01-01", "2026-10-14"), None);
    }

    #[test]
    fn labels_from_the_schema() {
        let l = Labels::embedded().unwrap();
        assert_eq!(l.title("/overview/conducted/date").unwrap(), "実施日時");
        assert_eq!(l.title("/overview/conducted/place").unwrap(), "実施場所");
        let sex = l.options("/subject/sex").unwrap();
        assert_eq!(sex.len(), 2);
        assert_eq!(l.service_rows().unwrap().len(), 23);
    }

    #[test]
    fn other_kinds_are_refused() {
        let v = serde_json::json!({"kind": "case"});
        assert!(matches!(
            ensure_survey("x", &v),
            Err(ExportError::NotASurvey { .. })
        ));
        let v = serde_json::json!({"kind": "結城"});
        let e = ensure_survey("x", &v).unwrap_err().to_string();
        assert!(!e.contains("結城"), "{e}");
    }
}
