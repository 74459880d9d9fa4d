//! The relay's sync storage on PostgreSQL: the cluster backend of
//! [`SyncStorage`](musubi_engine::sync::SyncStorage).
//!
//! Several relay nodes share one database and cooperate only through it:
//!
//! - one **global sequence** (the `seq_counter` row, taken `FOR UPDATE` by every batch
//!   that writes documents): writes commit in sequence order at every node, so a device's
//!   cursor is valid at every node and never skips a write still in flight;
//! - one **store id** in `meta`, the same for every node (the epoch of that sequence);
//! - **one transaction per [`SyncBatch`]** (all or nothing), with the same rules as the
//!   SQLCipher store (`engine/src/store/db_sync.rs`): an append whose session loaded the
//!   document at an older sequence number has its heads and sharing keys recomputed; the
//!   first actor binding and the first card certificate binding stay;
//! - the **sharing rule** of [`musubi_engine::sync::sharing`] in SQL over keyed tags.
//!
//! Nothing personal reaches the database in the clear ([`seal`]): documents, changes,
//! titles, kind and office, device names and person keys are sealed with AES-256-GCM under
//! the relay's data key; the columns queried by hold HMAC tags under a separate key.
//!
//! The client is the synchronous `postgres` crate behind an r2d2 pool: the storage trait
//! is synchronous, and the relay calls it from `block_in_place` (where a nested runtime is
//! allowed) or from plain threads.

pub mod registry;
pub mod schema;
pub mod seal;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use musubi_engine::ids::DocId;
use musubi_engine::store::chunks as checks;
use musubi_engine::sync::sharing::{REGISTRATION_KIND, ShareKeys, share_keys};
use musubi_engine::sync::storage::{
    ActorBinding, CatalogEntry, Heads, PeerRecord, SharedDocs, StartQuery, StartReads, StartSource,
    StorageError, SyncBatch, SyncDocRecord, SyncStorage, SyncWrite, Usage, pack_heads, read_start,
    unpack_heads,
};
use postgres::{GenericClient, NoTls, Transaction};
use r2d2_postgres::PostgresConnectionManager;

pub use self::seal::DataKeys;

/// Connections a node keeps at most when not configured.
pub const DEFAULT_POOL_SIZE: u32 = 16;
/// How long a call waits for a connection before it fails (database unreachable).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the PostgreSQL storage failed. Messages name the operation, never a value.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The key file is unusable.
    #[error("relay data key: {0}")]
    Keys(&'static str),
    /// A sealed value did not open.
    #[error("a sealed value ({0}) does not open: wrong data key or a tampered database")]
    Unsealable(&'static str),
    /// The database address does not parse.
    #[error("the database address is not valid: {0}")]
    BadAddress(String),
    /// No connection could be had.
    #[error("the database is unreachable: {0}")]
    Unreachable(String),
    /// A statement failed.
    #[error("database error while {what}: {detail}")]
    Sql {
        /// What was being done.
        what: &'static str,
        /// The server's message and SQLSTATE (no values).
        detail: String,
    },
    /// The schema is newer than this build.
    #[error(
        "the database schema is version {found}, newer than this musubi-relay knows ({known}); upgrade musubi-relay"
    )]
    NewerSchema {
        /// Version found.
        found: i32,
        /// Newest version known.
        known: i32,
    },
    /// The database was initialised with another data key.
    #[error("the relay data key does not match this database (it was set up with another key)")]
    WrongKey,
    /// Stored data is malformed.
    #[error("stored data is malformed: {0}")]
    Corrupt(&'static str),
    /// The batch cannot be written (nothing was written).
    #[error("{0}; nothing was written")]
    Refused(String),
}

impl PgError {
    pub(crate) fn sql(what: &'static str) -> impl FnOnce(postgres::Error) -> PgError {
        move |e| PgError::Sql {
            what,
            detail: match e.as_db_error() {
                // The message and code only: DETAIL lines may quote row values.
                Some(db) => format!("{} ({})", db.message(), db.code().code()),
                None => e.to_string(),
            },
        }
    }
}

fn storage_err(e: PgError) -> StorageError {
    StorageError(e.to_string())
}

/// How to reach the database.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// `postgresql://user@host:port/db` or `host=/run/postgresql port=5432 dbname=musubi`.
    pub url: String,
    /// Most connections this node holds.
    pub pool_size: u32,
    /// How long to wait for a connection.
    pub connect_timeout: Duration,
}

impl PgOptions {
    /// Defaults for `url`.
    pub fn new(url: &str) -> PgOptions {
        PgOptions {
            url: url.to_owned(),
            pool_size: DEFAULT_POOL_SIZE,
            connect_timeout: CONNECT_TIMEOUT,
        }
    }
}

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;
type Conn = r2d2::PooledConnection<PostgresConnectionManager<NoTls>>;

/// The relay store on PostgreSQL.
pub struct PgStorage {
    /// Always `Some` until dropped (taken by `Drop` to close it off any runtime).
    pool: Option<Pool>,
    keys: Arc<DataKeys>,
    store_id: String,
}

impl std::fmt::Debug for PgStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStorage")
            .field("store_id", &self.store_id)
            .finish_non_exhaustive()
    }
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn doc_id(bytes: &[u8]) -> Result<DocId, PgError> {
    let arr: [u8; 16] = bytes
        .try_into()
        .map_err(|_| PgError::Corrupt("a document id is not 16 bytes"))?;
    Ok(DocId::from_bytes(arr))
}

