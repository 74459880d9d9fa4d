//! Two relay processes on one PostgreSQL database (issue 16): the second node is the
//! first's directory copied; devices may sync with either node.

#![allow(clippy::unwrap_used)]

use musubi_engine::net::quic::close;
use musubi_tests::e2e::{Device, OFFICE, OFFICE2, Relay, survey_path};
use musubi_tests::raw_client::{RawClient, credentials};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Enrolls a new device of `office` at `relay`, redeemed online at `addr` (syncs name
/// their node with `--relay`).
fn device(root: &std::path::Path, relay: &Relay, name: &str, addr: &str) -> Device {
    let d = Device::init(root, name, OFFICE);
    let (file, code) = relay.enroll(name, Some(OFFICE), addr);
    d.enroll(&file, &code);
    d
}

fn conflicts(d: &Device, id: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(&d.ok(&["doc", "conflicts", id, "--json"])).unwrap();
    v.as_array().cloned().unwrap_or_default()
}

#[test]
fn a_survey_through_node_one_reaches_a_tablet_of_node_two_and_edits_converge() {
    let db = musubi_pgtest::database();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let node1 = Relay::init_with(root, OFFICE, &["--database", &db.url()]);
    assert!(node1.dir.join("data.key").is_file());
    assert!(
        !node1.dir.join("store").exists(),
        "a cluster relay keeps no embedded store"
    );
    // Devices enrolled before the copy are known to both nodes (the registry is in the
    // database, not in the directory).
    let server1 = node1.serve();
    let first = server1.addr.to_string();
    let a = device(root, &node1, "tablet-a", &first);
    let b = device(root, &node1, "tablet-b", &first);
    let node2 = node1.copy_to(&root.join("node2"));
    let server2 = node2.serve();
    let (addr1, addr2) = (server1.addr.to_string(), server2.addr.to_string());

    let id = a.import(&[&survey_path()]).remove(0);
    let sa = a.sync_ok(&["--relay", &addr1]);
    assert_eq!(sa["docs_sent"], 1, "{sa}");
    let sb = b.sync_ok(&["--relay", &addr2]);
    assert_eq!(sb["docs_received"], 1, "{sb}");
    assert_eq!(
        a.export(&id),
        b.export(&id),
        "byte-identical through two nodes"
    );

    // Concurrent edits of one item through the two nodes converge, conflict listed.
    a.ok(&["doc", "set", &id, "/items/1-3", "1"]);
    b.ok(&["doc", "set", &id, "/items/1-3", "3"]);
    a.sync_ok(&["--relay", &addr1]);
    b.sync_ok(&["--relay", &addr2]);
    let last = a.sync_ok(&["--relay", &addr1]);
    assert_eq!(last["docs_received"], 1, "{last}");
    assert_eq!(a.export(&id), b.export(&id), "A and B converge");
    for d in [&a, &b] {
        let c = conflicts(d, &id);
        let item = c
            .iter()
            .find(|c| c["path"] == "/items/1-3")
            .unwrap_or_else(|| panic!("no conflict on /items/1-3: {c:?}"));
        assert_eq!(item["values"].as_array().map(Vec::len), Some(2), "{item}");
    }
    // A device's cursor is valid at the other node: nothing new, one round trip.
    let cross = a.sync_ok(&["--relay", &addr2]);
    assert_eq!(cross["docs_received"], 0, "{cross}");
    assert_eq!(cross["round_trips"], 1, "{cross}");

    // status reads the database from either node.
    for node in [&node1, &node2] {
        let dir = node.dir.to_string_lossy().into_owned();
        let s: Value =
            serde_json::from_str(&node.ok(&["status", "--dir", &dir, "--json"])).unwrap();
        assert_eq!(s["offices"][0]["documents"], 1, "{s}");
    }

    // Nothing of the survey is in the clear in the database.
    let dump = db.dump();
    for needle in ["結城 花子", "0000012345", "東京都千代田区架空町"] {
        assert!(!dump.contains(needle), "{needle} in the dump");
        assert!(
            !dump.contains(&hex::encode(needle.as_bytes())),
            "{needle} (hex) in the dump"
        );
    }
}

#[test]
fn enrolled_through_node_one_redeemed_at_node_two_and_revoked_through_node_one_everywhere() {
    let db = musubi_pgtest::database();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let node1 = Relay::init_with(root, OFFICE, &["--database", &db.url()]);
    assert!(
        !node1.dir.join("devices.toml").exists(),
        "a cluster relay keeps its device registry in the database"
    );
    // The second node is copied before any enrollment: it learns of devices only
    // through the database.
    let node2 = node1.copy_to(&root.join("node2"));
    let server1 = node1.serve();
    let server2 = node2.serve();
    let (addr1, addr2) = (server1.addr.to_string(), server2.addr.to_string());

    // Enrolled through node 1's directory, redeemed online at node 2.
    let a = device(root, &node1, "tablet-a", &addr2);
    let (file, code) = node1.enroll("tablet-m", Some(OFFICE), &addr2);
    let mallory = credentials(&file, &code);
    a.import(&[&survey_path()]);
    assert_eq!(a.sync_ok(&["--relay", &addr2])["docs_sent"], 1);
    assert_eq!(a.sync_ok(&["--relay", &addr1])["docs_received"], 0);

    // Revoked through node 1 while it holds a session open at node 2: node 2 cuts it.
    let mut raw = RawClient::connect(&mallory, &addr2);
    raw.hello(automerge::ActorId::random().to_bytes());
    let revoked_at = Instant::now();
    node1.revoke("tablet-m");
    let closed = raw.closed_within(Duration::from_secs(5));
    assert!(
        matches!(&closed, Some((code, _)) if *code == u64::from(close::REVOKED)),
        "still connected to node 2 five seconds after revocation at node 1: {closed:?}"
    );
    assert!(revoked_at.elapsed() <= Duration::from_secs(5));
    // And refuses it at its next connection (in the handshake, or right after).
    for addr in [&addr2, &addr1] {
        match RawClient::try_connect(&mallory, addr) {
            Err(_) => {}
            Ok(mut again) => {
                let closed = again.closed_within(Duration::from_secs(5));
                assert!(
                    closed.is_some(),
                    "a revoked device was served again at {addr}"
                );
            }
        }
    }

    // A tablet revoked through node 1 is refused at its next sync with node 2.
    node1.revoke("tablet-a");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = a.sync(&["--relay", &addr2]);
        if !out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 2 still syncs a device revoked at node 1"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // An office added through node 2 is served by node 1, without copying relay.toml.
    node2.add_office(OFFICE2);
    let c = Device::init(root, "tablet-c", OFFICE2);
    let (file, code) = node1.enroll("tablet-c", Some(OFFICE2), &addr1);
    c.enroll(&file, &code);
    c.sync_ok(&["--relay", &addr1]);
    c.sync_ok(&["--relay", &addr2]);

    // status through node 2 shows what was done through node 1.
    let dir2 = node2.dir.to_string_lossy().into_owned();
    let s: Value = serde_json::from_str(&node2.ok(&["status", "--dir", &dir2, "--json"])).unwrap();
    assert_eq!(s["offices"][0]["revoked_devices"], 2, "{s}");
    assert_eq!(s["offices"][1]["office"], OFFICE2, "{s}");
    assert_eq!(s["offices"][1]["active_devices"], 1, "{s}");
    // Device names are sealed with the rest of the registry.
    let dump = db.dump();
    assert!(
        dump.contains("device_registry"),
        "the registry table is dumped"
    );
    for needle in ["tablet-a", "tablet-m"] {
        assert!(!dump.contains(needle), "{needle} in the dump");
    }
}

/// Documents node 1 has committed to the database so far (no key needed to count rows).
fn committed(url: &str) -> i64 {
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    c.query_one("SELECT count(*) FROM docs", &[])
        .unwrap()
        .get(0)
}

#[test]
fn node_one_killed_mid_sync_then_the_device_completes_with_node_two_losing_nothing() {
    const N: usize = 1000;
    let db = musubi_pgtest::database();
    let url = db.url();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let node1 = Relay::init_with(root, OFFICE, &["--database", &url]);
    let mut server1 = node1.serve();
    let first = server1.addr.to_string();
    let a = device(root, &node1, "tablet-a", &first);
    let b = device(root, &node1, "tablet-b", &first);
    let node2 = node1.copy_to(&root.join("node2"));
    let server2 = node2.serve();
    let second = server2.addr.to_string();

    let paths = vec![survey_path(); N];
    let refs: Vec<&std::path::Path> = paths.iter().map(std::path::PathBuf::as_path).collect();
    let mut ids = a.import(&refs);
    assert_eq!(ids.len(), N);
    ids.sort();

    // A large sync with node 1, killed (SIGKILL) once part of it is committed.
    let child = a
        .cmd()
        .args([
            "sync",
            "--json",
            "--relay",
            &first,
            "--idle-timeout",
            "2",
            "--give-up-after",
            "4",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while committed(&url) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "node 1 committed nothing"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    server1.kill9();
    let at_kill = committed(&url);
    assert!(
        at_kill < N as i64,
        "the sync must still be under way when node 1 dies ({at_kill} of {N} committed)"
    );
    let _ = child.wait_with_output();

    // The same device completes with node 2; a tablet of node 2 receives everything.
    let done = a.sync_ok(&["--relay", &second]);
    assert!(done["docs_sent"].as_u64().unwrap() > 0, "{done}");
    assert_eq!(
        committed(&url),
        N as i64,
        "every survey reached the database"
    );
    let sb = b.sync_ok(&["--relay", &second]);
    assert_eq!(sb["docs_received"], N as u64, "{sb}");
    assert_eq!(b.ids(), ids);
    for id in ids.iter().step_by(97) {
        assert_eq!(a.export(id), b.export(id));
    }
}
