//! 本人確認・事業所登録: the reader and card state, a PIN pad that shows the tries left,
//! the lockout guard, the verification result in plain Japanese (including that
//! revocation was not checked offline), consent capture and the person's registrations.
//! Every card exchange runs on the worker; this screen only queues commands.

use musubi_engine::card::PinStatus;
use musubi_engine::card::register::{Consent, ConsentMethod, SharingState};
use musubi_engine::ids::DocId;
use serde_json::Value;
use zeroize::Zeroizing;

use super::app::{AppUi, CONSENT_SCOPES, CardUi};
use super::command::{CardOutcome, CardState, Command, RegistrationRow, ResultLine};

const GOOD: egui::Color32 = egui::Color32::from_rgb(0x1a, 0x80, 0x3a);
const CAUTION: egui::Color32 = egui::Color32::from_rgb(0xb0, 0x50, 0x00);

/// Tries left as shown beside a PIN.
fn tries_label(s: Option<PinStatus>) -> (String, Option<egui::Color32>) {
    match s {
        None => ("残り回数は未確認".to_owned(), None),
        Some(PinStatus::Verified) => ("確認済み".to_owned(), Some(GOOD)),
        Some(PinStatus::Locked | PinStatus::Remaining(0)) => {
            ("ロック中".to_owned(), Some(egui::Color32::RED))
        }
        Some(PinStatus::Remaining(1)) => ("残り1回".to_owned(), Some(CAUTION)),
        Some(PinStatus::Remaining(n)) => (format!("残り{n}回"), None),
    }
}

fn locked(s: Option<PinStatus>) -> bool {
    matches!(s, Some(PinStatus::Locked | PinStatus::Remaining(0)))
}

fn last_try(s: Option<PinStatus>) -> bool {
    s == Some(PinStatus::Remaining(1))
}

/// The person's name from a loaded subject or survey document.
fn person_name(doc: Option<&Value>) -> Option<String> {
    let doc = doc?;
    doc.pointer("/person/name")
        .or_else(|| doc.pointer("/subject/name"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn result_grid(ui: &mut egui::Ui, lines: &[ResultLine]) {
    egui::Grid::new("card-result")
        .num_columns(2)
        .spacing([16.0, 6.0])
        .show(ui, |ui| {
            for (label, value, good) in lines {
                ui.label(label.as_str());
                let color = if *good { GOOD } else { CAUTION };
                ui.add(egui::Label::new(egui::RichText::new(value.as_str()).color(color)).wrap());
                ui.end_row();
            }
        });
}

impl AppUi {
    pub(super) fn card_screen(&mut self, ui: &mut egui::Ui, id: DocId) {
        let name = person_name(self.docs.get(&id));
        if self.card.consented_by.is_empty()
            && let Some(n) = &name
        {
            self.card.consented_by = n.clone();
        }
        ui.horizontal(|ui| {
            ui.heading("本人確認・事業所登録");
            ui.add_space(16.0);
            ui.label(
                egui::RichText::new(name.clone().unwrap_or_else(|| "（氏名未入力）".to_owned()))
                    .size(22.0)
                    .strong(),
            );
        });
        ui.weak("マイナンバーカードの利用者証明用電子証明書で、この端末だけで本人確認をします。個人番号（12桁）は読み取りません。");
        ui.separator();
        let mut commands = Vec::new();
        ui.columns(2, |cols| {
            egui::ScrollArea::vertical()
                .id_salt("card-left")
                .show(&mut cols[0], |ui| {
                    reader_section(ui, &self.card, &mut commands);
                    ui.add_space(8.0);
                    pin_section(ui, &mut self.card, id, &mut commands);
                });
            egui::ScrollArea::vertical()
                .id_salt("card-right")
                .show(&mut cols[1], |ui| {
                    result_section(ui, &mut self.card, &mut commands);
                    ui.add_space(8.0);
                    registrations_section(ui, &mut self.card, &mut commands);
                });
        });
        let refresh = commands.iter().any(|c| {
            matches!(
                c,
                Command::RecordConsent { .. } | Command::WithdrawConsent { .. }
            )
        });
        for c in commands {
            self.send(c);
        }
        if refresh {
            // Handled in order: the list comes back after the write.
            self.send(Command::Registrations(self.card.target.unwrap_or(id)));
        }
    }
}

fn reader_section(ui: &mut egui::Ui, card: &CardUi, commands: &mut Vec<Command>) {
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.set_width(ui.available_width());
        ui.horizontal(|ui| {
            ui.strong("カードリーダー");
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if ui
                    .add_enabled(
                        !card.running,
                        egui::Button::new("カードを読み取る").min_size(egui::vec2(180.0, 40.0)),
                    )
                    .clicked()
                {
                    commands.push(Command::CardStatus);
                }
            });
        });
        match &card.state {
            None => {
                ui.label("カードを確認しています…");
            }
            Some(CardState {
                error: Some(e),
                reader,
                ..
            }) => {
                if let Some(r) = reader {
                    ui.weak(r.as_str());
                }
                ui.colored_label(ui.visuals().error_fg_color, e.as_str());
                ui.label("カードをリーダーに置いてから「カードを読み取る」を押してください。");
            }
            Some(s) => {
                ui.label(format!(
                    "{} ・ マイナンバーカードを確認しました",
                    s.reader.clone().unwrap_or_default()
                ));
                ui.weak("残り回数の確認では、暗証番号の試行回数は減りません。");
            }
        }
    });
}

