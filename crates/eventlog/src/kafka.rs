//! The Kafka backend (rdkafka), for the scale-out shape.
//!
//! Guarantees, and where each is kept:
//! - Producing: idempotent producer, `acks=all`; [`KafkaLog::publish`] returns only once the
//!   broker has acknowledged the event.
//! - Consuming: `enable.auto.offset.store=false`; an offset is stored only after the event's
//!   effect (state change, outputs in the outbox, idempotency mark) has committed in the store.
//!   A crash before that redelivers the event, and the idempotency mark makes it a no-op.
//! - Outputs: written to the store's outbox in the stage's transaction and published by
//!   [`KafkaLog::run_outbox_relay`]; a crash between commit and publish publishes again with
//!   the same event id, which consumers drop.
//! - Topics are created explicitly at start-up with the configured partitions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use sqlx::{AnyConnection, Row};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::runner::{apply_record, dead_letter, retry_delay};
use crate::{
    Envelope, Error, EventLog, LogMetrics, Record, Result, Stage, StageError, sql, topics,
};
use kinlink_store::{Backend, Store};

/// Connection and topic settings for Kafka.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Partitions of each topic created at start-up.
    pub partitions: i32,
    /// Replication factor of each topic created at start-up.
    pub replication_factor: i32,
    /// Prefix of consumer group ids (`<prefix><stage>`).
    pub group_prefix: String,
    /// How long a produce may take before it counts as failed.
    pub produce_timeout: Duration,
    /// Extra librdkafka properties, applied last (e.g. security settings).
    pub client_options: BTreeMap<String, String>,
    /// Create missing topics at start-up. Off where topics are provisioned separately.
    pub create_topics: bool,
}

impl KafkaConfig {
    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in &self.client_options {
            config.set(key, value);
        }
        config
    }
}

/// The Kafka event log. Cheap to clone.
#[derive(Clone)]
pub struct KafkaLog {
    config: KafkaConfig,
    producer: FutureProducer,
    store: Store,
    outbox_written: Arc<Notify>,
    /// Every waiter is woken on each local commit (see [`crate::EventLog::commits`]).
    committed: Arc<Notify>,
    metrics: LogMetrics,
    sealer: crate::Sealer,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("brokers", &self.config.brokers)
            .finish_non_exhaustive()
    }
}

impl KafkaLog {
    /// Connects, and creates every kinlink topic that does not exist yet.
    pub async fn connect(
        config: KafkaConfig,
        store: Store,
        metrics: LogMetrics,
        sealer: crate::Sealer,
    ) -> Result<Self> {
        let mut producer_config = ClientConfig::new();
        producer_config
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set(
                "message.timeout.ms",
                config.produce_timeout.as_millis().to_string(),
            );
        for (key, value) in &config.client_options {
            producer_config.set(key, value);
        }
        let producer: FutureProducer = producer_config.create()?;
        let log = Self {
            config,
            producer,
            store,
            outbox_written: Arc::new(Notify::new()),
            committed: Arc::new(Notify::new()),
            metrics,
            sealer,
        };
        if log.config.create_topics {
            log.create_topics().await?;
        }
        Ok(log)
    }

    async fn create_topics(&self) -> Result<()> {
        self.ensure_topics(&topics::all_with_dead_letters()).await
    }

