//! Registration-gated sharing, verified by the relay (issue 14), end to end: two offices on
//! one real `musubi-relay serve`, devices driven through `musubi`, the My Number card
//! played by `musubi-vcard` through the real pcscd + vpcd. An office reads another
//! office's documents about a person only on a registration whose card evidence the relay
//! verified itself, for the subject's current person, with consent and no withdrawal.
//!
//! One virtual reader per machine: these tests run in nextest's `pcsc` group, one at a
//! time (`.config/nextest.toml`), and hold [`card::lock`].

#![allow(clippy::unwrap_used)]

use automerge::sync::SyncDoc;
use musubi_engine::ids::DocId;
use musubi_engine::sync::Frame;
use musubi_tests::card::{self, VCard};
use musubi_tests::e2e::{Device, OFFICE, OFFICE2, Relay, RelayProcess, stderr, survey_path};
use musubi_tests::raw_client::{RawClient, credentials};
use serde_bytes::ByteBuf;
use serde_json::{Value, json};
use std::path::Path;

fn example(kind: &str) -> Value {
    musubi_tests::example(kind)
}

/// A relay serving two offices, tablet A of office 1 and tablet B of office 2 (enrolled),
/// and a virtual card in the reader.
struct World {
    tmp: tempfile::TempDir,
    relay: Relay,
    server: RelayProcess,
    a: Device,
    b: Device,
    card: VCard,
}

impl World {
    fn new(test_anchor: bool) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let relay = Relay::init(root, OFFICE);
        relay.add_office(OFFICE2);
        let a = Device::init(root, "tablet-a", OFFICE);
        let b = Device::init(root, "tablet-b", OFFICE2);
        let card = VCard::new(&root.join("card"), &b);
        let server = serve(&relay, &card, test_anchor, "127.0.0.1:0");
        let addr = server.addr.to_string();
        for (d, office) in [(&a, OFFICE), (&b, OFFICE2)] {
            let (file, code) = relay.enroll(&d.name, Some(office), &addr);
            d.enroll(&file, &code);
        }
        World {
            tmp,
            relay,
            server,
            a,
            b,
            card,
        }
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }
}

fn serve(relay: &Relay, card: &VCard, test_anchor: bool, listen: &str) -> RelayProcess {
    let anchor = card.anchor().to_string_lossy().into_owned();
    if test_anchor {
        relay.serve_with(listen, &["--test-trust-anchor", &anchor])
    } else {
        relay.serve_with(listen, &[])
    }
}

