//! What a relay session takes in from its device: the decode bound before automerge,
//! per-document limits, per-session caps, storage quotas, and the same answers for another
//! office's id as for a missing one on `doc_data` and `doc_sync`. Sans-IO, against
//! `MemoryStorage`; the real relay process is exercised in tests/tests/hostile_e2e.rs.

use std::io::Write;
use std::sync::Arc;

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ROOT};
use musubi_engine::ids::DocId;
use musubi_engine::sync::admission::AdmitAllForSimulation;
use musubi_engine::sync::inflate::InflateError;
use musubi_engine::sync::limits::{IntakeLimits, MAX_DECODED_FRAME, Quota};
use musubi_engine::sync::{Frame, MemoryStorage, PeerAccess, Session, SyncStorage};
use serde_bytes::ByteBuf;

const OFFICE_A: &str = "1370100016";
const OFFICE_B: &str = "1370200014";

fn relay(store: &Arc<MemoryStorage>, limits: IntakeLimits) -> Session<Arc<MemoryStorage>> {
    let access = PeerAccess {
        device_id: "dev-a".into(),
        device_name: "tablet-a".into(),
        offices: vec![OFFICE_A.into()],
    };
    let mut s = Session::relay(store.clone(), access, Arc::new(AdmitAllForSimulation))
        .unwrap()
        .with_limits(limits);
    let hello = crate::hello_at_current_cursor(store.as_ref());
    s.handle_frame(&hello.encode()).unwrap();
    s.flush().unwrap();
    drain(&mut s);
    s
}

use crate::drain;

fn buf(id: DocId) -> ByteBuf {
    ByteBuf::from(id.as_bytes().to_vec())
}

/// A survey-kind document of `office` with `extra` bytes of text, saved.
fn survey(office: &str, extra: usize) -> Vec<u8> {
    let mut doc = AutoCommit::new().with_actor(ActorId::from(vec![0xA1; 16]));
    doc.put(ROOT, "kind", "survey").unwrap();
    doc.put(ROOT, "office", office).unwrap();
    doc.put(ROOT, "note", "x".repeat(extra)).unwrap();
    doc.save()
}

fn doc_data(id: DocId, bytes: Vec<u8>) -> Vec<u8> {
    Frame::DocData {
        id: buf(id),
        bytes: ByteBuf::from(bytes),
    }
    .encode()
}

fn rejections(frames: &[Frame]) -> Vec<(DocId, String)> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::DocRejected { id, code } => Some((
                DocId::from_bytes(id.as_ref().try_into().unwrap()),
                code.clone(),
            )),
            _ => None,
        })
        .collect()
}

/// A compressed change chunk whose body inflates to `size` zero bytes.
fn bomb(size: usize) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&vec![0u8; size]).unwrap();
    let body = e.finish().unwrap();
    let mut out = vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3, 4, 2];
    let mut n = body.len() as u64;
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    out.extend(body);
    out
}

/// Catches: compressed automerge data inflated without a bound (a 200 KiB frame that
/// inflates to 256 MiB reaching `load_incremental` or `receive_sync_message`).
#[test]
fn a_decompression_bomb_is_refused_before_automerge_sees_it() {
    let store = Arc::new(MemoryStorage::new("relay"));
    let mut r = relay(&store, IntakeLimits::default());
    let id = DocId::random();
    let b = bomb(256 << 20);
    assert!(b.len() < 512 << 10);
    r.handle_frame(&doc_data(id, b.clone())).unwrap();
    // The same bomb inside a sync message's change list.
    let msg = automerge::sync::Message {
        heads: Vec::new(),
        need: Vec::new(),
        have: Vec::new(),
        changes: vec![b].into(),
        flags: None,
        version: automerge::sync::MessageVersion::V1,
    }
    .encode();
    let other = DocId::random();
    r.handle_frame(
        &Frame::DocSync {
            id: buf(other),
            msg: ByteBuf::from(msg),
        }
        .encode(),
    )
    .unwrap();
    r.flush().unwrap();
    let frames = drain(&mut r);
    assert_eq!(
        rejections(&frames),
        vec![(id, "too_large".into()), (other, "too_large".into())]
    );
    assert!(store.ids().unwrap().is_empty(), "nothing written");
}

