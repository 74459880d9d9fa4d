//! 事務: the office administrator's screen. 書き出し writes chosen surveys as PDF (the
//! official form or the numbered layout) or as one CSV (UTF-8 or Shift_JIS) and shows
//! where each file went; 依頼の取込 previews the municipality's request file row by row
//! (new, already imported, or refused with the reason) before importing it all at once;
//! バンドル writes or reads the encrypted file that carries documents without a network.
//! The work itself is `musubi_app::office`, the same code as the command line.

use std::path::PathBuf;

use musubi_engine::store::SecretString;

use super::app::{AppUi, OfficeTab};
use super::command::{Command, ExportFormat, Status};
use super::form::CHOICE_SIZE;
use crate::office::{RowCounts, RowPlan};

/// Rows of a request file listed in the preview (every refused or duplicate row comes
/// first); the counts above the list cover the whole file.
const MAX_ROWS_SHOWN: usize = 300;

const OK: egui::Color32 = egui::Color32::from_rgb(0x1a, 0x80, 0x3a);

/// A one-line text field with a visible label that screen readers read as its name.
pub(super) fn labeled_field(
    ui: &mut egui::Ui,
    label: &str,
    text: &mut String,
    password: bool,
    width: f32,
) -> egui::Response {
    ui.horizontal(|ui| {
        ui.label(label);
        let r = ui.add(
            egui::TextEdit::singleline(text)
                .password(password)
                .desired_width(width)
                .min_size(egui::vec2(0.0, CHOICE_SIZE.y)),
        );
        r.widget_info(|| egui::WidgetInfo::labeled(egui::Role::TextInput, true, label));
        r
    })
    .inner
}

/// A button that starts a step: at least 200 × 44 points, its own width even in a
/// justified column. True when tapped.
pub(super) fn big_button(ui: &mut egui::Ui, enabled: bool, text: &str) -> bool {
    ui.horizontal(|ui| {
        ui.add_enabled(
            enabled,
            egui::Button::new(text).min_size(egui::vec2(200.0, CHOICE_SIZE.y)),
        )
        .clicked()
    })
    .inner
}

