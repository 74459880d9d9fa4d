//! The 認定調査票 screen: 基本調査 (the 74 items plus 自立度) generated from the schema's
//! catalog, with 特記事項 under each item and the soft warnings beside it; 概況調査 and the
//! person's block generated from the schema by [`Form`]. Every tap and keystroke is sent
//! to the worker at once; there is no save button.

use std::sync::Arc;

use musubi_engine::ids::DocId;
use musubi_engine::schema::{DocKind, Item, ItemKind, Pointer, Registry, SurveyCatalog};
use serde_json::{Value, json};

use super::app::{AppUi, ItemWarning, Screen};
use super::command::Command;
use super::form::{CHOICE_SIZE, Form};
use super::survey_model::{answered_count, is_answered, next_unanswered};
use crate::office::SurveyStep;

fn now_rfc3339() -> String {
    chrono::Local::now()
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// The accessible name of a choice button: item number, item and choice, e.g.
/// `1-3 寝返り: つかまらないでできる`, unique on the screen.
pub fn choice_label(item: &Item, label: &str) -> String {
    format!("{} {}: {}", item.key, item.title, label)
}

impl AppUi {
    pub(super) fn survey_screen(&mut self, ui: &mut egui::Ui, id: DocId) {
        let (Some(catalog), Ok(reg)) = (self.catalog.clone(), Registry::embedded()) else {
            ui.label("調査票の定義を読み込めませんでした。");
            return;
        };
        let Some(doc) = self.docs.get(&id) else {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("読み込んでいます…");
            });
            return;
        };
        let name = doc
            .pointer("/subject/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let answered = answered_count(&catalog, doc.get("items"));
        let next = next_unanswered(&catalog, doc.get("items"), self.survey.last_jump.as_deref())
            .map(str::to_owned);
        let status = doc
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("draft")
            .to_owned();
        let mut out: Vec<Command> = Vec::new();
        ui.horizontal(|ui| {
            if ui.button("← 訪問一覧").clicked() {
                self.go(Screen::Home);
            }
            ui.heading(format!("認定調査票 — {name}"));
            ui.add_space(16.0);
            let color = if answered == 74 {
                egui::Color32::from_rgb(0x1a, 0x80, 0x3a)
            } else {
                ui.visuals().warn_fg_color
            };
            ui.colored_label(color, format!("基本調査 回答 {answered}/74"));
        });
        ui.horizontal(|ui| {
            if ui
                .add(
                    egui::Button::selectable(!self.survey.overview, "基本調査・特記事項")
                        .min_size(CHOICE_SIZE),
                )
                .clicked()
            {
                self.survey.overview = false;
            }
            if ui
                .add(
                    egui::Button::selectable(self.survey.overview, "概況調査・調査対象者")
                        .min_size(CHOICE_SIZE),
                )
                .clicked()
            {
                self.survey.overview = true;
            }
            ui.separator();
            match &next {
                Some(key) => {
                    if ui
                        .add(egui::Button::new("次の未回答へ ↓").min_size(CHOICE_SIZE))
                        .clicked()
                    {
                        self.survey.overview = false;
                        self.survey.jump_to = Some(key.clone());
                        self.survey.last_jump = Some(key.clone());
                    }
                }
                None => {
                    ui.colored_label(egui::Color32::from_rgb(0x1a, 0x80, 0x3a), "すべて回答済み");
                }
            }
            ui.separator();
            ui.label("状態");
            if status == "submitted" {
                ui.colored_label(
                    egui::Color32::from_rgb(0x1a, 0x80, 0x3a),
                    "提出済み（変更は訂正で）",
                );
                return;
            }
            for (code, label) in [("draft", "作成中"), ("completed", "調査完了")] {
                let sel = status == code;
                if ui
                    .add(egui::Button::selectable(sel, label).min_size(CHOICE_SIZE))
                    .clicked()
                    && !sel
                {
                    let step = if code == "completed" {
                        SurveyStep::Complete
                    } else {
                        SurveyStep::Reopen
                    };
                    out.push(Command::SurveyStep {
                        id,
                        step: Box::new(step),
                    });
                }
            }
            if status == "completed"
                && ui
                    .add(egui::Button::new("提出する").min_size(CHOICE_SIZE))
                    .on_hover_text("提出後は、理由を記録する訂正でだけ変更できます。")
                    .clicked()
            {
                out.push(Command::SurveyStep {
                    id,
                    step: Box::new(SurveyStep::Submit),
                });
            }
        });
        if let Some(e) = self.field_errors.get(&(id, "/status".to_owned())) {
            ui.colored_label(
                ui.visuals().error_fg_color,
                format!("状態を変更できません：{e}"),
            );
        }
        if status == "submitted" {
            self.amend_panel(ui, id, &catalog, &mut out);
        }
        ui.separator();
        let overview = self.survey.overview;
        egui::ScrollArea::vertical()
            .id_salt(("survey", id, overview))
            .auto_shrink([false, false])
            .show(ui, |ui| {
                if overview {
                    self.overview_form(ui, id, reg, &mut out);
                } else {
                    self.items_form(ui, id, &catalog, &mut out);
                }
            });
        for c in out {
            self.send(c);
        }
    }

    fn overview_form(
        &mut self,
        ui: &mut egui::Ui,
        id: DocId,
        reg: &'static Registry,
        out: &mut Vec<Command>,
    ) {
        let Ok(root) = reg.root(DocKind::Survey) else {
            return;
        };
        let Some(doc) = self.docs.get_mut(&id) else {
            return;
        };
        let mut form = Form {
            id,
            doc,
            edits: &mut self.edits,
            errors: &self.field_errors,
            out,
            reg,
        };
        for key in ["subject", "overview", "administration"] {
            if let Some(node) = reg.property(root, key) {
                form.field(ui, node, &Pointer::root().child(key), key);
            }
        }
    }

    fn items_form(
        &mut self,
        ui: &mut egui::Ui,
        id: DocId,
        catalog: &Arc<SurveyCatalog>,
        out: &mut Vec<Command>,
    ) {
        let jump = self.survey.jump_to.take();
        let no_warnings = std::collections::BTreeMap::new();
        let warnings = self.warnings.get(&id).unwrap_or(&no_warnings).clone();
        let mut group = 0;
        for item in &catalog.items {
            if item.group != group {
                group = item.group;
                let title = catalog
                    .groups
                    .iter()
                    .find(|g| g.number == group)
                    .map_or(String::new(), |g| g.title.clone());
                ui.add_space(10.0);
                ui.label(
                    egui::RichText::new(if group <= 5 {
                        format!("第{group}群　{title}")
                    } else {
                        title
                    })
                    .size(22.0)
                    .strong(),
                );
            }
            let item_warnings = warnings.get(&item.key).map_or(&[][..], Vec::as_slice);
            let resp = self.item_row(ui, id, item, item_warnings, out);
            if jump.as_deref() == Some(item.key.as_str()) {
                resp.scroll_to_me(Some(egui::Align::TOP));
            }
        }
    }

    fn item_row(
        &mut self,
        ui: &mut egui::Ui,
        id: DocId,
        item: &Item,
        warnings: &[ItemWarning],
        out: &mut Vec<Command>,
    ) -> egui::Response {
        let Some(doc) = self.docs.get(&id) else {
            return ui.label("");
        };
        let answered = is_answered(item, doc.get("items"));
        let current = doc.pointer(&format!("/items/{}", item.key)).cloned();
        let stroke = if answered {
            egui::Stroke::new(1.0, ui.visuals().widgets.noninteractive.bg_stroke.color)
        } else {
            egui::Stroke::new(2.0, egui::Color32::from_rgb(0xe0, 0x80, 0x10))
        };
        let frame = egui::Frame::group(ui.style()).stroke(stroke);
        frame
            .show(ui, |ui| {
                ui.set_width(ui.available_width());
                ui.horizontal(|ui| {
                    ui.label(egui::RichText::new(&item.key).strong().size(20.0));
                    ui.label(egui::RichText::new(&item.title).size(20.0));
                    if let Some(axis) = &item.axis {
                        ui.weak(format!("（{axis}）"));
                    }
                    if !answered {
                        ui.colored_label(egui::Color32::from_rgb(0xc0, 0x60, 0x00), "● 未回答");
                    }
                });
                let mut new_value: Option<Value> = None;
                match item.kind {
                    ItemKind::Single => {
                        ui.horizontal_wrapped(|ui| {
                            for c in item.choices.iter().filter(|c| !c.import_only) {
                                let sel = current.as_ref().and_then(Value::as_i64) == Some(c.code);
                                let text = format!("{}. {}", c.code, c.label);
                                let r = ui
                                    .add(egui::Button::selectable(sel, text).min_size(CHOICE_SIZE));
                                let a11y = choice_label(item, &c.label);
                                r.widget_info(|| {
                                    egui::WidgetInfo::selected(egui::Role::Button, true, sel, &a11y)
                                });
                                if r.clicked() && !sel {
                                    new_value = Some(json!(c.code));
                                }
                            }
                        });
                    }
                    ItemKind::Multi => {
                        let chosen: Vec<i64> = current
                            .as_ref()
                            .and_then(Value::as_array)
                            .map(|l| l.iter().filter_map(Value::as_i64).collect())
                            .unwrap_or_default();
                        let mut subgroup: Option<&str> = None;
                        let choices: Vec<_> =
                            item.choices.iter().filter(|c| !c.import_only).collect();
                        ui.horizontal_wrapped(|ui| {
                            for c in &choices {
                                if c.subgroup.as_deref() != subgroup {
                                    subgroup = c.subgroup.as_deref();
                                    ui.end_row();
                                    if let Some(s) = subgroup {
                                        ui.weak(s);
                                    }
                                }
                                let sel = chosen.contains(&c.code);
                                let text = match c.seq {
                                    Some(seq) => format!("{}（{seq}）", c.label),
                                    None => c.label.clone(),
                                };
                                let r = ui
                                    .add(egui::Button::selectable(sel, text).min_size(CHOICE_SIZE));
                                let a11y = choice_label(item, &c.label);
                                r.widget_info(|| {
                                    egui::WidgetInfo::selected(
                                        egui::Role::CheckBox,
                                        true,
                                        sel,
                                        &a11y,
                                    )
                                });
                                if r.clicked() {
                                    let mut next: Vec<i64> = if item.exclusive.contains(&c.code) {
                                        Vec::new()
                                    } else {
                                        chosen
                                            .iter()
                                            .copied()
                                            .filter(|x| !item.exclusive.contains(x))
                                            .collect()
                                    };
                                    if sel {
                                        next.retain(|x| *x != c.code);
                                    } else {
                                        next.push(c.code);
                                        next.sort_unstable();
                                    }
                                    new_value = Some(json!(next));
                                }
                            }
                            if item.exclusive.is_empty() {
                                // No "none" code (特別な医療): an explicit empty answer.
                                let sel = current
                                    .as_ref()
                                    .is_some_and(|v| v.as_array().is_some_and(Vec::is_empty));
                                let r = ui.add(
                                    egui::Button::selectable(sel, "該当なし").min_size(CHOICE_SIZE),
                                );
                                let a11y = choice_label(item, "該当なし");
                                r.widget_info(|| {
                                    egui::WidgetInfo::selected(egui::Role::Button, true, sel, &a11y)
                                });
                                if r.clicked() && !sel {
                                    new_value = Some(json!([]));
                                }
                            }
                        });
                        if !answered && !item.exclusive.is_empty() {
                            ui.weak("あてはまるものをすべて選んでください（なければ「ない」）。");
                        }
                    }
                }
                if let Some(v) = new_value {
                    let pointer = format!("/items/{}", item.key);
                    if let (Ok(p), Some(doc)) = (Pointer::parse(&pointer), self.docs.get_mut(&id))
                        && musubi_engine::doc::apply_pointer(doc, &p, v.clone()).is_err()
                    {
                        tracing::debug!("local copy could not take an answer");
                    }
                    out.push(Command::Set {
                        id,
                        pointer,
                        value: v,
                    });
                }
                if let Some(e) = self.field_errors.get(&(id, format!("/items/{}", item.key))) {
                    ui.colored_label(ui.visuals().error_fg_color, format!("保存できません: {e}"));
                }
                // Soft warnings from the engine side (never blocking).
                for w in warnings {
                    ui.colored_label(
                        ui.visuals().warn_fg_color,
                        format!("※ 警告 {} {}", w.code, w.message),
                    )
                    .on_hover_text(&w.code);
                }
                self.notes(ui, id, item, out);
            })
            .response
    }

    /// The 特記事項 of one item: each note editable in place (saved per keystroke), and a
    /// field that starts a new one with its first keystroke.
    fn notes(&mut self, ui: &mut egui::Ui, id: DocId, item: &Item, out: &mut Vec<Command>) {
        let Some(doc) = self.docs.get_mut(&id) else {
            return;
        };
        let notes: Vec<(usize, String)> = doc
            .get("special_notes")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .enumerate()
                    .filter(|(_, n)| {
                        n.get("item").and_then(Value::as_str) == Some(item.key.as_str())
                    })
                    .map(|(i, n)| {
                        (
                            i,
                            n.get("text")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let total = doc
            .get("special_notes")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        for (i, text) in notes {
            let pointer = format!("/special_notes/{i}/text");
            let key = (id, pointer.clone());
            let mut buf = self.edits.get(&key).cloned().unwrap_or(text);
            ui.horizontal(|ui| {
                ui.weak("特記事項");
                let r = ui.add(
                    egui::TextEdit::multiline(&mut buf)
                        .id(egui::Id::unique(("note", id, i)))
                        .desired_rows(2)
                        .desired_width(ui.available_width()),
                );
                let a11y = format!("{} 特記事項", item.key);
                r.widget_info(|| {
                    egui::WidgetInfo::labeled(egui::Role::MultilineTextInput, true, &a11y)
                });
                if r.changed() {
                    self.edits.insert(key.clone(), buf.clone());
                    if buf.is_empty() {
                        self.field_errors
                            .insert(key.clone(), "特記事項を空にはできません".to_owned());
                    } else {
                        out.push(Command::Set {
                            id,
                            pointer: pointer.clone(),
                            value: json!(buf),
                        });
                    }
                }
            });
            if let Some(e) = self.field_errors.get(&key) {
                ui.colored_label(ui.visuals().error_fg_color, format!("保存できません: {e}"));
            }
        }
        let next_index = self
            .survey
            .pending_notes
            .iter()
            .filter(|(d, _, _)| *d == id)
            .map(|(_, i, _)| i + 1)
            .max()
            .unwrap_or(0)
            .max(total);
        let buf = self.survey.new_note.entry(item.key.clone()).or_default();
        ui.horizontal(|ui| {
            ui.weak("＋特記事項");
            let r = ui.add(
                egui::TextEdit::singleline(buf)
                    .id(egui::Id::unique(("note-new", id, &item.key)))
                    .hint_text("この項目の特記事項を書き始めると追加されます")
                    .desired_width(ui.available_width()),
            );
            let a11y = format!("{} 特記事項を追加", item.key);
            r.widget_info(|| egui::WidgetInfo::labeled(egui::Role::TextInput, true, &a11y));
            if r.changed() && !buf.is_empty() {
                let text = std::mem::take(buf);
                let note = json!({"item": item.key, "text": text, "created_at": now_rfc3339()});
                out.push(Command::Set {
                    id,
                    pointer: "/special_notes/-".to_owned(),
                    value: note.clone(),
                });
                if let Some(list) = doc.get_mut("special_notes").and_then(Value::as_array_mut) {
                    list.push(note);
                }
                self.survey
                    .pending_notes
                    .push((id, next_index, item.key.clone()));
                // Typing continues in the new note's own field.
                ui.memory_mut(|m| m.request_focus(egui::Id::unique(("note", id, next_index))));
            }
        });
    }
}

impl AppUi {
    /// 訂正 of a submitted survey: one item, its corrected choice and the reason. The
    /// earlier value stays in the document's 訂正履歴 and in its history.
    fn amend_panel(
        &mut self,
        ui: &mut egui::Ui,
        id: DocId,
        catalog: &SurveyCatalog,
        out: &mut Vec<Command>,
    ) {
        let current = |key: &str| {
            self.docs
                .get(&id)
                .and_then(|d| d.pointer(&format!("/items/{key}")))
                .and_then(Value::as_i64)
        };
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.strong("訂正（提出済みの調査票）");
            ui.weak("項目と正しい選択肢を選び、訂正理由を入力してください。訂正前の値は記録に残ります。");
            let a = &mut self.amend;
            let chosen = a
                .item
                .as_deref()
                .and_then(|k| catalog.item(k))
                .filter(|i| i.kind == ItemKind::Single);
            let shown = chosen.map_or_else(
                || "項目を選んでください".to_owned(),
                |i| format!("{} {}", i.key, i.title),
            );
            ui.horizontal(|ui| {
                ui.label("訂正する項目");
                egui::ComboBox::from_id_salt(("amend-item", id))
                    .selected_text(shown)
                    .width(420.0)
                    .height(480.0)
                    .show_ui(ui, |ui| {
                        for item in catalog.items.iter().filter(|i| i.kind == ItemKind::Single) {
                            let label = format!("{} {}", item.key, item.title);
                            if ui
                                .selectable_label(a.item.as_deref() == Some(&item.key), label)
                                .clicked()
                            {
                                a.item = Some(item.key.clone());
                                a.code = None;
                            }
                        }
                    })
                    .response
                    .widget_info(|| {
                        egui::WidgetInfo::labeled(egui::Role::ComboBox, true, "訂正する項目")
                    });
            });
            let Some(item) = chosen else { return };
            let now = current(&item.key);
            ui.horizontal_wrapped(|ui| {
                ui.label("正しい選択肢");
                for c in item.choices.iter().filter(|c| !c.import_only) {
                    let label = if now == Some(c.code) {
                        format!("{}（現在）", c.label)
                    } else {
                        c.label.clone()
                    };
                    if ui
                        .add(
                            egui::Button::selectable(a.code == Some(c.code), label)
                                .min_size(CHOICE_SIZE),
                        )
                        .clicked()
                    {
                        a.code = Some(c.code);
                    }
                }
            });
            super::office_screen::labeled_field(ui, "訂正理由", &mut a.reason, false, 520.0);
            let changed = a.code.is_some() && a.code != now;
            let ready = changed && !a.reason.trim().is_empty();
            if a.code.is_some() && !changed {
                ui.weak("現在と同じ選択肢です。");
            }
            if ui
                .add_enabled(
                    ready,
                    egui::Button::new("訂正する").min_size(egui::vec2(200.0, CHOICE_SIZE.y)),
                )
                .clicked()
                && let (Some(code), Ok(pointer)) =
                    (a.code, Pointer::parse(&format!("/items/{}", item.key)))
            {
                out.push(Command::SurveyStep {
                    id,
                    step: Box::new(SurveyStep::Amend {
                        pointer,
                        value: json!(code),
                        reason: a.reason.trim().to_owned(),
                    }),
                });
                *a = super::app::AmendUi::default();
            }
        });
    }
}
