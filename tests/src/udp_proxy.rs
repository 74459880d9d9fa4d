//! A fault-injecting UDP proxy on 127.0.0.1 for QUIC tests.
//!
//! Clients send to [`UdpProxy::addr`]; each client address gets its own upstream socket
//! towards the real server, so replies find their way back. Every datagram, in both
//! directions, goes through the same seeded fault model: it may be dropped, duplicated, or
//! held back for a random delay (which reorders it behind later datagrams). A partition
//! ([`UdpProxy::set_partition`]) drops everything until it is lifted. The proxy runs on its
//! own thread with its own runtime, so synchronous tests that drive real processes can use
//! it; dropping the proxy stops it.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::UdpSocket;

/// What the proxy does to datagrams. Probabilities are in `0.0..=1.0`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Faults {
    /// Chance that a datagram is dropped.
    pub loss: f64,
    /// Chance that a datagram is sent twice.
    pub duplicate: f64,
    /// Chance that a datagram is held back for a random delay up to `max_delay`, so that
    /// later datagrams overtake it.
    pub reorder: f64,
    /// Longest delay of a held-back datagram.
    pub max_delay: Duration,
    /// Seed of the random choices (print it in a failing test to reproduce the run).
    pub seed: u64,
}

impl Faults {
    /// A proxy that forwards everything untouched.
    pub fn none(seed: u64) -> Faults {
        Faults {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            max_delay: Duration::ZERO,
            seed,
        }
    }
}

/// Counters of what the proxy did (both directions together).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Datagrams received from either side.
    pub received: u64,
    /// Datagrams sent on (duplicates counted once per copy).
    pub forwarded: u64,
    /// Datagrams dropped by the loss model.
    pub lost: u64,
    /// Datagrams dropped because of a partition.
    pub partitioned: u64,
    /// Extra copies sent.
    pub duplicated: u64,
    /// Datagrams held back (reordered).
    pub delayed: u64,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    forwarded: AtomicU64,
    lost: AtomicU64,
    partitioned: AtomicU64,
    duplicated: AtomicU64,
    delayed: AtomicU64,
}

struct Shared {
    faults: Mutex<Faults>,
    rng: Mutex<StdRng>,
    partition: AtomicBool,
    /// Start the partition at this received datagram (0: not armed).
    partition_at: AtomicU64,
    counters: Counters,
}

/// What to do with one datagram.
enum Fate {
    Drop,
    Send { copies: u8, delay: Option<Duration> },
}

impl Shared {
    fn decide(&self) -> Fate {
        let c = &self.counters;
        let n = c.received.fetch_add(1, Ordering::Relaxed) + 1;
        let at = self.partition_at.load(Ordering::Relaxed);
        if at != 0 && n >= at {
            self.partition_at.store(0, Ordering::Relaxed);
            self.partition.store(true, Ordering::Relaxed);
        }
        if self.partition.load(Ordering::Relaxed) {
            c.partitioned.fetch_add(1, Ordering::Relaxed);
            return Fate::Drop;
        }
        let f = *self.faults.lock().unwrap_or_else(PoisonError::into_inner);
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        if rng.random::<f64>() < f.loss {
            c.lost.fetch_add(1, Ordering::Relaxed);
            return Fate::Drop;
        }
        let copies = if rng.random::<f64>() < f.duplicate {
            c.duplicated.fetch_add(1, Ordering::Relaxed);
            2
        } else {
            1
        };
        let delay = if rng.random::<f64>() < f.reorder && !f.max_delay.is_zero() {
            c.delayed.fetch_add(1, Ordering::Relaxed);
            let max = u64::try_from(f.max_delay.as_micros()).unwrap_or(u64::MAX);
            Some(Duration::from_micros(rng.random_range(0..=max)))
        } else {
            None
        };
        Fate::Send { copies, delay }
    }
}

