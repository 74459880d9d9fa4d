//! The tablet app driven through its UI with egui_kittest, on real SQLCipher stores: the
//! worker thread, the engine and the store are the real ones. The harness panics on any
//! character no font can draw, so every test here also proves the Japanese font is used.

use std::time::Duration;

use automerge::ActorId;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use musubi_app::ui::survey::choice_label;
use musubi_app::ui::{AppUi, CardAccess, Screen, WorkerConfig, field_label, fonts};
use musubi_engine::Engine;
use musubi_engine::doc::Author;
use musubi_engine::schema::{DocKind, ItemKind, Pointer, SurveyCatalog};
use musubi_engine::store::{InitOptions, SecretString, Store};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

pub(super) struct Fixture {
    tmp: tempfile::TempDir,
}

impl Fixture {
    pub(super) fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::init(
            &tmp.path().join("data"),
            &SecretString::from(crate::PASS.to_owned()),
            InitOptions {
                office: crate::OFFICE.to_owned(),
                device_name: "tablet-a".to_owned(),
                staff: Some("架空 太郎".to_owned()),
                recovery_recipient: None,
                kdf_work_factor: Some(10),
            },
        )
        .unwrap();
        store.close().unwrap();
        Fixture { tmp }
    }

    fn dir(&self) -> std::path::PathBuf {
        self.tmp.path().join("data")
    }

    /// The fixture's temp folder.
    pub(super) fn path(&self) -> &std::path::Path {
        self.tmp.path()
    }

    pub(super) fn engine(&self) -> Engine {
        let store = Store::open(&self.dir(), &SecretString::from(crate::PASS.to_owned())).unwrap();
        Engine::new(store, None).unwrap()
    }

    pub(super) fn harness(&self, height: f32) -> Harness<'static, AppUi> {
        self.harness_with_card(height, CardAccess::default(), Vec::new())
    }

    pub(super) fn harness_with_card(
        &self,
        height: f32,
        card: CardAccess,
        trust_anchors: Vec<std::path::PathBuf>,
    ) -> Harness<'static, AppUi> {
        let app = AppUi::new(
            WorkerConfig {
                data_dir: self.dir(),
                staff: None,
                background_sync: false,
                relay: None,
                card,
                trust_anchors,
            },
            std::sync::Arc::new(|| {}),
        )
        .unwrap();
        Harness::builder()
            .with_size(egui::vec2(1280.0, height))
            .with_max_steps(20)
            .with_context_setup(fonts::install)
            .build_ui_state(|ui, app: &mut AppUi| app.ui(ui), app)
    }
}

/// Runs frames, lets the worker finish everything queued, and runs frames again.
pub(super) fn settle(h: &mut Harness<'static, AppUi>) {
    h.run_ok();
    assert!(
        h.state_mut().wait_idle(WAIT),
        "the worker did not finish in time"
    );
    h.run_ok();
}

pub(super) fn unlock(h: &mut Harness<'static, AppUi>) {
    type_into(h, "パスフレーズ", crate::PASS);
    h.get_by_label("開く").click();
    settle(h);
    assert_eq!(
        h.state().screen(),
        Screen::Home,
        "{:?}",
        h.state().message()
    );
}

/// Opens the new-person form and fills it with a fictional person (not yet submitted).
fn enter_fictional_person(h: &mut Harness<'static, AppUi>) {
    h.get_by_label("＋ 新しい調査対象者と認定調査票").click();
    h.run_ok();
    type_into(h, "氏名", "架空 花子");
    type_into(h, "ふりがな", "かくう はなこ");
    type_into(h, "保険者番号", "131011");
    type_into(h, "被保険者番号", "0000012345");
    type_into(h, "生年月日", "1944-05-12");
    type_into(h, "現住所", "東京都千代田区架空町1-2-3");
    h.get_by_label("女").click();
    h.run_ok();
}

