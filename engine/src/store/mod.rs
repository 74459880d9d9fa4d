//! Encrypted local store: automerge documents in a SQLCipher database, with key management
//! through age.
//!
//! # Data directory
//!
//! ```text
//! dir/store.toml           plaintext, non-secret metadata (office, device, actor, …)
//! dir/keys/passphrase.age  the 256-bit data key, age/scrypt-encrypted to the passphrase
//! dir/keys/recovery.age    the same key, age/X25519-encrypted to the office (optional)
//! dir/musubi.db[-wal,-shm] SQLCipher database keyed with the raw data key
//! dir/quarantine/<UTC>/    databases that could not be opened, moved aside byte for byte
//! ```
//!
//! # Invariants
//!
//! - Only the `musubi-store` thread touches SQLite; [`Store`] methods are synchronous
//!   requests over a bounded channel, each with a one-shot reply.
//! - A batch returns `Ok` only after its transaction committed with `synchronous=FULL`; any
//!   error inside a batch rolls the whole batch back.
//! - The passphrase is checked (by decrypting `keys/passphrase.age`) before anything on
//!   disk is touched: a wrong passphrase changes no byte.
//! - Nothing is deleted because it failed to open or decode: an unreadable database is
//!   moved to `quarantine/`, and compaction refuses to run if folding the change rows into
//!   a snapshot would drop any change.
//! - Key material lives only in zeroizing types whose `Debug` prints `[redacted]`; errors
//!   and logs carry ids, counts and fixed phrases, never content, titles or names.

pub mod chunks;
mod config;
mod db;
mod db_sync;
mod digest;
mod error;
mod fsutil;
mod keys;
mod snapshot;
mod thread;

pub use crate::fsutil::write_durably;
pub use fsutil::rfc3339_utc;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;
use std::thread::JoinHandle;

pub use age::secrecy::SecretString;

pub use self::error::StoreError;
pub use self::keys::generate_recovery_identity;
pub use self::snapshot::{SnapshotInfo, snapshot};

use self::config::StoreFile;
use self::db::OpenError;
use self::keys::DataKey;
use self::thread::{Events, Reply, Request, reply_channel};
use crate::doc::Snapshot;
use crate::ids::DocId;
use crate::sync::storage::StartSource as _;

/// A document with at least this many pending change rows is compacted in the background.
pub const COMPACT_AFTER_CHANGES: u64 = thread::COMPACT_THRESHOLD;

const STORE_TOML: &str = "store.toml";
const KEYS_DIR: &str = "keys";
const PASSPHRASE_KEY: &str = "passphrase.age";
const RECOVERY_KEY: &str = "recovery.age";
const DB_FILE: &str = "musubi.db";
const DB_WAL: &str = "musubi.db-wal";
const DB_SHM: &str = "musubi.db-shm";

/// Settings for [`Store::init`].
#[derive(Clone, Default)]
pub struct InitOptions {
    /// The office number (事業所番号). Not personal.
    pub office: String,
    /// A name for this device, shown to the office.
    pub device_name: String,
    /// Default staff name for new documents (stored in plaintext `store.toml`).
    pub staff: Option<String>,
    /// The office recovery recipient (`age1…`); without it a forgotten passphrase cannot
    /// be recovered.
    pub recovery_recipient: Option<String>,
    /// scrypt log2(N) for the passphrase file. `None`: age's default (about one second of
    /// work on this device). Tests and benches use about 10.
    pub kdf_work_factor: Option<u8>,
}

impl fmt::Debug for InitOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitOptions")
            .field("office", &self.office)
            .field("device_name", &self.device_name)
            .field("staff", &self.staff.as_ref().map(|_| "[redacted]"))
            .field("recovery_recipient", &self.recovery_recipient)
            .field("kdf_work_factor", &self.kdf_work_factor)
            .finish()
    }
}

/// The store's metadata from `store.toml`.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreInfo {
    /// The office number (事業所番号).
    pub office: String,
    /// Random 128-bit device id, 32 hex digits.
    pub device_id: String,
    /// The device name given at init.
    pub device_name: String,
    /// The automerge actor id of this device, 32 hex digits.
    pub actor_hex: String,
    /// Default staff name, if one was given.
    pub staff: Option<String>,
    /// When the store was created (RFC 3339, UTC).
    pub created_at: String,
    /// The office recovery recipient, if one was given.
    pub recovery_recipient: Option<String>,
}

