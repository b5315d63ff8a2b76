//! Sending due deliveries and recording their outcomes in the delivery ledger.
//!
//! An attempt is recorded as in flight *before* the request is sent and its outcome after, so
//! a crash in between leads to one more attempt carrying the same `webhook-id` (the alert id),
//! which the receiver can drop. A retry is the only way an alert is sent twice.

use std::sync::Arc;
use std::time::Duration;

use kinlink_eventlog::{Envelope, EventLog, topics};
use kinlink_proto::v1;
use kinlink_store::Store;
use kinlink_store::audit::{self, AuditEntry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use sqlx::Row;
use tokio_util::sync::CancellationToken;

use crate::directory::Directory;
use crate::policy::{self, AttemptOutcome, GiveUp, NextStep};
use crate::webhook::{WebhookClient, WebhookPayload};
use kinlink_domain::lifecycle::DeliveryState;

use crate::{Error, SOURCE};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    pub(crate) authority: String,
    pub(crate) outcome: String,
}

/// Sends due deliveries, fires due escalations, records everything.
#[derive(Clone)]
pub struct DeliveryWorker {
    pub(crate) store: Store,
    pub(crate) log: EventLog,
    pub(crate) client: WebhookClient,
    pub(crate) directory: Arc<Directory>,
    delays: Vec<Duration>,
    attempts: Family<OutcomeLabels, Counter>,
    pub(crate) escalations: Family<OutcomeLabels, Counter>,
    clock: Clock,
    /// Requests in flight at once, in all and to one authority's endpoint.
    concurrency: usize,
    per_endpoint: usize,
}

pub use kinlink_store::Clock;

impl std::fmt::Debug for DeliveryWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryWorker")
            .field("directory", &self.directory)
            .finish_non_exhaustive()
    }
}

/// Most deliveries one pass claims (and one transaction records).
const PASS: usize = 64;

/// A delivery attempt the worker has claimed: the alert as stored, the ledger's attempt
/// number, and which attempt of the current revision it is (that drives the retry schedule).
#[derive(Debug)]
struct Claim {
    alert: v1::AlertRaised,
    attempt: u32,
    of_revision: u32,
}

/// What sending one attempt came to.
#[derive(Debug, Clone, Copy)]
struct Sent {
    outcome: AttemptOutcome,
    /// The authority has no webhook (it hears by email or SMS): settled without a request.
    no_webhook: bool,
}

impl Sent {
    /// The ledger's and the metrics' name for the outcome.
    fn label(self) -> &'static str {
        match self.outcome {
            AttemptOutcome::Accepted(_) if self.no_webhook => "no_webhook",
            AttemptOutcome::Accepted(_) => "delivered",
            AttemptOutcome::Status(..) => "http_error",
            AttemptOutcome::NoResponse => "no_response",
            AttemptOutcome::NoEndpoint => "no_endpoint",
        }
    }
}

/// How often the worker looks for due work. Retries and escalation timers fire within this.
const POLL: Duration = Duration::from_millis(250);

/// An operator replays a delivery the notifier gave up on: it is due again now with a fresh
/// retry budget, and the authority's endpoint, withdrawn by a 410, is enabled again (the
/// operator has had it fixed). The only way `deliveries` and `endpoint_state` change from
/// outside the worker.
pub async fn requeue_given_up(
    conn: &mut sqlx::AnyConnection,
    alert_id: &str,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE deliveries SET state = $1, base_attempts = attempts, next_attempt_at_ms = $2 WHERE alert_id = $3",
    )
    .bind(DeliveryState::Pending.as_str())
    .bind(now_ms)
    .bind(alert_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "DELETE FROM endpoint_state WHERE authority_code = (SELECT authority_code FROM deliveries WHERE alert_id = $1)",
    )
    .bind(alert_id)
    .execute(conn)
    .await?;
    Ok(())
}

