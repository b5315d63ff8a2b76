-- Owner: services/notifier (escalation.rs). Failed sends of an escalation (secondary contact,
-- on-call trigger or resolve) so far: the next try waits longer each time. Claims reuse
-- due_at_ms as a lease, so several notifier instances fire each timer once.
ALTER TABLE escalations ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
