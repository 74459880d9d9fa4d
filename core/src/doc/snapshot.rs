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
        let doc = super::contain_panic(|| {
            Automerge::load_with_options(
                &bytes,
                LoadOptions::new().on_partial_load(OnPartialLoad::Error),
            )
        })
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
pub fn check_chunk(bytes: &[u8]) -> Result<(), SnapshotError> {
    // The usual case: exactly one change chunk, parsed on its own (loading it into an
    // empty document would make automerge log an error about the missing dependencies).
    if super::contain_panic(|| automerge::Change::from_bytes(bytes.to_vec()).is_ok())
        .unwrap_or(false)
    {
        return Ok(());
    }
    let loaded = super::contain_panic(|| {
        Automerge::load_with_options(
            bytes,
            LoadOptions::new().on_partial_load(OnPartialLoad::Error),
        )
    })
    .map_err(|_| SnapshotError::Undecodable)?;
    match loaded {
        Ok(_) | Err(AutomergeError::MissingDeps) => Ok(()),
        Err(e) => Err(SnapshotError::Automerge(e)),
    }
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
}
