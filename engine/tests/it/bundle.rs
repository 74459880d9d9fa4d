//! Sync bundles between real encrypted stores: round trip, idempotence, changes and
//! conflicts flowing both ways, and every refusal (cut, changed, wrong passphrase, other
//! office, unusable document, a document that breaks a rule) leaving the receiving store
//! unchanged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use automerge::transaction::Transactable;
use automerge::{Automerge, ROOT};
use musubi_engine::Engine;
use musubi_engine::admit::DocumentRules;
use musubi_engine::doc::{Author, CareDoc};
use musubi_engine::ids::DocId;
use musubi_engine::schema::{DocKind, Pointer};
use musubi_engine::store::{DocSummary, InitOptions, SecretString, Store};
use musubi_engine::sync::SyncStorage;
use musubi_engine::sync::admission::Uploader;
use musubi_engine::sync::bundle::{self, BundleError, MAGIC, Manifest};
use musubi_engine::sync::frame::{Frame, length_prefixed};
use serde_bytes::ByteBuf;
use serde_json::json;

use super::example;

const OFFICE: &str = "1370100016";
const OTHER_OFFICE: &str = "1370100024";
const STORE_PASS: &str = "store passphrase for tests";
const BUNDLE_PASS: &str = "bundle passphrase for tests";

struct Tablet {
    tmp: tempfile::TempDir,
    engine: Engine,
}

impl Tablet {
    fn new(office: &str, name: &str) -> Tablet {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::init(
            &tmp.path().join("data"),
            &SecretString::from(STORE_PASS.to_owned()),
            InitOptions {
                office: office.to_owned(),
                device_name: name.to_owned(),
                kdf_work_factor: Some(10),
                ..InitOptions::default()
            },
        )
        .unwrap();
        let engine = Engine::new(store, Some("テスト職員".to_owned())).unwrap();
        Tablet { tmp, engine }
    }

    fn store(&self) -> &Store {
        self.engine.store()
    }

    fn import_json(&self, values: &[serde_json::Value]) -> Vec<DocId> {
        let inputs: Vec<(String, serde_json::Value)> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("in{i}.json"), v.clone()))
            .collect();
        self.engine.import(&inputs, 1_000).unwrap().ids
    }

    fn set(&self, id: DocId, pointer: &str, value: serde_json::Value, t: i64) {
        let out = self
            .engine
            .set(id, &Pointer::parse(pointer).unwrap(), value, t)
            .unwrap();
        assert!(out.changed);
    }

    fn export(&self) -> PathBuf {
        let path = self.tmp.path().join(format!(
            "out-{}.bundle",
            hex::encode(rand::random::<[u8; 4]>())
        ));
        bundle::write_file(
            self.store(),
            &[self.store().info().office.clone()],
            5_000,
            &pass(),
            Some(10),
            &path,
            false,
        )
        .unwrap();
        path
    }

    fn import_file(&self, path: &Path) -> Result<bundle::ImportReport, BundleError> {
        let b = bundle::read_file(path, &pass())?;
        import(self, &b)
    }

    /// Everything observable: listing rows, sequence number, every document's heads.
    fn snapshot(&self) -> (Vec<DocSummary>, u64, BTreeMap<DocId, usize>) {
        let list = self.store().list_docs().unwrap();
        let chunks = list
            .iter()
            .map(|d| {
                let doc = self.store().load_doc(d.id).unwrap().unwrap();
                (d.id, doc.chunks.iter().map(Vec::len).sum())
            })
            .collect();
        (list, self.store().current_seq().unwrap(), chunks)
    }
}

/// Imports a parsed bundle as `musubi bundle import` does, under the document rules.
fn import(t: &Tablet, b: &bundle::Bundle) -> Result<bundle::ImportReport, BundleError> {
    bundle::import(
        t.store(),
        b,
        &[t.store().info().office.clone()],
        &DocumentRules,
        &|_| Uploader::TabletBundle,
    )
}

fn pass() -> SecretString {
    SecretString::from(BUNDLE_PASS.to_owned())
}

fn three_docs(t: &Tablet) -> Vec<DocId> {
    let mut second = example("survey");
    second["subject"]["name"] = json!("試験 二郎");
    let mut visit = example("visit-record");
    visit["office"] = json!(OFFICE);
    t.import_json(&[example("survey"), second, visit])
}

