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
//!
//! Bytes are not the only thing a small chunk can hide. Automerge's columns are
//! run-length encoded, so a column of a few bytes can describe a billion operations (a
//! 186-byte document of ten million list elements takes automerge 3.8 s and 880 MB to
//! load). The walk therefore also counts the rows of every column it passes (the run
//! lengths are summed, nothing is expanded) and refuses data with more than
//! [`MAX_DECODED_ROWS`] operations or changes before automerge sees it. Column encodings
//! (from the automerge binary format): the low three bits of a column spec give its type;
//! types 0–3, 5 and 6 are run-length encoded (a signed LEB128 count: a positive count is a
//! run of the one value that follows, a negative one that many literal values, zero a
//! run of nulls whose length follows as an unsigned LEB128), values being unsigned LEB128
//! numbers, signed LEB128 numbers (type 3, delta) or length-prefixed strings (type 5);
//! type 4 (boolean) is a sequence of unsigned LEB128 run lengths; type 7 is raw bytes
//! (counted as bytes only).

use std::cell::RefCell;

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const DOCUMENT: u8 = 0;
const CHANGE: u8 = 1;
const COMPRESSED_CHANGE: u8 = 2;
/// Bit of a column spec marking DEFLATE-compressed column data.
const DEFLATE_BIT: u64 = 0x08;
/// Most columns a directory may list (automerge writes about 20).
const MAX_COLUMNS: u64 = 256;
/// Most operations (or changes) the automerge data handed to automerge at once may hold:
/// rows of a chunk's longest column, summed over its chunks. Loading costs about 90 bytes
/// of memory per operation at least (far more per change), so this keeps a crafted chunk
/// under about 100 MB; a survey edited monthly by four tablets for four years holds
/// about 1 % of it (docs/benchmarks.md, "Per-document memory").
pub const MAX_DECODED_ROWS: u64 = 1_000_000;

/// Why automerge data was not handed to automerge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    /// The data decodes to more than the budget allows.
    #[error("automerge data decodes to more than {budget} bytes")]
    TooLarge {
        /// The budget that was exceeded.
        budget: u64,
    },
    /// The data holds more operations or changes than [`MAX_DECODED_ROWS`].
    #[error("automerge data holds more than {MAX_DECODED_ROWS} operations or changes")]
    TooManyRows,
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

/// Inflates `data`, handing each piece to `sink` (nothing is kept here) and counting;
/// fails once `left` would be exceeded.
fn inflated_len(
    data: &[u8],
    left: u64,
    budget: u64,
    sink: &mut dyn FnMut(&[u8]) -> Result<(), InflateError>,
) -> Result<u64, InflateError> {
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
            sink(
                out.get(..usize::try_from(made).unwrap_or(0))
                    .unwrap_or_default(),
            )?;
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

/// What a column's data encodes its rows with (see the module comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Values {
    Unsigned,
    Signed,
    Strings,
    Booleans,
}

impl Values {
    /// The encoding of a column of spec `spec`; `None` for raw bytes.
    fn of(spec: u64) -> Option<Values> {
        match spec & 0x07 {
            3 => Some(Values::Signed),
            4 => Some(Values::Booleans),
            5 => Some(Values::Strings),
            7 => None,
            _ => Some(Values::Unsigned),
        }
    }
}

/// Where a [`RowCounter`] is in its column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    /// Reading a run's count (for booleans: a run length).
    Count,
    /// Reading `left` values (one for a run, the count for literals).
    Values { left: u64 },
    /// Reading the length of a run of nulls.
    Nulls,
    /// Skipping the bytes of a string value, then `left` values more.
    StrBytes { bytes: u64, left: u64 },
}

/// Sums the rows of one column as its bytes come (a deflated column arrives in pieces),
/// without expanding any run.
struct RowCounter {
    values: Values,
    at: At,
    /// The LEB128 number being read: value so far and bits read.
    num: u64,
    shift: u32,
    rows: u64,
}

impl RowCounter {
    fn new(values: Values) -> Self {
        RowCounter {
            values,
            at: At::Count,
            num: 0,
            shift: 0,
            rows: 0,
        }
    }

    fn add_rows(&mut self, n: u64) -> Result<(), InflateError> {
        self.rows = self.rows.saturating_add(n);
        if self.rows > MAX_DECODED_ROWS {
            return Err(InflateError::TooManyRows);
        }
        Ok(())
    }

