//! Sneakernet end to end with the real binaries. A tablet that never had a network
//! exports a bundle, the office imports it at the relay, and an enrolled tablet receives it
//! over QUIC. That tablet's edit goes back to the offline tablet on a bundle, and both end
//! byte-identical.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Output;

use musubi_tests::e2e::{Device, OFFICE, Relay, stderr, survey_path};
use serde_json::Value;

const BUNDLE_PASS: &str = "usb stick passphrase";

fn bundle(d: &Device, args: &[&str]) -> Output {
    d.cmd()
        .env("MUSUBI_BUNDLE_PASSPHRASE", BUNDLE_PASS)
        .arg("bundle")
        .args(args)
        .output()
        .unwrap()
}

fn export(d: &Device, file: &Path) {
    let out = bundle(d, &["export", "--to", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}: {}", d.name, stderr(&out));
}

fn import(d: &Device, file: &Path) -> Value {
    let out = bundle(d, &["import", file.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}: {}", d.name, stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn an_offline_tablet_reaches_the_office_and_back_on_a_usb_stick() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let relay = Relay::init(root, OFFICE);

    // Tablet X never has a network: its survey leaves on a stick.
    let x = Device::init(root, "tablet-x", OFFICE);
    let id = x.import(&[&survey_path()]).remove(0);
    let stick = root.join("x.bundle");
    export(&x, &stick);

    // At the office: the relay imports the bundle.
    let out = relay
        .cmd()
        .env("MUSUBI_BUNDLE_PASSPHRASE", BUNDLE_PASS)
        .args(["bundle", "import", "--dir"])
        .arg(&relay.dir)
        .arg(&stick)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "relay import: {}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["new"], 1, "{report}");

    // Tablet B syncs with the relay over QUIC and receives it, byte-identical.
    let mut server = relay.serve();
    let addr = server.addr.to_string();
    let b = Device::init(root, "tablet-b", OFFICE);
    let (file, code) = relay.enroll("tablet-b", Some(OFFICE), &addr);
    b.enroll(&file, &code);
    let s = b.sync_ok(&[]);
    assert_eq!(s["docs_received"], 1, "{s}");
    assert_eq!(b.export(&id), x.export(&id));

    // B's edit goes back to X on a stick.
    b.ok(&["doc", "set", &id, "/items/1-3", "3"]);
    let back = root.join("b.bundle");
    export(&b, &back);
    let r = import(&x, &back);
    assert_eq!(
        (r["updated"].as_u64(), r["new"].as_u64()),
        (Some(1), Some(0)),
        "{r}"
    );
    assert_eq!(b.export(&id), x.export(&id));
    let exported: Value = serde_json::from_slice(&x.export(&id)).unwrap();
    assert_eq!(exported["items"]["1-3"], 3);

    // The relay still serves B normally afterwards.
    assert_eq!(b.sync_ok(&[])["docs_received"], 0);
    let _ = server.stop();
}
