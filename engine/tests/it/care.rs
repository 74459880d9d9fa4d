//! The care rules against independent test data: every 警告コード of the reference's
//! table (engine/tests/data/warning-codes.tsv, transcribed from care-domain.md §1.6) on
//! a neutral survey (warning-base.json), the app-level rules, the vital-sign table
//! against the schema, and a property test that the checks never panic.

use musubi_engine::care::visit::{self, VITALS};
use musubi_engine::care::workflow::{self, Status};
use musubi_engine::care::{check_survey, request};
use musubi_engine::schema::{Pointer, validate_document};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::path::Path;

pub type Cond = (String, i64);

fn data(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name),
    )
    .unwrap()
}

/// (code, A conditions, B conditions) from the TSV.
pub fn warning_table() -> Vec<(String, Vec<Cond>, Vec<Cond>)> {
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
            let cols: Vec<&str> = l.split('\t').collect();
            (cols[0].to_owned(), parse(cols[1]), parse(cols[2]))
        })
        .collect()
}

pub fn base() -> Value {
    serde_json::from_str(&data("warning-base.json")).unwrap()
}

/// The base survey with the code's combination set.
pub fn with_combination(a: &[Cond], b: &[Cond]) -> Value {
    let mut doc = base();
    for (k, v) in a.iter().chain(b) {
        doc["items"][k] = json!(v);
    }
    doc
}

fn codes(doc: &Value) -> Vec<String> {
    check_survey(doc)
        .warnings
        .into_iter()
        .map(|w| w.code)
        .collect()
}

#[test]
fn table_has_57_codes_in_order() {
    let t = warning_table();
    assert_eq!(t.len(), 57);
    for (i, (code, _, _)) in t.iter().enumerate() {
        assert_eq!(code, &format!("{:02}", i + 1));
    }
}

