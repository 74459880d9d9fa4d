//! 要介護認定の進捗: the cases of this office as a board, one column per phase, each
//! case with its application date, days elapsed and the 30-day decision limit
//! (介護保険法 第27条第11項). Cases past the limit without a decision or a 延期通知 are
//! highlighted, as are 延期通知 past their 処理見込期間. A 更新申請 whose applicant agreed to
//! omit the 延期通知 is not highlighted until its current 認定有効期間 ends.

use musubi_engine::care::case::{self, CaseRow};
use musubi_engine::ids::DocId;

use super::app::{AppUi, CaseEditUi};
use super::command::Command;
use super::office_screen::{big_button, labeled_field};
use crate::office::CaseException;

/// The phases of `codes/case-phase.json`, in order (key, column title).
const PHASES: [(&str, &str); 6] = [
    ("application", "申請受付"),
    ("survey", "認定調査"),
    ("opinion", "主治医意見書"),
    ("primary_judgement", "一次判定"),
    ("committee", "介護認定審査会"),
    ("decision", "認定・結果通知"),
];

const LATE: egui::Color32 = egui::Color32::from_rgb(0xc0, 0x20, 0x20);

/// Past the limit (no decision, no 延期通知) or past the 延期通知's 処理見込期間.
pub fn is_late(r: &CaseRow) -> bool {
    r.deadline
        .as_ref()
        .is_some_and(|d| d.overdue || d.postponement_overdue)
}

/// One case; true when its 記録 button was tapped.
fn case_card(ui: &mut egui::Ui, r: &CaseRow) -> bool {
    let mut record = false;
    let late = is_late(r);
    let mut frame = egui::Frame::group(ui.style());
    if late {
        frame = frame
            .stroke(egui::Stroke::new(2.0, LATE))
            .fill(egui::Color32::from_rgb(0xfd, 0xec, 0xec));
    }
    frame.show(ui, |ui| {
        ui.set_width(ui.available_width());
        // ui.columns lays out justified; wrapped dates must not be spread letter by letter.
        ui.with_layout(egui::Layout::top_down(egui::Align::Min), |ui| {
            if late {
                // Dark text on the pale red fill, in either theme.
                let dark = egui::Color32::from_gray(0x20);
                ui.visuals_mut().override_text_color = Some(dark);
                ui.visuals_mut().widgets.active.fg_stroke.color = dark;
            }
            card_body(ui, r);
            let who = r.name.as_deref().unwrap_or("氏名なし");
            let label = format!("{who}の進捗を記録");
            let b = ui.add(egui::Button::new("記録…").min_size(egui::vec2(88.0, 44.0)));
            b.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &label));
            record = b.clicked();
        });
    });
    record
}

