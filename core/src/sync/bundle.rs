//! Sync bundles: every document of a store's office(s) in one passphrase-encrypted file,
//! carried on a USB stick when there is no network at all.
//!
//! The plaintext (see "Bundles" in `docs/protocol.md`) is the magic line
//! `musubi-bundle/1\n`, then length-prefixed frames as on a sync stream
//! ([`frame::length_prefixed`]): one manifest, one [`Frame::DocData`] per document (the
//! whole `Automerge::save()`), and a trailer with the document count and a SHA-256 over
//! every byte before the trailer. The file is that plaintext encrypted with age to a
//! passphrase (scrypt); age's STREAM construction authenticates every 64 KiB chunk and the
//! end of the file, so a cut or changed file fails to decrypt, and the trailer is checked
//! on top.
//!
//! Reading a bundle is all or nothing: [`parse`] reads and checks the whole plaintext,
//! [`import`] loads every document strictly and checks its kind and office before it
//! writes anything, then writes every new or changed document in ONE [`SyncBatch`].
//! Parsing needs neither the store nor age (so it can be fuzzed); encryption and the
//! file helpers are musubi-engine's `sync::bundle::{read_file, write_file, …}`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{self, Read, Write};

use automerge::{Automerge, ReadDoc};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};

use super::admission::{Admission, Incoming, Uploader, incoming_heads};
use super::frame::{self, Frame, FrameReader, heads_of};
use super::session::{load_chunks, root_str, title_from};
use super::sharing::share_keys;
use super::storage::{StorageError, SyncBatch, SyncStorage, SyncWrite};
use crate::doc::Snapshot;
use crate::doc::has_conflicts;
use crate::ids::DocId;
use crate::schema::DocKind;

/// The first line of every bundle plaintext; the number is the bundle format.
pub const MAGIC: &[u8] = b"musubi-bundle/1\n";

/// What the magic line starts with, whatever the format.
const MAGIC_PREFIX: &[u8] = b"musubi-bundle/";

/// The bundle format this build writes and reads.
pub const BUNDLE_FORMAT: u32 = 1;

/// The largest plaintext accepted (the whole bundle is checked in memory before import).
pub const MAX_BUNDLE_BYTES: u64 = 1 << 30;

/// The peer name used for the (state-free) batch an import writes.
const BUNDLE_PEER: &str = "bundle";

/// How many bytes are read at a time while parsing.
const READ_CHUNK: usize = 64 * 1024;

/// What a bundle says about itself (the first frame).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Bundle format ([`BUNDLE_FORMAT`]).
    pub format: u32,
    /// The exporting store's id.
    pub store: String,
    /// The offices (事業所番号) whose documents the bundle holds.
    pub offices: Vec<String>,
    /// How many documents follow.
    pub docs: u64,
    /// When the bundle was written (unix milliseconds).
    pub created_ms: i64,
}

impl fmt::Debug for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manifest")
            .field("format", &self.format)
            .field("store", &self.store)
            .field("offices", &self.offices)
            .field("docs", &self.docs)
            .field("created_ms", &self.created_ms)
            .finish()
    }
}

/// The last frame: how many documents came, and a hash of everything before it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Trailer {
    docs: u64,
    sha256: ByteBuf,
}

/// The bundle's own frames (documents travel as ordinary sync frames).
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Part {
    BundleManifest(Manifest),
    BundleTrailer(Trailer),
}

/// One document of a bundle, as carried (`Automerge::save()`).
#[derive(Clone, PartialEq, Eq)]
pub struct BundleDoc {
    /// Its id.
    pub id: DocId,
    /// The saved document.
    pub bytes: Vec<u8>,
}

impl fmt::Debug for BundleDoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "BundleDoc({}, {} bytes)",
            self.id.short(),
            self.bytes.len()
        )
    }
}

/// A parsed bundle: the manifest and every document, checked for framing, counts,
/// duplicates and the trailer hash (not yet for the documents' content: see [`check_doc`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// The manifest.
    pub manifest: Manifest,
    /// The documents, in bundle order.
    pub docs: Vec<BundleDoc>,
}

