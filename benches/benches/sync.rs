//! musubi sync benchmark: first sync, incremental sync, no-op sync, many devices at once,
//! and samod (automerge-repo for Rust) on the same documents.
//!
//! `cargo bench -p musubi-benches --bench sync` (bench profile = release). Knobs:
//! `MUSUBI_BENCH_DOCS` (default 10000) surveys on the relay; `MUSUBI_BENCH_DEVICES`
//! (default `100,1000`) concurrent devices per burst; `MUSUBI_BENCH_OFFICE_SIZE` (default
//! 10) devices per office in a burst; `MUSUBI_BENCH_SAMOD=0` skips samod,
//! `MUSUBI_BENCH_SAMOD_LIMIT` (default 600) bounds each samod run in seconds,
//! `MUSUBI_BENCH_SAMOD_VARIANTS` picks them; `MUSUBI_BENCH_ONLY=compare` runs only the
//! in-process comparison, `MUSUBI_BENCH_IN_PROCESS=0` leaves it out;
//! `MUSUBI_BENCH_BURSTS` picks bursts (`noop-herd,push-herd,noop-held,push-held`);
//! `MUSUBI_BENCH_WARM=0` makes every burst session its device's first. Prints a Markdown report on stdout, progress on stderr. See
//! docs/benchmarks.md.
//!
//! The relay is a child process (this program with `MUSUBI_BENCH_CHILD=relay`) serving
//! its SQLCipher store over real QUIC on 127.0.0.1, so its memory is its own.

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use musubi_benches::sync_bench::{
    self, DeviceRun, Pki, RelayCounters, SamodStorage, actor_of, client_config, client_endpoint,
    device_sync, init_store, office_number, passphrase, survey_variant_wide, sync_in_process,
};
use musubi_benches::{
    IMPORT_BATCH, Mem, OFFICE, cpu_of, docs_from_env, example_survey, fmt_dur, fmt_kib, mem,
    percentile,
};
use musubi_engine::Engine;
use musubi_engine::doc::{Author, CareDoc};
use musubi_engine::ids::DocId;
use musubi_engine::net::pki::{self, CertKey};
use musubi_engine::net::quic::{self, TransportSettings};
use musubi_engine::net::tls::{self, DeviceCredentials, NothingRevoked};
use musubi_engine::schema::{DocKind, Pointer};
use musubi_engine::store::Store;
use musubi_engine::sync::{MemoryStorage, PeerAccess, Session, SyncStorage};
use serde_json::{Value, json};

const T0_MS: i64 = 1_790_000_000_000;
/// The relay of phases 1–4: one process on the embedded SQLCipher store.
const EMBEDDED: &str = "one relay";

/// The 1, 5 and 15 minute load averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `12.3 KB` / `4.56 MB` (1000-based, as bytes on a wire are usually counted).
fn fmt_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1e6 {
        format!("{:.2} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} KB", b / 1e3)
    } else {
        format!("{b:.0} B")
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "missed" }
}

struct Report {
    summary: String,
    details: String,
}

impl Report {
    fn target(&mut self, measure: &str, result: String, target: &str, ok: bool) {
        writeln!(
            self.summary,
            "| {measure} | {result} | {target} | {} |",
            met(ok)
        )
        .unwrap();
    }
    fn info(&mut self, measure: &str, result: String) {
        writeln!(self.summary, "| {measure} | {result} | — | — |").unwrap();
    }
    fn detail(&mut self, measure: &str, result: String) {
        writeln!(self.details, "| {measure} | {result} |").unwrap();
    }
}

