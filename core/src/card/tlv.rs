//! BER-TLV as used on the My Number card (tags of one to three bytes, definite lengths up
//! to three bytes). Parsing never panics: every error names what was wrong and where.

/// One TLV found in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The tag bytes as a number, e.g. `0xFF20`, `0xDF22`, `0x7F21`, `0x90`.
    pub tag: u32,
    /// The value bytes.
    pub value: &'a [u8],
    /// The whole TLV (tag, length and value), as it appeared.
    pub raw: &'a [u8],
}

/// Why bytes are not valid BER-TLV.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlvError {
    /// The buffer ended inside a tag, length or value.
    #[error("TLV at offset {offset}: truncated {part}")]
    Truncated {
        /// Where the TLV starts.
        offset: usize,
        /// "tag", "length" or "value".
        part: &'static str,
    },
    /// Indefinite length or a length field longer than 3 bytes.
    #[error("TLV at offset {offset}: unsupported length form 0x{first:02X}")]
    BadLength {
        /// Where the TLV starts.
        offset: usize,
        /// The first length byte.
        first: u8,
    },
    /// A tag longer than 3 bytes.
    #[error("TLV at offset {offset}: tag longer than 3 bytes")]
    TagTooLong {
        /// Where the TLV starts.
        offset: usize,
    },
}

/// Reads a tag at `pos`; returns the tag and the position after it.
fn read_tag(buf: &[u8], start: usize) -> Result<(u32, usize), TlvError> {
    let first = *buf.get(start).ok_or(TlvError::Truncated {
        offset: start,
        part: "tag",
    })?;
    let mut tag = u32::from(first);
    let mut pos = start + 1;
    if first & 0x1F == 0x1F {
        loop {
            let b = *buf.get(pos).ok_or(TlvError::Truncated {
                offset: start,
                part: "tag",
            })?;
            tag = (tag << 8) | u32::from(b);
            pos += 1;
            if pos - start > 3 {
                return Err(TlvError::TagTooLong { offset: start });
            }
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    Ok((tag, pos))
}

/// Reads a length at `pos`; returns the length and the position after it.
fn read_len(buf: &[u8], start: usize, pos: usize) -> Result<(usize, usize), TlvError> {
    let truncated = TlvError::Truncated {
        offset: start,
        part: "length",
    };
    let first = *buf.get(pos).ok_or(truncated.clone())?;
    if first < 0x80 {
        return Ok((usize::from(first), pos + 1));
    }
    let n = usize::from(first & 0x7F);
    if n == 0 || n > 3 {
        return Err(TlvError::BadLength {
            offset: start,
            first,
        });
    }
    let bytes = buf.get(pos + 1..pos + 1 + n).ok_or(truncated)?;
    let len = bytes.iter().fold(0usize, |a, b| (a << 8) | usize::from(*b));
    Ok((len, pos + 1 + n))
}

/// Parses one TLV starting at `offset`; returns it and the offset after it.
pub fn parse_one(buf: &[u8], offset: usize) -> Result<(Tlv<'_>, usize), TlvError> {
    let (tag, pos) = read_tag(buf, offset)?;
    let (len, pos) = read_len(buf, offset, pos)?;
    let end = pos.checked_add(len).ok_or(TlvError::Truncated {
        offset,
        part: "value",
    })?;
    let value = buf.get(pos..end).ok_or(TlvError::Truncated {
        offset,
        part: "value",
    })?;
    Ok((
        Tlv {
            tag,
            value,
            raw: &buf[offset..end],
        },
        end,
    ))
}

/// Parses consecutive TLVs filling `buf`, stopping at `00`/`FF` filler when
/// `stop_at_filler` (the card pads files with it).
pub fn parse_all(buf: &[u8], stop_at_filler: bool) -> Result<Vec<Tlv<'_>>, TlvError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        if stop_at_filler && buf[pos..].iter().all(|b| *b == 0 || *b == 0xFF) {
            break;
        }
        let (tlv, next) = parse_one(buf, pos)?;
        out.push(tlv);
        pos = next;
    }
    Ok(out)
}

/// The total size of a TLV or DER object from its first bytes (at least 2; up to 5 are
/// used), for sizing READ BINARY. The tag is assumed to be one or two bytes as given.
pub fn total_len_from_header(header: &[u8]) -> Result<usize, TlvError> {
    let (_, pos) = read_tag(header, 0)?;
    let (len, pos) = read_len(header, 0, pos)?;
    Ok(pos + len)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn card_tags_and_lengths() {
        let buf = [0xFF, 0x20, 0x05, 0xDF, 0x22, 0x02, 0x41, 0x42, 0xFF, 0xFF];
        let (outer, end) = parse_one(&buf, 0).unwrap();
        assert_eq!(outer.tag, 0xFF20);
        assert_eq!(end, 8);
        let inner = parse_all(outer.value, true).unwrap();
        assert_eq!(inner[0].tag, 0xDF22);
        assert_eq!(inner[0].value, b"AB");
        assert_eq!(inner[0].raw, &[0xDF, 0x22, 0x02, 0x41, 0x42]);
        assert_eq!(
            total_len_from_header(&[0x30, 0x82, 0x05, 0x1C]).unwrap(),
            0x0520
        );
        assert_eq!(total_len_from_header(&[0x30, 0x81, 0x80]).unwrap(), 0x83);
        assert!(total_len_from_header(&[0x30, 0x80]).is_err());
        assert!(total_len_from_header(&[0x30, 0x84, 1, 1, 1, 1]).is_err());
        assert!(parse_one(&[0xDF, 0x22, 0x05, 1], 0).is_err());
        assert!(parse_one(&[0xDF, 0xA2, 0x85, 0x80, 1], 0).is_err());
    }

    fn encode(tag: u16, value: &[u8]) -> Vec<u8> {
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

    proptest! {
        #[test]
        fn round_trip(values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..400), 1..5)) {
            let mut buf = Vec::new();
            for v in &values {
                buf.extend(encode(0xDF22, v));
            }
            let parsed = parse_all(&buf, false).unwrap();
            prop_assert_eq!(parsed.len(), values.len());
            for (p, v) in parsed.iter().zip(&values) {
                prop_assert_eq!(p.tag, 0xDF22);
                prop_assert_eq!(p.value, v.as_slice());
            }
        }

        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(all) = parse_all(&bytes, true) {
                for t in all {
                    prop_assert!(t.raw.len() >= t.value.len());
                }
            }
            let _ = total_len_from_header(&bytes);
        }
    }
}
