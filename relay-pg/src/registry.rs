//! The device registry of a cluster relay: one row of `device_registry` holding the
//! registry text the relay writes (its format is the relay's business), sealed under the
//! data key, and a version that every change increments.
//!
//! Changes run in one transaction under an advisory lock (two nodes enrolling at once
//! take turns; the first change creates the row). Readers poll [`PgStorage::registry_version`]
//! (one small query) and load the whole registry only when the version moved.

use crate::{PgError, PgStorage, outside_runtime};

/// Advisory lock key of registry changes ("regist" in ASCII).
const REGISTRY_LOCK: i64 = 0x7265_6769_7374;

/// What the seal binds the registry to (with the version, so a sealed registry cannot be
/// moved to another version's row unnoticed).
const WHAT: &str = "device_registry";

impl PgStorage {
    /// The registry's version (`None`: nothing recorded yet).
    pub fn registry_version(&self) -> Result<Option<i64>, PgError> {
        outside_runtime(|| {
            let row = self
                .conn()?
                .query_opt("SELECT version FROM device_registry WHERE id = 1", &[])
                .map_err(PgError::sql("reading the device registry version"))?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    /// The registry text with its version (`None`: nothing recorded yet).
    pub fn registry_load(&self) -> Result<Option<(i64, Vec<u8>)>, PgError> {
        outside_runtime(|| {
            let row = self
                .conn()?
                .query_opt(
                    "SELECT version, sealed FROM device_registry WHERE id = 1",
                    &[],
                )
                .map_err(PgError::sql("reading the device registry"))?;
            match row {
                None => Ok(None),
                Some(r) => {
                    let version: i64 = r.get(0);
                    let sealed: Vec<u8> = r.get(1);
                    let plain = self
                        .keys
                        .open(WHAT, version.to_string().as_bytes(), &sealed)?;
                    Ok(Some((version, plain)))
                }
            }
        })
    }

    /// Changes the registry in one transaction: `change` gets the current text (`None`
    /// when nothing is recorded yet) and returns the new text to store, or `None` to keep
    /// it. An error of `change` writes nothing and is returned as the inner error.
    /// Returns the new version when something was written.
    pub fn registry_modify<E: Send>(
        &self,
        change: impl FnOnce(Option<Vec<u8>>) -> Result<Option<Vec<u8>>, E> + Send,
    ) -> Result<Result<Option<i64>, E>, PgError> {
        outside_runtime(|| {
            let mut c = self.conn()?;
            let mut tx = c
                .transaction()
                .map_err(PgError::sql("starting a device registry change"))?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&REGISTRY_LOCK])
                .map_err(PgError::sql("locking the device registry"))?;
            let row = tx
                .query_opt(
                    "SELECT version, sealed FROM device_registry WHERE id = 1 FOR UPDATE",
                    &[],
                )
                .map_err(PgError::sql("reading the device registry"))?;
            let (version, current) = match row {
                None => (0_i64, None),
                Some(r) => {
                    let version: i64 = r.get(0);
                    let sealed: Vec<u8> = r.get(1);
                    let plain = self
                        .keys
                        .open(WHAT, version.to_string().as_bytes(), &sealed)?;
                    (version, Some(plain))
                }
            };
            let new = match change(current) {
                Ok(Some(text)) => text,
                Ok(None) => return Ok(Ok(None)),
                Err(e) => return Ok(Err(e)),
            };
            let next = version.saturating_add(1);
            let sealed = self.keys.seal(WHAT, next.to_string().as_bytes(), &new)?;
            tx.execute(
                "INSERT INTO device_registry (id, version, sealed) VALUES (1, $1, $2)
                 ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, sealed = EXCLUDED.sealed",
                &[&next, &sealed],
            )
            .map_err(PgError::sql("writing the device registry"))?;
            tx.commit()
                .map_err(PgError::sql("committing a device registry change"))?;
            Ok(Ok(Some(next)))
        })
    }
}
