//! The QUIC server (`musubi-relay serve`).
//!
//! - Opens the relay directory and its encrypted store (unattended, with the store key
//!   file or the systemd credential), builds the TLS configuration with the revocation
//!   check of `devices.toml`, and listens on UDP.
//! - Prints `listening on ADDR` on standard output once bound (with the real port when
//!   `--listen` asked for port 0), so scripts and tests know when it is ready.
//! - Serves each connection on its own task, at most `max_sessions` at once (more are
//!   refused at once; devices retry). For each connection: the verified device
//!   certificate gives the identity; the device must be enrolled, not revoked, with the
//!   enrolled certificate, and of an office this relay serves (re-read from `relay.toml`,
//!   so `office add` needs no restart); then one relay sync session runs on the device's
//!   stream with access to that office only.
//! - Logs one line per session: device id, office, documents sent and received, bytes,
//!   duration, result. Never a device name, a document or anything from one.
//! - With `metrics_listen`, answers `GET /metrics` and `GET /healthz` over HTTP on that
//!   address ([`crate::metrics`]); the counters are added to where this loop learns what
//!   happened (handshakes, refusals, each session's end).
//! - On SIGINT or SIGTERM: stops accepting, lets running sessions finish for up to
//!   [`GRACE`], closes what remains with "shutting down" (devices retry later), then
//!   closes the store cleanly.
//! - On SIGHUP: re-reads the serve configuration and `relay.toml` and applies what can
//!   change live (session limits and deadlines, certificate validity, `[limits]`, the log
//!   level) to new sessions; running sessions keep theirs. A key that needs a restart
//!   (listen address, metrics address, log format, test trust anchor, database) is
//!   logged as such. An invalid file changes nothing.
//! - Under systemd (`NOTIFY_SOCKET`): `READY=1` once listening, `WATCHDOG=1` at half of
//!   `WATCHDOG_USEC` from this loop (for the embedded store, only while the store thread
//!   answers), `RELOADING=1`/`READY=1` around a reload, `STOPPING=1` ([`crate::notify`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use musubi_engine::admit::rules::Rules;
use musubi_engine::card::roots::TrustStore;
use musubi_engine::net::pki::{self, PeerIdentity};
use musubi_engine::net::quic::quinn::{Connecting, Connection, VarInt};
use musubi_engine::net::quic::{
    self, DriveError, ReadDeadlines, TransportSettings, close, peer_certificates,
};
use musubi_engine::sync::{MAX_FRAME_BYTES, PeerAccess, Session, SyncError, SyncStorage};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::RelayDir;
use crate::config::{LiveSettings, RelayConfig, SERVE_TOML, ServeFileConfig};
use crate::dir::RELAY_TOML;
use crate::dir::RelayStore;
use crate::metrics::{Metered, Metrics, Probe, SessionEnd};
use crate::registry::Revocation;

/// Sessions served at once when not configured.
pub const DEFAULT_MAX_SESSIONS: usize = 1024;
/// How long running sessions may take to finish after SIGINT/SIGTERM (a cut session
/// resumes at the next sync, so a short grace loses nothing).
pub const GRACE: Duration = Duration::from_secs(3);
/// How long a device may take, after the handshake, to open its sync stream.
const STREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a device's next frame (and for its first, `hello`): a device answers
/// at once, so a silent stream is a held one.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest time from the first byte of a frame to its last: the largest frame (32 MiB)
/// at about 1 MiB/s.
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(40);
/// Longest session: a cut session resumes where it stopped, so this only bounds what one
/// connection can hold.
pub const DEFAULT_SESSION_DEADLINE: Duration = Duration::from_secs(30 * 60);
/// How often an open session re-checks that its device is still enrolled and not
/// revoked (revocation takes effect within this time).
pub const POLICY_RECHECK: Duration = Duration::from_secs(1);
/// Sessions one device may hold at once (a tablet syncs over one; a few allow for a
/// reconnect while the old connection times out).
pub const MAX_SESSIONS_PER_DEVICE: usize = 3;
/// Handshakes in progress at once, before any certificate is checked; beyond half of
/// it, clients must prove their address first (QUIC retry).
pub const MAX_HANDSHAKES: usize = 256;

