//! The SQL behind sync: sequence numbers, catalog queries, per-peer sync state, actor
//! bindings and the one-transaction commit of a sync batch. Runs on the store thread.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::db::{Db, exec_cached, id_param, row_cached};
use super::error::StoreError;
use crate::ids::DocId;
use crate::sync::sharing::share_keys;
use crate::sync::storage::{
    ActorBinding, CatalogEntry, Heads, PeerRecord, SharedDocs, StartQuery, StartReads, StartSource,
    SyncBatch, SyncDocRecord, SyncWrite, Usage, pack_heads, read_start, unpack_heads,
};

/// The next sequence number (max + 1), read inside the caller's transaction.
pub(super) fn next_seq(conn: &Connection) -> Result<i64, StoreError> {
    row_cached(
        conn,
        "SELECT coalesce(max(seq), 0) + 1 FROM docs",
        [],
        |r| r.get(0),
    )
    .map_err(StoreError::sql("reading the sequence number"))
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A document from its stored chunks (snapshot first).
fn doc_of_chunks(chunks: &[Vec<u8>]) -> Result<automerge::Automerge, StoreError> {
    let Some((first, rest)) = chunks.split_first() else {
        return Ok(automerge::Automerge::new());
    };
    let mut doc = automerge::Automerge::load(first).map_err(StoreError::Automerge)?;
    for chunk in rest {
        doc.load_incremental(chunk).map_err(StoreError::Automerge)?;
    }
    Ok(doc)
}

/// Heads of a document from its stored chunks.
pub(crate) fn heads_of_chunks(chunks: &[Vec<u8>]) -> Result<Heads, StoreError> {
    let doc = doc_of_chunks(chunks)?;
    let mut heads: Heads = doc.get_heads().into_iter().map(|h| h.0).collect();
    heads.sort_unstable();
    Ok(heads)
}

fn decode_heads(bytes: Option<Vec<u8>>) -> Result<Heads, StoreError> {
    match bytes {
        Some(b) => unpack_heads(&b).ok_or(StoreError::BadInput {
            what: "stored document heads are malformed",
        }),
        None => Ok(Vec::new()),
    }
}

fn office_clause(offices: &[String], first_param: usize) -> String {
    let marks: Vec<String> = (0..offices.len())
        .map(|i| format!("?{}", first_param + i))
        .collect();
    format!("office IN ({})", marks.join(", "))
}

/// The documents of `offices` written after sequence number `?2`, with their heads, sorted
/// by id; unless `ignore_states`, without those the peer (`?1`) is known to hold; the
/// offices are parameters `?3…`. Tied to `docs_changed` (office, seq, id, heads): a sync
/// reads its office's changes since the cursor and nothing else. (Left to itself, SQLite
/// walked every document of the office in `docs_catalog` and read each one's `seq` from
/// behind the snapshot; through `docs_by_seq` it read every office's changes since the
/// cursor.)
fn changed_sql(offices: &[String], ignore_states: bool) -> String {
    let state_filter = if ignore_states {
        ""
    } else {
        "AND NOT EXISTS (SELECT 1 FROM sync_states s
                         WHERE s.peer = ?1 AND s.doc_id = d.id AND s.synced_seq >= d.seq)"
    };
    format!(
        "SELECT d.id, d.heads FROM docs d INDEXED BY docs_changed
         WHERE d.seq > ?2 AND d.{} {} ORDER BY d.id",
        office_clause(offices, 3),
        state_filter
    )
}

/// The `(id, heads)` rows `stmt` gives for `params`, as catalog entries.
fn catalog_entries(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
    what: &'static str,
) -> Result<Vec<CatalogEntry>, StoreError> {
    let rows = stmt
        .query_map(params, |r| {
            Ok((
                DocId::from_bytes(r.get::<_, [u8; 16]>(0)?),
                r.get::<_, Option<Vec<u8>>>(1)?,
            ))
        })
        .map_err(StoreError::sql(what))?;
    rows.map(|row| {
        let (id, heads) = row.map_err(StoreError::sql(what))?;
        Ok(CatalogEntry {
            id,
            heads: decode_heads(heads)?,
        })
    })
    .collect()
}

/// The persons whose documents a valid registration of `offices` (parameters from
/// `?first`) shares: the subject's person, attested by the card evidence the relay kept.
/// Starts from the registrations' own index (an office index would read every document
/// of the office).
fn persons_sql(offices: &[String], first: usize) -> String {
    format!(
        "SELECT s.person FROM docs r INDEXED BY docs_valid_registrations
           JOIN docs s ON s.id = r.subject_ref
           JOIN reg_evidence e ON e.doc_id = r.id AND e.person = s.person
         WHERE r.kind = 'registration' AND r.reg_valid = 1 AND r.{}
           AND s.person IS NOT NULL",
        office_clause(offices, first)
    )
}