impl DeliveryWorker {
    pub fn new(
        store: Store,
        log: EventLog,
        directory: Arc<Directory>,
        settings: &kinlink_runtime::settings::NotifierSettings,
        registry: &mut Registry,
    ) -> Result<Self, Error> {
        let attempts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "kinlink_notifier_delivery_attempts",
            "Webhook delivery attempts by authority and outcome",
            attempts.clone(),
        );
        let escalations = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "kinlink_notifier_escalations",
            "Escalations by authority and outcome (secondary, on_call, on_call_resolved, failed)",
            escalations.clone(),
        );
        // Every configured authority's series exist from the start, so alerting rules see a
        // failure as an increase from zero.
        for code in directory.codes() {
            for outcome in ["secondary", "on_call", "on_call_resolved", "failed"] {
                let _ = escalations.get_or_create(&OutcomeLabels {
                    authority: code.to_owned(),
                    outcome: outcome.to_owned(),
                });
            }
        }
        Ok(Self {
            store,
            log,
            client: WebhookClient::new(Duration::from_millis(settings.timeout_ms))?,
            directory,
            delays: settings
                .retry_delays_ms
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
            attempts,
            escalations,
            clock: kinlink_store::Clock::system(),
            concurrency: settings.delivery_concurrency.max(1),
            per_endpoint: settings.per_endpoint_concurrency.max(1),
        })
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub(crate) fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Lease on a claimed delivery: longer than one request, so two workers sharing a store
    /// do not send the same attempt, short enough that a crashed worker's claim expires.
    fn lease(&self) -> i64 {
        i64::try_from(self.client.timeout().as_millis()).unwrap_or(15_000) + 5_000
    }

    /// Makes in-flight attempts due again. Only for a process that is the sole notifier
    /// (the embedded default): after a crash, its own claims would otherwise wait out the lease.
    pub async fn release_claims(&self) -> Result<u64, Error> {
        let result = sqlx::query(
            "UPDATE deliveries SET next_attempt_at_ms = $1 WHERE state = $2 AND next_attempt_at_ms > $1 \
             AND alert_id IN (SELECT alert_id FROM delivery_attempts WHERE outcome = 'in_flight')",
        )
        .bind(self.now())
        .bind(DeliveryState::Pending.as_str())
        .execute(self.store.pool())
        .await?;
        Ok(result.rows_affected())
    }

    /// Delivers and escalates until `shutdown`; the request in hand completes first.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        // New deliveries are written by the notifier's stage in this process: its commit
        // wakes the worker, so a delivery does not wait for the next poll.
        let commits = self.log.commits();
        while !shutdown.is_cancelled() {
            let committed = commits.notified();
            let mut committed = std::pin::pin!(committed);
            committed.as_mut().enable();
            let pass = async {
                let delivered = self.deliver_due(&shutdown).await?;
                let escalated = self.escalate_due(&shutdown).await?;
                Ok::<_, Error>(delivered + escalated)
            };
            match pass.await {
                Ok(0) => {
                    tokio::select! {
                        () = committed => {}
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
    ///
    /// The pass claims up to [`PASS`] due deliveries in one transaction, sends them
    /// concurrently (at most `delivery_concurrency` requests in all and
    /// `per_endpoint_concurrency` to one authority's endpoint), and records the outcomes in
    /// transactions of whatever has finished, so a fast endpoint's results are durable while a
    /// slow one is still answering. Two commits per batch rather than two per delivery.
    pub async fn deliver_due(&self, shutdown: &CancellationToken) -> Result<usize, Error> {
        use futures::StreamExt;
        let due = sqlx::query(
            "SELECT alert_id, attempts, base_attempts FROM deliveries WHERE state = $1 AND next_attempt_at_ms <= $2 \
             ORDER BY next_attempt_at_ms LIMIT $3",
        )
        .bind(DeliveryState::Pending.as_str())
        .bind(self.now())
        .bind(PASS as i64)
        .fetch_all(self.store.reader())
        .await?;
        if due.is_empty() || shutdown.is_cancelled() {
            return Ok(0);
        }
        let mut wanted = Vec::with_capacity(due.len());
        for row in due {
            wanted.push((
                row.try_get::<String, _>("alert_id")?,
                row.try_get::<i64, _>("attempts")?,
                row.try_get::<i64, _>("base_attempts")?,
            ));
        }
        let claimed = self.claim(&wanted).await?;
        let attempted = claimed.len();
        let disabled: std::collections::HashSet<String> =
            sqlx::query("SELECT authority_code FROM endpoint_state")
                .fetch_all(self.store.reader())
                .await?
                .iter()
                .map(|row| row.try_get::<String, _>("authority_code"))
                .collect::<Result<_, _>>()?;
        let mut per_endpoint: std::collections::HashMap<String, Arc<tokio::sync::Semaphore>> =
            std::collections::HashMap::new();
        let sends = claimed.into_iter().map(|claim| {
            let gate = per_endpoint
                .entry(claim.alert.authority_code.clone())
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.per_endpoint)))
                .clone();
            let disabled = &disabled;
            async move {
                // The semaphore is never closed, so acquiring only waits.
                let _permit = gate.acquire_owned().await.ok();
                let sent = self.send(&claim.alert, disabled).await;
                (claim, sent)
            }
        });
        let mut finished = futures::stream::iter(sends)
            .buffer_unordered(self.concurrency)
            .ready_chunks(PASS);
        while let Some(chunk) = finished.next().await {
            let mut tx = self.store.begin().await?;
            let mut recorded = Vec::with_capacity(chunk.len());
            for (claim, sent) in &chunk {
                recorded.push(self.record(&mut tx, claim, *sent).await?);
            }
            tx.commit().await?;
            self.log.notify_appended();
            for ((claim, sent), state) in chunk.iter().zip(recorded) {
                let label = sent.label();
                self.attempts
                    .get_or_create(&OutcomeLabels {
                        authority: claim.alert.authority_code.clone(),
                        outcome: label.to_owned(),
                    })
                    .inc();
                match state {
                    Some(state) => {
                        tracing::info!(alert_id = %claim.alert.alert_id, authority = %claim.alert.authority_code, attempt = claim.attempt, outcome = label, state, "Delivery attempt recorded.")
                    }
                    None => tracing::info!(
                        alert_id = %claim.alert.alert_id,
                        attempt = claim.attempt,
                        outcome = label,
                        revision = claim.alert.revision.max(1),
                        "Attempt for a superseded revision recorded; the amendment is delivered next."
                    ),
                }
            }
        }
        Ok(attempted)
    }

    /// Claims each delivery if nobody else has since it was read (compare-and-set on the
    /// attempt count) and records its attempt as in flight, durably, before any request: one
    /// transaction for the whole batch.
    async fn claim(&self, due: &[(String, i64, i64)]) -> Result<Vec<Claim>, Error> {
        let now = self.now();
        let mut tx = self.store.begin().await?;
        let mut claimed = Vec::with_capacity(due.len());
        for (alert_id, attempts, base) in due {
            let won = sqlx::query(
                "UPDATE deliveries SET attempts = attempts + 1, next_attempt_at_ms = $1, updated_at_ms = $2 \
                 WHERE alert_id = $3 AND attempts = $4 AND state = $5",
            )
            .bind(now + self.lease())
            .bind(now)
            .bind(alert_id)
            .bind(attempts)
            .bind(DeliveryState::Pending.as_str())
            .execute(&mut *tx)
            .await?;
            if won.rows_affected() != 1 {
                continue;
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
            claimed.push(Claim {
                alert: crate::stored_alert(alert_id, &bytes)?,
                attempt: u32::try_from(attempts + 1).unwrap_or(u32::MAX),
                of_revision: u32::try_from(attempts + 1 - base).unwrap_or(1),
            });
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Sends one claimed attempt; no store access (`disabled` is read once per pass).
    async fn send(
        &self,
        alert: &v1::AlertRaised,
        disabled: &std::collections::HashSet<String>,
    ) -> Sent {
        let endpoint = self.directory.endpoint(&alert.authority_code);
        // An authority with no webhook hears by email or SMS (`channels.rs`, its own ledger):
        // nothing to post, so the webhook delivery is settled at once.
        let no_webhook = endpoint.is_some_and(|e| e.url.is_empty());
        let outcome = match endpoint {
            Some(_) if no_webhook => AttemptOutcome::Accepted(0),
            Some(_) if disabled.contains(&alert.authority_code) => AttemptOutcome::NoEndpoint,
            Some(endpoint) => {
                let payload = WebhookPayload::from_alert(
                    alert,
                    &self.directory.public_base_url,
                    endpoint.full_payload,
                );
                self.client
                    .send(
                        &endpoint.url,
                        &message_id(alert),
                        &payload,
                        &endpoint.secrets,
                    )
                    .await
            }
            None => AttemptOutcome::NoEndpoint,
        };
        Sent {
            outcome,
            no_webhook,
        }
    }

    /// Records a sent attempt's outcome in `tx`: the ledger row, the delivery's next state and
    /// the lifecycle event. Returns the delivery's new state, or None when the attempt was for
    /// a revision an amendment has since replaced.
    async fn record(
        &self,
        tx: &mut kinlink_store::Tx,
        claim: &Claim,
        sent: Sent,
    ) -> Result<Option<&'static str>, Error> {
        let Claim {
            alert,
            attempt,
            of_revision,
        } = claim;
        let (attempt, of_revision) = (*attempt, *of_revision);
        let outcome = sent.outcome;
        let next = policy::next_step(
            outcome,
            of_revision,
            &self.delays,
            rand::random_range(-1.0..=1.0),
        );
        let label = sent.label();
        let status = match outcome {
            AttemptOutcome::Accepted(code) | AttemptOutcome::Status(code, _) => code,
            AttemptOutcome::NoResponse | AttemptOutcome::NoEndpoint => 0,
        };
        let now = self.now();
        sqlx::query(
            "UPDATE delivery_attempts SET finished_at_ms = $1, http_status = $2, outcome = $3 WHERE alert_id = $4 AND attempt = $5",
        )
        .bind(now)
        .bind(i64::from(status))
        .bind(label)
        .bind(&alert.alert_id)
        .bind(i64::from(attempt))
        .execute(&mut **tx)
        .await?;
        // An amendment filed while this attempt was in flight replaced the alert: this
        // attempt's outcome belongs to the old revision and must not settle the new one, which
        // is due and will be sent with its own webhook-id.
        let current: Option<i64> =
            sqlx::query("SELECT revision FROM deliveries WHERE alert_id = $1")
                .bind(&alert.alert_id)
                .fetch_optional(&mut **tx)
                .await?
                .map(|r| r.try_get("revision"))
                .transpose()?;
        let sent_revision = i64::from(alert.revision.max(1));
        if current.is_some_and(|current| current != sent_revision) {
            return Ok(None);
        }
        let (new_state, next_at) = match next {
            NextStep::Delivered => {
                let delivered = v1::AlertDelivered {
                    alert_id: alert.alert_id.clone(),
                    authority_code: alert.authority_code.clone(),
                    attempt,
                    http_status: u32::from(status),
                    delivered_at: Some(kinlink_proto::timestamp_from_millis(now)),
                };
                let event = lifecycle(&alert.alert_id, "delivered", now, &delivered);
                self.log
                    .append_in(tx, topics::ALERTS_LIFECYCLE, &event)
                    .await?;
                let detail = format!("attempt {attempt}, HTTP {status}");
                audit::append(
                    tx,
                    &AuditEntry {
                        action: "webhook_sent",
                        actor: "notifier",
                        authority_code: &alert.authority_code,
                        alert_id: &alert.alert_id,
                        detail: &detail,
                    },
                )
                .await?;
                (DeliveryState::Delivered.as_str(), now)
            }
            NextStep::RetryAfter(delay) => {
                let at = now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
                let failed = failure(alert, attempt, status, label, Some(at), now);
                let event = lifecycle(&alert.alert_id, &format!("failed/{attempt}"), now, &failed);
                self.log
                    .append_in(tx, topics::ALERTS_LIFECYCLE, &event)
                    .await?;
                (DeliveryState::Pending.as_str(), at)
            }
            NextStep::GiveUp(why) => {
                self.give_up(tx, alert, attempt, status, label, why, now)
                    .await?;
                (DeliveryState::Failed.as_str(), now)
            }
        };
        // Compare-and-set on the revision sent: only the revision it settles is changed.
        sqlx::query(
            "UPDATE deliveries SET state = $1, next_attempt_at_ms = $2, updated_at_ms = $3 WHERE alert_id = $4 AND revision = $5",
        )
        .bind(new_state)
        .bind(next_at)
        .bind(now)
        .bind(&alert.alert_id)
        .bind(sent_revision)
        .execute(&mut **tx)
        .await?;
        Ok(Some(new_state))
    }

    /// Delivery failed for good: disable a withdrawn endpoint, put the alert on the
    /// notifier's dead-letter topic with the reason, and escalate at once.
    #[allow(clippy::too_many_arguments)]
    async fn give_up(
        &self,
        tx: &mut kinlink_store::Tx,
        alert: &v1::AlertRaised,
        attempt: u32,
        status: u16,
        label: &str,
        why: GiveUp,
        now: i64,
    ) -> Result<(), Error> {
        let reason = match why {
            GiveUp::Gone => "endpoint gone (HTTP 410); disabled",
            GiveUp::Exhausted => "retries exhausted",
            GiveUp::NoEndpoint => "no usable endpoint",
        };
        if why == GiveUp::Gone {
            sqlx::query(
                "INSERT INTO endpoint_state (authority_code, disabled_at_ms, reason) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(&alert.authority_code)
            .bind(now)
            .bind("http_410")
            .execute(&mut **tx)
            .await?;
        }
        let failed = failure(alert, attempt, status, label, None, now);
        let event = lifecycle(&alert.alert_id, &format!("failed/{attempt}"), now, &failed);
        self.log
            .append_in(tx, topics::ALERTS_LIFECYCLE, &event)
            .await?;
        let mut letter = lifecycle(&alert.alert_id, "dead-letter", now, alert);
        letter.extensions.insert(
            kinlink_eventlog::envelope::DLQ_REASON.to_owned(),
            reason.to_owned(),
        );
        letter.extensions.insert(
            kinlink_eventlog::envelope::DLQ_STAGE.to_owned(),
            "notifier".to_owned(),
        );
        self.log
            .append_in(tx, &topics::dead_letter("notifier"), &letter)
            .await?;
        // Escalate now rather than at the deadline: nobody has been told.
        crate::escalation::bring_forward(tx, &alert.alert_id, now).await?;
        audit::append(
            tx,
            &AuditEntry {
                action: "webhook_failed",
                actor: "notifier",
                authority_code: &alert.authority_code,
                alert_id: &alert.alert_id,
                detail: reason,
            },
        )
        .await?;
        tracing::warn!(alert_id = %alert.alert_id, authority = %alert.authority_code, reason, "Delivery given up; escalating.");
        Ok(())
    }
}

/// The `webhook-id` of an alert's delivery: the alert id; an amendment (revision > 1) is a
/// new message, `<alert id>:r<revision>`, so receivers that drop repeats still take it.
pub fn message_id(alert: &v1::AlertRaised) -> String {
    if alert.revision > 1 {
        format!("{}:r{}", alert.alert_id, alert.revision)
    } else {
        alert.alert_id.clone()
    }
}

pub(crate) fn lifecycle<M: prost::Message + prost::Name>(
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
