//! Helpers for end-to-end tests with the real binaries: `musubi-relay` directories and
//! server processes, `musubi` devices in temp folders.
//!
//! # Where the binaries come from
//!
//! `CARGO_BIN_EXE_*` exists only for a package's own binaries, so this crate builds them:
//! the first call to [`bin`] runs `cargo build -p musubi-app -p musubi-relay -p musubi-vcard --bins` once
//! (a no-op when they are fresh) with the profile of the running test, and uses the
//! binaries next to the test executable. Set `MUSUBI_TEST_BIN_DIR` to a directory holding
//! `musubi` and `musubi-relay` to skip the build.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Passphrase of every test device.
pub const PASS: &str = "correct horse battery staple";
/// The first office.
pub const OFFICE: &str = "1370100016";
/// A second office (valid 事業所番号 shape).
pub const OFFICE2: &str = "1370100024";

/// The directory of the binaries, built once per test process.
fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(d) = std::env::var_os("MUSUBI_TEST_BIN_DIR").filter(|d| !d.is_empty()) {
            return PathBuf::from(d);
        }
        let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
        // target/<profile>/deps/<test>-<hash>
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .unwrap_or_else(|| panic!("unexpected test executable location {}", exe.display()))
            .to_path_buf();
        // Under nextest the binaries come from the very build that made this test, and a
        // cargo build started from inside the run could re-link test binaries that other
        // tests are executing: use them as they are.
        if std::env::var_os("NEXTEST").is_some()
            && ["musubi", "musubi-relay", "musubi-vcard"]
                .iter()
                .all(|b| dir.join(b).is_file())
        {
            return dir;
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.args([
                "build",
                "--quiet",
                "--release",
                "-p",
                "musubi-app",
                "-p",
                "musubi-relay",
                "-p",
                "musubi-vcard",
                "--bins",
            ]);
        } else {
            // Exactly the build `cargo nextest run --workspace` makes (and
            // app/tests/it/card.rs asks for): after the test build this is a no-op. A plain
            // `cargo build --bins` would resolve features without the dev-dependencies and
            // compile the whole tree a second time; `cargo build --tests` would rebuild the
            // test targets in another profile and the two would keep invalidating each
            // other.
            cmd.args(["test", "--quiet", "--workspace", "--no-run"]);
        }
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("running cargo build for the binaries: {e}"));
        assert!(
            status.success(),
            "cargo build of musubi and musubi-relay failed"
        );
        dir
    })
}

/// The path of a binary of the workspace (`musubi` or `musubi-relay`).
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(p.is_file(), "binary {} not found", p.display());
    p
}

/// stderr of an output, lossily.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// stdout of an output, lossily.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check(what: &str, out: Output) -> Output {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status.code(),
        stdout(&out),
        stderr(&out)
    );
    out
}

/// A relay directory made by `musubi-relay init`.
pub struct Relay {
    /// The relay directory.
    pub dir: PathBuf,
    root: PathBuf,
}

impl Relay {
    /// `musubi-relay init --dir ROOT/relay --office OFFICE`.
    pub fn init(root: &Path, office: &str) -> Relay {
        let relay = Relay {
            dir: root.join("relay"),
            root: root.to_path_buf(),
        };
        let dir = relay.dir.to_string_lossy().into_owned();
        relay.ok(&["init", "--dir", &dir, "--office", office]);
        relay
    }

    /// `musubi-relay init --dir ROOT/relay --office OFFICE EXTRA…` (e.g. `--database URL`).
    pub fn init_with(root: &Path, office: &str, extra: &[&str]) -> Relay {
        let relay = Relay {
            dir: root.join("relay"),
            root: root.to_path_buf(),
        };
        let dir = relay.dir.to_string_lossy().into_owned();
        let mut args = vec!["init", "--dir", &dir, "--office", office];
        args.extend_from_slice(extra);
        relay.ok(&args);
        relay
    }

    /// A second node of a cluster relay: this directory copied (`cp -a`) to
    /// `ROOT/relay`, as an operator would copy it to another host.
    pub fn copy_to(&self, root: &Path) -> Relay {
        std::fs::create_dir_all(root).unwrap_or_else(|e| panic!("creating {root:?}: {e}"));
        let dir = root.join("relay");
        let status = Command::new("cp")
            .arg("-a")
            .arg(&self.dir)
            .arg(&dir)
            .status()
            .unwrap_or_else(|e| panic!("cp -a: {e}"));
        assert!(status.success(), "cp -a of the relay directory failed");
        Relay {
            dir,
            root: root.to_path_buf(),
        }
    }

