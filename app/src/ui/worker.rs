//! The engine side of the app: one named thread that owns the [`Engine`] (and through it
//! the store thread), a small tokio runtime for the background [`SyncLoop`], and handles
//! [`Command`]s in order. The UI thread only sends commands and reads [`Event`]s; it never
//! waits for disk, network or card I/O.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, UNIX_EPOCH};

use musubi_engine::ids::DocId;
use musubi_engine::net::enroll;
use musubi_engine::net::quic::{RetryPolicy, SyncFailure, SyncOptions, relay_id};
use musubi_engine::net::sync_loop::{SyncActivity, SyncLoop, SyncStatus};
use musubi_engine::net::tls::DeviceCredentials;
use musubi_engine::schema::{Pointer, SurveyCatalog};
use musubi_engine::store::{Store, StoreError};
use musubi_engine::sync::SyncStorage;
use musubi_engine::{Engine, EngineError};
use serde_json::{Value, json};

use super::app::ItemWarning;
use super::card_flow::{self, CardAccess, CardFlow};
use super::command::{
    Command, DeviceView, DocRow, Event, ExportFormat, PersonRow, RequestPreview, Status, SyncView,
};
use super::survey_model;
use crate::office::{self, OfficeError, SurveyStep};
use musubi_engine::export::ExportError;
use musubi_engine::export::csv::Encoding;
use musubi_engine::export::pdf::PdfLayout;
use musubi_engine::store::SecretString;
use musubi_engine::sync::bundle::BundleError;

/// The consistency warnings of a survey (national 警告コード and musubi's soft rules), by
/// item: each warning is shown beside every item it concerns. Dismissed ones say so.
fn survey_warnings(json: &Value) -> BTreeMap<String, Vec<ItemWarning>> {
    let mut by_item: BTreeMap<String, Vec<ItemWarning>> = BTreeMap::new();
    for w in musubi_engine::care::check_survey(json).warnings {
        let message = match &w.dismissed {
            Some(_) => format!("{}（確認済み）", w.message),
            None => w.message.clone(),
        };
        for item in &w.items {
            by_item.entry(item.clone()).or_default().push(ItemWarning {
                code: w.code.clone(),
                message: message.clone(),
            });
        }
    }
    by_item
}

/// Commands waiting for the worker at most (the UI keeps any overflow in its outbox).
const COMMAND_QUEUE: usize = 256;
/// Events waiting for the UI at most (the worker waits when the UI is behind).
const EVENT_QUEUE: usize = 1024;
/// Background sync interval.
const SYNC_INTERVAL: Duration = Duration::from_secs(30);

/// What the worker reacts to.
enum Msg {
    Ui(Command),
    /// The background sync published a new status.
    SyncChanged,
    Shutdown,
}

/// Called after the worker sent events, so the UI repaints (egui's `request_repaint`).
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// How the worker opens the store.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The data directory.
    pub data_dir: PathBuf,
    /// Staff member recorded in the audit history (else the store's default).
    pub staff: Option<String>,
    /// Start the background sync when the device is enrolled.
    pub background_sync: bool,
    /// Relay `HOST:PORT` instead of the one from enrollment (`MUSUBI_RELAY`).
    pub relay: Option<String>,
    /// Where the My Number card is read.
    pub card: CardAccess,
    /// Extra trusted roots (PEM files) beside the bundled J-LIS roots, e.g. the virtual
    /// card's test root (`MUSUBI_TRUST_ANCHOR`).
    pub trust_anchors: Vec<PathBuf>,
}

/// The UI's handle on the worker.
pub struct WorkerHandle {
    tx: SyncSender<Msg>,
    rx: Receiver<Event>,
    thread: Option<JoinHandle<()>>,
}

/// The worker's queue is full; the command comes back to be sent again later.
pub struct Busy(pub Command);

impl WorkerHandle {
    /// Starts the worker thread.
    pub fn spawn(config: WorkerConfig, wake: Wake) -> std::io::Result<WorkerHandle> {
        let (tx, cmd_rx) = sync_channel(COMMAND_QUEUE);
        let (ev_tx, rx) = sync_channel(EVENT_QUEUE);
        let self_tx = tx.clone();
        let thread = std::thread::Builder::new()
            .name("musubi-app-worker".to_owned())
            .spawn(move || {
                let card = CardFlow::new(config.card.clone(), config.trust_anchors.clone());
                let mut w = Worker {
                    card,
                    config,
                    wake,
                    events: ev_tx,
                    self_tx,
                    engine: None,
                    runtime: None,
                    sync: None,
                    creds: None,
                    catalog: SurveyCatalog::embedded().ok(),
                };
                let display = super::display::DisplaySettings::load(&w.config.data_dir);
                w.send(Event::Display(display));
                // The reading counts as the first command (`AppUi::new` expects it).
                w.send(Event::Done);
                w.run(cmd_rx);
            })?;
        Ok(WorkerHandle {
            tx,
            rx,
            thread: Some(thread),
        })
    }

