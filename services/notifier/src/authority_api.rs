//! The API authorities use: their inbox, an alert's full content, acknowledgement, accepting
//! responsibility in a lives/found hand-off, and resolution. Every call needs a token bound to
//! one authority (`kinlink tokens create --authority CODE`). Another authority's alert answers
//! 404, as if it did not exist, and the attempt is audited. Reads are audited as disclosures.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kinlink_eventlog::{EventLog, topics};
use kinlink_proto::v1;
use kinlink_runtime::http::AUTHORITY_SECURITY;
use kinlink_store::Store;
use kinlink_store::audit::{self, AuditEntry};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::delivery::lifecycle;
use kinlink_domain::lifecycle::{AlertCommand, AlertState, Step};
use kinlink_runtime::http::{AUTHORITY_TOKEN, Problem};

use crate::escalation::stop_timers;
use crate::webhook::WebhookPayload;

/// Time from an alert being filed to its acknowledgement.
pub static ACKNOWLEDGEMENT_SECONDS: std::sync::LazyLock<
    prometheus_client::metrics::histogram::Histogram,
> = std::sync::LazyLock::new(|| {
    prometheus_client::metrics::histogram::Histogram::new([
        60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0, 172800.0,
    ])
});

/// Token kind for authorities.
pub const TOKEN_KIND: &str = AUTHORITY_TOKEN.store_kind;

#[derive(Debug, Clone)]
struct ApiState {
    store: Store,
    log: EventLog,
    base_url: String,
}

pub fn router(store: Store, log: EventLog, base_url: String) -> Router {
    Router::new()
        .route("/v1/authorities/{code}/alerts", get(inbox))
        .route("/v1/alerts/{id}", get(read_alert))
        .route("/v1/alerts/{id}/acknowledge", post(acknowledge))
        .route(
            "/v1/alerts/{id}/accept-responsibility",
            post(accept_responsibility),
        )
        .route("/v1/alerts/{id}/resolve", post(resolve))
        .with_state(ApiState {
            store,
            log,
            base_url,
        })
}

/// The authority and token a request carries.
struct Caller {
    authority: String,
    token_id: String,
}

fn problem(status: StatusCode, detail: &str) -> Response {
    let kind = match status {
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::CONFLICT => "conflict",
        StatusCode::BAD_REQUEST => "bad-request",
        _ => "error",
    };
    Problem::new(status, kind, detail).into_response()
}

fn unavailable(error: impl std::fmt::Display) -> Response {
    Problem::storage(error).into_response()
}

async fn caller(state: &ApiState, headers: &HeaderMap) -> Result<Caller, Response> {
    let principal = kinlink_runtime::http::authenticate(&state.store, AUTHORITY_TOKEN, headers)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok(Caller {
        authority: principal.id,
        token_id: principal.token_id,
    })
}

async fn audit_now(state: &ApiState, entry: AuditEntry<'_>) -> Result<(), Response> {
    let mut tx = state.store.begin().await.map_err(unavailable)?;
    audit::append(&mut tx, &entry).await.map_err(unavailable)?;
    tx.commit().await.map_err(unavailable)
}

struct StoredAlert {
    alert: v1::AlertRaised,
    state: AlertState,
}

