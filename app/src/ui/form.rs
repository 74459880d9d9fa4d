//! A form generated from a JSON Schema node: objects become sections, code lists
//! (`oneOf` of `const`s) and `enum`s become finger-sized choice buttons, numbers get a
//! field with their unit and the schema's limits, strings a text field, booleans a
//! checkbox. Every change is queued as an engine `set` at once and applied to the local
//! copy, so the screen follows the finger without waiting for the disk.

use std::collections::HashMap;

use musubi_engine::doc::apply_pointer;
use musubi_engine::ids::DocId;
use musubi_engine::schema::{Node, Pointer, Registry};
use serde_json::{Number, Value};

use super::command::Command;
use super::survey_model::plan_set;

/// Minimum size of a choice button (a finger, not a mouse pointer).
pub const CHOICE_SIZE: egui::Vec2 = egui::vec2(96.0, 44.0);

/// Everything a generated form needs for one document.
pub(super) struct Form<'a> {
    pub id: DocId,
    pub doc: &'a mut Value,
    pub edits: &'a mut HashMap<(DocId, String), String>,
    pub errors: &'a HashMap<(DocId, String), String>,
    pub out: &'a mut Vec<Command>,
    pub reg: &'static Registry,
}

/// `"Unit: ℃."` in a schema description → `℃`.
pub fn unit_of(description: Option<&str>) -> Option<&str> {
    let d = description?;
    let start = d.find("Unit: ")? + "Unit: ".len();
    let rest = &d[start..];
    let end = rest
        .find(". ")
        .or_else(|| rest.strip_suffix('.').map(str::len));
    Some(rest[..end.unwrap_or(rest.len())].trim())
}

fn type_of(reg: &Registry, node: Node<'_>) -> Option<String> {
    match reg.keyword(node, "type")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => list
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .map(str::to_owned),
        _ => None,
    }
}

fn choices_of(reg: &Registry, node: Node<'_>) -> Option<Vec<(Value, String)>> {
    if let Some(Value::Array(alts)) = reg.keyword(node, "oneOf") {
        let list: Vec<(Value, String)> = alts
            .iter()
            .filter(|a| a.get("x-import-only").and_then(Value::as_bool) != Some(true))
            // Codes of earlier IF versions only (前回認定結果 11): the form makes 09B surveys.
            .filter(|a| {
                a.get("x-if-versions")
                    .and_then(Value::as_array)
                    .is_none_or(|v| v.iter().any(|x| x.as_str() == Some("09B")))
            })
            .filter_map(|a| {
                let c = a.get("const")?.clone();
                let t = a
                    .get("title")
                    .and_then(Value::as_str)
                    .map_or_else(|| c.to_string(), str::to_owned);
                Some((c, t))
            })
            .collect();
        if !list.is_empty() {
            return Some(list);
        }
    }
    if let Some(Value::Array(values)) = reg.keyword(node, "enum") {
        return Some(
            values
                .iter()
                .map(|v| {
                    let label = match v.as_str() {
                        Some("draft") => "作成中".to_owned(),
                        Some("completed") => "調査完了".to_owned(),
                        Some("submitted") => "提出済み".to_owned(),
                        Some(s) => s.to_owned(),
                        None => v.to_string(),
                    };
                    (v.clone(), label)
                })
                .collect(),
        );
    }
    None
}

fn is_scalar(reg: &Registry, node: Node<'_>) -> bool {
    !matches!(
        type_of(reg, node).as_deref(),
        Some("object") | Some("array")
    )
}

