//! The virtual My Number card as a pure state machine: `process(C-APDU) -> R-APDU`, plus
//! power on/off/reset. No I/O; the vpcd adapter (`main.rs`) and the in-process transport
//! ([`crate::InProcess`]) drive it.
//!
//! Behaviour follows the reference's emulation table: SELECT by AID / FID, READ BINARY with
//! read conditions, PIN retry query without spending a try, VERIFY with counters and
//! lockout (`63 Cx`, `63 C0`, then `69 84`), COMPUTE DIGITAL SIGNATURE with the
//! authentication key after VERIFY. Power events clear the volatile state (current DF/EF,
//! verified flags) and keep the counters.

use musubi_engine::card::apdu::{Command, Response};
use musubi_engine::card::reader::{AID_JPKI, AID_SUPPORT};
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use serde::{Deserialize, Serialize};

/// Which application is selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Df {
    /// 公的個人認証AP.
    Jpki,
    /// 券面事項入力補助AP.
    Support,
}

impl Df {
    fn label(self) -> &'static str {
        match self {
            Df::Jpki => "jpki",
            Df::Support => "support",
        }
    }
}

/// Deliberate faults, for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Corrupt {
    /// No fault.
    #[default]
    None,
    /// One byte of the authentication certificate's signature flipped.
    Cert,
    /// One byte of every challenge signature flipped.
    Signature,
    /// READ BINARY answers a one-byte response (shorter than a status word).
    Short,
    /// READ BINARY answers status `6F 00`.
    Status,
    /// One byte of the name in EF 0002 changed after DF32 was computed.
    Basic4,
}

/// PIN counters: the non-volatile state, persisted by the driver between runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Tries left on the authentication PIN (max 3).
    pub auth: u8,
    /// Tries left on the 入力補助 PIN (max 3).
    pub support: u8,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            auth: 3,
            support: 3,
        }
    }
}

/// Files and keys of the card.
pub struct CardContent {
    /// EF 000A.
    pub auth_cert: Vec<u8>,
    /// EF 000B.
    pub auth_ca_cert: Vec<u8>,
    /// Key 0017.
    pub auth_key: RsaPrivateKey,
    /// 入力補助AP EF 0001 (the dummy My Number).
    pub my_number_ef: Vec<u8>,
    /// EF 0002.
    pub basic4_ef: Vec<u8>,
    /// EF 0003.
    pub integrity_ef: Vec<u8>,
    /// EF 0004.
    pub cv_cert_ef: Vec<u8>,
    /// 利用者証明用暗証番号.
    pub auth_pin: String,
    /// 券面事項入力補助用暗証番号.
    pub support_pin: String,
}

/// The card.
pub struct VirtualCard {
    content: CardContent,
    /// Non-volatile PIN counters.
    pub counters: Counters,
    corrupt: Corrupt,
    df: Option<Df>,
    ef: Option<u16>,
    auth_verified: bool,
    support_verified: bool,
    /// One line per APDU received (VERIFY data masked), for the APDU log.
    pub log: Vec<String>,
}

const MAX_TRIES: u8 = 3;

fn sw(code: u16) -> Vec<u8> {
    Response::status(code).to_bytes()
}

impl VirtualCard {
    /// A card with these contents, counters and fault.
    pub fn new(content: CardContent, counters: Counters, corrupt: Corrupt) -> VirtualCard {
        VirtualCard {
            content,
            counters,
            corrupt,
            df: None,
            ef: None,
            auth_verified: false,
            support_verified: false,
            log: Vec::new(),
        }
    }

    /// The ATR: contactless form with historical bytes "VJPKI-TEST" (not a real card's).
    pub fn atr() -> Vec<u8> {
        let mut atr = vec![0x3B, 0x8A, 0x80, 0x01];
        atr.extend_from_slice(b"VJPKI-TEST");
        let tck = atr[1..].iter().fold(0u8, |a, b| a ^ b);
        atr.push(tck);
        atr
    }

