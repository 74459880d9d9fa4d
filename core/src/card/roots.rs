//! Trust anchors: the bundled J-LIS user-authentication roots, plus roots given by
//! configuration (for example the test root of `musubi-vcard`). Roots are pinned by the
//! SHA-256 of their DER bytes.

use sha2::{Digest, Sha256};
use x509_parser::error::PEMError;
use x509_parser::pem::Pem;

/// One bundled root: (generation, PEM text, SHA-256 of the DER, lower-case hex).
const BUNDLED: &[(u8, &str, &str)] = &[
    (
        1,
        include_str!("../../assets/jpki-roots/auth-ca-2015.pem"),
        "4dcfc4ca0aaf9fb2a3081b3f0c991c320b3acc008667a341eeaec5af1d58ca7d",
    ),
    (
        2,
        include_str!("../../assets/jpki-roots/auth-ca-2019.pem"),
        "0d98de47fc11b7f67126874b7028b6026a803d2638d6edfe53176953961fade6",
    ),
    (
        3,
        include_str!("../../assets/jpki-roots/auth-ca-2023.pem"),
        "64114f29620c24ed2631d46476a040e7ee740d956089c00b036a6a8118c322b5",
    ),
];

/// Where a trust anchor came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnchorSource {
    /// A J-LIS root bundled with musubi (generation 1, 2, 3, …).
    Bundled {
        /// J-LIS generation number.
        generation: u8,
    },
    /// A root given by configuration (`--trust-anchor FILE`), e.g. a test root.
    Configured,
}

/// A trusted root certificate.
#[derive(Debug, Clone)]
pub struct TrustAnchor {
    /// DER bytes.
    pub der: Vec<u8>,
    /// SHA-256 of `der`, lower-case hex.
    pub sha256: String,
    /// Bundled or configured.
    pub source: AnchorSource,
}

/// Why a trust anchor cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnchorError {
    /// Not PEM with a CERTIFICATE block.
    #[error("trust anchor: no PEM CERTIFICATE block found")]
    NoCertificate,
    /// The base64 inside the PEM is broken.
    #[error("trust anchor: bad base64 in the PEM block")]
    BadBase64,
    /// The DER is not a certificate.
    #[error("trust anchor: not a valid X.509 certificate")]
    NotCertificate,
    /// A bundled root does not match its pinned fingerprint (a build problem).
    #[error("bundled J-LIS root generation {0} does not match its pinned fingerprint")]
    PinMismatch(u8),
}

/// Decodes every `CERTIFICATE` block of a PEM text (`x509_parser::pem`); blocks of other
/// labels are skipped.
pub fn pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, AnchorError> {
    let mut out = Vec::new();
    for block in Pem::iter_from_buffer(text.as_bytes()) {
        let pem = block.map_err(|e| match e {
            PEMError::Base64DecodeError => AnchorError::BadBase64,
            _ => AnchorError::NoCertificate,
        })?;
        if pem.label == "CERTIFICATE" {
            out.push(pem.contents);
        }
    }
    if out.is_empty() {
        return Err(AnchorError::NoCertificate);
    }
    Ok(out)
}

/// The set of roots the verifier chains to.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    anchors: Vec<TrustAnchor>,
}

impl TrustStore {
    /// The bundled J-LIS user-authentication roots (all generations).
    pub fn bundled() -> Result<TrustStore, AnchorError> {
        let mut anchors = Vec::new();
        for (generation, pem, pin) in BUNDLED {
            for der in pem_certificates(pem)? {
                let sha256 = hex::encode(Sha256::digest(&der));
                if sha256 != *pin {
                    return Err(AnchorError::PinMismatch(*generation));
                }
                anchors.push(TrustAnchor {
                    der,
                    sha256,
                    source: AnchorSource::Bundled {
                        generation: *generation,
                    },
                });
            }
        }
        Ok(TrustStore { anchors })
    }

    /// An empty store (add roots with [`TrustStore::add_pem`]).
    pub fn empty() -> TrustStore {
        TrustStore::default()
    }

    /// Adds configured roots from PEM text.
    pub fn add_pem(&mut self, text: &str) -> Result<usize, AnchorError> {
        let certs = pem_certificates(text)?;
        let n = certs.len();
        for der in certs {
            use x509_parser::prelude::FromDer;
            match x509_parser::certificate::X509Certificate::from_der(&der) {
                Ok(([], _)) => {}
                _ => return Err(AnchorError::NotCertificate),
            }
            let sha256 = hex::encode(Sha256::digest(&der));
            self.anchors.push(TrustAnchor {
                der,
                sha256,
                source: AnchorSource::Configured,
            });
        }
        Ok(n)
    }

    /// All anchors.
    pub fn anchors(&self) -> &[TrustAnchor] {
        &self.anchors
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bundled_roots_match_their_pins() {
        let store = TrustStore::bundled().unwrap();
        assert_eq!(store.anchors().len(), 3);
    }

    #[test]
    fn garbage_is_not_an_anchor() {
        let mut s = TrustStore::empty();
        assert_eq!(s.add_pem("hello"), Err(AnchorError::NoCertificate));
        assert_eq!(
            s.add_pem("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"),
            Err(AnchorError::BadBase64)
        );
        assert_eq!(
            s.add_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            Err(AnchorError::NotCertificate)
        );
        assert_eq!(
            s.add_pem("-----BEGIN CERTIFICATE-----\nAAAA\n"),
            Err(AnchorError::NoCertificate),
            "a block without its END line"
        );
        assert!(s.anchors().is_empty());
    }

    #[test]
    fn only_certificate_blocks_are_read() {
        let (_, pem, _) = BUNDLED[0];
        let with_key =
            format!("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n{pem}");
        let mut s = TrustStore::empty();
        assert_eq!(s.add_pem(&with_key), Ok(1));
        assert_eq!(s.anchors()[0].der, pem_certificates(pem).unwrap()[0]);
    }
}
