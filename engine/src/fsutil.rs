//! The one durable file write of musubi, used by every writer (store files, bundle files,
//! exports, recovery keys, the relay directory and its backups).
//!
//! A write goes to a private temporary file beside the target (0600 on Unix), is flushed
//! and fsynced, renamed onto the target, and the directory is fsynced so the rename itself
//! survives a crash. The target therefore holds either its old content or the whole new
//! content, never a part; a failed write removes its temporary file and leaves the target
//! as it was.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Whether a durable write may replace a file that already exists at the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Replace the target atomically.
    Replace,
    /// Refuse with [`io::ErrorKind::AlreadyExists`] if the target exists, even if it
    /// appeared while the file was being written.
    Refuse,
}

/// A file being written durably: a private temporary file beside its target. Write to it
/// (it implements [`Write`]), then [`DurableFile::commit`]; dropped without a commit, the
/// temporary file is removed and the target is untouched.
pub struct DurableFile {
    tmp: tempfile::NamedTempFile,
    target: PathBuf,
}

impl DurableFile {
    /// Starts writing `target`: creates the temporary file in the target's directory.
    pub fn create(target: &Path) -> io::Result<DurableFile> {
        let name = target
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
        let mut prefix = std::ffi::OsString::from(".");
        prefix.push(name);
        prefix.push(".");
        // tempfile creates the file with O_EXCL and mode 0600 on Unix.
        let tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".partial")
            .tempfile_in(parent_dir(target))?;
        Ok(DurableFile {
            tmp,
            target: target.to_path_buf(),
        })
    }

    /// The temporary file (for its metadata, or to write through a `&File`).
    pub fn as_file(&self) -> &File {
        self.tmp.as_file()
    }

    /// Flushes the file to disk, renames it onto the target (refusing an existing target
    /// when `existing` is [`Existing::Refuse`]) and makes the rename durable.
    pub fn commit(mut self, existing: Existing) -> io::Result<()> {
        self.tmp.flush()?;
        self.tmp.as_file().sync_all()?;
        let persisted = match existing {
            Existing::Replace => self.tmp.persist(&self.target),
            Existing::Refuse => self.tmp.persist_noclobber(&self.target),
        };
        // On failure the returned temporary file is dropped here, which removes it.
        persisted.map_err(|e| e.error)?;
        fsync_dir(parent_dir(&self.target))
    }
}

impl Write for DurableFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tmp.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.tmp.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tmp.flush()
    }
}

/// Writes `bytes` to `path` durably (see the module doc), replacing an existing file.
pub fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_file(path, bytes, Existing::Replace)
}

/// Writes `bytes` to `path` durably (see the module doc); `existing` says whether an
/// existing file may be replaced.
pub fn write_file(path: &Path, bytes: &[u8], existing: Existing) -> io::Result<()> {
    let mut file = DurableFile::create(path)?;
    file.write_all(bytes)?;
    file.commit(existing)
}

/// Makes a directory entry change (create, rename) durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        // Windows cannot open a directory as a file; NTFS journals metadata itself.
        let _ = dir;
        Ok(())
    }
}

/// Creates `dir` (with missing parents); a directory it creates is private to the user
/// (0700 on Unix).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn write_replaces_the_target_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.toml");
        write_durably(&path, b"old").unwrap();
        write_durably(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(entries(dir.path()), ["a.toml"]);
    }

    #[cfg(unix)]
    #[test]
    fn written_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.age");
        write_file(&path, b"secret", Existing::Refuse).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn refuse_keeps_an_existing_target_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.pdf");
        fs::write(&path, b"keep me").unwrap();
        let e = write_file(&path, b"other", Existing::Refuse).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"keep me");
        assert_eq!(entries(dir.path()), ["out.pdf"]);
    }

    #[test]
    fn a_target_that_appears_during_the_write_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup.age");
        let mut file = DurableFile::create(&path).unwrap();
        file.write_all(b"half").unwrap();
        fs::write(&path, b"someone else's").unwrap();
        file.write_all(b" and the rest").unwrap();
        let e = file.commit(Existing::Refuse).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"someone else's");
        assert_eq!(entries(dir.path()), ["backup.age"]);
    }

    #[test]
    fn an_abandoned_write_leaves_the_target_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle.age");
        fs::write(&path, b"old").unwrap();
        let mut file = DurableFile::create(&path).unwrap();
        file.write_all(b"partial new content").unwrap();
        // The writer failed part-way (an encryption error, a full disk): no commit.
        drop(file);
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(entries(dir.path()), ["bundle.age"]);
    }

    #[test]
    fn a_missing_directory_fails_without_creating_anything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("a.toml");
        let e = write_durably(&path, b"x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn a_failed_rename_leaves_the_target_unchanged() {
        // A non-empty directory at the target makes the rename itself fail, whoever runs
        // the test (root ignores a read-only directory).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("target");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), b"old").unwrap();
        assert!(write_durably(&path, b"new").is_err());
        assert_eq!(fs::read(path.join("inside")).unwrap(), b"old");
        assert_eq!(entries(dir.path()), ["target"]);
    }

    #[test]
    fn a_path_without_a_file_name_is_refused() {
        let e = write_durably(Path::new("/"), b"x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
