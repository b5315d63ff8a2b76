//! The stage that files raised alerts: a pending delivery, the alert's life-cycle row and its
//! escalation timers, all in the stage's transaction, so an alert is never lost or filed
//! twice. The escalation policy (secondary contact, on-call delay) is snapshotted here.

use std::sync::Arc;

use kinlink_eventlog::{Output, Record, Stage, StageError};
use kinlink_proto::v1;
use prost::Message;
use sqlx::AnyConnection;

use crate::directory::Directory;
use crate::state;

/// Escalation levels, as stored.
pub const LEVEL_SECONDARY: i64 = 1;
pub const LEVEL_ON_CALL: i64 = 2;

/// The stage that files raised alerts.
#[derive(Debug, Clone)]
pub struct AlertInbox {
    directory: Arc<Directory>,
}

impl AlertInbox {
    pub fn new(directory: Arc<Directory>) -> Self {
        Self { directory }
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
        let initial = if triage {
            state::TRIAGE
        } else {
            state::PENDING
        };
        let now = kinlink_store::now_millis();
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
            .bind(state::TRIAGE)
            .bind(state::PENDING)
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
             VALUES ($1, $2, $3, 'open', $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(&alert.alert_id)
        .bind(&alert.referral_id)
        .bind(&alert.authority_code)
        .bind(deadline)
        .bind(bytes)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        if !triage {
            let endpoint = self.directory.endpoint(&alert.authority_code);
            let secondary = endpoint
                .and_then(|e| e.secondary_url.clone())
                .unwrap_or_default();
            let on_call_at = deadline
                + i64::try_from(
                    self.directory
                        .on_call_after(&alert.authority_code)
                        .as_millis(),
                )
                .unwrap_or(0);
            for (level, due, target) in [
                (LEVEL_SECONDARY, deadline, secondary),
                (LEVEL_ON_CALL, on_call_at, "on_call".to_owned()),
            ] {
                sqlx::query(
                    "INSERT INTO escalations (alert_id, level, due_at_ms, state, target) VALUES ($1, $2, $3, 'scheduled', $4) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(&alert.alert_id)
                .bind(level)
                .bind(due)
                .bind(target)
                .execute(&mut *conn)
                .await?;
            }
        }
        Ok(Vec::new())
    }
}