/// Same ids, kinds, offices and titles; same JSON; same heads.
fn assert_same_docs(a: &Tablet, b: &Tablet) {
    let key = |d: &DocSummary| (d.id, d.kind.clone(), d.office.clone(), d.title.clone());
    let mut la: Vec<_> = a.store().list_docs().unwrap().iter().map(key).collect();
    let mut lb: Vec<_> = b.store().list_docs().unwrap().iter().map(key).collect();
    la.sort();
    lb.sort();
    assert_eq!(la, lb);
    for (id, ..) in &la {
        assert_eq!(a.engine.export(*id).unwrap(), b.engine.export(*id).unwrap());
    }
    let offices = [OFFICE.to_owned()];
    assert_eq!(
        a.store().catalog(&offices).unwrap(),
        b.store().catalog(&offices).unwrap()
    );
}

#[test]
fn round_trip_between_two_stores_and_twice_changes_nothing() {
    let a = Tablet::new(OFFICE, "tablet-a");
    let b = Tablet::new(OFFICE, "tablet-b");
    let ids = three_docs(&a);
    a.set(ids[0], "/items/1-3", json!(1), 2_000);
    let file = a.export();

    let report = b.import_file(&file).unwrap();
    assert_eq!((report.new, report.updated, report.unchanged), (3, 0, 0));
    assert_eq!(report.other_office, 0);
    assert!(report.conflicted.is_empty());
    assert_same_docs(&a, &b);
    // The history travelled with the documents.
    assert_eq!(b.engine.history(ids[0]).unwrap().len(), 2);

    let before = b.snapshot();
    let again = b.import_file(&file).unwrap();
    assert_eq!((again.new, again.updated, again.unchanged), (0, 0, 3));
    assert_eq!(b.snapshot(), before, "a second import writes nothing");

    // A bundle of a store's own documents changes nothing there either.
    let own = a.snapshot();
    let r = a.import_file(&file).unwrap();
    assert_eq!(r.unchanged, 3);
    assert_eq!(a.snapshot(), own);
}

#[test]
fn changes_and_conflicts_flow_both_ways() {
    let a = Tablet::new(OFFICE, "tablet-a");
    let b = Tablet::new(OFFICE, "tablet-b");
    let ids = three_docs(&a);
    a.set(ids[0], "/items/1-3", json!(1), 2_000);
    b.import_file(&a.export()).unwrap();

    // Offline on both: the same item differently, and another field on A only.
    a.set(ids[0], "/items/1-3", json!(2), 3_000);
    a.set(ids[1], "/items/1-3", json!(3), 3_000);
    b.set(ids[0], "/items/1-3", json!(3), 3_100);

    let r = a.import_file(&b.export()).unwrap();
    assert_eq!((r.new, r.updated, r.unchanged), (0, 1, 2));
    assert_eq!(r.conflicted, vec![ids[0]]);
    let conflicts = a.engine.conflicts(ids[0]).unwrap();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].path, "/items/1-3");
    let mut devices: Vec<_> = conflicts[0]
        .values
        .iter()
        .map(|v| v.device.clone())
        .collect();
    devices.sort();
    assert_eq!(devices, ["tablet-a", "tablet-b"]);

    let r = b.import_file(&a.export()).unwrap();
    assert_eq!((r.new, r.updated, r.unchanged), (0, 2, 1));
    assert_same_docs(&a, &b);
}

