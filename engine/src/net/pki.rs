//! The office PKI: one certificate authority per relay (ECDSA P-256, made with rcgen),
//! the relay's server certificate, and one client certificate per enrolled device.
//!
//! A device certificate carries the device's identity where the relay can read it back
//! without guessing:
//!
//! - SAN URI `musubi:device:<32 lowercase hex digits>`: the device id (exactly one);
//! - SAN URI `musubi:office:<事業所番号>`: the device's office (exactly one);
//! - subject common name: the device name given at enrollment.
//!
//! [`peer_identity`] parses those fields from untrusted DER and refuses anything
//! ambiguous; it never panics on input.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use zeroize::Zeroizing;

use super::error::NetError;
use crate::identifiers::{Verdict, check_office_number};

/// Validity of the office CA.
pub const CA_VALIDITY: Duration = Duration::from_secs(3653 * 24 * 3600);
/// Validity of the relay's server certificate (as long as the CA: there is no renewal
/// command yet).
pub const RELAY_VALIDITY: Duration = CA_VALIDITY;
/// Validity of a device certificate issued at enrollment.
pub const DEVICE_VALIDITY: Duration = Duration::from_secs(730 * 24 * 3600);
/// A device asks for a new certificate over its sync connection once its certificate has
/// less than this left (a two-year certificate renews during its last two months, so a
/// tablet used at least every few weeks never expires).
pub const RENEW_BEFORE: Duration = Duration::from_secs(60 * 24 * 3600);
/// Certificates start this long before "now", so a device whose clock is a little behind
/// the relay's still accepts a fresh certificate.
pub const CLOCK_SKEW: Duration = Duration::from_secs(3600);

/// SAN URI prefix of the device id.
pub const DEVICE_URI_PREFIX: &str = "musubi:device:";
/// SAN URI prefix of the office number.
pub const OFFICE_URI_PREFIX: &str = "musubi:office:";
/// SAN URI prefix of a self-signed enrollment certificate (the device id the tablet wants
/// to redeem an enrollment for). Such a certificate opens only the enrollment exchange.
pub const ENROLL_URI_PREFIX: &str = "musubi:enroll:";

/// The TLS server name devices use for the relay, whatever address they reach it at
/// (a DNS name, an IP address, a port-forwarding proxy). Every relay certificate carries
/// it besides the relay's host names; since devices trust only their office CA, matching
/// this name is enough to know they talk to their own relay. `.invalid` never resolves.
pub const RELAY_SERVER_NAME: &str = "relay.musubi.invalid";

/// Relay host names used when none are given.
pub const DEFAULT_HOSTS: [&str; 2] = ["localhost", "127.0.0.1"];

/// Longest device or relay name accepted (characters).
pub const MAX_NAME_CHARS: usize = 64;

/// A certificate with its private key.
#[derive(Clone)]
pub struct CertKey {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The same certificate, DER.
    pub cert_der: Vec<u8>,
    /// The private key, PKCS#8 PEM.
    pub key_pem: Zeroizing<String>,
}

impl fmt::Debug for CertKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertKey")
            .field("fingerprint", &hex::encode(fingerprint(&self.cert_der)))
            .field("key_pem", &"[redacted]")
            .finish()
    }
}

/// Who a device certificate is for.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DeviceSubject {
    /// Random 128-bit id, 32 lowercase hex digits.
    pub device_id: String,
    /// The name the office gave the device (e.g. `tablet-3`).
    pub device_name: String,
    /// The device's office (事業所番号).
    pub office: String,
}

impl DeviceSubject {
    /// A subject with a fresh random device id.
    pub fn new_random(device_name: &str, office: &str) -> Result<DeviceSubject, NetError> {
        let subject = DeviceSubject {
            device_id: new_device_id(),
            device_name: device_name.to_owned(),
            office: office.to_owned(),
        };
        subject.validate()?;
        Ok(subject)
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), NetError> {
        check_device_id(&self.device_id)?;
        check_name("device name", &self.device_name)?;
        check_office(&self.office)
    }
}

