//! The store's SQL pattern run directly with rusqlite, keyed or plain.
//!
//! The tables, pragmas and statements follow `engine/src/store/db.rs` and migration 0001:
//! `docs` (one snapshot per document) and `changes` (appended change chunks), WAL,
//! `synchronous = FULL`, in-memory temp store. The same SQLCipher build is plain SQLite when
//! no `PRAGMA key` is given, so running the workload both ways with one binary isolates the
//! cost of encryption.
//!
//! Each run must happen in a process of its own: `PRAGMA cipher_memory_security = ON`
//! (which the store sets) is process-wide and cannot be turned off again, and it slows every
//! SQLite allocation, keyed or not. The bench program therefore runs each variant in a
//! child process ([`SqlTimes::to_line`] / [`SqlTimes::from_line`] carry the result back).

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::{IMPORT_BATCH, Rng};

/// How a database is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    /// No key: plain SQLite.
    Plain,
    /// `PRAGMA key = "x'…'"` (raw 256-bit key, no PBKDF2), SQLCipher defaults.
    Keyed,
    /// Keyed, plus `PRAGMA cipher_memory_security = ON` as the store sets it.
    KeyedMemorySecurity,
    /// As the store, but pages authenticated with HMAC-SHA256 instead of SQLCipher 4's
    /// default HMAC-SHA512 (a possible tuning; not what the store does).
    KeyedHmacSha256,
}

impl Cipher {
    /// Every variant, in report order.
    pub const ALL: [Cipher; 4] = [
        Cipher::Plain,
        Cipher::Keyed,
        Cipher::KeyedMemorySecurity,
        Cipher::KeyedHmacSha256,
    ];

    /// A stable name (for the child process's environment).
    pub fn name(self) -> &'static str {
        match self {
            Cipher::Plain => "plain",
            Cipher::Keyed => "keyed",
            Cipher::KeyedMemorySecurity => "keyed-memsec",
            Cipher::KeyedHmacSha256 => "keyed-memsec-sha256",
        }
    }

    /// The inverse of [`Cipher::name`].
    pub fn from_name(name: &str) -> Option<Cipher> {
        Cipher::ALL.into_iter().find(|c| c.name() == name)
    }

    /// A short label.
    pub fn label(self) -> &'static str {
        match self {
            Cipher::Plain => "plain SQLite",
            Cipher::Keyed => "SQLCipher",
            Cipher::KeyedMemorySecurity => "SQLCipher + cipher_memory_security",
            Cipher::KeyedHmacSha256 => "SQLCipher + cipher_memory_security, HMAC-SHA256",
        }
    }

    /// SQL run right after the key (or first, when plain).
    fn extra_pragmas(self) -> &'static str {
        match self {
            Cipher::Plain | Cipher::Keyed => "",
            Cipher::KeyedMemorySecurity => "PRAGMA cipher_memory_security = ON;",
            Cipher::KeyedHmacSha256 => {
                "PRAGMA cipher_memory_security = ON; PRAGMA cipher_hmac_algorithm = HMAC_SHA256;"
            }
        }
    }
}

/// Phase times of one workload run.
#[derive(Debug, Clone, Copy, Default)]
pub struct SqlTimes {
    /// Open, key, pragmas, create tables.
    pub open: Duration,
    /// All documents, `IMPORT_BATCH` per transaction.
    pub insert: Duration,
    /// Single-change transactions (update title + insert change + count).
    pub append: Duration,
    /// Reopen, then read every document (snapshot and changes) by id, as exports do.
    pub read: Duration,
    /// Reading every row of both tables in one scan each.
    pub scan: Duration,
    /// CPU time of this thread over insert + append + read + scan (SQLite runs in the
    /// calling thread): the cost of encryption without the waits for the disk.
    pub cpu: Duration,
    /// Database + WAL size after the run, bytes.
    pub bytes: u64,
}

impl SqlTimes {
    /// One line, `SQL key=value …` (microseconds, bytes).
    pub fn to_line(&self) -> String {
        format!(
            "SQL open={} insert={} append={} read={} scan={} cpu={} bytes={}",
            self.open.as_micros(),
            self.insert.as_micros(),
            self.append.as_micros(),
            self.read.as_micros(),
            self.scan.as_micros(),
            self.cpu.as_micros(),
            self.bytes
        )
    }