/// Whether `offices` (parameters `?1…`) share anything: a valid registration with card
/// evidence for its subject's person.
fn any_sharing_sql(offices: &[String]) -> String {
    format!("SELECT EXISTS ({})", persons_sql(offices, 1))
}

/// The documents of other offices shared with `offices` through valid registrations,
/// with their heads and whether the peer (`?1`) is in line with each; the offices are
/// parameters `?2…`.
fn shared_sql(offices: &[String]) -> String {
    format!(
        "WITH persons AS ({persons}),
             -- The document's own person, else its subject's (sharing::shared_ids): a case
             -- naming another person is not shared through the subject it cites. Both
             -- branches start from the persons (indexes on person and subject_ref), so a
             -- call costs the shared documents, not the store. The branches are disjoint
             -- (a person, or none), so `UNION ALL` needs no table to remove repeats; the
             -- caller sorts by id.
             candidates AS (
                 SELECT d.id FROM docs d
                 WHERE d.person IN (SELECT person FROM persons)
                 UNION ALL
                 SELECT d.id FROM docs s JOIN docs d ON d.subject_ref = s.id
                 WHERE s.person IN (SELECT person FROM persons) AND d.person IS NULL)
             SELECT d.id, d.heads,
                    EXISTS (SELECT 1 FROM sync_states st
                            WHERE st.peer = ?1 AND st.doc_id = d.id AND st.synced_seq >= d.seq)
             FROM candidates c JOIN docs d ON d.id = c.id
             WHERE d.kind <> 'registration' AND NOT d.{own_d}",
        persons = persons_sql(offices, 2),
        own_d = office_clause(offices, 2),
    )
}

impl Db {
    /// Computes and stores the heads of every document whose heads are not known yet.
    pub(crate) fn ensure_heads(&mut self) -> Result<usize, StoreError> {
        if !self.conn.is_autocommit() {
            // Inside the read transaction of a session's start, which derived first.
            return Ok(0);
        }
        let ids: Vec<DocId> = {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT id FROM docs WHERE heads IS NULL")
                .map_err(StoreError::sql("finding documents without heads"))?;
            let rows = stmt
                .query_map([], |r| Ok(DocId::from_bytes(r.get::<_, [u8; 16]>(0)?)))
                .map_err(StoreError::sql("finding documents without heads"))?;
            rows.collect::<Result<_, _>>()
                .map_err(StoreError::sql("finding documents without heads"))?
        };
        if ids.is_empty() {
            return Ok(0);
        }
        let mut computed = Vec::with_capacity(ids.len());
        for id in &ids {
            if let Some(doc) = self.load_doc(*id)? {
                computed.push((*id, heads_of_chunks(&doc.chunks)?));
            }
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::sql("starting a transaction"))?;
        {
            // Only where still NULL: a write in between cleared them again on purpose.
            let mut update = tx
                .prepare_cached("UPDATE docs SET heads = ?1 WHERE id = ?2 AND heads IS NULL")
                .map_err(StoreError::sql("storing document heads"))?;
            for (id, heads) in &computed {
                update
                    .execute(params![pack_heads(heads), id_param(id)])
                    .map_err(StoreError::sql("storing document heads"))?;
            }
        }
        tx.commit()
            .map_err(StoreError::sql("storing document heads"))?;
        Ok(computed.len())
    }

    pub(crate) fn catalog(&mut self, offices: &[String]) -> Result<Vec<CatalogEntry>, StoreError> {
        if offices.is_empty() {
            return Ok(Vec::new());
        }
        self.ensure_heads()?;
        let sql = format!(
            "SELECT id, heads FROM docs WHERE {} ORDER BY id",
            office_clause(offices, 1)
        );
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(StoreError::sql("reading the catalog"))?;
        catalog_entries(
            &mut stmt,
            rusqlite::params_from_iter(offices.iter()),
            "reading the catalog",
        )
    }

