//! The UI state ([`AppUi`]): which screen is shown, what the worker last reported, and the
//! text being typed. Rendering reads this state and queues [`Command`]s; replies arrive
//! as [`Event`]s, drained at the start of every frame. Nothing here touches disk,
//! network or a card.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use musubi_engine::doc::{Conflict, HistoryEntry};
use musubi_engine::ids::DocId;
use musubi_engine::schema::SurveyCatalog;
use serde_json::Value;

use musubi_engine::card::register::ConsentMethod;
use musubi_engine::care::case::CaseRow;
use zeroize::Zeroizing;

use super::command::{
    CardOutcome, CardState, Command, DeviceView, Event, PersonRow, RegistrationRow, SyncView,
};
use super::display::DisplaySettings;
use super::worker::{Busy, Wake, WorkerConfig, WorkerHandle};

/// The screens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    /// Passphrase or office recovery.
    Unlock,
    /// The visit list.
    Home,
    /// A new person and their draft survey.
    NewPerson,
    /// The 認定調査票 of a document.
    Survey(DocId),
    /// A 訪問看護記録書Ⅱ.
    Visit(DocId),
    /// Sync status.
    Sync,
    /// Office reconciliation: conflicts and history (optionally of one document).
    Reconcile(Option<DocId>),
    /// 本人確認・事業所登録 for the person of a subject or survey document.
    Card(DocId),
    /// The 要介護認定 progress board.
    Cases,
    /// 事務: exports, the municipality's requests, bundles.
    Office,
}

/// One soft consistency warning beside an item: (code, Japanese message). Supplied by the
/// engine side (`musubi_engine::care::check_survey`, helper `care`); see
/// [`AppUi::set_item_warnings`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemWarning {
    /// Stable code of the check.
    pub code: String,
    /// What to look at, in Japanese.
    pub message: String,
}

/// Unlock screen state.
#[derive(Default)]
pub(super) struct UnlockForm {
    pub passphrase: String,
    pub recovery: bool,
    pub identity_path: String,
    pub new_passphrase: String,
    pub new_passphrase2: String,
    pub error: Option<String>,
    pub busy: bool,
}

/// The new-person form.
#[derive(Default)]
pub(super) struct NewPersonForm {
    pub name: String,
    pub kana: String,
    pub insurer: String,
    pub insured: String,
    pub birth: String,
    pub sex: Option<i64>,
    pub address: String,
    pub error: Option<String>,
}

/// Survey screen state.
#[derive(Default)]
pub(super) struct SurveyUi {
    /// Show 概況調査 (true) or 基本調査 (false).
    pub overview: bool,
    /// Scroll to this item on the next frame.
    pub jump_to: Option<String>,
    /// The item the last jump went to.
    pub last_jump: Option<String>,
    /// Text of a note being started, by item.
    pub new_note: HashMap<String, String>,
    /// Notes appended but not yet seen in a reloaded document: (doc, index, item).
    pub pending_notes: Vec<(DocId, usize, String)>,
}

/// The parts of the 事務 screen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OfficeTab {
    /// 書き出し: PDF and CSV.
    #[default]
    Export,
    /// 依頼の取込: the municipality's request file.
    Requests,
    /// バンドル: documents carried as an encrypted file.
    Bundle,
}

/// The 事務 screen's state.
#[derive(Default)]
pub(super) struct OfficeUi {
    pub tab: OfficeTab,
    /// Surveys chosen for export.
    pub selected: std::collections::BTreeSet<DocId>,
    pub format: super::command::ExportFormat,
    /// The export folder as typed (filled in from the data directory's parent at start).
    pub dir: String,
    /// Files the last export wrote.
    pub exported: Vec<std::path::PathBuf>,
    /// The request file as typed.
    pub request_file: String,
    pub preview: Option<super::command::RequestPreview>,
    /// The last import: (created, duplicates).
    pub imported: Option<(usize, usize)>,
    /// Bundle file to write, and its passphrase twice.
    pub bundle_out: String,
    pub bundle_pass: Zeroizing<String>,
    pub bundle_pass2: Zeroizing<String>,
    /// Bundle file to read, and its passphrase.
    pub bundle_in: String,
    pub bundle_in_pass: Zeroizing<String>,
    /// What the last bundle step did.
    pub bundle_report: Vec<String>,
    /// The last refusal on this screen.
    pub error: Option<String>,
}