pub(super) fn type_into(h: &mut Harness<'static, AppUi>, label: &str, text: &str) {
    h.get_by_role_and_label(egui::Role::TextInput, label)
        .click();
    h.run_ok();
    h.get_by_role_and_label(egui::Role::TextInput, label)
        .type_text(text);
    h.run_ok();
}

#[test]
fn wrong_passphrase_is_refused_in_japanese_and_changes_nothing() {
    let f = Fixture::new();
    let mut h = f.harness(800.0);
    type_into(&mut h, "パスフレーズ", "not the passphrase");
    h.get_by_label("開く").click();
    settle(&mut h);
    assert_eq!(h.state().screen(), Screen::Unlock);
    h.get_by_label("パスフレーズが違います。");
}

#[test]
fn a_whole_survey_filled_through_the_ui_is_stored() {
    let f = Fixture::new();
    let catalog = SurveyCatalog::embedded().unwrap();
    // Tall enough that every item is on screen: the clicks are real pointer clicks.
    let mut h = f.harness(14_000.0);
    unlock(&mut h);

    enter_fictional_person(&mut h);
    h.get_by_label("登録して調査票を開く").click();
    settle(&mut h);
    let Screen::Survey(id) = h.state().screen() else {
        panic!("no survey opened: {:?}", h.state().message());
    };
    h.get_by_label("基本調査 回答 0/74");

    // The answer each item gets: the last offered choice (multi-part items: every part
    // but the exclusive "ない"; 特別な医療: 該当なし).
    let mut expected = serde_json::Map::new();
    for item in &catalog.items {
        let offered: Vec<_> = item.choices.iter().filter(|c| !c.import_only).collect();
        match item.kind {
            ItemKind::Single => {
                let c = offered.last().unwrap();
                h.get_by_label(&choice_label(item, &c.label)).click();
                h.run_ok();
                expected.insert(item.key.clone(), json!(c.code));
            }
            ItemKind::Multi if item.exclusive.is_empty() => {
                h.get_by_label(&choice_label(item, "該当なし")).click();
                h.run_ok();
                expected.insert(item.key.clone(), json!([]));
            }
            ItemKind::Multi => {
                let mut codes = Vec::new();
                for c in offered
                    .iter()
                    .filter(|c| !item.exclusive.contains(&c.code))
                    .take(2)
                {
                    h.get_by_label(&choice_label(item, &c.label)).click();
                    h.run_ok();
                    codes.push(c.code);
                }
                codes.sort_unstable();
                expected.insert(item.key.clone(), json!(codes));
            }
        }
    }
    // A 特記事項 for 1-3, typed into the item's own note field.
    type_into(&mut h, "1-3 特記事項を追加", "寝返りは柵につかまって行う。");
    settle(&mut h);
    h.get_by_label("基本調査 回答 74/74");
    h.get_by_label("すべて回答済み");
    h.get_by_label("調査完了").click();
    settle(&mut h);
    drop(h); // closes the worker and the store

    let engine = f.engine();
    let doc = engine.export(id).unwrap();
    assert_eq!(doc["items"], Value::Object(expected));
    assert_eq!(doc["status"], "completed");
    assert_eq!(doc["subject"]["name"], "架空 花子");
    let notes = doc["special_notes"].as_array().unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["item"], "1-3");
    assert_eq!(notes[0]["text"], "寝返りは柵につかまって行う。");
    // One subject and one survey, nothing else.
    let kinds: Vec<String> = engine.list().unwrap().into_iter().map(|d| d.kind).collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    engine.close().unwrap();
}

