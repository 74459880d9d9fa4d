//! 券面事項入力補助AP: the basic four items (基本4情報, EF `0002`), the integrity record
//! (EF `0003`: DF31, DF32, DF33) and the AP's card-verifiable certificate (EF `0004`).
//!
//! DF31 is an unsalted SHA-256 of the My Number EF, i.e. equivalent to the My Number: it
//! is only held in a zeroising buffer for the DF33 check and never returned, stored or
//! logged. Parsing never panics; errors name the file and field, never their content.

use super::tlv::{self, Tlv};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Why the 券面事項入力補助 data is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Basic4Error {
    /// A file is not laid out as expected.
    #[error("券面事項入力補助の{file}を読み取れません ({file}: {what})")]
    Malformed {
        /// Which EF, e.g. "EF 0002".
        file: &'static str,
        /// What was wrong.
        what: &'static str,
    },
    /// DF32 does not match the basic four items read.
    #[error("基本4情報が改ざんされています (basic four items do not match their digest DF32)")]
    DigestMismatch,
    /// DF33 does not verify under the key of the CV certificate.
    #[error("基本4情報の署名を確認できません (signature DF33 does not verify)")]
    SignatureInvalid,
}

/// The basic four items as read from the card (personal data: keep in memory only).
#[derive(Clone, PartialEq, Eq)]
pub struct Basic4 {
    /// 氏名.
    pub name: String,
    /// 住所.
    pub address: String,
    /// 生年月日, `YYYY-MM-DD`.
    pub birth_date: String,
    /// 性別: "1" male, "2" female, "9" not applicable, "0" unknown.
    pub sex: String,
}

impl std::fmt::Debug for Basic4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Basic4 { .. }")
    }
}

/// What the integrity checks established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Basic4Check {
    /// SHA-256 over DF22..DF25 equals DF32.
    pub digest_ok: bool,
    /// DF33 verifies under the CV certificate's key.
    pub df33_ok: bool,
    /// The CV certificate's issuer key is not on the card and not pinned here, so the CV
    /// certificate itself is not authenticated: "unverified".
    pub cv_issuer_key: &'static str,
    /// Issuer key id of the CV certificate (16 bytes, hex) for the record.
    pub cv_issuer_key_id: String,
}

const EF2: &str = "EF 0002";
const EF3: &str = "EF 0003";
const EF4: &str = "EF 0004";

fn malformed(file: &'static str, what: &'static str) -> Basic4Error {
    Basic4Error::Malformed { file, what }
}

fn outer<'a>(buf: &'a [u8], tag: u32, file: &'static str) -> Result<Tlv<'a>, Basic4Error> {
    let (t, end) = tlv::parse_one(buf, 0).map_err(|_| malformed(file, "bad TLV"))?;
    if t.tag != tag {
        return Err(malformed(file, "unexpected outer tag"));
    }
    if !buf[end..].iter().all(|b| *b == 0 || *b == 0xFF) {
        return Err(malformed(file, "data after the record"));
    }
    Ok(t)
}

fn text(v: &[u8], file: &'static str, what: &'static str) -> Result<String, Basic4Error> {
    String::from_utf8(v.to_vec()).map_err(|_| malformed(file, what))
}

/// Parses EF `0002`; returns the items and the DF22..DF25 TLVs as they appeared (the
/// input of DF32).
pub fn parse_basic4(ef2: &[u8]) -> Result<(Basic4, Vec<u8>), Basic4Error> {
    let top = outer(ef2, 0xFF20, EF2)?;
    let value_start = top.raw.len() - top.value.len();
    let items = tlv::parse_all(top.value, true).map_err(|_| malformed(EF2, "bad TLV"))?;
    let tags: Vec<u32> = items.iter().map(|t| t.tag).collect();
    if tags != [0xDF21, 0xDF22, 0xDF23, 0xDF24, 0xDF25] {
        return Err(malformed(EF2, "unexpected items"));
    }
    // DF21: four big-endian offsets from the start of the file to DF22..DF25; check them.
    let offsets = items[0].value;
    if offsets.len() != 8 {
        return Err(malformed(EF2, "offset table is not 8 bytes"));
    }
    let mut pos = value_start + items[0].raw.len();
    let mut digest_input = Vec::new();
    for (i, item) in items[1..].iter().enumerate() {
        let declared = usize::from(u16::from_be_bytes([offsets[2 * i], offsets[2 * i + 1]]));
        if declared != pos {
            return Err(malformed(EF2, "offset table does not match the items"));
        }
        pos += item.raw.len();
        digest_input.extend_from_slice(item.raw);
    }
    let name = text(items[1].value, EF2, "name is not UTF-8")?;
    let address = text(items[2].value, EF2, "address is not UTF-8")?;
    let birth = items[3].value;
    if birth.len() != 8 || !birth.iter().all(u8::is_ascii_digit) {
        return Err(malformed(EF2, "birth date is not YYYYMMDD"));
    }
    let b = text(birth, EF2, "birth date is not text")?;
    let birth_date = format!("{}-{}-{}", &b[..4], &b[4..6], &b[6..]);
    let sex = text(items[4].value, EF2, "sex is not text")?;
    if !matches!(sex.as_str(), "0" | "1" | "2" | "9") {
        return Err(malformed(EF2, "sex is not one of 0, 1, 2, 9"));
    }
    Ok((
        Basic4 {
            name,
            address,
            birth_date,
            sex,
        },
        digest_input,
    ))
}

