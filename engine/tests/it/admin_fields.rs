//! Issue 19, administrative fields: the survey's `administration` and the case's
//! 被保険者区分, 特定疾病 and 主治医 in the schemas, and as optional columns of the
//! municipality's request file.

use crate::example;
use musubi_engine::care::request::{RequestError, case_doc, parse_requests, survey_doc};
use musubi_engine::schema::validate_document;
use serde_json::{Value, json};

/// The paths of the schema errors of `doc`.
fn error_paths(doc: &Value) -> Vec<String> {
    let (_, report) = validate_document(doc).unwrap();
    report.errors().map(|i| i.path.clone()).collect()
}

#[test]
fn administrative_fields_validate_and_stay_optional() {
    let survey = example("survey");
    let case = example("case");
    assert!(survey.get("administration").is_some());
    assert!(case.get("physician").is_some());
    assert_eq!(error_paths(&survey), Vec::<String>::new());
    assert_eq!(error_paths(&case), Vec::<String>::new());
    // Documents from before the fields stay valid.
    let mut old = survey.clone();
    old.as_object_mut().unwrap().remove("administration");
    assert_eq!(error_paths(&old), Vec::<String>::new());
    let mut old = case.clone();
    old.as_object_mut().unwrap().remove("physician");
    old["application"]
        .as_object_mut()
        .unwrap()
        .remove("insured_category");
    assert_eq!(error_paths(&old), Vec::<String>::new());
    // Every field with a good value, including the second survey and a 特定疾病.
    let mut good = survey.clone();
    good["administration"]["survey_count"] = json!(2);
    good["administration"]["second_survey_date"] = json!("2026-10-21");
    good["administration"]["current_situation"] = json!("施設");
    good["administration"]["service_category"] = json!("なし");
    good["administration"]["survey_kind"] = json!("3");
    assert_eq!(error_paths(&good), Vec::<String>::new());
    let mut good = case.clone();
    good["application"]["insured_category"] = json!("第2号被保険者");
    good["application"]["specified_disease"] =
        json!("両側の膝関節又は股関節に著しい変形を伴う変形性関節症");
    assert_eq!(error_paths(&good), Vec::<String>::new());
}

#[test]
fn bad_administrative_values_are_refused_at_their_field() {
    let survey = example("survey");
    let bad_survey: &[(&str, Value, &str)] = &[
        ("survey_count", json!(0), "/administration/survey_count"),
        ("survey_count", json!(10), "/administration/survey_count"),
        ("survey_count", json!("1"), "/administration/survey_count"),
        ("survey_kind", json!("7"), "/administration/survey_kind"),
        ("survey_kind", json!("A"), "/administration/survey_kind"),
        (
            "second_survey_date",
            json!("2026-02-30"),
            "/administration/second_survey_date",
        ),
        (
            "request_received",
            json!("令和8年9月26日"),
            "/administration/request_received",
        ),
        // Wrong check digit (…16 is right).
        (
            "contractor",
            json!({"office_number": "1370100017"}),
            "/administration/contractor/office_number",
        ),
        (
            "contractor",
            json!({"name": ""}),
            "/administration/contractor/name",
        ),
        (
            "contractor",
            json!({"phone": "03-0000-0000"}),
            "/administration/contractor",
        ),
        (
            "surveyor_number",
            json!("調査員１"),
            "/administration/surveyor_number",
        ),
        (
            "surveyor_number",
            json!("X".repeat(21)),
            "/administration/surveyor_number",
        ),
        (
            "current_situation",
            json!("入院"),
            "/administration/current_situation",
        ),
        (
            "service_category",
            json!("9"),
            "/administration/service_category",
        ),
        ("unknown", json!(1), "/administration"),
    ];
    for (field, value, path) in bad_survey {
        let mut s = survey.clone();
        s["administration"][*field] = value.clone();
        let paths = error_paths(&s);
        assert!(
            paths.iter().any(|p| p.starts_with(path)),
            "{field} = {value}: {paths:?}"
        );
    }
    let case = example("case");
    let bad_case: &[(&str, Value, &str)] = &[
        (
            "/application/insured_category",
            json!("第3号被保険者"),
            "/application/insured_category",
        ),
        (
            "/application/insured_category",
            json!("1"),
            "/application/insured_category",
        ),
        (
            "/application/specified_disease",
            json!("がん"),
            "/application/specified_disease",
        ),
        ("/physician", json!({"name": ""}), "/physician/name"),
        (
            "/physician",
            json!({"institution": "x".repeat(201)}),
            "/physician/institution",
        ),
        ("/physician", json!({"phone": "0"}), "/physician"),
    ];
    for (pointer, value, path) in bad_case {
        let mut c = case.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let target = if parent.is_empty() {
            &mut c
        } else {
            c.pointer_mut(parent).unwrap()
        };
        target[key] = value.clone();
        let paths = error_paths(&c);
        assert!(
            paths.iter().any(|p| p.starts_with(path)),
            "{pointer} = {value}: {paths:?}"
        );
    }
}

const BASE_HEAD: &str = "保険者番号,被保険者番号,氏名,ふりがな,生年月日,性別,住所,申請区分,申請日";
const BASE_ROW: &str =
    "131011,0000012345,架空 花子,かくう はなこ,1962-05-12,2,東京都架空町1,1,2026-09-18";

