//! Card evidence of registrations against the in-process virtual card: the card really
//! signs the registration statement with its test key, and `check_registration` (what
//! every receiver runs) accepts exactly the registration it was made for.

#![allow(clippy::unwrap_used)]

use musubi_engine::card::cert::CertError;
use musubi_engine::card::compare::{FieldMatch, Record};
use musubi_engine::card::evidence::{
    EvidenceError, Statement, StatementBase, base64, check_registration,
};
use musubi_engine::card::reader::PinKind;
use musubi_engine::card::register::{
    Context, EvidenceState, RegisterError, SharingState, checked_sharing_state,
    local_evidence_state, registration_document, sharing_state,
};
use musubi_engine::card::roots::TrustStore;
use musubi_engine::card::{PinSource, Verified, VerifyOptions, verify_card};
use musubi_engine::ids::DocId;
use musubi_vcard::card::{Corrupt, Counters, VirtualCard};
use musubi_vcard::pki::{TRUST_ANCHOR_FILE, TestPki};
use musubi_vcard::{CertChoice, Holder, InProcess, build};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;
use zeroize::Zeroizing;

const OFFICE: &str = "1370100016";

fn pki(which: usize) -> &'static (tempfile::TempDir, TestPki) {
    static PKI: [OnceLock<(tempfile::TempDir, TestPki)>; 2] = [OnceLock::new(), OnceLock::new()];
    PKI[which].get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::load_or_create(dir.path()).unwrap();
        (dir, pki)
    })
}

/// Bundled J-LIS roots plus the test roots of the PKIs named.
fn trust(which: &[usize]) -> TrustStore {
    let mut t = TrustStore::bundled().unwrap();
    for w in which {
        let pem = std::fs::read_to_string(pki(*w).0.path().join(TRUST_ANCHOR_FILE)).unwrap();
        t.add_pem(&pem).unwrap();
    }
    t
}

