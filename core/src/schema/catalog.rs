//! The 基本調査 items as read from `schemas/survey.schema.json`: the one place the form
//! generator, the validator's survey rules, printing and CSV take labels and codes from.

use super::{DocKind, Node, Registry, SchemaError};
use serde_json::Value;

/// One option of an item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// The code stored in the document.
    pub code: i64,
    /// The official label.
    pub label: String,
    /// 連番 (1–74) of this option when it is a part of a multi-part item.
    pub seq: Option<u32>,
    /// `処置内容` / `特別な対応` for item 6.
    pub subgroup: Option<String>,
    /// Accepted on import, never offered in the form (e.g. 7-2 `記載なし`).
    pub import_only: bool,
}

/// Single choice or a set of choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemKind {
    /// 一つだけ○.
    Single,
    /// あてはまる番号すべてに○ (1-1, 1-2, 6).
    Multi,
}

/// One item of the 基本調査 (or 7-1/7-2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// The key, e.g. `"1-3"` or `"6"`.
    pub key: String,
    /// The 項目名.
    pub title: String,
    /// The label printed on the 特記事項 sheet.
    pub short: String,
    /// 1–5 for 第1群–第5群, 6 for 特別な医療, 7 for 日常生活自立度.
    pub group: u32,
    /// 能力 / 介助の方法 / 有無.
    pub axis: Option<String>,
    /// 連番 of a single-select item.
    pub seq: Option<u32>,
    /// False for 7-1 and 7-2 (outside the 74).
    pub counted: bool,
    /// Single or multi.
    pub kind: ItemKind,
    /// The options.
    pub choices: Vec<Choice>,
    /// Codes that exclude every other choice (the ない of 1-1/1-2).
    pub exclusive: Vec<i64>,
}

impl Item {
    /// The label of a code.
    pub fn label_of(&self, code: i64) -> Option<&str> {
        self.choices
            .iter()
            .find(|c| c.code == code)
            .map(|c| c.label.as_str())
    }
}

/// A group heading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// 1–7.
    pub number: u32,
    /// e.g. 身体機能・起居動作.
    pub title: String,
}

/// All items in form order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SurveyCatalog {
    /// Items in form order.
    pub items: Vec<Item>,
    /// Group headings.
    pub groups: Vec<Group>,
}

fn invalid(at: &str, detail: &str) -> SchemaError {
    SchemaError::Invalid {
        file: DocKind::Survey.schema_file().to_owned(),
        at: at.to_owned(),
        detail: detail.to_owned(),
    }
}

fn u32_of(v: Option<&Value>) -> Option<u32> {
    v.and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
}

fn choices(reg: &Registry, node: Node<'_>, at: &str) -> Result<Vec<Choice>, SchemaError> {
    let alts = reg
        .keyword(node, "oneOf")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(at, "an item needs oneOf with its choices"))?;
    alts.iter()
        .map(|alt| {
            Ok(Choice {
                code: alt
                    .get("const")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| invalid(at, "choice without an integer const"))?,
                label: alt
                    .get("title")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid(at, "choice without a title"))?
                    .to_owned(),
                seq: u32_of(alt.get("x-seq")),
                subgroup: alt
                    .get("x-subgroup")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                import_only: alt.get("x-import-only").and_then(Value::as_bool) == Some(true),
            })
        })
        .collect()
}

impl SurveyCatalog {
    /// Reads the catalog from the registry.
    pub fn load(reg: &Registry) -> Result<SurveyCatalog, SchemaError> {
        let root = reg.root(DocKind::Survey)?;
        let items_node = reg
            .property(root, "items")
            .ok_or_else(|| invalid("/properties/items", "missing"))?;
        let props = reg
            .keyword(items_node, "properties")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid("/properties/items", "items has no properties"))?;
        let groups = reg
            .keyword(items_node, "x-groups")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|g| {
                        Some(Group {
                            number: u32_of(g.get("group"))?,
                            title: g.get("title")?.as_str()?.to_owned(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut items = Vec::new();
        for (key, schema) in props {
            let at = format!("/properties/items/properties/{key}");
            let node = Node {
                file: items_node.file,
                schema,
            };
            let kw = |k: &str| reg.keyword(node, k);
            let is_multi = kw("type").and_then(Value::as_str) == Some("array");
            let (kind, choice_list) = if is_multi {
                let elem = reg
                    .items(node)
                    .ok_or_else(|| invalid(&at, "multi-select item without items"))?;
                (ItemKind::Multi, choices(reg, elem, &at)?)
            } else {
                (ItemKind::Single, choices(reg, node, &at)?)
            };
            let title = schema
                .get("title")
                .or_else(|| kw("title"))
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(&at, "item without a title"))?
                .to_owned();
            items.push(Item {
                key: key.clone(),
                short: kw("x-short")
                    .and_then(Value::as_str)
                    .unwrap_or(&title)
                    .to_owned(),
                title,
                group: u32_of(kw("x-group")).ok_or_else(|| invalid(&at, "item without x-group"))?,
                axis: kw("x-axis").and_then(Value::as_str).map(str::to_owned),
                seq: u32_of(kw("x-seq")),
                counted: kw("x-counted").and_then(Value::as_bool) != Some(false),
                kind,
                choices: choice_list,
                exclusive: kw("x-exclusive")
                    .and_then(Value::as_array)
                    .map(|l| l.iter().filter_map(Value::as_i64).collect())
                    .unwrap_or_default(),
            });
        }
        Ok(SurveyCatalog { items, groups })
    }

    /// The catalog of the embedded schemas.
    pub fn embedded() -> Result<SurveyCatalog, SchemaError> {
        SurveyCatalog::load(Registry::embedded()?)
    }

    /// Looks an item up by key.
    pub fn item(&self, key: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.key == key)
    }

    /// The 74 counted questions as (連番, item key, part code or None).
    pub fn counted_questions(&self) -> Vec<(u32, &Item, Option<&Choice>)> {
        let mut out = Vec::new();
        for item in self.items.iter().filter(|i| i.counted) {
            match item.kind {
                ItemKind::Single => {
                    if let Some(seq) = item.seq {
                        out.push((seq, item, None));
                    }
                }
                ItemKind::Multi => {
                    for c in &item.choices {
                        if let Some(seq) = c.seq {
                            out.push((seq, item, Some(c)));
                        }
                    }
                }
            }
        }
        out.sort_by_key(|(seq, _, _)| *seq);
        out
    }
}
