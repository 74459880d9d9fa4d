//! Regenerates the binary seeds of `corpus-seed/automerge_load/`, `corpus-seed/sync_frame/`
//! and `corpus-seed/bundle_parse/` (deterministic: fixed actor, ids and time), and the
//! seeds of the enrollment targets (`enroll_ticket`, `cert_request`, `cert_answer`,
//! `enroll_cert`) from the committed key material in `fixtures/enroll/` (fixed secret).
//! Run from `fuzz/`: `cargo run --features net --example make_seeds`.

use std::fs;
use std::path::Path;

use musubi_engine::doc::CareDoc;
use musubi_engine::ids::DocId;
use musubi_engine::net::Zeroizing;
use musubi_engine::net::certx::{self, CertFrame, refusal};
use musubi_engine::net::enroll::{self, EnrollmentTicket};
use musubi_engine::net::pki;
use musubi_engine::schema::{DocKind, Pointer};
use musubi_engine::sync::MemoryStorage;
use musubi_engine::sync::bundle;
use musubi_engine::sync::frame::{Frame, WireEntry, length_prefixed};
use musubi_fuzz::{actor, author, doc_id, enroll_fixture, example_survey};
use serde_bytes::ByteBuf;
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = Path::new("corpus-seed/automerge_load");
    fs::create_dir_all(out)?;
    let mut doc = CareDoc::create(
        doc_id(),
        DocKind::Survey,
        &example_survey(),
        actor(),
        &author(),
    )?;
    let snapshot = doc.save();
    fs::write(out.join("survey-snapshot"), &snapshot)?;
    let change = doc
        .set(&Pointer::parse("/items/1-3")?, &json!(3), &author())?
        .ok_or("no change")?;
    fs::write(out.join("survey-change"), &change)?;
    // A second actor edits concurrently: the merged save holds a conflict.
    let mut other = CareDoc::load(
        doc_id(),
        &[snapshot.clone()],
        automerge::ActorId::from(vec![2u8; 16]),
    )?;
    other.set(&Pointer::parse("/items/1-3")?, &json!(1), &author())?;
    doc.merge(&mut other)?;
    fs::write(out.join("survey-conflict"), doc.save())?;
    // A small document of another kind.
    let subject: serde_json::Value =
        serde_json::from_str(include_str!("../../schemas/examples/subject.json"))?;
    let mut small = CareDoc::create(
        doc_id(),
        DocKind::parse("subject").ok_or("kind")?,
        &subject,
        actor(),
        &author(),
    )?;
    let subject_bytes = small.save();
    fs::write(out.join("subject-snapshot"), &subject_bytes)?;
    // A list of a million nulls made in one change: 174 bytes whose run-length encoded
    // columns hold more operations than the decode bound allows (the fuzzer mutates the
    // run lengths; automerge would expand them).
    {
        use automerge::transaction::Transactable as _;
        let mut runs = automerge::AutoCommit::new().with_actor(actor());
        let list = runs.put_object(automerge::ROOT, "l", automerge::ObjType::List)?;
        runs.splice(
            &list,
            0,
            0,
            std::iter::repeat_n(automerge::ScalarValue::Null, 1_000_000),
        )?;
        runs.commit_with(automerge::transaction::CommitOptions::default().with_time(0));
        fs::write(out.join("rle-a-million-nulls"), runs.save())?;
    }
    // A survey whose `items` nests 40 maps deep, past `doc::MAX_DOC_DEPTH`: reading it
    // stops at the bound (a hundred thousand levels once overflowed the relay's stack).
    {
        use automerge::transaction::Transactable as _;
        let mut deep = automerge::AutoCommit::new().with_actor(actor());
        deep.put(automerge::ROOT, "kind", "survey")?;
        deep.put(automerge::ROOT, "office", "1370100016")?;
        let mut obj = deep.put_object(automerge::ROOT, "items", automerge::ObjType::Map)?;
        for _ in 1..40 {
            obj = deep.put_object(&obj, "x", automerge::ObjType::Map)?;
        }
        deep.commit_with(automerge::transaction::CommitOptions::default().with_time(0));
        fs::write(out.join("survey-nested-past-the-depth-limit"), deep.save())?;
    }

    // Sync frames, alone and as a length-prefixed stream.
    let out = Path::new("corpus-seed/sync_frame");
    fs::create_dir_all(out)?;
    let id = ByteBuf::from(doc_id().as_bytes().to_vec());
    let frames = [
        Frame::Hello {
            protocol: 1,
            actor: ByteBuf::from(vec![1u8; 16]),
            epoch: None,
            cursor: 0,
            changed: vec![WireEntry {
                id: id.clone(),
                heads: ByteBuf::from(vec![7u8; 32]),
            }],
            digest: ByteBuf::from(vec![9u8; 32]),
            caps: vec!["actors".to_owned()],
        },
        Frame::DocData {
            id: id.clone(),
            bytes: ByteBuf::from(subject_bytes.clone()),
        },
        Frame::Want { ids: vec![id] },
        Frame::Idle {
            sent: 3,
            received: 2,
        },
        Frame::Done,
    ];
    let mut stream = Vec::new();
    for (n, f) in frames.iter().enumerate() {
        fs::write(out.join(format!("frame-{n}-{}", f.name())), f.encode())?;
        stream.extend(length_prefixed(&f.encode()));
    }
    fs::write(out.join("stream"), stream)?;
    // `done` as devices before the one-key map sent it (still read).
    fs::write(out.join("frame-done-bare"), b"\x64done")?;

    // A bundle plaintext of two documents: mode byte 0 (as is) and mode byte 1 (without
    // its trailer, which the target appends).
    let out = Path::new("corpus-seed/bundle_parse");
    fs::create_dir_all(out)?;
    let office = "1370100016";
    let store = MemoryStorage::new("seed-store");
    store.put_local(doc_id(), "survey", office, snapshot.clone())?;
    store.put_local(
        DocId::from_bytes([0x6e; 16]),
        "subject",
        office,
        subject_bytes,
    )?;
    let mut plain = Vec::new();
    bundle::write_plaintext(&store, &[office.to_owned()], 1_790_000_000_000, &mut plain)?;
    let mut as_is = vec![0u8];
    as_is.extend_from_slice(&plain);
    fs::write(out.join("two-docs"), as_is)?;
    let trailer_len = bundle::trailer_frame(&[], 2).len();
    let mut open = vec![1u8];
    open.extend_from_slice(&plain[..plain.len() - trailer_len]);
    fs::write(out.join("two-docs-no-trailer"), open)?;
    enrollment_seeds()
}

