//! The card side of the worker: a card session (PC/SC, or a slot given by tests), the
//! offline verification, the registration it writes, and consent. Runs on the worker
//! thread only; the UI sees [`CardState`] and [`CardOutcome`].
//!
//! PINs arrive in zeroising buffers, are handed to the card once and dropped. The card
//! signs a statement naming the registration id generated before the session; a
//! verification whose name or birth date differs from the record is kept in memory
//! (never stored), with that id, until staff decide; a new verification or a decision
//! discards it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use musubi_engine::Engine;
use musubi_engine::card::compare::FieldMatch;
use musubi_engine::card::register::{self, RegisterError, Target};
use musubi_engine::card::roots::TrustStore;
use musubi_engine::card::verify::pin_retries;
use musubi_engine::card::{
    CardError, CardTransport, PinKind, PinSource, TransportError, Verified, VerifyError,
    verify_card,
};
use musubi_engine::ids::DocId;
use serde_json::Value;
use zeroize::Zeroizing;

use super::command::{CardOutcome, CardState, RegistrationRow, ResultLine};

/// A card the app can talk to without PC/SC: tests give one (a scripted transport or the
/// in-process virtual card); the app itself uses [`CardAccess::Pcsc`].
pub trait CardSlot: Send {
    /// The reader name shown on screen.
    fn reader(&self) -> String;
    /// Opens an exclusive session with the card in the slot.
    fn open(&mut self) -> Result<Box<dyn CardTransport + '_>, TransportError>;
}

/// Where the worker finds the card.
#[derive(Clone)]
pub enum CardAccess {
    /// Through pcscd: the named reader, else the first reader with a card.
    Pcsc {
        /// Reader name (`MUSUBI_CARD_READER`).
        reader: Option<String>,
    },
    /// A slot given by the caller (tests).
    Slot(Arc<Mutex<dyn CardSlot>>),
}

impl Default for CardAccess {
    fn default() -> Self {
        CardAccess::Pcsc { reader: None }
    }
}

impl std::fmt::Debug for CardAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CardAccess::Pcsc { reader } => f.debug_struct("Pcsc").field("reader", reader).finish(),
            CardAccess::Slot(_) => f.write_str("Slot"),
        }
    }
}

/// How long the worker waits for a card to be put on the reader.
const CARD_WAIT: Duration = Duration::from_secs(3);

/// The Japanese part of the engine's bilingual messages ("日本語 (english)").
pub fn japanese(message: &str) -> String {
    let mut from = 0;
    while let Some(i) = message[from..].find(" (") {
        let at = from + i;
        if message[at..].is_ascii() {
            return message[..at].to_owned();
        }
        from = at + 2;
    }
    message.to_owned()
}

/// Runs `f` over one exclusive session with the card; the card is powered down after,
/// whatever happened. Returns the reader name when one was reached.
fn with_card<R>(
    access: &CardAccess,
    f: impl FnOnce(&mut dyn CardTransport) -> Result<R, VerifyError>,
) -> (Option<String>, Result<R, VerifyError>) {
    let transport_err = |e: TransportError| VerifyError::Card(CardError::Transport(e));
    match access {
        CardAccess::Pcsc { reader } => {
            let pcsc = match musubi_engine::card::pcsc::Pcsc::establish() {
                Ok(p) => p,
                Err(e) => return (None, Err(transport_err(e))),
            };
            let mut card = match pcsc.connect(reader.as_deref(), CARD_WAIT) {
                Ok(c) => c,
                Err(e) => return (reader.clone(), Err(transport_err(e))),
            };
            let name = card.reader().to_owned();
            let out = f(&mut card);
            let finished = card.finish();
            match (out, finished) {
                (Ok(r), Ok(())) => (Some(name), Ok(r)),
                (Ok(_), Err(e)) => (Some(name), Err(transport_err(e))),
                (Err(e), _) => (Some(name), Err(e)),
            }
        }
        CardAccess::Slot(slot) => {
            let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
            let name = slot.reader();
            match slot.open() {
                Ok(mut t) => {
                    let out = f(&mut *t);
                    (Some(name), out)
                }
                Err(e) => (Some(name), Err(transport_err(e))),
            }
        }
    }
}

/// PINs typed on the pad, each handed out once.
struct GivenPins {
    auth: Option<Zeroizing<String>>,
    support: Option<Zeroizing<String>>,
}

impl PinSource for GivenPins {
    fn pin(&mut self, kind: PinKind, _remaining: u8) -> Option<Zeroizing<String>> {
        match kind {
            PinKind::Auth => self.auth.take(),
            PinKind::Support => self.support.take(),
        }
    }
}

/// A verification waiting for a staff decision on a mismatch.
struct Pending {
    target: Target,
    verified: Verified,
    now_ms: i64,
}