/// What an export wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Documents in the bundle.
    pub docs: u64,
    /// Plaintext bytes (before encryption).
    pub plaintext_bytes: u64,
}

/// What an import did (or, when refused, nothing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Documents this store did not have.
    pub new: u64,
    /// Documents that gained changes.
    pub updated: u64,
    /// Documents this store already had with every change.
    pub unchanged: u64,
    /// Documents of offices this store does not accept, left out.
    pub other_office: u64,
    /// New or updated documents that now hold concurrent values of some field.
    pub conflicted: Vec<DocId>,
}

/// Why a bundle could not be written or read. Messages carry ids, counts, office numbers
/// and fixed phrases only, never document content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The passphrase did not open the bundle (or its key header was changed).
    #[error(
        "the bundle passphrase is wrong (or the bundle's key header is damaged); nothing was written"
    )]
    WrongPassphrase,
    /// The encrypted file is cut short or was changed.
    #[error("the bundle is damaged or incomplete ({0}); nothing was written")]
    Damaged(&'static str),
    /// Not a passphrase-encrypted musubi bundle.
    #[error("this file is not a musubi sync bundle ({0}); nothing was written")]
    NotABundle(&'static str),
    /// Written by a newer musubi.
    #[error(
        "the bundle has format {found}, this musubi reads format {supported}; update musubi. Nothing was written"
    )]
    NewerFormat {
        /// The bundle's format.
        found: u32,
        /// Ours.
        supported: u32,
    },
    /// A frame of the plaintext is malformed (frame 0 is the manifest).
    #[error("the bundle is malformed at frame {frame}: {what}; nothing was written")]
    Malformed {
        /// Index of the frame (0: manifest).
        frame: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// The trailer's hash does not match the bundle.
    #[error("the bundle's checksum does not match its contents; nothing was written")]
    Checksum,
    /// Counts in the manifest, the documents and the trailer disagree.
    #[error(
        "the bundle's document counts disagree (manifest {manifest}, found {found}, trailer {trailer}); nothing was written"
    )]
    Count {
        /// Count in the manifest.
        manifest: u64,
        /// Documents found.
        found: u64,
        /// Count in the trailer.
        trailer: u64,
    },
    /// A document inside is unusable.
    #[error("document {doc} in the bundle {reason}; nothing was written")]
    Document {
        /// Short id.
        doc: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A document breaks a rule of this store (see [`crate::admit`]).
    #[error("{}", refused_message(.doc, .code, .field.as_deref()))]
    Refused {
        /// Short id.
        doc: String,
        /// The refusal code ([`crate::admit::rejection_text`]).
        code: &'static str,
        /// The field concerned (a JSON pointer), never a value.
        field: Option<String>,
    },
    /// The bundle is for offices this store does not accept.
    #[error(
        "the bundle holds documents of office {bundle}, but this store accepts office {accepted}; nothing was written"
    )]
    OtherOffice {
        /// The bundle's offices, comma-separated.
        bundle: String,
        /// Ours, comma-separated.
        accepted: String,
    },
    /// Larger than [`MAX_BUNDLE_BYTES`].
    #[error("the bundle is larger than the limit of {limit} bytes; nothing was written")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The bundle asks for more scrypt work than this device allows.
    #[error(
        "the bundle's passphrase protection needs more work than this device allows (scrypt 2^{required}); nothing was written"
    )]
    KdfTooExpensive {
        /// log2(N) the bundle asks for.
        required: u8,
    },
    /// The passphrase given for a new bundle is unusable.
    #[error("the bundle passphrase {0}")]
    BadPassphrase(&'static str),
    /// A document of our own store could not be read for export.
    #[error("document {doc} could not be read from the store for the bundle: {reason}")]
    Stored {
        /// Short id.
        doc: String,
        /// What failed.
        reason: &'static str,
    },
    /// The bundle file cannot be opened.
    #[error("cannot open the bundle file: {0}")]
    Open(#[source] io::Error),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Reading or writing a file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl BundleError {
    /// Whether the error is the bundle passphrase being wrong (CLI exit code 3).
    pub fn is_wrong_passphrase(&self) -> bool {
        matches!(self, BundleError::WrongPassphrase)
    }

    /// Whether the error is about the bundle or the input given (CLI exit code 2): the
    /// bundle was refused whole and nothing was written.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            BundleError::Damaged(_)
                | BundleError::NotABundle(_)
                | BundleError::NewerFormat { .. }
                | BundleError::Malformed { .. }
                | BundleError::Checksum
                | BundleError::Count { .. }
                | BundleError::Document { .. }
                | BundleError::Refused { .. }
                | BundleError::OtherOffice { .. }
                | BundleError::TooLarge { .. }
                | BundleError::KdfTooExpensive { .. }
                | BundleError::BadPassphrase(_)
                | BundleError::Open(_)
        )
    }

    /// Wraps an I/O error with what was being done, for `map_err`.
    pub fn io(context: &'static str) -> impl FnOnce(io::Error) -> BundleError {
        move |source| BundleError::Io { context, source }
    }
}

