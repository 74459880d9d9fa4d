//! 居宅サービス計画作成依頼（変更）届出書: the rules its schema cannot say.
//!
//! - 変更 names what changed (`change`: date and reason), 新規 does not;
//! - 介護予防支援の委託先 (`delegated_to`) exists only when a 介護予防支援事業所 draws up
//!   the plan;
//! - a 介護予防サービス計画 is drawn up by a 介護予防支援事業所 or a 小規模多機能型
//!   居宅介護事業所 (介護予防小規模多機能型居宅介護), a 居宅サービス計画 by any office but
//!   a 介護予防支援事業所.
//!
//! Messages are Japanese and name the field by its title, never its value.

use serde_json::Value;

/// The provider type that draws up 介護予防サービス計画 and may entrust them.
pub const PREVENTION_PROVIDER: &str = "介護予防支援事業所（地域包括支援センター）";

/// A hard problem of a notice: the JSON path and a Japanese message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// JSON pointer of the field.
    pub path: &'static str,
    /// What is wrong, in Japanese.
    pub message: &'static str,
}

/// The hard problems of a notice (empty when it is consistent).
pub fn hard_errors(doc: &Value) -> Vec<Problem> {
    let text = |ptr: &str| doc.pointer(ptr).and_then(Value::as_str);
    let mut out = Vec::new();
    match (text("/category"), doc.get("change").is_some()) {
        (Some("変更"), false) => out.push(Problem {
            path: "/change",
            message: "区分が「変更」のときは、変更年月日と変更事由を入力してください",
        }),
        (Some("新規"), true) => out.push(Problem {
            path: "/change",
            message: "区分が「新規」のときは、変更の内容は入力しません",
        }),
        _ => {}
    }
    let provider = text("/provider/type");
    if doc.get("delegated_to").is_some() && provider != Some(PREVENTION_PROVIDER) {
        out.push(Problem {
            path: "/delegated_to",
            message: "介護予防支援の委託先は、介護予防支援事業所が計画を作成するときだけ入力します",
        });
    }
    let prevention_ok = matches!(
        provider,
        Some(PREVENTION_PROVIDER | "小規模多機能型居宅介護事業所")
    );
    match text("/plan") {
        Some("介護予防サービス計画") if provider.is_some() && !prevention_ok => {
            out.push(Problem {
                path: "/provider/type",
                message: "介護予防サービス計画は、介護予防支援事業所または小規模多機能型居宅介護事業所が作成します",
            });
        }
        Some("居宅サービス計画") if provider == Some(PREVENTION_PROVIDER) => {
            out.push(Problem {
                path: "/provider/type",
                message: "居宅サービス計画は、介護予防支援事業所では作成しません",
            })
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn example() -> Value {
        serde_json::from_str(include_str!("../../../schemas/examples/plan-request.json"))
            .expect("example parses")
    }

    fn paths(doc: &Value) -> Vec<&'static str> {
        hard_errors(doc).into_iter().map(|p| p.path).collect()
    }

    #[test]
    fn the_example_is_consistent() {
        assert!(hard_errors(&example()).is_empty());
    }

    #[test]
    fn a_change_needs_its_date_and_reason_and_a_new_request_has_none() {
        let mut d = example();
        d.as_object_mut().map(|o| o.remove("change"));
        assert_eq!(paths(&d), ["/change"]);
        d["category"] = json!("新規");
        assert!(paths(&d).is_empty());
        d["change"] = json!({"date": "2026-11-01", "reason": "転居"});
        assert_eq!(paths(&d), ["/change"]);
    }

    #[test]
    fn the_provider_fits_the_plan_and_only_prevention_offices_entrust() {
        let mut d = example();
        d["delegated_to"] = json!({"office_number": "1370100024", "name": "委託先"});
        assert_eq!(paths(&d), ["/delegated_to"]);
        d["provider"]["type"] = json!(PREVENTION_PROVIDER);
        assert_eq!(
            paths(&d),
            ["/provider/type"],
            "居宅サービス計画 by a 介護予防支援事業所"
        );
        d["plan"] = json!("介護予防サービス計画");
        assert!(paths(&d).is_empty());
        d["provider"]["type"] = json!("居宅介護支援事業所");
        d.as_object_mut().map(|o| o.remove("delegated_to"));
        assert_eq!(paths(&d), ["/provider/type"]);
        d["provider"]["type"] = json!("小規模多機能型居宅介護事業所");
        assert!(paths(&d).is_empty());
    }
}
