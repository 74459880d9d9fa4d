//! End-to-end sync with the real binaries: a `musubi-relay serve` process, devices driven
//! through `musubi`, real QUIC on 127.0.0.1 (issue 4 acceptance).

#![allow(clippy::unwrap_used)]

use musubi_engine::net::enroll;
use musubi_engine::net::pki::{DeviceSubject, OfficeCa, issue_device_cert};
use musubi_engine::net::tls::DeviceCredentials;
use musubi_engine::store::{SecretString, Store};
use musubi_tests::e2e::{Device, OFFICE, OFFICE2, PASS, Relay, example_path, stderr, survey_path};
use serde_json::Value;
use std::time::{Duration, SystemTime};

/// Enrolls a new device of `office` at `relay`, reachable at `addr`.
fn device(root: &std::path::Path, relay: &Relay, name: &str, office: &str, addr: &str) -> Device {
    let d = Device::init(root, name, office);
    let (file, code) = relay.enroll(name, Some(office), addr);
    d.enroll(&file, &code);
    d
}

#[test]
fn two_devices_converge_byte_identical_with_conflicts_on_both_and_the_relay() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let relay = Relay::init(root, OFFICE);
    let mut server = relay.serve();
    let addr = server.addr.to_string();
    let a = device(root, &relay, "tablet-a", OFFICE, &addr);
    let b = device(root, &relay, "tablet-b", OFFICE, &addr);

    // A survey imported on A appears on B, byte-identical.
    let id = a.import(&[&survey_path()]).remove(0);
    let sa = a.sync_ok(&[]);
    assert_eq!(sa["docs_sent"], 1, "{sa}");
    let sb = b.sync_ok(&[]);
    assert_eq!(sb["docs_received"], 1, "{sb}");
    assert_eq!(a.export(&id), b.export(&id));
    assert_eq!(b.ids(), vec![id.clone()]);

    // A no-op sync is one round trip.
    let noop = b.sync_ok(&[]);
    assert_eq!(noop["round_trips"], 1, "{noop}");
    assert_eq!(noop["docs_received"], 0);

    // Concurrent offline edits of the same item converge everywhere and stay visible as
    // a conflict with both devices.
    a.ok(&["doc", "set", &id, "/items/1-3", "1"]);
    b.ok(&["doc", "set", &id, "/items/1-3", "3"]);
    // A second edit on B: A then receives two changes of a document it holds. Both the
    // session (trying them as a whole document) and the store (checking them) once loaded
    // such changes into an empty document, and automerge logged their missing parents at
    // error level on the surveyor's terminal.
    b.ok(&["doc", "set", &id, "/items/1-4", "2"]);
    a.sync_ok(&[]);
    b.sync_ok(&[]);
    let out = a.sync(&["--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("ERROR"), "{}", stderr(&out));
    let last: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(last["docs_received"], 1, "{last}");
    let on_a = a.export(&id);
    assert_eq!(on_a, b.export(&id), "A and B converge");
    for d in [&a, &b] {
        let conflicts: Value =
            serde_json::from_str(&d.ok(&["doc", "conflicts", &id, "--json"])).unwrap();
        let item = conflicts
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["path"] == "/items/1-3")
            .unwrap_or_else(|| panic!("{}: no conflict on /items/1-3: {conflicts}", d.name));
        let mut seen: Vec<(i64, String)> = item["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["value"].as_i64().unwrap(),
                    v["device"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            vec![(1, "tablet-a".to_owned()), (3, "tablet-b".to_owned())],
            "{}",
            d.name
        );
    }

    // The relay stops gracefully and holds the same converged document.
    let status = server.stop();
    assert!(
        status.success(),
        "relay exit: {status:?}\n{}",
        server.log_text()
    );
    let log = server.log_text();
    assert!(log.contains("sync session"), "{log}");
    assert!(
        !log.contains("tablet-a") && !log.contains("調査員"),
        "no names in logs: {log}"
    );
    let engine = relay.engine();
    let parsed: Value = serde_json::from_slice(&on_a).unwrap();
    assert_eq!(engine.export(id.parse().unwrap()).unwrap(), parsed);
    let conflicts = engine.conflicts(id.parse().unwrap()).unwrap();
    assert!(
        conflicts
            .iter()
            .any(|c| c.path == "/items/1-3" && c.values.len() == 2)
    );
}

#[test]
fn a_device_of_another_office_never_receives_the_first_offices_documents() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let relay = Relay::init(root, OFFICE);
    relay.add_office(OFFICE2);
    let server = relay.serve();
    let addr = server.addr.to_string();
    let a = device(root, &relay, "tablet-a", OFFICE, &addr);
    let b = device(root, &relay, "tablet-b", OFFICE, &addr);
    let c = device(root, &relay, "tablet-c", OFFICE2, &addr);

    // Two surveys and a 居宅サービス計画作成依頼届出書 (gated like every other kind).
    let ids = a.import(&[
        &survey_path(),
        &survey_path(),
        &example_path("plan-request"),
    ]);
    a.sync_ok(&[]);
    let sc = c.sync_ok(&[]);
    assert_eq!(sc["docs_received"], 0, "{sc}");
    assert!(c.ids().is_empty(), "office 2 sees nothing of office 1");
    let sb = b.sync_ok(&[]);
    assert_eq!(sb["docs_received"], 3, "{sb}");
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(b.ids(), expected);

    // The relay stops serving office 2 (relay.toml edited by hand): its device is
    // refused with a clear reason; office 1 still syncs.
    let toml_path = relay.dir.join("relay.toml");
    let text = std::fs::read_to_string(&toml_path).unwrap();
    let edited = text.replace(&format!(", \"{OFFICE2}\""), "");
    assert_ne!(text, edited, "relay.toml lists office 2: {text}");
    std::fs::write(&toml_path, edited).unwrap();
    let out = c.sync(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("does not serve this device's office"),
        "{}",
        stderr(&out)
    );
    assert!(c.ids().is_empty());
    a.sync_ok(&[]);
}

