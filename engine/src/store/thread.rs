//! The store thread: the only owner of the SQLite connection.
//!
//! `Store` methods send a [`Request`] (with a one-shot reply channel) over a bounded
//! channel and block on the reply. Sync batches that wait in the queue behind each other
//! (concurrent sessions of a relay) are written in one transaction, a savepoint each
//! ([`Worker::commit_group`]). Between requests, when the queue is empty, the thread
//! compacts documents that have collected [`COMPACT_THRESHOLD`] change rows, one document
//! at a time, checking the queue again after each.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;

use super::chunks::MergeRefused;
use super::db::{CompactError, Db, OpenError};
use super::error::StoreError;
use super::fsutil::now_unix_ms;
use super::keys::DataKey;
use super::{DocSummary, NewDoc, StoredDoc};
use crate::ids::DocId;

/// A document with this many pending change rows is compacted when the thread is idle.
pub(crate) const COMPACT_THRESHOLD: u64 = 64;

/// Requests waiting for the thread; senders block when it is full.
const QUEUE_DEPTH: usize = 32;

/// Most sync batches written in one transaction (see [`Worker::commit_group`]).
pub(crate) const MAX_COMMIT_GROUP: usize = 16;

/// One-shot reply channel (capacity 1).
pub(crate) type Reply<T> = SyncSender<Result<T, StoreError>>;

/// A one-shot reply channel pair.
pub(crate) fn reply_channel<T>() -> (Reply<T>, std::sync::mpsc::Receiver<Result<T, StoreError>>) {
    sync_channel(1)
}

/// What the `Store` asks of the thread.
pub(crate) enum Request {
    InsertDocs {
        docs: Vec<NewDoc>,
        reply: Reply<()>,
    },
    AppendChanges {
        id: DocId,
        changes: Vec<Vec<u8>>,
        title: String,
        reply: Reply<super::Appended>,
    },
    LoadDoc {
        id: DocId,
        reply: Reply<Option<StoredDoc>>,
    },
    ListDocs {
        reply: Reply<Vec<DocSummary>>,
    },
    Compact {
        id: DocId,
        reply: Reply<()>,
    },
    /// Any other work on the connection (sync queries, settings); the closure replies.
    Run(Box<dyn FnOnce(&mut Db) + Send>),
    /// A sync batch: one transaction, then compaction bookkeeping for the written docs.
    CommitSync {
        batch: crate::sync::storage::SyncBatch,
        reply: Reply<()>,
    },
    Shutdown {
        reply: Reply<()>,
    },
}

/// What the thread reports to tests (background work is otherwise invisible).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) enum StoreEvent {
    /// A document was compacted in the background.
    Compacted(DocId),
    /// Background compaction of a document was refused (nothing deleted).
    CompactRefused(DocId),
    /// Sync batches of this many sessions (more than one) were committed in one
    /// transaction.
    CommittedTogether(usize),
}

/// Optional observer of background work (tests only pass one).
pub(crate) type Events = Option<SyncSender<StoreEvent>>;

/// A running store thread.
pub(crate) struct Spawned {
    pub(crate) tx: SyncSender<Request>,
    pub(crate) handle: JoinHandle<()>,
}

/// Starts the thread, which opens the database; returns once it is open (or failed).
pub(crate) fn spawn(
    db_path: PathBuf,
    key: DataKey,
    create: bool,
    events: Events,
) -> Result<Spawned, OpenError> {
    let (ready_tx, ready_rx) = sync_channel::<Result<(), OpenError>>(1);
    let (tx, rx) = sync_channel::<Request>(QUEUE_DEPTH);
    let handle = std::thread::Builder::new()
        .name("musubi-store".into())
        .spawn(move || {
            let db = match Db::open(&db_path, key, create) {
                Ok(db) => db,
                Err(e) => {
                    // The caller waits on this channel; if it is gone there is no one to tell.
                    if ready_tx.send(Err(e)).is_err() {
                        tracing::debug!("store opener went away");
                    }
                    return;
                }
            };
            if ready_tx.send(Ok(())).is_err() {
                tracing::debug!("store opener went away");
            }
            Worker::new(db, events).run(&rx);
        })
        .map_err(|e| {
            OpenError::Other(StoreError::Io {
                context: "starting the store thread",
                source: e,
            })
        })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(Spawned { tx, handle }),
        Ok(Err(e)) => {
            if handle.join().is_err() {
                tracing::error!("store thread panicked while opening");
            }
            Err(e)
        }
        Err(_) => {
            if handle.join().is_err() {
                tracing::error!("store thread panicked while opening");
            }
            Err(OpenError::Other(StoreError::ThreadGone))
        }
    }
}