    /// Creates those of `names` that do not exist yet, with `log.partitions` partitions.
    async fn ensure_topics(&self, names: &[String]) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = self.config.client_config().create()?;
        let new_topics: Vec<NewTopic<'_>> = names
            .iter()
            .map(|name| {
                NewTopic::new(
                    name,
                    self.config.partitions,
                    TopicReplication::Fixed(self.config.replication_factor),
                )
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for result in admin.create_topics(&new_topics, &options).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(Error::TopicCreation {
                        topic,
                        reason: code.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn group_prefix(&self) -> &str {
        &self.config.group_prefix
    }

    pub(crate) fn brokers(&self) -> &str {
        &self.config.brokers
    }

    pub(crate) fn client_options(&self) -> &BTreeMap<String, String> {
        &self.config.client_options
    }

    pub(crate) fn sealer(&self) -> &crate::Sealer {
        &self.sealer
    }

    /// Seals the event's personal data (its data keys committed first), produces it and waits
    /// for the broker's acknowledgement.
    pub async fn publish(&self, topic: &str, envelope: &Envelope) -> Result<()> {
        if crate::sealing::carries_personal_data(&envelope.event_type) {
            let mut sealed = envelope.clone();
            let mut tx = self.store.begin().await?;
            self.sealer.seal(&mut tx, &mut sealed).await?;
            tx.commit().await?;
            return self.produce(topic, &sealed).await;
        }
        self.produce(topic, envelope).await
    }

    /// Produces one event as it is (already sealed) and waits for the acknowledgement.
    async fn produce(&self, topic: &str, envelope: &Envelope) -> Result<()> {
        let mut headers = OwnedHeaders::new();
        for (key, value) in envelope.kafka_headers() {
            headers = headers.insert(Header {
                key: &key,
                value: Some(&value),
            });
        }
        let record = FutureRecord::to(topic)
            .key(&envelope.partition_key)
            .payload(&envelope.data)
            .headers(headers);
        self.producer
            .send(record, Timeout::After(self.config.produce_timeout))
            .await
            .map_err(|(error, _message)| Error::Kafka(error))?;
        self.metrics.appended(topic);
        Ok(())
    }

    /// Writes an event to the outbox inside the caller's transaction.
    pub async fn append_in(
        &self,
        conn: &mut AnyConnection,
        topic: &str,
        envelope: &Envelope,
    ) -> Result<()> {
        if crate::sealing::carries_personal_data(&envelope.event_type) {
            let mut sealed = envelope.clone();
            self.sealer.seal(conn, &mut sealed).await?;
            return sql::insert_outbox(conn, topic, &sealed).await;
        }
        sql::insert_outbox(conn, topic, envelope).await
    }

    /// Wakes the outbox relay.
    pub fn notify_appended(&self) {
        self.outbox_written.notify_one();
        self.committed.notify_waiters();
    }

    /// Signalled after every local commit that wrote events.
    pub fn commits(&self) -> &Arc<Notify> {
        &self.committed
    }

    /// Checks a broker answers.
    pub async fn ping(&self) -> Result<()> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Timeout::After(Duration::from_secs(5)))
                .map(|_| ())
        })
        .await
        .map_err(|_| Error::Kafka(rdkafka::error::KafkaError::Canceled))??;
        Ok(())
    }

    /// Publishes outbox rows in order and deletes them once the broker acknowledged them.
    /// Several relays may run against one PostgreSQL store: rows are locked with
    /// `SKIP LOCKED`, so each row is published by one relay at a time.
    pub async fn run_outbox_relay(&self, shutdown: CancellationToken) -> Result<()> {
        let mut failures = 0u32;
        loop {
            let written = self.outbox_written.notified();
            match self.relay_batch().await {
                Ok(0) if shutdown.is_cancelled() => break,
                Ok(0) => {
                    failures = 0;
                    tokio::select! {
                        () = written => {}
                        () = tokio::time::sleep(Duration::from_millis(250)) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
                Ok(_) => failures = 0,
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%error, failures, "Outbox relay will retry.");
                    if shutdown.is_cancelled() && failures > 3 {
                        break;
                    }
                    tokio::time::sleep(retry_delay(failures)).await;
                }
            }
        }
        let producer = self.producer.clone();
        let flushed = tokio::task::spawn_blocking(move || {
            Producer::flush(&producer, Timeout::After(Duration::from_secs(10)))
        })
        .await;
        if !matches!(flushed, Ok(Ok(()))) {
            tracing::warn!(
                "Producer flush did not complete; unsent outbox rows stay for the next start."
            );
        }
        Ok(())
    }

    async fn relay_batch(&self) -> Result<usize> {
        let lock = match self.store.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let mut tx = self.store.begin().await?;
        let rows = sqlx::query(&format!(
            "SELECT seq, topic, event_id, event_type, source, subject, partition_key, time_ms, \
             attributes, payload FROM outbox ORDER BY seq LIMIT 200{lock}"
        ))
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut batch = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq: i64 = row.try_get("seq")?;
            let topic: String = row.try_get("topic")?;
            batch.push((seq, topic, sql::envelope_from_row(row)?));
        }
        let results = join_all(
            batch
                .iter()
                .map(|(_, topic, envelope)| self.produce(topic, envelope)),
        )
        .await;
        for result in results {
            result?;
        }
        for (seq, _, _) in &batch {
            sqlx::query("DELETE FROM outbox WHERE seq = $1")
                .bind(*seq)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(batch.len())
    }

