//! File helpers for the relay directory: private permissions, atomic replacement, durable
//! creation.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use crate::error::RelayError;

/// Largest text file of the relay directory read (config, registry, PEM files).
pub(crate) const MAX_TEXT_FILE: u64 = 16 * 1024 * 1024;

fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Makes directory entry changes (create, rename) durable.
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Creates `dir` (with missing parents); a new directory is private (0700 on Unix).
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), RelayError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(RelayError::io("creating a directory", dir))
}

/// Creates a new private file (0600) with `bytes`; refuses to replace an existing file.
pub(crate) fn write_new_private(path: &Path, bytes: &[u8]) -> Result<(), RelayError> {
    let write = || -> io::Result<()> {
        let mut f = private_options().create_new(true).open(path)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    write().map_err(RelayError::io("writing a new file", path))?;
    fsync_dir(parent_dir(path)).map_err(RelayError::io("writing a new file", path))?;
    Ok(())
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Replaces `path` so that a crash leaves the old or the new content, never a mix:
/// write `path.tmp` (0600), fsync, rename over `path`, fsync the directory.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), RelayError> {
    let err = RelayError::io("replacing a file", path);
    let dir = parent_dir(path);
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let write = || -> io::Result<()> {
        let mut f = private_options().create(true).truncate(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        fsync_dir(dir)
    };
    write().map_err(err)
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