/// A fresh random device id: 128 bits as 32 lowercase hex digits.
pub fn new_device_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Refuses anything but 32 lowercase hex digits.
pub fn check_device_id(id: &str) -> Result<(), NetError> {
    if id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(NetError::invalid(
            "device id",
            "must be 32 lowercase hexadecimal digits",
        ))
    }
}

/// A device or relay name: 1 to [`MAX_NAME_CHARS`] characters, no control characters,
/// no leading or trailing spaces.
pub fn check_name(field: &'static str, name: &str) -> Result<(), NetError> {
    let count = name.chars().count();
    if count == 0 || count > MAX_NAME_CHARS {
        return Err(NetError::invalid(
            field,
            format!("must be 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(NetError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    if name.trim() != name {
        return Err(NetError::invalid(
            field,
            "must not start or end with spaces",
        ));
    }
    Ok(())
}

/// An office number the engine's identifier rules do not reject. (A warning, e.g. an
/// unverifiable check digit of a medical-derived number, is accepted.)
pub fn check_office(office: &str) -> Result<(), NetError> {
    match check_office_number(office) {
        Verdict::Invalid(rule) => Err(NetError::invalid("office (事業所番号)", rule)),
        Verdict::Valid | Verdict::Warn(_) => Ok(()),
    }
}

/// SHA-256 of a certificate's DER.
pub fn fingerprint(cert_der: &[u8]) -> [u8; 32] {
    Sha256::digest(cert_der).into()
}

fn random_serial() -> SerialNumber {
    let mut bytes = rand::random::<[u8; 16]>();
    // Positive and without a leading zero byte, so the DER integer is 16 bytes as written.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn generate_key(what: &'static str) -> Result<KeyPair, NetError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|source| NetError::Generate { what, source })
}

fn now() -> SystemTime {
    SystemTime::now()
}

fn add(t: SystemTime, d: Duration) -> Result<SystemTime, NetError> {
    t.checked_add(d)
        .ok_or_else(|| NetError::invalid("validity", "date out of range"))
}

fn sub(t: SystemTime, d: Duration) -> SystemTime {
    t.checked_sub(d).unwrap_or(UNIX_EPOCH)
}

/// The office certificate authority: signs the relay's and the devices' certificates.
pub struct OfficeCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: Vec<u8>,
}

impl fmt::Debug for OfficeCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OfficeCa")
            .field("fingerprint", &hex::encode(fingerprint(&self.cert_der)))
            .field("key", &"[redacted]")
            .finish()
    }
}

impl OfficeCa {
    /// A new self-signed CA valid for [`CA_VALIDITY`]. `relay_name` (e.g. the relay id)
    /// goes into the CA's common name so two relays' CAs are told apart.
    pub fn generate(relay_name: &str) -> Result<OfficeCa, NetError> {
        check_name("relay name", relay_name)?;
        let key = generate_key("office CA key")?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "musubi");
        dn.push(DnType::CommonName, format!("musubi office CA {relay_name}"));
        params.distinguished_name = dn;
        // The CA signs end-entity certificates only.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial());
        let start = now();
        params.not_before = sub(start, CLOCK_SKEW).into();
        params.not_after = add(start, CA_VALIDITY)?.into();
        let cert = params
            .self_signed(&key)
            .map_err(|source| NetError::Generate {
                what: "office CA certificate",
                source,
            })?;
        Ok(OfficeCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its certificate and key (PEM). Refuses a certificate that is not a
    /// CA and a key that does not belong to it.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<OfficeCa, NetError> {
        let cert_der = cert_der_from_pem(cert_pem, "office CA certificate")?;
        let key = KeyPair::from_pem(key_pem).map_err(|_| NetError::BadPem {
            what: "office CA key",
            kind: "private key",
        })?;
        let (_, parsed) =
            x509_parser::parse_x509_certificate(&cert_der).map_err(|_| NetError::BadPem {
                what: "office CA certificate",
                kind: "certificate",
            })?;
        if !parsed.is_ca() {
            return Err(NetError::BadCertificate {
                reason: "the office CA certificate is not a CA certificate",
            });
        }
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(NetError::KeyMismatch { what: "office CA" });
        }
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(cert_der.as_slice()), key)
            .map_err(|source| NetError::Generate {
                what: "office CA issuer from its certificate",
                source,
            })?;
        Ok(OfficeCa {
            issuer,
            cert_pem: cert_pem.to_owned(),
            cert_der,
        })
    }

    /// The certificate (PEM) and the private key (PKCS#8 PEM).
    pub fn to_pem(&self) -> (String, Zeroizing<String>) {
        (
            self.cert_pem.clone(),
            Zeroizing::new(self.issuer.key().serialize_pem()),
        )
    }

    /// The certificate, PEM (what devices pin).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    fn sign(
        &self,
        params: &CertificateParams,
        key: &KeyPair,
        what: &'static str,
    ) -> Result<CertKey, NetError> {
        let cert = params
            .signed_by(key, &self.issuer)
            .map_err(|source| NetError::Generate { what, source })?;
        Ok(CertKey {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: Zeroizing::new(key.serialize_pem()),
        })
    }
}

