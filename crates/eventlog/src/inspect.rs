//! Read-side views of the log for operators: consumer lag per partition, reading a topic
//! range, and moving a consumer group's position. Both backends; used by `kinlink ops` and
//! the lag metrics.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sqlx::Row;

use crate::{EmbeddedLog, Envelope, Error, EventLog, KafkaLog, Record, Result, sql};

/// How far a consumer group is behind on one partition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// Next offset the group will read.
    pub committed: i64,
    /// Offset after the last event in the partition.
    pub end: i64,
    /// When the oldest event the group has not consumed was appended (ms since epoch).
    pub oldest_unconsumed_ms: Option<i64>,
}

impl PartitionLag {
    pub fn events(&self) -> i64 {
        (self.end - self.committed).max(0)
    }
}

/// Where to start reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    Start,
    Offset(i64),
    /// First event appended at or after this time (ms since epoch).
    Time(i64),
}

const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

impl EventLog {
    /// The consumer group id of a stage on this log.
    pub fn group_id(&self, stage: &str) -> String {
        match self {
            EventLog::Embedded(_) => stage.to_owned(),
            EventLog::Kafka(log) => format!("{}{stage}", log.group_prefix()),
        }
    }

    /// Lag of `group` on every partition of `topics`.
    pub async fn lag(&self, group: &str, topics: &[String]) -> Result<Vec<PartitionLag>> {
        match self {
            EventLog::Embedded(log) => log.lag(group, topics).await,
            EventLog::Kafka(log) => {
                let log = log.clone();
                let (group, topics) = (group.to_owned(), topics.to_vec());
                tokio::task::spawn_blocking(move || log.lag_blocking(&group, &topics))
                    .await
                    .map_err(|_| Error::Kafka(rdkafka::error::KafkaError::Canceled))?
            }
        }
    }

    /// Up to `limit` records of `topic` (all partitions) from `from`, oldest first per partition.
    pub async fn read(&self, topic: &str, from: ReadFrom, limit: usize) -> Result<Vec<Record>> {
        match self {
            EventLog::Embedded(log) => log.read_from(topic, from, limit).await,
            EventLog::Kafka(log) => {
                let log = log.clone();
                let topic = topic.to_owned();
                tokio::task::spawn_blocking(move || log.read_blocking(&topic, from, limit))
                    .await
                    .map_err(|_| Error::Kafka(rdkafka::error::KafkaError::Canceled))?
            }
        }
    }

    /// Moves `group` on one partition to `offset` (the next event it will read). On Kafka the
    /// group must have no running members.
    pub async fn reset_group(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<()> {
        match self {
            EventLog::Embedded(log) => {
                sqlx::query(
                    "INSERT INTO consumer_offsets (group_id, topic, partition_no, next_offset, updated_at_ms) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (group_id, topic, partition_no) \
                     DO UPDATE SET next_offset = excluded.next_offset, updated_at_ms = excluded.updated_at_ms",
                )
                .bind(group)
                .bind(topic)
                .bind(i64::from(partition))
                .bind(offset)
                .bind(kinlink_store::now_millis())
                .execute(log.store().pool())
                .await?;
                Ok(())
            }
            EventLog::Kafka(log) => {
                let log = log.clone();
                let (group, topic) = (group.to_owned(), topic.to_owned());
                tokio::task::spawn_blocking(move || {
                    log.reset_blocking(&group, &topic, partition, offset)
                })
                .await
                .map_err(|_| Error::Kafka(rdkafka::error::KafkaError::Canceled))?
            }
        }
    }
}

impl EmbeddedLog {
    async fn lag(&self, group: &str, topics: &[String]) -> Result<Vec<PartitionLag>> {
        let mut lags = Vec::new();
        for topic in topics {
            let partitions: i64 = sqlx::query("SELECT partitions FROM log_topics WHERE topic = $1")
                .bind(topic)
                .fetch_optional(self.store().pool())
                .await?
                .map(|r| r.try_get("partitions"))
                .transpose()?
                .unwrap_or(1);
            for partition in 0..partitions {
                let row = sqlx::query(
                    "SELECT COALESCE((SELECT MAX(offset_no) + 1 FROM log_events WHERE topic = $1 AND partition_no = $2), 0) AS end_offset, \
                     COALESCE((SELECT next_offset FROM consumer_offsets WHERE group_id = $3 AND topic = $1 AND partition_no = $2), 0) AS committed",
                )
                .bind(topic)
                .bind(partition)
                .bind(group)
                .fetch_one(self.store().pool())
                .await?;
                let end: i64 = row.try_get("end_offset")?;
                let committed: i64 = row.try_get("committed")?;
                let oldest = if committed < end {
                    sqlx::query(
                        "SELECT MIN(appended_at_ms) AS oldest FROM log_events WHERE topic = $1 AND partition_no = $2 AND offset_no >= $3",
                    )
                    .bind(topic)
                    .bind(partition)
                    .bind(committed)
                    .fetch_one(self.store().pool())
                    .await?
                    .try_get::<Option<i64>, _>("oldest")?
                } else {
                    None
                };
                lags.push(PartitionLag {
                    topic: topic.clone(),
                    partition: i32::try_from(partition).unwrap_or_default(),
                    committed,
                    end,
                    oldest_unconsumed_ms: oldest,
                });
            }
        }
        Ok(lags)
    }

