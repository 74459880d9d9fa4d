//! End-to-end tests of the `musubi-relay` administration commands, running the real
//! binary on real relay directories (real CA, certificates, encrypted store).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use musubi_engine::Engine;
use musubi_engine::net::NetError;
use musubi_engine::net::enroll;
use musubi_engine::net::pki;
use musubi_relay::RelayDir;
use serde_json::Value;

const OFFICE: &str = "1370100016";
const OFFICE2: &str = "1370100024";

struct Relay {
    tmp: tempfile::TempDir,
}

impl Relay {
    fn new() -> Relay {
        Relay {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("relay")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_musubi-relay"));
        c.env("MUSUBI_KDF_WORK_FACTOR", "10")
            .env_remove("MUSUBI_LOG")
            .env_remove("MUSUBI_RELAY_DIR")
            .env_remove("CREDENTIALS_DIRECTORY");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs `musubi-relay <sub> --dir D <rest…>`.
    fn run_dir(&self, sub: &[&str], rest: &[&str]) -> Output {
        let dir = self.dir();
        let mut args: Vec<&str> = sub.to_vec();
        args.extend(["--dir", dir.to_str().unwrap()]);
        args.extend_from_slice(rest);
        self.run(&args)
    }

    fn ok(&self, sub: &[&str], rest: &[&str]) -> String {
        let out = self.run_dir(sub, rest);
        assert!(
            out.status.success(),
            "musubi-relay {sub:?} {rest:?} failed ({:?}): {}",
            out.status.code(),
            stderr(&out)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn init(&self, rest: &[&str]) {
        let mut args = vec!["--office", OFFICE];
        args.extend_from_slice(rest);
        self.ok(&["init"], &args);
    }

    /// Enrolls; returns the code printed on the last line.
    fn enroll(&self, device: &str, out: &Path, rest: &[&str]) -> String {
        let mut args = vec!["--device", device, "--out", out.to_str().unwrap()];
        args.extend_from_slice(rest);
        let stdout = self.ok(&["enroll"], &args);
        stdout.lines().last().unwrap().to_owned()
    }

    fn status(&self) -> Value {
        serde_json::from_str(&self.ok(&["status"], &["--json"])).unwrap()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn is_code(line: &str) -> bool {
    let groups: Vec<&str> = line.split('-').collect();
    groups.len() == 4
        && groups.iter().all(|g| {
            g.len() == 5
                && g.bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        })
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_creates_a_private_relay_directory_once() {
    let relay = Relay::new();
    relay.init(&["--host", "relay.example.jp", "--listen", "0.0.0.0:4500"]);
    let dir = RelayDir::open(&relay.dir()).unwrap();
    assert_eq!(dir.offices(), [OFFICE]);
    assert_eq!(
        dir.config().hosts,
        ["relay.example.jp", "localhost", "127.0.0.1"]
    );
    assert_eq!(dir.config().listen.to_string(), "0.0.0.0:4500");
    #[cfg(unix)]
    {
        assert_eq!(mode(&relay.dir()), 0o700);
        for f in ["ca/office-ca.key", "tls/relay.key", "store.key"] {
            assert_eq!(mode(&relay.dir().join(f)), 0o600, "{f}");
        }
    }
    let before = std::fs::read(relay.dir().join("relay.toml")).unwrap();

    // A second init refuses and changes nothing.
    let out = relay.run_dir(&["init"], &["--office", OFFICE]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(relay.dir().join("relay.toml")).unwrap(),
        before
    );

    // A bad office number is refused by field, and nothing is created.
    let other = Relay::new();
    let out = other.run_dir(&["init"], &["--office", "1370100017"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--office"), "{}", stderr(&out));
    assert!(!other.dir().exists());
    let out = other.run_dir(&["init"], &["--office", OFFICE, "--host", "bad host"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("host"), "{}", stderr(&out));
    assert!(!other.dir().exists());

    // Commands on a directory that is not a relay directory.
    let out = other.run_dir(&["status"], &[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("musubi-relay init"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn enroll_writes_a_sealed_file_and_prints_the_code_last() {
    let relay = Relay::new();
    relay.init(&["--host", "relay.example.jp"]);
    let file = relay.path("tablet-a.musubi-enroll");
    let code = relay.enroll("tablet-a", &file, &[]);
    assert!(is_code(&code), "last line is the code alone: {code:?}");
    #[cfg(unix)]
    assert_eq!(mode(&file), 0o600);

    let bytes = std::fs::read(&file).unwrap();
    let ticket = enroll::open(&bytes, &code).unwrap();
    assert_eq!(ticket.device_name, "tablet-a");
    assert_eq!(ticket.office, OFFICE);
    assert_eq!(ticket.relay_address, "relay.example.jp:4433");
    let dir = RelayDir::open(&relay.dir()).unwrap();
    assert_eq!(ticket.office_ca_pem, dir.ca_cert_pem().unwrap());
    // The file carries no private key and no device certificate: the tablet makes its
    // own key and redeems the enrollment online.
    let plain = enroll::decrypt(&bytes, &code).unwrap();
    let text = String::from_utf8(plain.to_vec()).unwrap();
    assert!(
        !text.contains("PRIVATE KEY") && !text.contains("key_pem"),
        "{text}"
    );
    assert_eq!(
        text.matches("BEGIN CERTIFICATE").count(),
        1,
        "the office CA only"
    );
    // The relay recorded a pending enrollment (the hash of the secret), no device yet.
    assert!(dir.device(&ticket.device_id).unwrap().is_none());
    let registry = std::fs::read_to_string(relay.dir().join("devices.toml")).unwrap();
    assert!(!registry.contains(&hex::encode(ticket.secret.as_slice())));
    let status: Value = serde_json::from_str(&relay.ok(&["status", "--json"], &[])).unwrap();
    assert_eq!(status["enrollments"][0]["state"], "pending");
    assert_eq!(status["enrollments"][0]["id"], ticket.device_id.as_str());

    // The file alone does not open: a different code is refused.
    let other_code = "00000-00000-00000-00000";
    assert!(matches!(
        enroll::open(&bytes, other_code),
        Err(NetError::WrongCode)
    ));

    // Once redeemed, a second active device with the same name is refused; nothing is
    // written.
    dir_redeem(&relay, &ticket, &pki::DeviceKey::generate().unwrap());
    let dup = relay.path("dup.musubi-enroll");
    let out = relay.run_dir(
        &["enroll"],
        &["--device", "tablet-a", "--out", dup.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(!dup.exists());
    assert!(!stderr(&out).contains("tablet-a"), "{}", stderr(&out));

    // An existing output file is never overwritten.
    let out = relay.run_dir(
        &["enroll"],
        &["--device", "tablet-z", "--out", file.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(std::fs::read(&file).unwrap(), bytes);

    // Unknown office; bad address; bad device name.
    for (args, needle) in [
        (
            vec!["--device", "tablet-b", "--office", OFFICE2],
            "not served",
        ),
        (
            vec!["--device", "tablet-b", "--address", "relay.example.jp"],
            "--address",
        ),
        (vec!["--device", ""], "--device"),
    ] {
        let out_file = relay.path("x.musubi-enroll");
        let mut args = args.clone();
        args.extend(["--out", out_file.to_str().unwrap()]);
        let out = relay.run_dir(&["enroll"], &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
        assert!(!out_file.exists());
    }
}

#[test]
fn offices_revocation_and_status() {
    let relay = Relay::new();
    relay.init(&[]);
    relay.ok(&["office", "add"], &["--office", OFFICE2]);
    let out = relay.run_dir(&["office", "add"], &["--office", OFFICE2]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = relay.run_dir(&["office", "add"], &["--office", "12"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        relay.ok(&["office", "list"], &[]),
        format!("{OFFICE}\n{OFFICE2}\n")
    );

    // With two offices, enroll needs --office.
    let a = relay.path("a.musubi-enroll");
    let out = relay.run_dir(
        &["enroll"],
        &["--device", "tablet-a", "--out", a.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--office"), "{}", stderr(&out));
    let code_a = relay.enroll("tablet-a", &a, &["--office", OFFICE]);
    let b = relay.path("b.musubi-enroll");
    let code_b = relay.enroll(
        "tablet-b",
        &b,
        &["--office", OFFICE2, "--address", "127.0.0.1:5555"],
    );
    let creds_a = enroll::open(&std::fs::read(&a).unwrap(), &code_a).unwrap();
    let creds_b = enroll::open(&std::fs::read(&b).unwrap(), &code_b).unwrap();
    let [id_a, id_b] = [&creds_a, &creds_b].map(|t| {
        let key = pki::DeviceKey::generate().unwrap();
        let pem = dir_redeem(&relay, t, &key);
        pki::peer_identity(&pki::cert_der_from_pem(&pem, "c").unwrap()).unwrap()
    });
    assert_eq!(creds_b.office, OFFICE2);
    assert_eq!(creds_b.relay_address, "127.0.0.1:5555");
    assert_eq!(creds_a.relay_address, "localhost:4433");

    // A document of office 1 in the relay store (imported through the engine).
    let dir = RelayDir::open(&relay.dir()).unwrap();
    let survey: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/examples/survey.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let engine = Engine::new(dir.open_store().unwrap(), None).unwrap();
    engine
        .import(&[("survey.json".to_owned(), survey)], 1_700_000_000_000)
        .unwrap();
    engine.close().unwrap();

    // The check a running server holds sees a revocation made by another process.
    let check = dir.revocation();
    assert!(!check.is_revoked(&id_a));
    let out = relay.run_dir(&["revoke"], &["--device", "tablet-a"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(check.is_revoked(&id_a));
    assert!(!check.is_revoked(&id_b));
    let out = relay.run_dir(&["revoke"], &["--device", "tablet-a"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // By id works too.
    let out = relay.run_dir(&["revoke"], &["--device", &creds_b.device_id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(check.is_revoked(&id_b));

    let status = relay.status();
    let offices = status["offices"].as_array().unwrap();
    assert_eq!(offices.len(), 2);
    assert_eq!(offices[0]["office"], OFFICE);
    assert_eq!(offices[0]["documents"], 1);
    assert_eq!(offices[0]["revoked_devices"], 1);
    assert_eq!(offices[1]["documents"], 0);
    let devices = status["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2);
    assert!(devices.iter().all(|d| d["state"] == "revoked"));
    assert_eq!(devices[0]["id"], creds_a.device_id.as_str());

    // Human output too; neither form shows document content or keys.
    let text = relay.ok(&["status"], &[]);
    assert!(
        text.contains(OFFICE) && text.contains("documents 1"),
        "{text}"
    );
    let json = serde_json::to_string(&status).unwrap();
    for secret in ["結城", "花子", "PRIVATE KEY", &code_a] {
        assert!(!text.contains(secret) && !json.contains(secret), "{secret}");
    }

    // A replacement tablet can take the revoked name.
    let a2 = relay.path("a2.musubi-enroll");
    relay.enroll("tablet-a", &a2, &["--office", OFFICE]);
}

#[test]
fn store_key_from_a_systemd_credential() {
    let relay = Relay::new();
    relay.init(&[]);
    // Move the key to a credentials directory, as systemd's LoadCredential= provides it.
    let creds_dir = relay.path("credentials");
    std::fs::create_dir(&creds_dir).unwrap();
    std::fs::rename(
        relay.dir().join("store.key"),
        creds_dir.join("musubi-relay-store-key"),
    )
    .unwrap();

    let out = relay.run_dir(&["status"], &[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("store key"), "{}", stderr(&out));

    let out = relay
        .cmd()
        .env("CREDENTIALS_DIRECTORY", &creds_dir)
        .args(["status", "--json", "--dir", relay.dir().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["offices"][0]["documents"], 0);
}

#[test]
fn serve_reports_configuration_problems_clearly() {
    let relay = Relay::new();
    let out = relay.run_dir(&["serve"], &[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));

    relay.init(&[]);
    let config = relay.path("serve.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nunknown = 1\n").unwrap();
    let out = relay.run_dir(&["serve"], &["--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("serve.toml"), "{}", stderr(&out));
    assert!(stderr(&out).contains("unknown"), "{}", stderr(&out));
    let out = relay.run_dir(&["serve"], &["--listen", "not-an-address"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// Redeems an enrollment through the relay directory as the server does (the online
/// exchange itself is tested in tests/tests/enrollment_e2e.rs): the certificate PEM.
fn dir_redeem(relay: &Relay, ticket: &enroll::EnrollmentTicket, key: &pki::DeviceKey) -> String {
    let dir = RelayDir::open(&relay.dir()).unwrap();
    dir.redeem(&musubi_relay::enrollment::RedeemRequest {
        device_id: &ticket.device_id,
        secret: ticket.secret.as_slice(),
        spki_der: &key.spki_der,
        validity: pki::DEVICE_VALIDITY,
    })
    .unwrap()
    .unwrap()
}

#[test]
fn device_identity_matches_the_relay_registry() {
    // The enrolled certificate carries exactly the id/office the registry recorded.
    let relay = Relay::new();
    relay.init(&[]);
    let f = relay.path("t.musubi-enroll");
    let code = relay.enroll("訪問看護タブレット", &f, &[]);
    let ticket = enroll::open(&std::fs::read(&f).unwrap(), &code).unwrap();
    let key = pki::DeviceKey::generate().unwrap();
    let cert_pem = dir_redeem(&relay, &ticket, &key);
    let der = pki::cert_der_from_pem(&cert_pem, "device certificate").unwrap();
    let id = pki::peer_identity(&der).unwrap();
    let dir = RelayDir::open(&relay.dir()).unwrap();
    let rec = dir.device(&id.device_id).unwrap().unwrap();
    assert_eq!(rec.name, "訪問看護タブレット");
    assert_eq!(rec.office, id.office);
    assert_eq!(rec.fingerprint, id.fingerprint_hex());
}

#[test]
fn enroll_accepts_a_bare_file_name_in_the_current_directory() {
    let relay = Relay::new();
    relay.init(&[]);
    let dir = relay.dir();
    let out = relay
        .cmd()
        .current_dir(relay.tmp.path())
        .args(["enroll", "--dir", dir.to_str().unwrap()])
        .args(["--device", "tablet-q", "--out", "q.enroll"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(relay.path("q.enroll").is_file());
}
