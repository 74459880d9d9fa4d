//! The JSON Schemas of the care documents, embedded from `schemas/`, and a validator for
//! the subset of JSON Schema 2020-12 that musubi's schemas use.
//!
//! Why our own validator: every message must name the JSON path and never echo a value
//! that may be personal data, and the form generator needs the same walk over the schema
//! (titles, codes, annotations). The supported keywords are listed in [`KNOWN_KEYWORDS`];
//! [`Registry::lint`] refuses a schema that uses anything else, so no constraint is ever
//! silently ignored.

mod catalog;
#[cfg(test)]
mod crosscheck;
mod pointer;
mod validate;

pub use catalog::{Choice, Item, ItemKind, SurveyCatalog};
pub use pointer::{Pointer, PointerError, escape_token};
pub use validate::{ISSUE_CODES, Issue, Report, Severity, issue_code_text};

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::OnceLock;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/schema_files.rs"));
}

/// Keywords of JSON Schema 2020-12 that the validator understands. `x-` annotations are
/// also allowed.
pub const KNOWN_KEYWORDS: &[&str] = &[
    "$schema",
    "$id",
    "$ref",
    "$defs",
    "$comment",
    "title",
    "description",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "uniqueItems",
    "enum",
    "const",
    "oneOf",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "format",
    "default",
    "examples",
];

/// The kinds of care document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DocKind {
    /// 認定調査票.
    Survey,
    /// The person (調査対象者 / 利用者).
    Subject,
    /// 本人確認 + 担当事業所登録 + consent.
    Registration,
    /// 訪問看護記録書Ⅱ.
    VisitRecord,
    /// 要介護認定 progress.
    Case,
    /// 居宅サービス計画作成依頼（変更）届出書.
    PlanRequest,
}

impl DocKind {
    /// Every kind.
    pub const ALL: [DocKind; 6] = [
        DocKind::Survey,
        DocKind::Subject,
        DocKind::Registration,
        DocKind::VisitRecord,
        DocKind::Case,
        DocKind::PlanRequest,
    ];

    /// The value of the `kind` field.
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Survey => "survey",
            DocKind::Subject => "subject",
            DocKind::Registration => "registration",
            DocKind::VisitRecord => "visit-record",
            DocKind::Case => "case",
            DocKind::PlanRequest => "plan-request",
        }
    }

    /// Parses the value of a `kind` field.
    pub fn parse(s: &str) -> Option<DocKind> {
        DocKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The schema file, relative to `schemas/`.
    pub fn schema_file(self) -> &'static str {
        match self {
            DocKind::Survey => "survey.schema.json",
            DocKind::Subject => "subject.schema.json",
            DocKind::Registration => "registration.schema.json",
            DocKind::VisitRecord => "visit-record.schema.json",
            DocKind::Case => "case.schema.json",
            DocKind::PlanRequest => "plan-request.schema.json",
        }
    }

    /// The Japanese name shown to people.
    pub fn label(self) -> &'static str {
        match self {
            DocKind::Survey => "認定調査票",
            DocKind::Subject => "調査対象者",
            DocKind::Registration => "本人確認・担当事業所登録",
            DocKind::VisitRecord => "訪問看護記録書Ⅱ",
            DocKind::Case => "要介護認定",
            DocKind::PlanRequest => "居宅サービス計画作成依頼届出",
        }
    }
}

/// A problem in the embedded schemas themselves (a bug in `schemas/`, caught by tests).
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchemaError {
    /// A file is not valid JSON.
    #[error("schema file {file} is not valid JSON: {detail}")]
    NotJson {
        /// The file.
        file: String,
        /// What serde_json said (no user data involved).
        detail: String,
    },
    /// A `$ref` points nowhere.
    #[error("schema file {file}: unresolvable $ref {reference}")]
    BadRef {
        /// The file holding the reference.
        file: String,
        /// The reference.
        reference: String,
    },
    /// A keyword the validator does not implement.
    #[error("schema file {file} at {at}: unsupported keyword {keyword}")]
    UnknownKeyword {
        /// The file.
        file: String,
        /// Location inside the file.
        at: String,
        /// The keyword.
        keyword: String,
    },
    /// A structural problem (e.g. `pattern` that is not a regex).
    #[error("schema file {file} at {at}: {detail}")]
    Invalid {
        /// The file.
        file: String,
        /// Location inside the file.
        at: String,
        /// What is wrong.
        detail: String,
    },
}