/// Parses the first certificate of a PEM text into DER.
pub fn cert_der_from_pem(pem: &str, what: &'static str) -> Result<Vec<u8>, NetError> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|c| c.to_vec())
        .map_err(|_| NetError::BadPem {
            what,
            kind: "certificate",
        })
}

/// Parses a PEM private key (PKCS#8, SEC1 or PKCS#1).
pub fn key_der_from_pem(pem: &str, what: &'static str) -> Result<PrivateKeyDer<'static>, NetError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| NetError::BadPem {
        what,
        kind: "private key",
    })
}

/// A host name or IP address for the relay certificate's subject alternative names.
fn host_san(host: &str) -> Result<SanType, NetError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let valid = rustls_pki_types::DnsName::try_from(host).is_ok();
    if !valid || host.ends_with('.') {
        return Err(NetError::invalid(
            "host",
            "must be a DNS name (letters, digits, hyphens and dots) or an IP address",
        ));
    }
    let ia5 = rcgen::string::Ia5String::try_from(host)
        .map_err(|_| NetError::invalid("host", "must be ASCII"))?;
    Ok(SanType::DnsName(ia5))
}

/// Issues the relay's server certificate (serverAuth) for [`RELAY_SERVER_NAME`] and
/// `hosts` (DNS names and IP addresses; [`DEFAULT_HOSTS`] when empty).
pub fn issue_relay_cert(ca: &OfficeCa, hosts: &[String]) -> Result<CertKey, NetError> {
    let defaults: Vec<String> = DEFAULT_HOSTS.iter().map(|h| (*h).to_owned()).collect();
    let hosts = if hosts.is_empty() { &defaults } else { hosts };
    let key = generate_key("relay key")?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "musubi");
    dn.push(DnType::CommonName, "musubi relay");
    params.distinguished_name = dn;
    let mut names = vec![RELAY_SERVER_NAME.to_owned()];
    for h in hosts {
        if !names.contains(h) {
            names.push(h.clone());
        }
    }
    params.subject_alt_names = names
        .iter()
        .map(|h| host_san(h))
        .collect::<Result<_, _>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    let start = now();
    params.not_before = sub(start, CLOCK_SKEW).into();
    params.not_after = add(start, RELAY_VALIDITY)?.into();
    ca.sign(&params, &key, "relay certificate")
}

