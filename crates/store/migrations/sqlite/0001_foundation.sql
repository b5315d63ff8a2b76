-- Embedded event log: one row per event, offsets per (topic, partition) like Kafka.
CREATE TABLE log_events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    topic          TEXT    NOT NULL,
    partition_no   INTEGER NOT NULL,
    offset_no      INTEGER NOT NULL,
    event_id       TEXT    NOT NULL,
    event_type     TEXT    NOT NULL,
    source         TEXT    NOT NULL,
    subject        TEXT    NOT NULL,
    partition_key  TEXT    NOT NULL,
    time_ms        INTEGER NOT NULL,
    attributes     TEXT    NOT NULL,
    payload        BLOB    NOT NULL,
    appended_at_ms INTEGER NOT NULL,
    UNIQUE (topic, partition_no, offset_no)
);

CREATE TABLE log_topics (
    topic      TEXT    PRIMARY KEY,
    partitions INTEGER NOT NULL
);

CREATE TABLE consumer_offsets (
    group_id      TEXT    NOT NULL,
    topic         TEXT    NOT NULL,
    partition_no  INTEGER NOT NULL,
    next_offset   INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic, partition_no)
);

-- Idempotency: an event id a consumer group has already applied is skipped.
CREATE TABLE processed_events (
    group_id        TEXT    NOT NULL,
    event_id        TEXT    NOT NULL,
    processed_at_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, event_id)
);

-- Transactional outbox: outputs written with the state change, published to Kafka afterwards.
CREATE TABLE outbox (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    topic         TEXT    NOT NULL,
    event_id      TEXT    NOT NULL,
    event_type    TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    subject       TEXT    NOT NULL,
    partition_key TEXT    NOT NULL,
    time_ms       INTEGER NOT NULL,
    attributes    TEXT    NOT NULL,
    payload       BLOB    NOT NULL,
    created_at_ms INTEGER NOT NULL
);

-- Enricher: the person registry and household links.
CREATE TABLE persons (
    person_id            TEXT    PRIMARY KEY,
    match_key            TEXT    UNIQUE,
    first_referral_id    TEXT    NOT NULL,
    referred_in_own_right INTEGER NOT NULL,
    created_at_ms        INTEGER NOT NULL
);

CREATE TABLE person_identifiers (
    kind      INTEGER NOT NULL,
    value     TEXT    NOT NULL,
    person_id TEXT    NOT NULL REFERENCES persons (person_id),
    PRIMARY KEY (kind, value)
);

CREATE TABLE person_links (
    from_person_id TEXT    NOT NULL REFERENCES persons (person_id),
    to_person_id   TEXT    NOT NULL REFERENCES persons (person_id),
    kind           INTEGER NOT NULL,
    relationship   INTEGER NOT NULL,
    referral_id    TEXT    NOT NULL,
    PRIMARY KEY (from_person_id, to_person_id, kind)
);

CREATE TABLE referral_persons (
    referral_id     TEXT    NOT NULL,
    person_id       TEXT    NOT NULL REFERENCES persons (person_id),
    role            INTEGER NOT NULL,
    dependant_index INTEGER NOT NULL,
    PRIMARY KEY (referral_id, role, dependant_index)
);

-- Alerter: every routing decision with the data version it used.
CREATE TABLE routing_decisions (
    alert_id       TEXT    PRIMARY KEY,
    referral_id    TEXT    NOT NULL,
    person_id      TEXT    NOT NULL,
    authority_code TEXT    NOT NULL,
    basis          INTEGER NOT NULL,
    data_version   TEXT    NOT NULL,
    decided_at_ms  INTEGER NOT NULL
);

-- Notifier: one delivery per alert, and a ledger of every attempt.
CREATE TABLE deliveries (
    alert_id           TEXT    PRIMARY KEY,
    referral_id        TEXT    NOT NULL,
    authority_code     TEXT    NOT NULL,
    state              TEXT    NOT NULL,
    attempts           INTEGER NOT NULL,
    next_attempt_at_ms INTEGER NOT NULL,
    alert              BLOB    NOT NULL,
    created_at_ms      INTEGER NOT NULL,
    updated_at_ms      INTEGER NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at_ms);

CREATE TABLE delivery_attempts (
    alert_id       TEXT    NOT NULL,
    attempt        INTEGER NOT NULL,
    started_at_ms  INTEGER NOT NULL,
    finished_at_ms INTEGER,
    http_status    INTEGER,
    outcome        TEXT    NOT NULL,
    PRIMARY KEY (alert_id, attempt)
);
