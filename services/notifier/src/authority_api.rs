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
use kinlink_domain::lifecycle::{AlertCommand, AlertState, EscalationLevel, HandoffDecision, Step};
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
        .route(
            "/v1/alerts/{id}/decline-responsibility",
            post(decline_responsibility),
        )
        .route(
            "/v1/alerts/{id}/transfer-responsibility",
            post(transfer_responsibility),
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
    /// Lives/found hand-offs of the referral this authority is part of, as home or found.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    handoffs: Vec<InboxHandoff>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct InboxHandoff {
    home_authority: String,
    found_authority: String,
    /// `pending`, `accepted` or `declined`.
    state: String,
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
    let items: Result<Vec<InboxItem>, sqlx::Error> = async {
        let mut items = Vec::new();
        let mut conn = state.store.pool().acquire().await?;
        for r in &rows {
            let referral_id: String = r.try_get("referral_id")?;
            let handoffs = kinlink_alerter::records::handoffs_of(&mut conn, &referral_id, &code)
                .await?
                .into_iter()
                .map(|(home_authority, found_authority, state)| InboxHandoff {
                    home_authority,
                    found_authority,
                    state,
                })
                .collect();
            items.push(InboxItem {
                alert_id: r.try_get("alert_id")?,
                referral_id,
                state: r.try_get("state")?,
                deadline: chrono::DateTime::from_timestamp_millis(r.try_get("deadline_ms")?)
                    .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default(),
                handoffs,
            });
        }
        Ok(items)
    }
    .await;
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
    // Acknowledging is not deciding a hand-off; resolving ends everything.
    let levels: &[EscalationLevel] = if to == AlertState::Resolved {
        &EscalationLevel::ALL
    } else {
        &EscalationLevel::ACKNOWLEDGED
    };
    stop_timers(&mut tx, id, levels).await?;
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

/// The home authority accepts responsibility in a lives/found hand-off; the authority where
/// the child was found is told in an amendment of its alert.
#[utoipa::path(post, path = "/v1/alerts/{id}/accept-responsibility", tag = "authorities",
    params(("id" = String, Path)),
    responses((status = 200), (status = 401), (status = 404), (status = 409, description = "No pending hand-off to this authority")),
    security(("authority_token" = [])))]
async fn accept_responsibility(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    decide_handoff(&state, &headers, &id, HandoffDecision::Accept, "", None).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct DeclineBody {
    /// Why the home authority does not take responsibility (a code, not free text).
    reason_code: String,
}

/// The home authority declines responsibility in a lives/found hand-off, with a reason code;
/// the authority where the child was found keeps it and is told in an amendment of its alert.
#[utoipa::path(post, path = "/v1/alerts/{id}/decline-responsibility", tag = "authorities",
    params(("id" = String, Path)),
    request_body = DeclineBody,
    responses((status = 200), (status = 400), (status = 401), (status = 404), (status = 409, description = "No pending hand-off to this authority")),
    security(("authority_token" = [])))]
async fn decline_responsibility(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let reason_code = match serde_json::from_slice::<DeclineBody>(&body) {
        Ok(DeclineBody { reason_code }) if valid_reason_code(&reason_code) => reason_code,
        _ => {
            return Problem::invalid_field(
                "Nothing was declined; fix the listed field.",
                "/reason_code",
                REASON_CODE_RULE,
            )
            .into_response();
        }
    };
    decide_handoff(
        &state,
        &headers,
        &id,
        HandoffDecision::Decline,
        &reason_code,
        None,
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    /// The body the home authority names instead (a GSS code, a district's county, or a
    /// Northern Ireland trust `HSCT-...`).
    authority_code: String,
    /// Why (a code, not free text).
    reason_code: String,
}

/// The home authority names a third body as responsible: that body is alerted and asked in a
/// hand-off of its own, and the authority where the child was found is told.
#[utoipa::path(post, path = "/v1/alerts/{id}/transfer-responsibility", tag = "authorities",
    params(("id" = String, Path)),
    request_body = TransferBody,
    responses((status = 200), (status = 400), (status = 401), (status = 404), (status = 409, description = "No pending hand-off to this authority")),
    security(("authority_token" = [])))]
async fn transfer_responsibility(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let invalid = |pointer: &str, reason: &str| {
        Problem::invalid_field(
            "Nothing was transferred; fix the listed field.",
            pointer,
            reason,
        )
        .into_response()
    };
    let Ok(request) = serde_json::from_slice::<TransferBody>(&body) else {
        return invalid(
            "",
            "body must be {\"authority_code\": ..., \"reason_code\": ...}",
        );
    };
    if !valid_reason_code(&request.reason_code) {
        return invalid("/reason_code", REASON_CODE_RULE);
    }
    let registry = match kinlink_domain::routing::authorities::AuthorityRegistry::shipped() {
        Ok(registry) => registry,
        Err(error) => return unavailable(error),
    };
    let Ok(body) =
        kinlink_domain::routing::authorities::body_by_code(&registry, &request.authority_code)
    else {
        return invalid(
            "/authority_code",
            "not a body that runs children's services (a GSS code or HSCT-...)",
        );
    };
    decide_handoff(
        &state,
        &headers,
        &id,
        HandoffDecision::Transfer,
        &request.reason_code,
        Some(&body),
    )
    .await
}

/// What a reason code may be.
const REASON_CODE_RULE: &str = "a reason code of 1 to 64 letters, digits, '_' or '-' is required";