impl AppUi {
    pub(super) fn office_screen(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("事務");
            ui.add_space(16.0);
            for (tab, label) in [
                (OfficeTab::Export, "書き出し（PDF・CSV）"),
                (OfficeTab::Requests, "依頼の取込"),
                (OfficeTab::Bundle, "バンドル（ファイルで受け渡し）"),
            ] {
                if ui
                    .add(
                        egui::Button::selectable(self.office.tab == tab, label)
                            .min_size(CHOICE_SIZE),
                    )
                    .clicked()
                {
                    self.office.tab = tab;
                    self.office.error = None;
                    if tab == OfficeTab::Bundle && self.office.bundle_out.is_empty() {
                        self.office.bundle_out = self.default_bundle_path();
                    }
                }
            }
        });
        ui.separator();
        if let Some(e) = &self.office.error {
            ui.colored_label(ui.visuals().error_fg_color, e.as_str());
            ui.add_space(4.0);
        }
        egui::ScrollArea::vertical()
            .id_salt("office")
            .auto_shrink([false, false])
            .show(ui, |ui| match self.office.tab {
                OfficeTab::Export => self.export_tab(ui),
                OfficeTab::Requests => self.requests_tab(ui),
                OfficeTab::Bundle => self.bundle_tab(ui),
            });
    }

    fn export_tab(&mut self, ui: &mut egui::Ui) {
        // Surveys of the visit list: (id, name, status, date).
        let surveys: Vec<_> = self
            .people
            .iter()
            .flat_map(|p| {
                p.docs
                    .iter()
                    .filter(|d| d.kind == "survey")
                    .map(move |d| (d.id, p.name.clone(), d.status, d.date.clone()))
            })
            .collect();
        ui.label("書き出す認定調査票を選び、形式と保存先を決めて「書き出す」を押してください。");
        ui.add_space(4.0);
        ui.horizontal(|ui| {
            if ui
                .add(egui::Button::new("すべて選ぶ").min_size(CHOICE_SIZE))
                .clicked()
            {
                self.office.selected = surveys.iter().map(|s| s.0).collect();
            }
            if ui
                .add(egui::Button::new("選択を外す").min_size(CHOICE_SIZE))
                .clicked()
            {
                self.office.selected.clear();
            }
            ui.label(format!(
                "{} 件中 {} 件を選択",
                surveys.len(),
                self.office.selected.len()
            ));
        });
        if surveys.is_empty() {
            ui.weak("この端末には認定調査票がありません。");
        }
        for (id, name, status, date) in &surveys {
            let mut on = self.office.selected.contains(id);
            let label = format!(
                "{name}　{}　調査実施日 {}",
                status.unwrap_or(Status::Draft).label(),
                date.as_deref().unwrap_or("未記入")
            );
            if ui
                .add(egui::Checkbox::new(&mut on, label.as_str()))
                .changed()
            {
                if on {
                    self.office.selected.insert(*id);
                } else {
                    self.office.selected.remove(id);
                }
            }
        }
        ui.add_space(8.0);
        ui.horizontal(|ui| {
            ui.label("形式");
            for (format, label) in ExportFormat::ALL {
                let on = self.office.format == format;
                if ui
                    .add(egui::Button::selectable(on, label).min_size(CHOICE_SIZE))
                    .clicked()
                {
                    self.office.format = format;
                }
            }
        });
        ui.weak("PDF は調査票ごとに1ファイル、CSV は選んだ調査票を1ファイルにまとめます。Shift_JIS で表せない文字があるときは何も書き出さずにお知らせします。");
        labeled_field(ui, "保存先フォルダ", &mut self.office.dir, false, 640.0);
        ui.add_space(4.0);
        let ready = !self.office.selected.is_empty() && !self.office.dir.trim().is_empty();
        if big_button(ui, ready && !self.busy(), "書き出す") {
            // In the order of the list, not of selection.
            let ids = surveys
                .iter()
                .map(|s| s.0)
                .filter(|id| self.office.selected.contains(id))
                .collect();
            self.office.exported.clear();
            self.send(Command::Export {
                ids,
                format: self.office.format,
                dir: PathBuf::from(self.office.dir.trim()),
            });
        }
        if !self.office.exported.is_empty() {
            ui.add_space(8.0);
            ui.colored_label(
                OK,
                format!(
                    "{} 個のファイルを書き出しました：",
                    self.office.exported.len()
                ),
            );
            for f in &self.office.exported {
                ui.label(f.display().to_string());
            }
        }
    }

    fn requests_tab(&mut self, ui: &mut egui::Ui) {
        ui.label("市町村から届いた調査依頼のファイル（CSV または JSON）を読み込み、内容を確かめてから取り込みます。");
        ui.add_space(4.0);
        labeled_field(
            ui,
            "依頼ファイル",
            &mut self.office.request_file,
            false,
            640.0,
        );
        let path = self.office.request_file.trim().to_owned();
        if big_button(ui, !path.is_empty() && !self.busy(), "読み込んで確認") {
            self.office.preview = None;
            self.office.imported = None;
            self.send(Command::PreviewRequests(PathBuf::from(&path)));
        }
        if let Some((created, duplicates)) = self.office.imported {
            ui.add_space(8.0);
            ui.colored_label(
                OK,
                format!(
                    "{created} 件を取り込みました（重複 {duplicates} 件は取り込んでいません）。訪問一覧と「認定の進捗」に表示されます。"
                ),
            );
        }
        let Some(preview) = &self.office.preview else {
            return;
        };
        ui.add_space(8.0);
        if let Some(e) = &preview.error {
            ui.colored_label(ui.visuals().error_fg_color, e.as_str());
            return;
        }
        let RowCounts {
            creates,
            duplicates,
            invalid,
        } = RowCounts::of(&preview.rows);
        ui.strong(format!(
            "{} 行：取り込み {creates} 件・重複 {duplicates} 件・エラー {invalid} 件",
            preview.rows.len()
        ));
        egui::Grid::new("request-preview")
            .striped(true)
            .min_col_width(60.0)
            .show(ui, |ui| {
                for h in ["行", "氏名", "申請日", "申請区分", "結果"] {
                    ui.strong(h);
                }
                ui.end_row();
                // A month's file can hold thousands of rows: the problems first, then the
                // first rows that import, up to what a screen can show.
                let mut shown: Vec<_> = preview
                    .rows
                    .iter()
                    .filter(|r| !r.plan.creates())
                    .take(MAX_ROWS_SHOWN)
                    .collect();
                let room = MAX_ROWS_SHOWN - shown.len();
                shown.extend(preview.rows.iter().filter(|r| r.plan.creates()).take(room));
                shown.sort_by_key(|r| r.row);
                for r in shown {
                    ui.label(format!("{}行目", r.row));
                    ui.label(r.name.as_str());
                    ui.label(r.application_date.as_str());
                    ui.label(r.application_kind.as_str());
                    match &r.plan {
                        RowPlan::Create { new_subject, .. } => ui.colored_label(
                            OK,
                            if *new_subject {
                                "取り込みます（新しい利用者）"
                            } else {
                                "取り込みます（登録済みの利用者）"
                            },
                        ),
                        RowPlan::Duplicate => ui.weak("取込済みのため取り込みません（重複）"),
                        RowPlan::Invalid(why) => {
                            ui.colored_label(ui.visuals().error_fg_color, format!("エラー：{why}"))
                        }
                    };
                    ui.end_row();
                }
            });
        if preview.rows.len() > MAX_ROWS_SHOWN {
            ui.weak(format!(
                "ほか {} 行（取り込む行）は表示していません。",
                preview.rows.len() - MAX_ROWS_SHOWN
            ));
        }
        ui.add_space(8.0);
        if invalid > 0 {
            ui.colored_label(
                ui.visuals().error_fg_color,
                "エラーのある行があるため取り込めません。ファイルを直してからもう一度読み込んでください。",
            );
            return;
        }
        let file = preview.file.clone();
        if big_button(
            ui,
            creates > 0 && !self.busy(),
            &format!("{creates} 件を取り込む"),
        ) {
            self.send(Command::ImportRequests(file));
        }
    }

    fn bundle_tab(&mut self, ui: &mut egui::Ui) {
        ui.label("ネットワークが使えないとき、この端末の事業所の文書を暗号化したファイル（バンドル）で受け渡します。");
        ui.add_space(8.0);
        ui.strong("書き出す");
        let o = &mut self.office;
        labeled_field(ui, "書き出すファイル", &mut o.bundle_out, false, 640.0);
        labeled_field(
            ui,
            "バンドルのパスフレーズ",
            &mut o.bundle_pass,
            true,
            320.0,
        );
        labeled_field(ui, "パスフレーズ（確認）", &mut o.bundle_pass2, true, 320.0);
        let mismatch = !o.bundle_pass2.is_empty() && *o.bundle_pass != *o.bundle_pass2;
        if mismatch {
            ui.colored_label(
                ui.visuals().error_fg_color,
                "確認のパスフレーズが一致しません。",
            );
        }
        let ready = !o.bundle_out.trim().is_empty()
            && !o.bundle_pass.is_empty()
            && *o.bundle_pass == *o.bundle_pass2;
        if big_button(ui, ready && !self.busy(), "バンドルを書き出す") {
            let o = &mut self.office;
            let passphrase = SecretString::from(std::mem::take(&mut *o.bundle_pass));
            o.bundle_pass2.clear();
            o.bundle_report.clear();
            let path = PathBuf::from(o.bundle_out.trim());
            self.send(Command::BundleExport { path, passphrase });
        }
        ui.add_space(12.0);
        ui.strong("取り込む");
        let o = &mut self.office;
        labeled_field(ui, "取り込むファイル", &mut o.bundle_in, false, 640.0);
        labeled_field(
            ui,
            "取り込むバンドルのパスフレーズ",
            &mut o.bundle_in_pass,
            true,
            320.0,
        );
        let ready = !o.bundle_in.trim().is_empty() && !o.bundle_in_pass.is_empty();
        if big_button(ui, ready && !self.busy(), "バンドルを取り込む") {
            let o = &mut self.office;
            let passphrase = SecretString::from(std::mem::take(&mut *o.bundle_in_pass));
            o.bundle_report.clear();
            let path = PathBuf::from(o.bundle_in.trim());
            self.send(Command::BundleImport { path, passphrase });
        }
        if !self.office.bundle_report.is_empty() {
            ui.add_space(8.0);
            for line in &self.office.bundle_report {
                ui.colored_label(OK, line.as_str());
            }
        }
    }
}

