//! From a successful card verification to the `registration` document (本人確認 +
//! 担当事業所登録), and the consent and withdrawal recorded on it. Shared by
//! `musubi card verify` / `musubi register …` and the tablet app, so both write the same
//! documents under the same rules:
//!
//! - the verification is compared with the subject record (name, birth date); a mismatch
//!   is registered only when a named staff member accepted it;
//! - the subject document, when it does not exist yet, is created in the same transaction
//!   as the registration (both or neither);
//! - the card's own values are never stored, only the outcome of the comparison;
//! - the card signs a statement naming the registration, person, office, device, time
//!   and comparison ([`super::evidence`]); statement, signature and certificate are stored
//!   at `verification.evidence` and checked with [`check_registration`] before anything
//!   is written, exactly as a receiving relay checks them;
//! - revocation is recorded as `not_checked` (offline; see [`super::verify`]).

use super::compare::{FieldMatch, Record};
use super::evidence::{Attested, EvidenceError, StatementBase, check_registration};
use super::roots::{AnchorSource, TrustStore};
use super::verify::{Verified, VerifyOptions};
use crate::engine::{Engine, EngineError};
use crate::ids::DocId;
use crate::schema::Pointer;
use crate::store::rfc3339_utc;
use crate::sync::sharing::person_key;
use serde_json::{Value, json};

/// What users read about revocation (the result screen, `card verify`, the docs).
pub const REVOCATION_NOTE_JA: &str = "失効確認は行っていません。オフラインでは確認できず、J-LIS の失効情報は届出・認定を受けた検証者にのみ提供されるためです。";

/// Who the verification is for.
#[derive(Debug, Clone)]
pub enum Target {
    /// An existing subject document and its person block.
    Existing(DocId, Value),
    /// A person block from a survey whose subject document does not exist yet.
    New(Value),
}

impl Target {
    /// The person block (`subject.person` / `survey.subject`).
    pub fn person(&self) -> &Value {
        match self {
            Target::Existing(_, p) | Target::New(p) => p,
        }
    }
}

/// Why nothing was registered. Messages name fields, never their values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The document given is neither a subject nor a survey.
    #[error("the document is neither a subject (利用者) nor a survey (認定調査票)")]
    NotSubject,
    /// The person has no numbers to find, create or name the subject by.
    #[error(
        "保険者番号・被保険者番号がないため利用者を特定できません (the person has no 保険者番号 / 被保険者番号)"
    )]
    NoPersonKey,
    /// The device's enrollment credentials in the store cannot be read, so the device the
    /// statement must name is unknown (nothing was sent to the card).
    #[error(
        "この端末の登録情報（証明書）を読めません。端末の登録をやり直してください (the device's enrollment credentials are unreadable)"
    )]
    Credentials,
    /// The verification was made for another registration, person or office.
    #[error(
        "カードの署名がこの登録のものではありません。もう一度本人確認をしてください (the signed statement names another {0})"
    )]
    Foreign(&'static str),
    /// The evidence does not pass the check every receiver applies.
    #[error(transparent)]
    Evidence(EvidenceError),
    /// Name or birth date on the card differ from the record and nobody accepted it.
    #[error(
        "券面事項と利用者情報が一致しません（{}）。職員が確認のうえ登録してください。何も書き込んでいません (card and record differ; nothing was written)",
        .0.join("、")
    )]
    Mismatch(Vec<&'static str>),
    /// A mismatch can only be accepted by a named staff member.
    #[error(
        "不一致を受け入れるには確認した職員の名前が必要です (accepting a mismatch needs a staff member)"
    )]
    NoStaff,
    /// The registration is not a registration, or consent was withdrawn.
    #[error("{0}")]
    Registration(&'static str),
    /// The engine refused or failed.
    #[error(transparent)]
    Engine(Box<EngineError>),
}

impl From<EngineError> for RegisterError {
    fn from(e: EngineError) -> Self {
        RegisterError::Engine(Box::new(e))
    }
}

