-- A child living in one authority and found in another: both are alerted, and the home
-- authority accepting responsibility is tracked here (pending -> accepted).
CREATE TABLE handoffs (
    referral_id         TEXT    NOT NULL,
    person_id           TEXT    NOT NULL,
    home_authority      TEXT    NOT NULL,
    found_authority     TEXT    NOT NULL,
    state               TEXT    NOT NULL,
    created_at_ms       BIGINT NOT NULL,
    updated_at_ms       BIGINT NOT NULL,
    PRIMARY KEY (referral_id, person_id, home_authority, found_authority)
);