fn decode_heads(bytes: Option<Vec<u8>>) -> Result<Heads, PgError> {
    match bytes {
        Some(b) => unpack_heads(&b).ok_or(PgError::Corrupt("stored document heads are malformed")),
        None => Ok(Vec::new()),
    }
}

fn random_id() -> Result<String, PgError> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| PgError::Keys("the system random generator failed"))?;
    Ok(hex::encode(b))
}

/// A document as stored, unsealed.
struct Loaded {
    kind: String,
    office: String,
    chunks: Vec<Vec<u8>>,
    seq: i64,
}

impl PgStorage {
    /// Connects, brings the schema up to date (numbered migrations, see [`schema`]),
    /// and checks that `keys` are the database's (the first node to open a new database
    /// records its store id and a key check).
    pub fn open(opts: &PgOptions, keys: DataKeys) -> Result<PgStorage, PgError> {
        outside_runtime(|| Self::open_here(opts, keys))
    }

    fn open_here(opts: &PgOptions, keys: DataKeys) -> Result<PgStorage, PgError> {
        let config = postgres::Config::from_str(&opts.url)
            .map_err(|e| PgError::BadAddress(e.to_string()))?;
        let manager = PostgresConnectionManager::new(config, NoTls);
        let pool = r2d2::Pool::builder()
            .max_size(opts.pool_size.max(1))
            .min_idle(Some(1))
            .connection_timeout(opts.connect_timeout)
            .build(manager)
            .map_err(|e| PgError::Unreachable(e.to_string()))?;
        let keys = Arc::new(keys);
        let mut c = pool
            .get()
            .map_err(|e| PgError::Unreachable(e.to_string()))?;
        schema::migrate(&mut c)?;
        let check = keys.seal("meta.key_check", b"", &keys.tag("check", "key check"))?;
        c.execute(
            "INSERT INTO meta (key, value) VALUES ('store_id', $1), ('key_check', $2)
             ON CONFLICT (key) DO NOTHING",
            &[&random_id()?, &hex::encode(check)],
        )
        .map_err(PgError::sql("recording the store id"))?;
        let rows = c
            .query(
                "SELECT key, value FROM meta WHERE key IN ('store_id', 'key_check')",
                &[],
            )
            .map_err(PgError::sql("reading the store id"))?;
        let mut store_id = None;
        let mut key_ok = false;
        for r in rows {
            let (k, v): (String, String) = (r.get(0), r.get(1));
            if k == "store_id" {
                store_id = Some(v);
            } else {
                let sealed = hex::decode(v).map_err(|_| PgError::Corrupt("the key check"))?;
                key_ok = keys
                    .open("meta.key_check", b"", &sealed)
                    .is_ok_and(|t| t == keys.tag("check", "key check"));
            }
        }
        if !key_ok {
            return Err(PgError::WrongKey);
        }
        let store_id = store_id.ok_or(PgError::Corrupt("the store id is missing"))?;
        drop(c);
        Ok(PgStorage {
            pool: Some(pool),
            keys,
            store_id,
        })
    }

    fn conn(&self) -> Result<Conn, PgError> {
        self.pool
            .as_ref()
            .ok_or_else(|| PgError::Unreachable("the store is closed".into()))?
            .get()
            .map_err(|e| PgError::Unreachable(e.to_string()))
    }

    /// A pooled connection after deriving the heads and sharing keys not known yet (what
    /// the reads of changed documents, digests and shared sets need first).
    fn derived_conn(&self) -> Result<Conn, PgError> {
        let mut c = self.conn()?;
        self.ensure_derived(&mut c)?;
        Ok(c)
    }

    fn current_seq_pg(c: &mut impl GenericClient) -> Result<u64, PgError> {
        let v: i64 = c
            .query_one("SELECT value FROM seq_counter", &[])
            .map_err(PgError::sql("reading the sequence number"))?
            .get(0);
        Ok(to_u64(v))
    }

    fn actor_owner_pg(c: &mut impl GenericClient, actor: &[u8]) -> Result<Option<String>, PgError> {
        let row = c
            .query_opt("SELECT device FROM actors WHERE actor = $1", &[&actor])
            .map_err(PgError::sql("reading an actor binding"))?;
        Ok(row.map(|r| r.get(0)))
    }

    fn office_tags(&self, offices: &[String]) -> Vec<Vec<u8>> {
        offices.iter().map(|o| self.keys.tag("office", o)).collect()
    }

    /// Documents of `office` (for `musubi-relay status`).
    pub fn office_documents(&self, office: &str) -> Result<u64, PgError> {
        outside_runtime(|| self.office_documents_here(office))
    }