/// The subject a verification of document `id` is for: the subject document itself, or
/// for a survey the subject document with the same 保険者番号 + 被保険者番号 (created on
/// registration when there is none).
pub fn resolve_subject(engine: &Engine, id: DocId) -> Result<Target, RegisterError> {
    let doc = engine.export(id)?;
    match doc.get("kind").and_then(Value::as_str) {
        Some("subject") => Ok(Target::Existing(id, doc["person"].clone())),
        Some("survey") => {
            let person = doc["subject"].clone();
            let wanted = numbers(&person).ok_or(RegisterError::NoPersonKey)?;
            for d in engine.list()? {
                if d.kind != "subject" {
                    continue;
                }
                let s = engine.export(d.id)?;
                if numbers(&s["person"]).as_ref() == Some(&wanted) {
                    return Ok(Target::Existing(d.id, s["person"].clone()));
                }
            }
            Ok(Target::New(person))
        }
        _ => Err(RegisterError::NotSubject),
    }
}

/// (保険者番号, 被保険者番号) of a person block, trimmed.
fn numbers(p: &Value) -> Option<(String, String)> {
    let s = |k: &str| {
        p.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    Some((s("insurer_number")?, s("insured_number")?))
}

/// The device id a statement names: the enrolled device certificate's when the store
/// holds enrollment credentials (the relay requires it to be the uploader's), else the
/// store's own device id.
pub fn statement_device(engine: &Engine) -> Result<String, RegisterError> {
    #[cfg(feature = "net")]
    {
        match crate::net::enroll::load_credentials(engine.store()) {
            Ok(Some(creds)) => return Ok(creds.device_id),
            Ok(None) => {}
            Err(_) => return Err(RegisterError::Credentials),
        }
    }
    Ok(engine.store().info().device_id.clone())
}

/// Everything the card session needs, fixed before it starts: a fresh registration id
/// and nonce, the person key of `target`, this store's office and the device, the
/// record's name and birth date. Reads only the store: a bad document costs no PIN try.
pub fn verify_options(
    engine: &Engine,
    target: &Target,
    now: i64,
    allow_last_try: bool,
    basic4: bool,
) -> Result<VerifyOptions, RegisterError> {
    let (insurer, insured) = numbers(target.person()).ok_or(RegisterError::NoPersonKey)?;
    Ok(VerifyOptions {
        now,
        allow_last_try,
        basic4,
        statement: StatementBase {
            registration: DocId::random(),
            person: person_key(&insurer, &insured),
            office: engine.store().info().office.clone(),
            device: statement_device(engine)?,
            nonce: rand::random(),
        },
        record: Record::of_person(target.person()),
    })
}

/// The fields that differ, in Japanese (`氏名`, `生年月日`).
pub fn mismatched(cmp: (FieldMatch, FieldMatch)) -> Vec<&'static str> {
    [
        (cmp.0 == FieldMatch::Mismatch).then_some("氏名"),
        (cmp.1 == FieldMatch::Mismatch).then_some("生年月日"),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Facts of the verification that are not on the card.
#[derive(Debug, Clone)]
pub struct Context {
    /// Verification time, unix ms.
    pub now_ms: i64,
    /// The device name recorded as 確認端末.
    pub device: String,
    /// The staff member recorded as 確認者.
    pub staff: Option<String>,
    /// Register even though name or birth date differ (a staff decision).
    pub accept_mismatch: bool,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Registered {
    /// The subject document.
    pub subject_id: DocId,
    /// The subject document was created now.
    pub subject_created: bool,
    /// The new registration document.
    pub registration_id: DocId,
    /// The stored `verification` block.
    pub verification: Value,
    /// Name and birth date comparison.
    pub comparison: (FieldMatch, FieldMatch),
}

/// Writes the registration (and the subject document when missing) in one transaction,
/// under the id the card signed. Nothing is written when the comparison fails without
/// acceptance, the statement is not for this store and person, the evidence does not
/// pass [`check_registration`] against `trust`, or validation fails.
pub fn register(
    engine: &Engine,
    target: &Target,
    v: &Verified,
    cx: &Context,
    trust: &TrustStore,
) -> Result<Registered, RegisterError> {
    let cmp = v.comparison;
    let st = &v.statement;
    let office = engine.store().info().office.clone();
    if st.office != office {
        return Err(RegisterError::Foreign("office"));
    }
    let (insurer, insured) = numbers(target.person()).ok_or(RegisterError::NoPersonKey)?;
    if st.person != person_key(&insurer, &insured) {
        return Err(RegisterError::Foreign("person"));
    }
    if st.device != statement_device(engine)? {
        return Err(RegisterError::Foreign("device"));
    }
    if (st.name, st.birth_date) != cmp {
        return Err(RegisterError::Foreign("comparison"));
    }
    let (subject_id, created) = match target {
        Target::Existing(id, _) => (*id, false),
        Target::New(_) => (DocId::random(), true),
    };
    let registration_id = st.registration;
    let registration = registration_document(v, subject_id, &office, cx)?;
    // The same check every receiver applies: what fails it is never written.
    check_registration(registration_id, &registration, trust).map_err(RegisterError::Evidence)?;
    let verification = registration["verification"].clone();
    let mut inputs = Vec::with_capacity(2);
    if let Target::New(person) = target {
        inputs.push((
            "subject".to_owned(),
            subject_id,
            json!({"kind": "subject", "person": person}),
        ));
    }
    inputs.push(("registration".to_owned(), registration_id, registration));
    engine.import_registration_with_ids(&inputs, cx.now_ms)?;
    Ok(Registered {
        subject_id,
        subject_created: created,
        registration_id,
        verification,
        comparison: cmp,
    })
}

/// The registration document for a verification, as [`register`] writes it (pure):
/// the certificate facts, the comparison (a mismatch only with `cx.accept_mismatch` and a
/// named staff member) and the card evidence. Not checked here: see [`register`].
pub fn registration_document(
    v: &Verified,
    subject_id: DocId,
    office: &str,
    cx: &Context,
) -> Result<Value, RegisterError> {
    let cmp = v.comparison;
    let mut comparison = json!({"name": cmp.0.as_str(), "birth_date": cmp.1.as_str()});
    let differ = mismatched(cmp);
    if !differ.is_empty() {
        if !cx.accept_mismatch {
            return Err(RegisterError::Mismatch(differ));
        }
        let who = cx.staff.clone().ok_or(RegisterError::NoStaff)?;
        comparison["mismatch_accepted_by"] = json!(who);
    }
    let mut verification = json!({
        "method": "jpki_auth_cert",
        "result": "verified",
        "issuer": v.cert.issuer,
        "serial": v.cert.serial,
        "not_before": rfc3339_utc(v.cert.not_before),
        "not_after": rfc3339_utc(v.cert.not_after),
        "fingerprint_sha256": v.cert.fingerprint_sha256,
        "revocation": "not_checked",
        "verified_at": rfc3339_utc(v.statement.time),
        "device": cx.device,
        "comparison": comparison,
        "evidence": v.evidence().to_json(),
    });
    if let Some(s) = &cx.staff {
        verification["staff"] = json!(s);
    }
    Ok(json!({
        "kind": "registration",
        "office": office,
        "subject_id": subject_id.to_string(),
        "verification": verification,
        "withdrawals": [],
    }))
}

/// Where a registration stands for sharing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharingState {
    /// Verified, consent recorded, not withdrawn: the office may read the person's
    /// documents of other offices.
    Valid,
    /// Verified, no consent yet.
    NoConsent,
    /// The verification did not succeed.
    NotVerified,
    /// Consent was withdrawn.
    Withdrawn,
    /// No (or no valid) card evidence, e.g. made before registrations carried the card's
    /// signature: counts for nothing until a new card check (要再確認).
    NeedsReverification,
}

impl SharingState {
    /// As printed by `musubi register status`.
    pub fn as_str(self) -> &'static str {
        match self {
            SharingState::Valid => "valid",
            SharingState::NoConsent => "no_consent",
            SharingState::NotVerified => "not_verified",
            SharingState::Withdrawn => "withdrawn",
            SharingState::NeedsReverification => "needs_reverification",
        }
    }

    /// What staff read.
    pub fn label(self) -> &'static str {
        match self {
            SharingState::Valid => "登録済み（同意あり）",
            SharingState::NoConsent => "本人確認済み・同意未取得",
            SharingState::NotVerified => "本人確認できず",
            SharingState::Withdrawn => "同意撤回済み",
            SharingState::NeedsReverification => "要再確認",
        }
    }
}

