//! The offline 本人確認 flow over one exclusive card session:
//!
//! 1. SELECT the JPKI AP (fails: not a My Number card), read the authentication
//!    certificate and validate it against the trust anchors *before* any PIN is sent;
//!    query the authentication PIN's retries (no try spent) and apply the PIN policy, so a
//!    locked card or an unconfirmed last try stops before anything else;
//! 2. optionally, with the 券面事項入力補助 PIN, read the basic four items, check them
//!    against DF32/DF33 (never touching the My Number EF; DF31 is zeroised) and compare
//!    name and birth date with the record;
//! 3. back in the JPKI AP, VERIFY the authentication PIN and have the card sign the
//!    registration statement ([`super::evidence::Statement`]: registration id, person,
//!    office, device, time, a fresh nonce and the comparison), then check the signature
//!    with the certificate's key. The statement, signature and certificate are the
//!    registration's evidence.
//!
//! Revocation is not checked: J-LIS gives revocation data only to registered verifiers,
//! and this runs offline. The result says `revocation: not_checked`.

use super::basic4::{self, Basic4, Basic4Check, Basic4Error};
use super::cert::{self, CertError, ValidatedCert};
use super::compare::{FieldMatch, Record};
use super::evidence::{Evidence, Statement, StatementBase};
use super::reader::{
    AID_JPKI, AID_SUPPORT, CardError, CardSession, EF_AUTH_CERT, EF_AUTH_PIN, EF_BASIC4,
    EF_CV_CERT, EF_INTEGRITY, EF_SUPPORT_PIN, PinKind, PinStatus,
};
use super::roots::TrustStore;
use super::transport::CardTransport;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// DER prefix of a SHA-256 DigestInfo.
const DIGEST_INFO_SHA256: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// Anything that stopped the verification. Nothing has been written when this is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Card or transport.
    #[error(transparent)]
    Card(#[from] CardError),
    /// The certificate.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The card's signature over the statement does not verify with the certificate's key.
    #[error(
        "カードの署名を確認できません (the card's signature over the registration statement does not match its certificate)"
    )]
    BadSignature,
    /// The 券面事項入力補助 data.
    #[error(transparent)]
    Basic4(#[from] Basic4Error),
}

/// Supplies PINs when the flow needs them. `remaining` is what the card reported.
pub trait PinSource {
    /// The PIN for `kind`, or `None` if none is given (the flow then stops).
    fn pin(&mut self, kind: PinKind, remaining: u8) -> Option<Zeroizing<String>>;
}

/// Options of one verification.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Verification time, unix seconds (the caller's clock); the statement's `time`.
    pub now: i64,
    /// Allow a try when only one is left (explicit confirmation).
    pub allow_last_try: bool,
    /// Also read and check the basic four items with the 入力補助 PIN.
    pub basic4: bool,
    /// What the card signs besides the time and the comparison.
    pub statement: StatementBase,
    /// The record's name and birth date, compared with the card's basic four.
    pub record: Record,
}

/// Verified basic four items and how they were checked.
#[derive(Debug, Clone)]
pub struct Basic4Result {
    /// The items (personal data: compare, do not log).
    pub items: Basic4,
    /// DF32/DF33 checks.
    pub check: Basic4Check,
}

/// The outcome of a successful verification. `Debug` shows no certificate identifiers,
/// card data or person key.
#[derive(Clone)]
pub struct Verified {
    /// The validated authentication certificate.
    pub cert: ValidatedCert,
    /// The certificate as read (DER), for the evidence.
    pub certificate: Vec<u8>,
    /// The card's copy of the CA certificate (EF `000B`) equals the root chosen.
    pub card_ca_matches_root: bool,
    /// Basic four, when asked for.
    pub basic4: Option<Basic4Result>,
    /// Name and birth date compared with the record (also in the statement).
    pub comparison: (FieldMatch, FieldMatch),
    /// The statement the card signed.
    pub statement: Statement,
    /// The card's signature over the statement's text.
    pub signature: Vec<u8>,
    /// APDUs exchanged.
    pub apdus: usize,
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verified")
            .field("root_source", &self.cert.root_source)
            .field("card_ca_matches_root", &self.card_ca_matches_root)
            .field("basic4", &self.basic4.is_some())
            .field("comparison", &self.comparison)
            .field("statement", &self.statement)
            .field("apdus", &self.apdus)
            .finish_non_exhaustive()
    }
}

impl Verified {
    /// The registration's `verification.evidence`.
    pub fn evidence(&self) -> Evidence {
        Evidence {
            statement: self.statement.clone(),
            signature: self.signature.clone(),
            certificate: self.certificate.clone(),
        }
    }
}

