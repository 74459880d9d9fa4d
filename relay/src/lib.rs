//! musubi relay: the office hub devices sync with.
//!
//! The relay directory (see [`dir`] and `docs/relay.md`) holds the office CA, the relay's
//! certificate, the list of offices served, the device registry and the relay's own
//! encrypted store. The `musubi-relay` binary (`src/main.rs`) is a thin command line over
//! this library:
//!
//! - [`dir::RelayDir`]: create (`init`) and open a relay directory; offices, enrollment,
//!   revocation, status, and what the server needs (TLS material, the store, the
//!   revocation check);
//! - [`devices`]: the device registry `devices.toml`;
//! - [`registry`]: where the registry lives (the file, or a cluster's database) and the
//!   serving path's view of it;
//! - [`revocation::FileRevocation`]: the handshake-time revocation check that re-reads the
//!   registry when it changes on disk;
//! - [`config`]: `relay.toml` and the optional serve configuration file;
//! - [`enrollment`]: redeeming enrollments and renewing certificates in the registry;
//! - [`serve`]: the QUIC server (with `cert_serve`, its side of the certificate
//!   exchanges);
//! - [`metrics`]: its counters, `/metrics` and `/healthz`;
//! - [`notify`]: systemd's readiness, watchdog and reload notifications;
//! - [`backup`]: `backup` and `restore` of the relay directory with a snapshot of its
//!   store, in one passphrase-encrypted file.

pub mod backup;
mod cert_serve;
pub mod config;
pub mod devices;
pub mod dir;
pub mod enrollment;
pub mod error;
mod fsutil;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod registry;
pub mod revocation;
pub mod serve;

pub use self::dir::RelayDir;
pub use self::error::RelayError;