/// A request file with the base columns and `extra` columns (header, value).
fn request_csv(extra: &[(&str, &str)]) -> String {
    let mut head = BASE_HEAD.to_owned();
    let mut row = BASE_ROW.to_owned();
    for (h, v) in extra {
        head.push(',');
        head.push_str(h);
        row.push(',');
        row.push_str(v);
    }
    format!("{head}\n{row}\n")
}

#[test]
fn request_import_without_the_new_columns_is_unchanged() {
    let r = parse_requests(request_csv(&[]).as_bytes()).unwrap();
    let case = case_doc(&r[0], &"a".repeat(32));
    let survey = survey_doc(&r[0], &"b".repeat(32));
    assert!(survey.get("administration").is_none());
    assert!(case.get("physician").is_none());
    assert!(case["application"].get("insured_category").is_none());
    assert_eq!(error_paths(&case), Vec::<String>::new());
    assert_eq!(error_paths(&survey), Vec::<String>::new());
}

#[test]
fn request_import_fills_the_administrative_fields() {
    let cols = [
        ("被保険者区分", "2"),
        ("特定疾病", "13"),
        ("主治医氏名", "架空 医師"),
        ("医療機関名", "架空内科クリニック"),
        ("調査区分", "新規申請"),
        ("調査回数", "1"),
        ("委託先事業所番号", "1370100016"),
        ("委託先名称", "架空居宅介護支援事業所"),
        ("調査員番号", "T-0042"),
        ("受領日", "2026-09-20"),
        ("現在の状況", "在宅"),
        ("サービス区分", "介護"),
    ];
    let r = parse_requests(request_csv(&cols).as_bytes()).unwrap();
    let case = case_doc(&r[0], &"a".repeat(32));
    let survey = survey_doc(&r[0], &"b".repeat(32));
    assert_eq!(error_paths(&case), Vec::<String>::new());
    assert_eq!(error_paths(&survey), Vec::<String>::new());
    assert_eq!(case["application"]["insured_category"], "第2号被保険者");
    // Item 13 of 介護保険法施行令第2条.
    assert_eq!(case["application"]["specified_disease"], "脳血管疾患");
    assert_eq!(
        case["physician"],
        json!({"name": "架空 医師", "institution": "架空内科クリニック"})
    );
    assert_eq!(
        survey["administration"],
        json!({
            "survey_kind": "1",
            "survey_count": 1,
            "contractor": {"office_number": "1370100016", "name": "架空居宅介護支援事業所"},
            "surveyor_number": "T-0042",
            "request_received": "2026-09-20",
            "current_situation": "在宅",
            "service_category": "介護"
        })
    );
    // The same through JSON keys, with the disease by name and a number for 調査回数.
    let j = json!([{
        "insurer_number": "131011", "insured_number": "0000012345", "name": "架空 花子",
        "name_kana": "かくう はなこ", "birth_date": "1962-05-12", "sex": 2,
        "address": "東京都架空町1", "application_kind": "1", "application_date": "2026-09-18",
        "insured_category": "第2号被保険者", "specified_disease": "関節リウマチ",
        "survey_count": 2, "contractor_office_number": "1370100016"
    }]);
    let r = parse_requests(j.to_string().as_bytes()).unwrap();
    assert_eq!(
        r[0].admin.specified_disease.as_deref(),
        Some("関節リウマチ")
    );
    assert_eq!(r[0].admin.survey_count, Some(2));
    // Empty optional cells are absent, not errors.
    let r = parse_requests(request_csv(&[("特定疾病", ""), ("調査回数", "")]).as_bytes()).unwrap();
    assert_eq!(r[0].admin, Default::default());
}

#[test]
fn bad_administrative_columns_name_row_and_field() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("被保険者区分", "3")], "被保険者区分"),
        (&[("被保険者区分", "2"), ("特定疾病", "17")], "特定疾病"),
        (&[("被保険者区分", "2"), ("特定疾病", "がん")], "特定疾病"),
        // A 特定疾病 for a 第1号被保険者, or without the category.
        (&[("被保険者区分", "1"), ("特定疾病", "1")], "特定疾病"),
        (&[("特定疾病", "1")], "特定疾病"),
        (&[("調査区分", "9")], "調査区分"),
        (&[("調査回数", "0")], "調査回数"),
        (&[("調査回数", "一")], "調査回数"),
        (&[("委託先事業所番号", "1370100017")], "委託先事業所番号"),
        (&[("委託先事業所番号", "13701")], "委託先事業所番号"),
        (&[("調査員番号", "調査員1")], "調査員番号"),
        (&[("受領日", "2026-13-01")], "受領日"),
        (&[("現在の状況", "入院")], "現在の状況"),
        (&[("サービス区分", "2")], "サービス区分"),
    ];
    for (cols, field) in cases {
        let csv = request_csv(cols);
        match parse_requests(csv.as_bytes()) {
            Err(RequestError::Field {
                row,
                field: f,
                problem,
            }) => {
                assert_eq!((row, f), (1, *field), "{cols:?}");
                // The message is Japanese and never echoes the value.
                let shown = format!(
                    "{}",
                    RequestError::Field {
                        row,
                        field: f,
                        problem: problem.clone()
                    }
                );
                assert!(shown.starts_with(&format!("1行目 {field}: ")), "{shown}");
                for (_, v) in *cols {
                    if v.chars().count() > 1 {
                        assert!(!problem.contains(v), "{problem} echoes {v}");
                    }
                }
            }
            other => panic!("{cols:?}: {other:?}"),
        }
    }
}