#[test]
fn next_unanswered_jumps_in_form_order() {
    let f = Fixture::new();
    let engine = f.engine();
    let mut survey = crate::example();
    survey["items"].as_object_mut().unwrap().remove("2-4");
    survey["items"].as_object_mut().unwrap().remove("4-1");
    survey["status"] = json!("draft");
    let id = engine.import(&[("s".to_owned(), survey)], 1).unwrap().ids[0];
    engine.close().unwrap();
    let mut h = f.harness(800.0);
    unlock(&mut h);
    h.state_mut().go(Screen::Survey(id));
    settle(&mut h);
    h.get_by_label("基本調査 回答 72/74");
    h.get_by_label("次の未回答へ ↓").click();
    h.run_ok();
    // After the jump, the 2-4 row is on screen (a 1280×800 window shows a few items).
    let catalog = SurveyCatalog::embedded().unwrap();
    let item = catalog.item("2-4").unwrap();
    let label = choice_label(item, &item.choices[0].label);
    let node = h.get_by_label(&label);
    let y = node.rect().min.y;
    assert!((0.0..800.0).contains(&y), "2-4 is at y={y}, off screen");
}

#[test]
fn a_conflict_is_resolved_with_one_tap() {
    let f = Fixture::new();
    let engine = f.engine();
    let id = engine
        .import(&[("s".to_owned(), crate::example())], 1_000)
        .unwrap()
        .ids[0];
    // Another tablet edits 1-3 concurrently with this one.
    let mut other = engine
        .load(id)
        .unwrap()
        .fork_with_actor(ActorId::from(vec![7u8; 16]));
    let b = Author {
        device: "b".repeat(32),
        device_name: "tablet-b".to_owned(),
        staff: Some("架空 次郎".to_owned()),
        action: "set".to_owned(),
        time_ms: 2_000,
    };
    let ptr = Pointer::parse("/items/1-3").unwrap();
    other.set(&ptr, &json!(3), &b).unwrap();
    engine.set(id, &ptr, json!(1), 3_000).unwrap();
    engine.merge_from(&mut other).unwrap();
    assert_eq!(engine.conflicts(id).unwrap().len(), 1);
    engine.close().unwrap();

    let mut h = f.harness(800.0);
    unlock(&mut h);
    h.get_by_label("照合（競合 1）").click();
    settle(&mut h);
    h.get_by_label_contains("認定調査票（競合 1）").click();
    settle(&mut h);
    let catalog = SurveyCatalog::embedded().unwrap();
    let field = field_label(Some(DocKind::Survey), Some(&catalog), "/items/1-3");
    // Both values are side by side with their device.
    h.get_by_label("端末: tablet-b");
    h.get_by_label("端末: tablet-a");
    // Pick tablet-b's value (3), whichever column it is in.
    // The column whose button sits under tablet-b's label.
    let b_x = h.get_by_label("端末: tablet-b").rect().center().x;
    let col = (1..=2)
        .min_by_key(|n| {
            let label = format!("{field} 候補{n}: この値に決める");
            (h.get_by_label(&label).rect().center().x - b_x).abs() as i64
        })
        .unwrap();
    h.get_by_label(&format!("{field} 候補{col}: この値に決める"))
        .click();
    settle(&mut h);
    h.get_by_label("競合はありません（すべて解消済み）。");
    drop(h);

    let engine = f.engine();
    assert!(engine.conflicts(id).unwrap().is_empty());
    assert_eq!(engine.export(id).unwrap()["items"]["1-3"], 3);
    engine.close().unwrap();
}

