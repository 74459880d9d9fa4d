//! Registration-gated sharing end to end (issue 5, deliverable 7): two offices on one real
//! `musubi-relay serve`, devices driven through `musubi`. Office 2 receives office 1's
//! survey of a person only after its own verified, consented registration for that
//! person; a withdrawal of consent stops further sharing.

#![allow(clippy::unwrap_used)]

use musubi_tests::e2e::{Device, OFFICE, OFFICE2, Relay, survey_path};
use serde_json::{Value, json};
use std::path::Path;

fn device(root: &Path, relay: &Relay, name: &str, office: &str, addr: &str) -> Device {
    let d = Device::init(root, name, office);
    let (file, code) = relay.enroll(name, Some(office), addr);
    d.enroll(&file, &code);
    d
}

fn example(kind: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../schemas/examples/{kind}.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Imports `doc` (its `office` removed, so the store's own applies) on `dev`: the new id.
fn import(dev: &Device, root: &Path, name: &str, mut doc: Value) -> String {
    doc.as_object_mut().unwrap().remove("office");
    let path = root.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
    dev.import(&[&path]).remove(0)
}

#[test]
fn another_office_sees_a_persons_survey_only_after_its_own_registration() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let relay = Relay::init(root, OFFICE);
    relay.add_office(OFFICE2);
    let server = relay.serve();
    let addr = server.addr.to_string();
    let a = device(root, &relay, "tablet-a", OFFICE, &addr);
    let b = device(root, &relay, "tablet-b", OFFICE2, &addr);

    // Office 1 surveys the person (and somebody else).
    let survey = a.import(&[&survey_path()]).remove(0);
    let mut stranger = example("survey");
    stranger["subject"]["insured_number"] = json!("0000099999");
    let other = import(&a, root, "stranger", stranger);
    a.sync_ok(&[]);

    // Office 2 knows the person but has no registration: nothing of office 1.
    let subject = import(&b, root, "subject", example("subject"));
    let s = b.sync_ok(&[]);
    assert_eq!(s["docs_received"], 0, "{s}");
    assert_eq!(b.ids(), vec![subject.clone()]);

    // A registration whose verification failed shares nothing.
    let mut reg = example("registration");
    reg["subject_id"] = json!(subject);
    let mut failed = reg.clone();
    failed["verification"]["result"] = json!("failed");
    let failed_id = import(&b, root, "failed", failed);
    b.sync_ok(&[]);
    assert!(
        !b.ids().contains(&survey),
        "shared on a failed verification"
    );

    // Its own verified, consented registration: one sync brings the survey, byte-identical
    // to office 1's, and nothing of the other person.
    let reg_id = import(&b, root, "registration", reg);
    let s = b.sync_ok(&[]);
    assert_eq!(s["docs_received"], 1, "{s}");
    let mut want = vec![
        subject.clone(),
        failed_id.clone(),
        reg_id.clone(),
        survey.clone(),
    ];
    want.sort();
    assert_eq!(b.ids(), want);
    assert_eq!(b.export(&survey), a.export(&survey));
    assert!(!b.ids().contains(&other));
    // Office 1 never receives office 2's registration or subject.
    a.sync_ok(&[]);
    assert!(!a.ids().contains(&reg_id) && !a.ids().contains(&subject));

    // Shared read-only: office 2 cannot edit office 1's survey.
    let out = b.run(&["doc", "set", &survey, "/items/1-3", "3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("read-only"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // While registered, office 1's edits keep arriving.
    a.ok(&["doc", "set", &survey, "/items/1-3", "3"]);
    a.sync_ok(&[]);
    let s = b.sync_ok(&[]);
    assert_eq!(s["docs_received"], 1, "{s}");
    assert_eq!(b.export(&survey), a.export(&survey));

    // Withdrawal of consent (recorded, not deleted) stops further sharing.
    b.ok(&[
        "doc",
        "set",
        &reg_id,
        "/withdrawals",
        r#"[{"date": "2026-11-30", "reason": "本人の申出"}]"#,
    ]);
    b.sync_ok(&[]);
    a.ok(&["doc", "set", &survey, "/items/1-3", "1"]);
    a.sync_ok(&[]);
    let before = b.export(&survey);
    let s = b.sync_ok(&[]);
    assert_eq!(s["docs_received"], 0, "{s}");
    assert_eq!(
        b.export(&survey),
        before,
        "an edit reached office 2 after withdrawal"
    );
    assert_ne!(b.export(&survey), a.export(&survey));
}