/// Issues a device's client certificate (clientAuth) valid from `not_before` to
/// `not_after`, with a fresh key pair generated here (tests and tools; devices generate
/// their own key and the relay uses [`issue_device_cert_for_key`]).
pub fn issue_device_cert(
    ca: &OfficeCa,
    subject: &DeviceSubject,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<CertKey, NetError> {
    let key = generate_key("device key")?;
    let params = device_params(subject, not_before, not_after)?;
    ca.sign(&params, &key, "device certificate")
}

/// Issues a device certificate for a public key the device generated itself
/// (SubjectPublicKeyInfo DER, ECDSA P-256 only): the certificate as PEM and DER. The
/// identity comes from `subject`, never from anything the device sent.
pub fn issue_device_cert_for_key(
    ca: &OfficeCa,
    subject: &DeviceSubject,
    spki_der: &[u8],
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<(String, Vec<u8>), NetError> {
    let key = device_public_key(spki_der)?;
    let params = device_params(subject, not_before, not_after)?;
    let cert = params
        .signed_by(&key, &ca.issuer)
        .map_err(|source| NetError::Generate {
            what: "device certificate",
            source,
        })?;
    Ok((cert.pem(), cert.der().to_vec()))
}

/// Longest SubjectPublicKeyInfo accepted from a device (a P-256 one is 91 bytes).
pub const MAX_SPKI_BYTES: usize = 256;

/// Reads a device's public key: SubjectPublicKeyInfo DER of an ECDSA P-256 key, nothing
/// else.
pub fn device_public_key(spki_der: &[u8]) -> Result<rcgen::SubjectPublicKeyInfo, NetError> {
    let bad = || NetError::invalid("device public key", "must be an ECDSA P-256 public key");
    if spki_der.is_empty() || spki_der.len() > MAX_SPKI_BYTES {
        return Err(bad());
    }
    let key = rcgen::SubjectPublicKeyInfo::from_der(spki_der).map_err(|_| bad())?;
    if key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
        return Err(bad());
    }
    // An uncompressed point (a point off the curve cannot complete a TLS handshake).
    if key.der_bytes().len() != 65 || key.der_bytes()[0] != 0x04 {
        return Err(bad());
    }
    // Only the one DER encoding of that key: the parser above is lenient about the outer
    // tag (found by fuzzing, `fuzz/regressions/cert_request/`), and the relay records the
    // hash of the bytes the device sent as the key it certified.
    if key.subject_public_key_info() != spki_der {
        return Err(bad());
    }
    Ok(key)
}

fn device_params(
    subject: &DeviceSubject,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<CertificateParams, NetError> {
    subject.validate()?;
    if not_after <= not_before {
        return Err(NetError::invalid(
            "validity",
            "the end must be after the start",
        ));
    }
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "musubi");
    dn.push(DnType::CommonName, subject.device_name.clone());
    params.distinguished_name = dn;
    params.subject_alt_names = vec![
        uri_san(format!("{DEVICE_URI_PREFIX}{}", subject.device_id))?,
        uri_san(format!("{OFFICE_URI_PREFIX}{}", subject.office))?,
    ];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    Ok(params)
}

fn uri_san(s: String) -> Result<SanType, NetError> {
    rcgen::string::Ia5String::try_from(s)
        .map(SanType::URI)
        .map_err(|_| NetError::invalid("device identity", "must be ASCII"))
}

/// A key pair born on the device: ECDSA P-256, PKCS#8 PEM, with its SubjectPublicKeyInfo.
pub struct DeviceKey {
    /// The private key, PKCS#8 PEM (never leaves the device's encrypted store).
    pub key_pem: Zeroizing<String>,
    /// The public key, SubjectPublicKeyInfo DER (what the relay certifies).
    pub spki_der: Vec<u8>,
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKey")
            .field("spki", &hex::encode(&self.spki_der))
            .field("key_pem", &"[redacted]")
            .finish()
    }
}

impl DeviceKey {
    /// A fresh key pair.
    pub fn generate() -> Result<DeviceKey, NetError> {
        let key = generate_key("device key")?;
        Ok(DeviceKey {
            spki_der: key.subject_public_key_info(),
            key_pem: Zeroizing::new(key.serialize_pem()),
        })
    }

    /// A key pair from its PEM (e.g. kept in the store while an enrollment is redeemed).
    pub fn from_pem(key_pem: &str) -> Result<DeviceKey, NetError> {
        let key = KeyPair::from_pem(key_pem).map_err(|_| NetError::BadPem {
            what: "device key",
            kind: "private key",
        })?;
        Ok(DeviceKey {
            spki_der: key.subject_public_key_info(),
            key_pem: Zeroizing::new(key.serialize_pem()),
        })
    }

