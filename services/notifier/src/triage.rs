//! Routing a triage item by hand: an operator names the body, and the alert is filed for it
//! exactly as if routing had found it (delivery, escalation timers, audit), keeping its id.
//! Operators do it with `kinlink triage route` or `POST /v1/triage/{alert_id}/route`.

use kinlink_store::Store;
use kinlink_store::audit::{self, AuditEntry};
use prost::Message;
use sqlx::Row;

use kinlink_domain::lifecycle::DeliveryState;

use kinlink_runtime::http::OPERATOR_SECURITY;

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
    crate::channels::file(&mut tx, directory, &alert, alert.revision.max(1), now).await?;
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

#[derive(Debug, Clone)]
struct RouteState {
    store: Store,
    directory: std::sync::Arc<Directory>,
    token: Option<String>,
}

/// `POST /v1/triage/{alert_id}/route`, for operators (`ops.api_token`).
pub fn router(
    store: Store,
    directory: std::sync::Arc<Directory>,
    token: Option<String>,
) -> axum::Router {
    axum::Router::new()
        .route(
            "/v1/triage/{alert_id}/route",
            axum::routing::post(route_api),
        )
        .with_state(RouteState {
            store,
            directory,
            token,
        })
}

/// Which body a triage item goes to, and who decided.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RouteBody {
    /// GSS code of the children's-services body (a district routes to its county), or a
    /// Northern Ireland trust (`HSCT-...`).
    authority_code: String,
    /// The operator's id, recorded in the audit log.
    operator: String,
}

/// Route a triage item to the body an operator names (operator token).
#[utoipa::path(post, path = "/v1/triage/{alert_id}/route", tag = "operations",
    params(("alert_id" = String, Path)),
    request_body = RouteBody,
    responses((status = 200), (status = 400), (status = 401),
        (status = 404, description = "No operator token configured, or no such alert"),
        (status = 409, description = "The alert is not waiting in triage")),
    security(("operator_token" = [])))]
async fn route_api(
    axum::extract::State(state): axum::extract::State<RouteState>,
    axum::extract::Path(alert_id): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use kinlink_runtime::http::Problem;
    let Some(expected) = state.token.as_deref() else {
        return Problem::not_found("resource").into_response();
    };
    if let Err(problem) = kinlink_runtime::http::check_configured(&headers, expected) {
        return problem.into_response();
    }
    let invalid = |pointer: &str, reason: &str| {
        Problem::invalid_field("Nothing was routed; fix the listed field.", pointer, reason)
            .into_response()
    };
    let request: RouteBody = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(_) => {
            return invalid(
                "",
                "body must be {\"authority_code\": ..., \"operator\": ...}",
            );
        }
    };
    if request.operator.trim().is_empty() || request.operator.len() > 64 {
        return invalid(
            "/operator",
            "an operator id of 1 to 64 characters is required",
        );
    }
    let registry = match kinlink_domain::routing::authorities::AuthorityRegistry::shipped() {
        Ok(registry) => registry,
        Err(error) => return Problem::storage(error).into_response(),
    };
    let body = match kinlink_domain::routing::authorities::body_by_code(
        &registry,
        &request.authority_code,
    ) {
        Ok(body) => body,
        Err(_) => {
            return invalid(
                "/authority_code",
                "not a body that runs children's services (a GSS code or HSCT-...)",
            );
        }
    };
    match route(
        &state.store,
        &state.directory,
        &alert_id,
        &body.gss_code,
        &body.name,
        &request.operator,
    )
    .await
    {
        Ok(()) => axum::Json(serde_json::json!({
            "alert_id": alert_id,
            "authority_code": body.gss_code,
        }))
        .into_response(),
        Err(RouteError::NotInTriage(_)) => {
            Problem::conflict("the alert is not waiting in triage").into_response()
        }
        Err(RouteError::Notifier(error)) => Problem::storage(error).into_response(),
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(route_api), modifiers(&OPERATOR_SECURITY))]
struct TriageRouteApi;

/// The triage-routing part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <TriageRouteApi as utoipa::OpenApi>::openapi()
}
