//! Enrollment files: what a device needs to redeem its enrollment at the relay.
//!
//! The file carries no private key and no certificate. It holds the relay address, the
//! office CA certificate (which the device pins), the office, the device id and name the
//! office chose, and a 256-bit enrollment secret. The relay keeps only the SHA-256 of the
//! secret, in a *pending* enrollment ([`secret_hash`]). The tablet makes its own key pair,
//! and redeems the secret once, online ([`super::certx::redeem`]); the relay then issues
//! the certificate for the tablet's public key.
//!
//! The content (TOML, `format = 2`) is encrypted with age to an scrypt passphrase: a fresh
//! random one-time code of 20 characters from Crockford's base32 alphabet (100 bits),
//! shown as `XXXXX-XXXXX-XXXXX-XXXXX`. The file alone is useless without the code, and the
//! two together are useless once redeemed. Typing the code is forgiving: case, spaces and
//! hyphens are ignored, and `O`, `I`, `L` are read as `0`, `1`, `1`.
//!
//! On the device, the credentials (certificate and the key born there) live inside the
//! encrypted store (the `meta` table), never in a plaintext file; so does the key made for
//! an enrollment that is being redeemed, so a retry after a lost answer presents the same
//! key and gets the same certificate.

use std::fmt;
use std::io::Read;

use age::DecryptError;
use age::secrecy::SecretString;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use sha2::{Digest, Sha256};

use super::error::NetError;
use super::pki::{self, DeviceKey};
use super::tls::{self, DeviceCredentials};
use crate::store::Store;

/// Format number of the stored credentials.
pub const FORMAT: u32 = 1;
/// Format number of the enrollment file content (format 1 files carried the device's
/// private key; they are refused).
pub const ENROLLMENT_FORMAT: u32 = 2;
/// Largest enrollment file accepted (a real one is about 1 KB).
pub const MAX_ENROLLMENT_BYTES: usize = 64 * 1024;
/// Key of the credentials in the store's `meta` table.
pub const CREDENTIALS_META_KEY: &str = "net.device_credentials";
/// Key of the key pair made for an enrollment being redeemed, in the store's `meta` table
/// (emptied once the credentials are stored).
pub const PENDING_KEY_META_KEY: &str = "net.enrollment_key";
/// Bytes of an enrollment secret.
pub const SECRET_BYTES: usize = 32;
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
    Newer,
    Unreadable(&'static str),
}

