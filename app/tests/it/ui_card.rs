//! The card screen (本人確認・事業所登録) and the 要介護認定 progress board, driven through
//! the UI with egui_kittest on real SQLCipher stores.
//!
//! The card is the in-process virtual card of `musubi-vcard` (it really keeps PIN
//! counters and really signs with its test key; the app checks the chain against the
//! test root given as a trust anchor), or a scripted transport for faults such as a card
//! pulled out mid-way. The real PC/SC path (pcscd + vpcd) is covered by `card.rs`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use musubi_app::ui::{AppUi, CardAccess, CardSlot, Screen};
use musubi_engine::card::compare::FieldMatch;
use musubi_engine::card::evidence::{Attested, check_registration};
use musubi_engine::card::roots::TrustStore;
use musubi_engine::card::testing::ScriptedTransport;
use musubi_engine::card::{CardTransport, TransportError};
use musubi_engine::ids::DocId;
use musubi_vcard::card::{Corrupt, Counters, VirtualCard};
use musubi_vcard::pki::{TRUST_ANCHOR_FILE, TestPki};
use musubi_vcard::{CertChoice, Holder, InProcess, build};
use serde_json::{Value, json};

use super::ui::{Fixture, settle, unlock};

/// The in-process virtual card on a pretend reader; `None` is an empty reader.
struct VirtualSlot(Option<InProcess>);

impl CardSlot for VirtualSlot {
    fn reader(&self) -> String {
        "テスト用リーダー".to_owned()
    }

    fn open(&mut self) -> Result<Box<dyn CardTransport + '_>, TransportError> {
        let card = self.0.as_mut().ok_or(TransportError::NoCard)?;
        // Every session starts from a reset card, as with a real reader.
        card.card.power_event("on");
        Ok(Box::new(card))
    }
}

/// One scripted transport per session, in order.
struct ScriptSlot {
    sessions: VecDeque<ScriptedTransport>,
    current: ScriptedTransport,
}

impl CardSlot for ScriptSlot {
    fn reader(&self) -> String {
        "テスト用リーダー".to_owned()
    }

    fn open(&mut self) -> Result<Box<dyn CardTransport + '_>, TransportError> {
        self.current = self.sessions.pop_front().ok_or(TransportError::NoCard)?;
        Ok(Box::new(&mut self.current))
    }
}

struct CardFixture {
    f: Fixture,
    pki_dir: PathBuf,
    subject: DocId,
}

impl CardFixture {
    /// A store with the example person (結城 花子) as a subject document.
    fn new() -> CardFixture {
        let f = Fixture::new();
        let engine = f.engine();
        let subject = engine
            .import(&[("subject".to_owned(), crate::example_of("subject"))], 1)
            .unwrap()
            .ids[0];
        engine.close().unwrap();
        let pki_dir = f.path().join("pki");
        CardFixture {
            f,
            pki_dir,
            subject,
        }
    }

    /// A reader holding a virtual card for `holder` with `counters` tries left.
    fn slot(&self, holder: &Holder, counters: Counters) -> Arc<Mutex<VirtualSlot>> {
        let pki = TestPki::load_or_create(&self.pki_dir).unwrap();
        let content = build(&pki, holder, CertChoice::Valid).unwrap();
        let card = InProcess::new(VirtualCard::new(content, counters, Corrupt::None));
        Arc::new(Mutex::new(VirtualSlot(Some(card))))
    }

    fn harness(&self, slot: Arc<Mutex<dyn CardSlot>>) -> Harness<'static, AppUi> {
        // The tablet's size: every control of the card screen is reachable without scrolling.
        let mut h = self.f.harness_with_card(
            800.0,
            CardAccess::Slot(slot),
            vec![self.pki_dir.join(TRUST_ANCHOR_FILE)],
        );
        unlock(&mut h);
        tap(&mut h, "本人確認・登録");
        settle(&mut h);
        assert_eq!(h.state().screen(), Screen::Card(self.subject));
        h
    }

    fn registrations(&self) -> Vec<Value> {
        self.registrations_with_ids()
            .into_iter()
            .map(|(_, d)| d)
            .collect()
    }

    fn registrations_with_ids(&self) -> Vec<(DocId, Value)> {
        let engine = self.f.engine();
        let docs: Vec<(DocId, Value)> = engine
            .list()
            .unwrap()
            .into_iter()
            .filter(|d| d.kind == "registration")
            .map(|d| (d.id, engine.export(d.id).unwrap()))
            .collect();
        engine.close().unwrap();
        docs
    }

    /// The check every receiver runs, with the test root as the trust anchor.
    fn check_evidence(&self, id: DocId, reg: &Value) -> Attested {
        let mut trust = TrustStore::bundled().unwrap();
        let pem = std::fs::read_to_string(self.pki_dir.join(TRUST_ANCHOR_FILE)).unwrap();
        trust.add_pem(&pem).unwrap();
        check_registration(id, reg, &trust).unwrap()
    }
}