    fn office_documents_here(&self, office: &str) -> Result<u64, PgError> {
        let mut c = self.conn()?;
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM docs WHERE office_tag = $1",
                &[&self.keys.tag("office", office)],
            )
            .map_err(PgError::sql("counting documents"))?
            .get(0);
        Ok(to_u64(n))
    }

    /// Every document (for `musubi-relay status`).
    pub fn document_count(&self) -> Result<u64, PgError> {
        outside_runtime(|| self.document_count_here())
    }

    fn document_count_here(&self) -> Result<u64, PgError> {
        let n: i64 = self
            .conn()?
            .query_one("SELECT count(*) FROM docs", &[])
            .map_err(PgError::sql("counting documents"))?
            .get(0);
        Ok(to_u64(n))
    }

    /// The schema version of the database.
    pub fn schema_version(&self) -> Result<i32, PgError> {
        outside_runtime(|| schema::version(&mut *self.conn()?))
    }

    /// A document with its kind, office and every chunk, read in one snapshot.
    fn load(&self, tx: &mut Transaction<'_>, id: DocId) -> Result<Option<Loaded>, PgError> {
        let idb = id.as_bytes().as_slice();
        let Some(row) = tx
            .query_opt(
                "SELECT label, snapshot, seq FROM docs WHERE id = $1",
                &[&idb],
            )
            .map_err(PgError::sql("loading a document"))?
        else {
            return Ok(None);
        };
        let label: Vec<u8> = row.get(0);
        let snapshot: Vec<u8> = row.get(1);
        let label: [String; 2] =
            serde_json::from_slice(&self.keys.open("docs.label", idb, &label)?)
                .map_err(|_| PgError::Corrupt("a document label"))?;
        let [kind, office] = label;
        let mut chunks = vec![self.keys.open("docs.snapshot", idb, &snapshot)?];
        for r in tx
            .query(
                "SELECT data FROM changes WHERE doc_id = $1 ORDER BY n",
                &[&idb],
            )
            .map_err(PgError::sql("loading a document"))?
        {
            chunks.push(
                self.keys
                    .open("changes.data", idb, &r.get::<_, Vec<u8>>(0))?,
            );
        }
        Ok(Some(Loaded {
            kind,
            office,
            chunks,
            seq: row.get(2),
        }))
    }

    fn snapshot_tx<'c>(c: &'c mut Conn) -> Result<Transaction<'c>, PgError> {
        c.build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(PgError::sql("starting a read"))
    }

    /// Computes the heads and sharing keys of every document written since they were
    /// last derived (an append over a concurrent write, or an insert that met an
    /// existing document), and stores them where the document was not written since.
    fn ensure_derived(&self, c: &mut Conn) -> Result<(), PgError> {
        let stale = c
            .query(
                "SELECT id FROM docs WHERE heads IS NULL OR keys_seq IS NULL OR keys_seq <> seq",
                &[],
            )
            .map_err(PgError::sql("finding documents to derive"))?;
        for row in stale {
            let id = doc_id(row.get::<_, &[u8]>(0))?;
            let loaded = {
                let mut tx = Self::snapshot_tx(c)?;
                let l = self.load(&mut tx, id)?;
                tx.commit().map_err(PgError::sql("loading a document"))?;
                l
            };
            let Some(d) = loaded else { continue };
            let doc = load_chunks(&d.chunks)
                .map_err(|_| PgError::Corrupt("a stored document does not load"))?;
            let heads = musubi_engine::sync::frame::heads_of(&doc);
            let keys = share_keys(&doc, &d.kind);
            let (person, subject, valid) = self.key_columns(&keys);
            c.execute(
                "UPDATE docs SET heads = $1, person_tag = $2, subject_ref = $3, reg_valid = $4,
                                 keys_seq = $5
                 WHERE id = $6 AND seq = $5",
                &[
                    &pack_heads(&heads),
                    &person,
                    &subject,
                    &valid,
                    &d.seq,
                    &id.as_bytes().as_slice(),
                ],
            )
            .map_err(PgError::sql("storing derived keys"))?;
        }
        Ok(())
    }

    fn key_columns(&self, keys: &ShareKeys) -> (Option<Vec<u8>>, Option<Vec<u8>>, bool) {
        (
            keys.person.as_deref().map(|p| self.keys.tag("person", p)),
            keys.subject_ref.map(|s| s.as_bytes().to_vec()),
            keys.reg_valid,
        )
    }

    fn entries(rows: Vec<postgres::Row>) -> Result<Vec<CatalogEntry>, PgError> {
        rows.into_iter()
            .map(|r| {
                Ok(CatalogEntry {
                    id: doc_id(r.get::<_, &[u8]>(0))?,
                    heads: decode_heads(r.get(1))?,
                })
            })
            .collect()
    }

    fn changed_for_peer_pg(
        &self,
        c: &mut impl GenericClient,
        peer: &str,
        since: u64,
        offices: &[String],
        ignore_states: bool,
    ) -> Result<Vec<CatalogEntry>, PgError> {
        if offices.is_empty() {
            return Ok(Vec::new());
        }
        let rows = c
            .query(
                "SELECT d.id, d.heads FROM docs d
                 WHERE d.seq > $1 AND d.office_tag = ANY($2)
                   AND ($4 OR NOT EXISTS (SELECT 1 FROM sync_states s
                         WHERE s.peer = $3 AND s.doc_id = d.id AND s.synced_seq >= d.seq))
                 ORDER BY d.id",
                &[
                    &to_i64(since),
                    &self.office_tags(offices),
                    &peer,
                    &ignore_states,
                ],
            )
            .map_err(PgError::sql("listing changed documents"))?;
        Self::entries(rows)
    }

    /// The catalog digest of `offices` from the per-office digests the trigger keeps
    /// (migration 4), after deriving heads not known yet (which adds their parts).
    fn catalog_digest_pg(
        &self,
        c: &mut impl GenericClient,
        offices: &[String],
    ) -> Result<[u8; 32], PgError> {
        let mut digest = [0u8; 32];
        if offices.is_empty() {
            return Ok(digest);
        }
        let rows = c
            .query(
                "SELECT d0, d1, d2, d3 FROM office_digest WHERE office_tag = ANY($1)",
                &[&self.office_tags(offices)],
            )
            .map_err(PgError::sql("reading the catalog digest"))?;
        for row in rows {
            let mut part = [0u8; 32];
            for (i, chunk) in part.chunks_exact_mut(8).enumerate() {
                chunk.copy_from_slice(&row.get::<_, i64>(i).to_be_bytes());
            }
            musubi_engine::sync::xor_into(&mut digest, &part);
        }
        Ok(digest)
    }

    fn catalog_pg(&self, offices: &[String]) -> Result<Vec<CatalogEntry>, PgError> {
        if offices.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn()?;
        self.ensure_derived(&mut c)?;
        let rows = c
            .query(
                "SELECT id, heads FROM docs WHERE office_tag = ANY($1) ORDER BY id",
                &[&self.office_tags(offices)],
            )
            .map_err(PgError::sql("reading the catalog"))?;
        Self::entries(rows)
    }

    fn lookup_pg(&self, ids: &[DocId]) -> Result<Vec<(DocId, String, Heads)>, PgError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn()?;
        self.ensure_derived(&mut c)?;
        let wanted: Vec<&[u8]> = ids.iter().map(|i| i.as_bytes().as_slice()).collect();
        let mut found = HashMap::new();
        for r in c
            .query(
                "SELECT id, label, heads FROM docs WHERE id = ANY($1)",
                &[&wanted],
            )
            .map_err(PgError::sql("looking up documents"))?
        {
            let idb: &[u8] = r.get(0);
            let id = doc_id(idb)?;
            let label: [String; 2] =
                serde_json::from_slice(&self.keys.open("docs.label", idb, r.get::<_, &[u8]>(1))?)
                    .map_err(|_| PgError::Corrupt("a document label"))?;
            let [_, office] = label;
            found.insert(id, (office, decode_heads(r.get(2))?));
        }
        Ok(ids
            .iter()
            .filter_map(|id| found.get(id).map(|(o, h)| (*id, o.clone(), h.clone())))
            .collect())
    }

    fn peer_pg(&self, c: &mut impl GenericClient, peer: &str) -> Result<PeerRecord, PgError> {
        let row = c
            .query_opt(
                "SELECT epoch, cursor, pushed_seq, last_ok_ms FROM sync_peers WHERE peer = $1",
                &[&peer],
            )
            .map_err(PgError::sql("reading a sync peer"))?;
        Ok(row
            .map(|r| PeerRecord {
                epoch: r.get(0),
                cursor: to_u64(r.get(1)),
                pushed_seq: to_u64(r.get(2)),
                last_ok_ms: r.get(3),
            })
            .unwrap_or_default())
    }

    fn load_for_sync_pg(&self, peer: &str, id: DocId) -> Result<Option<SyncDocRecord>, PgError> {
        let mut c = self.conn()?;
        let mut tx = Self::snapshot_tx(&mut c)?;
        let Some(d) = self.load(&mut tx, id)? else {
            return Ok(None);
        };
        let state = tx
            .query_opt(
                "SELECT state FROM sync_states WHERE peer = $1 AND doc_id = $2",
                &[&peer, &id.as_bytes().as_slice()],
            )
            .map_err(PgError::sql("reading a sync state"))?
            .map(|r| r.get::<_, Vec<u8>>(0));
        tx.commit().map_err(PgError::sql("reading a document"))?;
        Ok(Some(SyncDocRecord {
            kind: d.kind,
            office: d.office,
            chunks: d.chunks,
            sync_state: state,
            seq: to_u64(d.seq),
        }))
    }

    fn actor_bindings_pg(&self, actors: &[Vec<u8>]) -> Result<Vec<ActorBinding>, PgError> {
        if actors.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn()?;
        let mut found = HashMap::new();
        for r in c
            .query(
                "SELECT actor, device, device_name FROM actors WHERE actor = ANY($1)",
                &[&actors],
            )
            .map_err(PgError::sql("reading actor bindings"))?
        {
            let actor: Vec<u8> = r.get(0);
            let name = match r.get::<_, Option<Vec<u8>>>(2) {
                Some(sealed) => Some(self.keys.open_str("actors.device_name", &actor, &sealed)?),
                None => None,
            };
            found.insert(actor, (r.get::<_, String>(1), name));
        }
        Ok(actors
            .iter()
            .filter_map(|a| {
                found.get(a).map(|(device, name)| ActorBinding {
                    actor: a.clone(),
                    device: device.clone(),
                    device_name: name.clone(),
                })
            })
            .collect())
    }

    fn cert_person_pg(&self, fingerprint: &str) -> Result<Option<String>, PgError> {
        let tag = self.keys.tag("cert", fingerprint);
        let row = self
            .conn()?
            .query_opt(
                "SELECT person FROM cert_bindings WHERE cert_tag = $1",
                &[&tag],
            )
            .map_err(PgError::sql("reading a card certificate binding"))?;
        row.map(|r| {
            self.keys
                .open_str("cert_bindings.person", &tag, r.get::<_, &[u8]>(0))
        })
        .transpose()
    }

    fn shared_for_peer_pg(
        &self,
        c: &mut impl GenericClient,
        peer: &str,
        offices: &[String],
        ignore_states: bool,
    ) -> Result<SharedDocs, PgError> {
        if offices.is_empty() {
            return Ok(SharedDocs::default());
        }
        let registration = self.keys.tag("kind", REGISTRATION_KIND);
        let tags = self.office_tags(offices);
        // The registrations alone first: offices without a valid one with card evidence
        // share nothing, and the query below would run for nothing.
        let any: bool = c
            .query_one(
                &format!("SELECT EXISTS ({SHARING_PERSONS})"),
                &[&registration, &tags],
            )
            .map_err(PgError::sql("listing shared documents"))?
            .get(0);
        if !any {
            return Ok(SharedDocs::default());
        }
        // The rule of musubi_engine::sync::sharing::shared_ids: the persons of subjects
        // that a valid registration of `offices`, attested for that very person, points
        // at; then every non-registration document of other offices whose person (its
        // own, else its subject's) is one of them.
        let rows = c
            .query(
                &format!(
                    "WITH persons AS ({SHARING_PERSONS})
                     SELECT d.id, d.heads,
                            EXISTS (SELECT 1 FROM sync_states st
                                    WHERE st.peer = $3 AND st.doc_id = d.id
                                      AND st.synced_seq >= d.seq)
                     FROM docs d LEFT JOIN docs ds ON ds.id = d.subject_ref
                     WHERE d.kind_tag <> $1 AND NOT (d.office_tag = ANY($2))
                       AND coalesce(d.person_tag, ds.person_tag) IN (SELECT p FROM persons)
                     ORDER BY d.id"
                ),
                &[&registration, &tags, &peer],
            )
            .map_err(PgError::sql("listing shared documents"))?;
        let mut out = SharedDocs::default();
        for r in rows {
            let id = doc_id(r.get::<_, &[u8]>(0))?;
            out.ids.insert(id);
            if ignore_states || !r.get::<_, bool>(2) {
                out.changed.push(CatalogEntry {
                    id,
                    heads: decode_heads(r.get(1))?,
                });
            }
        }
        Ok(out)
    }

    fn usage_pg(&self, office: &str, peer: &str) -> Result<Usage, PgError> {
        let mut c = self.conn()?;
        let (office_docs, office_bytes) = c
            .query_opt(
                "SELECT docs, bytes FROM office_usage WHERE office_tag = $1",
                &[&self.keys.tag("office", office)],
            )
            .map_err(PgError::sql("reading storage usage"))?
            .map_or((0, 0), |r| (r.get::<_, i64>(0), r.get::<_, i64>(1)));
        let (peer_docs, peer_bytes) = c
            .query_opt(
                "SELECT docs, bytes FROM peer_usage WHERE peer = $1",
                &[&peer],
            )
            .map_err(PgError::sql("reading storage usage"))?
            .map_or((0, 0), |r| (r.get::<_, i64>(0), r.get::<_, i64>(1)));
        Ok(Usage {
            office_docs: to_u64(office_docs),
            office_bytes: to_u64(office_bytes),
            peer_docs: to_u64(peer_docs),
            peer_bytes: to_u64(peer_bytes),
        })
    }

    fn check_batch(batch: &SyncBatch) -> Result<(), PgError> {
        // A snapshot to insert loads by its type (`Snapshot`); change chunks are checked.
        for write in &batch.writes {
            if let SyncWrite::Append { changes, .. } = write {
                for c in changes.iter().filter(|c| !c.is_empty()) {
                    checks::check_chunk(c).map_err(|e| PgError::Refused(e.to_string()))?;
                }
            }
        }
        Ok(())
    }

    fn commit_pg(&self, batch: &SyncBatch) -> Result<(), PgError> {
        if batch.is_empty() {
            return Ok(());
        }
        Self::check_batch(batch)?;
        let now_ms = now_ms();
        let mut c = self.conn()?;
        let mut tx = c
            .transaction()
            .map_err(PgError::sql("starting a transaction"))?;
        if batch.reset_peer {
            tx.execute("DELETE FROM sync_states WHERE peer = $1", &[&batch.peer])
                .map_err(PgError::sql("resetting sync states"))?;
        }
        let doc_writes = batch
            .writes
            .iter()
            .filter(|w| matches!(w, SyncWrite::Insert { .. } | SyncWrite::Append { .. }))
            .count();
        // The sequence numbers of this batch, under the counter row's lock (held until
        // commit): batches that write documents commit one after the other, in order.
        let mut seq: i64 = if doc_writes > 0 {
            let n = i64::try_from(doc_writes).unwrap_or(i64::MAX);
            let last: i64 = tx
                .query_one(
                    "UPDATE seq_counter SET value = value + $1 RETURNING value",
                    &[&n],
                )
                .map_err(PgError::sql("taking sequence numbers"))?
                .get(0);
            last - n + 1
        } else {
            0
        };
        // Usage counters: (documents, bytes) added per office tag and for the peer.
        let mut office_usage: HashMap<Vec<u8>, (i64, i64)> = HashMap::new();
        let (mut peer_docs, mut peer_bytes) = (0i64, 0i64);
        let len = |b: &[u8]| i64::try_from(b.len()).unwrap_or(i64::MAX);
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
                    let idb = id.as_bytes().as_slice();
                    let existing = tx
                        .query_opt(
                            "SELECT office_tag FROM docs WHERE id = $1 FOR UPDATE",
                            &[&idb],
                        )
                        .map_err(PgError::sql("writing synced documents"))?
                        .map(|r| r.get::<_, Vec<u8>>(0));
                    peer_bytes = peer_bytes.saturating_add(len(bytes.as_bytes()));
                    let u = office_usage
                        .entry(
                            existing
                                .clone()
                                .unwrap_or_else(|| self.keys.tag("office", office)),
                        )
                        .or_default();
                    u.1 = u.1.saturating_add(len(bytes.as_bytes()));
                    if existing.is_none() {
                        u.0 += 1;
                        peer_docs += 1;
                    }
                    if existing.is_some() {
                        // Another writer got there first: keep both by appending the whole
                        // save as a change chunk (loading deduplicates).
                        tx.execute(
                            "INSERT INTO changes (doc_id, data) VALUES ($1, $2)",
                            &[
                                &idb,
                                &self.keys.seal("changes.data", idb, bytes.as_bytes())?,
                            ],
                        )
                        .map_err(PgError::sql("writing synced documents"))?;
                        tx.execute(
                            "UPDATE docs SET seq = $1, heads = NULL, keys_seq = NULL WHERE id = $2",
                            &[&seq, &idb],
                        )
                        .map_err(PgError::sql("writing synced documents"))?;
                    } else {
                        let label = serde_json::to_vec(&[kind, office])
                            .map_err(|_| PgError::Corrupt("a document label"))?;
                        let (person, subject, valid) = self.key_columns(keys);
                        tx.execute(
                            "INSERT INTO docs (id, kind_tag, office_tag, label, title, snapshot,
                                               seq, heads, person_tag, subject_ref, reg_valid,
                                               keys_seq)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $7)",
                            &[
                                &idb,
                                &self.keys.tag("kind", kind),
                                &self.keys.tag("office", office),
                                &self.keys.seal("docs.label", idb, &label)?,
                                &self.keys.seal("docs.title", idb, title.as_bytes())?,
                                &self.keys.seal("docs.snapshot", idb, bytes.as_bytes())?,
                                &seq,
                                &pack_heads(heads),
                                &person,
                                &subject,
                                &valid,
                            ],
                        )
                        .map_err(PgError::sql("writing synced documents"))?;
                    }
                    seq += 1;
                }
                SyncWrite::Append {
                    id,
                    changes,
                    heads,
                    base_seq,
                    title,
                    keys,
                } => {
                    let idb = id.as_bytes().as_slice();
                    let (person, subject, valid) = self.key_columns(keys);
                    // Heads and keys hold only for exactly the state the session loaded;
                    // SET expressions read the row as it was before this update.
                    let updated = tx
                        .query_opt(
                            "UPDATE docs SET title = $1, seq = $2::bigint,
                                 heads = CASE WHEN seq = $3::bigint THEN $4::bytea END,
                                 person_tag = $5, subject_ref = $6, reg_valid = $7,
                                 keys_seq = CASE WHEN seq = $3::bigint THEN $2::bigint END
                             WHERE id = $8 RETURNING office_tag",
                            &[
                                &self.keys.seal("docs.title", idb, title.as_bytes())?,
                                &seq,
                                &to_i64(*base_seq),
                                &pack_heads(heads),
                                &person,
                                &subject,
                                &valid,
                                &idb,
                            ],
                        )
                        .map_err(PgError::sql("writing synced changes"))?;
                    let Some(updated) = updated else {
                        return Err(PgError::Refused(format!(
                            "changes for document {} that this store does not have",
                            id.short()
                        )));
                    };
                    let added = changes
                        .iter()
                        .map(|c| len(c))
                        .fold(0i64, i64::saturating_add);
                    let u = office_usage
                        .entry(updated.get::<_, Vec<u8>>(0))
                        .or_default();
                    u.1 = u.1.saturating_add(added);
                    peer_bytes = peer_bytes.saturating_add(added);
                    for data in changes.iter().filter(|c| !c.is_empty()) {
                        tx.execute(
                            "INSERT INTO changes (doc_id, data) VALUES ($1, $2)",
                            &[&idb, &self.keys.seal("changes.data", idb, data)?],
                        )
                        .map_err(PgError::sql("writing synced changes"))?;
                    }
                    seq += 1;
                }
                SyncWrite::State {
                    id,
                    state,
                    in_sync,
                    heads,
                } => {
                    let idb = id.as_bytes().as_slice();
                    // In sync at the document's current seq only if the store holds
                    // exactly the heads the peer has.
                    let synced: i64 = if *in_sync {
                        tx.query_opt(
                            "SELECT seq FROM docs WHERE id = $1 AND heads = $2",
                            &[&idb, &pack_heads(heads)],
                        )
                        .map_err(PgError::sql("writing a sync state"))?
                        .map_or(0, |r| r.get(0))
                    } else {
                        0
                    };
                    tx.execute(
                        "INSERT INTO sync_states (peer, doc_id, state, synced_seq)
                         VALUES ($1, $2, $3, $4)
                         ON CONFLICT (peer, doc_id)
                         DO UPDATE SET state = excluded.state, synced_seq = excluded.synced_seq",
                        &[&batch.peer, &idb, state, &synced],
                    )
                    .map_err(PgError::sql("writing a sync state"))?;
                }
                SyncWrite::Evidence { id, verdict } => {
                    // The first binding of a card certificate stays; a verdict for another
                    // person is not kept, so the registration grants nothing.
                    let cert = self.keys.tag("cert", &verdict.cert_fingerprint);
                    let person = self.keys.tag("person", &verdict.person);
                    tx.execute(
                        "INSERT INTO cert_bindings (cert_tag, person_tag, person)
                         VALUES ($1, $2, $3) ON CONFLICT (cert_tag) DO NOTHING",
                        &[
                            &cert,
                            &person,
                            &self.keys.seal(
                                "cert_bindings.person",
                                &cert,
                                verdict.person.as_bytes(),
                            )?,
                        ],
                    )
                    .map_err(PgError::sql("binding a card certificate"))?;
                    tx.execute(
                        "INSERT INTO reg_evidence (doc_id, person_tag, cert_tag, device)
                         SELECT $1, $2, $3, $4
                         WHERE (SELECT person_tag FROM cert_bindings WHERE cert_tag = $3) = $2
                         ON CONFLICT (doc_id) DO NOTHING",
                        &[&id.as_bytes().as_slice(), &person, &cert, &verdict.device],
                    )
                    .map_err(PgError::sql("keeping verified card evidence"))?;
                }
                SyncWrite::BindActor {
                    actor,
                    device,
                    device_name,
                } => {
                    let name = device_name
                        .as_deref()
                        .map(|n| self.keys.seal("actors.device_name", actor, n.as_bytes()))
                        .transpose()?;
                    tx.execute(
                        "INSERT INTO actors (actor, device, device_name, first_seen_ms)
                         VALUES ($1, $2, $3, $4) ON CONFLICT (actor) DO NOTHING",
                        &[actor, device, &name, &now_ms],
                    )
                    .map_err(PgError::sql("binding an actor"))?;
                }
            }
        }
        for (tag, (docs, bytes)) in &office_usage {
            tx.execute(
                "INSERT INTO office_usage (office_tag, docs, bytes) VALUES ($1, $2, $3)
                 ON CONFLICT (office_tag) DO UPDATE SET docs = office_usage.docs + excluded.docs,
                                                        bytes = office_usage.bytes + excluded.bytes",
                &[tag, docs, bytes],
            )
            .map_err(PgError::sql("counting storage usage"))?;
        }
        if peer_docs > 0 || peer_bytes > 0 {
            tx.execute(
                "INSERT INTO peer_usage (peer, docs, bytes) VALUES ($1, $2, $3)
                 ON CONFLICT (peer) DO UPDATE SET docs = peer_usage.docs + excluded.docs,
                                                  bytes = peer_usage.bytes + excluded.bytes",
                &[&batch.peer, &peer_docs, &peer_bytes],
            )
            .map_err(PgError::sql("counting storage usage"))?;
        }
        if let Some(rec) = &batch.peer_record {
            tx.execute(
                "INSERT INTO sync_peers (peer, epoch, cursor, pushed_seq, last_ok_ms)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (peer) DO UPDATE SET epoch = excluded.epoch,
                    cursor = excluded.cursor, pushed_seq = excluded.pushed_seq,
                    last_ok_ms = excluded.last_ok_ms",
                &[
                    &batch.peer,
                    &rec.epoch,
                    &to_i64(rec.cursor),
                    &to_i64(rec.pushed_seq),
                    &rec.last_ok_ms,
                ],
            )
            .map_err(PgError::sql("writing a sync peer"))?;
        }
        tx.commit().map_err(PgError::sql("committing synced data"))
    }
}

