//! [`Snapshot`]: the bytes of a whole document that are known to load.
//!
//! Every store keeps one invariant: a stored snapshot loads strictly with automerge (no
//! chunk skipped, see `engine::store::chunks`). Checking that means decoding the
//! document, about as costly as building it. Bytes that were just produced by
//! `save()` of a document in memory, or that were just decoded strictly, need no second
//! decode; the type says which bytes those are, so a store checks only what it cannot
//! know (issue 17: a first sync and an import decode each document once).

use std::fmt;

use automerge::{AutoCommit, Automerge, AutomergeError, LoadOptions, OnPartialLoad};

/// `save()` output of a whole automerge document, or bytes that loaded strictly: a store
/// may keep them without decoding them again. There is no way to make one from unchecked
/// bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Snapshot {
    bytes: Vec<u8>,
    /// The document's heads, sorted (a store keeps them beside the bytes).
    heads: Vec<[u8; 32]>,
}

fn sorted_heads(doc: &Automerge) -> Vec<[u8; 32]> {
    let mut heads: Vec<[u8; 32]> = doc.get_heads().into_iter().map(|h| h.0).collect();
    heads.sort_unstable();
    heads
}

/// Loads automerge data strictly: every chunk must parse (`OnPartialLoad::Error`), where
/// `Automerge::load_incremental` would skip one silently. Not contained: callers run it
/// inside [`super::contain_panic`] when the bytes come from outside.
pub fn load_strict(bytes: &[u8]) -> Result<Automerge, AutomergeError> {
    Automerge::load_with_options(
        bytes,
        LoadOptions::new().on_partial_load(OnPartialLoad::Error),
    )
}

impl Snapshot {
    /// Saves a document.
    pub fn of(doc: &Automerge) -> Snapshot {
        Snapshot {
            bytes: doc.save(),
            heads: sorted_heads(doc),
        }
    }

    /// Saves a document that is being edited (its pending operations are committed).
    pub fn of_autocommit(doc: &mut AutoCommit) -> Snapshot {
        let bytes = doc.save();
        Snapshot {
            bytes,
            heads: sorted_heads(doc.document()),
        }
    }

    /// Decodes `bytes` strictly (every chunk must parse) and returns them with the document
    /// they hold. automerge failing on crafted data instead of reporting an error is
    /// contained ([`super::contain_panic`]) and is an error here too.
    pub fn load(bytes: Vec<u8>) -> Result<(Snapshot, Automerge), SnapshotError> {
        let doc = super::contain_panic(|| load_strict(&bytes))
            .map_err(|_| SnapshotError::Undecodable)?
            .map_err(SnapshotError::Automerge)?;
        let heads = sorted_heads(&doc);
        Ok((Snapshot { bytes, heads }, doc))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The document's heads, sorted.
    pub fn heads(&self) -> &[[u8; 32]] {
        &self.heads
    }

    /// Their length.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether there are no bytes (never true of a loaded or saved document).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Checks that `bytes` parse completely as automerge chunks (changes, or a document): what
/// a store appends to a document it has. Missing dependencies are fine here (a change on
/// its own always has some); a chunk that does not parse is not.
///
/// Each change is parsed on its own, never loaded into an empty document: automerge logs
/// such a load's missing dependencies as an error (`load_with_options` is instrumented),
/// which a tablet receiving two edits would have shown its user after every sync.
pub fn check_chunk(bytes: &[u8]) -> Result<(), SnapshotError> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let Ok((chunk, after)) = crate::sync::inflate::split_chunk(rest) else {
            // Not even a chunk header: automerge's own parser says what is wrong.
            return Err(
                match super::contain_panic(|| automerge::Change::try_from(rest).map(drop)) {
                    Ok(Err(e)) => SnapshotError::Automerge(AutomergeError::from(e)),
                    _ => SnapshotError::Undecodable,
                },
            );
        };
        if chunk.is_change() {
            super::contain_panic(|| automerge::Change::try_from(chunk.bytes).map(drop))
                .map_err(|_| SnapshotError::Undecodable)?
                .map_err(|e| SnapshotError::Automerge(AutomergeError::from(e)))?;
        } else {
            // A document (whose own history is complete, so loading it alone reports no
            // missing dependencies), or a kind automerge itself must judge.
            let loaded = super::contain_panic(|| load_strict(chunk.bytes))
                .map_err(|_| SnapshotError::Undecodable)?;
            match loaded {
                Ok(_) | Err(AutomergeError::MissingDeps) => {}
                Err(e) => return Err(SnapshotError::Automerge(e)),
            }
        }
        rest = after;
    }
    Ok(())
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The bytes are personal data.
        write!(f, "Snapshot({} bytes)", self.bytes.len())
    }
}