fn main() {
    match std::env::var("MUSUBI_BENCH_CHILD").as_deref() {
        Ok("relay") => return relay_child(),
        Ok("compare") => return compare_child(),
        Ok("device") => return device_child(),
        _ => {}
    }
    let n = docs_from_env();
    let levels: Vec<usize> = std::env::var("MUSUBI_BENCH_DEVICES")
        .unwrap_or_else(|_| "100,1000".to_owned())
        .split(',')
        .filter_map(|s| s.trim().replace('_', "").parse().ok())
        .filter(|&v| v > 0)
        .collect();
    let office_size = musubi_benches::usize_from_env("MUSUBI_BENCH_OFFICE_SIZE", 10).max(1);
    let with_samod = std::env::var("MUSUBI_BENCH_SAMOD").map_or(true, |v| v != "0");
    let only_compare = std::env::var("MUSUBI_BENCH_ONLY").is_ok_and(|v| v == "compare");
    let tmp = tempfile::Builder::new()
        .prefix("musubi-sync-bench-")
        .tempdir()
        .unwrap();
    let started = Instant::now();
    let load_start = loadavg();
    eprintln!(
        "musubi sync bench: {n} documents, bursts {levels:?}, in {}",
        tmp.path().display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut report = Report {
        summary: String::new(),
        details: String::new(),
    };

    let pki = Pki::new();
    let relay_dir = tmp.path().join("relay");
    let (ids, saved) = import_relay(&relay_dir, n, &mut report);
    let saved_total: u64 = saved.iter().map(|b| b.len() as u64).sum();
    report.detail(
        "Automerge size of the documents: sum of `Automerge::save()` (as stored after import)",
        format!(
            "{} ({} per document)",
            fmt_bytes(saved_total),
            fmt_bytes(saved_total / n as u64)
        ),
    );
    per_document(&saved, &mut report);

    let docs_file = tmp.path().join("docs.bin");
    write_docs(&docs_file, &saved);
    // The store as imported, before the phases below change it: the tablet that fills the
    // PostgreSQL relay in phase 6 starts from a copy.
    let with_pg = !only_compare && std::env::var("MUSUBI_BENCH_PG").map_or(true, |v| v != "0");
    let seed_dir = tmp.path().join("seed");
    if with_pg {
        copy_dir(&relay_dir, &seed_dir);
    }
    let full_stack = if only_compare {
        None
    } else {
        Some(over_quic(
            &rt,
            &pki,
            tmp.path(),
            &relay_dir,
            &ids,
            saved_total,
            &levels,
            office_size,
            &mut report,
        ))
    };

    // 6. The relay on PostgreSQL, against the embedded store of phases 1–4.
    if let Some(embedded_first) = full_stack.filter(|_| with_pg) {
        over_postgres(
            &rt,
            &pki,
            tmp.path(),
            &seed_dir,
            n,
            embedded_first,
            &levels,
            office_size,
            &mut report,
        );
    }

    // 5. Comparison on the same documents, in process (`MUSUBI_BENCH_IN_PROCESS=0` leaves
    // it out: at 50,000 documents two in-memory stores hold several GB).
    if std::env::var("MUSUBI_BENCH_IN_PROCESS").map_or(true, |v| v != "0") {
        compare(
            &docs_file,
            saved_total,
            n,
            with_samod,
            full_stack,
            &mut report,
        );
    }
    report.detail("Benchmark wall time", fmt_dur(started.elapsed()));
    report.detail(
        "Load average at the start / at the end (other work on the machine)",
        format!("{load_start} / {}", loadavg()),
    );
    if std::env::var("MUSUBI_BENCH_KEEP").is_ok_and(|v| v == "1") {
        eprintln!("kept {}", tmp.keep().display());
    }

    println!("## musubi sync benchmark: {n} documents\n");
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

/// Phases 1–4 over real QUIC with the relay child. Returns the first sync's time.
#[allow(clippy::too_many_arguments)]
fn over_quic(
    rt: &tokio::runtime::Runtime,
    pki: &Pki,
    tmp: &Path,
    relay_dir: &Path,
    ids: &[DocId],
    saved_total: u64,
    levels: &[usize],
    office_size: usize,
    report: &mut Report,
) -> Duration {
    let n = ids.len();
    let files = RelayFiles::write(tmp, pki, relay_dir);
    let mut relay = RelayProc::start(&files);
    let creds = pki.device("tablet-a", OFFICE);
    let relay_key = quic::relay_id(&creds);
    let settings = TransportSettings::default();
    let endpoint = rt.block_on(async { client_endpoint() });
    let device_dir = tmp.join("device-a");
    let device = Arc::new(init_store(&device_dir, "tablet-a"));
    let actor = actor_of(&device);
    let sync = |relay: &RelayProc, device: &Arc<Store>| -> DeviceRun {
        rt.block_on(device_sync(
            &endpoint,
            client_config(&creds, &settings),
            relay.addr,
            Arc::clone(device),
            &relay_key,
            OFFICE,
            actor.clone(),
        ))
        .unwrap()
    };

    // 1. First sync of every survey to a fresh device, in a process of its own (this one
    // holds what the setup left on its heap).
    eprintln!("first sync of {n} documents to a fresh device");
    match Arc::try_unwrap(device) {
        Ok(store) => store.close().unwrap(),
        Err(_) => panic!("the device store has another holder"),
    }
    relay.reset_peak();
    let (first, device_peak) = first_sync_in_child(tmp, &creds, &relay, &device_dir);
    let device = Arc::new(Store::open(&device_dir, &passphrase()).unwrap());
    let relay_mem = relay.mem();
    let listed = device.list_docs().unwrap().len();
    assert_eq!(listed, n, "the device must hold every document");
    assert_eq!(first.outcome.docs_received, n as u64);
    let wire_ratio = first.frame_bytes() as f64 / saved_total as f64;
    report.info(
        &format!("First sync of {n} surveys to a fresh device (QUIC, SQLCipher on both ends)"),
        format!(
            "{} ({:.0} docs/s), {} round trips, {}",
            fmt_dur(first.elapsed),
            n as f64 / first.elapsed.as_secs_f64(),
            first.outcome.round_trips,
            fmt_bytes(first.frame_bytes())
        ),
    );
    report.target(
        "Wire overhead of the first sync: sync frame bytes / `save()` bytes",
        format!(
            "{wire_ratio:.3} (+{:.1}%); UDP payload incl. QUIC+TLS: {:.3}",
            (wire_ratio - 1.0) * 100.0,
            first.udp_bytes() as f64 / saved_total as f64
        ),
        "< 1.20",
        wire_ratio < 1.2,
    );
    report.detail(
        "First sync: frames / frame bytes down / up / UDP bytes down / up / handshake",
        format!(
            "{} / {} / {} / {} / {} / {}",
            first.stats.frames_in + first.stats.frames_out,
            fmt_bytes(first.stats.bytes_in),
            fmt_bytes(first.stats.bytes_out),
            fmt_bytes(first.udp_rx),
            fmt_bytes(first.udp_tx),
            fmt_dur(first.handshake)
        ),
    );
    report.detail(
        "First sync: peak resident memory, device process / relay process",
        format!("{} / {}", fmt_kib(device_peak), fmt_kib(relay_mem.hwm_kib)),
    );

    // 3. No-op sync right after.
    let noop = sync(&relay, &device);
    report_noop(report, "No-op sync after the first sync", &noop);

    // 2. Incremental: one edit on the device (push), then k edits; then the same on the
    // relay (pull).
    let k = 10.min(n.saturating_sub(2)).max(1);
    let (device, inc_push, change_push) =
        edit_and_sync(device, &device_dir, &ids[..1], 3, &|d| sync(&relay, d));
    let (device, inc_push_k, change_push_k) =
        edit_and_sync(device, &device_dir, &ids[1..=k], 3, &|d| sync(&relay, d));
    let mut pulls = Vec::new();
    for chunk in [&ids[n - 1..n], &ids[n - 1 - k..n - 1]] {
        let (restarted, changes) = relay_edit(relay, &files, chunk);
        relay = restarted;
        let run = sync(&relay, &device);
        assert_eq!(
            run.outcome.docs_received,
            chunk.len() as u64,
            "{:?}",
            run.outcome
        );
        pulls.push((run, changes));
    }
    let noop2 = sync(&relay, &device);
    report_incremental(
        report,
        n,
        [
            ("push", &inc_push, change_push, 1),
            ("push", &inc_push_k, change_push_k, k),
            ("pull", &pulls[0].0, pulls[0].1, 1),
            ("pull", &pulls[1].0, pulls[1].1, k),
        ],
        &noop2,
    );
    report_noop(report, "No-op sync after the edits", &noop2);
    drop(device);

    // 4. Many devices at once (`MUSUBI_BENCH_BURSTS` picks some of them, e.g. to profile
    // one: `noop-herd,push-herd,noop-held,push-held`, the default being all four).
    let picked = std::env::var("MUSUBI_BENCH_BURSTS").ok();
    for (i, &count) in levels.iter().enumerate() {
        for (j, (push, start)) in [
            (false, Start::Herd),
            (true, Start::Herd),
            (false, Start::Held),
            (true, Start::Held),
        ]
        .into_iter()
        .enumerate()
        {
            let name = format!(
                "{}-{}",
                if push { "push" } else { "noop" },
                if start == Start::Held { "held" } else { "herd" }
            );
            if picked
                .as_deref()
                .is_some_and(|p| !p.split(',').any(|w| w.trim() == name))
            {
                continue;
            }
            burst(
                rt,
                pki,
                &[&relay],
                EMBEDDED,
                count,
                office_size,
                i * 4 + j,
                push,
                start,
                report,
            );
        }
    }
    let (ok, failed) = relay.stop();
    report.detail(
        "Relay sessions over the whole run: completed / failed",
        format!("{ok} / {failed}"),
    );

    first.elapsed
}

// ---------------------------------------------------------------------------------------
// 6. PostgreSQL

/// Copies a directory tree (a closed store directory).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else if kind.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// The relay on PostgreSQL (`musubi-relay-pg`, documents sealed with its data key) in a
/// throwaway cluster started for this run: filled by a tablet holding the same surveys,
/// then the first sync to a fresh device, a no-op, and the bursts, with one node and then
/// two nodes on the same database.
#[allow(clippy::too_many_arguments)]
fn over_postgres(
    rt: &tokio::runtime::Runtime,
    pki: &Pki,
    tmp: &Path,
    seed_dir: &Path,
    n: usize,
    embedded_first: Duration,
    levels: &[usize],
    office_size: usize,
    report: &mut Report,
) {
    eprintln!("PostgreSQL: starting a throwaway cluster");
    let db = musubi_pgtest::database();
    let key = musubi_relay_pg::DataKeys::generate_hex().unwrap();
    let mut files = RelayFiles::write(tmp, pki, &tmp.join("unused-store"));
    files.pg = Some((db.url(), key.to_string()));
    let node1 = RelayProc::start(&files);
    let settings = TransportSettings::default();
    let endpoint = rt.block_on(async { client_endpoint() });
    let sync = |relay: &RelayProc, store: &Arc<Store>, creds: &DeviceCredentials| -> DeviceRun {
        rt.block_on(device_sync(
            &endpoint,
            client_config(creds, &settings),
            relay.addr,
            Arc::clone(store),
            &quic::relay_id(creds),
            OFFICE,
            actor_of(store),
        ))
        .unwrap()
    };

    // Fill: a tablet holding the imported surveys pushes them (its first sync).
    eprintln!("PostgreSQL: a tablet pushes {n} documents");
    let seeder = Arc::new(Store::open(seed_dir, &passphrase()).unwrap());
    let seed_creds = pki.device("tablet-seed", OFFICE);
    let pushed = sync(&node1, &seeder, &seed_creds);
    assert_eq!(pushed.outcome.docs_sent, n as u64, "{:?}", pushed.outcome);
    report.detail(
        &format!("PostgreSQL relay: a tablet's first sync pushing its {n} surveys"),
        format!(
            "{} ({:.0} docs/s), {} round trips, {}",
            fmt_dur(pushed.elapsed),
            n as f64 / pushed.elapsed.as_secs_f64(),
            pushed.outcome.round_trips,
            fmt_bytes(pushed.frame_bytes())
        ),
    );
    drop(seeder);

    // First sync to a fresh device, as in phase 1.
    eprintln!("PostgreSQL: first sync of {n} documents to a fresh device");
    let creds = pki.device("tablet-pg", OFFICE);
    let device_dir = tmp.join("device-pg");
    init_store(&device_dir, "tablet-pg").close().unwrap();
    node1.reset_peak();
    let (first, device_peak) = first_sync_in_child(tmp, &creds, &node1, &device_dir);
    let device = Arc::new(Store::open(&device_dir, &passphrase()).unwrap());
    let relay_peak = node1.mem().hwm_kib;
    assert_eq!(device.list_docs().unwrap().len(), n);
    report.info(
        &format!(
            "First sync of {n} surveys to a fresh device, relay on PostgreSQL (sealed) vs the embedded store in this run"
        ),
        format!(
            "{} vs {}: PostgreSQL takes {:.2}× the time; peak RSS device / relay {} / {}",
            fmt_dur(first.elapsed),
            fmt_dur(embedded_first),
            first.elapsed.as_secs_f64() / embedded_first.as_secs_f64(),
            fmt_kib(device_peak),
            fmt_kib(relay_peak)
        ),
    );
    let noop = sync(&node1, &device, &creds);
    report_noop(
        report,
        "PostgreSQL relay: no-op sync after the first sync",
        &noop,
    );
    drop(device);

    // A second node on the same database, for the second round: the devices alternate
    // between the nodes. Offices no other burst uses (see `burst`; phases 1–4 take
    // indices 0–7).
    let node2 = RelayProc::start(&files);
    let rounds: [(&[&RelayProc], &str); 2] = [
        (&[&node1], "relay on PostgreSQL, one node"),
        (
            &[&node1, &node2],
            "relay on PostgreSQL, two nodes on one database",
        ),
    ];
    for (r, (nodes, label)) in rounds.into_iter().enumerate() {
        for (li, &count) in levels.iter().enumerate() {
            for (j, push) in [false, true].into_iter().enumerate() {
                burst(
                    rt,
                    pki,
                    nodes,
                    label,
                    count,
                    office_size,
                    10 + li * 4 + r * 2 + j,
                    push,
                    Start::Held,
                    report,
                );
            }
        }
    }
    let (ok2, failed2) = node2.stop();
    let (ok1, failed1) = node1.stop();
    report.detail(
        "PostgreSQL relay sessions over the run, node 1 / node 2: completed / failed",
        format!("{ok1} / {failed1}; {ok2} / {failed2}"),
    );
}

// ---------------------------------------------------------------------------------------
// Setup

/// Imports `n` survey variants into a new relay store through `Engine::import`; returns
/// their ids and stored snapshots.
fn import_relay(dir: &Path, n: usize, report: &mut Report) -> (Vec<DocId>, Vec<Vec<u8>>) {
    let engine = Engine::new(init_store(dir, "relay"), None).unwrap();
    let base = example_survey();
    let t = Instant::now();
    let mut ids = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        let end = (i + IMPORT_BATCH).min(n);
        let batch: Vec<(String, Value)> = (i..end)
            .map(|j| (format!("survey-{j}.json"), survey_variant_wide(&base, j)))
            .collect();
        ids.extend(engine.import(&batch, T0_MS + i as i64).unwrap().ids);
        i = end;
        if i % 1000 == 0 || i == n {
            eprintln!("  imported {i}/{n} in {}", fmt_dur(t.elapsed()));
        }
    }
    report.detail(
        "Relay store setup: `Engine::import` of the surveys (not part of any sync time)",
        fmt_dur(t.elapsed()),
    );
    let saved = ids
        .iter()
        .map(|id| {
            let doc = engine.store().load_doc(*id).unwrap().unwrap();
            assert_eq!(doc.chunks.len(), 1, "an imported document is one snapshot");
            doc.chunks.into_iter().next().unwrap()
        })
        .collect();
    engine.close().unwrap();
    (ids, saved)
}

/// Raw change bytes (uncompressed `Change::raw_bytes`) against `save()`, and what the
/// automerge steps of a sync cost per document, on a sample.
fn per_document(saved: &[Vec<u8>], report: &mut Report) {
    use automerge::sync::{State, SyncDoc as _};
    let sample = &saved[..saved.len().min(200)];
    let count = sample.len() as u32;
    let (mut raw, mut snap) = (0u64, 0u64);
    let (mut load, mut save, mut first_msg, mut receive) = (
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    );
    for bytes in sample {
        let t = Instant::now();
        let mut doc = automerge::Automerge::load(bytes).unwrap();
        load += t.elapsed();
        let t = Instant::now();
        let again = doc.save();
        save += t.elapsed();
        assert!(!again.is_empty());
        raw += doc
            .get_changes(&[])
            .iter()
            .map(|c| c.raw_bytes().len() as u64)
            .sum::<u64>();
        snap += bytes.len() as u64;
        // One sync exchange with a peer that has nothing: our first message, then the
        // whole document arriving in the peer's reply on an empty document.
        let t = Instant::now();
        let msg = doc.generate_sync_message(&mut State::new()).unwrap();
        first_msg += t.elapsed();
        let mut empty = automerge::Automerge::new();
        let mut theirs = State::new();
        empty.receive_sync_message(&mut theirs, msg).unwrap();
        let reply = empty.generate_sync_message(&mut theirs).unwrap();
        let mut ours = State::new();
        doc.receive_sync_message(&mut ours, reply).unwrap();
        let full = doc.generate_sync_message(&mut ours).unwrap();
        let t = Instant::now();
        empty.receive_sync_message(&mut theirs, full).unwrap();
        receive += t.elapsed();
    }
    report.detail(
        "Raw change bytes of a document (`Change::raw_bytes`, sample of 200) / its `save()` bytes",
        format!(
            "{} / {} per document ({:.2}×)",
            fmt_bytes(raw / u64::from(count)),
            fmt_bytes(snap / u64::from(count)),
            raw as f64 / snap as f64
        ),
    );
    report.detail(
        "Automerge per survey (sample of 200): `load` / `save` / first sync message / receiving the whole document by sync message",
        format!(
            "{} / {} / {} / {}",
            fmt_dur(load / count),
            fmt_dur(save / count),
            fmt_dur(first_msg / count),
            fmt_dur(receive / count)
        ),
    );
}

// ---------------------------------------------------------------------------------------
// The relay child process

struct RelayFiles {
    store: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    /// A relay on PostgreSQL instead of the SQLCipher `store`: the database URL and the
    /// data key (hex).
    pg: Option<(String, String)>,
}

impl RelayFiles {
    fn write(tmp: &Path, pki: &Pki, store: &Path) -> RelayFiles {
        let files = RelayFiles {
            store: store.to_path_buf(),
            cert: tmp.join("relay-cert.pem"),
            key: tmp.join("relay-key.pem"),
            ca: tmp.join("ca.pem"),
            pg: None,
        };
        std::fs::write(&files.cert, &pki.relay.cert_pem).unwrap();
        std::fs::write(&files.key, pki.relay.key_pem.as_bytes()).unwrap();
        std::fs::write(&files.ca, pki.ca.cert_pem()).unwrap();
        files
    }
}

struct RelayProc {
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
    addr: SocketAddr,
}

impl RelayProc {
    fn start(files: &RelayFiles) -> RelayProc {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .env("MUSUBI_BENCH_CHILD", "relay")
            .env("MUSUBI_BENCH_RELAY_STORE", &files.store)
            .env("MUSUBI_BENCH_RELAY_CERT", &files.cert)
            .env("MUSUBI_BENCH_RELAY_KEY", &files.key)
            .env("MUSUBI_BENCH_RELAY_CA", &files.ca);
        if let Some((url, key)) = &files.pg {
            command
                .env("MUSUBI_BENCH_RELAY_PG", url)
                .env("MUSUBI_BENCH_RELAY_PG_KEY", key);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("relay child said {line:?}"));
        RelayProc {
            stdin: child.stdin.take(),
            child,
            out,
            addr,
        }
    }

    fn status_path(&self, file: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/{file}", self.child.id()))
    }

    fn mem(&self) -> Mem {
        let text = std::fs::read_to_string(self.status_path("status")).unwrap_or_default();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        Mem {
            rss_kib: field("VmRSS:"),
            hwm_kib: field("VmHWM:"),
        }
    }

    fn reset_peak(&self) {
        let _ = std::fs::write(self.status_path("clear_refs"), "5\n");
    }

    /// Closes the child's stdin (it shuts down and closes its store); returns its session
    /// counters.
    fn stop(mut self) -> (u64, u64) {
        drop(self.stdin.take());
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "relay child failed: {status}");
        let mut parts = line
            .split_whitespace()
            .skip(1)
            .map(|p| p.parse().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }
}

/// Runs the first sync of the device whose store is in `device_dir` in a child process
/// (`device_child`); its run and peak resident memory (KiB).
fn first_sync_in_child(
    tmp: &Path,
    creds: &DeviceCredentials,
    relay: &RelayProc,
    device_dir: &Path,
) -> (DeviceRun, u64) {
    let creds_dir = tmp.join(format!("creds-{}", creds.device_id));
    std::fs::create_dir_all(&creds_dir).unwrap();
    for (file, text) in [
        ("cert.pem", creds.cert_pem.as_str()),
        ("key.pem", creds.key_pem.as_str()),
        ("ca.pem", creds.office_ca_pem.as_str()),
        ("id", creds.device_id.as_str()),
        ("name", creds.device_name.as_str()),
        ("office", creds.office.as_str()),
    ] {
        std::fs::write(creds_dir.join(file), text).unwrap();
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .env("MUSUBI_BENCH_CHILD", "device")
        .env("MUSUBI_BENCH_DEVICE_CREDS", &creds_dir)
        .env("MUSUBI_BENCH_DEVICE_STORE", device_dir)
        .env("MUSUBI_BENCH_RELAY_ADDR", relay.addr.to_string())
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "device child failed: {}", out.status);
    let text = String::from_utf8(out.stdout).unwrap();
    let f: Vec<u64> = text
        .trim()
        .strip_prefix("run ")
        .unwrap_or_else(|| panic!("device child said {text:?}"))
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let run = DeviceRun {
        outcome: musubi_engine::sync::SyncOutcome {
            round_trips: f[0],
            docs_received: f[1],
            docs_sent: f[2],
            bytes_sent: f[3],
            bytes_received: f[4],
            ..Default::default()
        },
        stats: quic::DriveStats {
            frames_in: f[5],
            frames_out: f[6],
            bytes_in: f[7],
            bytes_out: f[8],
        },
        udp_tx: f[9],
        udp_rx: f[10],
        elapsed: Duration::from_nanos(f[11]),
        handshake: Duration::from_nanos(f[12]),
    };
    (run, f[13])
}

/// The device child: one sync of the store in `MUSUBI_BENCH_DEVICE_STORE` with the relay,
/// then one line: `run` and the figures `first_sync_in_child` reads, its peak RSS last.
fn device_child() {
    let var = |name: &str| PathBuf::from(std::env::var(name).unwrap());
    let dir = var("MUSUBI_BENCH_DEVICE_CREDS");
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap();
    let creds = DeviceCredentials {
        device_id: read("id"),
        device_name: read("name"),
        office: read("office"),
        cert_pem: read("cert.pem"),
        key_pem: read("key.pem").into(),
        office_ca_pem: read("ca.pem"),
        relay_address: std::env::var("MUSUBI_BENCH_RELAY_ADDR").unwrap(),
    };
    let addr: SocketAddr = creds.relay_address.parse().unwrap();
    let store = Arc::new(Store::open(&var("MUSUBI_BENCH_DEVICE_STORE"), &passphrase()).unwrap());
    let actor = actor_of(&store);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let run = rt
        .block_on(async {
            let endpoint = client_endpoint();
            device_sync(
                &endpoint,
                client_config(&creds, &TransportSettings::default()),
                addr,
                Arc::clone(&store),
                &quic::relay_id(&creds),
                &creds.office,
                actor,
            )
            .await
        })
        .unwrap();
    drop(rt);
    if let Ok(store) = Arc::try_unwrap(store) {
        store.close().unwrap();
    }
    let o = &run.outcome;
    println!(
        "run {} {} {} {} {} {} {} {} {} {} {} {} {} {}",
        o.round_trips,
        o.docs_received,
        o.docs_sent,
        o.bytes_sent,
        o.bytes_received,
        run.stats.frames_in,
        run.stats.frames_out,
        run.stats.bytes_in,
        run.stats.bytes_out,
        run.udp_tx,
        run.udp_rx,
        run.elapsed.as_nanos(),
        run.handshake.as_nanos(),
        mem().hwm_kib,
    );
}

/// The relay child: opens the store (SQLCipher, or PostgreSQL when the parent gives a
/// database), serves it on 127.0.0.1 until stdin closes.
fn relay_child() {
    let var = |name: &str| PathBuf::from(std::env::var(name).unwrap());
    let cert_pem = std::fs::read_to_string(var("MUSUBI_BENCH_RELAY_CERT")).unwrap();
    let key_pem = std::fs::read_to_string(var("MUSUBI_BENCH_RELAY_KEY")).unwrap();
    let ca_pem = std::fs::read_to_string(var("MUSUBI_BENCH_RELAY_CA")).unwrap();
    let relay = CertKey {
        cert_der: pki::cert_der_from_pem(&cert_pem, "relay certificate").unwrap(),
        cert_pem,
        key_pem: key_pem.into(),
    };
    if let Ok(url) = std::env::var("MUSUBI_BENCH_RELAY_PG") {
        let key = std::env::var("MUSUBI_BENCH_RELAY_PG_KEY").unwrap();
        let keys = musubi_relay_pg::DataKeys::from_hex(&key).unwrap();
        let store = Arc::new(
            musubi_relay_pg::PgStorage::open(&musubi_relay_pg::PgOptions::new(&url), keys).unwrap(),
        );
        serve_until_stdin_closes(&relay, &ca_pem, store);
    } else {
        let store = Arc::new(Store::open(&var("MUSUBI_BENCH_RELAY_STORE"), &passphrase()).unwrap());
        if let Some(store) = serve_until_stdin_closes(&relay, &ca_pem, store) {
            store.close().unwrap();
        }
    }
}

/// Serves `store` until the parent closes our stdin, then prints the session counters;
/// returns the store when no session holds it any more.
fn serve_until_stdin_closes<T>(relay: &CertKey, ca_pem: &str, store: Arc<T>) -> Option<T>
where
    Arc<T>: SyncStorage + Clone + Send + Sync + 'static,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let counters = Arc::new(RelayCounters::default());
    let endpoint = rt.block_on(async {
        let tls = tls::server_config(relay, ca_pem, Arc::new(NothingRevoked)).unwrap();
        quic::server_endpoint(
            tls,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            &TransportSettings::default(),
        )
        .unwrap()
    });
    println!("listening {}", endpoint.local_addr().unwrap());
    std::io::stdout().flush().unwrap();
    let served: Arc<T> = store.clone();
    let counted: Arc<RelayCounters> = counters.clone();
    rt.spawn(sync_bench::serve(endpoint.clone(), served, counted));
    // Runs until the parent closes our stdin.
    let mut sink = String::new();
    while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    rt.block_on(async {
        endpoint.close(0u32.into(), b"bye");
        let _ = tokio::time::timeout(Duration::from_secs(5), endpoint.wait_idle()).await;
    });
    drop(rt);
    let ok = counters.ok.load(std::sync::atomic::Ordering::Relaxed);
    let failed = counters.failed.load(std::sync::atomic::Ordering::Relaxed);
    let store = Arc::try_unwrap(store).ok();
    println!("sessions {ok} {failed}");
    store
}

