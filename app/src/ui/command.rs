//! The closed set of requests the UI sends to the engine-side worker ([`Command`]) and the
//! replies it gets back ([`Event`]). Nothing else crosses between the two threads.

use std::collections::BTreeMap;

use musubi_engine::doc::{Conflict, HistoryEntry};
use musubi_engine::ids::DocId;
use musubi_engine::store::SecretString;
use serde_json::Value;

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
    /// A survey workflow step: `true` 調査完了 (draft → completed, hard rules must pass),
    /// `false` back to 作成中 (completed → draft).
    SurveyComplete {
        /// The survey.
        id: DocId,
        /// Complete (true) or reopen (false).
        complete: bool,
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
            Command::SurveyComplete { .. } => "SurveyComplete",
            Command::CreateSurvey { .. } => "CreateSurvey",
            Command::CreateVisit { .. } => "CreateVisit",
            Command::Conflicts(_) => "Conflicts",
            Command::History(_) => "History",
            Command::SyncNow => "SyncNow",
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
    /// Something failed (plain Japanese).
    Error(String),
    /// The command is finished.
    Done,
}