    /// Power on, off or reset: clear the volatile state.
    pub fn power_event(&mut self, what: &str) {
        self.df = None;
        self.ef = None;
        self.auth_verified = false;
        self.support_verified = false;
        self.log.push(format!("power {what}"));
    }

    /// Processes one command APDU.
    pub fn process(&mut self, capdu: &[u8]) -> Vec<u8> {
        let resp = self.dispatch(capdu);
        let masked = if capdu.len() > 5 && capdu[1] == 0x20 {
            format!("{} ****", hex::encode_upper(&capdu[..5]))
        } else {
            hex::encode_upper(capdu)
        };
        let sw_hex = if resp.len() >= 2 {
            hex::encode_upper(&resp[resp.len() - 2..])
        } else {
            hex::encode_upper(&resp)
        };
        self.log.push(format!(
            "apdu df={} ef={} cmd={masked} sw={sw_hex}",
            self.df.map_or("-", Df::label),
            self.ef.map_or("-".to_owned(), |e| format!("{e:04X}")),
        ));
        resp
    }

    fn dispatch(&mut self, capdu: &[u8]) -> Vec<u8> {
        let Ok(cmd) = Command::parse(capdu) else {
            return sw(0x6700);
        };
        if cmd.cla != 0x00 && cmd.cla != 0x80 {
            return sw(0x6E00);
        }
        match (cmd.cla, cmd.ins) {
            (0x00, 0xA4) => self.select(&cmd),
            (0x00, 0xB0) => self.read_binary(&cmd),
            (0x00, 0x20) => self.verify(&cmd),
            (0x80, 0x2A) => self.sign(&cmd),
            _ => sw(0x6D00),
        }
    }

    fn select(&mut self, cmd: &Command) -> Vec<u8> {
        if cmd.p2 != 0x0C {
            return sw(0x6A86);
        }
        match cmd.p1 {
            0x04 => {
                let df = if cmd.data == AID_JPKI {
                    Df::Jpki
                } else if cmd.data == AID_SUPPORT {
                    Df::Support
                } else {
                    return sw(0x6A82);
                };
                self.df = Some(df);
                self.ef = None;
                self.auth_verified = false;
                self.support_verified = false;
                sw(0x9000)
            }
            0x02 => {
                let Some(df) = self.df else {
                    return sw(0x6986);
                };
                let [hi, lo] = cmd.data[..] else {
                    return sw(0x6A80);
                };
                let fid = u16::from_be_bytes([hi, lo]);
                let exists = match df {
                    Df::Jpki => matches!(fid, 0x000A | 0x000B | 0x0017 | 0x0018),
                    Df::Support => matches!(fid, 0x0001..=0x0004 | 0x0011 | 0x0014 | 0x0015),
                };
                if !exists {
                    return sw(0x6A82);
                }
                self.ef = Some(fid);
                sw(0x9000)
            }
            _ => sw(0x6A86),
        }
    }

    fn file(&self) -> Result<Vec<u8>, u16> {
        let (Some(df), Some(ef)) = (self.df, self.ef) else {
            return Err(0x6986);
        };
        let c = &self.content;
        match (df, ef) {
            (Df::Jpki, 0x000A) => {
                let mut cert = c.auth_cert.clone();
                if self.corrupt == Corrupt::Cert
                    && let Some(last) = cert.last_mut()
                {
                    *last ^= 0x01;
                }
                Ok(cert)
            }
            (Df::Jpki, 0x000B) => Ok(c.auth_ca_cert.clone()),
            (Df::Support, 0x0004) => Ok(c.cv_cert_ef.clone()),
            (Df::Support, 0x0001..=0x0003) if !self.support_verified => Err(0x6982),
            (Df::Support, 0x0001) => Ok(c.my_number_ef.clone()),
            (Df::Support, 0x0002) => {
                let mut ef = c.basic4_ef.clone();
                if self.corrupt == Corrupt::Basic4 {
                    // Change the first byte of the name (the value of DF22).
                    if let Some(at) = name_offset(&ef)
                        && let Some(b) = ef.get_mut(at)
                    {
                        *b ^= 0x01;
                    }
                }
                Ok(ef)
            }
            (Df::Support, 0x0003) => Ok(c.integrity_ef.clone()),
            _ => Err(0x6981),
        }
    }