// ---------------------------------------------------------------------------------------
// Incremental and no-op

/// Sets `/items/1-3` to `value` in each of `ids` on the device, then syncs. Returns the
/// device store again, the run and the raw change bytes the edits added to the store.
fn edit_and_sync(
    device: Arc<Store>,
    dir: &Path,
    ids: &[DocId],
    value: i64,
    sync: &dyn Fn(&Arc<Store>) -> DeviceRun,
) -> (Arc<Store>, DeviceRun, u64) {
    // No session holds the store between syncs.
    let store = Arc::try_unwrap(device).unwrap_or_else(|_| panic!("device store still shared"));
    let engine = Engine::new(store, None).unwrap();
    let changes = apply_edits(&engine, ids, value);
    engine.close().unwrap();
    let device = Arc::new(Store::open(dir, &passphrase()).unwrap());
    let run = sync(&device);
    assert_eq!(run.outcome.docs_sent, ids.len() as u64, "{:?}", run.outcome);
    (device, run, changes)
}

/// One `engine.set` per id; returns the bytes of the changes they stored.
fn apply_edits(engine: &Engine, ids: &[DocId], value: i64) -> u64 {
    let pointer = Pointer::parse("/items/1-3").unwrap();
    let mut bytes = 0;
    for (i, id) in ids.iter().enumerate() {
        let out = engine
            .set(*id, &pointer, json!(value), T0_MS + 10_000_000 + i as i64)
            .unwrap();
        assert!(out.changed);
        let doc = engine.store().load_doc(*id).unwrap().unwrap();
        bytes += doc.chunks.last().map_or(0, |c| c.len() as u64);
    }
    bytes
}

