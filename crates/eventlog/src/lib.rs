//! kinlink's event log: one abstraction, two backends.
//!
//! - [`EmbeddedLog`] keeps topics in the store's own database (SQLite by default). A stage's
//!   state changes, its outputs and its offset commit happen in one transaction, so a crash at
//!   any point loses nothing and applies nothing twice.
//! - [`KafkaLog`] uses Apache Kafka through rdkafka: an idempotent producer with `acks=all`,
//!   consumer groups that store offsets only after the effect is durable, idempotency on event
//!   id, and a transactional outbox in the store for outputs. It does not rely on Kafka
//!   transactions.
//!
//! Stages ([`Stage`]) are written once and run on either backend through [`EventLog`].
//!
//! Layout: [`envelope`] (CloudEvents attributes), [`topics`], [`stage`] (the stage contract),
//! `runner` (applying one record: idempotency, dead letters), [`embedded`], [`kafka`],
//! [`metrics`].

pub mod embedded;
pub mod envelope;
pub mod inspect;
pub mod kafka;
pub mod metrics;
mod runner;
pub mod sealing;
pub mod sql;
pub mod stage;
pub mod topics;

use std::sync::Arc;

use sqlx::AnyConnection;
use tokio_util::sync::CancellationToken;

pub use embedded::EmbeddedLog;
pub use envelope::Envelope;
pub use kafka::{KafkaConfig, KafkaLog};
pub use metrics::LogMetrics;
pub use sealing::{MasterKeys, Sealer};
pub use stage::{Output, Record, Stage, StageError};

/// Errors of the event log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] kinlink_store::Error),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("kafka error: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("could not create topic {topic}: {reason}")]
    TopicCreation { topic: String, reason: String },
    #[error("event has type {found}, expected {expected}")]
    UnexpectedType { expected: String, found: String },
    #[error("event of type {event_type} does not decode: {source}")]
    Decode {
        event_type: String,
        #[source]
        source: prost::DecodeError,
    },
    #[error("event lacks the CloudEvents attribute `{attribute}`")]
    MissingAttribute { attribute: String },
    #[error("CloudEvents attribute `{attribute}` is malformed")]
    BadAttribute { attribute: String },
    #[error("the shared commit failed: {0}")]
    GroupCommit(String),
    #[error("the embedded log needs an embedded store")]
    Misconfigured,
    /// Sealing or opening personal data failed (names a key id, never a value).
    #[error("sealing: {0}")]
    Sealing(String),
    /// A data key was wrapped under a master key this process does not have (add it to
    /// `privacy.previous_master_keys`).
    #[error("data key {key_id} is wrapped under master key {master_key}, which is not configured")]
    MasterKeyMissing { key_id: String, master_key: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The log a process runs on: embedded (default) or Kafka. Cheap to clone.
#[derive(Debug, Clone)]
pub enum EventLog {
    Embedded(EmbeddedLog),
    Kafka(KafkaLog),
}

impl EventLog {
    /// Appends one event and returns once it is durable in the log (intake's 202 waits on this).
    pub async fn publish(&self, topic: &str, envelope: &Envelope) -> Result<()> {
        match self {
            EventLog::Embedded(log) => log.publish(topic, envelope).await,
            EventLog::Kafka(log) => log.publish(topic, envelope).await,
        }
    }

    /// Adds an event to the caller's transaction: appended to the embedded log, or written to
    /// the outbox for Kafka. Call [`EventLog::notify_appended`] after committing.
    pub async fn append_in(
        &self,
        conn: &mut AnyConnection,
        topic: &str,
        envelope: &Envelope,
    ) -> Result<()> {
        match self {
            EventLog::Embedded(log) => log.append_in(conn, topic, envelope).await.map(|_| ()),
            EventLog::Kafka(log) => log.append_in(conn, topic, envelope).await,
        }
    }

    /// Seals and opens this log's personal data.
    pub fn sealer(&self) -> &Sealer {
        match self {
            EventLog::Embedded(log) => log.sealer(),
            EventLog::Kafka(log) => log.sealer(),
        }
    }

    /// Wakes whoever moves committed events on: embedded consumers, or the outbox relay.
    pub fn notify_appended(&self) {
        match self {
            EventLog::Embedded(log) => log.notify_appended(),
            EventLog::Kafka(log) => log.notify_appended(),
        }
    }

    /// Signalled (every waiter at once) after each commit in this process that wrote events:
    /// lets a worker that polls a table fed by a stage (the delivery worker) start as soon as
    /// there is something to do, instead of at its next poll. Register with
    /// `notified()` + `enable()` before looking, so a commit in between is not missed.
    pub fn commits(&self) -> Arc<tokio::sync::Notify> {
        match self {
            EventLog::Embedded(log) => log.commits().clone(),
            EventLog::Kafka(log) => log.commits().clone(),
        }
    }

    /// Runs `stage` until `shutdown` is cancelled, then finishes the event in hand, commits
    /// and returns.
    pub async fn run_stage<S: Stage>(
        &self,
        stage: Arc<S>,
        shutdown: CancellationToken,
    ) -> Result<()> {
        match self {
            EventLog::Embedded(log) => log.run_stage(stage, shutdown).await,
            EventLog::Kafka(log) => log.run_stage(stage, shutdown).await,
        }
    }

    /// Background work of the backend (the Kafka outbox relay); returns after `shutdown`,
    /// having flushed what it could.
    pub async fn run_background(&self, shutdown: CancellationToken) -> Result<()> {
        match self {
            EventLog::Embedded(_) => {
                shutdown.cancelled().await;
                Ok(())
            }
            EventLog::Kafka(log) => log.run_outbox_relay(shutdown).await,
        }
    }

    /// Checks the log is reachable (used by `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        match self {
            EventLog::Embedded(log) => Ok(log.store().ping().await?),
            EventLog::Kafka(log) => log.ping().await,
        }
    }
}
