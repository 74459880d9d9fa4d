//! What loading one document costs in memory (issue 17, item 7): the largest document a
//! survey can become, against its stored size and against what the relay's per-document
//! limit measures.
//!
//! A survey is built as it lives for years: the office imports it, then every month
//! `MUSUBI_BENCH_TABLETS` tablets (default 4) each re-answer every field once, one change
//! per field as the app commits, and the 特記事項 texts grow by a sentence each time; the
//! tablets' copies are merged every month. Histories of 3, 12 and 48 months (override with
//! `MUSUBI_BENCH_MONTHS=3,12,48`) are saved, and each is loaded in a fresh child process
//! (this program with `MUSUBI_BENCH_CHILD=load`), which reports its peak resident memory
//! (`VmHWM`, reset just before) after `Automerge::load`, and after the interchange JSON is
//! built from it (what the relay's admission and a tablet's form do next). Prints a Markdown
//! table; see docs/benchmarks.md.

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;
use std::time::Instant;

use automerge::ActorId;
use musubi_benches::{example_survey, fmt_kib, mem, run_child};
use musubi_engine::doc::{Author, CareDoc};
use musubi_engine::ids::DocId;
use musubi_engine::schema::{DocKind, Pointer};
use musubi_engine::sync::inflate::{MAX_DECODED_ROWS, decoded_size};
use musubi_engine::sync::limits::{MAX_DECODED_FRAME, MAX_DOC_BYTES, MAX_DOC_CHANGES};
use serde_json::Value;

