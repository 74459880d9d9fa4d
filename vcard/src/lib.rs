//! `musubi-vcard`: a virtual My Number card for tests. **Test data only** — its root is a
//! test root standing in for J-LIS, its My Number is a dummy.
//!
//! - [`card::VirtualCard`]: the card as a pure state machine (JPKI AP, 券面事項入力補助AP);
//! - [`pki::TestPki`]: the test PKI created in the card's directory on first start;
//! - [`build`]: the card's files from the PKI and the holder's synthetic data;
//! - [`InProcess`]: a [`CardTransport`] that talks to the card in-process (a *test
//!   transport*, used by benchmarks and by UI tests that need a card that really signs);
//! - the `musubi-vcard` binary attaches the card to pcscd through vsmartcard's vpcd.

pub mod card;
pub mod pki;

use card::{CardContent, Corrupt, Counters, VirtualCard};
use musubi_engine::card::{CardTransport, TransportError};
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use sha2::{Digest, Sha256};

/// The holder's synthetic data and the card's PINs.
#[derive(Debug, Clone)]
pub struct Holder {
    /// 利用者証明用暗証番号 (4 digits).
    pub pin: String,
    /// 券面事項入力補助用暗証番号 (4 digits).
    pub support_pin: String,
    /// The dummy My Number (12 digits).
    pub my_number: String,
    /// 氏名.
    pub name: String,
    /// 住所.
    pub address: String,
    /// 生年月日, YYYY-MM-DD.
    pub birth_date: String,
    /// 性別 code: "1", "2", "9".
    pub sex: String,
}

impl Default for Holder {
    fn default() -> Self {
        Holder {
            pin: "1234".to_owned(),
            support_pin: "1234".to_owned(),
            my_number: "123456789018".to_owned(),
            name: "結城　花子".to_owned(),
            address: "東京都千代田区架空町１－２－３".to_owned(),
            birth_date: "1944-05-12".to_owned(),
            sex: "2".to_owned(),
        }
    }
}

/// Which authentication certificate the card carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CertChoice {
    /// Valid, issued by the test root.
    #[default]
    Valid,
    /// Expired a year ago.
    Expired,
    /// Issued by a root with the same name but another key (not the trust anchor).
    Foreign,
}

/// BER-TLV encoding (tags of one or two bytes).
pub fn tlv(tag: u16, value: &[u8]) -> Vec<u8> {
    let mut out = if tag > 0xFF {
        tag.to_be_bytes().to_vec()
    } else {
        vec![tag as u8]
    };
    let n = value.len();
    if n < 0x80 {
        out.push(n as u8);
    } else if n < 0x100 {
        out.extend_from_slice(&[0x81, n as u8]);
    } else {
        out.push(0x82);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    }
    out.extend_from_slice(value);
    out
}

fn sign_sha256(key: &RsaPrivateKey, msg: &[u8]) -> anyhow::Result<Vec<u8>> {
    Ok(key.sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(msg))?)
}

/// EF 0002 (basic four with the DF21 offset table) and the DF22..DF25 TLVs.
fn basic4_ef(h: &Holder) -> (Vec<u8>, Vec<u8>) {
    let birth: String = h.birth_date.chars().filter(char::is_ascii_digit).collect();
    let items = [
        tlv(0xDF22, h.name.as_bytes()),
        tlv(0xDF23, h.address.as_bytes()),
        tlv(0xDF24, birth.as_bytes()),
        tlv(0xDF25, h.sex.as_bytes()),
    ];
    let items_len: usize = items.iter().map(Vec::len).sum();
    let inner_len = 11 + items_len; // DF21 08 + 8 offset bytes
    let header = tlv(0xFF20, &vec![0; inner_len]).len() - inner_len;
    let mut offsets = Vec::new();
    let mut pos = header + 11;
    for it in &items {
        offsets.extend_from_slice(&(pos as u16).to_be_bytes());
        pos += it.len();
    }
    let mut inner = tlv(0xDF21, &offsets);
    let mut digest_input = Vec::new();
    for it in &items {
        inner.extend_from_slice(it);
        digest_input.extend_from_slice(it);
    }
    (tlv(0xFF20, &inner), digest_input)
}