/// Seeds of the enrollment targets, from the committed fixtures (`fixtures/enroll/`).
fn enrollment_seeds() -> Result<(), Box<dyn std::error::Error>> {
    let subject = enroll_fixture::subject();
    let key = enroll_fixture::device_key();

    // Enrollment file content (plaintext) and typed codes.
    let out = Path::new("corpus-seed/enroll_ticket");
    fs::create_dir_all(out)?;
    let ticket = EnrollmentTicket {
        device_id: subject.device_id.clone(),
        device_name: subject.device_name.clone(),
        office: subject.office.clone(),
        relay_address: enroll_fixture::RELAY_ADDRESS.to_owned(),
        office_ca_pem: enroll_fixture::OFFICE_CA_PEM.to_owned(),
        secret: Zeroizing::new([0x5a; enroll::SECRET_BYTES]),
    };
    let text = enroll::ticket_to_toml(&ticket)?;
    fs::write(out.join("ticket"), text.as_bytes())?;
    let v6 = EnrollmentTicket {
        relay_address: "[2001:db8::1]:4433".to_owned(),
        ..ticket.clone()
    };
    fs::write(
        out.join("ticket-ipv6"),
        enroll::ticket_to_toml(&v6)?.as_bytes(),
    )?;
    fs::write(
        out.join("format-1"),
        text.replace("format = 2", "format = 1"),
    )?;
    fs::write(out.join("format-3"), "format = 3\n")?;
    fs::write(out.join("code"), "ABCDE-FGHJK-MNPQR-STVWX")?;
    fs::write(out.join("code-typed"), " oil00 11111-abcde\tstvwx\n")?;

    // Requests the relay reads.
    let out = Path::new("corpus-seed/cert_request");
    fs::create_dir_all(out)?;
    let enroll_frame = |protocol, device_id: &str, secret: Vec<u8>| CertFrame::Enroll {
        protocol,
        device_id: device_id.to_owned(),
        secret: ByteBuf::from(secret),
    };
    let requests = [
        (
            "enroll",
            enroll_frame(certx::PROTOCOL, enroll_fixture::DEVICE_ID, vec![0x5a; 32]),
        ),
        (
            "enroll-short-secret",
            enroll_frame(certx::PROTOCOL, enroll_fixture::DEVICE_ID, vec![1; 16]),
        ),
        (
            "enroll-protocol-2",
            enroll_frame(2, enroll_fixture::DEVICE_ID, vec![0x5a; 32]),
        ),
        (
            "renew",
            CertFrame::Renew {
                protocol: certx::PROTOCOL,
                public_key: ByteBuf::from(key.spki_der.clone()),
            },
        ),
        (
            "renew-ca-key",
            CertFrame::Renew {
                protocol: certx::PROTOCOL,
                public_key: ByteBuf::from(pki::cert_spki(&pki::cert_der_from_pem(
                    enroll_fixture::OFFICE_CA_PEM,
                    "office CA",
                )?)?),
            },
        ),
        (
            "refused",
            CertFrame::refused(refusal::BAD_REQUEST, "wrong direction"),
        ),
    ];
    for (name, frame) in requests {
        fs::write(out.join(name), frame.encode())?;
    }

    // Answers the tablet reads.
    let out = Path::new("corpus-seed/cert_answer");
    fs::create_dir_all(out)?;
    let cert_pem = enroll_fixture::DEVICE_CERT_PEM.to_owned();
    let answers = [
        (
            "enrolled",
            CertFrame::Enrolled {
                cert_pem: cert_pem.clone(),
            },
        ),
        ("renewed", CertFrame::Renewed { cert_pem }),
        (
            "enrolled-ca",
            CertFrame::Enrolled {
                cert_pem: enroll_fixture::OFFICE_CA_PEM.to_owned(),
            },
        ),
        ("refused-used", CertFrame::refused(refusal::USED, "used")),
        (
            "refused-other",
            CertFrame::refused("other", &"x".repeat(300)),
        ),
    ];
    for (name, frame) in answers {
        fs::write(out.join(name), frame.encode())?;
    }

    // Handshake certificates and public keys (DER).
    let out = Path::new("corpus-seed/enroll_cert");
    fs::create_dir_all(out)?;
    fs::write(
        out.join("enroll-request"),
        enroll_fixture::ENROLL_REQUEST_DER,
    )?;
    fs::write(
        out.join("device-cert"),
        pki::cert_der_from_pem(enroll_fixture::DEVICE_CERT_PEM, "device certificate")?,
    )?;
    fs::write(
        out.join("office-ca"),
        pki::cert_der_from_pem(enroll_fixture::OFFICE_CA_PEM, "office CA")?,
    )?;
    fs::write(out.join("device-spki"), &key.spki_der)?;
    Ok(())
}
