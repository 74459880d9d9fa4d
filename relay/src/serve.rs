//! The QUIC server (`musubi-relay serve`).
//!
//! Placeholder written by the administration work so the binary builds; the QUIC
//! transport work replaces this file with the real server.

use std::net::SocketAddr;
use std::path::PathBuf;

/// What `musubi-relay serve` passes to [`run`].
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The relay directory.
    pub dir: PathBuf,
    /// Listen address; `None`: the one in `relay.toml`.
    pub listen: Option<SocketAddr>,
    /// Most device sessions at once; `None`: the server's default.
    pub max_sessions: Option<usize>,
}

/// Runs the server until SIGINT/SIGTERM.
pub fn run(opts: ServeOptions) -> anyhow::Result<()> {
    let _ = opts;
    anyhow::bail!("musubi-relay serve is not yet implemented")
}