#[test]
fn cut_changed_and_wrong_passphrase_bundles_are_refused_whole() {
    let a = Tablet::new(OFFICE, "tablet-a");
    let b = Tablet::new(OFFICE, "tablet-b");
    three_docs(&a);
    // Something already in B, so "unchanged" means more than "empty".
    b.import_json(&[example("subject")]);
    let file = a.export();
    let good = std::fs::read(&file).unwrap();
    let before = b.snapshot();
    let bad = b.tmp.path().join("bad.bundle");

    // age's header is text up to the "--- " MAC line; the payload follows.
    let header_end = good
        .windows(4)
        .position(|w| w == b"--- ")
        .map(|p| p + good[p..].iter().position(|&c| c == b'\n').unwrap() + 1)
        .unwrap();
    let len = good.len();
    for cut in [
        0,
        10,
        header_end - 5,
        header_end,
        header_end + 20,
        len / 2,
        len - 17,
        len - 1,
    ] {
        std::fs::write(&bad, &good[..cut]).unwrap();
        let err = b.import_file(&bad).unwrap_err();
        assert!(err.is_invalid_input(), "cut at {cut}: {err}");
        assert!(!err.is_wrong_passphrase(), "cut at {cut}: {err}");
    }
    for pos in [header_end - 3, header_end + 16, len / 2, len - 1] {
        let mut changed = good.clone();
        changed[pos] ^= 0x20;
        std::fs::write(&bad, &changed).unwrap();
        let err = b.import_file(&bad).unwrap_err();
        assert!(
            matches!(err, BundleError::Damaged(_)),
            "flip at {pos}: {err}"
        );
    }
    let mut longer = good.clone();
    longer.extend_from_slice(b"more");
    std::fs::write(&bad, &longer).unwrap();
    assert!(matches!(b.import_file(&bad), Err(BundleError::Damaged(_))));

    let wrong = SecretString::from("not the bundle passphrase".to_owned());
    let err = bundle::read_file(&file, &wrong).unwrap_err();
    assert!(err.is_wrong_passphrase(), "{err}");
    assert!(!err.to_string().contains(BUNDLE_PASS));

    std::fs::write(&bad, b"just some text, not a bundle\n").unwrap();
    assert!(matches!(
        b.import_file(&bad),
        Err(BundleError::NotABundle(_))
    ));

    assert_eq!(b.snapshot(), before, "nothing was written");
    // The good file still imports.
    assert_eq!(b.import_file(&file).unwrap().new, 3);
}

#[test]
fn bundle_of_another_office_is_refused() {
    let a = Tablet::new(OFFICE, "tablet-a");
    let other = Tablet::new(OTHER_OFFICE, "tablet-x");
    three_docs(&a);
    let before = other.snapshot();
    let err = other.import_file(&a.export()).unwrap_err();
    match &err {
        BundleError::OtherOffice { bundle, accepted } => {
            assert_eq!(bundle, OFFICE);
            assert_eq!(accepted, OTHER_OFFICE);
        }
        e => panic!("unexpected {e}"),
    }
    assert!(err.is_invalid_input());
    assert_eq!(other.snapshot(), before);
}

// ----- hand-made bundles ---------------------------------------------------------------

fn raw_doc(kind: Option<&str>, office: &str) -> Vec<u8> {
    let mut doc = Automerge::new();
    let mut tx = doc.transaction();
    if let Some(k) = kind {
        tx.put(ROOT, "kind", k).unwrap();
    }
    tx.put(ROOT, "office", office).unwrap();
    tx.commit();
    doc.save()
}

/// A plaintext bundle built by hand, with a correct trailer.
fn craft(offices: &[&str], docs: &[(DocId, Vec<u8>)]) -> Vec<u8> {
    let manifest = Manifest {
        format: 1,
        store: "crafted".to_owned(),
        offices: offices.iter().map(|o| (*o).to_owned()).collect(),
        docs: docs.len() as u64,
        created_ms: 1,
    };
    let mut out = MAGIC.to_vec();
    let mut body = Vec::new();
    ciborium::into_writer(&BTreeMap::from([("bundle_manifest", manifest)]), &mut body).unwrap();
    out.extend(length_prefixed(&body));
    for (id, bytes) in docs {
        let f = Frame::DocData {
            id: ByteBuf::from(id.as_bytes().to_vec()),
            bytes: ByteBuf::from(bytes.clone()),
        };
        out.extend(length_prefixed(&f.encode()));
    }
    let trailer = bundle::trailer_frame(&out, docs.len() as u64);
    out.extend(trailer);
    out
}

fn encrypt(plain: &[u8]) -> Vec<u8> {
    let mut r = age::scrypt::Recipient::new(pass());
    r.set_work_factor(10);
    age::encrypt(&r, plain).unwrap()
}

fn import_crafted(t: &Tablet, plain: &[u8]) -> Result<bundle::ImportReport, BundleError> {
    let b = bundle::decrypt(encrypt(plain).as_slice(), &pass())?;
    import(t, &b)
}

fn author(device: &str) -> Author {
    Author {
        device: format!("id-{device}"),
        device_name: device.to_owned(),
        staff: None,
        action: "set".to_owned(),
        time_ms: 9_000,
    }
}

