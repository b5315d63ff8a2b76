-- Owner: services/kinlink (retention.rs). Legal holds: a referral or person under an active
-- hold (lifted_at_ms NULL) is never erased, by retention or on request, until it is lifted.
CREATE TABLE legal_holds (
    hold_id       TEXT    PRIMARY KEY,
    -- One of the two is set.
    referral_id   TEXT    NOT NULL,
    person_id     TEXT    NOT NULL,
    reason        TEXT    NOT NULL,
    placed_by     TEXT    NOT NULL,
    placed_at_ms  BIGINT NOT NULL,
    lifted_by     TEXT,
    lifted_at_ms  BIGINT
);
CREATE INDEX legal_holds_referral ON legal_holds (referral_id);
CREATE INDEX legal_holds_person ON legal_holds (person_id);

-- Referrals whose personal data retention has erased (so a run does not redo them).
CREATE TABLE retention_erasures (
    referral_id   TEXT    PRIMARY KEY,
    kept_until    TEXT    NOT NULL,
    erased_by     TEXT    NOT NULL,
    erased_at_ms  BIGINT NOT NULL
);
