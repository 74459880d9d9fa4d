//! How many bytes automerge data decodes to, found before automerge sees it.
//!
//! Automerge data is a sequence of chunks (binary format: 4 magic bytes, a 4-byte
//! checksum, a chunk type byte, an unsigned LEB128 length, then that many bytes). Two kinds
//! hold DEFLATE-compressed data that automerge inflates with no limit while loading:
//! - a *compressed change* chunk (type 2): its whole body is DEFLATE data;
//! - a *document* chunk (type 0): after the actors and heads come two column directories
//!   (changes, then operations: a count, then per column a LEB128 spec and a LEB128
//!   length); a spec with bit 3 set (`0x08`) marks a DEFLATE-compressed column.
//!
//! [`decoded_size`] walks the chunks, inflates every compressed part into a counting sink
//! (nothing is kept: memory stays at the inflater's window) and stops as soon as the total
//! would pass the budget, so a chunk of a few KiB that would inflate to gigabytes costs at
//! most `budget` bytes of inflating work and no allocation. Plain change chunks (type 1)
//! count their length. *Bundle* chunks (type 3, an experimental automerge format no musubi
//! peer writes) and anything else are refused. The structure is only read as far as sizes
//! need; automerge still checks everything else when it loads the data.

use std::cell::RefCell;

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const DOCUMENT: u8 = 0;
const CHANGE: u8 = 1;
const COMPRESSED_CHANGE: u8 = 2;
/// Bit of a column spec marking DEFLATE-compressed column data.
const DEFLATE_BIT: u64 = 0x08;
/// Most columns a directory may list (automerge writes about 20).
const MAX_COLUMNS: u64 = 256;

/// Why automerge data was not handed to automerge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    /// The data decodes to more than the budget allows.
    #[error("automerge data decodes to more than {budget} bytes")]
    TooLarge {
        /// The budget that was exceeded.
        budget: u64,
    },
    /// The chunk structure could not be read far enough to know its size.
    #[error("automerge data is malformed: {0}")]
    Malformed(&'static str),
}

/// An unsigned LEB128 number and the bytes after it.
fn uleb(bytes: &[u8]) -> Result<(u64, &[u8]), InflateError> {
    let mut value = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f).checked_shl(7 * i as u32).unwrap_or(0);
        if b & 0x80 == 0 {
            let rest = bytes
                .get(i + 1..)
                .ok_or(InflateError::Malformed("number"))?;
            return Ok((value, rest));
        }
    }
    Err(InflateError::Malformed("number"))
}

fn take(bytes: &[u8], n: u64) -> Result<(&[u8], &[u8]), InflateError> {
    let n = usize::try_from(n).map_err(|_| InflateError::Malformed("length"))?;
    if n > bytes.len() {
        return Err(InflateError::Malformed("length past the end"));
    }
    Ok(bytes.split_at(n))
}

thread_local! {
    /// One raw-DEFLATE inflater per thread, reset for each stream: making one allocates
    /// its state and window, which cost more than inflating a survey's small columns.
    static INFLATER: RefCell<flate2::Decompress> = RefCell::new(flate2::Decompress::new(false));
}

/// Inflates `data` into nothing, counting; fails once `left` would be exceeded.
fn inflated_len(data: &[u8], left: u64, budget: u64) -> Result<u64, InflateError> {
    INFLATER.with(|z| {
        let mut z = z.borrow_mut();
        z.reset(false);
        let mut out = [0u8; 8192];
        let mut input = data;
        let mut n = 0u64;
        loop {
            let (in_before, out_before) = (z.total_in(), z.total_out());
            let status = z
                .decompress(input, &mut out, flate2::FlushDecompress::None)
                .map_err(|_| InflateError::Malformed("compressed data does not inflate"))?;
            let used = usize::try_from(z.total_in() - in_before).unwrap_or(usize::MAX);
            let made = z.total_out() - out_before;
            input = input.get(used..).unwrap_or_default();
            n = n.saturating_add(made);
            // One byte more than allowed tells "too large" from "exactly at the limit".
            if n > left {
                return Err(InflateError::TooLarge { budget });
            }
            match status {
                flate2::Status::StreamEnd => return Ok(n),
                // No progress: the stream is cut short.
                _ if used == 0 && made == 0 => {
                    return Err(InflateError::Malformed("compressed data does not inflate"));
                }
                _ => {}
            }
        }
    })
}