/// Stops the relay, edits `ids` in its store, starts it again.
fn relay_edit(relay: RelayProc, files: &RelayFiles, ids: &[DocId]) -> (RelayProc, u64) {
    relay.stop();
    let engine = Engine::new(Store::open(&files.store, &passphrase()).unwrap(), None).unwrap();
    let changes = apply_edits(&engine, ids, 1);
    engine.close().unwrap();
    (RelayProc::start(files), changes)
}

fn report_noop(report: &mut Report, what: &str, run: &DeviceRun) {
    let bytes = run.frame_bytes();
    report.target(
        &format!("{what}: round trips, sync frame bytes"),
        format!(
            "{} round trip, {} ({} UDP incl. the QUIC+TLS handshake)",
            run.outcome.round_trips,
            fmt_bytes(bytes),
            fmt_bytes(run.udp_bytes())
        ),
        "1 and < 1 KB",
        run.outcome.round_trips == 1 && bytes < 1000,
    );
    report.detail(
        &format!("{what}: time (handshake / total)"),
        format!("{} / {}", fmt_dur(run.handshake), fmt_dur(run.elapsed)),
    );
}

/// Incremental runs: (direction, run, raw change bytes, documents edited).
fn report_incremental(
    report: &mut Report,
    n: usize,
    runs: [(&str, &DeviceRun, u64, usize); 4],
    noop: &DeviceRun,
) {
    let fixed = noop.frame_bytes();
    for (dir, run, change, docs) in &runs {
        report.detail(
            &format!("Incremental {dir}, {docs} document(s) edited in a {n}-document store"),
            format!(
                "{} round trips, {} frame bytes ({} UDP), {}; raw change bytes {} → frame bytes above the no-op's {} = {:.1}× the change",
                run.outcome.round_trips,
                fmt_bytes(run.frame_bytes()),
                fmt_bytes(run.udp_bytes()),
                fmt_dur(run.elapsed),
                fmt_bytes(*change),
                fmt_bytes(fixed),
                run.frame_bytes().saturating_sub(fixed) as f64 / (*change).max(1) as f64
            ),
        );
    }
    let max_rt = runs
        .iter()
        .map(|r| r.1.outcome.round_trips)
        .max()
        .unwrap_or(0);
    // "Proportional to the change": bytes above the no-op grow with the edited documents,
    // at a bounded multiple of the change itself.
    let per_change: Vec<f64> = runs
        .iter()
        .map(|(_, run, change, _)| {
            run.frame_bytes().saturating_sub(fixed) as f64 / (*change).max(1) as f64
        })
        .collect();
    let worst = per_change.iter().copied().fold(0.0, f64::max);
    let (_, one, _, _) = runs[0];
    let (_, many, _, k) = runs[1];
    let growth = many.frame_bytes().saturating_sub(fixed) as f64
        / one.frame_bytes().saturating_sub(fixed).max(1) as f64;
    report.target(
        &format!("Incremental sync after one edit in a {n}-document store (push / pull)"),
        format!(
            "{} / {} round trips; {} / {} frame bytes",
            runs[0].1.outcome.round_trips,
            runs[2].1.outcome.round_trips,
            fmt_bytes(runs[0].1.frame_bytes()),
            fmt_bytes(runs[2].1.frame_bytes())
        ),
        "≤ 2 round trips",
        runs[0].1.outcome.round_trips <= 2 && runs[2].1.outcome.round_trips <= 2,
    );
    report.target(
        "Incremental bytes proportional to the change",
        format!(
            "{k} edits cost {growth:.1}× one edit; bytes above the no-op are {:.1}–{worst:.1}× the raw change bytes; worst round trips {max_rt}",
            per_change.iter().copied().fold(f64::INFINITY, f64::min)
        ),
        "linear in the edits (k edits: 0.5k–1.5k × one)",
        growth > k as f64 * 0.5 && growth < k as f64 * 1.5,
    );
}

