//! musubi store benchmark: import, cold open, edit latency, SQLCipher overhead, memory.
//!
//! `cargo bench -p musubi-benches` (bench profile = release). `MUSUBI_BENCH_DOCS`
//! (default 10000) sets the number of documents, `MUSUBI_BENCH_EDITS` (default 500) the
//! number of timed edits; `MUSUBI_BENCH_DROP_CACHES=1` (root only) adds an open after
//! dropping the OS page cache; `MUSUBI_BENCH_ONLY=sql` runs only the SQLCipher comparison. Prints a Markdown report on stdout, progress on stderr.
//! See docs/benchmarks.md.

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use musubi_benches::sql::{self, Cipher, SqlTimes};
use musubi_benches::sync_bench::{init_store, survey_insert};
use musubi_benches::{
    IMPORT_BATCH, Mem, OFFICE, Rng, cpu_of, docs_from_env, example_survey, fmt_dur, fmt_kib, mark,
    mean, median, mem, percentile, run_child, survey_variant, usize_from_env,
};
use musubi_engine::Engine;
use musubi_engine::doc::{Author, CareDoc};
use musubi_engine::ids::DocId;
use musubi_engine::schema::{DocKind, Pointer, validate_document};
use musubi_engine::store::{InitOptions, SecretString, Store};
use musubi_engine::sync::{SyncBatch, SyncStorage};
use serde_json::{Value, json};

const PASSPHRASE: &str = "bench passphrase 結び目";
const BENCH_WORK_FACTOR: u8 = 10;
const T0_MS: i64 = 1_790_000_000_000;

fn passphrase() -> SecretString {
    SecretString::from(PASSPHRASE.to_owned())
}

fn init_opts(kdf_work_factor: Option<u8>) -> InitOptions {
    InitOptions {
        office: OFFICE.to_owned(),
        device_name: "bench".to_owned(),
        staff: Some("ベンチ".to_owned()),
        recovery_recipient: None,
        kdf_work_factor,
    }
}

fn author() -> Author {
    Author {
        device: "00".repeat(16),
        device_name: "bench".to_owned(),
        staff: None,
        action: "bench".to_owned(),
        time_ms: T0_MS,
    }
}

/// Times the scrypt unwrap of `keys/passphrase.age` alone (what `Store::open` does first).
fn time_unlock(dir: &Path) -> Duration {
    use age::secrecy::SecretString as AgeSecret;
    let bytes = std::fs::read(dir.join("keys").join("passphrase.age")).unwrap();
    let t = Instant::now();
    let decryptor = age::Decryptor::new(&bytes[..]).unwrap();
    let identity = age::scrypt::Identity::new(AgeSecret::from(PASSPHRASE.to_owned()));
    let mut reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .unwrap();
    let mut key = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut key).unwrap();
    let d = t.elapsed();
    assert_eq!(key.len(), 32);
    d
}

/// Resets VmHWM to the current VmRSS (Linux ≥ 4.0); harmless where unsupported.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5\n");
}

fn drop_os_caches() -> bool {
    Command::new("sync").status().is_ok_and(|s| s.success())
        && std::fs::write("/proc/sys/vm/drop_caches", "1\n").is_ok()
}

struct Report {
    docs: usize,
    summary: String,
    details: String,
}

impl Report {
    fn target(&mut self, measure: &str, result: String, target: &str, ok: bool) {
        writeln!(
            self.summary,
            "| {measure} | {result} | {target} | {} |",
            mark(ok)
        )
        .unwrap();
    }
    fn detail(&mut self, measure: &str, result: String) {
        writeln!(self.details, "| {measure} | {result} |").unwrap();
    }
}