/// A correction of a submitted survey being prepared (訂正).
#[derive(Default)]
pub(super) struct AmendUi {
    /// The item key (e.g. "1-3").
    pub item: Option<String>,
    /// The corrected choice.
    pub code: Option<i64>,
    /// 訂正理由.
    pub reason: String,
}

/// The record panel of the progress board.
#[derive(Default)]
pub(super) struct CaseEditUi {
    /// The case whose panel is open.
    pub id: Option<DocId>,
    /// Index into `case::PHASE_FIELDS`.
    pub field: usize,
    pub value: String,
    /// Index into `case::EXCEPTIONS`.
    pub exception: usize,
    pub exception_date: String,
    pub expected_by: String,
    pub reason: String,
    /// The last refusal, or what was recorded.
    pub result: Option<Result<String, String>>,
}

/// The card screen: PINs being typed (zeroised when dropped), the last card state and
/// result, and the consent form.
pub(super) struct CardUi {
    /// The person the screen is for (subject or survey document).
    pub target: Option<DocId>,
    /// 利用者証明用暗証番号 as typed.
    pub auth_pin: Zeroizing<String>,
    /// 券面事項入力補助用暗証番号 as typed.
    pub support_pin: Zeroizing<String>,
    /// The pad types into the support PIN (else the authentication PIN).
    pub pad_on_support: bool,
    /// Also read and compare name and birth date (needs the support PIN).
    pub compare_basic4: bool,
    /// The surveyor confirmed a try with only one left.
    pub confirm_last_try: bool,
    /// A verification is running.
    pub running: bool,
    /// Reader and card.
    pub state: Option<CardState>,
    /// The last result.
    pub result: Option<CardOutcome>,
    /// Registrations of the person.
    pub registrations: Vec<RegistrationRow>,
    /// Consent form.
    pub consented_by: String,
    pub relationship: String,
    pub scope: [bool; CONSENT_SCOPES.len()],
    pub method: Option<ConsentMethod>,
    pub withdraw_reason: String,
    pub consent_error: Option<String>,
}

/// The 同意の範囲 offered on the consent form.
pub(super) const CONSENT_SCOPES: [&str; 2] = [
    "介護サービス計画の作成のための個人情報の利用",
    "介護情報基盤での担当事業所としての情報の閲覧",
];

impl Default for CardUi {
    fn default() -> Self {
        CardUi {
            target: None,
            auth_pin: Zeroizing::new(String::new()),
            support_pin: Zeroizing::new(String::new()),
            pad_on_support: false,
            compare_basic4: true,
            confirm_last_try: false,
            running: false,
            state: None,
            result: None,
            registrations: Vec::new(),
            consented_by: String::new(),
            relationship: "本人".to_owned(),
            scope: [true; CONSENT_SCOPES.len()],
            method: None,
            withdraw_reason: String::new(),
            consent_error: None,
        }
    }
}

