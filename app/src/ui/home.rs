//! Home: the visit list (people with their surveys and visit records), and the form for a
//! new person with a draft survey.

use serde_json::json;

use super::app::{AppUi, Screen, format_ms};
use super::command::{Command, Status};

impl AppUi {
    pub(super) fn home_screen(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("訪問一覧");
            ui.add_space(24.0);
            if ui
                .add(
                    egui::Button::new("＋ 新しい調査対象者と認定調査票")
                        .min_size(egui::vec2(0.0, 44.0)),
                )
                .clicked()
            {
                self.screen = Screen::NewPerson;
            }
            ui.add_space(12.0);
            let last = self
                .sync
                .last_success_ms
                .map_or("まだ同期していません".to_owned(), |ms| {
                    format!("最終同期 {}", format_ms(ms))
                });
            ui.label(format!("{last} ・ 未送信の文書 {}", self.sync.pending));
        });
        ui.separator();
        if self.people.is_empty() {
            ui.add_space(24.0);
            ui.label("この端末にはまだ文書がありません。「＋ 新しい調査対象者と認定調査票」から始めてください。");
            return;
        }
        let mut go: Option<Screen> = None;
        let mut new_visit: Option<musubi_engine::ids::DocId> = None;
        egui::ScrollArea::vertical().show(ui, |ui| {
            for (pi, person) in self.people.iter().enumerate() {
                egui::Frame::group(ui.style()).show(ui, |ui| {
                    ui.set_width(ui.available_width());
                    ui.horizontal(|ui| {
                        ui.label(egui::RichText::new(&person.name).size(22.0).strong());
                        if !person.kana.is_empty() {
                            ui.weak(&person.kana);
                        }
                        // 本人確認 works from the subject document, else from a survey.
                        let card_doc = person.subject.or_else(|| {
                            person
                                .docs
                                .iter()
                                .find(|d| d.kind == "survey")
                                .map(|d| d.id)
                        });
                        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                            if let Some(subject) = person.subject
                                && ui
                                    .add(egui::Button::new("＋ 訪問看護記録"))
                                    .on_hover_text("今日の日付で訪問看護記録書Ⅱを作成します")
                                    .clicked()
                            {
                                new_visit = Some(subject);
                            }
                            if let Some(doc) = card_doc
                                && ui
                                    .add(egui::Button::new("本人確認・登録"))
                                    .on_hover_text(
                                        "マイナンバーカードで本人確認をし、事業所を登録します",
                                    )
                                    .clicked()
                            {
                                go = Some(Screen::Card(doc));
                            }
                        });
                    });
                    if person.docs.is_empty() {
                        ui.weak("文書はまだありません。");
                    }
                    egui::Grid::new(("docs", pi))
                        .num_columns(5)
                        .spacing([18.0, 6.0])
                        .show(ui, |ui| {
                            for d in &person.docs {
                                let (kind, screen) = match d.kind.as_str() {
                                    "survey" => ("認定調査票", Screen::Survey(d.id)),
                                    _ => ("訪問看護記録書Ⅱ", Screen::Visit(d.id)),
                                };
                                if ui
                                    .add(egui::Button::new(kind).min_size(egui::vec2(180.0, 40.0)))
                                    .clicked()
                                {
                                    go = Some(screen);
                                }
                                ui.label(d.date.clone().unwrap_or_else(|| "日付未入力".to_owned()));
                                match (d.status, d.answered) {
                                    (Some(s), Some(n)) => {
                                        let color = match s {
                                            Status::Draft => ui.visuals().warn_fg_color,
                                            _ => egui::Color32::from_rgb(0x1a, 0x80, 0x3a),
                                        };
                                        ui.colored_label(
                                            color,
                                            format!("{} ・ 回答 {n}/74", s.label()),
                                        );
                                    }
                                    _ => {
                                        ui.label("");
                                    }
                                }
                                ui.weak(format!("更新 {}", format_ms(d.updated_at)));
                                if d.conflicts > 0 {
                                    if ui
                                        .add(egui::Button::new(
                                            egui::RichText::new(format!("競合 {} 件", d.conflicts))
                                                .color(ui.visuals().error_fg_color),
                                        ))
                                        .clicked()
                                    {
                                        go = Some(Screen::Reconcile(Some(d.id)));
                                    }
                                } else {
                                    ui.label("");
                                }
                                ui.end_row();
                            }
                        });
                });
                ui.add_space(6.0);
            }
        });
        if let Some(subject) = new_visit {
            let date = self.visit_date.clone();
            self.send(Command::CreateVisit { subject, date });
        }
        if let Some(s) = go {
            self.go(s);
        }
    }

    pub(super) fn new_person_screen(&mut self, ui: &mut egui::Ui) {
        ui.heading("新しい調査対象者");
        ui.label("調査対象者を登録し、この人の認定調査票（作成中）を作ります。架空の人で試す場合も、番号は形式どおりに入力してください。");
        ui.add_space(8.0);
        let f = &mut self.new_person;
        egui::Grid::new("new-person")
            .num_columns(2)
            .spacing([16.0, 10.0])
            .show(ui, |ui| {
                let row = |ui: &mut egui::Ui, label: &str, value: &mut String, hint: &str| {
                    ui.label(label);
                    let r = ui.add(
                        egui::TextEdit::singleline(value)
                            .hint_text(hint)
                            .desired_width(420.0),
                    );
                    let owned = label.to_owned();
                    r.widget_info(move || {
                        egui::WidgetInfo::labeled(egui::Role::TextInput, true, owned.clone())
                    });
                    ui.end_row();
                };
                row(ui, "氏名", &mut f.name, "例: 架空 花子");
                row(ui, "ふりがな", &mut f.kana, "例: かくう はなこ");
                row(ui, "保険者番号", &mut f.insurer, "6桁（検証番号つき）");
                row(ui, "被保険者番号", &mut f.insured, "10桁");
                row(ui, "生年月日", &mut f.birth, "YYYY-MM-DD");
                ui.label("性別");
                ui.horizontal(|ui| {
                    for (code, label) in [(1, "男"), (2, "女")] {
                        if ui
                            .add(
                                egui::Button::selectable(f.sex == Some(code), label)
                                    .min_size(egui::vec2(80.0, 44.0)),
                            )
                            .clicked()
                        {
                            f.sex = Some(code);
                        }
                    }
                });
                ui.end_row();
                row(
                    ui,
                    "現住所",
                    &mut f.address,
                    "例: 東京都千代田区架空町1-2-3",
                );
            });
        ui.add_space(12.0);
        let mut create = false;
        ui.horizontal(|ui| {
            if ui
                .add(egui::Button::new("登録して調査票を開く").min_size(egui::vec2(240.0, 48.0)))
                .clicked()
            {
                create = true;
            }
            if ui
                .add(egui::Button::new("やめる").min_size(egui::vec2(120.0, 48.0)))
                .clicked()
            {
                self.screen = Screen::Home;
            }
        });
        let f = &mut self.new_person;
        if create {
            let mut person = json!({
                "insurer_number": f.insurer.trim(),
                "insured_number": f.insured.trim(),
                "name": f.name.trim(),
                "name_kana": f.kana.trim(),
                "birth_date": f.birth.trim(),
                "address": f.address.trim(),
            });
            if let (Some(sex), Some(map)) = (f.sex, person.as_object_mut()) {
                map.insert("sex".to_owned(), json!(sex));
            }
            f.error = None;
            self.send(Command::CreateSurvey { person });
        }
        if let Some(e) = &self.new_person.error {
            ui.add_space(8.0);
            ui.colored_label(ui.visuals().error_fg_color, e.as_str());
        }
    }
}