#[test]
fn base_is_valid_complete_and_quiet() {
    let doc = base();
    let (_, report) = validate_document(&doc).unwrap();
    assert!(report.is_ok(), "{report:?}");
    let c = check_survey(&doc);
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn every_code_fires_alone_and_clears() {
    for (code, a, b) in warning_table() {
        let doc = with_combination(&a, &b);
        let (_, report) = validate_document(&doc).unwrap();
        assert!(report.is_ok(), "code {code}: {report:?}");
        let check = check_survey(&doc);
        assert!(check.errors.is_empty(), "code {code}: {:?}", check.errors);
        assert_eq!(codes(&doc), vec![code.clone()], "code {code}");
        let w = &check.warnings[0];
        let expected_items: Vec<String> = a.iter().chain(&b).map(|(k, _)| k.clone()).collect();
        assert_eq!(w.items, expected_items, "code {code}: items");
        assert!(w.message.contains(&format!("警告コード{code}")));
        // Changing any item of either side clears it.
        for (k, v) in a.iter().chain(&b) {
            let mut changed = doc.clone();
            changed["items"][k] = json!(if *v == 1 { 2 } else { 1 });
            assert!(
                !codes(&changed).contains(&code),
                "code {code}: changing {k} does not clear it"
            );
        }
    }
}

#[test]
fn hard_rules_block_completion() {
    let mut doc = base();
    doc["items"].as_object_mut().unwrap().remove("2-4");
    doc["items"].as_object_mut().unwrap().remove("7-2");
    let c = check_survey(&doc);
    let unanswered: Vec<&str> = c
        .errors
        .iter()
        .filter(|p| p.code == "E01")
        .map(|p| p.items[0].as_str())
        .collect();
    assert_eq!(unanswered, vec!["2-4", "7-2"]);
    assert!(workflow::complete(&doc, "a", "2026-10-14T10:00:00+09:00").is_err());

    let mut doc = base();
    doc["items"]["1-2"] = json!([1, 3]);
    let c = check_survey(&doc);
    assert_eq!(c.errors.len(), 1);
    assert_eq!(
        (c.errors[0].code.as_str(), c.errors[0].items[0].as_str()),
        ("E02", "1-2")
    );

    let mut doc = base();
    doc["items"]["1-1"] = json!([]);
    assert_eq!(check_survey(&doc).errors[0].code, "E01");
    // 7-2 code 9 記載なし is import-only: not an answer for completion.
    let mut doc = base();
    doc["items"]["7-2"] = json!(9);
    assert_eq!(check_survey(&doc).errors[0].code, "E01");
    // 6 may be empty (no special medical care).
    assert!(check_survey(&base()).errors.is_empty());
}

/// Phrasings of a frequency as surveyors write them, each with the option the text's
/// definitions prescribe (3 ある: at least weekly; 2 ときどきある: at least monthly, less
/// than weekly; 1 ない: less than monthly), or 0 when the phrase decides nothing. Written
/// from the definitions, not from the parser's patterns.
const FREQUENCY_PHRASES: &[(&str, i64)] = &[
    (
        "週1回程度、夕方になると「家に帰る」と言って玄関に向かう。",
        3,
    ),
    ("週に2〜3回、夜中に大声を出す。", 3),
    ("週に２、３回ある。", 3),
    ("週三回ほど同じ話を繰り返す。", 3),
    ("1週間に1回は作話がみられる。", 3),
    ("毎日、同じことを何度も尋ねる。", 3),
    ("ほぼ毎日、午後になると落ち着かなくなる。", 3),
    ("毎晩、夜間に起き出して廊下を歩き回る。", 3),
    ("1日に数回、物を探して職員を呼ぶ。", 3),
    ("隔日で入浴を拒む。", 3),
    ("7日に1回くらいは介護に抵抗する。", 3),
    ("月4回程度、夜間に大声を出す。", 3),
    ("月2回、財布が盗られたと訴える。", 2),
    ("月に1回、外出して戻れなくなり警察に保護された。", 2),
    ("月に一度、家族に電話で同じ話をする。", 2),
    ("この1か月で3回、鍋を焦がした。", 2),
    ("ひと月に2、3回、通所介護で他の利用者とトラブルになる。", 2),
    ("2週に1回程度、デイサービスで大声を出す。", 2),
    ("隔週で訪問する長女に「物を盗られた」と訴える。", 2),
    ("１０日に１回ほど、夜間に起きて荷物をまとめる。", 2),
    ("年に数回、感情が不安定になることがある。", 1),
    ("年2回ほど、入院中に大声を出したことがある。", 1),
    ("2か月に1回程度、作話がある。", 1),
    ("数か月に1回、外出先で迷う。", 1),
    ("半年に1回くらい。", 1),
    ("月1回未満。", 1),
    ("時々ある。", 0),
    ("たまに外出したがる。", 0),
    ("月に3〜5回、夜間に起きる。", 0),
    ("月に数回、同じ話をする。", 0),
    ("週1回未満だが、月に何度かある。", 0),
    ("現在はみられない。", 0),
];

#[test]
fn frequency_in_notes_against_the_chosen_option() {
    for item in ["3-8", "3-9", "4-1", "4-12", "4-15", "5-4"] {
        for (text, prescribed) in FREQUENCY_PHRASES {
            for chosen in 1..=3 {
                let mut doc = base();
                doc["items"][item] = json!(chosen);
                doc["special_notes"] = json!([{"item": item, "text": text}]);
                let warnings: Vec<_> = check_survey(&doc)
                    .warnings
                    .into_iter()
                    .filter(|w| w.code == "M04")
                    .collect();
                let want = *prescribed != 0 && *prescribed != chosen;
                assert_eq!(
                    !warnings.is_empty(),
                    want,
                    "{item}={chosen} with 「{text}」 (prescribed {prescribed})"
                );
                if let Some(w) = warnings.first() {
                    assert_eq!(w.items, [item]);
                    assert!(w.message.starts_with(item), "{}", w.message);
                    // Names the item and options, never the note's text.
                    assert!(!w.message.contains(text), "{}", w.message);
                }
            }
        }
    }
    // Items not defined by frequency are left alone.
    let mut doc = base();
    doc["special_notes"] = json!([{"item": "5-1", "text": "飲み忘れが毎日ある。"}]);
    assert!(!codes(&doc).contains(&"M04".to_owned()));
    // The highest frequency of all notes of the item counts.
    let mut doc = base();
    doc["items"]["4-12"] = json!(2);
    doc["special_notes"] = json!([
        {"item": "4-12", "text": "この1か月で3回、鍋を焦がした。"},
        {"item": "4-12", "text": "食事をしたことを忘れるのが週1回程度ある。"}
    ]);
    let c = check_survey(&doc);
    let w: Vec<_> = c.warnings.iter().filter(|w| w.code == "M04").collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].message.contains("「ある」"), "{}", w[0].message);
    assert!(c.errors.is_empty(), "never blocking");
}

