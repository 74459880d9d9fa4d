//! Bundle files: the bundle format of [`musubi_core::sync::bundle`] encrypted with age to
//! a passphrase (scrypt), read and written as files. The format itself needs neither age
//! nor a file system (so it is fuzzed on its own); this is the part that does.

use std::io::{self, BufReader, Read, Write};
use std::iter;
use std::path::Path;

use age::secrecy::{ExposeSecret, SecretString};
use age::{DecryptError, Decryptor, Encryptor, scrypt};

use musubi_core::sync::bundle::{
    Bundle, BundleError, ExportSummary, parse, read_full, write_plaintext,
};
use musubi_core::sync::storage::SyncStorage;

use crate::fsutil::{DurableFile, Existing};

/// How every age file begins.
const AGE_PREFIX: &[u8] = b"age-encryption.org/";

/// The first line of an age file of the format this build reads.
const AGE_V1: &[u8] = b"age-encryption.org/v1\n";

/// Highest scrypt work factor a new bundle may ask for (same bound as the store).
const MAX_WORK_FACTOR: u8 = 20;

/// Shortest passphrase accepted for a new bundle.
const MIN_PASSPHRASE_CHARS: usize = 8;

/// Writes the encrypted bundle of `offices` to `out`. `work_factor` is scrypt's
/// log2(N); `None` lets age pick about one second of work on this device.
pub fn encrypt_to<S: SyncStorage + ?Sized, W: Write>(
    storage: &S,
    offices: &[String],
    created_ms: i64,
    passphrase: &SecretString,
    work_factor: Option<u8>,
    out: W,
) -> Result<ExportSummary, BundleError> {
    if passphrase.expose_secret().chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(BundleError::BadPassphrase(
            "must be at least 8 characters long",
        ));
    }
    let mut recipient = scrypt::Recipient::new(passphrase.clone());
    if let Some(n) = work_factor {
        if !(1..=MAX_WORK_FACTOR).contains(&n) {
            return Err(BundleError::BadPassphrase(
                "work factor is out of range (1 to 20)",
            ));
        }
        recipient.set_work_factor(n);
    }
    let encryptor = Encryptor::with_recipients(iter::once(&recipient as &dyn age::Recipient))
        .map_err(|_| BundleError::Io {
            context: "encrypting the bundle",
            source: io::Error::other("age refused the passphrase recipient"),
        })?;
    let mut stream = encryptor
        .wrap_output(out)
        .map_err(BundleError::io("writing the bundle"))?;
    let summary = write_plaintext(storage, offices, created_ms, &mut stream)?;
    let mut out = stream
        .finish()
        .map_err(BundleError::io("writing the bundle"))?;
    out.flush().map_err(BundleError::io("writing the bundle"))?;
    Ok(summary)
}

/// Decrypts and parses a whole bundle. Nothing is returned unless every byte
/// authenticated and the plaintext checked out.
pub fn decrypt<R: Read>(mut input: R, passphrase: &SecretString) -> Result<Bundle, BundleError> {
    // Look at the start first: an age file with a broken header is damaged, anything
    // else is not a bundle at all.
    let mut head = [0u8; AGE_V1.len()];
    let n = read_full(&mut input, &mut head)?;
    let start = &head[..n];
    let is_v1 = start == AGE_V1;
    let is_age = start.starts_with(AGE_PREFIX);
    let decryptor =
        Decryptor::new(io::Cursor::new(start.to_vec()).chain(input)).map_err(|_| {
            match (is_v1, is_age) {
                (true, _) => BundleError::Damaged("the header is malformed or cut short"),
                (false, true) => BundleError::NotABundle("an unknown age format version"),
                (false, false) => BundleError::NotABundle("not an age-encrypted file"),
            }
        })?;
    if !decryptor.is_scrypt() {
        return Err(BundleError::NotABundle(
            "encrypted to a key, not to a passphrase",
        ));
    }
    let identity = scrypt::Identity::new(passphrase.clone());
    let reader = decryptor
        .decrypt(iter::once(&identity as &dyn age::Identity))
        .map_err(|e| match e {
            DecryptError::DecryptionFailed
            | DecryptError::NoMatchingKeys
            | DecryptError::KeyDecryptionFailed => BundleError::WrongPassphrase,
            DecryptError::ExcessiveWork { required, .. } => {
                BundleError::KdfTooExpensive { required }
            }
            DecryptError::InvalidMac => BundleError::Damaged("the header does not authenticate"),
            _ => BundleError::Damaged("the header is malformed"),
        })?;
    parse(reader)
}

/// Opens, decrypts and parses a bundle file.
pub fn read_file(path: &Path, passphrase: &SecretString) -> Result<Bundle, BundleError> {
    let file = std::fs::File::open(path).map_err(BundleError::Open)?;
    decrypt(BufReader::new(file), passphrase)
}

/// Writes the encrypted bundle to `path` with the durable write ([`crate::fsutil`]): a
/// private temporary file next to it, flushed to disk, then renamed. An existing `path` is
/// replaced only if `replace`.
pub fn write_file<S: SyncStorage + ?Sized>(
    storage: &S,
    offices: &[String],
    created_ms: i64,
    passphrase: &SecretString,
    work_factor: Option<u8>,
    path: &Path,
    replace: bool,
) -> Result<ExportSummary, BundleError> {
    let already_exists = || BundleError::Io {
        context: "the bundle file already exists (use --force to replace it)",
        source: io::Error::from(io::ErrorKind::AlreadyExists),
    };
    let exists = path
        .try_exists()
        .map_err(BundleError::io("looking at the bundle path"))?;
    if exists && !replace {
        return Err(already_exists());
    }
    let mut file =
        DurableFile::create(path).map_err(BundleError::io("creating the bundle file"))?;
    let mut buffered = io::BufWriter::new(&mut file);
    let summary = encrypt_to(
        storage,
        offices,
        created_ms,
        passphrase,
        work_factor,
        &mut buffered,
    )?;
    buffered.into_inner().map_err(|e| BundleError::Io {
        context: "writing the bundle",
        source: e.into_error(),
    })?;
    let existing = if replace {
        Existing::Replace
    } else {
        Existing::Refuse
    };
    file.commit(existing).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            already_exists()
        } else {
            BundleError::Io {
                context: "flushing the bundle to disk",
                source: e,
            }
        }
    })?;
    Ok(summary)
}
