-- Schema v1 of the musubi local store.
-- One row per automerge document: the latest snapshot (Automerge::save()) plus metadata.
-- Times are unix milliseconds. `title` is personal data; it lives only in this encrypted
-- database, never in logs or store.toml.
CREATE TABLE docs (
    id         BLOB PRIMARY KEY NOT NULL,
    kind       TEXT NOT NULL,
    office     TEXT NOT NULL,
    title      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    snapshot   BLOB NOT NULL
) STRICT;

-- Raw change chunks appended since the snapshot, in insertion order (rowid).
-- Compaction folds them into docs.snapshot and deletes them, in one transaction.
CREATE TABLE changes (
    rowid  INTEGER PRIMARY KEY,
    doc_id BLOB NOT NULL REFERENCES docs(id),
    data   BLOB NOT NULL
) STRICT;

CREATE INDEX changes_by_doc ON changes(doc_id);

-- Small non-document settings of the store itself.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;