/// The message of [`BundleError::Refused`]: Japanese first, then English.
fn refused_message(doc: &str, code: &str, field: Option<&str>) -> String {
    let (ja, en) = crate::admit::rejection_text(code);
    let at = field.map(|f| format!(" {f}")).unwrap_or_default();
    format!(
        "バンドルの文書 {doc} を受け付けられません（{code}{at}）: {ja}。何も書き込んでいません \
         (document {doc} in the bundle is refused: {en}; nothing was written)"
    )
}

// ----- writing ------------------------------------------------------------------------

/// Writes plaintext while hashing it.
struct HashingWriter<W: Write> {
    out: W,
    hash: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), BundleError> {
        self.out
            .write_all(bytes)
            .map_err(BundleError::io("writing the bundle"))?;
        self.hash.update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn put_frame(&mut self, body: &[u8]) -> Result<(), BundleError> {
        if body.len() > frame::MAX_FRAME_BYTES {
            return Err(BundleError::TooLarge {
                limit: frame::MAX_FRAME_BYTES as u64,
            });
        }
        self.put(&frame::length_prefixed(body))
    }
}

fn cbor<T: Serialize>(value: &T) -> Result<Vec<u8>, BundleError> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).map_err(|_| BundleError::Io {
        context: "encoding the bundle",
        source: io::Error::other("CBOR encoding failed"),
    })?;
    Ok(out)
}

/// Writes the plaintext bundle of every document of `offices` in `storage` to `out`.
/// `store_id` names the exporting store in the manifest.
pub fn write_plaintext<S: SyncStorage + ?Sized, W: Write>(
    storage: &S,
    offices: &[String],
    created_ms: i64,
    out: W,
) -> Result<ExportSummary, BundleError> {
    let catalog = storage.catalog(offices)?;
    let manifest = Manifest {
        format: BUNDLE_FORMAT,
        store: storage.store_id(),
        offices: offices.to_vec(),
        docs: catalog.len() as u64,
        created_ms,
    };
    let mut w = HashingWriter {
        out,
        hash: Sha256::new(),
        written: 0,
    };
    w.put(MAGIC)?;
    w.put_frame(&cbor(&Part::BundleManifest(manifest))?)?;
    for entry in &catalog {
        let stored = |reason| BundleError::Stored {
            doc: entry.id.short(),
            reason,
        };
        let rec = storage
            .load_for_sync(BUNDLE_PEER, entry.id)?
            .ok_or_else(|| stored("vanished while the bundle was written"))?;
        let doc = load_chunks(&rec.chunks).map_err(|_| stored("does not load"))?;
        let body = Frame::DocData {
            id: ByteBuf::from(entry.id.as_bytes().to_vec()),
            bytes: ByteBuf::from(doc.save()),
        }
        .encode();
        w.put_frame(&body)?;
    }
    let trailer = trailer_body(w.hash.clone().finalize().into(), catalog.len() as u64)?;
    w.put_frame(&trailer)?;
    w.out
        .flush()
        .map_err(BundleError::io("writing the bundle"))?;
    Ok(ExportSummary {
        docs: catalog.len() as u64,
        plaintext_bytes: w.written,
    })
}