// ---------------------------------------------------------------------------------------
// Many devices at once

struct BurstDevice {
    config: Option<quinn::ClientConfig>,
    store: Arc<MemoryStorage>,
    actor: Vec<u8>,
    office: String,
}

/// How the devices of a burst start.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Every device connects and syncs at the same moment (handshakes included).
    Herd,
    /// Every device connects first (50 handshakes at a time) and keeps its connection;
    /// then every session starts at the same moment.
    Held,
}

/// `count` devices on in-memory stores sync with the relay at once.
///
/// - `push`: `office_size` devices per office, each with one new survey of its own; each
///   pushes it and pulls its office-mates' surveys the relay already has.
/// - otherwise: every device is caught up (an empty device of an office without
///   documents), so each session is a no-op: `hello`, `welcome`, `done`.
#[allow(clippy::too_many_arguments)]
fn burst(
    rt: &tokio::runtime::Runtime,
    pki: &Pki,
    relays: &[&RelayProc],
    label: &str,
    count: usize,
    office_size: usize,
    burst_index: usize,
    push: bool,
    start: Start,
    report: &mut Report,
) {
    let kind = match (push, start) {
        (false, Start::Herd) => "no-op, connect and sync at once",
        (true, Start::Herd) => "push one new survey each, connect and sync at once",
        (false, Start::Held) => "no-op, on connections opened beforehand",
        (true, Start::Held) => "push one new survey each, on connections opened beforehand",
    };
    eprintln!("burst of {count} ({kind}): preparing");
    let base = example_survey();
    let settings = TransportSettings::default();
    let author = Author {
        device: "00".repeat(16),
        device_name: "bench".to_owned(),
        staff: None,
        action: "import".to_owned(),
        time_ms: T0_MS,
    };
    let mut relay_key = String::new();
    let mut new_surveys: Vec<(usize, DocId, Vec<u8>)> = Vec::new();
    let mut devices: Vec<BurstDevice> = (0..count)
        .map(|i| {
            // Offices no other burst uses, so that every burst starts from the same state.
            let office = if push {
                office_number(50_000 + burst_index * 2_000 + i / office_size)
            } else {
                office_number(95_000 + burst_index)
            };
            let creds: DeviceCredentials = pki.device(&format!("tablet-{i}"), &office);
            if relay_key.is_empty() {
                relay_key = quic::relay_id(&creds);
            }
            let actor = automerge::ActorId::random();
            let store = Arc::new(MemoryStorage::new(&format!("device-{i}")));
            if push {
                let mut value = survey_variant_wide(&base, 100_000 + i);
                value["office"] = Value::String(office.clone());
                let id = DocId::random();
                let mut doc =
                    CareDoc::create(id, DocKind::Survey, &value, actor.clone(), &author).unwrap();
                new_surveys.push((i, id, doc.save()));
            }
            BurstDevice {
                config: Some(client_config(&creds, &settings)),
                store,
                actor: actor.to_bytes().to_vec(),
                office,
            }
        })
        .collect();
    let per_endpoint = 50;
    let endpoints: Vec<quinn::Endpoint> = rt.block_on(async {
        (0..count.div_ceil(per_endpoint))
            .map(|_| client_endpoint())
            .collect()
    });
    // Device i syncs with relay node i mod the number of nodes.
    let addrs: Vec<SocketAddr> = relays.iter().map(|r| r.addr).collect();
    // Each device has synced once before (50 at a time, not timed): its actor is bound and
    // its cursor set, as for a tablet of an office in daily use, so a no-op burst finds
    // nothing to do. `MUSUBI_BENCH_WARM=0` leaves this out: every session is then the
    // device's first (an actor binding written, every sync state with it reset).
    if std::env::var("MUSUBI_BENCH_WARM").map_or(true, |v| v != "0") {
        eprintln!("burst of {count} ({kind}): a first sync of each device");
        let warmed = rt.block_on(async {
            let gate = Arc::new(tokio::sync::Semaphore::new(50));
            let mut set = tokio::task::JoinSet::new();
            for (i, d) in devices.iter().enumerate() {
                let endpoint = endpoints[i / per_endpoint].clone();
                let config = d.config.clone().unwrap();
                let addr = addrs[i % addrs.len()];
                let (store, key, office, actor) = (
                    Arc::clone(&d.store),
                    relay_key.clone(),
                    d.office.clone(),
                    d.actor.clone(),
                );
                let gate = Arc::clone(&gate);
                set.spawn(async move {
                    let _permit = gate.acquire_owned().await;
                    device_sync(&endpoint, config, addr, store, &key, &office, actor).await
                });
            }
            let mut failed = 0;
            while let Some(r) = set.join_next().await {
                failed += usize::from(r.unwrap().is_err());
            }
            failed
        });
        assert_eq!(warmed, 0, "every device's first sync completes");
    }
    for (i, id, bytes) in new_surveys {
        let d = &devices[i];
        d.store.put_local(id, "survey", &d.office, bytes).unwrap();
    }
    for r in relays {
        r.reset_peak();
    }
    let drops0 = sync_bench::udp_receive_buffer_drops();
    let relay_stats: Vec<String> = relays
        .iter()
        .map(|r| format!("/proc/{}/stat", r.child.id()))
        .collect();
    let relays_cpu = || -> Duration { relay_stats.iter().map(|p| cpu_of(p)).sum() };
    let mut failures: Vec<String> = Vec::new();
    // Held: connect every device first.
    let mut conns: Vec<Option<(quinn::Connection, Duration)>> = (0..count).map(|_| None).collect();
    let mut connect_note = String::new();
    if start == Start::Held {
        eprintln!("burst of {count} ({kind}): connecting");
        let t = Instant::now();
        let results = rt.block_on(async {
            let gate = Arc::new(tokio::sync::Semaphore::new(50));
            let mut set = tokio::task::JoinSet::new();
            for (i, d) in devices.iter_mut().enumerate() {
                let endpoint = endpoints[i / per_endpoint].clone();
                let config = d.config.take().unwrap();
                let addr = addrs[i % addrs.len()];
                let gate = Arc::clone(&gate);
                set.spawn(async move {
                    let _permit = gate.acquire_owned().await;
                    (i, sync_bench::connect_device(&endpoint, config, addr).await)
                });
            }
            let mut out = Vec::with_capacity(count);
            while let Some(r) = set.join_next().await {
                out.push(r.unwrap());
            }
            out
        });
        for (i, r) in results {
            match r {
                Ok(c) => conns[i] = Some(c),
                Err(e) => failures.push(e),
            }
        }
        let held = relays.iter().map(|r| r.mem().rss_kib).sum::<u64>();
        connect_note = format!(
            "; connecting all took {}, relay RSS with {} connections open {}",
            fmt_dur(t.elapsed()),
            conns.iter().filter(|c| c.is_some()).count(),
            fmt_kib(held)
        );
    }
    eprintln!("burst of {count} ({kind}): syncing");
    let relay_cpu0 = relays_cpu();
    let own_cpu0 = cpu_of("/proc/self/stat");
    let t0 = Instant::now();
    let results: Vec<(Result<DeviceRun, String>, Duration)> = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for (i, d) in devices.into_iter().enumerate() {
            let endpoint = endpoints[i / per_endpoint].clone();
            let addr = addrs[i % addrs.len()];
            let key = relay_key.clone();
            let conn = conns[i].take();
            if start == Start::Held && conn.is_none() {
                continue;
            }
            set.spawn(async move {
                let r = match (conn, d.config) {
                    (Some((conn, handshake)), _) => {
                        sync_bench::device_session(&conn, d.store, &key, &d.office, d.actor)
                            .await
                            .map(|mut run| {
                                run.handshake = handshake;
                                run
                            })
                    }
                    (None, Some(config)) => {
                        device_sync(&endpoint, config, addr, d.store, &key, &d.office, d.actor)
                            .await
                    }
                    (None, None) => Err("no connection".to_owned()),
                };
                (r, t0.elapsed())
            });
        }
        let mut out = Vec::with_capacity(count);
        while let Some(r) = set.join_next().await {
            out.push(r.unwrap());
        }
        out
    });
    let wall = t0.elapsed();
    let relay_cpu = relays_cpu().saturating_sub(relay_cpu0);
    let own_cpu = cpu_of("/proc/self/stat").saturating_sub(own_cpu0);
    let relay_peak = relays.iter().map(|r| r.mem().hwm_kib).max().unwrap_or(0);
    let drops = sync_bench::udp_receive_buffer_drops().saturating_sub(drops0);
    let mut done: Vec<Duration> = Vec::new();
    let mut handshakes: Vec<Duration> = Vec::new();
    let (mut sent, mut received, mut rts, mut bytes) = (0, 0, 0, 0);
    for (r, at) in &results {
        match r {
            Ok(run) => {
                done.push(*at);
                handshakes.push(run.handshake);
                sent += run.outcome.docs_sent;
                received += run.outcome.docs_received;
                rts = rts.max(run.outcome.round_trips);
                bytes += run.frame_bytes();
            }
            Err(e) => failures.push(e.clone()),
        }
    }
    done.sort();
    handshakes.sort();
    let p50 = percentile(&done, 0.5);
    let p99 = percentile(&done, 0.99);
    let rss_ok = relay_peak < 1024 * 1024;
    let measure = format!(
        "{count} devices syncing at once ({kind}); {label}; the 2 cores shared with the devices"
    );
    let result = format!(
        "completion p50 {} / p99 {} / max {}; relay peak RSS {}; {} of {count} failed",
        fmt_dur(p50),
        fmt_dur(p99),
        fmt_dur(done.last().copied().unwrap_or_default()),
        fmt_kib(relay_peak),
        failures.len()
    );
    if count >= 1000 && relays.len() == 1 && label == EMBEDDED {
        report.target(
            &measure,
            result,
            "p99 < 1 s, < 1 GB",
            p99 < Duration::from_secs(1) && rss_ok && failures.is_empty(),
        );
    } else {
        report.detail(&measure, result);
    }
    report.detail(
        &format!("  {count}, {kind}: handshake p50 / p99; CPU of the relay / of the devices during the syncs; wall; UDP receive-buffer drops (machine)"),
        format!(
            "{} / {}; {} / {}; {}; {drops}{connect_note}",
            fmt_dur(percentile(&handshakes, 0.5)),
            fmt_dur(percentile(&handshakes, 0.99)),
            fmt_dur(relay_cpu),
            fmt_dur(own_cpu),
            fmt_dur(wall),
        ),
    );
    report.detail(
        &format!("  {count}, {kind}: documents pushed / pulled, most round trips, frame bytes"),
        format!("{sent} / {received}, {rts}, {}", fmt_bytes(bytes)),
    );
    if let Some(e) = failures.first() {
        report.detail(&format!("  {count}, {kind}: first failure"), e.clone());
    }
}