/// Catches: per-document limits not applied (a document over the size or change count
/// stored), or applied to a document within them.
#[test]
fn documents_over_the_per_document_limits_are_refused() {
    let store = Arc::new(MemoryStorage::new("relay"));
    let limits = IntakeLimits {
        doc_bytes: 20_000,
        doc_changes: 50,
        ..IntakeLimits::default()
    };
    let mut r = relay(&store, limits);
    let (small, big, busy) = (DocId::random(), DocId::random(), DocId::random());
    r.handle_frame(&doc_data(small, survey(OFFICE_A, 100)))
        .unwrap();
    r.handle_frame(&doc_data(big, survey(OFFICE_A, 30_000)))
        .unwrap();
    let mut doc = AutoCommit::new().with_actor(ActorId::from(vec![0xA1; 16]));
    doc.put(ROOT, "kind", "survey").unwrap();
    doc.put(ROOT, "office", OFFICE_A).unwrap();
    doc.commit();
    for i in 0..60 {
        doc.put(ROOT, "n", i).unwrap();
        doc.commit();
    }
    r.handle_frame(&doc_data(busy, doc.save())).unwrap();
    r.flush().unwrap();
    let frames = drain(&mut r);
    assert_eq!(
        rejections(&frames),
        vec![(big, "too_large".into()), (busy, "too_large".into())]
    );
    assert_eq!(store.ids().unwrap(), vec![small]);
}

/// Catches: quotas not enforced, a refused document half-written, or reads refused once
/// a quota is reached.
#[test]
fn writes_over_a_quota_are_refused_and_reads_still_work() {
    let store = Arc::new(MemoryStorage::new("relay"));
    let limits = IntakeLimits {
        quota: Quota {
            device_docs: 2,
            ..Quota::default()
        },
        ..IntakeLimits::default()
    };
    let ids: Vec<DocId> = (0..3).map(|_| DocId::random()).collect();
    let mut r = relay(&store, limits);
    for id in &ids {
        r.handle_frame(&doc_data(*id, survey(OFFICE_A, 10)))
            .unwrap();
    }
    r.flush().unwrap();
    let frames = drain(&mut r);
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(rejections(&frames), vec![(sorted[2], "quota".into())]);
    assert_eq!(store.ids().unwrap(), sorted[..2].to_vec());
    assert_eq!(store.usage(OFFICE_A, "dev-a").unwrap().peer_docs, 2);
    // A later session of the same device: still refused; reading works.
    let mut r = relay(&store, limits);
    let fourth = DocId::random();
    r.handle_frame(&doc_data(fourth, survey(OFFICE_A, 10)))
        .unwrap();
    r.handle_frame(
        &Frame::Want {
            ids: vec![buf(sorted[0])],
        }
        .encode(),
    )
    .unwrap();
    r.flush().unwrap();
    let frames = drain(&mut r);
    assert_eq!(rejections(&frames), vec![(fourth, "quota".into())]);
    assert!(
        frames
            .iter()
            .any(|f| matches!(f, Frame::DocData { id, .. } if *id == buf(sorted[0])))
    );
    // The office quota counts every device.
    let office_full = IntakeLimits {
        quota: Quota {
            office_bytes: store.usage(OFFICE_A, "x").unwrap().office_bytes,
            ..Quota::default()
        },
        ..IntakeLimits::default()
    };
    let mut r = relay(&store, office_full);
    r.handle_frame(&doc_data(fourth, survey(OFFICE_A, 10)))
        .unwrap();
    r.flush().unwrap();
    assert_eq!(rejections(&drain(&mut r)), vec![(fourth, "quota".into())]);
    assert_eq!(store.ids().unwrap().len(), 2);
}