    /// Queues a command without waiting.
    pub fn try_send(&self, cmd: Command) -> Result<(), Busy> {
        match self.tx.try_send(Msg::Ui(cmd)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(Msg::Ui(c)) | TrySendError::Disconnected(Msg::Ui(c))) => {
                Err(Busy(c))
            }
            Err(_) => Ok(()),
        }
    }

    /// The next event, if one is there.
    pub fn try_recv(&self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// Waits for the next event (tests, benchmarks and the screenshot driver only; the UI
    /// itself never calls this).
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Event> {
        self.rx.recv_timeout(timeout).ok()
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        // The queue may be full; keep draining events until the shutdown is queued so the
        // worker is never stuck sending to us.
        loop {
            match self.tx.try_send(Msg::Shutdown) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => break,
                Err(TrySendError::Full(_)) => {
                    while self.rx.try_recv().is_ok() {}
                    std::thread::yield_now();
                }
            }
        }
        // Unblock a worker waiting to send an event.
        let rx = std::mem::replace(&mut self.rx, sync_channel(1).1);
        drop(rx);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the app worker thread panicked");
        }
    }
}

struct Worker {
    card: CardFlow,
    config: WorkerConfig,
    wake: Wake,
    events: SyncSender<Event>,
    self_tx: SyncSender<Msg>,
    engine: Option<Engine>,
    runtime: Option<tokio::runtime::Runtime>,
    sync: Option<SyncLoop>,
    creds: Option<DeviceCredentials>,
    catalog: Option<SurveyCatalog>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A failure the screen cannot explain better: the Japanese sentence for the person, and
/// the cause (English, for whoever reads `logs/musubi.log`) in the log only, so no English
/// reaches the screen. Causes name files and documents by path and id, never values.
pub fn unexplained(sentence: &str, cause: &dyn std::fmt::Display) -> String {
    tracing::warn!(error = %cause, "{sentence}");
    format!("{sentence}詳しい原因は端末の記録（logs/musubi.log）にあります。")
}

/// The store's errors in words a surveyor understands (no paths, no personal data).
pub fn store_message(e: &StoreError) -> String {
    match e {
        StoreError::WrongPassphrase => "パスフレーズが違います。".to_owned(),
        StoreError::EmptyPassphrase => "パスフレーズを入力してください。".to_owned(),
        StoreError::WrongRecoveryIdentity => {
            "この復旧用鍵ファイルでは開けません。事務所の復旧用鍵か確認してください。".to_owned()
        }
        StoreError::MalformedRecoveryIdentity => {
            "復旧用鍵ファイルの形式が正しくありません（AGE-SECRET-KEY-1… で始まるファイル）。"
                .to_owned()
        }
        StoreError::NoRecoveryKey => {
            "この端末には事務所の復旧用鍵が設定されていません。".to_owned()
        }
        StoreError::NotInitialised { .. } | StoreError::DatabaseMissing { .. } => {
            "この端末にはまだデータ保管庫がありません。事務所で初期化してください（musubi init）。"
                .to_owned()
        }
        StoreError::Quarantined { .. } => {
            "データベースを開けなかったため、消さずに隔離しました。事務所に連絡してください。"
                .to_owned()
        }
        StoreError::NewerSchema { .. } | StoreError::NewerFormat { .. } => {
            "このデータは新しい版の musubi で作られています。アプリを更新してください。".to_owned()
        }
        _ => unexplained("保管庫を開けませんでした。", e),
    }
}

fn engine_message(e: &EngineError) -> String {
    match e {
        // The Japanese sentences only: they name the field by its title, never by a path.
        EngineError::Invalid { issues, .. } => {
            let parts: Vec<&str> = issues.iter().map(|i| i.ja.as_str()).collect();
            format!("入力内容を保存できません：{}", parts.join(" "))
        }
        EngineError::Store(s) => store_message(s),
        other => unexplained("処理できませんでした。", other),
    }
}

/// Why an edit of one field was refused, shown beside the field (after 「保存できません」).
fn field_message(e: &EngineError) -> String {
    match e {
        EngineError::Invalid { issues, .. } => issues
            .iter()
            .map(|i| i.ja.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        other => engine_message(other),
    }
}

/// One PDF per survey, `認定調査票_ID.pdf` in `dir` (a new name when taken).
fn write_pdfs(
    engine: &Engine,
    ids: &[DocId],
    layout: PdfLayout,
    dir: &std::path::Path,
) -> Result<Vec<PathBuf>, OfficeError> {
    let mut files = Vec::with_capacity(ids.len());
    for id in ids {
        let pdf = office::pdf(engine, *id, layout)?;
        let out = office::free_path(dir, &format!("認定調査票_{id}"), "pdf");
        office::write_new_file(&out, &pdf.bytes, false)?;
        files.push(out);
    }
    Ok(files)
}

/// One CSV of every survey, `認定調査票_<date-time>.csv` in `dir` (a new name when taken).
fn write_csv(
    engine: &Engine,
    ids: &[DocId],
    encoding: Encoding,
    dir: &std::path::Path,
) -> Result<Vec<PathBuf>, OfficeError> {
    let (bytes, _) = office::csv(engine, ids, encoding)?;
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
    let out = office::free_path(dir, &format!("認定調査票_{stamp}"), "csv");
    office::write_new_file(&out, &bytes, false)?;
    Ok(vec![out])
}

/// Office work's refusals and failures in plain Japanese.
pub fn office_message(e: &OfficeError) -> String {
    match e {
        OfficeError::Input(m) => m.clone(),
        OfficeError::Workflow(w) => w.to_string(),
        OfficeError::Engine(e) => engine_message(e),
        OfficeError::Export(ExportError::Unencodable { row, column, .. }) => format!(
            "{row}件目の「{column}」に Shift_JIS で表せない文字があるため、書き出しませんでした。UTF-8 を選んでください。"
        ),
        OfficeError::Export(ExportError::Invalid { .. }) => {
            "入力内容に誤りのある調査票があるため、書き出しませんでした。調査票を確認してください。"
                .to_owned()
        }
        OfficeError::Export(ExportError::NotASurvey { .. } | ExportError::WrongKind { .. }) => {
            "選んだ文書は書き出せる種類ではありません。".to_owned()
        }
        OfficeError::Export(_) => "書き出しに失敗しました。".to_owned(),
        OfficeError::Io { source, .. } => format!(
            "ファイルを書き込めませんでした（{}）。保存先を確認してください。",
            office::io_reason(source)
        ),
    }
}

/// A bundle's refusal in plain Japanese (nothing was written).
pub fn bundle_message(e: &BundleError) -> String {
    if e.is_wrong_passphrase() {
        "バンドルのパスフレーズが違います。".to_owned()
    } else if matches!(e, BundleError::Open(_)) {
        "バンドルファイルを開けません。場所を確認してください。".to_owned()
    } else if e.is_invalid_input() {
        "このファイルはバンドルとして取り込めません（壊れているか、他の事業所のもの、または受け付けられない文書を含みます）。何も取り込んでいません。".to_owned()
    } else {
        "バンドルを処理できませんでした。何も書き込んでいません。".to_owned()
    }
}

/// A sync failure in plain Japanese.
pub fn sync_message(f: &SyncFailure) -> String {
    match f {
        SyncFailure::Revoked => {
            "この端末の登録は事務所によって取り消されています。事務所に連絡してください。"
                .to_owned()
        }
        SyncFailure::UnknownDevice => {
            "事務所の中継サーバーがこの端末を認識できません。端末の登録をやり直してください。"
                .to_owned()
        }
        SyncFailure::WrongOffice => {
            "接続先の中継サーバーは別の事業所のものです。接続先を確認してください。".to_owned()
        }
        SyncFailure::CertificateExpired => {
            "この端末の証明書の有効期限が切れています。事務所で登録を更新してください。".to_owned()
        }
        SyncFailure::RelayUntrusted { .. } | SyncFailure::Handshake { .. } => {
            "中継サーバーとの安全な接続を確立できませんでした。事務所に連絡してください。"
                .to_owned()
        }
        SyncFailure::BadAddress { .. } => {
            "中継サーバーの宛先が正しくありません。事務所に確認してください。".to_owned()
        }
        SyncFailure::Unreachable { .. } => {
            "中継サーバーに接続できません（オフライン）。入力した内容は端末に保存されています。接続できたときに続きから同期します。"
                .to_owned()
        }
        SyncFailure::SessionLimit => {
            "一度の同期で送れる量の上限に達しました。残りは次の同期で送ります。".to_owned()
        }
        SyncFailure::RelayProtocol { .. } => {
            "中継サーバーとの同期で問題が起きました。しばらくしてからもう一度お試しください。"
                .to_owned()
        }
        SyncFailure::Local { .. } => {
            "この端末側で同期に失敗しました。もう一度お試しください。".to_owned()
        }
    }
}

fn ms_of(t: Option<std::time::SystemTime>) -> Option<i64> {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_millis()).ok())
}

