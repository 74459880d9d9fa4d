//! The virtual card's test PKI, created in its directory on first start and reused after:
//! a test root standing in for J-LIS (`trust-anchor.pem`), a *foreign* root with the same
//! name but another key (not a trust anchor), the card's authentication key and three
//! authentication certificates (valid, expired, foreign-issued), and the 券面事項入力補助
//! keys (a test CV-CA and an issuer key that signs DF33). Everything here is test data.

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_RSA_SHA256, SerialNumber,
};
use rsa::RsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use std::path::Path;
use time::{Duration, OffsetDateTime};

/// Name of the trust anchor file for `musubi card verify --trust-anchor`.
pub const TRUST_ANCHOR_FILE: &str = "trust-anchor.pem";

/// The loaded test PKI.
pub struct TestPki {
    /// The card's authentication key.
    pub card_key: RsaPrivateKey,
    /// Authentication certificate, valid now.
    pub auth_cert: Vec<u8>,
    /// Authentication certificate that expired a year ago.
    pub auth_cert_expired: Vec<u8>,
    /// Authentication certificate issued by the foreign root (same DN as the test root).
    pub auth_cert_foreign: Vec<u8>,
    /// The test root (DER), also in `trust-anchor.pem`.
    pub root_cert: Vec<u8>,
    /// The foreign root (DER).
    pub foreign_root_cert: Vec<u8>,
    /// Test CV-CA key (signs the CV certificate of 入力補助AP).
    pub cv_ca_key: RsaPrivateKey,
    /// Test issuer key (its public half is in the CV certificate; signs DF33).
    pub issuer_key: RsaPrivateKey,
}

fn key_file(dir: &Path, name: &str) -> Result<RsaPrivateKey> {
    let path = dir.join(name);
    if let Ok(pem) = std::fs::read_to_string(&path) {
        return RsaPrivateKey::from_pkcs8_pem(&pem)
            .with_context(|| format!("reading test key {}", path.display()));
    }
    let mut rng = rsa::rand_core::OsRng;
    let key = RsaPrivateKey::new(&mut rng, 2048).context("generating an RSA-2048 test key")?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .context("encoding a test key")?;
    musubi_engine::fsutil::write_durably(&path, pem.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(key)
}

fn rcgen_key(key: &RsaPrivateKey) -> Result<KeyPair> {
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .context("encoding a test key")?;
    KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &PKCS_RSA_SHA256)
        .context("loading a test key into rcgen")
}

fn root_params(now: OffsetDateTime, serial: u8) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "JP");
    dn.push(DnType::OrganizationName, "JPKI-VIRTUAL-TEST");
    dn.push(
        DnType::OrganizationalUnitName,
        "JPKI for user authentication (musubi-vcard test root, not J-LIS)",
    );
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = now - Duration::days(365);
    p.not_after = now + Duration::days(3650);
    p.serial_number = Some(SerialNumber::from(vec![serial]));
    p
}

fn leaf_params(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    serial: &[u8],
) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "JP");
    // An opaque identifier, as J-LIS assigns: no personal data in the auth certificate.
    dn.push(DnType::CommonName, "VJPKITEST0000000000AUTH");
    p.distinguished_name = dn;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.use_authority_key_identifier_extension = true;
    p.not_before = not_before;
    p.not_after = not_after;
    p.serial_number = Some(SerialNumber::from(serial.to_vec()));
    p
}

fn pem_cert(der: &[u8]) -> String {
    let b64 = musubi_engine::card::evidence::base64::encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn cached(dir: &Path, name: &str, make: impl FnOnce() -> Result<Vec<u8>>) -> Result<Vec<u8>> {
    let path = dir.join(name);
    if let Ok(b) = std::fs::read(&path) {
        return Ok(b);
    }
    let b = make()?;
    musubi_engine::fsutil::write_durably(&path, &b)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(b)
}

impl TestPki {
    /// Loads the PKI from `dir`, creating what is missing.
    pub fn load_or_create(dir: &Path) -> Result<TestPki> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let root_key = key_file(dir, "root-key.pem")?;
        let foreign_key = key_file(dir, "foreign-root-key.pem")?;
        let card_key = key_file(dir, "card-auth-key.pem")?;
        let cv_ca_key = key_file(dir, "cv-ca-key.pem")?;
        let issuer_key = key_file(dir, "issuer-key.pem")?;
        let now = OffsetDateTime::now_utc();

        let root_kp = rcgen_key(&root_key)?;
        let foreign_kp = rcgen_key(&foreign_key)?;
        let card_kp = rcgen_key(&card_key)?;
        let root_p = root_params(now, 1);
        let foreign_p = root_params(now, 2);
        let root_cert = cached(dir, "root.der", || {
            Ok(root_p.clone().self_signed(&root_kp)?.der().to_vec())
        })?;
        let foreign_root_cert = cached(dir, "foreign-root.der", || {
            Ok(foreign_p.clone().self_signed(&foreign_kp)?.der().to_vec())
        })?;
        let anchor = dir.join(TRUST_ANCHOR_FILE);
        if !anchor.exists() {
            musubi_engine::fsutil::write_durably(&anchor, pem_cert(&root_cert).as_bytes())
                .with_context(|| format!("writing {}", anchor.display()))?;
        }
        // rcgen issues with the parameters of the issuer (its DN and key id).
        let root_issuer = Issuer::from_params(&root_p, &root_kp);
        let foreign_issuer = Issuer::from_params(&foreign_p, &foreign_kp);
        let auth_cert = cached(dir, "auth-cert.der", || {
            let p = leaf_params(
                now - Duration::days(1),
                now + Duration::days(5 * 365),
                &[0x10, 1],
            );
            Ok(p.signed_by(&card_kp, &root_issuer)?.der().to_vec())
        })?;
        let auth_cert_expired = cached(dir, "auth-cert-expired.der", || {
            let p = leaf_params(
                now - Duration::days(6 * 365),
                now - Duration::days(365),
                &[0x10, 2],
            );
            Ok(p.signed_by(&card_kp, &root_issuer)?.der().to_vec())
        })?;
        let auth_cert_foreign = cached(dir, "auth-cert-foreign.der", || {
            let p = leaf_params(
                now - Duration::days(1),
                now + Duration::days(5 * 365),
                &[0x10, 3],
            );
            Ok(p.signed_by(&card_kp, &foreign_issuer)?.der().to_vec())
        })?;
        Ok(TestPki {
            card_key,
            auth_cert,
            auth_cert_expired,
            auth_cert_foreign,
            root_cert,
            foreign_root_cert,
            cv_ca_key,
            issuer_key,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pem_round_trips_through_the_verifier_parser() {
        let der: Vec<u8> = (0u8..=200).collect();
        let pem = pem_cert(&der);
        let back = musubi_engine::card::roots::pem_certificates(&pem).unwrap();
        assert_eq!(back, vec![der]);
    }
}