fn from_toml(text: &str) -> Result<DeviceCredentials, ParseFailure> {
    let format = toml::from_str::<FormatOnly>(text)
        .map_err(|_| ParseFailure::Unreadable("the content is not readable"))?
        .format;
    if format > FORMAT {
        return Err(ParseFailure::Newer);
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

/// What an enrollment file holds: everything a tablet needs to redeem its enrollment, and
/// no key. `Debug` hides the secret and the device name.
#[derive(Clone, PartialEq, Eq)]
pub struct EnrollmentTicket {
    /// Device id chosen by the relay (32 lowercase hex digits).
    pub device_id: String,
    /// Device name chosen by the office.
    pub device_name: String,
    /// The device's office (事業所番号).
    pub office: String,
    /// The relay, `host:port`.
    pub relay_address: String,
    /// The office CA certificate, PEM: pins the relay during the exchange and after.
    pub office_ca_pem: String,
    /// The enrollment secret (the relay keeps only [`secret_hash`] of it).
    pub secret: Zeroizing<[u8; SECRET_BYTES]>,
}

impl fmt::Debug for EnrollmentTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrollmentTicket")
            .field("device_id", &self.device_id)
            .field("device_name", &"[redacted]")
            .field("office", &self.office)
            .field("relay_address", &self.relay_address)
            .field("secret", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl EnrollmentTicket {
    /// A ticket with a fresh random secret.
    pub fn new(
        subject: &pki::DeviceSubject,
        relay_address: &str,
        office_ca_pem: &str,
    ) -> Result<EnrollmentTicket, NetError> {
        let t = EnrollmentTicket {
            device_id: subject.device_id.clone(),
            device_name: subject.device_name.clone(),
            office: subject.office.clone(),
            relay_address: relay_address.to_owned(),
            office_ca_pem: office_ca_pem.to_owned(),
            secret: Zeroizing::new(rand::random::<[u8; SECRET_BYTES]>()),
        };
        t.validate()?;
        Ok(t)
    }

    /// Checks every field (the CA certificate parses, the address is `host:port`).
    pub fn validate(&self) -> Result<(), NetError> {
        pki::DeviceSubject {
            device_id: self.device_id.clone(),
            device_name: self.device_name.clone(),
            office: self.office.clone(),
        }
        .validate()?;
        tls::split_host_port(&self.relay_address)?;
        pki::cert_der_from_pem(&self.office_ca_pem, "office CA certificate")?;
        Ok(())
    }
}

/// SHA-256 of an enrollment secret (with a fixed label): what the relay stores.
pub fn secret_hash(secret: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"musubi enrollment secret v1\0");
    h.update(secret);
    h.finalize().into()
}

/// Compares two byte strings in time that depends on their length only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The serialised enrollment file content.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketToml {
    format: u32,
    device_id: String,
    device_name: String,
    office: String,
    relay_address: String,
    office_ca_pem: String,
    secret: String,
}

/// The enrollment file content (TOML, `format = 2`) of a ticket, before sealing.
pub fn ticket_to_toml(t: &EnrollmentTicket) -> Result<Zeroizing<String>, NetError> {
    let mut wire = TicketToml {
        format: ENROLLMENT_FORMAT,
        device_id: t.device_id.clone(),
        device_name: t.device_name.clone(),
        office: t.office.clone(),
        relay_address: t.relay_address.clone(),
        office_ca_pem: t.office_ca_pem.clone(),
        secret: hex::encode(t.secret.as_slice()),
    };
    let text = toml::to_string(&wire).map(Zeroizing::new);
    zeroize::Zeroize::zeroize(&mut wire.secret);
    text.map_err(|_| NetError::invalid("enrollment", "cannot be serialised"))
}

/// Reads and checks enrollment file content (what [`open`] does after decryption): the
/// format number first, then every field ([`EnrollmentTicket::validate`]). Pure, so it can
/// be fuzzed without the scrypt cost of decryption.
pub fn ticket_from_toml(text: &str) -> Result<EnrollmentTicket, NetError> {
    let damaged = |reason| NetError::DamagedEnrollment { reason };
    let format = toml::from_str::<FormatOnly>(text)
        .map_err(|_| damaged("the content is not readable"))?
        .format;
    if format > ENROLLMENT_FORMAT {
        return Err(NetError::NewerEnrollment {
            found: format,
            supported: ENROLLMENT_FORMAT,
        });
    }
    if format == 1 {
        return Err(NetError::OutdatedEnrollment);
    }
    if format != ENROLLMENT_FORMAT {
        return Err(damaged("unknown format"));
    }
    let mut wire: TicketToml =
        toml::from_str(text).map_err(|_| damaged("a field is missing or unexpected"))?;
    let mut secret = Zeroizing::new([0u8; SECRET_BYTES]);
    let decoded = hex::decode_to_slice(&wire.secret, secret.as_mut_slice());
    zeroize::Zeroize::zeroize(&mut wire.secret);
    decoded.map_err(|_| damaged("the enrollment secret is malformed"))?;
    let t = EnrollmentTicket {
        device_id: wire.device_id,
        device_name: wire.device_name,
        office: wire.office,
        relay_address: wire.relay_address,
        office_ca_pem: wire.office_ca_pem,
        secret,
    };
    t.validate()
        .map_err(|_| damaged("the device, office, address or office CA inside is invalid"))?;
    Ok(t)
}

/// Seals a ticket into an enrollment file. Returns the file bytes and the fresh code that
/// opens it.
pub fn seal(ticket: &EnrollmentTicket) -> Result<(Vec<u8>, EnrollmentCode), NetError> {
    seal_with_work_factor(ticket, WORK_FACTOR)
}

fn seal_with_work_factor(
    ticket: &EnrollmentTicket,
    work_factor: u8,
) -> Result<(Vec<u8>, EnrollmentCode), NetError> {
    ticket.validate()?;
    let code = EnrollmentCode::generate();
    let text = ticket_to_toml(ticket)?;
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
pub fn open(bytes: &[u8], typed_code: &str) -> Result<EnrollmentTicket, NetError> {
    let plain = decrypt(bytes, typed_code)?;
    let text = std::str::from_utf8(&plain).map_err(|_| NetError::DamagedEnrollment {
        reason: "the content is not text",
    })?;
    ticket_from_toml(text)
}

/// The decrypted content of an enrollment file (TOML text), for tools and tests that
/// inspect what a file carries.
pub fn decrypt(bytes: &[u8], typed_code: &str) -> Result<Zeroizing<Vec<u8>>, NetError> {
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
    Ok(plain)
}

/// The key pair this device made for redeeming `device_id`'s enrollment: the one kept in
/// the store from an earlier attempt, or a fresh one (kept in the store before it is
/// used, so a retry after a lost answer presents the same key).
pub fn enrollment_key(store: &Store, device_id: &str) -> Result<DeviceKey, NetError> {
    if let Some(text) = store.get_meta(PENDING_KEY_META_KEY)?
        && let Ok(kept) = toml::from_str::<PendingKeyToml>(&text)
        && kept.device_id == device_id
        && let Ok(key) = DeviceKey::from_pem(&kept.key_pem)
    {
        return Ok(key);
    }
    let key = DeviceKey::generate()?;
    let wire = PendingKeyToml {
        device_id: device_id.to_owned(),
        key_pem: key.key_pem.as_str().to_owned(),
    };
    let text = Zeroizing::new(
        toml::to_string(&wire)
            .map_err(|_| NetError::invalid("enrollment key", "cannot be serialised"))?,
    );
    let mut wire = wire;
    zeroize::Zeroize::zeroize(&mut wire.key_pem);
    store.put_meta(PENDING_KEY_META_KEY, &text)?;
    Ok(key)
}

/// A key pair kept in the store while its enrollment is redeemed.
#[derive(Serialize, Deserialize)]
struct PendingKeyToml {
    device_id: String,
    key_pem: String,
}

/// Stores the credentials from a redeemed enrollment and forgets the pending key.
pub fn complete_enrollment(store: &Store, creds: &DeviceCredentials) -> Result<(), NetError> {
    store_credentials(store, creds)?;
    store.put_meta(PENDING_KEY_META_KEY, "")?;
    Ok(())
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
        ParseFailure::Newer => NetError::DamagedCredentials {
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

    #[test]
    fn secret_hashes_compare_in_constant_time_shape() {
        let a = secret_hash(&[1; 32]);
        assert_eq!(a, secret_hash(&[1; 32]));
        assert_ne!(a, secret_hash(&[2; 32]));
        assert!(constant_time_eq(&a, &a));
        assert!(!constant_time_eq(&a, &secret_hash(&[2; 32])));
        assert!(!constant_time_eq(&a, &a[..31]));
    }
    use crate::store::InitOptions;

    const OFFICE: &str = "1370100016";

    fn ticket() -> EnrollmentTicket {
        let ca = OfficeCa::generate("relay-test").unwrap();
        let subject = DeviceSubject::new_random("訪問用タブレット", OFFICE).unwrap();
        EnrollmentTicket::new(&subject, "relay.example.jp:4433", ca.cert_pem()).unwrap()
    }

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
        let ticket = ticket();
        let (bytes, code) = seal(&ticket).unwrap();
        let shown = code.grouped();
        assert_eq!(shown.len(), 23);
        assert_eq!(shown.matches('-').count(), 3);
        assert_eq!(open(&bytes, &shown).unwrap(), ticket);
        // Nothing of the content is visible in the file.
        let hay = String::from_utf8_lossy(&bytes);
        assert!(!hay.contains("CERTIFICATE") && !hay.contains(&ticket.device_id));
        assert!(!format!("{code:?}").contains(&shown[..5]));
        // Inside: no key and no certificate of the device, only the office CA and the
        // secret; Debug shows neither the secret nor the name.
        let plain = decrypt(&bytes, &shown).unwrap();
        let text = std::str::from_utf8(&plain).unwrap();
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        assert_eq!(text.matches("BEGIN CERTIFICATE").count(), 1);
        assert!(text.contains(&hex::encode(ticket.secret.as_slice())));
        let dbg = format!("{ticket:?}");
        assert!(!dbg.contains(&hex::encode(ticket.secret.as_slice())) && !dbg.contains("訪問"));

        let (_, other) = seal(&ticket).unwrap();
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
        let ticket = ticket();
        let (bytes, code) = seal(&ticket).unwrap();
        let sloppy = format!("  {} \n", code.grouped().to_lowercase().replace('-', " "));
        assert_eq!(open(&bytes, &sloppy).unwrap(), ticket);
        assert!(matches!(
            open(&bytes, "not a code"),
            Err(NetError::MalformedCode)
        ));
    }

    #[test]
    fn truncated_or_altered_files_are_refused() {
        let ticket = ticket();
        // A small scrypt cost keeps the hundreds of attempts below quick.
        let (bytes, code) = seal_with_work_factor(&ticket, 8).unwrap();
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
        let good = ticket_to_toml(&ticket()).unwrap();
        for content in [
            "hello".to_owned(),
            "format = 2\n".to_owned(),
            good.replace(OFFICE, "12345"),
            good.replace("relay.example.jp:4433", "relay.example.jp"),
            good.replacen("secret = \"", "secret = \"zz", 1),
        ] {
            let bytes = age::encrypt(&r, content.as_bytes()).unwrap();
            let err = open(&bytes, &code.grouped()).unwrap_err();
            assert!(err.is_bad_enrollment(), "{err}");
        }
        let bytes = age::encrypt(&r, b"format = 3\n").unwrap();
        assert!(matches!(
            open(&bytes, &code.grouped()),
            Err(NetError::NewerEnrollment { found: 3, .. })
        ));
        // A file of the earlier kind, with the device's private key inside: refused as
        // outdated (its key was made by the relay).
        let old = to_toml(&creds()).unwrap();
        let bytes = age::encrypt(&r, old.as_bytes()).unwrap();
        assert!(matches!(
            open(&bytes, &code.grouped()),
            Err(NetError::OutdatedEnrollment)
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
        // The key made for an enrollment is kept until the enrollment completes, so a
        // retry presents the same key; another enrollment gets another key.
        let k1 = enrollment_key(&store, &creds.device_id).unwrap();
        let k2 = enrollment_key(&store, &creds.device_id).unwrap();
        assert_eq!(k1.spki_der, k2.spki_der);
        complete_enrollment(&store, &creds).unwrap();
        let k3 = enrollment_key(&store, &creds.device_id).unwrap();
        assert_ne!(
            k1.spki_der, k3.spki_der,
            "forgotten once the enrollment completed"
        );
        let k4 = enrollment_key(&store, &crate::net::pki::new_device_id()).unwrap();
        assert_ne!(k3.spki_der, k4.spki_der);
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
