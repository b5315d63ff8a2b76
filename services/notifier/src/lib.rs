//! kinlink notifier: delivers every alert to the authority's webhook and records each attempt.
//!
//! Two parts, so a slow or failing authority never blocks the log:
//! - [`AlertInbox`], a stage on `kinlink.alerts.raised`, files each alert as a pending
//!   delivery (in the stage's transaction, so an alert is never lost or filed twice);
//! - [`DeliveryWorker`] sends due deliveries, records the outcome in the delivery ledger and
//!   emits `AlertDelivered` / `AlertDeliveryFailed` to `kinlink.alerts.lifecycle`.
//!
//! An attempt is recorded as in flight *before* the request is sent and its outcome after, so
//! a crash in between leads to one more attempt carrying the same `webhook-id` (the alert id),
//! which the receiver can drop. A retry is the only way an alert is sent twice.
//!
//! Layout: [`policy`] (pure: outcome -> next step), [`webhook`] (HTTP), this file.

pub mod policy;
pub mod webhook;

use std::collections::HashMap;
use std::time::Duration;

use kinlink_eventlog::{Envelope, EventLog, Output, Record, Stage, StageError, topics};
use kinlink_proto::v1;
use kinlink_runtime::settings::NotifierSettings;
use kinlink_store::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use prost::Message;
use sqlx::{AnyConnection, Row};
use tokio_util::sync::CancellationToken;

use crate::policy::{AttemptOutcome, NextStep};

/// CloudEvents `source` of events the notifier emits.
pub const SOURCE: &str = "/kinlink/notifier";

