//! A throwaway PostgreSQL cluster for tests: started once per test process, a fresh
//! database per test, stopped and removed when the process ends.
//!
//! The cluster runs the distribution's PostgreSQL (`/usr/lib/postgresql/<version>/bin`,
//! installed by `scripts/setup.sh`), listens only on a Unix socket in its temporary
//! directory, trusts local connections (nothing else can reach it), and runs as the
//! `postgres` system user when the tests run as root (`initdb` refuses root).
//!
//! There is no silent skip: without PostgreSQL every test that asks for a database
//! fails with a message saying what to install.
//!
//! ```no_run
//! let db = musubi_pgtest::database();
//! let mut client = postgres::Client::connect(&db.url(), postgres::NoTls).unwrap();
//! ```

#![allow(clippy::unwrap_used)] // test support: a failure here must stop the test at once.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// Where the distribution installs PostgreSQL's server binaries.
pub const PG_LIB: &str = "/usr/lib/postgresql";
/// The superuser of the throwaway cluster.
pub const USER: &str = "musubi";

/// One running throwaway cluster.
pub struct Cluster {
    bin: PathBuf,
    root: tempfile::TempDir,
    port: u16,
    run_as: Option<&'static str>,
}

/// The newest installed server binary directory, or a clear failure.
pub fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(PG_LIB)
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not installed ({PG_LIB}: {e}); run scripts/setup.sh \
                 (apt-get install postgresql) — the PostgreSQL tests need a real server"
            )
        })
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b).unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server under {PG_LIB} (no */bin/initdb); run scripts/setup.sh \
             (apt-get install postgresql)"
        )
    })
}

fn is_root() -> bool {
    // The uid of this process: /proc/self is owned by it.
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

impl Cluster {
    /// Starts a new cluster (about 1–2 s).
    pub fn start() -> Cluster {
        let bin = bin_dir();
        let root = tempfile::Builder::new()
            .prefix("musubi-pg-")
            .tempdir()
            .unwrap();
        let run_as = is_root().then_some("postgres");
        if run_as.is_some() {
            let status = Command::new("chown")
                .arg("postgres")
                .arg(root.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown of the cluster directory failed");
        }
        // A port per process (the socket lives in our own directory, but PostgreSQL also
        // names its lock file after the port).
        let port = 40000 + (std::process::id() % 20000) as u16;
        let c = Cluster {
            bin,
            root,
            port,
            run_as,
        };
        let data = c.data_dir();
        c.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                USER,
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let opts = format!(
            "-k {} -c listen_addresses='' -p {} -c fsync=off -c max_connections=200",
            c.root.path().display(),
            c.port
        );
        let log = c.root.path().join("log");
        c.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &opts,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        c
    }

    fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .command(tool)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} failed: {}\n{}\nlog: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.root.path().join("log")).unwrap_or_default()
        );
    }

    /// The Unix socket directory.
    pub fn socket_dir(&self) -> &Path {
        self.root.path()
    }

    /// The port (names the socket file).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for `database` (the socket directory, percent-encoded, as host).
    pub fn url(&self, database: &str) -> String {
        let host: String = self
            .socket_dir()
            .to_str()
            .unwrap()
            .bytes()
            .map(|b| match b {
                b'/' => "%2F".to_owned(),
                b if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' => {
                    (b as char).to_string()
                }
                b => format!("%{b:02X}"),
            })
            .collect();
        format!("postgresql://{USER}@{host}:{}/{database}", self.port)
    }

    /// Creates an empty database and returns its name.
    pub fn create_database(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let mut admin = postgres::Client::connect(&self.url("postgres"), postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot connect to the test cluster: {e}"));
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        name
    }

    /// Runs `pg_dump --data-only` of `database` and returns its text.
    pub fn dump(&self, database: &str) -> String {
        let out = self
            .command("pg_dump")
            .args(["--data-only", "-h"])
            .arg(self.socket_dir())
            .args(["-p", &self.port.to_string(), "-U", USER, database])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_dump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Stops the server (fast shutdown: sessions are cut).
    pub fn stop(&self) {
        let data = self.data_dir();
        let _ = self
            .command("pg_ctl")
            .args(["-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Starts the server again after [`stop`](Self::stop).
    pub fn restart(&self) {
        let data = self.data_dir();
        let opts = format!(
            "-k {} -c listen_addresses='' -p {} -c fsync=off -c max_connections=200",
            self.root.path().display(),
            self.port
        );
        let log = self.root.path().join("log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &opts,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A fresh database in the process's cluster.
pub struct Database {
    /// Its name.
    pub name: String,
}

impl Database {
    /// Its connection URL.
    pub fn url(&self) -> String {
        cluster().url(&self.name)
    }

    /// `pg_dump --data-only` of it.
    pub fn dump(&self) -> String {
        cluster().dump(&self.name)
    }
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
/// The pipe to the watcher of [`stop_at_exit`]; closed by the kernel when we exit.
static WATCHER: Mutex<Option<std::process::ChildStdin>> = Mutex::new(None);

/// The process's cluster, started on first use and stopped when the process exits.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let c = Cluster::start();
        stop_at_exit(&c);
        c
    })
}

/// A fresh, empty database in the process's cluster.
pub fn database() -> Database {
    Database {
        name: cluster().create_database(),
    }
}

/// Statics are never dropped, so a watcher process stops the server and removes its
/// directory once this process is gone: it waits for the end of its standard input, a
/// pipe whose writing end only this process holds (Rust opens pipes close-on-exec).
// The watcher must outlive this process (it acts on our exit), so it is never waited for.
#[allow(clippy::zombie_processes)]
fn stop_at_exit(c: &Cluster) {
    let pg_ctl = c.bin.join("pg_ctl");
    let data = c.data_dir();
    let stop = match c.run_as {
        Some(user) => format!(
            "runuser -u {user} -- '{}' -D '{}' -m immediate -w stop",
            pg_ctl.display(),
            data.display()
        ),
        None => format!(
            "'{}' -D '{}' -m immediate -w stop",
            pg_ctl.display(),
            data.display()
        ),
    };
    let script = format!(
        "cat >/dev/null; {stop} >/dev/null 2>&1; rm -rf '{}'",
        c.root.path().display()
    );
    let child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the cluster's watcher: {e}"));
    *WATCHER.lock().unwrap_or_else(|p| p.into_inner()) = child.stdin;
}