/// The whole UI state.
pub struct AppUi {
    pub(super) worker: WorkerHandle,
    pub(super) outbox: VecDeque<Command>,
    pub(super) in_flight: usize,
    pub(super) screen: Screen,
    pub(super) device: Option<DeviceView>,
    pub(super) people: Vec<PersonRow>,
    pub(super) sync: SyncView,
    pub(super) docs: HashMap<DocId, Value>,
    /// Text being typed, by (document, pointer); the document's value otherwise.
    pub(super) edits: HashMap<(DocId, String), String>,
    /// Refusals by (document, pointer).
    pub(super) field_errors: HashMap<(DocId, String), String>,
    pub(super) conflicts: HashMap<DocId, Vec<Conflict>>,
    pub(super) history: HashMap<DocId, Vec<HistoryEntry>>,
    pub(super) warnings: HashMap<DocId, BTreeMap<String, Vec<ItemWarning>>>,
    pub(super) message: Option<String>,
    pub(super) unlock: UnlockForm,
    pub(super) new_person: NewPersonForm,
    pub(super) survey: SurveyUi,
    pub(super) catalog: Option<Arc<SurveyCatalog>>,
    pub(super) visit_date: String,
    pub(super) card: CardUi,
    pub(super) cases: Option<Vec<CaseRow>>,
    pub(super) office: OfficeUi,
    pub(super) amend: AmendUi,
    pub(super) case_edit: CaseEditUi,
    /// 表示設定 as chosen, and what was last applied to the context.
    pub(super) display: DisplaySettings,
    display_applied: Option<DisplaySettings>,
}

impl AppUi {
    /// Starts the worker and shows the unlock screen.
    pub fn new(config: WorkerConfig, wake: Wake) -> std::io::Result<AppUi> {
        let export_dir = default_export_dir(&config.data_dir);
        let worker = WorkerHandle::spawn(config, wake)?;
        Ok(AppUi {
            worker,
            outbox: VecDeque::new(),
            // The worker reads the display settings first and reports it done.
            in_flight: 1,
            screen: Screen::Unlock,
            device: None,
            people: Vec::new(),
            sync: SyncView::default(),
            docs: HashMap::new(),
            edits: HashMap::new(),
            field_errors: HashMap::new(),
            conflicts: HashMap::new(),
            history: HashMap::new(),
            warnings: HashMap::new(),
            message: None,
            unlock: UnlockForm::default(),
            new_person: NewPersonForm::default(),
            survey: SurveyUi::default(),
            catalog: SurveyCatalog::embedded().ok().map(Arc::new),
            visit_date: chrono::Local::now().format("%Y-%m-%d").to_string(),
            card: CardUi::default(),
            cases: None,
            office: OfficeUi {
                dir: export_dir,
                ..OfficeUi::default()
            },
            amend: AmendUi::default(),
            case_edit: CaseEditUi::default(),
            display: DisplaySettings::default(),
            display_applied: None,
        })
    }

    /// The screen shown.
    pub fn screen(&self) -> Screen {
        self.screen
    }

    /// Shows another screen (and asks for what it needs).
    pub fn go(&mut self, screen: Screen) {
        match screen {
            Screen::Survey(id) | Screen::Visit(id) => self.send(Command::Open(id)),
            Screen::Reconcile(Some(id)) => {
                self.send(Command::Conflicts(id));
                self.send(Command::History(id));
            }
            Screen::Home | Screen::Reconcile(None) | Screen::Sync => {
                self.send(Command::Refresh);
            }
            Screen::Card(id) => {
                if self.card.target != Some(id) {
                    self.card = CardUi {
                        target: Some(id),
                        ..CardUi::default()
                    };
                }
                self.send(Command::Open(id));
                self.send(Command::Registrations(id));
                self.send(Command::CardStatus);
            }
            Screen::Cases => self.send(Command::Cases),
            Screen::Office => {
                self.office.error = None;
                self.send(Command::Refresh);
            }
            Screen::Unlock | Screen::NewPerson => {}
        }
        self.screen = screen;
    }

    /// The current content of a loaded document.
    pub fn doc(&self, id: DocId) -> Option<&Value> {
        self.docs.get(&id)
    }

    /// The visit list as last reported.
    pub fn people(&self) -> &[PersonRow] {
        &self.people
    }

    /// The last sync status.
    pub fn sync_view(&self) -> &SyncView {
        &self.sync
    }

