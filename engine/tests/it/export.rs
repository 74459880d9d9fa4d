//! Exports (issue 7): the 認定調査票 PDF checked with poppler (pdftotext, pdfinfo,
//! pdffonts) and the CSV read back with the `csv` crate, in UTF-8 and Shift_JIS.

use crate::example;
use musubi_engine::export::csv::{Encoding, export_csv, headers};
use musubi_engine::export::pdf::{PdfLayout, export_pdf, export_pdf_with_layout};
use musubi_engine::export::{ExportError, Labels};
use musubi_engine::schema::{ItemKind, validate_document};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

const ID: &str = "0123456789abcdef0123456789abcdef";

pub fn font() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../app/assets/fonts/ipaexg.ttf"))
        .unwrap()
}

fn poppler(tool: &str, args: &[&str], pdf: &Path) -> String {
    let out = Command::new(tool)
        .args(args)
        .arg(pdf)
        .args(if tool == "pdftotext" {
            &["-"][..]
        } else {
            &[][..]
        })
        .output()
        .unwrap_or_else(|e| panic!("{tool} not runnable ({e}); run scripts/setup.sh"));
    assert!(
        out.status.success(),
        "{tool} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn write_pdf(dir: &Path, json: &Value) -> PathBuf {
    write_pdf_as(dir, json, PdfLayout::Official)
}

fn write_pdf_as(dir: &Path, json: &Value, layout: PdfLayout) -> PathBuf {
    let labels = Labels::embedded().unwrap();
    let out = export_pdf_with_layout(&labels, ID, json, &font(), layout).unwrap();
    assert_eq!(out.substituted_chars, 0);
    let p = dir.join("survey.pdf");
    std::fs::write(&p, &out.bytes).unwrap();
    p
}

/// ①… as the PDF prints a chosen option.
fn circled(n: i64) -> char {
    char::from_u32(0x2460 + u32::try_from(n - 1).unwrap()).unwrap()
}

#[test]
fn pdf_of_the_example_has_every_item_and_the_chosen_options() {
    let tmp = tempfile::tempdir().unwrap();
    let survey = example("survey");
    let pdf = write_pdf(tmp.path(), &survey);
    // Layout mode keeps each item row on one text line (when it fits); raw mode keeps
    // the reading order. Strip spaces so wrapped labels still match.
    let text = poppler("pdftotext", &["-raw"], &pdf);
    let flat: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let labels = Labels::embedded().unwrap();
    let mut chosen_marks = 0;
    for item in &labels.catalog.items {
        let head = format!("{}{}", item.key, item.title);
        assert!(flat.contains(&head), "item {} label missing", item.key);
        let answer = &survey["items"][&item.key];
        let codes: Vec<i64> = match answer {
            Value::Array(a) => a.iter().map(|v| v.as_i64().unwrap()).collect(),
            v => vec![v.as_i64().unwrap()],
        };
        // The item's block runs from its label to the next item's label.
        let start = flat.find(&head).unwrap();
        let rest = &flat[start + head.len()..];
        let end = labels
            .catalog
            .items
            .iter()
            .filter_map(|other| rest.find(&format!("{}{}", other.key, other.title)))
            .min()
            .unwrap_or(rest.len());
        let block = &rest[..end];
        if item.group == 7 {
            // 自立・Ｊ1・Ｊ2…: words separated by 「・」, no numbers (the form has none).
            let want: String = item
                .choices
                .iter()
                .filter(|c| !c.import_only)
                .map(|c| c.label.as_str())
                .collect::<Vec<_>>()
                .join("・")
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            assert!(
                block.contains(&want),
                "item {}: {want} not printed",
                item.key
            );
            assert!(!block.contains("1.自立"), "item {}: numbered", item.key);
            chosen_marks += 1;
            continue;
        }
        for c in &item.choices {
            if c.import_only {
                continue;
            }
            let chosen = codes.contains(&c.code);
            let marked = format!("{}{}", circled(c.code), c.label);
            let plain = format!("{}.{}", c.code, c.label);
            let want: String = if chosen { marked } else { plain }
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            assert!(
                block.contains(&want),
                "item {}: option {} not printed as {want}",
                item.key,
                c.code
            );
            if chosen {
                chosen_marks += 1;
            }
        }
    }
    // 53 single-select items + 7-1 + 7-2, 1-1 [5], 1-2 [4], 6 [].
    assert_eq!(labels.catalog.items.len(), 58);
    assert_eq!(chosen_marks, 53 + 2 + 1 + 1);
    // The 74 counted questions all carry their label (parts are options of 1-1/1-2/6).
    assert_eq!(labels.catalog.counted_questions().len(), 74);
    // Every 特記事項 text is on the notes pages.
    for n in survey["special_notes"].as_array().unwrap() {
        let t: String = n["text"]
            .as_str()
            .unwrap()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        assert!(flat.contains(&t), "note on {} missing", n["item"]);
    }
    for heading in [
        "認定調査票（概況調査）",
        "認定調査票（基本調査）",
        "認定調査票（特記事項）",
    ] {
        assert!(flat.contains(heading), "{heading}");
    }
    // The overview's coded fields print their official labels, as the form does.
    assert!(flat.contains("自宅内・自宅外（"), "実施場所");
    assert!(flat.contains("男・女"), "性別");
    assert!(flat.contains("令和8年10月14日"), "実施日");
    assert!(flat.contains("昭和19年5月12日（82歳）"), "生年月日");
}

/// The text of each page of a PDF (pdftotext puts a form feed between pages), whitespace
/// removed so wrapped lines still match.
fn pages_of(pdf: &Path) -> Vec<String> {
    poppler("pdftotext", &["-raw"], pdf)
        .split('\u{c}')
        .map(|p| p.chars().filter(|c| !c.is_whitespace()).collect())
        .filter(|p: &String| !p.is_empty())
        .collect()
}

/// musubi's own numbers: the 連番 〔10〕, 〔1–5〕 … after an item.
fn own_sequence_numbers(flat: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = flat;
    while let Some(i) = rest.find('〔') {
        let after = &rest[i + '〔'.len_utf8()..];
        let Some(j) = after.find('〕') else { break };
        let inner = &after[..j];
        if !inner.is_empty() && inner.chars().all(|c| c.is_ascii_digit() || c == '–') {
            found.push(format!("〔{inner}〕"));
        }
        rest = &after[j..];
    }
    found
}

#[test]
fn official_layout_prints_the_form_as_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let survey = example("survey");
    let pdf = write_pdf(tmp.path(), &survey);
    let pages = pages_of(&pdf);
    let flat: String = pages.concat();

    // 前回認定結果: the three categories of the form, the level in the brackets (the
    // example's previous result is 21 = 要介護1), not nine numbered choices.
    assert!(flat.contains("非該当・要支援（"), "前回認定結果");
    assert!(
        flat.contains("非該当・要支援（）・要介護（1）"),
        "前回認定結果 level"
    );
    assert!(!flat.contains("1.非該当"), "numbered 前回認定結果");
    assert!(
        !flat.contains("要支援（経過的要介護）"),
        "code list printed"
    );
    // No numbered choices where the form has none.
    for numbered in [
        "1.自宅内",
        "①自宅内",
        "1.男",
        "②女",
        "1.初回",
        "②２回め以降",
        "①独居",
        "1.介護老人福祉施設",
        "1.自立",
    ] {
        assert!(!flat.contains(numbered), "{numbered}");
    }
    assert!(
        flat.contains("初回・２回め以降（前回認定令和7年10月24日）"),
        "過去の認定"
    );
    assert!(
        flat.contains("独居・同居（夫婦のみ）・同居（その他）"),
        "家族状況"
    );
    // 施設等利用 as check boxes, the example's ｻｰﾋﾞｽ付き高齢者向け住宅 ticked.
    assert!(flat.contains("□介護老人福祉施設"), "施設等利用 boxes");
    assert!(
        flat.contains("■ｻｰﾋﾞｽ付き高齢者向け住宅"),
        "施設等利用 ticked"
    );
    assert_eq!(flat.matches('■').count(), 1);
    // No sequence number of musubi's own anywhere.
    assert_eq!(own_sequence_numbers(&flat), Vec::<String>::new());
    // 概況調査Ⅳ: one box under the printed heading, without musubi's field titles (住宅環境
    // is also a word of the heading itself).
    for title in [
        "家族の状況",
        "施設での生活状況",
        "日常的に使用する機器・器械",
    ] {
        assert!(!flat.contains(title), "{title}");
    }
    let env = &survey["overview"]["environment"];
    for f in ["family", "living", "facility_life", "equipment", "other"] {
        let t: String = env[f]
            .as_str()
            .unwrap()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        assert!(flat.contains(&t), "Ⅳ {f}");
    }
    // 特記事項 pages: 「調査日」 with the date in the header, the item list under each
    // group heading, the notes as （item）text.
    let notes: Vec<&String> = pages
        .iter()
        .filter(|p| p.contains("認定調査票（特記事項）"))
        .collect();
    assert!(!notes.is_empty());
    for p in &notes {
        assert!(
            p.contains("調査日令和8年10月14日"),
            "調査日 on a 特記事項 page"
        );
    }
    let sheet: String = notes.iter().map(|p| p.as_str()).collect();
    let heading = "身体機能・起居動作に関連する項目についての特記事項";
    let at = sheet.find(heading).unwrap() + heading.len();
    assert!(
        sheet[at..].starts_with("1-1麻痺等の有無1-2拘縮の有無1-3寝返り"),
        "item list under the heading: {}",
        sheet[at..].chars().take(40).collect::<String>()
    );
    assert!(
        sheet.contains("7-1障害高齢者の日常生活自立度"),
        "group 7 list"
    );
    assert!(sheet.contains("（4-12）この1か月で"), "note row");
    // The 基本調査 pages carry the date too; the 概況調査 page has it in Ⅰ instead.
    for p in pages
        .iter()
        .filter(|p| p.contains("認定調査票（基本調査）"))
    {
        assert!(p.contains("調査日令和8年10月14日"));
    }
}