fn main() {
    if let Ok(mode) = std::env::var("MUSUBI_BENCH_CHILD") {
        child(&mode);
        return;
    }
    let n = docs_from_env();
    let edits = usize_from_env("MUSUBI_BENCH_EDITS", 500).max(1);
    let tmp = tempfile::Builder::new()
        .prefix("musubi-bench-")
        .tempdir()
        .unwrap();
    let dir = tmp.path().join("store");
    let mut report = Report {
        docs: n,
        summary: String::new(),
        details: String::new(),
    };
    let started = Instant::now();
    eprintln!(
        "musubi bench: {n} documents, {edits} edits, in {}",
        tmp.path().display()
    );

    let base = example_survey();
    let only = std::env::var("MUSUBI_BENCH_ONLY").unwrap_or_default();
    let only_sql = only == "sql";
    if only == "commits" {
        concurrent_commits(tmp.path(), &base, &mut report);
        println!("{}", report.details);
        return;
    }
    // Peak resident memory of this process per phase (VmHWM, reset between phases).
    let mut peaks: Vec<(&str, u64)> = Vec::new();
    if !only_sql {
        reset_peak();
        breakdown(&base, &mut report);
        let ids = import(&dir, &base, n, &mut report);
        peaks.push(("import", mem().hwm_kib));
        reset_peak();
        let store = cold_open(&dir, n, &mut report);
        edit_latency(store, &ids, edits, &mut report);
        peaks.push(("cold open + edits", mem().hwm_kib));
        memory(&dir, n, &mut report);
        reset_peak();
        default_kdf(tmp.path(), &mut report);
        peaks.push(("default-work-factor scrypt", mem().hwm_kib));
    }
    if !only_sql {
        concurrent_commits(tmp.path(), &base, &mut report);
    }
    reset_peak();
    sqlcipher_overhead(tmp.path(), &base, n, edits, &mut report);
    peaks.push(("SQL workload", mem().hwm_kib));

    report.detail(
        "This benchmark process: peak resident (VmHWM) per phase",
        peaks
            .iter()
            .map(|(phase, kib)| format!("{phase} {}", fmt_kib(*kib)))
            .collect::<Vec<_>>()
            .join("; "),
    );
    report.detail("Benchmark wall time", fmt_dur(started.elapsed()));

    println!("## musubi store benchmark: {} documents\n", report.docs);
    if n != musubi_benches::DEFAULT_DOCS {
        println!(
            "Targets are stated for {} documents; this run used {n}.\n",
            musubi_benches::DEFAULT_DOCS
        );
    }
    println!("| Measure | Result | Target | Met |\n|---|---|---|---|");
    print!("{}", report.summary);
    println!("\n| Detail | Result |\n|---|---|");
    print!("{}", report.details);
}

/// Per-document costs of the pure parts, to explain the import rate.
fn breakdown(base: &Value, report: &mut Report) {
    let docs: Vec<Value> = (0..200).map(|i| survey_variant(base, i)).collect();
    let t = Instant::now();
    for d in &docs {
        let (_, r) = validate_document(d).unwrap();
        assert!(r.is_ok());
    }
    let validate = t.elapsed() / 200;
    let t = Instant::now();
    let mut size = 0;
    for d in &docs {
        let mut doc = CareDoc::create(
            DocId::random(),
            DocKind::Survey,
            d,
            automerge::ActorId::random(),
            &author(),
        )
        .unwrap();
        size = doc.save().len();
    }
    let create = t.elapsed() / 200;
    report.detail("Validate one survey (validate_document)", fmt_dur(validate));
    report.detail(
        "Build + save one survey as automerge (CareDoc::create + save)",
        fmt_dur(create),
    );
    report.detail(
        "Automerge snapshot of the example survey",
        format!("{size} bytes"),
    );
}

