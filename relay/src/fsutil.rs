//! File helpers for the relay directory: its errors around the shared durable write
//! (`musubi_engine::fsutil`), bounded text reads.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::error::RelayError;

/// Largest text file of the relay directory read (config, registry, PEM files).
pub(crate) const MAX_TEXT_FILE: u64 = 16 * 1024 * 1024;

pub(crate) use musubi_engine::fsutil::fsync_dir;
use musubi_engine::fsutil::{self as shared, Existing};

/// Creates `dir` (with missing parents); a new directory is private (0700 on Unix).
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), RelayError> {
    shared::create_private_dir(dir).map_err(RelayError::io("creating a directory", dir))
}

/// Creates a new private file (0600) with `bytes` by the durable write; refuses to replace
/// an existing file.
pub(crate) fn write_new_private(path: &Path, bytes: &[u8]) -> Result<(), RelayError> {
    shared::write_file(path, bytes, Existing::Refuse)
        .map_err(RelayError::io("writing a new file", path))
}

/// Replaces `path` by the durable write, so that a crash leaves the old or the new content,
/// never a mix.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), RelayError> {
    shared::write_durably(path, bytes).map_err(RelayError::io("replacing a file", path))
}

/// Reads a UTF-8 text file of at most [`MAX_TEXT_FILE`] bytes.
pub(crate) fn read_text(path: &Path, file: &'static str) -> Result<String, RelayError> {
    let f = File::open(path).map_err(RelayError::io("reading a file", path))?;
    let mut bytes = Vec::new();
    f.take(MAX_TEXT_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(RelayError::io("reading a file", path))?;
    if bytes.len() as u64 > MAX_TEXT_FILE {
        return Err(RelayError::BadFile {
            file,
            problem: "the file is too large".into(),
        });
    }
    String::from_utf8(bytes).map_err(|_| RelayError::BadFile {
        file,
        problem: "the file is not UTF-8 text".into(),
    })
}

/// Current time, RFC 3339 UTC with seconds.
pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
