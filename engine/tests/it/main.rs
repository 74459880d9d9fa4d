//! Engine integration tests: the schema against an independent table, documents over
//! automerge (round trip, edits, conflicts, history) and property tests.

#![allow(clippy::unwrap_used)]

mod admin_fields;
mod bundle;
mod care;
mod doc_limits;
mod docs;
mod export;
mod japanese_issues;
mod properties;
mod schema_table;
mod sync_bounds;
mod sync_intake;
mod sync_props;
mod sync_sim;

use serde_json::Value;
use std::path::Path;

pub fn example(kind: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../schemas/examples/{kind}.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}
