//! The SQLCipher connection: open sequence, migrations, and the SQL behind each request.
//!
//! Only the store thread (see `thread.rs`) ever holds a [`Db`].

use std::path::Path;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::chunks::{self, MergeRefused};
use super::error::StoreError;
use super::keys::DataKey;
use super::{Appended, DocSummary, NewDoc, StoredDoc};
use crate::ids::DocId;

/// Prepared statements the connection keeps (see `Db::open`).
const STATEMENT_CACHE: usize = 64;
/// One schema migration: `migrations/NNNN_name.sql`, applied when `user_version < version`.
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

/// All migrations, oldest first. Append only; never edit a released one.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_initial",
        sql: include_str!("migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "0002_listing_index",
        sql: include_str!("migrations/0002_listing_index.sql"),
    },
    Migration {
        version: 3,
        name: "0003_sync",
        sql: include_str!("migrations/0003_sync.sql"),
    },
    Migration {
        version: 4,
        name: "0004_sharing",
        sql: include_str!("migrations/0004_sharing.sql"),
    },
    Migration {
        version: 5,
        name: "0005_evidence",
        sql: include_str!("migrations/0005_evidence.sql"),
    },
    Migration {
        version: 6,
        name: "0006_usage",
        sql: include_str!("migrations/0006_usage.sql"),
    },
    Migration {
        version: 7,
        name: "0007_digest",
        sql: include_str!("migrations/0007_digest.sql"),
    },
    Migration {
        version: 8,
        name: "0008_changed_index",
        sql: include_str!("migrations/0008_changed_index.sql"),
    },
];

/// The schema version this binary writes and the newest it can read.
pub(crate) const LATEST_VERSION: i64 = 8;

/// How long a statement waits for a lock held by another process (e.g. the CLI).
const BUSY_TIMEOUT_MS: u32 = 5_000;

/// Why opening failed.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// The file is not readable as a database with this key (wrong key, damaged header,
    /// damaged pages): the caller quarantines it.
    Unreadable {
        /// A fixed phrase for the error message.
        reason: &'static str,
    },
    /// Anything else (busy, I/O, newer schema): reported, the file is left alone.
    Other(StoreError),
}

impl From<StoreError> for OpenError {
    fn from(e: StoreError) -> Self {
        Self::Other(e)
    }
}

fn classify(context: &'static str) -> impl FnOnce(rusqlite::Error) -> OpenError {
    move |e| match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => OpenError::Unreadable {
            reason: "not a database, or encrypted with a different key",
        },
        Some(ErrorCode::DatabaseCorrupt) => OpenError::Unreadable {
            reason: "the database is damaged",
        },
        _ => OpenError::Other(StoreError::sqlite(context, e)),
    }
}

fn user_version(conn: &Connection) -> Result<i64, rusqlite::Error> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

pub(super) fn id_param(id: &DocId) -> &[u8] {
    &id.as_bytes()[..]
}

/// The open connection.
pub(crate) struct Db {
    pub(super) conn: Connection,
}

impl Db {
    /// Opens (or, with `create`, creates) the database at `path` with `key`.
    ///
    /// Sequence: `PRAGMA key` first; memory hardening; a read of `sqlite_master` to prove
    /// the key (SQLCipher reports a wrong key as "file is not a database"); the schema
    /// version check (a newer file is refused before anything is written); WAL,
    /// `synchronous=FULL`, in-memory temp store, foreign keys; the digest functions;
    /// migrations.
    pub(crate) fn open(path: &Path, key: DataKey, create: bool) -> Result<Self, OpenError> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let mut conn =
            Connection::open_with_flags(path, flags).map_err(classify("opening the database"))?;
        conn.execute_batch(&key.sqlcipher_key_pragma())
            .map_err(classify("applying the database key"))?;
        // SQLCipher now holds its own (locked, wiped-on-free) copy of the key.
        drop(key);
        // Room for every statement the sync path repeats (rusqlite keeps 16 by default:
        // a session's start and its commit use more, and each one evicted is parsed again).
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // Wipe memory SQLCipher frees and lock its key material in RAM. A build without the
        // pragma ignores it; failing to set it is degraded, not fatal.
        if let Err(e) = conn.execute_batch("PRAGMA cipher_memory_security = ON;") {
            tracing::warn!(code = ?e.sqlite_error_code(), "could not enable cipher_memory_security");
        }
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(classify("reading the schema"))?;
        let found = user_version(&conn).map_err(classify("reading the schema version"))?;
        if found > LATEST_VERSION {
            return Err(OpenError::Other(StoreError::NewerSchema {
                found,
                supported: LATEST_VERSION,
            }));
        }
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(classify("enabling WAL"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(OpenError::Other(StoreError::BadInput {
                what: "the database refused WAL mode",
            }));
        }
        conn.execute_batch(
            "PRAGMA synchronous = FULL;
             PRAGMA temp_store = MEMORY;
             PRAGMA foreign_keys = ON;",
        )
        .map_err(classify("setting connection options"))?;
        conn.busy_timeout(std::time::Duration::from_millis(u64::from(BUSY_TIMEOUT_MS)))
            .map_err(classify("setting connection options"))?;
        // The triggers that keep the catalog digests (and migration 0007) call these.
        super::digest::register(&conn).map_err(classify("registering the digest functions"))?;
        migrate(&mut conn)?;
        Ok(Self { conn })
    }

