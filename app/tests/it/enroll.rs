//! `musubi enroll FILE`: enrollment files made with the real office PKI and sealed with
//! the real age/scrypt code, installed through the real binary into a real store.

use crate::{OFFICE, PASS, Tablet, read_tree, stderr};
use musubi_engine::net::enroll::{self, EnrollmentCode};
use musubi_engine::net::pki::{DeviceSubject, OfficeCa, issue_device_cert_now};
use musubi_engine::net::tls::DeviceCredentials;
use musubi_engine::store::{SecretString, Store};
use std::path::{Path, PathBuf};

/// An enrollment file for `office`, as `musubi-relay enroll` makes it.
fn enrollment(
    tablet: &Tablet,
    office: &str,
    name: &str,
) -> (PathBuf, EnrollmentCode, DeviceCredentials) {
    let ca = OfficeCa::generate("relay-under-test").unwrap();
    let subject = DeviceSubject::new_random(name, office).unwrap();
    let cert = issue_device_cert_now(&ca, &subject).unwrap();
    let creds = DeviceCredentials {
        device_id: subject.device_id,
        device_name: subject.device_name,
        office: subject.office,
        cert_pem: cert.cert_pem,
        key_pem: cert.key_pem,
        office_ca_pem: ca.cert_pem().to_owned(),
        relay_address: "relay.example.jp:4433".into(),
    };
    let (bytes, code) = enroll::seal(&creds).unwrap();
    let path = tablet.tmp.path().join(format!("{name}.musubi-enroll"));
    std::fs::write(&path, bytes).unwrap();
    (path, code, creds)
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
fn enroll_installs_the_credentials_inside_the_store() {
    let t = Tablet::new();
    let (file, code, creds) = enrollment(&t, OFFICE, "tablet-a");
    // The code as a person might type it.
    let typed = code.grouped().to_lowercase().replace('-', " ");
    let out = enroll_with(&t, &file, &typed);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    for part in [
        "tablet-a",
        OFFICE,
        "relay.example.jp:4433",
        creds.device_id.as_str(),
    ] {
        assert!(text.contains(part), "{part} missing from {text:?}");
    }
    assert_eq!(stored(&t), Some(creds.clone()));

    // Nothing of the key or certificate is in any file in the clear.
    let marker = creds.key_pem.lines().nth(1).unwrap().to_owned();
    for (path, bytes) in read_tree(&t.data_dir()) {
        let hay = String::from_utf8_lossy(&bytes);
        assert!(!hay.contains("PRIVATE KEY"), "{}", path.display());
        assert!(!hay.contains(&marker), "{}", path.display());
    }

    // Enrolling again (e.g. after the office revoked and re-enrolled the tablet) replaces
    // the earlier credentials.
    let (file2, code2, creds2) = enrollment(&t, OFFICE, "tablet-a2");
    let out = enroll_with(&t, &file2, &code2.grouped());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(&creds.device_id), "{}", stderr(&out));
    assert_eq!(stored(&t), Some(creds2));
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
