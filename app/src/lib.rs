//! musubi-app as a library: the tablet app ([`ui`], feature `gui`, on by default), so that
//! its tests, benchmarks and the `musubi` binary share it, and what the command line and
//! the app both do ([`office`], [`history`]). The command-line interface lives in the
//! binary; built without `gui`, `musubi` has every command but no window.

pub mod history;
pub mod logfile;
pub mod office;
#[cfg(feature = "gui")]
pub mod ui;
