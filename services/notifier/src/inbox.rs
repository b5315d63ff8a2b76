//! The stage that files raised alerts: a pending delivery, the alert's life-cycle row and its
//! escalation timers, all in the stage's transaction, so an alert is never lost or filed
//! twice. The escalation policy (secondary contact, on-call delay) is snapshotted here.

use std::sync::Arc;

use kinlink_eventlog::{Output, Record, Stage, StageError};
use kinlink_proto::v1;
use prost::Message;
use sqlx::AnyConnection;

use kinlink_domain::lifecycle::{AlertState, DeliveryState};

use crate::directory::Directory;

/// The stage that files raised alerts.
#[derive(Debug, Clone)]
pub struct AlertInbox {
    directory: Arc<Directory>,
    clock: kinlink_store::Clock,
}

impl AlertInbox {
    pub fn new(directory: Arc<Directory>) -> Self {
        Self {
            directory,
            clock: kinlink_store::Clock::system(),
        }
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: kinlink_store::Clock) -> Self {
        self.clock = clock;
        self
    }
}

impl Stage for AlertInbox {
    fn name(&self) -> &'static str {
        "notifier"
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
        let triage = alert.authority_code.is_empty();
        let initial = DeliveryState::filed(!triage).as_str();
        let now = self.clock.now_ms();
        let deadline = alert
            .deadline
            .as_ref()
            .map_or(now, kinlink_proto::millis_from_timestamp);
        let bytes = alert.encode_to_vec();
        let filed = sqlx::query(
            "INSERT INTO deliveries (alert_id, referral_id, authority_code, state, attempts, next_attempt_at_ms, \
             alert, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, 0, $5, $6, $5, $5) ON CONFLICT DO NOTHING",
        )
        .bind(&alert.alert_id)
        .bind(&alert.referral_id)
        .bind(&alert.authority_code)
        .bind(initial)
        .bind(now)
        .bind(bytes.clone())
        .execute(&mut *conn)
        .await?;
        if filed.rows_affected() == 0 {
            // Filed before. A higher revision amends it and is delivered again; the same
            // revision again (a replay) changes nothing.
            let amended = sqlx::query(
                "UPDATE deliveries SET alert = $1, revision = $2, state = CASE WHEN state = $3 THEN state ELSE $4 END, \
                 base_attempts = attempts, next_attempt_at_ms = $5, updated_at_ms = $5 WHERE alert_id = $6 AND revision < $2",
            )
            .bind(bytes.clone())
            .bind(i64::from(alert.revision.max(1)))
            // `DeliveryState::amended`: a triage item stays in triage, anything else is due again.
            .bind(DeliveryState::Triage.as_str())
            .bind(DeliveryState::Delivered.amended().as_str())
            .bind(now)
            .bind(&alert.alert_id)
            .execute(&mut *conn)
            .await?;
            if amended.rows_affected() == 1 {
                sqlx::query("UPDATE alerts SET alert = $1, deadline_ms = $2 WHERE alert_id = $3")
                    .bind(bytes)
                    .bind(deadline)
                    .bind(&alert.alert_id)
                    .execute(&mut *conn)
                    .await?;
                tracing::info!(alert_id = %alert.alert_id, revision = alert.revision, "Alert amended; delivering again.");
            }
            return Ok(Vec::new());
        }
        sqlx::query(
            "INSERT INTO alerts (alert_id, referral_id, authority_code, state, deadline_ms, alert, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(&alert.alert_id)
        .bind(&alert.referral_id)
        .bind(&alert.authority_code)
        .bind(AlertState::Open.as_str())
        .bind(deadline)
        .bind(bytes)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        if !triage {
            let timers = self
                .directory
                .escalation_timers(&alert.authority_code, deadline);
            crate::escalation::file_timers(conn, &alert.alert_id, &timers).await?;
        }
        Ok(Vec::new())
    }
}