/// A care document made outside any engine (no rule checked), saved.
fn made(kind: DocKind, json: &serde_json::Value) -> CareDoc {
    CareDoc::create(
        DocId::random(),
        kind,
        json,
        automerge::ActorId::random(),
        &author("crafted"),
    )
    .unwrap()
}

/// The example survey of this office, as a document made elsewhere.
fn valid_survey() -> Vec<u8> {
    let mut v = example("survey");
    v["office"] = json!(OFFICE);
    made(DocKind::Survey, &v).save()
}

#[test]
fn documents_of_other_offices_inside_are_left_out_and_counted() {
    let b = Tablet::new(OFFICE, "tablet-b");
    let ours = DocId::random();
    let theirs = DocId::random();
    let plain = craft(
        &[OFFICE, OTHER_OFFICE],
        &[
            (ours, valid_survey()),
            (theirs, raw_doc(Some("survey"), OTHER_OFFICE)),
        ],
    );
    let r = import_crafted(&b, &plain).unwrap();
    assert_eq!((r.new, r.other_office), (1, 1));
    let ids: Vec<DocId> = b
        .store()
        .list_docs()
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, vec![ours]);
}

#[test]
fn one_unusable_document_refuses_the_whole_bundle() {
    let b = Tablet::new(OFFICE, "tablet-b");
    b.import_json(&[example("subject")]);
    let before = b.snapshot();
    let good = (DocId::random(), valid_survey());
    let cases = [
        (DocId::random(), b"\x85\x6f\x4a\x83 not automerge".to_vec()),
        (DocId::random(), raw_doc(None, OFFICE)),
        (DocId::random(), raw_doc(Some("letter"), OFFICE)),
        (DocId::random(), raw_doc(Some("survey"), "")),
    ];
    for bad in cases {
        let bad_short = bad.0.short();
        let plain = craft(&[OFFICE], &[good.clone(), bad]);
        match import_crafted(&b, &plain) {
            Err(BundleError::Document { doc, .. }) => assert_eq!(doc, bad_short),
            other => panic!("unexpected {other:?}"),
        }
    }
    // The same document twice is refused at parse time.
    let plain = craft(&[OFFICE], &[good.clone(), good.clone()]);
    assert!(matches!(
        import_crafted(&b, &plain),
        Err(BundleError::Document { .. })
    ));
    assert_eq!(b.snapshot(), before, "nothing was written");
    // The good document alone imports.
    assert_eq!(
        import_crafted(&b, &craft(&[OFFICE], &[good])).unwrap().new,
        1
    );
}

#[test]
fn a_wrong_trailer_is_refused_even_inside_valid_encryption() {
    let b = Tablet::new(OFFICE, "tablet-b");
    let doc = raw_doc(Some("survey"), OFFICE);
    let mut plain = craft(&[OFFICE], &[(DocId::random(), doc.clone())]);
    // Change one byte inside the document: the age layer is fine (it encrypts the changed
    // plaintext), the trailer hash is not.
    let start = plain
        .windows(doc.len())
        .position(|w| w == doc.as_slice())
        .unwrap();
    plain[start + doc.len() / 2] ^= 0x01;
    let err = import_crafted(&b, &plain).unwrap_err();
    assert!(matches!(err, BundleError::Checksum), "{err}");
    assert!(err.is_invalid_input());
    assert!(b.store().list_docs().unwrap().is_empty());
}

// ----- the document rules -------------------------------------------------------------

/// A made-up 12-digit number with a valid 個人番号 check digit (synthetic).
fn my_number() -> String {
    let body = *b"98765432109";
    let digits: [u8; 11] = body.map(|b| b - b'0');
    format!(
        "98765432109{}",
        musubi_engine::identifiers::my_number_check_digit(&digits)
    )
}

fn registration_json() -> serde_json::Value {
    serde_json::from_str(include_str!("../data/registration-without-evidence.json")).unwrap()
}

fn at(pointer: &str, value: serde_json::Value) -> (Pointer, serde_json::Value) {
    (Pointer::parse(pointer).unwrap(), value)
}