fn main() {
    if std::env::var("MUSUBI_BENCH_CHILD").as_deref() == Ok("load") {
        return load_child();
    }
    let months: Vec<usize> = std::env::var("MUSUBI_BENCH_MONTHS")
        .unwrap_or_else(|_| "3,12,48".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|&m| m > 0)
        .collect();
    let tablets = musubi_benches::usize_from_env("MUSUBI_BENCH_TABLETS", 4).max(1);
    let tmp = tempfile::tempdir().unwrap();
    let baseline = load_in_child(&tmp.path().join("empty.bin"), &[]);
    println!("## musubi per-document memory: one survey, {tablets} tablets editing\n");
    println!(
        "| History | Changes | Operations (share of the decode bound's row cap) | Saved | Decoded (what the limit measures) | Peak to load | Peak to load + JSON | Load time | Peak ÷ decoded | Peak per change |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut worst_ratio = 0f64;
    for &m in &months {
        eprintln!("building {m} months of edits by {tablets} tablets");
        let (bytes, changes) = survey_with_history(m, tablets);
        // Within the decode bound (bytes and rows), as a sync frame must be.
        let decoded = decoded_size(&bytes, MAX_DECODED_FRAME).unwrap();
        let ops = automerge::ReadDoc::stats(&automerge::Automerge::load(&bytes).unwrap()).num_ops;
        let file = tmp.path().join(format!("survey-{m}.bin"));
        std::fs::write(&file, &bytes).unwrap();
        let r = load_in_child(&file, &bytes);
        let load_kib = r.load_kib.saturating_sub(baseline.load_kib);
        let json_kib = r.json_kib.saturating_sub(baseline.load_kib);
        let ratio = (json_kib * 1024) as f64 / decoded as f64;
        worst_ratio = worst_ratio.max(ratio);
        println!(
            "| {m} months | {changes} | {ops} ({:.1} %) | {} | {} | {} | {} | {:.1} ms | {ratio:.1}× | {} |",
            ops as f64 * 100.0 / MAX_DECODED_ROWS as f64,
            kb(bytes.len() as u64),
            kb(decoded),
            fmt_kib(load_kib),
            fmt_kib(json_kib),
            r.load_ms,
            kb(json_kib * 1024 / changes as u64),
        );
    }
    println!(
        "\nPeaks are above the same child loading nothing ({} resident). At the relay's limit \
         of {} MiB decoded per document, the worst ratio above comes to about {} for one \
         document ({MAX_DOC_CHANGES} changes per document are allowed).",
        fmt_kib(baseline.load_kib),
        MAX_DOC_BYTES >> 20,
        fmt_kib((worst_ratio * MAX_DOC_BYTES as f64 / 1024.0) as u64),
    );
}

/// Bytes as `123.4 KB`.
fn kb(bytes: u64) -> String {
    format!("{:.1} KB", bytes as f64 / 1024.0)
}

/// A survey after `months` of edits by `tablets` tablets: its saved bytes and change count.
fn survey_with_history(months: usize, tablets: usize) -> (Vec<u8>, usize) {
    let json = example_survey();
    let mut fields = Vec::new();
    editable_fields(&json, String::new(), &mut fields);
    let author = |device: usize, month: usize| Author {
        device: format!("{device:032x}"),
        device_name: format!("tablet {device}"),
        staff: Some("staff".to_owned()),
        action: "set".to_owned(),
        time_ms: 1_790_000_000_000 + month as i64 * 2_592_000_000,
    };
    let mut doc = CareDoc::create(
        DocId::random(),
        DocKind::Survey,
        &json,
        ActorId::from(vec![0xA0; 16]),
        &author(0, 0),
    )
    .unwrap();
    let mut changes = 1;
    for month in 0..months {
        let mut copies: Vec<CareDoc> = (0..tablets)
            .map(|t| doc.fork_with_actor(ActorId::from(vec![t as u8 + 1; 16])))
            .collect();
        for (t, copy) in copies.iter_mut().enumerate() {
            let who = author(t + 1, month);
            for (path, value) in &fields {
                let next = match value {
                    // 特記事項 and other long texts grow by a sentence a month.
                    Value::String(s) if s.chars().count() > 40 => {
                        Value::String(format!("{s}{}", "経過を追記した。".repeat(month + 1)))
                    }
                    Value::String(s) => Value::String(format!("{s}{month}")),
                    Value::Number(n) => Value::from(n.as_i64().unwrap_or(0) + month as i64 + 1),
                    other => other.clone(),
                };
                if let Ok(Some(_)) = copy.set(path, &next, &who) {
                    changes += 1;
                }
            }
        }
        for copy in &mut copies {
            doc.merge(copy).unwrap();
        }
    }
    (doc.save(), changes)
}

/// Every string or number leaf of the survey but its kind and office.
fn editable_fields(v: &Value, path: String, out: &mut Vec<(Pointer, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                editable_fields(x, format!("{path}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                editable_fields(x, format!("{path}/{i}"), out);
            }
        }
        Value::String(_) | Value::Number(_)
            if !path.starts_with("/kind") && !path.starts_with("/office") =>
        {
            if let Ok(p) = Pointer::parse(&path) {
                out.push((p, v.clone()));
            }
        }
        _ => {}
    }
}

/// What the child measured.
struct Loaded {
    load_kib: u64,
    json_kib: u64,
    load_ms: f64,
}

fn load_in_child(file: &Path, bytes: &[u8]) -> Loaded {
    if bytes.is_empty() {
        std::fs::write(file, b"").unwrap();
    }
    let text = run_child("load", &[("MUSUBI_BENCH_FILE", file.into())]);
    let mut parts = text.split_whitespace().map(|p| p.parse::<f64>().unwrap());
    let mut next = || parts.next().unwrap();
    Loaded {
        load_kib: next() as u64,
        json_kib: next() as u64,
        load_ms: next(),
    }
}

/// Child: loads the file's document with the peak reset just before; prints the peak after
/// the load, after the JSON, and the load time.
fn load_child() {
    let bytes = std::fs::read(std::env::var("MUSUBI_BENCH_FILE").unwrap()).unwrap();
    let _ = std::fs::write("/proc/self/clear_refs", "5\n");
    let started = Instant::now();
    if bytes.is_empty() {
        let m = mem();
        println!("{} {} 0", m.hwm_kib, m.hwm_kib);
        return;
    }
    let doc = CareDoc::load(DocId::random(), &[bytes], ActorId::random()).unwrap();
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let after_load = mem().hwm_kib;
    let json = doc.to_json().unwrap();
    let after_json = mem().hwm_kib;
    assert!(json.is_object());
    println!("{after_load} {after_json} {load_ms}");
}
