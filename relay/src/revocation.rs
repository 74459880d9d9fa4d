//! The relay's [`RevocationCheck`]: consults `devices.toml`, re-reading it whenever it
//! changed on disk, so `musubi-relay revoke` takes effect at the next handshake without
//! restarting the server.
//!
//! A device is admitted only if the registry lists its id, with the same office and the
//! same certificate fingerprint, and not revoked. Anything else (revoked, never recorded,
//! a different certificate for the same id) is refused with the `certificate_revoked`
//! alert. If the registry cannot be read, every device is refused (fail closed) and the
//! problem is logged.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use musubi_engine::net::pki::PeerIdentity;
use musubi_engine::net::tls::RevocationCheck;

use crate::devices::DeviceRegistry;

/// What identifies one version of the file: modification time, length and inode (an
/// atomic rename always changes the inode, even within one mtime tick).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let meta = std::fs::metadata(path)?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Ok(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

struct Cached {
    stamp: Option<Stamp>,
    registry: Option<Arc<DeviceRegistry>>,
}

/// Revocation check backed by `devices.toml`.
pub struct FileRevocation {
    path: PathBuf,
    cached: Mutex<Cached>,
}

impl std::fmt::Debug for FileRevocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileRevocation")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FileRevocation {
    /// A check reading `path` (the registry is read at the first handshake).
    pub fn new(path: impl Into<PathBuf>) -> FileRevocation {
        FileRevocation {
            path: path.into(),
            cached: Mutex::new(Cached {
                stamp: None,
                registry: None,
            }),
        }
    }

    /// The current registry, re-read if the file changed; `None` if it cannot be read.
    pub fn registry(&self) -> Option<Arc<DeviceRegistry>> {
        let mut cached = match self.cached.lock() {
            Ok(guard) => guard,
            // A panic while holding the lock cannot leave the cache half-written (it is
            // replaced whole), so the poisoned value is still usable.
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = match stamp(&self.path) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the device registry; refusing all devices");
                cached.stamp = None;
                cached.registry = None;
                return None;
            }
        };
        if cached.stamp != Some(now) || cached.registry.is_none() {
            match DeviceRegistry::read(&self.path) {
                Ok(reg) => {
                    tracing::info!(devices = reg.devices.len(), "device registry loaded");
                    cached.registry = Some(Arc::new(reg));
                    cached.stamp = Some(now);
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the device registry; refusing all devices");
                    cached.registry = None;
                    cached.stamp = None;
                }
            }
        }
        cached.registry.clone()
    }
}

impl RevocationCheck for FileRevocation {
    fn is_revoked(&self, peer: &PeerIdentity) -> bool {
        match self.registry() {
            Some(reg) => !reg.admits(peer),
            None => true,
        }
    }
}