fn trailer_body(sha256: [u8; 32], docs: u64) -> Result<Vec<u8>, BundleError> {
    cbor(&Part::BundleTrailer(Trailer {
        docs,
        sha256: ByteBuf::from(sha256.to_vec()),
    }))
}

/// The length-prefixed trailer frame that completes `preceding` (magic line, manifest and
/// `docs` document frames) into a bundle plaintext. For tests and fuzzing, which build
/// plaintexts by hand; [`write_plaintext`] writes its own.
pub fn trailer_frame(preceding: &[u8], docs: u64) -> Vec<u8> {
    let body = trailer_body(Sha256::digest(preceding).into(), docs).unwrap_or_default();
    frame::length_prefixed(&body)
}

// ----- reading ------------------------------------------------------------------------

/// Reads up to `buf.len()` bytes, fewer only at the end of input.
pub fn read_full<R: Read>(input: &mut R, buf: &mut [u8]) -> Result<usize, BundleError> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Behind age, any read error means a chunk failed to authenticate or the file
            // ends early.
            Err(_) => {
                return Err(BundleError::Damaged(
                    "the encrypted data was changed or cut short",
                ));
            }
        }
    }
    Ok(filled)
}

/// Checks the magic line.
fn read_magic<R: Read>(input: &mut R) -> Result<(), BundleError> {
    let mut head = [0u8; MAGIC.len()];
    let n = read_full(input, &mut head)?;
    if head[..n] == *MAGIC {
        return Ok(());
    }
    if n >= MAGIC_PREFIX.len() && head.starts_with(MAGIC_PREFIX) {
        let rest = &head[MAGIC_PREFIX.len()..n];
        let digits: Vec<u8> = rest
            .iter()
            .copied()
            .take_while(u8::is_ascii_digit)
            .collect();
        let found = std::str::from_utf8(&digits)
            .ok()
            .and_then(|s| s.parse::<u32>().ok());
        if let Some(found) = found
            && found > BUNDLE_FORMAT
        {
            return Err(BundleError::NewerFormat {
                found,
                supported: BUNDLE_FORMAT,
            });
        }
        return Err(BundleError::Malformed {
            frame: 0,
            what: "the magic line is malformed",
        });
    }
    Err(BundleError::NotABundle("no musubi bundle header inside"))
}

fn plain_token(s: &str, max: usize, allowed: impl Fn(char) -> bool) -> bool {
    !s.is_empty() && s.len() <= max && s.chars().all(allowed)
}

fn check_manifest(m: &Manifest) -> Result<(), BundleError> {
    let bad = |what| BundleError::Malformed { frame: 0, what };
    if m.format > BUNDLE_FORMAT {
        return Err(BundleError::NewerFormat {
            found: m.format,
            supported: BUNDLE_FORMAT,
        });
    }
    if m.format != BUNDLE_FORMAT {
        return Err(bad("unknown bundle format in the manifest"));
    }
    if !plain_token(&m.store, 64, |c| c.is_ascii_graphic()) {
        return Err(bad("manifest field 'store' is malformed"));
    }
    if m.offices.is_empty()
        || m.offices.len() > 64
        || !m
            .offices
            .iter()
            .all(|o| plain_token(o, 32, |c| c.is_ascii_alphanumeric()))
    {
        return Err(bad("manifest field 'offices' is malformed"));
    }
    Ok(())
}

