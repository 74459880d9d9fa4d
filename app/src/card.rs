//! `musubi card …` (readers, status, verify) and `musubi register …` (consent, withdrawal).
//!
//! `card verify` does the offline 本人確認 with the My Number card through PC/SC and, only
//! when everything checks out, writes a `registration` document (and, for a survey without
//! a subject document, the subject document) through the engine. Any failure writes
//! nothing. PINs come from `MUSUBI_CARD_PIN` / `MUSUBI_CARD_SUPPORT_PIN` or a prompt; they
//! are never logged or stored.

use crate::common::{InputError, parse_id, today};
use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use musubi_engine::Engine;
use musubi_engine::card::pcsc::Pcsc;
use musubi_engine::card::reader::{PinKind, PinStatus};
use musubi_engine::card::register::{self, EvidenceState, RegisterError, SharingState};
use musubi_engine::card::roots::{AnchorSource, TrustStore};
use musubi_engine::card::verify::{Verified, pin_retries};
use musubi_engine::card::{PinSource, VerifyError};
use musubi_engine::ids::DocId;
use serde_json::{Value, json};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;
use zeroize::Zeroizing;

/// What users read about revocation, in the result and in the docs.
const REVOCATION_NOTE: &str = "失効確認は行っていません。オフラインでは確認できず、J-LIS の失効情報は届出・認定を受けた検証者にのみ提供されるためです (revocation not checked: impossible offline; J-LIS provides revocation data only to registered verifiers).";

#[derive(Subcommand, Debug)]
pub enum CardCommand {
    /// List card readers and whether a card is in each.
    Readers,
    /// Tries left on the card's PINs (no try is spent).
    Status(ConnectArgs),
    /// 本人確認 with the My Number card, offline; creates a registration on success.
    Verify(VerifyArgs),
}

#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// Reader name (default: the first reader with a card).
    #[arg(long, value_name = "NAME")]
    pub reader: Option<String>,
    /// Seconds to wait for a card to be inserted.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub wait: u64,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Id of a subject document, or of a survey (its subject is used or created).
    #[arg(long, value_name = "ID")]
    pub subject: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Extra trusted root (PEM), e.g. musubi-vcard's DIR/trust-anchor.pem. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub trust_anchor: Vec<PathBuf>,
    /// Allow a PIN try when only one is left (a wrong PIN then locks the card).
    #[arg(long)]
    pub allow_last_try: bool,
    /// Do not read the basic four items (no name / birth date comparison).
    #[arg(long)]
    pub skip_basic4: bool,
    /// Staff decision: register even though name or birth date differ from the record.
    #[arg(long)]
    pub accept_mismatch: bool,
}

