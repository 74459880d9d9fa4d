//! `musubi-relay backup` and `restore`: the relay directory, with a consistent copy of
//! its store, in one passphrase-encrypted file.
//!
//! # What a backup holds
//!
//! `relay.toml`, `serve.toml`, `devices.toml` (the device registry of a single relay),
//! the office CA (`ca/office-ca.pem` **and its key**), the relay's TLS certificate and
//! key, and the store: `store/store.toml`, the age-wrapped data key
//! (`store/keys/*.age`) and `store/musubi.db`, a snapshot taken with `VACUUM INTO` from
//! one read transaction while the relay may be serving (see
//! [`musubi_engine::store::snapshot`]); the snapshot stays encrypted with the store's
//! data key.
//!
//! Not in it: the **store key** (`store.key` or the systemd credential) unless
//! `--include-store-key` asks for it, so that the backup file and its passphrase alone do
//! not open the documents; a cluster relay's **database** (documents and device
//! registry: back it up with `pg_dump` or continuous archiving) and its `data.key`
//! (likewise only with `--include-store-key`); `.admin.lock`, quarantined databases, the
//! WAL (the snapshot is one file).
//!
//! # Format
//!
//! The plaintext is the line `musubi-relay-backup/1\n`, a 4-byte big-endian length and
//! the JSON [`Manifest`] (every file with its size and SHA-256), the files' bytes in
//! manifest order, and a SHA-256 of every byte before it. The file is that plaintext
//! encrypted with age to a passphrase (scrypt): age authenticates every 64 KiB chunk and
//! the end, so a cut, changed or wrongly unlocked file is refused.
//!
//! # Durability and all-or-nothing
//!
//! `backup` writes with the shared durable write (`musubi_engine::fsutil`: a temporary
//! file beside the target, fsynced, renamed, the directory fsynced); an existing target is
//! refused, even one that appears during the write. `restore` writes into a hidden sibling
//! of the new directory and renames it into place only after every byte checked out; a
//! target that exists and is not empty is refused; on any error nothing is left behind.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::iter;
use std::path::{Path, PathBuf};

use age::secrecy::{ExposeSecret, SecretString};
use musubi_engine::fsutil::{DurableFile, Existing};
use musubi_engine::net::{Zeroizing, pki};
use musubi_engine::store;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{RelayConfig, SERVE_TOML};
use crate::dir::{
    CA_CERT, CA_KEY, DATA_KEY, DEVICES_TOML, RELAY_CERT, RELAY_KEY, RELAY_TOML, RelayDir,
    STORE_DIR, STORE_KEY,
};
use crate::error::RelayError;
use crate::fsutil;

/// The first line of a backup's plaintext; the number is the format.
pub const MAGIC: &[u8] = b"musubi-relay-backup/1\n";
/// The manifest `format`.
pub const FORMAT: u32 = 1;
/// Shortest backup passphrase accepted.
pub const MIN_PASSPHRASE_CHARS: usize = 12;
/// Largest manifest read.
const MAX_MANIFEST: u32 = 1024 * 1024;
/// Highest scrypt work factor a backup may be written with (as bundles and stores).
const MAX_WORK_FACTOR: u8 = 20;
/// How every age file begins.
const AGE_PREFIX: &[u8] = b"age-encryption.org/";

/// The relay directory's own files a backup copies as they are (those that exist).
const DIRECTORY_FILES: [&str; 7] = [
    RELAY_TOML,
    SERVE_TOML,
    DEVICES_TOML,
    CA_CERT,
    CA_KEY,
    RELAY_CERT,
    RELAY_KEY,
];

/// The other files a backup may hold besides [`DIRECTORY_FILES`] (paths inside the relay
/// directory): the keys and the store. Nothing else is ever written by `restore`, whatever
/// a manifest says.
const ALLOWED_BESIDES: &[&str] = &[
    STORE_KEY,
    DATA_KEY,
    "store/store.toml",
    "store/keys/passphrase.age",
    "store/keys/recovery.age",
    "store/musubi.db",
];

/// Files every backup holds.
const REQUIRED: &[&str] = &[RELAY_TOML, CA_CERT, CA_KEY, RELAY_CERT, RELAY_KEY];
/// Files every backup of a single (embedded-store) relay holds as well.
const REQUIRED_EMBEDDED: &[&str] = &[
    DEVICES_TOML,
    "store/store.toml",
    "store/keys/passphrase.age",
    "store/musubi.db",
];
/// Directories `restore` creates.
const DIRS: &[&str] = &["ca", "tls", STORE_DIR, "store/keys"];