impl fmt::Debug for StoreInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreInfo")
            .field("office", &self.office)
            .field("device_id", &self.device_id)
            .field("device_name", &self.device_name)
            .field("actor_hex", &self.actor_hex)
            .field("staff", &self.staff.as_ref().map(|_| "[redacted]"))
            .field("created_at", &self.created_at)
            .field("recovery_recipient", &self.recovery_recipient)
            .finish()
    }
}

/// A document to insert.
#[derive(Clone)]
pub struct NewDoc {
    /// Its id.
    pub id: DocId,
    /// Its kind (`subject`, `survey`, …).
    pub kind: String,
    /// The owning office number.
    pub office: String,
    /// A title for lists (personal data: stored encrypted, never logged).
    pub title: String,
    /// The whole document, known to load (saved or checked when it was made); its heads
    /// are stored with it.
    pub bytes: Snapshot,
    /// Its sharing keys ([`crate::sync::sharing::share_keys`] of the document), if the
    /// caller has them; without, the store derives them the next time a sync needs them
    /// (loading the document).
    pub keys: Option<crate::sync::sharing::ShareKeys>,
}

impl fmt::Debug for NewDoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewDoc")
            .field("id", &self.id.short())
            .field("kind", &self.kind)
            .field("office", &self.office)
            .field("title", &"[redacted]")
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// What [`Store::append_changes`] did to a document's sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Before the append: if it is the one the caller read the document at, nothing else
    /// wrote the document in between.
    pub previous_seq: u64,
    /// After the append.
    pub seq: u64,
}

/// A stored document: load `chunks[0]` with `Automerge::load`, then each further chunk
/// with `load_incremental`.
#[derive(Clone)]
pub struct StoredDoc {
    /// Its id.
    pub id: DocId,
    /// Its kind.
    pub kind: String,
    /// The owning office number.
    pub office: String,
    /// The snapshot first, then the raw change chunks in insertion order.
    pub chunks: Vec<Vec<u8>>,
}

impl fmt::Debug for StoredDoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredDoc")
            .field("id", &self.id.short())
            .field("kind", &self.kind)
            .field("office", &self.office)
            .field("chunks", &self.chunks.len())
            .finish()
    }
}

/// A row of [`Store::list_docs`].
#[derive(Clone, PartialEq, Eq)]
pub struct DocSummary {
    /// Its id.
    pub id: DocId,
    /// Its kind.
    pub kind: String,
    /// The owning office number.
    pub office: String,
    /// The latest title (personal data).
    pub title: String,
    /// Insertion time, unix milliseconds.
    pub created_at: i64,
    /// Time of the latest insert or append, unix milliseconds.
    pub updated_at: i64,
    /// Change rows not yet folded into the snapshot.
    pub pending_changes: u32,
}

impl fmt::Debug for DocSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DocSummary")
            .field("id", &self.id.short())
            .field("kind", &self.kind)
            .field("office", &self.office)
            .field("title", &"[redacted]")
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("pending_changes", &self.pending_changes)
            .finish()
    }
}

/// An open store. Owns the store thread; dropping it shuts the thread down cleanly.
pub struct Store {
    dir: PathBuf,
    info: StoreInfo,
    tx: Option<SyncSender<Request>>,
    handle: Option<JoinHandle<()>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("device_id", &self.info.device_id)
            .finish_non_exhaustive()
    }
}

fn random_hex128() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn keys_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(KEYS_DIR).join(name)
}

fn exists(path: &Path) -> Result<bool, StoreError> {
    path.try_exists()
        .map_err(StoreError::io("looking at the data directory"))
}

/// Decrypts `keys/passphrase.age`; touches nothing.
fn unlock(dir: &Path, passphrase: &SecretString) -> Result<DataKey, StoreError> {
    let path = keys_path(dir, PASSPHRASE_KEY);
    let bytes = fsutil::read_optional(&path, "reading keys/passphrase.age")?
        .ok_or_else(|| StoreError::KeyFileMissing { file: path.clone() })?;
    keys::unwrap_with_passphrase(&bytes, passphrase, &path)
}