    /// Parses [`SqlTimes::to_line`] output (the first `SQL ` line of `text`).
    pub fn from_line(text: &str) -> Option<SqlTimes> {
        let line = text.lines().find(|l| l.starts_with("SQL "))?;
        let field = |name: &str| -> Option<u64> {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))?
                .parse()
                .ok()
        };
        let us = |name: &str| field(name).map(Duration::from_micros);
        Some(SqlTimes {
            open: us("open")?,
            insert: us("insert")?,
            append: us("append")?,
            read: us("read")?,
            scan: us("scan")?,
            cpu: us("cpu")?,
            bytes: field("bytes")?,
        })
    }
}

/// CPU time this thread has run so far (`/proc/thread-self/schedstat`, nanoseconds);
/// zero where unavailable.
pub fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|ns| ns.parse().ok()))
        .map_or(Duration::ZERO, Duration::from_nanos)
}

impl SqlTimes {
    /// insert + append + read + scan.
    pub fn total(&self) -> Duration {
        self.insert + self.append + self.read + self.scan
    }

    /// Phase-wise minimum of two runs (to damp disk noise).
    pub fn min(self, other: SqlTimes) -> SqlTimes {
        SqlTimes {
            open: self.open.min(other.open),
            insert: self.insert.min(other.insert),
            append: self.append.min(other.append),
            read: self.read.min(other.read),
            scan: self.scan.min(other.scan),
            cpu: self.cpu.min(other.cpu),
            bytes: self.bytes.max(other.bytes),
        }
    }
}

/// A fixed test key (64 hex digits); only for the benchmark.
const KEY_HEX: &str = "6d75737562692062656e63682064617461206b6579206e6f7420612073656372";

fn connect(path: &Path, cipher: Cipher) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    if cipher != Cipher::Plain {
        conn.execute_batch(&format!("PRAGMA key = \"x'{KEY_HEX}'\";"))?;
    }
    conn.execute_batch(cipher.extra_pragmas())?;
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    assert!(mode.eq_ignore_ascii_case("wal"), "WAL refused");
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA temp_store = MEMORY;
         PRAGMA foreign_keys = ON;",
    )?;
    Ok(conn)
}

const SCHEMA: &str = "
CREATE TABLE docs (
    id         BLOB PRIMARY KEY NOT NULL,
    kind       TEXT NOT NULL,
    office     TEXT NOT NULL,
    title      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    snapshot   BLOB NOT NULL
) STRICT;
CREATE TABLE changes (
    rowid  INTEGER PRIMARY KEY,
    doc_id BLOB NOT NULL REFERENCES docs(id),
    data   BLOB NOT NULL
) STRICT;
CREATE INDEX changes_by_doc ON changes(doc_id);
";