fn card_body(ui: &mut egui::Ui, r: &CaseRow) {
    ui.strong(
        r.name
            .clone()
            .unwrap_or_else(|| "（氏名はこの端末にありません）".to_owned()),
    );
    let kind = r.application_kind_label.clone().unwrap_or_default();
    ui.label(format!(
        "申請日 {} {kind}",
        r.application_date.clone().unwrap_or_else(|| "—".to_owned())
    ));
    if let Some(d) = &r.deadline {
        if d.overdue {
            ui.colored_label(
                LATE,
                format!("30日超過（{}日経過・期限 {}）", d.days_elapsed, d.due),
            );
        } else if d.postponement_overdue {
            ui.colored_label(
                LATE,
                format!(
                    "処理見込期間を超過（延期通知 {}）",
                    d.postponed_until.clone().unwrap_or_default()
                ),
            );
        } else if let Some(until) = &d.postponed_until {
            ui.label(format!("延期通知済み（処理見込 {until}）"));
        } else if let (Some(until), None) = (&d.waived_until, &r.decision_date) {
            // 更新申請 with the applicant's agreement: no 延期通知 while the decision still
            // falls within the current validity.
            ui.label(format!(
                "延期通知省略（同意あり・現在の有効期間 {until} まで）{}日経過",
                d.days_elapsed
            ));
        } else if r.decision_date.is_none() {
            ui.label(format!("{}日経過・期限 {}", d.days_elapsed, d.due));
        }
    }
    if let Some(c) = &r.insured_category {
        match &r.specified_disease {
            Some(d) => ui.weak(format!("{c}・特定疾病 {d}")),
            None => ui.weak(c.as_str()),
        };
    }
    if let Some(v) = &r.survey_visited {
        ui.weak(format!("訪問調査日 {v}"));
    }
    // The 主治医 and where the 主治医意見書 stands.
    let opinion = match (&r.opinion_requested, &r.opinion_received) {
        (_, Some(d)) => Some(format!("意見書入手 {d}")),
        (Some(d), None) => Some(format!("意見書依頼 {d}・未入手")),
        (None, None) => None,
    };
    match (&r.physician, opinion) {
        (Some(p), Some(o)) => {
            ui.weak(format!("主治医 {p}　{o}"));
        }
        (Some(p), None) => {
            ui.weak(format!("主治医 {p}"));
        }
        (None, Some(o)) => {
            ui.weak(o);
        }
        (None, None) => {}
    }
    if let Some(c) = &r.committee_date {
        let what = if r.committee_date_is_scheduled {
            "審査会予定"
        } else {
            "審査会"
        };
        ui.weak(format!("{what} {c}"));
    }
    if let Some(d) = &r.decision_date {
        ui.label(format!(
            "認定日 {d} {}",
            r.secondary_result_label.clone().unwrap_or_default()
        ));
    }
    if r.renewal_due {
        ui.colored_label(
            egui::Color32::from_rgb(0xb0, 0x50, 0x00),
            format!(
                "更新申請の時期（有効期間 {} まで）",
                r.valid_to.clone().unwrap_or_default()
            ),
        );
    }
    for e in &r.exceptions {
        ui.weak(e.as_str());
    }
}