impl AppUi {
    /// The 事務 screen as the screenshot driver opens it: every survey chosen for export,
    /// the request file of `MUSUBI_UI_REQUESTS` previewed, or the bundle part.
    pub(super) fn office_start(
        &mut self,
        start: super::StartScreen,
        docs: &[super::command::DocRow],
    ) {
        match start {
            super::StartScreen::Requests => {
                self.office.tab = OfficeTab::Requests;
                if let Some(f) = std::env::var_os("MUSUBI_UI_REQUESTS") {
                    self.office.request_file = PathBuf::from(&f).display().to_string();
                    self.send(Command::PreviewRequests(PathBuf::from(f)));
                }
            }
            super::StartScreen::Bundle => {
                self.office.tab = OfficeTab::Bundle;
                self.office.bundle_out = self.default_bundle_path();
            }
            _ => {
                self.office.tab = OfficeTab::Export;
                self.office.selected = docs
                    .iter()
                    .filter(|d| d.kind == "survey")
                    .map(|d| d.id)
                    .collect();
            }
        }
    }

    /// `<export folder>/musubi-<device>-<date>.bundle`: a new name each day, no personal data.
    pub(super) fn default_bundle_path(&self) -> String {
        let device = self
            .device
            .as_ref()
            .map_or("tablet", |d| d.device_name.as_str());
        let date = chrono::Local::now().format("%Y%m%d");
        PathBuf::from(self.office.dir.trim())
            .join(format!("musubi-{device}-{date}.bundle"))
            .display()
            .to_string()
    }
}
