//! The relay's log subscriber: `tracing` to standard error as text or JSON, with a filter
//! that `serve` can change on reload (SIGHUP) unless `MUSUBI_LOG` sets it.

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::config::LogFormat;
use crate::error::RelayError;

/// Changes the log filter of the running process.
#[derive(Clone)]
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `MUSUBI_LOG` was set: it wins over `log_level`, also on reload.
    env_wins: bool,
}

impl std::fmt::Debug for LogControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogControl")
            .field("env_wins", &self.env_wins)
            .finish_non_exhaustive()
    }
}

impl LogControl {
    /// Applies `level` (a filter such as `info` or `musubi_relay=debug,info`). `Ok(false)`
    /// when `MUSUBI_LOG` governs and nothing changed.
    pub fn set_level(&self, level: &str) -> Result<bool, RelayError> {
        if self.env_wins {
            return Ok(false);
        }
        let filter = EnvFilter::try_new(level).map_err(|_| RelayError::BadFile {
            file: "serve configuration",
            problem: "log_level is not a valid log filter".into(),
        })?;
        self.handle
            .reload(filter)
            .map_err(|_| RelayError::BadFile {
                file: "serve configuration",
                problem: "the log filter could not be changed".into(),
            })?;
        Ok(true)
    }
}

/// Installs the subscriber: the filter from `MUSUBI_LOG`, else `default`; text or JSON
/// lines on standard error.
pub fn init(default: &str, format: LogFormat) -> LogControl {
    let from_env = EnvFilter::try_from_env("MUSUBI_LOG");
    let env_wins = from_env.is_ok();
    let filter = from_env
        .or_else(|_| EnvFilter::try_new(default))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let base = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let installed = match format {
        LogFormat::Text => registry
            .with(base.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())))
            .try_init(),
        // One object per line: timestamp, level, message and the event's fields at the
        // top level (the same fields as the text format: no personal data).
        LogFormat::Json => registry
            .with(
                base.json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false),
            )
            .try_init(),
    };
    if installed.is_err() {
        tracing::debug!("a log subscriber was already installed");
    }
    LogControl { handle, env_wins }
}
