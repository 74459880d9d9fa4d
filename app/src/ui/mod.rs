//! The tablet app (egui/eframe): `musubi` with no subcommand opens it.
//!
//! Shape: [`AppUi`] is the UI state and draws the screens; every request to the engine is
//! a [`command::Command`] handled in order by the worker thread ([`worker`]), which owns
//! the engine, the store and the background sync and answers with [`command::Event`]s.
//! **The UI thread never blocks on disk, network or card I/O**: it only queues commands
//! and drains events at the start of each frame.

pub mod app;
pub mod card_flow;
mod card_screen;
mod cases;
pub mod command;
pub mod display;
pub mod fonts;
mod form;
mod home;
mod office_screen;
mod reconcile;
pub mod survey;
pub mod survey_model;
mod sync_screen;
mod unlock;
mod visit;
pub mod worker;

use std::sync::Arc;

pub use app::{AppUi, ItemWarning, Screen};
pub use card_flow::{CardAccess, CardSlot};
pub use reconcile::{attested_label, declared_mismatch, field_label, value_label};
pub use worker::{Wake, WorkerConfig};

use musubi_engine::store::SecretString;
use zeroize::Zeroizing;

/// Which screen to open after an automatic unlock (`MUSUBI_UI_START`), used by
/// `scripts/screenshots.sh` and demos.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartScreen {
    /// The visit list.
    Home,
    /// The first survey in the list.
    Survey,
    /// The first visit record in the list.
    Visit,
    /// The sync screen.
    Sync,
    /// Reconciliation of the first document with conflicts.
    Reconcile,
    /// 本人確認・事業所登録 for the first person.
    Card,
    /// The 要介護認定 progress board.
    Cases,
    /// 事務: 書き出し (the surveys selected).
    Office,
    /// 事務: 依頼の取込 with the preview of `MUSUBI_UI_REQUESTS`.
    Requests,
    /// 事務: バンドル.
    Bundle,
    /// The first submitted survey, with a 訂正 being prepared.
    Submit,
    /// The progress board with the record panel of the first case open.
    CaseRecord,
}

impl StartScreen {
    /// `home`, `survey`, `visit`, `sync`, `reconcile`, `card`, `cases`, `office`,
    /// `requests`, `bundle`, `submit`, `case-record`.
    pub fn parse(s: &str) -> Option<StartScreen> {
        Some(match s {
            "home" => StartScreen::Home,
            "survey" => StartScreen::Survey,
            "visit" => StartScreen::Visit,
            "sync" => StartScreen::Sync,
            "reconcile" => StartScreen::Reconcile,
            "card" => StartScreen::Card,
            "cases" => StartScreen::Cases,
            "office" => StartScreen::Office,
            "requests" => StartScreen::Requests,
            "bundle" => StartScreen::Bundle,
            "submit" => StartScreen::Submit,
            "case-record" => StartScreen::CaseRecord,
            _ => return None,
        })
    }
}

/// Unlock with a passphrase given in the environment and open a start screen. On the
/// card screen, PINs given in the environment (`MUSUBI_CARD_PIN`,
/// `MUSUBI_CARD_SUPPORT_PIN`; screenshots of the virtual card only) are entered once the
/// card has been read.
struct Autopilot {
    passphrase: Option<SecretString>,
    start: StartScreen,
    done: bool,
    card_pins: Option<(Zeroizing<String>, Option<Zeroizing<String>>)>,
}