impl Drop for PgStorage {
    fn drop(&mut self) {
        // Closing a connection blocks on its own small runtime: never inside another.
        if let Some(pool) = self.pool.take() {
            outside_runtime(move || drop(pool));
        }
    }
}

/// Runs `f` where the synchronous client may block: on this thread, or, when this thread
/// is inside a tokio runtime (the relay's async code, or its `block_in_place` sections), on
/// a short-lived thread of its own (the client drives each connection with a small
/// runtime of its own, which may not start inside another).
fn outside_runtime<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// The persons whose documents a valid registration of the offices `$2` shares (the
/// registration kind tag is `$1`): the subject's person, attested by the card evidence
/// the relay kept.
const SHARING_PERSONS: &str = "SELECT s.person_tag AS p
     FROM docs r JOIN docs s ON s.id = r.subject_ref
       JOIN reg_evidence e ON e.doc_id = r.id AND e.person_tag = s.person_tag
     WHERE r.kind_tag = $1 AND r.reg_valid AND r.office_tag = ANY($2)
       AND s.person_tag IS NOT NULL";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn load_chunks(chunks: &[Vec<u8>]) -> Result<automerge::Automerge, automerge::AutomergeError> {
    let Some((first, rest)) = chunks.split_first() else {
        return Ok(automerge::Automerge::new());
    };
    let mut doc = automerge::Automerge::load(first)?;
    for c in rest {
        doc.load_incremental(c)?;
    }
    Ok(doc)
}

