-- Schema v2: a covering index for the document list.
-- Listing used to scan the docs table, whose rows carry the snapshot inline: with
-- SQLCipher every page is decrypted and authenticated, so listing 10,000 documents read
-- ~40 MB. The index holds only the listed columns, in listing order.
CREATE INDEX docs_listing ON docs(updated_at DESC, id, kind, office, title, created_at);
