//! Routing a triage item by hand: an operator names the body, and the alert is filed for it
//! exactly as if routing had found it (delivery, escalation timers, audit), keeping its id.

use kinlink_store::Store;
use kinlink_store::audit::{self, AuditEntry};
use prost::Message;
use sqlx::Row;

use kinlink_domain::lifecycle::DeliveryState;

use crate::Error;
use crate::directory::Directory;

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
        .bind(DeliveryState::Triage.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| RouteError::NotInTriage(alert_id.to_owned()))?;
    let bytes: Vec<u8> = row.try_get("alert")?;
    let mut alert = crate::stored_alert(alert_id, &bytes)?;
    alert.authority_code = code.to_owned();
    alert.authority_name = name.to_owned();
    let bytes = alert.encode_to_vec();
    sqlx::query(
        "UPDATE deliveries SET authority_code = $1, alert = $2, state = $3, next_attempt_at_ms = $4, updated_at_ms = $4 WHERE alert_id = $5",
    )
    .bind(code)
    .bind(bytes.clone())
    .bind(
        DeliveryState::Triage
            .routed_by_operator()
            .unwrap_or(DeliveryState::Pending)
            .as_str(),
    )
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
    kinlink_alerter::records::route_triage_item(&mut tx, alert_id, code).await?;
    let deadline = alert
        .deadline
        .as_ref()
        .map_or(now, kinlink_proto::millis_from_timestamp)
        .max(now);
    // Routed: the triage page is no longer due (or is resolved if it was sent); the alert
    // now escalates like any other.
    crate::escalation::stop_timer(
        &mut tx,
        alert_id,
        kinlink_domain::lifecycle::EscalationLevel::Triage,
    )
    .await?;
    let timers = directory.escalation_timers(code, deadline);
    crate::escalation::file_timers(&mut tx, alert_id, &timers).await?;
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