/// Scrolls a control into view (as a finger would) and taps it.
fn tap(h: &mut Harness<'static, AppUi>, label: &str) {
    h.get_by_label(label).scroll_to_me();
    h.run_ok();
    h.get_by_label(label).click();
    h.run_ok();
}

fn tap_pin(h: &mut Harness<'static, AppUi>, pin: &str) {
    for d in pin.chars() {
        tap(h, &d.to_string());
    }
}

fn verify(h: &mut Harness<'static, AppUi>) {
    tap(h, "本人確認を実行");
    settle(h);
}

/// Types both PINs on the pad (it moves to the second by itself) and runs the check.
fn verify_with(h: &mut Harness<'static, AppUi>, auth: &str, support: &str) {
    tap_pin(h, auth);
    tap_pin(h, support);
    verify(h);
}

#[test]
fn card_check_registers_the_office_and_records_consent() {
    let cf = CardFixture::new();
    let slot = cf.slot(&Holder::default(), Counters::default());
    let mut h = cf.harness(slot.clone());
    // Reader and card state, tries left on both PINs (reading them spent none).
    h.get_by_label_contains("テスト用リーダー");
    assert_eq!(h.get_all_by_label("残り3回").count(), 2);

    verify_with(&mut h, "1234", "1234");
    h.get_by_label("本人確認ができました。事業所の登録を作成しました。");
    h.get_by_label_contains("失効確認は行っていません。オフラインでは確認できず");
    assert_eq!(h.get_all_by_label("一致").count(), 2, "name and birth date");

    let regs = cf.registrations();
    assert_eq!(regs.len(), 1);
    let v = &regs[0]["verification"];
    assert_eq!(v["result"], "verified");
    assert_eq!(v["revocation"], "not_checked");
    assert_eq!(
        v["comparison"],
        json!({"name": "match", "birth_date": "match"})
    );
    assert_eq!(v["staff"], "架空 太郎");
    assert_eq!(regs[0]["subject_id"], cf.subject.to_string());
    assert!(regs[0].get("consent").is_none());
    h.get_by_label_contains("本人確認済み・同意未取得");
    // The card signed the statement for this registration; it checks out.
    let (id, reg) = cf.registrations_with_ids().remove(0);
    let a = cf.check_evidence(id, &reg);
    assert_eq!(
        (a.statement.name, a.statement.birth_date),
        (FieldMatch::Match, FieldMatch::Match)
    );
    assert_eq!(
        a.statement.person,
        musubi_engine::sync::sharing::person_key("131011", "0000012345")
    );

    // Consent: the 同意者 is prefilled with the person's name; the method is required.
    tap(&mut h, "同意を記録");
    h.get_by_label("同意の方法を選んでください。");
    tap(&mut h, "署名");
    tap(&mut h, "同意を記録");
    settle(&mut h);
    h.get_by_label_contains("登録済み（同意あり）");
    let regs = cf.registrations();
    let c = &regs[0]["consent"];
    assert_eq!(c["consented_by"], "結城 花子");
    assert_eq!(c["relationship"], "本人");
    assert_eq!(c["method"], "signature");
    assert_eq!(c["scope"].as_array().map(Vec::len), Some(2));
}

#[test]
fn wrong_pin_shows_tries_left_and_writes_nothing() {
    let cf = CardFixture::new();
    let slot = cf.slot(&Holder::default(), Counters::default());
    let mut h = cf.harness(slot.clone());
    verify_with(&mut h, "9999", "1234");
    h.get_by_label("本人確認ができませんでした。何も保存していません。");
    h.get_by_label("利用者証明用暗証番号が違います。残り2回です。");
    // The pad shows the card's fresh count; the PINs were cleared.
    h.get_by_label("残り2回");
    assert!(cf.registrations().is_empty());
    let card = slot.lock().unwrap();
    let counters = &card.0.as_ref().unwrap().card.counters;
    assert_eq!((counters.auth, counters.support), (2, 3));
}