    /// Runs a stage as consumer group `<group_prefix><stage>` until `shutdown`.
    pub async fn run_stage<S: Stage>(
        &self,
        stage: Arc<S>,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let consumer: StreamConsumer = {
            let mut config = ClientConfig::new();
            config
                .set("bootstrap.servers", &self.config.brokers)
                .set(
                    "group.id",
                    format!("{}{}", self.config.group_prefix, stage.name()),
                )
                .set("enable.auto.commit", "true")
                .set("auto.commit.interval.ms", "1000")
                // Offsets are stored by hand, after the effect is durable.
                .set("enable.auto.offset.store", "false")
                .set("auto.offset.reset", "earliest")
                .set("session.timeout.ms", "10000");
            for (key, value) in &self.config.client_options {
                config.set(key, value);
            }
            config.create()?
        };
        let topic_names = stage.input_topics();
        // A stage may consume topics beyond the fixed set `connect` created (an agency's own
        // submissions topic): only those need an admin request here.
        let fixed = topics::all_with_dead_letters();
        let extra: Vec<String> = topic_names
            .iter()
            .filter(|name| !fixed.contains(name))
            .cloned()
            .collect();
        if self.config.create_topics && !extra.is_empty() {
            self.ensure_topics(&extra).await?;
        }
        let topic_refs: Vec<&str> = topic_names.iter().map(String::as_str).collect();
        consumer.subscribe(&topic_refs)?;
        tracing::info!(stage = stage.name(), "Stage consuming from Kafka.");
        let log = EventLog::Kafka(self.clone());
        loop {
            let message = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                message = consumer.recv() => message,
            };
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    tracing::warn!(stage = stage.name(), %error, "Kafka consumer error.");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if !self
                .apply_until_durable(&*stage, &log, &message, &shutdown)
                .await
            {
                // Shutting down with this message unapplied: its offset is not stored, so the
                // group redelivers it after restart.
                break;
            }
            if let Err(error) = consumer.store_offset_from_message(&message) {
                // Happens for partitions revoked by a rebalance; redelivery is harmless.
                tracing::warn!(stage = stage.name(), %error, "Could not store offset.");
            }
            self.notify_appended();
        }
        match consumer.commit_consumer_state(CommitMode::Sync) {
            // Auto-commit already committed every stored offset.
            Ok(())
            | Err(rdkafka::error::KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => {
                tracing::warn!(stage = stage.name(), %error, "Final offset commit failed; events will be redelivered.")
            }
        }
        tracing::info!(stage = stage.name(), "Stage stopped.");
        Ok(())
    }

    /// Applies a message, retrying transient failures, until its effect has committed.
    /// Returns false if shutdown came first.
    async fn apply_until_durable<S: Stage>(
        &self,
        stage: &S,
        log: &EventLog,
        message: &BorrowedMessage<'_>,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut failures = 0u32;
        loop {
            let started = Instant::now();
            match self.apply_message(stage, log, message).await {
                Ok(label) => {
                    self.metrics.processed(stage.name(), label);
                    self.metrics
                        .observe(stage.name(), started.elapsed().as_secs_f64());
                    return true;
                }
                Err(error) => {
                    self.metrics.processed(stage.name(), "retried");
                    failures = failures.saturating_add(1);
                    tracing::warn!(stage = stage.name(), %error, failures, "Stage will retry after a transient failure.");
                    tokio::select! {
                        () = tokio::time::sleep(retry_delay(failures)) => {}
                        () = shutdown.cancelled() => return false,
                    }
                }
            }
        }
    }

    async fn apply_message<S: Stage>(
        &self,
        stage: &S,
        log: &EventLog,
        message: &BorrowedMessage<'_>,
    ) -> Result<&'static str, StageError> {
        let headers = message
            .headers()
            .map(|headers| headers.iter().map(|h| (h.key, h.value)).collect::<Vec<_>>())
            .unwrap_or_default();
        let mut tx = self
            .store
            .begin()
            .await
            .map_err(|e| StageError::Retry(e.to_string()))?;
        let label = match Envelope::from_kafka(headers, message.payload()) {
            Ok(envelope) => {
                let record = Record {
                    topic: message.topic().to_owned(),
                    partition: message.partition(),
                    offset: message.offset(),
                    envelope,
                };
                apply_record(stage, log, &mut tx, &record).await?.label()
            }
            Err(error) => {
                // Not a kinlink event at all: keep the bytes in the dead-letter topic under a
                // synthetic id made from its position, so a replay is still recognisable.
                let position = format!(
                    "{}/{}/{}",
                    message.topic(),
                    message.partition(),
                    message.offset()
                );
                let record = Record {
                    topic: message.topic().to_owned(),
                    partition: message.partition(),
                    offset: message.offset(),
                    envelope: Envelope {
                        id: crate::envelope::derive_id(&position, "unparseable"),
                        source: "/kinlink/unknown".to_owned(),
                        event_type: "unknown".to_owned(),
                        subject: String::new(),
                        time_ms: kinlink_store::now_millis(),
                        partition_key: String::new(),
                        extensions: BTreeMap::new(),
                        data: message.payload().unwrap_or_default().to_vec(),
                    },
                };
                let letter = dead_letter(stage.name(), &record, &error.to_string());
                log.append_in(&mut tx, &topics::dead_letter(stage.name()), &letter)
                    .await?;
                tracing::warn!(stage = stage.name(), %error, "Unparseable message sent to the dead-letter topic.");
                "rejected"
            }
        };
        tx.commit().await?;
        Ok(label)
    }
}