    /// Inserts a batch of new documents in one transaction.
    pub(crate) fn insert_docs(&mut self, docs: &[NewDoc], now_ms: i64) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::sql("starting a transaction"))?;
        {
            let mut exists = tx
                .prepare_cached("SELECT 1 FROM docs WHERE id = ?1")
                .map_err(StoreError::sql("inserting documents"))?;
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO docs (id, kind, office, title, created_at, updated_at, snapshot, seq,
                                       heads, person, subject_ref, reg_valid, keys_seq)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )
                .map_err(StoreError::sql("inserting documents"))?;
            let first_seq = super::db_sync::next_seq(&tx)?;
            for (seq, doc) in (first_seq..).zip(docs) {
                let keys = doc.keys.clone().unwrap_or_default();
                if exists
                    .exists([id_param(&doc.id)])
                    .map_err(StoreError::sql("inserting documents"))?
                {
                    return Err(StoreError::DuplicateDoc(doc.id));
                }
                insert
                    .execute(params![
                        id_param(&doc.id),
                        doc.kind,
                        doc.office,
                        doc.title,
                        now_ms,
                        doc.bytes.as_bytes(),
                        seq,
                        crate::sync::storage::pack_heads(doc.bytes.heads()),
                        keys.person,
                        keys.subject_ref.map(|s| s.as_bytes().to_vec()),
                        keys.reg_valid,
                        doc.keys.as_ref().map(|_| seq),
                    ])
                    .map_err(StoreError::sql("inserting documents"))?;
            }
        }
        tx.commit()
            .map_err(StoreError::sql("committing new documents"))
    }

    /// Appends change chunks to a document and updates its title, in one transaction.
    /// Returns the number of change rows now pending for the document, and its sequence
    /// numbers before and after.
    pub(crate) fn append_changes(
        &mut self,
        id: DocId,
        changes: &[Vec<u8>],
        title: &str,
        now_ms: i64,
    ) -> Result<(u64, Appended), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::sql("starting a transaction"))?;
        let previous: i64 = tx
            .query_row("SELECT seq FROM docs WHERE id = ?1", [id_param(&id)], |r| {
                r.get(0)
            })
            .optional()
            .map_err(StoreError::sql("appending changes"))?
            .ok_or(StoreError::NotFound(id))?;
        let seq = super::db_sync::next_seq(&tx)?;
        let updated = tx
            .execute(
                "UPDATE docs SET title = ?1, updated_at = max(updated_at, ?2), seq = ?4, heads = NULL
                 WHERE id = ?3",
                params![title, now_ms, id_param(&id), seq],
            )
            .map_err(StoreError::sql("appending changes"))?;
        if updated == 0 {
            return Err(StoreError::NotFound(id));
        }
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO changes (doc_id, data) VALUES (?1, ?2)")
                .map_err(StoreError::sql("appending changes"))?;
            for data in changes {
                insert
                    .execute(params![id_param(&id), data])
                    .map_err(StoreError::sql("appending changes"))?;
            }
        }
        let pending = pending_count(&tx, id)?;
        tx.commit().map_err(StoreError::sql("committing changes"))?;
        Ok((
            pending,
            Appended {
                previous_seq: u64::try_from(previous).unwrap_or(0),
                seq: u64::try_from(seq).unwrap_or(0),
            },
        ))
    }

    /// The sequence number of a document's latest write, or `None` if there is no such
    /// document.
    pub(crate) fn doc_seq(&self, id: DocId) -> Result<Option<u64>, StoreError> {
        self.conn
            .prepare_cached("SELECT seq FROM docs WHERE id = ?1")
            .and_then(|mut stmt| {
                stmt.query_row([id_param(&id)], |r| r.get::<_, i64>(0))
                    .optional()
            })
            .map(|seq| seq.map(|s| u64::try_from(s).unwrap_or(0)))
            .map_err(StoreError::sql("reading a document's sequence number"))
    }

    /// The snapshot and change chunks of one document, read in one transaction.
    pub(crate) fn load_doc(&mut self, id: DocId) -> Result<Option<StoredDoc>, StoreError> {
        let tx = self
            .conn
            .transaction()
            .map_err(StoreError::sql("starting a transaction"))?;
        let row = row_cached(
            &tx,
            "SELECT kind, office, snapshot FROM docs WHERE id = ?1",
            [id_param(&id)],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            },
        )
        .optional()
        .map_err(StoreError::sql("loading a document"))?;
        let Some((kind, office, snapshot)) = row else {
            return Ok(None);
        };
        let mut chunks = vec![snapshot];
        chunks.extend(change_rows(&tx, id)?.into_iter().map(|(_, data)| data));
        tx.commit().map_err(StoreError::sql("loading a document"))?;
        Ok(Some(StoredDoc {
            id,
            kind,
            office,
            chunks,
        }))
    }

    /// Every document's metadata, most recently updated first.
    pub(crate) fn list_docs(&mut self) -> Result<Vec<DocSummary>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT d.id, d.kind, d.office, d.title, d.created_at, d.updated_at,
                        (SELECT count(*) FROM changes c WHERE c.doc_id = d.id)
                 FROM docs d ORDER BY d.updated_at DESC, d.id",
            )
            .map_err(StoreError::sql("listing documents"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(DocSummary {
                    id: DocId::from_bytes(r.get::<_, [u8; 16]>(0)?),
                    kind: r.get(1)?,
                    office: r.get(2)?,
                    title: r.get(3)?,
                    created_at: r.get(4)?,
                    updated_at: r.get(5)?,
                    pending_changes: u32::try_from(r.get::<_, i64>(6)?).unwrap_or(u32::MAX),
                })
            })
            .map_err(StoreError::sql("listing documents"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::sql("listing documents"))
    }

    /// Folds a document's change rows into a new snapshot, in one transaction.
    /// Returns whether anything was compacted.
    pub(crate) fn compact(&mut self, id: DocId) -> Result<bool, CompactError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::sql("starting a transaction"))?;
        let snapshot: Vec<u8> = tx
            .query_row(
                "SELECT snapshot FROM docs WHERE id = ?1",
                [id_param(&id)],
                |r| r.get(0),
            )
            .optional()
            .map_err(StoreError::sql("compacting a document"))?
            .ok_or(StoreError::NotFound(id))?;
        let rows = change_rows(&tx, id)?;
        let Some(&(last_rowid, _)) = rows.last() else {
            return Ok(false);
        };
        let chunks: Vec<Vec<u8>> = rows.into_iter().map(|(_, data)| data).collect();
        let merged = chunks::merge(&snapshot, &chunks).map_err(CompactError::Refused)?;
        tx.execute(
            "UPDATE docs SET snapshot = ?1 WHERE id = ?2",
            params![merged, id_param(&id)],
        )
        .map_err(StoreError::sql("compacting a document"))?;
        tx.execute(
            "DELETE FROM changes WHERE doc_id = ?1 AND rowid <= ?2",
            params![id_param(&id), last_rowid],
        )
        .map_err(StoreError::sql("compacting a document"))?;
        tx.commit()
            .map_err(StoreError::sql("committing a compaction"))?;
        Ok(true)
    }

    /// How many change rows are pending for a document.
    pub(crate) fn pending_changes(&self, id: DocId) -> Result<u64, StoreError> {
        pending_count(&self.conn, id)
    }

    /// Documents with at least `threshold` pending change rows.
    pub(crate) fn docs_over_threshold(&mut self, threshold: u64) -> Result<Vec<DocId>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT doc_id FROM changes GROUP BY doc_id HAVING count(*) >= ?1 ORDER BY doc_id",
            )
            .map_err(StoreError::sql("finding documents to compact"))?;
        let ids = stmt
            .query_map([i64::try_from(threshold).unwrap_or(i64::MAX)], |r| {
                Ok(DocId::from_bytes(r.get::<_, [u8; 16]>(0)?))
            })
            .map_err(StoreError::sql("finding documents to compact"))?;
        ids.collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::sql("finding documents to compact"))
    }

    /// Checkpoints the WAL into the main file and closes the connection.
    pub(crate) fn close(self) -> Result<(), StoreError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(StoreError::sql("checkpointing the WAL"))?;
        self.conn
            .close()
            .map_err(|(_, e)| StoreError::sqlite("closing the database", e))
    }

    /// Test helper: the value of a read-only pragma, as text.
    #[cfg(test)]
    pub(crate) fn pragma_text(&self, name: &str) -> String {
        use rusqlite::types::Value;
        match self
            .conn
            .query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, Value>(0))
        {
            Ok(Value::Text(s)) => s,
            Ok(Value::Integer(i)) => i.to_string(),
            Ok(other) => format!("{other:?}"),
            Err(e) => format!("error: {e}"),
        }
    }

    /// Two counts from a query with one text parameter (test scans).
    #[cfg(test)]
    pub(crate) fn query_pair_for_tests(
        &self,
        sql: &str,
        param: &str,
    ) -> Result<(u64, u64), StoreError> {
        self.conn
            .query_row(sql, [param], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })
            .map(|(a, b)| (a.max(0).unsigned_abs(), b.max(0).unsigned_abs()))
            .map_err(StoreError::sql("running test SQL"))
    }

    /// Test helper: runs arbitrary SQL on the connection.
    #[cfg(test)]
    pub(crate) fn execute_batch_for_tests(&self, sql: &str) -> Result<(), StoreError> {
        self.conn
            .execute_batch(sql)
            .map_err(StoreError::sql("running test SQL"))
    }
}

