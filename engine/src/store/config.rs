//! `store.toml`: the plaintext, non-secret metadata of a data directory.
//!
//! It is read before any key is unwrapped, so it must never hold anything personal beyond
//! what the brief allows (office number, device name, an optional default staff name).

use std::path::Path;

use toml::{Table, Value};

use super::StoreInfo;
use super::error::StoreError;
use super::fsutil;

/// The `format` this binary writes and the newest it reads.
pub(crate) const FORMAT_VERSION: i64 = 1;

/// Everything in `store.toml`.
#[derive(Clone)]
pub(crate) struct StoreFile {
    pub(crate) info: StoreInfo,
    /// scrypt log2(N) chosen at init, reused when the passphrase is changed or recovered.
    pub(crate) kdf_work_factor: Option<u8>,
}

/// A single-line, non-empty, control-free string of bounded length.
pub(crate) fn is_plain_text(s: &str, max_chars: usize) -> bool {
    !s.trim().is_empty() && s.chars().count() <= max_chars && !s.chars().any(char::is_control)
}

fn is_hex128(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl StoreFile {
    /// Renders the file.
    pub(crate) fn to_toml(&self) -> Result<String, StoreError> {
        let i = &self.info;
        let mut t = Table::new();
        t.insert("format".into(), Value::Integer(FORMAT_VERSION));
        t.insert("office".into(), Value::String(i.office.clone()));
        t.insert("device_id".into(), Value::String(i.device_id.clone()));
        t.insert("device_name".into(), Value::String(i.device_name.clone()));
        t.insert("actor".into(), Value::String(i.actor_hex.clone()));
        if let Some(staff) = &i.staff {
            t.insert("staff".into(), Value::String(staff.clone()));
        }
        t.insert("created_at".into(), Value::String(i.created_at.clone()));
        if let Some(r) = &i.recovery_recipient {
            t.insert("recovery_recipient".into(), Value::String(r.clone()));
        }
        if let Some(w) = self.kdf_work_factor {
            t.insert("kdf_work_factor".into(), Value::Integer(i64::from(w)));
        }
        let body = toml::to_string(&t).map_err(|_| StoreError::BadConfig {
            field: "store.toml",
        })?;
        Ok(format!(
            "# musubi store metadata. Not secret, not personal; do not edit by hand.\n{body}"
        ))
    }

    /// Parses and validates the file; errors name the field, never its value.
    pub(crate) fn parse(text: &str) -> Result<Self, StoreError> {
        let t: Table = text.parse().map_err(|_| StoreError::BadConfig {
            field: "store.toml",
        })?;
        let format = match t.get("format") {
            Some(Value::Integer(v)) => *v,
            _ => return Err(StoreError::BadConfig { field: "format" }),
        };
        if format > FORMAT_VERSION {
            return Err(StoreError::NewerFormat {
                found: format,
                supported: FORMAT_VERSION,
            });
        }
        if format < 1 {
            return Err(StoreError::BadConfig { field: "format" });
        }
        let req = |field: &'static str| -> Result<String, StoreError> {
            match t.get(field) {
                Some(Value::String(s)) => Ok(s.clone()),
                _ => Err(StoreError::BadConfig { field }),
            }
        };
        let opt = |field: &'static str| -> Result<Option<String>, StoreError> {
            match t.get(field) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(StoreError::BadConfig { field }),
            }
        };
        let info = StoreInfo {
            office: req("office")?,
            device_id: req("device_id")?,
            device_name: req("device_name")?,
            actor_hex: req("actor")?,
            staff: opt("staff")?,
            created_at: req("created_at")?,
            recovery_recipient: opt("recovery_recipient")?,
        };
        let kdf_work_factor = match t.get("kdf_work_factor") {
            None => None,
            Some(Value::Integer(v)) => {
                Some(u8::try_from(*v).map_err(|_| StoreError::BadConfig {
                    field: "kdf_work_factor",
                })?)
            }
            Some(_) => {
                return Err(StoreError::BadConfig {
                    field: "kdf_work_factor",
                });
            }
        };
        let file = Self {
            info,
            kdf_work_factor,
        };
        file.validate()?;
        Ok(file)
    }

    /// Checks every field (used for `init` options and for a file read back from disk).
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        let i = &self.info;
        if !is_plain_text(&i.office, 64) {
            return Err(StoreError::BadConfig { field: "office" });
        }
        if !is_plain_text(&i.device_name, 128) {
            return Err(StoreError::BadConfig {
                field: "device_name",
            });
        }
        if let Some(staff) = &i.staff
            && !is_plain_text(staff, 128)
        {
            return Err(StoreError::BadConfig { field: "staff" });
        }
        if !is_hex128(&i.device_id) {
            return Err(StoreError::BadConfig { field: "device_id" });
        }
        if !is_hex128(&i.actor_hex) {
            return Err(StoreError::BadConfig { field: "actor" });
        }
        if !is_plain_text(&i.created_at, 64) {
            return Err(StoreError::BadConfig {
                field: "created_at",
            });
        }
        if let Some(r) = &i.recovery_recipient
            && super::keys::parse_recipient(r).is_none()
        {
            return Err(StoreError::BadConfig {
                field: "recovery_recipient",
            });
        }
        if let Some(w) = self.kdf_work_factor
            && !(1..=super::keys::MAX_KDF_WORK_FACTOR).contains(&w)
        {
            return Err(StoreError::BadConfig {
                field: "kdf_work_factor",
            });
        }
        Ok(())
    }

    /// Reads `dir/store.toml`; a missing file is `NotInitialised`.
    pub(crate) fn read(dir: &Path) -> Result<Self, StoreError> {
        let bytes = fsutil::read_optional(&dir.join(super::STORE_TOML), "reading store.toml")?
            .ok_or_else(|| StoreError::NotInitialised {
                dir: dir.to_path_buf(),
            })?;
        let text = String::from_utf8(bytes).map_err(|_| StoreError::BadConfig {
            field: "store.toml",
        })?;
        Self::parse(&text)
    }

    /// Writes `dir/store.toml` atomically.
    pub(crate) fn write(&self, dir: &Path) -> Result<(), StoreError> {
        let text = self.to_toml()?;
        fsutil::atomic_write(
            &dir.join(super::STORE_TOML),
            text.as_bytes(),
            "writing store.toml",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoreFile {
        StoreFile {
            info: StoreInfo {
                office: "1370000001".into(),
                device_id: "00112233445566778899aabbccddeeff".into(),
                device_name: "tablet 3".into(),
                actor_hex: "ffeeddccbbaa99887766554433221100".into(),
                staff: None,
                created_at: "2025-04-01T09:30:00Z".into(),
                recovery_recipient: None,
            },
            kdf_work_factor: Some(10),
        }
    }

    #[test]
    fn round_trips_and_names_bad_fields() {
        let file = sample();
        let text = file.to_toml().unwrap();
        let back = StoreFile::parse(&text).unwrap();
        assert_eq!(back.info.office, "1370000001");
        assert_eq!(back.kdf_work_factor, Some(10));
        assert_eq!(back.info.staff, None);

        let broken = text.replace("00112233445566778899aabbccddeeff", "zz");
        assert!(matches!(
            StoreFile::parse(&broken),
            Err(StoreError::BadConfig { field: "device_id" })
        ));
        let newer = text.replace("format = 1", "format = 2");
        assert!(matches!(
            StoreFile::parse(&newer),
            Err(StoreError::NewerFormat { found: 2, .. })
        ));
        assert!(matches!(
            StoreFile::parse("not = [toml"),
            Err(StoreError::BadConfig {
                field: "store.toml"
            })
        ));
    }
}