/// Adds `n` to `total`, failing past `budget`.
fn add(total: &mut u64, n: u64, budget: u64) -> Result<(), InflateError> {
    *total = total.saturating_add(n);
    if *total > budget {
        return Err(InflateError::TooLarge { budget });
    }
    Ok(())
}

/// The body of a document chunk, with compressed columns counted as inflated.
fn document_size(body: &[u8], total: &mut u64, budget: u64) -> Result<(), InflateError> {
    let (actors, mut rest) = uleb(body)?;
    for _ in 0..actors {
        let (n, r) = uleb(rest)?;
        rest = take(r, n)?.1;
    }
    let (heads, r) = uleb(rest)?;
    rest = take(r, heads.saturating_mul(32))?.1;
    // Two directories (change columns, op columns), then their data in the same order.
    let mut dirs: Vec<Vec<(bool, u64)>> = Vec::with_capacity(2);
    for _ in 0..2 {
        let (count, r) = uleb(rest)?;
        if count > MAX_COLUMNS {
            return Err(InflateError::Malformed("too many columns"));
        }
        rest = r;
        let mut cols = Vec::new();
        for _ in 0..count {
            let (spec, r) = uleb(rest)?;
            let (len, r) = uleb(r)?;
            cols.push((spec & DEFLATE_BIT != 0, len));
            rest = r;
        }
        dirs.push(cols);
    }
    // What precedes the column data (and follows it: head indices) counts as it is.
    let mut plain = (body.len() - rest.len()) as u64;
    for cols in &dirs {
        for &(deflated, len) in cols {
            let (data, r) = take(rest, len)?;
            rest = r;
            if deflated {
                let left = budget.saturating_sub(*total).saturating_sub(plain);
                add(total, inflated_len(data, left, budget)?, budget)?;
            } else {
                plain = plain.saturating_add(len);
            }
        }
    }
    plain = plain.saturating_add(rest.len() as u64);
    add(total, plain, budget)
}