/// DigestInfo (SHA-256) of a message, as the card expects it.
pub fn digest_info(message: &[u8]) -> Vec<u8> {
    let mut d = DIGEST_INFO_SHA256.to_vec();
    d.extend_from_slice(&Sha256::digest(message));
    d
}

/// Reads the retries of a PIN (no try spent) and applies the policy: locked → stop with
/// the municipality hint; one left → refuse unless confirmed. Returns the tries left.
fn check_pin_policy<T: CardTransport>(
    session: &mut CardSession<T>,
    fid: u16,
    kind: PinKind,
    allow_last_try: bool,
) -> Result<Option<u8>, CardError> {
    match session.pin_status(fid)? {
        PinStatus::Locked | PinStatus::Remaining(0) => Err(CardError::PinLocked(kind)),
        PinStatus::Remaining(1) if !allow_last_try => Err(CardError::LastTryNotConfirmed { kind }),
        PinStatus::Remaining(n) => Ok(Some(n)),
        PinStatus::Verified => Ok(None),
    }
}

fn enter_pin<T: CardTransport>(
    session: &mut CardSession<T>,
    fid: u16,
    kind: PinKind,
    opts: &VerifyOptions,
    pins: &mut dyn PinSource,
) -> Result<(), CardError> {
    if let Some(remaining) = check_pin_policy(session, fid, kind, opts.allow_last_try)? {
        let pin = pins.pin(kind, remaining).ok_or(CardError::NoPin { kind })?;
        session.verify_pin(kind, &pin)?;
    }
    Ok(())
}

/// PIN retries of both PINs without spending a try (`musubi card status`).
pub fn pin_retries<T: CardTransport>(
    transport: T,
) -> Result<(PinStatus, Option<PinStatus>), CardError> {
    let mut s = CardSession::new(transport);
    s.select_ap(AID_JPKI)?;
    let auth = s.pin_status(EF_AUTH_PIN)?;
    let support = match s.select_ap(AID_SUPPORT) {
        Ok(()) => Some(s.pin_status(EF_SUPPORT_PIN)?),
        Err(CardError::Status { sw: 0x6A82, .. }) => None,
        Err(e) => return Err(e),
    };
    Ok((auth, support))
}

/// Runs the whole verification over one session.
pub fn verify_card<T: CardTransport>(
    transport: T,
    anchors: &TrustStore,
    opts: &VerifyOptions,
    pins: &mut dyn PinSource,
) -> Result<Verified, VerifyError> {
    let mut s = CardSession::new(transport);
    s.select_ap(AID_JPKI)?;
    let leaf = s.read_object(EF_AUTH_CERT)?;
    let cert = cert::validate_auth_cert(&leaf, anchors, opts.now)?;
    let card_ca = s.read_object(super::reader::EF_AUTH_CA_CERT)?;
    let card_ca_matches_root = hex::encode(Sha256::digest(&card_ca[..])) == cert.root_sha256;
    // The signing PIN's policy first (no try spent): a locked card or an unconfirmed last
    // try stops before the 入力補助 PIN is asked for.
    check_pin_policy(&mut s, EF_AUTH_PIN, PinKind::Auth, opts.allow_last_try)?;

    let (basic4, comparison) = if opts.basic4 {
        s.select_ap(AID_SUPPORT)?;
        enter_pin(&mut s, EF_SUPPORT_PIN, PinKind::Support, opts, pins)?;
        let ef2 = s.read_object(EF_BASIC4)?;
        let ef3 = s.read_object(EF_INTEGRITY)?;
        let ef4 = s.read_object(EF_CV_CERT)?;
        let (items, check) = basic4::check(&ef2, ef3, &ef4)?;
        let cmp = opts.record.compare(&items.name, &items.birth_date);
        (Some(Basic4Result { items, check }), cmp)
    } else {
        (None, (FieldMatch::NotCompared, FieldMatch::NotCompared))
    };

    // Sign last, when everything the statement says is known.
    s.select_ap(AID_JPKI)?;
    enter_pin(&mut s, EF_AUTH_PIN, PinKind::Auth, opts, pins)?;
    let statement = opts
        .statement
        .complete(opts.now, comparison.0, comparison.1);
    let text = statement.to_text();
    let signature = s.sign_auth(&digest_info(text.as_bytes()))?;
    if !cert::verify_rsa_sha256(&cert.rsa_public_key, text.as_bytes(), &signature) {
        return Err(VerifyError::BadSignature);
    }
    Ok(Verified {
        cert,
        certificate: leaf.to_vec(),
        card_ca_matches_root,
        basic4,
        comparison,
        statement,
        signature,
        apdus: s.apdus,
    })
}
