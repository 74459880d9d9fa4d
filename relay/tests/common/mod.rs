//! Helpers shared by the relay's process tests (operations, systemd, backup): the real
//! `musubi-relay` binary with a clean environment, enrolled devices, tablet stores and
//! syncs through the engine's QUIC driver.

// Each test file uses its own part of these.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use musubi_engine::Engine;
use musubi_engine::ids::DocId;
use musubi_engine::net::quic::{RetryPolicy, SyncOptions, TransportSettings, sync_once};
use musubi_engine::net::tls::DeviceCredentials;
use musubi_engine::store::{InitOptions, SecretString, Store};
use musubi_engine::sync::SyncOutcome;

/// The office of every test relay.
pub const OFFICE: &str = "1370100016";

/// `musubi-relay` with nothing of this process's environment that would change it.
pub fn relay_cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_musubi-relay"));
    c.env("MUSUBI_KDF_WORK_FACTOR", "10")
        .env_remove("MUSUBI_LOG")
        .env_remove("MUSUBI_RELAY_DIR")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID");
    c
}

/// Runs `musubi-relay ARGS`, which must succeed; its standard output.
pub fn ok(args: &[&str]) -> String {
    let out = relay_cmd().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "musubi-relay {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A path as the argument string.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A device enrolled at the relay in `dir` (file written beside it) and redeemed online
/// at `listen` with a key made here.
pub fn enrolled(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    name: &str,
    listen: &str,
) -> DeviceCredentials {
    let file = dir.parent().unwrap().join(format!(
        "{name}-{}.enroll",
        dir.file_name().unwrap().to_string_lossy()
    ));
    let out = ok(&[
        "enroll",
        "--dir",
        s(dir),
        "--device",
        name,
        "--address",
        listen,
        "--out",
        s(&file),
    ]);
    let code = out.lines().last().unwrap().to_owned();
    let ticket = musubi_engine::net::enroll::open(&std::fs::read(&file).unwrap(), &code).unwrap();
    let key = musubi_engine::net::pki::DeviceKey::generate().unwrap();
    rt.block_on(musubi_engine::net::certx::redeem(
        &ticket,
        &key,
        None,
        &TransportSettings::default(),
    ))
    .unwrap()
}

/// A new tablet store of [`OFFICE`] in `dir`.
pub fn tablet(dir: &Path, name: &str) -> Arc<Store> {
    let store = Store::init(
        dir,
        &SecretString::from("test passphrase".to_owned()),
        InitOptions {
            office: OFFICE.to_owned(),
            device_name: name.to_owned(),
            staff: None,
            recovery_recipient: None,
            kdf_work_factor: Some(10),
        },
    )
    .unwrap();
    Arc::new(store)
}

/// Imports the example survey `n` times (new ids); the ids.
pub fn add_surveys(store: &Arc<Store>, n: usize) -> Vec<DocId> {
    let engine = Engine::with_shared_store(Arc::clone(store), None).unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/examples/survey.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    (0..n)
        .map(|_| {
            engine
                .import(&[("survey.json".into(), json.clone())], 1_000)
                .unwrap()
                .ids
                .remove(0)
        })
        .collect()
}

/// Sync options for the relay at `listen`: a few quick retries.
pub fn sync_options(listen: &str) -> SyncOptions {
    SyncOptions {
        relay: Some(listen.to_owned()),
        transport: TransportSettings::default(),
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            deadline: Duration::from_secs(60),
        },
    }
}

/// One complete sync of `store` with the relay at `listen`.
pub fn sync(
    rt: &tokio::runtime::Runtime,
    store: &Arc<Store>,
    creds: &DeviceCredentials,
    listen: &str,
) -> SyncOutcome {
    rt.block_on(sync_once(
        Arc::clone(store),
        creds,
        &sync_options(listen),
        |_| {},
    ))
    .unwrap()
    .outcome
}

/// A running `musubi-relay serve` (killed when dropped).
pub struct Serving {
    pub child: Child,
    _stdout: BufReader<ChildStdout>,
    /// The QUIC address it listens on.
    pub listen: String,
    /// The metrics address, when it was asked to serve metrics.
    pub metrics: Option<String>,
    /// Its standard error.
    pub log: PathBuf,
}

impl Serving {
    /// Spawns `serve` (a `musubi-relay serve …` command) with its standard error in `log`
    /// and waits for its `listening on ADDR` line, then, with `metrics`, for `metrics on
    /// ADDR`.
    pub fn spawn(mut serve: Command, log: PathBuf, metrics: bool) -> Serving {
        let mut child = serve
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = |prefix: &str| {
            let mut l = String::new();
            stdout.read_line(&mut l).unwrap();
            match l.trim().strip_prefix(prefix) {
                Some(a) => a.to_owned(),
                None => panic!(
                    "expected {prefix:?}, got {l:?}; log: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
            }
        };
        let listen = line("listening on ");
        let metrics = metrics.then(|| line("metrics on "));
        Serving {
            child,
            _stdout: stdout,
            listen,
            metrics,
            log,
        }
    }

    /// Stops it with SIGTERM; it must exit cleanly within 30 s.
    pub fn stop(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "serve exited with {st}");
                return;
            }
            assert!(Instant::now() < deadline, "serve did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