/// The sharing state of a registration document, from the document alone (card
/// evidence present or not); [`checked_sharing_state`] also verifies the evidence.
pub fn sharing_state(doc: &Value) -> SharingState {
    let verified = doc["verification"]["result"] == "verified";
    let evidence = doc["verification"]
        .get("evidence")
        .is_some_and(Value::is_object);
    let consent = doc.get("consent").is_some_and(Value::is_object);
    let withdrawn = doc["withdrawals"].as_array().is_some_and(|w| !w.is_empty());
    match (verified, evidence, consent, withdrawn) {
        (_, _, _, true) => SharingState::Withdrawn,
        (false, _, _, _) => SharingState::NotVerified,
        (true, false, _, _) => SharingState::NeedsReverification,
        (true, true, false, _) => SharingState::NoConsent,
        (true, true, true, false) => SharingState::Valid,
    }
}

/// A registration's card evidence as this device sees it (with its own trust anchors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvidenceState {
    /// None stored (a registration from before card evidence).
    Missing,
    /// Stored and verified.
    Valid(Attested),
    /// Stored but not accepted (the field concerned is in the error).
    Invalid(EvidenceError),
}

impl EvidenceState {
    /// As printed: `verified`, `verified_test_root`, `missing`, `invalid`.
    pub fn as_str(&self) -> &'static str {
        match self {
            EvidenceState::Valid(a) if a.test_root => "verified_test_root",
            EvidenceState::Valid(_) => "verified",
            EvidenceState::Missing => "missing",
            EvidenceState::Invalid(_) => "invalid",
        }
    }
}

