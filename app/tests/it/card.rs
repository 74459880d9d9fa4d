//! My Number card end to end through the *real* PC/SC stack: pcscd with vsmartcard's vpcd
//! driver, `musubi-vcard` as a child process (the virtual card), and the `musubi` binary.
//! One pcscd and one virtual reader per machine: the scenarios hold a global lock (and
//! nextest runs this group one at a time, see `.config/nextest.toml`).
//!
//! Needs `pcscd` and `vsmartcard-vpcd` (scripts/setup.sh installs them and starts pcscd;
//! these tests start pcscd themselves when it is not running).

use super::*;
use musubi_engine::card::compare::FieldMatch;
use musubi_engine::card::evidence::{Attested, check_registration};
use musubi_engine::card::roots::TrustStore;
use musubi_engine::ids::DocId;
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

const READER: &str = "Virtual PCD 00 00";
const DUMMY_MY_NUMBER: &str = "987654321097";

fn lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The musubi-vcard binary, built on demand (a test cannot name another package's binary).
fn vcard_bin() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = Path::new(env!("CARGO_BIN_EXE_musubi")).with_file_name("musubi-vcard");
        // Under nextest the binary comes from the very build that made this test; a cargo
        // build started from inside the run could re-link binaries other tests execute.
        if std::env::var_os("NEXTEST").is_some() && bin.exists() {
            return bin;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let st = Command::new(cargo)
            // Exactly the build `cargo nextest run --workspace` makes (see
            // tests/src/e2e.rs): a no-op after the test build, and it contains the
            // musubi-vcard binary.
            .args(["test", "--quiet", "--workspace", "--no-run"])
            .current_dir(workspace())
            .status()
            .unwrap();
        assert!(st.success(), "building musubi-vcard failed");
        let bin = Path::new(env!("CARGO_BIN_EXE_musubi")).with_file_name("musubi-vcard");
        assert!(bin.exists(), "{} missing", bin.display());
        bin
    })
}

/// Starts pcscd when nothing listens on vpcd's port yet; waits for the port.
fn ensure_pcscd() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        if TcpStream::connect("127.0.0.1:35963").is_err() {
            // pcscd daemonises; it stays for the whole test run (like setup.sh's).
            let st = Command::new("pcscd")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("pcscd not installed (apt-get install pcscd vsmartcard-vpcd)");
            assert!(st.success(), "pcscd did not start");
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect("127.0.0.1:35963").is_err() {
            assert!(Instant::now() < deadline, "vpcd port 35963 never opened");
            std::thread::sleep(Duration::from_millis(100));
        }
    });
}

/// A PKI template made once per test process; each card gets a copy (own PIN counters).
fn pki_template() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let st = Command::new(vcard_bin())
            .args(["--init-only", "--dir"])
            .arg(d.path())
            .status()
            .unwrap();
        assert!(st.success());
        d
    })
    .path()
}

struct VCard {
    child: Child,
    dir: tempfile::TempDir,
}

impl VCard {
    fn start(tablet: &Tablet, extra: &[&str]) -> VCard {
        ensure_pcscd();
        let dir = tempfile::tempdir().unwrap();
        for e in std::fs::read_dir(pki_template()).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
        }
        let child = Command::new(vcard_bin())
            .arg("--dir")
            .arg(dir.path())
            .arg("--apdu-log")
            .arg(dir.path().join("apdu.log"))
            .args(["--my-number", DUMMY_MY_NUMBER])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let card = VCard { child, dir };
        card.wait_present(tablet, true);
        card
    }

    fn anchor(&self) -> String {
        self.dir
            .path()
            .join("trust-anchor.pem")
            .to_str()
            .unwrap()
            .to_owned()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("apdu.log")).unwrap_or_default()
    }

    fn wait_present(&self, tablet: &Tablet, present: bool) {
        wait_reader(tablet, present);
    }

    fn stop(mut self, tablet: &Tablet) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        wait_reader(tablet, false);
        self.log()
    }
}

impl Drop for VCard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_reader(tablet: &Tablet, present: bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = tablet.run(&["card", "readers"]);
        if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            let now = v
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == READER && r["card_present"] == true);
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

