//! Where the device registry lives: `devices.toml` in the relay directory (one relay), or
//! the cluster's PostgreSQL database (every node of a cluster acts on one registry).
//!
//! Both hold the same text ([`DeviceRegistry::to_text`]); [`RegistryBackend::modify`]
//! reads, changes and writes it as one step (the file under the caller's administration
//! lock, the database in one transaction under its own lock), and the serving path
//! follows changes through [`Revocation`]: the file's stamp, or the database's version
//! polled once a second by a background thread (never a query per handshake).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use musubi_engine::net::pki::PeerIdentity;
use musubi_engine::net::tls::RevocationCheck;
use musubi_relay_pg::PgStorage;

use crate::devices::DeviceRegistry;
use crate::error::RelayError;
use crate::revocation::FileRevocation;

/// How often a cluster node re-checks the registry version.
pub const REGISTRY_POLL: Duration = Duration::from_secs(1);
/// A device the cached registry does not admit (it may have been enrolled a moment ago,
/// at this node or another) makes the node re-check at once, but not more often than
/// this: a refused device cannot make the node query the database per handshake.
pub const MISS_RECHECK: Duration = Duration::from_millis(250);
/// A cluster node that could not reach the database for this long refuses every device
/// (fail closed: it can no longer know of revocations).
pub const REGISTRY_STALE: Duration = Duration::from_secs(15);

/// The registry's home.
#[derive(Clone)]
pub enum RegistryBackend {
    /// `devices.toml` at this path.
    File(PathBuf),
    /// The cluster database.
    Postgres(Arc<PgStorage>),
}

impl std::fmt::Debug for RegistryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryBackend::File(p) => f.debug_tuple("File").field(p).finish(),
            RegistryBackend::Postgres(_) => f.write_str("Postgres"),
        }
    }
}

fn parse_bytes(bytes: &[u8]) -> Result<DeviceRegistry, RelayError> {
    let text = std::str::from_utf8(bytes).map_err(|_| RelayError::BadFile {
        file: "device registry",
        problem: "not UTF-8".into(),
    })?;
    DeviceRegistry::parse(text)
}

impl RegistryBackend {
    /// The registry, read now (empty in a database where nothing was recorded yet).
    pub fn load(&self) -> Result<DeviceRegistry, RelayError> {
        match self {
            RegistryBackend::File(path) => DeviceRegistry::read(path),
            RegistryBackend::Postgres(pg) => match pg.registry_load()? {
                None => Ok(DeviceRegistry::new()),
                Some((_, bytes)) => parse_bytes(&bytes),
            },
        }
    }

    /// Reads the registry, lets `change` edit it, and writes it if `change` says so
    /// (`(value, true)`), as one step. The file backend relies on the caller holding the
    /// administration lock; the database backend takes its own lock (every node).
    pub fn modify<T: Send>(
        &self,
        change: impl FnOnce(&mut DeviceRegistry) -> Result<(T, bool), RelayError> + Send,
    ) -> Result<T, RelayError> {
        match self {
            RegistryBackend::File(path) => {
                let mut reg = DeviceRegistry::read(path)?;
                let (value, write) = change(&mut reg)?;
                if write {
                    reg.write(path)?;
                }
                Ok(value)
            }
            RegistryBackend::Postgres(pg) => {
                let mut out = None;
                let slot = &mut out;
                pg.registry_modify(move |current| {
                    let mut reg = match current {
                        None => DeviceRegistry::new(),
                        Some(bytes) => parse_bytes(&bytes)?,
                    };
                    let (value, write) = change(&mut reg)?;
                    *slot = Some(value);
                    if write {
                        Ok::<_, RelayError>(Some(reg.to_text()?.into_bytes()))
                    } else {
                        Ok(None)
                    }
                })??;
                out.ok_or_else(|| RelayError::BadFile {
                    file: "device registry",
                    problem: "the change did not run".into(),
                })
            }
        }
    }
}

struct PgCache {
    version: Option<i64>,
    registry: Option<Arc<DeviceRegistry>>,
    checked: Option<Instant>,
    /// When a refused device last made the node re-check.
    miss_checked: Option<Instant>,
}

