//! JPKI and 券面事項入力補助AP commands over a [`CardTransport`]: SELECT, READ BINARY,
//! PIN retry query, VERIFY and COMPUTE DIGITAL SIGNATURE. Plain code, no I/O of its own.
//!
//! Guards enforced here, whatever the caller asks: the My Number EF (`0001` in
//! 券面事項入力補助AP) and the 照合番号A key (`0014`, which *is* the My Number) are never
//! selected; PINs are checked locally (4 ASCII digits) before they reach the card.

use super::apdu::{Command, Response};
use super::tlv;
use super::transport::{CardTransport, TransportError};
use zeroize::Zeroizing;

/// 公的個人認証AP (JPKI).
pub const AID_JPKI: [u8; 10] = [0xD3, 0x92, 0xF0, 0x00, 0x26, 0x01, 0x00, 0x00, 0x00, 0x01];
/// 券面事項入力補助AP.
pub const AID_SUPPORT: [u8; 10] = [0xD3, 0x92, 0x10, 0x00, 0x31, 0x00, 0x01, 0x01, 0x04, 0x08];

/// JPKI AP: user-authentication certificate.
pub const EF_AUTH_CERT: u16 = 0x000A;
/// JPKI AP: its CA certificate.
pub const EF_AUTH_CA_CERT: u16 = 0x000B;
/// JPKI AP: user-authentication private key.
pub const EF_AUTH_KEY: u16 = 0x0017;
/// JPKI AP: user-authentication PIN (利用者証明用暗証番号).
pub const EF_AUTH_PIN: u16 = 0x0018;
/// 入力補助AP: the My Number EF. Listed only so the guard can refuse it.
pub const EF_MY_NUMBER: u16 = 0x0001;
/// 入力補助AP: basic four items.
pub const EF_BASIC4: u16 = 0x0002;
/// 入力補助AP: integrity record (DF31/DF32/DF33).
pub const EF_INTEGRITY: u16 = 0x0003;
/// 入力補助AP: CV certificate.
pub const EF_CV_CERT: u16 = 0x0004;
/// 入力補助AP: PIN (券面事項入力補助用暗証番号).
pub const EF_SUPPORT_PIN: u16 = 0x0011;
/// 入力補助AP: 照合番号A key (the My Number itself). Listed only so the guard refuses it.
pub const EF_CODE_A: u16 = 0x0014;

/// Largest EF we read.
const MAX_EF: usize = 8 * 1024;

/// Which PIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinKind {
    /// 利用者証明用暗証番号 (JPKI AP, key `0018`).
    Auth,
    /// 券面事項入力補助用暗証番号 (入力補助AP, key `0011`).
    Support,
}

impl PinKind {
    /// The official name.
    pub fn label(self) -> &'static str {
        match self {
            PinKind::Auth => "利用者証明用暗証番号",
            PinKind::Support => "券面事項入力補助用暗証番号",
        }
    }
}

/// Errors of card commands. None carries card content or a PIN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CardError {
    /// Below the APDU level.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// SELECT of the JPKI AP failed: not a My Number card.
    #[error(
        "マイナンバーカードではありません (not a My Number card: the JPKI application is missing)"
    )]
    NotMyNumberCard,
    /// A command failed with an unexpected status word.
    #[error("カードがエラーを返しました ({step}: status {sw:04X})")]
    Status {
        /// What we were doing.
        step: &'static str,
        /// SW1 SW2.
        sw: u16,
    },
    /// A response that cannot be right (wrong length, bad structure).
    #[error("カードの応答が不正です ({step}: {what})")]
    Corrupt {
        /// What we were doing.
        step: &'static str,
        /// What was wrong.
        what: &'static str,
    },
    /// The PIN is locked.
    #[error(
        "{}がロックされています。暗証番号の再設定は、お住まいの市区町村の窓口で行ってください。 ({:?} PIN is locked; the card holder can reset it at the municipal office)",
        .0.label(), .0
    )]
    PinLocked(PinKind),
    /// The PIN was wrong.
    #[error("{}が違います。残り{remaining}回です。 (wrong {kind:?} PIN, {remaining} tries left)", .kind.label())]
    WrongPin {
        /// Which PIN.
        kind: PinKind,
        /// Tries left on the card.
        remaining: u8,
    },
    /// Only one try is left and the caller did not confirm spending it.
    #[error(
        "{}の残り回数が1回です。間違えるとロックされるため、確認なしでは入力しません (one try left on the {kind:?} PIN; refused without explicit confirmation, e.g. --allow-last-try)",
        .kind.label()
    )]
    LastTryNotConfirmed {
        /// Which PIN.
        kind: PinKind,
    },
    /// The PIN entered is not 4 digits (never sent to the card).
    #[error("{}は数字4桁です (the {kind:?} PIN must be 4 digits; nothing was sent to the card)", .kind.label())]
    PinFormat {
        /// Which PIN.
        kind: PinKind,
    },
    /// No PIN was given.
    #[error("{}が入力されていません (no {kind:?} PIN given)", .kind.label())]
    NoPin {
        /// Which PIN.
        kind: PinKind,
    },
    /// The code asked for a file this program must never touch.
    #[error("refused to select EF {0:04X}: musubi never touches the My Number")]
    Forbidden(u16),
}

