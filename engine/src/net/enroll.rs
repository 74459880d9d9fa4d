//! Enrollment files: how a device receives its [`DeviceCredentials`] from the relay.
//!
//! The relay serialises the credentials (TOML, `format = 1`) and encrypts them with age to
//! an scrypt passphrase: a fresh random one-time code of 20 characters from Crockford's
//! base32 alphabet (100 bits), shown as `XXXXX-XXXXX-XXXXX-XXXXX`. The file alone is
//! useless without the code, so a copied USB stick or e-mail attachment does not let
//! anyone impersonate the device. Typing the code is forgiving: case, spaces and hyphens
//! are ignored, and `O`, `I`, `L` are read as `0`, `1`, `1`.
//!
//! On the device, the credentials live inside the encrypted store (the `meta` table), never
//! in a plaintext file.

use std::fmt;
use std::io::Read;

use age::DecryptError;
use age::secrecy::SecretString;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::error::NetError;
use super::tls::DeviceCredentials;
use crate::store::Store;

/// Format number of the enrollment file content and of the stored credentials.
pub const FORMAT: u32 = 1;
/// Largest enrollment file accepted (a real one is about 2 KB).
pub const MAX_ENROLLMENT_BYTES: usize = 64 * 1024;
/// Key of the credentials in the store's `meta` table.
pub const CREDENTIALS_META_KEY: &str = "net.device_credentials";
/// scrypt work factor (log2 N) of enrollment files. The code has 100 bits of entropy, so
/// the key derivation does not need to be slow; this keeps enrollment quick on a tablet.
pub const WORK_FACTOR: u8 = 14;

/// Crockford's base32 alphabet: digits and upper-case letters without I, L, O and U.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters in a code.
pub const CODE_CHARS: usize = 20;
const GROUP: usize = 5;

/// A one-time enrollment code (normalised: 20 characters of the alphabet). `Debug` is
/// redacted; show it to a person with [`EnrollmentCode::grouped`].
#[derive(Clone, PartialEq, Eq)]
pub struct EnrollmentCode(Zeroizing<String>);

impl fmt::Debug for EnrollmentCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnrollmentCode([redacted])")
    }
}

impl EnrollmentCode {
    /// A fresh random code (100 bits).
    pub fn generate() -> EnrollmentCode {
        let random = Zeroizing::new(rand::random::<[u8; CODE_CHARS]>());
        // 256 is a multiple of 32, so `b % 32` is uniform.
        let text: String = random
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(b % 32)]))
            .collect();
        EnrollmentCode(Zeroizing::new(text))
    }

    /// Reads a code as a person typed it: ignores case, spaces and hyphens; reads `O` as
    /// `0` and `I`/`L` as `1`. Anything else that is not 20 characters of the alphabet is
    /// [`NetError::MalformedCode`].
    pub fn parse(typed: &str) -> Result<EnrollmentCode, NetError> {
        let mut out = Zeroizing::new(String::with_capacity(CODE_CHARS));
        for c in typed.chars() {
            let c = match c.to_ascii_uppercase() {
                ' ' | '-' | '\t' | '\r' | '\n' => continue,
                'O' => '0',
                'I' | 'L' => '1',
                c => c,
            };
            if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) || out.len() >= CODE_CHARS {
                return Err(NetError::MalformedCode);
            }
            out.push(c);
        }
        if out.len() != CODE_CHARS {
            return Err(NetError::MalformedCode);
        }
        Ok(EnrollmentCode(out))
    }

    /// The code as shown to a person: `XXXXX-XXXXX-XXXXX-XXXXX`.
    pub fn grouped(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(CODE_CHARS + 3));
        for (i, c) in self.0.chars().enumerate() {
            if i > 0 && i % GROUP == 0 {
                out.push('-');
            }
            out.push(c);
        }
        out
    }

    fn passphrase(&self) -> SecretString {
        SecretString::from(self.0.as_str().to_owned())
    }
}

/// The serialised form (enrollment file content and stored credentials).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsToml {
    format: u32,
    device_id: String,
    device_name: String,
    office: String,
    relay_address: String,
    cert_pem: String,
    key_pem: String,
    office_ca_pem: String,
}

/// Only the format number, read first so a newer file gets a clear message.
#[derive(Deserialize)]
struct FormatOnly {
    format: u32,
}