/// The manifest at the start of a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// The relay id of the directory backed up.
    pub relay_id: String,
    /// When the backup was taken (RFC 3339, UTC).
    pub created_at: String,
    /// `embedded` (documents in `store/`) or `cluster` (documents in PostgreSQL, not in
    /// the backup).
    pub kind: String,
    /// Whether the key that opens the documents (`store.key`, or a cluster's `data.key`)
    /// is in the backup.
    pub store_key_included: bool,
    /// The files, in the order their bytes follow.
    pub files: Vec<FileEntry>,
}

/// One file of a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Path inside the relay directory (one of a fixed list).
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
}

/// What [`backup`] needs.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// The backup file to write (must not exist).
    pub to: PathBuf,
    /// The passphrase the file is encrypted to.
    pub passphrase: SecretString,
    /// Also put the store key (`store.key` or the systemd credential; `data.key` of a
    /// cluster relay) in the backup.
    pub include_store_key: bool,
    /// scrypt log2(N); `None`: age's default (about a second of work).
    pub work_factor: Option<u8>,
}

/// What a backup holds, for the summary line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackupReport {
    /// The manifest written.
    pub manifest: Manifest,
    /// Size of the backup file.
    pub file_bytes: u64,
}

/// What [`restore`] made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    /// The manifest read.
    pub manifest: Manifest,
    /// The new relay directory.
    pub dir: PathBuf,
}

fn check_passphrase(p: &SecretString) -> Result<(), RelayError> {
    if p.expose_secret().chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(RelayError::BackupPassphrase {
            problem: "must be at least 12 characters long (12文字以上にしてください)",
        });
    }
    Ok(())
}

/// `dir/.NAME.TAG-RANDOM`: a hidden sibling of `path` for work in progress.
fn sibling(path: &Path, tag: &str) -> Result<(PathBuf, PathBuf), RelayError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| RelayError::invalid("path", "must name a file or directory"))?;
    let mut hidden = std::ffi::OsString::from(".");
    hidden.push(name);
    hidden.push(format!(".{tag}-{}", &pki::new_device_id()[..8]));
    Ok((parent.join(hidden), parent))
}

/// Removes a work directory or file on drop unless disarmed.
struct Cleanup(Option<PathBuf>);

impl Cleanup {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let gone = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            if let Err(e) = gone
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(path = %p.display(), error = %e, "could not remove a temporary file");
            }
        }
    }
}

/// A file to put in the backup: in memory (small files) or on disk (the snapshot).
enum Source {
    Bytes(Zeroizing<Vec<u8>>),
    File(PathBuf),
}

fn sha256_file(path: &Path) -> Result<(u64, String), RelayError> {
    let mut f = File::open(path).map_err(RelayError::io("reading the store snapshot", path))?;
    let mut hasher = Sha256::new();
    let n = io::copy(&mut f, &mut hasher)
        .map_err(RelayError::io("reading the store snapshot", path))?;
    Ok((n, hex::encode(hasher.finalize())))
}

