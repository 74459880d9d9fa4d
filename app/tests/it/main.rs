//! End-to-end tests of the `musubi` binary on real SQLCipher stores in temp folders.

#![allow(clippy::unwrap_used)]

mod bundle;
mod card;
mod care;
mod cli;
mod enroll;
mod export;
mod help;
mod invalid;
mod kill;
mod logs;
mod privacy;
#[cfg(feature = "gui")]
mod ui;
#[cfg(feature = "gui")]
mod ui_card;
#[cfg(feature = "gui")]
mod ui_office;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const PASS: &str = "correct horse battery staple";
pub const OFFICE: &str = "1370100016";

pub fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/examples/survey.json")
}

pub fn example_of(kind: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../schemas/examples/{kind}.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

pub fn example() -> Value {
    serde_json::from_str(&std::fs::read_to_string(example_path()).unwrap()).unwrap()
}

/// A store in a temp folder, driven through the real binary.
pub struct Tablet {
    pub tmp: tempfile::TempDir,
}

impl Default for Tablet {
    fn default() -> Self {
        Self::new()
    }
}

impl Tablet {
    pub fn new() -> Tablet {
        Tablet::with_init_args(&[])
    }

    pub fn with_init_args(extra: &[&str]) -> Tablet {
        let t = Tablet {
            tmp: tempfile::tempdir().unwrap(),
        };
        let mut args = vec!["init", "--office", OFFICE, "--device-name", "tablet-a"];
        args.extend_from_slice(extra);
        let out = t.run(&args);
        assert!(out.status.success(), "init failed: {}", stderr(&out));
        t
    }

    pub fn data_dir(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_musubi"));
        c.arg("--data-dir")
            .arg(self.data_dir())
            .env("MUSUBI_PASSPHRASE", PASS)
            .env("MUSUBI_KDF_WORK_FACTOR", "10")
            .env("MUSUBI_STAFF", "調査員テスト")
            .env_remove("MUSUBI_NEW_PASSPHRASE")
            .env_remove("MUSUBI_LOG");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "musubi {args:?} failed ({:?}): {}",
            out.status.code(),
            stderr(&out)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn write_json(&self, name: &str, v: &Value) -> PathBuf {
        let p = self.tmp.path().join(name);
        std::fs::write(&p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
        p
    }

    pub fn import(&self, v: &Value) -> String {
        let p = self.write_json("in.json", v);
        self.ok(&["doc", "import", p.to_str().unwrap()])
            .trim()
            .to_owned()
    }

    pub fn export(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["doc", "export", id])).unwrap()
    }

    pub fn list(&self) -> Value {
        serde_json::from_str(&self.ok(&["doc", "list", "--json"])).unwrap()
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every file of the store under `dir` with its bytes: all but the log files (`logs/`),
/// which record a refused command too. Privacy checks use [`read_all`].
pub fn read_tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    read_files(dir, false, false)
}

/// Every file under `dir` with its bytes, the log files included.
pub fn read_all(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    read_files(dir, true, false)
}

/// Like [`read_all`], for a store another process is writing at that moment: a file or
/// folder that disappears between its listing and its read (SQLite removes `-wal` and
/// `-shm` when the last connection closes) is left out instead of failing the walk.
pub fn read_live(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    read_files(dir, true, true)
}

fn read_files(dir: &Path, logs: bool, live: bool) -> Vec<(PathBuf, Vec<u8>)> {
    let vanished = |e: &std::io::Error| live && e.kind() == std::io::ErrorKind::NotFound;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(entries) => entries,
            Err(e) if vanished(&e) => continue,
            Err(e) => panic!("listing {}: {e}", d.display()),
        };
        for e in entries {
            let e = match e {
                Ok(e) => e,
                Err(e) if vanished(&e) => continue,
                Err(e) => panic!("listing {}: {e}", d.display()),
            };
            let p = e.path();
            if p.is_dir() {
                if !logs && p.file_name().is_some_and(|n| n == "logs") {
                    continue;
                }
                stack.push(p);
            } else {
                match std::fs::read(&p) {
                    Ok(bytes) => out.push((p, bytes)),
                    Err(e) if vanished(&e) => {}
                    Err(e) => panic!("reading {}: {e}", p.display()),
                }
            }
        }
    }
    out.sort();
    out
}