/// Writes `keys/passphrase.age` for `key` (atomically).
fn write_passphrase_file(
    dir: &Path,
    key: &DataKey,
    passphrase: &SecretString,
    work_factor: Option<u8>,
) -> Result<(), StoreError> {
    let wrapped = keys::wrap_with_passphrase(key, passphrase, work_factor)?;
    fsutil::atomic_write(
        &keys_path(dir, PASSPHRASE_KEY),
        &wrapped,
        "writing keys/passphrase.age",
    )
}

/// Whether the database must be created: `false` if it exists, `true` after a quarantine,
/// `DatabaseMissing` otherwise.
fn decide_create(dir: &Path) -> Result<bool, StoreError> {
    if exists(&dir.join(DB_FILE))? {
        return Ok(false);
    }
    if !fsutil::has_quarantine(dir)? {
        return Err(StoreError::DatabaseMissing {
            dir: dir.to_path_buf(),
        });
    }
    // A WAL left without its database would be replayed into the fresh one: move it aside.
    let mut stray = Vec::new();
    for name in [DB_WAL, DB_SHM] {
        if exists(&dir.join(name))? {
            stray.push(name);
        }
    }
    if !stray.is_empty() {
        fsutil::quarantine_files(dir, &stray)?;
        tracing::warn!(
            files = stray.len(),
            "moved leftover WAL files into quarantine"
        );
    }
    tracing::warn!("database missing after a quarantine; creating a fresh, empty database");
    Ok(true)
}

impl Store {
    /// Creates a new store in `dir` (created if missing) and opens it.
    ///
    /// Refuses with [`StoreError::AlreadyInitialised`] if `dir` already holds any part of a
    /// store; nothing is overwritten.
    pub fn init(
        dir: &Path,
        passphrase: &SecretString,
        opts: InitOptions,
    ) -> Result<Store, StoreError> {
        keys::check_passphrase(passphrase)?;
        let recovery = match &opts.recovery_recipient {
            Some(text) => Some(keys::parse_recipient(text).ok_or(StoreError::BadConfig {
                field: "recovery_recipient",
            })?),
            None => None,
        };
        let file = StoreFile {
            info: StoreInfo {
                office: opts.office,
                device_id: random_hex128(),
                device_name: opts.device_name,
                actor_hex: random_hex128(),
                staff: opts.staff,
                created_at: fsutil::rfc3339_utc_now(),
                recovery_recipient: recovery.as_ref().map(ToString::to_string),
            },
            kdf_work_factor: opts.kdf_work_factor,
        };
        file.validate()?;

        fsutil::create_private_dir(dir, "creating the data directory")?;
        for path in [
            dir.join(STORE_TOML),
            keys_path(dir, PASSPHRASE_KEY),
            keys_path(dir, RECOVERY_KEY),
            dir.join(DB_FILE),
            dir.join(DB_WAL),
        ] {
            if exists(&path)? {
                return Err(StoreError::AlreadyInitialised {
                    dir: dir.to_path_buf(),
                });
            }
        }
        fsutil::create_private_dir(&dir.join(KEYS_DIR), "creating the keys directory")?;
        fsutil::fsync_dir(dir).map_err(StoreError::io("creating the keys directory"))?;

        let key = DataKey::generate();
        write_passphrase_file(dir, &key, passphrase, file.kdf_work_factor)?;
        if let Some(recipient) = &recovery {
            let wrapped = keys::wrap_to_recipient(&key, recipient)?;
            fsutil::atomic_write(
                &keys_path(dir, RECOVERY_KEY),
                &wrapped,
                "writing keys/recovery.age",
            )?;
        }
        // store.toml is written last: it marks the directory as a complete store.
        let store = Self::start(dir, file.info.clone(), key, true, None)?;
        file.write(dir)?;
        tracing::info!(recovery = recovery.is_some(), "store initialised");
        Ok(store)
    }

    /// Opens the store in `dir` with the device passphrase.
    ///
    /// A wrong passphrase is [`StoreError::WrongPassphrase`] and changes nothing. A database
    /// that cannot be opened with the unwrapped key is moved to `dir/quarantine/<UTC>/`
    /// ([`StoreError::Quarantined`]); the next `open` then starts a fresh, empty database.
    pub fn open(dir: &Path, passphrase: &SecretString) -> Result<Store, StoreError> {
        Self::open_inner(dir, passphrase, None)
    }