#[test]
fn the_example_survey_raises_no_frequency_warning() {
    let doc = crate::example("survey");
    let c = check_survey(&doc);
    assert!(
        !c.warnings.iter().any(|w| w.code.starts_with('M')),
        "{:?}",
        c.warnings
    );
}

#[test]
fn soft_app_rules() {
    let mut doc = base();
    doc["selection_basis"] = json!([{"item": "1-10", "basis": "care_adjusted"}]);
    assert_eq!(codes(&doc), vec!["M01"]);
    doc["special_notes"] = json!([{"item": "1-10", "text": "週2回、背中を職員が洗う。"}]);
    assert!(codes(&doc).is_empty());
    doc["special_notes"] = json!([{"item": "1-10", "text": "ときどき職員が手伝う。"}]);
    assert_eq!(codes(&doc), vec!["M03"]);
    doc["special_notes"] = json!([{"item": "8-1", "text": "週1回。"}]);
    let c = check_survey(&doc);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.code == "M02" && w.items == ["8-1"])
    );
    // Never blocking.
    assert!(c.errors.is_empty());
}

#[test]
fn dismissal_marks_but_keeps_the_warning() {
    let t = warning_table();
    let (code, a, b) = &t[0];
    let mut doc = with_combination(a, b);
    let edits = workflow::dismiss(
        &doc,
        code,
        None,
        "本人は洗身時に介助を拒否するため",
        "架空",
        "2026-10-14T11:00:00+09:00",
    )
    .unwrap();
    for (p, v) in edits {
        musubi_engine::doc::apply_pointer(&mut doc, &p, v).unwrap();
    }
    let (_, report) = validate_document(&doc).unwrap();
    assert!(report.is_ok(), "{report:?}");
    let c = check_survey(&doc);
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].dismissed.is_some());
    assert!(c.open_warning_codes().is_empty());
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["warnings"][0]["code"], "01");
    assert_eq!(json["warnings"][0]["items"], json!(["1-3", "1-10"]));
    assert!(json["warnings"][0]["dismissed"]["reason"].is_string());
    // Dismissing again, or a code that is not raised, is refused.
    assert!(workflow::dismiss(&doc, code, None, "x", "a", "t").is_err());
    assert!(workflow::dismiss(&doc, "02", None, "x", "a", "t").is_err());
    // Completion is not blocked by warnings.
    assert!(workflow::complete(&doc, "a", "2026-10-14T11:00:00+09:00").is_ok());
}

#[test]
fn workflow_states() {
    let mut doc = base();
    assert_eq!(Status::of(&doc), Status::Draft);
    assert!(
        workflow::submit(&doc, "a", "t").is_err(),
        "draft cannot be submitted"
    );
    assert!(
        workflow::amend(
            &doc,
            &Pointer::parse("/items/1-3").unwrap(),
            json!(2),
            "r",
            "a",
            "t"
        )
        .is_err()
    );
    for (p, v) in workflow::complete(&doc, "a", "2026-10-14T11:00:00+09:00").unwrap() {
        musubi_engine::doc::apply_pointer(&mut doc, &p, v).unwrap();
    }
    assert_eq!(Status::of(&doc), Status::Completed);
    for (p, v) in workflow::submit(&doc, "b", "2026-10-15T09:00:00+09:00").unwrap() {
        musubi_engine::doc::apply_pointer(&mut doc, &p, v).unwrap();
    }
    assert_eq!(doc["status"], "submitted");
    assert_eq!(doc["workflow"]["completed_by"], "a");
    assert_eq!(doc["workflow"]["submitted_by"], "b");
    let ptr = Pointer::parse("/items/1-3").unwrap();
    let mut after = base();
    after["status"] = json!("submitted");
    assert!(
        workflow::guard_set(&doc, &after, &ptr).is_err(),
        "submitted is locked"
    );
    use musubi_engine::schema::DocKind;
    assert!(workflow::guard_batch(DocKind::Survey, &doc, "dismiss").is_some());
    assert!(workflow::guard_batch(DocKind::Survey, &doc, "amend").is_none());
    assert!(workflow::guard_batch(DocKind::Survey, &base(), "dismiss").is_none());
    // Amendments: not of the workflow fields, need a reason, keep hard rules.
    assert!(
        workflow::amend(
            &doc,
            &Pointer::parse("/status").unwrap(),
            json!("draft"),
            "r",
            "a",
            "t"
        )
        .is_err()
    );
    assert!(workflow::amend(&doc, &ptr, json!(2), "  ", "a", "t").is_err());
    assert!(
        workflow::amend(
            &doc,
            &Pointer::parse("/items/7-1").unwrap(),
            Value::Null,
            "r",
            "a",
            "t"
        )
        .is_err()
    );
    let edits = workflow::amend(
        &doc,
        &ptr,
        json!(2),
        "入力誤り",
        "c",
        "2026-10-16T09:00:00+09:00",
    )
    .unwrap();
    for (p, v) in edits {
        musubi_engine::doc::apply_pointer(&mut doc, &p, v).unwrap();
    }
    assert_eq!(doc["items"]["1-3"], 2);
    assert_eq!(doc["amendments"][0]["before"], 1);
    assert_eq!(doc["amendments"][0]["after"], 2);
    let (_, report) = validate_document(&doc).unwrap();
    assert!(report.is_ok(), "{report:?}");
}