    /// The last message shown in the status line (errors in Japanese).
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// Replaces the soft warnings shown beside the items of a survey (item key → list).
    /// The worker supplies them from `musubi_engine::care::check_survey` whenever it
    /// loads a survey (after every saved edit).
    pub fn set_item_warnings(&mut self, id: DocId, by_item: BTreeMap<String, Vec<ItemWarning>>) {
        self.warnings.insert(id, by_item);
    }

    /// Queues a command for the worker (never waits: a full queue keeps it in the outbox).
    pub fn send(&mut self, cmd: Command) {
        self.outbox.push_back(cmd);
        self.flush_outbox();
    }

    fn flush_outbox(&mut self) {
        while let Some(cmd) = self.outbox.pop_front() {
            match self.worker.try_send(cmd) {
                Ok(()) => self.in_flight += 1,
                Err(Busy(cmd)) => {
                    self.outbox.push_front(cmd);
                    break;
                }
            }
        }
    }

    /// Commands sent and not yet finished (plus any still in the outbox).
    pub fn busy(&self) -> bool {
        self.in_flight > 0 || !self.outbox.is_empty()
    }

    /// Applies every event that is there, without waiting. Called at the start of each
    /// frame.
    pub fn poll(&mut self) {
        self.flush_outbox();
        while let Some(ev) = self.worker.try_recv() {
            self.apply(ev);
        }
    }

