//! The data key and its two age wrappings.
//!
//! A random 256-bit data key encrypts the database (SQLCipher raw key, no second KDF). It
//! is stored twice, never in the clear: `keys/passphrase.age` (scrypt recipient: the
//! device passphrase) and `keys/recovery.age` (X25519 recipient: the office recovery key).
//! age refuses to mix an scrypt stanza with other recipients in one file, hence two files.

use std::fmt;
use std::io::{self, Read};
use std::iter;
use std::path::Path;

use age::secrecy::{ExposeSecret, SecretString};
use age::{DecryptError, Decryptor, EncryptError, scrypt, x25519};
use rand::RngCore;
use zeroize::Zeroizing;

use super::error::StoreError;

/// Length of the data key in bytes.
const KEY_LEN: usize = 32;

/// Highest scrypt work factor `InitOptions::kdf_work_factor` may ask for. age's decryptor
/// accepts about 16 times the work it measures as "one second on this device"; 20
/// (2^20 × 1 KiB = 1 GiB of memory) is already far beyond what a tablet should do.
pub(crate) const MAX_KDF_WORK_FACTOR: u8 = 20;

/// The 256-bit key that encrypts the database. Zeroized on drop, never formatted.
pub(crate) struct DataKey(Zeroizing<[u8; KEY_LEN]>);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl DataKey {
    /// A fresh random key from the thread-local CSPRNG (ChaCha, seeded from the OS).
    pub(crate) fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        rand::rng().fill_bytes(&mut key[..]);
        Self(key)
    }

    /// Parses 64 hex digits (used by the migration fixtures only).
    #[cfg(test)]
    pub(crate) fn from_hex(hex_digits: &str) -> Option<Self> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        hex::decode_to_slice(hex_digits.trim(), &mut key[..]).ok()?;
        Some(Self(key))
    }

    /// The key as 64 lower-case hex digits (used by the migration fixtures only).
    #[cfg(test)]
    pub(crate) fn to_hex(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(2 * KEY_LEN));
        push_hex(&mut out, &self.0[..]);
        out
    }

    /// `PRAGMA key = "x'<64 hex>'";`: SQLCipher's raw-key form (no PBKDF2 on open).
    pub(crate) fn sqlcipher_key_pragma(&self) -> Zeroizing<String> {
        let prefix = "PRAGMA key = \"x'";
        let suffix = "'\";";
        // Sized up front so the buffer never reallocates (which would leave an
        // un-zeroized copy of the key behind).
        let mut sql = Zeroizing::new(String::with_capacity(
            prefix.len() + 2 * KEY_LEN + suffix.len(),
        ));
        sql.push_str(prefix);
        push_hex(&mut sql, &self.0[..]);
        sql.push_str(suffix);
        sql
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

fn encrypt_error(e: EncryptError) -> StoreError {
    let source = match e {
        EncryptError::Io(e) => e,
        _ => io::Error::other("age encryption failed"),
    };
    StoreError::Io {
        context: "encrypting the data key",
        source,
    }
}

/// Encrypts the data key to the passphrase. `work_factor` is log2(N) of scrypt; `None`
/// lets age pick about one second of work on this device.
pub(crate) fn wrap_with_passphrase(
    key: &DataKey,
    passphrase: &SecretString,
    work_factor: Option<u8>,
) -> Result<Vec<u8>, StoreError> {
    check_passphrase(passphrase)?;
    let mut recipient = scrypt::Recipient::new(passphrase.clone());
    if let Some(log_n) = work_factor {
        if !(1..=MAX_KDF_WORK_FACTOR).contains(&log_n) {
            return Err(StoreError::BadConfig {
                field: "kdf_work_factor",
            });
        }
        recipient.set_work_factor(log_n);
    }
    age::encrypt(&recipient, &key.0[..]).map_err(encrypt_error)
}

/// Encrypts the data key to the office recovery recipient.
pub(crate) fn wrap_to_recipient(
    key: &DataKey,
    recipient: &x25519::Recipient,
) -> Result<Vec<u8>, StoreError> {
    age::encrypt(recipient, &key.0[..]).map_err(encrypt_error)
}

/// Refuses an empty passphrase.
pub(crate) fn check_passphrase(passphrase: &SecretString) -> Result<(), StoreError> {
    if passphrase.expose_secret().is_empty() {
        return Err(StoreError::EmptyPassphrase);
    }
    Ok(())
}

/// Decrypts `keys/passphrase.age`. A wrong passphrase is `WrongPassphrase`; anything that
/// is not a well-formed scrypt age file holding exactly one key is `DamagedKeyFile`.
pub(crate) fn unwrap_with_passphrase(
    file_bytes: &[u8],
    passphrase: &SecretString,
    file: &Path,
) -> Result<DataKey, StoreError> {
    let damaged = || StoreError::DamagedKeyFile {
        file: file.to_path_buf(),
    };
    let decryptor = Decryptor::new(file_bytes).map_err(|_| damaged())?;
    if !decryptor.is_scrypt() {
        return Err(damaged());
    }
    // age's default maximum work factor (about 16× its one-second target) is kept: it is
    // above both the default work factor and the small ones tests use.
    let identity = scrypt::Identity::new(passphrase.clone());
    let reader = decryptor
        .decrypt(iter::once(&identity as &dyn age::Identity))
        .map_err(|e| match e {
            DecryptError::DecryptionFailed
            | DecryptError::NoMatchingKeys
            | DecryptError::KeyDecryptionFailed => StoreError::WrongPassphrase,
            DecryptError::ExcessiveWork { required, .. } => {
                StoreError::KdfTooExpensive { required }
            }
            _ => damaged(),
        })?;
    read_key(reader).ok_or_else(damaged)
}

/// Decrypts `keys/recovery.age` with the office identities.
pub(crate) fn unwrap_with_identities(
    file_bytes: &[u8],
    identities: &[x25519::Identity],
    file: &Path,
) -> Result<DataKey, StoreError> {
    let damaged = || StoreError::DamagedKeyFile {
        file: file.to_path_buf(),
    };
    let decryptor = Decryptor::new(file_bytes).map_err(|_| damaged())?;
    if decryptor.is_scrypt() {
        return Err(damaged());
    }
    let reader = decryptor
        .decrypt(identities.iter().map(|i| i as &dyn age::Identity))
        .map_err(|e| match e {
            DecryptError::DecryptionFailed
            | DecryptError::NoMatchingKeys
            | DecryptError::KeyDecryptionFailed => StoreError::WrongRecoveryIdentity,
            _ => damaged(),
        })?;
    read_key(reader).ok_or_else(damaged)
}

/// Reads exactly one key from a decrypted stream, straight into zeroizing memory.
fn read_key(mut reader: impl Read) -> Option<DataKey> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    reader.read_exact(&mut key[..]).ok()?;
    let mut extra = [0u8; 1];
    match reader.read(&mut extra) {
        Ok(0) => Some(DataKey(key)),
        _ => None,
    }
}