/// The RSA key and issuer key id of the CV certificate in EF `0004`.
pub struct CvCert {
    /// Issuer key id (証明者鍵ID), 16 bytes.
    pub issuer_key_id: Vec<u8>,
    /// Modulus, big-endian.
    pub modulus: Vec<u8>,
    /// Public exponent, big-endian.
    pub exponent: Vec<u8>,
}

/// Parses EF `0004` (`7F21 { 5F4E body, 5F37 signature }`).
pub fn parse_cv_cert(ef4: &[u8]) -> Result<CvCert, Basic4Error> {
    let top = outer(ef4, 0x7F21, EF4)?;
    let parts = tlv::parse_all(top.value, false).map_err(|_| malformed(EF4, "bad TLV"))?;
    let body = parts
        .iter()
        .find(|t| t.tag == 0x5F4E)
        .ok_or(malformed(EF4, "no body 5F4E"))?
        .value;
    if !parts.iter().any(|t| t.tag == 0x5F37) {
        return Err(malformed(EF4, "no signature 5F37"));
    }
    if body.len() < 32 {
        return Err(malformed(EF4, "body shorter than the key ids"));
    }
    let key = tlv::parse_all(&body[32..], false).map_err(|_| malformed(EF4, "bad key TLV"))?;
    let exponent = key
        .iter()
        .find(|t| t.tag == 0x90)
        .ok_or(malformed(EF4, "no exponent 90"))?
        .value
        .to_vec();
    let modulus = key
        .iter()
        .find(|t| t.tag == 0x91)
        .ok_or(malformed(EF4, "no modulus 91"))?
        .value
        .to_vec();
    if modulus.len() != 256 || modulus[0] & 0x80 == 0 || exponent.is_empty() || exponent.len() > 4 {
        return Err(malformed(EF4, "key is not RSA-2048"));
    }
    Ok(CvCert {
        issuer_key_id: body[..16].to_vec(),
        modulus,
        exponent,
    })
}

/// Checks EF `0002` against the integrity record EF `0003` and the CV certificate EF
/// `0004`. `ef3` is taken by value and zeroised when done (it holds DF31).
pub fn check(
    ef2: &[u8],
    ef3: Zeroizing<Vec<u8>>,
    ef4: &[u8],
) -> Result<(Basic4, Basic4Check), Basic4Error> {
    let (basic4, digest_input) = parse_basic4(ef2)?;
    let cv = parse_cv_cert(ef4)?;
    let top = outer(&ef3, 0xFF30, EF3)?;
    let items = tlv::parse_all(top.value, true).map_err(|_| malformed(EF3, "bad TLV"))?;
    let tags: Vec<u32> = items.iter().map(|t| t.tag).collect();
    if tags != [0xDF31, 0xDF32, 0xDF33] {
        return Err(malformed(EF3, "unexpected items"));
    }
    if items[0].value.len() != 32 || items[1].value.len() != 32 || items[2].value.len() != 256 {
        return Err(malformed(EF3, "item lengths"));
    }
    if Sha256::digest(&digest_input).as_slice() != items[1].value {
        return Err(Basic4Error::DigestMismatch);
    }
    // DF33 signs the DF31 TLV followed by the DF32 TLV.
    let mut signed = Zeroizing::new(Vec::with_capacity(items[0].raw.len() + items[1].raw.len()));
    signed.extend_from_slice(items[0].raw);
    signed.extend_from_slice(items[1].raw);
    let key = ring::signature::RsaPublicKeyComponents {
        n: cv.modulus.as_slice(),
        e: cv.exponent.as_slice(),
    };
    if key
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            &signed,
            items[2].value,
        )
        .is_err()
    {
        return Err(Basic4Error::SignatureInvalid);
    }
    drop(signed);
    drop(ef3);
    Ok((
        basic4,
        Basic4Check {
            digest_ok: true,
            df33_ok: true,
            cv_issuer_key: "unverified",
            cv_issuer_key_id: hex::encode(&cv.issuer_key_id),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn hostile_files_never_panic(
            a in proptest::collection::vec(any::<u8>(), 0..400),
            b in proptest::collection::vec(any::<u8>(), 0..400),
            c in proptest::collection::vec(any::<u8>(), 0..700),
        ) {
            let _ = parse_basic4(&a);
            let _ = parse_cv_cert(&c);
            prop_assert!(check(&a, Zeroizing::new(b), &c).is_err());
        }
    }
}