/// 1. Imports `n` surveys in batches; returns the ids.
fn import(dir: &Path, base: &Value, n: usize, report: &mut Report) -> Vec<DocId> {
    eprintln!("import: {n} surveys in batches of {IMPORT_BATCH}");
    let t = Instant::now();
    let store = Store::init(dir, &passphrase(), init_opts(Some(BENCH_WORK_FACTOR))).unwrap();
    let init = t.elapsed();
    let engine = Engine::new(store, None).unwrap();
    let mut ids = Vec::with_capacity(n);
    let mut batches = Vec::new();
    for start in (0..n).step_by(IMPORT_BATCH) {
        let inputs: Vec<(String, Value)> = (start..n.min(start + IMPORT_BATCH))
            .map(|i| (format!("survey-{i}.json"), survey_variant(base, i)))
            .collect();
        let t = Instant::now();
        let out = engine.import(&inputs, T0_MS + start as i64).unwrap();
        batches.push(t.elapsed());
        ids.extend(out.ids);
        if start % 2000 == 0 && start > 0 {
            eprintln!("  {start} imported");
        }
    }
    let total: Duration = batches.iter().sum();
    let t = Instant::now();
    engine.close().unwrap();
    let close = t.elapsed();
    let per_doc = total / u32::try_from(n).unwrap();
    let mut sorted = batches.clone();
    sorted.sort();
    report.detail("Store::init (work factor 10)", fmt_dur(init));
    report.detail(
        &format!("Import {n} surveys (engine.import, {IMPORT_BATCH} per call)"),
        format!(
            "{} total, {:.0} docs/s, {} per doc",
            fmt_dur(total),
            n as f64 / total.as_secs_f64(),
            fmt_dur(per_doc)
        ),
    );
    report.detail(
        &format!("One import call of {IMPORT_BATCH} surveys, p50 / p99"),
        format!(
            "{} / {}",
            fmt_dur(percentile(&sorted, 0.5)),
            fmt_dur(percentile(&sorted, 0.99))
        ),
    );
    report.detail("Close after import (WAL checkpoint)", fmt_dur(close));
    let db_bytes: u64 = ["musubi.db", "musubi.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum();
    report.detail(
        &format!("Database size with {n} surveys"),
        format!("{:.1} MB", db_bytes as f64 / 1_048_576.0),
    );
    ids
}

/// 2. Cold open: drop the store, open and list. Returns an open store.
fn cold_open(dir: &Path, n: usize, report: &mut Report) -> Store {
    eprintln!("cold open");
    let mut unlock: Vec<Duration> = (0..5).map(|_| time_unlock(dir)).collect();
    unlock.sort();
    let unlock = percentile(&unlock, 0.5);

    let mut opens = Vec::new();
    let mut lists = Vec::new();
    let mut last = None;
    for round in 0..5 {
        let t = Instant::now();
        let store = Store::open(dir, &passphrase()).unwrap();
        opens.push(t.elapsed());
        let t = Instant::now();
        let list = store.list_docs().unwrap();
        lists.push(t.elapsed());
        assert_eq!(list.len(), n);
        if round < 4 {
            store.close().unwrap();
        } else {
            last = Some(store);
        }
    }
    let open = median(&opens);
    let list = median(&lists);
    let total = median(
        &opens
            .iter()
            .zip(&lists)
            .map(|(a, b)| *a + *b)
            .collect::<Vec<_>>(),
    );
    report.target(
        &format!("Cold open of {n} docs: Store::open + list_docs (median of 5)"),
        fmt_dur(total),
        "< 1 s",
        total < Duration::from_secs(1),
    );
    report.detail(
        "  scrypt unlock of keys/passphrase.age alone (work factor 10, median of 5)",
        fmt_dur(unlock),
    );
    report.detail(
        "  Store::open as a whole (scrypt unlock, SQLCipher key, schema check, WAL, thread)",
        fmt_dur(open),
    );
    report.detail(
        &format!("  list_docs ({n} summaries, median of 5)"),
        fmt_dur(list),
    );
    report.detail(
        "Cold open, slowest of 5 (open + list)",
        fmt_dur(
            opens
                .iter()
                .zip(&lists)
                .map(|(a, b)| *a + *b)
                .max()
                .unwrap_or_default(),
        ),
    );

    if std::env::var("MUSUBI_BENCH_DROP_CACHES").is_ok_and(|v| v == "1") {
        let store = last.take().unwrap();
        store.close().unwrap();
        if drop_os_caches() {
            let t = Instant::now();
            let store = Store::open(dir, &passphrase()).unwrap();
            let list = store.list_docs().unwrap();
            let d = t.elapsed();
            assert_eq!(list.len(), n);
            report.detail(
                "Cold open after dropping the OS page cache (open + list)",
                fmt_dur(d),
            );
            last = Some(store);
        } else {
            report.detail(
                "Cold open after dropping the OS page cache",
                "not permitted".to_owned(),
            );
            last = Some(Store::open(dir, &passphrase()).unwrap());
        }
    }
    last.unwrap()
}

/// `p50 / p99 / max / mean` of sorted samples.
fn spread(sorted: &[Duration]) -> String {
    format!(
        "{} / {} / {} / {}",
        fmt_dur(percentile(sorted, 0.5)),
        fmt_dur(percentile(sorted, 0.99)),
        fmt_dur(sorted.last().copied().unwrap_or_default()),
        fmt_dur(mean(sorted))
    )
}

/// 3. One-field edits on random documents: `engine.set` latency (load + validate + commit).
fn edit_latency(store: Store, ids: &[DocId], edits: usize, report: &mut Report) {
    eprintln!("edits: {edits} engine.set calls");
    let engine = Engine::new(store, None).unwrap();
    let pointer = Pointer::parse("/items/1-3").unwrap();
    let mut rng = Rng::new(0x00ed_1700);
    let mut current: HashMap<DocId, i64> = HashMap::new();
    // One timed edit: `/items/1-3` of `id` to the next code, so that every call commits.
    let mut edit = |id: DocId, at_ms: i64| {
        let cur = current.entry(id).or_insert(2);
        let next = *cur % 3 + 1;
        *cur = next;
        let t = Instant::now();
        let out = engine.set(id, &pointer, json!(next), at_ms).unwrap();
        let d = t.elapsed();
        assert!(out.changed);
        d
    };
    // Warm-up: a few edits not timed (first-use costs of statements and schema lookups).
    let mut samples = Vec::with_capacity(edits);
    for k in 0..edits + 20 {
        let d = edit(ids[rng.below(ids.len())], T0_MS + 1_000_000 + k as i64);
        if k >= 20 {
            samples.push(d);
        }
    }
    samples.sort();
    let p99 = percentile(&samples, 0.99);
    report.target(
        &format!("Edit commit latency (engine.set, {edits} random docs) p99"),
        fmt_dur(p99),
        "< 5 ms",
        p99 < Duration::from_millis(5),
    );
    report.detail(
        "Edit commit latency p50 / p99 / max / mean",
        spread(&samples),
    );

    // 3b. Edits in the form: the surveyor answers item after item of one survey, so the
    // engine keeps that document decoded between edits (issue 17, item 4). Runs of 20
    // edits on each of edits / 20 random documents; the first edit of each run reads it.
    let mut form = Vec::with_capacity(edits);
    for run in 0..edits.div_ceil(20) {
        let id = ids[rng.below(ids.len())];
        for k in 0..20 {
            form.push(edit(id, T0_MS + 2_000_000 + (run * 20 + k) as i64));
        }
    }
    form.sort();
    let form_p99 = percentile(&form, 0.99);
    report.target(
        &format!(
            "Edit commit latency in the form (engine.set, runs of 20 edits on {} docs) p99",
            edits.div_ceil(20)
        ),
        fmt_dur(form_p99),
        "≤ 3 ms",
        form_p99 <= Duration::from_millis(3),
    );
    report.detail(
        "Edit commit latency in the form p50 / p99 / max / mean",
        spread(&form),
    );

    // The read part of an edit on its own: load from SQLite + automerge + to_json.
    let mut loads = Vec::with_capacity(edits);
    for _ in 0..edits {
        let id = ids[rng.below(ids.len())];
        let t = Instant::now();
        let v = engine.export(id).unwrap();
        loads.push(t.elapsed());
        assert!(v.get("kind").is_some());
    }
    loads.sort();
    report.detail(
        "  load + to_json alone (engine.export, random docs) p50 / p99",
        format!(
            "{} / {}",
            fmt_dur(percentile(&loads, 0.5)),
            fmt_dur(percentile(&loads, 0.99))
        ),
    );
    edit_anatomy(&engine, ids, edits.min(200), &mut rng, report);
    engine.close().unwrap();
}

/// The steps of `Engine::set`, timed one by one through the public API (same order, same
/// work), to show where an edit's time goes.
fn edit_anatomy(engine: &Engine, ids: &[DocId], count: usize, rng: &mut Rng, report: &mut Report) {
    const STEPS: [&str; 6] = [
        "store.load_doc (SQLite read, store thread)",
        "CareDoc::load (automerge decode)",
        "to_json",
        "apply_pointer + validate_document",
        "CareDoc::set (automerge change)",
        "store.append_changes (commit, synchronous=FULL)",
    ];
    let store = engine.store();
    let actor = automerge::ActorId::from(hex_bytes(&store.info().actor_hex));
    let pointer = Pointer::parse("/items/1-4").unwrap();
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(count); STEPS.len()];
    for k in 0..count {
        let id = ids[rng.below(ids.len())];
        let mut lap = Instant::now();
        let mut step = |i: usize, samples: &mut Vec<Vec<Duration>>| {
            samples[i].push(lap.elapsed());
            lap = Instant::now();
        };
        let stored = store.load_doc(id).unwrap().unwrap();
        step(0, &mut samples);
        let mut doc = CareDoc::load(id, &stored.chunks, actor.clone()).unwrap();
        step(1, &mut samples);
        let mut candidate = doc.to_json().unwrap();
        step(2, &mut samples);
        // Alternate so every edit changes something: 1-4 is 2 in the example.
        let value = json!(if candidate.pointer("/items/1-4") == Some(&json!(1)) {
            2
        } else {
            1
        });
        musubi_engine::doc::apply_pointer(&mut candidate, &pointer, value.clone()).unwrap();
        let (_, validation) = validate_document(&candidate).unwrap();
        assert!(validation.is_ok());
        step(3, &mut samples);
        let mut author = author();
        author.time_ms = T0_MS + 2_000_000 + k as i64;
        let change = doc.set(&pointer, &value, &author).unwrap().unwrap();
        step(4, &mut samples);
        store
            .append_changes(id, vec![change], "認定調査票 ベンチ".to_owned())
            .unwrap();
        step(5, &mut samples);
    }
    let parts: Vec<String> = STEPS
        .iter()
        .zip(&samples)
        .map(|(name, s)| {
            let mut s = s.clone();
            s.sort();
            format!("{name} {}", fmt_dur(percentile(&s, 0.5)))
        })
        .collect();
    report.detail(
        &format!("  engine.set step by step, p50 of each ({count} edits)"),
        parts.join("; "),
    );
}

