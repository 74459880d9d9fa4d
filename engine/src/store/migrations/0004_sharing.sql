-- Schema v4: registration-gated sharing (engine/src/sync/sharing.rs).
-- Keys derived from each document's content, refreshed lazily when keys_seq <> seq:
-- person: pseudonymous key of the insured person (SHA-256, never the number itself);
-- subject_ref: the subject document a registration / visit record / case points at;
-- reg_valid: a registration that is verified, consented to and not withdrawn.
ALTER TABLE docs ADD COLUMN person TEXT;
ALTER TABLE docs ADD COLUMN subject_ref BLOB;
ALTER TABLE docs ADD COLUMN reg_valid INTEGER NOT NULL DEFAULT 0;
ALTER TABLE docs ADD COLUMN keys_seq INTEGER;
CREATE INDEX docs_by_person ON docs(person) WHERE person IS NOT NULL;
CREATE INDEX docs_by_subject_ref ON docs(subject_ref) WHERE subject_ref IS NOT NULL;
CREATE INDEX docs_valid_registrations ON docs(office, subject_ref)
    WHERE kind = 'registration' AND reg_valid = 1;
CREATE INDEX docs_keys_stale ON docs(id) WHERE keys_seq IS NULL OR keys_seq <> seq;
