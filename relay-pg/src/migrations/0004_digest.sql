-- Schema v4: the catalog digest of each office tag, kept up to date on write by a trigger
-- (docs/protocol.md, "Digests"): the XOR over the office's documents of
-- SHA-256(id || heads), as four big-endian 64-bit words (PostgreSQL has XOR, `#`, on
-- bigint, not on bytea). A document whose heads are not computed yet has no part until
-- they are. A session then reads one row per office instead of the whole catalog.
CREATE TABLE office_digest (
    office_tag BYTEA PRIMARY KEY,
    d0 BIGINT NOT NULL DEFAULT 0,
    d1 BIGINT NOT NULL DEFAULT 0,
    d2 BIGINT NOT NULL DEFAULT 0,
    d3 BIGINT NOT NULL DEFAULT 0
);

-- Word `i` (0–3) of a 32-byte digest, big-endian, as a signed bigint.
CREATE FUNCTION musubi_digest_word(h BYTEA, i INT) RETURNS BIGINT
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT ('x' || encode(substring(h FROM i * 8 + 1 FOR 8), 'hex'))::bit(64)::bigint $$;

CREATE FUNCTION musubi_docs_digest() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    h BYTEA;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.heads IS NOT NULL THEN
        IF TG_OP = 'DELETE' OR OLD.heads IS DISTINCT FROM NEW.heads
           OR OLD.office_tag IS DISTINCT FROM NEW.office_tag OR OLD.id IS DISTINCT FROM NEW.id THEN
            h := sha256(OLD.id || OLD.heads);
            UPDATE office_digest SET
                d0 = d0 # musubi_digest_word(h, 0), d1 = d1 # musubi_digest_word(h, 1),
                d2 = d2 # musubi_digest_word(h, 2), d3 = d3 # musubi_digest_word(h, 3)
            WHERE office_tag = OLD.office_tag;
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.heads IS NOT NULL THEN
        IF TG_OP = 'INSERT' OR OLD.heads IS DISTINCT FROM NEW.heads
           OR OLD.office_tag IS DISTINCT FROM NEW.office_tag OR OLD.id IS DISTINCT FROM NEW.id THEN
            h := sha256(NEW.id || NEW.heads);
            INSERT INTO office_digest AS o (office_tag, d0, d1, d2, d3)
                VALUES (NEW.office_tag, musubi_digest_word(h, 0), musubi_digest_word(h, 1),
                        musubi_digest_word(h, 2), musubi_digest_word(h, 3))
            ON CONFLICT (office_tag) DO UPDATE SET
                d0 = o.d0 # EXCLUDED.d0, d1 = o.d1 # EXCLUDED.d1,
                d2 = o.d2 # EXCLUDED.d2, d3 = o.d3 # EXCLUDED.d3;
        END IF;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER docs_digest AFTER INSERT OR DELETE OR UPDATE OF heads, office_tag, id ON docs
    FOR EACH ROW EXECUTE FUNCTION musubi_docs_digest();

-- Backfill from what is stored.
INSERT INTO office_digest (office_tag, d0, d1, d2, d3)
    SELECT office_tag,
           bit_xor(musubi_digest_word(sha256(id || heads), 0)),
           bit_xor(musubi_digest_word(sha256(id || heads), 1)),
           bit_xor(musubi_digest_word(sha256(id || heads), 2)),
           bit_xor(musubi_digest_word(sha256(id || heads), 3))
    FROM docs WHERE heads IS NOT NULL GROUP BY office_tag;