/// The codes of the documents the relay refused in the last `sync --json` summary.
fn rejected(summary: &Value) -> Vec<String> {
    summary["rejected"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["reason"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_card_check_verified_by_the_relay_opens_the_persons_documents_until_withdrawal() {
    let _g = card::lock();
    let w = World::new(true);
    let (a, b) = (&w.a, &w.b);

    // Office 1 surveys the person (and somebody else).
    let survey = a.import(&[&survey_path()]).remove(0);
    let mut stranger = example("survey");
    stranger["subject"]["insured_number"] = json!("0000099999");
    let other = a.import_value(w.root(), "stranger", stranger);
    a.sync_ok(&[]);

    // Office 2 knows the person but has not checked the card: nothing of office 1.
    let subject = b.import_value(w.root(), "subject", example("subject"));
    let s = b.sync_ok(&[]);
    assert_eq!(s["docs_received"], 0, "{s}");

    // A card check without consent yet: verified by the relay, but shares nothing.
    let reg = w.card.register(b, &subject);
    let s = b.sync_ok(&[]);
    assert!(rejected(&s).is_empty(), "{s}");
    assert_eq!(s["docs_received"], 0, "{s}");

    // Consent recorded: one sync brings the survey, byte-identical, nothing of the other.
    card::consent(b, &reg);
    let s = b.sync_ok(&[]);
    assert_eq!(s["docs_received"], 1, "{s}");
    assert_eq!(b.export(&survey), a.export(&survey));
    assert!(!b.ids().contains(&other));
    // Office 1 never receives office 2's registration or subject.
    a.sync_ok(&[]);
    assert!(!a.ids().contains(&reg) && !a.ids().contains(&subject));

    // Shared read-only: office 2 cannot edit office 1's survey.
    let out = b.run(&["doc", "set", &survey, "/items/1-3", "3"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // While registered, office 1's edits keep arriving.
    a.ok(&["doc", "set", &survey, "/items/1-3", "3"]);
    a.sync_ok(&[]);
    let s = b.sync_ok(&[]);
    assert_eq!(s["docs_received"], 1, "{s}");
    assert_eq!(b.export(&survey), a.export(&survey));

    // Live policy: another tablet of office 2 holds a session open (it received the
    // shared survey whole) when the withdrawal reaches the relay through tablet B.
    let addr = w.server.addr.to_string();
    let (file, code) = w.relay.enroll("tablet-b2", Some(OFFICE2), &addr);
    let b2 = credentials(&file, &code);
    let mut open = RawClient::connect(&b2, &addr);
    let got = open.hello(automerge::ActorId::random().to_bytes());
    let survey_id: DocId = survey.parse().unwrap();
    let (_, bytes) = got
        .docs
        .iter()
        .find(|(id, _)| *id == survey_id)
        .expect("the open session received the shared survey");
    let held = automerge::Automerge::load(bytes).unwrap();

    // Withdrawal of consent (recorded, not deleted) stops further sharing.
    b.ok(&[
        "register",
        "withdraw",
        "--registration",
        &reg,
        "--date",
        "2026-11-30",
        "--reason",
        "本人の申出",
    ]);
    b.sync_ok(&[]);
    // Office 1 edits the survey again; the open session asks for what it lacks (one
    // sync message with its heads): the relay answers as for a document it does not
    // have, with no changes, within seconds of the withdrawal.
    a.ok(&["doc", "set", &survey, "/items/1-3", "2"]);
    a.sync_ok(&[]);
    let withdrawn_at = std::time::Instant::now();
    let mut state = automerge::sync::State::new();
    let msg = held.generate_sync_message(&mut state).unwrap();
    open.send(&Frame::DocSync {
        id: ByteBuf::from(survey_id.as_bytes().to_vec()),
        msg: ByteBuf::from(msg.encode()),
    });
    let mut changes = 0;
    let mut answered = false;
    for _ in 0..3 {
        let mut done = false;
        for f in open.until_idle() {
            if let Frame::DocSync { id, msg } = &f
                && id.as_slice() == survey_id.as_bytes()
            {
                let m = automerge::sync::Message::decode(msg).unwrap();
                changes += m.changes.len();
                answered = true;
                done = true;
            }
            if let Frame::DocRejected { .. } = f {
                done = true;
            }
        }
        if done {
            break;
        }
    }
    assert!(
        answered,
        "the relay did not answer the open session's sync message"
    );
    assert_eq!(
        changes, 0,
        "the open session still received the survey's changes"
    );
    assert!(withdrawn_at.elapsed() < std::time::Duration::from_secs(5));
    open.finish();
    a.ok(&["doc", "set", &survey, "/items/1-3", "3"]);
    a.sync_ok(&[]);
    a.ok(&["doc", "set", &survey, "/items/1-3", "1"]);
    a.sync_ok(&[]);
    let before = b.export(&survey);
    let s = b.sync_ok(&[]);
    assert_eq!(s["docs_received"], 0, "{s}");
    assert_eq!(
        b.export(&survey),
        before,
        "an edit arrived after withdrawal"
    );

    // The relay's log names documents and devices, never a person.
    let log = w.server.log_text();
    assert!(
        !log.contains("結城") && !log.contains("0000012345"),
        "{log}"
    );
}

#[test]
fn a_test_card_counts_only_at_a_relay_started_with_the_test_anchor() {
    let _g = card::lock();
    let mut w = World::new(false);
    let survey = w.a.import(&[&survey_path()]).remove(0);
    w.a.sync_ok(&[]);
    let subject = w.b.import_value(w.root(), "subject", example("subject"));
    let reg = w.card.register(&w.b, &subject);
    card::consent(&w.b, &reg);

    // The production relay trusts only the J-LIS roots: the registration is refused.
    let s = w.b.sync_ok(&[]);
    assert_eq!(
        rejected(&s),
        vec!["evidence".to_owned()],
        "{s}\n{}",
        w.server.log_text()
    );
    assert!(!w.b.ids().contains(&survey));
    assert!(
        !w.server.log_text().contains("TEST RELAY"),
        "a relay without the flag announced itself as a test relay"
    );

    // The same relay restarted as a test relay counts it: the survey arrives.
    let addr = w.server.addr.to_string();
    w.server.stop();
    w.server = serve(&w.relay, &w.card, true, &addr);
    assert!(w.server.log_text().contains("TEST RELAY"));
    let s = w.b.sync_ok(&[]);
    assert!(rejected(&s).is_empty(), "{s}");
    assert!(w.b.ids().contains(&survey), "{s}");
}

#[test]
fn a_repointed_subject_opens_nothing_and_a_borrowed_card_is_refused() {
    let _g = card::lock();
    let w = World::new(true);
    let (a, b) = (&w.a, &w.b);
    let x_survey = a.import(&[&survey_path()]).remove(0);
    let mut y = example("survey");
    y["subject"]["insured_number"] = json!("0000099999");
    let y_survey = a.import_value(w.root(), "y", y);
    a.sync_ok(&[]);

    // A genuine card registration for person X.
    let subject = b.import_value(w.root(), "subject", example("subject"));
    let reg = w.card.register(b, &subject);
    card::consent(b, &reg);
    b.sync_ok(&[]);
    assert!(b.ids().contains(&x_survey));

    // Re-pointing its subject to person Y voids it: nothing of Y, and X's edits stop too.
    b.ok(&[
        "doc",
        "set",
        &subject,
        "/person/insured_number",
        "\"0000099999\"",
    ]);
    b.sync_ok(&[]);
    a.ok(&["doc", "set", &x_survey, "/items/1-3", "3"]);
    a.ok(&["doc", "set", &y_survey, "/items/1-3", "3"]);
    a.sync_ok(&[]);
    let before = b.export(&x_survey);
    let s = b.sync_ok(&[]);
    assert_eq!(s["docs_received"], 0, "{s}");
    assert!(!b.ids().contains(&y_survey));
    assert_eq!(b.export(&x_survey), before);

    // A second registration, for Y, with X's card: the tablet checks the card (name and
    // birth date match the record), but the relay has the certificate bound to X.
    let mut y_subject = example("subject");
    y_subject["person"]["insured_number"] = json!("0000099999");
    let y_subject = b.import_value(w.root(), "y-subject", y_subject);
    let reg_y = w.card.register(b, &y_subject);
    card::consent(b, &reg_y);
    let s = b.sync_ok(&[]);
    assert_eq!(rejected(&s), vec!["card_reused".to_owned()], "{s}");
    assert!(!b.ids().contains(&y_survey));
    assert!(
        w.server
            .log_text()
            .contains("card certificate is bound to another person"),
        "the refusal is not logged"
    );
}
