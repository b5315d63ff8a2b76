-- Dead letters an operator replayed (kinlink ops dlq replay), so they are not counted again.
CREATE TABLE dlq_replays (
    stage          TEXT    NOT NULL,
    event_id       TEXT    NOT NULL,
    replayed_at_ms BIGINT NOT NULL,
    PRIMARY KEY (stage, event_id)
);