/// Reads and checks a whole bundle plaintext: magic line, manifest, document frames,
/// trailer (count and hash), end of input. Never panics on any input.
pub fn parse<R: Read>(mut input: R) -> Result<Bundle, BundleError> {
    read_magic(&mut input)?;
    let mut hash = Sha256::new();
    hash.update(MAGIC);
    let mut total = MAGIC.len() as u64;
    let mut reader = FrameReader::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut manifest: Option<Manifest> = None;
    let mut docs: Vec<BundleDoc> = Vec::new();
    let mut seen: HashSet<DocId> = HashSet::new();
    let mut trailer: Option<Trailer> = None;
    let mut index: u64 = 0;
    let mut eof = false;
    loop {
        let body = match reader.next_frame() {
            Ok(Some(body)) => body,
            Ok(None) if eof => break,
            Ok(None) => {
                let n = read_full(&mut input, &mut chunk)?;
                if n == 0 {
                    eof = true;
                    continue;
                }
                total += n as u64;
                if total > MAX_BUNDLE_BYTES {
                    return Err(BundleError::TooLarge {
                        limit: MAX_BUNDLE_BYTES,
                    });
                }
                reader.push(&chunk[..n]);
                continue;
            }
            Err(_) => {
                return Err(BundleError::Malformed {
                    frame: index,
                    what: "frame length over the limit",
                });
            }
        };
        if trailer.is_some() {
            return Err(BundleError::Malformed {
                frame: index,
                what: "data after the trailer",
            });
        }
        let bad = |what| BundleError::Malformed { frame: index, what };
        if manifest.is_none() {
            match ciborium::from_reader::<Part, _>(body.as_slice()) {
                Ok(Part::BundleManifest(m)) => {
                    check_manifest(&m)?;
                    manifest = Some(m);
                }
                _ => return Err(bad("the first frame is not a bundle manifest")),
            }
        } else {
            match Frame::decode(&body) {
                Ok(Frame::DocData { id, bytes }) => {
                    let id = frame::doc_id(&id).map_err(|_| bad("document id is malformed"))?;
                    if !seen.insert(id) {
                        return Err(BundleError::Document {
                            doc: id.short(),
                            reason: "appears twice",
                        });
                    }
                    docs.push(BundleDoc {
                        id,
                        bytes: bytes.into_vec(),
                    });
                }
                Ok(_) => return Err(bad("unexpected sync frame (only doc_data belongs here)")),
                Err(_) => match ciborium::from_reader::<Part, _>(body.as_slice()) {
                    Ok(Part::BundleTrailer(t)) => {
                        let ours: [u8; 32] = hash.clone().finalize().into();
                        if t.sha256.as_slice() != ours.as_slice() {
                            return Err(BundleError::Checksum);
                        }
                        trailer = Some(t);
                    }
                    Ok(Part::BundleManifest(_)) => return Err(bad("a second manifest")),
                    Err(_) => return Err(bad("neither a document nor the trailer")),
                },
            }
        }
        // `body` came out of a length prefix, so its length fits in a u32.
        hash.update(u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
        hash.update(&body);
        index += 1;
    }
    if reader.pending() > 0 {
        return Err(BundleError::Malformed {
            frame: index,
            what: "the last frame is incomplete",
        });
    }
    let Some(manifest) = manifest else {
        return Err(BundleError::Malformed {
            frame: 0,
            what: "no manifest",
        });
    };
    let Some(trailer) = trailer else {
        return Err(BundleError::Malformed {
            frame: index,
            what: "no trailer (the bundle is incomplete)",
        });
    };
    let found = docs.len() as u64;
    if manifest.docs != found || trailer.docs != found {
        return Err(BundleError::Count {
            manifest: manifest.docs,
            found,
            trailer: trailer.docs,
        });
    }
    Ok(Bundle { manifest, docs })
}

/// A bundle document that loaded strictly and has a known kind and an office.
pub struct CheckedDoc {
    /// Its id.
    pub id: DocId,
    /// Its kind.
    pub kind: DocKind,
    /// Its office (from the document root).
    pub office: String,
    /// The document.
    pub doc: Automerge,
    /// Its bytes as they loaded.
    pub snapshot: Snapshot,
}

impl fmt::Debug for CheckedDoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckedDoc")
            .field("id", &self.id.short())
            .field("kind", &self.kind)
            .field("office", &self.office)
            .finish_non_exhaustive()
    }
}

/// Why a bundle document was refused before automerge saw it.
const OVER_DECODE_BOUND: &str = "is over the decode bound or not plain automerge data";

