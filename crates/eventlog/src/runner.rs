//! Applying one record, the same way on every backend: skip it if the group already applied
//! its event id, otherwise let the stage handle it inside a savepoint and write its outputs
//! through the sink; a rejected record goes to the dead-letter topic instead, carrying the
//! reason. Everything lands in the caller's transaction, so the caller's commit is the one
//! durable step.

use std::collections::BTreeMap;

use sqlx::{AnyConnection, Connection};

use crate::envelope::{DLQ_REASON, DLQ_STAGE};
use crate::{EventLog, Record, Stage, StageError, sql, topics};

/// What happened to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The stage applied it and emitted this many events.
    Applied,
    /// The group had applied this event id before; nothing was done.
    Duplicate,
    /// The stage rejected it; it went to the dead-letter topic.
    Rejected,
}

impl Outcome {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Rejected => "rejected",
        }
    }
}

/// The remote parent of a W3C `traceparent`, for joining a stage's span to the trace the
/// event belongs to (the trace id travels with every derived event).
fn remote_parent(traceparent: &str) -> Option<opentelemetry::Context> {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    let mut parts = traceparent.split('-');
    let (_version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let context = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        if flags == "01" {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        },
        true,
        TraceState::default(),
    );
    context
        .is_valid()
        .then(|| opentelemetry::Context::new().with_remote_span_context(context))
}

pub(crate) async fn apply_record<S: Stage>(
    stage: &S,
    log: &EventLog,
    conn: &mut AnyConnection,
    record: &Record,
) -> Result<Outcome, StageError> {
    use tracing::Instrument;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let span = tracing::info_span!(
        "apply",
        stage = stage.name(),
        event_id = %record.envelope.id,
        event_type = %record.envelope.event_type
    );
    if let Some(parent) = record
        .envelope
        .extensions
        .get(crate::envelope::TRACEPARENT)
        .and_then(|t| remote_parent(t))
    {
        let _ = span.set_parent(parent);
    }
    apply_in_span(stage, log, conn, record)
        .instrument(span)
        .await
}

async fn apply_in_span<S: Stage>(
    stage: &S,
    log: &EventLog,
    conn: &mut AnyConnection,
    record: &Record,
) -> Result<Outcome, StageError> {
    let mut savepoint = conn.begin().await?;
    if !sql::mark_processed(&mut savepoint, stage.name(), &record.envelope.id).await? {
        savepoint.commit().await?;
        return Ok(Outcome::Duplicate);
    }
    // The stage sees the event opened; the dead letter below keeps it sealed as it came.
    let mut opened = record.clone();
    let opening = if crate::sealing::carries_personal_data(&opened.envelope.event_type) {
        log.sealer()
            .open(&mut savepoint, &mut opened.envelope)
            .await
            .map_err(|e| match e {
                // A sealed value that cannot be opened with its key is broken for good: it
                // goes to the dead-letter topic like any other rejected event.
                crate::Error::Sealing(_)
                | crate::Error::Decode { .. }
                | crate::Error::UnexpectedType { .. } => StageError::Rejected(e.to_string()),
                // The database or a missing master key: retry (the stage stalls visibly).
                other => StageError::Retry(other.to_string()),
            })
    } else {
        Ok(())
    };
    let handled = match opening {
        Ok(()) => stage.handle(&mut savepoint, &opened).await,
        Err(error) => Err(error),
    };
    match handled {
        Ok(outputs) => {
            for output in &outputs {
                log.append_in(&mut savepoint, &output.topic, &output.envelope)
                    .await?;
            }
            savepoint.commit().await?;
            Ok(Outcome::Applied)
        }
        Err(StageError::Rejected(reason)) => {
            savepoint.rollback().await?;
            let mut savepoint = conn.begin().await?;
            sql::mark_processed(&mut savepoint, stage.name(), &record.envelope.id).await?;
            let letter = dead_letter(stage.name(), record, &reason);
            log.append_in(&mut savepoint, &topics::dead_letter(stage.name()), &letter)
                .await?;
            savepoint.commit().await?;
            tracing::warn!(
                stage = stage.name(),
                event_id = %record.envelope.id,
                topic = %record.topic,
                offset = record.offset,
                %reason,
                "Event rejected and sent to the dead-letter topic."
            );
            Ok(Outcome::Rejected)
        }
        Err(retry @ StageError::Retry(_)) => {
            savepoint.rollback().await?;
            Err(retry)
        }
    }
}

/// The dead letter keeps the original id, type and payload (so a replay is recognised as the
/// same event downstream) and adds why and where it failed.
pub(crate) fn dead_letter(stage: &str, record: &Record, reason: &str) -> crate::Envelope {
    let mut letter = record.envelope.clone();
    let mut extensions = BTreeMap::new();
    extensions.insert(DLQ_REASON.to_owned(), reason.to_owned());
    extensions.insert(DLQ_STAGE.to_owned(), stage.to_owned());
    extensions.insert("kinlinkdlqtopic".to_owned(), record.topic.clone());
    extensions.insert(
        "kinlinkdlqpartition".to_owned(),
        record.partition.to_string(),
    );
    extensions.insert("kinlinkdlqoffset".to_owned(), record.offset.to_string());
    letter.extensions.extend(extensions);
    letter
}

/// Pause before retrying a transient failure: doubles from 100 ms up to 10 s, with jitter so
/// several instances do not retry in step.
pub(crate) fn retry_delay(failures: u32) -> std::time::Duration {
    let base = 100u64.saturating_mul(1u64 << failures.min(7)).min(10_000);
    let jitter = rand::random_range(0..=base / 2);
    std::time::Duration::from_millis(base / 2 + jitter)
}