fn valid_reason_code(code: &str) -> bool {
    !code.trim().is_empty()
        && code.len() <= 64
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The alert a transfer raises for the body named: the home alert's children and context,
/// for the new body, as its own alert (its own id, revision 1), routed on the lives basis so
/// the body is asked in a hand-off of its own.
fn transferred_alert(
    home: &v1::AlertRaised,
    body: &kinlink_domain::routing::authorities::ChildrensServices,
    now: i64,
) -> v1::AlertRaised {
    let key = format!("transfer/{}", body.gss_code);
    v1::AlertRaised {
        alert_id: kinlink_proto::derive_id(&home.referral_id, &key),
        authority_code: body.gss_code.clone(),
        authority_name: body.name.clone(),
        dedup_key: format!("{}/{key}", home.referral_id),
        revision: 1,
        raised_at: Some(kinlink_proto::timestamp_from_millis(now)),
        closed_reason: 0,
        closed_reason_code: String::new(),
        closed_at: None,
        closed_rerouted_to: Vec::new(),
        // The named body is asked in turn; the authority where the child was found stays.
        handoff: home.handoff.as_ref().map(|h| v1::AlertHandoff {
            home_authority: body.gss_code.clone(),
            found_authority: h.found_authority.clone(),
            state: kinlink_domain::lifecycle::HandoffState::Pending
                .as_str()
                .to_owned(),
            ..Default::default()
        }),
        ..home.clone()
    }
}

/// Records the home authority's decision on its pending hand-offs for the alert's referral and
/// tells each authority where a child was found, in one transaction.
async fn decide_handoff(
    state: &ApiState,
    headers: &HeaderMap,
    id: &str,
    decision: HandoffDecision,
    reason_code: &str,
    transfer_to: Option<&kinlink_domain::routing::authorities::ChildrensServices>,
) -> Response {
    let (caller, stored) = match authorised(state, headers, id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    if transfer_to.is_some_and(|body| body.gss_code == caller.authority) {
        return problem(
            StatusCode::BAD_REQUEST,
            "a hand-off cannot be transferred to the authority transferring it",
        );
    }
    let referral_id = stored.alert.referral_id.clone();
    let result = async {
        let now = kinlink_store::now_millis();
        let mut tx = state.store.begin().await?;
        let decided = kinlink_alerter::records::decide_handoffs(
            &mut tx,
            &referral_id,
            &caller.authority,
            decision,
            reason_code,
            now,
        )
        .await?;
        if !decided.is_empty() {
            crate::escalation::stop_timer(&mut tx, id, EscalationLevel::Handoff).await?;
        }
        let mut told: Vec<String> = Vec::new();
        for handoff in &decided {
            if told.contains(&handoff.found_authority) {
                continue;
            }
            told.push(handoff.found_authority.clone());
            let found_alert = kinlink_domain::alerting::planning::referral_alert_id(
                &referral_id,
                &handoff.found_authority,
            );
            crate::inbox::amend_alert(&mut tx, &found_alert, now, None, |alert| {
                alert.handoff = Some(v1::AlertHandoff {
                    home_authority: caller.authority.clone(),
                    found_authority: handoff.found_authority.clone(),
                    state: handoff.state.as_str().to_owned(),
                    reason_code: reason_code.to_owned(),
                    decided_at: Some(kinlink_proto::timestamp_from_millis(now)),
                    transferred_to: transfer_to.map(|b| b.gss_code.clone()).unwrap_or_default(),
                });
            })
            .await?;
        }
        // A transfer alerts the named body about the same children, asking it in turn.
        if let (Some(body), false) = (transfer_to, decided.is_empty()) {
            let transferred = transferred_alert(&stored.alert, body, now);
            kinlink_alerter::records::record(&mut tx, &transferred, now).await?;
            let envelope = kinlink_eventlog::Envelope::new(
                kinlink_proto::derive_id(&transferred.alert_id, "raised"),
                crate::SOURCE,
                &transferred.alert_id,
                &transferred.referral_id,
                now,
                &transferred,
            );
            state
                .log
                .append_in(&mut tx, topics::ALERTS_RAISED, &envelope)
                .await?;
        }
        if let Some(first) = decided.first() {
            let action = format!("handoff_{}", first.state.as_str());
            audit::append(
                &mut tx,
                &AuditEntry {
                    action: &action,
                    actor: &caller.token_id,
                    authority_code: &caller.authority,
                    alert_id: id,
                    detail: reason_code,
                },
            )
            .await?;
        }
        tx.commit().await?;
        state.log.notify_appended();
        Ok::<_, crate::Error>(decided)
    }
    .await;
    match result {
        Ok(decided) if decided.is_empty() => problem(
            StatusCode::CONFLICT,
            "no pending hand-off to this authority for this alert",
        ),
        Ok(decided) => Json(serde_json::json!({
            "alert_id": id,
            "handoff": decided[0].state.as_str(),
        }))
        .into_response(),
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
    paths(inbox, read_alert, acknowledge, accept_responsibility, decline_responsibility, transfer_responsibility, resolve),
    modifiers(&AUTHORITY_SECURITY),
    tags((name = "authorities", description = "Children's services: inbox, acknowledgement, hand-off, resolution"))
)]
struct AuthorityApi;

/// The authority part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <AuthorityApi as utoipa::OpenApi>::openapi()
}
