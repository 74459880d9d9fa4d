//! Helpers shared by the dispatcher (`cli`) and every command family. Families use this
//! module, never `cli`: the dispatcher depends on the families, not the other way round.

use anyhow::Result;
use musubi_engine::Engine;
use musubi_engine::ids::DocId;
use musubi_engine::schema::DocKind;
use serde_json::Value;

/// Bad input detected by the command line itself (unreadable file, not JSON, bad id or
/// pointer, a refused workflow step). Exit code 2 (`crate::exit`); nothing was written.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// A document id from the command line; names only its length when it is malformed.
pub fn parse_id(s: &str) -> Result<DocId> {
    s.parse::<DocId>()
        .map_err(|e| InputError(format!("{e} (got {} characters)", s.chars().count())).into())
}

/// Now, in milliseconds since the epoch (the engine's time stamps).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Today's local date, YYYY-MM-DD.
pub fn today() -> String {
    chrono::Local::now().format("%Y-%m-%d").to_string()
}

/// The JSON of document `id`, which must be of kind `want` (else refused as input, naming
/// both kinds in Japanese).
pub fn load_kind(engine: &Engine, id: DocId, want: DocKind) -> Result<Value> {
    let doc = engine.load(id)?;
    if doc.kind() != want {
        return Err(InputError(format!(
            "{id} は{}ではありません（{}）",
            want.label(),
            doc.kind().label()
        ))
        .into());
    }
    Ok(doc.to_json()?)
}