    /// Waits until every queued command is finished (tests, benchmarks and the
    /// screenshot driver; the UI thread itself never waits). False on timeout.
    pub fn wait_idle(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.poll();
        while self.busy() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            if let Some(ev) = self.worker.recv_timeout(left) {
                self.apply(ev);
            }
            self.flush_outbox();
        }
        true
    }

    /// Waits for the next event (e.g. a background sync status) and applies it.
    pub fn wait_event(&mut self, timeout: Duration) -> bool {
        match self.worker.recv_timeout(timeout) {
            Some(ev) => {
                self.apply(ev);
                true
            }
            None => false,
        }
    }

    fn apply(&mut self, ev: Event) {
        match ev {
            Event::Done => self.in_flight = self.in_flight.saturating_sub(1),
            Event::Unlocked(device) => {
                self.device = Some(device);
                self.unlock = UnlockForm::default();
                self.screen = Screen::Home;
            }
            Event::UnlockFailed(msg) => {
                self.unlock.busy = false;
                self.unlock.error = Some(msg);
            }
            Event::People(p) => self.people = p,
            Event::SurveyWarnings(id, by_item) => self.set_item_warnings(id, by_item),
            Event::Doc { id, json } => {
                let notes = json
                    .get("special_notes")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                self.survey
                    .pending_notes
                    .retain(|(d, i, _)| *d != id || *i >= notes);
                self.docs.insert(id, json);
            }
            Event::Saved { id, pointer, value } => {
                let key = (id, pointer);
                self.field_errors.remove(&key);
                if let (Some(buf), Value::String(s)) = (self.edits.get(&key), &value)
                    && buf == s
                {
                    self.edits.remove(&key);
                }
                if let Screen::Reconcile(Some(d)) = self.screen
                    && d == id
                {
                    self.send(Command::Conflicts(id));
                    self.send(Command::History(id));
                }
            }
            Event::Refused {
                id,
                pointer,
                message,
            } => {
                self.field_errors.insert((id, pointer), message);
            }
            Event::SurveyCreated(id) => {
                self.new_person = NewPersonForm::default();
                self.survey = SurveyUi::default();
                self.screen = Screen::Survey(id);
            }
            Event::VisitCreated(id) => self.screen = Screen::Visit(id),
            Event::Conflicts(id, c) => {
                self.conflicts.insert(id, c);
            }
            Event::History(id, h) => {
                self.history.insert(id, h);
            }
            Event::Sync(v) => self.sync = v,
            Event::Card(state) => self.card.state = Some(state),
            Event::CardResult(outcome) => {
                self.card.running = false;
                self.card.confirm_last_try = false;
                self.card.result = Some(outcome);
            }
            Event::Registrations(doc, rows) => {
                if self.card.target == Some(doc) {
                    self.card.registrations = rows;
                }
            }
            Event::Cases(rows) => self.cases = Some(rows),
            Event::Display(settings) => self.display = settings,
            Event::Exported(files) => {
                self.office.error = None;
                self.office.exported = files;
            }
            Event::RequestPreview(p) => {
                self.office.error = None;
                self.office.imported = None;
                self.office.preview = Some(p);
            }
            Event::RequestsImported(created, duplicates) => {
                self.office.error = None;
                self.office.preview = None;
                self.office.imported = Some((created, duplicates));
            }
            Event::BundleDone(lines) => {
                self.office.error = None;
                self.office.bundle_report = lines;
            }
            Event::OfficeError(m) => self.office.error = Some(m),
            Event::CaseRecorded(id, refused) => {
                if self.case_edit.id == Some(id) {
                    self.case_edit.result = Some(match refused {
                        Some(why) => Err(why),
                        None => Ok("記録しました。".to_owned()),
                    });
                }
            }
            Event::Error(m) => {
                if self.screen == Screen::NewPerson {
                    self.new_person.error = Some(m.clone());
                }
                self.message = Some(m);
            }
        }
    }

    /// Draws one frame.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        self.poll();
        if self.display_applied != Some(self.display) {
            self.display.apply(ui.ctx());
            self.display_applied = Some(self.display);
        }
        if self.screen == Screen::Unlock {
            egui::CentralPanel::default().show(ui, |ui| self.unlock_screen(ui));
            return;
        }
        egui::Panel::top("musubi-top").show(ui, |ui| self.top_bar(ui));
        egui::Panel::bottom("musubi-status").show(ui, |ui| {
            ui.horizontal(|ui| match &self.message {
                Some(m) => {
                    ui.colored_label(ui.visuals().warn_fg_color, m.as_str());
                    if ui.small_button("閉じる").clicked() {
                        self.message = None;
                    }
                }
                None => {
                    ui.weak("入力はその場で端末に保存されます（保存ボタンはありません）。");
                }
            });
        });
        egui::CentralPanel::default().show(ui, |ui| match self.screen {
            Screen::Unlock => {}
            Screen::Home => self.home_screen(ui),
            Screen::NewPerson => self.new_person_screen(ui),
            Screen::Survey(id) => self.survey_screen(ui, id),
            Screen::Visit(id) => self.visit_screen(ui, id),
            Screen::Sync => self.sync_screen(ui),
            Screen::Reconcile(sel) => self.reconcile_screen(ui, sel),
            Screen::Card(id) => self.card_screen(ui, id),
            Screen::Cases => self.cases_screen(ui),
            Screen::Office => self.office_screen(ui),
        });
    }

    /// 表示設定: applied at once, kept on the device by the worker.
    pub(super) fn display_controls(&mut self, ui: &mut egui::Ui) {
        if self.display.controls(ui) {
            self.send(Command::SaveDisplay(self.display));
        }
    }

    /// The display settings in use.
    pub fn display(&self) -> DisplaySettings {
        self.display
    }

    fn top_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("musubi 結び");
            ui.separator();
            self.nav_bar(ui);
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                // Stays open while choosing, so brightness and size can be tried in turn.
                egui::containers::menu::MenuButton::new("表示")
                    .config(
                        egui::containers::menu::MenuConfig::new()
                            .close_behavior(egui::PopupCloseBehavior::CloseOnClickOutside),
                    )
                    .ui(ui, |ui| self.display_controls(ui));
                let (text, color) = self.connection_label(ui);
                ui.colored_label(color, text);
                if let Some(d) = &self.device {
                    // Office and device only where they fit: on a narrow screen the
                    // navigation and the connection state matter more.
                    for text in [
                        format!("事業所 {} ・ {}", d.office, d.device_name),
                        format!("端末 {}", d.device_name),
                    ] {
                        let width = egui::WidgetText::from(text.as_str())
                            .into_galley(
                                ui,
                                Some(egui::TextWrapMode::Extend),
                                f32::INFINITY,
                                egui::TextStyle::Body,
                            )
                            .size()
                            .x;
                        if width + ui.spacing().item_spacing.x * 2.0 <= ui.available_width() {
                            ui.weak(text);
                            break;
                        }
                    }
                }
            });
        });
    }

    /// The navigation buttons.
    fn nav_bar(&mut self, ui: &mut egui::Ui) {
        let here = self.screen;
        if ui
            .add(egui::Button::selectable(
                matches!(here, Screen::Home),
                "訪問一覧",
            ))
            .clicked()
        {
            self.go(Screen::Home);
        }
        let sync_label = if self.sync.pending > 0 {
            format!("同期（未送信 {}）", self.sync.pending)
        } else {
            "同期".to_owned()
        };
        if ui
            .add(egui::Button::selectable(here == Screen::Sync, sync_label))
            .clicked()
        {
            self.go(Screen::Sync);
        }
        let conflicted: usize = self
            .people
            .iter()
            .flat_map(|p| &p.docs)
            .filter(|d| d.conflicts > 0)
            .count();
        let rec_label = if conflicted > 0 {
            format!("照合（競合 {conflicted}）")
        } else {
            "照合".to_owned()
        };
        if ui
            .add(egui::Button::selectable(
                matches!(here, Screen::Reconcile(_)),
                rec_label,
            ))
            .clicked()
        {
            self.go(Screen::Reconcile(None));
        }
        if ui
            .add(egui::Button::selectable(
                here == Screen::Cases,
                "認定の進捗",
            ))
            .clicked()
        {
            self.go(Screen::Cases);
        }
        if ui
            .add(egui::Button::selectable(here == Screen::Office, "事務"))
            .clicked()
        {
            self.go(Screen::Office);
        }
    }

    /// オンライン / オフライン / 同期中 / 未登録, for the header.
    pub(super) fn connection_label(&self, ui: &egui::Ui) -> (String, egui::Color32) {
        let s = &self.sync;
        if !s.enrolled {
            return (
                "● 未登録（端末内のみ）".to_owned(),
                ui.visuals().weak_text_color(),
            );
        }
        if let Some((done, total, _, _)) = s.running {
            return (
                format!("● 同期中 {done}/{total}"),
                egui::Color32::from_rgb(0x20, 0x70, 0xc0),
            );
        }
        if s.unreachable || (s.error.is_some() && s.last_success_ms.is_none()) {
            return (
                "● オフライン".to_owned(),
                egui::Color32::from_rgb(0xb0, 0x50, 0x00),
            );
        }
        if s.error.is_some() {
            return ("● 同期エラー".to_owned(), ui.visuals().error_fg_color);
        }
        match s.last_success_ms {
            Some(ms) => (
                format!("● オンライン（最終同期 {}）", format_ms(ms)),
                egui::Color32::from_rgb(0x1a, 0x80, 0x3a),
            ),
            None => ("● 未同期".to_owned(), ui.visuals().weak_text_color()),
        }
    }
}

/// Unix ms as local 年/月/日 時:分.
pub(super) fn format_ms(ms: i64) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_millis_opt(ms).single() {
        Some(t) => t.format("%Y/%m/%d %H:%M").to_string(),
        None => "—".to_owned(),
    }
}

/// Where the 書き出し screen writes unless changed: `musubi-書き出し` in the home folder (where
/// an office administrator looks for files), else beside the data directory.
fn default_export_dir(data_dir: &std::path::Path) -> String {
    let base = std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .filter(|h| h.is_absolute())
        .unwrap_or_else(|| data_dir.to_path_buf());
    base.join("musubi-書き出し").display().to_string()
}