#[test]
fn vital_table_matches_schema_bounds() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/visit-record.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let props = schema["properties"]["vitals"]["properties"]
        .as_object()
        .unwrap();
    assert_eq!(props.len(), VITALS.len());
    for r in &VITALS {
        let p = &props[r.field];
        assert_eq!(p["minimum"].as_f64(), Some(r.hard_min), "{}", r.field);
        assert_eq!(p["maximum"].as_f64(), Some(r.hard_max), "{}", r.field);
        assert_eq!(p["title"].as_str(), Some(r.label), "{}", r.field);
        assert!(
            p["description"].as_str().unwrap().contains(r.unit),
            "{}",
            r.field
        );
        assert!(
            r.hard_min <= r.usual_min && r.usual_min < r.usual_max && r.usual_max <= r.hard_max
        );
    }
}

#[test]
fn vitals_hard_and_soft() {
    let mut doc = crate::example("visit-record");
    assert!(visit::hard_errors(&doc).is_empty());
    assert!(visit::soft_warnings(&doc).is_empty());
    doc["vitals"]["pulse"] = json!(130);
    let w = visit::soft_warnings(&doc);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].items, ["vitals/pulse"]);
    assert!(!w[0].message.contains("130"));
    doc["vitals"]["diastolic_bp"] = json!(140);
    let e = visit::hard_errors(&doc);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].path, "/vitals/diastolic_bp");
    doc["vitals"]["diastolic_bp"] = json!(70);
    doc["vitals"]["spo2"] = json!(120);
    let e = visit::hard_errors(&doc);
    assert_eq!(e[0].path, "/vitals/spo2");
    assert!(!e[0].message.contains("120"));
}

#[test]
fn request_json_and_csv_agree() {
    let csv = "保険者番号,被保険者番号,氏名,ふりがな,生年月日,性別,住所,郵便番号,電話番号,申請区分,申請日\r\n\
               131011,0000012345,\"架空 花子\",かくう はなこ,1944-05-12,女,\"東京都架空町1-2-3, 205号室\",100-0000,03-0000-1205,更新申請,2026-09-18\r\n";
    let json = r#"[{"insurer_number":"131011","insured_number":"0000012345","name":"架空 花子","name_kana":"かくう はなこ","birth_date":"1944-05-12","sex":2,"address":"東京都架空町1-2-3, 205号室","postal_code":"100-0000","phone":"03-0000-1205","application_kind":"2","application_date":"2026-09-18"}]"#;
    let a = request::parse_requests(csv.as_bytes()).unwrap();
    let b = request::parse_requests(json.as_bytes()).unwrap();
    assert_eq!(a, b);
    let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode(csv);
    assert_eq!(request::parse_requests(&sjis).unwrap(), a);
    for doc in [
        request::subject_doc(&a[0]),
        request::case_doc(&a[0], "5f0c2a9e7b3d41c68e2f90a1b4c7d3e2"),
        request::survey_doc(&a[0], "5f0c2a9e7b3d41c68e2f90a1b4c7d3e2"),
    ] {
        let (_, report) = validate_document(&doc).unwrap();
        assert!(report.is_ok(), "{report:?}");
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-10i64..12).prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        "[ -~ぁ-んときどき頻繁に0-9]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-z0-9-]{1,4}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn check_survey_never_panics_on_item_values(
        values in prop::collection::vec((0usize..58, arb_json()), 0..40),
        notes in prop::collection::vec(arb_json(), 0..4),
        extra in arb_json(),
    ) {
        let mut doc = base();
        let keys: Vec<String> = doc["items"].as_object().unwrap().keys().cloned().collect();
        for (i, v) in values {
            doc["items"][&keys[i % keys.len()]] = v;
        }
        doc["special_notes"] = Value::from(notes);
        doc["dismissals"] = extra.clone();
        doc["selection_basis"] = extra;
        let c = check_survey(&doc);
        // Whatever the input, the result serialises and every entry names items.
        let json = serde_json::to_value(&c).unwrap();
        prop_assert!(json["errors"].is_array() && json["warnings"].is_array());
        prop_assert!(c.warnings.iter().all(|w| !w.items.is_empty()));
        let _ = check_survey(&extra_doc(&doc));
    }

    #[test]
    fn request_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = request::parse_requests(&bytes);
    }
}

