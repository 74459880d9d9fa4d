//! `relay.toml` (written by `init`, changed by `office add`) and the serve configuration
//! file (`serve.toml`, written by `init` with every key commented out; `musubi-relay serve`
//! reads `D/serve.toml`, or `--config FILE`).

use std::net::SocketAddr;
use std::path::Path;

use musubi_engine::net::pki;
use serde::{Deserialize, Serialize};

use crate::error::RelayError;
use crate::fsutil;

/// Format number of `relay.toml` and `devices.toml`.
pub const FORMAT: u32 = 1;
/// Listen address used when none is given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4433";
/// The serve configuration file in the relay directory, read when `--config` is absent.
pub const SERVE_TOML: &str = "serve.toml";

/// `relay.toml`: what the relay is and whom it serves. No secrets, no personal data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// Format number ([`FORMAT`]).
    pub format: u32,
    /// Random 128-bit id of this relay (32 hex digits); devices keep sync state per relay.
    pub relay_id: String,
    /// Offices (事業所番号) served, in the order they were added.
    pub offices: Vec<String>,
    /// Default UDP listen address of `serve`.
    pub listen: SocketAddr,
    /// Host names and IP addresses in the relay certificate; the first is the default
    /// address given to enrolled devices.
    pub hosts: Vec<String>,
    /// When the directory was created (RFC 3339, UTC).
    pub created_at: String,
    /// The PostgreSQL database of a cluster relay (`postgresql://…` or
    /// `host=/run/postgresql port=5432 dbname=musubi user=musubi`); absent: the embedded
    /// SQLCipher store in `store/`. Use password-less authentication (Unix socket peer
    /// or certificate): this file holds no secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// `[limits]`: what one device may bring in (absent: the defaults of
    /// `musubi_engine::sync::limits`; see docs/relay.md "Limits").
    #[serde(default, skip_serializing_if = "LimitsConfig::is_default")]
    pub limits: LimitsConfig,
}

/// `[limits]` of `relay.toml`: each key overrides one default of
/// [`IntakeLimits`](musubi_engine::sync::limits::IntakeLimits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most bytes per document.
    pub doc_bytes: Option<u64>,
    /// Most changes per document.
    pub doc_changes: Option<u64>,
    /// Documents one session may write.
    pub session_docs: Option<u64>,
    /// Bytes one session may write.
    pub session_bytes: Option<u64>,
    /// Bytes the automerge data one session receives may decode to.
    pub session_decoded: Option<u64>,
    /// Documents one device may create.
    pub device_docs: Option<u64>,
    /// Bytes one device may write.
    pub device_bytes: Option<u64>,
    /// Documents one office may hold.
    pub office_docs: Option<u64>,
    /// Bytes one office may hold.
    pub office_bytes: Option<u64>,
}

impl LimitsConfig {
    fn is_default(&self) -> bool {
        *self == LimitsConfig::default()
    }

    /// The limits a relay session applies: these keys over the defaults.
    pub fn intake(&self) -> musubi_engine::sync::limits::IntakeLimits {
        let d = musubi_engine::sync::limits::IntakeLimits::default();
        musubi_engine::sync::limits::IntakeLimits {
            doc_bytes: self.doc_bytes.unwrap_or(d.doc_bytes),
            doc_changes: self.doc_changes.unwrap_or(d.doc_changes),
            session_docs: self.session_docs.unwrap_or(d.session_docs),
            session_bytes: self.session_bytes.unwrap_or(d.session_bytes),
            session_decoded: self.session_decoded.unwrap_or(d.session_decoded),
            quota: musubi_engine::sync::limits::Quota {
                device_docs: self.device_docs.unwrap_or(d.quota.device_docs),
                device_bytes: self.device_bytes.unwrap_or(d.quota.device_bytes),
                office_docs: self.office_docs.unwrap_or(d.quota.office_docs),
                office_bytes: self.office_bytes.unwrap_or(d.quota.office_bytes),
            },
        }
    }
}

