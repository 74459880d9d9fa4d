//! `musubi-relay bundle import` through the real binary: a bundle written by a device store
//! lands in the relay's encrypted store; only offices the relay serves are accepted; a
//! wrong passphrase or a damaged bundle changes nothing.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use musubi_engine::Engine;
use musubi_engine::ids::DocId;
use musubi_engine::store::{InitOptions, SecretString, Store};
use musubi_engine::sync::SyncStorage;
use musubi_engine::sync::bundle;
use musubi_relay::RelayDir;
use serde_json::Value;

const OFFICE: &str = "1370100016";
const OFFICE2: &str = "1370100024";
const BUNDLE_PASS: &str = "usb stick passphrase";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

struct Relay {
    tmp: tempfile::TempDir,
}

impl Relay {
    fn init(office: &str) -> Relay {
        let r = Relay {
            tmp: tempfile::tempdir().unwrap(),
        };
        r.ok(&["init"], &["--office", office]);
        r
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("relay")
    }

    fn run_with(&self, pass: Option<&str>, sub: &[&str], rest: &[&str]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_musubi-relay"));
        c.env("MUSUBI_KDF_WORK_FACTOR", "10")
            .env_remove("MUSUBI_LOG")
            .env_remove("MUSUBI_RELAY_DIR")
            .env_remove("CREDENTIALS_DIRECTORY");
        match pass {
            Some(p) => c.env("MUSUBI_BUNDLE_PASSPHRASE", p),
            None => c.env_remove("MUSUBI_BUNDLE_PASSPHRASE"),
        };
        let dir = self.dir();
        c.args(sub)
            .args(["--dir", dir.to_str().unwrap()])
            .args(rest);
        c.output().unwrap()
    }

    fn ok(&self, sub: &[&str], rest: &[&str]) -> String {
        let out = self.run_with(None, sub, rest);
        assert!(
            out.status.success(),
            "musubi-relay {sub:?} {rest:?} failed: {}",
            stderr(&out)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn import(&self, pass: &str, file: &Path) -> Output {
        self.run_with(
            Some(pass),
            &["bundle", "import"],
            &[file.to_str().unwrap(), "--json"],
        )
    }

    fn import_ok(&self, file: &Path) -> Value {
        let out = self.import(BUNDLE_PASS, file);
        assert!(
            out.status.success(),
            "bundle import failed ({:?}): {}",
            out.status.code(),
            stderr(&out)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Listing rows of the relay's store: (id, office, title).
    fn docs(&self) -> Vec<(DocId, String, String)> {
        let store = RelayDir::open(&self.dir()).unwrap().open_store().unwrap();
        let mut rows: Vec<_> = store
            .list_docs()
            .unwrap()
            .into_iter()
            .map(|d| (d.id, d.office, d.title))
            .collect();
        rows.sort();
        rows
    }
}

/// A device store of `office` with one survey, and its bundle on the "stick".
fn device_bundle(root: &Path, office: &str, name: &str) -> (Engine, PathBuf, DocId) {
    let store = Store::init(
        &root.join(format!("{name}-data")),
        &SecretString::from("device store passphrase".to_owned()),
        InitOptions {
            office: office.to_owned(),
            device_name: name.to_owned(),
            kdf_work_factor: Some(10),
            ..InitOptions::default()
        },
    )
    .unwrap();
    let engine = Engine::new(store, None).unwrap();
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/examples/survey.json");
    let mut survey: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    survey["office"] = Value::String(office.to_owned());
    let id = engine
        .import(&[("survey.json".to_owned(), survey)], 1_000)
        .unwrap()
        .ids[0];
    let file = root.join(format!("{name}.bundle"));
    bundle::write_file(
        engine.store(),
        &[office.to_owned()],
        2_000,
        &SecretString::from(BUNDLE_PASS.to_owned()),
        Some(10),
        &file,
        false,
    )
    .unwrap();
    (engine, file, id)
}

#[test]
fn a_device_bundle_lands_in_the_relay_store_once() {
    let relay = Relay::init(OFFICE);
    let (device, file, id) = device_bundle(relay.tmp.path(), OFFICE, "tablet-a");

    let report = relay.import_ok(&file);
    assert_eq!(report["new"], 1);
    assert_eq!(report["offices"], serde_json::json!([OFFICE]));
    let docs = relay.docs();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].0, id);
    assert_eq!(docs[0].1, OFFICE);
    assert_eq!(docs[0].2, device.list().unwrap()[0].title);
    // Same heads as on the device.
    let store = RelayDir::open(&relay.dir()).unwrap().open_store().unwrap();
    assert_eq!(
        store.catalog(&[OFFICE.to_owned()]).unwrap(),
        device.store().catalog(&[OFFICE.to_owned()]).unwrap()
    );
    store.close().unwrap();

    let again = relay.import_ok(&file);
    assert_eq!(
        (again["new"].as_u64(), again["unchanged"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(relay.docs(), docs);
}

#[test]
fn only_offices_the_relay_serves_are_accepted() {
    let relay = Relay::init(OFFICE);
    let (_device, file, id) = device_bundle(relay.tmp.path(), OFFICE2, "tablet-x");

    let out = relay.import(BUNDLE_PASS, &file);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing was written"),
        "{}",
        stderr(&out)
    );
    assert!(relay.docs().is_empty());

    relay.ok(&["office", "add"], &["--office", OFFICE2]);
    assert_eq!(relay.import_ok(&file)["new"], 1);
    let docs = relay.docs();
    assert_eq!((docs[0].0, docs[0].1.as_str()), (id, OFFICE2));
}

#[test]
fn wrong_passphrase_and_damaged_bundles_change_nothing() {
    let relay = Relay::init(OFFICE);
    let (_device, file, _) = device_bundle(relay.tmp.path(), OFFICE, "tablet-a");

    let out = relay.import("not the bundle passphrase", &file);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("bundle passphrase is wrong"));

    let good = std::fs::read(&file).unwrap();
    let cut = relay.tmp.path().join("cut.bundle");
    std::fs::write(&cut, &good[..good.len() - 10]).unwrap();
    let out = relay.import(BUNDLE_PASS, &cut);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let mut changed = good.clone();
    let at = good.len() / 2;
    changed[at] ^= 0x80;
    std::fs::write(&cut, &changed).unwrap();
    let out = relay.import(BUNDLE_PASS, &cut);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("damaged"), "{}", stderr(&out));

    let out = relay.run_with(None, &["bundle", "import"], &[file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("MUSUBI_BUNDLE_PASSPHRASE"));

    assert!(relay.docs().is_empty());
}