fn pin_row(
    ui: &mut egui::Ui,
    label: &str,
    pin: &str,
    tries: Option<PinStatus>,
    selected: bool,
) -> bool {
    let dots: String = (0..4)
        .map(|i| {
            if i < pin.chars().count() {
                '●'
            } else {
                '○'
            }
        })
        .collect();
    let (t, color) = tries_label(tries);
    let mut clicked = false;
    ui.horizontal(|ui| {
        clicked = ui
            .add(
                egui::Button::selectable(selected, format!("{label}  {dots}"))
                    .min_size(egui::vec2(360.0, 44.0)),
            )
            .clicked();
        match color {
            Some(c) => ui.colored_label(c, t),
            None => ui.label(t),
        };
    });
    clicked
}

fn pin_section(ui: &mut egui::Ui, card: &mut CardUi, id: DocId, commands: &mut Vec<Command>) {
    let state = card.state.clone().unwrap_or_default();
    let ready = card.state.is_some() && state.error.is_none();
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.set_width(ui.available_width());
        ui.strong("暗証番号（本人に入力してもらいます）");
        if pin_row(
            ui,
            "利用者証明用暗証番号",
            &card.auth_pin,
            state.auth,
            !card.pad_on_support,
        ) {
            card.pad_on_support = false;
        }
        ui.checkbox(
            &mut card.compare_basic4,
            "氏名・生年月日を券面と照合する（券面事項入力補助用暗証番号）",
        );
        if card.compare_basic4 {
            if pin_row(
                ui,
                "券面事項入力補助用暗証番号",
                &card.support_pin,
                state.support,
                card.pad_on_support,
            ) {
                card.pad_on_support = true;
            }
        } else {
            card.pad_on_support = false;
        }

        // The lockout guard.
        let needed = [
            Some(state.auth),
            card.compare_basic4.then_some(state.support),
        ];
        let any_locked = needed.iter().flatten().any(|s| locked(*s));
        let any_last = needed.iter().flatten().any(|s| last_try(*s));
        if any_locked {
            ui.colored_label(
                egui::Color32::RED,
                "暗証番号がロックされています。このカードでは本人確認できません。暗証番号の再設定は、お住まいの市区町村の窓口で行ってください。",
            );
        } else if any_last {
            ui.colored_label(
                CAUTION,
                "残り1回です。間違えるとカードがロックされ、市区町村の窓口での再設定が必要になります。",
            );
            ui.checkbox(
                &mut card.confirm_last_try,
                "本人が暗証番号を確かめました。残り1回で入力します。",
            );
        }

        // The pad.
        let target = if card.pad_on_support {
            &mut card.support_pin
        } else {
            &mut card.auth_pin
        };
        let keys = [
            ["1", "2", "3"],
            ["4", "5", "6"],
            ["7", "8", "9"],
            ["訂正", "0", "消去"],
        ];
        egui::Grid::new("pin-pad")
            .spacing([8.0, 8.0])
            .show(ui, |ui| {
                for row in keys {
                    for k in row {
                        let enabled = !card.running && !any_locked;
                        if ui
                            .add_enabled(
                                enabled,
                                egui::Button::new(egui::RichText::new(k).size(22.0))
                                    .min_size(egui::vec2(96.0, 48.0)),
                            )
                            .clicked()
                        {
                            match k {
                                "訂正" => {
                                    target.pop();
                                }
                                "消去" => target.clear(),
                                digit => {
                                    if target.chars().count() < 4 {
                                        target.push_str(digit);
                                    }
                                }
                            }
                        }
                    }
                    ui.end_row();
                }
            });
        // Move to the second PIN once the first has 4 digits.
        if !card.pad_on_support && card.compare_basic4 && card.auth_pin.len() == 4
            && card.support_pin.is_empty()
        {
            card.pad_on_support = true;
        }

        let pins_ok = card.auth_pin.len() == 4 && (!card.compare_basic4 || card.support_pin.len() == 4);
        let can = ready
            && !card.running
            && pins_ok
            && !any_locked
            && (!any_last || card.confirm_last_try);
        ui.add_space(6.0);
        if card.running {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("カードと通信しています。カードを動かさないでください…");
            });
        }
        if ui
            .add_enabled(
                can,
                egui::Button::new(egui::RichText::new("本人確認を実行").size(20.0))
                    .min_size(egui::vec2(240.0, 52.0)),
            )
            .clicked()
        {
            let auth_pin = std::mem::replace(&mut card.auth_pin, Zeroizing::new(String::new()));
            let support = std::mem::replace(&mut card.support_pin, Zeroizing::new(String::new()));
            card.running = true;
            card.result = None;
            card.pad_on_support = false;
            commands.push(Command::CardVerify {
                subject: card.target.unwrap_or(id),
                auth_pin,
                support_pin: card.compare_basic4.then_some(support),
                allow_last_try: card.confirm_last_try,
            });
        }
    });
}

