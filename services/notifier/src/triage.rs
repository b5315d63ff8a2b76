//! Routing a triage item by hand: an operator names the body, and the alert is filed for it
//! exactly as if routing had found it (delivery, escalation timers, audit), keeping its id.

use kinlink_proto::v1;
use kinlink_store::Store;
use kinlink_store::audit::{self, AuditEntry};
use prost::Message;
use sqlx::Row;

use crate::directory::Directory;
use crate::inbox::{LEVEL_ON_CALL, LEVEL_SECONDARY};
use crate::{Error, state};

/// Why a triage item could not be routed.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("alert {0} is not waiting in triage")]
    NotInTriage(String),
    #[error(transparent)]
    Notifier(#[from] Error),
}

impl From<sqlx::Error> for RouteError {
    fn from(error: sqlx::Error) -> Self {
        RouteError::Notifier(Error::Database(error))
    }
}

/// Files the triage alert `alert_id` for the body `code` (`name` for people), on behalf of
/// `operator` (recorded in the audit log).
pub async fn route(
    store: &Store,
    directory: &Directory,
    alert_id: &str,
    code: &str,
    name: &str,
    operator: &str,
) -> Result<(), RouteError> {
    let now = kinlink_store::now_millis();
    let mut tx = store.begin().await.map_err(Error::from)?;
    let row = sqlx::query("SELECT alert FROM deliveries WHERE alert_id = $1 AND state = $2")
        .bind(alert_id)
        .bind(state::TRIAGE)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| RouteError::NotInTriage(alert_id.to_owned()))?;
    let bytes: Vec<u8> = row.try_get("alert")?;
    let mut alert = v1::AlertRaised::decode(bytes.as_slice()).map_err(|_| Error::CorruptAlert {
        alert_id: alert_id.to_owned(),
    })?;
    alert.authority_code = code.to_owned();
    alert.authority_name = name.to_owned();
    let bytes = alert.encode_to_vec();
    sqlx::query(
        "UPDATE deliveries SET authority_code = $1, alert = $2, state = $3, next_attempt_at_ms = $4, updated_at_ms = $4 WHERE alert_id = $5",
    )
    .bind(code)
    .bind(bytes.clone())
    .bind(state::PENDING)
    .bind(now)
    .bind(alert_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE alerts SET authority_code = $1, alert = $2 WHERE alert_id = $3")
        .bind(code)
        .bind(bytes)
        .bind(alert_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE routing_decisions SET authority_code = $1 WHERE alert_id = $2 AND authority_code = ''")
        .bind(code)
        .bind(alert_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE triage_queue SET state = 'routed' WHERE alert_id = $1")
        .bind(alert_id)
        .execute(&mut *tx)
        .await?;
    let deadline = alert
        .deadline
        .as_ref()
        .map_or(now, kinlink_proto::millis_from_timestamp)
        .max(now);
    let secondary = directory
        .endpoint(code)
        .and_then(|e| e.secondary_url.clone())
        .unwrap_or_default();
    let on_call_at =
        deadline + i64::try_from(directory.on_call_after(code).as_millis()).unwrap_or(0);
    for (level, due, target) in [
        (LEVEL_SECONDARY, deadline, secondary),
        (LEVEL_ON_CALL, on_call_at, "on_call".to_owned()),
    ] {
        sqlx::query(
            "INSERT INTO escalations (alert_id, level, due_at_ms, state, target) VALUES ($1, $2, $3, 'scheduled', $4) ON CONFLICT DO NOTHING",
        )
        .bind(alert_id)
        .bind(level)
        .bind(due)
        .bind(target)
        .execute(&mut *tx)
        .await?;
    }
    let detail = format!("routed to {code}");
    audit::append(
        &mut tx,
        &AuditEntry {
            action: "triage_routed",
            actor: operator,
            authority_code: code,
            alert_id,
            detail: &detail,
        },
    )
    .await
    .map_err(Error::from)?;
    tx.commit().await?;
    tracing::info!(
        alert_id,
        authority = code,
        "Triage item routed by an operator."
    );
    Ok(())
}