/// Retry state of a PIN, from the empty VERIFY (no try spent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinStatus {
    /// This many tries left.
    Remaining(u8),
    /// Already verified in this session.
    Verified,
    /// Blocked.
    Locked,
}

/// A session with one card: the current application is tracked so the guards can work.
pub struct CardSession<T: CardTransport> {
    transport: T,
    current_ap: Option<[u8; 10]>,
    /// Number of APDUs sent (for benchmarks and logs).
    pub apdus: usize,
}

impl<T: CardTransport> CardSession<T> {
    /// Starts a session over a transport.
    pub fn new(transport: T) -> CardSession<T> {
        CardSession {
            transport,
            current_ap: None,
            apdus: 0,
        }
    }

    /// Gives the transport back.
    pub fn into_inner(self) -> T {
        self.transport
    }

    /// Sends one command; handles `61xx` (GET RESPONSE) and `6Cxx` (resend with Le).
    pub fn send(&mut self, cmd: &Command, step: &'static str) -> Result<Response, CardError> {
        let bytes = cmd.to_bytes().map_err(|_| CardError::Corrupt {
            step,
            what: "command too long",
        })?;
        let mut resp = self.exchange(&bytes, step)?;
        if resp.sw >> 8 == 0x6C {
            let mut again = cmd.clone();
            again.le = Some(match resp.sw & 0xFF {
                0 => 256,
                n => u32::from(n),
            });
            let bytes = again.to_bytes().map_err(|_| CardError::Corrupt {
                step,
                what: "command too long",
            })?;
            resp = self.exchange(&bytes, step)?;
        }
        let mut data = std::mem::take(&mut resp.data);
        let mut guard = 0;
        while resp.sw >> 8 == 0x61 {
            guard += 1;
            if guard > 64 || data.len() > MAX_EF {
                return Err(CardError::Corrupt {
                    step,
                    what: "endless response chaining",
                });
            }
            let le = match resp.sw & 0xFF {
                0 => 256,
                n => u32::from(n),
            };
            let get = Command::new(0x00, 0xC0, 0, 0).with_le(le);
            let bytes = get.to_bytes().map_err(|_| CardError::Corrupt {
                step,
                what: "command too long",
            })?;
            resp = self.exchange(&bytes, step)?;
            data.append(&mut resp.data);
        }
        resp.data = data;
        Ok(resp)
    }

    fn exchange(&mut self, bytes: &[u8], step: &'static str) -> Result<Response, CardError> {
        self.apdus += 1;
        let raw = self.transport.transmit(bytes)?;
        Response::parse(&raw).map_err(|_| CardError::Corrupt {
            step,
            what: "response shorter than its status word",
        })
    }

    /// Selects an application by its full AID.
    pub fn select_ap(&mut self, aid: [u8; 10]) -> Result<(), CardError> {
        let cmd = Command::new(0x00, 0xA4, 0x04, 0x0C).with_data(aid.to_vec());
        let r = self.send(&cmd, "SELECT application")?;
        self.current_ap = None;
        match r.sw {
            0x9000 => {
                self.current_ap = Some(aid);
                Ok(())
            }
            0x6A82 if aid == AID_JPKI => Err(CardError::NotMyNumberCard),
            sw => Err(CardError::Status {
                step: "SELECT application",
                sw,
            }),
        }
    }

    /// Selects an EF of the current application. Refuses the My Number EF and 照合番号A.
    pub fn select_ef(&mut self, fid: u16) -> Result<(), CardError> {
        if self.current_ap != Some(AID_JPKI) && (fid == EF_MY_NUMBER || fid == EF_CODE_A) {
            // Outside the JPKI AP (where 0001 is the signature certificate, which we do not
            // read either), these FIDs are the My Number and 照合番号A.
            return Err(CardError::Forbidden(fid));
        }
        if self.current_ap == Some(AID_JPKI) && fid == 0x0001 {
            return Err(CardError::Forbidden(fid));
        }
        let cmd = Command::new(0x00, 0xA4, 0x02, 0x0C).with_data(fid.to_be_bytes().to_vec());
        let r = self.send(&cmd, "SELECT file")?;
        match r.sw {
            0x9000 => Ok(()),
            0x6A82 if self.current_ap == Some(AID_JPKI) => Err(CardError::NotMyNumberCard),
            sw => Err(CardError::Status {
                step: "SELECT file",
                sw,
            }),
        }
    }