    fn read_binary(&mut self, cmd: &Command) -> Vec<u8> {
        match self.corrupt {
            Corrupt::Short => return vec![0x90],
            Corrupt::Status => return sw(0x6F00),
            _ => {}
        }
        if cmd.p1 & 0x80 != 0 {
            return sw(0x6A86);
        }
        let data = match self.file() {
            Ok(d) => d,
            Err(code) => return sw(code),
        };
        let offset = (usize::from(cmd.p1) << 8) | usize::from(cmd.p2);
        if offset >= data.len() {
            return sw(0x6B00);
        }
        let le = cmd.le.unwrap_or(256) as usize;
        let end = (offset + le).min(data.len());
        Response {
            data: data[offset..end].to_vec(),
            sw: 0x9000,
        }
        .to_bytes()
    }

    fn verify(&mut self, cmd: &Command) -> Vec<u8> {
        if cmd.p1 != 0 || cmd.p2 != 0x80 {
            return sw(0x6A86);
        }
        let (remaining, verified, pin) = match (self.df, self.ef) {
            (Some(Df::Jpki), Some(0x0018)) => (
                &mut self.counters.auth,
                &mut self.auth_verified,
                &self.content.auth_pin,
            ),
            (Some(Df::Support), Some(0x0011)) => (
                &mut self.counters.support,
                &mut self.support_verified,
                &self.content.support_pin,
            ),
            (Some(_), Some(_)) => return sw(0x6981),
            _ => return sw(0x6986),
        };
        if cmd.data.is_empty() {
            // Retry query: no try spent.
            return if *remaining == 0 {
                sw(0x63C0)
            } else {
                sw(0x63C0 | u16::from(*remaining))
            };
        }
        if *remaining == 0 {
            return sw(0x6984);
        }
        if cmd.data == pin.as_bytes() {
            *remaining = MAX_TRIES;
            *verified = true;
            sw(0x9000)
        } else {
            *remaining -= 1;
            *verified = false;
            sw(0x63C0 | u16::from(*remaining))
        }
    }

    fn sign(&mut self, cmd: &Command) -> Vec<u8> {
        if cmd.p1 != 0 || cmd.p2 != 0x80 {
            return sw(0x6A86);
        }
        if self.df != Some(Df::Jpki) || self.ef != Some(0x0017) {
            return sw(0x6986);
        }
        if !self.auth_verified {
            return sw(0x6982);
        }
        if cmd.data.is_empty() || cmd.data.len() > 245 {
            return sw(0x6700);
        }
        match self
            .content
            .auth_key
            .sign(Pkcs1v15Sign::new_unprefixed(), &cmd.data)
        {
            Ok(mut sig) => {
                if self.corrupt == Corrupt::Signature
                    && let Some(b) = sig.get_mut(10)
                {
                    *b ^= 0x01;
                }
                Response {
                    data: sig,
                    sw: 0x9000,
                }
                .to_bytes()
            }
            Err(_) => sw(0x6F00),
        }
    }
}

/// Offset of the first byte of the name (DF22's value) in EF 0002.
fn name_offset(ef: &[u8]) -> Option<usize> {
    use musubi_engine::card::tlv;
    let (outer, _) = tlv::parse_one(ef, 0).ok()?;
    let items = tlv::parse_all(outer.value, true).ok()?;
    let header = outer.raw.len() - outer.value.len();
    let name = items.get(1)?;
    Some(header + items.first()?.raw.len() + (name.raw.len() - name.value.len()))
}
