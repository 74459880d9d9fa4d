//! musubi export benchmark (issue 7): the 認定調査票 PDF of one survey (target < 1 s) and
//! the CSV of 10,000 surveys (target < 5 s), in UTF-8 and Shift_JIS.
//!
//! `cargo bench -p musubi-benches --bench export` (bench profile = release).
//! `MUSUBI_BENCH_DOCS` (default 10000) sets the number of CSV rows, `MUSUBI_BENCH_RUNS`
//! (default 5) the samples per measurement. Only the pure rendering is timed (interchange
//! JSON in, bytes out): loading from the store is measured by the store benchmark.
//! Prints a Markdown report on stdout. See docs/benchmarks.md.

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::time::{Duration, Instant};

use musubi_benches::{
    docs_from_env, example_survey, fmt_dur, mark, median, survey_variant, usize_from_env,
};
use musubi_engine::export::Labels;
use musubi_engine::export::csv::{Encoding, export_csv};
use musubi_engine::export::pdf::export_pdf;
use serde_json::Value;

const FONT: &[u8] = include_bytes!("../../app/assets/fonts/ipaexg.ttf");

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Vec<Duration>, T) {
    let mut samples = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let out = f();
        samples.push(t.elapsed());
        last = Some(out);
    }
    (samples, last.unwrap())
}

fn max(samples: &[Duration]) -> Duration {
    samples.iter().copied().max().unwrap_or_default()
}

fn main() {
    let runs = usize_from_env("MUSUBI_BENCH_RUNS", 5).max(1);
    let n = docs_from_env();
    let labels = Labels::embedded().unwrap();
    let survey = example_survey();
    let id = "0123456789abcdef0123456789abcdef";

    eprintln!("export bench: PDF × {runs}");
    // The first call also loads the schema registry; time it separately.
    let t = Instant::now();
    let first = export_pdf(&labels, id, &survey, FONT).unwrap();
    let cold = t.elapsed();
    let (pdf_samples, pdf) = time(runs, || export_pdf(&labels, id, &survey, FONT).unwrap());
    assert_eq!(pdf.bytes.len(), first.bytes.len());

    eprintln!("export bench: building {n} surveys");
    let docs: Vec<(String, Value)> = (0..n)
        .map(|i| (format!("{i:032x}"), survey_variant(&survey, i)))
        .collect();
    eprintln!("export bench: CSV of {n} surveys × {runs} (UTF-8, Shift_JIS)");
    let (utf8_samples, utf8) = time(runs, || export_csv(&labels, &docs, Encoding::Utf8).unwrap());
    let (sjis_samples, sjis) = time(runs, || {
        export_csv(&labels, &docs, Encoding::ShiftJis).unwrap()
    });

    let pdf_med = median(&pdf_samples);
    let utf8_med = median(&utf8_samples);
    let sjis_med = median(&sjis_samples);
    println!("## Export benchmark\n");
    println!(
        "{runs} runs each; median (max). PDF: the example survey, {} pages, {} KiB. CSV: {n} surveys (the example with a varied name), {} columns.\n",
        pdf.pages,
        pdf.bytes.len() / 1024,
        labels_columns(&labels)
    );
    println!("| measurement | result | target | |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| PDF of one survey (first call, schemas loaded) | {} | < 1 s | {} |",
        fmt_dur(cold),
        mark(cold < Duration::from_secs(1))
    );
    println!(
        "| PDF of one survey | {} ({}) | < 1 s | {} |",
        fmt_dur(pdf_med),
        fmt_dur(max(&pdf_samples)),
        mark(max(&pdf_samples) < Duration::from_secs(1))
    );
    println!(
        "| CSV of {n} surveys, UTF-8 ({} MiB) | {} ({}) | < 5 s | {} |",
        utf8.len() / (1024 * 1024),
        fmt_dur(utf8_med),
        fmt_dur(max(&utf8_samples)),
        mark(max(&utf8_samples) < Duration::from_secs(5))
    );
    println!(
        "| CSV of {n} surveys, Shift_JIS ({} MiB) | {} ({}) | < 5 s | {} |",
        sjis.len() / (1024 * 1024),
        fmt_dur(sjis_med),
        fmt_dur(max(&sjis_samples)),
        mark(max(&sjis_samples) < Duration::from_secs(5))
    );
}

fn labels_columns(labels: &Labels) -> usize {
    musubi_engine::export::csv::headers(labels).unwrap().len()
}
