//! The app's background sync: [`SyncLoop`] runs [`sync_once`] about every `interval` (the
//! waits are drawn by [`SyncSchedule`], so an office's tablets do not arrive in step) and
//! at once when triggered, and publishes its [`SyncStatus`] on a `watch` channel for the UI.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::quic::{SyncFailure, SyncOptions, SyncReport, sync_once};
use super::tls::DeviceCredentials;
use crate::store::Store;
use crate::sync::Progress;
use crate::sync::schedule::SyncSchedule;

/// What the background sync is doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncActivity {
    /// Waiting for the next interval or a trigger.
    #[default]
    Idle,
    /// A sync is running.
    Syncing(Progress),
    /// The loop has stopped.
    Stopped,
}

/// The status the UI shows.
#[derive(Clone, Debug, Default)]
pub struct SyncStatus {
    /// What is happening now.
    pub activity: SyncActivity,
    /// When the last sync completed.
    pub last_success: Option<SystemTime>,
    /// What the last completed sync did.
    pub last_report: Option<SyncReport>,
    /// Why the last sync failed (cleared by a success).
    pub last_error: Option<SyncFailure>,
    /// When the last failure happened.
    pub last_error_at: Option<SystemTime>,
}

/// A running background sync; dropping the handle does not stop it, [`SyncLoop::stop`]
/// does.
pub struct SyncLoop {
    trigger: Arc<Notify>,
    stop: Arc<Notify>,
    status: watch::Receiver<SyncStatus>,
    task: JoinHandle<()>,
}

/// [`SyncLoop::spawn`] was called outside a tokio runtime.
#[derive(Debug, thiserror::Error)]
#[error("the background sync needs a running tokio runtime")]
pub struct NoRuntime;

impl SyncLoop {
    /// Starts syncing within a few seconds, then about every `interval` and at once
    /// whenever [`SyncLoop::trigger`] is called. Each run retries per `options.retry`; a
    /// failed run is reported in the status and the loop keeps going, waiting longer after
    /// each failure (refusals such as a revoked device too: the office may fix them, and
    /// the status says what is wrong). See [`SyncSchedule`] for the waits.
    pub fn spawn(
        store: Arc<Store>,
        creds: DeviceCredentials,
        interval: Duration,
        options: SyncOptions,
    ) -> Result<SyncLoop, NoRuntime> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| NoRuntime)?;
        let trigger = Arc::new(Notify::new());
        let stop = Arc::new(Notify::new());
        let (tx, rx) = watch::channel(SyncStatus::default());
        let task = handle.spawn(run(
            store,
            creds,
            interval,
            options,
            Arc::clone(&trigger),
            Arc::clone(&stop),
            tx,
        ));
        Ok(SyncLoop {
            trigger,
            stop,
            status: rx,
            task,
        })
    }

    /// Asks for a sync now (after the current one, if one is running).
    pub fn trigger(&self) {
        self.trigger.notify_one();
    }

    /// A receiver of status changes.
    pub fn status(&self) -> watch::Receiver<SyncStatus> {
        self.status.clone()
    }

    /// Stops the loop and waits for it. A running sync is interrupted at its next wait;
    /// what it already committed stays, and the next sync resumes from there.
    pub async fn stop(self) {
        self.stop.notify_one();
        let _ = self.task.await;
    }
}

async fn run(
    store: Arc<Store>,
    creds: DeviceCredentials,
    interval: Duration,
    options: SyncOptions,
    trigger: Arc<Notify>,
    stop: Arc<Notify>,
    tx: watch::Sender<SyncStatus>,
) {
    let mut creds = creds;
    let mut schedule = SyncSchedule::new(interval);
    tokio::select! {
        _ = tokio::time::sleep(schedule.first_delay(rand::random())) => {}
        _ = trigger.notified() => {}
        _ = stop.notified() => {
            tx.send_modify(|s| s.activity = SyncActivity::Stopped);
            return;
        }
    }
    loop {
        // A renewal (or a new enrollment) changes the credentials in the store: every
        // run uses the ones stored now.
        match super::enroll::load_credentials(&store) {
            Ok(Some(current)) => creds = current,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the stored credentials; using the ones loaded before")
            }
        }
        tx.send_modify(|s| s.activity = SyncActivity::Syncing(Progress::default()));
        let progress_tx = tx.clone();
        let result = tokio::select! {
            r = sync_once(Arc::clone(&store), &creds, &options, move |p| {
                progress_tx.send_modify(|s| s.activity = SyncActivity::Syncing(p));
            }) => Some(r),
            _ = stop.notified() => None,
        };
        let Some(result) = result else {
            break;
        };
        let wait = schedule.after_run(result.is_ok(), rand::random());
        tx.send_modify(|s| {
            s.activity = SyncActivity::Idle;
            match result {
                Ok(report) => {
                    s.last_success = Some(SystemTime::now());
                    s.last_report = Some(report);
                    s.last_error = None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "background sync failed");
                    s.last_error = Some(e);
                    s.last_error_at = Some(SystemTime::now());
                }
            }
        });
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = trigger.notified() => {}
            _ = stop.notified() => break,
        }
    }
    tx.send_modify(|s| s.activity = SyncActivity::Stopped);
}