/// Hex to bytes (the store's actor id).
fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// 5. Memory, in a fresh process so the import's heap does not count.
fn memory(dir: &Path, n: usize, report: &mut Report) {
    eprintln!("memory: child process opens, lists and exports every document");
    let text = run_child("memory", &[("MUSUBI_BENCH_STORE", dir.into())]);
    let line = text.lines().find(|l| l.starts_with("MEMORY ")).unwrap();
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let listed = field("rss_listed");
    report.target(
        &format!("Resident memory, {n} docs opened + listed (fresh process, VmRSS)"),
        fmt_kib(listed),
        "< 200 MB",
        listed < 200 * 1024,
    );
    report.detail(
        "  fresh process before opening (VmRSS)",
        fmt_kib(field("rss_start")),
    );
    report.detail(
        &format!("  after exporting all {n} docs one by one (VmRSS / peak VmHWM)"),
        format!(
            "{} / {}",
            fmt_kib(field("rss_exported")),
            fmt_kib(field("hwm_exported"))
        ),
    );
    report.detail(
        &format!("  export of all {n} docs (load + to_json each)"),
        fmt_dur(Duration::from_micros(field("export_us"))),
    );
    report.detail(
        "  open + list in the fresh process",
        fmt_dur(Duration::from_micros(field("open_list_us"))),
    );
}

