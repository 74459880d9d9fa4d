//! Strict automerge checks on stored bytes.
//!
//! `Automerge::load_incremental` silently ignores a chunk it cannot parse and queues
//! changes whose dependencies are missing; `save()` then leaves both out. Compaction
//! deletes change rows, so it must never rely on that lenient path: it loads everything
//! strictly and refuses to compact if any change would be dropped.

use automerge::{AutomergeError, ReadDoc};

use super::error::StoreError;

/// Checks that `bytes` parses completely as automerge chunks (changes, bundles or a
/// document). Missing dependencies are fine here: a change on its own always has some.
pub fn check_chunk(bytes: &[u8]) -> Result<(), StoreError> {
    crate::doc::check_chunk(bytes).map_err(|e| match e {
        crate::doc::SnapshotError::Automerge(e) => StoreError::Automerge(e),
        crate::doc::SnapshotError::Undecodable => StoreError::BadInput {
            what: "change data could not be decoded",
        },
    })
}

/// Why a document could not be compacted; nothing is deleted in either case.
#[derive(Debug)]
pub(crate) enum MergeRefused {
    /// Some bytes did not parse.
    Decode(AutomergeError),
    /// Some changes depend on changes the store does not have (yet); compacting now would
    /// drop them.
    MissingDeps(usize),
}

/// Loads the snapshot and every change chunk strictly and returns the new snapshot.
pub(crate) fn merge(snapshot: &[u8], chunks: &[Vec<u8>]) -> Result<Vec<u8>, MergeRefused> {
    let total = snapshot.len() + chunks.iter().map(Vec::len).sum::<usize>();
    let mut all = Vec::with_capacity(total);
    all.extend_from_slice(snapshot);
    for c in chunks {
        all.extend_from_slice(c);
    }
    let doc = crate::doc::load_strict(&all).map_err(|e| match e {
        // Only reported when the snapshot is empty and the first change lacks its parents.
        AutomergeError::MissingDeps => MergeRefused::MissingDeps(0),
        e => MergeRefused::Decode(e),
    })?;
    let missing = doc.get_missing_deps(&[]);
    if !missing.is_empty() {
        return Err(MergeRefused::MissingDeps(missing.len()));
    }
    Ok(doc.save())
}