    /// A `musubi-relay` command with the test environment.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin("musubi-relay"));
        c.env("MUSUBI_KDF_WORK_FACTOR", "10")
            .env_remove("MUSUBI_RELAY_DIR")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env("MUSUBI_LOG", "info");
        c
    }

    /// Runs `musubi-relay ARGS` and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self
            .cmd()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("musubi-relay: {e}"));
        stdout(&check(&format!("musubi-relay {args:?}"), out))
    }

    /// `office add`.
    pub fn add_office(&self, office: &str) {
        let dir = self.dir.to_string_lossy().into_owned();
        self.ok(&["office", "add", "--dir", &dir, "--office", office]);
    }

    /// `enroll`: returns the enrollment file and its one-time code (last stdout line).
    pub fn enroll(&self, device: &str, office: Option<&str>, address: &str) -> (PathBuf, String) {
        self.enroll_with(device, office, address, &[])
    }

    /// `enroll … EXTRA…` (e.g. `--renew`): the enrollment file and its code.
    pub fn enroll_with(
        &self,
        device: &str,
        office: Option<&str>,
        address: &str,
        extra: &[&str],
    ) -> (PathBuf, String) {
        let n = std::fs::read_dir(&self.root).map_or(0, Iterator::count);
        let out = self.root.join(format!("{device}-{n}.enroll"));
        let dir = self.dir.to_string_lossy().into_owned();
        let file = out.to_string_lossy().into_owned();
        let mut args = vec![
            "enroll",
            "--dir",
            &dir,
            "--device",
            device,
            "--address",
            address,
            "--out",
            &file,
        ];
        if let Some(o) = office {
            args.extend(["--office", o]);
        }
        args.extend_from_slice(extra);
        let text = self.ok(&args);
        let code = text
            .lines()
            .last()
            .unwrap_or_else(|| panic!("no enrollment code printed"))
            .trim()
            .to_owned();
        (out, code)
    }

    /// `revoke`.
    pub fn revoke(&self, device: &str) {
        let dir = self.dir.to_string_lossy().into_owned();
        self.ok(&["revoke", "--dir", &dir, "--device", device]);
    }

    /// Starts `musubi-relay serve` on a free loopback port.
    pub fn serve(&self) -> RelayProcess {
        self.serve_on("127.0.0.1:0")
    }

    /// Starts `musubi-relay serve --listen ADDR` and waits for its ready line.
    pub fn serve_on(&self, listen: &str) -> RelayProcess {
        self.serve_with(listen, &[])
    }

    /// Starts `musubi-relay serve --listen ADDR EXTRA…` and waits for its ready line.
    pub fn serve_with(&self, listen: &str, extra: &[&str]) -> RelayProcess {
        let log = self.root.join(format!(
            "relay-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let log_file =
            std::fs::File::create(&log).unwrap_or_else(|e| panic!("creating the relay log: {e}"));
        let mut child = self
            .cmd()
            .args(["serve", "--dir"])
            .arg(&self.dir)
            .args(["--listen", listen])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting musubi-relay serve: {e}"));
        let stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("no stdout of the relay"));
        let mut line = String::new();
        let n = BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("reading the relay's ready line: {e}"));
        if n == 0 {
            let _ = child.wait();
            panic!(
                "musubi-relay serve exited before listening:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let addr: SocketAddr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected ready line {line:?}"));
        RelayProcess {
            child: Some(child),
            addr,
            log,
        }
    }

    /// `status --json`.
    pub fn status(&self) -> serde_json::Value {
        let dir = self.dir.to_string_lossy().into_owned();
        let text = self.ok(&["status", "--dir", &dir, "--json"]);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("status {text:?}: {e}"))
    }

    /// Opens the relay's store (the server must be stopped) through the engine.
    pub fn engine(&self) -> musubi_engine::Engine {
        let key = std::fs::read_to_string(self.dir.join("store.key"))
            .unwrap_or_else(|e| panic!("reading store.key: {e}"));
        let pass = musubi_engine::store::SecretString::from(
            key.lines().next().unwrap_or("").trim().to_owned(),
        );
        let store = musubi_engine::store::Store::open(&self.dir.join("store"), &pass)
            .unwrap_or_else(|e| panic!("opening the relay store: {e}"));
        musubi_engine::Engine::new(store, None).unwrap_or_else(|e| panic!("relay engine: {e}"))
    }
}

/// A running `musubi-relay serve`; killed (SIGKILL) when dropped.
pub struct RelayProcess {
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its stderr (logs).
    pub log: PathBuf,
}

impl RelayProcess {
    /// (current, peak) resident memory of the relay process in KiB (`VmRSS`, `VmHWM` of
    /// /proc/PID/status).
    pub fn memory_kib(&self) -> (u64, u64) {
        let pid = self
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("the relay process was killed"))
            .id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Asserts the relay is still running and its peak resident memory stayed under
    /// `bound_kib`.
    pub fn assert_up_and_small(&mut self, bound_kib: u64) {
        if let Some(c) = self.child.as_mut() {
            assert!(
                matches!(c.try_wait(), Ok(None)),
                "the relay process has exited; log: {}",
                self.log.display()
            );
        }
        let (rss, hwm) = self.memory_kib();
        assert!(
            hwm < bound_kib,
            "relay peak resident memory {hwm} KiB (now {rss} KiB) over the bound {bound_kib} KiB"
        );
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits (at most 30 s) for a graceful exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| panic!("the relay is not running"));
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("kill -TERM: {e}"));
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(s)) = child.try_wait() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the relay did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The relay's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A device: a `musubi` store in its own folder.
pub struct Device {
    /// The data directory.
    pub data: PathBuf,
    /// Its name (as given at init and enrollment).
    pub name: String,
}