    /// One value read (or skipped): the next one, or the next count.
    fn value_done(&mut self, left: u64) {
        self.at = if left > 1 {
            At::Values { left: left - 1 }
        } else {
            At::Count
        };
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), InflateError> {
        let mut i = 0;
        while i < bytes.len() {
            if let At::StrBytes { bytes: n, left } = self.at {
                let here = (bytes.len() - i) as u64;
                if n > here {
                    self.at = At::StrBytes {
                        bytes: n - here,
                        left,
                    };
                    return Ok(());
                }
                i += usize::try_from(n).map_err(|_| InflateError::Malformed("string length"))?;
                self.value_done(left);
                continue;
            }
            let b = bytes[i];
            i += 1;
            if self.shift >= 64 {
                return Err(InflateError::Malformed("column number too long"));
            }
            self.num |= u64::from(b & 0x7f) << self.shift;
            self.shift += 7;
            if b & 0x80 != 0 {
                continue;
            }
            // A whole LEB128 number: `num` (its sign bit is 0x40 of the last byte).
            let (num, negative) = (self.num, b & 0x40 != 0);
            let bits = self.shift;
            self.num = 0;
            self.shift = 0;
            match self.at {
                At::Count if self.values == Values::Booleans => self.add_rows(num)?,
                At::Count => {
                    if negative && bits < 64 {
                        // A literal run: the count is minus the number.
                        let count = (num | (!0u64 << bits)).wrapping_neg();
                        self.add_rows(count)?;
                        self.at = At::Values { left: count };
                    } else if num == 0 {
                        self.at = At::Nulls;
                    } else {
                        self.add_rows(num)?;
                        self.at = At::Values { left: 1 };
                    }
                }
                At::Nulls => {
                    self.add_rows(num)?;
                    self.at = At::Count;
                }
                At::Values { left } if self.values == Values::Strings && num > 0 => {
                    self.at = At::StrBytes { bytes: num, left };
                }
                At::Values { left } => self.value_done(left),
                // String bytes are skipped at the top of the loop; never here.
                At::StrBytes { .. } => return Err(InflateError::Malformed("column state")),
            }
        }
        Ok(())
    }

    /// The column's rows, once its last byte came.
    fn finish(self) -> Result<u64, InflateError> {
        if self.at != At::Count || self.shift != 0 {
            return Err(InflateError::Malformed("column cut short"));
        }
        Ok(self.rows)
    }
}

/// A column directory: per column, its spec and the length of its data.
type Directory = Vec<(u64, u64)>;

/// Reads a column directory (a count, then per column a spec and a length).
fn directory(rest: &[u8]) -> Result<(Directory, &[u8]), InflateError> {
    let (count, mut rest) = uleb(rest)?;
    if count > MAX_COLUMNS {
        return Err(InflateError::Malformed("too many columns"));
    }
    let mut cols = Vec::new();
    for _ in 0..count {
        let (spec, r) = uleb(rest)?;
        let (len, r) = uleb(r)?;
        cols.push((spec, len));
        rest = r;
    }
    Ok((cols, rest))
}

/// What a chunk body held: bytes as automerge decodes them, and the rows of its longest
/// column.
#[derive(Default)]
struct Walked {
    bytes: u64,
    rows: u64,
}

/// Walks the data of the columns of `dirs`, in order, from the start of `rest`: deflated
/// columns count as inflated (within what `budget` leaves after `total`), and every
/// column's rows are summed. Returns the bytes after the columns.
fn columns<'a>(
    dirs: &[Directory],
    mut rest: &'a [u8],
    walked: &mut Walked,
    total: u64,
    budget: u64,
) -> Result<&'a [u8], InflateError> {
    for cols in dirs {
        for &(spec, len) in cols {
            let (data, r) = take(rest, len)?;
            rest = r;
            let mut rows = Values::of(spec).map(RowCounter::new);
            if spec & DEFLATE_BIT != 0 {
                let left = budget.saturating_sub(total).saturating_sub(walked.bytes);
                let mut sink = |piece: &[u8]| match rows.as_mut() {
                    Some(r) => r.feed(piece),
                    None => Ok(()),
                };
                let n = inflated_len(data, left, budget, &mut sink)?;
                walked.bytes = walked.bytes.saturating_add(n);
            } else {
                if let Some(r) = rows.as_mut() {
                    r.feed(data)?;
                }
                walked.bytes = walked.bytes.saturating_add(len);
            }
            if let Some(r) = rows {
                walked.rows = walked.rows.max(r.finish()?);
            }
        }
    }
    Ok(rest)
}

/// Skips `count`-prefixed items of `item` bytes each.
fn skip_counted(rest: &[u8], item: u64) -> Result<&[u8], InflateError> {
    let (n, r) = uleb(rest)?;
    Ok(take(r, n.saturating_mul(item))?.1)
}

