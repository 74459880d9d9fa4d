//! musubi care-checks benchmark: `check_survey` of one survey (target < 1 ms), the
//! JSON that `musubi survey check --json` prints, and the vital-sign checks.
//!
//! `cargo bench -p musubi-benches --bench care` (bench profile = release).
//! `MUSUBI_BENCH_SAMPLES` (default 2000) sets the number of timed samples per case.
//! Prints a Markdown table on stdout. See docs/benchmarks.md, section "Care checks".

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use musubi_benches::{example_survey, mean, percentile, usize_from_env};
use musubi_engine::care::{check_survey, visit};
use serde_json::{Value, json};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// One timed case.
type Case<'a> = Box<dyn FnMut() + 'a>;

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

fn time(samples: usize, mut f: impl FnMut()) -> (Duration, Duration, Duration, Duration) {
    // Warm-up (the schema catalog is loaded once per process, on first use).
    for _ in 0..50 {
        f();
    }
    let mut t = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        f();
        t.push(start.elapsed());
    }
    t.sort();
    (
        percentile(&t, 0.5),
        percentile(&t, 0.99),
        t[t.len() - 1],
        mean(&t),
    )
}

fn main() {
    let samples = usize_from_env("MUSUBI_BENCH_SAMPLES", 2000).max(10);
    let first_start = Instant::now();
    let first = check_survey(&example_survey());
    let first_call = first_start.elapsed();
    assert!(first.errors.is_empty());

    let example = example_survey();
    // A survey that raises several warnings, one dismissed, and soft note rules.
    let mut noisy = example.clone();
    for (k, v) in [
        ("1-3", 3),
        ("1-4", 1),
        ("1-8", 1),
        ("1-12", 5),
        ("5-3", 1),
        ("3-1", 1),
    ] {
        noisy["items"][k] = json!(v);
    }
    noisy["dismissals"] = json!([{"code": "47", "items": ["1-3", "1-4"], "reason": "確認済み"}]);
    noisy["selection_basis"] = json!([{"item": "2-2", "basis": "usual_differs"}]);
    let n = check_survey(&noisy);
    assert!(n.warnings.len() >= 4, "{:?}", n.warnings);
    let blank: Value = json!({"kind": "survey", "items": {}, "special_notes": []});
    let visit_doc: Value =
        serde_json::from_str(include_str!("../../schemas/examples/visit-record.json")).unwrap();

    let cases: Vec<(&str, Case)> = vec![
        (
            "`check_survey`, example survey (complete, no warnings)",
            Box::new(|| {
                black_box(check_survey(black_box(&example)));
            }),
        ),
        (
            "`check_survey`, survey with 5 national + 1 app warning, 1 dismissed",
            Box::new(|| {
                black_box(check_survey(black_box(&noisy)));
            }),
        ),
        (
            "`check_survey`, blank draft (60 hard problems)",
            Box::new(|| {
                black_box(check_survey(black_box(&blank)));
            }),
        ),
        (
            "`check_survey` + `serde_json::to_string` (what `survey check --json` prints)",
            Box::new(|| {
                black_box(serde_json::to_string(&check_survey(black_box(&noisy))).unwrap());
            }),
        ),
        (
            "`visit::hard_errors` + `soft_warnings`, example visit",
            Box::new(|| {
                black_box(visit::hard_errors(black_box(&visit_doc)));
                black_box(visit::soft_warnings(black_box(&visit_doc)));
            }),
        ),
    ];
    println!("| case | p50 | p99 | max | mean |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, mut f) in cases {
        let (p50, p99, max, avg) = time(samples, &mut f);
        println!(
            "| {name} | {} | {} | {} | {} |",
            fmt(p50),
            fmt(p99),
            fmt(max),
            fmt(avg)
        );
    }
    println!();
    println!(
        "First call in the process (loads the survey catalog from the embedded schema): {}. {samples} samples per case.",
        fmt(first_call)
    );
}
