//! A consistent copy of a store that may be open (and written) in another process: the
//! relay's `backup` while it serves.
//!
//! The copy is a complete data directory: `store.toml`, the wrapped keys (`keys/*.age`)
//! and `musubi.db` written by SQLite's `VACUUM INTO` from one read transaction on a
//! connection of its own. In WAL mode a reader never blocks the writer, so the serving
//! process goes on writing; the copy holds exactly the transactions committed when the
//! read began. SQLCipher attaches the target with the source's key, so the copy is
//! encrypted with the same data key; [`snapshot`] checks that (no plaintext SQLite
//! header, unreadable without the key, `PRAGMA quick_check` passes with it) before it
//! returns.

use std::fs;
use std::io::Read;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::config::StoreFile;
use super::error::StoreError;
use super::fsutil;
use super::keys::DataKey;
use super::{DB_FILE, KEYS_DIR, PASSPHRASE_KEY, RECOVERY_KEY, STORE_TOML, keys_path, unlock};

/// The first 16 bytes of every unencrypted SQLite database.
const PLAINTEXT_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// How long the snapshot's read waits for a lock held by the serving process.
const BUSY_TIMEOUT_MS: u32 = 10_000;

/// What [`snapshot`] copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Size of the copied database file in bytes.
    pub db_bytes: u64,
    /// The schema version of the copy (`PRAGMA user_version`).
    pub schema_version: i64,
}

/// Writes a consistent, still encrypted copy of the store in `dir` into `dest`, a
/// directory that must not exist yet (its parent must). The store may be open in another
/// process: nothing in `dir` is changed (no migration, no quarantine). A wrong passphrase
/// is [`StoreError::WrongPassphrase`] and creates nothing. On any error `dest` is removed
/// again.
pub fn snapshot(
    dir: &Path,
    passphrase: &age::secrecy::SecretString,
    dest: &Path,
) -> Result<SnapshotInfo, StoreError> {
    StoreFile::read(dir)?;
    let key = unlock(dir, passphrase)?;
    if !dir
        .join(DB_FILE)
        .try_exists()
        .map_err(StoreError::io("looking at the database"))?
    {
        return Err(StoreError::DatabaseMissing {
            dir: dir.to_path_buf(),
        });
    }
    fs::create_dir(dest).map_err(StoreError::io("creating the snapshot directory"))?;
    let made = copy_into(dir, &key, dest);
    if made.is_err() {
        // Only what this call created.
        let _ = fs::remove_dir_all(dest);
    }
    made
}

fn copy_into(dir: &Path, key: &DataKey, dest: &Path) -> Result<SnapshotInfo, StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dest, fs::Permissions::from_mode(0o700))
            .map_err(StoreError::io("creating the snapshot directory"))?;
    }
    fsutil::create_private_dir(&dest.join(KEYS_DIR), "creating the snapshot directory")?;
    // The database first: the key files and store.toml change only by atomic
    // replacement, and every version of them unlocks the same data key.
    let target = dest.join(DB_FILE);
    let schema_version = vacuum_into(&dir.join(DB_FILE), key, &target)?;
    for name in [PASSPHRASE_KEY, RECOVERY_KEY] {
        if let Some(bytes) = fsutil::read_optional(&keys_path(dir, name), "reading a key file")? {
            fsutil::atomic_write(&keys_path(dest, name), &bytes, "copying a key file")?;
        }
    }
    let toml = fs::read(dir.join(STORE_TOML)).map_err(StoreError::io("reading store.toml"))?;
    fsutil::atomic_write(&dest.join(STORE_TOML), &toml, "copying store.toml")?;
    check_encrypted(&target, key, schema_version)?;
    fs::File::open(&target)
        .and_then(|f| f.sync_all())
        .map_err(StoreError::io("writing the snapshot"))?;
    fsutil::fsync_dir(dest).map_err(StoreError::io("writing the snapshot"))?;
    let db_bytes = fs::metadata(&target)
        .map_err(StoreError::io("writing the snapshot"))?
        .len();
    Ok(SnapshotInfo {
        db_bytes,
        schema_version,
    })
}

/// Opens `path` with `key` on a connection of its own, without creating, migrating or
/// changing anything.
fn open_keyed(path: &Path, key: &DataKey, context: &'static str) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(StoreError::sql(context))?;
    conn.execute_batch(&key.sqlcipher_key_pragma())
        .map_err(StoreError::sql(context))?;
    conn.busy_timeout(std::time::Duration::from_millis(u64::from(BUSY_TIMEOUT_MS)))
        .map_err(StoreError::sql(context))?;
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(StoreError::sql(context))?;
    Ok(conn)
}

/// `VACUUM INTO target` from one read transaction; the schema version copied.
fn vacuum_into(source: &Path, key: &DataKey, target: &Path) -> Result<i64, StoreError> {
    let conn = open_keyed(source, key, "opening the database for a snapshot")?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(StoreError::sql("reading the schema version"))?;
    let target_text = target.to_str().ok_or(StoreError::BadInput {
        what: "the snapshot path is not valid UTF-8",
    })?;
    conn.execute("VACUUM INTO ?1", [target_text])
        .map_err(StoreError::sql("copying the database"))?;
    conn.close()
        .map_err(|(_, e)| StoreError::sqlite("closing the database after a snapshot", e))?;
    Ok(version)
}

/// The copy must be encrypted: no plaintext header, and readable with the key.
fn check_encrypted(target: &Path, key: &DataKey, version: i64) -> Result<(), StoreError> {
    let mut head = [0u8; 16];
    fs::File::open(target)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(StoreError::io("checking the snapshot"))?;
    if &head == PLAINTEXT_HEADER {
        return Err(StoreError::SnapshotCheck {
            what: "the copy is not encrypted",
        });
    }
    let conn = open_keyed(target, key, "checking the snapshot")?;
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(StoreError::sql("checking the snapshot"))?;
    let copied: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(StoreError::sql("checking the snapshot"))?;
    conn.close()
        .map_err(|(_, e)| StoreError::sqlite("checking the snapshot", e))?;
    if check != "ok" || copied != version {
        return Err(StoreError::SnapshotCheck {
            what: "the copy does not read back whole",
        });
    }
    Ok(())
}
