//! The virtual My Number card through the real PC/SC stack, for cross-crate scenarios:
//! pcscd with vsmartcard's vpcd driver, `musubi-vcard` as a child process, and `musubi card
//! verify` on a [`Device`]. One pcscd and one virtual reader per machine, so tests using
//! this hold [`lock`] and run in nextest's `pcsc` test group (`.config/nextest.toml`).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::e2e::{Device, bin, stderr};

/// The vpcd reader's name.
pub const READER: &str = "Virtual PCD 00 00";
/// The card's PINs.
pub const PIN: &str = "1234";

/// One scenario at a time per process (nextest also runs the group one at a time).
pub fn lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts pcscd when nothing listens on vpcd's port yet; waits for the port.
fn ensure_pcscd() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        if TcpStream::connect("127.0.0.1:35963").is_err() {
            let st = Command::new("pcscd")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap_or_else(|e| {
                    panic!("pcscd not installed (scripts/setup.sh installs it): {e}")
                });
            assert!(st.success(), "pcscd did not start");
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect("127.0.0.1:35963").is_err() {
            assert!(Instant::now() < deadline, "vpcd port 35963 never opened");
            std::thread::sleep(Duration::from_millis(100));
        }
    });
}

/// A running virtual card with its own test PKI (a fresh card per [`VCard::new`]; the same
/// card again with [`VCard::restart`]).
pub struct VCard {
    child: Option<Child>,
    /// The card's directory (test PKI, keys, PIN counters).
    pub dir: PathBuf,
}

impl VCard {
    /// A new virtual card in `dir` (its test PKI is made on first start), inserted.
    pub fn new(dir: &Path, device: &Device) -> VCard {
        ensure_pcscd();
        let mut card = VCard {
            child: None,
            dir: dir.to_path_buf(),
        };
        card.insert(device);
        card
    }

    /// Inserts the card (starts the vcard process) and waits until the reader sees it.
    pub fn insert(&mut self, device: &Device) {
        self.remove(device);
        let child = Command::new(bin("musubi-vcard"))
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting musubi-vcard: {e}"));
        self.child = Some(child);
        wait_reader(device, true);
    }

    /// Pulls the card out (stops the vcard process).
    pub fn remove(&mut self, device: &Device) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            wait_reader(device, false);
        }
    }

    /// The card's test root (PEM).
    pub fn anchor(&self) -> PathBuf {
        self.dir.join("trust-anchor.pem")
    }

    /// `musubi card verify --subject SUBJECT` on `device` with this card's test anchor.
    pub fn verify(&self, device: &Device, subject: &str) -> Output {
        device
            .cmd()
            .args(["card", "verify", "--subject", subject, "--wait", "5"])
            .args(["--reader", READER, "--trust-anchor"])
            .arg(self.anchor())
            .env("MUSUBI_CARD_PIN", PIN)
            .env("MUSUBI_CARD_SUPPORT_PIN", PIN)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("musubi card verify: {e}"))
    }

    /// [`verify`](Self::verify), required to succeed: the registration id.
    pub fn register(&self, device: &Device, subject: &str) -> String {
        let out = self.verify(device, subject);
        assert!(out.status.success(), "card verify: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("card verify output: {e}"));
        v["registration_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no registration_id in {v}"))
            .to_owned()
    }
}

impl Drop for VCard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_reader(device: &Device, present: bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = device.run(&["card", "readers"]);
        if out.status.success()
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
        {
            let now = v.as_array().is_some_and(|a| {
                a.iter()
                    .any(|r| r["name"] == READER && r["card_present"] == true)
            });
            if now == present {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "reader never became {}",
            if present { "present" } else { "empty" }
        );
        std::thread::sleep(Duration::from_millis(150));
    }
}

/// `musubi register consent --registration ID …` with a synthetic consenting person.
pub fn consent(device: &Device, registration: &str) {
    device.ok(&[
        "register",
        "consent",
        "--registration",
        registration,
        "--consented-by",
        "結城 花子",
        "--relationship",
        "本人",
        "--scope",
        "介護情報基盤での担当事業所としての情報の閲覧",
        "--method",
        "signature",
    ]);
}
