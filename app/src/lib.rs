//! musubi-app as a library: the tablet app ([`ui`]), so that its tests, benchmarks and the
//! `musubi` binary share it, and the office work both front ends do ([`office`]). The
//! command-line interface lives in the binary.

pub mod logfile;
pub mod office;
pub mod ui;