fn result_section(ui: &mut egui::Ui, card: &mut CardUi, commands: &mut Vec<Command>) {
    let Some(result) = card.result.clone() else {
        return;
    };
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.set_width(ui.available_width());
        match &result {
            CardOutcome::Registered { lines, .. } => {
                ui.label(
                    egui::RichText::new("本人確認ができました。事業所の登録を作成しました。")
                        .color(GOOD)
                        .size(20.0),
                );
                result_grid(ui, lines);
                ui.weak("本人の同意を記録すると登録が有効になり、同期でこの利用者の情報を共有できます。");
            }
            CardOutcome::Mismatch { fields, lines } => {
                ui.label(
                    egui::RichText::new(format!(
                        "カードは確認できましたが、{}が利用者情報と一致しません。",
                        fields.join("・")
                    ))
                    .color(CAUTION)
                    .size(20.0),
                );
                result_grid(ui, lines);
                ui.label("旧姓・外字・入力誤りなどを本人と確認してください。まだ何も保存していません。");
                ui.horizontal(|ui| {
                    if ui
                        .add(egui::Button::new("職員が確認して登録する").min_size(egui::vec2(220.0, 44.0)))
                        .clicked()
                    {
                        commands.push(Command::CardDecideMismatch(true));
                    }
                    if ui
                        .add(egui::Button::new("登録しない").min_size(egui::vec2(140.0, 44.0)))
                        .clicked()
                    {
                        commands.push(Command::CardDecideMismatch(false));
                        card.result = None;
                    }
                });
            }
            CardOutcome::Failed { message } => {
                ui.label(
                    egui::RichText::new("本人確認ができませんでした。何も保存していません。")
                        .color(ui.visuals().error_fg_color)
                        .size(20.0),
                );
                ui.label(message.as_str());
            }
        }
    });
}

fn registration_line(r: &RegistrationRow) -> String {
    // Stored in UTC (RFC 3339); shown in the tablet's local time like every other time.
    let at = match chrono::DateTime::parse_from_rfc3339(&r.verified_at) {
        Ok(t) => super::app::format_ms(t.timestamp_millis()),
        Err(_) => r.verified_at.clone(),
    };
    let mut s = format!("{} ・ 確認 {at}", r.state.label());
    if let Some(staff) = &r.staff {
        s.push_str(&format!(" ・ 確認者 {staff}"));
    }
    s
}

