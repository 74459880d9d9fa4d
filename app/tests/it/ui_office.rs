//! Office work in the app (issue 18): 書き出し (PDF, CSV), 依頼の取込 with its preview,
//! the survey's 提出 and 訂正, バンドル between two tablets, and the progress board's
//! record panel; and every control of these screens named in Japanese for a screen
//! reader. Real worker, engine and SQLCipher stores, driven through the UI.

use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use musubi_app::ui::{AppUi, Screen};
use musubi_engine::ids::DocId;
use serde_json::{Value, json};

use super::ui::{Fixture, settle, type_into, unlock};

const REQ_HEADER: &str =
    "保険者番号,被保険者番号,氏名,ふりがな,生年月日,性別,住所,郵便番号,電話番号,申請区分,申請日";

/// Three fictional requests: a person, a second person born on `birth`, and the first
/// row again.
fn requests(birth: &str) -> String {
    let first =
        "131011,0000012345,架空 花子,かくう はなこ,1944-05-12,2,東京都架空町1,,,1,2026-10-01";
    format!(
        "{REQ_HEADER}\n{first}\n131011,0000012346,架空 次郎,かくう じろう,{birth},1,東京都架空町2,,,1,2026-10-02\n{first}\n"
    )
}

fn import(f: &Fixture, docs: Vec<Value>) -> Vec<DocId> {
    let engine = f.engine();
    let inputs: Vec<(String, Value)> = docs
        .into_iter()
        .enumerate()
        .map(|(n, d)| (format!("doc {n}"), d))
        .collect();
    let out = engine.import(&inputs, 1_700_000_000_000).unwrap();
    engine.close().unwrap();
    out.ids
}

fn export(f: &Fixture, id: DocId) -> Value {
    let engine = f.engine();
    let v = engine.export(id).unwrap();
    engine.close().unwrap();
    v
}

fn office(h: &mut Harness<'static, AppUi>, tab: &str) {
    h.get_by_role_and_label(egui::Role::Button, "事務").click();
    settle(h);
    assert_eq!(h.state().screen(), Screen::Office);
    h.get_by_label(tab).click();
    h.run_ok();
}

/// The example case, for the example person imported now as a subject (not yet imported
/// itself, so a test can change it first).
fn case_of_example_person(f: &Fixture) -> Value {
    let person = crate::example()["subject"].clone();
    let subject = import(f, vec![json!({"kind": "subject", "person": person})])[0];
    let mut case = crate::example_of("case");
    case["subject_id"] = json!(subject.to_string());
    case
}

/// The office tabs by their button labels.
enum OfficeTab {
    Export,
    Bundle,
}

/// A tablet holding the example survey, unlocked on a tab of the 事務 screen.
fn example_on(tab: OfficeTab) -> (Fixture, Vec<DocId>, Harness<'static, AppUi>) {
    let f = Fixture::new();
    let ids = import(&f, vec![crate::example()]);
    let mut h = f.harness(1_200.0);
    unlock(&mut h);
    let label = match tab {
        OfficeTab::Export => "書き出し（PDF・CSV）",
        OfficeTab::Bundle => "バンドル（ファイルで受け渡し）",
    };
    office(&mut h, label);
    (f, ids, h)
}

/// Replaces the whole text of a field (select all, then type).
fn replace_text(h: &mut Harness<'static, AppUi>, label: &str, text: &str) {
    h.get_by_role_and_label(egui::Role::TextInput, label)
        .focus();
    h.run_ok();
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.run_ok();
    h.get_by_role_and_label(egui::Role::TextInput, label)
        .type_text(text);
    h.run_ok();
}

/// The text of every label on the screen that contains `part`.
fn texts(h: &Harness<'static, AppUi>, part: &str) -> Vec<String> {
    h.query_all_by_label_contains(part)
        .filter_map(|n| {
            let node = n.accesskit_node();
            node.label().or_else(|| node.value())
        })
        .collect()
}

