//! ISO 7816-4 command and response APDUs (short and extended length).
//!
//! The encoder builds the few commands the JPKI reader sends; the parser accepts any
//! well-formed command (the virtual card uses it) and rejects everything else with an
//! error naming what was wrong. Neither panics on any input.

/// Largest data field or expected length we accept (extended length).
pub const MAX_EXTENDED: usize = 65_535;

/// A command APDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Class byte.
    pub cla: u8,
    /// Instruction byte.
    pub ins: u8,
    /// Parameter 1.
    pub p1: u8,
    /// Parameter 2.
    pub p2: u8,
    /// Command data (empty when there is no Lc).
    pub data: Vec<u8>,
    /// Expected response length: `None` = no Le; `Some(256)` for a short `00`,
    /// `Some(65536)` for an extended `00 00`.
    pub le: Option<u32>,
}

/// Why bytes are not a valid command APDU.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApduError {
    /// Fewer than the 4 header bytes.
    #[error("command APDU: {0} bytes, shorter than the 4-byte header")]
    TooShort(usize),
    /// Lc does not match the bytes that follow.
    #[error("command APDU: Lc says {lc} data bytes but {available} follow")]
    LengthMismatch {
        /// Declared data length.
        lc: usize,
        /// Bytes actually available after the length field.
        available: usize,
    },
    /// An extended length field of zero (Lc = 0 is not allowed).
    #[error("command APDU: extended Lc of zero")]
    ZeroLc,
    /// Bytes after the Le field.
    #[error("command APDU: {0} unexpected bytes after Le")]
    Trailing(usize),
    /// Data too long to encode.
    #[error("command APDU: data of {0} bytes is longer than an APDU can carry")]
    DataTooLong(usize),
    /// A response shorter than its two status bytes.
    #[error("response APDU: {0} bytes, shorter than the 2 status bytes")]
    ResponseTooShort(usize),
}

impl Command {
    /// A command without data or Le.
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8) -> Command {
        Command {
            cla,
            ins,
            p1,
            p2,
            data: Vec::new(),
            le: None,
        }
    }

    /// With a data field.
    pub fn with_data(mut self, data: impl Into<Vec<u8>>) -> Command {
        self.data = data.into();
        self
    }

    /// With an expected length (1..=65536; 256 is the short `00`).
    pub fn with_le(mut self, le: u32) -> Command {
        self.le = Some(le);
        self
    }

    /// Encodes the command, in short form when it fits, else extended.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ApduError> {
        let n = self.data.len();
        if n > MAX_EXTENDED {
            return Err(ApduError::DataTooLong(n));
        }
        let le = self.le.map(|l| l.clamp(1, 65_536));
        let short = n <= 255 && le.is_none_or(|l| l <= 256);
        let mut out = Vec::with_capacity(n + 9);
        out.extend_from_slice(&[self.cla, self.ins, self.p1, self.p2]);
        if short {
            if n > 0 {
                out.push(n as u8);
                out.extend_from_slice(&self.data);
            }
            if let Some(l) = le {
                out.push(if l == 256 { 0 } else { l as u8 });
            }
        } else {
            out.push(0);
            if n > 0 {
                out.extend_from_slice(&(n as u16).to_be_bytes());
                out.extend_from_slice(&self.data);
            }
            if let Some(l) = le {
                let v = if l == 65_536 { 0 } else { l as u16 };
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        Ok(out)
    }

    /// Parses a command APDU (ISO 7816-4 cases 1–4, short and extended).
    pub fn parse(bytes: &[u8]) -> Result<Command, ApduError> {
        if bytes.len() < 4 {
            return Err(ApduError::TooShort(bytes.len()));
        }
        let mut cmd = Command::new(bytes[0], bytes[1], bytes[2], bytes[3]);
        let body = &bytes[4..];
        match body.len() {
            0 => return Ok(cmd),
            1 => {
                cmd.le = Some(if body[0] == 0 {
                    256
                } else {
                    u32::from(body[0])
                });
                return Ok(cmd);
            }
            _ => {}
        }
        if body[0] != 0 {
            // Short case 3 or 4.
            let lc = usize::from(body[0]);
            let rest = &body[1..];
            if rest.len() == lc {
                cmd.data = rest.to_vec();
            } else if rest.len() == lc + 1 {
                cmd.data = rest[..lc].to_vec();
                let l = rest[lc];
                cmd.le = Some(if l == 0 { 256 } else { u32::from(l) });
            } else {
                return Err(ApduError::LengthMismatch {
                    lc,
                    available: rest.len(),
                });
            }
            return Ok(cmd);
        }
        // Extended: 00 then two bytes.
        if body.len() == 3 {
            let l = u16::from_be_bytes([body[1], body[2]]);
            cmd.le = Some(if l == 0 { 65_536 } else { u32::from(l) });
            return Ok(cmd);
        }
        if body.len() < 3 {
            return Err(ApduError::LengthMismatch {
                lc: 0,
                available: body.len(),
            });
        }
        let lc = usize::from(u16::from_be_bytes([body[1], body[2]]));
        if lc == 0 {
            return Err(ApduError::ZeroLc);
        }
        let rest = &body[3..];
        if rest.len() < lc {
            return Err(ApduError::LengthMismatch {
                lc,
                available: rest.len(),
            });
        }
        cmd.data = rest[..lc].to_vec();
        match rest.len() - lc {
            0 => {}
            2 => {
                let l = u16::from_be_bytes([rest[lc], rest[lc + 1]]);
                cmd.le = Some(if l == 0 { 65_536 } else { u32::from(l) });
            }
            extra => return Err(ApduError::Trailing(extra)),
        }
        Ok(cmd)
    }
}

