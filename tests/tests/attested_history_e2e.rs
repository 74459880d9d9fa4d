//! Attested authorship end to end (issue 14): a real `musubi-relay serve` process binds
//! each automerge actor to the certificate that first sent changes under it and tells the
//! devices; `musubi doc history` shows, per change, the device the relay attests, and says
//! plainly when a change's self-declared device name differs from it.

#![allow(clippy::unwrap_used)]

use musubi_tests::e2e::{Device, OFFICE, Relay, survey_path};
use serde_json::Value;

/// Enrolls `device` (already initialised) at `relay` under `name`.
fn enroll(relay: &Relay, device: &Device, name: &str, addr: &str) {
    let (file, code) = relay.enroll(name, Some(OFFICE), addr);
    device.enroll(&file, &code);
}

fn history(d: &Device, id: &str) -> Vec<Value> {
    let text = d.ok(&["doc", "history", id, "--json"]);
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    v.as_array().unwrap().clone()
}

/// (declared device name, attested name, declared_differs) per change, in order.
fn attestations(entries: &[Value]) -> Vec<(String, Option<String>, bool)> {
    entries
        .iter()
        .map(|e| {
            (
                e["device_name"].as_str().unwrap().to_owned(),
                e["attested"]["name"].as_str().map(str::to_owned),
                e["declared_differs"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn s(v: &str) -> String {
    v.to_owned()
}

#[test]
fn history_shows_the_device_the_relay_attests_and_a_differing_claim() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let relay = Relay::init(root, OFFICE);
    let server = relay.serve();
    let addr = server.addr.to_string();

    let a = Device::init(root, "tablet-a", OFFICE);
    enroll(&relay, &a, "tablet-a", &addr);
    let b = Device::init(root, "tablet-b", OFFICE);
    enroll(&relay, &b, "tablet-b", &addr);
    // A tablet whose store claims to be tablet-a, enrolled (certificate) as tablet-c.
    let c = Device {
        data: root.join("tablet-c"),
        name: s("tablet-c"),
    };
    c.ok(&["init", "--office", OFFICE, "--device-name", "tablet-a"]);
    enroll(&relay, &c, "tablet-c", &addr);

    // A creates and edits a survey: before any sync nothing is attested.
    let id = a.import(&[&survey_path()]).remove(0);
    a.ok(&["doc", "set", &id, "/items/1-3", "1"]);
    let before = history(&a, &id);
    assert!(before.iter().all(|e| e["attested"].is_null()), "{before:?}");
    let text = a.ok(&["doc", "history", &id]);
    assert!(
        text.contains("端末（中継サーバーの証明）: 未確認（まだ同期されていません）"),
        "{text}"
    );

    // After A's sync, the relay has bound A's actor and told A.
    a.sync_ok(&[]);
    let on_a = attestations(&history(&a, &id));
    assert_eq!(
        on_a,
        vec![
            (s("tablet-a"), Some(s("tablet-a")), false),
            (s("tablet-a"), Some(s("tablet-a")), false),
        ]
    );

    // C receives the survey and edits it under its own actor, claiming to be tablet-a.
    c.sync_ok(&[]);
    c.ok(&["doc", "set", &id, "/items/1-4", "3"]);
    c.sync_ok(&[]);

    // B only downloads: it learns who the relay attests for every change.
    let got = b.sync_ok(&[]);
    assert_eq!(got["docs_received"], 1, "{got}");
    let entries = history(&b, &id);
    assert_eq!(
        attestations(&entries),
        vec![
            (s("tablet-a"), Some(s("tablet-a")), false),
            (s("tablet-a"), Some(s("tablet-a")), false),
            (s("tablet-a"), Some(s("tablet-c")), true),
        ]
    );
    // The attested device ids are the certificates' ids: one for A, another for C.
    let ids: Vec<&str> = entries
        .iter()
        .map(|e| e["attested"]["device"].as_str().unwrap())
        .collect();
    assert_eq!(ids[0], ids[1]);
    assert_ne!(ids[0], ids[2]);
    assert!(
        ids.iter()
            .all(|d| d.len() == 32 && d.chars().all(|c| c.is_ascii_hexdigit())),
        "{ids:?}"
    );

    let text = b.ok(&["doc", "history", &id]);
    assert!(
        text.contains("端末（中継サーバーの証明）: tablet-a"),
        "{text}"
    );
    assert!(
        text.contains(
            "自己申告の端末名（tablet-a）は中継サーバーが証明する端末（tablet-c）と異なります"
        ),
        "{text}"
    );
    assert!(!text.contains("未確認"), "{text}");

    // B's own edit is unattested until B syncs it, then attested as tablet-b.
    b.ok(&["doc", "set", &id, "/items/1-5", "2"]);
    let last = history(&b, &id).pop().unwrap();
    assert!(last["attested"].is_null(), "{last}");
    b.sync_ok(&[]);
    let last = history(&b, &id).pop().unwrap();
    assert_eq!(last["attested"]["name"], "tablet-b", "{last}");
    assert_eq!(last["declared_differs"], false);

    // A, syncing again, sees C's claim flagged as well.
    a.sync_ok(&[]);
    let on_a = attestations(&history(&a, &id));
    assert_eq!(on_a[2], (s("tablet-a"), Some(s("tablet-c")), true));
    assert_eq!(on_a[3], (s("tablet-b"), Some(s("tablet-b")), false));
}
