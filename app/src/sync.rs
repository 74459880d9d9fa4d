//! `musubi sync [--relay HOST:PORT]`: one sync with the office relay, both directions,
//! until both sides are caught up.
//!
//! Uses the credentials installed by `musubi enroll` (not enrolled: exit 4). A lost
//! connection is retried with backoff and continues where it stopped. On a terminal, a
//! progress bar runs on stderr. The summary (documents sent and received, conflicts) goes
//! to stdout; `--json` prints it as JSON. Any failure exits 1 with the reason (revoked,
//! unknown device, wrong office, relay unreachable, untrusted relay, protocol error).

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{BinaryBytes, ProgressBar, ProgressStyle};
use musubi_engine::net::enroll;
use musubi_engine::net::quic::{self, RetryPolicy, SyncOptions, SyncReport, TransportSettings};
use musubi_engine::net::tls;
use musubi_engine::store::Store;
use musubi_engine::sync::Progress;
use serde_json::json;

use crate::common::InputError;
use crate::secrets;

/// Arguments of `musubi sync`.
#[derive(Args, Debug)]
pub struct SyncArgs {
    /// Relay address HOST:PORT (default: the one from the enrollment file).
    #[arg(long, value_name = "HOST:PORT")]
    pub relay: Option<String>,
    /// Seconds without any answer from the relay before a connection counts as lost.
    #[arg(long, value_name = "SECONDS", default_value_t = 15)]
    pub idle_timeout: u64,
    /// Stop retrying after this many seconds and report the relay as unreachable.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub give_up_after: u64,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The device has no credentials yet (exit code 4, like other "store not usable" cases).
#[derive(Debug, thiserror::Error)]
#[error(
    "this device is not enrolled with a relay yet: ask the office for an enrollment file and run `musubi enroll FILE`"
)]
pub struct NotEnrolled;

/// The sync itself failed (the reason is the source).
#[derive(Debug, thiserror::Error)]
#[error("sync with the relay failed")]
pub struct SyncFailed(#[source] pub quic::SyncFailure);

/// Runs `musubi sync` on the store in `data_dir`.
pub fn run(data_dir: &Path, passphrase_file: Option<&Path>, args: SyncArgs) -> Result<()> {
    if let Some(addr) = &args.relay {
        tls::split_host_port(addr).map_err(|e| InputError(format!("--relay: {e}")))?;
    }
    if args.idle_timeout == 0 {
        return Err(InputError("--idle-timeout: must be at least 1 second".into()).into());
    }
    let pass = secrets::current(passphrase_file)?;
    let store = Store::open(data_dir, &pass)?;
    let creds = match enroll::load_credentials(&store) {
        Ok(Some(c)) => c,
        Ok(None) => {
            store.close()?;
            return Err(NotEnrolled.into());
        }
        Err(e) => {
            store.close()?;
            return Err(e.into());
        }
    };
    let options = SyncOptions {
        relay: args.relay.clone(),
        transport: TransportSettings::with_idle_timeout(Duration::from_secs(args.idle_timeout)),
        retry: RetryPolicy {
            deadline: Duration::from_secs(args.give_up_after),
            ..RetryPolicy::default()
        },
    };
    let store = Arc::new(store);
    let bar = progress_bar();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the network runtime")?;
    let result = runtime.block_on(quic::sync_once(
        Arc::clone(&store),
        &creds,
        &options,
        |p: Progress| show(&bar, p),
    ));
    bar.finish_and_clear();
    drop(runtime);
    match Arc::into_inner(store) {
        Some(store) => store.close()?,
        None => tracing::warn!("the store is still in use; it closes when the program exits"),
    }
    let report = result.map_err(SyncFailed)?;
    summary(&report, args.json)
}

fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} 同期中 (syncing) [{bar:30}] {pos}/{len} documents  {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn show(bar: &ProgressBar, p: Progress) {
    bar.set_length(p.docs_total);
    bar.set_position(p.docs_done);
    bar.set_message(format!(
        "sent {} / received {}",
        BinaryBytes(p.bytes_sent),
        BinaryBytes(p.bytes_received)
    ));
}

fn summary(report: &SyncReport, as_json: bool) -> Result<()> {
    let o = &report.outcome;
    if as_json {
        let conflicted: Vec<String> = o.conflicted.iter().map(|id| id.to_string()).collect();
        let rejected: Vec<_> = o
            .rejected
            .iter()
            .map(|(id, code)| json!({"id": id.to_string(), "reason": code}))
            .collect();
        let v = json!({
            "docs_sent": o.docs_sent,
            "docs_received": o.docs_received,
            "conflicted": conflicted,
            "rejected": rejected,
            "round_trips": o.round_trips,
            "connections": report.connections,
            "bytes_sent": report.stats.bytes_out,
            "bytes_received": report.stats.bytes_in,
            "elapsed_ms": u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
            "certificate_renewed": report.renewed,
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    outln!(
        "同期しました (synced): {} sent, {} received, {} with conflicts{}",
        plural(o.docs_sent, "document"),
        plural(o.docs_received, "document"),
        plural(o.conflicted.len() as u64, "document"),
        if report.connections > 1 {
            format!(" ({} connections)", report.connections)
        } else {
            String::new()
        }
    );
    if report.renewed {
        outln!("  端末の証明書を更新しました (the device certificate was renewed)");
    }
    for id in &o.conflicted {
        outln!("  競合 (conflict): {id} — see `musubi doc conflicts {id}`");
    }
    for (id, code) in &o.rejected {
        let (ja, en) = musubi_engine::admit::rejection_text(code);
        outln!(
            "  中継サーバーが受け付けませんでした (refused by the relay): {id} [{code}] {ja} ({en})"
        );
    }
    Ok(())
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