impl Device {
    /// `musubi init --office OFFICE --device-name NAME` in `ROOT/NAME`.
    pub fn init(root: &Path, name: &str, office: &str) -> Device {
        let d = Device {
            data: root.join(name),
            name: name.to_owned(),
        };
        d.ok(&["init", "--office", office, "--device-name", name]);
        d
    }

    /// A `musubi` command on this device's store.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin("musubi"));
        c.arg("--data-dir")
            .arg(&self.data)
            .env("MUSUBI_PASSPHRASE", PASS)
            .env("MUSUBI_KDF_WORK_FACTOR", "10")
            .env("MUSUBI_STAFF", "調査員テスト")
            .env_remove("MUSUBI_NEW_PASSPHRASE")
            .env_remove("MUSUBI_ENROLL_CODE")
            .env_remove("MUSUBI_LOG");
        c
    }

    /// Runs `musubi ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("musubi: {e}"))
    }

    /// Runs `musubi ARGS` and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        stdout(&check(
            &format!("{}: musubi {args:?}", self.name),
            self.run(args),
        ))
    }

    /// `musubi enroll FILE` with the code (redeemed at the running relay), required to
    /// succeed.
    pub fn enroll(&self, file: &Path, code: &str) {
        let out = self.try_enroll(file, code);
        check(&format!("{}: musubi enroll", self.name), out);
    }

    /// `musubi enroll FILE` with the code (not checked).
    pub fn try_enroll(&self, file: &Path, code: &str) -> Output {
        self.cmd()
            .arg("enroll")
            .arg(file)
            .env("MUSUBI_ENROLL_CODE", code)
            .output()
            .unwrap_or_else(|e| panic!("musubi enroll: {e}"))
    }

    /// `musubi sync ARGS…` (not checked).
    pub fn sync(&self, args: &[&str]) -> Output {
        let mut all = vec!["sync"];
        all.extend_from_slice(args);
        self.run(&all)
    }

    /// `musubi sync --json ARGS…`, required to succeed; the summary.
    pub fn sync_ok(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["sync", "--json"];
        all.extend_from_slice(args);
        let text = self.ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("sync summary {text:?}: {e}"))
    }

    /// An honest `musubi sync` that must complete within `limit` (beside an attack).
    pub fn sync_within(&self, limit: std::time::Duration) -> serde_json::Value {
        let started = std::time::Instant::now();
        let s = self.sync_ok(&[]);
        assert!(s["round_trips"].as_u64().is_some(), "{s}");
        assert!(
            started.elapsed() < limit,
            "the honest sync took {:?} (bound {limit:?})",
            started.elapsed()
        );
        s
    }

    /// `musubi doc import FILES…`: the new ids.
    pub fn import(&self, files: &[&Path]) -> Vec<String> {
        let mut cmd = self.cmd();
        cmd.args(["doc", "import"]).args(files);
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("musubi doc import: {e}"));
        stdout(&check(&format!("{}: doc import", self.name), out))
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Imports `doc` written to `DIR/NAME.json`, its `office` removed so that this
    /// device's office applies (the examples name office 1): the new id.
    pub fn import_value(&self, dir: &Path, name: &str, mut doc: serde_json::Value) -> String {
        if let Some(map) = doc.as_object_mut() {
            map.remove("office");
        }
        let path = dir.join(format!("{name}.json"));
        let bytes = serde_json::to_vec(&doc).unwrap_or_else(|e| panic!("{name}: {e}"));
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("writing {name}: {e}"));
        self.import(&[&path]).remove(0)
    }

    /// `musubi doc export ID`, raw bytes (for byte-identical comparisons).
    pub fn export(&self, id: &str) -> Vec<u8> {
        let out = self.run(&["doc", "export", id]);
        check(&format!("{}: doc export", self.name), out).stdout
    }

    /// Ids from `musubi doc list --json`.
    pub fn ids(&self) -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(&self.ok(&["doc", "list", "--json"]))
            .unwrap_or_else(|e| panic!("doc list: {e}"));
        let mut ids: Vec<String> = v
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }
}

/// The example survey's path.
pub fn survey_path() -> PathBuf {
    example_path("survey")
}

/// The path of the example document of `kind` (`schemas/examples/KIND.json`).
pub fn example_path(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../schemas/examples/{kind}.json"))
}