    fn open_inner(
        dir: &Path,
        passphrase: &SecretString,
        events: Events,
    ) -> Result<Store, StoreError> {
        let file = StoreFile::read(dir)?;
        let key = unlock(dir, passphrase)?;
        let create = decide_create(dir)?;
        let store = Self::start(dir, file.info, key, create, events)?;
        tracing::info!(created = create, "store opened");
        Ok(store)
    }

    /// Test hook: opens with an observer of background work.
    #[cfg(test)]
    pub(crate) fn open_with_events(
        dir: &Path,
        passphrase: &SecretString,
        events: SyncSender<thread::StoreEvent>,
    ) -> Result<Store, StoreError> {
        Self::open_inner(dir, passphrase, Some(events))
    }

    fn start(
        dir: &Path,
        info: StoreInfo,
        key: DataKey,
        create: bool,
        events: Events,
    ) -> Result<Store, StoreError> {
        match thread::spawn(dir.join(DB_FILE), key, create, events) {
            Ok(spawned) => Ok(Store {
                dir: dir.to_path_buf(),
                info,
                tx: Some(spawned.tx),
                handle: Some(spawned.handle),
            }),
            Err(OpenError::Other(e)) => Err(e),
            Err(OpenError::Unreadable { reason }) => {
                // The thread has exited and closed its connection: move the files aside.
                let moved_to = fsutil::quarantine_files(dir, &[DB_FILE, DB_WAL, DB_SHM])?;
                tracing::error!(reason, "database could not be opened; moved to quarantine");
                Err(StoreError::Quarantined {
                    moved_to,
                    reason: reason.to_string(),
                })
            }
        }
    }

    /// Re-encrypts the data key to a new passphrase. The database is not touched; a wrong
    /// `old` passphrase changes nothing. Works while the store is open.
    pub fn change_passphrase(
        dir: &Path,
        old: &SecretString,
        new: &SecretString,
    ) -> Result<(), StoreError> {
        keys::check_passphrase(new)?;
        let file = StoreFile::read(dir)?;
        let key = unlock(dir, old)?;
        write_passphrase_file(dir, &key, new, file.kdf_work_factor)?;
        tracing::info!("passphrase changed");
        Ok(())
    }

    /// Sets a new passphrase using the office recovery identity (the text of an age
    /// identity file: `AGE-SECRET-KEY-1…` lines, `#` comments allowed). Decrypts
    /// `keys/recovery.age` and rewrites `keys/passphrase.age`; nothing else changes.
    pub fn recover(
        dir: &Path,
        identity: &str,
        new_passphrase: &SecretString,
    ) -> Result<(), StoreError> {
        keys::check_passphrase(new_passphrase)?;
        let file = StoreFile::read(dir)?;
        let path = keys_path(dir, RECOVERY_KEY);
        let bytes = fsutil::read_optional(&path, "reading keys/recovery.age")?
            .ok_or(StoreError::NoRecoveryKey)?;
        let identities = keys::parse_identities(identity)?;
        let key = keys::unwrap_with_identities(&bytes, &identities, &path)?;
        write_passphrase_file(dir, &key, new_passphrase, file.kdf_work_factor)?;
        tracing::info!("passphrase reset with the office recovery key");
        Ok(())
    }