/// Loads a bundle document strictly (every byte must parse, no change may lack its
/// dependencies) and reads its kind and office.
pub fn check_doc(d: &BundleDoc) -> Result<CheckedDoc, BundleError> {
    let refuse = |reason| BundleError::Document {
        doc: d.id.short(),
        reason,
    };
    // The decode bound the sync session applies, before automerge sees the bytes: a
    // bundle comes from a device as much as a sync frame does.
    super::inflate::decoded_size(&d.bytes, super::limits::MAX_DECODED_FRAME)
        .map_err(|_| refuse(OVER_DECODE_BOUND))?;
    let (snapshot, doc) = Snapshot::load(d.bytes.clone())
        .map_err(|_| refuse("does not load as an automerge document"))?;
    if !doc.get_missing_deps(&[]).is_empty() {
        return Err(refuse("has changes whose dependencies are missing"));
    }
    if doc.get_heads().is_empty() {
        return Err(refuse("is empty"));
    }
    let kind = root_str(&doc, "kind")
        .and_then(|k| DocKind::parse(&k))
        .ok_or_else(|| refuse("has no known 'kind'"))?;
    let office = root_str(&doc, "office")
        .filter(|o| plain_token(o, 32, |c| c.is_ascii_alphanumeric()))
        .ok_or_else(|| refuse("has no valid 'office'"))?;
    Ok(CheckedDoc {
        id: d.id,
        kind,
        office,
        doc,
        snapshot,
    })
}

// ----- importing ----------------------------------------------------------------------