struct Pins;
impl PinSource for Pins {
    fn pin(&mut self, _: PinKind, _: u8) -> Option<Zeroizing<String>> {
        Some(Zeroizing::new("1234".to_owned()))
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// One verification by a card of PKI `which` for a fresh registration id.
fn verified(which: usize, holder: &Holder) -> Verified {
    let content = build(&pki(which).1, holder, CertChoice::Valid).unwrap();
    let mut card = InProcess::new(VirtualCard::new(
        content,
        Counters::default(),
        Corrupt::None,
    ));
    let opts = VerifyOptions {
        now: now(),
        allow_last_try: false,
        basic4: true,
        statement: StatementBase {
            registration: DocId::random(),
            person: hex::encode(Sha256::digest(b"person")),
            office: OFFICE.to_owned(),
            device: "0f".repeat(16),
            nonce: rand::random(),
        },
        record: Record {
            name: Some("結城 花子".to_owned()),
            birth_date: Some("1944-05-12".to_owned()),
        },
    };
    verify_card(&mut card, &trust(&[which]), &opts, &mut Pins).unwrap()
}

fn context(accept_mismatch: bool) -> Context {
    Context {
        now_ms: now() * 1000,
        device: "tablet-01".to_owned(),
        staff: Some("架空 太郎".to_owned()),
        accept_mismatch,
    }
}

/// The registration document `card::register` writes for `v` (with its office).
fn registration(v: &Verified) -> (DocId, Value) {
    let doc = registration_document(v, DocId::random(), OFFICE, &context(false)).unwrap();
    (v.statement.registration, doc)
}

fn evidence_mut(doc: &mut Value) -> &mut Value {
    &mut doc["verification"]["evidence"]
}

#[test]
fn a_registration_with_its_card_evidence_is_accepted() {
    let v = verified(0, &Holder::default());
    let (id, doc) = registration(&v);
    let a = check_registration(id, &doc, &trust(&[0])).unwrap();
    assert!(a.test_root, "the virtual card chains to a configured root");
    assert_eq!(a.statement, v.statement);
    assert_eq!(a.statement.office, OFFICE);
    assert_eq!(
        (a.statement.name, a.statement.birth_date),
        (FieldMatch::Match, FieldMatch::Match)
    );
    assert_eq!(a.cert_fingerprint, v.cert.fingerprint_sha256);
    assert_eq!(
        a.cert_fingerprint,
        hex::encode(Sha256::digest(&v.certificate))
    );
    // The stored statement is the canonical text the card signed.
    let stored = doc["verification"]["evidence"]["statement"]
        .as_str()
        .unwrap();
    let text = String::from_utf8(base64::decode(stored).unwrap()).unwrap();
    assert_eq!(Statement::parse(&text).unwrap(), v.statement);
    assert_eq!(
        base64::decode(
            doc["verification"]["evidence"]["certificate"]
                .as_str()
                .unwrap()
        ),
        Some(v.certificate.clone())
    );
    assert_eq!(doc["verification"]["comparison"]["name"], "match");
    // The document's states.
    assert_eq!(sharing_state(&doc), SharingState::NoConsent);
    assert_eq!(
        checked_sharing_state(id, &doc, &trust(&[0])),
        SharingState::NoConsent
    );
    assert!(matches!(
        local_evidence_state(id, &doc, &trust(&[0])),
        EvidenceState::Valid(_)
    ));
}

#[test]
fn a_tampered_statement_is_refused() {
    let v = verified(0, &Holder::default());
    let (id, doc) = registration(&v);
    let text = v.statement.to_text();
    // Still canonical, but not what the card signed: another time, person, device, nonce.
    let st = &v.statement;
    let other = |f: &dyn Fn(&mut Statement)| {
        let mut s = st.clone();
        f(&mut s);
        s.to_text()
    };
    for changed in [
        other(&|s| s.time += 1),
        other(&|s| s.person = "00".repeat(32)),
        other(&|s| s.device = "11".repeat(16)),
        other(&|s| s.nonce[0] ^= 1),
    ] {
        assert_ne!(changed, text);
        let mut d = doc.clone();
        evidence_mut(&mut d)["statement"] = json!(base64::encode(changed.as_bytes()));
        let e = check_registration(id, &d, &trust(&[0])).unwrap_err();
        assert_eq!(e, EvidenceError::Signature);
        assert_eq!(
            (e.code(), e.field()),
            ("evidence", "/verification/evidence/signature")
        );
    }
    // A registration that claims a comparison the card did not sign.
    let mut d = doc.clone();
    let claimed = other(&|s| s.name = FieldMatch::NotCompared);
    evidence_mut(&mut d)["statement"] = json!(base64::encode(claimed.as_bytes()));
    let e = check_registration(id, &d, &trust(&[0])).unwrap_err();
    assert_eq!(e.field(), "/verification/comparison/name");
}

#[test]
fn evidence_for_another_registration_is_refused() {
    let v = verified(0, &Holder::default());
    let (id, doc) = registration(&v);
    let e = check_registration(DocId::random(), &doc, &trust(&[0])).unwrap_err();
    assert!(matches!(e, EvidenceError::Mismatch { .. }), "{e:?}");
    assert_eq!(e.field(), "/verification/evidence/statement");
    // Another office claiming it.
    let mut d = doc.clone();
    d["office"] = json!("1370100024");
    assert_eq!(
        check_registration(id, &d, &trust(&[0]))
            .unwrap_err()
            .field(),
        "/office"
    );
}

#[test]
fn a_swapped_certificate_is_refused() {
    let v = verified(0, &Holder::default());
    let (id, doc) = registration(&v);
    // Another card (another key, another test root, trusted too).
    let w = verified(1, &Holder::default());
    let both = trust(&[0, 1]);
    let mut d = doc.clone();
    evidence_mut(&mut d)["certificate"] = json!(base64::encode(&w.certificate));
    let e = check_registration(id, &d, &both).unwrap_err();
    assert_eq!(e.field(), "/verification/fingerprint_sha256");
    // Even with the registration's certificate facts changed to match, the signature
    // was made by another key.
    d["verification"]["fingerprint_sha256"] = json!(w.cert.fingerprint_sha256);
    d["verification"]["serial"] = json!(w.cert.serial);
    d["verification"]["issuer"] = json!(w.cert.issuer);
    let e = check_registration(id, &d, &both).unwrap_err();
    assert_eq!(e, EvidenceError::Signature);
    // And the other card's whole evidence is for its own registration id.
    let mut d = doc.clone();
    *evidence_mut(&mut d) = w.evidence().to_json();
    let e = check_registration(id, &d, &both).unwrap_err();
    assert_eq!(e.field(), "/verification/evidence/statement");
}

#[test]
fn the_signature_of_another_statement_is_refused() {
    let v = verified(0, &Holder::default());
    let w = verified(0, &Holder::default());
    let (id, doc) = registration(&v);
    let mut d = doc.clone();
    evidence_mut(&mut d)["signature"] = json!(base64::encode(&w.signature));
    assert_eq!(
        check_registration(id, &d, &trust(&[0])).unwrap_err(),
        EvidenceError::Signature
    );
    // A corrupted signature likewise.
    let mut sig = v.signature.clone();
    sig[100] ^= 0x40;
    let mut d = doc.clone();
    evidence_mut(&mut d)["signature"] = json!(base64::encode(&sig));
    assert_eq!(
        check_registration(id, &d, &trust(&[0])).unwrap_err(),
        EvidenceError::Signature
    );
}

#[test]
fn an_untrusted_root_is_refused_and_shows_as_needing_a_new_check() {
    let v = verified(0, &Holder::default());
    let (id, mut doc) = registration(&v);
    // Only the bundled J-LIS roots (the relay's default): the test root is not among them.
    let bundled = trust(&[]);
    let e = check_registration(id, &doc, &bundled).unwrap_err();
    assert_eq!(e, EvidenceError::Certificate(CertError::UnknownIssuer));
    assert_eq!(e.field(), "/verification/evidence/certificate");
    assert_eq!(
        checked_sharing_state(id, &doc, &bundled),
        SharingState::NeedsReverification
    );
    // With consent the document alone says valid; checked, it still needs a new check.
    doc["consent"] = json!({"consented_by": "結城 花子", "scope": ["x"], "date": "2026-01-01", "method": "signature"});
    assert_eq!(sharing_state(&doc), SharingState::Valid);
    assert_eq!(
        checked_sharing_state(id, &doc, &bundled),
        SharingState::NeedsReverification
    );
    assert_eq!(
        checked_sharing_state(id, &doc, &trust(&[0])),
        SharingState::Valid
    );
    // The certificate is checked at the statement's time, not now: an evidence whose
    // statement claims a time outside the certificate's validity is refused.
    let mut st = v.statement.clone();
    st.time = v.cert.not_after + 1;
    let mut d = doc.clone();
    evidence_mut(&mut d)["statement"] = json!(base64::encode(st.to_text().as_bytes()));
    assert!(matches!(
        check_registration(id, &d, &trust(&[0])).unwrap_err(),
        EvidenceError::Certificate(CertError::Expired(_))
    ));
}

#[test]
fn a_registration_without_evidence_needs_a_new_check() {
    let v = verified(0, &Holder::default());
    let (id, mut doc) = registration(&v);
    doc["verification"]
        .as_object_mut()
        .unwrap()
        .remove("evidence");
    assert_eq!(sharing_state(&doc), SharingState::NeedsReverification);
    assert_eq!(SharingState::NeedsReverification.label(), "要再確認");
    assert_eq!(
        local_evidence_state(id, &doc, &trust(&[0])),
        EvidenceState::Missing
    );
    assert_eq!(
        check_registration(id, &doc, &trust(&[0])).unwrap_err(),
        EvidenceError::Missing
    );
}

#[test]
fn a_signed_mismatch_counts_only_with_the_staff_decision() {
    let holder = Holder {
        name: "結城　咲子".to_owned(),
        ..Holder::default()
    };
    let v = verified(0, &holder);
    assert_eq!(v.comparison, (FieldMatch::Mismatch, FieldMatch::Match));
    assert_eq!(v.statement.name, FieldMatch::Mismatch);
    // Not accepted: no document at all.
    let err = registration_document(&v, DocId::random(), OFFICE, &context(false)).unwrap_err();
    assert!(matches!(err, RegisterError::Mismatch(_)));
    // Accepted by a named staff member: checks out.
    let doc = registration_document(&v, DocId::random(), OFFICE, &context(true)).unwrap();
    let id = v.statement.registration;
    check_registration(id, &doc, &trust(&[0])).unwrap();
    // The acceptance removed, or the comparison rewritten to "match": refused.
    let mut d = doc.clone();
    d["verification"]["comparison"]
        .as_object_mut()
        .unwrap()
        .remove("mismatch_accepted_by");
    assert_eq!(
        check_registration(id, &d, &trust(&[0]))
            .unwrap_err()
            .field(),
        "/verification/comparison/mismatch_accepted_by"
    );
    let mut d = doc.clone();
    d["verification"]["comparison"]["name"] = json!("match");
    assert_eq!(
        check_registration(id, &d, &trust(&[0]))
            .unwrap_err()
            .field(),
        "/verification/comparison/name"
    );
}

#[test]
fn the_registration_must_describe_the_certificate_it_carries() {
    let v = verified(0, &Holder::default());
    let (id, doc) = registration(&v);
    for (field, value) in [
        ("fingerprint_sha256", json!("00".repeat(32))),
        ("serial", json!("01")),
        ("issuer", json!("C=JP")),
        ("result", json!("failed")),
        ("method", json!("other")),
    ] {
        let mut d = doc.clone();
        d["verification"][field] = value;
        let e = check_registration(id, &d, &trust(&[0])).unwrap_err();
        assert_eq!(e.field(), format!("/verification/{field}"));
        let text = format!("{e} {e:?}");
        assert!(
            !text.contains(&v.cert.serial),
            "a value in the error: {text}"
        );
    }
}
