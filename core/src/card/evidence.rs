//! Card evidence of a registration: the **statement** the My Number card signs with its
//! user-authentication key (after the 利用者証明用暗証番号) and the pure check of a
//! registration document against it.
//!
//! The statement is canonical UTF-8 text, one `key=value` line each, LF after every line,
//! in this order and nothing else:
//!
//! ```text
//! musubi registration statement v1
//! registration=<32 lower-hex doc id of the registration>
//! person=<64 lower-hex sync::sharing::person_key(保険者番号, 被保険者番号)>
//! office=<事業所番号 of the registering office>
//! device=<32 lower-hex device id: the enrolled certificate's, else the store's>
//! time=<unix seconds of the verification>
//! nonce=<64 lower-hex, 32 fresh random bytes>
//! name=<match|mismatch|not_compared>
//! birth_date=<match|mismatch|not_compared>
//! ```
//!
//! The registration stores it at `verification.evidence` with the signature
//! (RSASSA-PKCS1-v1_5, SHA-256) and the user-authentication certificate (DER; it holds no
//! name or address), each in standard base64 (RFC 4648, padded; the statement as its
//! UTF-8 bytes). Base64, not hex: every string of a document passes the 個人番号 guard,
//! which refuses a run of exactly 12 digits with a valid check digit, and random hex
//! has such a run often (a 1.5 KB certificate in hex about one time in seven; a 64-digit
//! person key in the statement text one person in 350, for good), random base64 about
//! never. [`check_registration`] verifies all of it against the trust anchors of whoever
//! checks, so a device's own `result` counts for nothing. Errors and `Debug` output name
//! fields, never values.

use super::cert::{self, CertError};
use super::compare::FieldMatch;
use super::roots::{AnchorSource, TrustStore};
use crate::ids::DocId;
use serde_json::{Value, json};

/// The first line of every statement.
pub const STATEMENT_HEADER: &str = "musubi registration statement v1";
/// Longest statement accepted (bytes).
pub const MAX_STATEMENT_BYTES: usize = 2000;
/// Signature length bounds in bytes (RSA-1024 … RSA-4096).
const SIGNATURE_BYTES: std::ops::RangeInclusive<usize> = 128..=512;
/// Certificate length bounds in bytes (what is read from a card).
const CERTIFICATE_BYTES: std::ops::RangeInclusive<usize> = 1..=cert::MAX_CERT_BYTES;
/// Statement length bounds in bytes.
const STATEMENT_BYTES: std::ops::RangeInclusive<usize> = 1..=MAX_STATEMENT_BYTES;

/// Standard base64 (RFC 4648 §4, padded), strict: only the canonical encoding decodes.
pub mod base64 {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    /// Encodes with padding.
    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    /// Decodes the canonical encoding only (length a multiple of 4, padding only at the
    /// end, unused bits zero, no white space); anything else is `None`.
    pub fn decode(s: &str) -> Option<Vec<u8>> {
        if !s.len().is_multiple_of(4) {
            return None;
        }
        let body = s.trim_end_matches('=');
        if s.len() - body.len() > 2 {
            return None;
        }
        let mut out = Vec::with_capacity(s.len() / 4 * 3);
        let mut acc = 0u32;
        let mut bits = 0;
        for c in body.bytes() {
            let v = ALPHABET.iter().position(|a| *a == c)?;
            acc = (acc << 6) | v as u32;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        (encode(&out) == s).then_some(out)
    }
}

/// JSON pointers of the fields the check names.
mod at {
    pub const EVIDENCE: &str = "/verification/evidence";
    pub const STATEMENT: &str = "/verification/evidence/statement";
    pub const SIGNATURE: &str = "/verification/evidence/signature";
    pub const CERTIFICATE: &str = "/verification/evidence/certificate";
    pub const OFFICE: &str = "/office";
    pub const METHOD: &str = "/verification/method";
    pub const RESULT: &str = "/verification/result";
    pub const COMPARISON: &str = "/verification/comparison";
    pub const CMP_NAME: &str = "/verification/comparison/name";
    pub const CMP_BIRTH: &str = "/verification/comparison/birth_date";
    pub const CMP_ACCEPTED: &str = "/verification/comparison/mismatch_accepted_by";
    pub const FINGERPRINT: &str = "/verification/fingerprint_sha256";
    pub const SERIAL: &str = "/verification/serial";
    pub const ISSUER: &str = "/verification/issuer";
}

/// The statement the card signs. `Debug` leaves out the person key (a pseudonym of the
/// insurance numbers) and the nonce.
#[derive(Clone, PartialEq, Eq)]
pub struct Statement {
    /// The registration document the statement is for.
    pub registration: DocId,
    /// `sync::sharing::person_key` of the subject (64 lower-hex).
    pub person: String,
    /// 事業所番号 of the registering office.
    pub office: String,
    /// Device id (32 lower-hex) of the verifying device.
    pub device: String,
    /// Verification time, unix seconds.
    pub time: i64,
    /// 32 fresh random bytes.
    pub nonce: [u8; 32],
    /// Name comparison with the subject record.
    pub name: FieldMatch,
    /// Birth date comparison with the subject record.
    pub birth_date: FieldMatch,
}

impl std::fmt::Debug for Statement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Statement")
            .field("registration", &self.registration)
            .field("person", &"[redacted]")
            .field("office", &self.office)
            .field("device", &self.device)
            .field("time", &self.time)
            .field("name", &self.name)
            .field("birth_date", &self.birth_date)
            .finish_non_exhaustive()
    }
}

