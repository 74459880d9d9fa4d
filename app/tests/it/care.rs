//! The care commands through the real binary on a real store: all 57 警告コード via
//! `musubi survey check --json`, the survey workflow and amendments in `doc history`,
//! request import with duplicates and bad rows, cases and the 30-day rule, vital signs.

use crate::{Tablet, example, stderr};
use serde_json::{Value, json};
use std::path::Path;

fn data(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../engine/tests/data")
            .join(name),
    )
    .unwrap()
}

type Cond = (String, i64);

fn warning_table() -> Vec<(String, Vec<Cond>, Vec<Cond>)> {
    let parse = |s: &str| -> Vec<Cond> {
        s.split('+')
            .map(|t| {
                let (k, v) = t.split_once('=').unwrap();
                (k.to_owned(), v.parse().unwrap())
            })
            .collect()
    };
    data("warning-codes.tsv")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("code") && !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (c[0].to_owned(), parse(c[1]), parse(c[2]))
        })
        .collect()
}

fn check(t: &Tablet, id: &str) -> Value {
    serde_json::from_str(&t.ok(&["survey", "check", id, "--json"])).unwrap()
}

fn codes(v: &Value) -> Vec<String> {
    v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn all_57_codes_through_the_binary() {
    let t = Tablet::new();
    let base: Value = serde_json::from_str(&data("warning-base.json")).unwrap();
    let table = warning_table();
    assert_eq!(table.len(), 57);
    // One import: the base, then per code the combination and the same survey with the
    // first item changed back (otherwise identical, without the combination).
    let mut files = vec![t.write_json("base.json", &base)];
    for (code, a, b) in &table {
        let mut with = base.clone();
        for (k, v) in a.iter().chain(b) {
            with["items"][k] = json!(v);
        }
        let mut without = with.clone();
        let (k, v) = &a[0];
        without["items"][k] = json!(if *v == 1 { 2 } else { 1 });
        files.push(t.write_json(&format!("with-{code}.json"), &with));
        files.push(t.write_json(&format!("without-{code}.json"), &without));
    }
    let mut args = vec!["doc".to_owned(), "import".to_owned()];
    args.extend(files.iter().map(|p| p.to_str().unwrap().to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ids: Vec<String> = t.ok(&args).lines().map(str::to_owned).collect();
    assert_eq!(ids.len(), 1 + 2 * 57);
    let base_check = check(&t, &ids[0]);
    assert_eq!(base_check, json!({"errors": [], "warnings": []}));
    for (i, (code, a, b)) in table.iter().enumerate() {
        let with = check(&t, &ids[1 + 2 * i]);
        assert_eq!(codes(&with), vec![code.clone()], "code {code}");
        let items: Vec<&str> = a.iter().chain(b).map(|(k, _)| k.as_str()).collect();
        assert_eq!(with["warnings"][0]["items"], json!(items), "code {code}");
        assert_eq!(with["errors"], json!([]), "code {code}");
        let without = check(&t, &ids[2 + 2 * i]);
        assert!(
            !codes(&without).contains(code),
            "code {code} without the combination"
        );
    }
}

fn draft_example() -> Value {
    let mut v = example();
    v["status"] = json!("draft");
    v
}

#[test]
fn submitted_survey_changes_only_by_amendment_kept_in_history() {
    let t = Tablet::new();
    let id = t.import(&draft_example());
    // Submission needs completion first.
    let out = t.run(&["survey", "submit", &id]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    t.ok(&["survey", "complete", &id]);
    t.ok(&["survey", "submit", &id]);
    let before = t.export(&id);
    assert_eq!(before["status"], "submitted");
    assert_eq!(before["workflow"]["submitted_by"], "調査員テスト");
    assert!(before["workflow"]["completed_at"].is_string());
    // Every generic edit path refuses, nothing written.
    for (ptr, val) in [
        ("/items/1-3", "3"),
        ("/status", "\"draft\""),
        ("/special_notes/-", r#"{"item":"1-3","text":"追記"}"#),
    ] {
        let out = t.run(&["doc", "set", &id, ptr, val]);
        assert_eq!(out.status.code(), Some(2), "{ptr}: {}", stderr(&out));
        assert!(stderr(&out).contains("提出済み"), "{}", stderr(&out));
    }
    assert_eq!(t.export(&id), before);
    // An amendment without a reason is refused by clap; with one it goes through.
    let out = t.run(&["survey", "amend", &id, "/items/1-3", "3"]);
    assert_eq!(out.status.code(), Some(2));
    t.ok(&[
        "survey",
        "amend",
        &id,
        "/items/1-3",
        "3",
        "--reason",
        "寝返りの確認動作を記入し誤った",
    ]);
    let after = t.export(&id);
    assert_eq!(after["status"], "submitted");
    assert_eq!(after["items"]["1-3"], 3);
    let a = &after["amendments"][0];
    assert_eq!(
        (
            a["pointer"].clone(),
            a["before"].clone(),
            a["after"].clone(),
            a["by"].clone()
        ),
        (
            json!("/items/1-3"),
            json!(2),
            json!(3),
            json!("調査員テスト")
        )
    );
    let history = t.ok(&["doc", "history", &id]);
    assert!(history.contains("訂正 (amend)"), "{history}");
    assert!(
        history.contains("/items/1-3: 2 何かにつかまればできる → 3 できない"),
        "{history}"
    );
    assert!(history.contains("提出 (submit)") && history.contains("調査完了 (complete)"));
    // The amended survey still passes the hard rules and can be checked.
    let c = check(&t, &id);
    assert_eq!(c, json!({"errors": [], "warnings": []}));
}

#[test]
fn complete_refuses_hard_problems_and_dismiss_is_recorded() {
    let t = Tablet::new();
    let mut v = draft_example();
    v["items"].as_object_mut().unwrap().remove("2-4");
    v["items"]["1-3"] = json!(3);
    v["items"]["1-4"] = json!(1);
    v["items"]["1-8"] = json!(3);
    let id = t.import(&v);
    let c = check(&t, &id);
    assert_eq!(c["errors"][0]["code"], "E01");
    assert_eq!(c["errors"][0]["items"], json!(["2-4"]));
    assert_eq!(codes(&c), vec!["47"]);
    let out = t.run(&["survey", "complete", &id]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("2-4"), "{}", stderr(&out));
    assert_eq!(t.export(&id)["status"], "draft");
    // The workflow fields are not writable through doc set.
    let out = t.run(&["doc", "set", &id, "/status", "\"completed\""]);
    assert_eq!(out.status.code(), Some(2));
    t.ok(&[
        "survey",
        "dismiss",
        &id,
        "47",
        "--reason",
        "起き上がりは介助バーを使えばできる",
    ]);
    let c = check(&t, &id);
    assert_eq!(c["warnings"][0]["code"], "47");
    assert_eq!(
        c["warnings"][0]["dismissed"]["reason"],
        "起き上がりは介助バーを使えばできる"
    );
    assert_eq!(
        t.export(&id)["dismissals"][0]["items"],
        json!(["1-3", "1-4"])
    );
    t.ok(&["doc", "set", &id, "/items/2-4", "1"]);
    // Warnings are reported live on an edit, never blocking it.
    let out = t.run(&["doc", "set", &id, "/items/1-8", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("警告コード48"), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("警告コード47"),
        "dismissed: {}",
        stderr(&out)
    );
    t.ok(&["survey", "complete", &id]);
    // A completed survey cannot be made incomplete by an edit; reopen first.
    let out = t.run(&["doc", "set", &id, "/items/1-1", "[]"]);
    assert_eq!(out.status.code(), Some(2));
    t.ok(&["survey", "reopen", &id]);
    assert_eq!(t.export(&id)["status"], "draft");
}

const REQ_HEADER: &str =
    "保険者番号,被保険者番号,氏名,ふりがな,生年月日,性別,住所,郵便番号,電話番号,申請区分,申請日";

#[test]
fn request_import_prefills_and_detects_duplicates() {
    let t = Tablet::new();
    let csv = format!(
        "{REQ_HEADER}\n131011,0000012345,架空 花子,かくう はなこ,1944-05-12,2,\"東京都千代田区架空町1-2-3, 205号室\",100-0000,03-0000-1205,2,2026-09-18\n\
         122192,H000000001,架空 一郎,かくう いちろう,1950-03-03,1,千葉県市原市架空1,,,1,2026-10-01\n"
    );
    let p = t.tmp.path().join("requests.csv");
    std::fs::write(&p, &csv).unwrap();
    let out: Value =
        serde_json::from_str(&t.ok(&["request", "import", p.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(out["created"].as_array().unwrap().len(), 2);
    let survey = t.export(out["created"][0]["survey"].as_str().unwrap());
    assert_eq!(survey["status"], "draft");
    assert_eq!(survey["subject"]["insurer_number"], "131011");
    assert_eq!(
        survey["subject"]["address"],
        "東京都千代田区架空町1-2-3, 205号室"
    );
    assert_eq!(survey["case_id"], out["created"][0]["case"]);
    let case = t.export(out["created"][0]["case"].as_str().unwrap());
    assert_eq!(case["application"]["kind"], "2");
    assert_eq!(case["subject_id"], out["created"][0]["subject"]);
    let n_docs = t.list().as_array().unwrap().len();
    assert_eq!(n_docs, 6);
    // Importing again doubles nothing (the same file as Shift_JIS, plus one new row).
    let more = format!(
        "{csv}131011,0000012345,架空 花子,かくう はなこ,1944-05-12,2,東京都架空町,,,3,2026-11-20\n"
    );
    let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode(&more);
    std::fs::write(&p, &sjis).unwrap();
    let out2 = t.run(&["request", "import", p.to_str().unwrap(), "--json"]);
    assert!(out2.status.success(), "{}", stderr(&out2));
    let v: Value = serde_json::from_slice(&out2.stdout).unwrap();
    assert_eq!(v["duplicates"], json!([1, 2]));
    assert_eq!(v["created"].as_array().unwrap().len(), 1);
    // Same person: the subject is reused, not doubled.
    assert_eq!(v["created"][0]["subject"], out["created"][0]["subject"]);
    assert!(stderr(&out2).contains("1行目: 取込済み"));
    assert_eq!(t.list().as_array().unwrap().len(), n_docs + 2);
    // A bad row names row and field, shows no value, writes nothing.
    let bad = format!(
        "{REQ_HEADER}\n122069,0000000777,架空 次郎,かくう じろう,1951-01-01,1,木更津市架空,,,1,2026-10-02\n122069,0000000778,架空 三郎,かくう さぶろう,1951-02-30,1,木更津市架空,,,1,2026-10-02\n"
    );
    std::fs::write(&p, &bad).unwrap();
    let out3 = t.run(&["request", "import", p.to_str().unwrap()]);
    assert_eq!(out3.status.code(), Some(2));
    let err = stderr(&out3);
    assert!(err.contains("2行目 生年月日"), "{err}");
    assert!(
        !err.contains("1951-02-30") && !err.contains("架空"),
        "{err}"
    );
    assert_eq!(t.list().as_array().unwrap().len(), n_docs + 2);
}

#[test]
fn renewal_without_postponement_notice_by_agreement() {
    let t = Tablet::new();
    let req = |kind: &str, date: &str, insured: &str| {
        json!({"insurer_number": "131011", "insured_number": insured, "name": "架空 花子",
            "name_kana": "かくう はなこ", "birth_date": "1944-05-12", "sex": 2,
            "address": "東京都架空町1", "application_kind": kind, "application_date": date})
    };
    let p = t.write_json(
        "req.json",
        &json!([
            req("2", "2026-09-18", "0000012345"),
            req("1", "2026-09-18", "0000012346")
        ]),
    );
    let imported: Value =
        serde_json::from_str(&t.ok(&["request", "import", p.to_str().unwrap(), "--json"])).unwrap();
    let renewal = imported["created"][0]["case"].as_str().unwrap().to_owned();
    let first = imported["created"][1]["case"].as_str().unwrap().to_owned();
    let show = |id: &str, today: &str| -> Value {
        serde_json::from_str(&t.ok(&["case", "show", id, "--today", today, "--json"])).unwrap()
    };
    assert_eq!(
        show(&renewal, "2026-10-25")["summary"]["deadline"]["overdue"],
        true
    );
    // Only a 更新申請 can carry the agreement, and it needs the current validity's end.
    let out = t.run(&[
        "case",
        "waive",
        &first,
        "--agreed-on",
        "2026-10-07",
        "--current-valid-to",
        "2026-10-31",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("更新申請"), "{}", stderr(&out));
    let out = t.run(&["case", "waive", &renewal, "--agreed-on", "2026-10-07"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--current-valid-to"),
        "{}",
        stderr(&out)
    );
    let out = t.run(&[
        "case",
        "waive",
        &renewal,
        "--agreed-on",
        "2026-10-32",
        "--current-valid-to",
        "2026-10-31",
    ]);
    assert_eq!(out.status.code(), Some(2));
    t.ok(&[
        "--staff",
        "架空 太郎",
        "case",
        "waive",
        &renewal,
        "--agreed-on",
        "2026-10-07",
        "--current-valid-to",
        "2026-10-31",
        "--note",
        "電話で本人の同意を得た",
    ]);
    let s = show(&renewal, "2026-10-25");
    // The agreement is recorded in the case document, with who recorded it.
    assert_eq!(s["case"]["postponement_waiver"]["agreed_on"], "2026-10-07");
    assert_eq!(s["case"]["postponement_waiver"]["recorded_by"], "架空 太郎");
    assert_eq!(s["case"]["application"]["current_valid_to"], "2026-10-31");
    assert_eq!(s["summary"]["deadline"]["overdue"], false);
    assert_eq!(s["summary"]["deadline"]["waived_until"], "2026-10-31");
    let text = t.ok(&["case", "list", "--today", "2026-10-25"]);
    assert!(text.contains("延期通知省略の同意あり"), "{text}");
    let flagged = t.ok(&[
        "case",
        "list",
        "--today",
        "2026-10-25",
        "--flagged",
        "--json",
    ]);
    let flagged: Value = serde_json::from_str(&flagged).unwrap();
    let ids: Vec<&str> = flagged
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [first.as_str()], "only the 新規申請 is past the limit");
    // After the current validity ends without a decision, it is flagged again.
    assert_eq!(
        show(&renewal, "2026-11-01")["summary"]["deadline"]["overdue"],
        true
    );
}

#[test]
fn cases_thirty_day_rule_and_listing() {
    let t = Tablet::new();
    let json_req = json!([{"insurer_number": "131011", "insured_number": "0000012345", "name": "架空 花子",
        "name_kana": "かくう はなこ", "birth_date": "1944-05-12", "sex": 2, "address": "東京都架空町1",
        "application_kind": "1", "application_date": "2026-09-18"}]);
    let p = t.write_json("req.json", &json_req);
    let imported: Value =
        serde_json::from_str(&t.ok(&["request", "import", p.to_str().unwrap(), "--json"])).unwrap();
    let case_id = imported["created"][0]["case"].as_str().unwrap().to_owned();
    let list = |today: &str| -> Value {
        serde_json::from_str(&t.ok(&["case", "list", "--today", today, "--json"])).unwrap()
    };
    let l = list("2026-10-18");
    assert_eq!(l[0]["name"], "架空 花子");
    assert_eq!(l[0]["phase"], "application");
    assert_eq!(l[0]["deadline"]["due"], "2026-10-18");
    assert_eq!(l[0]["deadline"]["overdue"], false);
    assert_eq!(list("2026-10-19")[0]["deadline"]["overdue"], true);
    let text = t.ok(&["case", "list", "--today", "2026-10-19"]);
    assert!(text.contains("申請から31日経過"), "{text}");
    t.ok(&["case", "advance", &case_id, "survey_visited", "2026-10-14"]);
    t.ok(&[
        "case",
        "advance",
        &case_id,
        "opinion_requested",
        "2026-09-25",
    ]);
    t.ok(&[
        "case",
        "advance",
        &case_id,
        "committee_scheduled",
        "2026-11-05",
    ]);
    // Bad values name the field; dates before the application are refused.
    let out = t.run(&["case", "advance", &case_id, "decision_date", "2026-13-01"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("decision_date"));
    let out = t.run(&["case", "advance", &case_id, "survey_visited", "2026-09-01"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    t.ok(&[
        "case",
        "exception",
        &case_id,
        "延期通知",
        "--date",
        "2026-10-10",
        "--expected-by",
        "2026-11-10",
        "--reason",
        "主治医意見書の提出遅れ",
    ]);
    let l = list("2026-10-19");
    assert_eq!(l[0]["deadline"]["overdue"], false);
    assert_eq!(l[0]["phase"], "committee");
    assert_eq!(l[0]["committee_date"], "2026-11-05");
    assert_eq!(l[0]["committee_date_is_scheduled"], true);
    assert_eq!(
        list("2026-11-11")[0]["deadline"]["postponement_overdue"],
        true
    );
    t.ok(&["case", "advance", &case_id, "decision_date", "2026-11-06"]);
    t.ok(&["case", "advance", &case_id, "secondary_result", "22"]);
    t.ok(&["case", "advance", &case_id, "valid_from", "2026-09-18"]);
    t.ok(&["case", "advance", &case_id, "valid_to", "2027-09-30"]);
    t.ok(&["case", "advance", &case_id, "valid_months", "12"]);
    t.ok(&["case", "advance", &case_id, "standard_minutes", "62.5"]);
    let l = list("2027-08-15");
    assert_eq!(l[0]["phase"], "decision");
    assert_eq!(l[0]["deadline"]["overdue"], false);
    assert_eq!(l[0]["renewal_due"], true);
    assert_eq!(l[0]["secondary_result"], "22");
    assert_eq!(l[0]["secondary_result_label"], "要介護2");
    assert_eq!(l[0]["application_kind_label"], "新規申請");
    let flagged: Value = serde_json::from_str(&t.ok(&[
        "case",
        "list",
        "--today",
        "2026-12-01",
        "--flagged",
        "--json",
    ]))
    .unwrap();
    assert_eq!(flagged, json!([]));
    let show = t.ok(&["case", "show", &case_id, "--today", "2026-12-01"]);
    assert!(show.contains("要介護認定等基準時間: 62.5"), "{show}");
    // A new case for the existing subject through case new.
    let subject = imported["created"][0]["subject"].as_str().unwrap();
    let new_id = t.ok(&[
        "case",
        "new",
        "--subject",
        subject,
        "--date",
        "2027-08-01",
        "--kind",
        "2",
    ]);
    assert_eq!(
        t.export(new_id.trim())["application"]["insured_number"],
        "0000012345"
    );
}

#[test]
fn vital_signs_hard_and_soft() {
    let t = Tablet::new();
    let mut v = crate::example_of("visit-record");
    // The example belongs to another office (a 訪問看護 station); this tablet's own record.
    v.as_object_mut().unwrap().remove("office");
    v["vitals"]["spo2"] = json!(120);
    let p = t.write_json("visit.json", &v);
    let out = t.run(&["doc", "import", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/vitals/spo2"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("120"));
    v["vitals"]["spo2"] = json!(97);
    v["vitals"]["diastolic_bp"] = json!(150);
    let p = t.write_json("visit.json", &v);
    let out = t.run(&["doc", "import", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/vitals/diastolic_bp"),
        "{}",
        stderr(&out)
    );
    assert_eq!(t.list(), json!([]));
    v["vitals"]["diastolic_bp"] = json!(78);
    let id = t.import(&v);
    let out = t.run(&["doc", "set", &id, "/vitals/pulse", "300"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/vitals/pulse"), "{}", stderr(&out));
    t.ok(&["doc", "set", &id, "/vitals/pulse", "130"]);
    let c: Value = serde_json::from_str(&t.ok(&["visit", "check", &id, "--json"])).unwrap();
    assert_eq!(c["errors"], json!([]));
    assert_eq!(c["warnings"][0]["code"], "V01");
    assert_eq!(c["warnings"][0]["items"], json!(["vitals/pulse"]));
}

/// Issue 19: the administrative columns of a request file reach the stored survey and
/// case; `case details` records 被保険者区分, 特定疾病 and the 主治医 (a 特定疾病 only for
/// 第2号); `export csv` appends both documents' fields; nothing of them is logged.
#[test]
fn administrative_fields_from_request_to_csv() {
    let t = Tablet::new();
    let csv = format!(
        "{REQ_HEADER},被保険者区分,特定疾病,主治医氏名,医療機関名,依頼区分,調査回数,委託先事業所番号,調査員番号,受領日,現在の状況,サービス区分\n\
         131011,0000012345,架空 花子,かくう はなこ,1962-05-12,2,東京都架空町1,,,1,2026-09-18,2,13,架空 医師,架空内科クリニック,1,1,1370100016,T-0042,2026-09-20,在宅,介護\n\
         122192,H000000001,架空 一郎,かくう いちろう,1950-03-03,1,千葉県市原市架空1,,,2,2026-10-01,,,,,,,,,,,\n"
    );
    let p = t.tmp.path().join("requests.csv");
    std::fs::write(&p, &csv).unwrap();
    let out: Value =
        serde_json::from_str(&t.ok(&["request", "import", p.to_str().unwrap(), "--json"])).unwrap();
    let survey_id = out["created"][0]["survey"].as_str().unwrap().to_owned();
    let case_id = out["created"][0]["case"].as_str().unwrap().to_owned();
    let survey = t.export(&survey_id);
    assert_eq!(
        survey["administration"]["contractor"]["office_number"],
        "1370100016"
    );
    assert_eq!(survey["administration"]["current_situation"], "在宅");
    let case = t.export(&case_id);
    assert_eq!(case["application"]["specified_disease"], "脳血管疾患");
    assert_eq!(case["physician"]["institution"], "架空内科クリニック");
    // The second row had none: its documents have no such fields.
    let plain = t.export(out["created"][1]["survey"].as_str().unwrap());
    assert!(plain.get("administration").is_none());
    let plain_case = out["created"][1]["case"].as_str().unwrap().to_owned();

    // case details: a 特定疾病 for a 第1号 is refused and changes nothing.
    let refused = t.run(&["case", "details", &plain_case, "--specified-disease", "2"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("--specified-disease"),
        "{}",
        stderr(&refused)
    );
    assert!(
        t.export(&plain_case)["application"]
            .get("specified_disease")
            .is_none()
    );
    t.ok(&[
        "case",
        "details",
        &plain_case,
        "--insured-category",
        "2",
        "--specified-disease",
        "2",
        "--physician",
        "架空 二郎",
        "--institution",
        "架空病院",
    ]);
    let c = t.export(&plain_case);
    assert_eq!(c["application"]["insured_category"], "第2号被保険者");
    assert_eq!(c["application"]["specified_disease"], "関節リウマチ");
    assert_eq!(
        c["physician"],
        json!({"name": "架空 二郎", "institution": "架空病院"})
    );
    t.ok(&[
        "case",
        "advance",
        &case_id,
        "opinion_received",
        "2026-10-09",
    ]);

    // A bad optional column names row and field and writes nothing.
    let n = t.list().as_array().unwrap().len();
    let bad = format!(
        "{REQ_HEADER},委託先事業所番号\n122069,0000000777,架空 次郎,かくう じろう,1951-01-01,1,木更津市架空,,,1,2026-10-02,1370100017\n"
    );
    std::fs::write(&p, &bad).unwrap();
    let out = t.run(&["request", "import", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("1行目 委託先事業所番号"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("1370100017"), "{}", stderr(&out));
    assert_eq!(t.list().as_array().unwrap().len(), n);

    let csv_path = t.tmp.path().join("out.csv");
    let out = t.run(&[
        "export",
        "csv",
        &survey_id,
        "--out",
        csv_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let all = stderr(&out);
    assert!(
        !all.contains("架空 医師") && !all.contains("架空 花子"),
        "{all}"
    );
    let text = std::fs::read_to_string(&csv_path).unwrap();
    let mut lines = text.trim_start_matches('\u{feff}').lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    let cell = |h: &str| row[header.iter().position(|x| *x == h).unwrap()];
    assert_eq!(cell("委託先事業所番号"), "1370100016");
    assert_eq!(cell("被保険者区分"), "第2号被保険者");
    assert_eq!(cell("特定疾病"), "脳血管疾患");
    assert_eq!(cell("主治医氏名"), "架空 医師");
    assert_eq!(cell("主治医意見書入手日"), "2026-10-09");
}