/// Merges a parsed bundle into `storage`, accepting documents of `accept` (the offices
/// this store holds) that the bundle's manifest also names.
///
/// If the manifest names none of `accept`, the bundle is refused
/// ([`BundleError::OtherOffice`]). Documents of other offices (by their stored office if
/// this store has them, else by their own `office`) are left out and counted. Every other
/// document is loaded strictly first; if any is unusable the whole bundle is refused.
/// Every new or changed document is then checked by `admission` (the rules of
/// [`crate::admit`]: what the bundle brings must pass every rule a tablet enforces), with
/// `uploader(office)` as who brought it; if any is refused, the whole bundle is refused
/// ([`BundleError::Refused`], naming the document and the code). Only then are new
/// documents inserted and new changes appended, in ONE batch (nothing is written when
/// nothing is new).
pub fn import<'u, S: SyncStorage + ?Sized>(
    storage: &S,
    bundle: &Bundle,
    accept: &[String],
    admission: &dyn Admission,
    uploader: &dyn Fn(&str) -> Uploader<'u>,
) -> Result<ImportReport, BundleError> {
    let allowed: Vec<String> = accept
        .iter()
        .filter(|o| bundle.manifest.offices.contains(o))
        .cloned()
        .collect();
    if allowed.is_empty() {
        return Err(BundleError::OtherOffice {
            bundle: bundle.manifest.offices.join(", "),
            accepted: accept.join(", "),
        });
    }
    let ids: Vec<DocId> = bundle.docs.iter().map(|d| d.id).collect();
    let stored_office: HashMap<DocId, String> = storage
        .lookup(&ids)?
        .into_iter()
        .map(|(id, office, _)| (id, office))
        .collect();
    let mut report = ImportReport::default();
    let mut writes = Vec::new();
    // Card certificates of the registrations admitted from this bundle → person.
    let mut certs: HashMap<String, String> = HashMap::new();
    for d in &bundle.docs {
        // Every document must be sound, whichever office it belongs to.
        let checked = check_doc(d)?;
        let office = stored_office.get(&d.id).unwrap_or(&checked.office);
        if !allowed.contains(office) {
            report.other_office += 1;
            continue;
        }
        let refused = |r: super::admission::Refused| BundleError::Refused {
            doc: d.id.short(),
            code: r.code,
            field: r.field,
        };
        match stored_office.contains_key(&d.id) {
            false => {
                let doc = checked.doc;
                let own_heads = incoming_heads(None, &doc);
                let admitted = admission
                    .admit(&Incoming {
                        id: d.id,
                        kind: checked.kind.as_str(),
                        office: &checked.office,
                        uploader: uploader(&checked.office),
                        stored: None,
                        merged: &doc,
                        own_heads: &own_heads,
                    })
                    .map_err(refused)?;
                writes.push(SyncWrite::Insert {
                    id: d.id,
                    kind: checked.kind.as_str().to_owned(),
                    office: checked.office.clone(),
                    title: title_from(&doc, checked.kind),
                    bytes: checked.snapshot,
                    heads: heads_of(&doc),
                    keys: share_keys(&doc, checked.kind.as_str()),
                });
                if let Some(verdict) = admitted.evidence {
                    let bound = match certs.get(&verdict.cert_fingerprint) {
                        Some(p) => Some(p.clone()),
                        None => storage.cert_person(&verdict.cert_fingerprint)?,
                    };
                    if bound.is_some_and(|p| p != verdict.person) {
                        return Err(BundleError::Refused {
                            doc: d.id.short(),
                            code: "card_reused",
                            field: Some("/verification/evidence".to_owned()),
                        });
                    }
                    certs.insert(verdict.cert_fingerprint.clone(), verdict.person.clone());
                    writes.push(SyncWrite::Evidence { id: d.id, verdict });
                }
                report.new += 1;
                if has_conflicts(&doc) {
                    report.conflicted.push(d.id);
                }
            }
            true => {
                let stored_err = |reason| BundleError::Stored {
                    doc: d.id.short(),
                    reason,
                };
                let rec = storage
                    .load_for_sync(BUNDLE_PEER, d.id)?
                    .ok_or_else(|| stored_err("vanished during the import"))?;
                let stored = load_chunks(&rec.chunks).map_err(|_| stored_err("does not load"))?;
                let before = stored.get_heads();
                let mut doc = stored.clone();
                let mut incoming = checked.doc;
                doc.merge(&mut incoming)
                    .map_err(|_| stored_err("does not merge with the bundle's version"))?;
                if doc.get_heads() == before {
                    report.unchanged += 1;
                    continue;
                }
                let kind = DocKind::parse(&rec.kind).unwrap_or(checked.kind);
                let own_heads = incoming_heads(Some(&stored), &doc);
                admission
                    .admit(&Incoming {
                        id: d.id,
                        kind: &rec.kind,
                        office: &rec.office,
                        uploader: uploader(&rec.office),
                        stored: Some(&stored),
                        merged: &doc,
                        own_heads: &own_heads,
                    })
                    .map_err(refused)?;
                writes.push(SyncWrite::Append {
                    id: d.id,
                    // One row per change (each checked on its own by the store).
                    changes: doc
                        .get_changes(&before)
                        .iter()
                        .map(|c| c.raw_bytes().to_vec())
                        .collect(),
                    heads: heads_of(&doc),
                    base_seq: rec.seq,
                    title: title_from(&doc, kind),
                    keys: share_keys(&doc, kind.as_str()),
                });
                report.updated += 1;
                if has_conflicts(&doc) {
                    report.conflicted.push(d.id);
                }
            }
        }
    }
    if !writes.is_empty() {
        storage.commit(SyncBatch {
            peer: BUNDLE_PEER.to_owned(),
            reset_peer: false,
            writes,
            peer_record: None,
        })?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::MemoryStorage;
    use crate::sync::admission::AdmitAllForSimulation;
    use automerge::transaction::Transactable;

    /// The format tests carry generated documents, not care documents.
    fn import(
        storage: &MemoryStorage,
        bundle: &Bundle,
        accept: &[String],
    ) -> Result<ImportReport, BundleError> {
        super::import(storage, bundle, accept, &AdmitAllForSimulation, &|_| {
            Uploader::TabletBundle
        })
    }

    const OFFICE: &str = "1370100016";

    /// Catches: bundle documents reaching automerge without the decode bound the sync
    /// session applies (the first input makes `Automerge::load` spend about 2 GiB and 4 s;
    /// the second makes automerge panic).
    #[test]
    fn bundle_documents_pass_the_decode_bound_and_never_panic() {
        let check = |bytes: &[u8]| {
            check_doc(&BundleDoc {
                id: DocId::random(),
                bytes: bytes.to_vec(),
            })
        };
        let oom = include_bytes!("../../../fuzz/regressions/automerge_load/oom-2gib-bundle-chunk");
        assert!(matches!(
            check(oom),
            Err(BundleError::Document {
                reason: OVER_DECODE_BOUND,
                ..
            })
        ));
        let panics = include_bytes!("../../../fuzz/regressions/automerge_load/hexane-rle-unwrap");
        assert!(matches!(check(panics), Err(BundleError::Document { .. })));
    }

    fn survey(office: &str, name: &str) -> Vec<u8> {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        let _ = tx.put(automerge::ROOT, "kind", "survey");
        let _ = tx.put(automerge::ROOT, "office", office);
        let _ = tx.put(automerge::ROOT, "note", name);
        tx.commit();
        doc.save()
    }

    fn store_with(n: usize) -> MemoryStorage {
        let s = MemoryStorage::new("store-a");
        for i in 0..n {
            s.put_local(
                DocId::random(),
                "survey",
                OFFICE,
                survey(OFFICE, &format!("n{i}")),
            )
            .unwrap();
        }
        s
    }

    fn plaintext(s: &MemoryStorage) -> Vec<u8> {
        let mut out = Vec::new();
        write_plaintext(s, &[OFFICE.to_owned()], 1, &mut out).unwrap();
        out
    }

    #[test]
    fn plaintext_round_trips() {
        let s = store_with(3);
        let bytes = plaintext(&s);
        assert!(bytes.starts_with(MAGIC));
        let b = parse(bytes.as_slice()).unwrap();
        assert_eq!(b.manifest.docs, 3);
        assert_eq!(b.manifest.store, "store-a");
        assert_eq!(b.docs.len(), 3);
        for d in &b.docs {
            let c = check_doc(d).unwrap();
            assert_eq!(c.office, OFFICE);
            assert_eq!(c.kind, DocKind::Survey);
        }
    }

    #[test]
    fn every_truncation_and_flip_is_refused() {
        let bytes = plaintext(&store_with(2));
        for cut in 0..bytes.len() {
            assert!(parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for pos in 0..bytes.len() {
            let mut b = bytes.clone();
            b[pos] ^= 0x01;
            assert!(parse(b.as_slice()).is_err(), "flip at {pos}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(parse(longer.as_slice()).is_err());
    }

    #[test]
    fn newer_format_is_named() {
        let mut bytes = plaintext(&store_with(0));
        bytes[MAGIC_PREFIX.len()] = b'2';
        assert!(matches!(
            parse(bytes.as_slice()),
            Err(BundleError::NewerFormat { found: 2, .. })
        ));
        assert!(matches!(
            parse(&b"PK\x03\x04 not a bundle"[..]),
            Err(BundleError::NotABundle(_))
        ));
    }

    #[test]
    fn import_merges_and_is_idempotent() {
        let a = store_with(2);
        let bundle = parse(plaintext(&a).as_slice()).unwrap();
        let b = MemoryStorage::new("store-b");
        let accept = [OFFICE.to_owned()];
        let r = import(&b, &bundle, &accept).unwrap();
        assert_eq!((r.new, r.updated, r.unchanged), (2, 0, 0));
        let commits = b.commits().unwrap();
        let r = import(&b, &bundle, &accept).unwrap();
        assert_eq!((r.new, r.updated, r.unchanged), (0, 0, 2));
        assert_eq!(
            b.commits().unwrap(),
            commits,
            "nothing written the second time"
        );
        for id in a.ids().unwrap() {
            let x = a.load(id).unwrap().unwrap();
            let y = b.load(id).unwrap().unwrap();
            assert_eq!(x.get_heads(), y.get_heads());
        }
    }

    #[test]
    fn other_office_is_refused_whole() {
        let bundle = parse(plaintext(&store_with(1)).as_slice()).unwrap();
        let b = MemoryStorage::new("store-b");
        let err = import(&b, &bundle, &["1370100024".to_owned()]).unwrap_err();
        assert!(matches!(err, BundleError::OtherOffice { .. }), "{err}");
        assert!(b.ids().unwrap().is_empty());
        assert_eq!(b.commits().unwrap(), 0);
    }
}
