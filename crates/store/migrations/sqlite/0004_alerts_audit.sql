-- Alert life cycle as the authority API sees it.
CREATE TABLE alerts (
    alert_id           TEXT    PRIMARY KEY,
    referral_id        TEXT    NOT NULL,
    authority_code     TEXT    NOT NULL,
    state              TEXT    NOT NULL,
    deadline_ms        INTEGER NOT NULL,
    acknowledged_at_ms INTEGER,
    resolved_at_ms     INTEGER,
    outcome_code       TEXT,
    alert              BLOB    NOT NULL,
    created_at_ms      INTEGER NOT NULL
);
CREATE INDEX alerts_inbox ON alerts (authority_code, state);

-- Durable escalation timers; the policy is snapshotted (target) when the alert is filed.
CREATE TABLE escalations (
    alert_id    TEXT    NOT NULL,
    level       INTEGER NOT NULL,
    due_at_ms   INTEGER NOT NULL,
    state       TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    fired_at_ms INTEGER,
    PRIMARY KEY (alert_id, level)
);
CREATE INDEX escalations_due ON escalations (state, due_at_ms);

-- Endpoints withdrawn by their owner (HTTP 410).
CREATE TABLE endpoint_state (
    authority_code TEXT    PRIMARY KEY,
    disabled_at_ms INTEGER NOT NULL,
    reason         TEXT    NOT NULL
);

-- API tokens, stored as SHA-256 hashes; several per principal for rotation.
CREATE TABLE api_tokens (
    token_hash    TEXT    PRIMARY KEY,
    token_id      TEXT    NOT NULL UNIQUE,
    kind          TEXT    NOT NULL,
    principal     TEXT    NOT NULL,
    label         TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
);

-- Append-only, hash-chained audit log of disclosures and decisions.
CREATE TABLE audit_log (
    seq            INTEGER PRIMARY KEY,
    at_ms          INTEGER NOT NULL,
    action         TEXT    NOT NULL,
    actor          TEXT    NOT NULL,
    authority_code TEXT    NOT NULL,
    alert_id       TEXT    NOT NULL,
    detail         TEXT    NOT NULL,
    prev_hash      TEXT    NOT NULL,
    hash           TEXT    NOT NULL
);
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY,
    seq  INTEGER NOT NULL,
    hash TEXT    NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '');