/// A schema node together with the file it lives in (needed to resolve relative refs).
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    /// File relative to `schemas/`.
    pub file: &'a str,
    /// The schema object.
    pub schema: &'a Value,
}

impl<'a> Node<'a> {
    /// A string keyword of this node.
    pub fn str(&self, key: &str) -> Option<&'a str> {
        self.schema.get(key).and_then(Value::as_str)
    }

    /// The `title`.
    pub fn title(&self) -> Option<&'a str> {
        self.str("title")
    }
}

/// All schema files, parsed.
#[derive(Debug)]
pub struct Registry {
    files: BTreeMap<String, Value>,
    regexes: BTreeMap<String, regex::Regex>,
}

static REGISTRY: OnceLock<Result<Registry, SchemaError>> = OnceLock::new();

impl Registry {
    /// The schemas compiled into this binary.
    pub fn embedded() -> Result<&'static Registry, SchemaError> {
        REGISTRY
            .get_or_init(|| Registry::from_files(embedded::SCHEMA_FILES.iter().copied()))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Builds a registry from `(relative path, JSON text)` pairs and lints it.
    pub fn from_files<'s>(
        files: impl IntoIterator<Item = (&'s str, &'s str)>,
    ) -> Result<Registry, SchemaError> {
        let mut parsed = BTreeMap::new();
        for (name, text) in files {
            let value: Value = serde_json::from_str(text).map_err(|e| SchemaError::NotJson {
                file: name.to_owned(),
                detail: e.to_string(),
            })?;
            parsed.insert(name.to_owned(), value);
        }
        let mut reg = Registry {
            files: parsed,
            regexes: BTreeMap::new(),
        };
        reg.lint()?;
        Ok(reg)
    }

    /// Names of the files.
    pub fn file_names(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// The root node of a file.
    pub fn file(&self, name: &str) -> Option<Node<'_>> {
        self.files.get_key_value(name).map(|(file, schema)| Node {
            file: file.as_str(),
            schema,
        })
    }

    /// The root schema of a document kind.
    pub fn root(&self, kind: DocKind) -> Result<Node<'_>, SchemaError> {
        self.file(kind.schema_file())
            .ok_or_else(|| SchemaError::BadRef {
                file: kind.schema_file().to_owned(),
                reference: "(file missing)".to_owned(),
            })
    }

    /// Resolves a `$ref` found in `from`.
    pub fn resolve<'a>(&'a self, from: &str, reference: &str) -> Result<Node<'a>, SchemaError> {
        let bad = || SchemaError::BadRef {
            file: from.to_owned(),
            reference: reference.to_owned(),
        };
        let (file_part, fragment) = match reference.split_once('#') {
            Some((f, frag)) => (f, frag),
            None => (reference, ""),
        };
        let target_file = if file_part.is_empty() {
            from.to_owned()
        } else {
            // Relative to the directory of `from`.
            let dir = from.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            let mut parts: Vec<&str> = if dir.is_empty() {
                Vec::new()
            } else {
                dir.split('/').collect()
            };
            for seg in file_part.split('/') {
                match seg {
                    "." | "" => {}
                    ".." => {
                        parts.pop().ok_or_else(bad)?;
                    }
                    s => parts.push(s),
                }
            }
            parts.join("/")
        };
        let (file, root) = self.files.get_key_value(&target_file).ok_or_else(bad)?;
        let mut node = root;
        if !fragment.is_empty() {
            let ptr = Pointer::parse(fragment).map_err(|_| bad())?;
            for token in ptr.tokens() {
                node = node.get(token.as_str()).ok_or_else(bad)?;
            }
        }
        Ok(Node {
            file: file.as_str(),
            schema: node,
        })
    }

    /// Follows `$ref` chains until a node without `$ref`, merging nothing: the returned
    /// list holds the node and every node it refers to, outermost first.
    pub fn chain<'a>(&'a self, node: Node<'a>) -> Result<Vec<Node<'a>>, SchemaError> {
        let mut out = vec![node];
        let mut current = node;
        while let Some(r) = current.str("$ref") {
            if out.len() > 32 {
                return Err(SchemaError::BadRef {
                    file: current.file.to_owned(),
                    reference: format!("{r} (reference cycle)"),
                });
            }
            current = self.resolve(current.file, r)?;
            out.push(current);
        }
        Ok(out)
    }

    /// The first value of `key` along the `$ref` chain of `node`.
    pub fn keyword<'a>(&'a self, node: Node<'a>, key: &str) -> Option<&'a Value> {
        self.chain(node)
            .ok()?
            .into_iter()
            .find_map(|n| n.schema.get(key))
    }

    /// The schema of property `name` of an object node (through `$ref`s).
    pub fn property<'a>(&'a self, node: Node<'a>, name: &str) -> Option<Node<'a>> {
        self.chain(node).ok()?.into_iter().find_map(|n| {
            n.schema
                .get("properties")
                .and_then(|p| p.get(name))
                .map(|schema| Node {
                    file: n.file,
                    schema,
                })
        })
    }

    /// The schema of the elements of an array node (through `$ref`s).
    pub fn items<'a>(&'a self, node: Node<'a>) -> Option<Node<'a>> {
        self.chain(node).ok()?.into_iter().find_map(|n| {
            n.schema.get("items").map(|schema| Node {
                file: n.file,
                schema,
            })
        })
    }

    /// The schema node at a path of object keys / array indices below `root`.
    pub fn node_at<'a>(&'a self, root: Node<'a>, path: &[String]) -> Option<Node<'a>> {
        let mut node = root;
        for token in path {
            node = match self.property(node, token) {
                Some(n) => n,
                None => self.items(node)?,
            };
        }
        Some(node)
    }

    /// The `x-crdt` annotation of a node, if any (`"text"` or `"set"`).
    pub fn crdt_hint<'a>(&'a self, node: Node<'a>) -> Option<&'a str> {
        self.keyword(node, "x-crdt").and_then(Value::as_str)
    }

    fn regex(&self, pattern: &str) -> Option<&regex::Regex> {
        self.regexes.get(pattern)
    }

    /// Checks every file: only known keywords, every `$ref` resolves, every `pattern`
    /// compiles. Compiled patterns are kept for validation.
    fn lint(&mut self) -> Result<(), SchemaError> {
        let mut patterns = Vec::new();
        for (file, root) in &self.files {
            self.lint_node(file, root, "", &mut patterns)?;
        }
        for (file, at, pattern) in patterns {
            let re = regex::Regex::new(&pattern).map_err(|e| SchemaError::Invalid {
                file,
                at,
                detail: format!("pattern does not compile: {e}"),
            })?;
            self.regexes.insert(pattern, re);
        }
        Ok(())
    }

    fn lint_node(
        &self,
        file: &str,
        node: &Value,
        at: &str,
        patterns: &mut Vec<(String, String, String)>,
    ) -> Result<(), SchemaError> {
        let Some(obj) = node.as_object() else {
            return Err(SchemaError::Invalid {
                file: file.to_owned(),
                at: at.to_owned(),
                detail: "a schema must be an object".to_owned(),
            });
        };
        // Annotation-only documents (e.g. a code table with `x-rows`) are fine.
        for (key, value) in obj {
            let here = format!("{at}/{}", escape_token(key));
            if key.starts_with("x-") {
                continue;
            }
            if !KNOWN_KEYWORDS.contains(&key.as_str()) {
                return Err(SchemaError::UnknownKeyword {
                    file: file.to_owned(),
                    at: at.to_owned(),
                    keyword: key.clone(),
                });
            }
            match key.as_str() {
                "$ref" => {
                    let r = value.as_str().ok_or_else(|| SchemaError::Invalid {
                        file: file.to_owned(),
                        at: here.clone(),
                        detail: "$ref must be a string".to_owned(),
                    })?;
                    self.resolve(file, r)?;
                }
                "$defs" | "properties" => {
                    let map = value.as_object().ok_or_else(|| SchemaError::Invalid {
                        file: file.to_owned(),
                        at: here.clone(),
                        detail: format!("{key} must be an object"),
                    })?;
                    for (name, sub) in map {
                        self.lint_node(
                            file,
                            sub,
                            &format!("{here}/{}", escape_token(name)),
                            patterns,
                        )?;
                    }
                }
                "items" => self.lint_node(file, value, &here, patterns)?,
                "additionalProperties" if !value.is_boolean() => {
                    self.lint_node(file, value, &here, patterns)?;
                }
                "oneOf" => {
                    let list = value.as_array().ok_or_else(|| SchemaError::Invalid {
                        file: file.to_owned(),
                        at: here.clone(),
                        detail: "oneOf must be an array".to_owned(),
                    })?;
                    for (i, sub) in list.iter().enumerate() {
                        self.lint_node(file, sub, &format!("{here}/{i}"), patterns)?;
                    }
                }
                "pattern" => {
                    let p = value.as_str().ok_or_else(|| SchemaError::Invalid {
                        file: file.to_owned(),
                        at: here.clone(),
                        detail: "pattern must be a string".to_owned(),
                    })?;
                    patterns.push((file.to_owned(), here.clone(), p.to_owned()));
                }
                "format" if !matches!(value.as_str(), Some("date" | "time")) => {
                    return Err(SchemaError::Invalid {
                        file: file.to_owned(),
                        at: here.clone(),
                        detail: "only the formats date and time are supported".to_owned(),
                    });
                }
                "type" => {
                    let ok = |v: &Value| {
                        matches!(
                            v.as_str(),
                            Some(
                                "string"
                                    | "integer"
                                    | "number"
                                    | "boolean"
                                    | "object"
                                    | "array"
                                    | "null"
                            )
                        )
                    };
                    let valid = match value {
                        Value::Array(a) => a.iter().all(ok),
                        v => ok(v),
                    };
                    if !valid {
                        return Err(SchemaError::Invalid {
                            file: file.to_owned(),
                            at: here.clone(),
                            detail: "unknown type".to_owned(),
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Validates an interchange JSON document of any kind: the `kind` field picks the schema.
pub fn validate_document(value: &Value) -> Result<(DocKind, Report), SchemaError> {
    let registry = Registry::embedded()?;
    let kind_value = value.get("kind").and_then(Value::as_str);
    let Some(kind) = kind_value.and_then(DocKind::parse) else {
        let mut report = Report::default();
        let kinds: Vec<&str> = DocKind::ALL.iter().map(|k| k.as_str()).collect();
        report.push_error(
            "kind",
            "/kind",
            format!(
                "missing or unknown document kind (expected one of: {})",
                kinds.join(", ")
            ),
            "書類の種類がないか、musubi の知らない種類です。",
        );
        return Ok((DocKind::Survey, report));
    };
    Ok((kind, validate::validate(registry, kind, value)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_schemas_parse_and_lint() {
        let reg = Registry::embedded().expect("embedded schemas are valid");
        for kind in DocKind::ALL {
            assert!(reg.root(kind).is_ok(), "schema for {kind:?} present");
        }
    }

    #[test]
    fn unknown_keyword_is_refused() {
        let err = Registry::from_files([("a.json", r#"{"type":"object","allOf":[]}"#)])
            .expect_err("allOf is not supported");
        assert!(
            matches!(err, SchemaError::UnknownKeyword { ref keyword, .. } if keyword == "allOf")
        );
    }

    #[test]
    fn dangling_ref_is_refused() {
        let err = Registry::from_files([("a.json", r##"{"$ref":"#/$defs/nope"}"##)])
            .expect_err("dangling ref");
        assert!(matches!(err, SchemaError::BadRef { .. }));
    }

    #[test]
    fn relative_refs_resolve() {
        let reg = Registry::from_files([
            ("a.json", r#"{"$ref":"codes/b.json"}"#),
            ("codes/b.json", r##"{"$ref":"../c.json#/$defs/x"}"##),
            ("c.json", r#"{"$defs":{"x":{"type":"integer"}}}"#),
        ])
        .expect("valid");
        let root = reg.file("a.json").expect("a");
        let chain = reg.chain(root).expect("chain");
        assert_eq!(chain.len(), 3);
        assert_eq!(chain[2].str("type"), Some("integer"));
    }
}
