//! musubi-app as a library: the tablet app ([`ui`]), so that its tests, benchmarks and the
//! `musubi` binary share it. The command-line interface lives in the binary.

pub mod logfile;
pub mod ui;