impl RelayConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), RelayError> {
        let bad = |problem: &str| RelayError::BadFile {
            file: "relay.toml",
            problem: problem.to_owned(),
        };
        if self.format > FORMAT {
            return Err(bad("written by a newer musubi-relay (format too new)"));
        }
        pki::check_device_id(&self.relay_id).map_err(|_| bad("relay_id is malformed"))?;
        if self.offices.is_empty() {
            return Err(bad("offices is empty"));
        }
        for office in &self.offices {
            pki::check_office(office).map_err(|_| bad("an office number is invalid"))?;
        }
        if self.hosts.is_empty() {
            return Err(bad("hosts is empty"));
        }
        let l = &self.limits;
        let values = [
            l.doc_bytes,
            l.doc_changes,
            l.session_docs,
            l.session_bytes,
            l.session_decoded,
            l.device_docs,
            l.device_bytes,
            l.office_docs,
            l.office_bytes,
        ];
        if values.contains(&Some(0)) {
            return Err(bad(
                "a value in [limits] is 0; leave the key out for the default",
            ));
        }
        Ok(())
    }

    /// Reads and validates `relay.toml`.
    pub fn read(path: &Path) -> Result<RelayConfig, RelayError> {
        let text = fsutil::read_text(path, "relay.toml")?;
        let config: RelayConfig = toml::from_str(&text).map_err(|e| RelayError::BadFile {
            file: "relay.toml",
            problem: format!("not valid: {}", e.message()),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Writes `relay.toml` atomically.
    pub fn write(&self, path: &Path) -> Result<(), RelayError> {
        self.validate()?;
        let text = toml::to_string(self).map_err(|_| RelayError::BadFile {
            file: "relay.toml",
            problem: "cannot be serialised".into(),
        })?;
        let doc = format!(
            "# musubi relay configuration (written by musubi-relay; see docs/relay.md)\n{text}"
        );
        fsutil::atomic_write(path, doc.as_bytes())
    }
}

/// How `serve` writes its log lines on standard error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `key=value` fields after the message (for people and journald).
    #[default]
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

/// The configuration file of `serve` (TOML; `D/serve.toml` unless `--config FILE`).
/// Command-line options win over it, and it wins over `relay.toml`. `init` writes every
/// key, commented out, with its default ([`serve_toml_template`]); a test fails when a
/// key is missing there.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeFileConfig {
    /// UDP listen address, e.g. `0.0.0.0:4433`.
    pub listen: Option<SocketAddr>,
    /// TCP address of the HTTP listener for `/metrics` and `/healthz` (no
    /// authentication: loopback or an administration network). Absent: no listener.
    pub metrics_listen: Option<SocketAddr>,
    /// Log filter when `MUSUBI_LOG` is not set (`error`, `warn`, `info`, `debug`, or a
    /// tracing filter such as `musubi_relay=debug,info`).
    pub log_level: Option<String>,
    /// `text` (default) or `json`.
    pub log_format: Option<LogFormat>,
    /// Most device sessions served at once.
    pub max_sessions: Option<usize>,
    /// A PEM file of extra trusted roots for card evidence, for tests only (e.g.
    /// musubi-vcard's `trust-anchor.pem`). A relay started with it logs that it is a test
    /// relay; without it, only the bundled J-LIS roots count.
    pub test_trust_anchor: Option<std::path::PathBuf>,
    /// Seconds a device may stay silent within a session (default 30).
    pub idle_timeout_s: Option<u64>,
    /// Seconds a device may take to finish a frame it began (default 40).
    pub frame_timeout_s: Option<u64>,
    /// Seconds one session may last (default 1800; a cut session resumes).
    pub session_deadline_s: Option<u64>,
    /// Days the device certificates issued at enrollment and renewal are valid (default
    /// 730; devices renew in their last 60 days).
    pub device_cert_days: Option<u32>,
    /// TESTS ONLY: seconds the issued device certificates are valid (overrides
    /// `device_cert_days`), to test expiry and re-enrollment.
    pub test_device_cert_seconds: Option<u64>,
}

/// The `serve.toml` that `init` writes: every key of [`ServeFileConfig`], commented out,
/// with its default and meaning (for operators, in English).
pub fn serve_toml_template() -> String {
    let d = crate::serve::SessionLimits::default();
    let cert_days = crate::enrollment::DEFAULT_DEVICE_CERT_VALIDITY.as_secs() / (24 * 3600);
    let max_sessions = crate::serve::DEFAULT_MAX_SESSIONS;
    let (idle, frame, session) = (d.idle.as_secs(), d.frame.as_secs(), d.session.as_secs());
    format!(
        r#"# musubi-relay serve configuration (written by `musubi-relay init`; see docs/relay.md,
# "Serve configuration file").
#
# `musubi-relay serve --dir D` reads D/serve.toml; `--config FILE` reads FILE instead.
# Every key is optional: a key left commented out keeps the default shown. Command-line
# options win over this file, and this file wins over relay.toml. Read at start and
# again on reload (SIGHUP; `systemctl reload musubi-relay`): a reload applies
# log_level, max_sessions, the timeouts and the certificate validity to new sessions;
# listen, metrics_listen, log_format and test_trust_anchor need a restart. A file with
# an error is not applied at all (the log says why).

# UDP address the QUIC server listens on (devices connect here).
# Default: `listen` in relay.toml (set by `init --listen`, else {DEFAULT_LISTEN}).
# listen = "0.0.0.0:4433"

# TCP address of the HTTP listener answering GET /metrics (Prometheus text format) and
# GET /healthz (200 "ok" while the store answers, 503 otherwise). Default: no listener.
# It has no authentication: bind it to loopback or an administration network only.
# metrics_listen = "127.0.0.1:9433"

# Log filter when the MUSUBI_LOG environment variable is not set: error, warn, info,
# debug, or a tracing filter such as "musubi_relay=debug,info". Default: "info".
# log_level = "info"

# Log format on standard error: "text" (key=value fields) or "json" (one JSON object
# per line, for log collectors). Default: "text".
# log_format = "text"

# Device sessions served at once; a device over the limit is told the relay is busy and
# retries later. Default: {max_sessions}.
# max_sessions = {max_sessions}

# Seconds a device may stay silent within a session before it is disconnected.
# Default: {idle}.
# idle_timeout_s = {idle}

# Seconds a device may take to finish a frame it began. Default: {frame}.
# frame_timeout_s = {frame}

# Seconds one session may last; a cut session resumes at the next sync. Default: {session}.
# session_deadline_s = {session}

# Days the device certificates issued at enrollment and renewal are valid (devices renew
# in their last 60 days; at most 3650). Default: {cert_days}.
# device_cert_days = {cert_days}

# TEST RELAYS ONLY: also trust this root (PEM) for My Number card evidence, e.g.
# musubi-vcard's trust-anchor.pem. Never set it on a relay that serves real offices.
# Default: only the bundled J-LIS roots.
# test_trust_anchor = "/tmp/vcard/trust-anchor.pem"

# TESTS ONLY: issue device certificates valid this many seconds (overrides
# device_cert_days), to test expiry and re-enrollment. Default: not set.
# test_device_cert_seconds = 6
"#
    )
}

/// The settings of `serve` that a reload (SIGHUP) applies without a restart: new
/// sessions use them; running sessions keep theirs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveSettings {
    /// Most device sessions at once.
    pub max_sessions: usize,
    /// Deadlines of a session.
    pub limits: crate::serve::SessionLimits,
    /// Validity of the device certificates issued at enrollment and renewal.
    pub cert_validity: std::time::Duration,
    /// Certificates are issued for seconds only (`test_device_cert_seconds`).
    pub test_cert_validity: bool,
    /// Log filter when `MUSUBI_LOG` is not set.
    pub log_level: String,
}

