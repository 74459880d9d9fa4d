-- Schema v3: what sync needs.
-- docs.seq: a store-wide counter bumped on every write of the document; "changed since
--   cursor N" is then an index range scan, so a sync costs the number of changed documents.
-- docs.heads: the document's automerge heads (concatenated 32-byte hashes, sorted), NULL
--   while not yet computed (written by an older version, or by a plain edit); the store
--   fills them in before it answers a catalog query.
ALTER TABLE docs ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE docs ADD COLUMN heads BLOB;
CREATE INDEX docs_by_seq ON docs(seq);
CREATE INDEX docs_catalog ON docs(office, id, heads);
CREATE INDEX docs_heads_missing ON docs(id) WHERE heads IS NULL;

-- One row per sync peer (the relay for a device; each device for the relay).
-- epoch: the peer's store id its cursor refers to; cursor: the peer's seq up to which we
-- have everything; pushed_seq: our seq up to which the peer has everything.
CREATE TABLE sync_peers (
    peer        TEXT PRIMARY KEY NOT NULL,
    epoch       TEXT,
    cursor      INTEGER NOT NULL DEFAULT 0,
    pushed_seq  INTEGER NOT NULL DEFAULT 0,
    last_ok_ms  INTEGER
) STRICT;

-- automerge sync state per (peer, document), so an interrupted sync resumes.
-- synced_seq: our docs.seq at which the peer was known to have exactly our heads.
CREATE TABLE sync_states (
    peer       TEXT NOT NULL,
    doc_id     BLOB NOT NULL,
    state      BLOB NOT NULL,
    synced_seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (peer, doc_id)
) STRICT, WITHOUT ROWID;

-- Relay: which device first sent changes under an automerge actor.
CREATE TABLE actors (
    actor         BLOB PRIMARY KEY NOT NULL,
    device        TEXT NOT NULL,
    first_seen_ms INTEGER NOT NULL
) STRICT;