    /// The store's metadata.
    pub fn info(&self) -> &StoreInfo {
        &self.info
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, StoreError> {
        let tx = self.tx.as_ref().ok_or(StoreError::ThreadGone)?;
        let (reply, rx) = reply_channel();
        tx.send(make(reply)).map_err(|_| StoreError::ThreadGone)?;
        rx.recv().map_err(|_| StoreError::ThreadGone)?
    }

    /// Inserts new documents in ONE transaction: all or nothing. An id that already exists
    /// (or appears twice in the batch) is [`StoreError::DuplicateDoc`] and nothing of the
    /// batch is written. Each `bytes` loads strictly with automerge (its type says so).
    pub fn insert_docs(&self, docs: Vec<NewDoc>) -> Result<(), StoreError> {
        if docs.is_empty() {
            return Ok(());
        }
        for doc in &docs {
            if !config::is_plain_text(&doc.kind, 64) {
                return Err(StoreError::BadInput {
                    what: "document kind must be a short, non-empty single line",
                });
            }
            if !config::is_plain_text(&doc.office, 64) {
                return Err(StoreError::BadInput {
                    what: "document office must be a short, non-empty single line",
                });
            }
        }
        self.call(|reply| Request::InsertDocs { docs, reply })
    }

    /// Appends raw change chunks to a document and sets its title, in ONE transaction, and
    /// returns its sequence numbers before and after ([`Store::doc_seq`]).
    /// Unknown id: [`StoreError::NotFound`]. Empty chunks are skipped; each other chunk must
    /// parse completely as automerge data.
    pub fn append_changes(
        &self,
        id: DocId,
        changes: Vec<Vec<u8>>,
        title: String,
    ) -> Result<Appended, StoreError> {
        let changes: Vec<Vec<u8>> = changes.into_iter().filter(|c| !c.is_empty()).collect();
        for chunk in &changes {
            chunks::check_chunk(chunk)?;
        }
        self.call(|reply| Request::AppendChanges {
            id,
            changes,
            title,
            reply,
        })
    }

    /// The sequence number of a document's latest write (any writer: an edit, a sync, an
    /// import), or `None` if there is no such document: equal numbers, equal document.
    pub fn doc_seq(&self, id: DocId) -> Result<Option<u64>, StoreError> {
        self.run(move |db| db.doc_seq(id))
    }

    /// The stored chunks of a document, or `None` if there is no such document.
    pub fn load_doc(&self, id: DocId) -> Result<Option<StoredDoc>, StoreError> {
        self.call(|reply| Request::LoadDoc { id, reply })
    }

    /// Every document's metadata, most recently updated first.
    pub fn list_docs(&self) -> Result<Vec<DocSummary>, StoreError> {
        self.call(|reply| Request::ListDocs { reply })
    }

    /// Folds a document's change rows into a new snapshot and deletes them, in one
    /// transaction. The document's heads do not change. Refuses (changing nothing) if any
    /// chunk does not decode or some change's dependencies are missing.
    pub fn compact(&self, id: DocId) -> Result<(), StoreError> {
        self.call(|reply| Request::Compact { id, reply })
    }

    /// Runs `work` on the store thread and waits for its result.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut db::Db) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.call(move |reply| {
            Request::Run(Box::new(move |db: &mut db::Db| {
                thread::respond(&reply, work(db));
            }))
        })
    }

    /// A value kept in the encrypted database (device credentials and other settings
    /// that must not sit in plaintext files).
    pub fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_owned();
        self.run(move |db| db.get_meta(&key))
    }

    /// Sets a value kept in the encrypted database (one transaction, `synchronous=FULL`).
    pub fn put_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.run(move |db| db.put_meta(&key, &value))
    }

    /// The devices the relay attests for those of `actors` that are bound (the `actors`
    /// table: on the relay its own bindings, on a device the copy the relay sent).
    pub fn actor_bindings(
        &self,
        actors: &[Vec<u8>],
    ) -> Result<Vec<crate::sync::storage::ActorBinding>, StoreError> {
        if actors.is_empty() {
            return Ok(Vec::new());
        }
        let actors = actors.to_vec();
        self.run(move |db| db.actor_bindings(&actors))
    }

    /// Checkpoints the WAL, closes the database and joins the store thread.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), StoreError> {
        let mut result = Ok(());
        if let Some(tx) = self.tx.take() {
            let (reply, rx) = reply_channel();
            result = match tx.send(Request::Shutdown { reply }) {
                Ok(()) => rx.recv().unwrap_or(Err(StoreError::ThreadGone)),
                Err(_) => Err(StoreError::ThreadGone),
            };
        }
        if let Some(handle) = self.handle.take()
            && handle.join().is_err()
        {
            tracing::error!("store thread panicked");
            result = Err(StoreError::ThreadGone);
        }
        result
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, "store shut down uncleanly");
        }
    }
}

fn storage_err(e: StoreError) -> crate::sync::storage::StorageError {
    crate::sync::storage::StorageError(e.to_string())
}

impl crate::sync::storage::SyncStorage for Store {
    fn store_id(&self) -> String {
        self.info.device_id.clone()
    }

    fn current_seq(&self) -> Result<u64, crate::sync::storage::StorageError> {
        self.run(|db| db.current_seq()).map_err(storage_err)
    }

    fn changed_for_peer(
        &self,
        peer: &str,
        since: u64,
        offices: &[String],
        ignore_states: bool,
    ) -> Result<Vec<crate::sync::storage::CatalogEntry>, crate::sync::storage::StorageError> {
        let (peer, offices) = (peer.to_owned(), offices.to_vec());
        self.run(move |db| db.changed_for_peer(&peer, since, &offices, ignore_states))
            .map_err(storage_err)
    }

