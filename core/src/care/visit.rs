//! Vital signs of the 訪問看護記録書Ⅱ (reference §5.2): units and plausibility ranges in
//! one table. Values outside the hard range are impossible and refused (the schema holds
//! the same bounds; a test keeps the two equal); values outside the usual range are soft
//! warnings. Messages name the field, never the value.

use super::checks::Warning;
use serde_json::Value;

/// One vital sign.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VitalRange {
    /// Field under `/vitals`.
    pub field: &'static str,
    /// Japanese name.
    pub label: &'static str,
    /// Unit as shown.
    pub unit: &'static str,
    /// Impossible below this (hard error).
    pub hard_min: f64,
    /// Impossible above this (hard error).
    pub hard_max: f64,
    /// Unusual below this (soft warning).
    pub usual_min: f64,
    /// Unusual above this (soft warning).
    pub usual_max: f64,
    /// Whole numbers only.
    pub integer: bool,
}

/// The table. Hard bounds: physiologically impossible in a living person being visited
/// at home (they equal the schema's minimum/maximum). Usual ranges: musubi's own
/// defaults for an adult at rest, meant to prompt a second look, not a diagnosis [U].
pub const VITALS: [VitalRange; 7] = [
    VitalRange {
        field: "body_temperature",
        label: "体温",
        unit: "℃",
        hard_min: 30.0,
        hard_max: 45.0,
        usual_min: 35.0,
        usual_max: 37.9,
        integer: false,
    },
    VitalRange {
        field: "pulse",
        label: "脈拍",
        unit: "回/分",
        hard_min: 20.0,
        hard_max: 250.0,
        usual_min: 50.0,
        usual_max: 100.0,
        integer: true,
    },
    VitalRange {
        field: "systolic_bp",
        label: "血圧（収縮期）",
        unit: "mmHg",
        hard_min: 30.0,
        hard_max: 300.0,
        usual_min: 90.0,
        usual_max: 159.0,
        integer: true,
    },
    VitalRange {
        field: "diastolic_bp",
        label: "血圧（拡張期）",
        unit: "mmHg",
        hard_min: 30.0,
        hard_max: 300.0,
        usual_min: 50.0,
        usual_max: 99.0,
        integer: true,
    },
    VitalRange {
        field: "respiration",
        label: "呼吸数",
        unit: "回/分",
        hard_min: 4.0,
        hard_max: 80.0,
        usual_min: 12.0,
        usual_max: 24.0,
        integer: true,
    },
    VitalRange {
        field: "spo2",
        label: "SpO2",
        unit: "%",
        hard_min: 50.0,
        hard_max: 100.0,
        usual_min: 90.0,
        usual_max: 100.0,
        integer: true,
    },
    VitalRange {
        field: "body_weight",
        label: "体重",
        unit: "kg",
        hard_min: 10.0,
        hard_max: 250.0,
        usual_min: 30.0,
        usual_max: 100.0,
        integer: false,
    },
];

/// Code of the soft warning "outside the usual range".
pub const UNUSUAL_VITAL: &str = "V01";

/// A hard problem of a visit record: the JSON path and a Japanese message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VitalError {
    /// JSON pointer of the field.
    pub path: String,
    /// What is wrong (no value).
    pub message: String,
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x}")
    }
}

/// Impossible values (the cross-field rule included). Empty when the record is fine.
pub fn hard_errors(doc: &Value) -> Vec<VitalError> {
    let mut out = Vec::new();
    let Some(vitals) = doc.get("vitals").and_then(Value::as_object) else {
        return out;
    };
    for r in &VITALS {
        let Some(v) = vitals.get(r.field) else {
            continue;
        };
        let path = format!("/vitals/{}", r.field);
        match v.as_f64() {
            Some(x) if x.is_finite() && x >= r.hard_min && x <= r.hard_max => {
                if r.integer && x.fract() != 0.0 {
                    out.push(VitalError {
                        path,
                        message: format!("{} は整数（{}）で入力してください", r.label, r.unit),
                    });
                }
            }
            Some(_) => out.push(VitalError {
                path,
                message: format!(
                    "{} の値はありえない範囲です（{}〜{} {}）",
                    r.label,
                    fmt_num(r.hard_min),
                    fmt_num(r.hard_max),
                    r.unit
                ),
            }),
            None => out.push(VitalError {
                path,
                message: format!("{} は数値で入力してください（{}）", r.label, r.unit),
            }),
        }
    }
    if let (Some(sys), Some(dia)) = (
        vitals.get("systolic_bp").and_then(Value::as_f64),
        vitals.get("diastolic_bp").and_then(Value::as_f64),
    ) && dia >= sys
    {
        out.push(VitalError {
            path: "/vitals/diastolic_bp".to_owned(),
            message: "血圧（拡張期）が血圧（収縮期）以上になっています（上下の入れ違いがないか確認してください）"
                .to_owned(),
        });
    }
    out
}

/// Unusual values: soft warnings with code V01, item = the field name.
pub fn soft_warnings(doc: &Value) -> Vec<Warning> {
    let mut out = Vec::new();
    let Some(vitals) = doc.get("vitals").and_then(Value::as_object) else {
        return out;
    };
    for r in &VITALS {
        let Some(x) = vitals.get(r.field).and_then(Value::as_f64) else {
            continue;
        };
        if x < r.usual_min || x > r.usual_max {
            out.push(Warning {
                code: UNUSUAL_VITAL.to_owned(),
                items: vec![format!("vitals/{}", r.field)],
                message: format!(
                    "{} が通常の範囲（{}〜{} {}）の外です。測定と入力を確認してください",
                    r.label,
                    fmt_num(r.usual_min),
                    fmt_num(r.usual_max),
                    r.unit
                ),
                dismissed: None,
            });
        }
    }
    out
}
