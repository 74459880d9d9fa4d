//! `musubi enroll FILE`: enrollment files made with the real office PKI and sealed with
//! the real age/scrypt code, checked by the real binary against a real store. Redeeming
//! a file at a running relay (the success path, reuse, renewal) is tested with real relay
//! processes in tests/tests/enrollment_e2e.rs.

use crate::{OFFICE, PASS, Tablet, read_tree, stderr};
use musubi_engine::net::enroll::{self, EnrollmentCode, EnrollmentTicket};
use musubi_engine::net::pki::{DeviceSubject, OfficeCa};
use musubi_engine::net::tls::DeviceCredentials;
use musubi_engine::store::{SecretString, Store};
use std::path::{Path, PathBuf};

/// An enrollment file for `office`, as `musubi-relay enroll` makes it, naming a relay at
/// `address`.
fn enrollment_at(
    tablet: &Tablet,
    office: &str,
    name: &str,
    address: &str,
) -> (PathBuf, EnrollmentCode, EnrollmentTicket) {
    let ca = OfficeCa::generate("relay-under-test").unwrap();
    let subject = DeviceSubject::new_random(name, office).unwrap();
    let ticket = EnrollmentTicket::new(&subject, address, ca.cert_pem()).unwrap();
    let (bytes, code) = enroll::seal(&ticket).unwrap();
    let path = tablet.tmp.path().join(format!("{name}.musubi-enroll"));
    std::fs::write(&path, bytes).unwrap();
    (path, code, ticket)
}

fn enrollment(
    tablet: &Tablet,
    office: &str,
    name: &str,
) -> (PathBuf, EnrollmentCode, EnrollmentTicket) {
    enrollment_at(tablet, office, name, "relay.example.jp:4433")
}

fn stored(tablet: &Tablet) -> Option<DeviceCredentials> {
    let store = Store::open(&tablet.data_dir(), &SecretString::from(PASS.to_owned())).unwrap();
    let creds = enroll::load_credentials(&store).unwrap();
    store.close().unwrap();
    creds
}

fn enroll_with(tablet: &Tablet, file: &Path, code: &str) -> std::process::Output {
    tablet
        .cmd()
        .env("MUSUBI_ENROLL_CODE", code)
        .args(["enroll", file.to_str().unwrap()])
        .output()
        .unwrap()
}

#[test]
fn enrollment_needs_the_relay_and_stores_nothing_without_it() {
    let t = Tablet::new();
    // A loopback port where no relay listens: the enrollment cannot be redeemed.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (file, code, _) = enrollment_at(&t, OFFICE, "tablet-a", &format!("127.0.0.1:{port}"));
    let typed = code.grouped().to_lowercase().replace('-', " ");
    let out = t
        .cmd()
        .env("MUSUBI_ENROLL_CODE", &typed)
        .args(["enroll", file.to_str().unwrap()])
        .output()
        .unwrap();
    // Exit 1 (try again later), explained in Japanese, nothing enrolled.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("登録できませんでした"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("接続できません"), "{}", stderr(&out));
    assert_eq!(stored(&t), None);
    // No private key in the clear anywhere (the key made for the retry is inside the
    // encrypted store).
    for (path, bytes) in read_tree(&t.data_dir()) {
        let hay = String::from_utf8_lossy(&bytes);
        assert!(!hay.contains("PRIVATE KEY"), "{}", path.display());
    }
}

#[test]
fn bad_file_or_code_changes_nothing_and_exits_2() {
    let t = Tablet::new();
    let (file, code, _) = enrollment(&t, OFFICE, "tablet-a");
    let before = read_tree(&t.data_dir());

    // Wrong code.
    let out = enroll_with(&t, &file, "00000-00000-00000-00000");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("code does not match"),
        "{}",
        stderr(&out)
    );
    // Malformed code.
    let out = enroll_with(&t, &file, "12345");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("20 letters"), "{}", stderr(&out));
    // Truncated file.
    let bytes = std::fs::read(&file).unwrap();
    let cut = t.tmp.path().join("cut.musubi-enroll");
    std::fs::write(&cut, &bytes[..bytes.len() - 20]).unwrap();
    let out = enroll_with(&t, &cut, &code.grouped());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("damaged"), "{}", stderr(&out));
    // Not an enrollment file at all; a missing file.
    let out = enroll_with(&t, &crate::example_path(), &code.grouped());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = enroll_with(&t, &t.tmp.path().join("missing"), &code.grouped());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // No code and no terminal.
    let out = t
        .cmd()
        .args(["enroll", file.to_str().unwrap()])
        .env_remove("MUSUBI_ENROLL_CODE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("MUSUBI_ENROLL_CODE"),
        "{}",
        stderr(&out)
    );

    // Messages never show the code.
    assert!(!stderr(&out).contains(&code.grouped()[..5]));
    assert_eq!(read_tree(&t.data_dir()), before, "nothing was written");
    assert_eq!(stored(&t), None);
}

#[test]
fn enrollment_for_another_office_is_refused() {
    let t = Tablet::new();
    let (file, code, _) = enrollment(&t, "1370100024", "tablet-x");
    let out = enroll_with(&t, &file, &code.grouped());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("1370100024") && err.contains(OFFICE), "{err}");
    assert_eq!(stored(&t), None);

    // A wrong passphrase is exit 3 and writes nothing either.
    let (file, code, _) = enrollment(&t, OFFICE, "tablet-a");
    let out = t
        .cmd()
        .env("MUSUBI_PASSPHRASE", "wrong passphrase here")
        .env("MUSUBI_ENROLL_CODE", code.grouped().as_str())
        .args(["enroll", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stored(&t), None);
}
