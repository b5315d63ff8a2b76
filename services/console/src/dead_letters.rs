//! Dead letters with their reasons, and replaying them with their original event ids, so
//! downstream idempotency still holds: shared by `kinlink ops dlq list|show|replay` and the
//! console's dead-letter page. Owns `dlq_replays`. Payloads are never shown (they may hold
//! personal data): only ids, types, sizes and reasons.

use kinlink_eventlog::envelope::{DLQ_REASON, DLQ_STAGE};
use kinlink_eventlog::inspect::ReadFrom;
use kinlink_eventlog::{Envelope, EventLog, topics};
use kinlink_store::Store;
use serde::Serialize;
use sqlx::Row;

#[derive(Debug, Clone, Serialize)]
pub struct Letter {
    pub stage: String,
    pub event_id: String,
    pub event_type: String,
    pub reason: String,
    /// Where the event was consumed from; empty for a delivery the notifier gave up.
    pub original_topic: String,
    pub time_ms: i64,
    pub payload_bytes: usize,
    pub replayed: bool,
    #[serde(skip)]
    envelope: Option<Envelope>,
}

const DLQ_TOPIC: &str = "kinlinkdlqtopic";

/// Every dead letter, optionally of one stage.
pub async fn list(
    store: &Store,
    log: &EventLog,
    stage: Option<&str>,
) -> Result<Vec<Letter>, crate::Error> {
    let mut letters = Vec::new();
    for name in topics::STAGES
        .iter()
        .filter(|s| stage.is_none_or(|wanted| wanted == **s))
    {
        let replayed: Vec<String> =
            sqlx::query("SELECT event_id FROM dlq_replays WHERE stage = $1")
                .bind(*name)
                .fetch_all(store.pool())
                .await?
                .iter()
                .map(|r| r.try_get("event_id"))
                .collect::<Result<_, _>>()?;
        for record in log
            .read(&topics::dead_letter(name), ReadFrom::Start, 100_000)
            .await?
        {
            let e = record.envelope;
            letters.push(Letter {
                stage: e
                    .extensions
                    .get(DLQ_STAGE)
                    .cloned()
                    .unwrap_or_else(|| (*name).to_owned()),
                event_id: e.id.clone(),
                event_type: e.event_type.clone(),
                reason: e.extensions.get(DLQ_REASON).cloned().unwrap_or_default(),
                original_topic: e.extensions.get(DLQ_TOPIC).cloned().unwrap_or_default(),
                time_ms: e.time_ms,
                payload_bytes: e.data.len(),
                replayed: replayed.contains(&e.id),
                envelope: Some(e),
            });
        }
    }
    Ok(letters)
}

/// What a replay did (or, in a dry run, would do) with one letter.
#[derive(Debug, Serialize)]
pub struct Replayed {
    pub stage: String,
    pub event_id: String,
    pub action: String,
}

/// Replays the selected letters that were not replayed before.
pub async fn replay(
    store: &Store,
    log: &EventLog,
    selected: Vec<Letter>,
    dry_run: bool,
) -> Result<Vec<Replayed>, crate::Error> {
    let mut done = Vec::new();
    for letter in selected.into_iter().filter(|l| !l.replayed) {
        let Some(mut envelope) = letter.envelope.clone() else {
            continue;
        };
        let action = if letter.original_topic.is_empty() {
            format!("deliver alert {} again", envelope.subject)
        } else {
            format!(
                "re-append to {} for {}",
                letter.original_topic, letter.stage
            )
        };
        if !dry_run {
            // Claimed first: of two operators replaying at once, one replays.
            let claimed = sqlx::query("INSERT INTO dlq_replays (stage, event_id, replayed_at_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(&letter.stage)
                .bind(&letter.event_id)
                .bind(kinlink_store::now_millis())
                .execute(store.pool())
                .await?;
            if claimed.rows_affected() == 0 {
                continue;
            }
            let replayed = async {
                if letter.original_topic.is_empty() {
                    // A delivery the notifier gave up on: queue it again (and re-enable a
                    // withdrawn endpoint, which the operator has presumably had fixed).
                    let mut tx = store.begin().await?;
                    kinlink_notifier::delivery::requeue_given_up(
                        &mut tx,
                        &envelope.subject,
                        kinlink_store::now_millis(),
                    )
                    .await?;
                    tx.commit().await?;
                } else {
                    // Forget that the stage applied this id first, or it would skip the replay.
                    let mut conn = store.pool().acquire().await?;
                    kinlink_eventlog::sql::forget_processed(
                        &mut conn,
                        &letter.stage,
                        &letter.event_id,
                    )
                    .await?;
                    envelope
                        .extensions
                        .retain(|k, _| !k.starts_with("kinlinkdlq"));
                    log.publish(&letter.original_topic, &envelope).await?;
                }
                Ok::<(), crate::Error>(())
            }
            .await;
            if let Err(error) = replayed {
                // Not replayed after all: release the claim so it can be tried again.
                sqlx::query("DELETE FROM dlq_replays WHERE stage = $1 AND event_id = $2")
                    .bind(&letter.stage)
                    .bind(&letter.event_id)
                    .execute(store.pool())
                    .await?;
                return Err(error);
            }
        }
        done.push(Replayed {
            stage: letter.stage,
            event_id: letter.event_id,
            action,
        });
    }
    Ok(done)
}
