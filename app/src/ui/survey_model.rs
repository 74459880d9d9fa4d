//! Pure helpers behind the forms: which 基本調査 questions are answered, where the next
//! unanswered one is, and how to turn "set this field" into an edit the engine accepts
//! when the enclosing objects do not exist yet.

use musubi_engine::schema::{Item, ItemKind, Pointer, SurveyCatalog};
use serde_json::{Map, Value};

/// Whether `item` has an answer in the survey's `items` object. A multi-select item is
/// answered once it is present (an empty list means "none of these", e.g. 特別な医療).
pub fn is_answered(item: &Item, items: Option<&Value>) -> bool {
    let Some(v) = items.and_then(|i| i.get(&item.key)) else {
        return false;
    };
    match item.kind {
        ItemKind::Single => v.is_i64(),
        ItemKind::Multi => v.is_array(),
    }
}

/// How many of the 74 counted questions are answered (a multi-part item counts once per
/// part, as on the form).
pub fn answered_count(catalog: &SurveyCatalog, items: Option<&Value>) -> usize {
    catalog
        .counted_questions()
        .into_iter()
        .filter(|(_, item, _)| is_answered(item, items))
        .count()
}

/// The key of the first unanswered item after `after` in form order (wrapping around),
/// or `None` when every item is answered. Items outside the 74 (自立度) count too.
pub fn next_unanswered<'c>(
    catalog: &'c SurveyCatalog,
    items: Option<&Value>,
    after: Option<&str>,
) -> Option<&'c str> {
    let list = &catalog.items;
    let start = after
        .and_then(|k| list.iter().position(|i| i.key == k))
        .map_or(0, |p| p + 1);
    (0..list.len())
        .map(|n| &list[(start + n) % list.len()])
        .find(|i| !is_answered(i, items))
        .map(|i| i.key.as_str())
}

/// Turns "set `pointer` to `value`" into an edit whose parent exists in `doc`: when an
/// enclosing object is missing, the edit sets the outermost missing object instead, with
/// the value nested inside it. Array positions must exist already.
pub fn plan_set(doc: &Value, pointer: &Pointer, value: Value) -> (Pointer, Value) {
    let tokens = pointer.tokens();
    let mut cur = doc;
    for (depth, token) in tokens.iter().enumerate() {
        if depth + 1 == tokens.len() {
            break;
        }
        let next = match cur {
            Value::Object(m) => m.get(token),
            Value::Array(a) => token.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        };
        match next {
            Some(v) if v.is_object() || v.is_array() => cur = v,
            _ => {
                // tokens[depth] is missing: set it to the nested remainder.
                let mut nested = value;
                for t in tokens[depth + 1..].iter().rev() {
                    let mut m = Map::new();
                    m.insert(t.clone(), nested);
                    nested = Value::Object(m);
                }
                let mut p = Pointer::root();
                for t in &tokens[..=depth] {
                    p.push(t.clone());
                }
                return (p, nested);
            }
        }
    }
    (pointer.clone(), value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn ptr(s: &str) -> Pointer {
        Pointer::parse(s).unwrap()
    }

    #[test]
    fn plan_set_creates_missing_parents_only() {
        let doc = json!({"overview": {}});
        let (p, v) = plan_set(&doc, &ptr("/overview/conducted/date"), json!("2026-11-30"));
        assert_eq!(p.to_string(), "/overview/conducted");
        assert_eq!(v, json!({"date": "2026-11-30"}));
        let doc = json!({"overview": {"conducted": {"time": "10:00"}}});
        let (p, v) = plan_set(&doc, &ptr("/overview/conducted/date"), json!("2026-11-30"));
        assert_eq!(p.to_string(), "/overview/conducted/date");
        assert_eq!(v, json!("2026-11-30"));
    }

    #[test]
    fn counts_and_next_unanswered_follow_the_catalog() {
        let cat = SurveyCatalog::embedded().unwrap();
        assert_eq!(cat.counted_questions().len(), 74);
        assert_eq!(answered_count(&cat, None), 0);
        let first = cat.items[0].key.clone();
        assert_eq!(next_unanswered(&cat, None, None), Some(first.as_str()));
        let items = json!({ first.clone(): cat.items[0].choices.iter().map(|c| c.code).take(1).collect::<Vec<_>>() });
        let after = next_unanswered(&cat, Some(&items), None).unwrap();
        assert_eq!(after, cat.items[1].key);
    }

    proptest! {
        // Whatever the document looks like, the planned edit applies to it.
        #[test]
        fn planned_edit_always_has_a_parent(
            present in proptest::collection::vec(any::<bool>(), 1..4),
            leaf in "[a-z]{1,5}",
        ) {
            let mut doc = json!({});
            let mut tokens = Vec::new();
            {
                let mut cur = &mut doc;
                for (i, p) in present.iter().enumerate() {
                    let t = format!("k{i}");
                    tokens.push(t.clone());
                    if !*p { break; }
                    cur = cur.as_object_mut().unwrap().entry(t).or_insert(json!({}));
                }
            }
            tokens.push(leaf);
            let mut pointer = Pointer::root();
            for t in &tokens { pointer.push(t.clone()); }
            let (p, v) = plan_set(&doc, &pointer, json!(1));
            let mut applied = doc.clone();
            prop_assert!(musubi_engine::doc::apply_pointer(&mut applied, &p, v).is_ok());
            prop_assert_eq!(applied.pointer(&pointer.to_string()), Some(&json!(1)));
        }
    }
}