/// The card state of the worker.
pub(super) struct CardFlow {
    access: CardAccess,
    anchors: Vec<PathBuf>,
    pending: Option<Pending>,
}

fn date_part(rfc3339: &str) -> String {
    rfc3339.get(..10).unwrap_or(rfc3339).to_owned()
}

fn match_label(m: FieldMatch, accepted: bool) -> (String, bool) {
    match m {
        FieldMatch::Match => ("一致".to_owned(), true),
        FieldMatch::Mismatch if accepted => ("不一致（職員が確認のうえ登録）".to_owned(), false),
        FieldMatch::Mismatch => ("不一致".to_owned(), false),
        FieldMatch::NotCompared => ("照合していません".to_owned(), true),
    }
}

/// What was checked, line by line.
fn result_lines(v: &Verified, cmp: (FieldMatch, FieldMatch), accepted: bool) -> Vec<ResultLine> {
    let not_after = musubi_engine::store::rfc3339_utc(v.cert.not_after);
    let mut lines = vec![
        (
            "利用者証明用電子証明書".to_owned(),
            format!("有効（有効期限 {}）", date_part(&not_after)),
            true,
        ),
        (
            "発行元".to_owned(),
            register::root_label(&v.cert.root_source),
            true,
        ),
        (
            "カードの署名".to_owned(),
            "確認済み（登録の内容と乱数に、カードが暗証番号のもとで署名）".to_owned(),
            true,
        ),
    ];
    let (name, name_ok) = match_label(cmp.0, accepted);
    let (birth, birth_ok) = match_label(cmp.1, accepted);
    lines.push(("氏名の照合".to_owned(), name, name_ok));
    lines.push(("生年月日の照合".to_owned(), birth, birth_ok));
    lines.push((
        "失効確認".to_owned(),
        register::REVOCATION_NOTE_JA.to_owned(),
        false,
    ));
    lines
}

impl CardFlow {
    pub(super) fn new(access: CardAccess, anchors: Vec<PathBuf>) -> CardFlow {
        CardFlow {
            access,
            anchors,
            pending: None,
        }
    }

    /// Reader, card and tries left, without spending a try.
    pub(super) fn status(&self) -> CardState {
        let (reader, out) = with_card(&self.access, |t| pin_retries(t).map_err(VerifyError::Card));
        match out {
            Ok((auth, support)) => CardState {
                reader,
                auth: Some(auth),
                support,
                error: None,
            },
            Err(e) => CardState {
                reader,
                auth: None,
                support: None,
                error: Some(japanese(&e.to_string())),
            },
        }
    }

    /// The bundled J-LIS roots plus the configured trust anchors (card checks, and the
    /// rules a bundle's registrations pass).
    pub(super) fn trust_store(&self) -> Result<TrustStore, String> {
        let mut anchors = TrustStore::bundled()
            .map_err(|_| "同梱の J-LIS ルート証明書を読み込めません。".to_owned())?;
        for f in &self.anchors {
            let text = std::fs::read_to_string(f)
                .map_err(|_| "設定された信頼点のファイルを読めません。".to_owned())?;
            anchors
                .add_pem(&text)
                .map_err(|_| "設定された信頼点のファイルの形式が正しくありません。".to_owned())?;
        }
        Ok(anchors)
    }

    /// The whole 本人確認; registers when everything checks out.
    pub(super) fn verify(
        &mut self,
        engine: &Engine,
        staff: Option<String>,
        subject: DocId,
        auth_pin: Zeroizing<String>,
        support_pin: Option<Zeroizing<String>>,
        allow_last_try: bool,
    ) -> CardOutcome {
        self.pending = None;
        let failed = |message: String| CardOutcome::Failed { message };
        let anchors = match self.trust_store() {
            Ok(a) => a,
            Err(m) => return failed(m),
        };
        // The record first: a bad document must not cost a PIN try.
        let target = match register::resolve_subject(engine, subject) {
            Ok(t) => t,
            Err(e) => return failed(register_message(&e)),
        };
        let now = chrono::Utc::now();
        // The registration id, person, office and device the card will sign for.
        let opts = match register::verify_options(
            engine,
            &target,
            now.timestamp(),
            allow_last_try,
            support_pin.is_some(),
        ) {
            Ok(o) => o,
            Err(e) => return failed(register_message(&e)),
        };
        let mut pins = GivenPins {
            auth: Some(auth_pin),
            support: support_pin,
        };
        let (_, out) = with_card(&self.access, |t| verify_card(t, &anchors, &opts, &mut pins));
        drop(pins);
        let verified = match out {
            Ok(v) => v,
            Err(e) => return failed(japanese(&e.to_string())),
        };
        let cmp = verified.comparison;
        let differ = register::mismatched(cmp);
        if !differ.is_empty() {
            let lines = result_lines(&verified, cmp, false);
            self.pending = Some(Pending {
                target,
                verified,
                now_ms: now.timestamp_millis(),
            });
            return CardOutcome::Mismatch {
                fields: differ.into_iter().map(str::to_owned).collect(),
                lines,
            };
        }
        self.register(
            engine,
            staff,
            target,
            &verified,
            now.timestamp_millis(),
            false,
        )
    }

