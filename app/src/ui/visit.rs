//! The 訪問看護記録書Ⅱ screen, generated from `schemas/visit-record.schema.json`: visit
//! date and times, vital signs with their units and the schema's limits, observations,
//! care provided, reaction and next plan.

use musubi_engine::ids::DocId;
use musubi_engine::schema::{DocKind, Pointer, Registry};

use super::app::{AppUi, Screen};
use super::command::Command;
use super::form::Form;

impl AppUi {
    pub(super) fn visit_screen(&mut self, ui: &mut egui::Ui, id: DocId) {
        ui.horizontal(|ui| {
            if ui.button("← 訪問一覧").clicked() {
                self.go(Screen::Home);
            }
            ui.heading("訪問看護記録書Ⅱ");
        });
        ui.weak(
            "バイタルサインは単位つきで入力します。範囲外の値は保存されず、その場で知らせます。",
        );
        ui.separator();
        let Ok(reg) = Registry::embedded() else {
            ui.label("記録書の定義を読み込めませんでした。");
            return;
        };
        let Ok(root) = reg.root(DocKind::VisitRecord) else {
            return;
        };
        let mut out: Vec<Command> = Vec::new();
        let Some(doc) = self.docs.get_mut(&id) else {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("読み込んでいます…");
            });
            return;
        };
        egui::ScrollArea::vertical()
            .id_salt(("visit", id))
            .auto_shrink([false, false])
            .show(ui, |ui| {
                let mut form = Form {
                    id,
                    doc,
                    edits: &mut self.edits,
                    errors: &self.field_errors,
                    out: &mut out,
                    reg,
                };
                form.object(
                    ui,
                    root,
                    &Pointer::root(),
                    &["kind", "office", "subject_id"],
                );
            });
        for c in out {
            self.send(c);
        }
    }
}
