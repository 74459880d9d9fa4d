//! Validation of the JPKI user-authentication certificate (EF `000A`) against the trust
//! anchors, offline: strict DER, chain by key identifier *and* signature, validity of leaf
//! and root at a given time, key usage, basic constraints, critical extensions, RSA-2048.

use super::roots::{AnchorSource, TrustStore};
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

/// Largest certificate accepted from a card.
pub const MAX_CERT_BYTES: usize = 8 * 1024;

const OID_SHA256_RSA: &str = "1.2.840.113549.1.1.11";
/// Extensions we understand and may accept as critical.
const KNOWN_CRITICAL: &[&str] = &[
    "2.5.29.15", // keyUsage
    "2.5.29.19", // basicConstraints
    "2.5.29.32", // certificatePolicies
    "2.5.29.17", // subjectAltName
    "2.5.29.18", // issuerAltName
    "2.5.29.37", // extKeyUsage
    "2.5.29.35", // authorityKeyIdentifier
    "2.5.29.14", // subjectKeyIdentifier
];

/// Why the certificate is not accepted. No variant carries certificate content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// Not a DER X.509 certificate, or bytes after it.
    #[error("利用者証明用電子証明書を読み取れません (authentication certificate: {0})")]
    Malformed(&'static str),
    /// Chains to none of the trust anchors.
    #[error(
        "利用者証明用電子証明書の発行者を確認できません (authentication certificate: not issued by a trusted J-LIS root)"
    )]
    UnknownIssuer,
    /// Outside its validity period at the verification time.
    #[error("利用者証明用電子証明書の有効期間外です (authentication certificate {0})")]
    Expired(&'static str),
    /// The root that issued it is outside its validity period.
    #[error("発行元ルート証明書の有効期間外です (issuing root certificate {0})")]
    RootExpired(&'static str),
    /// Key usage, basic constraints or extensions are not those of an authentication cert.
    #[error("利用者証明用電子証明書の用途が不正です (authentication certificate: {0})")]
    Usage(&'static str),
    /// The public key is not RSA-2048 with e = 65537.
    #[error("利用者証明用電子証明書の鍵が不正です (authentication certificate key: {0})")]
    Key(&'static str),
}

/// A certificate that passed validation. `Debug` leaves out the serial, the fingerprint
/// and the key (stable per-card identifiers).
#[derive(Clone)]
pub struct ValidatedCert {
    /// Issuer DN, as text.
    pub issuer: String,
    /// Serial number, upper-case hex.
    pub serial: String,
    /// notBefore, unix seconds.
    pub not_before: i64,
    /// notAfter, unix seconds.
    pub not_after: i64,
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint_sha256: String,
    /// SHA-256 of the root that issued it, lower-case hex.
    pub root_sha256: String,
    /// Where that root came from.
    pub root_source: AnchorSource,
    /// The RSA public key (PKCS#1 RSAPublicKey DER) for checking the card's signature.
    pub rsa_public_key: Vec<u8>,
}

impl std::fmt::Debug for ValidatedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidatedCert")
            .field("issuer", &self.issuer)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("root_sha256", &self.root_sha256)
            .field("root_source", &self.root_source)
            .finish_non_exhaustive()
    }
}

fn parse_strict(der: &[u8]) -> Result<X509Certificate<'_>, CertError> {
    if der.len() > MAX_CERT_BYTES {
        return Err(CertError::Malformed("larger than 8 KiB"));
    }
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(CertError::Malformed("bytes after the certificate")),
        Err(_) => Err(CertError::Malformed("not DER X.509")),
    }
}

fn check_rsa_2048(cert: &X509Certificate<'_>) -> Result<(), CertError> {
    match cert.public_key().parsed() {
        Ok(PublicKey::RSA(rsa)) => {
            let modulus = rsa.modulus.strip_prefix(&[0]).unwrap_or(rsa.modulus);
            if modulus.len() != 256 || modulus[0] & 0x80 == 0 {
                return Err(CertError::Key("not a 2048-bit RSA key"));
            }
            let e = rsa.exponent.strip_prefix(&[0]).unwrap_or(rsa.exponent);
            if e != [0x01, 0x00, 0x01] {
                return Err(CertError::Key("RSA exponent is not 65537"));
            }
            Ok(())
        }
        _ => Err(CertError::Key("not an RSA key")),
    }
}