/// A response APDU: data and the status word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Response data.
    pub data: Vec<u8>,
    /// SW1 SW2 as one number, e.g. `0x9000`.
    pub sw: u16,
}

impl Response {
    /// Parses response bytes (data then SW1 SW2).
    pub fn parse(bytes: &[u8]) -> Result<Response, ApduError> {
        if bytes.len() < 2 {
            return Err(ApduError::ResponseTooShort(bytes.len()));
        }
        let (data, sw) = bytes.split_at(bytes.len() - 2);
        Ok(Response {
            data: data.to_vec(),
            sw: u16::from_be_bytes([sw[0], sw[1]]),
        })
    }

    /// A response with a status word only.
    pub fn status(sw: u16) -> Response {
        Response {
            data: Vec::new(),
            sw,
        }
    }

    /// Encodes data then SW1 SW2.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 2);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(&self.sw.to_be_bytes());
        out
    }

    /// True for `90 00`.
    pub fn is_ok(&self) -> bool {
        self.sw == 0x9000
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        let select = Command::new(0, 0xA4, 4, 0x0C).with_data(vec![0xD3, 0x92]);
        assert_eq!(
            select.to_bytes().unwrap(),
            vec![0, 0xA4, 4, 0x0C, 2, 0xD3, 0x92]
        );
        let read = Command::new(0, 0xB0, 1, 0).with_le(256);
        assert_eq!(read.to_bytes().unwrap(), vec![0, 0xB0, 1, 0, 0]);
        let sign = Command::new(0x80, 0x2A, 0, 0x80)
            .with_data(vec![1; 51])
            .with_le(256);
        let b = sign.to_bytes().unwrap();
        assert_eq!(b.len(), 4 + 1 + 51 + 1);
        assert_eq!(Command::parse(&b).unwrap(), sign);
        let ext = Command::new(0, 0xB0, 0, 0).with_le(1000);
        assert_eq!(ext.to_bytes().unwrap(), vec![0, 0xB0, 0, 0, 0, 0x03, 0xE8]);
        assert_eq!(Command::parse(&[0, 0x20, 0, 0x80]).unwrap().le, None);
        assert!(Command::parse(&[0, 0x20, 0]).is_err());
        assert!(Command::parse(&[0, 0x20, 0, 0x80, 4, 1, 2]).is_err());
        assert!(Response::parse(&[0x90]).is_err());
        assert_eq!(Response::parse(&[1, 0x63, 0xC2]).unwrap().sw, 0x63C2);
    }

    fn command() -> impl Strategy<Value = Command> {
        (
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 0..600),
            proptest::option::of(1u32..=65_536),
        )
            .prop_map(|(cla, ins, p1, p2, data, le)| Command {
                cla,
                ins,
                p1,
                p2,
                data,
                le,
            })
    }

    proptest! {
        #[test]
        fn encode_parse_round_trip(cmd in command()) {
            let bytes = cmd.to_bytes().unwrap();
            prop_assert_eq!(Command::parse(&bytes).unwrap(), cmd);
        }

        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            if let Ok(cmd) = Command::parse(&bytes) {
                // Whatever parses re-encodes to something that parses the same way.
                let again = Command::parse(&cmd.to_bytes().unwrap()).unwrap();
                prop_assert_eq!(again, cmd);
            }
            let _ = Response::parse(&bytes);
        }
    }
}
