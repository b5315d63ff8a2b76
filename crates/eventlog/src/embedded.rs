//! The embedded log: topics as rows of the store's `log_events` table.
//!
//! It exists so `kinlink up` runs on a fresh machine with nothing else installed, and it is
//! stricter than Kafka: a consumer reads, applies and commits its offset in one database
//! transaction, so every event is applied exactly once even across crashes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{AnyConnection, Row};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::runner::{Outcome, apply_record, retry_delay};
use crate::{Envelope, EventLog, LogMetrics, Record, Result, Stage, StageError, sql, topics};
use kinlink_store::Store;

/// Most records a consumer applies per transaction.
const BATCH: i64 = 64;
/// Longest a consumer keeps a batch's transaction open: the store has one writer, so a long
/// batch would hold up intake's commits and the delivery worker. What is left of the batch
/// is read again in the next one.
const BATCH_TIME: Duration = Duration::from_millis(25);
/// Fallback poll for events appended by another process (the ops CLI).
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The embedded event log. Cheap to clone; clones share the wake-up signal.
#[derive(Debug, Clone)]
pub struct EmbeddedLog {
    store: Store,
    partitions: Arc<HashMap<String, i32>>,
    default_partitions: i32,
    appended: Arc<Notify>,
    metrics: LogMetrics,
}

