//! [`RelayError`]: what can go wrong administering a relay directory.
//!
//! Messages name the file, option or device id involved; they never echo a device name,
//! a key or a code (device names are chosen by people and may contain a person's name).

use std::io;
use std::path::PathBuf;

use musubi_engine::net::NetError;
use musubi_engine::store::StoreError;

/// Errors of the relay library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// `init` on a directory that exists and is not empty. Nothing was changed.
    #[error("{dir} already exists and is not empty; nothing was changed")]
    AlreadyExists {
        /// The relay directory.
        dir: PathBuf,
    },

    /// The directory is not a (complete) relay directory.
    #[error("{dir} is not a musubi relay directory (no relay.toml): run `musubi-relay init` first")]
    NotARelayDir {
        /// The directory.
        dir: PathBuf,
    },

    /// A file of the relay directory is missing a field or has an invalid one.
    #[error("{file}: {problem}")]
    BadFile {
        /// The file (path inside the relay directory).
        file: &'static str,
        /// What is wrong (a fixed phrase or rule; never a secret).
        problem: String,
    },

    /// A command-line value is invalid.
    #[error("{option}: {problem}")]
    Invalid {
        /// The option, e.g. `--office`.
        option: &'static str,
        /// What is wrong (never the value, unless it is an office number or address).
        problem: String,
    },

    /// The office is not served by this relay.
    #[error("office {office} is not served by this relay; add it with `musubi-relay office add`")]
    UnknownOffice {
        /// The office number (not personal data).
        office: String,
    },

    /// The relay serves several offices and none was chosen.
    #[error("this relay serves {count} offices; choose one with --office")]
    OfficeRequired {
        /// How many offices.
        count: usize,
    },

    /// `office add` of an office already served.
    #[error("office {office} is already served by this relay; nothing was changed")]
    OfficeExists {
        /// The office number.
        office: String,
    },

    /// An active (not revoked) device already has this name.
    #[error(
        "an active device with this name is already enrolled (id {device_id}); revoke it first or choose another name"
    )]
    DuplicateDevice {
        /// The existing device's id.
        device_id: String,
    },

    /// No active device matches the name or id given.
    #[error("no active device with this name or id; see `musubi-relay status`")]
    NoSuchDevice,

    /// The output file exists already.
    #[error("{path} already exists; choose another --out file (nothing was written)")]
    OutputExists {
        /// The file.
        path: PathBuf,
    },

    /// The store key is neither in the systemd credential nor in `store.key`.
    #[error(
        "the relay store key was not found (neither the systemd credential musubi-relay-store-key nor {path})"
    )]
    StoreKeyMissing {
        /// Where the key file was looked for.
        path: PathBuf,
    },

    /// PKI, TLS or enrollment error.
    #[error(transparent)]
    Net(#[from] NetError),

    /// The relay's encrypted store failed.
    #[error(transparent)]
    Store(#[from] StoreError),

    /// The PostgreSQL store (a cluster relay) failed.
    #[error(transparent)]
    Postgres(#[from] musubi_relay_pg::PgError),

    /// The backup passphrase is missing or too weak. Nothing was written.
    #[error("the backup passphrase {problem}; nothing was written")]
    BackupPassphrase {
        /// What is wrong (a fixed phrase).
        problem: &'static str,
    },

    /// The backup passphrase does not open the backup. Nothing was created.
    #[error(
        "the backup passphrase is wrong; nothing was created (バックアップのパスフレーズが違います。何も作成していません)"
    )]
    BackupWrongPassphrase,

    /// The backup file is damaged (cut short, changed) or malformed. Nothing was created.
    #[error(
        "the backup file is damaged: {problem}; nothing was created (バックアップファイルが壊れています。何も作成していません)"
    )]
    BackupDamaged {
        /// What is wrong (a fixed phrase).
        problem: &'static str,
    },

    /// The file is not a relay backup (not a passphrase-encrypted age file, or not a
    /// backup inside). Nothing was created.
    #[error(
        "the file is not a musubi-relay backup; nothing was created (musubi-relay のバックアップファイルではありません。何も作成していません)"
    )]
    NotABackup,

    /// File system error.
    #[error("I/O error while {context} ({path})")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl RelayError {
    /// `map_err` helper for file system calls.
    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            context,
            path,
            source,
        }
    }

    /// Shorthand for [`RelayError::Invalid`].
    pub(crate) fn invalid(option: &'static str, problem: impl Into<String>) -> Self {
        Self::Invalid {
            option,
            problem: problem.into(),
        }
    }

    /// True when the command's input was wrong and nothing was changed (exit code 2).
    pub fn is_invalid_input(&self) -> bool {
        match self {
            Self::AlreadyExists { .. }
            | Self::Invalid { .. }
            | Self::UnknownOffice { .. }
            | Self::OfficeRequired { .. }
            | Self::OfficeExists { .. }
            | Self::DuplicateDevice { .. }
            | Self::NoSuchDevice
            | Self::OutputExists { .. }
            | Self::BackupPassphrase { .. }
            | Self::BackupDamaged { .. }
            | Self::NotABackup => true,
            Self::Net(e) => matches!(e, NetError::Invalid { .. }),
            _ => false,
        }
    }
}
