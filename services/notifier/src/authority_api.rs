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

/// Who acts on an alert: the authority they act for, and who they are in the audit log (an API
/// token id, or `user:<id>` for a person signed in to the web console).
#[derive(Debug, Clone)]
pub struct Actor {
    pub authority: String,
    pub actor: String,
}

/// Why an action on an alert was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// No such alert for this authority (another authority's alert looks the same).
    #[error("no such alert")]
    NotFound,
    #[error("{0}")]
    Conflict(&'static str),
    /// A field of the request is not acceptable; nothing was changed.
    #[error("{pointer}: {reason}")]
    Invalid {
        pointer: &'static str,
        reason: &'static str,
    },
    #[error(transparent)]
    Notifier(#[from] crate::Error),
}

impl From<sqlx::Error> for ActionError {
    fn from(error: sqlx::Error) -> Self {
        ActionError::Notifier(crate::Error::Database(error))
    }
}

impl From<kinlink_eventlog::Error> for ActionError {
    fn from(error: kinlink_eventlog::Error) -> Self {
        ActionError::Notifier(crate::Error::Log(error))
    }
}

impl From<kinlink_store::Error> for ActionError {
    fn from(error: kinlink_store::Error) -> Self {
        ActionError::Notifier(crate::Error::Store(error))
    }
}

impl ActionError {
    fn into_response(self, invalid_detail: &str) -> Response {
        match self {
            ActionError::NotFound => problem(StatusCode::NOT_FOUND, "no such alert"),
            ActionError::Conflict(detail) => problem(StatusCode::CONFLICT, detail),
            ActionError::Invalid { pointer, reason } => {
                Problem::invalid_field(invalid_detail, pointer, reason).into_response()
            }
            ActionError::Notifier(error) => unavailable(error),
        }
    }
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

async fn caller(state: &ApiState, headers: &HeaderMap) -> Result<Actor, Response> {
    let principal = kinlink_runtime::http::authenticate(&state.store, AUTHORITY_TOKEN, headers)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok(Actor {
        authority: principal.id,
        actor: principal.token_id,
    })
}

/// Appends one audit entry in a transaction of its own.
pub async fn audit_now(store: &Store, entry: AuditEntry<'_>) -> Result<(), ActionError> {
    let mut tx = store.begin().await?;
    audit::append(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(())
}

/// An alert as filed, with its life-cycle state.
#[derive(Debug, Clone)]
pub struct StoredAlert {
    pub alert: v1::AlertRaised,
    pub state: AlertState,
    pub created_at_ms: i64,
    pub acknowledged_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    pub outcome_code: Option<String>,
}

/// The alert if it belongs to the actor's authority; otherwise [`ActionError::NotFound`], with
/// the denial audited.
pub async fn own_alert(store: &Store, actor: &Actor, id: &str) -> Result<StoredAlert, ActionError> {
    let row = sqlx::query(
        "SELECT authority_code, state, alert, created_at_ms, acknowledged_at_ms, resolved_at_ms, outcome_code \
         FROM alerts WHERE alert_id = $1",
    )
    .bind(id)
    .fetch_optional(store.pool())
    .await?;
    let Some(row) = row else {
        return Err(ActionError::NotFound);
    };
    let authority: String = row.try_get("authority_code")?;
    if authority != actor.authority {
        audit_now(
            store,
            AuditEntry {
                action: "access_denied",
                actor: &actor.actor,
                authority_code: &actor.authority,
                alert_id: id,
                detail: "alert of another authority",
            },
        )
        .await?;
        tracing::warn!(alert_id = id, caller_authority = %actor.authority, "Denied access to another authority's alert.");
        return Err(ActionError::NotFound);
    }
    let bytes: Vec<u8> = row.try_get("alert")?;
    let alert = crate::stored_alert(id, &bytes)?;
    let state: String = row.try_get("state")?;
    let state = AlertState::parse(&state).ok_or_else(|| crate::Error::CorruptAlert {
        alert_id: id.to_owned(),
    })?;
    Ok(StoredAlert {
        alert,
        state,
        created_at_ms: row.try_get("created_at_ms")?,
        acknowledged_at_ms: row.try_get("acknowledged_at_ms")?,
        resolved_at_ms: row.try_get("resolved_at_ms")?,
        outcome_code: row.try_get("outcome_code")?,
    })
}

/// The alert's full content for its authority, the read audited as a disclosure.
pub async fn read_alert_audited(
    store: &Store,
    actor: &Actor,
    id: &str,
) -> Result<StoredAlert, ActionError> {
    let stored = own_alert(store, actor, id).await?;
    audit_now(
        store,
        AuditEntry {
            action: "alert_read",
            actor: &actor.actor,
            authority_code: &actor.authority,
            alert_id: id,
            detail: "",
        },
    )
    .await?;
    Ok(stored)
}

/// Which alerts of an inbox to list.
#[derive(Debug, Clone, Default)]
pub struct InboxFilter {
    /// One state, or every state when `None` and `needs_action` is false.
    pub state: Option<AlertState>,
    /// Open and acknowledged alerts only (what still needs someone).
    pub needs_action: bool,
    pub rule: Option<String>,
    pub basis: Option<String>,
    pub priority: Option<String>,
    pub rag: Option<String>,
}

/// One row of an inbox: what the list shows without decoding the alert.
#[derive(Debug, Clone)]
pub struct InboxRow {
    pub alert_id: String,
    pub referral_id: String,
    pub state: String,
    pub deadline_ms: i64,
    pub rag: String,
    pub rule: String,
    pub basis: String,
    pub priority: String,
    pub child_count: i64,
    pub created_at_ms: i64,
}

/// The inbox filter: $1 authority, $2 state, $3 needs action, $4 rule, $5 basis (an alert on
/// both bases matches either), $6 priority, $7 RAG; an empty value matches everything.
macro_rules! inbox_where {
    () => {
        "authority_code = $1 AND ($2 = '' OR state = $2) \
         AND ($3 = 0 OR state IN ('open', 'acknowledged')) AND ($4 = '' OR rule = $4) \
         AND ($5 = '' OR basis = $5 OR (basis = 'both' AND $5 IN ('lives', 'found'))) \
         AND ($6 = '' OR priority = $6) AND ($7 = '' OR rag = $7)"
    };
}
const COUNT_SQL: &str = concat!("SELECT COUNT(*) AS n FROM alerts WHERE ", inbox_where!());
const PAGE_SQL: &str = concat!(
    "SELECT alert_id, referral_id, state, deadline_ms, rag, rule, basis, priority, child_count, created_at_ms \
     FROM alerts WHERE ",
    inbox_where!(),
    " ORDER BY CASE state WHEN 'open' THEN 0 WHEN 'acknowledged' THEN 1 ELSE 2 END, \
     CASE rag WHEN 'red' THEN 0 WHEN 'amber' THEN 1 WHEN 'green' THEN 2 ELSE 3 END, deadline_ms, alert_id \
     LIMIT $8 OFFSET $9"
);

/// A page of an authority's inbox, most pressing first (red before amber before green, then
/// by deadline), and how many alerts match the filter in all.
pub async fn inbox_page(
    store: &Store,
    authority: &str,
    filter: &InboxFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<InboxRow>, i64), ActionError> {
    let state = filter.state.map(|s| s.as_str()).unwrap_or_default();
    let needs_action: i64 = i64::from(filter.needs_action);
    let bind = |sql: &'static str| -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments<'static>> {
        sqlx::query(sql)
            .bind(authority.to_owned())
            .bind(state.to_owned())
            .bind(needs_action)
            .bind(filter.rule.clone().unwrap_or_default())
            .bind(filter.basis.clone().unwrap_or_default())
            .bind(filter.priority.clone().unwrap_or_default())
            .bind(filter.rag.clone().unwrap_or_default())
    };
    let total: i64 = bind(COUNT_SQL)
        .fetch_one(store.pool())
        .await?
        .try_get("n")?;
    let rows = bind(PAGE_SQL)
        .bind(limit)
        .bind(offset)
        .fetch_all(store.pool())
        .await?;
    let rows = rows
        .iter()
        .map(|r| {
            Ok(InboxRow {
                alert_id: r.try_get("alert_id")?,
                referral_id: r.try_get("referral_id")?,
                state: r.try_get("state")?,
                deadline_ms: r.try_get("deadline_ms")?,
                rag: r.try_get("rag")?,
                rule: r.try_get("rule")?,
                basis: r.try_get("basis")?,
                priority: r.try_get("priority")?,
                child_count: r.try_get("child_count")?,
                created_at_ms: r.try_get("created_at_ms")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok((rows, total))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct InboxQuery {
    /// `open`, `acknowledged`, `resolved` or `closed`; every state when absent.
    state: Option<String>,
    /// A rule name, e.g. `child_referral`.
    rule: Option<String>,
    /// `lives`, `found`, `both`, `triage`, `placing_authority` or `previous_authority`.
    basis: Option<String>,
    /// `standard` or `urgent`.
    priority: Option<String>,
    /// `red`, `amber` or `green`.
    rag: Option<String>,
    /// At most this many alerts (1 to 1,000; 500 when absent).
    limit: Option<i64>,
    /// Skip this many alerts first (paging).
    offset: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct InboxItem {
    alert_id: String,
    referral_id: String,
    state: String,
    /// RFC 3339, like every other time in the API.
    deadline: String,
    /// `red`, `amber` or `green`.
    rag: String,
    rule: String,
    /// `lives`, `found`, `both` (children on both bases), `triage`, `placing_authority` or
    /// `previous_authority`.
    basis: String,
    /// `standard` or `urgent`.
    priority: String,
    child_count: i64,
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

/// RFC 3339 at whole seconds.
pub fn rfc3339(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// The inbox filter a query asks for, or the field that is wrong.
fn inbox_filter(query: &InboxQuery) -> Result<InboxFilter, (&'static str, &'static str)> {
    fn one_of(
        value: &Option<String>,
        allowed: &[&str],
        pointer: &'static str,
        rule: &'static str,
    ) -> Result<Option<String>, (&'static str, &'static str)> {
        match value.as_deref() {
            None | Some("") => Ok(None),
            Some(v) if allowed.contains(&v) => Ok(Some(v.to_owned())),
            Some(_) => Err((pointer, rule)),
        }
    }
    let state = match query.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(AlertState::parse(s).ok_or((
            "state",
            "state must be open, acknowledged, resolved or closed",
        ))?),
    };
    let rule = match query.rule.as_deref() {
        None | Some("") => None,
        Some(r) if r.len() <= 64 && r.chars().all(|c| c.is_ascii_lowercase() || c == '_') => {
            Some(r.to_owned())
        }
        Some(_) => return Err(("rule", "rule must be a rule name such as child_referral")),
    };
    Ok(InboxFilter {
        state,
        needs_action: false,
        rule,
        basis: one_of(
            &query.basis,
            &BASES,
            "basis",
            "basis must be lives, found, both, triage, placing_authority or previous_authority",
        )?,
        priority: one_of(
            &query.priority,
            &["standard", "urgent"],
            "priority",
            "priority must be standard or urgent",
        )?,
        rag: one_of(
            &query.rag,
            &["red", "amber", "green"],
            "rag",
            "rag must be red, amber or green",
        )?,
    })
}

/// The bases an inbox can be filtered on.
pub const BASES: [&str; 6] = [
    "lives",
    "found",
    "both",
    "triage",
    "placing_authority",
    "previous_authority",
];

/// The authority's alerts, most pressing first: open, then acknowledged, then the rest; within
/// each, red, amber, green, then by deadline. Paged (500 by default); the `x-total-count`
/// header says how many match in all.
#[utoipa::path(get, path = "/v1/authorities/{code}/alerts", tag = "authorities",
    params(("code" = String, Path, description = "The authority's code; must be the token's"), InboxQuery),
    responses((status = 200, body = Vec<InboxItem>, headers(("x-total-count" = i64, description = "Alerts matching the filter in all"))), (status = 400), (status = 401), (status = 404, description = "Not this token's authority")),
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
        if let Err(error) = audit_now(
            &state.store,
            AuditEntry {
                action: "access_denied",
                actor: &caller.actor,
                authority_code: &caller.authority,
                alert_id: "",
                detail: "inbox of another authority",
            },
        )
        .await
        {
            return error.into_response("");
        }
        return problem(StatusCode::NOT_FOUND, "no such authority");
    }
    let filter = match inbox_filter(&query) {
        Ok(filter) => filter,
        Err((pointer, reason)) => {
            return Problem::invalid_field("Fix the listed parameter.", pointer, reason)
                .into_response();
        }
    };
    let limit = query.limit.unwrap_or(500);
    if !(1..=1000).contains(&limit) {
        return Problem::invalid_field(
            "Fix the listed parameter.",
            "limit",
            "limit must be 1 to 1000",
        )
        .into_response();
    }
    let offset = query.offset.unwrap_or(0);
    if offset < 0 {
        return Problem::invalid_field(
            "Fix the listed parameter.",
            "offset",
            "offset must be 0 or more",
        )
        .into_response();
    }
    let (rows, total) = match inbox_page(&state.store, &code, &filter, limit, offset).await {
        Ok(found) => found,
        Err(error) => return error.into_response(""),
    };
    let items: Result<Vec<InboxItem>, sqlx::Error> = async {
        let mut items = Vec::new();
        let mut conn = state.store.pool().acquire().await?;
        for r in rows {
            let handoffs = kinlink_alerter::records::handoffs_of(&mut conn, &r.referral_id, &code)
                .await?
                .into_iter()
                .map(|(home_authority, found_authority, state)| InboxHandoff {
                    home_authority,
                    found_authority,
                    state,
                })
                .collect();
            items.push(InboxItem {
                alert_id: r.alert_id,
                referral_id: r.referral_id,
                state: r.state,
                deadline: rfc3339(r.deadline_ms),
                rag: r.rag,
                rule: r.rule,
                basis: r.basis,
                priority: r.priority,
                child_count: r.child_count,
                handoffs,
            });
        }
        Ok(items)
    }
    .await;
    match items {
        // How many match in all, so a client knows when there are more pages.
        Ok(items) => ([("x-total-count", total.to_string())], Json(items)).into_response(),
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
    let caller = match caller(&state, &headers).await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    let stored = match read_alert_audited(&state.store, &caller, &id).await {
        Ok(stored) => stored,
        Err(error) => return error.into_response(""),
    };
    // The authority API always gives the full content: the caller is authenticated as the
    // alert's authority, and the read is audited as a disclosure.
    let payload = WebhookPayload::from_alert(&stored.alert, &state.base_url, true);
    let mut body = serde_json::to_value(&payload).unwrap_or_default();
    if let Some(object) = body.as_object_mut() {
        object.insert("state".into(), stored.state.as_str().into());
    }
    Json(body).into_response()
}

/// Acknowledges an alert for its authority: stops escalation and resolves any on-call page.
/// Acknowledging twice changes nothing. Returns the alert's state afterwards.
pub async fn acknowledge_alert(
    store: &Store,
    log: &EventLog,
    actor: &Actor,
    id: &str,
) -> Result<AlertState, ActionError> {
    let stored = own_alert(store, actor, id).await?;
    let Step::Move { from, to } = stored.state.apply(AlertCommand::Acknowledge) else {
        return Ok(stored.state);
    };
    let now = kinlink_store::now_millis();
    let acknowledged = v1::AlertAcknowledged {
        alert_id: id.to_owned(),
        authority_code: actor.authority.clone(),
        acknowledged_at: Some(kinlink_proto::timestamp_from_millis(now)),
    };
    let step = Step::Move { from, to };
    if let Some(filed) = persist_step(store, log, actor, id, step, now, None, &acknowledged).await?
    {
        ACKNOWLEDGEMENT_SECONDS.observe((now - filed).max(0) as f64 / 1000.0);
    }
    tracing::info!(alert_id = %id, authority = %actor.authority, "Alert acknowledged.");
    Ok(to)
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
    let caller = match caller(&state, &headers).await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    match acknowledge_alert(&state.store, &state.log, &caller, &id).await {
        Ok(to) => Json(serde_json::json!({ "alert_id": id, "state": to.as_str() })).into_response(),
        Err(error) => error.into_response(""),
    }
}

/// Persists an authority's step on an alert in one transaction: the state change (guarded on
/// the state it moves from), its escalation timers stopped, the lifecycle event and the audit
/// entry. Another request that moved the alert first wins; this one then changes nothing.
/// Returns when the alert was filed, if this request moved it.
#[allow(clippy::too_many_arguments)]
async fn persist_step<M: prost::Message + prost::Name>(
    store: &Store,
    log: &EventLog,
    actor: &Actor,
    id: &str,
    step: Step<AlertState>,
    now: i64,
    outcome_code: Option<&str>,
    event: &M,
) -> Result<Option<i64>, crate::Error> {
    let Step::Move { from, to } = step else {
        return Ok(None);
    };
    let mut tx = store.begin().await?;
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
    log.append_in(
        &mut tx,
        topics::ALERTS_LIFECYCLE,
        &lifecycle(id, to.as_str(), now, event),
    )
    .await?;
    audit::append(
        &mut tx,
        &AuditEntry {
            action: to.as_str(),
            actor: &actor.actor,
            authority_code: &actor.authority,
            alert_id: id,
            detail: outcome_code.unwrap_or_default(),
        },
    )
    .await?;
    tx.commit().await?;
    log.notify_appended();
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
    handoff_response(&state, &headers, &id, HandoffDecision::Accept, "", None, "").await
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
    let Ok(DeclineBody { reason_code }) = serde_json::from_slice::<DeclineBody>(&body) else {
        return Problem::invalid_field(
            "Nothing was declined; fix the listed field.",
            "/reason_code",
            REASON_CODE_RULE,
        )
        .into_response();
    };
    handoff_response(
        &state,
        &headers,
        &id,
        HandoffDecision::Decline,
        &reason_code,
        None,
        "Nothing was declined; fix the listed field.",
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
    let Ok(request) = serde_json::from_slice::<TransferBody>(&body) else {
        return Problem::invalid_field(
            "Nothing was transferred; fix the listed field.",
            "",
            "body must be {\"authority_code\": ..., \"reason_code\": ...}",
        )
        .into_response();
    };
    handoff_response(
        &state,
        &headers,
        &id,
        HandoffDecision::Transfer,
        &request.reason_code,
        Some(&request.authority_code),
        "Nothing was transferred; fix the listed field.",
    )
    .await
}

async fn handoff_response(
    state: &ApiState,
    headers: &HeaderMap,
    id: &str,
    decision: HandoffDecision,
    reason_code: &str,
    transfer_to: Option<&str>,
    invalid_detail: &str,
) -> Response {
    let caller = match caller(state, headers).await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    match decide_handoff(
        &state.store,
        &state.log,
        &caller,
        id,
        decision,
        reason_code,
        transfer_to,
    )
    .await
    {
        Ok(decided) => {
            Json(serde_json::json!({ "alert_id": id, "handoff": decided.as_str() })).into_response()
        }
        Err(error) => error.into_response(invalid_detail),
    }
}

/// What a reason code may be.
pub const REASON_CODE_RULE: &str =
    "a reason code of 1 to 64 letters, digits, '_' or '-' is required";

/// Whether `code` is an acceptable reason code.
pub fn valid_reason_code(code: &str) -> bool {
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
/// tells each authority where a child was found, in one transaction. A transfer names the
/// body (`transfer_to`, a GSS code, a district or `HSCT-...`) that is alerted and asked in turn.
/// Returns the hand-off's state afterwards.
pub async fn decide_handoff(
    store: &Store,
    log: &EventLog,
    actor: &Actor,
    id: &str,
    decision: HandoffDecision,
    reason_code: &str,
    transfer_to: Option<&str>,
) -> Result<kinlink_domain::lifecycle::HandoffState, ActionError> {
    if decision != HandoffDecision::Accept && !valid_reason_code(reason_code) {
        return Err(ActionError::Invalid {
            pointer: "/reason_code",
            reason: REASON_CODE_RULE,
        });
    }
    let transfer_to = match transfer_to {
        None => None,
        Some(code) => {
            let registry = kinlink_domain::routing::authorities::AuthorityRegistry::shipped()
                .map_err(|e| crate::Error::Reference(e.to_string()))?;
            let body = kinlink_domain::routing::authorities::body_by_code(&registry, code)
                .map_err(|_| ActionError::Invalid {
                    pointer: "/authority_code",
                    reason: "not a body that runs children's services (a GSS code or HSCT-...)",
                })?;
            Some(body)
        }
    };
    let stored = own_alert(store, actor, id).await?;
    if transfer_to
        .as_ref()
        .is_some_and(|body| body.gss_code == actor.authority)
    {
        return Err(ActionError::Invalid {
            pointer: "/authority_code",
            reason: "a hand-off cannot be transferred to the authority transferring it",
        });
    }
    let transfer_to = transfer_to.as_ref();
    let referral_id = stored.alert.referral_id.clone();
    let now = kinlink_store::now_millis();
    let mut tx = store.begin().await?;
    let decided = kinlink_alerter::records::decide_handoffs(
        &mut tx,
        &referral_id,
        &actor.authority,
        decision,
        reason_code,
        now,
    )
    .await?;
    let Some(first) = decided.first() else {
        return Err(ActionError::Conflict(
            "no pending hand-off to this authority for this alert",
        ));
    };
    crate::escalation::stop_timer(&mut tx, id, EscalationLevel::Handoff).await?;
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
                home_authority: actor.authority.clone(),
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
    if let Some(body) = transfer_to {
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
        log.append_in(&mut tx, topics::ALERTS_RAISED, &envelope)
            .await?;
    }
    let action = format!("handoff_{}", first.state.as_str());
    audit::append(
        &mut tx,
        &AuditEntry {
            action: &action,
            actor: &actor.actor,
            authority_code: &actor.authority,
            alert_id: id,
            detail: reason_code,
        },
    )
    .await?;
    let state = first.state;
    tx.commit().await?;
    log.notify_appended();
    Ok(state)
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

/// Resolves an alert with an outcome code. Resolving twice keeps the first outcome and
/// changes nothing. Returns the alert's state afterwards.
pub async fn resolve_alert(
    store: &Store,
    log: &EventLog,
    actor: &Actor,
    id: &str,
    outcome_code: &str,
) -> Result<AlertState, ActionError> {
    if !OUTCOME_CODES.contains(&outcome_code) {
        return Err(ActionError::Invalid {
            pointer: "/outcome_code",
            reason: "outcome_code must be one of no_further_action, early_help, child_in_need, \
                     section_47_enquiry, looked_after, transferred, duplicate",
        });
    }
    let stored = own_alert(store, actor, id).await?;
    let Step::Move { from, to } = stored.state.apply(AlertCommand::Resolve) else {
        return Ok(stored.state);
    };
    let now = kinlink_store::now_millis();
    let resolved = v1::AlertResolved {
        alert_id: id.to_owned(),
        authority_code: actor.authority.clone(),
        outcome_code: outcome_code.to_owned(),
        resolved_at: Some(kinlink_proto::timestamp_from_millis(now)),
    };
    let step = Step::Move { from, to };
    persist_step(
        store,
        log,
        actor,
        id,
        step,
        now,
        Some(outcome_code),
        &resolved,
    )
    .await?;
    Ok(to)
}

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
    match resolve_alert(&state.store, &state.log, &caller, &id, &outcome_code).await {
        Ok(to) => Json(serde_json::json!({ "alert_id": id, "state": to.as_str(), "outcome_code": outcome_code }))
            .into_response(),
        Err(ActionError::Invalid { reason, .. }) => problem(StatusCode::BAD_REQUEST, reason),
        Err(error) => error.into_response(""),
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