/// What `musubi-relay serve` passes to [`run`].
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The relay directory.
    pub dir: PathBuf,
    /// Listen address; `None`: the one in `relay.toml`.
    pub listen: Option<SocketAddr>,
    /// Extra trusted roots (PEM) for card evidence: a test relay only.
    pub test_trust_anchor: Option<PathBuf>,
    /// TCP address of the HTTP listener for `/metrics` and `/healthz`; `None`: none.
    pub metrics_listen: Option<SocketAddr>,
    /// The settings a reload may change, as read at start (session limits, certificate
    /// validity, log level).
    pub live: LiveSettings,
    /// What a reload (SIGHUP) re-reads; `None`: SIGHUP only re-reads `relay.toml`.
    pub reload: Option<ReloadSource>,
}

/// What `serve` re-reads on SIGHUP besides `relay.toml`.
#[derive(Clone, Debug)]
pub struct ReloadSource {
    /// `--config FILE`; `None`: `DIR/serve.toml` when it exists.
    pub config: Option<PathBuf>,
    /// The configuration file as read at start (to tell which restart-only keys
    /// changed).
    pub at_start: ServeFileConfig,
    /// Keys given on the command line, which win over the file: `listen`,
    /// `metrics_listen`, `log_format`, `test_trust_anchor`.
    pub from_cli: [bool; 4],
    /// Changes the log filter (`log_level`).
    pub log: Option<crate::logging::LogControl>,
}

/// The serve configuration file in effect: `explicit` (`--config`), else `DIR/serve.toml`
/// when it exists.
pub fn serve_config_path(
    dir: &std::path::Path,
    explicit: Option<&std::path::Path>,
) -> Option<PathBuf> {
    explicit.map(std::path::Path::to_path_buf).or_else(|| {
        let default = dir.join(SERVE_TOML);
        default.is_file().then_some(default)
    })
}

/// Deadlines of one device session (configurable for tests and slow links).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// See [`DEFAULT_IDLE_TIMEOUT`].
    pub idle: Duration,
    /// See [`DEFAULT_FRAME_TIMEOUT`].
    pub frame: Duration,
    /// See [`DEFAULT_SESSION_DEADLINE`].
    pub session: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            idle: DEFAULT_IDLE_TIMEOUT,
            frame: DEFAULT_FRAME_TIMEOUT,
            session: DEFAULT_SESSION_DEADLINE,
        }
    }
}

/// The rules every incoming document must pass: the bundled J-LIS roots, plus the test
/// anchor when one was given (logged loudly: such a relay is for tests only).
pub fn admission_rules(test_trust_anchor: Option<&std::path::Path>) -> Result<Rules> {
    let mut trust = TrustStore::bundled().context("loading the bundled J-LIS roots")?;
    if let Some(path) = test_trust_anchor {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("reading the test trust anchor {}", path.display()))?;
        let n = trust
            .add_pem(&pem)
            .with_context(|| format!("reading the test trust anchor {}", path.display()))?;
        tracing::warn!(
            anchors = n,
            "TEST RELAY: card evidence from a test trust anchor counts here; never use this in production"
        );
    }
    Ok(Rules::new(trust))
}

/// Runs the server until SIGINT/SIGTERM.
pub fn run(opts: ServeOptions) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("musubi-relay")
        .build()
        .context("starting the server runtime")?;
    runtime.block_on(serve(opts))
}