/// Why bytes are not a [`Snapshot`].
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// automerge refused them.
    #[error("not a complete automerge document: {0}")]
    Automerge(AutomergeError),
    /// automerge failed on them instead of reporting an error.
    #[error("the automerge data could not be decoded (the decoder failed on it)")]
    Undecodable,
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::ROOT;
    use automerge::transaction::Transactable;

    fn doc() -> Automerge {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "kind", "survey").unwrap();
        doc.put(ROOT, "office", "1310000001").unwrap();
        doc.commit();
        doc.document().clone()
    }

    #[test]
    fn saved_bytes_load_back_as_the_same_document() {
        let d = doc();
        let saved = Snapshot::of(&d);
        let (again, loaded) = Snapshot::load(saved.clone().into_bytes()).unwrap();
        assert_eq!(again, saved);
        assert_eq!(loaded.get_heads(), d.get_heads());
        let mut heads: Vec<[u8; 32]> = d.get_heads().iter().map(|h| h.0).collect();
        heads.sort_unstable();
        assert_eq!(saved.heads(), heads.as_slice());
        assert_eq!(loaded.save(), d.save());
    }

    #[test]
    fn bytes_that_do_not_load_completely_are_refused() {
        let saved = Snapshot::of(&doc()).into_bytes();
        let mut cut = saved.clone();
        cut.truncate(saved.len() / 2);
        assert!(Snapshot::load(cut).is_err(), "a cut document");
        let mut trailing = saved.clone();
        trailing.extend_from_slice(b"\x85\x6f\x4a\x83garbage");
        assert!(
            Snapshot::load(trailing).is_err(),
            "a chunk that does not parse"
        );
        assert!(Snapshot::load(b"not automerge".to_vec()).is_err());
    }

    #[test]
    fn a_change_on_its_own_passes_the_chunk_check_and_garbage_does_not() {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "kind", "survey").unwrap();
        doc.commit();
        doc.put(ROOT, "office", "1310000001").unwrap();
        let change = doc.save_incremental();
        check_chunk(&change).unwrap();
        check_chunk(&doc.save()).unwrap();
        assert!(check_chunk(b"not automerge").is_err());
        assert!(check_chunk(&change[..change.len() / 2]).is_err());
    }

    /// Counts the error events automerge (or anything) logs while a closure runs.
    struct ErrorCount(std::sync::atomic::AtomicUsize);

    impl tracing::Subscriber for ErrorCount {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            if *event.metadata().level() == tracing::Level::ERROR {
                self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    fn errors_logged_by(f: impl FnOnce()) -> usize {
        let counter = std::sync::Arc::new(ErrorCount(0.into()));
        tracing::subscriber::with_default(counter.clone(), f);
        counter.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[test]
    fn several_changes_pass_the_chunk_check_without_an_error_in_the_log() {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "kind", "survey").unwrap();
        doc.commit();
        doc.save_incremental();
        doc.put(ROOT, "1-3", "1").unwrap();
        doc.commit();
        doc.put(ROOT, "1-4", "2").unwrap();
        doc.commit();
        // Two changes, neither with its parent: what a tablet appends after a sync.
        let two = doc.save_incremental();
        assert!(
            automerge::Change::from_bytes(two.clone()).is_err(),
            "two chunks"
        );
        // The check that loaded them into an empty document made automerge log
        // "change's deps should already be in the document" at error level.
        assert_eq!(errors_logged_by(|| check_chunk(&two).unwrap()), 0);
        // The same check still refuses a bad chunk behind a good one.
        let mut bad = two.clone();
        let first_len = {
            let (_, rest) = crate::sync::inflate::split_chunk(&two).unwrap();
            two.len() - rest.len()
        };
        bad.truncate(first_len);
        bad.extend_from_slice(b"\x85\x6f\x4a\x83\0\0\0\0\x01\x02ab");
        assert!(
            check_chunk(&bad).is_err(),
            "a change chunk that does not parse"
        );
        let mut unknown = two[..first_len].to_vec();
        unknown.extend_from_slice(b"\x85\x6f\x4a\x83\0\0\0\0\x07\x00");
        assert!(check_chunk(&unknown).is_err(), "a chunk of an unknown type");
        // A document followed by a change is fine as well.
        let mut doc_then_change = doc.save();
        doc_then_change.extend_from_slice(&two);
        assert_eq!(
            errors_logged_by(|| check_chunk(&doc_then_change).unwrap()),
            0
        );
    }
}