/// The cluster registry as the serving path sees it: a cache refreshed by a background
/// thread every [`REGISTRY_POLL`] (the version first; the registry only when it moved).
pub struct PgRevocation {
    pg: Arc<PgStorage>,
    cache: Arc<Mutex<PgCache>>,
}

impl std::fmt::Debug for PgRevocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgRevocation").finish_non_exhaustive()
    }
}

fn refresh(pg: &PgStorage, cache: &Mutex<PgCache>) -> Result<(), RelayError> {
    let known = lock(cache).version;
    let version = pg.registry_version()?;
    if version.is_none() || version != known {
        let (version, reg) = match pg.registry_load()? {
            None => (None, DeviceRegistry::new()),
            Some((v, bytes)) => (Some(v), parse_bytes(&bytes)?),
        };
        tracing::info!(
            devices = reg.devices.len(),
            "device registry loaded from the database"
        );
        let mut c = lock(cache);
        c.version = version;
        c.registry = Some(Arc::new(reg));
    }
    lock(cache).checked = Some(Instant::now());
    Ok(())
}

fn lock(cache: &Mutex<PgCache>) -> std::sync::MutexGuard<'_, PgCache> {
    // The cache is replaced field by field with whole values: a poisoned one is usable.
    cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl PgRevocation {
    /// Loads the registry now and starts the thread that follows it (it ends when the
    /// check is dropped).
    pub fn start(pg: Arc<PgStorage>) -> PgRevocation {
        let cache = Arc::new(Mutex::new(PgCache {
            version: None,
            registry: None,
            checked: None,
            miss_checked: None,
        }));
        if let Err(e) = refresh(&pg, &cache) {
            tracing::error!(error = %e, "cannot read the device registry from the database; refusing devices until it can");
        }
        let weak = Arc::downgrade(&cache);
        let poll = Arc::clone(&pg);
        let spawned = std::thread::Builder::new()
            .name("registry-poll".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(REGISTRY_POLL);
                    let Some(cache) = weak.upgrade() else { return };
                    if let Err(e) = refresh(&poll, &cache) {
                        tracing::error!(error = %e, "cannot re-read the device registry from the database");
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the registry poll; the registry will not follow changes");
        }
        PgRevocation { pg, cache }
    }

    /// Whether `peer` is admitted, re-checking the database first (at most every
    /// [`MISS_RECHECK`]) when the cached registry refuses it.
    pub fn admits(&self, peer: &PeerIdentity) -> bool {
        if self.registry().is_some_and(|r| r.admits(peer)) {
            return true;
        }
        {
            let mut c = lock(&self.cache);
            if c.miss_checked.is_some_and(|t| t.elapsed() < MISS_RECHECK) {
                return false;
            }
            c.miss_checked = Some(Instant::now());
        }
        if let Err(e) = refresh(&self.pg, &self.cache) {
            tracing::error!(error = %e, "cannot re-read the device registry from the database");
        }
        self.registry().is_some_and(|r| r.admits(peer))
    }

    /// The registry as last read; `None` if never read or not refreshed for
    /// [`REGISTRY_STALE`].
    pub fn registry(&self) -> Option<Arc<DeviceRegistry>> {
        let c = lock(&self.cache);
        let fresh = c.checked.is_some_and(|t| t.elapsed() < REGISTRY_STALE);
        if !fresh {
            return None;
        }
        c.registry.clone()
    }
}

/// The revocation check of a serving relay, for either backend.
#[derive(Debug)]
pub enum Revocation {
    /// `devices.toml`, re-read when it changes.
    File(FileRevocation),
    /// The cluster database, polled.
    Postgres(PgRevocation),
}

impl Revocation {
    /// The current registry; `None` if it cannot be had (every device is then refused).
    pub fn registry(&self) -> Option<Arc<DeviceRegistry>> {
        match self {
            Revocation::File(f) => f.registry(),
            Revocation::Postgres(p) => p.registry(),
        }
    }
}

impl RevocationCheck for Revocation {
    fn is_revoked(&self, peer: &PeerIdentity) -> bool {
        match self {
            Revocation::File(f) => f.is_revoked(peer),
            Revocation::Postgres(p) => !p.admits(peer),
        }
    }
}