/// The alert if it belongs to the caller; otherwise 404, with the denial audited.
async fn own_alert(state: &ApiState, caller: &Caller, id: &str) -> Result<StoredAlert, Response> {
    let row = sqlx::query("SELECT authority_code, state, alert FROM alerts WHERE alert_id = $1")
        .bind(id)
        .fetch_optional(state.store.pool())
        .await
        .map_err(unavailable)?;
    let not_found = || problem(StatusCode::NOT_FOUND, "no such alert");
    let Some(row) = row else {
        return Err(not_found());
    };
    let authority: String = row.try_get("authority_code").map_err(unavailable)?;
    if authority != caller.authority {
        audit_now(
            state,
            AuditEntry {
                action: "access_denied",
                actor: &caller.token_id,
                authority_code: &caller.authority,
                alert_id: id,
                detail: "alert of another authority",
            },
        )
        .await?;
        tracing::warn!(alert_id = id, caller_authority = %caller.authority, "Denied access to another authority's alert.");
        return Err(not_found());
    }
    let bytes: Vec<u8> = row.try_get("alert").map_err(unavailable)?;
    let alert = crate::stored_alert(id, &bytes).map_err(unavailable)?;
    let state: String = row.try_get("state").map_err(unavailable)?;
    let state = AlertState::parse(&state).ok_or_else(|| {
        unavailable(crate::Error::CorruptAlert {
            alert_id: id.to_owned(),
        })
    })?;
    Ok(StoredAlert { alert, state })
}

/// The caller and the alert, when the alert is the caller's authority's.
async fn authorised(
    state: &ApiState,
    headers: &HeaderMap,
    id: &str,
) -> Result<(Caller, StoredAlert), Response> {
    let caller = caller(state, headers).await?;
    let stored = own_alert(state, &caller, id).await?;
    Ok((caller, stored))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct InboxQuery {
    state: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct InboxItem {
    alert_id: String,
    referral_id: String,
    state: String,
    /// RFC 3339, like every other time in the API.
    deadline: String,
}

/// The authority's alerts, by deadline.
#[utoipa::path(get, path = "/v1/authorities/{code}/alerts", tag = "authorities",
    params(("code" = String, Path, description = "The authority's code; must be the token's"), InboxQuery),
    responses((status = 200, body = Vec<InboxItem>), (status = 400), (status = 401), (status = 404, description = "Not this token's authority")),
    security(("authority_token" = [])))]
async fn inbox(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(code): Path<String>,
    Query(query): Query<InboxQuery>,
) -> Response {
    let caller = match caller(&state, &headers).await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    if code != caller.authority {
        if let Err(response) = audit_now(
            &state,
            AuditEntry {
                action: "access_denied",
                actor: &caller.token_id,
                authority_code: &caller.authority,
                alert_id: "",
                detail: "inbox of another authority",
            },
        )
        .await
        {
            return response;
        }
        return problem(StatusCode::NOT_FOUND, "no such authority");
    }
    if let Some(s) = &query.state
        && AlertState::parse(s).is_none()
    {
        return problem(
            StatusCode::BAD_REQUEST,
            "state must be open, acknowledged, resolved or closed",
        );
    }
    let rows = sqlx::query(
        "SELECT alert_id, referral_id, state, deadline_ms FROM alerts WHERE authority_code = $1 \
         AND ($2 = '' OR state = $2) ORDER BY deadline_ms",
    )
    .bind(&code)
    .bind(query.state.unwrap_or_default())
    .fetch_all(state.store.pool())
    .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(error) => return unavailable(error),
    };
    let items: Result<Vec<InboxItem>, sqlx::Error> = rows
        .iter()
        .map(|r| {
            Ok(InboxItem {
                alert_id: r.try_get("alert_id")?,
                referral_id: r.try_get("referral_id")?,
                state: r.try_get("state")?,
                deadline: chrono::DateTime::from_timestamp_millis(r.try_get("deadline_ms")?)
                    .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default(),
            })
        })
        .collect();
    match items {
        Ok(items) => Json(items).into_response(),
        Err(error) => unavailable(error),
    }
}

/// An alert's full content; the read is audited.
#[utoipa::path(get, path = "/v1/alerts/{id}", tag = "authorities",
    params(("id" = String, Path)),
    responses((status = 200, body = WebhookPayload<'_>), (status = 401), (status = 404, description = "No such alert for this authority (denials are audited)")),
    security(("authority_token" = [])))]
