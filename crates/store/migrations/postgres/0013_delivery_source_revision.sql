-- Owner: services/notifier (inbox.rs). The alerter's revision of each alert (the referral's
-- version), apart from the delivered revision: the notifier also amends an alert itself (a
-- closure, a hand-off decision), so a later referral version must be compared with the
-- alerter's own count, and is delivered as the next delivered revision.
ALTER TABLE deliveries ADD COLUMN source_revision INTEGER NOT NULL DEFAULT 1;
UPDATE deliveries SET source_revision = revision;