    /// Derives the sharing keys ([`crate::sync::sharing`]) of every document written
    /// since they were last derived.
    pub(crate) fn ensure_share_keys(&mut self) -> Result<usize, StoreError> {
        if !self.conn.is_autocommit() {
            // As in `ensure_heads`.
            return Ok(0);
        }
        let stale: Vec<(DocId, i64)> = {
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT id, seq FROM docs INDEXED BY docs_keys_stale
                     WHERE keys_seq IS NULL OR keys_seq <> seq",
                )
                .map_err(StoreError::sql("finding documents without sharing keys"))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((DocId::from_bytes(r.get::<_, [u8; 16]>(0)?), r.get(1)?))
                })
                .map_err(StoreError::sql("finding documents without sharing keys"))?;
            rows.collect::<Result<_, _>>()
                .map_err(StoreError::sql("finding documents without sharing keys"))?
        };
        if stale.is_empty() {
            return Ok(0);
        }
        let mut derived = Vec::with_capacity(stale.len());
        for (id, seq) in &stale {
            let Some(doc) = self.load_doc(*id)? else {
                continue;
            };
            // A document that does not load shares nothing (and is reported elsewhere).
            let keys = doc_of_chunks(&doc.chunks)
                .map(|am| share_keys(&am, &doc.kind))
                .unwrap_or_default();
            derived.push((*id, *seq, keys));
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::sql("starting a transaction"))?;
        {
            // Only if the document was not written again in between.
            let mut update = tx
                .prepare_cached(
                    "UPDATE docs SET person = ?1, subject_ref = ?2, reg_valid = ?3, keys_seq = ?4
                     WHERE id = ?5 AND seq = ?4",
                )
                .map_err(StoreError::sql("storing sharing keys"))?;
            for (id, seq, keys) in &derived {
                update
                    .execute(params![
                        keys.person,
                        keys.subject_ref.map(|s| s.as_bytes().to_vec()),
                        keys.reg_valid,
                        seq,
                        id_param(id)
                    ])
                    .map_err(StoreError::sql("storing sharing keys"))?;
            }
        }
        tx.commit()
            .map_err(StoreError::sql("storing sharing keys"))?;
        Ok(derived.len())
    }

    pub(crate) fn lookup(
        &mut self,
        ids: &[DocId],
    ) -> Result<Vec<(DocId, String, Heads)>, StoreError> {
        self.ensure_heads()?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT office, heads FROM docs WHERE id = ?1")
            .map_err(StoreError::sql("looking up documents"))?;
        let mut out = Vec::new();
        for id in ids {
            let row = stmt
                .query_row([id_param(id)], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<Vec<u8>>>(1)?))
                })
                .optional()
                .map_err(StoreError::sql("looking up documents"))?;
            if let Some((office, heads)) = row {
                out.push((*id, office, decode_heads(heads)?));
            }
        }
        Ok(out)
    }

    pub(crate) fn load_for_sync(
        &mut self,
        peer: &str,
        id: DocId,
    ) -> Result<Option<SyncDocRecord>, StoreError> {
        let Some(doc) = self.load_doc(id)? else {
            return Ok(None);
        };
        let state = self
            .conn
            .query_row(
                "SELECT state FROM sync_states WHERE peer = ?1 AND doc_id = ?2",
                params![peer, id_param(&id)],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .optional()
            .map_err(StoreError::sql("reading a sync state"))?;
        let seq: i64 = self
            .conn
            .query_row("SELECT seq FROM docs WHERE id = ?1", [id_param(&id)], |r| {
                r.get(0)
            })
            .map_err(StoreError::sql("reading a sync state"))?;
        Ok(Some(SyncDocRecord {
            seq: to_u64(seq),
            kind: doc.kind,
            office: doc.office,
            chunks: doc.chunks,
            sync_state: state,
        }))
    }

    pub(crate) fn cert_person(&self, fingerprint: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT person FROM cert_bindings WHERE cert_fp = ?1",
                [fingerprint],
                |r| r.get(0),
            )
            .optional()
            .map_err(StoreError::sql("reading a card certificate binding"))
    }

    /// The bindings of those of `actors` that are bound.
    pub(crate) fn actor_bindings(
        &self,
        actors: &[Vec<u8>],
    ) -> Result<Vec<ActorBinding>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT device, device_name FROM actors WHERE actor = ?1")
            .map_err(StoreError::sql("reading actor bindings"))?;
        let mut out = Vec::new();
        for actor in actors {
            let row = stmt
                .query_row([actor], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
                })
                .optional()
                .map_err(StoreError::sql("reading actor bindings"))?;
            if let Some((device, device_name)) = row {
                out.push(ActorBinding {
                    actor: actor.clone(),
                    device,
                    device_name,
                });
            }
        }
        Ok(out)
    }

    /// The usage counters of `office` and `peer` (migration 0006: maintained by triggers
    /// and by [`Self::commit_sync`]).
    pub(crate) fn usage(&self, office: &str, peer: &str) -> Result<Usage, StoreError> {
        let (office_docs, office_bytes): (i64, i64) = self
            .conn
            .query_row(
                "SELECT docs, bytes FROM office_usage WHERE office = ?1",
                [office],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(StoreError::sql("reading storage usage"))?
            .unwrap_or_default();
        let (peer_docs, peer_bytes): (i64, i64) = self
            .conn
            .query_row(
                "SELECT docs, bytes FROM peer_usage WHERE peer = ?1",
                [peer],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(StoreError::sql("reading storage usage"))?
            .unwrap_or_default();
        Ok(Usage {
            office_docs: to_u64(office_docs),
            office_bytes: to_u64(office_bytes),
            peer_docs: to_u64(peer_docs),
            peer_bytes: to_u64(peer_bytes),
        })
    }

    /// Writes several sync batches (of concurrent sessions) in one transaction: one commit,
    /// one fsync and one write of the pages they share (the sequence number's, the
    /// digests', the indexes' leaves) for all of them. Each batch runs in its own savepoint,
    /// so a batch that fails writes nothing and leaves the others as they are; a failed
    /// commit fails every batch. Returns, in order, each batch's written ids or its error.
    /// A group of one is exactly the single-batch transaction.
    pub(crate) fn commit_sync_group(
        &mut self,
        batches: &[&SyncBatch],
        now_ms: i64,
    ) -> Vec<Result<Vec<DocId>, StoreError>> {
        let mut tx = match self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
        {
            Ok(tx) => tx,
            Err(e) => {
                return batches
                    .iter()
                    .map(|_| Err(StoreError::sqlite("starting a transaction", copy_of(&e))))
                    .collect();
            }
        };
        let mut results = Vec::with_capacity(batches.len());
        if let [batch] = batches {
            // Alone: the transaction is the batch's own (no savepoint to pay for).
            results.push(write_sync_batch(&tx, batch, now_ms));
        } else {
            for batch in batches {
                let result = match tx.savepoint() {
                    Ok(sp) => match write_sync_batch(&sp, batch, now_ms) {
                        Ok(written) => sp
                            .commit()
                            .map(|()| written)
                            .map_err(StoreError::sql("ending a sync batch")),
                        // Dropping the savepoint rolls the batch back.
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(StoreError::sqlite("starting a sync batch", e)),
                };
                let failed = result.is_err();
                results.push(result);
                if failed && tx.is_autocommit() {
                    // SQLite rolled the whole transaction back (a full disk, an I/O
                    // error): nothing of the group is written; the rest is not tried.
                    let tried = results.len();
                    return results
                        .into_iter()
                        .map(|r| r.and(Err(StoreError::RolledBackWithGroup)))
                        .chain((tried..batches.len()).map(|_| Err(StoreError::RolledBackWithGroup)))
                        .collect();
                }
            }
        }
        if results.iter().all(Result::is_err) {
            // Nothing to keep; dropping `tx` rolls back.
            return results;
        }
        match tx.commit() {
            Ok(()) => results,
            Err(e) => results
                .into_iter()
                .map(|r| {
                    r.and_then(|_| Err(StoreError::sqlite("committing synced data", copy_of(&e))))
                })
                .collect(),
        }
    }
}

/// Writes one sync batch inside the caller's transaction (or savepoint). Returns the ids
/// of documents written; on an error the caller rolls back.
fn write_sync_batch(
    tx: &Connection,
    batch: &SyncBatch,
    now_ms: i64,
) -> Result<Vec<DocId>, StoreError> {
    let mut written = Vec::new();
    if batch.reset_peer {
        exec_cached(tx, "DELETE FROM sync_states WHERE peer = ?1", [&batch.peer])
            .map_err(StoreError::sql("resetting sync states"))?;
    }
    let mut seq = next_seq(tx)?;
    // What the batch's peer wrote: documents inserted, bytes of snapshots and chunks.
    let (mut peer_docs, mut peer_bytes) = (0i64, 0i64);
    for write in &batch.writes {
        match write {
            SyncWrite::Insert {
                id,
                kind,
                office,
                title,
                bytes,
                heads,
                keys,
            } => {
                let exists: bool = row_cached(
                    tx,
                    "SELECT 1 FROM docs WHERE id = ?1",
                    [id_param(id)],
                    |_| Ok(()),
                )
                .optional()
                .map_err(StoreError::sql("writing synced documents"))?
                .is_some();
                peer_bytes = peer_bytes.saturating_add(to_i64(bytes.len() as u64));
                if exists {
                    // Another writer got there first: keep both by appending the
                    // whole save as a change chunk (load_incremental dedups).
                    exec_cached(
                        tx,
                        "INSERT INTO changes (doc_id, data) VALUES (?1, ?2)",
                        params![id_param(id), bytes.as_bytes()],
                    )
                    .map_err(StoreError::sql("writing synced documents"))?;
                    exec_cached(
                        tx,
                        "UPDATE docs SET seq = ?1, heads = NULL, updated_at = max(updated_at, ?2)
                             WHERE id = ?3",
                        params![seq, now_ms, id_param(id)],
                    )
                    .map_err(StoreError::sql("writing synced documents"))?;
                } else {
                    exec_cached(
                        tx,
                        "INSERT INTO docs (id, kind, office, title, created_at, updated_at,
                                               snapshot, seq, heads,
                                               person, subject_ref, reg_valid, keys_seq)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?7)",
                        params![
                            id_param(id),
                            kind,
                            office,
                            title,
                            now_ms,
                            bytes.as_bytes(),
                            seq,
                            pack_heads(heads),
                            keys.person,
                            keys.subject_ref.map(|s| s.as_bytes().to_vec()),
                            keys.reg_valid
                        ],
                    )
                    .map_err(StoreError::sql("writing synced documents"))?;
                    peer_docs += 1;
                }
                seq += 1;
                written.push(*id);
            }
            SyncWrite::Append {
                id,
                changes,
                heads,
                base_seq,
                title,
                keys,
            } => {
                // The heads are exact only if nothing else wrote the document since
                // the session loaded it; otherwise they are recomputed later.
                // The keys, like the heads, hold only for exactly the loaded state.
                let n = exec_cached(
                    tx,
                    "UPDATE docs SET title = ?1, updated_at = max(updated_at, ?2),
                                             seq = ?3,
                                             heads = CASE WHEN seq = ?6 THEN ?4 ELSE NULL END,
                                             person = ?7, subject_ref = ?8, reg_valid = ?9,
                                             keys_seq = CASE WHEN seq = ?6 THEN ?3 ELSE NULL END
                             WHERE id = ?5",
                    params![
                        title,
                        now_ms,
                        seq,
                        pack_heads(heads),
                        id_param(id),
                        to_i64(*base_seq),
                        keys.person,
                        keys.subject_ref.map(|s| s.as_bytes().to_vec()),
                        keys.reg_valid
                    ],
                )
                .map_err(StoreError::sql("writing synced changes"))?;
                if n == 0 {
                    return Err(StoreError::NotFound(*id));
                }
                for data in changes.iter().filter(|c| !c.is_empty()) {
                    exec_cached(
                        tx,
                        "INSERT INTO changes (doc_id, data) VALUES (?1, ?2)",
                        params![id_param(id), data],
                    )
                    .map_err(StoreError::sql("writing synced changes"))?;
                    peer_bytes = peer_bytes.saturating_add(to_i64(data.len() as u64));
                }
                seq += 1;
                written.push(*id);
            }
            SyncWrite::State {
                id,
                state,
                in_sync,
                heads,
            } => {
                // In sync at the document's current seq only if the store holds
                // exactly the heads the peer has.
                let synced: i64 = if *in_sync {
                    row_cached(
                        tx,
                        "SELECT seq FROM docs WHERE id = ?1 AND heads = ?2",
                        params![id_param(id), pack_heads(heads)],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(StoreError::sql("writing a sync state"))?
                    .unwrap_or(0)
                } else {
                    0
                };
                exec_cached(
                    tx,
                    "INSERT INTO sync_states (peer, doc_id, state, synced_seq)
                         VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (peer, doc_id)
                         DO UPDATE SET state = excluded.state, synced_seq = excluded.synced_seq",
                    params![batch.peer, id_param(id), state, synced],
                )
                .map_err(StoreError::sql("writing a sync state"))?;
            }
            SyncWrite::Evidence { id, verdict } => {
                // The first binding of a card certificate stays; a verdict for another
                // person (a concurrent session got there first) is not kept, so the
                // registration grants nothing.
                exec_cached(
                    tx,
                    "INSERT INTO cert_bindings (cert_fp, person) VALUES (?1, ?2)
                         ON CONFLICT (cert_fp) DO NOTHING",
                    params![verdict.cert_fingerprint, verdict.person],
                )
                .map_err(StoreError::sql("binding a card certificate"))?;
                exec_cached(
                    tx,
                    "INSERT INTO reg_evidence (doc_id, person, cert_fp, device)
                         SELECT ?1, ?2, ?3, ?4
                         WHERE (SELECT person FROM cert_bindings WHERE cert_fp = ?3) = ?2
                         ON CONFLICT (doc_id) DO NOTHING",
                    params![
                        id_param(id),
                        verdict.person,
                        verdict.cert_fingerprint,
                        verdict.device
                    ],
                )
                .map_err(StoreError::sql("keeping verified card evidence"))?;
            }
            SyncWrite::BindActor {
                actor,
                device,
                device_name,
            } => {
                exec_cached(
                    tx,
                    "INSERT INTO actors (actor, device, first_seen_ms, device_name)
                         VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (actor) DO NOTHING",
                    params![actor, device, now_ms, device_name],
                )
                .map_err(StoreError::sql("binding an actor"))?;
            }
        }
    }
    if peer_docs > 0 || peer_bytes > 0 {
        exec_cached(
            tx,
            "INSERT INTO peer_usage (peer, docs, bytes) VALUES (?1, ?2, ?3)
                 ON CONFLICT (peer) DO UPDATE SET docs = docs + excluded.docs,
                                                  bytes = bytes + excluded.bytes",
            params![batch.peer, peer_docs, peer_bytes],
        )
        .map_err(StoreError::sql("counting storage usage"))?;
    }
    if let Some(rec) = &batch.peer_record {
        exec_cached(
            tx,
            "INSERT INTO sync_peers (peer, epoch, cursor, pushed_seq, last_ok_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (peer) DO UPDATE SET epoch = excluded.epoch,
                    cursor = excluded.cursor, pushed_seq = excluded.pushed_seq,
                    last_ok_ms = excluded.last_ok_ms",
            params![
                batch.peer,
                rec.epoch,
                to_i64(rec.cursor),
                to_i64(rec.pushed_seq),
                rec.last_ok_ms
            ],
        )
        .map_err(StoreError::sql("writing a sync peer"))?;
    }
    Ok(written)
}

impl Db {
    /// A value of the encrypted `meta` table.
    pub(crate) fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(StoreError::sql("reading a setting"))
    }

    /// Sets a value of the encrypted `meta` table.
    pub(crate) fn put_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map_err(StoreError::sql("writing a setting"))?;
        Ok(())
    }
}