/// Sends a reply; the caller may have given up (e.g. during `Drop`), which is fine.
pub(crate) fn respond<T>(reply: &Reply<T>, result: Result<T, StoreError>) {
    if reply.send(result).is_err() {
        tracing::debug!("store caller went away before the reply");
    }
}

struct Worker {
    db: Db,
    /// Documents waiting for background compaction, in order, without duplicates.
    queue: VecDeque<DocId>,
    queued: HashSet<DocId>,
    /// Documents whose compaction was refused, with the pending count at that time; they
    /// are retried once another threshold's worth of changes has arrived.
    refused: HashMap<DocId, u64>,
    /// A request taken off the queue while gathering sync batches that was not one; it is
    /// served next, before anything else is taken.
    held: Option<Request>,
    events: Events,
}

impl Worker {
    fn new(db: Db, events: Events) -> Self {
        Self {
            db,
            queue: VecDeque::new(),
            queued: HashSet::new(),
            refused: HashMap::new(),
            held: None,
            events,
        }
    }

    fn run(mut self, rx: &Receiver<Request>) {
        match self.db.docs_over_threshold(COMPACT_THRESHOLD) {
            Ok(ids) => ids.into_iter().for_each(|id| self.enqueue(id)),
            Err(e) => tracing::warn!(error = %e, "could not look for documents to compact"),
        }
        loop {
            let next = self.held.take().or_else(|| {
                loop {
                    match rx.try_recv() {
                        Ok(req) => break Some(req),
                        Err(TryRecvError::Disconnected) => break None,
                        Err(TryRecvError::Empty) => {
                            if !self.compact_next() {
                                break rx.recv().ok();
                            }
                        }
                    }
                }
            });
            match next {
                None => {
                    // Every `Store` handle is gone without a shutdown request.
                    if let Err(e) = self.db.close() {
                        tracing::warn!(error = %e, "store closed uncleanly");
                    }
                    return;
                }
                Some(Request::Shutdown { reply }) => {
                    let result = self.db.close();
                    if let Err(e) = &result {
                        tracing::warn!(error = %e, "store closed uncleanly");
                    }
                    respond(&reply, result);
                    return;
                }
                Some(Request::CommitSync { batch, reply }) => {
                    // Sessions waiting behind this one share its transaction and fsync.
                    let mut group = vec![(batch, reply)];
                    while group.len() < MAX_COMMIT_GROUP {
                        match rx.try_recv() {
                            Ok(Request::CommitSync { batch, reply }) => group.push((batch, reply)),
                            Ok(other) => {
                                self.held = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.commit_group(group);
                }
                Some(req) => self.serve(req),
            }
        }
    }

    fn serve(&mut self, req: Request) {
        match req {
            Request::InsertDocs { docs, reply } => {
                let result = self.db.insert_docs(&docs, now_unix_ms());
                if result.is_ok() {
                    tracing::debug!(count = docs.len(), "documents inserted");
                }
                respond(&reply, result);
            }
            Request::AppendChanges {
                id,
                changes,
                title,
                reply,
            } => {
                let result = self.db.append_changes(id, &changes, &title, now_unix_ms());
                let result = result.map(|(pending, appended)| {
                    let retry_at = self.refused.get(&id).map(|at| at + COMPACT_THRESHOLD);
                    if pending >= retry_at.unwrap_or(COMPACT_THRESHOLD) {
                        self.refused.remove(&id);
                        self.enqueue(id);
                    }
                    appended
                });
                respond(&reply, result);
            }
            Request::LoadDoc { id, reply } => respond(&reply, self.db.load_doc(id)),
            Request::Run(work) => work(&mut self.db),
            Request::CommitSync { batch, reply } => self.commit_group(vec![(batch, reply)]),
            Request::ListDocs { reply } => respond(&reply, self.db.list_docs()),
            Request::Compact { id, reply } => {
                let result = match self.db.compact(id) {
                    Ok(_) => {
                        self.refused.remove(&id);
                        Ok(())
                    }
                    Err(CompactError::Store(e)) => Err(e),
                    Err(CompactError::Refused(MergeRefused::Decode(e))) => {
                        Err(StoreError::Automerge(e))
                    }
                    Err(CompactError::Refused(MergeRefused::MissingDeps(missing))) => {
                        Err(StoreError::MissingDependencies { id, missing })
                    }
                };
                respond(&reply, result);
            }
            Request::Shutdown { reply } => {
                // Handled by `run`; unreachable in practice, answered safely anyway.
                respond(&reply, Ok(()));
            }
        }
    }

    /// Commits the sync batches of `group` in one transaction (a batch that fails writes
    /// nothing and fails alone, see [`Db::commit_sync_group`]), then answers each session.
    fn commit_group(&mut self, group: Vec<(crate::sync::storage::SyncBatch, Reply<()>)>) {
        let batches: Vec<&crate::sync::storage::SyncBatch> =
            group.iter().map(|(batch, _)| batch).collect();
        let results = self.db.commit_sync_group(&batches, now_unix_ms());
        if group.len() > 1 {
            tracing::debug!(batches = group.len(), "sync batches committed together");
            self.notify(StoreEvent::CommittedTogether(group.len()));
        }
        for ((_, reply), result) in group.iter().zip(results) {
            let result = result.map(|written| {
                for id in written {
                    let pending = self.db.pending_changes(id).unwrap_or(0);
                    let retry_at = self.refused.get(&id).map(|at| at + COMPACT_THRESHOLD);
                    if pending >= retry_at.unwrap_or(COMPACT_THRESHOLD) {
                        self.refused.remove(&id);
                        self.enqueue(id);
                    }
                }
            });
            respond(reply, result);
        }
    }

    fn enqueue(&mut self, id: DocId) {
        if self.queued.insert(id) {
            self.queue.push_back(id);
        }
    }

    /// Compacts the next queued document. Returns false when there was nothing to do.
    fn compact_next(&mut self) -> bool {
        let Some(id) = self.queue.pop_front() else {
            return false;
        };
        self.queued.remove(&id);
        let doc = id.short();
        match self.db.compact(id) {
            Ok(true) => {
                tracing::debug!(doc = %doc, "document compacted");
                self.notify(StoreEvent::Compacted(id));
            }
            Ok(false) => {}
            Err(CompactError::Store(StoreError::NotFound(_))) => {}
            Err(e) => {
                let (reason, missing) = match &e {
                    CompactError::Refused(MergeRefused::MissingDeps(n)) => {
                        ("missing dependencies", *n)
                    }
                    CompactError::Refused(MergeRefused::Decode(_)) => {
                        ("undecodable change data", 0)
                    }
                    CompactError::Store(_) => ("database error", 0),
                };
                if let CompactError::Store(err) = &e {
                    tracing::warn!(doc = %doc, error = %err, "background compaction failed; nothing deleted");
                } else {
                    tracing::warn!(doc = %doc, reason, missing, "background compaction refused; nothing deleted");
                }
                // Remember the pending count so the doc is retried only after more changes.
                let pending = self.db.pending_changes(id).unwrap_or(COMPACT_THRESHOLD);
                self.refused.insert(id, pending);
                self.notify(StoreEvent::CompactRefused(id));
            }
        }
        true
    }

    fn notify(&self, event: StoreEvent) {
        if let Some(events) = &self.events {
            // Observers are tests; a full or closed channel must never block the store.
            if events.try_send(event).is_err() {
                tracing::debug!("store event dropped");
            }
        }
    }
}
