-- When a person appeared on a referral (repeat-referral rule).
ALTER TABLE referral_persons ADD COLUMN seen_at_ms INTEGER NOT NULL DEFAULT 0;

-- Routing decisions per child: several children can share one grouped alert.
DROP TABLE routing_decisions;
CREATE TABLE routing_decisions (
    referral_id    TEXT    NOT NULL,
    person_id      TEXT    NOT NULL,
    -- Empty for triage.
    authority_code TEXT    NOT NULL,
    basis          INTEGER NOT NULL,
    alert_id       TEXT    NOT NULL,
    rules          TEXT    NOT NULL,
    reasons        TEXT    NOT NULL,
    data_version   TEXT    NOT NULL,
    decided_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (referral_id, person_id, authority_code)
);
CREATE INDEX routing_decisions_person ON routing_decisions (person_id);

-- Alerts waiting for a person to route them.
CREATE TABLE triage_queue (
    alert_id        TEXT    PRIMARY KEY,
    referral_id     TEXT    NOT NULL,
    reasons         TEXT    NOT NULL,
    candidates      TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    sla_deadline_ms INTEGER NOT NULL
);