/// What every connection task shares.
struct Shared {
    dir: RelayDir,
    /// The embedded store or the cluster's PostgreSQL: sessions see only the contract.
    store: Arc<dyn SyncStorage + Send + Sync>,
    revocation: Arc<Revocation>,
    settings: TransportSettings,
    rules: Arc<Rules>,
    /// Sessions held, in all and per device id; taken only after the device is
    /// authenticated and admitted.
    slots: std::sync::Mutex<Slots>,
    /// What `/metrics` reports.
    metrics: Arc<Metrics>,
    /// What a reload may change; new sessions read it when they start.
    live: std::sync::Mutex<Live>,
}

/// Sessions held.
#[derive(Default)]
struct Slots {
    total: usize,
    per_device: std::collections::HashMap<String, usize>,
}

/// The settings in effect for new sessions (changed by a reload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Live {
    max_sessions: usize,
    limits: SessionLimits,
    /// Validity of the certificates issued (enrollment and renewal).
    cert_validity: Duration,
    /// What one session may take in (`[limits]` of relay.toml).
    intake: musubi_engine::sync::limits::IntakeLimits,
}

/// A device's place among the sessions served; released on drop.
struct SessionSlot<'a> {
    shared: &'a Shared,
    device: String,
}

impl Drop for SessionSlot<'_> {
    fn drop(&mut self) {
        let mut slots = self
            .shared
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.total = slots.total.saturating_sub(1);
        if let Some(n) = slots.per_device.get_mut(&self.device) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                slots.per_device.remove(&self.device);
            }
        }
    }
}

impl Shared {
    /// The settings for a new session.
    fn live(&self) -> Live {
        *self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A session slot for `device`: refused when the relay or this device is at its limit.
    fn session_slot(&self, device: &str) -> Result<SessionSlot<'_>, Refusal> {
        let max_sessions = self.live().max_sessions;
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let held = slots.per_device.get(device).copied().unwrap_or(0);
        if held >= MAX_SESSIONS_PER_DEVICE {
            return Err(Refusal {
                code: close::BUSY,
                reason: "this device already has the most sessions it may hold; try again later",
            });
        }
        if slots.total >= max_sessions {
            return Err(Refusal {
                code: close::BUSY,
                reason: "the relay is at its session limit; try again later",
            });
        }
        slots.total += 1;
        slots.per_device.insert(device.to_owned(), held + 1);
        Ok(SessionSlot {
            shared: self,
            device: device.to_owned(),
        })
    }
}