/// A statement that is not in the canonical form: the line (1-based) and what it should
/// have been. Carries no content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "本人確認の記述文の{line}行目が不正です (registration statement line {line}: expected {expected})"
)]
pub struct StatementError {
    /// The line, 1-based (the line after the last when one is missing).
    pub line: usize,
    /// What the line should be, e.g. `registration=<32 lower-hex>`.
    pub expected: &'static str,
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_office(s: &str) -> bool {
    s.len() == 10
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
}

fn parse_time(s: &str) -> Option<i64> {
    let canonical = !s.is_empty()
        && s.len() <= 19
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if canonical { s.parse().ok() } else { None }
}

impl Statement {
    /// The canonical text (what the card signs).
    pub fn to_text(&self) -> String {
        format!(
            "{STATEMENT_HEADER}\nregistration={}\nperson={}\noffice={}\ndevice={}\ntime={}\nnonce={}\nname={}\nbirth_date={}\n",
            self.registration,
            self.person,
            self.office,
            self.device,
            self.time,
            hex::encode(self.nonce),
            self.name.as_str(),
            self.birth_date.as_str(),
        )
    }

    /// Parses a statement, strictly: exactly the canonical text (so `parse(t)?.to_text()
    /// == t`), else the first bad line.
    pub fn parse(text: &str) -> Result<Statement, StatementError> {
        const EXPECTED: [&str; 9] = [
            STATEMENT_HEADER,
            "registration=<32 lower-hex>",
            "person=<64 lower-hex>",
            "office=<事業所番号>",
            "device=<32 lower-hex>",
            "time=<unix seconds>",
            "nonce=<64 lower-hex>",
            "name=<match|mismatch|not_compared>",
            "birth_date=<match|mismatch|not_compared>",
        ];
        let bad = |i: usize| StatementError {
            line: i + 1,
            expected: EXPECTED.get(i).copied().unwrap_or("end of the statement"),
        };
        if text.len() > MAX_STATEMENT_BYTES {
            return Err(StatementError {
                line: 1,
                expected: "at most 2000 bytes",
            });
        }
        // Every line ends in LF: the text splits into the lines and one empty tail.
        let mut lines: Vec<&str> = text.split('\n').collect();
        match lines.pop() {
            Some("") => {}
            _ => return Err(bad(lines.len())),
        }
        if lines.len() > EXPECTED.len() {
            return Err(bad(EXPECTED.len()));
        }
        let value = |i: usize| -> Result<&str, StatementError> {
            let line = lines.get(i).ok_or_else(|| bad(i))?;
            let key = EXPECTED[i].split('=').next().unwrap_or_default();
            line.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix('='))
                .ok_or_else(|| bad(i))
        };
        if lines.first() != Some(&STATEMENT_HEADER) {
            return Err(bad(0));
        }
        let registration = value(1)?;
        if !is_lower_hex(registration, 32) {
            return Err(bad(1));
        }
        let registration = registration.parse::<DocId>().map_err(|_| bad(1))?;
        let person = value(2)?;
        if !is_lower_hex(person, 64) {
            return Err(bad(2));
        }
        let office = value(3)?;
        if !is_office(office) {
            return Err(bad(3));
        }
        let device = value(4)?;
        if !is_lower_hex(device, 32) {
            return Err(bad(4));
        }
        let time = parse_time(value(5)?).ok_or_else(|| bad(5))?;
        let nonce_hex = value(6)?;
        let mut nonce = [0u8; 32];
        if !is_lower_hex(nonce_hex, 64) || hex::decode_to_slice(nonce_hex, &mut nonce).is_err() {
            return Err(bad(6));
        }
        let name = FieldMatch::parse(value(7)?).ok_or_else(|| bad(7))?;
        let birth_date = FieldMatch::parse(value(8)?).ok_or_else(|| bad(8))?;
        Ok(Statement {
            registration,
            person: person.to_owned(),
            office: office.to_owned(),
            device: device.to_owned(),
            time,
            nonce,
            name,
            birth_date,
        })
    }
}