impl Db {
    /// `SyncStorage::session_start` on the store thread: heads and sharing keys not known
    /// yet are derived first (that writes), then every read runs in one read transaction,
    /// so they see one state of the database and take its lock once instead of once each.
    pub(crate) fn session_start(&mut self, q: &StartQuery) -> Result<StartReads, StoreError> {
        self.ensure_heads()?;
        if q.shared {
            self.ensure_share_keys()?;
        }
        self.conn
            .execute_batch("BEGIN DEFERRED")
            .map_err(StoreError::sql("starting the reads of a session"))?;
        let reads = read_start(self, q);
        let end = if reads.is_ok() { "COMMIT" } else { "ROLLBACK" };
        self.conn
            .execute_batch(end)
            .map_err(StoreError::sql("ending the reads of a session"))?;
        reads
    }
}

/// The reads a session starts with, on the store thread (one crossing for all of them:
/// `Store`'s `SyncStorage::session_start`).
impl StartSource for Db {
    type Error = StoreError;

    fn current_seq(&mut self) -> Result<u64, StoreError> {
        let v: i64 = row_cached(
            &self.conn,
            "SELECT coalesce(max(seq), 0) FROM docs",
            [],
            |r| r.get(0),
        )
        .map_err(StoreError::sql("reading the sequence number"))?;
        Ok(to_u64(v))
    }

