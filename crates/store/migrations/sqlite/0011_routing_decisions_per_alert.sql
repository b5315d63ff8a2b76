-- Owner: services/alerter (records.rs). One routing decision per alert and child, so a
-- follow-up's decision (a missing child, an NRM decision) is recorded beside the referral's
-- own instead of being dropped as a duplicate of (referral, person, body); and each decision
-- records the rules version as well as the data version.
CREATE TABLE routing_decisions_v2 (
    referral_id    TEXT    NOT NULL,
    person_id      TEXT    NOT NULL,
    authority_code TEXT    NOT NULL,
    basis          INTEGER NOT NULL,
    alert_id       TEXT    NOT NULL,
    rules          TEXT    NOT NULL,
    reasons        TEXT    NOT NULL,
    data_version   TEXT    NOT NULL,
    rules_version  TEXT    NOT NULL DEFAULT '',
    decided_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (alert_id, person_id)
);
INSERT INTO routing_decisions_v2 (referral_id, person_id, authority_code, basis, alert_id, rules,
    reasons, data_version, decided_at_ms)
    SELECT referral_id, person_id, authority_code, basis, alert_id, rules, reasons, data_version,
        decided_at_ms FROM routing_decisions;
DROP TABLE routing_decisions;
ALTER TABLE routing_decisions_v2 RENAME TO routing_decisions;
CREATE INDEX routing_decisions_person ON routing_decisions (person_id);
CREATE INDEX routing_decisions_referral ON routing_decisions (referral_id);