/// The real bytes of the SQL workload: the example survey's automerge snapshot and the
/// change of one edit.
fn sql_payload(base: &Value) -> (Vec<u8>, Vec<u8>) {
    let mut doc = CareDoc::create(
        DocId::random(),
        DocKind::Survey,
        base,
        automerge::ActorId::random(),
        &author(),
    )
    .unwrap();
    let snapshot = doc.save();
    let change = doc
        .set(&Pointer::parse("/items/1-3").unwrap(), &json!(3), &author())
        .unwrap()
        .unwrap();
    (snapshot, change)
}

/// The children: `MEMORY key=value …` or `SQL key=value …` on stdout.
fn child(mode: &str) {
    if mode == "sql" {
        let cipher = Cipher::from_name(&std::env::var("MUSUBI_BENCH_CIPHER").unwrap()).unwrap();
        let dir = PathBuf::from(std::env::var("MUSUBI_BENCH_SQL_DIR").unwrap());
        let (snapshot, change) = sql_payload(&example_survey());
        let edits = usize_from_env("MUSUBI_BENCH_EDITS", 500);
        let t =
            sql::run_workload(&dir, cipher, &snapshot, &change, docs_from_env(), edits).unwrap();
        assert_eq!(
            sql::opens_without_key(&dir.join("bench.db")),
            cipher == Cipher::Plain,
            "only the keyed databases are encrypted"
        );
        println!("{}", t.to_line());
        return;
    }
    assert_eq!(mode, "memory");
    let dir = PathBuf::from(std::env::var("MUSUBI_BENCH_STORE").unwrap());
    let start: Mem = mem();
    let t = Instant::now();
    let store = Store::open(&dir, &passphrase()).unwrap();
    let list = store.list_docs().unwrap();
    let open_list = t.elapsed();
    let listed = mem();
    let engine = Engine::new(store, None).unwrap();
    let t = Instant::now();
    let mut bytes = 0usize;
    for summary in &list {
        let v = engine.export(summary.id).unwrap();
        bytes += v.as_object().map_or(0, serde_json::Map::len);
    }
    let export = t.elapsed();
    assert!(bytes > 0);
    let exported = mem();
    engine.close().unwrap();
    println!(
        "MEMORY rss_start={} rss_listed={} rss_exported={} hwm_exported={} open_list_us={} export_us={} docs={}",
        start.rss_kib,
        listed.rss_kib,
        exported.rss_kib,
        exported.hwm_kib,
        open_list.as_micros(),
        export.as_micros(),
        list.len()
    );
}