/// Writes an encrypted backup of `relay` to `opts.to`, durably. The relay may be
/// serving.
pub fn backup(relay: &RelayDir, opts: &BackupOptions) -> Result<BackupReport, RelayError> {
    check_passphrase(&opts.passphrase)?;
    if let Some(n) = opts.work_factor
        && !(1..=MAX_WORK_FACTOR).contains(&n)
    {
        return Err(RelayError::invalid(
            "MUSUBI_KDF_WORK_FACTOR",
            "must be 1 to 20",
        ));
    }
    let exists = opts
        .to
        .try_exists()
        .map_err(RelayError::io("looking at the backup file", &opts.to))?;
    if exists {
        return Err(RelayError::OutputExists {
            path: opts.to.clone(),
        });
    }
    let cluster = relay.config().database.is_some();
    let (staging, _) = sibling(&opts.to, "backup")?;
    fsutil::create_private_dir(&staging)?;
    let _staging = Cleanup(Some(staging.clone()));

    // The store first (the long part, without the administration lock), then the small
    // files under the lock: a registry newer than the store is harmless (a device
    // enrolled in between sends its documents again at its next sync).
    let mut sources: Vec<(&'static str, Source)> = Vec::new();
    let store_key = if cluster {
        None
    } else {
        let pass = relay.store_passphrase()?;
        let snap = staging.join(STORE_DIR);
        let info = store::snapshot(&relay.path().join(STORE_DIR), &pass, &snap)?;
        tracing::info!(
            db_bytes = info.db_bytes,
            schema = info.schema_version,
            "store snapshot taken"
        );
        Some(pass)
    };
    {
        let _lock = relay.lock()?;
        for rel in DIRECTORY_FILES {
            let path = relay.path().join(rel);
            match fs::read(&path) {
                Ok(b) => sources.push((rel, Source::Bytes(Zeroizing::new(b)))),
                Err(e) if e.kind() == io::ErrorKind::NotFound && !REQUIRED.contains(&rel) => {}
                Err(e) => return Err(RelayError::io("reading the relay directory", path)(e)),
            }
        }
    }
    if opts.include_store_key {
        let (rel, line) = match &store_key {
            Some(pass) => (STORE_KEY, format!("{}\n", pass.expose_secret())),
            None => {
                // As `RelayDir::data_keys` finds it: the systemd credential, else the file.
                let path = std::env::var_os("CREDENTIALS_DIRECTORY")
                    .filter(|d| !d.is_empty())
                    .map(|d| PathBuf::from(d).join("musubi-relay-data-key"))
                    .filter(|p| p.is_file())
                    .unwrap_or_else(|| relay.path().join(DATA_KEY));
                relay.data_keys()?;
                let text = fsutil::read_text(&path, "data key")?;
                (DATA_KEY, text)
            }
        };
        sources.push((rel, Source::Bytes(Zeroizing::new(line.into_bytes()))));
    }
    drop(store_key);
    if !cluster {
        for rel in [
            "store/store.toml",
            "store/keys/passphrase.age",
            "store/keys/recovery.age",
        ] {
            let path = staging.join(rel);
            if path.is_file() {
                let b = fs::read(&path).map_err(RelayError::io("reading the snapshot", &path))?;
                sources.push((rel, Source::Bytes(Zeroizing::new(b))));
            }
        }
        sources.push((
            "store/musubi.db",
            Source::File(staging.join("store/musubi.db")),
        ));
    }

    let mut files = Vec::new();
    for (rel, src) in &sources {
        let (bytes, sha256) = match src {
            Source::Bytes(b) => (b.len() as u64, hex::encode(Sha256::digest(b.as_slice()))),
            Source::File(p) => sha256_file(p)?,
        };
        files.push(FileEntry {
            path: (*rel).to_owned(),
            bytes,
            sha256,
        });
    }
    let manifest = Manifest {
        format: FORMAT,
        relay_id: relay.relay_id().to_owned(),
        created_at: fsutil::now_rfc3339(),
        kind: if cluster { "cluster" } else { "embedded" }.to_owned(),
        store_key_included: opts.include_store_key,
        files,
    };
    validate(&manifest)?;

    // The file: the durable write, beside the target, then renamed.
    let err = |e: io::Error| RelayError::io("writing the backup file", &opts.to)(e);
    let mut file = DurableFile::create(&opts.to).map_err(err)?;
    let mut recipient = age::scrypt::Recipient::new(opts.passphrase.clone());
    if let Some(n) = opts.work_factor {
        recipient.set_work_factor(n);
    }
    let encryptor = age::Encryptor::with_recipients(iter::once(&recipient as &dyn age::Recipient))
        .map_err(|_| err(io::Error::other("age refused the passphrase recipient")))?;
    let stream = encryptor
        .wrap_output(BufWriter::new(&mut file))
        .map_err(err)?;
    let mut out = Hashing::new(stream);
    let write_all = |out: &mut Hashing<_>| -> Result<(), RelayError> {
        out.write_all(MAGIC).map_err(err)?;
        let json =
            serde_json::to_vec(&manifest).map_err(|e| err(io::Error::other(e.to_string())))?;
        let len =
            u32::try_from(json.len()).map_err(|_| err(io::Error::other("manifest too large")))?;
        out.write_all(&len.to_be_bytes()).map_err(err)?;
        out.write_all(&json).map_err(err)?;
        for (_, src) in &sources {
            match src {
                Source::Bytes(b) => out.write_all(b).map_err(err)?,
                Source::File(p) => {
                    let mut f =
                        File::open(p).map_err(RelayError::io("reading the store snapshot", p))?;
                    io::copy(&mut f, out).map_err(err)?;
                }
            }
        }
        Ok(())
    };
    write_all(&mut out)?;
    let (mut stream, digest) = out.finish();
    stream.write_all(&digest).map_err(err)?;
    let buffered = stream.finish().map_err(err)?;
    buffered
        .into_inner()
        .map_err(|e| err(io::Error::other(e.to_string())))?;
    let file_bytes = file.as_file().metadata().map_err(err)?.len();
    // Never replace a file, even one that appeared meanwhile.
    file.commit(Existing::Refuse).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            RelayError::OutputExists {
                path: opts.to.clone(),
            }
        } else {
            err(e)
        }
    })?;
    Ok(BackupReport {
        manifest,
        file_bytes,
    })
}

