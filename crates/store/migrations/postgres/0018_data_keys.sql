-- Owner: crates/eventlog (sealing.rs). Per-person data keys for crypto-shredding: personal
-- data in the log is sealed with these, so deleting a person's keys (erasure) leaves every
-- copy of their events unreadable. Each key is wrapped (AES-256-GCM) under the master key
-- whose fingerprint is in master_key; key ids name the data subject by ids only. An erased
-- key stays as a tombstone (erased_at_ms set, master_key and wrapped empty), so nothing can
-- make a new key under the same id and seal the erased person's data again.
CREATE TABLE data_keys (
    key_id        TEXT    PRIMARY KEY,
    -- The referral the key belongs to (retention erases a referral's keys together).
    referral_id   TEXT    NOT NULL,
    master_key    TEXT    NOT NULL,
    -- Nonce, then the wrapped key with its tag.
    wrapped       BYTEA    NOT NULL,
    created_at_ms BIGINT NOT NULL,
    erased_at_ms  BIGINT
);
CREATE INDEX data_keys_referral ON data_keys (referral_id);
