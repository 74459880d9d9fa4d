//! Strict automerge checks on stored bytes.
//!
//! `Automerge::load_incremental` silently ignores a chunk it cannot parse and queues
//! changes whose dependencies are missing; `save()` then leaves both out. Compaction
//! deletes change rows, so it must never rely on that lenient path: it loads everything
//! strictly and refuses to compact if any change would be dropped.

use automerge::{Automerge, AutomergeError, LoadOptions, OnPartialLoad, ReadDoc};

use super::error::StoreError;

/// Checks that `bytes` is a complete automerge document (`Automerge::save()` output).
pub fn check_snapshot(bytes: &[u8]) -> Result<(), StoreError> {
    strict_load(bytes).map(drop).map_err(StoreError::Automerge)
}

/// Checks that `bytes` parses completely as automerge chunks (changes, bundles or a
/// document). Missing dependencies are fine here: a change on its own always has some.
pub fn check_chunk(bytes: &[u8]) -> Result<(), StoreError> {
    // The usual case: exactly one change chunk, parsed on its own (loading it into an
    // empty document would make automerge log an error about the missing dependencies).
    if automerge::Change::from_bytes(bytes.to_vec()).is_ok() {
        return Ok(());
    }
    match strict_load(bytes) {
        Ok(_) | Err(AutomergeError::MissingDeps) => Ok(()),
        Err(e) => Err(StoreError::Automerge(e)),
    }
}

fn strict_load(bytes: &[u8]) -> Result<Automerge, AutomergeError> {
    Automerge::load_with_options(
        bytes,
        LoadOptions::new().on_partial_load(OnPartialLoad::Error),
    )
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
    let doc = strict_load(&all).map_err(|e| match e {
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