/// Builds the card's files from the PKI and the holder's data.
pub fn build(pki: &pki::TestPki, holder: &Holder, cert: CertChoice) -> anyhow::Result<CardContent> {
    let digits = holder.my_number.as_bytes();
    anyhow::ensure!(
        digits.len() == 12 && digits.iter().all(u8::is_ascii_digit),
        "--my-number must be 12 digits"
    );
    // EF 0001: FF 10 0C + 12 digits + FF FF filler.
    let mut my_number_ef = vec![0xFF, 0x10, 0x0C];
    my_number_ef.extend_from_slice(digits);
    my_number_ef.extend_from_slice(&[0xFF, 0xFF]);

    let (basic4_ef, digest_input) = basic4_ef(holder);
    let df31 = tlv(0xDF31, &Sha256::digest(&my_number_ef));
    let df32 = tlv(0xDF32, &Sha256::digest(&digest_input));
    let mut signed = df31.clone();
    signed.extend_from_slice(&df32);
    let df33 = tlv(0xDF33, &sign_sha256(&pki.issuer_key, &signed)?);
    let mut inner = signed;
    inner.extend_from_slice(&df33);
    let integrity_ef = tlv(0xFF30, &inner);

    // CV certificate: clearly fake key ids ("9000033" test issuer).
    let issuer_pub = pki.issuer_key.to_public_key();
    let mut body = Vec::new();
    body.extend_from_slice(b"9000033\x08\x05001\0\0\0\x01");
    body.extend_from_slice(b"9000033\x08\x05002\0\0\0\x01");
    body.extend_from_slice(&tlv(0x90, &issuer_pub.e().to_bytes_be()));
    body.extend_from_slice(&tlv(0x91, &issuer_pub.n().to_bytes_be()));
    let mut cv = tlv(0x5F4E, &body);
    cv.extend_from_slice(&tlv(0x5F37, &sign_sha256(&pki.cv_ca_key, &body)?));
    let cv_cert_ef = tlv(0x7F21, &cv);

    let (auth_cert, auth_ca_cert) = match cert {
        CertChoice::Valid => (pki.auth_cert.clone(), pki.root_cert.clone()),
        CertChoice::Expired => (pki.auth_cert_expired.clone(), pki.root_cert.clone()),
        CertChoice::Foreign => (pki.auth_cert_foreign.clone(), pki.foreign_root_cert.clone()),
    };
    Ok(CardContent {
        auth_cert,
        auth_ca_cert,
        auth_key: pki.card_key.clone(),
        my_number_ef,
        basic4_ef,
        integrity_ef,
        cv_cert_ef,
        auth_pin: holder.pin.clone(),
        support_pin: holder.support_pin.clone(),
    })
}

/// A **test transport** talking to a [`VirtualCard`] in the same process (no pcscd).
/// `remove_after` simulates the card being pulled out after that many APDUs.
pub struct InProcess {
    /// The card.
    pub card: VirtualCard,
    /// Fail with [`TransportError::Removed`] once this many APDUs were exchanged.
    pub remove_after: Option<usize>,
    sent: usize,
}

impl InProcess {
    /// Powers the card on and wraps it.
    pub fn new(mut card: VirtualCard) -> InProcess {
        card.power_event("on");
        InProcess {
            card,
            remove_after: None,
            sent: 0,
        }
    }

    /// A card built from `pki` with default holder data and counters.
    pub fn with_defaults(pki: &pki::TestPki) -> anyhow::Result<InProcess> {
        let content = build(pki, &Holder::default(), CertChoice::Valid)?;
        Ok(InProcess::new(VirtualCard::new(
            content,
            Counters::default(),
            Corrupt::None,
        )))
    }
}

impl CardTransport for InProcess {
    fn transmit(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        if self.remove_after.is_some_and(|n| self.sent >= n) {
            return Err(TransportError::Removed);
        }
        self.sent += 1;
        Ok(self.card.process(capdu))
    }
}
