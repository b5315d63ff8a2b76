-- Referrals as intake accepted them: who submitted them (agency reads are scoped to this),
-- their external reference (unique per agency) and the hash of the accepted request.
CREATE TABLE intake_referrals (
    referral_id        TEXT    PRIMARY KEY,
    agency_id          TEXT    NOT NULL,
    external_reference TEXT    NOT NULL,
    request_hash       TEXT    NOT NULL,
    version            BIGINT NOT NULL,
    state              TEXT    NOT NULL,
    received_at_ms     BIGINT NOT NULL,
    referral           BYTEA    NOT NULL
);
CREATE UNIQUE INDEX intake_referrals_external ON intake_referrals (agency_id, external_reference)
    WHERE external_reference <> '';

-- Idempotency keys: a replay returns the stored response; the same key with another body is 409.
CREATE TABLE idempotency_keys (
    agency_id     TEXT    NOT NULL,
    idem_key      TEXT    NOT NULL,
    request_hash  TEXT    NOT NULL,
    status        BIGINT NOT NULL,
    response      TEXT    NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (agency_id, idem_key)
);
