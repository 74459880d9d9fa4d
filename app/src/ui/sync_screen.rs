//! The sync screen: background sync state, a progress bar while it runs, the last
//! success, what is waiting to go out, and failures in plain Japanese.

use super::app::{AppUi, format_ms};
use super::command::Command;

impl AppUi {
    pub(super) fn sync_screen(&mut self, ui: &mut egui::Ui) {
        ui.heading("事務所との同期");
        ui.add_space(8.0);
        let (text, color) = self.connection_label(ui);
        ui.label(egui::RichText::new(text).color(color).size(22.0));
        ui.add_space(8.0);
        let s = self.sync.clone();
        egui::Grid::new("sync-grid")
            .num_columns(2)
            .spacing([24.0, 10.0])
            .show(ui, |ui| {
                ui.label("中継サーバー");
                ui.label(s.relay.clone().unwrap_or_else(|| "未登録".to_owned()));
                ui.end_row();
                ui.label("最終同期");
                ui.label(
                    s.last_success_ms
                        .map_or("まだ同期していません".to_owned(), format_ms),
                );
                ui.end_row();
                ui.label("送信待ちの文書");
                ui.label(format!("{} 件", s.pending));
                ui.end_row();
                if s.last_success_ms.is_some() {
                    ui.label("前回の同期");
                    ui.label(format!(
                        "送信 {} 件・受信 {} 件",
                        s.last_sent, s.last_received
                    ));
                    ui.end_row();
                }
            });
        ui.add_space(12.0);
        match s.running {
            Some((done, total, sent, received)) => {
                let fraction = if total == 0 {
                    0.0
                } else {
                    done as f32 / total as f32
                };
                ui.add(
                    egui::ProgressBar::new(fraction)
                        .desired_width(600.0)
                        .text(format!(
                            "同期中 {done}/{total} 文書（送信 {} KB・受信 {} KB）",
                            sent / 1024,
                            received / 1024
                        )),
                );
            }
            None => {
                let enabled = s.enrolled;
                if ui
                    .add_enabled(
                        enabled,
                        egui::Button::new("今すぐ同期").min_size(egui::vec2(200.0, 48.0)),
                    )
                    .clicked()
                {
                    self.send(Command::SyncNow);
                }
            }
        }
        if !s.refused.is_empty() {
            ui.add_space(12.0);
            egui::Frame::group(ui.style()).show(ui, |ui| {
                ui.colored_label(
                    ui.visuals().warn_fg_color,
                    format!(
                        "中継サーバーが受け付けなかった文書が {} 件あります。端末には残っています。",
                        s.refused.len()
                    ),
                );
                for (id, why) in &s.refused {
                    ui.label(format!("文書 {id}：{why}"));
                }
            });
        }
        if let Some(e) = &s.error {
            ui.add_space(12.0);
            egui::Frame::group(ui.style()).show(ui, |ui| {
                ui.colored_label(ui.visuals().warn_fg_color, e.as_str());
            });
        }
        ui.add_space(16.0);
        if s.enrolled {
            ui.weak("同期は自動で行われます（約30秒ごと、および「今すぐ同期」）。ネットワークがなくても入力はすべて端末に暗号化して保存され、次に接続できたときに送られます。");
        } else {
            ui.weak("この端末は中継サーバーに登録されていません。事務所で登録ファイルを作り、`musubi enroll ファイル` で登録すると自動で同期します。");
        }
    }
}