/// A writer that hashes everything written through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
        }
    }

    fn finish(self) -> (W, [u8; 32]) {
        (self.inner, self.hasher.finalize().into())
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes everything read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn damaged(problem: &'static str) -> RelayError {
    RelayError::BackupDamaged { problem }
}

/// The manifest's rules: known format, known paths once each, the required ones there.
fn validate(m: &Manifest) -> Result<(), RelayError> {
    if m.format != FORMAT {
        return Err(damaged("written by another version of musubi-relay"));
    }
    let mut seen: Vec<&str> = Vec::new();
    for f in &m.files {
        let Some(known) = DIRECTORY_FILES
            .iter()
            .chain(ALLOWED_BESIDES)
            .find(|a| **a == f.path)
        else {
            return Err(damaged(
                "the manifest names a file a relay directory does not hold",
            ));
        };
        if seen.contains(known) {
            return Err(damaged("the manifest names a file twice"));
        }
        if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(damaged("the manifest is malformed"));
        }
        seen.push(known);
    }
    let required: Vec<&str> = match m.kind.as_str() {
        "embedded" => REQUIRED.iter().chain(REQUIRED_EMBEDDED).copied().collect(),
        "cluster" => REQUIRED.to_vec(),
        _ => return Err(damaged("the manifest is malformed")),
    };
    if required.iter().any(|r| !seen.contains(r)) {
        return Err(damaged("a file the relay needs is missing"));
    }
    Ok(())
}

/// Fills `buf` from `r`; the count read (less only at the end of the input).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A read error inside the decrypted stream: age found a chunk that does not
/// authenticate (changed or cut short).
fn stream_error(e: &io::Error) -> RelayError {
    tracing::debug!(error = %e, "backup stream error");
    damaged("it is cut short or was changed after it was written")
}