#[test]
fn official_layout_previous_result_levels_and_blank_dates() {
    let tmp = tempfile::tempdir().unwrap();
    for (code, want) in [
        ("01", "非該当・要支援（）・要介護（）"),
        ("12", "非該当・要支援（1）・要介護（）"),
        ("13", "非該当・要支援（2）・要介護（）"),
        ("25", "非該当・要支援（）・要介護（5）"),
    ] {
        let mut s = example("survey");
        s["overview"]["history"]["previous_result"] = json!(code);
        let flat: String = pages_of(&write_pdf(tmp.path(), &s)).concat();
        assert!(flat.contains(want), "{code}: {want}");
    }
    // A draft without a survey date still prints the header's 調査日 年 月 日.
    let mut s = example("survey");
    s["status"] = json!("draft");
    s["overview"]["conducted"]
        .as_object_mut()
        .unwrap()
        .remove("date");
    s["overview"]["conducted"]["place"] = json!(2);
    s["overview"]["conducted"]["place_name"] = json!("長女宅");
    let pages = pages_of(&write_pdf(tmp.path(), &s));
    for p in pages
        .iter()
        .filter(|p| p.contains("認定調査票（特記事項）"))
    {
        assert!(p.contains("調査日年月日"), "blank 調査日");
    }
    assert!(pages.concat().contains("自宅内・自宅外（長女宅）"));
}