    fn changed_for_peer(
        &mut self,
        peer: &str,
        since: u64,
        offices: &[String],
        ignore_states: bool,
    ) -> Result<Vec<CatalogEntry>, StoreError> {
        if offices.is_empty() {
            return Ok(Vec::new());
        }
        self.ensure_heads()?;
        let sql = changed_sql(offices, ignore_states);
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(StoreError::sql("listing changed documents"))?;
        let mut values: Vec<rusqlite::types::Value> = vec![
            rusqlite::types::Value::Text(peer.to_owned()),
            rusqlite::types::Value::Integer(to_i64(since)),
        ];
        values.extend(
            offices
                .iter()
                .map(|o| rusqlite::types::Value::Text(o.clone())),
        );
        catalog_entries(
            &mut stmt,
            rusqlite::params_from_iter(values),
            "listing changed documents",
        )
    }

    /// [`crate::sync::catalog_digest`] of the catalog of `offices`, from the digests the
    /// triggers keep per office (after computing heads not known yet, which adds their
    /// parts).
    fn catalog_digest(&mut self, offices: &[String]) -> Result<[u8; 32], StoreError> {
        let mut digest = [0u8; 32];
        if offices.is_empty() {
            return Ok(digest);
        }
        self.ensure_heads()?;
        let sql = format!(
            "SELECT digest FROM office_digest WHERE {}",
            office_clause(offices, 1)
        );
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(StoreError::sql("reading the catalog digest"))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(offices.iter()), |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .map_err(StoreError::sql("reading the catalog digest"))?;
        for row in rows {
            let part = row.map_err(StoreError::sql("reading the catalog digest"))?;
            let part = <[u8; 32]>::try_from(part.as_slice()).map_err(|_| StoreError::BadInput {
                what: "a stored catalog digest is not 32 bytes",
            })?;
            crate::sync::xor_into(&mut digest, &part);
        }
        Ok(digest)
    }