fn extra_doc(doc: &Value) -> Value {
    json!({"items": doc["special_notes"].clone(), "special_notes": doc["items"].clone()})
}

/// `survey amend` as a tablet runs it, through the engine: what it writes is exactly what
/// the relay and a bundle import admit for a submitted survey, and nothing else is.
#[test]
fn amendments_written_by_the_engine_pass_the_admission_rules() {
    use musubi_engine::Engine;
    use musubi_engine::admit::check_document;
    use musubi_engine::schema::DocKind;
    use musubi_engine::store::{InitOptions, SecretString, Store};

    let tmp = tempfile::tempdir().unwrap();
    let store = Store::init(
        &tmp.path().join("data"),
        &SecretString::from("passphrase for tests".to_owned()),
        InitOptions {
            office: "1370100016".to_owned(),
            device_name: "tablet-a".to_owned(),
            kdf_work_factor: Some(10),
            ..InitOptions::default()
        },
    )
    .unwrap();
    let engine = Engine::new(store, Some("職員".to_owned())).unwrap();
    let id = engine
        .import(&[("s.json".to_owned(), base())], 1_000)
        .unwrap()
        .ids[0];
    let doc = engine.export(id).unwrap();
    let edits = workflow::complete(&doc, "a", "2026-10-14T11:00:00+09:00").unwrap();
    engine.apply_edits(id, &edits, "complete", 2_000).unwrap();
    let doc = engine.export(id).unwrap();
    let edits = workflow::submit(&doc, "a", "2026-10-15T09:00:00+09:00").unwrap();
    engine.apply_edits(id, &edits, "submit", 3_000).unwrap();
    let submitted = engine.export(id).unwrap();
    check_document(DocKind::Survey, None, &submitted, &submitted).unwrap();

    let amendments = [
        ("/items/1-1", json!([4, 2])),
        ("/items/1-3", json!(2)),
        (
            "/special_notes/-",
            json!({"item": "1-3", "text": "寝返りは柵につかまって行う。"}),
        ),
        (
            "/special_notes/0/text",
            json!("寝返りは柵につかまれば行える。"),
        ),
        ("/items/1-3", json!(3)),
    ];
    let mut previous = submitted.clone();
    for (n, (pointer, value)) in amendments.into_iter().enumerate() {
        let doc = engine.export(id).unwrap();
        let edits = workflow::amend(
            &doc,
            &Pointer::parse(pointer).unwrap(),
            value,
            "記入誤り",
            "職員",
            "2026-10-16T09:00:00+09:00",
        )
        .unwrap();
        engine
            .apply_edits(id, &edits, "amend", 4_000 + n as i64)
            .unwrap();
        let now = engine.export(id).unwrap();
        check_document(DocKind::Survey, Some(&previous), &now, &now)
            .unwrap_or_else(|r| panic!("amendment {n} ({pointer}) refused: {r}"));
        check_document(DocKind::Survey, Some(&submitted), &now, &now)
            .unwrap_or_else(|r| panic!("amendments up to {n} refused: {r}"));
        previous = now;
    }
    assert_eq!(previous["amendments"].as_array().unwrap().len(), 5);
    // The same change without its record is refused.
    let mut bare = previous.clone();
    bare["amendments"] = submitted["amendments"].clone();
    if submitted.get("amendments").is_none() {
        bare.as_object_mut().unwrap().remove("amendments");
    }
    let r = check_document(DocKind::Survey, Some(&submitted), &bare, &bare).unwrap_err();
    assert_eq!(r.code, "submitted");
}