impl Autopilot {
    fn step(&mut self, ui: &mut AppUi) {
        if self.done {
            if self.start == StartScreen::CaseRecord
                && ui.case_edit.id.is_none()
                && let Some(first) = ui.cases.as_ref().and_then(|rows| rows.first())
                && let Ok(id) = first.id.parse()
            {
                ui.open_case_record(id);
            }
            if let Screen::Card(id) = ui.screen()
                && !ui.busy()
                && ui.card.state.as_ref().is_some_and(|s| s.error.is_none())
                && let Some((auth_pin, support_pin)) = self.card_pins.take()
            {
                ui.card.running = true;
                ui.send(command::Command::CardVerify {
                    subject: id,
                    auth_pin,
                    support_pin,
                    allow_last_try: false,
                });
            }
            return;
        }
        if let Some(p) = self.passphrase.take() {
            ui.send(command::Command::Unlock { passphrase: p });
            return;
        }
        if ui.screen() != Screen::Home || ui.busy() {
            return;
        }
        let docs: Vec<_> = ui.people().iter().flat_map(|p| p.docs.clone()).collect();
        let target = match self.start {
            StartScreen::Home => Some(Screen::Home),
            StartScreen::Sync => Some(Screen::Sync),
            StartScreen::Survey => docs
                .iter()
                .find(|d| d.kind == "survey")
                .map(|d| Screen::Survey(d.id)),
            StartScreen::Visit => docs
                .iter()
                .find(|d| d.kind == "visit-record")
                .map(|d| Screen::Visit(d.id)),
            StartScreen::Reconcile => Some(Screen::Reconcile(
                docs.iter().find(|d| d.conflicts > 0).map(|d| d.id),
            )),
            StartScreen::Card => ui
                .people()
                .iter()
                .find_map(|p| p.subject.or_else(|| p.docs.first().map(|d| d.id)))
                .map(Screen::Card),
            StartScreen::Cases => Some(Screen::Cases),
            StartScreen::Submit => docs
                .iter()
                .find(|d| d.status == Some(command::Status::Submitted))
                .map(|d| {
                    ui.amend.item = Some("1-7".to_owned());
                    ui.amend.code = Some(1);
                    ui.amend.reason = "調査員の記入誤り（架空の例）".to_owned();
                    Screen::Survey(d.id)
                }),
            StartScreen::CaseRecord => Some(Screen::Cases),
            StartScreen::Office | StartScreen::Requests | StartScreen::Bundle => {
                ui.office_start(self.start, &docs);
                Some(Screen::Office)
            }
        };
        if let Some(t) = target {
            if t != Screen::Home {
                ui.go(t);
            }
            self.done = true;
        }
    }
}

/// The eframe application.
pub struct MusubiApp {
    ui: AppUi,
    autopilot: Option<Autopilot>,
    first_frame: bool,
}

impl MusubiApp {
    /// Sets up fonts and style and starts the worker.
    pub fn new(ctx: &egui::Context, config: WorkerConfig) -> std::io::Result<MusubiApp> {
        fonts::install(ctx);
        let repaint = ctx.clone();
        let wake: Wake = Arc::new(move || repaint.request_repaint());
        let autopilot = std::env::var("MUSUBI_PASSPHRASE")
            .ok()
            .filter(|p| !p.is_empty())
            .map(|p| Autopilot {
                card_pins: std::env::var("MUSUBI_CARD_PIN")
                    .ok()
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let support = std::env::var("MUSUBI_CARD_SUPPORT_PIN")
                            .ok()
                            .filter(|p| !p.is_empty())
                            .map(Zeroizing::new);
                        (Zeroizing::new(p), support)
                    }),
                passphrase: Some(SecretString::from(p)),
                start: std::env::var("MUSUBI_UI_START")
                    .ok()
                    .and_then(|s| StartScreen::parse(&s))
                    .unwrap_or(StartScreen::Home),
                done: false,
            });
        Ok(MusubiApp {
            ui: AppUi::new(config, wake)?,
            autopilot,
            first_frame: true,
        })
    }

    /// The UI state.
    pub fn state(&mut self) -> &mut AppUi {
        &mut self.ui
    }
}

impl eframe::App for MusubiApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.ui.poll();
        if let Some(a) = &mut self.autopilot {
            a.step(&mut self.ui);
        }
        self.ui.ui(ui);
        if self.first_frame {
            self.first_frame = false;
            // The launch benchmark waits for this line (MUSUBI_LOG=musubi_app=info).
            tracing::info!("first frame drawn");
        }
    }
}

/// Opens the app window (1280×800, a typical tablet) and runs until it is closed.
pub fn run(config: WorkerConfig) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_inner_size([1280.0, 800.0])
            .with_min_inner_size([800.0, 600.0])
            .with_title("musubi 結び")
            // Matches the desktop entry (musubi.desktop, StartupWMClass) and its icon.
            .with_app_id("musubi"),
        ..Default::default()
    };
    eframe::run_native(
        "musubi",
        options,
        Box::new(move |cc| {
            let app = MusubiApp::new(&cc.egui_ctx, config)?;
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow::anyhow!("the app window could not be opened: {e}"))
}