    /// Documents of other offices shared with `offices` by a valid registration (the rule
    /// of [`crate::sync::sharing`], in SQL), with those not in sync with `peer`.
    fn shared_for_peer(
        &mut self,
        peer: &str,
        offices: &[String],
        ignore_states: bool,
    ) -> Result<SharedDocs, StoreError> {
        if offices.is_empty() {
            return Ok(SharedDocs::default());
        }
        self.ensure_heads()?;
        self.ensure_share_keys()?;
        // The registrations alone first: offices without a valid one share nothing, and
        // the query below would build its temporary tables for nothing.
        let any: bool = self
            .conn
            .prepare_cached(&any_sharing_sql(offices))
            .and_then(|mut st| {
                st.query_row(rusqlite::params_from_iter(offices.iter()), |r| r.get(0))
            })
            .map_err(StoreError::sql("listing shared documents"))?;
        if !any {
            return Ok(SharedDocs::default());
        }
        let sql = shared_sql(offices);
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(StoreError::sql("listing shared documents"))?;
        let mut values = vec![rusqlite::types::Value::Text(peer.to_owned())];
        values.extend(
            offices
                .iter()
                .map(|o| rusqlite::types::Value::Text(o.clone())),
        );
        let rows = stmt
            .query_map(rusqlite::params_from_iter(values), |r| {
                Ok((
                    DocId::from_bytes(r.get::<_, [u8; 16]>(0)?),
                    r.get::<_, Option<Vec<u8>>>(1)?,
                    r.get::<_, bool>(2)?,
                ))
            })
            .map_err(StoreError::sql("listing shared documents"))?;
        let mut out = SharedDocs::default();
        for row in rows {
            let (id, heads, in_sync) = row.map_err(StoreError::sql("listing shared documents"))?;
            out.ids.insert(id);
            if ignore_states || !in_sync {
                out.changed.push(CatalogEntry {
                    id,
                    heads: decode_heads(heads)?,
                });
            }
        }
        out.changed.sort_unstable_by_key(|e| e.id);
        Ok(out)
    }