#[test]
fn revoked_unknown_ca_and_expired_devices_are_refused_with_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let relay = Relay::init(root, OFFICE);
    let mut server = relay.serve();
    let addr = server.addr.to_string();

    // Not enrolled at all: exit 4 and what to do.
    let fresh = Device::init(root, "tablet-new", OFFICE);
    let out = fresh.sync(&[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("musubi enroll"), "{}", stderr(&out));

    // Revoked: refused at its next connection, and told so.
    let a = device(root, &relay, "tablet-a", OFFICE, &addr);
    a.import(&[&survey_path()]);
    a.sync_ok(&[]);
    relay.revoke("tablet-a");
    a.ok(&["doc", "set", &a.ids()[0], "/items/1-3", "1"]);
    let out = a.sync(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("revoked") && err.contains("contact the office"),
        "{err}"
    );

    // Enrolled at another relay (another office CA): the two do not trust each other.
    let other_root = root.join("other");
    std::fs::create_dir_all(&other_root).unwrap();
    let other = Relay::init(&other_root, OFFICE);
    // Its enrollment file cannot be redeemed here: the tablet pins the CA in the file and
    // refuses this relay before sending anything.
    let (file, code) = other.enroll("tablet-y", Some(OFFICE), &addr);
    let out = Device::init(&other_root, "tablet-y", OFFICE).try_enroll(&file, &code);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("事務所の中継サーバーではありません"),
        "{}",
        stderr(&out)
    );
    let other_server = other.serve();
    let stranger = device(
        &other_root,
        &other,
        "tablet-x",
        OFFICE,
        &other_server.addr.to_string(),
    );
    drop(other_server);
    let out = stranger.sync(&["--relay", &addr]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("not from this device's office"), "{err}");

    // A device certificate of the right CA whose validity has ended.
    let ca = OfficeCa::from_pem(
        &std::fs::read_to_string(relay.dir.join("ca/office-ca.pem")).unwrap(),
        &std::fs::read_to_string(relay.dir.join("ca/office-ca.key")).unwrap(),
    )
    .unwrap();
    let subject = DeviceSubject::new_random("tablet-old", OFFICE).unwrap();
    let day = Duration::from_secs(86_400);
    let now = SystemTime::now();
    let cert = issue_device_cert(&ca, &subject, now - 400 * day, now - 30 * day).unwrap();
    let old = Device::init(root, "tablet-old", OFFICE);
    {
        let store = Store::open(&old.data, &SecretString::from(PASS.to_owned())).unwrap();
        let creds = DeviceCredentials {
            device_id: subject.device_id.clone(),
            device_name: subject.device_name.clone(),
            office: subject.office.clone(),
            cert_pem: cert.cert_pem,
            key_pem: cert.key_pem,
            office_ca_pem: ca.cert_pem().to_owned(),
            relay_address: addr.clone(),
        };
        enroll::store_credentials(&store, &creds).unwrap();
        store.close().unwrap();
    }
    let out = old.sync(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("expired"), "{err}");

    // Nothing from the refused devices reached the relay beyond A's first sync.
    assert!(server.stop().success());
    let engine = relay.engine();
    assert_eq!(engine.list().unwrap().len(), 1);
}