impl SyncStorage for PgStorage {
    fn store_id(&self) -> String {
        self.store_id.clone()
    }

    fn current_seq(&self) -> Result<u64, StorageError> {
        outside_runtime(|| Self::current_seq_pg(&mut *self.conn()?)).map_err(storage_err)
    }

    fn changed_for_peer(
        &self,
        peer: &str,
        since: u64,
        offices: &[String],
        ignore_states: bool,
    ) -> Result<Vec<CatalogEntry>, StorageError> {
        outside_runtime(|| {
            let mut c = self.derived_conn()?;
            self.changed_for_peer_pg(&mut *c, peer, since, offices, ignore_states)
        })
        .map_err(storage_err)
    }

    fn catalog(&self, offices: &[String]) -> Result<Vec<CatalogEntry>, StorageError> {
        outside_runtime(|| self.catalog_pg(offices)).map_err(storage_err)
    }

    fn catalog_digest(&self, offices: &[String]) -> Result<[u8; 32], StorageError> {
        outside_runtime(|| self.catalog_digest_pg(&mut *self.derived_conn()?, offices))
            .map_err(storage_err)
    }

    fn lookup(&self, ids: &[DocId]) -> Result<Vec<(DocId, String, Heads)>, StorageError> {
        outside_runtime(|| self.lookup_pg(ids)).map_err(storage_err)
    }