#[test]
fn history_shows_the_device_the_relay_attests_and_a_differing_claim() {
    use musubi_engine::sync::{SyncBatch, SyncStorage, storage::SyncWrite};

    let f = Fixture::new();
    let engine = f.engine();
    let id = engine
        .import(&[("s".to_owned(), crate::example())], 1_000)
        .unwrap()
        .ids[0];
    // A change from another tablet that calls itself tablet-b, and one from a tablet the
    // relay has not attested, both concurrent with this tablet's edit of 1-3.
    let ptr = Pointer::parse("/items/1-3").unwrap();
    let mut others = Vec::new();
    for (actor, value, time_ms) in [(7u8, 3, 2_000), (8u8, 4, 2_500)] {
        let mut other = engine
            .load(id)
            .unwrap()
            .fork_with_actor(ActorId::from(vec![actor; 16]));
        let author = Author {
            device: "b".repeat(32),
            device_name: "tablet-b".to_owned(),
            staff: Some("架空 次郎".to_owned()),
            action: "set".to_owned(),
            time_ms,
        };
        other.set(&ptr, &json!(value), &author).unwrap();
        others.push(other);
    }
    engine.set(id, &ptr, json!(1), 3_000).unwrap();
    for other in &mut others {
        engine.merge_from(other).unwrap();
    }
    assert_eq!(engine.conflicts(id).unwrap().len(), 1);
    engine.close().unwrap();

    // What a sync leaves behind: the relay's bindings of this tablet's actor and actor 7
    // (whose certificate says tablet-c).
    let store = Store::open(&f.dir(), &SecretString::from(crate::PASS.to_owned())).unwrap();
    let own = hex::decode(&store.info().actor_hex).unwrap();
    store
        .commit(SyncBatch {
            peer: "relay".to_owned(),
            writes: vec![
                SyncWrite::BindActor {
                    actor: own,
                    device: "a".repeat(32),
                    device_name: Some("tablet-a".to_owned()),
                },
                SyncWrite::BindActor {
                    actor: vec![7; 16],
                    device: "c".repeat(32),
                    device_name: Some("tablet-c".to_owned()),
                },
            ],
            ..SyncBatch::default()
        })
        .unwrap();
    store.close().unwrap();

    let mut h = f.harness(1600.0);
    unlock(&mut h);
    h.get_by_label_contains("照合（競合").click();
    settle(&mut h);
    h.get_by_label_contains("認定調査票（競合").click();
    settle(&mut h);
    h.get_by_label("端末（中継サーバーの証明）");
    h.get_by_label("端末（自己申告）");
    // The import and the own edit are attested as tablet-a.
    assert_eq!(
        h.query_all_by_label("tablet-a").count(),
        4,
        "two declared, two attested"
    );
    h.get_by_label("tablet-c");
    h.get_by_label(
        "※ 自己申告の端末名（tablet-b）は中継サーバーが証明する端末（tablet-c）と異なります",
    );
    h.get_by_label("未確認（まだ同期されていません）");
}

#[test]
fn visit_record_form_saves_vitals_and_refuses_impossible_ones() {
    let f = Fixture::new();
    let engine = f.engine();
    let subject = json!({"kind": "subject", "person": crate::example()["subject"].clone()});
    let sid = engine.import(&[("p".to_owned(), subject)], 1).unwrap().ids[0];
    engine.close().unwrap();
    let mut h = f.harness(1600.0);
    unlock(&mut h);
    h.get_by_label("＋ 訪問看護記録").click();
    settle(&mut h);
    let Screen::Visit(id) = h.state().screen() else {
        panic!("no visit record")
    };
    h.get_by_label("℃");
    h.get_by_label("（入力できる範囲 30〜45）");
    type_into(&mut h, "体温", "36.8");
    type_into(&mut h, "脈拍", "400");
    h.get_by_label("数値が範囲外か正しくないため未保存");
    type_into(&mut h, "病状", "膝の腫れなし。");
    settle(&mut h);
    drop(h);
    let engine = f.engine();
    let doc = engine.export(id).unwrap();
    assert_eq!(doc["subject_id"], sid.to_string());
    assert_eq!(doc["vitals"]["body_temperature"], 36.8);
    assert!(
        doc["vitals"].get("pulse").is_none(),
        "an impossible pulse was stored"
    );
    assert_eq!(doc["observations"], "膝の腫れなし。");
    engine.close().unwrap();
}

