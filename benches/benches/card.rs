//! musubi card benchmark: our own overhead of a full offline 本人確認 (everything except
//! the time the card itself takes), against the in-process virtual card (no pcscd).
//!
//! `cargo bench -p musubi-benches --bench card`. `MUSUBI_BENCH_SAMPLES` (default 30) sets
//! the number of timed verifications. One verification = SELECT, read the authentication
//! certificate and the card's CA copy, validate the chain against the bundled J-LIS roots
//! plus the test root, PIN retry query, the 券面事項入力補助AP (PIN, basic four, DF32/DF33
//! and the CV certificate), then VERIFY and the card's signature over the registration
//! statement and its check. The time spent inside the virtual card (its RSA private-key operations,
//! file copies) is measured around each APDU and subtracted. Prints a Markdown report on
//! stdout, progress on stderr. See docs/benchmarks.md.

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use musubi_benches::{fmt_dur, median, percentile, usize_from_env};
use musubi_engine::card::compare::Record;
use musubi_engine::card::evidence::StatementBase;
use musubi_engine::card::reader::PinKind;
use musubi_engine::card::roots::TrustStore;
use musubi_engine::card::{CardTransport, PinSource, TransportError, VerifyOptions, verify_card};
use musubi_vcard::card::{Corrupt, Counters, VirtualCard};
use musubi_vcard::pki::TestPki;
use musubi_vcard::{CertChoice, Holder, InProcess, build};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Times the card's side of every exchange.
struct Timed {
    inner: InProcess,
    card_time: Duration,
}

impl CardTransport for Timed {
    fn transmit(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let t = Instant::now();
        let r = self.inner.transmit(capdu);
        self.card_time += t.elapsed();
        r
    }
}

struct Pins;
impl PinSource for Pins {
    fn pin(&mut self, _: PinKind, _: u8) -> Option<Zeroizing<String>> {
        Some(Zeroizing::new("1234".to_owned()))
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("card: bench");
        return;
    }
    let samples = usize_from_env("MUSUBI_BENCH_SAMPLES", 30).max(3);
    let dir = tempfile::tempdir().unwrap();
    eprintln!("card bench: creating the test PKI (5 RSA-2048 keys)…");
    let pki = TestPki::load_or_create(dir.path()).unwrap();
    let mut anchors = TrustStore::bundled().unwrap();
    anchors
        .add_pem(&std::fs::read_to_string(dir.path().join("trust-anchor.pem")).unwrap())
        .unwrap();
    let content = || build(&pki, &Holder::default(), CertChoice::Valid).unwrap();

    let mut overhead = Vec::with_capacity(samples);
    let mut total = Vec::with_capacity(samples);
    let mut card = Vec::with_capacity(samples);
    let mut apdus = 0;
    for i in 0..samples + 2 {
        let mut t = Timed {
            inner: InProcess::new(VirtualCard::new(
                content(),
                Counters::default(),
                Corrupt::None,
            )),
            card_time: Duration::ZERO,
        };
        let opts = VerifyOptions {
            now: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64,
            allow_last_try: false,
            basic4: true,
            statement: StatementBase {
                registration: musubi_engine::ids::DocId::random(),
                person: "ab".repeat(32),
                office: "1370100016".to_owned(),
                device: "cd".repeat(16),
                nonce: rand::random(),
            },
            record: Record::default(),
        };
        let start = Instant::now();
        let v = verify_card(&mut t, &anchors, &opts, &mut Pins).unwrap();
        let all = start.elapsed();
        apdus = v.apdus;
        if i >= 2 {
            // Two warm-up runs.
            total.push(all);
            card.push(t.card_time);
            overhead.push(all.saturating_sub(t.card_time));
        }
    }
    overhead.sort();
    total.sort();
    card.sort();
    println!("## Card: full offline verification (in-process virtual card)\n");
    println!("{samples} verifications, {apdus} APDUs each, basic four included.\n");
    println!("| | median | p95 | max |");
    println!("|---|---|---|---|");
    for (name, s) in [
        ("our overhead (total − card)", &overhead),
        ("time inside the virtual card", &card),
        ("total", &total),
    ] {
        println!(
            "| {name} | {} | {} | {} |",
            fmt_dur(median(s)),
            fmt_dur(percentile(s, 0.95)),
            fmt_dur(*s.last().unwrap())
        );
    }
    let p95 = percentile(&overhead, 0.95);
    println!(
        "\nTarget: overhead < 300 ms → {}",
        if p95 < Duration::from_millis(300) {
            "met (p95)"
        } else {
            "NOT met (p95)"
        }
    );
}
