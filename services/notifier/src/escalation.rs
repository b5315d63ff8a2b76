//! Durable escalation timers. Each filed alert has two: its authority's secondary contact at
//! the deadline, then kinlink on-call (PagerDuty Events API v2: `trigger` with the alert id as
//! `dedup_key`) a configured interval later. Acknowledging cancels what has not fired and
//! sends `resolve` for an on-call page that has. Timers are rows, so they survive restarts;
//! the worker polls every 250 ms, well within the 5 s promise. A worker claims a due timer
//! before sending (compare-and-set of its due time to a lease), so several notifier instances
//! fire each timer once; a failed send, `resolve` included, backs off from 30 s to an hour.

use kinlink_eventlog::topics;
use kinlink_proto::v1;
use kinlink_store::audit::{self, AuditEntry};
use serde_json::json;
use sqlx::Row;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::delivery::{DeliveryWorker, OutcomeLabels, lifecycle};
use crate::policy::AttemptOutcome;
use crate::webhook::WebhookPayload;
use kinlink_domain::lifecycle::{
    AlertState, EscalationEvent, EscalationLevel, EscalationState, EscalationTimer, Step,
};

/// Files the escalation timers the domain plans for an alert (the one writer of new rows in
/// `escalations`, for alerts routed by the alerter and by an operator alike).
pub async fn file_timers(
    conn: &mut sqlx::AnyConnection,
    alert_id: &str,
    timers: &[EscalationTimer],
) -> Result<(), sqlx::Error> {
    for timer in timers {
        sqlx::query(
            "INSERT INTO escalations (alert_id, level, due_at_ms, state, target) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT DO NOTHING",
        )
        .bind(alert_id)
        .bind(timer.level.number())
        .bind(timer.due_at_ms)
        .bind(EscalationState::Scheduled.as_str())
        .bind(&timer.target)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Files the timers again for a re-opened alert: cancelled ones are scheduled anew at their
/// new due time; missing ones are filed.
pub async fn refile_timers(
    conn: &mut sqlx::AnyConnection,
    alert_id: &str,
    timers: &[EscalationTimer],
) -> Result<(), sqlx::Error> {
    for timer in timers {
        sqlx::query(
            "UPDATE escalations SET state = $1, due_at_ms = $2, target = $3, attempts = 0 \
             WHERE alert_id = $4 AND level = $5 AND state = $6",
        )
        .bind(EscalationState::Scheduled.as_str())
        .bind(timer.due_at_ms)
        .bind(&timer.target)
        .bind(alert_id)
        .bind(timer.level.number())
        .bind(EscalationState::Cancelled.as_str())
        .execute(&mut *conn)
        .await?;
    }
    file_timers(conn, alert_id, timers).await
}

/// The alert was acknowledged, resolved or closed: the timers at `levels` take the domain's
/// `AlertClosed` step (what has not fired is cancelled; an on-call page already sent is marked
/// for the worker to resolve). An acknowledgement stops `EscalationLevel::ACKNOWLEDGED`; a
/// resolution or closure stops them all.
pub async fn stop_timers(
    conn: &mut sqlx::AnyConnection,
    alert_id: &str,
    levels: &[EscalationLevel],
) -> Result<(), sqlx::Error> {
    for &level in levels {
        stop_timer(conn, alert_id, level).await?;
    }
    Ok(())
}

/// Stops one of an alert's timers: the domain's `AlertClosed` step for that level (what has
/// not fired is cancelled; a page already sent is marked for the worker to resolve).
pub async fn stop_timer(
    conn: &mut sqlx::AnyConnection,
    alert_id: &str,
    level: EscalationLevel,
) -> Result<(), sqlx::Error> {
    for from in [EscalationState::Scheduled, EscalationState::Fired] {
        move_timer(
            conn,
            alert_id,
            level,
            from.apply(level, EscalationEvent::AlertClosed),
        )
        .await?;
    }
    Ok(())
}

/// Persists a timer's step, guarded on the state it moves from.
async fn move_timer(
    conn: &mut sqlx::AnyConnection,
    alert_id: &str,
    level: EscalationLevel,
    step: Step<EscalationState>,
) -> Result<(), sqlx::Error> {
    if let Step::Move { from, to } = step {
        sqlx::query(
            "UPDATE escalations SET state = $1 WHERE alert_id = $2 AND level = $3 AND state = $4",
        )
        .bind(to.as_str())
        .bind(alert_id)
        .bind(level.number())
        .bind(from.as_str())
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// A delivery was given up: the secondary contact is due now rather than at the deadline,
/// since nobody has been told.
pub async fn bring_forward(
    conn: &mut sqlx::AnyConnection,
    alert_id: &str,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE escalations SET due_at_ms = $1 WHERE alert_id = $2 AND level = $3 AND state = $4",
    )
    .bind(now_ms)
    .bind(alert_id)
    .bind(EscalationLevel::Secondary.number())
    .bind(EscalationState::Scheduled.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// The PagerDuty dedup key of an alert's page at `level`.
fn dedup_key(alert: &v1::AlertRaised, level: EscalationLevel) -> String {
    match level {
        EscalationLevel::Triage => format!("{}/triage", alert.alert_id),
        EscalationLevel::Handoff => format!("{}/handoff", alert.alert_id),
        EscalationLevel::Secondary | EscalationLevel::OnCall => alert.alert_id.clone(),
    }
}

/// What a page at `level` says, and the discriminator of its message id.
fn page_text(
    alert: &v1::AlertRaised,
    level: EscalationLevel,
) -> (String, &'static str, &'static str) {
    match level {
        EscalationLevel::Triage => (
            format!(
                "kinlink alert {} waiting in triage past its SLA",
                alert.alert_id
            ),
            "escalation/triage",
            "waiting in triage past its SLA",
        ),
        EscalationLevel::Handoff => (
            format!(
                "kinlink alert {}: {} has not decided the lives/found hand-off by the deadline",
                alert.alert_id, alert.authority_code
            ),
            "escalation/handoff",
            "hand-off undecided past the deadline",
        ),
        EscalationLevel::Secondary | EscalationLevel::OnCall => (
            format!(
                "kinlink alert {} for {} unacknowledged past its deadline",
                alert.alert_id, alert.authority_code
            ),
            "escalation/on-call",
            "still unacknowledged",
        ),
    }
}

/// How long a claimed timer is reserved for the worker sending it: longer than one request.
const CLAIM_LEASE_MS: i64 = 60_000;

/// Longest pause between retries of an escalation send.
const MAX_RETRY_MS: i64 = 3_600_000;

/// The pause before the next try of a send that failed `failures` times before.
fn retry_delay_ms(failures: i64) -> i64 {
    let doublings = u32::try_from(failures.clamp(0, 16)).unwrap_or(16);
    RETRY_MS.saturating_mul(1i64 << doublings).min(MAX_RETRY_MS)
}

/// Pause before retrying an escalation whose target did not answer.
const RETRY_MS: i64 = 30_000;

impl DeliveryWorker {
    /// Fires due escalations and pending on-call resolves; returns how many it handled.
    pub async fn escalate_due(&self, shutdown: &CancellationToken) -> Result<usize, Error> {
        let now = self.now();
        let rows = sqlx::query(
            "SELECT e.alert_id, e.level, e.target, e.state, e.due_at_ms, a.authority_code, a.alert \
             FROM escalations e JOIN alerts a ON a.alert_id = e.alert_id \
             WHERE e.due_at_ms <= $1 AND ((e.state = $2 AND a.state = $3) OR e.state = $4) \
             ORDER BY e.due_at_ms LIMIT 16",
        )
        .bind(now)
        .bind(EscalationState::Scheduled.as_str())
        .bind(AlertState::Open.as_str())
        .bind(EscalationState::ResolvePending.as_str())
        .fetch_all(self.store.reader())
        .await?;
        let mut handled = 0;
        for row in rows {
            if shutdown.is_cancelled() {
                break;
            }
            let alert_id: String = row.try_get("alert_id")?;
            let level: i64 = row.try_get("level")?;
            let target: String = row.try_get("target")?;
            let state: String = row.try_get("state")?;
            let due_at_ms: i64 = row.try_get("due_at_ms")?;
            let authority: String = row.try_get("authority_code")?;
            // Another notifier instance may have read the same timer: only the one whose
            // claim lands sends it.
            if !self
                .claim_timer(&alert_id, level, &state, due_at_ms)
                .await?
            {
                continue;
            }
            let bytes: Vec<u8> = row.try_get("alert")?;
            let alert = crate::stored_alert(&alert_id, &bytes)?;
            let state = EscalationState::parse(&state);
            match (state, EscalationLevel::from_number(level)) {
                (Some(EscalationState::ResolvePending), Some(level)) => {
                    self.resolve_on_call(&alert, level).await?;
                }
                (_, Some(EscalationLevel::Secondary)) => {
                    self.fire_secondary(&alert, &target).await?;
                }
                (_, Some(level)) => self.fire_on_call(&alert, level).await?,
                (_, None) => {
                    tracing::warn!(%alert_id, level, "Escalation timer of an unknown level; left as it is.");
                }
            }
            handled += 1;
            tracing::debug!(%alert_id, level, authority = %authority, "Escalation handled.");
        }
        Ok(handled)
    }

    /// Persists a timer's step, guarded on the state it moves from.
    async fn step(
        &self,
        alert_id: &str,
        level: EscalationLevel,
        step: Step<EscalationState>,
    ) -> Result<(), Error> {
        let mut conn = self.store.pool().acquire().await?;
        move_timer(&mut conn, alert_id, level, step).await?;
        Ok(())
    }

    fn count(&self, authority: &str, outcome: &str) {
        self.escalations
            .get_or_create(&OutcomeLabels {
                authority: authority.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Claims a due timer for one send: moves its due time to the end of a lease, only if
    /// nobody has since it was read (compare-and-set on the due time). A worker that crashes
    /// mid-send leaves the claim to expire, and the timer is tried again after the lease.
    async fn claim_timer(
        &self,
        alert_id: &str,
        level: i64,
        state: &str,
        due_at_ms: i64,
    ) -> Result<bool, Error> {
        let claimed = sqlx::query(
            "UPDATE escalations SET due_at_ms = $1 WHERE alert_id = $2 AND level = $3 AND state = $4 AND due_at_ms = $5",
        )
        .bind(self.now() + CLAIM_LEASE_MS)
        .bind(alert_id)
        .bind(level)
        .bind(state)
        .bind(due_at_ms)
        .execute(self.store.pool())
        .await?;
        Ok(claimed.rows_affected() == 1)
    }

    /// The send failed: try again after a back-off that doubles with each failure, from
    /// [`RETRY_MS`] up to [`MAX_RETRY_MS`].
    async fn retry_later(
        &self,
        alert_id: &str,
        level: i64,
        state: EscalationState,
    ) -> Result<(), Error> {
        let attempts: i64 =
            sqlx::query("SELECT attempts FROM escalations WHERE alert_id = $1 AND level = $2")
                .bind(alert_id)
                .bind(level)
                .fetch_optional(self.store.pool())
                .await?
                .map(|r| r.try_get("attempts"))
                .transpose()?
                .unwrap_or(0);
        sqlx::query(
            "UPDATE escalations SET due_at_ms = $1, attempts = attempts + 1 WHERE alert_id = $2 AND level = $3 AND state = $4",
        )
        .bind(self.now() + retry_delay_ms(attempts))
        .bind(alert_id)
        .bind(level)
        .bind(state.as_str())
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    async fn fire_secondary(&self, alert: &v1::AlertRaised, target: &str) -> Result<(), Error> {
        if target.is_empty() {
            // No secondary contact configured: on-call is next.
            let step = EscalationState::Scheduled.apply(
                EscalationLevel::Secondary,
                EscalationEvent::Due { has_target: false },
            );
            self.step(&alert.alert_id, EscalationLevel::Secondary, step)
                .await?;
            return Ok(());
        }
        let full = self
            .directory
            .endpoint(&alert.authority_code)
            .is_some_and(|e| e.full_payload);
        let mut payload = WebhookPayload::from_alert(alert, &self.directory.public_base_url, full);
        payload.escalation = Some("secondary_contact");
        let secrets = self
            .directory
            .endpoint(&alert.authority_code)
            .map(|e| e.secrets.clone())
            .unwrap_or_default();
        let message_id =
            kinlink_eventlog::envelope::derive_id(&alert.alert_id, "escalation/secondary");
        match self
            .client
            .send(target, &message_id, &payload, &secrets)
            .await
        {
            AttemptOutcome::Accepted(_) => {
                self.fired(
                    alert,
                    EscalationLevel::Secondary.number(),
                    v1::EscalationLevel::SecondaryContact,
                    "deadline passed unacknowledged",
                )
                .await?;
                self.count(&alert.authority_code, "secondary");
            }
            _ => {
                self.count(&alert.authority_code, "failed");
                tracing::warn!(alert_id = %alert.alert_id, "Secondary contact did not accept the escalation; retrying.");
                self.retry_later(
                    &alert.alert_id,
                    EscalationLevel::Secondary.number(),
                    EscalationState::Scheduled,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Pages kinlink on-call for `level` (on-call after the deadline, a triage item past its
    /// SLA, or a hand-off undecided at the deadline). The PagerDuty dedup key is the alert id,
    /// with `/triage` or `/handoff` for those pages, so each page is resolved on its own.
    async fn fire_on_call(
        &self,
        alert: &v1::AlertRaised,
        level: EscalationLevel,
    ) -> Result<(), Error> {
        let (summary, discriminator, reason) = page_text(alert, level);
        let body = json!({
            "routing_key": self.directory.on_call.as_ref().map(|o| o.routing_key.as_str()).unwrap_or_default(),
            "event_action": "trigger",
            "dedup_key": dedup_key(alert, level),
            "payload": {
                "summary": summary,
                "source": "kinlink",
                "severity": if alert.rag == v1::Rag::Red as i32 { "critical" } else { "error" },
                "custom_details": { "alert_id": alert.alert_id, "authority_code": alert.authority_code, "referral_id": alert.referral_id }
            }
        });
        let Some(on_call) = &self.directory.on_call else {
            self.count(&alert.authority_code, "failed");
            tracing::error!(alert_id = %alert.alert_id, "On-call escalation due but notifier.on_call is not configured.");
            return self
                .retry_later(&alert.alert_id, level.number(), EscalationState::Scheduled)
                .await;
        };
        let message_id = kinlink_eventlog::envelope::derive_id(&alert.alert_id, discriminator);
        match self
            .client
            .send(&on_call.events_url, &message_id, &body, &[])
            .await
        {
            AttemptOutcome::Accepted(_) => {
                self.fired(alert, level.number(), v1::EscalationLevel::OnCall, reason)
                    .await?;
                self.count(
                    &alert.authority_code,
                    match level {
                        EscalationLevel::Triage => "triage",
                        EscalationLevel::Handoff => "handoff",
                        _ => "on_call",
                    },
                );
            }
            _ => {
                self.count(&alert.authority_code, "failed");
                tracing::error!(alert_id = %alert.alert_id, "On-call trigger failed; retrying.");
                self.retry_later(&alert.alert_id, level.number(), EscalationState::Scheduled)
                    .await?;
            }
        }
        Ok(())
    }

    async fn resolve_on_call(
        &self,
        alert: &v1::AlertRaised,
        level: EscalationLevel,
    ) -> Result<(), Error> {
        let Some(on_call) = &self.directory.on_call else {
            return self
                .retry_later(
                    &alert.alert_id,
                    level.number(),
                    EscalationState::ResolvePending,
                )
                .await;
        };
        let body = json!({
            "routing_key": on_call.routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key(alert, level),
        });
        let message_id = kinlink_eventlog::envelope::derive_id(
            &alert.alert_id,
            &format!("{}/resolve", page_text(alert, level).1),
        );
        if let AttemptOutcome::Accepted(_) = self
            .client
            .send(&on_call.events_url, &message_id, &body, &[])
            .await
        {
            let step = EscalationState::ResolvePending.apply(level, EscalationEvent::PageResolved);
            self.step(&alert.alert_id, level, step).await?;
            self.count(&alert.authority_code, "on_call_resolved");
            return Ok(());
        }
        // The on-call service did not take the resolve: back off rather than retry at once.
        self.count(&alert.authority_code, "failed");
        tracing::warn!(alert_id = %alert.alert_id, "On-call resolve not accepted; retrying later.");
        self.retry_later(
            &alert.alert_id,
            level.number(),
            EscalationState::ResolvePending,
        )
        .await
    }

    async fn fired(
        &self,
        alert: &v1::AlertRaised,
        level: i64,
        proto_level: v1::EscalationLevel,
        reason: &str,
    ) -> Result<(), Error> {
        let now = self.now();
        let mut tx = self.store.begin().await?;
        let Step::Move { from, to } = EscalationState::Scheduled.apply(
            EscalationLevel::from_number(level).unwrap_or(EscalationLevel::OnCall),
            EscalationEvent::Due { has_target: true },
        ) else {
            return Ok(());
        };
        let moved = sqlx::query(
            "UPDATE escalations SET state = $1, fired_at_ms = $2, due_at_ms = $2 WHERE alert_id = $3 AND level = $4 AND state = $5",
        )
        .bind(to.as_str())
        .bind(now)
        .bind(&alert.alert_id)
        .bind(level)
        .bind(from.as_str())
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() == 0 {
            // Another worker recorded it first: its event and audit entry stand alone.
            return Ok(());
        }
        let escalated = v1::AlertEscalated {
            alert_id: alert.alert_id.clone(),
            authority_code: alert.authority_code.clone(),
            level: proto_level as i32,
            reason: reason.to_owned(),
            escalated_at: Some(kinlink_proto::timestamp_from_millis(now)),
        };
        let event = lifecycle(
            &alert.alert_id,
            &format!("escalated/{level}"),
            now,
            &escalated,
        );
        self.log
            .append_in(&mut tx, topics::ALERTS_LIFECYCLE, &event)
            .await?;
        let detail = format!("level {level}");
        audit::append(
            &mut tx,
            &AuditEntry {
                action: "escalated",
                actor: "notifier",
                authority_code: &alert.authority_code,
                alert_id: &alert.alert_id,
                detail: &detail,
            },
        )
        .await?;
        tx.commit().await?;
        self.log.notify_appended();
        tracing::warn!(alert_id = %alert.alert_id, authority = %alert.authority_code, level, "Alert escalated.");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_sends_back_off_to_an_hour() {
        assert_eq!(retry_delay_ms(0), 30_000);
        assert_eq!(retry_delay_ms(1), 60_000);
        assert_eq!(retry_delay_ms(3), 240_000);
        assert_eq!(retry_delay_ms(7), MAX_RETRY_MS);
        assert_eq!(retry_delay_ms(1_000), MAX_RETRY_MS);
        assert_eq!(retry_delay_ms(-5), 30_000);
        const { assert!(CLAIM_LEASE_MS > 15_000, "a claim outlasts one request") };
    }
}
