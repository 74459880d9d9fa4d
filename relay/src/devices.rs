//! The device registry `devices.toml`: every device ever enrolled, with its certificate
//! fingerprint and, once revoked, the revocation time; and every enrollment made, pending
//! or redeemed, with the SHA-256 of its secret (never the secret). Records are never
//! removed, so the registry is also the enrollment history.

use std::path::Path;

use musubi_engine::net::pki::{self, PeerIdentity};
use serde::{Deserialize, Serialize};

use crate::config::FORMAT;
use crate::error::RelayError;
use crate::fsutil;

/// One enrolled device.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRecord {
    /// The name the office gave the device.
    pub name: String,
    /// Device id (32 lowercase hex digits), as in its certificate.
    pub id: String,
    /// The device's office (事業所番号).
    pub office: String,
    /// SHA-256 of the device certificate (64 hex digits).
    pub fingerprint: String,
    /// When it was enrolled (RFC 3339, UTC).
    pub enrolled_at: String,
    /// End of the certificate's validity (RFC 3339, UTC).
    pub not_after: String,
    /// When it was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// After a renewal: the certificate the device renewed from, still admitted until it
    /// expires (so a device that lost the answer can connect and renew again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_fingerprint: Option<String>,
}

impl std::fmt::Debug for DeviceRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceRecord")
            .field("name", &"[redacted]")
            .field("id", &self.id)
            .field("office", &self.office)
            .field("fingerprint", &self.fingerprint)
            .field("enrolled_at", &self.enrolled_at)
            .field("not_after", &self.not_after)
            .field("revoked_at", &self.revoked_at)
            .field("previous_fingerprint", &self.previous_fingerprint)
            .finish()
    }
}

impl DeviceRecord {
    /// Not revoked.
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }

    /// Whether a presented certificate is this device's enrolled, unrevoked certificate
    /// (the current one, or the one it renewed from; TLS refuses either once expired).
    pub fn admits(&self, peer: &PeerIdentity) -> bool {
        let fp = peer.fingerprint_hex();
        self.is_active()
            && self.id == peer.device_id
            && self.office == peer.office
            && (self.fingerprint == fp || self.previous_fingerprint.as_deref() == Some(&fp))
    }
}

/// Wrong secrets after which a pending enrollment is locked for good.
pub const MAX_REDEEM_FAILURES: u32 = 5;

/// One enrollment made by `musubi-relay enroll`: pending until a tablet redeems it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingEnrollment {
    /// The device id the enrollment is for (a new one, or an existing device's id when it
    /// is re-enrolled).
    pub id: String,
    /// The device name.
    pub name: String,
    /// The device's office.
    pub office: String,
    /// SHA-256 of the enrollment secret (64 hex digits); the secret itself is only in the
    /// sealed enrollment file.
    pub secret_sha256: String,
    /// When it was made (RFC 3339, UTC).
    pub created_at: String,
    /// When it stops being redeemable (RFC 3339, UTC).
    pub expires_at: String,
    /// Re-enrollment of an existing device (keeps its id; replaces its certificate).
    #[serde(default)]
    pub reenroll: bool,
    /// Wrong secrets presented so far.
    #[serde(default)]
    pub failures: u32,
    /// When it was redeemed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redeemed_at: Option<String>,
    /// SHA-256 of the public key it was redeemed for (64 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_sha256: Option<String>,
    /// The certificate issued (PEM), given again to the same key if the tablet lost the
    /// answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_pem: Option<String>,
    /// Attempts to redeem it again with the right secret and another key (a copied file
    /// and code): refused and counted here.
    #[serde(default)]
    pub reuse_attempts: u32,
    /// When it was replaced by a newer enrollment of the same name, unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<String>,
}

impl std::fmt::Debug for PendingEnrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingEnrollment")
            .field("id", &self.id)
            .field("name", &"[redacted]")
            .field("office", &self.office)
            .field("state", &self.state(chrono::Utc::now().timestamp()))
            .field("failures", &self.failures)
            .field("reuse_attempts", &self.reuse_attempts)
            .finish_non_exhaustive()
    }
}

/// Where an enrollment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnrollmentState {
    /// Waiting for its tablet.
    Pending,
    /// Redeemed by a tablet.
    Redeemed,
    /// Not redeemed in time.
    Expired,
    /// Locked after [`MAX_REDEEM_FAILURES`] wrong secrets.
    Locked,
    /// Replaced by a newer enrollment of the same name.
    Cancelled,
}

impl EnrollmentState {
    /// The word `status` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            EnrollmentState::Pending => "pending",
            EnrollmentState::Redeemed => "redeemed",
            EnrollmentState::Expired => "expired",
            EnrollmentState::Locked => "locked",
            EnrollmentState::Cancelled => "cancelled",
        }
    }
}

/// Unix seconds of an RFC 3339 time; `None` when unreadable.
pub fn parse_time(t: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|d| d.timestamp())
}