    fn peer(&self, peer: &str) -> Result<PeerRecord, StorageError> {
        outside_runtime(|| self.peer_pg(&mut *self.conn()?, peer)).map_err(storage_err)
    }

    fn load_for_sync(&self, peer: &str, id: DocId) -> Result<Option<SyncDocRecord>, StorageError> {
        outside_runtime(|| self.load_for_sync_pg(peer, id)).map_err(storage_err)
    }

    fn actor_owner(&self, actor: &[u8]) -> Result<Option<String>, StorageError> {
        outside_runtime(|| Self::actor_owner_pg(&mut *self.conn()?, actor)).map_err(storage_err)
    }

    fn actor_bindings(&self, actors: &[Vec<u8>]) -> Result<Vec<ActorBinding>, StorageError> {
        outside_runtime(|| self.actor_bindings_pg(actors)).map_err(storage_err)
    }

    fn cert_person(&self, fingerprint: &str) -> Result<Option<String>, StorageError> {
        outside_runtime(|| self.cert_person_pg(fingerprint)).map_err(storage_err)
    }

    fn shared_for_peer(
        &self,
        peer: &str,
        offices: &[String],
        ignore_states: bool,
    ) -> Result<SharedDocs, StorageError> {
        outside_runtime(|| {
            let mut c = self.derived_conn()?;
            self.shared_for_peer_pg(&mut *c, peer, offices, ignore_states)
        })
        .map_err(storage_err)
    }