#[test]
fn surveys_are_exported_as_pdf_and_shift_jis_csv_and_the_screen_says_where() {
    let (f, ids, mut h) = example_on(OfficeTab::Export);
    let out = f.path().join("書き出し先");
    h.get_by_label("すべて選ぶ").click();
    h.run_ok();
    replace_text(&mut h, "保存先フォルダ", out.to_str().unwrap());
    h.get_by_label("書き出す").click();
    settle(&mut h);
    let pdf = out.join(format!("認定調査票_{}.pdf", ids[0]));
    let bytes = std::fs::read(&pdf).expect("the PDF is where the screen says");
    assert!(bytes.starts_with(b"%PDF-"));
    assert!(
        texts(&h, "1 個のファイルを書き出しました").len() == 1,
        "{:?}",
        h.state().message()
    );
    h.get_by_label(pdf.display().to_string().as_str());

    // Again as Shift_JIS CSV: a new file, the PDF is left alone.
    h.get_by_label("CSV（文字コード Shift_JIS）").click();
    h.run_ok();
    h.get_by_label("書き出す").click();
    settle(&mut h);
    let csvs: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    assert_eq!(csvs.len(), 1, "{csvs:?}");
    let raw = std::fs::read(&csvs[0]).unwrap();
    let (text, _, bad) = encoding_rs::SHIFT_JIS.decode(&raw);
    assert!(!bad);
    assert!(text.contains("保険者番号"), "header in Shift_JIS");
    h.get_by_label(csvs[0].display().to_string().as_str());
    assert_eq!(std::fs::read(&pdf).unwrap(), bytes);
}

#[test]
fn a_request_file_is_previewed_row_by_row_and_imported_only_when_every_row_is_right() {
    let f = Fixture::new();
    let file = f.path().join("依頼.csv");
    // Row 2 has an impossible birth date; row 3 repeats row 1.
    std::fs::write(&file, requests("1951-02-30")).unwrap();
    let mut h = f.harness(1_200.0);
    unlock(&mut h);
    office(&mut h, "依頼の取込");
    type_into(&mut h, "依頼ファイル", file.to_str().unwrap());
    h.get_by_label("読み込んで確認").click();
    settle(&mut h);
    h.get_by_label("3 行：取り込み 1 件・重複 1 件・エラー 1 件");
    h.get_by_label("取り込みます（新しい利用者）");
    h.get_by_label("取込済みのため取り込みません（重複）");
    let errors = texts(&h, "エラー：");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("2行目 生年月日"), "{errors:?}");
    assert!(
        !errors[0].contains("1951-02-30"),
        "a value reached the screen"
    );
    assert!(h.query_by_label("1 件を取り込む").is_none());
    assert_eq!(
        f.engine().list().unwrap().len(),
        0,
        "a preview writes nothing"
    );

    // Corrected: two new rows (one person already known from row 1) and the repeat.
    std::fs::write(&file, requests("1951-02-28")).unwrap();
    h.get_by_label("読み込んで確認").click();
    settle(&mut h);
    h.get_by_label("2 件を取り込む").click();
    settle(&mut h);
    h.get_by_label_contains("2 件を取り込みました（重複 1 件は取り込んでいません）");
    let engine = f.engine();
    let kinds: Vec<String> = engine.list().unwrap().into_iter().map(|d| d.kind).collect();
    engine.close().unwrap();
    for (kind, n) in [("subject", 2), ("case", 2), ("survey", 2)] {
        assert_eq!(kinds.iter().filter(|k| *k == kind).count(), n, "{kinds:?}");
    }
    // The new surveys are in the visit list at once.
    assert_eq!(
        h.state()
            .people()
            .iter()
            .flat_map(|p| &p.docs)
            .filter(|d| d.kind == "survey")
            .count(),
        2
    );
}

