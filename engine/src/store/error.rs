//! The one error type of the store boundary.
//!
//! Messages are plain English for a person at a tablet or an operator reading logs. They
//! never contain document content, titles, passphrases, keys or personal data; the data
//! directory path is allowed (it is chosen by the app, not by a person's details).

use std::io;
use std::path::PathBuf;

use crate::ids::DocId;

/// Everything that can go wrong in the encrypted local store.
///
/// Variants say whose fault it is: the caller (`NotInitialised`, `AlreadyInitialised`,
/// `WrongPassphrase`, `BadInput`…), the local disk or database (`Io`, `Sqlite`, `Corrupt`,
/// `DiskFull`, `Quarantined`), an incompatible version (`NewerSchema`, `NewerFormat`) or a
/// bug (`ThreadGone`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// `open`/`change_passphrase`/`recover` on a directory without `store.toml`.
    #[error("no musubi store in {dir}: run init first")]
    NotInitialised {
        /// The data directory.
        dir: PathBuf,
    },

    /// `init` on a directory that already holds (part of) a store. Nothing was changed.
    #[error("{dir} already holds a musubi store; nothing was changed")]
    AlreadyInitialised {
        /// The data directory.
        dir: PathBuf,
    },

    /// The passphrase did not decrypt `keys/passphrase.age`.
    #[error("the passphrase is wrong; nothing was changed")]
    WrongPassphrase,

    /// A passphrase was empty.
    #[error("the passphrase must not be empty; nothing was changed")]
    EmptyPassphrase,

    /// The recovery identity is well-formed but does not decrypt `keys/recovery.age`.
    #[error("the recovery key does not match this store; nothing was changed")]
    WrongRecoveryIdentity,

    /// The recovery identity text holds no usable `AGE-SECRET-KEY-1…` line.
    #[error(
        "the recovery key file is not valid (expected AGE-SECRET-KEY-1… lines); nothing was changed"
    )]
    MalformedRecoveryIdentity,

    /// The store was created without an office recovery key.
    #[error("this store has no office recovery key; nothing was changed")]
    NoRecoveryKey,

    /// A key file the store needs is missing.
    #[error("the key file {file} is missing; nothing was changed")]
    KeyFileMissing {
        /// The missing file.
        file: PathBuf,
    },

    /// A key file exists but is not a valid age file holding a data key.
    #[error("the key file {file} is damaged; nothing was changed")]
    DamagedKeyFile {
        /// The damaged file.
        file: PathBuf,
    },

    /// The key file asks for more scrypt work than this device accepts.
    #[error(
        "the key file needs scrypt work factor {required}, more than this device accepts; nothing was changed"
    )]
    KdfTooExpensive {
        /// log2(N) the key file asks for.
        required: u8,
    },

    /// The database could not be opened (not a database, wrong key, damaged header). It was
    /// moved aside, byte for byte; the next `open` creates a fresh, empty database.
    #[error(
        "the database could not be opened ({reason}) and was moved to {moved_to}; nothing was deleted"
    )]
    Quarantined {
        /// The quarantine folder holding the moved files.
        moved_to: PathBuf,
        /// Why it could not be opened (a fixed phrase, never file content).
        reason: String,
    },

    /// The key files are there but `musubi.db` is not, and nothing was quarantined: the
    /// store refuses to silently start empty.
    #[error(
        "the database file is missing from {dir} although the store's keys are present; nothing was created"
    )]
    DatabaseMissing {
        /// The data directory.
        dir: PathBuf,
    },

    /// The database was written by a newer musubi. It was left untouched.
    #[error(
        "the database has schema version {found}, newer than this program supports ({supported}); it was left untouched"
    )]
    NewerSchema {
        /// `PRAGMA user_version` of the file.
        found: i64,
        /// The newest version this binary knows.
        supported: i64,
    },

    /// `store.toml` was written by a newer musubi.
    #[error(
        "store.toml has format version {found}, newer than this program supports ({supported}); nothing was changed"
    )]
    NewerFormat {
        /// `format` in `store.toml`.
        found: i64,
        /// The newest format this binary knows.
        supported: i64,
    },

    /// A field of `store.toml` or of `InitOptions` is missing or invalid.
    #[error("invalid or missing setting `{field}`; nothing was changed")]
    BadConfig {
        /// The field name (never its value).
        field: &'static str,
    },

    /// A caller-supplied value is invalid (e.g. the same id twice in one batch).
    #[error("invalid input: {what}; nothing was written")]
    BadInput {
        /// What was wrong, as a fixed phrase.
        what: &'static str,
    },

    /// No document with this id.
    #[error("no document {}", .0.short())]
    NotFound(DocId),

    /// A document with this id already exists; the whole batch was rolled back.
    #[error("document {} already exists; nothing in the batch was written", .0.short())]
    DuplicateDoc(DocId),

    /// The document has change rows whose dependencies the store does not hold, so folding
    /// them into a snapshot would drop them. Nothing was changed; compaction is retried
    /// once more changes arrive.
    #[error(
        "document {} cannot be compacted yet: {missing} change dependencies are missing; nothing was changed",
        .id.short()
    )]
    MissingDependencies {
        /// The document.
        id: DocId,
        /// How many dependency hashes are missing.
        missing: usize,
    },

    /// File system error.
    #[error("I/O error while {context}")]
    Io {
        /// What the store was doing.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// SQLite error other than corruption or a full disk. The transaction was rolled back.
    #[error("database error while {context}")]
    Sqlite {
        /// What the store was doing.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },

    /// SQLite found damaged pages while serving a request. The transaction was rolled back;
    /// nothing was deleted.
    #[error("the database is damaged (found while {context}); nothing was changed")]
    Corrupt {
        /// What the store was doing.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },

    /// The disk is full. The transaction was rolled back; earlier commits are intact.
    #[error("the disk is full (while {context}); nothing was written")]
    DiskFull {
        /// What the store was doing.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },

    /// Document bytes could not be decoded by automerge.
    #[error("a document could not be decoded; nothing was written")]
    Automerge(#[source] automerge::AutomergeError),

    /// The batch was written in one transaction with batches of other sessions, and SQLite
    /// rolled that transaction back for another batch's error (a full disk, an I/O error).
    #[error("the transaction was rolled back with another session's data; nothing was written")]
    RolledBackWithGroup,

    /// The store thread stopped (it panicked or was shut down).
    #[error("the store thread is not running")]
    ThreadGone,

    /// A snapshot (`store::snapshot`) failed its own check and was removed.
    #[error("the copy of the database failed its check ({what}); it was removed")]
    SnapshotCheck {
        /// What was wrong, a fixed phrase.
        what: &'static str,
    },
}

impl StoreError {
    /// Wraps a SQLite error, sorting out corruption and a full disk.
    pub(crate) fn sqlite(context: &'static str, source: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match source.sqlite_error_code() {
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
                Self::Corrupt { context, source }
            }
            Some(ErrorCode::DiskFull) => Self::DiskFull { context, source },
            _ => Self::Sqlite { context, source },
        }
    }

    /// `map_err` helper for SQLite calls.
    pub(crate) fn sql(context: &'static str) -> impl FnOnce(rusqlite::Error) -> Self {
        move |source| Self::sqlite(context, source)
    }

    /// `map_err` helper for file system calls.
    pub(crate) fn io(context: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |source| Self::Io { context, source }
    }
}
