//! Office reconciliation: documents with concurrent values, each conflict with the
//! competing values side by side (value, device, staff member, time), resolved with one
//! tap (an ordinary engine `set`, also when re-choosing the value shown now); and the
//! audit history of a document, each change with the device the relay attests for it.

pub use crate::history::{attested_label, declared_mismatch};
use musubi_engine::ids::DocId;
use musubi_engine::schema::{DocKind, Pointer, Registry, SurveyCatalog};
use serde_json::Value;

use super::app::{AppUi, Screen, format_ms};
use super::command::Command;

/// A field's Japanese name: the 基本調査 item title for `/items/…`, else the schema titles
/// along the path.
pub fn field_label(kind: Option<DocKind>, catalog: Option<&SurveyCatalog>, path: &str) -> String {
    if let (Some(cat), Some(key)) = (catalog, path.strip_prefix("/items/"))
        && let Some(item) = cat.item(key.split('/').next().unwrap_or(key))
    {
        return format!("{} {}", item.key, item.title);
    }
    let (Some(kind), Ok(reg), Ok(ptr)) = (kind, Registry::embedded(), Pointer::parse(path)) else {
        return path.to_owned();
    };
    let Ok(root) = reg.root(kind) else {
        return path.to_owned();
    };
    let mut titles = Vec::new();
    for n in 1..=ptr.tokens().len() {
        if let Some(node) = reg.node_at(root, &ptr.tokens()[..n])
            && let Some(t) = reg.keyword(node, "title").and_then(Value::as_str)
        {
            titles.push(t.to_owned());
        }
    }
    if titles.is_empty() {
        path.to_owned()
    } else {
        titles.join(" › ")
    }
}

/// A value as the office reads it: the choice label for a 基本調査 code.
pub fn value_label(catalog: Option<&SurveyCatalog>, path: &str, value: &Value) -> String {
    if let (Some(cat), Some(key)) = (catalog, path.strip_prefix("/items/"))
        && let Some(item) = cat.item(key)
    {
        let label = |v: &Value| {
            v.as_i64()
                .and_then(|c| item.label_of(c))
                .map_or_else(|| v.to_string(), str::to_owned)
        };
        return match value {
            Value::Array(list) if list.is_empty() => "該当なし".to_owned(),
            Value::Array(list) => list.iter().map(label).collect::<Vec<_>>().join("、"),
            v => label(v),
        };
    }
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "（空）".to_owned(),
        v => v.to_string(),
    }
}