/// 2b. Unlock time with age's default scrypt work factor (about one second on purpose).
fn default_kdf(tmp: &Path, report: &mut Report) {
    eprintln!("default KDF: init + open a tiny store with age's default work factor");
    let dir = tmp.join("default-kdf");
    let t = Instant::now();
    let store = Store::init(&dir, &passphrase(), init_opts(None)).unwrap();
    let init = t.elapsed();
    store.close().unwrap();
    let unlock = time_unlock(&dir);
    let t = Instant::now();
    let store = Store::open(&dir, &passphrase()).unwrap();
    let open = t.elapsed();
    store.close().unwrap();
    report.detail(
        "Unlock with age's default work factor (scrypt alone / Store::open of an empty store)",
        format!("{} / {}", fmt_dur(unlock), fmt_dur(open)),
    );
    report.detail("Store::init with age's default work factor", fmt_dur(init));
}

/// 4. The same SQL workload keyed and plain, in this process.
fn sqlcipher_overhead(tmp: &Path, base: &Value, n: usize, appends: usize, report: &mut Report) {
    let (snapshot, change) = sql_payload(base);
    report.detail("SQLCipher build", sql::versions().unwrap());
    let variants = Cipher::ALL;
    let mut best: Vec<Option<SqlTimes>> = vec![None; variants.len()];
    // Several rounds, interleaved, keeping the phase-wise minimum: timings on a shared
    // virtual machine are noisy (the same phase varies up to 2× between rounds). Each run is
    // a fresh process: cipher_memory_security, once on, stays on process-wide.
    let rounds = usize_from_env("MUSUBI_BENCH_SQL_ROUNDS", 5).max(1);
    for round in 0..rounds {
        for (i, cipher) in variants.iter().enumerate() {
            eprintln!("sql workload: {} (round {})", cipher.label(), round + 1);
            let dir = tmp.join(format!("sql-{i}-{round}"));
            std::fs::create_dir_all(&dir).unwrap();
            let out = run_child(
                "sql",
                &[
                    ("MUSUBI_BENCH_CIPHER", cipher.name().into()),
                    ("MUSUBI_BENCH_SQL_DIR", dir.clone().into()),
                    ("MUSUBI_BENCH_DOCS", n.to_string().into()),
                    ("MUSUBI_BENCH_EDITS", appends.to_string().into()),
                ],
            );
            let t = SqlTimes::from_line(&out).unwrap();
            best[i] = Some(best[i].map_or(t, |b| b.min(t)));
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
    let best: Vec<SqlTimes> = best.into_iter().map(Option::unwrap).collect();
    let plain = best[0];
    let ratio = |t: &SqlTimes| t.total().as_secs_f64() / plain.total().as_secs_f64();
    let store_like = best[2];
    report.target(
        "SQLCipher overhead: same SQL workload, keyed / plain (as the store configures it)",
        format!("{:.2}×", ratio(&store_like)),
        "≤ 1.3×",
        ratio(&store_like) <= 1.3,
    );
    report.detail(
        "SQL workload",
        format!(
            "{n} docs of {} bytes, {IMPORT_BATCH} per transaction; {appends} single-change transactions of {} bytes; reopen; read every doc by id; scan both tables. Best of {rounds} interleaved rounds per phase",
            snapshot.len(),
            change.len()
        ),
    );
    for (cipher, t) in Cipher::ALL.iter().zip(&best) {
        report.detail(
            &format!(
                "  {} (insert / append / read by id / scan = total)",
                cipher.label()
            ),
            format!(
                "{} / {} / {} / {} = {} ({:.2}×)",
                fmt_dur(t.insert),
                fmt_dur(t.append),
                fmt_dur(t.read),
                fmt_dur(t.scan),
                fmt_dur(t.total()),
                ratio(t)
            ),
        );
    }
    report.detail(
        "  CPU time of the workload thread: plain / keyed / + memory security / + HMAC-SHA256",
        best.iter()
            .map(|t| {
                format!(
                    "{} ({:.2}×)",
                    fmt_dur(t.cpu),
                    t.cpu.as_secs_f64() / plain.cpu.as_secs_f64().max(1e-9)
                )
            })
            .collect::<Vec<_>>()
            .join(" / "),
    );
    let phase = |f: fn(&SqlTimes) -> Duration| {
        f(&store_like).as_secs_f64() / f(&plain).as_secs_f64().max(1e-9)
    };
    report.detail(
        "  keyed (store-like) / plain per phase: insert / append / read / scan",
        format!(
            "{:.2}× / {:.2}× / {:.2}× / {:.2}×",
            phase(|t| t.insert),
            phase(|t| t.append),
            phase(|t| t.read),
            phase(|t| t.scan)
        ),
    );
}

/// Sync commits as a relay makes them, each batch one new survey (a push session's
/// write): first one committer after the other, then 32 sessions committing at once,
/// whose batches the store thread writes together when they queue behind each other (one
/// transaction and fsync for the group). `MUSUBI_BENCH_COMMITS` (default 1000) batches
/// each way, each into a fresh store.
fn concurrent_commits(tmp: &Path, base: &Value, report: &mut Report) {
    const SESSIONS: usize = 32;
    let batches = usize_from_env("MUSUBI_BENCH_COMMITS", 1000).max(1);
    eprintln!(
        "{} sync commits, one at a time and {SESSIONS} at once",
        batches
    );
    let make = |from: usize| -> Vec<SyncBatch> {
        (from..from + batches)
            .map(|j| SyncBatch {
                peer: format!("device-{}", j % SESSIONS),
                writes: vec![survey_insert(base, j, OFFICE, format!("survey {j}")).0],
                ..SyncBatch::default()
            })
            .collect()
    };
    let run = |name: &str, lists: Vec<Vec<SyncBatch>>| -> (Duration, Duration) {
        let store = init_store(&tmp.join(name), "relay");
        let cpu = cpu_of("/proc/self/stat");
        let started = Instant::now();
        std::thread::scope(|s| {
            for list in lists {
                let store = &store;
                s.spawn(move || {
                    for batch in list {
                        store.commit(batch).unwrap();
                    }
                });
            }
        });
        let times = (
            started.elapsed(),
            cpu_of("/proc/self/stat").saturating_sub(cpu),
        );
        assert_eq!(store.list_docs().unwrap().len(), batches);
        store.close().unwrap();
        times
    };
    let (serial, serial_cpu) = run("commits-serial", vec![make(0)]);
    let mut lists: Vec<Vec<SyncBatch>> = (0..SESSIONS).map(|_| Vec::new()).collect();
    for (i, batch) in make(batches).into_iter().enumerate() {
        lists[i % SESSIONS].push(batch);
    }
    let (together, together_cpu) = run("commits-together", lists);
    let per = |d: Duration| fmt_dur(d / u32::try_from(batches).unwrap_or(u32::MAX));
    report.detail(
        &format!("Sync commits of one new survey each ({batches}): one after another / {SESSIONS} sessions at once"),
        format!(
            "{} / {} a commit ({:.0} / {:.0} commits/s, {:.2}× the throughput); process CPU {} / {} a commit",
            per(serial),
            per(together),
            batches as f64 / serial.as_secs_f64(),
            batches as f64 / together.as_secs_f64(),
            serial.as_secs_f64() / together.as_secs_f64(),
            per(serial_cpu),
            per(together_cpu),
        ),
    );
}
