//! musubi no-op sync benchmark: what a sync that finds nothing to do costs each side, with
//! few documents and with many (issue 17: the same within noise, at most 10 ms).
//!
//! `cargo bench -p musubi-benches --bench noop`. Knobs: `MUSUBI_BENCH_DOCS` (default
//! 10000) surveys in the large office; `MUSUBI_BENCH_SAMPLES` (default 30) no-op sessions
//! timed per size. Prints a Markdown table on stdout, progress on stderr.
//!
//! Both sides are real SQLCipher stores in this process, driven against each other without
//! a transport (`sync_in_process`), so the figures are the sessions' own work: building
//! the `hello` (the device's changes and catalog digest), answering it (the relay's changes,
//! shares and digest), and the final flush on both sides. The handshake is not included;
//! the sync benchmark measures it over QUIC.
//!
//! Each size is set up as an office is after its first sync: the relay's store is filled
//! through `SyncStorage::commit` (the sync path, no `Engine::import` validation), the
//! device joins with one real first sync. Then three kinds of no-op are timed:
//! - *quiet*: nothing happened anywhere since the last session;
//! - *busy relay*: another office's tablet wrote to the relay just before (the relay's
//!   sequence number moved, so nothing it remembers from the last session holds);
//! - *new process*: the device's store is opened again before the session, as `musubi
//!   sync` does (the opening itself is not timed).
//!
//! Beside them, for issue 17's relay cost per push session, one more kind that is not a
//! no-op: *push one survey*, where the device made one new survey before the session (its
//! making is not timed), so the relay admits, checks and stores it.

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use musubi_benches::sync_bench::{
    actor_of, init_store, passphrase, survey_insert, survey_variant_wide,
};
use musubi_benches::{OFFICE, example_survey, fmt_dur, percentile, usize_from_env};
use musubi_engine::admit::rules::Rules;
use musubi_engine::doc::{Author, CareDoc};
use musubi_engine::ids::DocId;
use musubi_engine::schema::DocKind;
use musubi_engine::store::{NewDoc, Store};
use musubi_engine::sync::frame::heads_of;
use musubi_engine::sync::sharing::share_keys;
use musubi_engine::sync::storage::SyncWrite;
use musubi_engine::sync::{PeerAccess, Session, SyncBatch, SyncStorage};

const RELAY_KEY: &str = "noop-bench-relay";

/// A new survey made on the device, as the form makes one (under the device's actor).
fn new_survey(device: &Store, j: usize) {
    let author = Author {
        device: "noop-bench-device".to_owned(),
        device_name: "bench".to_owned(),
        staff: None,
        action: "create".to_owned(),
        time_ms: 1_790_000_000_000,
    };
    let id = DocId::random();
    let actor = automerge::ActorId::from(actor_of(device));
    let mut doc = CareDoc::create(
        id,
        DocKind::Survey,
        &survey_variant_wide(&example_survey(), j),
        actor,
        &author,
    )
    .unwrap();
    device
        .insert_docs(vec![NewDoc {
            id,
            kind: "survey".to_owned(),
            office: OFFICE.to_owned(),
            title: format!("survey {j}"),
            bytes: doc.snapshot(),
            keys: None,
        }])
        .unwrap();
}

/// Commits `writes` to `store` in one batch of `peer`.
fn commit(store: &Store, peer: &str, writes: Vec<SyncWrite>) {
    store
        .commit(SyncBatch {
            peer: peer.to_owned(),
            reset_peer: false,
            writes,
            peer_record: None,
        })
        .unwrap();
}

/// Fills `store` with `n` surveys in batches of 500, as a sync would write them.
fn fill(store: &Store, n: usize) {
    let base = example_survey();
    let t = Instant::now();
    let mut i = 0;
    while i < n {
        let end = (i + 500).min(n);
        let writes = (i..end)
            .map(|j| survey_insert(&base, j, OFFICE, format!("survey {j}")).0)
            .collect();
        commit(store, "noop-bench-import", writes);
        i = end;
    }
    eprintln!("  filled {n} surveys in {}", fmt_dur(t.elapsed()));
}

/// Time spent in each side of one session.
#[derive(Default)]
struct Sides {
    device: Duration,
    relay: Duration,
    frames: u64,
}

/// Runs one side's calls (a frame of its own in profiles: `relay_side`, `device_side`).
#[inline(never)]
fn relay_side<T>(f: impl FnOnce() -> T) -> T {
    f()
}

/// See [`relay_side`].
#[inline(never)]
fn device_side<T>(f: impl FnOnce() -> T) -> T {
    f()
}

/// One sync between the device and the relay, timing each side's own calls.
fn sync(device: &Arc<Store>, relay: &Arc<Store>, rules: &Arc<Rules>) -> Sides {
    let offices = vec![OFFICE.to_owned()];
    let mut sides = Sides::default();
    let t = Instant::now();
    let mut dev = Session::device(
        Arc::clone(device),
        RELAY_KEY,
        offices.clone(),
        actor_of(device),
    )
    .unwrap();
    sides.device += t.elapsed();
    let t = Instant::now();
    let mut rel = Session::relay(
        Arc::clone(relay),
        PeerAccess {
            device_id: "noop-bench-device".to_owned(),
            device_name: "bench".to_owned(),
            offices,
        },
        Arc::clone(rules) as _,
    )
    .unwrap();
    sides.relay += t.elapsed();
    loop {
        let t = Instant::now();
        let up: Vec<Vec<u8>> = device_side(|| std::iter::from_fn(|| dev.poll_transmit()).collect());
        sides.device += t.elapsed();
        let t = Instant::now();
        let down: Vec<Vec<u8>> = relay_side(|| {
            for f in &up {
                rel.handle_frame(f).unwrap();
            }
            if !up.is_empty() {
                rel.flush().unwrap();
            }
            std::iter::from_fn(|| rel.poll_transmit()).collect()
        });
        sides.relay += t.elapsed();
        let t = Instant::now();
        device_side(|| {
            for f in &down {
                dev.handle_frame(f).unwrap();
            }
            if !down.is_empty() {
                dev.flush().unwrap();
            }
        });
        sides.device += t.elapsed();
        sides.frames += (up.len() + down.len()) as u64;
        if dev.is_finished() && rel.is_finished() {
            return sides;
        }
        assert!(!(up.is_empty() && down.is_empty()), "the sessions stalled");
    }
}