fn verify(t: &Tablet, card: &VCard, subject: &str, pin: &str, extra: &[&str]) -> Output {
    t.cmd()
        .args(["card", "verify", "--subject", subject, "--wait", "5"])
        .args(["--reader", READER, "--trust-anchor", &card.anchor()])
        .args(extra)
        .env("MUSUBI_CARD_PIN", pin)
        .env("MUSUBI_CARD_SUPPORT_PIN", "1234")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn assert_my_number_untouched(log: &str) {
    assert!(log.contains("cmd=802A0080"), "not a full run:\n{log}");
    for line in log.lines() {
        let support = line.contains("df=support");
        assert!(
            !(support && (line.contains("ef=0001") || line.contains("ef=0014"))),
            "My Number EF or 照合番号A touched: {line}"
        );
        assert!(
            !line.contains("cmd=00A4020C020001"),
            "EF 0001 selected: {line}"
        );
    }
}

fn assert_no_my_number_on_disk(dir: &Path) {
    let utf16: Vec<u8> = DUMMY_MY_NUMBER
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let utf16be: Vec<u8> = DUMMY_MY_NUMBER
        .encode_utf16()
        .flat_map(u16::to_be_bytes)
        .collect();
    let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode(DUMMY_MY_NUMBER);
    let fullwidth: String = DUMMY_MY_NUMBER
        .chars()
        .map(|c| char::from_u32(c as u32 - '0' as u32 + '０' as u32).unwrap())
        .collect();
    let patterns = [
        DUMMY_MY_NUMBER.as_bytes().to_vec(),
        utf16,
        utf16be,
        sjis.into_owned(),
        fullwidth.as_bytes().to_vec(),
    ];
    let files = read_tree(dir);
    assert!(!files.is_empty());
    for (path, bytes) in &files {
        for p in &patterns {
            assert!(
                !bytes.windows(p.len()).any(|w| w == p.as_slice()),
                "the dummy My Number is in {}",
                path.display()
            );
        }
    }
}

/// `check_registration` of a stored registration with the card's test root, and the
/// statement's device is this store's (not enrolled).
fn check_evidence(t: &Tablet, card: &VCard, id: &str, reg: &Value) -> Attested {
    let mut trust = TrustStore::bundled().unwrap();
    trust
        .add_pem(&std::fs::read_to_string(card.anchor()).unwrap())
        .unwrap();
    let id: DocId = id.parse().unwrap();
    let a = check_registration(id, reg, &trust).unwrap();
    // Under the bundled J-LIS roots alone the test card's evidence counts for nothing.
    assert!(check_registration(id, reg, &TrustStore::bundled().unwrap()).is_err());
    let toml = std::fs::read_to_string(t.data_dir().join("store.toml")).unwrap();
    assert!(
        toml.contains(&format!("device_id = \"{}\"", a.statement.device)),
        "the statement names this store's device"
    );
    a
}

fn survey_tablet() -> (Tablet, String) {
    let t = Tablet::new();
    let id = t.import(&example());
    (t, id)
}

#[test]
fn card_verify_happy_path_creates_a_registration_and_never_touches_the_my_number() {
    let _g = lock();
    let (t, survey) = survey_tablet();
    let card = VCard::start(&t, &[]);
    let status = t.ok(&["card", "status", "--reader", READER]);
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["auth_pin"]["remaining"], 3);

    let out = verify(&t, &card, &survey, "1234", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["result"], "verified");
    assert_eq!(r["revocation"], "not_checked");
    assert!(r["revocation_note"].as_str().unwrap().contains("失効"));
    assert_eq!(r["comparison"]["name"], "match");
    assert_eq!(r["comparison"]["birth_date"], "match");
    assert_eq!(r["subject_created"], true);
    assert_eq!(r["statement_signature"], "ok");
    assert_eq!(r["evidence"], "verified_test_root");
    assert_eq!(r["state"], "no_consent");
    assert_eq!(r["other_registrations"], serde_json::json!([]));
    let reg_id = r["registration_id"].as_str().unwrap().to_owned();
    let subject_id = r["subject_id"].as_str().unwrap().to_owned();

    let reg = t.export(&reg_id);
    assert_eq!(reg["kind"], "registration");
    assert_eq!(reg["office"], OFFICE);
    assert_eq!(reg["subject_id"], subject_id.as_str());
    assert_eq!(reg["verification"]["result"], "verified");
    assert_eq!(reg["verification"]["revocation"], "not_checked");
    assert_eq!(reg["verification"]["staff"], "調査員テスト");
    assert_eq!(reg["withdrawals"], serde_json::json!([]));
    let subject = t.export(&subject_id);
    assert_eq!(subject["person"]["insured_number"], "0000012345");
    // The card signed a statement for exactly this registration, person, office and
    // device; the check every receiver runs accepts it (under the test root only).
    let evidence = check_evidence(&t, &card, &reg_id, &reg);
    assert_eq!(
        evidence.statement.person,
        musubi_engine::sync::sharing::person_key("131011", "0000012345")
    );
    assert_eq!(evidence.statement.office, OFFICE);
    assert!(evidence.test_root);

    // A second verification for the survey finds the same subject (no duplicate).
    let out = verify(&t, &card, &survey, "1234", &["--skip-basic4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r2: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r2["subject_id"], subject_id.as_str());
    assert_eq!(r2["subject_created"], false);
    assert_eq!(
        r2["other_registrations"][0]["registration_id"],
        reg_id.as_str()
    );
    assert_eq!(r2["other_registrations"][0]["state"], "no_consent");
    let second = r2["registration_id"].as_str().unwrap();
    let e2 = check_evidence(&t, &card, second, &t.export(second));
    assert_eq!(
        (e2.statement.name, e2.statement.birth_date),
        (FieldMatch::NotCompared, FieldMatch::NotCompared)
    );
    assert_ne!(e2.statement.nonce, evidence.statement.nonce);

    // The states the relay distinguishes.
    let anchor = card.anchor();
    let state = |t: &Tablet| -> Value {
        serde_json::from_str(&t.ok(&[
            "register",
            "status",
            "--registration",
            &reg_id,
            "--trust-anchor",
            &anchor,
        ]))
        .unwrap()
    };
    assert_eq!(state(&t)["state"], "no_consent");
    assert_eq!(state(&t)["evidence"], "verified_test_root");
    // Without the test root the evidence does not verify here: 要再確認.
    let untrusted: Value =
        serde_json::from_str(&t.ok(&["register", "status", "--registration", &reg_id])).unwrap();
    assert_eq!(untrusted["state"], "needs_reverification");
    assert_eq!(untrusted["label"], "要再確認");
    assert_eq!(untrusted["evidence"], "invalid");
    assert_eq!(
        untrusted["evidence_problem"],
        "/verification/evidence/certificate"
    );
    t.ok(&[
        "register",
        "consent",
        "--registration",
        &reg_id,
        "--consented-by",
        "結城 花子",
        "--scope",
        "介護情報基盤での担当事業所としての情報の閲覧",
        "--method",
        "signature",
    ]);
    assert_eq!(state(&t)["valid_for_sharing"], true);
    t.ok(&[
        "register",
        "withdraw",
        "--registration",
        &reg_id,
        "--reason",
        "本人の申し出",
    ]);
    assert_eq!(state(&t)["state"], "withdrawn");
    let reg = t.export(&reg_id);
    assert_eq!(reg["withdrawals"].as_array().unwrap().len(), 1);
    assert!(
        reg["consent"].is_object(),
        "consent is kept after withdrawal"
    );

    let log = card.stop(&t);
    assert_my_number_untouched(&log);
    assert_no_my_number_on_disk(&t.data_dir());
}

#[test]
fn card_wrong_pin_counts_down_refuses_the_last_try_and_locks() {
    let _g = lock();
    let (t, survey) = survey_tablet();
    let card = VCard::start(&t, &[]);
    let before = t.list();

    let out = verify(&t, &card, &survey, "9999", &[]);
    assert_eq!(out.status.code(), Some(5));
    assert!(stderr(&out).contains("残り2回"), "{}", stderr(&out));
    let out = verify(&t, &card, &survey, "9999", &[]);
    assert!(stderr(&out).contains("残り1回"), "{}", stderr(&out));
    // One try left: refused without --allow-last-try, and no try is spent.
    let out = verify(&t, &card, &survey, "1234", &[]);
    assert_eq!(out.status.code(), Some(5));
    assert!(
        stderr(&out).contains("--allow-last-try"),
        "{}",
        stderr(&out)
    );
    let status: Value =
        serde_json::from_str(&t.ok(&["card", "status", "--reader", READER])).unwrap();
    assert_eq!(status["auth_pin"]["remaining"], 1);
    // Confirmed and wrong: the card locks; afterwards the holder is sent to the municipality.
    let out = verify(&t, &card, &survey, "9999", &["--allow-last-try"]);
    assert_eq!(out.status.code(), Some(5));
    let out = verify(&t, &card, &survey, "1234", &["--allow-last-try"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(stderr(&out).contains("市区町村の窓口"), "{}", stderr(&out));
    assert!(stderr(&out).contains("ロック"), "{}", stderr(&out));
    assert_eq!(t.list(), before, "a failed verification wrote something");
    let log = card.stop(&t);
    assert!(!log.contains("cmd=802A"), "signed without a verified PIN");
}

#[test]
fn card_removed_mid_read_is_a_clear_error_and_writes_nothing() {
    let _g = lock();
    let (t, survey) = survey_tablet();
    // APDU 1 SELECT AP, 2 SELECT 000A, 3 first READ, 4 the next READ: pulled out there.
    let card = VCard::start(&t, &["--remove-after-apdus", "4"]);
    let before = t.list();
    let out = verify(&t, &card, &survey, "1234", &[]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("取り外されました"),
        "{}",
        stderr(&out)
    );
    assert_eq!(t.list(), before);
    card.stop(&t);
    // And with no card at all.
    let out = verify_no_card(&t, &survey);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("カードが置かれていません"),
        "{}",
        stderr(&out)
    );
}

fn verify_no_card(t: &Tablet, subject: &str) -> Output {
    t.cmd()
        .args([
            "card",
            "verify",
            "--subject",
            subject,
            "--wait",
            "1",
            "--reader",
            READER,
        ])
        .env("MUSUBI_CARD_PIN", "1234")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn card_bad_certificates_and_corrupt_responses_are_refused_and_write_nothing() {
    let _g = lock();
    let (t, survey) = survey_tablet();
    let before = t.list();
    let cases: &[(&[&str], &str)] = &[
        (&["--cert", "expired"], "有効期間外"),
        (&["--cert", "foreign"], "発行者を確認できません"),
        (&["--corrupt", "cert"], "発行者を確認できません"),
        (&["--corrupt", "signature"], "署名を確認できません"),
        (&["--corrupt", "short"], "応答が不正"),
        (&["--corrupt", "status"], "6F00"),
        (&["--corrupt", "basic4"], "改ざん"),
    ];
    for (flags, want) in cases {
        let card = VCard::start(&t, flags);
        let out = verify(&t, &card, &survey, "1234", &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(5), "{flags:?}: {err}");
        assert!(err.contains(want), "{flags:?}: {err}");
        assert!(!err.contains("結城"), "personal data in an error: {err}");
        let log = card.stop(&t);
        if flags[0] == "--cert" || flags[1] == "cert" {
            assert!(
                !log.contains("cmd=00200080 ****"),
                "PIN sent to an untrusted card"
            );
        }
    }
    assert_eq!(t.list(), before);
    assert_no_my_number_on_disk(&t.data_dir());
}

#[test]
fn card_name_mismatch_needs_a_staff_decision() {
    let _g = lock();
    let (t, survey) = survey_tablet();
    let card = VCard::start(&t, &["--name", "結城　華子"]);
    let before = t.list();
    let out = verify(&t, &card, &survey, "1234", &[]);
    assert_eq!(out.status.code(), Some(5));
    assert!(stderr(&out).contains("一致しません"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("華子"), "card data in the error");
    assert_eq!(t.list(), before);
    let out = verify(&t, &card, &survey, "1234", &["--accept-mismatch"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let reg = t.export(r["registration_id"].as_str().unwrap());
    assert_eq!(reg["verification"]["comparison"]["name"], "mismatch");
    assert_eq!(
        reg["verification"]["comparison"]["mismatch_accepted_by"],
        "調査員テスト"
    );
    // The card signed the mismatch; the registration carries the staff decision.
    let a = check_evidence(&t, &card, r["registration_id"].as_str().unwrap(), &reg);
    assert_eq!(a.statement.name, FieldMatch::Mismatch);
    card.stop(&t);
}
