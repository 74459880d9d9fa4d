-- Schema v2: storage used, for the relay's quotas, kept as counters maintained by every
-- sync commit (in its transaction) so a session reads them instead of scanning.
-- office_usage: documents and stored bytes (snapshot + change chunks, as the sync core
--   gave them: the sealed length less nonce and tag) per office tag.
-- peer_usage: documents inserted and bytes written by the sync batches of each peer.
--   Writes made before this version are not attributed to any peer.
CREATE TABLE office_usage (
    office_tag BYTEA PRIMARY KEY,
    docs       BIGINT NOT NULL DEFAULT 0,
    bytes      BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE peer_usage (
    peer  TEXT PRIMARY KEY,
    docs  BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0
);
-- Backfill from what is stored (28 bytes of each sealed value are nonce and tag).
INSERT INTO office_usage (office_tag, docs, bytes)
    SELECT d.office_tag, count(*), sum(length(d.snapshot) - 28) FROM docs d GROUP BY d.office_tag;
UPDATE office_usage u SET bytes = u.bytes + coalesce(
    (SELECT sum(length(c.data) - 28) FROM changes c JOIN docs d ON d.id = c.doc_id
     WHERE d.office_tag = u.office_tag), 0);