// ---------------------------------------------------------------------------------------
// In-process comparison with samod (each variant in its own child process, so that its
// memory figure is its own and no runtime or allocator state carries over)

/// Writes the documents as `u32` big-endian length + bytes, one after another.
fn write_docs(path: &Path, docs: &[Vec<u8>]) {
    let mut out = Vec::new();
    for d in docs {
        out.extend_from_slice(&u32::try_from(d.len()).unwrap().to_be_bytes());
        out.extend_from_slice(d);
    }
    std::fs::write(path, out).unwrap();
}

fn read_docs(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let mut docs = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        docs.push(rest[4..4 + len].to_vec());
        rest = &rest[4 + len..];
    }
    docs
}

/// What a comparison child measured.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Compared {
    elapsed_ms: f64,
    round_trips: u64,
    messages: u64,
    bytes: u64,
    matched: usize,
    setup_ms: f64,
    hwm_kib: u64,
    timed_out: bool,
    error: Option<String>,
}

/// samod's time limit per variant (`MUSUBI_BENCH_SAMOD_LIMIT`, seconds).
fn samod_limit() -> Duration {
    Duration::from_secs(musubi_benches::usize_from_env("MUSUBI_BENCH_SAMOD_LIMIT", 600) as u64)
}

fn run_compare_child(which: &str, docs_file: &Path) -> Compared {
    eprintln!("in-process first sync: {which}");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("MUSUBI_BENCH_CHILD", "compare")
        .env("MUSUBI_BENCH_COMPARE", which)
        .env("MUSUBI_BENCH_DOCS_FILE", docs_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut text);
        text
    });
    // The child enforces the limit itself; this only guards against a child that hangs.
    let deadline = Instant::now() + samod_limit() * 3 + Duration::from_secs(900);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = reader.join().unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("result "))
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_else(|| Compared {
            error: Some(match status {
                Some(s) => format!("the child process failed ({s})"),
                None => "the child process hung and was stopped".to_owned(),
            }),
            ..Compared::default()
        })
}

