-- Schema v1 of the musubi relay on PostgreSQL (relay-pg/src/lib.rs).
-- Every value that is or may be personal data is sealed (AES-256-GCM under the relay's
-- data key, 12-byte nonce first) before it reaches the database; the columns the relay
-- queries by (office, kind, person key, card certificate) hold HMAC-SHA256 tags under a
-- separate index key. Document ids, automerge heads and device ids are random or hashes
-- and stay in the clear.

-- Small settings: store_id (the relay store's epoch, one for every node), key_check.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- The global sequence: every document write takes the next numbers under this row's lock,
-- so writes commit in sequence order at every node and a cursor never skips one.
CREATE TABLE seq_counter (
    one   BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    value BIGINT NOT NULL
);
INSERT INTO seq_counter (one, value) VALUES (true, 0);

CREATE TABLE docs (
    id          BYTEA PRIMARY KEY,
    kind_tag    BYTEA NOT NULL,   -- HMAC of the kind
    office_tag  BYTEA NOT NULL,   -- HMAC of the office number
    label       BYTEA NOT NULL,   -- sealed [kind, office]
    title       BYTEA NOT NULL,   -- sealed listing title
    snapshot    BYTEA NOT NULL,   -- sealed Automerge::save()
    seq         BIGINT NOT NULL,
    heads       BYTEA,            -- sorted heads, NULL until computed
    person_tag  BYTEA,            -- HMAC of the sharing person key
    subject_ref BYTEA,            -- the subject document pointed at
    reg_valid   BOOLEAN NOT NULL DEFAULT false,
    keys_seq    BIGINT            -- seq the sharing keys were derived at
);
CREATE INDEX docs_by_seq ON docs (seq);
CREATE INDEX docs_by_office ON docs (office_tag, id);
CREATE INDEX docs_by_person ON docs (person_tag) WHERE person_tag IS NOT NULL;
CREATE INDEX docs_by_subject_ref ON docs (subject_ref) WHERE subject_ref IS NOT NULL;
CREATE INDEX docs_stale ON docs (id)
    WHERE heads IS NULL OR keys_seq IS NULL OR keys_seq <> seq;

-- Change chunks appended since the snapshot, in insertion order.
CREATE TABLE changes (
    n      BIGSERIAL PRIMARY KEY,
    doc_id BYTEA NOT NULL REFERENCES docs (id),
    data   BYTEA NOT NULL            -- sealed
);
CREATE INDEX changes_by_doc ON changes (doc_id, n);

CREATE TABLE sync_peers (
    peer       TEXT PRIMARY KEY,
    epoch      TEXT,
    cursor     BIGINT NOT NULL DEFAULT 0,
    pushed_seq BIGINT NOT NULL DEFAULT 0,
    last_ok_ms BIGINT
);

CREATE TABLE sync_states (
    peer       TEXT NOT NULL,
    doc_id     BYTEA NOT NULL,
    state      BYTEA NOT NULL,
    synced_seq BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (peer, doc_id)
);

CREATE TABLE actors (
    actor         BYTEA PRIMARY KEY,
    device        TEXT NOT NULL,
    device_name   BYTEA,             -- sealed
    first_seen_ms BIGINT NOT NULL
);

CREATE TABLE reg_evidence (
    doc_id     BYTEA PRIMARY KEY,
    person_tag BYTEA NOT NULL,
    cert_tag   BYTEA NOT NULL,
    device     TEXT NOT NULL
);

CREATE TABLE cert_bindings (
    cert_tag   BYTEA PRIMARY KEY,
    person_tag BYTEA NOT NULL,
    person     BYTEA NOT NULL        -- sealed person key
);