    /// A self-signed certificate carrying only `musubi:enroll:<device_id>`: what the
    /// device presents for the enrollment exchange (it proves the key, nothing more).
    pub fn enrollment_cert(&self, device_id: &str) -> Result<CertKey, NetError> {
        check_device_id(device_id)?;
        let key = KeyPair::from_pem(&self.key_pem).map_err(|_| NetError::BadPem {
            what: "device key",
            kind: "private key",
        })?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "musubi enrollment request");
        params.distinguished_name = dn;
        params.subject_alt_names = vec![uri_san(format!("{ENROLL_URI_PREFIX}{device_id}"))?];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = Some(random_serial());
        let start = now();
        params.not_before = sub(start, CLOCK_SKEW).into();
        params.not_after = add(start, CLOCK_SKEW)?.into();
        let cert = params
            .self_signed(&key)
            .map_err(|source| NetError::Generate {
                what: "enrollment request certificate",
                source,
            })?;
        Ok(CertKey {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: self.key_pem.clone(),
        })
    }
}

/// The device id an enrollment certificate asks for, if `cert_der` is one: self-signed
/// (its signature checks with its own key), exactly one `musubi:enroll:` URI with a
/// well-formed id, and no device or office identity. `None` for anything else.
pub fn enrollment_request(cert_der: &[u8]) -> Option<String> {
    let (rest, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let san = cert.subject_alternative_name().ok()??;
    let mut found = None;
    for name in &san.value.general_names {
        if let GeneralName::URI(uri) = name {
            if let Some(id) = uri.strip_prefix(ENROLL_URI_PREFIX) {
                if found.replace(id).is_some() {
                    return None;
                }
            } else if uri.starts_with(DEVICE_URI_PREFIX) || uri.starts_with(OFFICE_URI_PREFIX) {
                return None;
            }
        }
    }
    let id = found?;
    check_device_id(id).ok()?;
    // The signature last: every device certificate comes through here on every
    // connection, and only an enrollment request is worth a signature check.
    cert.verify_signature(None).ok()?;
    Some(id.to_owned())
}

/// The SubjectPublicKeyInfo DER of a certificate.
pub fn cert_spki(cert_der: &[u8]) -> Result<Vec<u8>, NetError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(cert_der).map_err(|_| NetError::BadCertificate {
            reason: "the certificate is not valid DER",
        })?;
    Ok(cert.public_key().raw.to_vec())
}

/// Whether `cert_der` was signed by the CA whose certificate is `ca_der`.
pub fn issued_by(cert_der: &[u8], ca_der: &[u8]) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert_der) else {
        return false;
    };
    let Ok((_, ca)) = x509_parser::parse_x509_certificate(ca_der) else {
        return false;
    };
    cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// Issues a device certificate valid from now − [`CLOCK_SKEW`] for [`DEVICE_VALIDITY`].
pub fn issue_device_cert_now(ca: &OfficeCa, subject: &DeviceSubject) -> Result<CertKey, NetError> {
    let start = now();
    issue_device_cert(
        ca,
        subject,
        sub(start, CLOCK_SKEW),
        add(start, DEVICE_VALIDITY)?,
    )
}

/// Who is on the other end, read from a device certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The device id (32 lowercase hex digits).
    pub device_id: String,
    /// The device name (subject common name).
    pub device_name: String,
    /// The device's office (事業所番号).
    pub office: String,
    /// SHA-256 of the certificate DER.
    pub fingerprint: [u8; 32],
    /// End of validity, seconds since the Unix epoch.
    pub not_after: i64,
}

impl fmt::Debug for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The device name may be chosen freely by the office; logs carry the id only.
        f.debug_struct("PeerIdentity")
            .field("device_id", &self.device_id)
            .field("device_name", &"[redacted]")
            .field("office", &self.office)
            .field("fingerprint", &hex::encode(self.fingerprint))
            .field("not_after", &self.not_after)
            .finish()
    }
}