fn compare_child() {
    let which = std::env::var("MUSUBI_BENCH_COMPARE").unwrap();
    let docs = read_docs(Path::new(&std::env::var("MUSUBI_BENCH_DOCS_FILE").unwrap()));
    let tmp = tempfile::Builder::new()
        .prefix("musubi-sync-compare-")
        .tempdir()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut result = if which == "ours" {
        ours_in_memory(&docs)
    } else {
        // samod-<memory|files>-<all|N>
        let mut parts = which.split('-').skip(1);
        let storage = match parts.next() {
            Some("files") => SamodStorage::Filesystem,
            _ => SamodStorage::Memory,
        };
        let concurrency = match parts.next() {
            Some("all") | None => usize::MAX,
            Some(n) => n.parse().unwrap(),
        };
        let run = rt.block_on(sync_bench::samod_first_sync(
            &docs,
            storage,
            tmp.path(),
            concurrency,
            samod_limit(),
        ));
        match run {
            Ok(run) => Compared {
                elapsed_ms: run.elapsed.as_secs_f64() * 1e3,
                messages: run.messages,
                bytes: run.bytes_down + run.bytes_up,
                matched: run.matched,
                setup_ms: run.create.as_secs_f64() * 1e3,
                timed_out: run.timed_out,
                ..Compared::default()
            },
            Err(e) => Compared {
                error: Some(e),
                ..Compared::default()
            },
        }
    };
    result.hwm_kib = mem().hwm_kib;
    println!("result {}", serde_json::to_string(&result).unwrap());
    std::io::stdout().flush().unwrap();
    // samod repos left running after a timeout must not delay the exit.
    std::process::exit(0);
}

