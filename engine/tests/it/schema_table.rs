//! The survey schema agrees with an independent table of all 74 items (number, label,
//! codes) kept in `engine/tests/data/items74.tsv`, and with 7-1/7-2 in items-extra.tsv.

use musubi_engine::schema::{ItemKind, SurveyCatalog};
use std::path::Path;

struct Row {
    seq: Option<u32>,
    item: String,
    part: Option<i64>,
    label: String,
    codes: Vec<(i64, String)>,
}

fn read(name: &str) -> Vec<Row> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let text = std::fs::read_to_string(p).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 5, "row {l:?}");
            Row {
                seq: f[0].parse().ok(),
                item: f[1].to_owned(),
                part: f[2].parse().ok(),
                label: f[3].to_owned(),
                codes: if f[4].is_empty() {
                    Vec::new()
                } else {
                    f[4].split('|')
                        .map(|c| {
                            let (code, label) = c.split_once(':').unwrap();
                            (code.parse().unwrap(), label.to_owned())
                        })
                        .collect()
                },
            }
        })
        .collect()
}

#[test]
fn schema_matches_the_independent_table_of_74_items() {
    let catalog = SurveyCatalog::embedded().unwrap();
    let table = read("items74.tsv");
    assert_eq!(table.len(), 74);
    let questions = catalog.counted_questions();
    assert_eq!(questions.len(), 74, "74 counted questions in the schema");
    for (row, (seq, item, part)) in table.iter().zip(&questions) {
        assert_eq!(row.seq, Some(*seq), "連番");
        assert_eq!(row.item, item.key, "item at 連番 {seq}");
        match part {
            Some(choice) => {
                assert_eq!(item.kind, ItemKind::Multi);
                assert_eq!(row.part, Some(choice.code), "part code at 連番 {seq}");
                assert_eq!(row.label, choice.label, "part label at 連番 {seq}");
            }
            None => {
                assert_eq!(item.kind, ItemKind::Single);
                assert_eq!(row.label, item.title, "label at 連番 {seq}");
                let codes: Vec<(i64, String)> = item
                    .choices
                    .iter()
                    .map(|c| (c.code, c.label.clone()))
                    .collect();
                assert_eq!(row.codes, codes, "codes of {}", item.key);
            }
        }
    }
}

#[test]
fn independence_scales_match_the_table() {
    let catalog = SurveyCatalog::embedded().unwrap();
    for row in read("items-extra.tsv") {
        let item = catalog.item(&row.item).unwrap();
        assert!(!item.counted, "{} is outside the 74", row.item);
        assert_eq!(item.title, row.label);
        let offered: Vec<(i64, String)> = item
            .choices
            .iter()
            .filter(|c| !c.import_only)
            .map(|c| (c.code, c.label.clone()))
            .collect();
        assert_eq!(offered, row.codes, "{}", row.item);
    }
}

#[test]
fn counts_by_group_and_axis_match_the_official_text() {
    let catalog = SurveyCatalog::embedded().unwrap();
    let q = catalog.counted_questions();
    let by_group = |g: u32| q.iter().filter(|(_, i, _)| i.group == g).count();
    assert_eq!(
        [
            by_group(1),
            by_group(2),
            by_group(3),
            by_group(4),
            by_group(5),
            by_group(6)
        ],
        [13 + 7, 12, 9, 15, 6, 12]
    );
    let by_axis = |a: &str| {
        q.iter()
            .filter(|(_, i, _)| i.axis.as_deref() == Some(a))
            .count()
    };
    assert_eq!(
        (by_axis("能力"), by_axis("介助の方法"), by_axis("有無")),
        (18, 16, 40)
    );
    // Multi-part items: 1-1 and 1-2 have the exclusive ない.
    for key in ["1-1", "1-2"] {
        let item = catalog.item(key).unwrap();
        assert_eq!(item.exclusive, vec![1]);
        assert_eq!(item.label_of(1), Some("ない"));
    }
}