/// A document of another office on the relay, and a way to write to it.
struct OtherOffice {
    id: DocId,
    doc: automerge::AutoCommit,
    /// The document's sequence number on the relay.
    seq: u64,
    writes: u64,
}

impl OtherOffice {
    fn new(relay: &Store) -> OtherOffice {
        let (write, bytes) = survey_insert(
            &example_survey(),
            999_999,
            OTHER_OFFICE,
            "other office".to_owned(),
        );
        let SyncWrite::Insert { id, .. } = write else {
            unreachable!("survey_insert makes an insert")
        };
        commit(relay, "noop-bench-other", vec![write]);
        OtherOffice {
            id,
            doc: automerge::AutoCommit::load(&bytes).unwrap(),
            seq: relay.current_seq().unwrap(),
            writes: 0,
        }
    }

    /// One small change to the document, written to the relay as a sync would.
    fn write(&mut self, relay: &Store) {
        use automerge::transaction::Transactable as _;
        self.writes += 1;
        let before = self.doc.get_heads();
        self.doc
            .put(automerge::ROOT, "bench_counter", self.writes)
            .unwrap();
        let change = self.doc.save_after(&before);
        let heads = heads_of(self.doc.document());
        let keys = share_keys(self.doc.document(), "survey");
        commit(
            relay,
            "noop-bench-other",
            vec![SyncWrite::Append {
                id: self.id,
                changes: vec![change],
                heads,
                base_seq: self.seq,
                title: "other office".to_owned(),
                keys,
            }],
        );
        self.seq = relay.current_seq().unwrap();
    }
}

/// A second office on the relay (valid 事業所番号, check digit included).
const OTHER_OFFICE: &str = "1370000019";

/// The three kinds of no-op (see the module comment).
#[derive(Clone, Copy)]
enum Kind {
    Quiet,
    BusyRelay,
    NewProcess,
    Push,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Quiet => "quiet",
            Kind::BusyRelay => "busy relay",
            Kind::NewProcess => "new process",
            Kind::Push => "push one survey (not a no-op)",
        }
    }
}

fn main() {
    let large = usize_from_env("MUSUBI_BENCH_DOCS", 10_000);
    let samples = usize_from_env("MUSUBI_BENCH_SAMPLES", 30);
    // Made once and shared by every relay session, as the relay does.
    let rules = Arc::new(Rules::bundled().unwrap());
    let mut rows = Vec::new();
    for n in [10, large] {
        eprintln!("no-op sync with {n} surveys");
        let tmp = tempfile::tempdir().unwrap();
        let relay = Arc::new(init_store(&tmp.path().join("relay"), "relay"));
        fill(&relay, n);
        let device = Arc::new(init_store(&tmp.path().join("device"), "device"));
        let t = Instant::now();
        let first = sync(&device, &relay, &rules);
        eprintln!("  first sync in {}", fmt_dur(t.elapsed()));
        assert_eq!(device.list_docs().unwrap().len(), n);
        // One session settles what the first sync left (cursors, pushed sequence).
        sync(&device, &relay, &rules);
        let mut other = OtherOffice::new(&relay);
        let device_dir = tmp.path().join("device");
        let mut device = Some(device);
        let mut pushed = 0;
        for kind in [Kind::Quiet, Kind::BusyRelay, Kind::NewProcess, Kind::Push] {
            let (mut dev, mut rel) = (Vec::new(), Vec::new());
            let mut frames = 0;
            for _ in 0..samples {
                match kind {
                    Kind::Quiet => {}
                    Kind::BusyRelay => other.write(&relay),
                    Kind::NewProcess => {
                        let open = device.take().and_then(|d| Arc::try_unwrap(d).ok());
                        open.expect("the device store has one holder")
                            .close()
                            .unwrap();
                        device = Some(Arc::new(Store::open(&device_dir, &passphrase()).unwrap()));
                    }
                    Kind::Push => {
                        pushed += 1;
                        let d = device.as_ref().expect("the device store is open");
                        new_survey(d, 500_000 + pushed);
                    }
                }
                let d = device.as_ref().expect("the device store is open");
                let s = sync(d, &relay, &rules);
                dev.push(s.device);
                rel.push(s.relay);
                frames = s.frames;
            }
            dev.sort();
            rel.sort();
            rows.push((n, kind, frames, dev, rel));
        }
        let _ = first;
    }
    println!("| surveys | no-op | device p50 / p90 | relay p50 / p90 | frames |");
    println!("|---:|---|---|---|---:|");
    for (n, kind, frames, dev, rel) in &rows {
        println!(
            "| {n} | {} | {} / {} | {} / {} | {frames} |",
            kind.label(),
            fmt_dur(percentile(dev, 0.5)),
            fmt_dur(percentile(dev, 0.9)),
            fmt_dur(percentile(rel, 0.5)),
            fmt_dur(percentile(rel, 0.9)),
        );
    }
}