    async fn read_from(&self, topic: &str, from: ReadFrom, limit: usize) -> Result<Vec<Record>> {
        let (offset, time) = match from {
            ReadFrom::Start => (0, 0),
            ReadFrom::Offset(offset) => (offset, 0),
            ReadFrom::Time(ms) => (0, ms),
        };
        let rows = sqlx::query(
            "SELECT topic, partition_no, offset_no, event_id, event_type, source, subject, partition_key, time_ms, \
             attributes, payload FROM log_events WHERE topic = $1 AND offset_no >= $2 AND appended_at_ms >= $3 \
             ORDER BY seq LIMIT $4",
        )
        .bind(topic)
        .bind(offset)
        .bind(time)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.store().pool())
        .await?;
        rows.iter().map(sql::record_from_row).collect()
    }
}

impl KafkaLog {
    fn base_consumer(&self, group: &str) -> Result<BaseConsumer> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.brokers())
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest");
        for (key, value) in self.client_options() {
            config.set(key, value);
        }
        Ok(config.create()?)
    }

    fn partitions(&self, consumer: &BaseConsumer, topic: &str) -> Result<Vec<i32>> {
        let metadata = consumer.fetch_metadata(Some(topic), KAFKA_TIMEOUT)?;
        Ok(metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect())
    }

    fn lag_blocking(&self, group: &str, topics: &[String]) -> Result<Vec<PartitionLag>> {
        let consumer = self.base_consumer(group)?;
        let mut lags = Vec::new();
        for topic in topics {
            let partitions = self.partitions(&consumer, topic)?;
            let mut list = TopicPartitionList::new();
            for partition in &partitions {
                list.add_partition(topic, *partition);
            }
            let committed = consumer.committed_offsets(list, KAFKA_TIMEOUT)?;
            for partition in partitions {
                let (low, high) = consumer.fetch_watermarks(topic, partition, KAFKA_TIMEOUT)?;
                let position = match committed
                    .find_partition(topic, partition)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(offset)) => offset,
                    _ => low,
                };
                let oldest = if position < high {
                    self.timestamp_at(topic, partition, position)?
                } else {
                    None
                };
                lags.push(PartitionLag {
                    topic: topic.clone(),
                    partition,
                    committed: position,
                    end: high,
                    oldest_unconsumed_ms: oldest,
                });
            }
        }
        Ok(lags)
    }

    fn timestamp_at(&self, topic: &str, partition: i32, offset: i64) -> Result<Option<i64>> {
        let peek = self.base_consumer(&format!("kinlink-ops-peek-{}", uuid::Uuid::new_v4()))?;
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, partition, Offset::Offset(offset))?;
        peek.assign(&list)?;
        let deadline = std::time::Instant::now() + KAFKA_TIMEOUT;
        while std::time::Instant::now() < deadline {
            if let Some(message) = peek.poll(Duration::from_millis(200)) {
                return Ok(message?.timestamp().to_millis());
            }
        }
        Ok(None)
    }

    fn read_blocking(&self, topic: &str, from: ReadFrom, limit: usize) -> Result<Vec<Record>> {
        let reader = self.base_consumer(&format!("kinlink-ops-read-{}", uuid::Uuid::new_v4()))?;
        let partitions = self.partitions(&reader, topic)?;
        let mut list = TopicPartitionList::new();
        let mut remaining = std::collections::HashMap::new();
        for partition in &partitions {
            let (low, high) = reader.fetch_watermarks(topic, *partition, KAFKA_TIMEOUT)?;
            let start = match from {
                ReadFrom::Start => Offset::Beginning,
                ReadFrom::Offset(offset) => Offset::Offset(offset.max(low)),
                ReadFrom::Time(ms) => Offset::Offset(ms),
            };
            list.add_partition_offset(topic, *partition, start)?;
            if high > low {
                remaining.insert(*partition, high);
            }
        }
        if let ReadFrom::Time(_) = from {
            list = reader.offsets_for_times(list, KAFKA_TIMEOUT)?;
        }
        reader.assign(&list)?;
        let mut records = Vec::new();
        let deadline = std::time::Instant::now() + KAFKA_TIMEOUT * 3;
        while !remaining.is_empty() && records.len() < limit && std::time::Instant::now() < deadline
        {
            let Some(message) = reader.poll(Duration::from_millis(200)) else {
                continue;
            };
            let message = message?;
            let headers = message
                .headers()
                .map(|headers| headers.iter().map(|h| (h.key, h.value)).collect::<Vec<_>>())
                .unwrap_or_default();
            if let Ok(envelope) = Envelope::from_kafka(headers, message.payload()) {
                records.push(Record {
                    topic: topic.to_owned(),
                    partition: message.partition(),
                    offset: message.offset(),
                    envelope,
                });
            }
            if remaining
                .get(&message.partition())
                .is_some_and(|high| message.offset() + 1 >= *high)
            {
                remaining.remove(&message.partition());
            }
        }
        Ok(records)
    }

    fn reset_blocking(&self, group: &str, topic: &str, partition: i32, offset: i64) -> Result<()> {
        let consumer = self.base_consumer(group)?;
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, partition, Offset::Offset(offset))?;
        consumer.assign(&list)?;
        consumer.commit(&list, CommitMode::Sync)?;
        Ok(())
    }
}
