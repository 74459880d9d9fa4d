//! Helpers shared by the dispatcher (`cli`) and every command family. Families use this
//! module, never `cli`: the dispatcher depends on the families, not the other way round.

use anyhow::Result;
use musubi_app::office::OfficeError;
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
    musubi_app::office::load_kind(engine, id, want).map_err(office_error)
}

/// Office work's error for the command line: a refused input keeps its exit code (2),
/// anything else keeps its cause for `crate::exit`.
pub fn office_error(e: OfficeError) -> anyhow::Error {
    match e {
        OfficeError::Input(m) => InputError(m).into(),
        OfficeError::Workflow(e) => InputError(e.to_string()).into(),
        OfficeError::Engine(e) => (*e).into(),
        OfficeError::Export(e) => e.into(),
        e @ OfficeError::Io { .. } => e.into(),
    }
}