impl Worker {
    fn send(&self, ev: Event) {
        // The UI is gone when this fails; the worker stops at the next Shutdown anyway.
        if self.events.send(ev).is_ok() {
            (self.wake)();
        }
    }

    fn run(&mut self, rx: Receiver<Msg>) {
        while let Ok(msg) = rx.recv() {
            match msg {
                Msg::Ui(cmd) => {
                    self.handle(cmd);
                    self.send(Event::Done);
                }
                Msg::SyncChanged => self.publish_sync(),
                Msg::Shutdown => break,
            }
        }
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let (Some(sync), Some(rt)) = (self.sync.take(), self.runtime.as_ref()) {
            rt.block_on(sync.stop());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
        if let Some(engine) = self.engine.take()
            && let Err(e) = engine.close()
        {
            tracing::warn!(error = %e, "closing the store");
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Unlock { passphrase } => {
                let opened = Store::open(&self.config.data_dir, &passphrase);
                self.after_open(opened);
            }
            Command::Recover {
                identity_file,
                new_passphrase,
            } => {
                let dir = self.config.data_dir.clone();
                let identity = match std::fs::read_to_string(&identity_file) {
                    Ok(t) => zeroize::Zeroizing::new(t),
                    Err(_) => {
                        self.send(Event::UnlockFailed(
                            "復旧用鍵ファイルを読めません。場所を確認してください。".to_owned(),
                        ));
                        return;
                    }
                };
                match Store::recover(&dir, identity.as_str(), &new_passphrase) {
                    Ok(()) => {
                        let opened = Store::open(&dir, &new_passphrase);
                        self.after_open(opened);
                    }
                    Err(e) => self.send(Event::UnlockFailed(store_message(&e))),
                }
            }
            Command::Refresh => {
                self.people();
                self.publish_sync();
            }
            Command::Open(id) => self.load(id),
            Command::Set { id, pointer, value } => self.set(id, pointer, value),
            Command::SurveyStep { id, step } => self.survey_step(id, *step),
            Command::Export { ids, format, dir } => self.export(&ids, format, &dir),
            Command::PreviewRequests(path) => {
                let preview = self.preview_requests(&path);
                self.send(Event::RequestPreview(preview));
            }
            Command::ImportRequests(path) => self.import_requests(&path),
            Command::BundleExport { path, passphrase } => self.bundle_export(&path, &passphrase),
            Command::BundleImport { path, passphrase } => self.bundle_import(&path, &passphrase),
            Command::CaseAdvance { id, field, value } => self.case_step(id, |engine| {
                office::case_advance(engine, id, &field, &value).map(drop)
            }),
            Command::CaseException { id, exception } => {
                self.case_step(id, |engine| office::case_exception(engine, id, &exception))
            }
            Command::CreateSurvey { person } => self.create_survey(person),
            Command::CreateVisit { subject, date } => self.create_visit(subject, date),
            Command::Conflicts(id) => {
                let Some(engine) = &self.engine else { return };
                match engine.conflicts(id) {
                    Ok(c) => self.send(Event::Conflicts(id, c)),
                    Err(e) => self.send(Event::Error(engine_message(&e))),
                }
            }
            Command::History(id) => {
                let Some(engine) = &self.engine else { return };
                match engine.history(id) {
                    Ok(h) => self.send(Event::History(id, h)),
                    Err(e) => self.send(Event::Error(engine_message(&e))),
                }
            }
            Command::CardStatus => {
                let state = self.card.status();
                self.send(Event::Card(state));
            }
            Command::CardVerify {
                subject,
                auth_pin,
                support_pin,
                allow_last_try,
            } => {
                let Some(engine) = &self.engine else { return };
                let staff = self.staff(engine);
                let outcome = self.card.verify(
                    engine,
                    staff,
                    subject,
                    auth_pin,
                    support_pin,
                    allow_last_try,
                );
                self.after_card(outcome, subject);
            }
            Command::CardDecideMismatch(accept) => {
                let Some(engine) = &self.engine else { return };
                let staff = self.staff(engine);
                if let Some(outcome) = self.card.decide(engine, staff, accept) {
                    let subject = match &outcome {
                        super::command::CardOutcome::Registered { subject, .. } => Some(*subject),
                        _ => None,
                    };
                    self.send(Event::CardResult(outcome));
                    if let Some(s) = subject {
                        self.registrations(s);
                        self.people();
                    }
                }
            }
            Command::Registrations(doc) => self.registrations(doc),
            Command::RecordConsent {
                registration,
                consent,
            } => {
                let Some(engine) = &self.engine else { return };
                match musubi_engine::card::register::record_consent(
                    engine,
                    registration,
                    &consent,
                    now_ms(),
                ) {
                    Ok(_) => self.people(),
                    Err(e) => self.send(Event::Error(card_flow::register_message(&e))),
                }
            }
            Command::WithdrawConsent {
                registration,
                reason,
            } => {
                let Some(engine) = &self.engine else { return };
                let today = chrono::Local::now().format("%Y-%m-%d").to_string();
                match musubi_engine::card::register::record_withdrawal(
                    engine,
                    registration,
                    &today,
                    Some(reason.as_str()),
                    now_ms(),
                ) {
                    Ok(_) => self.people(),
                    Err(e) => self.send(Event::Error(card_flow::register_message(&e))),
                }
            }
            Command::Cases => self.cases(),
            Command::SaveDisplay(settings) => {
                if let Err(e) = settings.save(&self.config.data_dir) {
                    tracing::warn!(error = %e, "display settings not saved");
                    self.send(Event::Error(
                        "表示設定を端末に保存できませんでした（この画面では反映されています）。"
                            .to_owned(),
                    ));
                }
            }
            Command::SyncNow => match &self.sync {
                Some(s) => s.trigger(),
                None => self.send(Event::Error(
                    "この端末はまだ中継サーバーに登録されていません（musubi enroll）。".to_owned(),
                )),
            },
        }
    }

    /// The staff member recorded as 確認者: the app's, else the store's default.
    fn staff(&self, engine: &Engine) -> Option<String> {
        self.config
            .staff
            .clone()
            .or_else(|| engine.store().info().staff.clone())
    }

    /// Sends a verification outcome, then the card's fresh tries and, after a
    /// registration, the person's registrations and the visit list.
    fn after_card(&mut self, outcome: super::command::CardOutcome, asked: DocId) {
        let registered = matches!(outcome, super::command::CardOutcome::Registered { .. });
        self.send(Event::CardResult(outcome));
        let state = self.card.status();
        self.send(Event::Card(state));
        if registered {
            self.registrations(asked);
            self.people();
        }
    }

    fn registrations(&mut self, doc: DocId) {
        let Some(engine) = &self.engine else { return };
        match self.card.registrations(engine, doc) {
            Ok(rows) => self.send(Event::Registrations(doc, rows)),
            Err(m) => self.send(Event::Error(m)),
        }
    }

    /// The 要介護認定 cases with their phase and the 30-day rule, for the progress board.
    fn cases(&mut self) {
        let Some(engine) = &self.engine else { return };
        let today = chrono::Local::now().format("%Y-%m-%d").to_string();
        let rules = musubi_engine::care::case::CaseRules::default();
        match engine.case_rows(&today, &rules) {
            Ok(rows) => self.send(Event::Cases(rows)),
            Err(e) => self.send(Event::Error(engine_message(&e))),
        }
    }

    fn after_open(&mut self, opened: Result<Store, StoreError>) {
        let store = match opened {
            Ok(s) => s,
            Err(e) => {
                self.send(Event::UnlockFailed(store_message(&e)));
                return;
            }
        };
        let info = store.info().clone();
        let creds = enroll::load_credentials(&store).ok().flatten();
        let engine = match Engine::new(store, self.config.staff.clone()) {
            Ok(e) => e,
            Err(e) => {
                self.send(Event::UnlockFailed(engine_message(&e)));
                return;
            }
        };
        if let Some(c) = &creds
            && self.config.background_sync
        {
            self.start_sync(engine.shared_store(), c.clone());
        }
        self.creds = creds;
        self.engine = Some(engine);
        self.send(Event::Unlocked(DeviceView {
            office: info.office,
            device_name: info.device_name,
        }));
        self.people();
        self.publish_sync();
    }

    fn start_sync(&mut self, store: Arc<Store>, creds: DeviceCredentials) {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("musubi-app-sync")
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                self.send(Event::Error(unexplained(
                    "同期の準備ができませんでした。",
                    &e,
                )));
                return;
            }
        };
        let options = SyncOptions {
            relay: self.config.relay.clone(),
            transport: Default::default(),
            retry: RetryPolicy {
                max_attempts: 3,
                deadline: Duration::from_secs(20),
                ..RetryPolicy::default()
            },
        };
        let spawned = {
            let _guard = rt.enter();
            SyncLoop::spawn(store, creds, SYNC_INTERVAL, options)
        };
        match spawned {
            Ok(sync) => {
                let mut status = sync.status();
                let tx = self.self_tx.clone();
                rt.spawn(async move {
                    while status.changed().await.is_ok() {
                        // A full queue means the worker is busy; the next Refresh or change
                        // publishes the status again.
                        if tx.try_send(Msg::SyncChanged).is_err() {
                            tracing::debug!("sync status update coalesced");
                        }
                    }
                });
                self.sync = Some(sync);
                self.runtime = Some(rt);
            }
            Err(e) => self.send(Event::Error(unexplained(
                "同期を開始できませんでした。",
                &e,
            ))),
        }
    }

    fn pending(&self) -> usize {
        let Some(engine) = &self.engine else { return 0 };
        let store = engine.store();
        let peer = self.creds.as_ref().map(relay_id).unwrap_or_default();
        let since = store.peer(&peer).map(|r| r.pushed_seq).unwrap_or(0);
        let office = store.info().office.clone();
        store
            .changed_for_peer(&peer, since, &[office], false)
            .map(|l| l.len())
            .unwrap_or(0)
    }

    fn publish_sync(&mut self) {
        if self.engine.is_none() {
            return;
        }
        let status: SyncStatus = self
            .sync
            .as_ref()
            .map(|s| s.status().borrow().clone())
            .unwrap_or_default();
        let last_ok_from_store = self.engine.as_ref().and_then(|e| {
            let peer = self.creds.as_ref().map(relay_id)?;
            e.store().peer(&peer).ok()?.last_ok_ms
        });
        let (sent, received) = status
            .last_report
            .as_ref()
            .map(|r| (r.outcome.docs_sent, r.outcome.docs_received))
            .unwrap_or((0, 0));
        let view = SyncView {
            enrolled: self.creds.is_some(),
            relay: self
                .config
                .relay
                .clone()
                .or_else(|| self.creds.as_ref().map(|c| c.relay_address.clone())),
            running: match status.activity {
                SyncActivity::Syncing(p) => {
                    Some((p.docs_done, p.docs_total, p.bytes_sent, p.bytes_received))
                }
                _ => None,
            },
            last_success_ms: ms_of(status.last_success).or(last_ok_from_store),
            error: status.last_error.as_ref().map(sync_message),
            unreachable: status
                .last_error
                .as_ref()
                .is_some_and(SyncFailure::is_transient),
            pending: self.pending(),
            last_received: received,
            last_sent: sent,
            refused: status
                .last_report
                .as_ref()
                .map(|r| refusals(&r.outcome.rejected))
                .unwrap_or_default(),
        };
        let refresh_list =
            received > 0 && status.activity == SyncActivity::Idle && status.last_error.is_none();
        self.send(Event::Sync(view));
        if refresh_list {
            self.people();
        }
    }

    fn load(&self, id: DocId) {
        let Some(engine) = &self.engine else { return };
        match engine.export(id) {
            Ok(json) => self.show(id, json),
            Err(e) => self.send(Event::Error(engine_message(&e))),
        }
    }

    /// Sends a document to the UI, with its warnings when it is a survey.
    fn show(&self, id: DocId, json: Value) {
        if json.get("kind").and_then(Value::as_str) == Some("survey") {
            self.send(Event::SurveyWarnings(id, survey_warnings(&json)));
        }
        self.send(Event::Doc { id, json });
    }

    /// A survey workflow step (who and when recorded in the document), never by writing
    /// `status` directly. A refusal is shown beside the status buttons.
    fn survey_step(&self, id: DocId, step: SurveyStep) {
        let Some(engine) = &self.engine else { return };
        match office::survey_step(engine, id, step) {
            Ok(after) => {
                self.show(id, after);
                self.people();
            }
            Err(e) => self.send(Event::Refused {
                id,
                pointer: "/status".to_owned(),
                message: office_message(&e),
            }),
        }
    }

    /// Writes each survey as its own PDF, or all of them as one CSV, into `dir` under new
    /// names (document ids and the time, never a person's name).
    fn export(&self, ids: &[DocId], format: ExportFormat, dir: &std::path::Path) {
        let Some(engine) = &self.engine else { return };
        if ids.is_empty() {
            return self.send(Event::OfficeError(
                "書き出す調査票を選んでください。".to_owned(),
            ));
        }
        if let Err(e) = std::fs::create_dir_all(dir) {
            return self.send(Event::OfficeError(format!(
                "保存先フォルダを作れません（{}）：{}",
                office::io_reason(&e),
                dir.display()
            )));
        }
        let written = match format {
            ExportFormat::PdfOfficial => write_pdfs(engine, ids, PdfLayout::Official, dir),
            ExportFormat::PdfNumbered => write_pdfs(engine, ids, PdfLayout::Numbered, dir),
            ExportFormat::CsvUtf8 => write_csv(engine, ids, Encoding::Utf8, dir),
            ExportFormat::CsvShiftJis => write_csv(engine, ids, Encoding::ShiftJis, dir),
        };
        match written {
            Ok(files) => self.send(Event::Exported(files)),
            Err(e) => self.send(Event::OfficeError(office_message(&e))),
        }
    }

    fn preview_requests(&self, path: &std::path::Path) -> RequestPreview {
        let mut preview = RequestPreview {
            file: path.to_path_buf(),
            error: None,
            rows: Vec::new(),
        };
        let Some(engine) = &self.engine else {
            return preview;
        };
        match self.plan_requests(engine, path) {
            Ok(plan) => preview.rows = plan.rows,
            Err(e) => preview.error = Some(office_message(&e)),
        }
        preview
    }

    fn plan_requests(
        &self,
        engine: &Engine,
        path: &std::path::Path,
    ) -> Result<office::RequestPlan, OfficeError> {
        let bytes = office::read_request_file(path)?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        office::plan_requests(engine, &name, &bytes)
    }

    /// Checks the file again against the store as it is now, then imports all or nothing.
    fn import_requests(&mut self, path: &std::path::Path) {
        let Some(engine) = &self.engine else { return };
        let done = self.plan_requests(engine, path).and_then(|plan| {
            office::import_requests(engine, &plan)
                .map(|n| (n, office::RowCounts::of(&plan.rows).duplicates))
        });
        match done {
            Ok((created, duplicates)) => {
                self.send(Event::RequestsImported(created, duplicates));
                self.people();
                self.publish_sync();
            }
            Err(e) => self.send(Event::OfficeError(office_message(&e))),
        }
    }

    fn bundle_export(&self, path: &std::path::Path, passphrase: &SecretString) {
        let Some(engine) = &self.engine else { return };
        let office = engine.store().info().office.clone();
        match musubi_engine::sync::bundle::write_file(
            engine.store(),
            std::slice::from_ref(&office),
            now_ms(),
            passphrase,
            None,
            path,
            false,
        ) {
            Ok(summary) => self.send(Event::BundleDone(vec![
                format!(
                    "バンドルを書き出しました：事業所 {office} の文書 {} 件",
                    summary.docs
                ),
                format!("保存先：{}", path.display()),
                "もう一台の端末か事務所の中継サーバーで、同じパスフレーズを使って取り込んでください。"
                    .to_owned(),
            ])),
            Err(e) => self.send(Event::OfficeError(bundle_message(&e))),
        }
    }

    /// Every document passes the rules a relay applies (this tablet's own rules and card
    /// evidence for a new registration) before anything is written.
    fn bundle_import(&mut self, path: &std::path::Path, passphrase: &SecretString) {
        use musubi_engine::sync::bundle;
        let Some(engine) = &self.engine else { return };
        let rules = match self.card.trust_store() {
            Ok(t) => musubi_engine::admit::rules::Rules::new(t),
            Err(m) => return self.send(Event::OfficeError(m)),
        };
        let office = engine.store().info().office.clone();
        let report = bundle::read_file(path, passphrase).and_then(|parsed| {
            bundle::import(
                engine.store(),
                &parsed,
                std::slice::from_ref(&office),
                &rules,
                &|_| musubi_engine::sync::admission::Uploader::TabletBundle,
            )
            .map(|r| (parsed.manifest, r))
        });
        match report {
            Ok((manifest, r)) => {
                let mut lines = vec![
                    format!(
                        "バンドルを取り込みました：事業所 {} の文書 {} 件",
                        manifest.offices.join("、"),
                        manifest.docs
                    ),
                    format!(
                        "新規 {} 件・更新 {} 件・変更なし {} 件",
                        r.new, r.updated, r.unchanged
                    ),
                ];
                if r.other_office > 0 {
                    lines.push(format!(
                        "他の事業所の文書 {} 件は取り込みませんでした。",
                        r.other_office
                    ));
                }
                if !r.conflicted.is_empty() {
                    lines.push(format!(
                        "競合のある文書が {} 件あります。「照合」で確認してください。",
                        r.conflicted.len()
                    ));
                }
                self.send(Event::BundleDone(lines));
                self.people();
                self.publish_sync();
            }
            Err(e) => self.send(Event::OfficeError(bundle_message(&e))),
        }
    }

    /// One recorded step of a case; the board is reloaded either way.
    fn case_step(&mut self, id: DocId, f: impl FnOnce(&Engine) -> Result<(), OfficeError>) {
        let Some(engine) = &self.engine else { return };
        let refused = f(engine).err().map(|e| office_message(&e));
        self.send(Event::CaseRecorded(id, refused));
        self.cases();
    }

    fn set(&self, id: DocId, pointer: String, value: Value) {
        let Some(engine) = &self.engine else { return };
        let ptr = match Pointer::parse(&pointer) {
            Ok(p) => p,
            Err(e) => {
                self.send(Event::Refused {
                    id,
                    pointer,
                    message: unexplained("この項目は指定できません。", &e),
                });
                return;
            }
        };
        match engine.set(id, &ptr, value.clone(), now_ms()) {
            Ok(outcome) => {
                self.send(Event::Saved { id, pointer, value });
                // The document as the engine just validated and wrote it: no second read
                // and decode of what this edit produced.
                self.show(id, outcome.doc);
            }
            Err(e) => self.send(Event::Refused {
                id,
                pointer,
                message: field_message(&e),
            }),
        }
    }

    fn create_survey(&mut self, person: Value) {
        let Some(engine) = &self.engine else { return };
        let subject = json!({"kind": "subject", "person": person.clone()});
        let survey = json!({
            "kind": "survey",
            "status": "draft",
            "subject": person,
            "overview": {},
            "items": {},
            "special_notes": [],
        });
        let inputs = vec![
            ("調査対象者".to_owned(), subject),
            ("認定調査票".to_owned(), survey),
        ];
        match engine.import(&inputs, now_ms()) {
            Ok(out) => {
                if let Some(id) = out.ids.get(1).copied() {
                    self.send(Event::SurveyCreated(id));
                    self.load(id);
                }
                self.people();
                self.publish_sync();
            }
            Err(e) => self.send(Event::Error(engine_message(&e))),
        }
    }

    fn create_visit(&mut self, subject: DocId, date: String) {
        let Some(engine) = &self.engine else { return };
        let record = json!({
            "kind": "visit-record",
            "subject_id": subject.to_string(),
            "visit": {"date": date},
        });
        match engine.import(&[("訪問看護記録書Ⅱ".to_owned(), record)], now_ms()) {
            Ok(out) => {
                if let Some(id) = out.ids.first().copied() {
                    self.send(Event::VisitCreated(id));
                    self.load(id);
                }
                self.people();
                self.publish_sync();
            }
            Err(e) => self.send(Event::Error(engine_message(&e))),
        }
    }

    fn people(&self) {
        let Some(engine) = &self.engine else { return };
        let list = match engine.list() {
            Ok(l) => l,
            Err(e) => {
                self.send(Event::Error(engine_message(&e)));
                return;
            }
        };
        let mut people: Vec<PersonRow> = Vec::new();
        // Person key (保険者番号 + 被保険者番号) → index in `people`; subject id → index.
        let mut by_key: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut by_subject: BTreeMap<String, usize> = BTreeMap::new();
        let mut docs: Vec<(musubi_engine::store::DocSummary, Value)> = Vec::new();
        for s in list {
            match engine.export(s.id) {
                Ok(json) => docs.push((s, json)),
                Err(e) => tracing::warn!(doc = %s.id.short(), error = %e, "listing a document"),
            }
        }
        let key_of = |p: &Value| {
            (
                p.get("insurer_number")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                p.get("insured_number")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            )
        };
        let text = |p: &Value, k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        for (s, json) in docs.iter().filter(|(s, _)| s.kind == "subject") {
            let p = json.get("person").cloned().unwrap_or(Value::Null);
            people.push(PersonRow {
                subject: Some(s.id),
                name: text(&p, "name"),
                kana: text(&p, "name_kana"),
                docs: Vec::new(),
            });
            by_key.insert(key_of(&p), people.len() - 1);
            by_subject.insert(s.id.to_string(), people.len() - 1);
        }
        for (s, json) in docs.iter().filter(|(s, _)| s.kind != "subject") {
            let conflicts = engine.conflicts(s.id).map(|c| c.len()).unwrap_or(0);
            let mut row = DocRow {
                id: s.id,
                kind: s.kind.clone(),
                status: None,
                answered: None,
                date: None,
                conflicts,
                updated_at: s.updated_at,
            };
            let idx = match s.kind.as_str() {
                "survey" => {
                    row.status = Some(Status::parse(json.get("status").and_then(Value::as_str)));
                    row.answered = self
                        .catalog
                        .as_ref()
                        .map(|c| survey_model::answered_count(c, json.get("items")));
                    row.date = json
                        .pointer("/overview/conducted/date")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    let p = json.get("subject").cloned().unwrap_or(Value::Null);
                    let key = key_of(&p);
                    match by_key.get(&key) {
                        Some(i) => *i,
                        None => {
                            people.push(PersonRow {
                                subject: None,
                                name: text(&p, "name"),
                                kana: text(&p, "name_kana"),
                                docs: Vec::new(),
                            });
                            by_key.insert(key, people.len() - 1);
                            people.len() - 1
                        }
                    }
                }
                _ => {
                    row.date = json
                        .pointer("/visit/date")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    let subject = json
                        .get("subject_id")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned();
                    match by_subject.get(&subject) {
                        Some(i) => *i,
                        None => {
                            people.push(PersonRow {
                                subject: None,
                                name: "（この端末にない利用者）".to_owned(),
                                kana: String::new(),
                                docs: Vec::new(),
                            });
                            by_subject.insert(subject, people.len() - 1);
                            people.len() - 1
                        }
                    }
                }
            };
            if let Some(p) = people.get_mut(idx) {
                p.docs.push(row);
            }
        }
        people.sort_by(|a, b| a.kana.cmp(&b.kana).then(a.name.cmp(&b.name)));
        self.send(Event::People(people));
    }
}