#[test]
fn a_survey_is_submitted_then_amended_with_its_reason_kept() {
    let f = Fixture::new();
    let ids = import(&f, vec![crate::example()]);
    let id = ids[0];
    let before = export(&f, id)["items"]["1-7"].as_i64().unwrap();
    let mut h = f.harness(1_200.0);
    unlock(&mut h);
    h.state_mut().go(Screen::Survey(id));
    settle(&mut h);
    h.get_by_label("提出する").click();
    settle(&mut h);
    assert_eq!(export(&f, id)["status"], "submitted");
    h.get_by_label("提出済み（変更は訂正で）");
    // The 訂正 panel: item, corrected choice, reason.
    h.get_by_role_and_label(egui::Role::ComboBox, "訂正する項目")
        .click();
    h.run_ok();
    h.get_by_label("1-7 歩行").click();
    h.run_ok();
    let other = if before == 1 {
        "何かにつかまればできる"
    } else {
        "つかまらないでできる"
    };
    h.get_by_label(other).click();
    h.run_ok();
    // Without a reason nothing can be sent.
    assert!(h.get_by_label("訂正する").accesskit_node().is_disabled());
    type_into(&mut h, "訂正理由", "記入誤り");
    h.get_by_label("訂正する").click();
    settle(&mut h);
    let after = export(&f, id);
    assert_ne!(after["items"]["1-7"].as_i64().unwrap(), before);
    assert_eq!(after["status"], "submitted");
    let a = &after["amendments"][0];
    assert_eq!(a["pointer"], "/items/1-7");
    assert_eq!(a["before"], json!(before));
    assert_eq!(a["reason"], "記入誤り");
}

#[test]
fn a_bundle_written_on_one_tablet_is_imported_on_another() {
    let (a, ids, mut h) = example_on(OfficeTab::Bundle);
    let file = a.path().join("tablet-a.bundle");
    replace_text(&mut h, "書き出すファイル", file.to_str().unwrap());
    type_into(&mut h, "バンドルのパスフレーズ", "bundle pass 1");
    type_into(&mut h, "パスフレーズ（確認）", "bundle pass 2");
    h.get_by_label("確認のパスフレーズが一致しません。");
    assert!(
        h.get_by_label("バンドルを書き出す")
            .accesskit_node()
            .is_disabled()
    );
    replace_text(&mut h, "パスフレーズ（確認）", "bundle pass 1");
    h.get_by_label("バンドルを書き出す").click();
    settle(&mut h);
    h.get_by_label_contains("バンドルを書き出しました");
    assert!(file.exists());
    drop(h);

    let b = Fixture::new();
    let mut h = b.harness(1_200.0);
    unlock(&mut h);
    office(&mut h, "バンドル（ファイルで受け渡し）");
    type_into(&mut h, "取り込むファイル", file.to_str().unwrap());
    type_into(&mut h, "取り込むバンドルのパスフレーズ", "wrong");
    h.get_by_label("バンドルを取り込む").click();
    settle(&mut h);
    h.get_by_label("バンドルのパスフレーズが違います。");
    assert_eq!(b.engine().list().unwrap().len(), 0);
    replace_text(&mut h, "取り込むバンドルのパスフレーズ", "bundle pass 1");
    h.get_by_label("バンドルを取り込む").click();
    settle(&mut h);
    h.get_by_label_contains("新規 1 件・更新 0 件・変更なし 0 件");
    assert_eq!(export(&b, ids[0]), export(&a, ids[0]));
}