fn registrations_section(ui: &mut egui::Ui, card: &mut CardUi, commands: &mut Vec<Command>) {
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.set_width(ui.available_width());
        ui.strong("この利用者の事業所登録");
        if card.registrations.is_empty() {
            ui.weak("まだ登録はありません。");
            return;
        }
        let rows = card.registrations.clone();
        for (i, r) in rows.iter().enumerate() {
            let color = match r.state {
                SharingState::Valid => GOOD,
                SharingState::NoConsent | SharingState::NeedsReverification => CAUTION,
                _ => ui.visuals().weak_text_color(),
            };
            ui.colored_label(color, registration_line(r));
            if r.state == SharingState::NeedsReverification {
                ui.label(
                    "カードの署名による証跡をこの端末で確認できないため、この登録は共有に使えません。カードでもう一度本人確認をしてください。",
                );
            }
            ui.weak(format!(
                "証明書の有効期限 {} ・ 失効確認は行っていません",
                r.not_after.get(..10).unwrap_or(&r.not_after)
            ));
            if let Some((who, date, method)) = &r.consent {
                ui.label(format!("同意: {who}（{date}・{method}）"));
            }
            // Consent is taken on the newest registration only.
            if i == 0 && r.state == SharingState::NoConsent {
                consent_form(ui, card, r.id, commands);
            }
            if i == 0 && r.state == SharingState::Valid {
                ui.horizontal(|ui| {
                    ui.add(
                        egui::TextEdit::singleline(&mut card.withdraw_reason)
                            .hint_text("撤回の理由（任意）")
                            .desired_width(260.0),
                    );
                    if ui.button("同意を撤回").clicked() {
                        commands.push(Command::WithdrawConsent {
                            registration: r.id,
                            reason: std::mem::take(&mut card.withdraw_reason),
                        });
                    }
                });
            }
            ui.separator();
        }
    });
}

fn consent_form(
    ui: &mut egui::Ui,
    card: &mut CardUi,
    registration: DocId,
    commands: &mut Vec<Command>,
) {
    ui.add_space(4.0);
    ui.strong("同意の記録");
    egui::Grid::new("consent-form")
        .num_columns(2)
        .spacing([12.0, 8.0])
        .show(ui, |ui| {
            ui.label("同意者");
            let r = ui.add(egui::TextEdit::singleline(&mut card.consented_by).desired_width(260.0));
            r.widget_info(|| egui::WidgetInfo::labeled(egui::Role::TextInput, true, "同意者"));
            ui.end_row();
            ui.label("本人との関係");
            let r = ui.add(egui::TextEdit::singleline(&mut card.relationship).desired_width(260.0));
            r.widget_info(|| {
                egui::WidgetInfo::labeled(egui::Role::TextInput, true, "本人との関係")
            });
            ui.end_row();
            ui.label("同意の範囲");
            ui.vertical(|ui| {
                for (i, scope) in CONSENT_SCOPES.iter().enumerate() {
                    ui.checkbox(&mut card.scope[i], *scope);
                }
            });
            ui.end_row();
            ui.label("同意の方法");
            ui.horizontal(|ui| {
                for m in ConsentMethod::ALL {
                    if ui
                        .add(
                            egui::Button::selectable(card.method == Some(m), m.label())
                                .min_size(egui::vec2(96.0, 40.0)),
                        )
                        .clicked()
                    {
                        card.method = Some(m);
                    }
                }
            });
            ui.end_row();
        });
    if ui
        .add(egui::Button::new("同意を記録").min_size(egui::vec2(200.0, 44.0)))
        .clicked()
    {
        let scope: Vec<String> = CONSENT_SCOPES
            .iter()
            .zip(card.scope)
            .filter(|(_, on)| *on)
            .map(|(s, _)| (*s).to_owned())
            .collect();
        card.consent_error = match (
            card.consented_by.trim().is_empty(),
            scope.is_empty(),
            card.method,
        ) {
            (true, _, _) => Some("同意者を入力してください。".to_owned()),
            (_, true, _) => Some("同意の範囲を1つ以上選んでください。".to_owned()),
            (_, _, None) => Some("同意の方法を選んでください。".to_owned()),
            (false, false, Some(method)) => {
                commands.push(Command::RecordConsent {
                    registration,
                    consent: Consent {
                        consented_by: card.consented_by.trim().to_owned(),
                        relationship: card.relationship.trim().to_owned(),
                        scope,
                        date: chrono::Local::now().format("%Y-%m-%d").to_string(),
                        method,
                    },
                });
                None
            }
        };
    }
    if let Some(e) = &card.consent_error {
        ui.colored_label(ui.visuals().error_fg_color, e.as_str());
    }
}
