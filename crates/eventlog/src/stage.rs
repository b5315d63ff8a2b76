//! What a pipeline stage is, independent of where its events come from.
//!
//! A stage is a function from one input event (plus its own tables, through the connection it
//! is given) to output events. The runners in [`crate::embedded`] and [`crate::kafka`] bind it
//! to a log: they open the transaction, skip events already applied, hand the outputs to the
//! log or the outbox inside the same transaction, and commit the input's offset only once that
//! transaction is durable.

use std::future::Future;

use sqlx::AnyConnection;

use crate::Envelope;

/// An event read from a topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub envelope: Envelope,
}

/// An event a stage wants appended to `topic`.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub topic: String,
    pub envelope: Envelope,
}

impl Output {
    pub fn new(topic: &str, envelope: Envelope) -> Self {
        Self {
            topic: topic.to_owned(),
            envelope,
        }
    }
}

/// Why a stage could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The event can never be applied (malformed, violates a contract): it goes to the
    /// stage's dead-letter topic with this reason and the stage moves on. The reason must not
    /// contain personal data.
    #[error("rejected: {0}")]
    Rejected(String),
    /// A transient failure (database unavailable): the runner rolls back and tries the same
    /// event again after a pause, without committing past it.
    #[error("transient failure: {0}")]
    Retry(String),
}

impl From<sqlx::Error> for StageError {
    fn from(error: sqlx::Error) -> Self {
        StageError::Retry(format!("database: {error}"))
    }
}

impl From<crate::Error> for StageError {
    fn from(error: crate::Error) -> Self {
        match error {
            crate::Error::UnexpectedType { .. }
            | crate::Error::Decode { .. }
            | crate::Error::MissingAttribute { .. }
            | crate::Error::BadAttribute { .. } => StageError::Rejected(error.to_string()),
            other => StageError::Retry(other.to_string()),
        }
    }
}

/// A consumer of events. `name` is its consumer group and names its dead-letter topic.
pub trait Stage: Send + Sync + 'static {
    /// Consumer group name, e.g. `enricher`.
    fn name(&self) -> &'static str;

    /// Topics the stage consumes: by default its row in [`crate::topics::STAGE_INPUTS`], so
    /// the pipeline's wiring is read in one table rather than in each service.
    fn input_topics(&self) -> Vec<String> {
        crate::topics::inputs_of(self.name())
    }

    /// Applies one event. Writes to the stage's own tables through `conn`, which is inside a
    /// transaction the runner owns; returns the events to append.
    fn handle(
        &self,
        conn: &mut AnyConnection,
        record: &Record,
    ) -> impl Future<Output = Result<Vec<Output>, StageError>> + Send;
}