#[test]
fn a_case_is_advanced_and_given_an_exception_from_the_board() {
    let f = Fixture::new();
    let mut case = case_of_example_person(&f);
    case["application"]["date"] = json!("2026-10-01");
    case["phases"] = json!({});
    case["exceptions"] = json!([]);
    let id = import(&f, vec![case])[0];
    let mut h = f.harness(1_200.0);
    unlock(&mut h);
    h.get_by_label("認定の進捗").click();
    settle(&mut h);
    h.get_by_label_contains("の進捗を記録").click();
    h.run_ok();
    // 訪問調査日 with a wrong date: refused in Japanese, nothing written.
    h.get_by_role_and_label(egui::Role::ComboBox, "進捗の項目")
        .click();
    h.run_ok();
    h.get_by_label("訪問調査日").click();
    h.run_ok();
    replace_text(&mut h, "日付（YYYY-MM-DD）", "2026-10-32");
    h.get_by_label("進捗を記録する").click();
    settle(&mut h);
    let refused = texts(&h, "記録できません");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].contains("訪問調査日"), "{refused:?}");
    assert!(export(&f, id)["phases"].get("survey_visited").is_none());
    replace_text(&mut h, "日付（YYYY-MM-DD）", "2026-10-14");
    h.get_by_label("進捗を記録する").click();
    settle(&mut h);
    h.get_by_label("記録しました。");
    assert_eq!(export(&f, id)["phases"]["survey_visited"], "2026-10-14");
    // The board moved the case to 認定調査.
    h.get_by_label_contains("認定調査（1）");

    // A 延期通知 with its 処理見込期間.
    h.get_by_label("延期通知").click();
    h.run_ok();
    replace_text(&mut h, "日付", "2026-10-25");
    type_into(&mut h, "処理見込期間", "2026-11-20");
    type_into(&mut h, "理由", "主治医意見書の遅れ");
    h.get_by_label("例外を記録する").click();
    settle(&mut h);
    let e = &export(&f, id)["exceptions"][0];
    assert_eq!(e["kind"], "postponement");
    assert_eq!(e["date"], "2026-10-25");
    assert_eq!(e["expected_by"], "2026-11-20");
    assert_eq!(e["reason"], "主治医意見書の遅れ");
}

/// Issue 18 item 4: a screen reader names every control of every screen, in Japanese.
#[test]
fn every_control_on_every_screen_has_a_japanese_name() {
    let f = Fixture::new();
    let ids = import(&f, vec![crate::example()]);
    let case = case_of_example_person(&f);
    import(&f, vec![case]);
    let mut h = f.harness(1_200.0);
    let check = |h: &Harness<'static, AppUi>, screen: &str| {
        let mut controls = 0;
        for node in h.root().children_recursive() {
            let n = node.accesskit_node();
            use egui::accesskit::Role;
            if !matches!(
                n.role(),
                Role::Button
                    | Role::CheckBox
                    | Role::TextInput
                    | Role::PasswordInput
                    | Role::ComboBox
                    | Role::RadioButton
                    | Role::Slider
                    | Role::SpinButton
                    | Role::Link
            ) {
                continue;
            }
            controls += 1;
            let label = n.label().unwrap_or_default();
            assert!(
                label.chars().any(|c| ('\u{3040}'..='\u{30ff}').contains(&c)
                    || ('\u{4e00}'..='\u{9fff}').contains(&c)),
                "{screen}: a {:?} has no Japanese name: {label:?}",
                n.role()
            );
        }
        assert!(controls > 2, "{screen}: {controls} controls");
    };
    check(&h, "解錠");
    unlock(&mut h);
    check(&h, "訪問一覧");
    h.state_mut().go(Screen::Survey(ids[0]));
    settle(&mut h);
    check(&h, "認定調査票");
    for tab in [
        "書き出し（PDF・CSV）",
        "依頼の取込",
        "バンドル（ファイルで受け渡し）",
    ] {
        office(&mut h, tab);
        check(&h, tab);
    }
    h.get_by_label("認定の進捗").click();
    settle(&mut h);
    h.get_by_label_contains("の進捗を記録").click();
    h.run_ok();
    check(&h, "認定の進捗");
    h.get_by_label_contains("同期").click();
    settle(&mut h);
    check(&h, "同期");
}
