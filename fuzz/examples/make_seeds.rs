//! Regenerates the binary seeds of `corpus-seed/automerge_load/` (deterministic: fixed
//! actor, id and time). Run from `fuzz/`: `cargo run --example make_seeds`.

use std::fs;
use std::path::Path;

use musubi_engine::doc::CareDoc;
use musubi_engine::schema::{DocKind, Pointer};
use musubi_fuzz::{actor, author, doc_id, example_survey};
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
        &[snapshot],
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
    fs::write(out.join("subject-snapshot"), small.save())?;
    Ok(())
}