    fn catalog(
        &self,
        offices: &[String],
    ) -> Result<Vec<crate::sync::storage::CatalogEntry>, crate::sync::storage::StorageError> {
        let offices = offices.to_vec();
        self.run(move |db| db.catalog(&offices))
            .map_err(storage_err)
    }

    fn catalog_digest(
        &self,
        offices: &[String],
    ) -> Result<[u8; 32], crate::sync::storage::StorageError> {
        // Kept per office by the store's triggers (migration 0007): one row per office.
        let offices = offices.to_vec();
        self.run(move |db| db.catalog_digest(&offices))
            .map_err(storage_err)
    }

    fn shared_for_peer(
        &self,
        peer: &str,
        offices: &[String],
        ignore_states: bool,
    ) -> Result<crate::sync::storage::SharedDocs, crate::sync::storage::StorageError> {
        let (peer, offices) = (peer.to_owned(), offices.to_vec());
        self.run(move |db| db.shared_for_peer(&peer, &offices, ignore_states))
            .map_err(storage_err)
    }

    fn lookup(
        &self,
        ids: &[DocId],
    ) -> Result<Vec<(DocId, String, crate::sync::storage::Heads)>, crate::sync::storage::StorageError>
    {
        let ids = ids.to_vec();
        self.run(move |db| db.lookup(&ids)).map_err(storage_err)
    }

    fn peer(
        &self,
        peer: &str,
    ) -> Result<crate::sync::storage::PeerRecord, crate::sync::storage::StorageError> {
        let peer = peer.to_owned();
        self.run(move |db| db.peer(&peer)).map_err(storage_err)
    }

    fn load_for_sync(
        &self,
        peer: &str,
        id: DocId,
    ) -> Result<Option<crate::sync::storage::SyncDocRecord>, crate::sync::storage::StorageError>
    {
        let peer = peer.to_owned();
        self.run(move |db| db.load_for_sync(&peer, id))
            .map_err(storage_err)
    }

    fn cert_person(
        &self,
        fingerprint: &str,
    ) -> Result<Option<String>, crate::sync::storage::StorageError> {
        let fingerprint = fingerprint.to_owned();
        self.run(move |db| db.cert_person(&fingerprint))
            .map_err(storage_err)
    }

    fn actor_owner(
        &self,
        actor: &[u8],
    ) -> Result<Option<String>, crate::sync::storage::StorageError> {
        let actor = actor.to_vec();
        self.run(move |db| db.actor_owner(&actor))
            .map_err(storage_err)
    }

    fn actor_bindings(
        &self,
        actors: &[Vec<u8>],
    ) -> Result<Vec<crate::sync::storage::ActorBinding>, crate::sync::storage::StorageError> {
        Store::actor_bindings(self, actors).map_err(storage_err)
    }

    fn usage(
        &self,
        office: &str,
        peer: &str,
    ) -> Result<crate::sync::storage::Usage, crate::sync::storage::StorageError> {
        let (office, peer) = (office.to_owned(), peer.to_owned());
        self.run(move |db| db.usage(&office, &peer))
            .map_err(storage_err)
    }

    fn session_start(
        &self,
        q: &crate::sync::storage::StartQuery,
    ) -> Result<crate::sync::storage::StartReads, crate::sync::storage::StorageError> {
        // One crossing to the store thread instead of five (each costs a wake-up of the
        // store thread and one of the caller's).
        let q = q.clone();
        self.run(move |db| db.session_start(&q))
            .map_err(storage_err)
    }

    fn commit(
        &self,
        batch: crate::sync::storage::SyncBatch,
    ) -> Result<(), crate::sync::storage::StorageError> {
        if batch.is_empty() {
            return Ok(());
        }
        // A snapshot to insert loads by its type (`Snapshot`); change chunks are checked.
        for write in &batch.writes {
            if let crate::sync::storage::SyncWrite::Append { changes, .. } = write {
                for c in changes.iter().filter(|c| !c.is_empty()) {
                    chunks::check_chunk(c).map_err(storage_err)?;
                }
            }
        }
        self.call(|reply| Request::CommitSync { batch, reply })
            .map_err(storage_err)
    }
}
