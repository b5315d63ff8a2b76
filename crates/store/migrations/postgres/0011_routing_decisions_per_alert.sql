-- Owner: services/alerter (records.rs). One routing decision per alert and child, so a
-- follow-up's decision (a missing child, an NRM decision) is recorded beside the referral's
-- own instead of being dropped as a duplicate of (referral, person, body); and each decision
-- records the rules version as well as the data version.
ALTER TABLE routing_decisions DROP CONSTRAINT routing_decisions_pkey;
ALTER TABLE routing_decisions ADD PRIMARY KEY (alert_id, person_id);
ALTER TABLE routing_decisions ADD COLUMN rules_version TEXT NOT NULL DEFAULT '';
CREATE INDEX routing_decisions_referral ON routing_decisions (referral_id);