#[derive(Subcommand, Debug)]
pub enum RegisterCommand {
    /// Record the person's consent on a registration.
    Consent(ConsentArgs),
    /// Record a withdrawal of consent (appended; nothing is deleted).
    Withdraw(WithdrawArgs),
    /// Show whether a registration is valid for sharing (card evidence verified here,
    /// consent, no withdrawal); 要再確認 (needs_reverification) without valid evidence.
    Status {
        /// Registration id.
        #[arg(long, value_name = "ID")]
        registration: String,
        /// Extra trusted root (PEM) for checking the card evidence. Repeatable.
        #[arg(long, value_name = "FILE")]
        trust_anchor: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ConsentMethod {
    /// 署名.
    Signature,
    /// 口頭.
    Verbal,
    /// 電子的同意.
    Electronic,
}

#[derive(Args, Debug)]
pub struct ConsentArgs {
    /// Registration id.
    #[arg(long, value_name = "ID")]
    pub registration: String,
    /// 同意者 (who consented).
    #[arg(long, value_name = "NAME")]
    pub consented_by: String,
    /// 本人との関係 (e.g. 本人, 長女).
    #[arg(long, default_value = "本人")]
    pub relationship: String,
    /// 同意の範囲 (repeatable).
    #[arg(long, required = true, value_name = "TEXT")]
    pub scope: Vec<String>,
    /// 同意日 (YYYY-MM-DD; default today).
    #[arg(long, value_name = "DATE")]
    pub date: Option<String>,
    /// 同意の方法.
    #[arg(long, value_enum)]
    pub method: ConsentMethod,
}

#[derive(Args, Debug)]
pub struct WithdrawArgs {
    /// Registration id.
    #[arg(long, value_name = "ID")]
    pub registration: String,
    /// 撤回日 (YYYY-MM-DD; default today).
    #[arg(long, value_name = "DATE")]
    pub date: Option<String>,
    /// 理由.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

/// A card verification that did not succeed (the message says why; nothing written).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct CardFailed(#[from] pub VerifyError);

/// Name or birth date differ and staff did not accept it.
#[derive(Debug, thiserror::Error)]
#[error(
    "券面事項と利用者情報が一致しません（{0}）。職員が確認のうえ --accept-mismatch で登録してください。何も書き込んでいません (card and record differ; nothing was written)"
)]
pub struct Mismatch(String);

/// The card's evidence does not fit or does not pass the check (nothing written).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EvidenceRefused(String);

pub fn run_card(
    staff: Option<String>,
    cmd: CardCommand,
    open: impl Fn() -> Result<Engine>,
) -> Result<()> {
    match cmd {
        CardCommand::Readers => {
            let pcsc = Pcsc::establish()?;
            let readers = pcsc.readers()?;
            let list: Vec<Value> = readers
                .iter()
                .map(|r| json!({"name": r.name, "card_present": r.card_present}))
                .collect();
            outln!("{}", serde_json::to_string_pretty(&list)?);
            Ok(())
        }
        CardCommand::Status(c) => {
            let pcsc = Pcsc::establish()?;
            let card = pcsc.connect(c.reader.as_deref(), Duration::from_secs(c.wait))?;
            let reader = card.reader().to_owned();
            let mut card = card;
            let (auth, support) = pin_retries(&mut card).map_err(|e| CardFailed(e.into()))?;
            card.finish()?;
            let show = |s: PinStatus| match s {
                PinStatus::Remaining(n) => json!({"remaining": n, "locked": n == 0}),
                PinStatus::Locked => json!({"remaining": 0, "locked": true}),
                PinStatus::Verified => json!({"verified": true}),
            };
            outln!(
                "{}",
                serde_json::to_string_pretty(&json!({
                    "reader": reader,
                    "auth_pin": show(auth),
                    "support_pin": support.map(show),
                    "note": "残り回数の確認では試行回数を消費しません (no try was spent)",
                }))?
            );
            Ok(())
        }
        CardCommand::Verify(args) => verify(staff, args, open),
    }
}

struct EnvOrPrompt;

impl PinSource for EnvOrPrompt {
    fn pin(&mut self, kind: PinKind, remaining: u8) -> Option<Zeroizing<String>> {
        let var = match kind {
            PinKind::Auth => "MUSUBI_CARD_PIN",
            PinKind::Support => "MUSUBI_CARD_SUPPORT_PIN",
        };
        if remaining < 3 {
            eprintln!(
                "注意: {}の残り回数は{remaining}回です (caution: {remaining} tries left)",
                kind.label()
            );
        }
        if let Ok(p) = std::env::var(var)
            && !p.is_empty()
        {
            return Some(Zeroizing::new(p));
        }
        if !std::io::stdin().is_terminal() {
            return None;
        }
        rpassword::prompt_password(format!("{}（数字4桁）: ", kind.label()))
            .ok()
            .map(Zeroizing::new)
    }
}

/// Register errors as the CLI reports them: a bad document is invalid input (exit 2), a
/// mismatch is a failed verification (exit 5).
fn register_error(e: RegisterError) -> anyhow::Error {
    match e {
        RegisterError::NotSubject | RegisterError::NoPersonKey => {
            InputError(format!("--subject: {e}")).into()
        }
        RegisterError::Registration(m) => InputError(format!("--registration: {m}")).into(),
        RegisterError::NoStaff => InputError(
            "--accept-mismatch needs a staff member (--staff or MUSUBI_STAFF)".to_owned(),
        )
        .into(),
        RegisterError::Mismatch(fields) => Mismatch(fields.join("、")).into(),
        RegisterError::Foreign(_) | RegisterError::Evidence(_) => {
            EvidenceRefused(e.to_string()).into()
        }
        RegisterError::Engine(e) => (*e).into(),
        other => other.into(),
    }
}

/// The bundled J-LIS roots plus `--trust-anchor` files.
fn trust_store(files: &[PathBuf]) -> Result<TrustStore> {
    let mut anchors = TrustStore::bundled().context("the bundled J-LIS roots")?;
    for f in files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| InputError(format!("--trust-anchor {}: cannot read: {e}", f.display())))?;
        anchors
            .add_pem(&text)
            .map_err(|e| InputError(format!("--trust-anchor {}: {e}", f.display())))?;
    }
    Ok(anchors)
}