#[test]
fn numbered_layout_stays_available() {
    let tmp = tempfile::tempdir().unwrap();
    let pdf = write_pdf_as(tmp.path(), &example("survey"), PdfLayout::Numbered);
    let flat: String = pages_of(&pdf).concat();
    assert!(flat.contains("①自宅内"), "実施場所");
    assert!(flat.contains("②女"), "性別");
    // 09B: 11 経過的要介護 is not a code of this layout, so the list starts 1.非該当 2.要支援1.
    assert!(flat.contains("④要介護1"), "前回認定結果");
    assert!(!flat.contains("経過的要介護"));
    assert!(
        flat.contains("4.Ａ1") || flat.contains("④Ａ1"),
        "7-1 numbered"
    );
    assert!(flat.contains("家族の状況"), "Ⅳ titled rows");
    let seqs = own_sequence_numbers(&flat);
    assert!(seqs.contains(&"〔10〕".to_owned()), "{seqs:?}");
    assert!(seqs.contains(&"〔63–74〕".to_owned()), "{seqs:?}");
    assert!(
        !flat.contains("調査日"),
        "no header date in the numbered layout"
    );
}

#[test]
fn pdf_is_a4_with_the_font_embedded_as_a_subset() {
    let tmp = tempfile::tempdir().unwrap();
    let pdf = write_pdf(tmp.path(), &example("survey"));
    let info = poppler("pdfinfo", &[], &pdf);
    let size = info.lines().find(|l| l.starts_with("Page size:")).unwrap();
    assert!(
        size.contains("595.276 x 841.89") && size.contains("(A4)"),
        "{size}"
    );
    let pages: usize = info
        .lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!((4..=8).contains(&pages), "{pages} pages");
    let fonts = poppler("pdffonts", &[], &pdf);
    let row = fonts
        .lines()
        .find(|l| l.contains("IPAexGothic"))
        .unwrap_or_else(|| panic!("no IPAexGothic in\n{fonts}"));
    // name type encoding emb sub uni
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert!(cols[0].starts_with("MSBIAA+"), "{row}");
    assert_eq!(cols[1..4], ["CID", "TrueType", "Identity-H"], "{row}");
    assert_eq!(
        cols[4..7],
        ["yes", "yes", "yes"],
        "embedded, subset, ToUnicode: {row}"
    );
    assert_eq!(fonts.lines().count(), 3, "one font only:\n{fonts}");
    // A subset, not the 6 MB font.
    let len = std::fs::metadata(&pdf).unwrap().len();
    assert!(len < 600_000, "{len} bytes");
}