fn to_toml(creds: &DeviceCredentials) -> Result<Zeroizing<String>, NetError> {
    let wire = CredentialsToml {
        format: FORMAT,
        device_id: creds.device_id.clone(),
        device_name: creds.device_name.clone(),
        office: creds.office.clone(),
        relay_address: creds.relay_address.clone(),
        cert_pem: creds.cert_pem.clone(),
        key_pem: creds.key_pem.as_str().to_owned(),
        office_ca_pem: creds.office_ca_pem.clone(),
    };
    let text = toml::to_string(&wire).map(Zeroizing::new);
    // The plaintext key copy inside `wire` is wiped before it is dropped.
    let mut key = wire.key_pem;
    zeroize::Zeroize::zeroize(&mut key);
    text.map_err(|_| NetError::invalid("device credentials", "cannot be serialised"))
}

/// Why parsing failed: a newer format, or anything else (a fixed phrase).
enum ParseFailure {
    Newer(u32),
    Unreadable(&'static str),
}

fn from_toml(text: &str) -> Result<DeviceCredentials, ParseFailure> {
    let format = toml::from_str::<FormatOnly>(text)
        .map_err(|_| ParseFailure::Unreadable("the content is not readable"))?
        .format;
    if format > FORMAT {
        return Err(ParseFailure::Newer(format));
    }
    if format == 0 {
        return Err(ParseFailure::Unreadable("unknown format"));
    }
    let wire: CredentialsToml = toml::from_str(text)
        .map_err(|_| ParseFailure::Unreadable("a field is missing or unexpected"))?;
    let creds = DeviceCredentials {
        device_id: wire.device_id,
        device_name: wire.device_name,
        office: wire.office,
        cert_pem: wire.cert_pem,
        key_pem: Zeroizing::new(wire.key_pem),
        office_ca_pem: wire.office_ca_pem,
        relay_address: wire.relay_address,
    };
    creds.validate().map_err(|_| {
        ParseFailure::Unreadable("the certificate, key and office CA inside do not belong together")
    })?;
    Ok(creds)
}

/// Seals credentials into an enrollment file. Returns the file bytes and the fresh code
/// that opens it.
pub fn seal(creds: &DeviceCredentials) -> Result<(Vec<u8>, EnrollmentCode), NetError> {
    seal_with_work_factor(creds, WORK_FACTOR)
}

fn seal_with_work_factor(
    creds: &DeviceCredentials,
    work_factor: u8,
) -> Result<(Vec<u8>, EnrollmentCode), NetError> {
    creds.validate()?;
    let code = EnrollmentCode::generate();
    let text = to_toml(creds)?;
    let mut recipient = age::scrypt::Recipient::new(code.passphrase());
    recipient.set_work_factor(work_factor);
    let bytes = age::encrypt(&recipient, text.as_bytes()).map_err(|e| NetError::Io {
        context: "encrypting the enrollment file",
        source: match e {
            age::EncryptError::Io(e) => e,
            _ => std::io::Error::other("age encryption failed"),
        },
    })?;
    Ok((bytes, code))
}

/// Opens an enrollment file with the code as typed. A malformed code, a wrong code, a
/// truncated or altered file each give their own error; nothing is written anywhere.
pub fn open(bytes: &[u8], typed_code: &str) -> Result<DeviceCredentials, NetError> {
    let code = EnrollmentCode::parse(typed_code)?;
    let damaged = |reason| NetError::DamagedEnrollment { reason };
    if bytes.len() > MAX_ENROLLMENT_BYTES {
        return Err(damaged("the file is far larger than an enrollment file"));
    }
    let decryptor =
        age::Decryptor::new(bytes).map_err(|_| damaged("it is not a musubi enrollment file"))?;
    if !decryptor.is_scrypt() {
        return Err(damaged("it is not protected by an enrollment code"));
    }
    let identity = age::scrypt::Identity::new(code.passphrase());
    let mut reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .map_err(|e| match e {
            DecryptError::DecryptionFailed
            | DecryptError::NoMatchingKeys
            | DecryptError::KeyDecryptionFailed => NetError::WrongCode,
            DecryptError::ExcessiveWork { .. } => {
                damaged("it asks for more key-derivation work than allowed")
            }
            DecryptError::InvalidMac | DecryptError::InvalidHeader => {
                damaged("its header was altered")
            }
            _ => damaged("its header cannot be read"),
        })?;
    let mut plain = Zeroizing::new(Vec::new());
    (&mut reader)
        .take(MAX_ENROLLMENT_BYTES as u64)
        .read_to_end(&mut plain)
        .map_err(|_| damaged("its content is truncated or altered"))?;
    let text = std::str::from_utf8(&plain).map_err(|_| damaged("the content is not text"))?;
    from_toml(text).map_err(|f| match f {
        ParseFailure::Newer(found) => NetError::NewerEnrollment {
            found,
            supported: FORMAT,
        },
        ParseFailure::Unreadable(reason) => damaged(reason),
    })
}

/// Keeps the credentials inside the device's encrypted store (replacing earlier ones).
pub fn store_credentials(store: &Store, creds: &DeviceCredentials) -> Result<(), NetError> {
    creds.validate()?;
    let text = to_toml(creds)?;
    store.put_meta(CREDENTIALS_META_KEY, &text)?;
    tracing::info!(device = %creds.device_id, "device credentials stored");
    Ok(())
}

/// The credentials kept in the store, `None` if the device was never enrolled.
pub fn load_credentials(store: &Store) -> Result<Option<DeviceCredentials>, NetError> {
    let Some(text) = store.get_meta(CREDENTIALS_META_KEY)? else {
        return Ok(None);
    };
    let text = Zeroizing::new(text);
    from_toml(&text).map(Some).map_err(|f| match f {
        ParseFailure::Newer(_) => NetError::DamagedCredentials {
            reason: "written by a newer musubi",
        },
        ParseFailure::Unreadable(reason) => NetError::DamagedCredentials { reason },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::net::pki::{DeviceSubject, OfficeCa, issue_device_cert_now};
    use crate::store::InitOptions;

    const OFFICE: &str = "1370100016";

    fn creds() -> DeviceCredentials {
        let ca = OfficeCa::generate("relay-test").unwrap();
        let subject = DeviceSubject::new_random("訪問用タブレット", OFFICE).unwrap();
        let cert = issue_device_cert_now(&ca, &subject).unwrap();
        DeviceCredentials {
            device_id: subject.device_id,
            device_name: subject.device_name,
            office: subject.office,
            cert_pem: cert.cert_pem,
            key_pem: cert.key_pem,
            office_ca_pem: ca.cert_pem().to_owned(),
            relay_address: "relay.example.jp:4433".into(),
        }
    }

    #[test]
    fn sealed_file_opens_with_its_code_only() {
        let creds = creds();
        let (bytes, code) = seal(&creds).unwrap();
        let shown = code.grouped();
        assert_eq!(shown.len(), 23);
        assert_eq!(shown.matches('-').count(), 3);
        assert_eq!(open(&bytes, &shown).unwrap(), creds);
        // Nothing of the content is visible in the file.
        let hay = String::from_utf8_lossy(&bytes);
        assert!(!hay.contains("PRIVATE") && !hay.contains(&creds.device_id));
        assert!(!format!("{code:?}").contains(&shown[..5]));

        let (_, other) = seal(&creds).unwrap();
        assert_ne!(other, code, "every file gets a fresh code");
        assert!(matches!(
            open(&bytes, &other.grouped()),
            Err(NetError::WrongCode)
        ));
    }

    #[test]
    fn typed_codes_are_normalised() {
        let code = EnrollmentCode::parse("abcde fghjk-mnpqr-stvwx").unwrap();
        assert_eq!(code.grouped().as_str(), "ABCDE-FGHJK-MNPQR-STVWX");
        let lookalikes = EnrollmentCode::parse("OIL00-11111-11111-11111").unwrap();
        assert_eq!(lookalikes.grouped().as_str(), "01100-11111-11111-11111");
        for bad in [
            "",
            "ABCDE",
            "ABCDE-FGHJK-MNPQR-STVW",
            "ABCDE-FGHJK-MNPQR-STVWXY",
            "ABCDE-FGHJK-MNPQR-STVWU",
            "ABCDE-FGHJK-MNPQR-STVW!",
            "ＡBCDE-FGHJK-MNPQR-STVWX",
        ] {
            assert!(
                matches!(EnrollmentCode::parse(bad), Err(NetError::MalformedCode)),
                "{bad:?}"
            );
        }
        for _ in 0..50 {
            let c = EnrollmentCode::generate();
            assert_eq!(EnrollmentCode::parse(&c.grouped()).unwrap(), c);
            assert_eq!(
                EnrollmentCode::parse(&c.grouped().to_lowercase()).unwrap(),
                c
            );
        }
    }

    #[test]
    fn opening_accepts_the_code_in_any_typed_form() {
        let creds = creds();
        let (bytes, code) = seal(&creds).unwrap();
        let sloppy = format!("  {} \n", code.grouped().to_lowercase().replace('-', " "));
        assert_eq!(open(&bytes, &sloppy).unwrap(), creds);
        assert!(matches!(
            open(&bytes, "not a code"),
            Err(NetError::MalformedCode)
        ));
    }

    #[test]
    fn truncated_or_altered_files_are_refused() {
        let creds = creds();
        // A small scrypt cost keeps the hundreds of attempts below quick.
        let (bytes, code) = seal_with_work_factor(&creds, 8).unwrap();
        let code = code.grouped();
        for len in [
            0,
            1,
            10,
            50,
            bytes.len() / 2,
            bytes.len() - 17,
            bytes.len() - 1,
        ] {
            let err = open(&bytes[..len], &code).unwrap_err();
            assert!(err.is_bad_enrollment(), "truncated at {len}: {err}");
            assert!(!matches!(err, NetError::WrongCode), "truncated at {len}");
        }
        // A flipped byte anywhere: refused (as damaged, or as a code mismatch when the
        // flip hit the wrapped key), never accepted.
        for i in (0..bytes.len()).step_by(7) {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            let err = open(&bad, &code).unwrap_err();
            assert!(err.is_bad_enrollment(), "flip at {i}: {err}");
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(b"extra");
        assert!(open(&longer, &code).unwrap_err().is_bad_enrollment());
        assert!(
            open(&vec![0u8; MAX_ENROLLMENT_BYTES + 1], &code)
                .unwrap_err()
                .is_bad_enrollment()
        );
        // Messages name no secret.
        let err = open(&bytes[..50], &code).unwrap_err().to_string();
        assert!(!err.contains(&code[..5]));
    }

    #[test]
    fn sealed_content_that_does_not_fit_together_is_refused() {
        // An age file with the right code but content that is not valid credentials.
        let code = EnrollmentCode::generate();
        let mut r = age::scrypt::Recipient::new(code.passphrase());
        r.set_work_factor(10);
        for content in [
            "hello".to_owned(),
            "format = 2\n".to_owned(),
            to_toml(&creds())
                .unwrap()
                .replace("relay.example.jp", "other.example.jp")
                .replace(OFFICE, "1370100024"),
        ] {
            let bytes = age::encrypt(&r, content.as_bytes()).unwrap();
            let err = open(&bytes, &code.grouped()).unwrap_err();
            assert!(err.is_bad_enrollment(), "{err}");
        }
        let bytes = age::encrypt(&r, b"format = 2\n").unwrap();
        assert!(matches!(
            open(&bytes, &code.grouped()),
            Err(NetError::NewerEnrollment { found: 2, .. })
        ));
    }

    #[test]
    fn credentials_live_inside_the_encrypted_store() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let pass = SecretString::from("correct horse battery staple".to_owned());
        let store = Store::init(
            &dir,
            &pass,
            InitOptions {
                office: OFFICE.into(),
                device_name: "tablet".into(),
                kdf_work_factor: Some(10),
                ..InitOptions::default()
            },
        )
        .unwrap();
        assert!(load_credentials(&store).unwrap().is_none());
        let creds = creds();
        store_credentials(&store, &creds).unwrap();
        assert_eq!(load_credentials(&store).unwrap(), Some(creds.clone()));
        store.close().unwrap();

        let store = Store::open(&dir, &pass).unwrap();
        assert_eq!(load_credentials(&store).unwrap(), Some(creds.clone()));
        store.put_meta(CREDENTIALS_META_KEY, "garbage").unwrap();
        assert!(matches!(
            load_credentials(&store),
            Err(NetError::DamagedCredentials { .. })
        ));
        store.close().unwrap();

        // No plaintext trace of the key or certificate anywhere in the data directory.
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let bytes = std::fs::read(&p).unwrap();
                    let hay = String::from_utf8_lossy(&bytes);
                    assert!(!hay.contains("PRIVATE KEY"), "{}", p.display());
                    assert!(!hay.contains(&creds.device_id), "{}", p.display());
                }
            }
        }
    }
}