/// Catches: a session taking in more than its caps (documents written, decoded bytes)
/// instead of ending with the named `limit` error.
#[test]
fn a_session_over_its_caps_ends_with_a_limit_error() {
    let store = Arc::new(MemoryStorage::new("relay"));
    let limits = IntakeLimits {
        session_docs: 2,
        ..IntakeLimits::default()
    };
    let mut r = relay(&store, limits);
    for _ in 0..3 {
        r.handle_frame(&doc_data(DocId::random(), survey(OFFICE_A, 10)))
            .unwrap();
    }
    r.flush().unwrap();
    assert!(r.is_failed());
    let frames = drain(&mut r);
    assert!(
        matches!(frames.last(), Some(Frame::Error { code, .. }) if code == "limit"),
        "{frames:?}"
    );
    assert_eq!(store.ids().unwrap().len(), 2, "what fits is written");

    let limits = IntakeLimits {
        session_decoded: 300_000,
        ..IntakeLimits::default()
    };
    let store = Arc::new(MemoryStorage::new("relay"));
    let mut r = relay(&store, limits);
    r.handle_frame(&doc_data(DocId::random(), survey(OFFICE_A, 200_000)))
        .unwrap();
    r.handle_frame(&doc_data(DocId::random(), survey(OFFICE_A, 200_000)))
        .unwrap();
    assert!(r.is_failed());
    let frames = drain(&mut r);
    assert!(
        matches!(frames.last(), Some(Frame::Error { code, .. }) if code == "limit"),
        "{frames:?}"
    );
}

/// Catches: `doc_data` or `doc_sync` for another office's stored id answered otherwise
/// than for a missing id (telling the device the id exists).
#[test]
fn another_offices_id_gets_the_answers_of_a_missing_id() {
    let store = Arc::new(MemoryStorage::new("relay"));
    let theirs = DocId::random();
    store
        .put_local(theirs, "survey", OFFICE_B, survey(OFFICE_B, 10))
        .unwrap();
    let missing = DocId::random();
    let answers = |id: DocId| {
        let mut r = relay(&store, IntakeLimits::default());
        let empty = automerge::sync::Message {
            heads: Vec::new(),
            need: Vec::new(),
            have: Vec::new(),
            changes: automerge::sync::ChunkList::empty(),
            flags: None,
            version: automerge::sync::MessageVersion::V1,
        }
        .encode();
        r.handle_frame(
            &Frame::DocSync {
                id: buf(id),
                msg: ByteBuf::from(empty),
            }
            .encode(),
        )
        .unwrap();
        // Garbage data, then a document without a kind, then one naming office B.
        r.handle_frame(&doc_data(id, b"garbage".to_vec())).unwrap();
        r.flush().unwrap();
        let mut out = drain(&mut r);
        let mut r = relay(&store, IntakeLimits::default());
        let mut nokind = AutoCommit::new();
        nokind.put(ROOT, "office", OFFICE_A).unwrap();
        r.handle_frame(&doc_data(id, nokind.save())).unwrap();
        r.handle_frame(&doc_data(id, survey(OFFICE_B, 1))).unwrap();
        r.flush().unwrap();
        out.extend(drain(&mut r));
        // Encoded with the id blanked out: byte for byte the same answers.
        out.iter()
            .map(|f| {
                let mut b = f.encode();
                let needle = id.as_bytes();
                if let Some(p) = b.windows(16).position(|w| w == needle) {
                    b[p..p + 16].fill(0);
                }
                b
            })
            .collect::<Vec<_>>()
    };
    let a = answers(theirs);
    assert_eq!(a, answers(missing));
    assert!(a.len() >= 3, "{a:?}");
    // And nothing of office B was changed.
    assert_eq!(store.ids().unwrap(), vec![theirs]);
}

/// 31 bytes the `automerge_load` fuzz target found (fuzz/regressions/automerge_load): they
/// pass the decode bound and then make automerge's run-length decoder panic. Catches: the
/// panic reaching the session (with `panic = "abort"` it would end the relay) instead of
/// the document being refused as `invalid` and the session going on.
#[test]
fn data_that_makes_automerge_panic_is_refused_and_the_session_goes_on() {
    let crash = include_bytes!("../../../fuzz/regressions/automerge_load/hexane-rle-unwrap");
    let store = Arc::new(MemoryStorage::new("relay"));
    let mut r = relay(&store, IntakeLimits::default());
    let (bad, good) = (DocId::random(), DocId::random());
    r.handle_frame(&doc_data(bad, crash.to_vec())).unwrap();
    let msg = automerge::sync::Message {
        heads: Vec::new(),
        need: Vec::new(),
        have: Vec::new(),
        changes: vec![crash.to_vec()].into(),
        flags: None,
        version: automerge::sync::MessageVersion::V1,
    }
    .encode();
    let other = DocId::random();
    r.handle_frame(
        &Frame::DocSync {
            id: buf(other),
            msg: ByteBuf::from(msg),
        }
        .encode(),
    )
    .unwrap();
    r.handle_frame(&doc_data(good, survey(OFFICE_A, 0)))
        .unwrap();
    r.flush().unwrap();
    let frames = drain(&mut r);
    let refused = rejections(&frames);
    assert!(refused.contains(&(bad, "invalid".into())), "{refused:?}");
    assert!(!refused.iter().any(|(id, _)| *id == good), "{refused:?}");
    assert_eq!(
        store.ids().unwrap(),
        vec![good],
        "only the good document is written"
    );
    // The same bytes as a stored document: loading refuses them, never panics.
    assert!(
        musubi_engine::doc::CareDoc::load(bad, &[crash.to_vec()], automerge::ActorId::random())
            .is_err()
    );
}