impl ServeFileConfig {
    /// Checks the keys a reload may change and gives their values (defaults where
    /// absent). Nothing is applied when this fails.
    pub fn live(&self) -> Result<LiveSettings, RelayError> {
        let bad = |problem: &str| RelayError::BadFile {
            file: "serve configuration",
            problem: problem.to_owned(),
        };
        let d = crate::serve::SessionLimits::default();
        let secs = |v: Option<u64>, default: std::time::Duration, key: &str| match v {
            None => Ok(default),
            Some(0) => Err(bad(&format!("{key} must be at least 1 second"))),
            Some(s) => Ok(std::time::Duration::from_secs(s)),
        };
        let limits = crate::serve::SessionLimits {
            idle: secs(self.idle_timeout_s, d.idle, "idle_timeout_s")?,
            frame: secs(self.frame_timeout_s, d.frame, "frame_timeout_s")?,
            session: secs(self.session_deadline_s, d.session, "session_deadline_s")?,
        };
        let (cert_validity, test_cert_validity) =
            match (self.test_device_cert_seconds, self.device_cert_days) {
                (Some(0), _) => return Err(bad("test_device_cert_seconds must be at least 1")),
                (Some(s), _) => (std::time::Duration::from_secs(s), true),
                (None, None) => (crate::enrollment::DEFAULT_DEVICE_CERT_VALIDITY, false),
                (None, Some(0)) => return Err(bad("device_cert_days must be at least 1")),
                (None, Some(d)) if d > 3650 => {
                    return Err(bad(
                        "device_cert_days must be at most 3650 (the office CA's life)",
                    ));
                }
                (None, Some(d)) => (
                    std::time::Duration::from_secs(u64::from(d) * 24 * 3600),
                    false,
                ),
            };
        let max_sessions = match self.max_sessions {
            None => crate::serve::DEFAULT_MAX_SESSIONS,
            Some(0) => return Err(bad("max_sessions must be at least 1")),
            Some(n) => n,
        };
        let log_level = self.log_level.clone().unwrap_or_else(|| "info".to_owned());
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            return Err(bad("log_level is not a valid log filter"));
        }
        Ok(LiveSettings {
            max_sessions,
            limits,
            cert_validity,
            test_cert_validity,
            log_level,
        })
    }

    /// Reads a serve configuration file.
    pub fn read(path: &Path) -> Result<ServeFileConfig, RelayError> {
        let text = fsutil::read_text(path, "serve configuration")?;
        toml::from_str(&text).map_err(|e| RelayError::BadFile {
            file: "serve configuration",
            problem: format!("not valid: {}", e.message()),
        })
    }
}