/// A change made on another copy of a stored document, outside any engine: the whole
/// document as a bundle would carry it.
fn edited(t: &Tablet, id: DocId, edits: &[(Pointer, serde_json::Value)]) -> Vec<u8> {
    let mut doc = t
        .engine
        .load(id)
        .unwrap()
        .fork_with_actor(automerge::ActorId::random());
    for (p, v) in edits {
        doc.set(p, v, &author("tablet-x"))
            .unwrap()
            .expect("a change");
    }
    doc.save()
}

fn refused(result: Result<bundle::ImportReport, BundleError>) -> (String, &'static str, String) {
    match result {
        Err(e @ BundleError::Refused { .. }) => {
            assert!(e.is_invalid_input());
            let text = e.to_string();
            assert!(text.contains("nothing was written"), "{text}");
            let BundleError::Refused { doc, code, field } = e else {
                unreachable!()
            };
            let (ja, _) = musubi_engine::admit::rejection_text(code);
            assert!(text.contains(ja), "Japanese text in {text}");
            (doc, code, field.unwrap_or_default())
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_document_that_breaks_a_rule_refuses_the_whole_bundle_and_writes_nothing() {
    let b = Tablet::new(OFFICE, "tablet-b");
    // A submitted survey, and a registration received earlier.
    let survey = b.import_json(&[example("survey")])[0];
    let doc = b.engine.export(survey).unwrap();
    let submit =
        musubi_engine::care::workflow::submit(&doc, "職員", "2026-10-15T09:00:00+09:00").unwrap();
    assert!(
        b.engine
            .apply_edits(survey, &submit, "submit", 2_000)
            .unwrap()
    );
    let mut reg_doc = made(DocKind::Registration, &registration_json());
    let reg = reg_doc.id();
    let r = import_crafted(&b, &craft(&[OFFICE], &[(reg, reg_doc.save())])).unwrap();
    assert_eq!(r.new, 1);
    let before = b.snapshot();
    let good = (DocId::random(), valid_survey());

    // A new survey with a 個人番号 in a note.
    let mut v = example("survey");
    v["office"] = json!(OFFICE);
    v["special_notes"][0]["text"] = json!(format!("個人番号 {}", my_number()));
    let mut with_number = made(DocKind::Survey, &v);
    let number_id = with_number.id();
    let number_bytes = with_number.save();
    // The submitted survey edited without an amendment.
    let plain_edit = edited(&b, survey, &[at("/items/1-3", json!(1))]);
    // The registration's verification changed.
    let reg_changed = edited(&b, reg, &[at("/verification/result", json!("failed"))]);
    // A survey of this office moved to another office.
    let moved = edited(&b, survey, &[at("/office", json!(OTHER_OFFICE))]);

    let cases: [(DocId, Vec<u8>, &str, &str); 4] = [
        (
            number_id,
            number_bytes.clone(),
            "my_number",
            "/special_notes/0/text",
        ),
        (survey, plain_edit, "submitted", "/items/1-3"),
        (reg, reg_changed, "registration", "/verification"),
        (survey, moved, "forbidden", "/office"),
    ];
    for (id, bytes, code, field) in cases {
        let plain = craft(&[OFFICE], &[good.clone(), (id, bytes)]);
        let (doc, c, f) = refused(import_crafted(&b, &plain));
        assert_eq!((doc, c, f.as_str()), (id.short(), code, field));
        assert_eq!(b.snapshot(), before, "nothing was written ({code})");
    }
    // The message names the field, never the value.
    let plain = craft(&[OFFICE], &[(number_id, number_bytes)]);
    let err = import_crafted(&b, &plain).unwrap_err().to_string();
    assert!(!err.contains(&my_number()), "{err}");

    // What a tablet may do passes: an amendment, consent on the registration.
    let doc = b.engine.export(survey).unwrap();
    let amend = musubi_engine::care::workflow::amend(
        &doc,
        &Pointer::parse("/items/1-3").unwrap(),
        json!(1),
        "記入誤り",
        "職員",
        "2026-10-16T09:00:00+09:00",
    )
    .unwrap();
    let amended = edited(&b, survey, &amend);
    let consent = edited(
        &b,
        reg,
        &[at(
            "/consent",
            json!({"consented_by": "試験 花子", "scope": ["介護情報基盤での担当事業所としての情報の閲覧"],
                   "date": "2026-09-01", "method": "signature"}),
        )],
    );
    let plain = craft(&[OFFICE], &[good, (survey, amended), (reg, consent)]);
    let r = import_crafted(&b, &plain).unwrap();
    assert_eq!((r.new, r.updated), (1, 2));
    assert_eq!(b.engine.export(survey).unwrap()["items"]["1-3"], 1);
    assert_eq!(
        b.engine.export(reg).unwrap()["consent"]["method"],
        "signature"
    );
}

#[test]
fn a_new_registration_needs_card_evidence_checked_here() {
    let b = Tablet::new(OFFICE, "tablet-b");
    let before = b.snapshot();
    let mut reg = made(DocKind::Registration, &registration_json());
    let plain = craft(&[OFFICE], &[(reg.id(), reg.save())]);
    let parsed = bundle::decrypt(encrypt(&plain).as_slice(), &pass()).unwrap();
    let rules = musubi_engine::admit::rules::Rules::bundled().unwrap();
    for uploader in [Uploader::TabletBundle, Uploader::Bundle(&[])] {
        let r = bundle::import(b.store(), &parsed, &[OFFICE.to_owned()], &rules, &|_| {
            uploader
        });
        let (doc, code, _) = refused(r);
        assert_eq!((doc, code), (reg.id().short(), "evidence"));
        assert_eq!(b.snapshot(), before);
    }
}

/// Vouches for every new registration as if its card evidence had verified: the person
/// is the registration's `subject_id`, the certificate its `verification.serial`.
struct VouchForRegistrations;

impl musubi_engine::sync::admission::Admission for VouchForRegistrations {
    fn admit(
        &self,
        incoming: &musubi_engine::sync::admission::Incoming<'_>,
    ) -> Result<musubi_engine::sync::admission::Admitted, musubi_engine::sync::admission::Refused>
    {
        use musubi_engine::sync::admission::{Admitted, EvidenceVerdict};
        musubi_engine::admit::check_incoming(incoming)?;
        if incoming.kind != "registration" || incoming.stored.is_some() {
            return Ok(Admitted::default());
        }
        let doc = musubi_engine::doc::json_of(incoming.merged, DocKind::Registration).unwrap();
        Ok(Admitted {
            evidence: Some(EvidenceVerdict {
                person: doc["subject_id"].as_str().unwrap().to_owned(),
                cert_fingerprint: doc["verification"]["serial"].as_str().unwrap().to_owned(),
                device: "tablet-x".to_owned(),
            }),
            conflicts: None,
        })
    }
}

#[test]
fn admitted_evidence_is_kept_and_one_card_serves_one_person() {
    let b = Tablet::new(OFFICE, "tablet-b");
    let reg = |subject: &str, serial: &str| {
        let mut v = registration_json();
        v["subject_id"] = json!(subject);
        v["verification"]["serial"] = json!(serial);
        let mut d = made(DocKind::Registration, &v);
        (d.id(), d.save())
    };
    let person_a = "0000000000000000000000000000000a";
    let person_b = "0000000000000000000000000000000b";
    let import = |docs: &[(DocId, Vec<u8>)]| {
        let parsed = bundle::decrypt(encrypt(&craft(&[OFFICE], docs)).as_slice(), &pass()).unwrap();
        bundle::import(
            b.store(),
            &parsed,
            &[OFFICE.to_owned()],
            &VouchForRegistrations,
            &|_| Uploader::TabletBundle,
        )
    };
    let first = reg(person_a, "card-1");
    assert_eq!(import(&[first]).unwrap().new, 1);
    assert_eq!(
        b.store().cert_person("card-1").unwrap().as_deref(),
        Some(person_a)
    );
    let before = b.snapshot();
    // The same card for another person: refused, here and inside one bundle.
    let other = reg(person_b, "card-1");
    let other_short = other.0.short();
    let (doc, code, _) = refused(import(&[other]));
    assert_eq!((doc, code), (other_short, "card_reused"));
    let two = [reg(person_a, "card-2"), reg(person_b, "card-2")];
    let second_short = two[1].0.short();
    let (doc, code, _) = refused(import(&two));
    assert_eq!((doc, code), (second_short, "card_reused"));
    assert_eq!(b.snapshot(), before);
    assert_eq!(b.store().cert_person("card-2").unwrap(), None);
    // The same card for the same person again is fine.
    assert_eq!(import(&[reg(person_a, "card-1")]).unwrap().new, 1);
}