#[test]
fn pdf_of_a_sparse_draft_marks_unanswered_items() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = example("survey");
    s["items"] = json!({"1-3": 1});
    s["special_notes"] = json!([]);
    s["status"] = json!("draft");
    let pdf = write_pdf(tmp.path(), &s);
    let text = poppler("pdftotext", &["-raw"], &pdf);
    let flat: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(flat.contains("①つかまらないでできる"));
    // Every other item (all but 1-3) says 未回答.
    let n = flat.matches("（未回答）").count();
    assert_eq!(n, 58 - 1, "{n}");
    assert_eq!(flat.matches("（記載なし）").count(), 7);
}

#[test]
fn pdf_substitutes_characters_the_font_lacks() {
    let mut s = example("survey");
    s["special_notes"][0]["text"] = json!("絵文字🙂を含む");
    let labels = Labels::embedded().unwrap();
    let out = export_pdf(&labels, ID, &s, &font()).unwrap();
    assert_eq!(out.substituted_chars, 1);
}

#[test]
fn pdf_refuses_other_kinds_and_invalid_surveys() {
    let labels = Labels::embedded().unwrap();
    let err = export_pdf(&labels, ID, &example("case"), &font()).unwrap_err();
    assert!(matches!(err, ExportError::NotASurvey { .. }), "{err}");
    assert!(err.to_string().contains("case"), "{err}");
    let mut s = example("survey");
    s["items"]["1-3"] = json!(9);
    let err = export_pdf(&labels, ID, &s, &font()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("/items/1-3"), "{msg}");
    assert!(!msg.contains("結城"), "{msg}");
    let err = export_pdf(&labels, ID, &example("survey"), b"not a font").unwrap_err();
    assert!(matches!(err, ExportError::Font(_)), "{err}");
}

fn read_csv(bytes: &[u8]) -> Vec<Vec<String>> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(bytes);
    r.records()
        .map(|rec| rec.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

fn cell<'a>(rows: &'a [Vec<String>], row: usize, header: &str) -> &'a str {
    let col = rows[0]
        .iter()
        .position(|h| h == header)
        .unwrap_or_else(|| panic!("no column {header}"));
    &rows[row][col]
}

