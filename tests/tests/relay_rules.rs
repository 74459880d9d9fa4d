//! The relay's admission rules (`admit::rules::Rules`) on registrations signed by a real
//! (virtual, in-process) My Number card: the evidence counts only for the registration,
//! office and device the card signed for, and only under a trusted root.

#![allow(clippy::unwrap_used)]

use musubi_engine::admit::rules::Rules;
use musubi_engine::card::compare::Record;
use musubi_engine::card::evidence::StatementBase;
use musubi_engine::card::reader::PinKind;
use musubi_engine::card::register::{Context, registration_document};
use musubi_engine::card::roots::TrustStore;
use musubi_engine::card::{PinSource, VerifyOptions, verify_card};
use musubi_engine::doc::{Author, CareDoc};
use musubi_engine::ids::DocId;
use musubi_engine::schema::DocKind;
use musubi_engine::sync::admission::{Admission, Incoming, Uploader};
use musubi_engine::sync::sharing::person_key;
use musubi_vcard::card::{Corrupt, Counters, VirtualCard};
use musubi_vcard::pki::TestPki;
use musubi_vcard::{CertChoice, Holder, InProcess, build};
use zeroize::Zeroizing;

const OFFICE: &str = "1370100016";
const DEVICE: &str = "0123456789abcdef0123456789abcdef";

struct Pins;
impl PinSource for Pins {
    fn pin(&mut self, _: PinKind, _: u8) -> Option<Zeroizing<String>> {
        Some(Zeroizing::new("1234".to_owned()))
    }
}

struct Signed {
    _dir: tempfile::TempDir,
    anchor: String,
    id: DocId,
    doc: automerge::Automerge,
    person: String,
}

/// A registration for `id` signed by a fresh virtual card, as `card verify` writes it.
fn signed() -> Signed {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::load_or_create(dir.path()).unwrap();
    let anchor = std::fs::read_to_string(dir.path().join("trust-anchor.pem")).unwrap();
    let mut trust = TrustStore::bundled().unwrap();
    trust.add_pem(&anchor).unwrap();
    let content = build(&pki, &Holder::default(), CertChoice::Valid).unwrap();
    let mut card = InProcess::new(VirtualCard::new(
        content,
        Counters::default(),
        Corrupt::None,
    ));
    let id = DocId::random();
    let person = person_key("131011", "0000012345");
    let opts = VerifyOptions {
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .try_into()
            .unwrap(),
        allow_last_try: false,
        basic4: true,
        statement: StatementBase {
            registration: id,
            person: person.clone(),
            office: OFFICE.to_owned(),
            device: DEVICE.to_owned(),
            nonce: rand::random(),
        },
        record: Record {
            name: Some("結城 花子".to_owned()),
            birth_date: Some("1944-05-12".to_owned()),
        },
    };
    let v = verify_card(&mut card, &trust, &opts, &mut Pins).unwrap();
    let cx = Context {
        now_ms: 1_790_000_000_000,
        device: "tablet-a".to_owned(),
        staff: Some("調査員テスト".to_owned()),
        accept_mismatch: false,
    };
    let json = registration_document(&v, DocId::random(), OFFICE, &cx).unwrap();
    let author = Author {
        device: DEVICE.to_owned(),
        device_name: "tablet-a".to_owned(),
        staff: None,
        action: "card verify".to_owned(),
        time_ms: cx.now_ms,
    };
    let mut doc = CareDoc::create(
        id,
        DocKind::Registration,
        &json,
        automerge::ActorId::random(),
        &author,
    )
    .unwrap();
    let doc = automerge::Automerge::load(&doc.save()).unwrap();
    Signed {
        _dir: dir,
        anchor,
        id,
        doc,
        person,
    }
}

fn rules(s: &Signed, test_root: bool) -> Rules {
    let mut trust = TrustStore::bundled().unwrap();
    if test_root {
        trust.add_pem(&s.anchor).unwrap();
    }
    Rules::new(trust)
}

fn admit(
    rules: &Rules,
    s: &Signed,
    id: DocId,
    office: &str,
    uploader: Uploader<'_>,
) -> Result<Option<String>, String> {
    let heads = s.doc.get_heads();
    rules
        .admit(&Incoming {
            id,
            kind: "registration",
            office,
            uploader,
            stored: None,
            merged: &s.doc,
            own_heads: &heads,
        })
        .map(|a| a.evidence.map(|e| e.person))
        .map_err(|r| format!("{}:{}", r.code, r.field.unwrap_or_default()))
}

#[test]
fn genuine_evidence_is_attested_for_the_person_the_card_signed_for() {
    let s = signed();
    let r = rules(&s, true);
    assert_eq!(
        admit(&r, &s, s.id, OFFICE, Uploader::Device(DEVICE)),
        Ok(Some(s.person.clone()))
    );
    let enrolled = vec![
        "ffffffffffffffffffffffffffffffff".to_owned(),
        DEVICE.to_owned(),
    ];
    assert_eq!(
        admit(&r, &s, s.id, OFFICE, Uploader::Bundle(&enrolled)),
        Ok(Some(s.person.clone()))
    );
}

#[test]
fn evidence_from_another_device_or_office_is_refused() {
    let s = signed();
    let r = rules(&s, true);
    let other = "fedcba9876543210fedcba9876543210";
    assert_eq!(
        admit(&r, &s, s.id, OFFICE, Uploader::Device(other)),
        Err("evidence:statement device".to_owned()),
        "another device replayed the evidence"
    );
    let enrolled = vec![other.to_owned()];
    assert!(
        admit(&r, &s, s.id, OFFICE, Uploader::Bundle(&enrolled)).is_err(),
        "a bundle with a statement of a device not enrolled for the office"
    );
    assert!(
        admit(&r, &s, s.id, "1370100024", Uploader::Device(DEVICE)).is_err(),
        "the registration was taken for another office"
    );
    assert!(
        admit(&r, &s, DocId::random(), OFFICE, Uploader::Device(DEVICE)).is_err(),
        "the evidence was taken for another registration"
    );
}

#[test]
fn a_test_card_counts_only_where_its_root_is_trusted() {
    let s = signed();
    let production = rules(&s, false);
    let got = admit(&production, &s, s.id, OFFICE, Uploader::Device(DEVICE));
    assert!(
        got.as_ref().is_err_and(|e| e.starts_with("evidence")),
        "{got:?}"
    );
}
