//! musubi engine: everything a tablet and the office relay share.
//!
//! - [`schema`]: the JSON Schemas of the care documents (embedded from `schemas/`) and
//!   their validator;
//! - [`doc`]: typed care documents over automerge, their audit history and conflicts;
//! - [`store`]: the encrypted local store (SQLCipher, key wrapped with age), owned by one
//!   thread;
//! - [`engine`]: the facade the CLI and the app call;
//! - [`care`]: survey checks and workflow, 要介護認定 progress, vital signs, survey requests;
//! - [`identifiers`]: 保険者番号 / 被保険者番号 / 事業所番号 rules and the My Number guard;
//! - [`admit`]: the rules every document arriving from outside (sync, bundles) must pass.

pub mod admit;
#[cfg(feature = "card")]
pub mod card;
pub mod care;
pub mod doc;
#[cfg(feature = "store")]
pub mod engine;
pub mod export;
pub mod identifiers;
pub mod ids;
#[cfg(feature = "net")]
pub mod net;
pub mod schema;
#[cfg(feature = "store")]
pub mod store;
pub mod sync;

/// Reading a secret's value is explicit: `secret.expose_secret()`.
#[cfg(feature = "store")]
pub use age::secrecy::ExposeSecret;
#[cfg(feature = "store")]
pub use engine::{Engine, EngineError};
