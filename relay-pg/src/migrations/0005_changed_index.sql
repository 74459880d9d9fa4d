-- Schema v5: the documents of an office changed since a sequence number, from one index
-- (as SQLCipher schema v8): a session reads its office's changes since its cursor, not
-- every office's changes (`docs_by_seq`) nor every document of its office
-- (`docs_by_office`).
CREATE INDEX docs_changed ON docs (office_tag, seq) INCLUDE (id, heads);
