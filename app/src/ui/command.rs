//! The closed set of requests the UI sends to the engine-side worker ([`Command`]) and the
//! replies it gets back ([`Event`]). Nothing else crosses between the two threads.

use super::display::DisplaySettings;
use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::office::{CaseException, PlannedRow, SurveyStep};

use musubi_engine::card::PinStatus;
use musubi_engine::card::register::{Consent, SharingState};
use musubi_engine::care::case::CaseRow;
use musubi_engine::doc::{Conflict, HistoryEntry};
use musubi_engine::ids::DocId;
use musubi_engine::store::SecretString;
use serde_json::Value;
use zeroize::Zeroizing;

use super::app::ItemWarning;

/// A request from the UI. Each one is answered by zero or more [`Event`]s and then exactly
/// one [`Event::Done`].
pub enum Command {
    /// Open the store with the device passphrase.
    Unlock {
        /// The passphrase typed on the unlock screen.
        passphrase: SecretString,
    },
    /// Set a new passphrase with the office recovery identity, then open the store.
    Recover {
        /// The office recovery identity file (`AGE-SECRET-KEY-1…`), read by the worker.
        identity_file: std::path::PathBuf,
        /// The new passphrase.
        new_passphrase: SecretString,
    },
    /// Reload the visit list, pending changes and conflicts.
    Refresh,
    /// Load one document for a form.
    Open(DocId),
    /// One edit, saved at once (an ordinary engine `set`).
    Set {
        /// The document.
        id: DocId,
        /// JSON pointer of the field.
        pointer: String,
        /// The new value.
        value: Value,
    },
    /// A survey workflow step (調査完了, 作成中に戻す, 提出, 訂正 with its reason), recorded
    /// with who and when by `musubi_app::office::survey_step`, never by writing `status`.
    SurveyStep {
        /// The survey.
        id: DocId,
        /// The step (boxed: a 訂正 carries its value and reason).
        step: Box<SurveyStep>,
    },
    /// Create a person (subject) and a draft 認定調査票 for them.
    CreateSurvey {
        /// The person block (`subject.person` / `survey.subject`).
        person: Value,
    },
    /// Create a draft 訪問看護記録書Ⅱ for a person.
    CreateVisit {
        /// The subject document.
        subject: DocId,
        /// Visit date (YYYY-MM-DD).
        date: String,
    },
    /// Load a document's conflicts.
    Conflicts(DocId),
    /// Load a document's audit history.
    History(DocId),
    /// Sync with the relay now.
    SyncNow,
    /// Read the reader, the card and the PIN tries left (no try is spent).
    CardStatus,
    /// 本人確認 with the My Number card for a subject (or a survey's person); registers the
    /// office on success. The PINs are dropped (zeroised) by the worker after use.
    CardVerify {
        /// Subject or survey document.
        subject: DocId,
        /// 利用者証明用暗証番号.
        auth_pin: Zeroizing<String>,
        /// 券面事項入力補助用暗証番号 (None: name and birth date are not compared).
        support_pin: Option<Zeroizing<String>>,
        /// The surveyor confirmed a try when only one is left.
        allow_last_try: bool,
    },
    /// Register the verification that is waiting because name or birth date differ
    /// (`true`, a staff decision) or discard it (`false`).
    CardDecideMismatch(bool),
    /// Load the registrations of a subject (or of a survey's person).
    Registrations(DocId),
    /// Record the person's consent on a registration.
    RecordConsent {
        /// The registration.
        registration: DocId,
        /// The consent.
        consent: Consent,
    },
    /// Record a withdrawal of consent (appended; nothing is deleted).
    WithdrawConsent {
        /// The registration.
        registration: DocId,
        /// 理由 (may be empty).
        reason: String,
    },
    /// Load the 要介護認定 cases for the progress board.
    Cases,
    /// Keep the display settings on the device.
    SaveDisplay(DisplaySettings),
    /// Write surveys as PDF (one file each) or CSV (one file) into a folder; the file
    /// names are new (never replacing a file) and carry no personal data.
    Export {
        /// The surveys, in order.
        ids: Vec<DocId>,
        /// PDF layout or CSV encoding.
        format: ExportFormat,
        /// The folder (created when missing).
        dir: PathBuf,
    },
    /// Read a municipality request file and show what importing it would do, row by row.
    PreviewRequests(PathBuf),
    /// Import a request file (checked again against the store first; all or nothing).
    ImportRequests(PathBuf),
    /// Write this office's documents as an encrypted bundle file (never replacing one).
    BundleExport {
        /// The file to write.
        path: PathBuf,
        /// The bundle passphrase (dropped after use).
        passphrase: SecretString,
    },
    /// Import a bundle file: every document passes the relay's rules first.
    BundleImport {
        /// The file.
        path: PathBuf,
        /// The bundle passphrase (dropped after use).
        passphrase: SecretString,
    },
    /// Record a progress date or result of a case (`field` from `case::PHASE_FIELDS`).
    CaseAdvance {
        /// The case.
        id: DocId,
        /// The phase field.
        field: String,
        /// The value as typed.
        value: String,
    },
    /// Append an exception (延期通知, 取下げ, 却下, 再調査) to a case.
    CaseException {
        /// The case.
        id: DocId,
        /// What was typed (boxed: it is the largest command).
        exception: Box<CaseException>,
    },
}