#[test]
fn csv_utf8_round_trip_with_bom_crlf_and_quoting() {
    let labels = Labels::embedded().unwrap();
    let mut a = example("survey");
    a["special_notes"][0]["text"] = json!("カンマ, と \"引用符\" と\r\n改行");
    let b = example("survey");
    let docs = vec![(ID.to_owned(), a.clone()), ("f".repeat(32), b)];
    let bytes = export_csv(&labels, &docs, Encoding::Utf8).unwrap();
    assert!(bytes.starts_with(b"\xEF\xBB\xBF"));
    let body = &bytes[3..];
    // Every record ends in CRLF; no bare LF outside quoted fields.
    assert!(body.ends_with(b"\r\n"));
    let rows = read_csv(body);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0], headers(&labels).unwrap());
    assert_eq!(rows[0].len(), rows[1].len());
    assert_eq!(cell(&rows, 1, "文書ID"), ID);
    assert_eq!(cell(&rows, 1, "氏名"), "結城 花子");
    assert_eq!(cell(&rows, 1, "厚労省IF識別コード"), "09B");
    assert_eq!(cell(&rows, 1, "生年月日"), "1944-05-12");
    assert_eq!(cell(&rows, 1, "性別"), "2");
    assert_eq!(cell(&rows, 1, "10 1-3 寝返り"), "2");
    assert_eq!(cell(&rows, 1, "4 1-1 麻痺等の有無（右下肢）"), "2");
    assert_eq!(cell(&rows, 1, "1 1-1 麻痺等の有無（左上肢）"), "1");
    assert_eq!(cell(&rows, 1, "63 6 特別な医療（点滴の管理）"), "1");
    assert_eq!(cell(&rows, 1, "7-2 認知症高齢者の日常生活自立度"), "4");
    assert_eq!(
        cell(
            &rows,
            1,
            "在宅利用1 訪問介護(ホームヘルプ)･訪問型サービス 利用"
        ),
        "1"
    );
    assert_eq!(
        cell(
            &rows,
            1,
            "在宅利用1 訪問介護(ホームヘルプ)･訪問型サービス 利用量（回/月）"
        ),
        "8"
    );
    let notes = cell(&rows, 1, "特記事項");
    assert!(
        notes.starts_with("（1-1）カンマ, と \"引用符\" と\r\n改行\n（1-2）"),
        "{notes}"
    );
    assert_eq!(notes.lines().filter(|l| l.starts_with('（')).count(), 12);
    // 74 item columns, 7-1/7-2, and unique headers.
    let item_cols = rows[0]
        .iter()
        .filter(|h| {
            h.split(' ')
                .next()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .count();
    assert_eq!(item_cols, 74);
    let mut uniq = rows[0].clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), rows[0].len(), "headers are unique");
}

#[test]
fn csv_shift_jis_decodes_to_the_original_text() {
    let labels = Labels::embedded().unwrap();
    let s = example("survey");
    let docs = vec![(ID.to_owned(), s.clone())];
    let sjis = export_csv(&labels, &docs, Encoding::ShiftJis).unwrap();
    let utf8 = export_csv(&labels, &docs, Encoding::Utf8).unwrap();
    assert!(!sjis.starts_with(b"\xEF\xBB\xBF"));
    let (text, _, had_errors) = encoding_rs::SHIFT_JIS.decode(&sjis);
    assert!(!had_errors);
    assert_eq!(
        text.as_bytes(),
        &utf8[3..],
        "Shift_JIS decodes to the UTF-8 export"
    );
    let rows = read_csv(text.as_bytes());
    assert_eq!(cell(&rows, 1, "氏名"), "結城 花子");
    assert!(cell(&rows, 1, "住宅環境").contains("約25㎡"));
}

#[test]
fn csv_shift_jis_refuses_what_it_cannot_hold() {
    let labels = Labels::embedded().unwrap();
    let good = example("survey");
    let mut bad = example("survey");
    bad["special_notes"][2]["text"] = json!("𠮷野家で昼食🙂");
    let docs = vec![(ID.to_owned(), good), ("a".repeat(32), bad)];
    let err = export_csv(&labels, &docs, Encoding::ShiftJis).unwrap_err();
    match &err {
        ExportError::Unencodable {
            row,
            doc,
            column,
            codepoint,
            ..
        } => {
            assert_eq!(*row, 2);
            assert_eq!(doc, &"a".repeat(32));
            assert_eq!(column, "特記事項");
            assert_eq!(*codepoint, 0x20BB7);
        }
        other => panic!("{other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("U+20BB7") && msg.contains("特記事項"), "{msg}");
    assert!(!msg.contains("野家"), "{msg}");
    // UTF-8 holds everything.
    assert!(export_csv(&labels, &docs, Encoding::Utf8).is_ok());
}

#[test]
fn csv_refuses_other_kinds() {
    let labels = Labels::embedded().unwrap();
    let docs = vec![(ID.to_owned(), example("visit-record"))];
    let err = export_csv(&labels, &docs, Encoding::Utf8).unwrap_err();
    assert!(matches!(err, ExportError::NotASurvey { .. }), "{err}");
}

/// Text with the characters CSV must quote, plus Japanese.
fn note_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just(",".to_owned()),
            Just("\"".to_owned()),
            Just("\r\n".to_owned()),
            Just("\n".to_owned()),
            Just(" ".to_owned()),
            "[a-z0-9]{1,4}",
            prop::sample::select(vec!["結城", "ハナコ", "週2、3回", "①Ⅱ㎡", "ｼｮｰﾄ"])
                .prop_map(str::to_owned),
        ],
        1..12,
    )
    .prop_map(|parts| parts.concat())
    .prop_filter("non-empty after trim", |s| !s.trim().is_empty())
}

