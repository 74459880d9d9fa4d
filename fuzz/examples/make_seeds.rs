//! Regenerates the binary seeds of `corpus-seed/automerge_load/`, `corpus-seed/sync_frame/`
//! and `corpus-seed/bundle_parse/` (deterministic: fixed actor, ids and time). Run from
//! `fuzz/`: `cargo run --example make_seeds`.

use std::fs;
use std::path::Path;

use musubi_engine::doc::CareDoc;
use musubi_engine::ids::DocId;
use musubi_engine::schema::{DocKind, Pointer};
use musubi_engine::sync::MemoryStorage;
use musubi_engine::sync::bundle;
use musubi_engine::sync::frame::{Frame, WireEntry, length_prefixed};
use musubi_fuzz::{actor, author, doc_id, example_survey};
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
    Ok(())
}