async fn read_alert(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (caller, stored) = match authorised(&state, &headers, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    if let Err(response) = audit_now(
        &state,
        AuditEntry {
            action: "alert_read",
            actor: &caller.token_id,
            authority_code: &caller.authority,
            alert_id: &id,
            detail: "",
        },
    )
    .await
    {
        return response;
    }
    // The authority API always gives the full content: the caller is authenticated as the
    // alert's authority, and the read is audited as a disclosure.
    let payload = WebhookPayload::from_alert(&stored.alert, &state.base_url, true);
    let mut body = serde_json::to_value(&payload).unwrap_or_default();
    if let Some(object) = body.as_object_mut() {
        object.insert("state".into(), stored.state.as_str().into());
    }
    Json(body).into_response()
}

/// Acknowledge an alert: stops escalation and resolves any on-call page.
#[utoipa::path(post, path = "/v1/alerts/{id}/acknowledge", tag = "authorities",
    params(("id" = String, Path)),
    responses((status = 200), (status = 401), (status = 404)),
    security(("authority_token" = [])))]
async fn acknowledge(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (caller, stored) = match authorised(&state, &headers, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Step::Move { from, to } = stored.state.apply(AlertCommand::Acknowledge) else {
        return Json(serde_json::json!({ "alert_id": id, "state": stored.state.as_str() }))
            .into_response();
    };
    let now = kinlink_store::now_millis();
    let acknowledged = v1::AlertAcknowledged {
        alert_id: id.clone(),
        authority_code: caller.authority.clone(),
        acknowledged_at: Some(kinlink_proto::timestamp_from_millis(now)),
    };
    let step = Step::Move { from, to };
    match persist_step(&state, &caller, &id, step, now, None, &acknowledged).await {
        Ok(filed_at) => {
            if let Some(filed) = filed_at {
                ACKNOWLEDGEMENT_SECONDS.observe((now - filed).max(0) as f64 / 1000.0);
            }
            tracing::info!(alert_id = %id, authority = %caller.authority, "Alert acknowledged.");
            Json(serde_json::json!({ "alert_id": id, "state": to.as_str() })).into_response()
        }
        Err(error) => unavailable(error),
    }
}

/// Persists an authority's step on an alert in one transaction: the state change (guarded on
/// the state it moves from), its escalation timers stopped, the lifecycle event and the audit
/// entry. Another request that moved the alert first wins; this one then changes nothing.
/// Returns when the alert was filed, if this request moved it.
async fn persist_step<M: prost::Message + prost::Name>(
    state: &ApiState,
    caller: &Caller,
    id: &str,
    step: Step<AlertState>,
    now: i64,
    outcome_code: Option<&str>,
    event: &M,
) -> Result<Option<i64>, crate::Error> {
    let Step::Move { from, to } = step else {
        return Ok(None);
    };
    let mut tx = state.store.begin().await?;
    let sql = if to == AlertState::Resolved {
        "UPDATE alerts SET state = $1, resolved_at_ms = $2, outcome_code = $3 WHERE alert_id = $4 AND state = $5"
    } else {
        "UPDATE alerts SET state = $1, acknowledged_at_ms = $2, outcome_code = COALESCE($3, outcome_code) \
         WHERE alert_id = $4 AND state = $5"
    };
    let moved = sqlx::query(sql)
        .bind(to.as_str())
        .bind(now)
        .bind(outcome_code)
        .bind(id)
        .bind(from.as_str())
        .execute(&mut *tx)
        .await?;
    if moved.rows_affected() == 0 {
        return Ok(None);
    }
    let filed: Option<i64> = sqlx::query("SELECT created_at_ms FROM alerts WHERE alert_id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get("created_at_ms"))
        .transpose()?;
    stop_timers(&mut tx, id).await?;
    state
        .log
        .append_in(
            &mut tx,
            topics::ALERTS_LIFECYCLE,
            &lifecycle(id, to.as_str(), now, event),
        )
        .await?;
    audit::append(
        &mut tx,
        &AuditEntry {
            action: to.as_str(),
            actor: &caller.token_id,
            authority_code: &caller.authority,
            alert_id: id,
            detail: outcome_code.unwrap_or_default(),
        },
    )
    .await?;
    tx.commit().await?;
    state.log.notify_appended();
    Ok(filed)
}

/// The home authority accepts responsibility in a lives/found hand-off.
#[utoipa::path(post, path = "/v1/alerts/{id}/accept-responsibility", tag = "authorities",
    params(("id" = String, Path)),
    responses((status = 200), (status = 401), (status = 404), (status = 409, description = "No pending hand-off to this authority")),
    security(("authority_token" = [])))]