/// Restores a backup into `dest`, a new relay directory (it must not exist, or be empty).
/// All or nothing: built in a hidden sibling and renamed into place at the end.
pub fn restore(
    from: &Path,
    passphrase: &SecretString,
    dest: &Path,
) -> Result<RestoreReport, RelayError> {
    match fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(RelayError::AlreadyExists {
                    dir: dest.to_path_buf(),
                });
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(_) => {
            return Err(RelayError::AlreadyExists {
                dir: dest.to_path_buf(),
            });
        }
    }
    let file = File::open(from).map_err(RelayError::io("opening the backup file", from))?;
    let mut input = BufReader::new(file);
    let mut head = [0u8; AGE_PREFIX.len()];
    let n = read_full(&mut input, &mut head)
        .map_err(RelayError::io("reading the backup file", from))?;
    if &head[..n] != AGE_PREFIX {
        return Err(RelayError::NotABackup);
    }
    let decryptor = age::Decryptor::new(io::Cursor::new(head.to_vec()).chain(input))
        .map_err(|_| damaged("its header is malformed or cut short"))?;
    if !decryptor.is_scrypt() {
        return Err(RelayError::NotABackup);
    }
    let identity = age::scrypt::Identity::new(passphrase.clone());
    let reader = decryptor
        .decrypt(iter::once(&identity as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::DecryptionFailed
            | age::DecryptError::NoMatchingKeys
            | age::DecryptError::KeyDecryptionFailed => RelayError::BackupWrongPassphrase,
            age::DecryptError::ExcessiveWork { .. } => {
                damaged("its passphrase protection needs more work than this machine allows")
            }
            _ => damaged("its header does not authenticate"),
        })?;
    let mut r = HashingReader {
        inner: reader,
        hasher: Sha256::new(),
    };
    let mut magic = [0u8; MAGIC.len()];
    if read_full(&mut r, &mut magic).map_err(|e| stream_error(&e))? != MAGIC.len() || magic != MAGIC
    {
        return Err(RelayError::NotABackup);
    }
    let mut len = [0u8; 4];
    if read_full(&mut r, &mut len).map_err(|e| stream_error(&e))? != 4 {
        return Err(damaged("it is cut short"));
    }
    let len = u32::from_be_bytes(len);
    if len > MAX_MANIFEST {
        return Err(damaged("the manifest is too large"));
    }
    let mut json = vec![0u8; len as usize];
    if read_full(&mut r, &mut json).map_err(|e| stream_error(&e))? != json.len() {
        return Err(damaged("it is cut short"));
    }
    let manifest: Manifest =
        serde_json::from_slice(&json).map_err(|_| damaged("the manifest is malformed"))?;
    validate(&manifest)?;

    let (staging, parent) = sibling(dest, "restore")?;
    fsutil::create_private_dir(&parent)?;
    fsutil::create_private_dir(&staging)?;
    let mut guard = Cleanup(Some(staging.clone()));
    // Only the directories the backup's files live in (a cluster relay has no store/).
    let dirs: Vec<&str> = DIRS
        .iter()
        .copied()
        .filter(|d| {
            manifest
                .files
                .iter()
                .any(|f| f.path.strip_prefix(*d).is_some_and(|r| r.starts_with('/')))
        })
        .collect();
    for d in &dirs {
        fsutil::create_private_dir(&staging.join(d))?;
    }
    for entry in &manifest.files {
        let path = staging.join(&entry.path);
        let mut oo = fs::OpenOptions::new();
        oo.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            oo.mode(0o600);
        }
        let out = oo
            .open(&path)
            .map_err(RelayError::io("writing the restored directory", &path))?;
        let mut out = Hashing::new(BufWriter::new(out));
        let copied = io::copy(&mut (&mut r).take(entry.bytes), &mut out).map_err(|e| {
            if e.kind() == io::ErrorKind::WriteZero || e.kind() == io::ErrorKind::StorageFull {
                RelayError::io("writing the restored directory", &path)(e)
            } else {
                stream_error(&e)
            }
        })?;
        if copied != entry.bytes {
            return Err(damaged("it is cut short"));
        }
        let (buffered, digest) = out.finish();
        if hex::encode(digest) != entry.sha256.to_ascii_lowercase() {
            return Err(damaged("a file does not match its checksum"));
        }
        let f = buffered
            .into_inner()
            .map_err(|e| RelayError::io("writing the restored directory", &path)(e.into_error()))?;
        f.sync_all()
            .map_err(RelayError::io("writing the restored directory", &path))?;
    }
    let expected: [u8; 32] = r.hasher.clone().finalize().into();
    let mut trailer = [0u8; 32];
    if read_full(&mut r.inner, &mut trailer).map_err(|e| stream_error(&e))? != 32 {
        return Err(damaged("it is cut short"));
    }
    if trailer != expected {
        return Err(damaged("its checksum does not match"));
    }
    // Reading to the end makes age check the last chunk.
    let mut rest = [0u8; 1];
    if read_full(&mut r.inner, &mut rest).map_err(|e| stream_error(&e))? != 0 {
        return Err(damaged("it has bytes after its end"));
    }
    // The directory must be one the relay opens.
    RelayConfig::read(&staging.join(RELAY_TOML))?;
    for d in dirs.iter().rev().chain(iter::once(&"")) {
        fsutil::fsync_dir(&staging.join(d))
            .map_err(RelayError::io("writing the restored directory", &staging))?;
    }
    // Replaces `dest` only if it is missing or an empty directory.
    fs::rename(&staging, dest).map_err(RelayError::io(
        "moving the restored directory into place",
        dest,
    ))?;
    guard.disarm();
    fsutil::fsync_dir(&parent).map_err(RelayError::io("restoring the relay directory", dest))?;
    Ok(RestoreReport {
        manifest,
        dir: dest.to_path_buf(),
    })
}
