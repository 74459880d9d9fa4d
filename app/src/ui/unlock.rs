//! The unlock screen: the device passphrase, or office recovery with the recovery
//! identity file and a new passphrase.

use musubi_engine::store::SecretString;

use super::app::AppUi;
use super::command::Command;

impl AppUi {
    pub(super) fn unlock_screen(&mut self, ui: &mut egui::Ui) {
        ui.vertical_centered(|ui| {
            ui.add_space(80.0);
            ui.heading("musubi 結び — 認定調査・訪問記録");
            ui.add_space(24.0);
            let f = &mut self.unlock;
            let mut submit = false;
            if !f.recovery {
                ui.label("パスフレーズを入力して保管庫を開いてください。");
                let r = ui.add(
                    egui::TextEdit::singleline(&mut f.passphrase)
                        .password(true)
                        .hint_text("パスフレーズ")
                        .desired_width(360.0),
                );
                r.widget_info(|| {
                    egui::WidgetInfo::labeled(egui::Role::TextInput, true, "パスフレーズ")
                });
                if r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                    submit = true;
                }
                ui.add_space(8.0);
                if ui
                    .add_enabled(
                        !f.busy,
                        egui::Button::new("開く").min_size(egui::vec2(200.0, 48.0)),
                    )
                    .clicked()
                {
                    submit = true;
                }
                if submit && !f.passphrase.is_empty() && !f.busy {
                    f.busy = true;
                    f.error = None;
                    let passphrase = SecretString::from(std::mem::take(&mut f.passphrase));
                    self.send(Command::Unlock { passphrase });
                }
                let f = &mut self.unlock;
                ui.add_space(24.0);
                if ui
                    .link("パスフレーズを忘れた場合（事務所の復旧用鍵で再設定）")
                    .clicked()
                {
                    f.recovery = true;
                    f.error = None;
                }
            } else {
                ui.label("事務所の復旧用鍵ファイルを使って新しいパスフレーズを設定します。");
                ui.add(
                    egui::TextEdit::singleline(&mut f.identity_path)
                        .hint_text("復旧用鍵ファイルの場所（例: /media/usb/office-recovery.txt）")
                        .desired_width(520.0),
                );
                ui.add(
                    egui::TextEdit::singleline(&mut f.new_passphrase)
                        .password(true)
                        .hint_text("新しいパスフレーズ")
                        .desired_width(360.0),
                );
                ui.add(
                    egui::TextEdit::singleline(&mut f.new_passphrase2)
                        .password(true)
                        .hint_text("新しいパスフレーズ（確認）")
                        .desired_width(360.0),
                );
                ui.add_space(8.0);
                if ui
                    .add_enabled(
                        !f.busy,
                        egui::Button::new("再設定して開く").min_size(egui::vec2(200.0, 48.0)),
                    )
                    .clicked()
                {
                    if f.new_passphrase.is_empty() || f.new_passphrase != f.new_passphrase2 {
                        f.error = Some("新しいパスフレーズが空か、確認と一致しません。".to_owned());
                    } else {
                        f.busy = true;
                        f.error = None;
                        let cmd = Command::Recover {
                            identity_file: std::path::PathBuf::from(f.identity_path.trim()),
                            new_passphrase: SecretString::from(std::mem::take(
                                &mut f.new_passphrase,
                            )),
                        };
                        f.new_passphrase2.clear();
                        self.send(cmd);
                    }
                }
                let f = &mut self.unlock;
                ui.add_space(16.0);
                if ui.link("パスフレーズで開く画面に戻る").clicked() {
                    f.recovery = false;
                    f.error = None;
                }
            }
            let f = &self.unlock;
            if f.busy {
                ui.add_space(12.0);
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("開いています…");
                });
            }
            if let Some(e) = &f.error {
                ui.add_space(12.0);
                ui.colored_label(ui.visuals().error_fg_color, e.as_str());
            }
            ui.add_space(32.0);
            ui.collapsing(
                "表示設定（画面の明るさ・文字の大きさ）",
                |ui| {
                    self.display_controls(ui);
                },
            );
        });
    }
}