#[test]
fn bundled_font_has_every_form_label_and_egui_alone_has_none() {
    let catalog = SurveyCatalog::embedded().unwrap();
    let mut texts: Vec<String> =
        vec!["認定調査票 概況調査 基本調査 特記事項 訪問看護記録書Ⅱ 同期 照合 未回答".to_owned()];
    for item in &catalog.items {
        texts.push(item.title.clone());
        texts.extend(item.choices.iter().map(|c| c.label.clone()));
    }
    let with_fonts = egui::Context::default();
    fonts::install(&with_fonts);
    with_fonts
        .run_ui(egui::RawInput::default(), |_| {})
        .textures_delta
        .clear();
    let bare = egui::Context::default();
    bare.run_ui(egui::RawInput::default(), |_| {})
        .textures_delta
        .clear();
    for family in [
        egui::FontId::proportional(18.0),
        egui::FontId::monospace(16.0),
    ] {
        for t in &texts {
            assert!(
                with_fonts.fonts_mut(|f| f.has_glyphs(&family, t)),
                "missing glyphs in {t:?} ({family:?})"
            );
        }
    }
    // Without the bundled font there are no kanji at all (no system font fallback), so
    // the check above is meaningful.
    assert!(!bare.fonts_mut(|f| f.has_glyph(&egui::FontId::proportional(18.0), '寝')));
}

#[test]
fn consistency_warnings_appear_beside_both_items_and_clear() {
    let f = Fixture::new();
    let catalog = SurveyCatalog::embedded().unwrap();
    let mut h = f.harness(14_000.0);
    unlock(&mut h);
    enter_fictional_person(&mut h);
    h.get_by_label("登録して調査票を開く").click();
    settle(&mut h);
    assert!(
        matches!(h.state().screen(), Screen::Survey(_)),
        "{:?}",
        h.state().message()
    );
    let label = |key: &str, code: i64| {
        let item = catalog.items.iter().find(|i| i.key == key).unwrap();
        let c = item.choices.iter().find(|c| c.code == code).unwrap();
        choice_label(item, &c.label)
    };
    // 警告コード 01: 1-3 = 3 (できない) with 1-10 = 1 (介助されていない).
    h.get_by_label(&label("1-3", 3)).click();
    settle(&mut h);
    assert!(h.query_all_by_label_contains("※ 警告 01").next().is_none());
    h.get_by_label(&label("1-10", 1)).click();
    settle(&mut h);
    assert_eq!(
        h.query_all_by_label_contains("※ 警告 01").count(),
        2,
        "the warning shows beside 1-3 and 1-10"
    );
    // Changing either item clears it; nothing was blocked.
    h.get_by_label(&label("1-10", 2)).click();
    settle(&mut h);
    assert!(h.query_all_by_label_contains("※ 警告 01").next().is_none());
}

#[test]
fn display_settings_are_kept_on_the_device_and_light_is_the_default() {
    use musubi_app::ui::display::{DisplaySettings, TextSize, Theme};
    let body =
        |h: &Harness<'static, AppUi>| h.ctx.global_style().text_styles[&egui::TextStyle::Body].size;
    let f = Fixture::new();
    let mut h = f.harness(800.0);
    settle(&mut h);
    assert_eq!(h.ctx.theme(), egui::Theme::Light);
    assert_eq!(h.state().display(), DisplaySettings::default());
    h.get_by_label("表示設定（画面の明るさ・文字の大きさ）")
        .click();
    h.run_ok();
    h.get_by_label("暗い").click();
    h.run_ok();
    h.get_by_label("大").click();
    settle(&mut h);
    assert_eq!(h.ctx.theme(), egui::Theme::Dark);
    assert_eq!(body(&h), 22.0);
    assert!(h.ctx.global_style().spacing.interact_size.y >= 44.0);
    drop(h);

    // The next start on this device reads them back, before anyone unlocks.
    let mut h = f.harness(800.0);
    settle(&mut h);
    let kept = DisplaySettings {
        theme: Theme::Dark,
        text: TextSize::Large,
    };
    assert_eq!(h.state().display(), kept);
    assert_eq!(h.ctx.theme(), egui::Theme::Dark);
    // After unlocking, the same controls sit in the top bar.
    unlock(&mut h);
    h.get_by_label("表示").click();
    h.run_ok();
    h.get_by_label("明るい").click();
    h.run_ok();
    h.get_by_label("小").click();
    settle(&mut h);
    assert_eq!(h.ctx.theme(), egui::Theme::Light);
    assert_eq!(body(&h), 16.0);
    assert_eq!(
        DisplaySettings::load(&f.dir()),
        DisplaySettings {
            theme: Theme::Light,
            text: TextSize::Small
        }
    );
}