    /// Registers (`accept`) or discards the verification waiting for a decision.
    pub(super) fn decide(
        &mut self,
        engine: &Engine,
        staff: Option<String>,
        accept: bool,
    ) -> Option<CardOutcome> {
        let p = self.pending.take()?;
        if !accept {
            return None;
        }
        Some(self.register(engine, staff, p.target, &p.verified, p.now_ms, true))
    }

    fn register(
        &self,
        engine: &Engine,
        staff: Option<String>,
        target: Target,
        v: &Verified,
        now_ms: i64,
        accept_mismatch: bool,
    ) -> CardOutcome {
        let cx = register::Context {
            now_ms,
            device: engine.store().info().device_name.clone(),
            staff,
            accept_mismatch,
        };
        let anchors = match self.trust_store() {
            Ok(a) => a,
            Err(message) => return CardOutcome::Failed { message },
        };
        match register::register(engine, &target, v, &cx, &anchors) {
            Ok(done) => CardOutcome::Registered {
                registration: done.registration_id,
                subject: done.subject_id,
                lines: result_lines(v, done.comparison, accept_mismatch),
            },
            Err(e) => CardOutcome::Failed {
                message: register_message(&e),
            },
        }
    }
}

/// Registration errors in plain Japanese (fields named, no values).
pub(super) fn register_message(e: &RegisterError) -> String {
    match e {
        RegisterError::NotSubject => "この文書は利用者でも認定調査票でもありません。".to_owned(),
        RegisterError::NoPersonKey => {
            "認定調査票に保険者番号・被保険者番号がないため、利用者を特定できません。".to_owned()
        }
        RegisterError::NoStaff => {
            "不一致を受け入れるには、確認した職員の名前が必要です。".to_owned()
        }
        RegisterError::Engine(e) => super::worker::unexplained("登録を保存できませんでした。", e),
        other => japanese(&other.to_string()),
    }
}

impl CardFlow {
    /// The registrations of the person of `doc` (a subject, or a survey's person); card
    /// evidence counts only when it verifies under this device's anchors (else 要再確認).
    pub(super) fn registrations(
        &self,
        engine: &Engine,
        doc: DocId,
    ) -> Result<Vec<RegistrationRow>, String> {
        registrations(engine, doc, &self.trust_store()?)
    }
}

fn registrations(
    engine: &Engine,
    doc: DocId,
    anchors: &TrustStore,
) -> Result<Vec<RegistrationRow>, String> {
    let subject = match register::resolve_subject(engine, doc) {
        Ok(Target::Existing(id, _)) => id,
        Ok(Target::New(_)) => return Ok(Vec::new()),
        Err(e) => return Err(register_message(&e)),
    };
    let regs = register::registrations_of(engine, subject).map_err(|e| register_message(&e))?;
    Ok(regs
        .into_iter()
        .map(|(id, d)| {
            let s = |p: &str| d.pointer(p).and_then(Value::as_str).map(str::to_owned);
            let consent = d.get("consent").filter(|c| c.is_object()).map(|c| {
                let method = c.get("method").and_then(Value::as_str).unwrap_or("");
                let label = register::ConsentMethod::ALL
                    .iter()
                    .find(|m| m.as_str() == method)
                    .map_or(method, |m| m.label());
                (
                    c.get("consented_by")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    c.get("date")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    label.to_owned(),
                )
            });
            RegistrationRow {
                id,
                state: register::checked_sharing_state(id, &d, anchors),
                verified_at: s("/verification/verified_at").unwrap_or_default(),
                staff: s("/verification/staff"),
                not_after: s("/verification/not_after").unwrap_or_default(),
                consent,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::japanese;

    #[test]
    fn japanese_part_of_bilingual_messages() {
        assert_eq!(
            japanese("カードが置かれていません (no card in the reader)"),
            "カードが置かれていません"
        );
        assert_eq!(
            japanese("カードリーダーが見つかりません (no card reader (named x))"),
            "カードリーダーが見つかりません"
        );
        assert_eq!(
            japanese(
                "利用者証明用暗証番号が違います。残り2回です。 (wrong Auth PIN, 2 tries left)"
            ),
            "利用者証明用暗証番号が違います。残り2回です。"
        );
        assert_eq!(japanese("日本語だけ"), "日本語だけ");
    }
}
