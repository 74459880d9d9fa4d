-- Schema v7: the catalog digest of each office, kept up to date on write.
-- A sync compares catalogs by digest (docs/protocol.md, "Digests"): the XOR over the
-- office's documents of SHA-256(id || heads). Triggers add a document's part when its heads
-- become known and take away the part they replace, so a session reads one row per office
-- instead of the whole catalog. A document whose heads are not known yet (NULL) has no
-- part until the store computes them. musubi_entry and musubi_xor are the store's own SQL
-- functions (store/digest.rs), registered on every connection that writes.
CREATE TABLE office_digest (
    office TEXT PRIMARY KEY NOT NULL,
    digest BLOB NOT NULL
) STRICT;

INSERT INTO office_digest (office, digest)
    SELECT office, musubi_xor_all(musubi_entry(id, heads)) FROM docs
    WHERE heads IS NOT NULL GROUP BY office;

CREATE TRIGGER docs_digest_insert AFTER INSERT ON docs
WHEN NEW.heads IS NOT NULL
BEGIN
    INSERT INTO office_digest (office, digest) VALUES (NEW.office, musubi_entry(NEW.id, NEW.heads))
    ON CONFLICT (office) DO UPDATE SET digest = musubi_xor(digest, excluded.digest);
END;

CREATE TRIGGER docs_digest_update AFTER UPDATE OF heads, office, id ON docs
WHEN OLD.heads IS NOT NEW.heads OR OLD.office IS NOT NEW.office OR OLD.id IS NOT NEW.id
BEGIN
    UPDATE office_digest SET digest = musubi_xor(digest, musubi_entry(OLD.id, OLD.heads))
    WHERE office = OLD.office AND OLD.heads IS NOT NULL;
    INSERT INTO office_digest (office, digest)
        SELECT NEW.office, musubi_entry(NEW.id, NEW.heads) WHERE NEW.heads IS NOT NULL
    ON CONFLICT (office) DO UPDATE SET digest = musubi_xor(digest, excluded.digest);
END;

CREATE TRIGGER docs_digest_delete AFTER DELETE ON docs
WHEN OLD.heads IS NOT NULL
BEGIN
    UPDATE office_digest SET digest = musubi_xor(digest, musubi_entry(OLD.id, OLD.heads))
    WHERE office = OLD.office;
END;
