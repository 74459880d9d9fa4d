//! Helpers shared by the musubi benchmarks (the measurements live in `benches/store.rs`
//! and `benches/sync.rs`; what they mean and the latest figures are in
//! `docs/benchmarks.md`).
//!
//! - the example survey and per-document variants of it;
//! - percentiles, a tiny deterministic RNG, duration formatting;
//! - `VmRSS` / `VmHWM` from `/proc/self/status`;
//! - [`sql`]: the store's SQL insert/append/read pattern run directly with rusqlite, keyed
//!   (SQLCipher) or plain, to measure the cost of encryption alone;
//! - [`sync_bench`]: the sync benchmark's relay loop, device driver, in-memory driver and
//!   samod comparison.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::Duration;

use serde_json::Value;

pub mod sql;
pub mod sync_bench;

/// The office number used by the benchmark stores.
pub const OFFICE: &str = "1370100016";

/// The example survey (interchange JSON).
pub const SURVEY_JSON: &str = include_str!("../../schemas/examples/survey.json");

/// Default number of documents (the targets are stated for 10,000).
pub const DEFAULT_DOCS: usize = 10_000;

/// Documents per `Engine::import` call.
pub const IMPORT_BATCH: usize = 100;

/// `MUSUBI_BENCH_DOCS`, or [`DEFAULT_DOCS`].
pub fn docs_from_env() -> usize {
    usize_from_env("MUSUBI_BENCH_DOCS", DEFAULT_DOCS).max(1)
}

/// A positive integer from the environment, or `default`.
pub fn usize_from_env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// The example survey, parsed.
pub fn example_survey() -> Value {
    serde_json::from_str(SURVEY_JSON).unwrap()
}

/// The example survey with the subject's name made unique for document `i`.
pub fn survey_variant(base: &Value, i: usize) -> Value {
    let mut v = base.clone();
    if let Some(subject) = v.get_mut("subject").and_then(Value::as_object_mut) {
        subject.insert("name".to_owned(), Value::String(format!("結城 花子{i:05}")));
    }
    v
}

/// The `p`-quantile (0..=1) of sorted samples, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of unsorted samples.
pub fn median(samples: &[Duration]) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    percentile(&s, 0.5)
}

/// Mean of samples.
pub fn mean(samples: &[Duration]) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.iter().sum::<Duration>() / u32::try_from(samples.len()).unwrap_or(u32::MAX)
}

/// `1.23 s`, `45.6 ms`, `789 µs`.
pub fn fmt_dur(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 0.01 {
        format!("{:.1} ms", s * 1e3)
    } else if s >= 0.001 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.0} µs", s * 1e6)
    }
}

/// A small xorshift64* generator: deterministic, dependency-free.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a non-zero seed.
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// 16 random bytes (a document id).
    pub fn id16(&mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        out[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        out
    }
}

/// Resident and peak-resident memory of this process, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mem {
    /// `VmRSS`.
    pub rss_kib: u64,
    /// `VmHWM` (peak resident).
    pub hwm_kib: u64,
}

/// CPU time (user + system) of a process from `/proc/<pid>/stat`, assuming the usual
/// 100 clock ticks per second.
pub fn cpu_of(stat_path: &str) -> Duration {
    let text = std::fs::read_to_string(stat_path).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Reads `/proc/self/status`; zeros where unavailable.
pub fn mem() -> Mem {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
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

/// Runs this benchmark program again as the child `role` (`MUSUBI_BENCH_CHILD`), with
/// `env` added, and returns what it printed on stdout; a child that fails stops the
/// benchmark with its stderr. A child keeps its measurements free of the parent's heap
/// and process-wide settings.
pub fn run_child(role: &str, env: &[(&str, std::ffi::OsString)]) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("MUSUBI_BENCH_CHILD", role)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{role} child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// KiB as `12.3 MB` (MiB, written MB as in the targets).
pub fn fmt_kib(kib: u64) -> String {
    format!("{:.1} MB", kib as f64 / 1024.0)
}

/// `✓` or `✗`.
pub fn mark(ok: bool) -> &'static str {
    if ok { "✓" } else { "✗" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&s, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&s, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&s, 1.0), Duration::from_millis(100));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn variants_stay_valid() {
        let base = example_survey();
        let v = survey_variant(&base, 42);
        let (_, report) = musubi_engine::schema::validate_document(&v).unwrap();
        assert!(report.is_ok());
        assert_ne!(v, base);
    }

    #[test]
    fn mem_reads_proc() {
        let m = mem();
        assert!(m.rss_kib > 0 && m.hwm_kib >= m.rss_kib);
    }
}