impl Form<'_> {
    /// Queues an edit and applies it to the local copy.
    pub fn set(&mut self, pointer: &Pointer, value: Value) {
        let (p, v) = plan_set(self.doc, pointer, value);
        if apply_pointer(self.doc, &p, v.clone()).is_err() {
            tracing::debug!("local copy could not take an edit; the reload will correct it");
        }
        self.out.push(Command::Set {
            id: self.id,
            pointer: p.to_string(),
            value: v,
        });
    }

    fn error(&self, pointer: &Pointer) -> Option<&String> {
        // The refused edit may have been planned at an enclosing object.
        let full = pointer.to_string();
        self.errors
            .iter()
            .find(|((d, p), _)| *d == self.id && (full == *p || full.starts_with(&format!("{p}/"))))
            .map(|(_, m)| m)
    }

    /// The properties of an object node, in schema order, except `skip`.
    pub fn object(&mut self, ui: &mut egui::Ui, node: Node<'_>, ptr: &Pointer, skip: &[&str]) {
        let reg = self.reg;
        let props: Vec<(String, Node<'_>)> = reg
            .chain(node)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|n| {
                n.schema
                    .get("properties")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .map(|(k, s)| {
                                (
                                    k.clone(),
                                    Node {
                                        file: n.file,
                                        schema: s,
                                    },
                                )
                            })
                            .collect::<Vec<_>>()
                    })
            })
            .next()
            .unwrap_or_default();
        for (key, child) in props {
            if skip.contains(&key.as_str()) {
                continue;
            }
            self.field(ui, child, &ptr.child(key.clone()), &key);
        }
    }

    /// One field of any kind.
    pub fn field(&mut self, ui: &mut egui::Ui, node: Node<'_>, ptr: &Pointer, key: &str) {
        let reg = self.reg;
        let title = reg
            .keyword(node, "title")
            .and_then(Value::as_str)
            .unwrap_or(key)
            .to_owned();
        let current = self.doc.pointer(&ptr.to_string()).cloned();
        if let Some(choices) = choices_of(reg, node) {
            ui.horizontal_wrapped(|ui| {
                ui.add_sized([220.0, 32.0], egui::Label::new(&title).wrap());
                for (value, label) in choices {
                    let selected = current.as_ref() == Some(&value);
                    let r = ui.add(
                        egui::Button::selectable(selected, label.as_str()).min_size(CHOICE_SIZE),
                    );
                    let a11y = format!("{title}: {label}");
                    r.widget_info(|| {
                        egui::WidgetInfo::selected(egui::Role::Button, true, selected, &a11y)
                    });
                    if r.clicked() && !selected {
                        self.set(ptr, value);
                    }
                }
            });
            self.show_error(ui, ptr);
            return;
        }
        match type_of(reg, node).as_deref() {
            Some("object") => {
                let props_scalar = reg
                    .keyword(node, "properties")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.len() <= 3
                            && m.values().all(|s| {
                                is_scalar(
                                    reg,
                                    Node {
                                        file: node.file,
                                        schema: s,
                                    },
                                ) && choices_of(
                                    reg,
                                    Node {
                                        file: node.file,
                                        schema: s,
                                    },
                                )
                                .is_none()
                            })
                    })
                    .unwrap_or(false);
                if props_scalar {
                    ui.horizontal(|ui| {
                        ui.add_sized([220.0, 32.0], egui::Label::new(&title).wrap());
                        self.inline_object(ui, node, ptr);
                    });
                    self.show_error(ui, ptr);
                } else {
                    ui.add_space(6.0);
                    ui.label(egui::RichText::new(&title).strong().size(20.0));
                    egui::Frame::group(ui.style()).show(ui, |ui| {
                        ui.set_width(ui.available_width());
                        self.object(ui, node, ptr, &[]);
                    });
                }
            }
            Some("array") => {
                ui.horizontal(|ui| {
                    ui.label(&title);
                    ui.weak("（一覧の項目は別の画面で扱います）");
                });
            }
            Some("boolean") => {
                let mut v = current.and_then(|v| v.as_bool()).unwrap_or(false);
                if ui.checkbox(&mut v, &title).changed() {
                    self.set(ptr, Value::Bool(v));
                }
                self.show_error(ui, ptr);
            }
            Some(t @ ("integer" | "number")) => {
                ui.horizontal(|ui| {
                    ui.add_sized([220.0, 32.0], egui::Label::new(&title).wrap());
                    self.number(ui, node, ptr, &title, t == "integer");
                });
                self.show_error(ui, ptr);
            }
            _ => {
                ui.horizontal(|ui| {
                    ui.add_sized([220.0, 32.0], egui::Label::new(&title).wrap());
                    self.text(ui, node, ptr, &title);
                });
                self.show_error(ui, ptr);
            }
        }
    }

    fn inline_object(&mut self, ui: &mut egui::Ui, node: Node<'_>, ptr: &Pointer) {
        let reg = self.reg;
        let Some(props) = reg.keyword(node, "properties").and_then(Value::as_object) else {
            return;
        };
        for (k, s) in props {
            let child = Node {
                file: node.file,
                schema: s,
            };
            let p = ptr.child(k.clone());
            let title = reg
                .keyword(child, "title")
                .and_then(Value::as_str)
                .unwrap_or(k)
                .to_owned();
            match type_of(reg, child).as_deref() {
                Some("boolean") => {
                    let mut v = self
                        .doc
                        .pointer(&p.to_string())
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    if ui.checkbox(&mut v, &title).changed() {
                        self.set(&p, Value::Bool(v));
                    }
                }
                Some(t @ ("integer" | "number")) => {
                    ui.label(&title);
                    self.number(ui, child, &p, &title, t == "integer");
                }
                _ => {
                    ui.label(&title);
                    self.text(ui, child, &p, &title);
                }
            }
        }
    }

    fn show_error(&self, ui: &mut egui::Ui, ptr: &Pointer) {
        if let Some(e) = self.error(ptr) {
            ui.colored_label(ui.visuals().error_fg_color, format!("保存できません: {e}"));
        }
    }

    fn buffer(&mut self, ptr: &Pointer, shown: String) -> String {
        self.edits
            .get(&(self.id, ptr.to_string()))
            .cloned()
            .unwrap_or(shown)
    }

    fn number(&mut self, ui: &mut egui::Ui, node: Node<'_>, ptr: &Pointer, title: &str, int: bool) {
        let reg = self.reg;
        let shown = match self.doc.pointer(&ptr.to_string()) {
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        let mut buf = self.buffer(ptr, shown);
        let r = ui.add(egui::TextEdit::singleline(&mut buf).desired_width(90.0));
        let a11y = title.to_owned();
        r.widget_info(|| egui::WidgetInfo::labeled(egui::Role::TextInput, true, &a11y));
        let min = reg.keyword(node, "minimum").and_then(Value::as_f64);
        let max = reg.keyword(node, "maximum").and_then(Value::as_f64);
        let unit = unit_of(reg.keyword(node, "description").and_then(Value::as_str));
        if let Some(u) = unit {
            ui.label(u);
        }
        if let (Some(lo), Some(hi)) = (min, max) {
            ui.weak(format!("（入力できる範囲 {lo}〜{hi}）"));
        }
        if r.changed() {
            let key = (self.id, ptr.to_string());
            let trimmed = buf.trim().to_owned();
            self.edits.insert(key.clone(), buf.clone());
            let parsed: Option<Value> = if int {
                trimmed.parse::<i64>().ok().map(Value::from)
            } else {
                trimmed
                    .parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                    .map(Value::Number)
            };
            // Outside the schema's limits or not a number: kept on screen, not saved.
            if let Some(v) = parsed {
                let f = v.as_f64().unwrap_or(0.0);
                let inside = !(min.is_some_and(|lo| f < lo) || max.is_some_and(|hi| f > hi));
                if inside {
                    self.set(ptr, v);
                    // Numbers are saved as numbers; the buffer is no longer needed.
                    self.edits.remove(&key);
                }
            }
        }
        if let Some(b) = self.edits.get(&(self.id, ptr.to_string()))
            && !b.trim().is_empty()
        {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                "数値が範囲外か正しくないため未保存",
            );
        }
    }

    fn text(&mut self, ui: &mut egui::Ui, node: Node<'_>, ptr: &Pointer, title: &str) {
        let reg = self.reg;
        let shown = self
            .doc
            .pointer(&ptr.to_string())
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let mut buf = self.buffer(ptr, shown);
        let long = reg
            .keyword(node, "maxLength")
            .and_then(Value::as_u64)
            .is_some_and(|n| n > 200);
        let edit = if long {
            egui::TextEdit::multiline(&mut buf)
                .desired_rows(3)
                .desired_width(f32::INFINITY)
        } else {
            egui::TextEdit::singleline(&mut buf).desired_width(420.0)
        };
        let r = ui.add(edit);
        let a11y = title.to_owned();
        r.widget_info(|| egui::WidgetInfo::labeled(egui::Role::TextInput, true, &a11y));
        if r.changed() {
            self.edits.insert((self.id, ptr.to_string()), buf.clone());
            if !buf.is_empty() {
                self.set(ptr, Value::String(buf));
            }
        }
    }
}