impl AppUi {
    pub(super) fn cases_screen(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("要介護認定の進捗");
            if let Some(rows) = &self.cases {
                let late = rows.iter().filter(|r| is_late(r)).count();
                ui.add_space(16.0);
                ui.label(format!("申請 {} 件", rows.len()));
                if late > 0 {
                    ui.colored_label(LATE, format!("・ 期限超過 {late} 件"));
                }
            }
        });
        ui.weak("申請日から30日以内に認定するのが原則です（介護保険法 第27条第11項）。延期通知のない超過は赤で示します。更新申請で、現在の認定有効期間内に認定され、延期通知の省略に申請者が同意している場合は、その期間の終わりまで赤にしません。");
        ui.separator();
        let Some(rows) = &self.cases else {
            ui.label("読み込んでいます…");
            return;
        };
        if rows.is_empty() {
            ui.label("この端末には要介護認定の申請（case）がありません。musubi case new で登録できます。");
            return;
        }
        let mut open = None;
        let editing = self.case_edit.id.and_then(|id| {
            let id = id.to_string();
            rows.iter().find(|r| r.id == id).cloned()
        });
        if let Some(r) = &editing {
            self.case_record_panel(ui, r);
            ui.separator();
        }
        let Some(rows) = &self.cases else { return };
        ui.columns(PHASES.len(), |cols| {
            for (col, (key, title)) in cols.iter_mut().zip(PHASES) {
                let here: Vec<&CaseRow> = rows.iter().filter(|r| r.phase == key).collect();
                col.strong(format!("{title}（{}）", here.len()));
                egui::ScrollArea::vertical().id_salt(key).show(col, |ui| {
                    for r in here {
                        if case_card(ui, r) {
                            open = r.id.parse::<DocId>().ok();
                        }
                        ui.add_space(4.0);
                    }
                });
            }
        });
        if let Some(id) = open {
            self.open_case_record(id);
        }
    }

    /// Opens the record panel for a case, with today's date ready to change.
    pub(super) fn open_case_record(&mut self, id: DocId) {
        let today = chrono::Local::now().format("%Y-%m-%d").to_string();
        self.case_edit = CaseEditUi {
            id: Some(id),
            value: today.clone(),
            exception_date: today,
            ..CaseEditUi::default()
        };
    }

    /// 進捗の記録 and 例外の記録 of one case, side by side; the board reloads after each.
    fn case_record_panel(&mut self, ui: &mut egui::Ui, r: &CaseRow) {
        let Some(id) = self.case_edit.id else { return };
        let mut send = None;
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.strong(format!(
                    "記録：{}（申請日 {}・{}）",
                    r.name.as_deref().unwrap_or("氏名なし"),
                    r.application_date.as_deref().unwrap_or("—"),
                    r.phase_label
                ));
                if ui
                    .add(egui::Button::new("閉じる").min_size(egui::vec2(88.0, 44.0)))
                    .clicked()
                {
                    self.case_edit = CaseEditUi::default();
                }
            });
            let e = &mut self.case_edit;
            match &e.result {
                Some(Ok(m)) => {
                    ui.colored_label(egui::Color32::from_rgb(0x1a, 0x80, 0x3a), m.as_str());
                }
                Some(Err(m)) => {
                    ui.colored_label(ui.visuals().error_fg_color, format!("記録できません：{m}"));
                }
                None => {}
            }
            ui.columns(2, |cols| {
                let ui = &mut cols[0];
                ui.strong("進捗の記録");
                let (field, title, kind) =
                    case::PHASE_FIELDS[e.field.min(case::PHASE_FIELDS.len() - 1)];
                ui.horizontal(|ui| {
                    ui.label("項目");
                    egui::ComboBox::from_id_salt(("case-field", id))
                        .selected_text(title)
                        .width(240.0)
                        .show_ui(ui, |ui| {
                            for (n, (_, t, _)) in case::PHASE_FIELDS.iter().enumerate() {
                                ui.selectable_value(&mut e.field, n, *t);
                            }
                        })
                        .response
                        .widget_info(|| {
                            egui::WidgetInfo::labeled(egui::Role::ComboBox, true, "進捗の項目")
                        });
                });
                let hint = match kind {
                    case::FieldKind::Date => "日付（YYYY-MM-DD）",
                    case::FieldKind::CareLevel => "要介護状態区分コード（例 21）",
                    case::FieldKind::Minutes => "分",
                    case::FieldKind::Months => "月数",
                    case::FieldKind::Text => "内容",
                };
                labeled_field(ui, hint, &mut e.value, false, 200.0);
                if big_button(ui, !e.value.trim().is_empty(), "進捗を記録する") {
                    send = Some(Command::CaseAdvance {
                        id,
                        field: field.to_owned(),
                        value: e.value.trim().to_owned(),
                    });
                }
                let ui = &mut cols[1];
                ui.strong("例外の記録（延期通知・取下げ・却下・再調査）");
                ui.horizontal_wrapped(|ui| {
                    for (n, (_, label)) in case::EXCEPTIONS.iter().enumerate() {
                        if ui
                            .add(
                                egui::Button::selectable(e.exception == n, *label)
                                    .min_size(egui::vec2(88.0, 44.0)),
                            )
                            .clicked()
                        {
                            e.exception = n;
                        }
                    }
                });
                let (kind, _) = case::EXCEPTIONS[e.exception.min(case::EXCEPTIONS.len() - 1)];
                labeled_field(ui, "日付", &mut e.exception_date, false, 160.0);
                if kind == "postponement" {
                    labeled_field(ui, "処理見込期間", &mut e.expected_by, false, 160.0);
                }
                labeled_field(ui, "理由", &mut e.reason, false, 280.0);
                if big_button(ui, !e.exception_date.trim().is_empty(), "例外を記録する") {
                    let opt = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
                    send = Some(Command::CaseException {
                        id,
                        exception: Box::new(CaseException {
                            kind: kind.to_owned(),
                            date: e.exception_date.trim().to_owned(),
                            expected_by: if kind == "postponement" {
                                opt(&e.expected_by)
                            } else {
                                None
                            },
                            reason: opt(&e.reason),
                        }),
                    });
                }
            });
        });
        if let Some(c) = send {
            self.case_edit.result = None;
            self.send(c);
        }
    }
}
