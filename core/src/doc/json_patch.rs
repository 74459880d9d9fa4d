//! Applying `musubi doc set ID POINTER VALUE` to interchange JSON, so the whole resulting
//! document can be validated before anything is written.

use crate::schema::Pointer;
use serde_json::Value;

/// Sets `value` at `pointer` inside `doc`. The parent must exist; `-` appends to an array.
/// Returns a reason (without values) when the pointer names no place.
pub fn apply_pointer(doc: &mut Value, pointer: &Pointer, value: Value) -> Result<(), String> {
    let Some((parent, last)) = pointer.split_last() else {
        return Err("the whole document cannot be replaced; name a field".to_owned());
    };
    let mut cur = doc;
    for token in parent.tokens() {
        cur = match cur {
            Value::Object(map) => map.get_mut(token),
            Value::Array(list) => token.parse::<usize>().ok().and_then(|i| list.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| {
            "the parent of this field does not exist; set the enclosing object first".to_owned()
        })?;
    }
    match cur {
        Value::Object(map) => {
            map.insert(last.to_owned(), value);
            Ok(())
        }
        Value::Array(list) => {
            if last == "-" {
                list.push(value);
                return Ok(());
            }
            let i: usize = last.parse().map_err(|_| "not a list index".to_owned())?;
            let slot = list
                .get_mut(i)
                .ok_or_else(|| "list index out of range".to_owned())?;
            *slot = value;
            Ok(())
        }
        _ => Err("the parent of this field is not an object or a list".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sets_appends_and_refuses() {
        let mut d = json!({"items": {"1-3": 1}, "notes": [{"t": "a"}]});
        apply_pointer(&mut d, &Pointer::parse("/items/1-3").unwrap(), json!(2)).unwrap();
        apply_pointer(
            &mut d,
            &Pointer::parse("/notes/-").unwrap(),
            json!({"t": "b"}),
        )
        .unwrap();
        apply_pointer(&mut d, &Pointer::parse("/notes/0/t").unwrap(), json!("c")).unwrap();
        assert_eq!(
            d,
            json!({"items": {"1-3": 2}, "notes": [{"t": "c"}, {"t": "b"}]})
        );
        assert!(apply_pointer(&mut d, &Pointer::parse("/nope/x").unwrap(), json!(1)).is_err());
        assert!(apply_pointer(&mut d, &Pointer::parse("/notes/5").unwrap(), json!(1)).is_err());
        assert!(apply_pointer(&mut d, &Pointer::parse("").unwrap(), json!(1)).is_err());
    }
}