/// Skips a length-prefixed byte string.
fn skip_prefixed(rest: &[u8]) -> Result<&[u8], InflateError> {
    let (n, r) = uleb(rest)?;
    Ok(take(r, n)?.1)
}

/// The body of a document chunk: actors, heads, two column directories (changes, then
/// operations), their data, then head indices.
fn document(body: &[u8], total: u64, budget: u64) -> Result<Walked, InflateError> {
    let (actors, mut rest) = uleb(body)?;
    for _ in 0..actors {
        rest = skip_prefixed(rest)?;
    }
    rest = skip_counted(rest, 32)?;
    let (changes, r) = directory(rest)?;
    let (ops, r) = directory(r)?;
    let mut walked = Walked {
        bytes: (body.len() - r.len()) as u64,
        rows: 0,
    };
    let after = columns(&[changes, ops], r, &mut walked, total, budget)?;
    walked.bytes = walked.bytes.saturating_add(after.len() as u64);
    Ok(walked)
}

/// The body of a change chunk: dependencies, actor, sequence number, start op, time,
/// message, other actors, one column directory (operations), its data, extra bytes.
fn change(body: &[u8], total: u64, budget: u64) -> Result<Walked, InflateError> {
    let mut rest = skip_counted(body, 32)?;
    rest = skip_prefixed(rest)?;
    for _ in 0..3 {
        rest = uleb(rest)?.1; // seq, start op, time (signed, same length rule)
    }
    rest = skip_prefixed(rest)?;
    let (others, mut r) = uleb(rest)?;
    for _ in 0..others {
        r = skip_prefixed(r)?;
    }
    let (ops, r) = directory(r)?;
    let mut walked = Walked {
        bytes: body.len() as u64,
        rows: 0,
    };
    columns(&[ops], r, &mut walked, total, budget)?;
    // The body is counted as it is (change columns are never deflated); one change.
    walked.bytes = body.len() as u64;
    walked.rows = walked.rows.max(1);
    Ok(walked)
}

/// One automerge chunk as it lies in a byte sequence.
pub struct RawChunk<'a> {
    /// The chunk type byte (0 document, 1 change, 2 compressed change, 3 bundle).
    pub kind: u8,
    /// The whole chunk, header included.
    pub bytes: &'a [u8],
    /// The chunk's body (after the length).
    pub body: &'a [u8],
}

impl RawChunk<'_> {
    /// Whether the chunk is a whole saved document.
    pub fn is_document(&self) -> bool {
        self.kind == DOCUMENT
    }

    /// Whether the chunk holds one change (plain or compressed).
    pub fn is_change(&self) -> bool {
        matches!(self.kind, CHANGE | COMPRESSED_CHANGE)
    }
}

/// Splits the first chunk off `data` by its header alone (the checksum and the body are
/// not checked). `data` must not be empty.
pub fn split_chunk(data: &[u8]) -> Result<(RawChunk<'_>, &[u8]), InflateError> {
    let r = data
        .strip_prefix(&MAGIC)
        .ok_or(InflateError::Malformed("not an automerge chunk"))?;
    let (_checksum, r) = take(r, 4)?;
    let (&kind, r) = r
        .split_first()
        .ok_or(InflateError::Malformed("chunk type"))?;
    let (len, r) = uleb(r)?;
    let (body, rest) = take(r, len)?;
    let bytes = &data[..data.len() - rest.len()];
    Ok((RawChunk { kind, bytes, body }, rest))
}

