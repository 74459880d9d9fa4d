//! Redeeming enrollments and renewing certificates: the registry side of the certificate
//! exchanges (`musubi_engine::net::certx`). Every change goes through [`RelayDir`] under
//! the administration lock and is written atomically, so `enroll`, `revoke` and the
//! running server never lose each other's changes.

use std::time::{Duration, SystemTime};

use musubi_engine::net::certx::{self, refusal};
use musubi_engine::net::enroll;
use musubi_engine::net::pki::{self, DeviceSubject, PeerIdentity};
use sha2::{Digest, Sha256};

use crate::RelayDir;
use crate::devices::{DeviceRecord, DeviceRegistry, EnrollmentState, MAX_REDEEM_FAILURES};
use crate::dir::format_unix;
use crate::error::RelayError;
use crate::fsutil;

/// Validity of the certificates the relay issues when not configured.
pub const DEFAULT_DEVICE_CERT_VALIDITY: Duration = pki::DEVICE_VALIDITY;

/// Why a redemption or renewal was refused: the code the device receives (one of
/// `certx::refusal`) and an English sentence (no secret, no name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The refusal code.
    pub code: &'static str,
    /// The message.
    pub message: &'static str,
}

const UNKNOWN: Refused = Refused {
    code: refusal::UNKNOWN,
    message: "no pending enrollment matches",
};
const USED: Refused = Refused {
    code: refusal::USED,
    message: "this enrollment has already been redeemed by another device",
};

/// A redemption request as the relay received it.
pub struct RedeemRequest<'a> {
    /// The device id asked for (from the `enroll` frame, equal to the one in the
    /// handshake certificate).
    pub device_id: &'a str,
    /// The enrollment secret presented.
    pub secret: &'a [u8],
    /// The public key the device proved in the handshake (SubjectPublicKeyInfo DER).
    pub spki_der: &'a [u8],
    /// Validity of the certificate to issue.
    pub validity: Duration,
}

fn issue(
    dir: &RelayDir,
    subject: &DeviceSubject,
    spki_der: &[u8],
    validity: Duration,
) -> Result<(String, PeerIdentity), RelayError> {
    let ca = dir.ca()?;
    let now = SystemTime::now();
    let start = now.checked_sub(pki::CLOCK_SKEW).unwrap_or(now);
    let end = now
        .checked_add(validity)
        .ok_or_else(|| RelayError::invalid("device_cert_days", "date out of range"))?;
    let (cert_pem, der) = pki::issue_device_cert_for_key(&ca, subject, spki_der, start, end)?;
    let identity = pki::peer_identity(&der)?;
    Ok((cert_pem, identity))
}

impl RelayDir {
    /// Redeems a pending enrollment: checks the secret (constant time) and the state,
    /// issues a certificate for the presented key with the identity of the pending record
    /// (never anything the device sent), records the device, and returns the certificate
    /// (PEM). The same key with the same secret gets the same certificate again (a tablet
    /// that lost the answer); the right secret with another key is a reuse: refused and
    /// counted. Wrong secrets count too, and lock the enrollment after
    /// [`MAX_REDEEM_FAILURES`].
    pub fn redeem(&self, req: &RedeemRequest<'_>) -> Result<Result<String, Refused>, RelayError> {
        let _lock = self.lock()?;
        self.registry()?
            .modify(|registry| self.redeem_in(registry, req))
    }