    fn usage(&self, office: &str, peer: &str) -> Result<Usage, StorageError> {
        outside_runtime(|| self.usage_pg(office, peer)).map_err(storage_err)
    }

    fn commit(&self, batch: SyncBatch) -> Result<(), StorageError> {
        outside_runtime(|| self.commit_pg(&batch)).map_err(storage_err)
    }

    fn session_start(&self, q: &StartQuery) -> Result<StartReads, StorageError> {
        // One pooled connection and one derivation for all the reads, instead of a
        // checkout (and, for three of them, a derivation query) per read.
        outside_runtime(|| {
            let mut on = StartOn {
                pg: self,
                c: self.derived_conn()?,
            };
            read_start(&mut on, q)
        })
        .map_err(storage_err)
    }
}

/// The reads a session starts with, on one connection of the pool.
struct StartOn<'a> {
    pg: &'a PgStorage,
    c: Conn,
}

impl StartSource for StartOn<'_> {
    type Error = PgError;
    fn peer(&mut self, peer: &str) -> Result<PeerRecord, PgError> {
        self.pg.peer_pg(&mut *self.c, peer)
    }
    fn current_seq(&mut self) -> Result<u64, PgError> {
        PgStorage::current_seq_pg(&mut *self.c)
    }
    fn changed_for_peer(
        &mut self,
        peer: &str,
        since: u64,
        offices: &[String],
        ignore_states: bool,
    ) -> Result<Vec<CatalogEntry>, PgError> {
        self.pg
            .changed_for_peer_pg(&mut *self.c, peer, since, offices, ignore_states)
    }
    fn catalog_digest(&mut self, offices: &[String]) -> Result<[u8; 32], PgError> {
        self.pg.catalog_digest_pg(&mut *self.c, offices)
    }
    fn actor_owner(&mut self, actor: &[u8]) -> Result<Option<String>, PgError> {
        PgStorage::actor_owner_pg(&mut *self.c, actor)
    }
    fn shared_for_peer(
        &mut self,
        peer: &str,
        offices: &[String],
        ignore_states: bool,
    ) -> Result<SharedDocs, PgError> {
        self.pg
            .shared_for_peer_pg(&mut *self.c, peer, offices, ignore_states)
    }
}