impl EmbeddedLog {
    /// Opens the log in `store`, creating every kinlink topic with `partitions` partitions.
    /// A topic that already exists keeps its partition count, so keys stay on their partition.
    pub async fn open(store: Store, partitions: i32, metrics: LogMetrics) -> Result<Self> {
        let partitions = partitions.max(1);
        for topic in topics::all_with_dead_letters() {
            sqlx::query(
                "INSERT INTO log_topics (topic, partitions) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(topic)
            .bind(i64::from(partitions))
            .execute(store.pool())
            .await?;
        }
        let mut known = HashMap::new();
        for row in sqlx::query("SELECT topic, partitions FROM log_topics")
            .fetch_all(store.pool())
            .await?
        {
            let count: i64 = row.try_get("partitions")?;
            known.insert(
                row.try_get::<String, _>("topic")?,
                i32::try_from(count).unwrap_or(1),
            );
        }
        Ok(Self {
            store,
            partitions: Arc::new(known),
            default_partitions: partitions,
            appended: Arc::new(Notify::new()),
            metrics,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn partitions_of(&self, topic: &str) -> i32 {
        self.partitions
            .get(topic)
            .copied()
            .unwrap_or(self.default_partitions)
    }

    /// Appends inside the caller's transaction; returns (partition, offset). Offsets are
    /// assigned by the insert itself, so concurrent writers cannot take the same one.
    pub async fn append_in(
        &self,
        conn: &mut AnyConnection,
        topic: &str,
        envelope: &Envelope,
    ) -> Result<(i32, i64)> {
        let partition = topics::partition_for(&envelope.partition_key, self.partitions_of(topic));
        if self.store.backend() == kinlink_store::Backend::Postgres {
            // Offsets are MAX + 1: on PostgreSQL, writers in several processes serialise per
            // partition for the rest of their transaction (SQLite has one writer anyway).
            let key = kinlink_proto::stable_hash(&[
                b"kinlink-log:",
                topic.as_bytes(),
                &partition.to_be_bytes(),
            ]);
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(i64::from_ne_bytes(key.to_ne_bytes()))
                .execute(&mut *conn)
                .await?;
        }
        let row = sqlx::query(
            "INSERT INTO log_events (topic, partition_no, offset_no, event_id, event_type, source, \
             subject, partition_key, time_ms, attributes, payload, appended_at_ms) \
             SELECT $1, $2, COALESCE(MAX(offset_no) + 1, 0), $3, $4, $5, $6, $7, $8, $9, $10, $11 \
             FROM log_events WHERE topic = $1 AND partition_no = $2 \
             RETURNING offset_no",
        )
        .bind(topic)
        .bind(i64::from(partition))
        .bind(&envelope.id)
        .bind(&envelope.event_type)
        .bind(&envelope.source)
        .bind(&envelope.subject)
        .bind(&envelope.partition_key)
        .bind(envelope.time_ms)
        .bind(envelope.extensions_json())
        .bind(envelope.data.clone())
        .bind(kinlink_store::now_millis())
        .fetch_one(conn)
        .await?;
        self.metrics.appended(topic);
        Ok((partition, row.try_get("offset_no")?))
    }

    /// Appends in a transaction of its own; durable when this returns.
    pub async fn publish(&self, topic: &str, envelope: &Envelope) -> Result<()> {
        let mut tx = self.store.begin().await?;
        self.append_in(&mut tx, topic, envelope).await?;
        tx.commit().await?;
        self.notify_appended();
        Ok(())
    }

    /// Wakes consumers waiting for new events in this process.
    pub fn notify_appended(&self) {
        self.appended.notify_waiters();
    }

    /// Reads up to `limit` records of `topic` from `offset` on, in a partition.
    pub async fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<Record>> {
        let rows = sqlx::query(
            "SELECT topic, partition_no, offset_no, event_id, event_type, source, subject, \
             partition_key, time_ms, attributes, payload FROM log_events \
             WHERE topic = $1 AND partition_no = $2 AND offset_no >= $3 ORDER BY offset_no LIMIT $4",
        )
        .bind(topic)
        .bind(i64::from(partition))
        .bind(offset)
        .bind(limit)
        .fetch_all(self.store.pool())
        .await?;
        rows.iter().map(sql::record_from_row).collect()
    }

    /// Runs a stage until `shutdown`; the batch in hand is committed before returning.
    pub async fn run_stage<S: Stage>(
        &self,
        stage: Arc<S>,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let log = EventLog::Embedded(self.clone());
        let mut failures = 0u32;
        tracing::info!(
            stage = stage.name(),
            "Stage consuming from the embedded log."
        );
        while !shutdown.is_cancelled() {
            // Register interest before reading so an append during the batch is not missed.
            let appended = self.appended.notified();
            let mut appended = std::pin::pin!(appended);
            appended.as_mut().enable();
            match self.apply_batch(&*stage, &log).await {
                Ok(0) => {
                    failures = 0;
                    tokio::select! {
                        () = appended => {}
                        () = tokio::time::sleep(POLL_INTERVAL) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
                Ok(_) => failures = 0,
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(stage = stage.name(), %error, failures, "Stage will retry after a transient failure.");
                    tokio::select! {
                        () = tokio::time::sleep(retry_delay(failures)) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
            }
        }
        tracing::info!(stage = stage.name(), "Stage stopped.");
        Ok(())
    }

    /// Applies the next batch in one transaction; returns how many records it consumed.
    async fn apply_batch<S: Stage>(&self, stage: &S, log: &EventLog) -> Result<usize, StageError> {
        let mut tx = self
            .store
            .begin()
            .await
            .map_err(|e| StageError::Retry(e.to_string()))?;
        // Each partition is read from its committed offset through the (topic, partition,
        // offset) index, so a poll costs the same however long the topic has grown; the
        // partitions of a topic are then merged in append order.
        let committed: HashMap<(String, i64), i64> = sqlx::query(
            "SELECT topic, partition_no, next_offset FROM consumer_offsets WHERE group_id = $1",
        )
        .bind(stage.name())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| {
            Ok((
                (row.try_get("topic")?, row.try_get("partition_no")?),
                row.try_get("next_offset")?,
            ))
        })
        .collect::<Result<_, sqlx::Error>>()?;
        let mut records = Vec::new();
        for topic in stage.input_topics() {
            let mut of_topic: Vec<(i64, Record)> = Vec::new();
            for partition in 0..i64::from(self.partitions_of(&topic)) {
                let from = committed
                    .get(&(topic.clone(), partition))
                    .copied()
                    .unwrap_or(0);
                let rows = sqlx::query(
                    "SELECT seq, topic, partition_no, offset_no, event_id, event_type, source, \
                     subject, partition_key, time_ms, attributes, payload FROM log_events \
                     WHERE topic = $1 AND partition_no = $2 AND offset_no >= $3 \
                     ORDER BY offset_no LIMIT $4",
                )
                .bind(&topic)
                .bind(partition)
                .bind(from)
                .bind(BATCH)
                .fetch_all(&mut *tx)
                .await?;
                for row in &rows {
                    of_topic.push((row.try_get("seq")?, sql::record_from_row(row)?));
                }
            }
            of_topic.sort_by_key(|(seq, _)| *seq);
            records.extend(
                of_topic
                    .into_iter()
                    .take(usize::try_from(BATCH).unwrap_or(64))
                    .map(|(_, record)| record),
            );
        }
        let mut consumed = 0;
        let mut outcome = Ok(());
        let batch_started = Instant::now();
        for record in &records {
            if consumed > 0 && batch_started.elapsed() > BATCH_TIME {
                break;
            }
            let started = Instant::now();
            match apply_record(stage, log, &mut tx, record).await {
                Ok(applied) => {
                    commit_offset(&mut tx, stage.name(), record).await?;
                    self.metrics.processed(stage.name(), applied.label());
                    self.metrics
                        .observe(stage.name(), started.elapsed().as_secs_f64());
                    if applied == Outcome::Rejected {
                        tracing::debug!(
                            stage = stage.name(),
                            offset = record.offset,
                            "Dead-lettered."
                        );
                    }
                    consumed += 1;
                }
                Err(error) => {
                    self.metrics.processed(stage.name(), "retried");
                    outcome = Err(error);
                    break;
                }
            }
        }
        // Commit what was applied before a transient failure; the failed record is retried.
        tx.commit().await?;
        if consumed > 0 {
            self.notify_appended();
        }
        outcome.map(|()| consumed)
    }
}

async fn commit_offset(
    conn: &mut AnyConnection,
    group: &str,
    record: &Record,
) -> Result<(), StageError> {
    sqlx::query(
        "INSERT INTO consumer_offsets (group_id, topic, partition_no, next_offset, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (group_id, topic, partition_no) \
         DO UPDATE SET next_offset = excluded.next_offset, updated_at_ms = excluded.updated_at_ms",
    )
    .bind(group)
    .bind(&record.topic)
    .bind(i64::from(record.partition))
    .bind(record.offset + 1)
    .bind(kinlink_store::now_millis())
    .execute(conn)
    .await?;
    Ok(())
}