    fn read_chunk(&mut self, offset: usize, len: usize) -> Result<Vec<u8>, CardError> {
        let cmd = Command::new(0x00, 0xB0, (offset >> 8) as u8 & 0x7F, offset as u8)
            .with_le(len.clamp(1, 256) as u32);
        let r = self.send(&cmd, "READ BINARY")?;
        match r.sw {
            0x9000 | 0x6282 => Ok(r.data),
            sw => Err(CardError::Status {
                step: "READ BINARY",
                sw,
            }),
        }
    }

    /// Reads a whole EF holding one TLV/DER object, sized from its header. The buffer is
    /// zeroised when dropped.
    pub fn read_object(&mut self, fid: u16) -> Result<Zeroizing<Vec<u8>>, CardError> {
        self.select_ef(fid)?;
        let head = self.read_chunk(0, 8)?;
        if head.len() < 2 || head.len() > 8 {
            return Err(CardError::Corrupt {
                step: "READ BINARY",
                what: "header of the file",
            });
        }
        let total = tlv::total_len_from_header(&head).map_err(|_| CardError::Corrupt {
            step: "READ BINARY",
            what: "length in the file header",
        })?;
        if total > MAX_EF {
            return Err(CardError::Corrupt {
                step: "READ BINARY",
                what: "file larger than 8 KiB",
            });
        }
        let mut out = Zeroizing::new(Vec::with_capacity(total));
        out.extend_from_slice(&head[..head.len().min(total)]);
        while out.len() < total {
            let want = (total - out.len()).min(256);
            let chunk = self.read_chunk(out.len(), want)?;
            if chunk.is_empty() || chunk.len() > want {
                return Err(CardError::Corrupt {
                    step: "READ BINARY",
                    what: "chunk of the wrong size",
                });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// Remaining tries of the PIN in EF `fid` (already selected by this call), without
    /// spending one.
    pub fn pin_status(&mut self, fid: u16) -> Result<PinStatus, CardError> {
        self.select_ef(fid)?;
        let r = self.send(&Command::new(0x00, 0x20, 0x00, 0x80), "PIN status")?;
        match r.sw {
            0x9000 => Ok(PinStatus::Verified),
            0x63C0 | 0x6984 | 0x6983 => Ok(PinStatus::Locked),
            sw if sw & 0xFFF0 == 0x63C0 => Ok(PinStatus::Remaining((sw & 0x0F) as u8)),
            sw => Err(CardError::Status {
                step: "PIN status",
                sw,
            }),
        }
    }

    /// VERIFY with the key EF current (select it with [`Self::pin_status`] first).
    pub fn verify_pin(&mut self, kind: PinKind, pin: &str) -> Result<(), CardError> {
        if pin.len() != 4 || !pin.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CardError::PinFormat { kind });
        }
        let cmd = Command::new(0x00, 0x20, 0x00, 0x80).with_data(pin.as_bytes().to_vec());
        let r = self.send(&cmd, "VERIFY")?;
        match r.sw {
            0x9000 => Ok(()),
            0x63C0 | 0x6984 | 0x6983 => Err(CardError::PinLocked(kind)),
            sw if sw & 0xFFF0 == 0x63C0 => Err(CardError::WrongPin {
                kind,
                remaining: (sw & 0x0F) as u8,
            }),
            sw => Err(CardError::Status { step: "VERIFY", sw }),
        }
    }

    /// COMPUTE DIGITAL SIGNATURE with the authentication key over a DigestInfo.
    pub fn sign_auth(&mut self, digest_info: &[u8]) -> Result<Vec<u8>, CardError> {
        self.select_ef(EF_AUTH_KEY)?;
        let cmd = Command::new(0x80, 0x2A, 0x00, 0x80)
            .with_data(digest_info.to_vec())
            .with_le(256);
        let r = self.send(&cmd, "COMPUTE DIGITAL SIGNATURE")?;
        if r.sw != 0x9000 {
            return Err(CardError::Status {
                step: "COMPUTE DIGITAL SIGNATURE",
                sw: r.sw,
            });
        }
        if r.data.len() != 256 {
            return Err(CardError::Corrupt {
                step: "COMPUTE DIGITAL SIGNATURE",
                what: "signature is not 256 bytes",
            });
        }
        Ok(r.data)
    }
}