impl PendingEnrollment {
    /// The state at `now` (Unix seconds). An unreadable expiry counts as expired.
    pub fn state(&self, now: i64) -> EnrollmentState {
        if self.redeemed_at.is_some() {
            EnrollmentState::Redeemed
        } else if self.cancelled_at.is_some() {
            EnrollmentState::Cancelled
        } else if self.failures >= MAX_REDEEM_FAILURES {
            EnrollmentState::Locked
        } else if parse_time(&self.expires_at).is_none_or(|e| now >= e) {
            EnrollmentState::Expired
        } else {
            EnrollmentState::Pending
        }
    }
}

/// The contents of `devices.toml`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRegistry {
    /// Format number.
    #[serde(default = "format_one")]
    pub format: u32,
    /// A cluster relay only: offices added with `office add` through any node, served by
    /// every node along with those of its `relay.toml`. Always empty in `devices.toml`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offices: Vec<String>,
    /// Every device, in enrollment order.
    #[serde(default, rename = "device")]
    pub devices: Vec<DeviceRecord>,
    /// Every enrollment made, in order.
    #[serde(default, rename = "enrollment")]
    pub enrollments: Vec<PendingEnrollment>,
}

fn format_one() -> u32 {
    FORMAT
}

impl DeviceRegistry {
    /// An empty registry.
    pub fn new() -> DeviceRegistry {
        DeviceRegistry {
            format: FORMAT,
            offices: Vec::new(),
            devices: Vec::new(),
            enrollments: Vec::new(),
        }
    }

    /// Parses and checks a registry text.
    pub fn parse(text: &str) -> Result<DeviceRegistry, RelayError> {
        let bad = |problem: String| RelayError::BadFile {
            file: "devices.toml",
            problem,
        };
        let reg: DeviceRegistry =
            toml::from_str(text).map_err(|e| bad(format!("not valid: {}", e.message())))?;
        if reg.format > FORMAT {
            return Err(bad(
                "written by a newer musubi-relay (format too new)".into()
            ));
        }
        for o in &reg.offices {
            pki::check_office(o).map_err(|_| bad("an office served is invalid".into()))?;
        }
        for d in &reg.devices {
            pki::check_device_id(&d.id).map_err(|_| bad("a device id is malformed".into()))?;
            pki::check_office(&d.office)
                .map_err(|_| bad(format!("device {}: office is invalid", d.id)))?;
            let hex64 = |h: &str| h.len() == 64 && hex::decode(h).is_ok();
            if !hex64(&d.fingerprint)
                || d.previous_fingerprint.as_deref().is_some_and(|p| !hex64(p))
            {
                return Err(bad(format!("device {}: fingerprint is malformed", d.id)));
            }
        }
        for e in &reg.enrollments {
            pki::check_device_id(&e.id)
                .map_err(|_| bad("an enrollment's device id is malformed".into()))?;
            pki::check_office(&e.office)
                .map_err(|_| bad(format!("enrollment {}: office is invalid", e.id)))?;
            if e.secret_sha256.len() != 64 || hex::decode(&e.secret_sha256).is_err() {
                return Err(bad(format!(
                    "enrollment {}: secret hash is malformed",
                    e.id
                )));
            }
        }
        Ok(reg)
    }

    /// Reads `devices.toml`.
    pub fn read(path: &Path) -> Result<DeviceRegistry, RelayError> {
        DeviceRegistry::parse(&fsutil::read_text(path, "devices.toml")?)
    }

    /// The registry as text (what `devices.toml`, or a cluster's database, holds).
    pub fn to_text(&self) -> Result<String, RelayError> {
        let text = toml::to_string(self).map_err(|_| RelayError::BadFile {
            file: "devices.toml",
            problem: "cannot be serialised".into(),
        })?;
        Ok(format!(
            "# musubi relay device registry (written by musubi-relay enroll/revoke)\n{text}"
        ))
    }

    /// Writes `devices.toml` atomically.
    pub fn write(&self, path: &Path) -> Result<(), RelayError> {
        fsutil::atomic_write(path, self.to_text()?.as_bytes())
    }

    /// The offices served: those of `relay.toml` (`configured`), then those added in a
    /// cluster's database.
    pub fn offices_served(&self, configured: &[String]) -> Vec<String> {
        let mut all = configured.to_vec();
        for o in &self.offices {
            if !all.contains(o) {
                all.push(o.clone());
            }
        }
        all
    }

    /// The record with this device id.
    pub fn by_id(&self, id: &str) -> Option<&DeviceRecord> {
        self.devices.iter().find(|d| d.id == id)
    }

    /// The active device with this name, if any.
    pub fn active_by_name(&self, name: &str) -> Option<&DeviceRecord> {
        self.devices
            .iter()
            .find(|d| d.is_active() && d.name == name)
    }

    /// The latest enrollment made for this device id.
    pub fn enrollment_by_id(&self, id: &str) -> Option<&PendingEnrollment> {
        self.enrollments.iter().rev().find(|e| e.id == id)
    }

    /// Whether a presented certificate belongs to an enrolled, unrevoked device.
    pub fn admits(&self, peer: &PeerIdentity) -> bool {
        self.by_id(&peer.device_id).is_some_and(|d| d.admits(peer))
    }
}
