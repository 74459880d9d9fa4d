//! Trust anchors: the bundled J-LIS user-authentication roots, plus roots given by
//! configuration (for example the test root of `musubi-vcard`). Roots are pinned by the
//! SHA-256 of their DER bytes.

use sha2::{Digest, Sha256};

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

/// Decodes every `CERTIFICATE` block of a PEM text.
pub fn pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, AnchorError> {
    let mut out = Vec::new();
    let mut inside = false;
    let mut b64 = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line == "-----BEGIN CERTIFICATE-----" {
            inside = true;
            b64.clear();
        } else if line == "-----END CERTIFICATE-----" {
            if !inside {
                return Err(AnchorError::NoCertificate);
            }
            inside = false;
            out.push(base64_decode(&b64).ok_or(AnchorError::BadBase64)?);
        } else if inside {
            b64.push_str(line);
        }
    }
    if out.is_empty() || inside {
        return Err(AnchorError::NoCertificate);
    }
    Ok(out)
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    };
    let bytes: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let trimmed: &[u8] = {
        let end = bytes.iter().rposition(|b| *b != b'=').map_or(0, |p| p + 1);
        if bytes.len() - end > 2 {
            return None;
        }
        &bytes[..end]
    };
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in trimmed {
        acc = (acc << 6) | val(*c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
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
        assert!(s.anchors().is_empty());
    }
}