/// Our first sync without transport: device and relay sessions on in-memory stores,
/// driven against each other in this thread.
fn ours_in_memory(docs: &[Vec<u8>]) -> Compared {
    let t = Instant::now();
    let relay = Arc::new(MemoryStorage::new("relay-mem"));
    for bytes in docs {
        relay
            .put_local(DocId::random(), "survey", OFFICE, bytes.clone())
            .unwrap();
    }
    // The in-memory store derives heads and sharing keys lazily; a real store has them
    // from the import.
    let offices = [OFFICE.to_owned()];
    relay.catalog(&offices).unwrap();
    relay.shared_for_peer("setup", &offices, true).unwrap();
    let setup = t.elapsed();
    let device = Arc::new(MemoryStorage::new("device-mem"));
    let t = Instant::now();
    let mut dev = Session::device(
        Arc::clone(&device),
        "relay-mem",
        offices.to_vec(),
        automerge::ActorId::random().to_bytes().to_vec(),
    )
    .unwrap();
    let mut rel = Session::relay(
        Arc::clone(&relay),
        PeerAccess {
            device_id: "bench-device".to_owned(),
            device_name: "bench".to_owned(),
            offices: offices.to_vec(),
        },
        Arc::new(musubi_engine::admit::rules::Rules::bundled().unwrap()),
    )
    .unwrap();
    let run = sync_in_process(&mut dev, &mut rel);
    let elapsed = t.elapsed();
    let run = match run {
        Ok(run) => run,
        Err(e) => {
            return Compared {
                error: Some(e),
                ..Compared::default()
            };
        }
    };
    drop((dev, rel));
    let same = device.catalog(&offices).unwrap() == relay.catalog(&offices).unwrap();
    Compared {
        elapsed_ms: elapsed.as_secs_f64() * 1e3,
        round_trips: run.round_trips,
        messages: run.frames,
        bytes: run.bytes_up + run.bytes_down,
        matched: if same { device.ids().unwrap().len() } else { 0 },
        setup_ms: setup.as_secs_f64() * 1e3,
        ..Compared::default()
    }
}

fn compare(
    docs_file: &Path,
    saved_total: u64,
    n: usize,
    with_samod: bool,
    full_stack: Option<Duration>,
    report: &mut Report,
) {
    let ours = run_compare_child("ours", docs_file);
    let secs = |ms: f64| Duration::from_secs_f64(ms / 1e3);
    let line = |c: &Compared, unit: &str| match &c.error {
        Some(e) => format!("failed: {e}"),
        None if c.timed_out => format!(
            "did not finish within {}: {} of {n} documents had arrived; {} {unit}, {}; peak RSS {}; setup (not timed) {}",
            fmt_dur(secs(c.elapsed_ms)),
            c.matched,
            c.messages,
            fmt_bytes(c.bytes),
            fmt_kib(c.hwm_kib),
            fmt_dur(secs(c.setup_ms)),
        ),
        None => format!(
            "{} ({:.0} docs/s), {} {unit}, {} ({:.3}× `save()`), {} of {n} documents equal; peak RSS {}; setup (not timed) {}",
            fmt_dur(secs(c.elapsed_ms)),
            n as f64 / (c.elapsed_ms / 1e3),
            if unit == "round trips" {
                c.round_trips
            } else {
                c.messages
            },
            fmt_bytes(c.bytes),
            c.bytes as f64 / saved_total as f64,
            c.matched,
            fmt_kib(c.hwm_kib),
            fmt_dur(secs(c.setup_ms)),
        ),
    };
    report.detail(
        "Ours in process: device and relay sessions on in-memory stores, no transport",
        line(&ours, "round trips"),
    );
    if !with_samod {
        return;
    }
    let variants = std::env::var("MUSUBI_BENCH_SAMOD_VARIANTS")
        .unwrap_or_else(|_| "samod-memory-all,samod-files-all".to_owned());
    for which in variants.split(',').map(str::trim).filter(|v| !v.is_empty()) {
        let files = which.contains("files");
        let label = format!(
            "{} storage, `find` {}",
            if files { "filesystem" } else { "in-memory" },
            match which.rsplit('-').next() {
                Some("all") => "of every id at once".to_owned(),
                Some(k) => format!("{k} ids at a time"),
                None => String::new(),
            }
        );
        let theirs = run_compare_child(which, docs_file);
        report.detail(
            &format!("samod 0.16 in process ({label}; in-process channel)"),
            line(&theirs, "messages"),
        );
        if theirs.error.is_some() || ours.error.is_some() {
            continue;
        }
        let samod_s = theirs.elapsed_ms / 1e3;
        let (ours_s, what) = if files {
            match full_stack {
                Some(d) => (
                    d.as_secs_f64(),
                    format!(
                        "First sync vs samod ({label}): ours over QUIC + TLS with SQLCipher on both ends; samod on plain files over an in-process channel"
                    ),
                ),
                None => continue,
            }
        } else {
            (
                ours.elapsed_ms / 1e3,
                format!(
                    "First sync vs samod ({label}), like for like: both in process on in-memory storage, no transport"
                ),
            )
        };
        let speedup = samod_s / ours_s;
        let result = if theirs.timed_out {
            format!(
                "ours {}; samod had {} of {n} documents after {}: ours is more than {speedup:.1}× as fast",
                fmt_dur(Duration::from_secs_f64(ours_s)),
                theirs.matched,
                fmt_dur(Duration::from_secs_f64(samod_s))
            )
        } else {
            format!(
                "ours {} vs samod {}: ours is {speedup:.2}× as fast",
                fmt_dur(Duration::from_secs_f64(ours_s)),
                fmt_dur(Duration::from_secs_f64(samod_s))
            )
        };
        report.target(&what, result, "≥ 2×", speedup >= 2.0);
    }
}