/// The number of bytes `data` (one or more automerge chunks, as `load`,
/// `load_incremental` or a sync message's change list take them) decodes to, or an error
/// as soon as it would pass `budget`. Empty data decodes to nothing.
pub fn decoded_size(data: &[u8], budget: u64) -> Result<u64, InflateError> {
    let mut total = 0u64;
    let mut rest = data;
    while !rest.is_empty() {
        let r = rest
            .strip_prefix(&MAGIC)
            .ok_or(InflateError::Malformed("not an automerge chunk"))?;
        let (_checksum, r) = take(r, 4)?;
        let (&kind, r) = r
            .split_first()
            .ok_or(InflateError::Malformed("chunk type"))?;
        let (len, r) = uleb(r)?;
        let (body, r) = take(r, len)?;
        let header = (rest.len() - r.len()) as u64 - len;
        add(&mut total, header, budget)?;
        match kind {
            DOCUMENT => document_size(body, &mut total, budget)?,
            CHANGE => add(&mut total, len, budget)?,
            COMPRESSED_CHANGE => {
                let left = budget.saturating_sub(total);
                add(&mut total, inflated_len(body, left, budget)?, budget)?;
            }
            _ => return Err(InflateError::Malformed("chunk type not accepted")),
        }
        rest = r;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ROOT};

    use super::*;

    /// A document whose saved form has compressed columns (long, compressible text).
    fn big_doc() -> AutoCommit {
        let mut doc = AutoCommit::new();
        for i in 0..400 {
            doc.put(ROOT, format!("field{i}"), "あいうえお".repeat(40))
                .unwrap();
        }
        doc
    }

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn leb(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn chunk(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend([0, 0, 0, 0, kind]);
        leb(body.len() as u64, &mut out);
        out.extend(body);
        out
    }

    /// Catches: real automerge data refused, or its size misjudged (a bound that never
    /// sees the compressed columns would report less than the stored length).
    #[test]
    fn real_documents_and_changes_are_measured() {
        let mut doc = big_doc();
        let saved = doc.save();
        let size = decoded_size(&saved, u64::MAX).unwrap();
        assert!(
            size > saved.len() as u64 * 3,
            "compressed columns counted inflated: {size} vs {}",
            saved.len()
        );
        doc.put(ROOT, "more", "x".repeat(5000)).unwrap();
        let incremental = doc.save_incremental();
        assert!(decoded_size(&incremental, u64::MAX).unwrap() >= 5000);
        // Several chunks in a row, as load_incremental takes them.
        let both = [saved.clone(), incremental].concat();
        assert!(decoded_size(&both, u64::MAX).unwrap() > size);
        assert_eq!(decoded_size(&[], 0).unwrap(), 0);
        // Exactly at the budget passes; one byte less does not.
        assert_eq!(decoded_size(&saved, size).unwrap(), size);
        assert_eq!(
            decoded_size(&saved, size - 1),
            Err(InflateError::TooLarge { budget: size - 1 })
        );
    }

    /// Catches: a compressed-change bomb (a few KiB inflating to 64 MiB) inflated beyond
    /// the budget, or inflated into memory.
    #[test]
    fn a_compressed_change_bomb_stops_at_the_budget() {
        let bomb = chunk(COMPRESSED_CHANGE, &deflate(&vec![0u8; 64 << 20]));
        assert!(bomb.len() < 128 << 10, "{}", bomb.len());
        assert_eq!(
            decoded_size(&bomb, 1 << 20),
            Err(InflateError::TooLarge { budget: 1 << 20 })
        );
        // And automerge does not get a chance at it: behind a good chunk too.
        let good = big_doc().save();
        assert!(decoded_size(&[good, bomb].concat(), 1 << 20).is_err());
    }

    /// Catches: a deflated column in a document chunk not counted (the column directory
    /// misread) and a bad column length read past the end.
    #[test]
    fn a_document_with_a_deflated_column_bomb_is_refused() {
        let column = deflate(&vec![7u8; 32 << 20]);
        let mut body = Vec::new();
        leb(0, &mut body); // actors
        leb(0, &mut body); // heads
        leb(1, &mut body); // change columns
        leb(0x10 | DEFLATE_BIT, &mut body);
        leb(column.len() as u64, &mut body);
        leb(0, &mut body); // op columns
        body.extend(&column);
        let doc = chunk(DOCUMENT, &body);
        assert_eq!(
            decoded_size(&doc, 1 << 20),
            Err(InflateError::TooLarge { budget: 1 << 20 })
        );
        assert!(decoded_size(&doc, 64 << 20).unwrap() >= 32 << 20);
        let mut short = body.clone();
        short.truncate(body.len() - 10);
        assert!(matches!(
            decoded_size(&chunk(DOCUMENT, &short), u64::MAX),
            Err(InflateError::Malformed(_))
        ));
    }

    /// Catches: bundle chunks or garbage reaching automerge.
    #[test]
    fn bundles_and_garbage_are_refused() {
        assert!(matches!(
            decoded_size(&chunk(3, b"abc"), u64::MAX),
            Err(InflateError::Malformed(_))
        ));
        assert!(decoded_size(b"not automerge", u64::MAX).is_err());
        let mut cut = big_doc().save();
        cut.truncate(cut.len() / 2);
        assert!(decoded_size(&cut, u64::MAX).is_err());
    }
}
