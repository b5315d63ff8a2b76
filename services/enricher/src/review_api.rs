//! The linkage review queue over HTTP, for operators' integrations (the console and
//! `kinlink review` do the same): `GET /v1/reviews` lists open tasks (ids, probabilities and
//! per-field evidence levels and weights, never names or dates), and
//! `POST /v1/reviews/{task_id}/decision` decides one. Protected by the operators' bearer token
//! (`ops.api_token`); without one configured both answer 404.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kinlink_eventlog::EventLog;
use kinlink_runtime::http::{OPERATOR_SECURITY, Problem};
use kinlink_store::Store;
use serde::Deserialize;

use crate::Error;
use crate::review::{self, ReviewTask, Verdict};

#[derive(Debug, Clone)]
struct ReviewState {
    store: Store,
    log: EventLog,
    token: Option<String>,
}

pub fn router(store: Store, log: EventLog, token: Option<String>) -> Router {
    Router::new()
        .route("/v1/reviews", get(list))
        .route("/v1/reviews/{task_id}/decision", post(decide))
        .with_state(ReviewState { store, log, token })
}

/// The refusal, unless the request carries the operators' token.
fn refused(state: &ReviewState, headers: &HeaderMap) -> Option<Response> {
    let Some(expected) = state.token.as_deref() else {
        return Some(Problem::not_found("resource").into_response());
    };
    kinlink_runtime::http::check_configured(headers, expected)
        .err()
        .map(IntoResponse::into_response)
}

/// Open linkage review tasks, oldest first (operator token).
#[utoipa::path(get, path = "/v1/reviews", tag = "operations",
    responses((status = 200, body = Vec<ReviewTask>), (status = 401), (status = 404, description = "No operator token configured")),
    security(("operator_token" = [])))]
async fn list(State(state): State<ReviewState>, headers: HeaderMap) -> Response {
    if let Some(response) = refused(&state, &headers) {
        return response;
    }
    let tasks = async {
        let mut conn = state.store.pool().acquire().await?;
        review::list(&mut conn, false).await
    }
    .await;
    match tasks {
        Ok(tasks) => Json(tasks).into_response(),
        Err(error) => Problem::storage(error).into_response(),
    }
}

/// A reviewer's decision.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    /// `same` (merge the two persons) or `different` (close the task, merge nothing).
    verdict: String,
    /// Who decided, recorded in the audit log.
    reviewer: String,
}

/// Decide an open review task (operator token).
#[utoipa::path(post, path = "/v1/reviews/{task_id}/decision", tag = "operations",
    params(("task_id" = String, Path)),
    request_body = DecisionBody,
    responses((status = 200), (status = 400), (status = 401),
        (status = 404, description = "No operator token configured, or no such task"),
        (status = 409, description = "The task was already decided")),
    security(("operator_token" = [])))]
async fn decide(
    State(state): State<ReviewState>,
    Path(task_id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(response) = refused(&state, &headers) {
        return response;
    }
    let invalid = |pointer: &str, reason: &str| {
        Problem::invalid_field(
            "Nothing was decided; fix the listed field.",
            pointer,
            reason,
        )
        .into_response()
    };
    let Ok(request) = serde_json::from_slice::<DecisionBody>(&body) else {
        return invalid("", "body must be {\"verdict\": ..., \"reviewer\": ...}");
    };
    let verdict = match request.verdict.as_str() {
        "same" => Verdict::Same,
        "different" => Verdict::Different,
        _ => return invalid("/verdict", "verdict must be same or different"),
    };
    if request.reviewer.trim().is_empty() || request.reviewer.len() > 64 {
        return invalid(
            "/reviewer",
            "a reviewer id of 1 to 64 characters is required",
        );
    }
    let result = async {
        let mut tx = state.store.begin().await?;
        let merged =
            review::decide(&mut tx, &state.log, &task_id, verdict, &request.reviewer).await?;
        tx.commit().await?;
        Ok::<_, Error>(merged)
    }
    .await;
    match result {
        Ok(merged) => {
            state.log.notify_appended();
            Json(serde_json::json!({
                "task_id": task_id,
                "verdict": request.verdict,
                "surviving_person_id": merged.as_ref().map(|m| m.surviving_person_id.clone()),
                "merged_person_id": merged.as_ref().map(|m| m.merged_person_id.clone()),
            }))
            .into_response()
        }
        Err(Error::NotFound { .. }) => Problem::not_found("review task").into_response(),
        Err(Error::Conflict(detail)) => Problem::conflict(&detail).into_response(),
        Err(error) => Problem::storage(error).into_response(),
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(list, decide), modifiers(&OPERATOR_SECURITY), tags((name = "operations", description = "On-call operators")))]
struct ReviewApi;

/// The review part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <ReviewApi as utoipa::OpenApi>::openapi()
}
