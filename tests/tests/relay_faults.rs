//! Sync under real faults: `musubi sync` talks to a real `musubi-relay serve` through a
//! fault-injecting UDP proxy (loss, duplication, reordering, a partition), and survives
//! `kill -9` of the relay in the middle of a large sync.
//!
//! The proxy's random choices come from `MUSUBI_TEST_SEED` (default below); a failing run
//! prints the seed.

#![allow(clippy::unwrap_used)]

use musubi_tests::e2e::{Device, OFFICE, Relay, stderr, stdout, survey_path};
use musubi_tests::udp_proxy::{Faults, UdpProxy};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

fn seed() -> u64 {
    std::env::var("MUSUBI_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6d75_7375_6269)
}

fn device(root: &Path, relay: &Relay, name: &str, addr: &str) -> Device {
    let d = Device::init(root, name, OFFICE);
    let (file, code) = relay.enroll(name, Some(OFFICE), addr);
    d.enroll(&file, &code);
    d
}

/// `musubi sync --json ARGS` started in the background.
fn spawn_sync(d: &Device, args: &[&str]) -> Child {
    d.cmd()
        .args(["sync", "--json"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait(child: Child, limit: Duration, what: &str) -> Output {
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-9", &id.to_string()])
                .status();
            panic!("{what} did not finish within {limit:?} (seed {})", seed());
        }
    }
}

/// Waits until the proxy has seen `n` datagrams (the sync is under way).
fn wait_for_traffic(proxy: &UdpProxy, n: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    while proxy.stats().received < n {
        assert!(
            Instant::now() < deadline,
            "no sync traffic through the proxy: {:?}",
            proxy.stats()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The example survey `n` times: each import of it is a new document.
fn copies(n: usize) -> Vec<PathBuf> {
    vec![survey_path(); n]
}

fn summary(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "sync failed (seed {}): {}\n{}",
        seed(),
        stderr(out),
        stdout(out)
    );
    serde_json::from_str(&stdout(out)).unwrap()
}

#[test]
fn sync_through_loss_duplication_reordering_and_a_partition_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let relay = Relay::init(root, OFFICE);
    let mut server = relay.serve();
    let faults = Faults {
        loss: 0.05,
        duplicate: 0.05,
        reorder: 0.1,
        max_delay: Duration::from_millis(20),
        seed: seed(),
    };
    let proxy = UdpProxy::start(server.addr, faults).unwrap();
    let a = device(root, &relay, "tablet-a", &proxy.addr().to_string());
    let b = device(root, &relay, "tablet-b", &server.addr.to_string());
    let files = copies(40);
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let ids = a.import(&paths);
    assert_eq!(ids.len(), 40);

    // A partition longer than the idle timeout in the middle of the sync: the connection
    // dies, the device reconnects once the network heals and the sync continues.
    // The proxy starts the partition itself at the 40th datagram (of well over a hundred),
    // so a loaded machine cannot let the sync finish before it.
    proxy.partition_at(proxy.stats().received + 40);
    let child = spawn_sync(&a, &["--idle-timeout", "2"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.stats().partitioned == 0 {
        assert!(
            Instant::now() < deadline,
            "no sync traffic through the proxy"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(3500));
    proxy.set_partition(false);
    let out = wait(child, Duration::from_secs(120), "sync through the proxy");
    let s = summary(&out);
    let stats = proxy.stats();
    assert!(
        stats.lost > 0 && stats.duplicated > 0 && stats.delayed > 0,
        "{stats:?}"
    );
    assert!(stats.partitioned > 0, "{stats:?}");
    assert!(
        s["connections"].as_u64().unwrap() >= 2,
        "the partition outlived the connection: {s}"
    );

    // Everything arrived: B gets all 40 from the relay, byte-identical.
    let sb = b.sync_ok(&[]);
    assert_eq!(sb["docs_received"], 40, "{sb}");
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(b.ids(), expected);
    for id in ids.iter().step_by(13) {
        assert_eq!(a.export(id), b.export(id));
    }
    // A second sync through the lossy proxy is a no-op.
    let again = a.sync_ok(&[]);
    assert_eq!(again["docs_sent"], 0, "{again}");
    assert!(server.stop().success());
}

#[test]
fn relay_killed_mid_sync_restarts_and_the_sync_completes_with_nothing_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let relay = Relay::init(root, OFFICE);
    let mut server = relay.serve();
    let listen = server.addr.to_string();
    // A clean proxy, only to watch the traffic and kill at the right moment.
    let proxy = UdpProxy::start(server.addr, Faults::none(seed())).unwrap();
    let a = device(root, &relay, "tablet-a", &proxy.addr().to_string());
    let b = device(root, &relay, "tablet-b", &listen);
    let files = copies(300);
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let ids = a.import(&paths);
    assert_eq!(ids.len(), 300);

    let child = spawn_sync(&a, &["--idle-timeout", "2"]);
    wait_for_traffic(&proxy, 300, Duration::from_secs(60));
    server.kill9();
    let log = server.log_text();
    assert!(
        !log.contains("sync session"),
        "the first session must not have finished before the kill: {log}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut server = relay.serve_on(&listen);
    let out = wait(
        child,
        Duration::from_secs(180),
        "sync across the relay restart",
    );
    let s = summary(&out);
    assert!(s["connections"].as_u64().unwrap() >= 2, "{s}");

    // Nothing lost on either side: A still has all 300, B receives all 300.
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(a.ids(), expected);
    let sb = b.sync_ok(&[]);
    assert_eq!(sb["docs_received"], 300, "{sb}");
    assert_eq!(b.ids(), expected);
    for id in ids.iter().step_by(37) {
        assert_eq!(a.export(id), b.export(id));
    }
    assert!(server.stop().success(), "{}", server.log_text());
    let engine = relay.engine();
    let mut on_relay: Vec<String> = engine
        .list()
        .unwrap()
        .iter()
        .map(|d| d.id.to_string())
        .collect();
    on_relay.sort();
    assert_eq!(on_relay, expected);
}