/// Checks registration `id`'s evidence (statement, chain, signature) with `trust`.
pub fn local_evidence_state(id: DocId, doc: &Value, trust: &TrustStore) -> EvidenceState {
    match check_registration(id, doc, trust) {
        Ok(a) => EvidenceState::Valid(a),
        Err(EvidenceError::Missing) => EvidenceState::Missing,
        Err(e) => EvidenceState::Invalid(e),
    }
}

/// [`sharing_state`], with evidence that does not verify under `trust` counted as
/// missing (要再確認).
pub fn checked_sharing_state(id: DocId, doc: &Value, trust: &TrustStore) -> SharingState {
    match sharing_state(doc) {
        s @ (SharingState::Valid | SharingState::NoConsent) => {
            match local_evidence_state(id, doc, trust) {
                EvidenceState::Valid(_) => s,
                _ => SharingState::NeedsReverification,
            }
        }
        s => s,
    }
}

/// How consent was given (同意の方法).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentMethod {
    /// 署名.
    Signature,
    /// 口頭.
    Verbal,
    /// 電子的同意.
    Electronic,
}

impl ConsentMethod {
    /// All, in the order shown.
    pub const ALL: [ConsentMethod; 3] = [
        ConsentMethod::Signature,
        ConsentMethod::Verbal,
        ConsentMethod::Electronic,
    ];

    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentMethod::Signature => "signature",
            ConsentMethod::Verbal => "verbal",
            ConsentMethod::Electronic => "electronic",
        }
    }

    /// The Japanese label.
    pub fn label(self) -> &'static str {
        match self {
            ConsentMethod::Signature => "署名",
            ConsentMethod::Verbal => "口頭",
            ConsentMethod::Electronic => "電子的同意",
        }
    }
}

/// The consent being recorded.
#[derive(Debug, Clone)]
pub struct Consent {
    /// 同意者.
    pub consented_by: String,
    /// 本人との関係.
    pub relationship: String,
    /// 同意の範囲 (at least one).
    pub scope: Vec<String>,
    /// 同意日, YYYY-MM-DD.
    pub date: String,
    /// 同意の方法.
    pub method: ConsentMethod,
}

fn registration_doc(engine: &Engine, id: DocId) -> Result<Value, RegisterError> {
    let doc = engine.export(id)?;
    if doc.get("kind").and_then(Value::as_str) != Some("registration") {
        return Err(RegisterError::Registration(
            "not a registration document (本人確認・事業所登録ではありません)",
        ));
    }
    Ok(doc)
}

