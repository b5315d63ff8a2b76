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

/// Work a caller hands to the group committer: writes into the shared transaction (inside a
/// savepoint of its own). `Ok(false)` declines: its savepoint is rolled back and nothing of it
/// is committed.
pub type GroupJob = Box<
    dyn for<'c> FnOnce(&'c mut AnyConnection) -> futures::future::BoxFuture<'c, Result<bool>>
        + Send,
>;

struct Pending {
    job: GroupJob,
    done: tokio::sync::oneshot::Sender<Result<bool>>,
}

/// Most callers sharing one commit.
const GROUP_MAX: usize = 256;

/// The embedded event log. Cheap to clone; clones share the wake-up signal and the group
/// committer.
#[derive(Clone)]
pub struct EmbeddedLog {
    store: Store,
    partitions: Arc<HashMap<String, i32>>,
    default_partitions: i32,
    appended: Arc<Notify>,
    metrics: LogMetrics,
    group: Arc<std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<Pending>>>,
    sealer: crate::Sealer,
}

impl std::fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLog")
            .field("store", &self.store)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl EmbeddedLog {
    /// Opens the log in `store`, creating every kinlink topic with `partitions` partitions.
    /// A topic that already exists keeps its partition count, so keys stay on their partition.
    pub async fn open(
        store: Store,
        partitions: i32,
        metrics: LogMetrics,
        sealer: crate::Sealer,
    ) -> Result<Self> {
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
            group: Arc::default(),
            sealer,
        })
    }

    /// Group commit: runs `job` in a transaction shared with whoever else is committing at
    /// the same moment, and returns once that transaction is durable. Concurrent requests
    /// (intake's 202s) then cost one durable commit between them instead of one each, and
    /// take the single writer connection once. Each job runs in a savepoint: one that fails
    /// or declines is rolled back alone. If the shared commit fails, every job in it gets the
    /// error and none of them happened.
    pub async fn commit_grouped(&self, job: GroupJob) -> Result<bool> {
        let sender = self.group.get_or_init(|| {
            let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(run_group_committer(self.clone(), receiver));
            sender
        });
        let (done, result) = tokio::sync::oneshot::channel();
        sender
            .send(Pending { job, done })
            .map_err(|_| crate::Error::GroupCommit("the committer has stopped".to_owned()))?;
        result
            .await
            .map_err(|_| crate::Error::GroupCommit("the committer has stopped".to_owned()))?
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
        let sealed;
        let envelope = if crate::sealing::carries_personal_data(&envelope.event_type) {
            let mut copy = envelope.clone();
            self.sealer.seal(conn, &mut copy).await?;
            sealed = copy;
            &sealed
        } else {
            envelope
        };
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

    /// Appends in a group commit (see [`EmbeddedLog::commit_grouped`]); durable when this
    /// returns.
    pub async fn publish(&self, topic: &str, envelope: &Envelope) -> Result<()> {
        let (log, topic, envelope) = (self.clone(), topic.to_owned(), envelope.clone());
        self.commit_grouped(Box::new(move |conn| {
            Box::pin(async move {
                log.append_in(conn, &topic, &envelope).await?;
                Ok(true)
            })
        }))
        .await
        .map(|_| ())
    }

    /// Wakes consumers waiting for new events in this process.
    pub fn notify_appended(&self) {
        self.appended.notify_waiters();
    }

    /// Signalled after every commit that appended events in this process.
    pub fn commits(&self) -> &Arc<Notify> {
        &self.appended
    }

    pub(crate) fn sealer(&self) -> &crate::Sealer {
        &self.sealer
    }

    /// Reads up to `limit` records of `topic` from `offset` on, in a partition.
    pub async fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<Record>> {
        let mut conn = self.store.pool().acquire().await?;
        let records = read_partition(&mut conn, topic, i64::from(partition), offset, limit).await?;
        Ok(records.into_iter().map(|(_, record)| record).collect())
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
                of_topic.extend(read_partition(&mut tx, &topic, partition, from, BATCH).await?);
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

/// The group committer: takes whatever jobs are waiting (at least one), applies them in one
/// transaction, commits, then answers each. While it waits for the writer connection more
/// jobs queue up, so the group grows with the load.
async fn run_group_committer(
    log: EmbeddedLog,
    mut receiver: tokio::sync::mpsc::UnboundedReceiver<Pending>,
) {
    use sqlx::Connection;
    while let Some(first) = receiver.recv().await {
        let mut group = vec![first];
        while group.len() < GROUP_MAX {
            match receiver.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let mut tx = match log.store.begin().await {
            Ok(tx) => tx,
            Err(error) => {
                let reason = error.to_string();
                for pending in group {
                    let _ = pending
                        .done
                        .send(Err(crate::Error::GroupCommit(reason.clone())));
                }
                continue;
            }
        };
        let mut outcomes = Vec::with_capacity(group.len());
        let mut senders = Vec::with_capacity(group.len());
        let mut broken: Option<String> = None;
        for Pending { job, done } in group {
            senders.push(done);
            if broken.is_some() {
                outcomes.push(Err(crate::Error::GroupCommit(
                    "an earlier write broke the shared transaction".to_owned(),
                )));
                continue;
            }
            let mut savepoint = match tx.begin().await {
                Ok(savepoint) => savepoint,
                Err(error) => {
                    broken = Some(error.to_string());
                    outcomes.push(Err(error.into()));
                    continue;
                }
            };
            let outcome = job(&mut savepoint).await;
            let closed = match outcome {
                Ok(true) => savepoint.commit().await,
                _ => savepoint.rollback().await,
            };
            if let Err(error) = closed {
                broken = Some(error.to_string());
            }
            outcomes.push(outcome);
        }
        let committed = match broken {
            Some(reason) => {
                let _ = tx.rollback().await;
                Err(reason)
            }
            None => tx.commit().await.map_err(|e| e.to_string()),
        };
        match committed {
            Ok(()) => {
                log.notify_appended();
                for (done, outcome) in senders.into_iter().zip(outcomes) {
                    let _ = done.send(outcome);
                }
            }
            Err(reason) => {
                for done in senders {
                    let _ = done.send(Err(crate::Error::GroupCommit(reason.clone())));
                }
            }
        }
    }
}

/// Up to `limit` records of one partition from `offset` on, with their append sequence, read
/// through the (topic, partition, offset) index.
async fn read_partition(
    conn: &mut AnyConnection,
    topic: &str,
    partition: i64,
    offset: i64,
    limit: i64,
) -> Result<Vec<(i64, Record)>> {
    let rows = sqlx::query(
        "SELECT seq, topic, partition_no, offset_no, event_id, event_type, source, subject, \
         partition_key, time_ms, attributes, payload FROM log_events \
         WHERE topic = $1 AND partition_no = $2 AND offset_no >= $3 ORDER BY offset_no LIMIT $4",
    )
    .bind(topic)
    .bind(partition)
    .bind(offset)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("seq")?, sql::record_from_row(row)?)))
        .collect()
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