impl PeerIdentity {
    /// The fingerprint as 64 lowercase hex digits.
    pub fn fingerprint_hex(&self) -> String {
        hex::encode(self.fingerprint)
    }
}

/// Reads the musubi identity from a device certificate (DER). This does not check the
/// signature or validity dates (the TLS handshake does); it refuses malformed DER,
/// trailing bytes, missing or repeated identity URIs, a malformed device id or office,
/// and a missing or invalid common name.
pub fn peer_identity(cert_der: &[u8]) -> Result<PeerIdentity, NetError> {
    let bad = |reason| NetError::BadCertificate { reason };
    let (rest, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|_| bad("the certificate is not valid DER"))?;
    if !rest.is_empty() {
        return Err(bad("the certificate has trailing bytes"));
    }
    let san = cert
        .subject_alternative_name()
        .map_err(|_| bad("the subject alternative names are malformed"))?
        .ok_or_else(|| bad("the certificate carries no musubi device identity"))?;
    let mut device_id = None;
    let mut office = None;
    for name in &san.value.general_names {
        let GeneralName::URI(uri) = name else {
            continue;
        };
        if let Some(id) = uri.strip_prefix(DEVICE_URI_PREFIX) {
            if device_id.replace(id).is_some() {
                return Err(bad("the certificate names more than one device"));
            }
        } else if let Some(o) = uri.strip_prefix(OFFICE_URI_PREFIX)
            && office.replace(o).is_some()
        {
            return Err(bad("the certificate names more than one office"));
        }
    }
    let device_id = device_id.ok_or_else(|| bad("the certificate carries no device id"))?;
    let office = office.ok_or_else(|| bad("the certificate carries no office"))?;
    check_device_id(device_id).map_err(|_| bad("the device id in the certificate is malformed"))?;
    check_office(office).map_err(|_| bad("the office number in the certificate is invalid"))?;

    let mut names = cert.subject().iter_common_name();
    let cn = names
        .next()
        .ok_or_else(|| bad("the certificate has no device name"))?;
    if names.next().is_some() {
        return Err(bad("the certificate has more than one device name"));
    }
    let device_name = cn
        .as_str()
        .map_err(|_| bad("the device name in the certificate is not text"))?;
    check_name("device name", device_name)
        .map_err(|_| bad("the device name in the certificate is invalid"))?;

    Ok(PeerIdentity {
        device_id: device_id.to_owned(),
        device_name: device_name.to_owned(),
        office: office.to_owned(),
        fingerprint: fingerprint(cert_der),
        not_after: cert.validity().not_after.timestamp(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const OFFICE: &str = "1370100016";

    fn ca() -> OfficeCa {
        OfficeCa::generate("test-relay").unwrap()
    }

    #[test]
    fn device_public_key_accepts_only_the_der_of_a_p256_key() {
        let key = DeviceKey::generate().unwrap();
        assert!(device_public_key(&key.spki_der).is_ok());
        // Found by fuzzing (fuzz/regressions/cert_request/renew-spki-outer-tag): the same
        // key under another outer tag than SEQUENCE was accepted, and certified as the
        // canonical encoding, so the bytes the relay hashed were not the certified key.
        for tag in [0x70u8, 0x31, 0xb0] {
            let mut bad = key.spki_der.clone();
            bad[0] = tag;
            assert!(device_public_key(&bad).is_err(), "outer tag {tag:#x}");
        }
        let mut longer = key.spki_der.clone();
        longer.push(0);
        assert!(device_public_key(&longer).is_err());
        assert!(device_public_key(&[]).is_err());
    }

    #[test]
    fn device_identity_round_trips_through_the_certificate() {
        let ca = ca();
        let subject = DeviceSubject::new_random("タブレット3", OFFICE).unwrap();
        let ck = issue_device_cert_now(&ca, &subject).unwrap();
        let id = peer_identity(&ck.cert_der).unwrap();
        assert_eq!(id.device_id, subject.device_id);
        assert_eq!(id.device_name, "タブレット3");
        assert_eq!(id.office, OFFICE);
        assert_eq!(id.fingerprint, fingerprint(&ck.cert_der));
        let expected_end = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            + DEVICE_VALIDITY.as_secs() as i64;
        assert!(
            (id.not_after - expected_end).abs() < 120,
            "{}",
            id.not_after
        );
        // The PEM and DER forms are the same certificate.
        assert_eq!(
            cert_der_from_pem(&ck.cert_pem, "device certificate").unwrap(),
            ck.cert_der
        );
        // Debug never shows the key or the device name.
        let dbg = format!("{ck:?} {id:?}");
        assert!(!dbg.contains("PRIVATE KEY"));
        assert!(!dbg.contains("タブレット3"));
    }

    #[test]
    fn keys_born_on_the_device_get_certificates_with_the_relays_identity() {
        let ca = ca();
        let key = DeviceKey::generate().unwrap();
        let subject = DeviceSubject::new_random("tablet-7", OFFICE).unwrap();
        // The enrollment request names only the device id, is self-signed, and is not a
        // device certificate.
        let request = key.enrollment_cert(&subject.device_id).unwrap();
        assert_eq!(
            enrollment_request(&request.cert_der),
            Some(subject.device_id.clone())
        );
        assert!(peer_identity(&request.cert_der).is_err());
        assert!(!issued_by(&request.cert_der, ca.cert_der()));
        // Its self-signature counts: the same request with a broken signature is none.
        let mut forged = request.cert_der.clone();
        if let Some(last) = forged.last_mut() {
            *last ^= 0x01;
        }
        assert_eq!(enrollment_request(&forged), None);
        // An office certificate is not an enrollment request, and neither is a
        // self-signed certificate that also claims a device identity.
        let office_cert = issue_device_cert_now(&ca, &subject).unwrap();
        assert_eq!(enrollment_request(&office_cert.cert_der), None);
        // The relay issues for the key the device made; the key never travels.
        let now = SystemTime::now();
        let (pem, der) =
            issue_device_cert_for_key(&ca, &subject, &key.spki_der, now, now + DEVICE_VALIDITY)
                .unwrap();
        assert!(issued_by(&der, ca.cert_der()));
        assert_eq!(cert_spki(&der).unwrap(), key.spki_der);
        assert_eq!(cert_der_from_pem(&pem, "c").unwrap(), der);
        let id = peer_identity(&der).unwrap();
        assert_eq!(
            (id.device_id.as_str(), id.office.as_str()),
            (subject.device_id.as_str(), OFFICE)
        );
        // Not a P-256 key, garbage, or too long: refused by field.
        for bad in [vec![], vec![0x30; 10], vec![0x30; MAX_SPKI_BYTES + 1]] {
            let err = issue_device_cert_for_key(&ca, &subject, &bad, now, now + DEVICE_VALIDITY)
                .unwrap_err();
            assert!(err.to_string().contains("device public key"), "{err}");
        }
        // Kept as PEM, the key comes back the same.
        assert_eq!(
            DeviceKey::from_pem(&key.key_pem).unwrap().spki_der,
            key.spki_der
        );
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }

    #[test]
    fn ca_round_trips_through_pem_and_keeps_signing() {
        let ca = ca();
        let (cert, key) = ca.to_pem();
        assert!(key.contains("PRIVATE KEY"));
        let again = OfficeCa::from_pem(&cert, &key).unwrap();
        assert_eq!(again.cert_der(), ca.cert_der());
        let subject = DeviceSubject::new_random("tablet-1", OFFICE).unwrap();
        let ck = issue_device_cert_now(&again, &subject).unwrap();
        // Issued by the reloaded CA, the certificate names the CA's subject as issuer.
        let (_, ca_parsed) = x509_parser::parse_x509_certificate(ca.cert_der()).unwrap();
        let (_, dev) = x509_parser::parse_x509_certificate(&ck.cert_der).unwrap();
        assert_eq!(dev.issuer().to_string(), ca_parsed.subject().to_string());
        assert!(!format!("{again:?}").contains("PRIVATE"));
    }

    #[test]
    fn ca_refuses_a_foreign_key_and_a_non_ca_certificate() {
        let ca = ca();
        let other = OfficeCa::generate("other").unwrap();
        let (cert, _) = ca.to_pem();
        let (_, other_key) = other.to_pem();
        assert!(matches!(
            OfficeCa::from_pem(&cert, &other_key),
            Err(NetError::KeyMismatch { .. })
        ));
        let relay = issue_relay_cert(&ca, &[]).unwrap();
        assert!(matches!(
            OfficeCa::from_pem(&relay.cert_pem, &relay.key_pem),
            Err(NetError::BadCertificate { .. })
        ));
        assert!(matches!(
            OfficeCa::from_pem("not pem", "not pem"),
            Err(NetError::BadPem { .. })
        ));
    }

    #[test]
    fn relay_certificate_names_its_hosts() {
        let ca = ca();
        let hosts = vec!["relay.example.jp".to_owned(), "192.0.2.7".to_owned()];
        let ck = issue_relay_cert(&ca, &hosts).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&ck.cert_der).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => (*d).to_owned(),
                GeneralName::IPAddress(b) => format!("ip{}", b.len()),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(names, [RELAY_SERVER_NAME, "relay.example.jp", "ip4"]);
        // Defaults: localhost and 127.0.0.1.
        let ck = issue_relay_cert(&ca, &[]).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&ck.cert_der).unwrap();
        let n = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .len();
        assert_eq!(n, 3);
        // A relay certificate is not a device certificate.
        assert!(peer_identity(&ck.cert_der).is_err());
    }

    #[test]
    fn bad_hosts_and_subjects_are_refused_by_field() {
        let ca = ca();
        for host in ["", "bad host", "ホスト.jp", "a..b"] {
            let err = issue_relay_cert(&ca, &[host.to_owned()]).unwrap_err();
            assert!(err.to_string().contains("host"), "{host:?}: {err}");
        }
        assert!(DeviceSubject::new_random("", OFFICE).is_err());
        assert!(DeviceSubject::new_random("tab\nlet", OFFICE).is_err());
        assert!(DeviceSubject::new_random(&"x".repeat(65), OFFICE).is_err());
        let err = DeviceSubject::new_random("tablet", "12345").unwrap_err();
        assert!(err.to_string().contains("office"), "{err}");
        let bad_id = DeviceSubject {
            device_id: "ABC".into(),
            device_name: "tablet".into(),
            office: OFFICE.into(),
        };
        let now = SystemTime::now();
        assert!(issue_device_cert(&ca, &bad_id, now, now + DEVICE_VALIDITY).is_err());
        let ok = DeviceSubject::new_random("tablet", OFFICE).unwrap();
        assert!(issue_device_cert(&ca, &ok, now, now).is_err());
    }

    #[test]
    fn hostile_der_is_an_error_never_a_panic() {
        let ca = ca();
        let subject = DeviceSubject::new_random("tablet", OFFICE).unwrap();
        let good = issue_device_cert_now(&ca, &subject).unwrap().cert_der;
        assert!(peer_identity(&[]).is_err());
        assert!(peer_identity(&[0x30]).is_err());
        assert!(peer_identity(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
        // Every truncation, and a trailing byte.
        for len in 0..good.len() {
            assert!(peer_identity(&good[..len]).is_err(), "truncated at {len}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(peer_identity(&longer).is_err());
        // Every single-byte corruption: an error or (if it hit a non-identity byte) a
        // parse that still reports well-formed fields; never a panic.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xa5;
            if let Ok(id) = peer_identity(&bad) {
                assert!(check_device_id(&id.device_id).is_ok());
                assert!(check_office(&id.office).is_ok());
            }
        }
        // Pseudo-random garbage.
        let mut state = 0x1234_5678_u32;
        for _ in 0..2000 {
            let len = (state % 600) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state as u8
                })
                .collect();
            assert!(peer_identity(&bytes).is_err());
        }
    }
}