/// What the 書き出し screen writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExportFormat {
    /// PDF in the layout of the official form (chosen until another is).
    #[default]
    PdfOfficial,
    /// PDF in musubi's numbered layout.
    PdfNumbered,
    /// CSV, UTF-8 with a byte-order mark.
    CsvUtf8,
    /// CSV, Shift_JIS.
    CsvShiftJis,
}

impl ExportFormat {
    /// Every format, in the order the screen offers them, with its label.
    pub const ALL: [(ExportFormat, &'static str); 4] = [
        (ExportFormat::PdfOfficial, "PDF（公式様式）"),
        (ExportFormat::PdfNumbered, "PDF（番号付き）"),
        (ExportFormat::CsvUtf8, "CSV（文字コード UTF-8）"),
        (ExportFormat::CsvShiftJis, "CSV（文字コード Shift_JIS）"),
    ];
}

impl std::fmt::Debug for Command {
    // Never prints passphrases or document values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Command::Unlock { .. } => "Unlock",
            Command::Recover { .. } => "Recover",
            Command::Refresh => "Refresh",
            Command::Open(_) => "Open",
            Command::Set { .. } => "Set",
            Command::SurveyStep { .. } => "SurveyStep",
            Command::CreateSurvey { .. } => "CreateSurvey",
            Command::CreateVisit { .. } => "CreateVisit",
            Command::Conflicts(_) => "Conflicts",
            Command::History(_) => "History",
            Command::SyncNow => "SyncNow",
            Command::CardStatus => "CardStatus",
            Command::CardVerify { .. } => "CardVerify",
            Command::CardDecideMismatch(_) => "CardDecideMismatch",
            Command::Registrations(_) => "Registrations",
            Command::RecordConsent { .. } => "RecordConsent",
            Command::WithdrawConsent { .. } => "WithdrawConsent",
            Command::Cases => "Cases",
            Command::SaveDisplay(_) => "SaveDisplay",
            Command::Export { .. } => "Export",
            Command::PreviewRequests(_) => "PreviewRequests",
            Command::ImportRequests(_) => "ImportRequests",
            Command::BundleExport { .. } => "BundleExport",
            Command::BundleImport { .. } => "BundleImport",
            Command::CaseAdvance { .. } => "CaseAdvance",
            Command::CaseException { .. } => "CaseException",
        };
        f.write_str(name)
    }
}

/// Survey status (状態).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// 作成中.
    Draft,
    /// 調査完了.
    Completed,
    /// 提出済み.
    Submitted,
}

impl Status {
    /// From the document's `status` field (absent = draft).
    pub fn parse(v: Option<&str>) -> Status {
        match v {
            Some("completed") => Status::Completed,
            Some("submitted") => Status::Submitted,
            _ => Status::Draft,
        }
    }

    /// The Japanese label.
    pub fn label(self) -> &'static str {
        match self {
            Status::Draft => "作成中",
            Status::Completed => "調査完了",
            Status::Submitted => "提出済み",
        }
    }
}

/// One document in the visit list.
#[derive(Clone, Debug)]
pub struct DocRow {
    /// Its id.
    pub id: DocId,
    /// `survey`, `visit-record`, …
    pub kind: String,
    /// Survey status (surveys only).
    pub status: Option<Status>,
    /// Answered counted items of a survey (of 74).
    pub answered: Option<usize>,
    /// Date shown in the list (調査実施日 / 訪問年月日).
    pub date: Option<String>,
    /// Fields with concurrent values.
    pub conflicts: usize,
    /// Last change, unix ms.
    pub updated_at: i64,
}

/// A person with their documents.
#[derive(Clone, Debug)]
pub struct PersonRow {
    /// The subject document (None for documents without a subject document here).
    pub subject: Option<DocId>,
    /// Display name (personal data: shown on screen only, never logged).
    pub name: String,
    /// ふりがな.
    pub kana: String,
    /// Surveys and visit records.
    pub docs: Vec<DocRow>,
}

/// Sync state as the UI shows it.
#[derive(Clone, Debug, Default)]
pub struct SyncView {
    /// The device has relay credentials.
    pub enrolled: bool,
    /// The relay address from enrollment.
    pub relay: Option<String>,
    /// A sync is running: (documents done, documents total, bytes sent, bytes received).
    pub running: Option<(u64, u64, u64, u64)>,
    /// Last successful sync, unix ms.
    pub last_success_ms: Option<i64>,
    /// The last failure in plain Japanese (cleared by a success).
    pub error: Option<String>,
    /// The last failure says the relay cannot be reached.
    pub unreachable: bool,
    /// Documents with changes the relay does not have yet.
    pub pending: usize,
    /// Documents received in the last sync.
    pub last_received: u64,
    /// Documents sent in the last sync.
    pub last_sent: u64,
    /// Documents the relay refused in the last sync: (short id, the rule in Japanese).
    pub refused: Vec<(String, String)>,
}