/// IF-versioned code lists (issue 19): 前回認定結果 11 (経過的要介護) belongs to the layouts
/// before 09B; municipal data writes 7-1 10 記載無し for a missing 障害高齢者自立度, which
/// a real store accepts on import and the checks count as not answered.
#[test]
fn if_versioned_codes_on_import() {
    use musubi_engine::Engine;
    use musubi_engine::store::{InitOptions, SecretString, Store};

    let tmp = tempfile::tempdir().unwrap();
    let store = Store::init(
        &tmp.path().join("data"),
        &SecretString::from("passphrase for tests".to_owned()),
        InitOptions {
            office: "1370100016".to_owned(),
            device_name: "tablet-a".to_owned(),
            kdf_work_factor: Some(10),
            ..InitOptions::default()
        },
    )
    .unwrap();
    let engine = Engine::new(store, Some("職員".to_owned())).unwrap();

    // 7-1 = 10 from municipal data: imported as is, shown as 記載なし, not an answer.
    let mut from_city = base();
    from_city["status"] = json!("draft");
    from_city["items"]["7-1"] = json!(10);
    let id = engine
        .import(&[("city.json".to_owned(), from_city)], 1_000)
        .unwrap()
        .ids[0];
    let stored = engine.export(id).unwrap();
    assert_eq!(stored["items"]["7-1"], 10);
    let c = check_survey(&stored);
    assert!(
        c.errors
            .iter()
            .any(|e| e.code == "E01" && e.items == ["7-1"]),
        "{:?}",
        c.errors
    );
    assert!(
        c.errors
            .iter()
            .any(|e| e.message.contains("記載なし") && e.items == ["7-1"])
    );
    // Only 10: 11 is not a code of 7-1, and 9 記載なし of 7-2 is not one either.
    for bad in [11, 0] {
        let mut s = base();
        s["status"] = json!("draft");
        s["items"]["7-1"] = json!(bad);
        assert!(
            engine.import(&[("bad.json".to_owned(), s)], 1_000).is_err(),
            "7-1 = {bad} accepted"
        );
    }

    // 前回認定結果 11 in a 09B survey (or one without if_version): a hard error E04.
    for version in [Some("09B"), None] {
        let mut s = base();
        s["overview"]["history"] = json!({"past_certification": 2, "previous_result": "11"});
        match version {
            Some(v) => s["if_version"] = json!(v),
            None => {
                s.as_object_mut().map(|o| o.remove("if_version"));
            }
        }
        let c = check_survey(&s);
        let e04: Vec<_> = c.errors.iter().filter(|e| e.code == "E04").collect();
        assert_eq!(e04.len(), 1, "{version:?}: {:?}", c.errors);
        assert!(
            e04[0].message.contains("経過的要介護"),
            "{}",
            e04[0].message
        );
        assert!(!c.can_complete());
    }
    // In an older layout it is a valid code, and an imported 06A survey keeps it.
    for version in ["06A", "09A", "02A", "99A"] {
        let mut s = base();
        s["if_version"] = json!(version);
        s["overview"]["history"] = json!({"past_certification": 2, "previous_result": "11"});
        assert!(check_survey(&s).errors.is_empty(), "{version}");
    }
    let mut old = base();
    old["status"] = json!("draft");
    old["if_version"] = json!("06A");
    old["overview"]["history"] = json!({"past_certification": 2, "previous_result": "11"});
    let id = engine
        .import(&[("old.json".to_owned(), old)], 2_000)
        .unwrap()
        .ids[0];
    assert_eq!(
        engine.export(id).unwrap()["overview"]["history"]["previous_result"],
        "11"
    );
    // Every other code is in 09B.
    for code in ["01", "12", "13", "21", "22", "23", "24", "25"] {
        let mut s = base();
        s["overview"]["history"] = json!({"past_certification": 2, "previous_result": code});
        assert!(check_survey(&s).errors.is_empty(), "{code}");
    }
}