async fn serve(opts: ServeOptions) -> Result<()> {
    let dir = RelayDir::open(&opts.dir)?;
    let rules = Arc::new(admission_rules(opts.test_trust_anchor.as_deref())?);
    let relay_store = dir.open_relay_store()?;
    let store = relay_store.sync();
    if let RelayStore::Postgres(pg) = &relay_store {
        // The registry shares the store's connections.
        dir.use_database(pg)?;
    }
    let revocation = dir.registry_revocation()?;
    let tls = dir.tls_server_config(Arc::clone(&revocation) as _)?;
    let listen = opts.listen.unwrap_or(dir.config().listen);
    let settings = TransportSettings::default();
    let endpoint = quic::server_endpoint(tls, listen, &settings)?;
    let bound = endpoint
        .local_addr()
        .context("reading the bound UDP address")?;
    let max_sessions = opts.live.max_sessions.max(1);
    let metrics_listener = match opts.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening for metrics on {addr}"))?;
            let addr = listener
                .local_addr()
                .context("reading the bound metrics address")?;
            Some((listener, addr))
        }
        None => None,
    };
    announce(bound, metrics_listener.as_ref().map(|(_, addr)| *addr))?;
    tracing::info!(
        listen = %bound,
        offices = dir.offices().len(),
        max_sessions,
        "relay listening"
    );
    let metrics = Arc::new(Metrics::new());
    let metrics_server = match metrics_listener {
        Some((listener, addr)) => {
            tracing::info!(metrics = %addr, "metrics and health on HTTP (no authentication: loopback or an admin network only)");
            let offices = {
                let path = dir.path().join(RELAY_TOML);
                let at_start = dir.offices().to_vec();
                let revocation = Arc::clone(&revocation);
                move || offices_served(&path, &at_start, &revocation)
            };
            let probe = Arc::new(Probe::new(Arc::clone(&store), Box::new(offices)));
            let (stop, stopped) = tokio::sync::oneshot::channel();
            let task = tokio::spawn(crate::metrics::serve_http(
                listener,
                Arc::clone(&metrics),
                probe,
                stopped,
            ));
            Some((stop, task))
        }
        None => None,
    };

    let dir_limits = dir.config().limits.intake();
    let relay_at_start = dir.config().clone();
    let shared = Arc::new(Shared {
        dir,
        store,
        revocation,
        settings,
        rules,
        slots: std::sync::Mutex::new(Slots::default()),
        metrics,
        live: std::sync::Mutex::new(Live {
            max_sessions,
            limits: opts.live.limits,
            cert_validity: opts.live.cert_validity,
            intake: dir_limits,
        }),
    });
    // Handshakes are bounded on their own: a host without a certificate can hold one of
    // these for at most the handshake timeout, never a session permit.
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let mut sessions = JoinSet::new();
    let mut stop = std::pin::pin!(shutdown_signal());
    let notifier = crate::notify::Notifier::from_env();
    if let Some(n) = &notifier {
        n.ready(&format!("serving on {bound}"));
    }
    // The watchdog is pinged from this loop, so a ping proves the loop still runs; with
    // the embedded store, only while its thread answers (a restart cures a stuck
    // store; it does not cure a database that is away, so a cluster node pings without).
    let embedded = matches!(relay_store, RelayStore::Embedded(_));
    let mut watchdog = crate::notify::watchdog_interval()
        .filter(|_| notifier.is_some())
        .map(|every| {
            tracing::info!(
                interval_ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX),
                "systemd watchdog on"
            );
            let mut i = tokio::time::interval(every / 2);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
    let mut hangup = hangup_signal();
    loop {
        tokio::select! {
            signal = &mut stop => {
                tracing::info!(signal = signal, "stopping: no new connections");
                if let Some(n) = &notifier {
                    n.stopping();
                }
                break;
            }
            () = tick(watchdog.as_mut()) => {
                let alive = !embedded
                    || tokio::task::block_in_place(|| shared.store.current_seq())
                        .inspect_err(|e| tracing::error!(error = %e, "the store does not answer; withholding the systemd watchdog ping"))
                        .is_ok();
                if alive && let Some(n) = &notifier {
                    n.watchdog();
                }
            }
            () = next_hangup(hangup.as_mut()) => {
                if let Some(n) = &notifier {
                    n.reloading();
                }
                let status = match tokio::task::block_in_place(|| reload(&shared, &opts, &relay_at_start)) {
                    Ok(()) => format!("serving on {bound}; configuration reloaded"),
                    Err(e) => {
                        tracing::error!(error = %e, "configuration not reloaded; the settings in effect are kept");
                        format!("serving on {bound}; the last reload failed, see the log")
                    }
                };
                if let Some(n) = &notifier {
                    n.ready(&status);
                }
            }
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                // Under load, make clients prove they own their address before any
                // handshake state is kept (QUIC retry).
                if handshakes.available_permits() < MAX_HANDSHAKES / 2
                    && !incoming.remote_address_validated()
                {
                    if let Err(e) = incoming.retry() {
                        tracing::debug!(error = %e, "retry not possible");
                    }
                    continue;
                }
                let Ok(handshake) = Arc::clone(&handshakes).try_acquire_owned() else {
                    tracing::warn!(max_handshakes = MAX_HANDSHAKES, "handshake limit reached; refusing a connection");
                    shared.metrics.handshake_failed("limit");
                    incoming.refuse();
                    continue;
                };
                let shared = Arc::clone(&shared);
                sessions.spawn(async move {
                    match incoming.accept() {
                        Ok(connecting) => serve_connection(connecting, &shared, handshake).await,
                        Err(e) => tracing::debug!(error = %e, "connection attempt dropped"),
                    }
                });
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }

    // Graceful shutdown: refuse newcomers, let running sessions end, then close.
    endpoint.set_server_config(None);
    let running = sessions.len();
    if running > 0 {
        tracing::info!(
            sessions = running,
            grace_s = GRACE.as_secs(),
            "waiting for running sessions"
        );
    }
    let drained = tokio::time::timeout(GRACE, async {
        while sessions.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if !drained {
        tracing::warn!(
            sessions = sessions.len(),
            "grace period over; closing the remaining sessions"
        );
    }
    endpoint.close(
        VarInt::from_u32(close::SHUTTING_DOWN),
        b"the relay is shutting down",
    );
    sessions.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    drop(endpoint);
    if let Some((stop, task)) = metrics_server {
        // The listener holds the store too; it lets go before the store closes.
        let _ = stop.send(());
        let _ = task.await;
    }
    let shared = Arc::into_inner(shared).context("sessions still hold the store")?;
    drop(shared);
    tokio::task::spawn_blocking(move || relay_store.close())
        .await
        .context("closing the store")??;
    tracing::info!("relay stopped; store closed");
    Ok(())
}

/// Prints the ready line on standard output, then `metrics on ADDR` when metrics are
/// served (in one write: a reader that takes the first line and closes the pipe is
/// fine).
fn announce(bound: SocketAddr, metrics: Option<SocketAddr>) -> Result<()> {
    use std::io::Write as _;
    let mut text = format!("listening on {bound}\n");
    if let Some(m) = metrics {
        text.push_str(&format!("metrics on {m}\n"));
    }
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Completes at the interval's next tick; never without one.
async fn tick(interval: Option<&mut tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(unix)]
type Hangup = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangup = ();

/// The SIGHUP stream (`None` where there is none).
fn hangup_signal() -> Option<Hangup> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::hangup())
            .inspect_err(
                |e| tracing::warn!(error = %e, "cannot watch SIGHUP; reload by restarting"),
            )
            .ok()
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Completes at the next SIGHUP; never without a stream.
async fn next_hangup(hangup: Option<&mut Hangup>) {
    #[cfg(unix)]
    if let Some(h) = hangup
        && h.recv().await.is_some()
    {
        return;
    }
    #[cfg(not(unix))]
    let _ = hangup;
    std::future::pending().await
}

/// Re-reads the serve configuration and `relay.toml` and applies what can change live.
/// Nothing changes when either file is invalid.
fn reload(
    shared: &Shared,
    opts: &ServeOptions,
    relay_at_start: &RelayConfig,
) -> Result<(), crate::RelayError> {
    let relay = RelayConfig::read(&shared.dir.path().join(RELAY_TOML))?;
    let current = shared.live();
    let mut restart: Vec<&'static str> = Vec::new();
    let (settings, file_listen) = match &opts.reload {
        Some(src) => {
            let path = serve_config_path(shared.dir.path(), src.config.as_deref());
            let file = match &path {
                Some(p) => ServeFileConfig::read(p)?,
                None => ServeFileConfig::default(),
            };
            let live = file.live()?;
            let a = &src.at_start;
            let [cli_listen, cli_metrics, cli_format, cli_anchor] = src.from_cli;
            if !cli_listen && file.listen != a.listen {
                restart.push("listen");
            }
            if !cli_metrics && file.metrics_listen != a.metrics_listen {
                restart.push("metrics_listen");
            }
            if !cli_format && file.log_format != a.log_format {
                restart.push("log_format");
            }
            if !cli_anchor && file.test_trust_anchor != a.test_trust_anchor {
                restart.push("test_trust_anchor");
            }
            let listen_fixed = cli_listen || a.listen.is_some();
            (Some((live, src.log.as_ref())), listen_fixed)
        }
        None => (None, opts.listen.is_some()),
    };
    if relay.database != relay_at_start.database {
        restart.push("database (relay.toml)");
    }
    if !file_listen && opts.listen.is_none() && relay.listen != relay_at_start.listen {
        restart.push("listen (relay.toml)");
    }
    let mut next = Live {
        intake: relay.limits.intake(),
        ..current
    };
    let mut log_level = None;
    if let Some((live, log)) = settings {
        next.max_sessions = live.max_sessions;
        next.limits = live.limits;
        next.cert_validity = live.cert_validity;
        if live.test_cert_validity {
            tracing::warn!(
                seconds = live.cert_validity.as_secs(),
                "TEST RELAY: device certificates are issued for a few seconds only; never use this in production"
            );
        }
        if let Some(log) = log {
            if log.set_level(&live.log_level)? {
                log_level = Some(live.log_level);
            } else {
                tracing::info!("MUSUBI_LOG is set: it keeps deciding the log level");
            }
        }
    }
    *shared
        .live
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = next;
    for key in &restart {
        tracing::warn!(
            key,
            "changed in the configuration; takes effect only after a restart"
        );
    }
    tracing::info!(
        max_sessions = next.max_sessions,
        idle_timeout_s = next.limits.idle.as_secs(),
        frame_timeout_s = next.limits.frame.as_secs(),
        session_deadline_s = next.limits.session.as_secs(),
        device_cert_s = next.cert_validity.as_secs(),
        log_level = log_level.as_deref().unwrap_or("(unchanged)"),
        intake_changed = next.intake != current.intake,
        needs_restart = restart.len(),
        "configuration reloaded; running sessions keep their settings"
    );
    Ok(())
}

/// Completes on SIGINT or SIGTERM with the signal's name.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; stop with SIGINT");
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

/// Why a connection is not served, with the close code the device understands.
struct Refusal {
    code: u32,
    reason: &'static str,
}

/// Checks an authenticated device against the registry and the offices served.
fn admit(shared: &Shared, peer: &PeerIdentity) -> Result<(), Refusal> {
    let Some(registry) = shared.revocation.registry() else {
        return Err(Refusal {
            code: close::INTERNAL,
            reason: "the relay cannot read its device registry",
        });
    };
    match registry.by_id(&peer.device_id) {
        None => {
            return Err(Refusal {
                code: close::UNKNOWN_DEVICE,
                reason: "this device is not enrolled at this relay",
            });
        }
        Some(rec) if !rec.is_active() => {
            return Err(Refusal {
                code: close::REVOKED,
                reason: "this device has been revoked",
            });
        }
        Some(rec) if !rec.admits(peer) => {
            return Err(Refusal {
                code: close::UNKNOWN_DEVICE,
                reason: "this certificate is not the one enrolled for this device",
            });
        }
        Some(_) => {}
    }
    let configured = configured_offices(&shared.dir.path().join(RELAY_TOML), shared.dir.offices());
    let offices = registry.offices_served(&configured);
    if !offices.contains(&peer.office) {
        return Err(Refusal {
            code: close::WRONG_OFFICE,
            reason: "this relay does not serve the device's office",
        });
    }
    Ok(())
}

/// The offices of `relay.toml`, re-read: `office add` may have changed them since the
/// server started (those known at start if it cannot be read).
fn configured_offices(relay_toml: &std::path::Path, at_start: &[String]) -> Vec<String> {
    RelayConfig::read(relay_toml)
        .map(|c| c.offices)
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot re-read relay.toml; using the offices known at start");
            at_start.to_vec()
        })
}

/// The offices served now: those of `relay.toml` and, on a cluster relay, those added
/// through any node (in the registry).
fn offices_served(
    relay_toml: &std::path::Path,
    at_start: &[String],
    revocation: &Revocation,
) -> Vec<String> {
    let configured = configured_offices(relay_toml, at_start);
    match revocation.registry() {
        Some(registry) => registry.offices_served(&configured),
        None => configured,
    }
}

/// Completes when the device may no longer be served (revoked, unenrolled, office no
/// longer served), checking every [`POLICY_RECHECK`].
async fn watch_policy(shared: &Shared, peer: &PeerIdentity) -> Refusal {
    loop {
        tokio::time::sleep(POLICY_RECHECK).await;
        let checked = tokio::task::block_in_place(|| admit(shared, peer));
        if let Err(r) = checked {
            return r;
        }
    }
}

/// Ends the connection of a device that lost its access (`watch_policy`), `when` saying
/// whether its session had started.
fn access_lost(
    conn: &Connection,
    peer: &PeerIdentity,
    r: &Refusal,
    record: &mut crate::metrics::SessionRecord<'_>,
    when: &'static str,
) {
    tracing::warn!(device = %peer.device_id, code = r.code, reason = r.reason, when, "connection ended: the device lost its access");
    close_with(conn, r.code, r.reason);
    record.end(SessionEnd::AccessLost);
}

/// The device identity from the connection's verified certificate chain.
fn identity(conn: &Connection) -> Option<PeerIdentity> {
    let chain = peer_certificates(conn)?;
    let leaf = chain.first()?;
    pki::peer_identity(leaf.as_ref()).ok()
}

async fn serve_connection(
    connecting: Connecting,
    shared: &Shared,
    handshake: tokio::sync::OwnedSemaphorePermit,
) {
    let conn = match tokio::time::timeout(shared.settings.handshake_timeout, connecting).await {
        Ok(Ok(c)) => c,
        // Refused certificates are logged by the TLS check itself.
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "handshake failed");
            shared.metrics.handshake_failed("tls");
            return;
        }
        Err(_) => {
            tracing::debug!("handshake timed out");
            shared.metrics.handshake_failed("timeout");
            return;
        }
    };
    if crate::cert_serve::is_enrollment(&conn) {
        // One enrollment exchange and nothing else; it keeps only its handshake permit.
        crate::cert_serve::serve_enrollment(&conn, &shared.dir, shared.live().cert_validity).await;
        drop(handshake);
        return;
    }
    // A self-signed enrollment certificate carries no device identity: refused here.
    let Some(peer) = identity(&conn) else {
        close_with(&conn, close::UNKNOWN_DEVICE, "no musubi device certificate");
        shared.metrics.refused(close::UNKNOWN_DEVICE);
        return;
    };
    if let Err(r) = admit(shared, &peer) {
        tracing::info!(device = %peer.device_id, office = %peer.office, code = r.code, reason = r.reason, "device refused");
        close_with(&conn, r.code, r.reason);
        shared.metrics.refused(r.code);
        return;
    }
    drop(handshake);
    let _slot = match shared.session_slot(&peer.device_id) {
        Ok(slot) => slot,
        Err(r) => {
            tracing::warn!(device = %peer.device_id, max_sessions = shared.live().max_sessions, reason = r.reason, "session refused");
            close_with(&conn, r.code, r.reason);
            shared.metrics.refused(r.code);
            return;
        }
    };
    let started = Instant::now();
    let mut record = shared.metrics.session_started();
    // The access check goes on while the device has not opened its stream yet: admitted on
    // a registry a moment old (a cluster node polls it), a device revoked just before
    // must not keep the connection until the stream timeout.
    let accepted = tokio::select! {
        a = tokio::time::timeout(STREAM_TIMEOUT, conn.accept_bi()) => a,
        r = watch_policy(shared, &peer) => {
            access_lost(&conn, &peer, &r, &mut record, "before its session");
            return;
        }
    };
    let (send, recv) = match accepted {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(device = %peer.device_id, error = %e, "connection ended before a session");
            return;
        }
        Err(_) => {
            close_with(&conn, close::PROTOCOL, "no sync stream was opened");
            return;
        }
    };
    let access = PeerAccess {
        device_id: peer.device_id.clone(),
        device_name: peer.device_name.clone(),
        offices: vec![peer.office.clone()],
    };
    let store = Arc::clone(&shared.store);
    let rules = Arc::clone(&shared.rules) as _;
    let live = shared.live();
    let intake = live.intake;
    let session = tokio::task::block_in_place(|| {
        Session::relay(store, access, rules).map(|s| s.with_limits(intake))
    });
    let mut session = match session {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(device = %peer.device_id, error = %e, "cannot start a session");
            close_with(
                &conn,
                close::INTERNAL,
                "the relay could not start a session",
            );
            return;
        }
    };
    let limits = live.limits;
    let mut metered = Metered::new(&mut session, &shared.metrics);
    let drive = quic::drive_within(
        &mut metered,
        send,
        recv,
        MAX_FRAME_BYTES,
        shared.settings.closing_timeout,
        ReadDeadlines {
            idle: Some(limits.idle),
            frame: Some(limits.frame),
        },
        |_| {},
    );
    let result = tokio::select! {
        r = drive => r,
        r = watch_policy(shared, &peer) => {
            // Revoked (or the office dropped) while connected: the session ends now;
            // what it committed so far was committed under a valid enrollment.
            access_lost(&conn, &peer, &r, &mut record, "during its session");
            return;
        }
        () = tokio::time::sleep(limits.session) => {
            tracing::warn!(device = %peer.device_id, deadline_s = limits.session.as_secs(), "session ended at its deadline");
            close_with(&conn, close::BUSY, "the session took too long; sync again to continue");
            record.end(SessionEnd::Deadline);
            return;
        }
    };
    let outcome = session.outcome();
    record.documents(outcome.docs_sent, outcome.docs_received);
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match result {
        Ok(stats) => {
            tracing::info!(
                device = %peer.device_id,
                office = %peer.office,
                docs_sent = outcome.docs_sent,
                docs_received = outcome.docs_received,
                rejected = outcome.rejected.len(),
                bytes_in = stats.bytes_in,
                bytes_out = stats.bytes_out,
                duration_ms = elapsed_ms,
                result = "ok",
                "sync session"
            );
            record.end(SessionEnd::Finished);
            // The device closes the connection once it has our last frame, after renewing
            // its certificate on one more stream if it is due.
            crate::cert_serve::after_session(
                &conn,
                &shared.dir,
                &peer,
                live.cert_validity,
                shared.settings.closing_timeout,
            )
            .await;
        }
        Err(e) => {
            let (code, what): (u32, String) = match &e {
                DriveError::Session(SyncError::Storage(_)) => {
                    (close::INTERNAL, "the relay store failed".to_owned())
                }
                DriveError::Session(SyncError::Remote { .. }) => {
                    (close::DONE, "the device ended the session".to_owned())
                }
                DriveError::Session(s) => (close::PROTOCOL, s.to_string()),
                DriveError::Transport(t) if t.connection_error().is_some() => {
                    (close::DONE, t.to_string())
                }
                DriveError::Transport(t) => (close::PROTOCOL, t.to_string()),
            };
            tracing::info!(
                device = %peer.device_id,
                office = %peer.office,
                docs_sent = outcome.docs_sent,
                docs_received = outcome.docs_received,
                bytes_in = outcome.bytes_received,
                bytes_out = outcome.bytes_sent,
                duration_ms = elapsed_ms,
                result = "failed",
                error = %what,
                "sync session"
            );
            close_with(&conn, code, &what);
        }
    }
}

/// Closes a connection with a code and a short reason (QUIC carries it to the device).
fn close_with(conn: &Connection, code: u32, reason: &str) {
    let mut end = reason.len().min(200);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    conn.close(VarInt::from_u32(code), &reason.as_bytes()[..end]);
}