/// Errors of the delivery worker.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Log(#[from] kinlink_eventlog::Error),
    #[error(transparent)]
    Store(#[from] kinlink_store::Error),
    #[error("stored alert {alert_id} does not decode")]
    CorruptAlert { alert_id: String },
    #[error("could not build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Delivery states in the `deliveries` table.
mod state {
    pub const PENDING: &str = "pending";
    pub const DELIVERED: &str = "delivered";
    pub const FAILED: &str = "failed";
    /// No authority resolved: waits for a person to route it.
    pub const TRIAGE: &str = "triage";
}

/// The stage that files raised alerts as pending deliveries.
#[derive(Debug, Default, Clone)]
pub struct AlertInbox;

impl Stage for AlertInbox {
    fn name(&self) -> &'static str {
        "notifier"
    }

    fn input_topics(&self) -> Vec<String> {
        vec![topics::ALERTS_RAISED.to_owned()]
    }

    async fn handle(
        &self,
        conn: &mut AnyConnection,
        record: &Record,
    ) -> Result<Vec<Output>, StageError> {
        let alert: v1::AlertRaised = record.envelope.decode()?;
        if alert.alert_id.is_empty() {
            return Err(StageError::Rejected("alert has no alert_id".to_owned()));
        }
        let initial = if alert.authority_code.is_empty() {
            state::TRIAGE
        } else {
            state::PENDING
        };
        let now = kinlink_store::now_millis();
        sqlx::query(
            "INSERT INTO deliveries (alert_id, referral_id, authority_code, state, attempts, next_attempt_at_ms, \
             alert, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, 0, $5, $6, $5, $5) ON CONFLICT DO NOTHING",
        )
        .bind(&alert.alert_id)
        .bind(&alert.referral_id)
        .bind(&alert.authority_code)
        .bind(initial)
        .bind(now)
        .bind(alert.encode_to_vec())
        .execute(conn)
        .await?;
        Ok(Vec::new())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    authority: String,
    outcome: String,
}

/// Sends due deliveries and records their outcomes.
#[derive(Debug, Clone)]
pub struct DeliveryWorker {
    store: Store,
    log: EventLog,
    client: webhook::WebhookClient,
    endpoints: HashMap<String, String>,
    delays: Vec<Duration>,
    attempts: Family<AttemptLabels, Counter>,
}

/// How often the worker looks for due deliveries. Retries fire within this of their time.
const POLL: Duration = Duration::from_millis(250);

impl DeliveryWorker {
    pub fn new(
        store: Store,
        log: EventLog,
        settings: &NotifierSettings,
        registry: &mut Registry,
    ) -> Result<Self, Error> {
        let attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "kinlink_notifier_delivery_attempts",
            "Webhook delivery attempts by authority and outcome",
            attempts.clone(),
        );
        Ok(Self {
            store,
            log,
            client: webhook::WebhookClient::new(Duration::from_millis(settings.timeout_ms))?,
            endpoints: settings
                .authorities
                .iter()
                .map(|a| (a.code.clone(), a.webhook_url.clone()))
                .collect(),
            delays: settings
                .retry_delays_ms
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
            attempts,
        })
    }

    /// Lease on a claimed delivery: longer than one request, so two workers sharing a store
    /// do not send the same attempt, short enough that a crashed worker's claim expires.
    fn lease(&self) -> i64 {
        i64::try_from(self.client.timeout().as_millis()).unwrap_or(15_000) + 5_000
    }

    /// Makes in-flight attempts due again. Only for a process that is the sole notifier
    /// (the embedded default): after a crash, its own claims would otherwise wait out the lease.
    pub async fn release_claims(&self) -> Result<u64, Error> {
        let result = sqlx::query("UPDATE deliveries SET next_attempt_at_ms = $1 WHERE state = $2 AND next_attempt_at_ms > $1")
            .bind(kinlink_store::now_millis())
            .bind(state::PENDING)
            .execute(self.store.pool())
            .await?;
        Ok(result.rows_affected())
    }

    /// Delivers until `shutdown`; the attempt in hand completes first.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        while !shutdown.is_cancelled() {
            match self.deliver_due(&shutdown).await {
                Ok(0) => {
                    tokio::select! {
                        () = tokio::time::sleep(POLL) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "Delivery pass failed; retrying shortly.");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// One pass over due deliveries; returns how many were attempted.
    pub async fn deliver_due(&self, shutdown: &CancellationToken) -> Result<usize, Error> {
        let due = sqlx::query(
            "SELECT alert_id, attempts FROM deliveries WHERE state = $1 AND next_attempt_at_ms <= $2 \
             ORDER BY next_attempt_at_ms LIMIT 16",
        )
        .bind(state::PENDING)
        .bind(kinlink_store::now_millis())
        .fetch_all(self.store.pool())
        .await?;
        let mut attempted = 0;
        for row in due {
            if shutdown.is_cancelled() {
                break;
            }
            let alert_id: String = row.try_get("alert_id")?;
            let attempts: i64 = row.try_get("attempts")?;
            if let Some(alert) = self.claim(&alert_id, attempts).await? {
                self.attempt(alert, u32::try_from(attempts + 1).unwrap_or(u32::MAX))
                    .await?;
                attempted += 1;
            }
        }
        Ok(attempted)
    }

    /// Claims the delivery if nobody else has since it was read (compare-and-set on the
    /// attempt count) and records the attempt as in flight, durably, before any request.
    async fn claim(&self, alert_id: &str, attempts: i64) -> Result<Option<v1::AlertRaised>, Error> {
        let now = kinlink_store::now_millis();
        let mut tx = self.store.begin().await?;
        let claimed = sqlx::query(
            "UPDATE deliveries SET attempts = attempts + 1, next_attempt_at_ms = $1, updated_at_ms = $2 \
             WHERE alert_id = $3 AND attempts = $4 AND state = $5",
        )
        .bind(now + self.lease())
        .bind(now)
        .bind(alert_id)
        .bind(attempts)
        .bind(state::PENDING)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() != 1 {
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO delivery_attempts (alert_id, attempt, started_at_ms, outcome) VALUES ($1, $2, $3, 'in_flight') \
             ON CONFLICT DO NOTHING",
        )
        .bind(alert_id)
        .bind(attempts + 1)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("SELECT alert FROM deliveries WHERE alert_id = $1")
            .bind(alert_id)
            .fetch_one(&mut *tx)
            .await?;
        let bytes: Vec<u8> = row.try_get("alert")?;
        let alert = v1::AlertRaised::decode(bytes.as_slice()).map_err(|_| Error::CorruptAlert {
            alert_id: alert_id.to_owned(),
        })?;
        tx.commit().await?;
        Ok(Some(alert))
    }

    async fn attempt(&self, alert: v1::AlertRaised, attempt: u32) -> Result<(), Error> {
        let outcome = match self.endpoints.get(&alert.authority_code) {
            Some(url) => self.client.send(url, &alert).await,
            None => AttemptOutcome::NoEndpoint,
        };
        let next = policy::next_step(outcome, attempt, &self.delays);
        let (label, status) = match outcome {
            AttemptOutcome::Accepted(code) => ("delivered", code),
            AttemptOutcome::Status(code) => ("http_error", code),
            AttemptOutcome::NoResponse => ("no_response", 0),
            AttemptOutcome::NoEndpoint => ("no_endpoint", 0),
        };
        self.attempts
            .get_or_create(&AttemptLabels {
                authority: alert.authority_code.clone(),
                outcome: label.to_owned(),
            })
            .inc();
        let now = kinlink_store::now_millis();
        let now_ts = Some(kinlink_proto::timestamp_from_millis(now));
        let (new_state, next_at, event) = match next {
            NextStep::Delivered => {
                let delivered = v1::AlertDelivered {
                    alert_id: alert.alert_id.clone(),
                    authority_code: alert.authority_code.clone(),
                    attempt,
                    http_status: u32::from(status),
                    delivered_at: now_ts,
                };
                (
                    state::DELIVERED,
                    now,
                    self.lifecycle(&alert.alert_id, "delivered", now, &delivered),
                )
            }
            NextStep::RetryAfter(delay) => {
                let at = now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
                let failed = failure(&alert, attempt, status, label, Some(at), now);
                (
                    state::PENDING,
                    at,
                    self.lifecycle(&alert.alert_id, &format!("failed/{attempt}"), now, &failed),
                )
            }
            NextStep::GiveUp => {
                let failed = failure(&alert, attempt, status, label, None, now);
                (
                    state::FAILED,
                    now,
                    self.lifecycle(&alert.alert_id, &format!("failed/{attempt}"), now, &failed),
                )
            }
        };
        let mut tx = self.store.begin().await?;
        sqlx::query(
            "UPDATE delivery_attempts SET finished_at_ms = $1, http_status = $2, outcome = $3 WHERE alert_id = $4 AND attempt = $5",
        )
        .bind(now)
        .bind(i64::from(status))
        .bind(label)
        .bind(&alert.alert_id)
        .bind(i64::from(attempt))
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE deliveries SET state = $1, next_attempt_at_ms = $2, updated_at_ms = $3 WHERE alert_id = $4")
            .bind(new_state)
            .bind(next_at)
            .bind(now)
            .bind(&alert.alert_id)
            .execute(&mut *tx)
            .await?;
        self.log
            .append_in(&mut tx, topics::ALERTS_LIFECYCLE, &event)
            .await?;
        tx.commit().await?;
        self.log.notify_appended();
        tracing::info!(alert_id = %alert.alert_id, authority = %alert.authority_code, attempt, outcome = label, state = new_state, "Delivery attempt recorded.");
        Ok(())
    }

    fn lifecycle<M: prost::Message + prost::Name>(
        &self,
        alert_id: &str,
        what: &str,
        now: i64,
        message: &M,
    ) -> Envelope {
        Envelope::new(
            kinlink_eventlog::envelope::derive_id(alert_id, what),
            SOURCE,
            alert_id,
            alert_id,
            now,
            message,
        )
    }
}

/// Adds the notifier to a process that may share its store with other notifiers.
pub fn install(
    process: &mut kinlink_runtime::Process,
) -> Result<axum::Router, kinlink_runtime::process::TaskError> {
    spawn(process, false)?;
    Ok(axum::Router::new())
}

/// Adds the notifier to a process: the alert inbox stage and the delivery worker.
/// `sole_notifier` is true when no other process delivers from the same store (the embedded
/// default): claims left by a crash are then released at once instead of after the lease.
pub fn spawn(process: &mut kinlink_runtime::Process, sole_notifier: bool) -> Result<(), Error> {
    let worker = DeliveryWorker::new(
        process.store.clone(),
        process.log.clone(),
        &process.settings.notifier,
        &mut process.registry,
    )?;
    process.spawn_stage(AlertInbox);
    let shutdown = process.shutdown.clone();
    process.spawn("delivery", async move {
        if sole_notifier {
            let released = worker.release_claims().await?;
            if released > 0 {
                tracing::info!(
                    released,
                    "Released delivery claims left by the previous run."
                );
            }
        }
        worker.run(shutdown).await.map_err(Into::into)
    });
    Ok(())
}

fn failure(
    alert: &v1::AlertRaised,
    attempt: u32,
    status: u16,
    reason: &str,
    next_at: Option<i64>,
    now: i64,
) -> v1::AlertDeliveryFailed {
    v1::AlertDeliveryFailed {
        alert_id: alert.alert_id.clone(),
        authority_code: alert.authority_code.clone(),
        attempt,
        http_status: u32::from(status),
        reason: reason.to_owned(),
        will_retry: next_at.is_some(),
        next_attempt_at: next_at.map(kinlink_proto::timestamp_from_millis),
        failed_at: Some(kinlink_proto::timestamp_from_millis(now)),
    }
}
