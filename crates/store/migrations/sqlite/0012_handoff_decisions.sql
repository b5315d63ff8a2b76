-- Owner: services/alerter (records.rs). Why the home authority declined a hand-off.
ALTER TABLE handoffs ADD COLUMN reason TEXT NOT NULL DEFAULT '';
