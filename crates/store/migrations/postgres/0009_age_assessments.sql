-- Owner: services/alerter (records.rs). Age assessments of known persons: the latest decides
-- whether later referrals treat the person as a child (Modern Slavery Act s51 presumes a
-- child only until an assessment says otherwise). Read by the enricher.
CREATE TABLE age_assessments (
    event_id       TEXT    PRIMARY KEY,
    person_id      TEXT    NOT NULL,
    referral_id    TEXT    NOT NULL,
    outcome        TEXT    NOT NULL,
    assessed_at_ms BIGINT  NOT NULL
);
CREATE INDEX age_assessments_by_person ON age_assessments (person_id, assessed_at_ms);