fn arb_survey() -> impl Strategy<Value = Value> {
    let labels = Labels::embedded().unwrap();
    let items: Vec<(String, ItemKind, Vec<i64>)> = labels
        .catalog
        .items
        .iter()
        .map(|i| {
            (
                i.key.clone(),
                i.kind,
                i.choices
                    .iter()
                    .filter(|c| !c.import_only)
                    .map(|c| c.code)
                    .collect(),
            )
        })
        .collect();
    let answers = proptest::collection::vec((any::<bool>(), any::<u64>()), items.len());
    let notes = proptest::collection::vec((0usize..items.len(), note_text()), 0..6);
    (answers, notes, note_text()).prop_map(move |(answers, notes, living)| {
        let mut s = example("survey");
        let mut map = serde_json::Map::new();
        for ((key, kind, codes), (present, pick)) in items.iter().zip(answers) {
            if !present {
                continue;
            }
            let n = codes.len() as u64;
            let v = match kind {
                ItemKind::Single => json!(codes[(pick % n) as usize]),
                ItemKind::Multi => {
                    let chosen: Vec<i64> = codes
                        .iter()
                        .enumerate()
                        .filter(|(i, c)| pick >> i & 1 == 1 && (key == "6" || **c != 1))
                        .map(|(_, c)| *c)
                        .collect();
                    if chosen.is_empty() && key != "6" {
                        json!([1])
                    } else {
                        json!(chosen)
                    }
                }
            };
            map.insert(key.clone(), v);
        }
        s["items"] = Value::Object(map);
        s["special_notes"] = Value::Array(
            notes
                .into_iter()
                .map(|(i, text)| json!({"item": items[i].0, "text": text}))
                .collect(),
        );
        s["overview"]["environment"]["living"] = json!(living);
        s
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_valid_survey_exports_and_the_csv_reads_back(s in arb_survey()) {
        let (_, report) = validate_document(&s).unwrap();
        prop_assume!(report.is_ok());
        let labels = Labels::embedded().unwrap();
        let pdf = export_pdf(&labels, ID, &s, &font_cached()).unwrap();
        prop_assert!(pdf.bytes.starts_with(b"%PDF-"));
        for enc in [Encoding::Utf8, Encoding::ShiftJis] {
            let bytes = export_csv(&labels, &[(ID.to_owned(), s.clone())], enc).unwrap();
            let text = match enc {
                Encoding::Utf8 => String::from_utf8(bytes[3..].to_vec()).unwrap(),
                Encoding::ShiftJis => encoding_rs::SHIFT_JIS.decode(&bytes).0.into_owned(),
            };
            let rows = read_csv(text.as_bytes());
            prop_assert_eq!(rows.len(), 2);
            prop_assert_eq!(cell(&rows, 1, "住宅環境"), s["overview"]["environment"]["living"].as_str().unwrap());
            let notes: Vec<String> = s["special_notes"].as_array().unwrap().iter()
                .map(|n| format!("（{}）{}", n["item"].as_str().unwrap(), n["text"].as_str().unwrap()))
                .collect();
            prop_assert_eq!(cell(&rows, 1, "特記事項"), notes.join("\n"));
            for (seq, item, part) in labels.catalog.counted_questions() {
                let header = match part {
                    Some(c) => format!("{seq} {} {}（{}）", item.key, item.short, c.label),
                    None => format!("{seq} {} {}", item.key, item.title),
                };
                let want = match (&s["items"][&item.key], part) {
                    (Value::Null, _) => String::new(),
                    (Value::Array(a), Some(c)) => {
                        if a.iter().any(|v| v.as_i64() == Some(c.code)) { "2" } else { "1" }.to_owned()
                    }
                    (v, _) => v.to_string(),
                };
                prop_assert_eq!(cell(&rows, 1, &header), want.as_str());
            }
        }
    }
}

fn font_cached() -> std::sync::Arc<Vec<u8>> {
    static FONT: std::sync::OnceLock<std::sync::Arc<Vec<u8>>> = std::sync::OnceLock::new();
    FONT.get_or_init(|| std::sync::Arc::new(font())).clone()
}

/// Issue 19: the administrative fields are musubi's own columns after 特記事項, the
/// survey's first and then its case's; a survey without them (or without its case) leaves
/// them empty.
#[test]
fn csv_appends_the_administrative_columns_after_the_form() {
    use musubi_engine::export::csv::export_csv_with_cases;
    let labels = Labels::embedded().unwrap();
    let own = [
        "調査区分（依頼区分）",
        "調査回数",
        "2回目の調査日",
        "受領日（調査依頼）",
        "委託先事業所番号",
        "委託先名称",
        "調査員番号",
        "現在の状況",
        "サービス区分",
        "被保険者区分",
        "特定疾病",
        "主治医氏名",
        "医療機関名",
        "主治医意見書依頼日",
        "主治医意見書入手日",
    ];
    let h = headers(&labels).unwrap();
    let notes = h.iter().position(|x| x == "特記事項").unwrap();
    assert_eq!(notes, 160, "the form's 161 columns come first, unchanged");
    assert_eq!(&h[notes + 1..], own.map(str::to_owned).as_slice());

    let case_id = "5f0c2a9e7b3d41c68e2f90a1b4c7d3e3";
    let mut with = example("survey");
    with["case_id"] = json!(case_id);
    with["administration"]["survey_count"] = json!(2);
    with["administration"]["second_survey_date"] = json!("2026-10-21");
    let mut case = example("case");
    case["application"]["insured_category"] = json!("第2号被保険者");
    case["application"]["specified_disease"] = json!("脳血管疾患");
    let mut without = example("survey");
    without.as_object_mut().unwrap().remove("administration");
    let cases = std::collections::HashMap::from([(case_id.to_owned(), case)]);
    let docs = vec![(ID.to_owned(), with), ("f".repeat(32), without)];
    let bytes = export_csv_with_cases(&labels, &docs, &cases, Encoding::Utf8).unwrap();
    let rows = read_csv(&bytes[3..]);
    let want = [
        ("調査区分（依頼区分）", "2"),
        ("調査回数", "2"),
        ("2回目の調査日", "2026-10-21"),
        ("受領日（調査依頼）", "2026-09-26"),
        ("委託先事業所番号", "1370100016"),
        ("委託先名称", "架空居宅介護支援事業所"),
        ("調査員番号", "T-0042"),
        ("現在の状況", "在宅"),
        ("サービス区分", "介護"),
        ("被保険者区分", "第2号被保険者"),
        ("特定疾病", "脳血管疾患"),
        ("主治医氏名", "架空 医師"),
        ("医療機関名", "架空内科クリニック"),
        ("主治医意見書依頼日", "2026-09-25"),
        ("主治医意見書入手日", "2026-10-09"),
    ];
    for (header, value) in want {
        assert_eq!(cell(&rows, 1, header), value, "{header}");
        assert_eq!(
            cell(&rows, 2, header),
            "",
            "{header} of a survey without it"
        );
    }
    // Without the cases, the survey's own columns stay and the case columns are empty.
    let plain = export_csv(&labels, &docs, Encoding::Utf8).unwrap();
    let rows = read_csv(&plain[3..]);
    assert_eq!(cell(&rows, 1, "委託先事業所番号"), "1370100016");
    assert_eq!(cell(&rows, 1, "主治医氏名"), "");
}

/// Issue 19: the official form has no place for the administrative fields, so the PDF
/// prints none of them (and is otherwise unchanged by them).
#[test]
fn pdf_prints_no_administrative_field() {
    let dir = tempfile::tempdir().unwrap();
    let with = example("survey");
    let pages = pages_of(&write_pdf(dir.path(), &with));
    let flat: String = pages.concat();
    for absent in [
        "調査員番号",
        "T-0042",
        "委託先",
        "架空居宅介護支援事業所",
        "調査回数",
        "サービス区分",
        "受領日",
    ] {
        assert!(!flat.contains(absent), "{absent} printed");
    }
    let mut without = with.clone();
    without.as_object_mut().unwrap().remove("administration");
    assert_eq!(pages_of(&write_pdf(dir.path(), &without)), pages);
}
