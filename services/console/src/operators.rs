//! kinlink operators: the triage queue (alerts no rule could route) with each item's SLA, and
//! routing an item to a body from the register. Operators see ids, reason codes and candidate
//! bodies, never a child's details.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use kinlink_notifier::triage::RouteError;
use serde::Deserialize;

use crate::Console;
use crate::accounts::Role;
use crate::view::{self, Chrome};

pub struct QueueRow {
    alert_id: String,
    referral_id: String,
    reasons: String,
    candidates: String,
    time_left: String,
    overdue: bool,
    sla: String,
}

#[derive(Template)]
#[template(path = "triage.html")]
struct QueuePage {
    chrome: Chrome,
    rows: Vec<QueueRow>,
    flash: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct Done {
    done: Option<String>,
    error: Option<String>,
    q: Option<String>,
}

pub async fn queue(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(done): Query<Done>,
) -> Response {
    let session = match crate::session_as(&console, &headers, |r| r == Role::Operator).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let items = match kinlink_alerter::triage_api::open_items(&console.store).await {
        Ok(items) => items,
        Err(error) => return crate::unavailable(&error),
    };
    let now = kinlink_store::now_millis();
    let rows = items
        .into_iter()
        .map(|i| QueueRow {
            time_left: kinlink_domain::deadline::time_left_in_words(now, i.sla_deadline_ms),
            overdue: i.sla_deadline_ms < now,
            sla: view::when(i.sla_deadline_ms),
            reasons: i
                .reasons
                .iter()
                .map(|r| view::words(r))
                .collect::<Vec<_>>()
                .join(", "),
            candidates: i.candidates.join(", "),
            alert_id: i.alert_id,
            referral_id: i.referral_id,
        })
        .collect();
    let flash = match done.done.as_deref() {
        Some(code) => format!(
            "Routed to {}. The authority has been alerted.",
            view::id_only(code)
        ),
        None => String::new(),
    };
    view::render(
        StatusCode::OK,
        &QueuePage {
            chrome: Chrome::new("Triage queue", Some(&session), "/console/triage"),
            rows,
            flash,
        },
    )
}

pub struct BodyChoice {
    code: String,
    name: String,
    candidate: bool,
}

#[derive(Template)]
#[template(path = "triage_item.html")]
struct ItemPage {
    chrome: Chrome,
    alert_id: String,
    referral_id: String,
    reasons: String,
    time_left: String,
    sla: String,
    candidates: Vec<BodyChoice>,
    matches: Vec<BodyChoice>,
    query: String,
    searched: bool,
    error: String,
}

pub async fn item(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(done): Query<Done>,
) -> Response {
    let session = match crate::session_as(&console, &headers, |r| r == Role::Operator).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let item = match kinlink_alerter::triage_api::open_item(&console.store, &id).await {
        Ok(Some(item)) => item,
        Ok(None) => return view::not_found(Some(&session)),
        Err(error) => return crate::unavailable(&error),
    };
    let bodies = &console.bodies;
    let name_of = |code: &str| {
        bodies
            .iter()
            .find(|b| b.gss_code == code)
            .map(|b| b.name.clone())
            .unwrap_or_else(|| code.to_owned())
    };
    let query = done.q.clone().unwrap_or_default();
    let needle = query.trim().to_lowercase();
    let matches: Vec<BodyChoice> = if needle.is_empty() {
        Vec::new()
    } else {
        bodies
            .iter()
            .filter(|b| {
                b.name.to_lowercase().contains(&needle) || b.gss_code.to_lowercase() == needle
            })
            .take(20)
            .map(|b| BodyChoice {
                code: b.gss_code.clone(),
                name: b.name.clone(),
                candidate: false,
            })
            .collect()
    };
    let now = kinlink_store::now_millis();
    view::render(
        StatusCode::OK,
        &ItemPage {
            chrome: Chrome::new("Route a triage item", Some(&session), "/console/triage"),
            reasons: item
                .reasons
                .iter()
                .map(|r| view::words(r))
                .collect::<Vec<_>>()
                .join(", "),
            time_left: kinlink_domain::deadline::time_left_in_words(now, item.sla_deadline_ms),
            sla: view::when(item.sla_deadline_ms),
            candidates: item
                .candidates
                .iter()
                .map(|c| BodyChoice {
                    code: c.clone(),
                    name: name_of(c),
                    candidate: true,
                })
                .collect(),
            matches,
            searched: !needle.is_empty(),
            query,
            error: match done.error.as_deref() {
                Some("choose") => "Choose the body to route this item to".to_owned(),
                Some("unknown") => "That is not a body that runs children's services".to_owned(),
                Some(_) => "This item is no longer waiting in triage".to_owned(),
                None => String::new(),
            },
            alert_id: item.alert_id,
            referral_id: item.referral_id,
        },
    )
}

/// `POST /console/triage/{id}`: route the item to the chosen body.
pub async fn route(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let session =
        match crate::form_session_as(&console, &headers, &form, |r| r == Role::Operator).await {
            Ok(session) => session,
            Err(response) => return response,
        };
    let base = format!("/console/triage/{}", view::id_only(&id));
    let code = form
        .get("authority_code")
        .map(|c| c.trim().to_owned())
        .unwrap_or_default();
    if code.is_empty() {
        return Redirect::to(&format!("{base}?error=choose")).into_response();
    }
    let Ok(body) = kinlink_domain::routing::authorities::body_by_code(&console.registry, &code)
    else {
        return Redirect::to(&format!("{base}?error=unknown")).into_response();
    };
    match kinlink_notifier::triage::route(
        &console.store,
        &console.directory,
        &id,
        &body.gss_code,
        &body.name,
        &session.user.audit_actor(),
    )
    .await
    {
        Ok(()) => {
            console.log.notify_appended();
            Redirect::to(&format!("/console/triage?done={}", body.gss_code)).into_response()
        }
        Err(RouteError::NotInTriage(_)) => {
            Redirect::to(&format!("{base}?error=gone")).into_response()
        }
        Err(error) => crate::unavailable(&error),
    }
}

/// One authority's delivery health.
pub struct HealthRow {
    authority: String,
    name: String,
    pending: i64,
    retrying: i64,
    failed: i64,
    last_delivered: String,
    disabled: String,
}

/// A delivery the notifier gave up on.
pub struct GivenUp {
    alert_id: String,
    authority: String,
    attempts: i64,
    reason: String,
    when: String,
}

#[derive(Template)]
#[template(path = "health.html")]
struct HealthPage {
    chrome: Chrome,
    rows: Vec<HealthRow>,
    given_up: Vec<GivenUp>,
    flash: String,
}

/// `GET /console/deliveries`: per-authority delivery health and the deliveries given up.
pub async fn health(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(done): Query<Done>,
) -> Response {
    let session = match crate::session_as(&console, &headers, |r| r == Role::Operator).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    match health_rows(&console).await {
        Ok((rows, given_up)) => view::render(
            StatusCode::OK,
            &HealthPage {
                chrome: Chrome::new("Delivery health", Some(&session), "/console/deliveries"),
                rows,
                given_up,
                flash: if done.done.is_some() {
                    "Queued for delivery again; a withdrawn endpoint was enabled again.".to_owned()
                } else {
                    String::new()
                },
            },
        ),
        Err(error) => crate::unavailable(&error),
    }
}

async fn health_rows(console: &Console) -> Result<(Vec<HealthRow>, Vec<GivenUp>), sqlx::Error> {
    use sqlx::Row;
    let pool = console.store.pool();
    let disabled: HashMap<String, String> =
        sqlx::query("SELECT authority_code, disabled_at_ms, reason FROM endpoint_state")
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>("authority_code")?,
                    format!(
                        "{} since {}",
                        r.try_get::<String, _>("reason")?,
                        view::when(r.try_get("disabled_at_ms")?)
                    ),
                ))
            })
            .collect::<Result<_, sqlx::Error>>()?;
    let bodies = &console.bodies;
    let name_of = |code: &str| {
        bodies
            .iter()
            .find(|b| b.gss_code == code)
            .map(|b| b.name.clone())
            .unwrap_or_default()
    };
    let rows = sqlx::query(
        "SELECT authority_code, \
         SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END) AS pending, \
         SUM(CASE WHEN state = 'pending' AND attempts > base_attempts THEN 1 ELSE 0 END) AS retrying, \
         SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END) AS failed, \
         MAX(CASE WHEN state = 'delivered' THEN updated_at_ms ELSE 0 END) AS last_delivered \
         FROM deliveries WHERE authority_code <> '' GROUP BY authority_code ORDER BY authority_code",
    )
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        let authority: String = r.try_get("authority_code")?;
        let last: i64 = r.try_get("last_delivered")?;
        Ok(HealthRow {
            name: name_of(&authority),
            pending: r.try_get("pending")?,
            retrying: r.try_get("retrying")?,
            failed: r.try_get("failed")?,
            last_delivered: if last > 0 { view::when(last) } else { "Never".to_owned() },
            disabled: disabled.get(&authority).cloned().unwrap_or_default(),
            authority,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let failed = sqlx::query(
        "SELECT alert_id, authority_code, attempts, updated_at_ms FROM deliveries WHERE state = 'failed' \
         ORDER BY updated_at_ms DESC LIMIT 100",
    )
    .fetch_all(pool)
    .await?;
    let mut given_up = Vec::new();
    for r in &failed {
        let alert_id: String = r.try_get("alert_id")?;
        let last = sqlx::query(
            "SELECT outcome, http_status FROM delivery_attempts WHERE alert_id = $1 ORDER BY attempt DESC LIMIT 1",
        )
        .bind(&alert_id)
        .fetch_optional(pool)
        .await?;
        let reason = match last {
            Some(row) => {
                let outcome: String = row.try_get("outcome")?;
                let status: Option<i64> = row.try_get("http_status")?;
                match status {
                    Some(code) if code > 0 => format!("{} (HTTP {code})", view::words(&outcome)),
                    _ => view::words(&outcome),
                }
            }
            None => "No attempt recorded".to_owned(),
        };
        given_up.push(GivenUp {
            authority: r.try_get("authority_code")?,
            attempts: r.try_get("attempts")?,
            when: view::when(r.try_get("updated_at_ms")?),
            reason,
            alert_id,
        });
    }
    Ok((rows, given_up))
}

/// `POST /console/deliveries/{id}`: deliver a given-up alert again (as `kinlink ops dlq
/// replay` does), audited with the operator's identity.
pub async fn redeliver(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let session =
        match crate::form_session_as(&console, &headers, &form, |r| r == Role::Operator).await {
            Ok(session) => session,
            Err(response) => return response,
        };
    let actor = session.user.audit_actor();
    let result = async {
        let mut tx = console.store.begin().await?;
        let failed = sqlx::query(
            "SELECT authority_code FROM deliveries WHERE alert_id = $1 AND state = 'failed'",
        )
        .bind(&id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = failed else {
            return Ok::<bool, crate::Error>(false);
        };
        let authority: String = sqlx::Row::try_get(&row, "authority_code")?;
        kinlink_notifier::delivery::requeue_given_up(&mut tx, &id, kinlink_store::now_millis())
            .await?;
        kinlink_store::audit::append(
            &mut tx,
            &kinlink_store::audit::AuditEntry {
                action: "delivery_requeued",
                actor: &actor,
                authority_code: &authority,
                alert_id: &id,
                detail: "console",
            },
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
    .await;
    match result {
        Ok(true) => Redirect::to("/console/deliveries?done=requeued").into_response(),
        Ok(false) => view::not_found(Some(&session)),
        Err(error) => crate::unavailable(&error),
    }
}

/// One stage of the pipeline as the status page shows it.
pub struct StageRow {
    stage: String,
    lag_events: i64,
    lag: String,
    last_progress: String,
    stalled: bool,
    dead_letters: i64,
}

#[derive(Template)]
#[template(path = "status.html")]
struct StatusPage {
    chrome: Chrome,
    backend: &'static str,
    stages: Vec<StageRow>,
    triage_open: i64,
    triage_overdue: i64,
    reviews_open: i64,
    alerts: crate::status::AlertCounts,
}

/// `GET /console/status`: lag and stalls per stage, dead letters, queues and alerts, as
/// `kinlink ops status` reports them.
pub async fn stages(State(console): State<Console>, headers: HeaderMap) -> Response {
    let session = match crate::session_as(&console, &headers, |r| r == Role::Operator).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let status =
        match crate::status::status(&console.store, &console.log, console.stalled_after).await {
            Ok(status) => status,
            Err(error) => return crate::unavailable(&error),
        };
    let stages = status
        .stages
        .into_iter()
        .map(|s| StageRow {
            lag: if s.lag_events == 0 {
                "none".to_owned()
            } else {
                format!("{:.0} s", s.lag_seconds)
            },
            last_progress: s
                .last_progress_ms
                .map(view::when)
                .unwrap_or_else(|| "never".to_owned()),
            stage: s.stage,
            lag_events: s.lag_events,
            stalled: s.stalled,
            dead_letters: s.dead_letters,
        })
        .collect();
    view::render(
        StatusCode::OK,
        &StatusPage {
            chrome: Chrome::new("Stage status", Some(&session), "/console/status"),
            backend: status.backend,
            stages,
            triage_open: status.triage_open,
            triage_overdue: status.triage_overdue,
            reviews_open: status.reviews_open,
            alerts: status.alerts,
        },
    )
}

/// One dead letter as the page shows it (ids, type, reason; never the payload).
pub struct LetterRow {
    time_ms: i64,
    stage: String,
    event_id: String,
    event_type: String,
    reason: String,
    when: String,
    replayed: bool,
}

#[derive(Template)]
#[template(path = "dead_letters.html")]
struct DeadLettersPage {
    chrome: Chrome,
    letters: Vec<LetterRow>,
    flash: String,
}

/// `GET /console/dead-letters`: every stage's dead letters with their reasons.
pub async fn dead_letters(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(done): Query<Done>,
) -> Response {
    let session = match crate::session_as(&console, &headers, |r| r == Role::Operator).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let letters = match crate::dead_letters::list(&console.store, &console.log, None).await {
        Ok(letters) => letters,
        Err(error) => return crate::unavailable(&error),
    };
    let mut rows: Vec<LetterRow> = letters
        .into_iter()
        .map(|l| LetterRow {
            time_ms: l.time_ms,
            when: view::when(l.time_ms),
            stage: l.stage,
            event_id: l.event_id,
            event_type: l
                .event_type
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .to_owned(),
            reason: l.reason,
            replayed: l.replayed,
        })
        .collect();
    // Waiting first, newest first.
    rows.sort_by(|a, b| a.replayed.cmp(&b.replayed).then(b.time_ms.cmp(&a.time_ms)));
    view::render(
        StatusCode::OK,
        &DeadLettersPage {
            chrome: Chrome::new("Dead letters", Some(&session), "/console/dead-letters"),
            letters: rows,
            flash: if done.done.is_some() {
                "Replayed with its original event id: the stage applies it once.".to_owned()
            } else {
                String::new()
            },
        },
    )
}

/// `POST /console/dead-letters/{stage}/{event_id}`: replay one letter (as `kinlink ops dlq
/// replay --event`), audited with the operator's identity.
pub async fn replay_letter(
    State(console): State<Console>,
    headers: HeaderMap,
    Path((stage, event_id)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let session =
        match crate::form_session_as(&console, &headers, &form, |r| r == Role::Operator).await {
            Ok(session) => session,
            Err(response) => return response,
        };
    // Audited first: a replay is never done without its record.
    let actor = session.user.audit_actor();
    let detail = format!(
        "stage={} event={}",
        view::id_only(&stage),
        view::id_only(&event_id)
    );
    let audited = crate::audit(
        &console,
        kinlink_store::audit::AuditEntry {
            action: "dlq_replay",
            actor: &actor,
            authority_code: "",
            alert_id: "",
            detail: &detail,
        },
    )
    .await;
    if let Err(error) = audited {
        return crate::unavailable(&error);
    }
    let result = async {
        let letters = crate::dead_letters::list(&console.store, &console.log, Some(&stage)).await?;
        let selected: Vec<_> = letters
            .into_iter()
            .filter(|l| l.event_id == event_id)
            .collect();
        let done =
            crate::dead_letters::replay(&console.store, &console.log, selected, false).await?;
        Ok::<_, crate::Error>(done)
    }
    .await;
    match result {
        Ok(done) if done.is_empty() => view::not_found(Some(&session)),
        Ok(_) => {
            console.log.notify_appended();
            Redirect::to("/console/dead-letters?done=replayed").into_response()
        }
        Err(error) => crate::unavailable(&error),
    }
}