/// The relay's refusals as the sync screen lists them: the document's short id and the
/// rule in Japanese (never an English-only code).
pub(super) fn refusals(rejected: &[(DocId, String)]) -> Vec<(String, String)> {
    rejected
        .iter()
        .map(|(id, code)| {
            let (ja, _) = musubi_engine::admit::rejection_text(code);
            (id.short(), ja.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod refusal_tests {
    use super::*;

    #[test]
    fn every_refusal_code_is_listed_in_japanese() {
        for code in musubi_engine::admit::REJECTION_CODES {
            let lines = refusals(&[(DocId::random(), (*code).to_owned())]);
            assert_eq!(lines.len(), 1);
            assert!(!lines[0].1.is_ascii(), "{code}: {}", lines[0].1);
        }
    }
}

/// Issue 18: whatever goes wrong, the screen gets a Japanese sentence: no English error
/// text and no JSON path.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod message_tests {
    use super::*;

    /// Japanese, and no English word: the only ASCII words allowed are names of formats
    /// and of the log file.
    fn assert_japanese(m: &str) {
        assert!(
            m.chars().any(|c| ('\u{3040}'..='\u{9fff}').contains(&c)),
            "not Japanese: {m}"
        );
        let allowed = [
            "UTF",
            "Shift_JIS",
            "JIS",
            "Shift",
            "YYYY",
            "MM",
            "DD",
            "logs",
            "musubi",
            "log",
            "PDF",
            "CSV",
            "JSON",
            "init",
        ];
        for word in m
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.chars().filter(char::is_ascii_alphabetic).count() >= 2)
        {
            assert!(allowed.contains(&word), "English word {word:?} in: {m}");
        }
        assert!(
            !m.contains("/items") && !m.contains("/overview"),
            "a path: {m}"
        );
    }

    #[test]
    fn no_failure_reaches_the_screen_in_english_or_as_a_path() {
        let io = || std::io::Error::other("disk on fire");
        let mut messages = vec![
            store_message(&StoreError::WrongPassphrase),
            store_message(&StoreError::NoRecoveryKey),
            store_message(&StoreError::AlreadyInitialised {
                dir: PathBuf::from("/tmp/x"),
            }),
            engine_message(&EngineError::NotFound(DocId::random())),
            office_message(&OfficeError::Io {
                what: "writing /tmp/x".to_owned(),
                source: io(),
            }),
            office_message(&OfficeError::Engine(Box::new(EngineError::NotFound(
                DocId::random(),
            )))),
            office_message(&OfficeError::Export(ExportError::Font("bad".to_owned()))),
            office_message(&OfficeError::Export(ExportError::Invalid {
                doc: "x".to_owned(),
                paths: vec!["/items/1-3".to_owned()],
            })),
            office_message(&OfficeError::Workflow(
                musubi_engine::care::workflow::WorkflowError::HardRules { count: 2 },
            )),
            bundle_message(&BundleError::WrongPassphrase),
            bundle_message(&BundleError::Checksum),
            bundle_message(&BundleError::Open(io())),
            unexplained("同期を開始できませんでした。", &io()),
        ];
        for f in [
            SyncFailure::Revoked,
            SyncFailure::UnknownDevice,
            SyncFailure::SessionLimit,
        ] {
            messages.push(sync_message(&f));
        }
        for m in &messages {
            assert_japanese(m);
        }
    }
}