    fn peer(&mut self, peer: &str) -> Result<PeerRecord, StoreError> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT epoch, cursor, pushed_seq, last_ok_ms FROM sync_peers WHERE peer = ?1",
            )
            .and_then(|mut s| {
                s.query_row([peer], |r| {
                    Ok(PeerRecord {
                        epoch: r.get(0)?,
                        cursor: to_u64(r.get(1)?),
                        pushed_seq: to_u64(r.get(2)?),
                        last_ok_ms: r.get(3)?,
                    })
                })
                .optional()
            })
            .map_err(StoreError::sql("reading a sync peer"))?;
        Ok(row.unwrap_or_default())
    }

    fn actor_owner(&mut self, actor: &[u8]) -> Result<Option<String>, StoreError> {
        row_cached(
            &self.conn,
            "SELECT device FROM actors WHERE actor = ?1",
            [actor],
            |r| r.get(0),
        )
        .optional()
        .map_err(StoreError::sql("reading an actor binding"))
    }
}

/// A copy of a SQLite error, for each batch of a group whose commit failed (the error
/// type is not `Clone`): the same code and message where SQLite gave them.
fn copy_of(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, message) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        _ => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(e.to_string()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{InitOptions, SecretString, Store};
    use crate::sync::storage::{ActorBinding, SyncBatch, SyncStorage, SyncWrite};

    fn bind(actor: u8, device: &str, name: Option<&str>) -> SyncWrite {
        SyncWrite::BindActor {
            actor: vec![actor; 16],
            device: device.into(),
            device_name: name.map(str::to_owned),
        }
    }

    const PASSPHRASE: &str = "correct horse battery";

    /// A new store of office 1370000001 in `dir`.
    /// The digest the triggers keep follows the local write paths too (import, edits that
    /// leave the heads to be computed, compaction, reopening), not only sync batches (those
    /// are in the storage contract suite, relay-pg/tests/contract.rs).
    #[test]
    fn the_kept_digest_follows_local_edits_compaction_and_a_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        // The example's office (a valid 事業所番号, which an import checks).
        let offices = vec!["1370100016".to_owned()];
        let engine =
            crate::Engine::new(store_of(&dir, &offices[0]), Some("試験 太郎".into())).unwrap();
        let survey: serde_json::Value =
            serde_json::from_str(include_str!("../../../schemas/examples/survey.json")).unwrap();
        let ids = engine
            .import(&[("a".into(), survey.clone()), ("b".into(), survey)], 1)
            .unwrap()
            .ids;
        let check = |engine: &crate::Engine, when: &str| {
            let store = engine.store();
            assert_eq!(store.catalog(&offices).unwrap().len(), 2, "{when}");
            assert_eq!(
                store.catalog_digest(&offices).unwrap(),
                crate::sync::catalog_digest(&store.catalog(&offices).unwrap()),
                "{when}"
            );
        };
        check(&engine, "after an import");
        let pointer = crate::schema::Pointer::parse("/items/1-3").unwrap();
        engine
            .set(ids[0], &pointer, serde_json::json!(2), 2)
            .unwrap();
        check(&engine, "after an edit");
        engine.store().compact(ids[0]).unwrap();
        check(&engine, "after compaction");
        engine.close().unwrap();
        let store = Store::open(&dir, &SecretString::from(PASSPHRASE)).unwrap();
        assert_eq!(
            store.catalog_digest(&offices).unwrap(),
            crate::sync::catalog_digest(&store.catalog(&offices).unwrap()),
            "after a reopen"
        );
        assert_ne!(store.catalog_digest(&offices).unwrap(), [0; 32]);
    }

    fn new_store(dir: &std::path::Path) -> Store {
        store_of(dir, "1370000001")
    }

    /// A new store of `office` in `dir`.
    fn store_of(dir: &std::path::Path, office: &str) -> Store {
        Store::init(
            dir,
            &SecretString::from(PASSPHRASE),
            InitOptions {
                office: office.into(),
                device_name: "test tablet".into(),
                kdf_work_factor: Some(10),
                ..InitOptions::default()
            },
        )
        .unwrap()
    }

    fn batch(writes: Vec<SyncWrite>) -> SyncBatch {
        SyncBatch {
            peer: "relay".into(),
            writes,
            ..SyncBatch::default()
        }
    }

    /// Working out the shared set runs at every `hello` and before each batch of an open
    /// session: it must start from the registrations and reach documents through the
    /// person and subject indexes, never read the whole `docs` table (at 10,000 documents
    /// the scan cost a relay about 0.4 s of CPU per no-op session).
    #[test]
    fn the_shared_set_is_found_through_indexes_not_a_scan_of_every_document() {
        let one = vec!["1370000001".to_owned()];
        let two = vec!["1370000001".to_owned(), "1370000019".to_owned()];
        for offices in [&one, &two] {
            let mut params = vec![text("dev-x")];
            params.extend(offices.iter().map(|o| text(o)));
            let plan = query_plan(super::shared_sql(offices), params);
            assert!(full_scans(&plan).is_empty(), "full scans in {plan:#?}");
            let first = query_plan(
                super::any_sharing_sql(offices),
                offices.iter().map(|o| text(o)).collect(),
            );
            assert!(full_scans(&first).is_empty(), "full scans in {first:#?}");
            assert!(
                first
                    .iter()
                    .any(|step| step.contains("docs_valid_registrations")),
                "{first:#?}"
            );
            // Not through an office index: that reads every document of the office (at
            // 10,000 surveys about 0.4 s of a relay's CPU per session).
            assert!(
                plan.iter()
                    .filter(|step| step.starts_with("SEARCH r "))
                    .all(|step| step.contains("docs_valid_registrations")),
                "registrations not found through their own index: {plan:#?}"
            );
        }
    }

    #[test]
    fn changed_documents_are_found_by_office_and_sequence_number_from_one_index() {
        let one = vec!["1370000001".to_owned()];
        let two = vec!["1370000001".to_owned(), "1370000019".to_owned()];
        for (offices, ignore_states) in [(&one, false), (&one, true), (&two, false)] {
            let mut params = vec![text("dev-x"), 0.into()];
            params.extend(offices.iter().map(|o| text(o)));
            let plan = query_plan(super::changed_sql(offices, ignore_states), params);
            assert!(full_scans(&plan).is_empty(), "full scans in {plan:#?}");
            assert!(
                plan.iter().any(|step| step
                    .contains("SEARCH d USING COVERING INDEX docs_changed (office=? AND seq>?)")),
                "not driven by office and sequence number: {plan:#?}"
            );
        }
    }

    fn text(s: &str) -> rusqlite::types::Value {
        rusqlite::types::Value::Text(s.to_owned())
    }

    /// SQLite's plan of `sql` with `params`, on a new store: one line per step.
    fn query_plan(sql: String, params: Vec<rusqlite::types::Value>) -> Vec<String> {
        let tmp = tempfile::tempdir().unwrap();
        let store = new_store(&tmp.path().join("data"));
        let sql = format!("EXPLAIN QUERY PLAN {sql}");
        let plan: Vec<String> = store
            .run(move |db| {
                let plan = || -> rusqlite::Result<Vec<String>> {
                    let mut stmt = db.conn.prepare(&sql)?;
                    let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
                        r.get::<_, String>(3)
                    })?;
                    rows.collect()
                };
                plan().map_err(crate::store::StoreError::sql("explaining the query"))
            })
            .unwrap();
        assert!(!plan.is_empty());
        plan
    }

    /// The steps of `plan` that scan a table (its aliases in the queries; "SCAN d USING
    /// INDEX …" walks the whole index), not the small CTE results.
    fn full_scans(plan: &[String]) -> Vec<&String> {
        plan.iter()
            .filter(|step| {
                let table = step.strip_prefix("SCAN ").unwrap_or_default();
                let table = table.split_whitespace().next().unwrap_or_default();
                ["d", "ds", "r", "s", "e", "st", "docs"].contains(&table)
            })
            .collect()
    }

    /// The binding rules themselves are in the storage contract suite
    /// (relay-pg/tests/contract.rs, every backend); here: they survive a reopen.
    #[test]
    fn actor_bindings_survive_a_reopen_of_the_store() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let store = new_store(&dir);
        store
            .commit(batch(vec![
                bind(1, "dev-x", Some("tablet-x")),
                bind(2, "dev-y", None),
            ]))
            .unwrap();
        let expected = vec![
            ActorBinding {
                actor: vec![1; 16],
                device: "dev-x".into(),
                device_name: Some("tablet-x".into()),
            },
            ActorBinding {
                actor: vec![2; 16],
                device: "dev-y".into(),
                device_name: None,
            },
        ];
        let asked = [vec![1; 16], vec![3; 16], vec![2; 16]];
        store.close().unwrap();

        let store = Store::open(&dir, &SecretString::from(PASSPHRASE)).unwrap();
        assert_eq!(store.actor_bindings(&asked).unwrap(), expected);
        store.close().unwrap();
    }
}