/// Records consent on a registration (validated by the schema like every edit).
pub fn record_consent(
    engine: &Engine,
    id: DocId,
    c: &Consent,
    now_ms: i64,
) -> Result<SharingState, RegisterError> {
    let doc = registration_doc(engine, id)?;
    match sharing_state(&doc) {
        SharingState::Withdrawn => {
            return Err(RegisterError::Registration(
                "同意は撤回されています。新しく本人確認をして登録し直してください (consent was withdrawn; a new 本人確認 makes a new registration)",
            ));
        }
        SharingState::NeedsReverification => {
            return Err(RegisterError::Registration(
                "この登録にはカードの署名がありません（要再確認）。カードでもう一度本人確認をしてください (no card evidence; a new 本人確認 makes a new registration)",
            ));
        }
        _ => {}
    }
    let consent = json!({
        "consented_by": c.consented_by.trim(),
        "relationship": c.relationship.trim(),
        "scope": c.scope,
        "date": c.date,
        "method": c.method.as_str(),
    });
    engine.set_registration(id, &pointer("/consent")?, consent, now_ms)?;
    Ok(sharing_state(&engine.export(id)?))
}

/// Appends a withdrawal of consent (nothing is deleted; sharing stops at the next sync).
pub fn record_withdrawal(
    engine: &Engine,
    id: DocId,
    date: &str,
    reason: Option<&str>,
    now_ms: i64,
) -> Result<SharingState, RegisterError> {
    registration_doc(engine, id)?;
    let mut w = json!({"date": date});
    if let Some(s) = engine.store().info().staff.clone() {
        w["recorded_by"] = json!(s);
    }
    if let Some(r) = reason.map(str::trim).filter(|r| !r.is_empty()) {
        w["reason"] = json!(r);
    }
    engine.set_registration(id, &pointer("/withdrawals/-")?, w, now_ms)?;
    Ok(sharing_state(&engine.export(id)?))
}

/// Registration documents of a subject, newest verification first.
pub fn registrations_of(
    engine: &Engine,
    subject: DocId,
) -> Result<Vec<(DocId, Value)>, RegisterError> {
    let want = subject.to_string();
    let mut out = Vec::new();
    for d in engine.list()? {
        if d.kind != "registration" {
            continue;
        }
        let doc = engine.export(d.id)?;
        if doc.get("subject_id").and_then(Value::as_str) == Some(want.as_str()) {
            out.push((d.id, doc));
        }
    }
    out.sort_by(|a, b| {
        let at = |v: &Value| v["verification"]["verified_at"].as_str().map(str::to_owned);
        at(&b.1).cmp(&at(&a.1))
    });
    Ok(out)
}

/// Where the root that issued the certificate came from, for the result.
pub fn root_label(source: &AnchorSource) -> String {
    match source {
        AnchorSource::Bundled { generation } => {
            format!("J-LIS 利用者証明用認証局（第{generation}世代、同梱）")
        }
        AnchorSource::Configured => "設定された信頼点（試験用）".to_owned(),
    }
}

fn pointer(p: &str) -> Result<Pointer, RegisterError> {
    Pointer::parse(p).map_err(|_| RegisterError::Registration("internal pointer"))
}