#[test]
fn lockout_guard_needs_confirmation_for_the_last_try_and_stops_at_a_locked_pin() {
    let cf = CardFixture::new();
    let slot = cf.slot(
        &Holder::default(),
        Counters {
            auth: 1,
            support: 3,
        },
    );
    let mut h = cf.harness(slot.clone());
    h.get_by_label("残り1回");
    h.get_by_label_contains("残り1回です。間違えるとカードがロックされ");
    tap_pin(&mut h, "1234");
    tap_pin(&mut h, "1234");
    // Without the confirmation the button does nothing: no APDU reaches the card.
    verify(&mut h);
    assert!(h.query_by_label_contains("本人確認ができ").is_none());
    assert!(cf.registrations().is_empty());
    tap(
        &mut h,
        "本人が暗証番号を確かめました。残り1回で入力します。",
    );
    verify(&mut h);
    h.get_by_label("本人確認ができました。事業所の登録を作成しました。");
    assert_eq!(cf.registrations().len(), 1);
    // A correct PIN resets the counter.
    assert_eq!(
        slot.lock().unwrap().0.as_ref().unwrap().card.counters.auth,
        3
    );

    // A locked card: the reason and where to go, and no pad.
    let locked = CardFixture::new();
    let slot = locked.slot(
        &Holder::default(),
        Counters {
            auth: 0,
            support: 3,
        },
    );
    let mut h = locked.harness(slot);
    h.get_by_label("ロック中");
    h.get_by_label_contains("暗証番号の再設定は、お住まいの市区町村の窓口で行ってください。");
    tap_pin(&mut h, "1234");
    verify(&mut h);
    assert!(locked.registrations().is_empty());
}

#[test]
fn a_name_that_differs_is_registered_only_by_a_staff_decision() {
    let cf = CardFixture::new();
    let holder = Holder {
        name: "結城　咲子".to_owned(),
        ..Holder::default()
    };
    let slot = cf.slot(&holder, Counters::default());
    let mut h = cf.harness(slot);
    verify_with(&mut h, "1234", "1234");
    h.get_by_label("カードは確認できましたが、氏名が利用者情報と一致しません。");
    assert!(cf.registrations().is_empty(), "nothing before the decision");
    tap(&mut h, "職員が確認して登録する");
    settle(&mut h);
    h.get_by_label("本人確認ができました。事業所の登録を作成しました。");
    let regs = cf.registrations();
    assert_eq!(regs.len(), 1);
    assert_eq!(
        regs[0]["verification"]["comparison"],
        json!({"name": "mismatch", "birth_date": "match", "mismatch_accepted_by": "架空 太郎"})
    );
    // Signed before the decision, under the id kept in memory while staff decided.
    let (id, reg) = cf.registrations_with_ids().remove(0);
    let a = cf.check_evidence(id, &reg);
    assert_eq!(a.statement.registration, id);
    assert_eq!(a.statement.name, FieldMatch::Mismatch);
}

#[test]
fn a_registration_this_tablet_cannot_verify_shows_as_needing_a_new_check() {
    let cf = CardFixture::new();
    let slot = cf.slot(&Holder::default(), Counters::default());
    let mut h = cf.harness(slot);
    verify_with(&mut h, "1234", "1234");
    h.get_by_label_contains("本人確認済み・同意未取得");
    drop(h);
    // The same store on a tablet that does not trust the test root: its evidence does not
    // verify here, so the registration counts for nothing and no consent is offered.
    let mut h = cf.f.harness_with_card(
        800.0,
        CardAccess::Slot(Arc::new(Mutex::new(VirtualSlot(None)))),
        Vec::new(),
    );
    unlock(&mut h);
    tap(&mut h, "本人確認・登録");
    settle(&mut h);
    h.get_by_label_contains("要再確認");
    h.get_by_label_contains("証跡をこの端末で確認できない");
    assert!(h.query_by_label("同意を記録").is_none());
}

#[test]
fn a_card_pulled_out_mid_way_is_reported_in_japanese_and_nothing_is_written() {
    let cf = CardFixture::new();
    // The test root the app is configured with (this test's card is scripted).
    TestPki::load_or_create(&cf.pki_dir).unwrap();
    let ok = vec![0x90, 0x00];
    let tries3 = vec![0x63, 0xC3];
    // Session 1: the state (SELECT JPKI, SELECT its PIN EF, retries; the same for 入力補助).
    let status = ScriptedTransport::new()
        .expect([0x00, 0xA4, 0x04], ok.clone())
        .expect([0x00, 0xA4, 0x02], ok.clone())
        .expect([0x00, 0x20], tries3.clone())
        .expect([0x00, 0xA4, 0x04], ok.clone())
        .expect([0x00, 0xA4, 0x02], ok.clone())
        .expect([0x00, 0x20], tries3);
    // Session 2: the verification; the card leaves after the SELECT.
    let pulled = ScriptedTransport::new()
        .expect([0x00, 0xA4, 0x04], ok)
        .fail(TransportError::Removed);
    let slot = Arc::new(Mutex::new(ScriptSlot {
        sessions: VecDeque::from([status, pulled]),
        current: ScriptedTransport::new(),
    }));
    let mut h = cf.harness(slot);
    assert_eq!(h.get_all_by_label("残り3回").count(), 2);
    verify_with(&mut h, "1234", "1234");
    h.get_by_label("本人確認ができませんでした。何も保存していません。");
    h.get_by_label("カードが途中で取り外されました");
    // The state read after the failure finds the reader empty.
    h.get_by_label("カードが置かれていません");
    assert!(cf.registrations().is_empty());
}