async fn accept_responsibility(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (caller, stored) = match authorised(&state, &headers, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let result = async {
        let mut tx = state.store.begin().await?;
        let accepted = kinlink_alerter::records::accept_handoff(
            &mut tx,
            &stored.alert.referral_id,
            &caller.authority,
            kinlink_store::now_millis(),
        )
        .await?;
        if accepted > 0 {
            audit::append(
                &mut tx,
                &AuditEntry {
                    action: "handoff_accepted",
                    actor: &caller.token_id,
                    authority_code: &caller.authority,
                    alert_id: &id,
                    detail: "",
                },
            )
            .await?;
        }
        tx.commit().await?;
        Ok::<_, crate::Error>(accepted)
    }
    .await;
    match result {
        Ok(0) => problem(
            StatusCode::CONFLICT,
            "no pending hand-off to this authority for this alert",
        ),
        Ok(_) => Json(serde_json::json!({ "alert_id": id, "handoff": "accepted" })).into_response(),
        Err(error) => unavailable(error),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    outcome_code: String,
}

/// Outcome codes an authority may resolve an alert with.
pub const OUTCOME_CODES: &[&str] = &[
    "no_further_action",
    "early_help",
    "child_in_need",
    "section_47_enquiry",
    "looked_after",
    "transferred",
    "duplicate",
];

/// Resolve an alert with an outcome code.
#[utoipa::path(post, path = "/v1/alerts/{id}/resolve", tag = "authorities",
    params(("id" = String, Path)),
    request_body = ResolveBody,
    responses((status = 200), (status = 400), (status = 401), (status = 404)),
    security(("authority_token" = [])))]
async fn resolve(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let caller = match caller(&state, &headers).await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    let Ok(ResolveBody { outcome_code }) = serde_json::from_slice::<ResolveBody>(&body) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "body must be {\"outcome_code\": ...}",
        );
    };
    if !OUTCOME_CODES.contains(&outcome_code.as_str()) {
        return problem(
            StatusCode::BAD_REQUEST,
            &format!("outcome_code must be one of {}", OUTCOME_CODES.join(", ")),
        );
    }
    let stored = match own_alert(&state, &caller, &id).await {
        Ok(stored) => stored,
        Err(response) => return response,
    };
    // Resolving twice keeps the first outcome and changes nothing.
    let Step::Move { from, to } = stored.state.apply(AlertCommand::Resolve) else {
        return Json(serde_json::json!({ "alert_id": id, "state": stored.state.as_str() }))
            .into_response();
    };
    let now = kinlink_store::now_millis();
    let resolved = v1::AlertResolved {
        alert_id: id.clone(),
        authority_code: caller.authority.clone(),
        outcome_code: outcome_code.clone(),
        resolved_at: Some(kinlink_proto::timestamp_from_millis(now)),
    };
    let step = Step::Move { from, to };
    match persist_step(&state, &caller, &id, step, now, Some(&outcome_code), &resolved).await {
        Ok(_) => Json(serde_json::json!({ "alert_id": id, "state": to.as_str(), "outcome_code": outcome_code }))
            .into_response(),
        Err(error) => unavailable(error),
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(inbox, read_alert, acknowledge, accept_responsibility, resolve),
    modifiers(&AUTHORITY_SECURITY),
    tags((name = "authorities", description = "Children's services: inbox, acknowledgement, hand-off, resolution"))
)]
struct AuthorityApi;

/// The authority part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <AuthorityApi as utoipa::OpenApi>::openapi()
}