/// 31 bytes the `automerge_load` fuzz target found that make `Automerge::load` allocate
/// about 2 GiB for 4 s before it reports a bad checksum (the target also loads data the
/// bound refuses). They hold a bundle chunk, which the decode bound refuses, so a device
/// cannot make the relay attempt it. Catches: the bound letting such a chunk through.
#[test]
fn a_chunk_automerge_would_spend_gigabytes_on_is_refused_before_it() {
    let oom = include_bytes!("../../../fuzz/regressions/automerge_load/oom-2gib-bundle-chunk");
    assert!(musubi_engine::sync::inflate::decoded_size(oom, 1 << 30).is_err());
    let store = Arc::new(MemoryStorage::new("relay"));
    let mut r = relay(&store, IntakeLimits::default());
    let id = DocId::random();
    r.handle_frame(&doc_data(id, oom.to_vec())).unwrap();
    r.flush().unwrap();
    assert_eq!(rejections(&drain(&mut r)), vec![(id, "invalid".into())]);
    assert!(store.ids().unwrap().is_empty());
}

/// A document of a few hundred bytes holding a million and one operations in run-length
/// encoded columns (a list of nulls made in one change): automerge would expand it while
/// it loads (about 90 MB and 0.4 s per million; ten million take 880 MB). Sent as a
/// device's `doc_data` and as the change of a `doc_sync`. Catches: the decode bound
/// counting bytes only (the bytes pass it), so the relay loads the bomb; the session not
/// applying the bound to either frame.
#[test]
fn operations_hidden_in_run_lengths_are_refused_before_automerge_loads_them() {
    use automerge::transaction::Transactable as _;
    let rows = usize::try_from(musubi_engine::sync::inflate::MAX_DECODED_ROWS).unwrap();
    let mut doc = automerge::AutoCommit::new();
    let list = doc
        .put_object(automerge::ROOT, "l", automerge::ObjType::List)
        .unwrap();
    doc.splice(
        &list,
        0,
        0,
        std::iter::repeat_n(automerge::ScalarValue::Null, rows),
    )
    .unwrap();
    doc.commit();
    let bomb = doc.save();
    assert!(bomb.len() < 1024, "{}", bomb.len());
    let store = Arc::new(MemoryStorage::new("relay"));
    let mut r = relay(&store, IntakeLimits::default());
    let (whole, change) = (DocId::random(), DocId::random());
    // The bound itself refuses the bytes (not the per-document limit after a load).
    assert_eq!(
        musubi_engine::sync::inflate::decoded_size(&bomb, MAX_DECODED_FRAME),
        Err(InflateError::TooManyRows)
    );
    r.handle_frame(&doc_data(whole, bomb)).unwrap();
    let msg = automerge::sync::Message {
        heads: Vec::new(),
        need: Vec::new(),
        have: Vec::new(),
        changes: vec![doc.save_after(&[])].into(),
        flags: None,
        version: automerge::sync::MessageVersion::V1,
    }
    .encode();
    r.handle_frame(
        &Frame::DocSync {
            id: buf(change),
            msg: ByteBuf::from(msg),
        }
        .encode(),
    )
    .unwrap();
    r.flush().unwrap();
    let refused = rejections(&drain(&mut r));
    assert!(
        refused.contains(&(whole, "too_large".into())),
        "{refused:?}"
    );
    assert!(
        refused.contains(&(change, "too_large".into())),
        "{refused:?}"
    );
    assert!(store.ids().unwrap().is_empty());
}
