//! The store's file system helpers: its errors around the shared durable write
//! ([`crate::fsutil`]), quarantine, wall-clock time.
//!
//! This is the store's driver layer, so it is the one place that reads `SystemTime`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use musubi_core::date::CalendarDate;

use super::error::StoreError;
pub(crate) use crate::fsutil::fsync_dir;

/// [`crate::fsutil::write_durably`] with the store's error type.
pub(crate) fn atomic_write(
    path: &Path,
    bytes: &[u8],
    context: &'static str,
) -> Result<(), StoreError> {
    if path.parent().is_none() {
        return Err(StoreError::BadInput {
            what: "file path has no parent directory",
        });
    }
    crate::fsutil::write_durably(path, bytes).map_err(StoreError::io(context))
}

/// Creates `dir` (and its parents) if missing; on Unix a newly created data directory is
/// private to the user (0700).
pub(crate) fn create_private_dir(dir: &Path, context: &'static str) -> Result<(), StoreError> {
    crate::fsutil::create_private_dir(dir).map_err(StoreError::io(context))
}

/// Reads a file, returning `None` if it does not exist.
pub(crate) fn read_optional(
    path: &Path,
    context: &'static str,
) -> Result<Option<Vec<u8>>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::Io { context, source: e }),
    }
}

/// Current time as unix milliseconds (0 if the clock is before 1970).
pub(crate) fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Current time as unix seconds.
fn now_unix_secs() -> i64 {
    now_unix_ms().div_euclid(1000)
}

/// Civil UTC date-time from unix seconds: (year, month, day, hour, minute, second). The
/// date is the core's [`CalendarDate`], clamped to its years 1 to 9999.
fn civil_from_unix(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let date = CalendarDate::from_days_since_epoch(days).unwrap_or(if days < 0 {
        CalendarDate::MIN
    } else {
        CalendarDate::MAX
    });
    // All casts below are of values already bounded to small ranges.
    let to_u32 = |v: i64| u32::try_from(v).unwrap_or(0);
    (
        i64::from(date.year()),
        u32::from(date.month()),
        u32::from(date.day()),
        to_u32(rem / 3600),
        to_u32(rem % 3600 / 60),
        to_u32(rem % 60),
    )
}

/// RFC 3339 UTC, e.g. `2025-04-01T09:30:00Z`.
pub(crate) fn rfc3339_utc_now() -> String {
    rfc3339_utc(now_unix_secs())
}

/// Unix seconds as RFC 3339 UTC, e.g. `2025-04-01T09:30:00Z`.
pub fn rfc3339_utc(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil_from_unix(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Compact UTC stamp for folder names, e.g. `20250401T093000Z`.
fn folder_stamp_now() -> String {
    let (y, mo, d, h, mi, s) = civil_from_unix(now_unix_secs());
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// Creates a new, empty `quarantine/<UTC stamp>[-n]/` folder under `dir`. Never reuses an
/// existing folder, so nothing already quarantined can be overwritten.
fn new_quarantine_folder(dir: &Path) -> Result<PathBuf, StoreError> {
    let base = dir.join("quarantine");
    fs::create_dir_all(&base).map_err(StoreError::io("creating the quarantine folder"))?;
    let stamp = folder_stamp_now();
    for n in 0u32..1000 {
        let name = if n == 0 {
            stamp.clone()
        } else {
            format!("{stamp}-{n}")
        };
        let candidate = base.join(name);
        match fs::create_dir(&candidate) {
            Ok(()) => {
                fsync_dir(&base).map_err(StoreError::io("creating the quarantine folder"))?;
                return Ok(candidate);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(StoreError::Io {
                    context: "creating the quarantine folder",
                    source: e,
                });
            }
        }
    }
    Err(StoreError::Io {
        context: "creating the quarantine folder",
        source: io::Error::new(
            io::ErrorKind::AlreadyExists,
            "too many quarantine folders this second",
        ),
    })
}

/// Moves those of `names` (file names inside `dir`) that exist into a fresh quarantine
/// folder, in the given order, and returns the folder. Files are renamed, never copied and
/// deleted, so the original bytes stay as they were.
pub(crate) fn quarantine_files(dir: &Path, names: &[&str]) -> Result<PathBuf, StoreError> {
    let folder = new_quarantine_folder(dir)?;
    for name in names {
        let from = dir.join(name);
        match fs::rename(&from, folder.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StoreError::Io {
                    context: "moving the database into quarantine",
                    source: e,
                });
            }
        }
    }
    fsync_dir(&folder).map_err(StoreError::io("moving the database into quarantine"))?;
    fsync_dir(dir).map_err(StoreError::io("moving the database into quarantine"))?;
    Ok(folder)
}

/// Whether `dir/quarantine` holds at least one entry.
pub(crate) fn has_quarantine(dir: &Path) -> Result<bool, StoreError> {
    match fs::read_dir(dir.join("quarantine")) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::Io {
            context: "looking for quarantined databases",
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_match_known_instants() {
        assert_eq!(civil_from_unix(0), (1970, 1, 1, 0, 0, 0));
        // 2000-02-29T12:34:56Z (leap day).
        assert_eq!(civil_from_unix(951_827_696), (2000, 2, 29, 12, 34, 56));
        // 2024-12-31T23:59:59Z.
        assert_eq!(civil_from_unix(1_735_689_599), (2024, 12, 31, 23, 59, 59));
    }
}
