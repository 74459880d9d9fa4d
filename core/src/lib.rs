//! musubi core: what a tablet, the relay and the fuzz targets share, with no I/O.
//!
//! - [`ids`]: document ids; [`date`]: [`date::CalendarDate`], the one calendar date; [`identifiers`]: 保険者番号 / 被保険者番号 / 事業所番号 rules
//!   and the My Number guard;
//! - [`schema`]: the JSON Schemas of the care documents (embedded from `schemas/`) and
//!   their validator;
//! - [`doc`]: typed care documents over automerge, their audit history and conflicts;
//! - [`care`]: survey checks and workflow, 要介護認定 progress, vital signs, survey requests;
//! - [`export`]: the 認定調査票 as PDF and CSV, to bytes;
//! - [`admit`]: the rules every document arriving from outside (sync, bundles) must pass;
//! - [`sync`]: the sync protocol, sans-IO: frames, the session state machine, the storage
//!   contract ([`sync::SyncStorage`]) with its in-memory implementation, the bundle format;
//! - [`card`] (feature `card`): the My Number card protocol and its offline verifier over a
//!   transport trait.
//!
//! The encrypted store, the QUIC driver, the PC/SC driver and the facade that ties them
//! together are in `musubi-engine`, which re-exports every module here under the same
//! path (`musubi_engine::sync::…` is `musubi_core::sync::…`).

pub mod admit;
#[cfg(feature = "card")]
pub mod card;
pub mod care;
pub mod date;
pub mod doc;
pub mod export;
pub mod identifiers;
pub mod ids;
pub mod schema;
pub mod sync;