#[cfg(all(test, feature = "net"))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::net::enroll::{CREDENTIALS_META_KEY, store_credentials};
    use crate::net::pki::{DeviceSubject, OfficeCa, issue_device_cert_now};
    use crate::net::tls::DeviceCredentials;
    use crate::store::{InitOptions, Store};
    use age::secrecy::SecretString;

    const OFFICE: &str = "1370100016";

    fn engine(dir: &std::path::Path) -> Engine {
        let pass = SecretString::from("correct horse battery staple".to_owned());
        let store = Store::init(
            dir,
            &pass,
            InitOptions {
                office: OFFICE.into(),
                device_name: "tablet".into(),
                kdf_work_factor: Some(10),
                ..InitOptions::default()
            },
        )
        .unwrap();
        Engine::new(store, None).unwrap()
    }

    #[test]
    fn the_statement_names_the_enrolled_device_else_the_store_and_this_person() {
        let tmp = tempfile::tempdir().unwrap();
        let engine = engine(&tmp.path().join("store"));
        let own = engine.store().info().device_id.clone();
        let person = json!({
            "insurer_number": " 131011 ",
            "insured_number": "0000012345",
            "name": "結城 花子",
            "birth_date": "1944-05-12",
        });
        let target = Target::New(person);
        let opts = verify_options(&engine, &target, 1_790_000_000, false, true).unwrap();
        assert_eq!(opts.statement.device, own, "not enrolled: the store's id");
        assert_eq!(opts.statement.office, OFFICE);
        assert_eq!(
            opts.statement.person,
            person_key("131011", "0000012345"),
            "the person key of sync::sharing (numbers trimmed)"
        );
        assert_eq!(opts.record.name.as_deref(), Some("結城 花子"));
        assert!(
            !format!("{opts:?}").contains("結城"),
            "personal data in Debug"
        );
        let again = verify_options(&engine, &target, 1_790_000_000, false, true).unwrap();
        assert_ne!(opts.statement.registration, again.statement.registration);
        assert_ne!(opts.statement.nonce, again.statement.nonce);

        // Enrolled: the device certificate's id, which the relay compares with the uploader.
        let ca = OfficeCa::generate("relay-test").unwrap();
        let subject = DeviceSubject::new_random("訪問用タブレット", OFFICE).unwrap();
        let cert = issue_device_cert_now(&ca, &subject).unwrap();
        let creds = DeviceCredentials {
            device_id: subject.device_id.clone(),
            device_name: subject.device_name,
            office: subject.office,
            cert_pem: cert.cert_pem,
            key_pem: cert.key_pem,
            office_ca_pem: ca.cert_pem().to_owned(),
            relay_address: "relay.example.jp:4433".into(),
        };
        store_credentials(engine.store(), &creds).unwrap();
        assert_ne!(subject.device_id, own);
        assert_eq!(statement_device(&engine).unwrap(), subject.device_id);
        let opts = verify_options(&engine, &target, 1_790_000_000, false, true).unwrap();
        assert_eq!(opts.statement.device, subject.device_id);

        // Damaged credentials: refused before any card is touched.
        engine
            .store()
            .put_meta(CREDENTIALS_META_KEY, "garbage")
            .unwrap();
        assert!(matches!(
            verify_options(&engine, &target, 1_790_000_000, false, true),
            Err(RegisterError::Credentials)
        ));
        // No insurance numbers: no person key.
        let nameless = Target::New(json!({"name": "x"}));
        assert!(matches!(
            verify_options(&engine, &nameless, 1, false, true),
            Err(RegisterError::NoPersonKey)
        ));
        engine.close().unwrap();
    }

    #[test]
    fn sharing_state_needs_evidence() {
        let mut doc = json!({
            "kind": "registration",
            "verification": {"result": "verified", "evidence": {}},
            "withdrawals": [],
        });
        assert_eq!(sharing_state(&doc), SharingState::NoConsent);
        doc["consent"] = json!({});
        assert_eq!(sharing_state(&doc), SharingState::Valid);
        doc["verification"]
            .as_object_mut()
            .unwrap()
            .remove("evidence");
        assert_eq!(sharing_state(&doc), SharingState::NeedsReverification);
        assert_eq!(sharing_state(&doc).as_str(), "needs_reverification");
        assert_eq!(sharing_state(&doc).label(), "要再確認");
        doc["verification"]["result"] = json!("failed");
        assert_eq!(sharing_state(&doc), SharingState::NotVerified);
        doc["withdrawals"] = json!([{"date": "2026-01-01"}]);
        assert_eq!(sharing_state(&doc), SharingState::Withdrawn);
        // Evidence that does not verify counts as none.
        doc["withdrawals"] = json!([]);
        doc["verification"]["result"] = json!("verified");
        doc["verification"]["evidence"] = json!({});
        let id = DocId::random();
        let trust = TrustStore::bundled().unwrap();
        assert_eq!(
            checked_sharing_state(id, &doc, &trust),
            SharingState::NeedsReverification
        );
        assert!(matches!(
            local_evidence_state(id, &doc, &trust),
            EvidenceState::Invalid(_)
        ));
    }
}
