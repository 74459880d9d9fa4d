//! Numbered schema migrations with a version table.
//!
//! `schema_version` holds one row per applied migration. [`migrate`] applies the missing
//! ones in order, in one transaction under an advisory lock, so two nodes starting at
//! once do not race; a database newer than this build is refused.

use postgres::GenericClient;

use crate::PgError;

/// The migrations, in order: (version, SQL).
pub const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("migrations/0001_initial.sql")),
    (2, include_str!("migrations/0002_usage.sql")),
    (3, include_str!("migrations/0003_registry.sql")),
    (4, include_str!("migrations/0004_digest.sql")),
    (5, include_str!("migrations/0005_changed_index.sql")),
];

/// The newest schema version this build knows.
pub const LATEST: i32 = 5;

/// Advisory lock key of schema changes ("musubi" in ASCII).
const LOCK_KEY: i64 = 0x6d75_7375_6269;

/// The database's schema version (0: empty).
pub fn version(c: &mut impl GenericClient) -> Result<i32, PgError> {
    let exists: bool = c
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
        .map_err(PgError::sql("reading the schema version"))?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(
        c.query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
            .map_err(PgError::sql("reading the schema version"))?
            .get(0),
    )
}

/// Brings the schema to [`LATEST`]; returns the version found before.
pub fn migrate(c: &mut postgres::Client) -> Result<i32, PgError> {
    migrate_to(c, LATEST)
}

/// Brings the schema to `target` (tests start from every earlier version).
pub fn migrate_to(c: &mut postgres::Client, target: i32) -> Result<i32, PgError> {
    let mut tx = c
        .transaction()
        .map_err(PgError::sql("starting a schema change"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .map_err(PgError::sql("locking the schema"))?;
    // No "already exists, skipping" notice in the relay's log at every start.
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .map_err(PgError::sql("starting a schema change"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    INTEGER PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .map_err(PgError::sql("creating the version table"))?;
    let found = version(&mut tx)?;
    if found > LATEST {
        return Err(PgError::NewerSchema {
            found,
            known: LATEST,
        });
    }
    for (v, sql) in MIGRATIONS
        .iter()
        .filter(|(v, _)| *v > found && *v <= target)
    {
        tx.batch_execute(sql)
            .map_err(PgError::sql("applying a schema migration"))?;
        tx.execute("INSERT INTO schema_version (version) VALUES ($1)", &[v])
            .map_err(PgError::sql("recording a schema migration"))?;
        tracing::info!(version = v, "database schema migrated");
    }
    tx.commit()
        .map_err(PgError::sql("committing a schema change"))?;
    Ok(found)
}