/// The parts of a statement fixed before the card session; the verification adds the
/// time and the comparison ([`StatementBase::complete`]).
#[derive(Clone)]
pub struct StatementBase {
    /// Id the registration will get (generated before signing).
    pub registration: DocId,
    /// `sync::sharing::person_key` of the subject.
    pub person: String,
    /// 事業所番号 of this store.
    pub office: String,
    /// Device id: the enrolled certificate's, else the store's.
    pub device: String,
    /// 32 fresh random bytes (from a CSPRNG).
    pub nonce: [u8; 32],
}

impl std::fmt::Debug for StatementBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatementBase")
            .field("registration", &self.registration)
            .field("office", &self.office)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl StatementBase {
    /// The statement at `time` with the comparison outcome.
    pub fn complete(&self, time: i64, name: FieldMatch, birth_date: FieldMatch) -> Statement {
        Statement {
            registration: self.registration,
            person: self.person.clone(),
            office: self.office.clone(),
            device: self.device.clone(),
            time,
            nonce: self.nonce,
            name,
            birth_date,
        }
    }
}

/// `verification.evidence` of a registration.
#[derive(Clone, PartialEq, Eq)]
pub struct Evidence {
    /// The statement, parsed.
    pub statement: Statement,
    /// The signature over the statement's bytes.
    pub signature: Vec<u8>,
    /// The user-authentication certificate, DER.
    pub certificate: Vec<u8>,
}

impl std::fmt::Debug for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evidence")
            .field("statement", &self.statement)
            .field("signature_bytes", &self.signature.len())
            .field("certificate_bytes", &self.certificate.len())
            .finish()
    }
}

fn base64_field(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    field: &'static str,
    bounds: std::ops::RangeInclusive<usize>,
) -> Result<Vec<u8>, EvidenceError> {
    let s = obj
        .get(key)
        .and_then(Value::as_str)
        .ok_or(EvidenceError::Malformed {
            field,
            what: "missing or not text",
        })?;
    // Bound the text before decoding it.
    if s.len() > bounds.end().div_ceil(3) * 4 {
        return Err(EvidenceError::Malformed {
            field,
            what: "longer than allowed",
        });
    }
    let bytes = base64::decode(s).ok_or(EvidenceError::Malformed {
        field,
        what: "not canonical base64",
    })?;
    if !bounds.contains(&bytes.len()) {
        return Err(EvidenceError::Malformed {
            field,
            what: "length out of range",
        });
    }
    Ok(bytes)
}

impl Evidence {
    /// Reads `verification.evidence` of a registration document.
    pub fn from_registration(reg: &Value) -> Result<Evidence, EvidenceError> {
        let obj = match reg.pointer(at::EVIDENCE) {
            None | Some(Value::Null) => return Err(EvidenceError::Missing),
            Some(Value::Object(o)) => o,
            Some(_) => {
                return Err(EvidenceError::Malformed {
                    field: at::EVIDENCE,
                    what: "not an object",
                });
            }
        };
        if obj
            .keys()
            .any(|k| !matches!(k.as_str(), "statement" | "signature" | "certificate"))
        {
            return Err(EvidenceError::Malformed {
                field: at::EVIDENCE,
                what: "unexpected field",
            });
        }
        let bytes = base64_field(obj, "statement", at::STATEMENT, STATEMENT_BYTES)?;
        let text = String::from_utf8(bytes).map_err(|_| EvidenceError::Malformed {
            field: at::STATEMENT,
            what: "not UTF-8",
        })?;
        let statement = Statement::parse(&text)?;
        let signature = base64_field(obj, "signature", at::SIGNATURE, SIGNATURE_BYTES)?;
        let certificate = base64_field(obj, "certificate", at::CERTIFICATE, CERTIFICATE_BYTES)?;
        Ok(Evidence {
            statement,
            signature,
            certificate,
        })
    }