/// Sends `data` to `to` from `socket` according to the fault model.
fn forward(shared: &Arc<Shared>, socket: &Arc<UdpSocket>, data: Vec<u8>, to: Option<SocketAddr>) {
    let Fate::Send { copies, delay } = shared.decide() else {
        return;
    };
    let Some(delay) = delay else {
        // In order: send now, so undelayed datagrams keep their order. A full socket
        // buffer loses the datagram, as a real network would.
        for _ in 0..copies {
            let sent = match to {
                Some(addr) => socket.try_send_to(&data, addr).map(|_| ()),
                None => socket.try_send(&data).map(|_| ()),
            };
            if sent.is_ok() {
                shared.counters.forwarded.fetch_add(1, Ordering::Relaxed);
            }
        }
        return;
    };
    let shared = Arc::clone(shared);
    let socket = Arc::clone(socket);
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        for _ in 0..copies {
            let sent = match to {
                Some(addr) => socket.send_to(&data, addr).await.map(|_| ()),
                None => socket.send(&data).await.map(|_| ()),
            };
            if sent.is_ok() {
                shared.counters.forwarded.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
}

/// A running proxy; dropping it stops the proxy.
pub struct UdpProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UdpProxy {
    /// Starts a proxy on 127.0.0.1 (a free port) in front of `upstream`.
    pub fn start(upstream: SocketAddr, faults: Faults) -> io::Result<UdpProxy> {
        let shared = Arc::new(Shared {
            faults: Mutex::new(faults),
            rng: Mutex::new(StdRng::seed_from_u64(faults.seed)),
            partition: AtomicBool::new(false),
            partition_at: AtomicU64::new(0),
            counters: Counters::default(),
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let front = rt.block_on(UdpSocket::bind("127.0.0.1:0"))?;
        let addr = front.local_addr()?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let task_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("udp-proxy".into())
            .spawn(move || {
                rt.block_on(async move {
                    tokio::select! {
                        _ = stop_rx => {}
                        _ = run(Arc::new(front), upstream, task_shared) => {}
                    }
                });
            })?;
        Ok(UdpProxy {
            addr,
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Where clients should send their datagrams.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts (`true`) or heals (`false`) a partition: while on, every datagram is dropped.
    pub fn set_partition(&self, on: bool) {
        self.shared.partition.store(on, Ordering::Relaxed);
    }

    /// Arms a partition that the proxy itself starts at the `n`-th datagram it receives
    /// (counted from the start), so it falls in the middle of the traffic however the test
    /// thread is scheduled. Healed with `set_partition(false)`.
    pub fn partition_at(&self, n: u64) {
        self.shared.partition_at.store(n.max(1), Ordering::Relaxed);
    }

    /// Replaces the fault model (the random sequence continues from its current state).
    pub fn set_faults(&self, faults: Faults) {
        *self
            .shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = faults;
    }

    /// What the proxy has done so far.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        ProxyStats {
            received: c.received.load(Ordering::Relaxed),
            forwarded: c.forwarded.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
            partitioned: c.partitioned.load(Ordering::Relaxed),
            duplicated: c.duplicated.load(Ordering::Relaxed),
            delayed: c.delayed.load(Ordering::Relaxed),
        }
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The proxy loop: datagrams from clients go upstream through a per-client socket, whose
/// replies a per-client task sends back to that client.
async fn run(front: Arc<UdpSocket>, upstream: SocketAddr, shared: Arc<Shared>) {
    let mut clients: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, from)) = front.recv_from(&mut buf).await else {
            // ICMP errors surface as recv errors on some platforms; keep serving.
            continue;
        };
        let back = match clients.get(&from) {
            Some(s) => Arc::clone(s),
            None => {
                let Ok(s) = UdpSocket::bind("127.0.0.1:0").await else {
                    continue;
                };
                if s.connect(upstream).await.is_err() {
                    continue;
                }
                let s = Arc::new(s);
                clients.insert(from, Arc::clone(&s));
                tokio::spawn(replies(
                    Arc::clone(&s),
                    Arc::clone(&front),
                    from,
                    Arc::clone(&shared),
                ));
                s
            }
        };
        forward(&shared, &back, buf[..n].to_vec(), None);
    }
}

async fn replies(
    upstream: Arc<UdpSocket>,
    front: Arc<UdpSocket>,
    client: SocketAddr,
    shared: Arc<Shared>,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        match upstream.recv(&mut buf).await {
            Ok(n) => forward(&shared, &front, buf[..n].to_vec(), Some(client)),
            // The server's port may be closed for a while (relay restarted): keep listening.
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}
