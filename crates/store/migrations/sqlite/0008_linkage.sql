-- Probabilistic person linkage (enricher). A person's every appearance on a referral is a
-- linkage record, kept with the decision that attached it to its person and the evidence
-- (per-field weights, model version), so every link can be explained and undone.

-- A person merged into another resolves to it; splits move records back out.
ALTER TABLE persons ADD COLUMN merged_into TEXT;

CREATE TABLE linkage_records (
    record_id         TEXT    PRIMARY KEY,
    person_id         TEXT    NOT NULL,
    referral_id       TEXT    NOT NULL,
    given_name        TEXT    NOT NULL,
    family_name       TEXT    NOT NULL,
    -- JSON array of strings.
    aliases           TEXT    NOT NULL,
    -- As given (YYYY, YYYY-MM or YYYY-MM-DD); empty when unknown.
    date_of_birth     TEXT    NOT NULL,
    dob_estimated     INTEGER NOT NULL,
    sex               TEXT    NOT NULL,
    nationality       TEXT    NOT NULL,
    postcode          TEXT    NOT NULL,
    -- MatchMethod of the decision.
    method            INTEGER NOT NULL,
    -- The earlier record the decision matched, if any.
    matched_record_id TEXT,
    match_probability REAL NOT NULL,
    match_weight      REAL NOT NULL,
    -- JSON array of {field, level, weight}.
    evidence          TEXT    NOT NULL,
    model_version     TEXT    NOT NULL,
    decided_at_ms     INTEGER NOT NULL
);
CREATE INDEX linkage_records_person ON linkage_records (person_id);

-- Blocking index: a decision compares only records sharing a key.
CREATE TABLE linkage_keys (
    block_key TEXT NOT NULL,
    record_id TEXT NOT NULL,
    PRIMARY KEY (block_key, record_id)
);

-- How often each folded name occurs (term-frequency adjustment); the empty name holds the
-- total.
CREATE TABLE linkage_name_counts (
    name        TEXT    PRIMARY KEY,
    occurrences INTEGER NOT NULL
);

-- Pairs scored between the thresholds: nothing merged until a person decides.
CREATE TABLE linkage_reviews (
    task_id             TEXT    PRIMARY KEY,
    referral_id         TEXT    NOT NULL,
    record_id           TEXT    NOT NULL,
    person_id           TEXT    NOT NULL,
    candidate_record_id TEXT    NOT NULL,
    candidate_person_id TEXT    NOT NULL,
    match_probability   REAL NOT NULL,
    match_weight        REAL NOT NULL,
    evidence            TEXT    NOT NULL,
    model_version       TEXT    NOT NULL,
    -- open, merged or distinct.
    state               TEXT    NOT NULL,
    created_at_ms       INTEGER NOT NULL,
    decided_at_ms       INTEGER,
    decided_by          TEXT
);
CREATE INDEX linkage_reviews_state ON linkage_reviews (state, created_at_ms);

-- Every merge and split, in order.
CREATE TABLE person_changes (
    change_id     TEXT    PRIMARY KEY,
    kind          TEXT    NOT NULL,
    person_id     TEXT    NOT NULL,
    other_person_id TEXT  NOT NULL,
    task_id       TEXT,
    record_ids    TEXT    NOT NULL,
    decided_by    TEXT    NOT NULL,
    decided_at_ms INTEGER NOT NULL
);
CREATE INDEX person_changes_person ON person_changes (person_id);

-- Lookups by person, so a decision's cost does not grow with the registry.
CREATE INDEX referral_persons_person ON referral_persons (person_id);
CREATE INDEX persons_merged_into ON persons (merged_into);
CREATE INDEX linkage_reviews_person ON linkage_reviews (person_id, state);
CREATE INDEX linkage_reviews_candidate ON linkage_reviews (candidate_person_id, state);
CREATE INDEX person_changes_other ON person_changes (other_person_id);