impl AppUi {
    pub(super) fn reconcile_screen(&mut self, ui: &mut egui::Ui, selected: Option<DocId>) {
        ui.heading("照合（競合の解消と履歴）");
        ui.add_space(4.0);
        let conflicted: Vec<(DocId, String, String, usize)> = self
            .people
            .iter()
            .flat_map(|p| p.docs.iter().map(move |d| (p, d)))
            .filter(|(_, d)| d.conflicts > 0 || Some(d.id) == selected)
            .map(|(p, d)| {
                let kind = if d.kind == "survey" {
                    "認定調査票"
                } else {
                    "訪問看護記録書Ⅱ"
                };
                (d.id, p.name.clone(), kind.to_owned(), d.conflicts)
            })
            .collect();
        let mut go: Option<Screen> = None;
        ui.horizontal_wrapped(|ui| {
            if conflicted.is_empty() {
                ui.label("競合している文書はありません。");
            }
            for (id, name, kind, n) in &conflicted {
                let sel = Some(*id) == selected;
                let text = format!("{name} ・ {kind}（競合 {n}）");
                if ui
                    .add(egui::Button::selectable(sel, text).min_size(egui::vec2(0.0, 44.0)))
                    .clicked()
                {
                    go = Some(Screen::Reconcile(Some(*id)));
                }
            }
        });
        if let Some(s) = go {
            self.go(s);
        }
        ui.separator();
        let Some(id) = selected else {
            ui.weak("文書を選ぶと、競合している値と変更の履歴が表示されます。");
            return;
        };
        let kind = self
            .people
            .iter()
            .flat_map(|p| &p.docs)
            .find(|d| d.id == id)
            .and_then(|d| DocKind::parse(&d.kind));
        let catalog = self.catalog.clone();
        let cat = catalog.as_deref();
        let mut out: Vec<Command> = Vec::new();
        egui::ScrollArea::vertical()
            .id_salt(("reconcile", id))
            .auto_shrink([false, false])
            .show(ui, |ui| {
                ui.label(egui::RichText::new("競合している項目").strong().size(20.0));
                match self.conflicts.get(&id) {
                    None => {
                        ui.spinner();
                    }
                    Some(list) if list.is_empty() => {
                        ui.colored_label(
                            egui::Color32::from_rgb(0x1a, 0x80, 0x3a),
                            "競合はありません（すべて解消済み）。",
                        );
                    }
                    Some(list) => {
                        for c in list {
                            egui::Frame::group(ui.style()).show(ui, |ui| {
                                ui.set_width(ui.available_width());
                                let field = field_label(kind, cat, &c.path);
                                ui.label(egui::RichText::new(&field).strong());
                                ui.horizontal_top(|ui| {
                                    for (n, v) in c.values.iter().enumerate() {
                                        egui::Frame::group(ui.style()).show(ui, |ui| {
                                            ui.set_min_width(260.0);
                                            ui.vertical(|ui| {
                                                ui.label(
                                                    egui::RichText::new(value_label(
                                                        cat, &c.path, &v.value,
                                                    ))
                                                    .size(20.0),
                                                );
                                                ui.label(format!("端末: {}", v.device));
                                                ui.label(format!(
                                                    "担当: {}",
                                                    v.staff.clone().unwrap_or_else(|| {
                                                        "（記録なし）".to_owned()
                                                    })
                                                ));
                                                ui.label(format!("日時: {}", format_ms(v.time_ms)));
                                                if v.current {
                                                    ui.weak("いま表示されている値");
                                                }
                                                let r = ui.add(
                                                    egui::Button::new("この値に決める")
                                                        .min_size(egui::vec2(200.0, 44.0)),
                                                );
                                                let a11y = format!(
                                                    "{field} 候補{}: この値に決める",
                                                    n + 1
                                                );
                                                r.widget_info(|| {
                                                    egui::WidgetInfo::labeled(
                                                        egui::Role::Button,
                                                        true,
                                                        &a11y,
                                                    )
                                                });
                                                if r.clicked() {
                                                    out.push(Command::Set {
                                                        id,
                                                        pointer: c.path.clone(),
                                                        value: v.value.clone(),
                                                    });
                                                }
                                            });
                                        });
                                    }
                                });
                            });
                        }
                    }
                }
                ui.add_space(12.0);
                ui.label(egui::RichText::new("変更の履歴").strong().size(20.0));
                match self.history.get(&id) {
                    None => {
                        ui.spinner();
                    }
                    Some(entries) => {
                        egui::Grid::new(("history", id))
                            .num_columns(5)
                            .striped(true)
                            .spacing([16.0, 6.0])
                            .show(ui, |ui| {
                                for title in [
                                    "日時",
                                    "端末（自己申告）",
                                    "端末（中継サーバーの証明）",
                                    "担当",
                                    "変更した項目",
                                ] {
                                    ui.strong(title);
                                }
                                ui.end_row();
                                for e in entries.iter().rev() {
                                    ui.label(format_ms(e.origin.time_ms));
                                    ui.label(&e.origin.device_name);
                                    ui.vertical(|ui| {
                                        // The mismatch sentence wraps inside the column.
                                        ui.set_max_width(320.0);
                                        if e.attested.is_some() {
                                            ui.label(attested_label(e));
                                        } else {
                                            ui.weak(attested_label(e));
                                        }
                                        if let Some(text) = declared_mismatch(e) {
                                            let warn = ui.visuals().warn_fg_color;
                                            ui.add(
                                                egui::Label::new(
                                                    egui::RichText::new(format!("※ {text}"))
                                                        .color(warn),
                                                )
                                                .wrap(),
                                            );
                                        }
                                    });
                                    ui.label(e.origin.staff.clone().unwrap_or_default());
                                    let fields: Vec<String> = e
                                        .fields
                                        .iter()
                                        .take(4)
                                        .map(|f| field_label(kind, cat, &f.path))
                                        .collect();
                                    let more = e.fields.len().saturating_sub(4);
                                    let mut text = fields.join("、");
                                    if more > 0 {
                                        text.push_str(&format!(" ほか{more}件"));
                                    }
                                    ui.add(egui::Label::new(text).truncate());
                                    ui.end_row();
                                }
                            });
                    }
                }
            });
        for c in out {
            self.send(c);
        }
    }
}
