//! SQL shared by both backends (through sqlx's `Any` driver, `$N` placeholders).

use sqlx::{AnyConnection, Row};

use crate::{Envelope, Record, Result};

/// Records that `group` applied `event_id`. False when it already had: the event is a
/// duplicate (a redelivery after a crash or rebalance, or a replayed dead letter).
pub(crate) async fn mark_processed(
    conn: &mut AnyConnection,
    group: &str,
    event_id: &str,
) -> Result<bool> {
    let result = sqlx::query(
        "INSERT INTO processed_events (group_id, event_id, processed_at_ms) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(group)
    .bind(event_id)
    .bind(kinlink_store::now_millis())
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Forgets that `group` applied `event_id`, so a replay of it is applied again (dead-letter
/// and stage replays). The one other writer of `processed_events` besides the runners.
pub async fn forget_processed(conn: &mut AnyConnection, group: &str, event_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM processed_events WHERE group_id = $1 AND event_id = $2")
        .bind(group)
        .bind(event_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Writes an event to the outbox, for the relay to publish after the transaction commits.
pub(crate) async fn insert_outbox(
    conn: &mut AnyConnection,
    topic: &str,
    envelope: &Envelope,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO outbox (topic, event_id, event_type, source, subject, partition_key, time_ms, \
         attributes, payload, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(topic)
    .bind(&envelope.id)
    .bind(&envelope.event_type)
    .bind(&envelope.source)
    .bind(&envelope.subject)
    .bind(&envelope.partition_key)
    .bind(envelope.time_ms)
    .bind(envelope.extensions_json())
    .bind(envelope.data.clone())
    .bind(kinlink_store::now_millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// Rebuilds an envelope from a row with the columns of `log_events` / `outbox`.
pub(crate) fn envelope_from_row(row: &sqlx::any::AnyRow) -> Result<Envelope> {
    let attributes: String = row.try_get("attributes")?;
    Ok(Envelope {
        id: row.try_get("event_id")?,
        source: row.try_get("source")?,
        event_type: row.try_get("event_type")?,
        subject: row.try_get("subject")?,
        time_ms: row.try_get("time_ms")?,
        partition_key: row.try_get("partition_key")?,
        extensions: serde_json::from_str(&attributes).unwrap_or_default(),
        data: row.try_get("payload")?,
    })
}

/// Rebuilds a record from a `log_events` row.
pub(crate) fn record_from_row(row: &sqlx::any::AnyRow) -> Result<Record> {
    let partition: i64 = row.try_get("partition_no")?;
    Ok(Record {
        topic: row.try_get("topic")?,
        partition: i32::try_from(partition).unwrap_or_default(),
        offset: row.try_get("offset_no")?,
        envelope: envelope_from_row(row)?,
    })
}
