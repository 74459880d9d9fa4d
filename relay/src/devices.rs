//! The device registry `devices.toml`: every device ever enrolled, with its certificate
//! fingerprint and, once revoked, the revocation time. Records are never removed, so the
//! registry is also the enrollment history.

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
            .finish()
    }
}

impl DeviceRecord {
    /// Not revoked.
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }

    /// Whether a presented certificate is this device's enrolled, unrevoked certificate.
    pub fn admits(&self, peer: &PeerIdentity) -> bool {
        self.is_active()
            && self.id == peer.device_id
            && self.office == peer.office
            && self.fingerprint == peer.fingerprint_hex()
    }
}

/// The contents of `devices.toml`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRegistry {
    /// Format number.
    #[serde(default = "format_one")]
    pub format: u32,
    /// Every device, in enrollment order.
    #[serde(default, rename = "device")]
    pub devices: Vec<DeviceRecord>,
}

fn format_one() -> u32 {
    FORMAT
}

impl DeviceRegistry {
    /// An empty registry.
    pub fn new() -> DeviceRegistry {
        DeviceRegistry {
            format: FORMAT,
            devices: Vec::new(),
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
        for d in &reg.devices {
            pki::check_device_id(&d.id).map_err(|_| bad("a device id is malformed".into()))?;
            pki::check_office(&d.office)
                .map_err(|_| bad(format!("device {}: office is invalid", d.id)))?;
            if d.fingerprint.len() != 64 || hex::decode(&d.fingerprint).is_err() {
                return Err(bad(format!("device {}: fingerprint is malformed", d.id)));
            }
        }
        Ok(reg)
    }

    /// Reads `devices.toml`.
    pub fn read(path: &Path) -> Result<DeviceRegistry, RelayError> {
        DeviceRegistry::parse(&fsutil::read_text(path, "devices.toml")?)
    }

    /// Writes `devices.toml` atomically.
    pub fn write(&self, path: &Path) -> Result<(), RelayError> {
        let text = toml::to_string(self).map_err(|_| RelayError::BadFile {
            file: "devices.toml",
            problem: "cannot be serialised".into(),
        })?;
        let doc = format!(
            "# musubi relay device registry (written by musubi-relay enroll/revoke)\n{text}"
        );
        fsutil::atomic_write(path, doc.as_bytes())
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

    /// Whether a presented certificate belongs to an enrolled, unrevoked device.
    pub fn admits(&self, peer: &PeerIdentity) -> bool {
        self.by_id(&peer.device_id).is_some_and(|d| d.admits(peer))
    }
}