/// Runs the workload in a fresh database `dir/bench.db`: `docs` inserts of `snapshot`,
/// then `appends` single-row append transactions of `change` on random documents, then a
/// reopen and a full read. Returns the phase times.
pub fn run_workload(
    dir: &Path,
    cipher: Cipher,
    snapshot: &[u8],
    change: &[u8],
    docs: usize,
    appends: usize,
) -> rusqlite::Result<SqlTimes> {
    let path = dir.join("bench.db");
    let mut times = SqlTimes::default();
    let mut rng = Rng::new(0x5eed_0001);

    let t = Instant::now();
    let mut conn = connect(&path, cipher)?;
    conn.execute_batch(SCHEMA)?;
    times.open = t.elapsed();

    // Inserts, as Db::insert_docs: existence check + insert, one transaction per batch.
    let ids: Vec<[u8; 16]> = (0..docs).map(|_| rng.id16()).collect();
    let mut cpu = Duration::ZERO;
    let cpu_start = thread_cpu();
    let t = Instant::now();
    for (b, batch) in ids.chunks(IMPORT_BATCH).enumerate() {
        let now = 1_790_000_000_000_i64 + b as i64;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut exists = tx.prepare_cached("SELECT 1 FROM docs WHERE id = ?1")?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO docs (id, kind, office, title, created_at, updated_at, snapshot)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
            )?;
            for (i, id) in batch.iter().enumerate() {
                assert!(!exists.exists([&id[..]])?);
                let title = format!("認定調査票 結城 花子{:05} 2026-10-14", b * IMPORT_BATCH + i);
                insert.execute(params![
                    &id[..],
                    "survey",
                    crate::OFFICE,
                    title,
                    now,
                    snapshot
                ])?;
            }
        }
        tx.commit()?;
    }
    times.insert = t.elapsed();

    // Appends, as Db::append_changes: one transaction per change.
    let t = Instant::now();
    for k in 0..appends {
        let id = &ids[rng.below(ids.len())];
        let now = 1_790_000_100_000_i64 + k as i64;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let updated = tx.execute(
            "UPDATE docs SET title = ?1, updated_at = max(updated_at, ?2) WHERE id = ?3",
            params!["認定調査票 結城 花子 2026-10-14", now, &id[..]],
        )?;
        assert_eq!(updated, 1);
        tx.prepare_cached("INSERT INTO changes (doc_id, data) VALUES (?1, ?2)")?
            .execute(params![&id[..], change])?;
        let _pending: i64 = tx.query_row(
            "SELECT count(*) FROM changes WHERE doc_id = ?1",
            [&id[..]],
            |r| r.get(0),
        )?;
        tx.commit()?;
    }
    times.append = t.elapsed();

    cpu += thread_cpu().saturating_sub(cpu_start);

    // Close (checkpoint) and reopen: the reads start with an empty page cache.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    drop(conn);
    let mut conn = connect(&path, cipher)?;

    // Read every document by id, as Db::load_doc (export of every document).
    let cpu_start = thread_cpu();
    let t = Instant::now();
    let mut read_bytes = 0usize;
    for id in &ids {
        let tx = conn.transaction()?;
        let snap: Option<Vec<u8>> = tx
            .query_row(
                "SELECT kind, office, snapshot FROM docs WHERE id = ?1",
                [&id[..]],
                |r| r.get(2),
            )
            .optional()?;
        read_bytes += snap.map_or(0, |s| s.len());
        {
            let mut stmt = tx.prepare_cached(
                "SELECT rowid, data FROM changes WHERE doc_id = ?1 ORDER BY rowid",
            )?;
            let mut rows = stmt.query([&id[..]])?;
            while let Some(row) = rows.next()? {
                read_bytes += row.get_ref(1)?.as_blob()?.len();
            }
        }
        tx.commit()?;
    }
    times.read = t.elapsed();

    // One scan of each table.
    let t = Instant::now();
    let mut scanned = 0usize;
    {
        let mut stmt = conn.prepare(
            "SELECT id, kind, office, title, created_at, updated_at, snapshot FROM docs",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            scanned += row.get_ref(6)?.as_blob()?.len();
        }
        let mut stmt = conn.prepare("SELECT rowid, doc_id, data FROM changes")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            scanned += row.get_ref(2)?.as_blob()?.len();
        }
    }
    times.scan = t.elapsed();
    times.cpu = cpu + thread_cpu().saturating_sub(cpu_start);
    assert_eq!(
        read_bytes, scanned,
        "by-id reads and the scan saw the same bytes"
    );
    assert_eq!(read_bytes, docs * snapshot.len() + appends * change.len());
    drop(conn);

    times.bytes = ["bench.db", "bench.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum();
    Ok(times)
}

/// `PRAGMA cipher_version` and `PRAGMA cipher_provider_version` of the linked SQLCipher,
/// and the SQLite version.
pub fn versions() -> rusqlite::Result<String> {
    let conn = Connection::open_in_memory()?;
    conn.execute_batch(&format!("PRAGMA key = \"x'{KEY_HEX}'\";"))?;
    let cipher: String = conn.query_row("PRAGMA cipher_version", [], |r| r.get(0))?;
    let provider: String = conn.query_row("PRAGMA cipher_provider_version", [], |r| r.get(0))?;
    let sqlite: String = conn.query_row("SELECT sqlite_version()", [], |r| r.get(0))?;
    Ok(format!("SQLCipher {cipher}, {provider}, SQLite {sqlite}"))
}

/// Whether `path` is readable without a key (i.e. not encrypted).
pub fn opens_without_key(path: &Path) -> bool {
    Connection::open(path)
        .and_then(|c| {
            c.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_runs_both_ways_and_only_keyed_is_encrypted() {
        for cipher in Cipher::ALL {
            assert_eq!(Cipher::from_name(cipher.name()), Some(cipher));
            let tmp = tempfile::tempdir().unwrap();
            let t = run_workload(tmp.path(), cipher, &[1u8; 500], &[2u8; 50], 250, 20).unwrap();
            assert!(t.bytes > 250 * 500);
            assert_eq!(
                opens_without_key(&tmp.path().join("bench.db")),
                cipher == Cipher::Plain
            );
            let line = t.to_line();
            assert_eq!(SqlTimes::from_line(&line).map(|p| p.to_line()), Some(line));
        }
    }
}
