//! The log file in the data directory: `DATA_DIR/logs/musubi.log`, rotated by size
//! (`musubi.log.1` … `musubi.log.N`, the oldest dropped), owner-only (0700 directory,
//! 0600 files), created at the first line written and never before the data directory
//! exists (the store creates that). What reaches it is what `tracing` records at `info`
//! and above from musubi itself: events name documents by id and never carry names,
//! numbers, addresses, note text or titles (`tests/it/logs.rs` checks it on real runs).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Name of the log directory inside the data directory.
pub const LOG_DIR: &str = "logs";
/// Name of the current log file inside [`LOG_DIR`].
pub const LOG_FILE: &str = "musubi.log";
/// Size at which the current file is rotated.
pub const MAX_BYTES: u64 = 1024 * 1024;
/// Rotated files kept besides the current one.
pub const KEEP: usize = 4;

/// A size-rotated log file; a `std::io::Write` for `tracing_subscriber` (behind a
/// `Mutex`). Every `write` is one formatted event, so rotation never splits a line.
#[derive(Debug)]
pub struct RotatingFile {
    data_dir: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: Option<File>,
    size: u64,
}

impl RotatingFile {
    /// A log in `data_dir/logs/`, rotated at `max_bytes`, keeping `keep` older files.
    /// Nothing is created until the first write.
    pub fn new(data_dir: &Path, max_bytes: u64, keep: usize) -> RotatingFile {
        RotatingFile {
            data_dir: data_dir.to_path_buf(),
            max_bytes: max_bytes.max(1),
            keep,
            file: None,
            size: 0,
        }
    }

    /// The current log file's path.
    pub fn path(&self) -> PathBuf {
        self.data_dir.join(LOG_DIR).join(LOG_FILE)
    }

    fn rotated(&self, n: usize) -> PathBuf {
        self.data_dir.join(LOG_DIR).join(format!("{LOG_FILE}.{n}"))
    }

    fn open(&mut self) -> io::Result<()> {
        let dir = self.data_dir.join(LOG_DIR);
        if !dir.is_dir() {
            let mut b = std::fs::DirBuilder::new();
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt as _;
                b.mode(0o700);
            }
            b.create(&dir)?;
        }
        let mut opts = OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let file = opts.open(self.path())?;
        self.size = file.metadata()?.len();
        self.file = Some(file);
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        if self.keep == 0 {
            return std::fs::remove_file(self.path());
        }
        match std::fs::remove_file(self.rotated(self.keep)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        for n in (1..self.keep).rev() {
            match std::fs::rename(self.rotated(n), self.rotated(n + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(self.path(), self.rotated(1))
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Without a data directory there is no store and nothing to keep a log beside:
        // the line goes to standard error only.
        if !self.data_dir.is_dir() {
            return Ok(buf.len());
        }
        if self.file.is_none() {
            self.open()?;
        }
        if self.size > 0 && self.size + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
            self.open()?;
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(buf.len());
        };
        file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.join(LOG_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn nothing_is_created_before_a_write_nor_without_a_data_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = RotatingFile::new(tmp.path(), 100, 2);
        assert!(!tmp.path().join(LOG_DIR).exists());
        log.flush().unwrap();
        assert!(!tmp.path().join(LOG_DIR).exists());

        let missing = tmp.path().join("no-store-here");
        let mut log = RotatingFile::new(&missing, 100, 2);
        log.write_all(b"a line\n").unwrap();
        assert!(
            !missing.exists(),
            "the data directory is the store's to create"
        );
    }

    #[test]
    fn rotates_by_size_and_keeps_n_files_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = RotatingFile::new(tmp.path(), 100, 2);
        for i in 0..20 {
            log.write_all(format!("line {i:02} {}\n", "x".repeat(30)).as_bytes())
                .unwrap();
        }
        assert_eq!(
            names(tmp.path()),
            ["musubi.log", "musubi.log.1", "musubi.log.2"]
        );
        let read = |n: &str| std::fs::read_to_string(tmp.path().join(LOG_DIR).join(n)).unwrap();
        // 40 bytes a line, 100 bytes a file: two lines each, the newest in musubi.log.
        assert!(read("musubi.log").starts_with("line 18"));
        assert!(read("musubi.log").contains("line 19"));
        assert!(read("musubi.log.1").starts_with("line 16"));
        assert!(read("musubi.log.2").starts_with("line 14"));
        for n in names(tmp.path()) {
            assert!(
                std::fs::metadata(tmp.path().join(LOG_DIR).join(&n))
                    .unwrap()
                    .len()
                    <= 100
            );
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&tmp.path().join(LOG_DIR)), 0o700);
            for n in names(tmp.path()) {
                assert_eq!(mode(&tmp.path().join(LOG_DIR).join(n)), 0o600);
            }
        }
    }

    #[test]
    fn a_new_run_appends_to_the_current_file() {
        let tmp = tempfile::tempdir().unwrap();
        RotatingFile::new(tmp.path(), 1000, 2)
            .write_all(b"first run\n")
            .unwrap();
        RotatingFile::new(tmp.path(), 1000, 2)
            .write_all(b"second run\n")
            .unwrap();
        let text = std::fs::read_to_string(tmp.path().join(LOG_DIR).join(LOG_FILE)).unwrap();
        assert_eq!(text, "first run\nsecond run\n");
    }
}
