-- Owner: services/notifier (channels.rs). Email and text messages telling an authority's duty
-- team of an alert (GOV.UK Notify or SMTP), one row per recipient and alert revision, filed
-- with the alert and sent by a worker that claims each row first. No personal data: the
-- message is built from the alert's rating, deadline and a console link when it is sent.
CREATE TABLE notifications (
    notification_id    TEXT    PRIMARY KEY,
    alert_id           TEXT    NOT NULL,
    revision           BIGINT  NOT NULL,
    authority_code     TEXT    NOT NULL,
    -- notify_email, notify_sms or smtp_email.
    channel            TEXT    NOT NULL,
    -- A role mailbox or duty phone number from settings.
    recipient          TEXT    NOT NULL,
    -- pending, sent or failed.
    state              TEXT    NOT NULL,
    attempts           BIGINT  NOT NULL,
    next_attempt_at_ms BIGINT  NOT NULL,
    last_error         TEXT    NOT NULL,
    provider_id        TEXT    NOT NULL DEFAULT '',
    created_at_ms      BIGINT  NOT NULL,
    updated_at_ms      BIGINT  NOT NULL
);
CREATE INDEX notifications_due ON notifications (state, next_attempt_at_ms);
CREATE INDEX notifications_alert ON notifications (alert_id);
