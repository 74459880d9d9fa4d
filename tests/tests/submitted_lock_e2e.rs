//! The submitted-survey lock across tablets, through a real relay: an edit made offline on
//! one tablet while the office submitted the survey from another is refused by the relay
//! (`submitted`), changes nothing there or on other tablets, and the editing tablet still
//! learns that the survey was submitted (the relay sends its version with the refusal).

#![allow(clippy::unwrap_used)]

use musubi_tests::e2e::{Device, OFFICE, Relay, survey_path};
use serde_json::Value;

fn device(root: &std::path::Path, relay: &Relay, name: &str, addr: &str) -> Device {
    let d = Device::init(root, name, OFFICE);
    let (file, code) = relay.enroll(name, Some(OFFICE), addr);
    d.enroll(&file, &code);
    d
}

fn json(d: &Device, id: &str) -> Value {
    serde_json::from_slice(&d.export(id)).unwrap()
}

#[test]
fn an_offline_edit_of_a_survey_submitted_meanwhile_is_refused_and_the_tablet_learns_of_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let relay = Relay::init(root, OFFICE);
    let server = relay.serve();
    let addr = server.addr.to_string();
    let a = device(root, &relay, "tablet-a", &addr);
    let b = device(root, &relay, "tablet-b", &addr);
    let survey = a.import(&[&survey_path()]).remove(0);
    a.sync_ok(&[]);
    b.sync_ok(&[]);

    // Offline: B edits an item, while the office submits the survey from A.
    b.ok(&["doc", "set", &survey, "/items/1-3", "3"]);
    a.ok(&["survey", "submit", &survey]);
    a.sync_ok(&[]);
    let submitted = a.export(&survey);

    let s = b.sync_ok(&[]);
    let refused: Vec<&str> = s["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["reason"].as_str())
        .collect();
    assert_eq!(refused, vec!["submitted"], "{s}");
    // B now knows the survey was submitted; its own edit stays on B alone.
    assert_eq!(json(&b, &survey)["status"], "submitted");
    // Nothing of B's edit reached the relay or A.
    let s = a.sync_ok(&[]);
    assert_eq!(s["docs_received"], 0, "{s}");
    assert_eq!(a.export(&survey), submitted);
    // The next sync refuses it again, without anything new.
    let s = b.sync_ok(&[]);
    assert_eq!(s["docs_received"], 0, "{s}");
    drop(server);
}
