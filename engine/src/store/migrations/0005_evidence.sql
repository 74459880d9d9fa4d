-- Schema v5: registrations the relay verified itself (engine/src/sync/admission.rs).
-- reg_evidence: for a registration, the card evidence the receiving relay checked when the
-- registration was first stored (certificate chain, signature over the statement, the
-- uploading device). Only such registrations grant sharing, and only while the statement's
-- person key equals the current person key of the subject the registration points at.
-- person is the pseudonymous key of sync/sharing.rs, never an insured number.
CREATE TABLE reg_evidence (
    doc_id     BLOB PRIMARY KEY NOT NULL,
    person     TEXT NOT NULL,
    cert_fp    TEXT NOT NULL,
    device     TEXT NOT NULL
) WITHOUT ROWID;
-- cert_bindings: one card certificate serves one person at this relay.
CREATE TABLE cert_bindings (
    cert_fp    TEXT PRIMARY KEY NOT NULL,
    person     TEXT NOT NULL
) WITHOUT ROWID;
-- actors.device_name: the device name from the certificate that bound the actor (the relay
-- keeps it from the session; a device copies it from the relay's `actors` frame), so the
-- audit history shows which device the relay attests for each change. NULL for bindings
-- made before names were kept.
ALTER TABLE actors ADD COLUMN device_name TEXT;