    /// As stored at `verification.evidence` (each value base64).
    pub fn to_json(&self) -> Value {
        json!({
            "statement": base64::encode(self.statement.to_text().as_bytes()),
            "signature": base64::encode(&self.signature),
            "certificate": base64::encode(&self.certificate),
        })
    }
}

/// Why a registration's evidence is not accepted. Stable [`EvidenceError::code`]
/// (`evidence`) and the field concerned ([`EvidenceError::field`]); never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// No `verification.evidence` (a registration from before card evidence).
    #[error(
        "カードによる本人確認の証跡がありません。カードでもう一度本人確認をしてください (registration has no card evidence at /verification/evidence)"
    )]
    Missing,
    /// The evidence is not laid out as it must be.
    #[error("本人確認の証跡を読み取れません (card evidence at {field}: {what})")]
    Malformed {
        /// JSON pointer.
        field: &'static str,
        /// What is wrong.
        what: &'static str,
    },
    /// The statement is not canonical.
    #[error(transparent)]
    Statement(#[from] StatementError),
    /// The registration says something the signed statement does not.
    #[error(
        "本人確認の証跡が登録内容と一致しません (card evidence does not match {field}: {what})"
    )]
    Mismatch {
        /// JSON pointer of the registration field (or the statement).
        field: &'static str,
        /// Which part differs.
        what: &'static str,
    },
    /// The certificate does not validate against the trust anchors at the statement time.
    #[error("本人確認の証跡の証明書を確認できません (card evidence certificate: {0})")]
    Certificate(CertError),
    /// The signature does not verify over the statement with the certificate's key.
    #[error(
        "本人確認の証跡の署名を確認できません (card evidence signature does not verify over the statement)"
    )]
    Signature,
}

impl EvidenceError {
    /// Stable code, as sent in `doc_rejected`.
    pub fn code(&self) -> &'static str {
        "evidence"
    }

    /// JSON pointer of what was wrong.
    pub fn field(&self) -> &'static str {
        match self {
            EvidenceError::Missing => at::EVIDENCE,
            EvidenceError::Malformed { field, .. } | EvidenceError::Mismatch { field, .. } => field,
            EvidenceError::Statement(_) => at::STATEMENT,
            EvidenceError::Certificate(_) => at::CERTIFICATE,
            EvidenceError::Signature => at::SIGNATURE,
        }
    }
}

/// What a successful check established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attested {
    /// The signed statement.
    pub statement: Statement,
    /// SHA-256 (lower hex) of the user-authentication certificate.
    pub cert_fingerprint: String,
    /// The certificate chains to a configured (test) root, not a bundled J-LIS root.
    pub test_root: bool,
}

fn text_at<'a>(reg: &'a Value, pointer: &str) -> Option<&'a str> {
    reg.pointer(pointer).and_then(Value::as_str)
}

fn mismatch(field: &'static str, what: &'static str) -> EvidenceError {
    EvidenceError::Mismatch { field, what }
}

