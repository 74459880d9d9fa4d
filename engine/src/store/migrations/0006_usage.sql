-- Schema v6: storage used, for the relay's quotas (issue 15), kept as counters so a
-- session reads them instead of scanning the documents.
-- office_usage: documents and stored bytes (snapshot + change chunks, as stored) of each
--   office, maintained by the triggers below on every write path (local edits, synced
--   batches, compaction), in the writing transaction.
-- peer_usage: documents inserted and bytes written (snapshots and change chunks) by sync
--   batches of each peer (on the relay: a device id), maintained by the sync commit.
--   Writes made before this version are not attributed to any peer.
CREATE TABLE office_usage (
    office TEXT PRIMARY KEY NOT NULL,
    docs   INTEGER NOT NULL DEFAULT 0,
    bytes  INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE TABLE peer_usage (
    peer   TEXT PRIMARY KEY NOT NULL,
    docs   INTEGER NOT NULL DEFAULT 0,
    bytes  INTEGER NOT NULL DEFAULT 0
) STRICT;

-- Backfill from what is stored.
INSERT INTO office_usage (office, docs, bytes)
    SELECT d.office, count(*), sum(length(d.snapshot)) FROM docs d GROUP BY d.office;
UPDATE office_usage SET bytes = bytes + coalesce(
    (SELECT sum(length(c.data)) FROM changes c JOIN docs d ON d.id = c.doc_id
     WHERE d.office = office_usage.office), 0);

CREATE TRIGGER usage_doc_insert AFTER INSERT ON docs BEGIN
    INSERT INTO office_usage (office, docs, bytes) VALUES (NEW.office, 1, length(NEW.snapshot))
    ON CONFLICT (office) DO UPDATE SET docs = docs + 1, bytes = bytes + excluded.bytes;
END;
CREATE TRIGGER usage_doc_delete AFTER DELETE ON docs BEGIN
    UPDATE office_usage SET docs = docs - 1, bytes = bytes - length(OLD.snapshot)
    WHERE office = OLD.office;
END;
CREATE TRIGGER usage_doc_snapshot AFTER UPDATE OF snapshot, office ON docs BEGIN
    UPDATE office_usage SET docs = docs - 1, bytes = bytes - length(OLD.snapshot)
    WHERE office = OLD.office;
    INSERT INTO office_usage (office, docs, bytes) VALUES (NEW.office, 1, length(NEW.snapshot))
    ON CONFLICT (office) DO UPDATE SET docs = docs + 1, bytes = bytes + excluded.bytes;
END;
CREATE TRIGGER usage_change_insert AFTER INSERT ON changes BEGIN
    UPDATE office_usage SET bytes = bytes + length(NEW.data)
    WHERE office = (SELECT office FROM docs WHERE id = NEW.doc_id);
END;
CREATE TRIGGER usage_change_delete AFTER DELETE ON changes BEGIN
    UPDATE office_usage SET bytes = bytes - length(OLD.data)
    WHERE office = (SELECT office FROM docs WHERE id = OLD.doc_id);
END;