#[test]
fn progress_board_highlights_cases_past_the_30_day_limit() {
    let f = Fixture::new();
    let engine = f.engine();
    let subject = engine
        .import(&[("subject".to_owned(), crate::example_of("subject"))], 1)
        .unwrap()
        .ids[0];
    let today = chrono::Local::now().date_naive();
    let days_ago = |n: i64| {
        (today - chrono::Duration::days(n))
            .format("%Y-%m-%d")
            .to_string()
    };
    let case = |applied: String, phases: Value, exceptions: Value| {
        json!({
            "kind": "case",
            "subject_id": subject.to_string(),
            "application": {"date": applied, "kind": "2", "insurer_number": "131011", "insured_number": "0000012345"},
            "phases": phases,
            "exceptions": exceptions,
        })
    };
    let cases = [
        // 45 days, waiting for the committee, no 延期通知: past the limit.
        case(
            days_ago(45),
            json!({"survey_visited": days_ago(30), "survey_received": days_ago(29), "opinion_received": days_ago(28), "primary_judgement_date": days_ago(20), "committee_scheduled": days_ago(-2)}),
            json!([]),
        ),
        // 45 days with a 延期通知 whose 処理見込 is still ahead: not highlighted.
        case(
            days_ago(45),
            json!({"survey_visited": days_ago(20)}),
            json!([{"kind": "postponement", "date": days_ago(25), "expected_by": days_ago(-10)}]),
        ),
        // 10 days, in time; a 第2号被保険者 whose 主治医意見書 was asked for.
        {
            let mut c = case(
                days_ago(10),
                json!({"opinion_requested": days_ago(8)}),
                json!([]),
            );
            c["application"]["insured_category"] = json!("第2号被保険者");
            c["application"]["specified_disease"] = json!("関節リウマチ");
            c["physician"] = json!({"name": "見本 医師", "institution": "架空クリニック"});
            c
        },
        // A 更新申請 at 40 days whose applicant agreed to omit the 延期通知: the current
        // validity still runs, so not highlighted.
        {
            let mut c = case(days_ago(40), json!({}), json!([]));
            c["application"]["current_valid_to"] = json!(days_ago(-5));
            c["postponement_waiver"] =
                json!({"agreed_on": days_ago(20), "recorded_by": "架空 太郎"});
            c
        },
    ];
    let inputs: Vec<(String, Value)> = cases.into_iter().map(|c| ("case".to_owned(), c)).collect();
    engine.import(&inputs, 1).unwrap();
    engine.close().unwrap();

    let mut h = f.harness(800.0);
    unlock(&mut h);
    tap(&mut h, "認定の進捗");
    settle(&mut h);
    assert_eq!(h.state().screen(), Screen::Cases);
    h.get_by_label("申請 4 件");
    h.get_by_label("・ 期限超過 1 件");
    h.get_by_label_contains("延期通知省略（同意あり・現在の有効期間");
    assert_eq!(h.get_all_by_label_contains("30日超過（45日経過").count(), 1);
    h.get_by_label_contains("延期通知済み（処理見込");
    h.get_by_label_contains("10日経過・期限");
    // The case fields of the application and the 主治医意見書.
    h.get_by_label("第2号被保険者・特定疾病 関節リウマチ");
    h.get_by_label(&format!(
        "主治医 見本 医師（架空クリニック）　意見書依頼 {}・未入手",
        days_ago(8)
    ));
    assert_eq!(h.get_all_by_label_contains("意見書入手 ").count(), 1);
    h.get_by_label("介護認定審査会（1）");
    // The case whose 主治医意見書 was asked for is in the 認定調査 phase.
    h.get_by_label("申請受付（1）");
    h.get_by_label("認定調査（2）");
}