/// Parses an age identity file: `AGE-SECRET-KEY-1…` lines, blank lines and `#` comments.
pub(crate) fn parse_identities(text: &str) -> Result<Vec<x25519::Identity>, StoreError> {
    let mut identities = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let identity = line
            .parse::<x25519::Identity>()
            .map_err(|_| StoreError::MalformedRecoveryIdentity)?;
        identities.push(identity);
    }
    if identities.is_empty() {
        return Err(StoreError::MalformedRecoveryIdentity);
    }
    Ok(identities)
}

/// Parses an `age1…` X25519 recipient.
pub(crate) fn parse_recipient(text: &str) -> Option<x25519::Recipient> {
    text.trim().parse::<x25519::Recipient>().ok()
}

/// Generates an office recovery key pair.
///
/// Returns the identity file text (a `# created:` and a `# public key: age1…` comment, then
/// the `AGE-SECRET-KEY-1…` line) and the recipient (`age1…`) to pass as
/// `InitOptions::recovery_recipient`. The identity is a secret: the caller stores it
/// offline (printed, or on the office's own encrypted media), not on the tablet.
pub fn generate_recovery_identity() -> (String, String) {
    let identity = x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let secret = identity.to_string();
    let text = format!(
        "# created: {}\n# public key: {recipient}\n{}\n",
        super::fsutil::rfc3339_utc_now(),
        secret.expose_secret()
    );
    (text, recipient)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_key() {
        let key = DataKey::generate();
        assert_eq!(format!("{key:?}"), "[redacted]");
        let pragma = key.sqlcipher_key_pragma();
        assert!(pragma.starts_with("PRAGMA key = \"x'"));
        assert_eq!(pragma.len(), "PRAGMA key = \"x''\";".len() + 64);
        assert!(pragma.contains(key.to_hex().as_str()));
    }

    #[test]
    fn generated_identity_file_parses_and_matches_its_recipient() {
        let (text, recipient) = generate_recovery_identity();
        assert!(recipient.starts_with("age1"));
        assert!(text.contains(&format!("# public key: {recipient}\n")));
        let ids = parse_identities(&text).unwrap();
        assert_eq!(ids.len(), 1);
        assert_eq!(ids[0].to_public().to_string(), recipient);
        assert!(parse_recipient(&recipient).is_some());
        assert!(matches!(
            parse_identities("# only a comment\n"),
            Err(StoreError::MalformedRecoveryIdentity)
        ));
        assert!(matches!(
            parse_identities("AGE-SECRET-KEY-1NOTAKEY\n"),
            Err(StoreError::MalformedRecoveryIdentity)
        ));
    }

    #[test]
    fn passphrase_wrap_round_trips_and_rejects_wrong_passphrase() {
        let key = DataKey::generate();
        let good = SecretString::from("correct horse");
        let file = Path::new("keys/passphrase.age");
        let wrapped = wrap_with_passphrase(&key, &good, Some(10)).unwrap();
        let back = unwrap_with_passphrase(&wrapped, &good, file).unwrap();
        assert_eq!(back.to_hex(), key.to_hex());
        assert!(matches!(
            unwrap_with_passphrase(&wrapped, &SecretString::from("wrong"), file),
            Err(StoreError::WrongPassphrase)
        ));
        assert!(matches!(
            unwrap_with_passphrase(&wrapped[..40], &good, file),
            Err(StoreError::DamagedKeyFile { .. })
        ));
        assert!(matches!(
            wrap_with_passphrase(&key, &SecretString::from(""), Some(10)),
            Err(StoreError::EmptyPassphrase)
        ));
    }
}