/// Checks a registration document (`id`, its JSON) against its card evidence:
/// evidence present and well-formed; the statement is for this registration and (when
/// the document names one) its office; `verification.method`/`result` are
/// `jpki_auth_cert`/`verified`; the comparison recorded equals the signed one, and a
/// mismatch names the staff member who accepted it; the certificate validates against
/// `trust` at the statement's time and is the one `verification` describes (fingerprint,
/// serial, issuer); the signature verifies over the statement's bytes. Pure: no clock,
/// no store.
pub fn check_registration(
    id: DocId,
    reg: &Value,
    trust: &TrustStore,
) -> Result<Attested, EvidenceError> {
    let ev = Evidence::from_registration(reg)?;
    let st = &ev.statement;
    if st.registration != id {
        return Err(mismatch(at::STATEMENT, "registration (another document)"));
    }
    match reg.get("office") {
        None => {}
        Some(Value::String(o)) if *o == st.office => {}
        Some(_) => return Err(mismatch(at::OFFICE, "office")),
    }
    if text_at(reg, at::METHOD) != Some("jpki_auth_cert") {
        return Err(mismatch(at::METHOD, "method"));
    }
    if text_at(reg, at::RESULT) != Some("verified") {
        return Err(mismatch(at::RESULT, "result"));
    }
    if !reg.pointer(at::COMPARISON).is_some_and(Value::is_object) {
        return Err(mismatch(at::COMPARISON, "comparison"));
    }
    if text_at(reg, at::CMP_NAME) != Some(st.name.as_str()) {
        return Err(mismatch(at::CMP_NAME, "name"));
    }
    if text_at(reg, at::CMP_BIRTH) != Some(st.birth_date.as_str()) {
        return Err(mismatch(at::CMP_BIRTH, "birth_date"));
    }
    let accepted = text_at(reg, at::CMP_ACCEPTED).is_some_and(|s| !s.trim().is_empty());
    if (st.name == FieldMatch::Mismatch || st.birth_date == FieldMatch::Mismatch) && !accepted {
        return Err(mismatch(
            at::CMP_ACCEPTED,
            "a mismatch without the staff member who accepted it",
        ));
    }
    let cert = cert::validate_auth_cert(&ev.certificate, trust, st.time)
        .map_err(EvidenceError::Certificate)?;
    if text_at(reg, at::FINGERPRINT) != Some(cert.fingerprint_sha256.as_str()) {
        return Err(mismatch(at::FINGERPRINT, "certificate fingerprint"));
    }
    if text_at(reg, at::SERIAL) != Some(cert.serial.as_str()) {
        return Err(mismatch(at::SERIAL, "certificate serial"));
    }
    if text_at(reg, at::ISSUER) != Some(cert.issuer.as_str()) {
        return Err(mismatch(at::ISSUER, "certificate issuer"));
    }
    let text = st.to_text();
    if !cert::verify_rsa_sha256(&cert.rsa_public_key, text.as_bytes(), &ev.signature) {
        return Err(EvidenceError::Signature);
    }
    Ok(Attested {
        statement: ev.statement.clone(),
        cert_fingerprint: cert.fingerprint_sha256,
        test_root: cert.root_source == AnchorSource::Configured,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Statement {
        Statement {
            registration: "0123456789abcdef0123456789abcdef".parse().unwrap(),
            person: "ab".repeat(32),
            office: "1370100016".to_owned(),
            device: "fe".repeat(16),
            time: 1_790_000_000,
            nonce: [7; 32],
            name: FieldMatch::Match,
            birth_date: FieldMatch::NotCompared,
        }
    }

    fn registration(text: &str) -> Value {
        json!({
            "kind": "registration",
            "office": "1370100016",
            "subject_id": "5f0c2a9e7b3d41c68e2f90a1b4c7d3e2",
            "verification": {
                "method": "jpki_auth_cert",
                "result": "verified",
                "comparison": {"name": "match", "birth_date": "not_compared"},
                "evidence": {
                    "statement": base64::encode(text.as_bytes()),
                    "signature": base64::encode(&[0; 256]),
                    "certificate": base64::encode(&[0x30, 0x82]),
                },
            },
            "withdrawals": [],
        })
    }

    #[test]
    fn statement_text_is_canonical_and_round_trips() {
        let s = sample();
        let text = s.to_text();
        assert_eq!(
            text,
            format!(
                "musubi registration statement v1\nregistration=0123456789abcdef0123456789abcdef\nperson={}\noffice=1370100016\ndevice={}\ntime=1790000000\nnonce={}\nname=match\nbirth_date=not_compared\n",
                "ab".repeat(32),
                "fe".repeat(16),
                "07".repeat(32)
            )
        );
        assert_eq!(Statement::parse(&text).unwrap(), s);
    }

    #[test]
    fn statement_parse_names_the_bad_line() {
        let good = sample().to_text();
        let cases: Vec<(String, usize)> = vec![
            (good.replace("v1\n", "v2\n"), 1),
            (good.replace("registration=0123", "registration=0A23"), 2),
            (good.replace("registration=", "registratio="), 2),
            (good.replace("person=abab", "person=ab"), 3),
            (good.replace("office=1370100016", "office=137010001"), 4),
            (good.replace("device=fefe", "device=FEfe"), 5),
            (good.replace("time=1790000000", "time=01790000000"), 6),
            (good.replace("time=1790000000", "time=-1"), 6),
            (
                good.replace("time=1790000000", "time=99999999999999999999"),
                6,
            ),
            (good.replace("nonce=0707", "nonce=07"), 7),
            (good.replace("name=match", "name=Match"), 8),
            (good.replace("birth_date=not_compared", "birth_date=yes"), 9),
            (good.replace("name=match\n", ""), 8),
            (format!("{good}extra=1\n"), 10),
            (good.trim_end().to_owned(), 9),
            (good.replace('\n', "\r\n"), 1),
            (good.replace("office=", "office= "), 4),
            (String::new(), 1),
        ];
        for (text, line) in cases {
            let err = Statement::parse(&text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.to_string().contains(&format!("{line}行目")));
        }
        let long = format!("{good}{}", "x".repeat(MAX_STATEMENT_BYTES));
        assert!(Statement::parse(&long).is_err());
    }

    #[test]
    fn debug_leaves_out_the_person_key_and_nonce() {
        let s = sample();
        let d = format!("{s:?}");
        assert!(!d.contains(&"ab".repeat(32)), "{d}");
        assert!(!d.contains(&"07".repeat(32)), "{d}");
        let ev = Evidence {
            statement: s,
            signature: vec![1; 256],
            certificate: vec![2; 10],
        };
        assert!(!format!("{ev:?}").contains(&"ab".repeat(32)));
    }

    #[test]
    fn evidence_round_trips_through_json() {
        let ev = Evidence {
            statement: sample(),
            signature: vec![0xAB; 256],
            certificate: vec![0x30, 0x82],
        };
        let reg = json!({"verification": {"evidence": ev.to_json()}});
        assert_eq!(Evidence::from_registration(&reg).unwrap(), ev);
    }

    #[test]
    fn evidence_shape_errors_name_the_field() {
        let id: DocId = "0123456789abcdef0123456789abcdef".parse().unwrap();
        let trust = TrustStore::empty();
        let text = sample().to_text();
        let check = |reg: &Value| check_registration(id, reg, &trust).unwrap_err();

        let mut reg = registration(&text);
        reg["verification"]
            .as_object_mut()
            .unwrap()
            .remove("evidence");
        let e = check(&reg);
        assert_eq!(
            (e.code(), e.field()),
            ("evidence", "/verification/evidence")
        );
        assert_eq!(e, EvidenceError::Missing);

        let mut reg = registration(&text);
        reg["verification"]["evidence"]["extra"] = json!("x");
        assert_eq!(check(&reg).field(), "/verification/evidence");

        let mut reg = registration(&text);
        reg["verification"]["evidence"]["signature"] = json!("AB-".repeat(100));
        assert_eq!(check(&reg).field(), "/verification/evidence/signature");
        reg["verification"]["evidence"]["signature"] = json!(base64::encode(&[1; 64]));
        assert_eq!(check(&reg).field(), "/verification/evidence/signature");

        let mut reg = registration(&text);
        reg["verification"]["evidence"]["certificate"] = json!("abc");
        assert_eq!(check(&reg).field(), "/verification/evidence/certificate");

        let mut reg = registration(&text);
        reg["verification"]["evidence"]["statement"] = json!(text);
        assert_eq!(check(&reg).field(), "/verification/evidence/statement");
        reg["verification"]["evidence"]["statement"] = json!(base64::encode(&[0xFF, 0xFE]));
        assert_eq!(check(&reg).field(), "/verification/evidence/statement");

        let reg = registration(&text.replace("name=match", "name=maybe"));
        let e = check(&reg);
        assert_eq!(e.field(), "/verification/evidence/statement");
        assert!(matches!(
            e,
            EvidenceError::Statement(StatementError { line: 8, .. })
        ));
    }

    #[test]
    fn registration_must_say_what_the_statement_says() {
        let id: DocId = "0123456789abcdef0123456789abcdef".parse().unwrap();
        let trust = TrustStore::empty();
        let text = sample().to_text();
        let field = |reg: &Value, id: DocId| check_registration(id, reg, &trust).unwrap_err();

        let other: DocId = "ffffffffffffffffffffffffffffffff".parse().unwrap();
        let e = field(&registration(&text), other);
        assert_eq!(e.field(), "/verification/evidence/statement");
        assert!(matches!(e, EvidenceError::Mismatch { .. }));

        let mut reg = registration(&text);
        reg["office"] = json!("1370100024");
        assert_eq!(field(&reg, id).field(), "/office");

        let mut reg = registration(&text);
        reg["verification"]["result"] = json!("failed");
        assert_eq!(field(&reg, id).field(), "/verification/result");

        let mut reg = registration(&text);
        reg["verification"]["comparison"]["name"] = json!("mismatch");
        assert_eq!(field(&reg, id).field(), "/verification/comparison/name");

        let mut reg = registration(&text);
        reg["verification"]["comparison"]["birth_date"] = json!("match");
        assert_eq!(
            field(&reg, id).field(),
            "/verification/comparison/birth_date"
        );

        // A signed mismatch needs the staff member who accepted it.
        let mut s = sample();
        s.name = FieldMatch::Mismatch;
        let mut reg = registration(&s.to_text());
        reg["verification"]["comparison"]["name"] = json!("mismatch");
        assert_eq!(
            field(&reg, id).field(),
            "/verification/comparison/mismatch_accepted_by"
        );
        // With it, the check goes on to the certificate (garbage here).
        reg["verification"]["comparison"]["mismatch_accepted_by"] = json!("架空 太郎");
        let e = field(&reg, id);
        assert!(matches!(e, EvidenceError::Certificate(_)), "{e:?}");
        assert_eq!(e.field(), "/verification/evidence/certificate");

        // Without an office in the document the statement's office is not compared.
        let mut reg = registration(&text);
        reg.as_object_mut().unwrap().remove("office");
        assert!(matches!(field(&reg, id), EvidenceError::Certificate(_)));
    }

    #[test]
    fn errors_carry_no_values() {
        let id: DocId = "0123456789abcdef0123456789abcdef".parse().unwrap();
        let trust = TrustStore::empty();
        let s = sample();
        let mut reg = registration(&s.to_text());
        reg["office"] = json!("1370100024");
        let e = check_registration(id, &reg, &trust).unwrap_err();
        let text = format!("{e} {e:?}");
        for v in ["1370100016", "1370100024", &s.person, &s.device] {
            assert!(!text.contains(v), "{text}");
        }
    }

    #[test]
    fn base64_is_standard_and_strict() {
        for (bytes, text) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (&[0xFB, 0xFF][..], "+/8="),
        ] {
            assert_eq!(base64::encode(bytes), text);
            assert_eq!(base64::decode(text).as_deref(), Some(bytes));
        }
        for bad in [
            "Zg=", "Zg", "Zh==", "Zm9v\n", "Z===", "Zm-v", "Zm 9v", "=Zm9",
        ] {
            assert_eq!(base64::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn stored_evidence_does_not_look_like_a_my_number() {
        // Every string of a document passes the 個人番号 guard: base64 of random bytes
        // has no run of exactly 12 digits to speak of (hex would, often).
        let mut hex_hits = 0;
        for _ in 0..400 {
            let bytes: Vec<u8> = (0..1500).map(|_| rand::random()).collect();
            assert!(!crate::identifiers::contains_my_number(&base64::encode(
                &bytes
            )));
            hex_hits += usize::from(crate::identifiers::contains_my_number(&hex::encode(&bytes)));
        }
        assert!(hex_hits > 0, "the reason for base64");
    }

    proptest! {
        #[test]
        fn base64_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(base64::decode(&base64::encode(&bytes)), Some(bytes));
        }

        #[test]
        fn hostile_base64_never_panics(text in "[A-Za-z0-9+/=]{0,40}") {
            if let Some(b) = base64::decode(&text) {
                prop_assert_eq!(base64::encode(&b), text);
            }
        }

        #[test]
        fn hostile_statements_are_refused_without_panic(text in ".{0,600}") {
            if let Ok(s) = Statement::parse(&text) {
                prop_assert_eq!(s.to_text(), text);
            }
        }

        #[test]
        fn any_one_byte_change_is_refused_or_changes_the_statement(pos in 0usize..400, byte in any::<u8>()) {
            let s = sample();
            let mut bytes = s.to_text().into_bytes();
            let i = pos % bytes.len();
            prop_assume!(bytes[i] != byte);
            bytes[i] = byte;
            if let Ok(text) = String::from_utf8(bytes)
                && let Ok(parsed) = Statement::parse(&text)
            {
                prop_assert_ne!(parsed, s);
            }
        }
    }
}