/// A registration's state as printed: state, its Japanese label, the evidence.
fn state_json(id: DocId, doc: &Value, anchors: &TrustStore) -> Value {
    let evidence = register::local_evidence_state(id, doc, anchors);
    let state = register::checked_sharing_state(id, doc, anchors);
    let mut out = json!({
        "registration_id": id.to_string(),
        "state": state.as_str(),
        "label": state.label(),
        "valid_for_sharing": state == SharingState::Valid,
        "evidence": evidence.as_str(),
    });
    if let EvidenceState::Invalid(e) = &evidence {
        out["evidence_problem"] = json!(e.field());
    }
    out
}

fn verify(
    staff: Option<String>,
    args: VerifyArgs,
    open: impl Fn() -> Result<Engine>,
) -> Result<()> {
    let subject_arg = parse_id(&args.subject)?;
    let anchors = trust_store(&args.trust_anchor)?;
    // The store first: a wrong passphrase or a bad id must not cost a PIN try.
    let engine = open()?;
    let target = register::resolve_subject(&engine, subject_arg).map_err(register_error)?;
    let info = engine.store().info().clone();
    let staff = staff.or(info.staff.clone());

    let now = chrono::Utc::now();
    // The registration id, person, office and device the card will sign for.
    let opts = register::verify_options(
        &engine,
        &target,
        now.timestamp(),
        args.allow_last_try,
        !args.skip_basic4,
    )
    .map_err(register_error)?;
    let pcsc = Pcsc::establish().map_err(|e| CardFailed(VerifyError::Card(e.into())))?;
    let mut card = pcsc
        .connect(
            args.connect.reader.as_deref(),
            Duration::from_secs(args.connect.wait),
        )
        .map_err(|e| CardFailed(VerifyError::Card(e.into())))?;
    let reader = card.reader().to_owned();
    let outcome = musubi_engine::card::verify_card(&mut card, &anchors, &opts, &mut EnvOrPrompt);
    // Power the card down whatever happened: no unlocked key outlives the session.
    let finished = card.finish();
    let v: Verified = outcome.map_err(CardFailed)?;
    finished.map_err(|e| CardFailed(VerifyError::Card(e.into())))?;

    let cx = register::Context {
        now_ms: now.timestamp_millis(),
        device: info.device_name.clone(),
        staff: staff.clone(),
        accept_mismatch: args.accept_mismatch,
    };
    let done = register::register(&engine, &target, &v, &cx, &anchors).map_err(register_error)?;
    // This person's other registrations: those without card evidence need a new check.
    let others: Vec<Value> = register::registrations_of(&engine, done.subject_id)
        .map_err(register_error)?
        .iter()
        .filter(|(id, _)| *id != done.registration_id)
        .map(|(id, doc)| state_json(*id, doc, &anchors))
        .collect();
    let new_state = register::checked_sharing_state(
        done.registration_id,
        &engine.export(done.registration_id)?,
        &anchors,
    );
    engine.close()?;

    let (root_source, generation) = match v.cert.root_source {
        AnchorSource::Bundled { generation } => ("bundled_jlis", Some(generation)),
        AnchorSource::Configured => ("configured", None),
    };
    let basic4 = v.basic4.as_ref().map(|b| {
        json!({
            "read": true,
            "digest_ok": b.check.digest_ok,
            "signature_ok": b.check.df33_ok,
            "cv_issuer_key": b.check.cv_issuer_key,
            "note": "券面事項入力補助APの署名はカード上のCV証明書の鍵で確認しました。CV証明書の発行者鍵は公開されていないため未確認です (DF33 checked with the CV certificate's key; that certificate's issuer key is not public, so it is unverified)",
        })
    });
    let verification = &done.verification;
    outln!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "result": "verified",
            "method": "jpki_auth_cert",
            "reader": reader,
            "subject_id": done.subject_id.to_string(),
            "subject_created": done.subject_created,
            "registration_id": done.registration_id.to_string(),
            "state": new_state.as_str(),
            "label": new_state.label(),
            "other_registrations": others,
            "certificate": {
                "issuer": v.cert.issuer,
                "serial": v.cert.serial,
                "not_before": verification["not_before"],
                "not_after": verification["not_after"],
                "fingerprint_sha256": v.cert.fingerprint_sha256,
                "root": {"source": root_source, "generation": generation, "sha256": v.cert.root_sha256},
                "card_ca_matches_root": v.card_ca_matches_root,
            },
            "statement_signature": "ok",
            "evidence": if v.cert.root_source == AnchorSource::Configured { "verified_test_root" } else { "verified" },
            "basic4": basic4,
            "comparison": verification["comparison"],
            "revocation": "not_checked",
            "revocation_note": REVOCATION_NOTE,
            "verified_at": verification["verified_at"],
            "device": verification["device"],
            "staff": staff,
            "apdus": v.apdus,
        }))?
    );
    Ok(())
}