/// Issue 19: the survey's administrative fields are a section of the 概況調査 form,
/// generated from the schema; a wrong 委託先 check digit is refused and not stored.
#[test]
fn administrative_fields_are_entered_in_the_overview_form() {
    let f = Fixture::new();
    let mut h = f.harness(6_000.0);
    unlock(&mut h);
    enter_fictional_person(&mut h);
    h.get_by_label("登録して調査票を開く").click();
    settle(&mut h);
    let Screen::Survey(id) = h.state().screen() else {
        panic!("no survey opened: {:?}", h.state().message());
    };
    h.get_by_label("概況調査・調査対象者").click();
    h.run_ok();
    h.get_by_label("調査の事務情報");
    h.get_by_label("調査区分（依頼区分）: 更新申請").click();
    h.run_ok();
    h.get_by_label("現在の状況: 施設").click();
    h.run_ok();
    h.get_by_label("サービス区分: 予防").click();
    h.run_ok();
    type_into(&mut h, "調査回数", "2");
    type_into(&mut h, "2回目の調査日", "2026-10-21");
    type_into(&mut h, "調査員番号", "T-0042");
    // Check digit 7 is wrong (6 is right): shown as refused, not stored.
    type_into(&mut h, "委託先事業所番号", "1370100017");
    settle(&mut h);
    h.get_by_label_contains("保存できません");
    drop(h);
    let engine = f.engine();
    let doc = engine.export(id).unwrap();
    engine.close().unwrap();
    let admin = &doc["administration"];
    assert_eq!(admin["survey_kind"], "2");
    assert_eq!(admin["current_situation"], "施設");
    assert_eq!(admin["service_category"], "予防");
    assert_eq!(admin["survey_count"], 2);
    assert_eq!(admin["second_survey_date"], "2026-10-21");
    assert_eq!(admin["surveyor_number"], "T-0042");
    assert!(
        admin
            .get("contractor")
            .is_none_or(|c| c.get("office_number").is_none()),
        "{admin}"
    );
}

/// Issue 18: a wrong date typed in the form is explained in Japanese, naming the field by
/// its title: no JSON path and no English sentence reaches the screen.
#[test]
fn a_wrong_date_is_explained_in_japanese_without_a_path() {
    let f = Fixture::new();
    let mut h = f.harness(6_000.0);
    unlock(&mut h);
    enter_fictional_person(&mut h);
    h.get_by_label("登録して調査票を開く").click();
    settle(&mut h);
    assert!(matches!(h.state().screen(), Screen::Survey(_)));
    h.get_by_label("概況調査・調査対象者").click();
    h.run_ok();
    h.get_by_label("調査区分（依頼区分）: 更新申請").click();
    settle(&mut h);
    type_into(&mut h, "2回目の調査日", "2026-02-30");
    settle(&mut h);
    let shown: Vec<String> = h
        .query_all_by_label_contains("保存できません")
        .filter_map(|n| {
            use egui_kittest::kittest::NodeT;
            let node = n.accesskit_node();
            node.label().or_else(|| node.value())
        })
        .collect();
    assert_eq!(shown.len(), 1, "{shown:?}");
    let text = &shown[0];
    assert!(text.contains("「2回目の調査日」"), "{text}");
    assert!(text.contains("実在する日付"), "{text}");
    assert!(!text.contains('/'), "a path reached the screen: {text}");
    assert!(
        !text.contains("not a valid") && !text.contains("expected"),
        "English reached the screen: {text}"
    );
}
