//! `GET /v1/triage`: the open triage queue for on-call operators, oldest first, with each
//! item's SLA. Ids, reason codes and candidate codes only. Protected by the operators' bearer
//! token (`ops.api_token`); without one configured the endpoint answers 404.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kinlink_runtime::http::OPERATOR_SECURITY;
use kinlink_runtime::http::Problem;
use kinlink_store::Store;
use serde::Serialize;
use sqlx::Row;

#[derive(Debug, Clone)]
struct TriageState {
    store: Store,
    token: Option<String>,
}

/// One open triage item.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TriageItem {
    pub alert_id: String,
    pub referral_id: String,
    pub reasons: Vec<String>,
    pub candidates: Vec<String>,
    pub created_at_ms: i64,
    pub sla_deadline_ms: i64,
    pub overdue: bool,
}

pub fn router(store: Store, token: Option<String>) -> Router {
    Router::new()
        .route("/v1/triage", get(list))
        .with_state(TriageState { store, token })
}

/// Open triage items, oldest first, with their SLA (operator token).
#[utoipa::path(get, path = "/v1/triage", tag = "operations",
    responses((status = 200, body = Vec<TriageItem>), (status = 401), (status = 404, description = "No operator token configured")),
    security(("operator_token" = [])))]
async fn list(State(state): State<TriageState>, headers: HeaderMap) -> Response {
    let Some(expected) = state.token.as_deref() else {
        return Problem::not_found("resource").into_response();
    };
    if let Err(problem) = kinlink_runtime::http::check_configured(&headers, expected) {
        return problem.into_response();
    }
    match open_items(&state.store).await {
        Ok(items) => Json(items).into_response(),
        Err(error) => Problem::storage(error).into_response(),
    }
}

/// Open triage items, oldest first.
pub async fn open_items(store: &Store) -> Result<Vec<TriageItem>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT alert_id, referral_id, reasons, candidates, created_at_ms, sla_deadline_ms FROM triage_queue \
         WHERE state = $1 ORDER BY created_at_ms, alert_id",
    )
    .bind(kinlink_domain::lifecycle::TriageState::Open.as_str())
    .fetch_all(store.pool())
    .await?;
    let now = kinlink_store::now_millis();
    rows.iter().map(|row| item_from_row(row, now)).collect()
}

/// One open triage item, if `alert_id` is waiting in triage.
pub async fn open_item(store: &Store, alert_id: &str) -> Result<Option<TriageItem>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT alert_id, referral_id, reasons, candidates, created_at_ms, sla_deadline_ms FROM triage_queue \
         WHERE state = $1 AND alert_id = $2",
    )
    .bind(kinlink_domain::lifecycle::TriageState::Open.as_str())
    .bind(alert_id)
    .fetch_optional(store.pool())
    .await?;
    row.map(|row| item_from_row(&row, kinlink_store::now_millis()))
        .transpose()
}

fn item_from_row(row: &sqlx::any::AnyRow, now: i64) -> Result<TriageItem, sqlx::Error> {
    let split = |text: String| {
        text.split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let sla_deadline_ms: i64 = row.try_get("sla_deadline_ms")?;
    Ok(TriageItem {
        alert_id: row.try_get("alert_id")?,
        referral_id: row.try_get("referral_id")?,
        reasons: split(row.try_get("reasons")?),
        candidates: split(row.try_get("candidates")?),
        created_at_ms: row.try_get("created_at_ms")?,
        sla_deadline_ms,
        overdue: sla_deadline_ms < now,
    })
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(list), modifiers(&OPERATOR_SECURITY), tags((name = "operations", description = "On-call operators")))]
struct TriageApi;

/// The triage part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <TriageApi as utoipa::OpenApi>::openapi()
}
