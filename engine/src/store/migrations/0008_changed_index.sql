-- Schema v8: the documents of an office changed since a sequence number, from one index.
-- `docs_by_seq` alone makes a session read every document written since its cursor, in
-- every office (after a burst of pushes from other offices, thousands for a no-op);
-- `docs_catalog` (office, id) made it read every document of its office and each one's
-- `seq` from behind the snapshot. This index answers "office = ? AND seq > ?" with the id
-- and heads in it, so the rows read are the office's changes and nothing else.
CREATE INDEX docs_changed ON docs(office, seq, id, heads);