pub fn run_register(cmd: RegisterCommand, open: impl Fn() -> Result<Engine>) -> Result<()> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let (id, state) = match cmd {
        RegisterCommand::Consent(a) => {
            let id = parse_id(&a.registration)?;
            let consent = register::Consent {
                consented_by: a.consented_by,
                relationship: a.relationship,
                scope: a.scope,
                date: a.date.unwrap_or_else(today),
                method: match a.method {
                    ConsentMethod::Signature => register::ConsentMethod::Signature,
                    ConsentMethod::Verbal => register::ConsentMethod::Verbal,
                    ConsentMethod::Electronic => register::ConsentMethod::Electronic,
                },
            };
            let engine = open()?;
            let state =
                register::record_consent(&engine, id, &consent, now_ms).map_err(register_error)?;
            engine.close()?;
            (id, state)
        }
        RegisterCommand::Withdraw(a) => {
            let id = parse_id(&a.registration)?;
            let engine = open()?;
            let date = a.date.unwrap_or_else(today);
            let state =
                register::record_withdrawal(&engine, id, &date, a.reason.as_deref(), now_ms)
                    .map_err(register_error)?;
            engine.close()?;
            (id, state)
        }
        RegisterCommand::Status {
            registration,
            trust_anchor,
        } => {
            let id = parse_id(&registration)?;
            let anchors = trust_store(&trust_anchor)?;
            let engine = open()?;
            let doc = engine.export(id)?;
            engine.close()?;
            if doc.get("kind").and_then(Value::as_str) != Some("registration") {
                return Err(
                    InputError("--registration: not a registration document".to_owned()).into(),
                );
            }
            let mut out = state_json(id, &doc, &anchors);
            out["withdrawals"] = json!(doc["withdrawals"].as_array().map_or(0, Vec::len));
            outln!("{out}");
            return Ok(());
        }
    };
    outln!(
        "{}",
        json!({"registration_id": id.to_string(), "state": state.as_str()})
    );
    Ok(())
}