    /// [`Self::redeem`] on the registry read for it: the answer, and whether the registry
    /// changed.
    fn redeem_in(
        &self,
        registry: &mut DeviceRegistry,
        req: &RedeemRequest<'_>,
    ) -> Result<(Result<String, Refused>, bool), RelayError> {
        let now = chrono::Utc::now().timestamp();
        let Some(index) = registry
            .enrollments
            .iter()
            .rposition(|e| e.id == req.device_id)
        else {
            tracing::warn!(device = %req.device_id, "enrollment refused: no enrollment for this device id");
            return Ok((Err(UNKNOWN), false));
        };
        let key_hash = hex::encode(Sha256::digest(req.spki_der));
        let e = &mut registry.enrollments[index];
        let expected = hex::decode(&e.secret_sha256).unwrap_or_default();
        let secret_ok =
            enroll::constant_time_eq(&enroll::secret_hash(req.secret), expected.as_slice());
        match e.state(now) {
            EnrollmentState::Redeemed if secret_ok => {
                if e.key_sha256.as_deref() == Some(key_hash.as_str())
                    && let Some(cert) = e.cert_pem.clone()
                {
                    tracing::info!(device = %req.device_id, "enrollment answer sent again to the same key");
                    return Ok((Ok(cert), false));
                }
                e.reuse_attempts = e.reuse_attempts.saturating_add(1);
                let attempts = e.reuse_attempts;
                tracing::warn!(
                    device = %req.device_id,
                    reuse_attempts = attempts,
                    "ENROLLMENT REUSED: a device presented an already redeemed enrollment with another key; refused"
                );
                Ok((Err(USED), true))
            }
            EnrollmentState::Redeemed | EnrollmentState::Cancelled => {
                tracing::warn!(device = %req.device_id, "enrollment refused: not pending");
                Ok((Err(UNKNOWN), false))
            }
            EnrollmentState::Expired => {
                tracing::warn!(device = %req.device_id, "enrollment refused: expired");
                Ok((
                    Err(Refused {
                        code: refusal::EXPIRED,
                        message: "this enrollment has expired",
                    }),
                    false,
                ))
            }
            EnrollmentState::Locked => {
                tracing::warn!(device = %req.device_id, "enrollment refused: locked after too many wrong secrets");
                Ok((
                    Err(Refused {
                        code: refusal::LOCKED,
                        message: "this enrollment is locked after too many wrong attempts",
                    }),
                    false,
                ))
            }
            EnrollmentState::Pending if !secret_ok => {
                e.failures = e.failures.saturating_add(1);
                let failures = e.failures;
                tracing::warn!(device = %req.device_id, failures, limit = MAX_REDEEM_FAILURES, "enrollment refused: wrong secret");
                Ok((
                    Err(if failures >= MAX_REDEEM_FAILURES {
                        Refused {
                            code: refusal::LOCKED,
                            message: "this enrollment is locked after too many wrong attempts",
                        }
                    } else {
                        UNKNOWN
                    }),
                    true,
                ))
            }
            EnrollmentState::Pending => {
                if pki::device_public_key(req.spki_der).is_err() {
                    return Ok((
                        Err(Refused {
                            code: refusal::BAD_REQUEST,
                            message: "the device key must be ECDSA P-256",
                        }),
                        false,
                    ));
                }
                let subject = DeviceSubject {
                    device_id: e.id.clone(),
                    device_name: e.name.clone(),
                    office: e.office.clone(),
                };
                let reenroll = e.reenroll;
                let (cert_pem, identity) = issue(self, &subject, req.spki_der, req.validity)?;
                let stamp = fsutil::now_rfc3339();
                let e = &mut registry.enrollments[index];
                e.redeemed_at = Some(stamp.clone());
                e.key_sha256 = Some(key_hash);
                e.cert_pem = Some(cert_pem.clone());
                if reenroll {
                    let Some(rec) = registry
                        .devices
                        .iter_mut()
                        .find(|d| d.id == subject.device_id && d.is_active())
                    else {
                        tracing::warn!(device = %subject.device_id, "re-enrollment refused: the device was revoked meanwhile");
                        return Ok((Err(UNKNOWN), false));
                    };
                    rec.fingerprint = identity.fingerprint_hex();
                    rec.not_after = format_unix(identity.not_after);
                    rec.previous_fingerprint = None;
                } else {
                    if registry.by_id(&subject.device_id).is_some()
                        || registry.active_by_name(&subject.device_name).is_some()
                    {
                        tracing::warn!(device = %subject.device_id, "enrollment refused: an active device has this name or id");
                        return Ok((Err(UNKNOWN), false));
                    }
                    registry.devices.push(DeviceRecord {
                        name: subject.device_name.clone(),
                        id: subject.device_id.clone(),
                        office: subject.office.clone(),
                        fingerprint: identity.fingerprint_hex(),
                        enrolled_at: stamp,
                        not_after: format_unix(identity.not_after),
                        revoked_at: None,
                        previous_fingerprint: None,
                    });
                }
                tracing::info!(device = %subject.device_id, office = %subject.office, reenroll, "enrollment redeemed; certificate issued for the device's own key");
                Ok((Ok(cert_pem), true))
            }
        }
    }

    /// Renews the certificate of the device on the other end of an authenticated sync
    /// connection (`peer`, from its verified certificate): refused unless the registry
    /// admits that certificate and it has less than `pki::RENEW_BEFORE` left. The new
    /// certificate has the same device id, name and office and the key the device sent;
    /// the registry records it as current and keeps the certificate the device connected
    /// with as the previous one (admitted until it expires).
    pub fn renew(
        &self,
        peer: &PeerIdentity,
        spki_der: &[u8],
        validity: Duration,
    ) -> Result<Result<String, Refused>, RelayError> {
        let _lock = self.lock()?;
        self.registry()?
            .modify(|registry| self.renew_in(registry, peer, spki_der, validity))
    }

    /// [`Self::renew`] on the registry read for it.
    fn renew_in(
        &self,
        registry: &mut DeviceRegistry,
        peer: &PeerIdentity,
        spki_der: &[u8],
        validity: Duration,
    ) -> Result<(Result<String, Refused>, bool), RelayError> {
        let Some(rec) = registry.devices.iter().find(|d| d.admits(peer)).cloned() else {
            return Ok((Err(UNKNOWN), false));
        };
        if !certx::renewal_due_at(peer.not_after, SystemTime::now()) {
            return Ok((
                Err(Refused {
                    code: refusal::NOT_DUE,
                    message: "the certificate is not due for renewal",
                }),
                false,
            ));
        }
        if pki::device_public_key(spki_der).is_err() {
            return Ok((
                Err(Refused {
                    code: refusal::BAD_REQUEST,
                    message: "the device key must be ECDSA P-256",
                }),
                false,
            ));
        }
        let subject = DeviceSubject {
            device_id: rec.id.clone(),
            device_name: rec.name.clone(),
            office: rec.office.clone(),
        };
        let (cert_pem, identity) = issue(self, &subject, spki_der, validity)?;
        if let Some(r) = registry.devices.iter_mut().find(|d| d.id == rec.id) {
            r.previous_fingerprint = Some(peer.fingerprint_hex());
            r.fingerprint = identity.fingerprint_hex();
            r.not_after = format_unix(identity.not_after);
        }
        tracing::info!(device = %rec.id, "device certificate renewed");
        Ok((Ok(cert_pem), true))
    }
}