/// Device facts shown in the header.
#[derive(Clone, Debug)]
pub struct DeviceView {
    /// 事業所番号.
    pub office: String,
    /// Device name.
    pub device_name: String,
}

/// A reply from the worker.
pub enum Event {
    /// The store is open.
    Unlocked(DeviceView),
    /// Unlock or recovery failed (plain Japanese, no personal data).
    UnlockFailed(String),
    /// The visit list.
    People(Vec<PersonRow>),
    /// A document's current content.
    Doc {
        /// Its id.
        id: DocId,
        /// Its interchange JSON.
        json: Value,
    },
    /// An edit was saved.
    Saved {
        /// The document.
        id: DocId,
        /// The field.
        pointer: String,
        /// The value that was saved.
        value: Value,
    },
    /// An edit was refused; nothing was written.
    Refused {
        /// The document.
        id: DocId,
        /// The field.
        pointer: String,
        /// Why, in words (names the field, not its value).
        message: String,
    },
    /// A new survey exists.
    SurveyCreated(DocId),
    /// A new visit record exists.
    VisitCreated(DocId),
    /// Conflicts of a document.
    Conflicts(DocId, Vec<Conflict>),
    /// History of a document.
    History(DocId, Vec<HistoryEntry>),
    /// The consistency warnings of a survey, by item (from `care::check_survey`).
    SurveyWarnings(DocId, BTreeMap<String, Vec<ItemWarning>>),
    /// Sync status changed.
    Sync(SyncView),
    /// Reader, card and PIN state.
    Card(CardState),
    /// The outcome of a verification.
    CardResult(CardOutcome),
    /// Registrations of a person: (the document asked about, rows, newest first).
    Registrations(DocId, Vec<RegistrationRow>),
    /// The 要介護認定 cases, by application date.
    Cases(Vec<CaseRow>),
    /// The display settings kept on the device (sent once, at start).
    Display(DisplaySettings),
    /// Files written by an export.
    Exported(Vec<PathBuf>),
    /// What importing a request file would do (or why the file cannot be read).
    RequestPreview(RequestPreview),
    /// A request file was imported: (rows created, duplicates skipped).
    RequestsImported(usize, usize),
    /// A bundle was written or imported: what happened, line by line, in Japanese.
    BundleDone(Vec<String>),
    /// A bundle or office step failed (plain Japanese); shown on the office screen.
    OfficeError(String),
    /// A case step was recorded (or refused: `Some(why)`).
    CaseRecorded(DocId, Option<String>),
    /// Something failed (plain Japanese).
    Error(String),
    /// The command is finished.
    Done,
}

/// What the card screen knows about the reader and the card.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CardState {
    /// The reader used.
    pub reader: Option<String>,
    /// 利用者証明用暗証番号: tries left (None: not read).
    pub auth: Option<PinStatus>,
    /// 券面事項入力補助用暗証番号: tries left (None: not read or the card has no such AP).
    pub support: Option<PinStatus>,
    /// Why the card could not be read, in plain Japanese.
    pub error: Option<String>,
}

/// One line of a verification result: (label, value, good).
pub type ResultLine = (String, String, bool);

/// How a verification ended.
#[derive(Clone, Debug)]
pub enum CardOutcome {
    /// Verified and registered.
    Registered {
        /// The new registration.
        registration: DocId,
        /// The subject (created now or existing).
        subject: DocId,
        /// What was checked, line by line, in Japanese.
        lines: Vec<ResultLine>,
    },
    /// Verified, but name or birth date differ from the record: waiting for staff.
    Mismatch {
        /// Which fields differ (氏名, 生年月日).
        fields: Vec<String>,
        /// What was checked.
        lines: Vec<ResultLine>,
    },
    /// Not verified; nothing was written.
    Failed {
        /// Why, in plain Japanese.
        message: String,
    },
}

/// A registration as the card screen lists it.
#[derive(Clone, Debug)]
pub struct RegistrationRow {
    /// Its id.
    pub id: DocId,
    /// Where it stands for sharing.
    pub state: SharingState,
    /// 確認日時 (RFC 3339).
    pub verified_at: String,
    /// 確認者.
    pub staff: Option<String>,
    /// 有効期間（満了） of the certificate.
    pub not_after: String,
    /// 同意: (同意者, 同意日, method label).
    pub consent: Option<(String, String, String)>,
}

/// A request file as the import screen previews it.
#[derive(Clone, Debug)]
pub struct RequestPreview {
    /// The file.
    pub file: PathBuf,
    /// Why the whole file cannot be read (then `rows` is empty).
    pub error: Option<String>,
    /// Every row with what importing does with it.
    pub rows: Vec<PlannedRow>,
}