/// The number of bytes `data` (one or more automerge chunks, as `load`,
/// `load_incremental` or a sync message's change list take them) decodes to, or an error
/// as soon as it would pass `budget`. Empty data decodes to nothing.
pub fn decoded_size(data: &[u8], budget: u64) -> Result<u64, InflateError> {
    let mut total = 0u64;
    let mut rows = 0u64;
    let mut rest = data;
    while !rest.is_empty() {
        let (RawChunk { kind, bytes, body }, r) = split_chunk(rest)?;
        add(&mut total, (bytes.len() - body.len()) as u64, budget)?;
        let walked = match kind {
            DOCUMENT => document(body, total, budget)?,
            CHANGE => change(body, total, budget)?,
            COMPRESSED_CHANGE => {
                // Inflated whole (within the budget: automerge does the same next), then
                // read as the change chunk it holds.
                let left = budget.saturating_sub(total);
                let mut inflated = Vec::new();
                inflated_len(body, left, budget, &mut |piece: &[u8]| {
                    inflated.extend_from_slice(piece);
                    Ok(())
                })?;
                change(&inflated, total, budget)?
            }
            _ => return Err(InflateError::Malformed("chunk type not accepted")),
        };
        add(&mut total, walked.bytes, budget)?;
        rows = rows.saturating_add(walked.rows);
        if rows > MAX_DECODED_ROWS {
            return Err(InflateError::TooManyRows);
        }
        rest = r;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ObjType, ROOT, ReadDoc, ScalarValue};

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
        leb(0x10 | 0x07 | DEFLATE_BIT, &mut body); // raw bytes: no rows
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

    /// A list of `n` nulls made in one change: automerge saves its columns as a few runs.
    fn long_list(n: usize) -> AutoCommit {
        let mut doc = AutoCommit::new();
        let list = doc.put_object(ROOT, "l", ObjType::List).unwrap();
        doc.splice(&list, 0, 0, std::iter::repeat_n(ScalarValue::Null, n))
            .unwrap();
        doc.commit();
        doc
    }

    /// Whether the walk lets `data` through on its rows (the cap is fixed, so the walk
    /// is checked with documents just under and just over it, against automerge's count).
    fn rows_pass(data: &[u8]) -> bool {
        match decoded_size(data, u64::MAX) {
            Ok(_) => true,
            Err(InflateError::TooManyRows) => false,
            Err(e) => panic!("{e}"),
        }
    }

    /// Catches: a run-length bomb (a document of a few hundred bytes holding millions of
    /// operations, which automerge expands while it loads) reaching automerge; rows
    /// miscounted in documents, change chunks and compressed change chunks, so that the cap
    /// refuses honest data or lets a bomb through.
    #[test]
    fn operations_hidden_in_runs_are_counted_before_automerge_loads_them() {
        let cap = usize::try_from(MAX_DECODED_ROWS).unwrap();
        // The list's ops plus the one that makes the list.
        let mut under = long_list(cap - 1);
        let mut over = long_list(cap);
        let (under_doc, over_doc) = (under.save(), over.save());
        assert!(over_doc.len() < 1024, "a bomb is small: {}", over_doc.len());
        assert_eq!(
            automerge::Automerge::load(&under_doc)
                .unwrap()
                .stats()
                .num_ops,
            MAX_DECODED_ROWS
        );
        assert!(rows_pass(&under_doc));
        assert_eq!(
            decoded_size(&over_doc, u64::MAX),
            Err(InflateError::TooManyRows)
        );
        // The same operations as one change chunk (as a sync message carries them).
        let (under_change, over_change) = (under.save_after(&[]), over.save_after(&[]));
        assert!(rows_pass(&under_change));
        assert_eq!(
            decoded_size(&over_change, u64::MAX),
            Err(InflateError::TooManyRows)
        );
        // Over the cap in two chunks that each pass alone.
        let half = long_list(cap / 2 + 1).save();
        assert!(rows_pass(&half));
        assert_eq!(
            decoded_size(&[half.clone(), half].concat(), u64::MAX),
            Err(InflateError::TooManyRows)
        );
        // A compressed change chunk holds a change chunk's body, deflated (automerge
        // inflates it and reads it as a change): counted as that change.
        let body_of = |c: &[u8]| -> Vec<u8> {
            let (len, _) = uleb(&c[9..]).unwrap();
            c[c.len() - usize::try_from(len).unwrap()..].to_vec()
        };
        let compress = |c: &[u8]| chunk(COMPRESSED_CHANGE, &deflate(&body_of(c)));
        assert_eq!(
            decoded_size(&compress(&over_change), u64::MAX),
            Err(InflateError::TooManyRows)
        );
        assert!(rows_pass(&compress(&under_change)));
    }

    /// Catches: rows of real, varied documents miscounted (every column type: strings,
    /// deltas, booleans, groups; many changes by several actors; text).
    #[test]
    fn real_documents_pass_the_row_count() {
        let mut a = big_doc();
        let mut b = a.fork();
        for i in 0..300 {
            let t = b
                .put_object(ROOT, format!("text{i}"), ObjType::Text)
                .unwrap();
            b.splice_text(&t, 0, 0, "特記事項のテキスト").unwrap();
            b.commit();
            a.put(ROOT, format!("n{i}"), i64::from(i) * -7).unwrap();
            a.put(ROOT, format!("b{i}"), i % 2 == 0).unwrap();
            a.commit();
        }
        a.merge(&mut b).unwrap();
        let saved = a.save();
        assert!(rows_pass(&saved));
        assert!(rows_pass(&a.save_nocompress()));
        assert!(rows_pass(&a.save_after(&[])));
        assert!(rows_pass(&[saved, b.save_after(&[])].concat()));
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
