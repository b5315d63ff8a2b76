-- Owner: services/console (accounts.rs, sessions.rs). People who sign in to the web console:
-- council staff of one authority (viewer, practitioner, manager), kinlink operators and
-- linkage reviewers. Passwords are argon2id hashes; repeated failures lock the account.
CREATE TABLE console_users (
    user_id         TEXT    PRIMARY KEY,
    username        TEXT    NOT NULL UNIQUE,
    display_name    TEXT    NOT NULL,
    role            TEXT    NOT NULL,
    -- GSS code (or HSCT-...) for council staff; empty for operators and reviewers.
    authority_code  TEXT    NOT NULL,
    password_hash   TEXT    NOT NULL,
    disabled        INTEGER NOT NULL DEFAULT 0,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    locked_until_ms INTEGER NOT NULL DEFAULT 0,
    created_at_ms   INTEGER NOT NULL
);

-- Signed-in sessions: only the SHA-256 of the cookie's secret is kept.
CREATE TABLE console_sessions (
    session_hash  TEXT    PRIMARY KEY,
    user_id       TEXT    NOT NULL,
    csrf_token    TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions (user_id);

-- Owner: services/notifier (inbox.rs). What an inbox sorts and filters on, copied from the
-- stored alert when it is filed or amended, so a page of 10,000 alerts decodes only its rows.
ALTER TABLE alerts ADD COLUMN rag TEXT NOT NULL DEFAULT '';
ALTER TABLE alerts ADD COLUMN rule TEXT NOT NULL DEFAULT '';
ALTER TABLE alerts ADD COLUMN basis TEXT NOT NULL DEFAULT '';
ALTER TABLE alerts ADD COLUMN priority TEXT NOT NULL DEFAULT '';
ALTER TABLE alerts ADD COLUMN child_count INTEGER NOT NULL DEFAULT 0;
CREATE INDEX alerts_by_deadline ON alerts (authority_code, deadline_ms);

-- The history of one alert on its page.
CREATE INDEX audit_log_alert ON audit_log (alert_id);