/// Verifies `cert`'s signature (sha256WithRSAEncryption only) under `issuer`'s key.
fn signed_by(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    if cert.signature_algorithm.algorithm.to_id_string() != OID_SHA256_RSA {
        return false;
    }
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        issuer.public_key().subject_public_key.data.as_ref(),
    );
    key.verify(
        cert.tbs_certificate.as_ref(),
        cert.signature_value.data.as_ref(),
    )
    .is_ok()
}

fn within(cert: &X509Certificate<'_>, now: i64) -> Result<(), &'static str> {
    let v = cert.validity();
    if now < v.not_before.timestamp() {
        return Err("not yet valid");
    }
    if now > v.not_after.timestamp() {
        return Err("expired");
    }
    Ok(())
}

/// Validates a JPKI user-authentication certificate at `now` (unix seconds).
pub fn validate_auth_cert(
    der: &[u8],
    anchors: &TrustStore,
    now: i64,
) -> Result<ValidatedCert, CertError> {
    let cert = parse_strict(der)?;
    // Extensions first: a certificate we cannot interpret is not trusted for anything.
    let mut key_usage = None;
    let mut aki: Option<Vec<u8>> = None;
    for ext in cert.extensions() {
        let oid = ext.oid.to_id_string();
        if ext.critical && !KNOWN_CRITICAL.contains(&oid.as_str()) {
            return Err(CertError::Usage("unknown critical extension"));
        }
        match ext.parsed_extension() {
            ParsedExtension::KeyUsage(ku) => key_usage = Some(*ku),
            ParsedExtension::BasicConstraints(bc) if bc.ca => {
                return Err(CertError::Usage("it is a CA certificate"));
            }
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                aki = a.key_identifier.as_ref().map(|k| k.0.to_vec());
            }
            ParsedExtension::ParseError { .. } => {
                return Err(CertError::Malformed("an extension does not parse"));
            }
            _ => {}
        }
    }
    let ku = key_usage.ok_or(CertError::Usage("no key usage"))?;
    if !ku.digital_signature() {
        return Err(CertError::Usage("key usage lacks digitalSignature"));
    }
    if ku.key_cert_sign() || ku.crl_sign() {
        return Err(CertError::Usage("key usage allows certificate signing"));
    }
    check_rsa_2048(&cert)?;

    // Root: same key identifier when both sides name one, and the signature must verify.
    let mut chosen = None;
    for anchor in anchors.anchors() {
        let Ok((_, root)) = X509Certificate::from_der(&anchor.der) else {
            continue;
        };
        if let (Some(aki), Some(ski)) = (aki.as_deref(), subject_key_id(&root))
            && aki != ski.as_slice()
        {
            continue;
        }
        if root.subject() != cert.issuer() {
            continue;
        }
        if signed_by(&cert, &root) {
            chosen = Some((anchor, root));
            break;
        }
    }
    let (anchor, root) = chosen.ok_or(CertError::UnknownIssuer)?;
    within(&cert, now).map_err(CertError::Expired)?;
    within(&root, now).map_err(CertError::RootExpired)?;

    let v = cert.validity();
    Ok(ValidatedCert {
        issuer: cert.issuer().to_string(),
        serial: hex::encode_upper(cert.raw_serial()),
        not_before: v.not_before.timestamp(),
        not_after: v.not_after.timestamp(),
        fingerprint_sha256: hex::encode(Sha256::digest(der)),
        root_sha256: anchor.sha256.clone(),
        root_source: anchor.source.clone(),
        rsa_public_key: cert.public_key().subject_public_key.data.to_vec(),
    })
}

fn subject_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
}

/// Checks an RSASSA-PKCS1-v1_5 SHA-256 signature over `message` with a PKCS#1
/// RSAPublicKey (as in [`ValidatedCert::rsa_public_key`]).
pub fn verify_rsa_sha256(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key,
    )
    .verify(message, signature)
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn hostile_certificates_are_refused_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let store = TrustStore::bundled().map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(validate_auth_cert(&bytes, &store, 1_800_000_000).is_err());
        }

        #[test]
        fn mutated_root_is_refused(pos in 0usize..1300, bit in 0u8..8) {
            // A bundled root is a CA certificate: never accepted as an authentication cert,
            // and neither is any one-bit mutation of it.
            let store = TrustStore::bundled().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut der = store.anchors()[2].der.clone();
            let i = pos % der.len();
            der[i] ^= 1 << bit;
            prop_assert!(validate_auth_cert(&der, &store, 1_800_000_000).is_err());
        }
    }
}