/// Why `compact` did nothing.
#[derive(Debug)]
pub(crate) enum CompactError {
    /// A store error (not found, SQLite).
    Store(StoreError),
    /// The chunks could not be merged without losing something.
    Refused(MergeRefused),
}

impl From<StoreError> for CompactError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

fn pending_count(conn: &Connection, id: DocId) -> Result<u64, StoreError> {
    let n: i64 = row_cached(
        conn,
        "SELECT count(*) FROM changes WHERE doc_id = ?1",
        [id_param(&id)],
        |r| r.get(0),
    )
    .map_err(StoreError::sql("counting pending changes"))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// `execute` through the connection's statement cache: a sync commit runs the same
/// statements for every session, and parsing them again was about a tenth of the store
/// thread's time in a push (docs/benchmarks.md, sync note 15).
pub(super) fn exec_cached(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// `query_row` through the connection's statement cache (see [`exec_cached`]).
pub(super) fn row_cached<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, f)
}

fn change_rows(conn: &Connection, id: DocId) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT rowid, data FROM changes WHERE doc_id = ?1 ORDER BY rowid")
        .map_err(StoreError::sql("loading changes"))?;
    let rows = stmt
        .query_map([id_param(&id)], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(StoreError::sql("loading changes"))?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(StoreError::sql("loading changes"))
}

/// Applies pending migrations in one `BEGIN IMMEDIATE` transaction.
fn migrate(conn: &mut Connection) -> Result<(), OpenError> {
    if user_version(conn).map_err(classify("reading the schema version"))? == LATEST_VERSION {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(classify("starting the migration"))?;
    // Re-read under the write lock: another process may have migrated meanwhile.
    let from = user_version(&tx).map_err(classify("reading the schema version"))?;
    if from > LATEST_VERSION {
        return Err(OpenError::Other(StoreError::NewerSchema {
            found: from,
            supported: LATEST_VERSION,
        }));
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > from) {
        tx.execute_batch(m.sql)
            .map_err(classify("applying a migration"))?;
        tracing::info!(
            migration = m.name,
            version = m.version,
            "applying store migration"
        );
    }
    tx.pragma_update(None, "user_version", LATEST_VERSION)
        .map_err(classify("recording the schema version"))?;
    tx.commit().map_err(classify("committing the migration"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_up_to_latest() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i64::try_from(i).unwrap() + 1, "{}", m.name);
            assert!(m.name.starts_with(&format!("{:04}_", m.version)));
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(LATEST_VERSION));
    }
}
