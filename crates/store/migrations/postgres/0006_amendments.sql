-- Amended alerts (a referral update) are delivered again under a new webhook-id; the
-- retry schedule restarts from base_attempts.
ALTER TABLE deliveries ADD COLUMN revision BIGINT NOT NULL DEFAULT 1;
ALTER TABLE deliveries ADD COLUMN base_attempts BIGINT NOT NULL DEFAULT 0;
