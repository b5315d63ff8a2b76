//! The intake routes and their OpenAPI description (generated from this code).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kinlink_eventlog::{EventLog, topics};
use kinlink_proto::v1;
use kinlink_runtime::http::AGENCY_SECURITY;
use kinlink_store::Store;
use prost::Message;
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;

use crate::accept::{self, StoredResponse};
use crate::followup::FollowUp;
use crate::problem::{self, Problem};
use crate::request::{self, DependantRequest, FieldError, ReferralRequest, Urgency};
use crate::status::{self, ReferralStatus};
use crate::{auth, followup};

#[derive(Debug, Clone)]
struct IntakeState {
    log: EventLog,
    store: Store,
}

/// The intake API routes.
pub fn router(
    log: EventLog,
    store: Store,
    settings: &kinlink_runtime::settings::IntakeSettings,
) -> Router {
    Router::new()
        .route("/v1/referrals", post(post_referral))
        .route("/v1/referrals/{id}", get(get_referral))
        .route("/v1/referrals/{id}/updates", post(post_update))
        .route("/v1/events", post(post_event))
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .with_state(IntakeState { log, store })
}

/// 202 answer to an accepted referral or update.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub referral_id: String,
    pub version: u32,
    /// Data-quality warnings: accepted, but linking or routing may suffer.
    pub warnings: Vec<String>,
}

/// 202 answer to a follow-up event.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventAccepted {
    pub event_id: String,
}

/// A new version of a referral.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    /// The version this update is based on; another version is a conflict (409).
    pub expected_version: u32,
    #[serde(default)]
    pub urgency: Option<Urgency>,
    #[serde(default)]
    pub pregnant: Option<bool>,
    /// Replaces the free-text concern.
    #[serde(default)]
    pub concern: Option<String>,
    /// Dependants not listed before.
    #[serde(default)]
    pub add_dependants: Vec<DependantRequest>,
    /// Corrected locations (a wrong or changed address): routing follows, and a body no longer
    /// responsible is told its alert was re-routed.
    #[serde(default)]
    pub correct_locations: Vec<LocationCorrection>,
}

/// New locations for one person on the referral, replacing the old ones.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocationCorrection {
    /// The dependant's index on the referral; absent for the referral's subject.
    #[serde(default)]
    pub dependant_index: Option<u32>,
    pub locations: Vec<request::LocationRequest>,
}

fn respond(stored: &StoredResponse, location: Option<String>) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::ACCEPTED);
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        stored.body.clone(),
    )
        .into_response();
    if let Some(location) = location.and_then(|l| header::HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// The `Idempotency-Key` header, if any: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or_default();
    if key.is_empty() || key.len() > 255 || !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err(problem::invalid(vec![FieldError {
            pointer: "header:Idempotency-Key".into(),
            reason: "must be 1 to 255 visible ASCII characters".into(),
        }]));
    }
    Ok(Some(key.to_owned()))
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Submit a referral.
#[utoipa::path(
    post,
    path = "/v1/referrals",
    tag = "referrals",
    request_body(content = ReferralRequest, description = "JSON; or the same as kinlink.v1.ReferralSubmission with content type application/x-protobuf"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays with the same key and body return the original response")),
    responses(
        (status = 202, description = "Durable in the log", body = Accepted),
        (status = 400, description = "Every failing field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Key or external reference reused with a different body", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON or protobuf", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Nothing accepted; retry", body = Problem, content_type = "application/problem+json"),
    ),
    security(("agency_token" = []))
)]
async fn post_referral(
    State(state): State<IntakeState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match submit(&state, &headers, &body).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    }
}

async fn submit(
    state: &IntakeState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Problem> {
    let agency = auth::agency(&state.store, headers).await?;
    let key = idempotency_key(headers)?;
    let kind = content_type(headers);
    let (parsed, wire_errors) = if kind.starts_with("application/json") {
        (
            request::parse_body(body).map_err(|field| problem::invalid(vec![field]))?,
            Vec::new(),
        )
    } else if kind.starts_with("application/x-protobuf") || kind.starts_with("application/protobuf")
    {
        let submission = v1::ReferralSubmission::decode(body).map_err(|_| {
            problem::invalid(vec![FieldError {
                pointer: String::new(),
                reason: "body is not a kinlink.v1.ReferralSubmission".into(),
            }])
        })?;
        ReferralRequest::from_submission(submission)
    } else {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Send application/json or application/x-protobuf.",
        ));
    };
    let hash = accept::body_hash(body);
    let keys = accept::replay_keys(key.as_deref(), &parsed.external_reference);
    if let Some(stored) = accept::replay(&state.store, &state.log, &agency.id, &keys, &hash).await?
    {
        return Ok(respond(&stored, None));
    }
    let mut warnings = request::warnings(&parsed);
    let referral_id = uuid::Uuid::now_v7().to_string();
    let referral = match request::into_event(
        parsed,
        &referral_id,
        &agency.id,
        kinlink_store::now_millis(),
    ) {
        Ok(referral) if wire_errors.is_empty() => referral,
        Ok(_) => return Err(problem::invalid(wire_errors)),
        Err(more) => {
            return Err(problem::invalid(
                wire_errors.into_iter().chain(more).collect(),
            ));
        }
    };
    warnings.extend(request::age_warnings(&referral));
    let body = serde_json::to_string(&Accepted {
        referral_id: referral_id.clone(),
        version: 1,
        warnings,
    })
    .unwrap_or_default();
    let stored = StoredResponse { status: 202, body };
    accept::record_and_publish(&state.store, &state.log, &referral, &hash, &keys, &stored).await?;
    tracing::info!(%referral_id, agency = %agency.id, dependants = referral.dependants.len(), "Referral accepted.");
    Ok(respond(
        &stored,
        Some(format!("/v1/referrals/{referral_id}")),
    ))
}

/// What the pipeline did with a referral (submitting agency only).
#[utoipa::path(
    get,
    path = "/v1/referrals/{id}",
    tag = "referrals",
    params(("id" = String, Path, description = "Referral id")),
    responses(
        (status = 200, body = ReferralStatus),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such referral for this agency", body = Problem, content_type = "application/problem+json"),
    ),
    security(("agency_token" = []))
)]
async fn get_referral(
    State(state): State<IntakeState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        let agency = auth::agency(&state.store, &headers).await?;
        let (referral, referral_state) = accept::load(&state.store, &agency.id, &id)
            .await?
            .ok_or_else(|| Problem::not_found("referral"))?;
        let unavailable = |e: sqlx::Error| {
            tracing::error!(error = %e, "Status query failed.");
            problem::unavailable()
        };
        Ok::<_, Problem>(ReferralStatus {
            referral_id: referral.referral_id.clone(),
            state: referral_state,
            version: referral.version,
            anonymous_duty_to_notify: referral.anonymous_duty_to_notify,
            persons: status::persons(&state.store, &id)
                .await
                .map_err(unavailable)?,
            alerts: status::alerts(&state.store, &id)
                .await
                .map_err(unavailable)?,
            handoffs: status::handoffs(&state.store, &id)
                .await
                .map_err(unavailable)?,
        })
    }
    .await;
    match result {
        Ok(status) => axum::Json(status).into_response(),
        Err(problem) => problem.into_response(),
    }
}

/// Publish a new version of a referral.
#[utoipa::path(
    post,
    path = "/v1/referrals/{id}/updates",
    tag = "referrals",
    params(("id" = String, Path, description = "Referral id"), ("Idempotency-Key" = Option<String>, Header)),
    request_body = UpdateRequest,
    responses(
        (status = 202, body = Accepted),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "expected_version is not the current version", body = Problem, content_type = "application/problem+json"),
    ),
    security(("agency_token" = []))
)]
async fn post_update(
    State(state): State<IntakeState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let result = async {
        let agency = auth::agency(&state.store, &headers).await?;
        let key = idempotency_key(&headers)?;
        let update: UpdateRequest =
            request::parse_json(&body).map_err(|field| problem::invalid(vec![field]))?;
        let (mut referral, _) = accept::load(&state.store, &agency.id, &id)
            .await?
            .ok_or_else(|| Problem::not_found("referral"))?;
        let hash = accept::body_hash(&body);
        let keys = accept::replay_keys(key.as_deref(), "")
            .into_iter()
            .map(|k| format!("{id}/{k}"))
            .collect::<Vec<_>>();
        if let Some(stored) =
            accept::replay(&state.store, &state.log, &agency.id, &keys, &hash).await?
        {
            return Ok(respond(&stored, None));
        }
        if update.expected_version != referral.version {
            return Err(Problem::conflict(&format!(
                "the referral is at version {}",
                referral.version
            )));
        }
        if update
            .concern
            .as_ref()
            .is_some_and(|c| c.chars().count() > 20_000)
        {
            return Err(problem::invalid(vec![FieldError {
                pointer: "/concern".into(),
                reason: "longer than 20000 characters".into(),
            }]));
        }
        let added = request::convert_dependants(update.add_dependants).map_err(problem::invalid)?;
        let mut errors = Vec::new();
        for (n, correction) in update.correct_locations.into_iter().enumerate() {
            let locations = request::convert_locations(
                correction.locations,
                &format!("/correct_locations/{n}/locations"),
                &mut errors,
            );
            let person = match correction.dependant_index {
                None if referral.anonymous_duty_to_notify => {
                    errors.push(FieldError {
                        pointer: format!("/correct_locations/{n}"),
                        reason: "the subject of an anonymous Duty-to-Notify report has no locations to correct".into(),
                    });
                    None
                }
                None => referral.subject.as_mut(),
                Some(index) => {
                    let found = usize::try_from(index)
                        .ok()
                        .and_then(|i| referral.dependants.get_mut(i))
                        .and_then(|d| d.person.as_mut());
                    if found.is_none() {
                        errors.push(FieldError {
                            pointer: format!("/correct_locations/{n}/dependant_index"),
                            reason: "no dependant with this index on the referral".into(),
                        });
                    }
                    found
                }
            };
            if let Some(person) = person {
                person.locations = locations;
            }
        }
        if !errors.is_empty() {
            return Err(problem::invalid(errors));
        }
        referral.dependants.extend(added);
        if let Some(urgency) = update.urgency {
            referral.urgency = urgency.into();
        }
        if let Some(pregnant) = update.pregnant {
            referral.pregnant = pregnant;
        }
        if let Some(concern) = update.concern {
            referral.concern = concern;
        }
        referral.version += 1;
        let body = serde_json::to_string(&Accepted {
            referral_id: id.clone(),
            version: referral.version,
            warnings: Vec::new(),
        })
        .unwrap_or_default();
        let stored = StoredResponse { status: 202, body };
        accept::record_and_publish(&state.store, &state.log, &referral, &hash, &keys, &stored)
            .await?;
        tracing::info!(referral_id = %id, version = referral.version, "Referral updated.");
        Ok::<_, Problem>(respond(&stored, Some(format!("/v1/referrals/{id}"))))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Report a follow-up on a referral.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "referrals",
    params(("Idempotency-Key" = Option<String>, Header)),
    request_body = FollowUp,
    responses(
        (status = 202, body = EventAccepted),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such referral for this agency", body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ),
    security(("agency_token" = []))
)]
async fn post_event(State(state): State<IntakeState>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let agency = auth::agency(&state.store, &headers).await?;
        let key = idempotency_key(&headers)?;
        let follow_up: FollowUp = request::parse_json(&body).map_err(|field| problem::invalid(vec![field]))?;
        let referral_id = follow_up.referral_id().to_owned();
        accept::load(&state.store, &agency.id, &referral_id).await?.ok_or_else(|| Problem::not_found("referral"))?;
        let hash = accept::body_hash(&body);
        let keys = accept::replay_keys(key.as_deref(), "").into_iter().map(|k| format!("events/{k}")).collect::<Vec<_>>();
        if let Some(stored) = accept::replay(&state.store, &state.log, &agency.id, &keys, &hash).await? {
            return Ok(respond(&stored, None));
        }
        let request_id = key.clone().unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let envelope = followup::into_envelope(follow_up, &agency.id, &format!("{}/{request_id}", agency.id), kinlink_store::now_millis())
            .map_err(|field| problem::invalid(vec![field]))?;
        state.log.publish(topics::REFERRAL_FOLLOWUPS, &envelope).await.map_err(|e| {
            tracing::error!(error = %e, "Follow-up not accepted: the log did not take it.");
            problem::unavailable()
        })?;
        let stored = StoredResponse {
            status: 202,
            body: serde_json::to_string(&EventAccepted { event_id: envelope.id.clone() }).unwrap_or_default(),
        };
        for k in &keys {
            let _ = sqlx::query(
                "INSERT INTO idempotency_keys (agency_id, idem_key, request_hash, status, response, created_at_ms) \
                 VALUES ($1, $2, $3, 202, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(&agency.id)
            .bind(k)
            .bind(&hash)
            .bind(&stored.body)
            .bind(kinlink_store::now_millis())
            .execute(state.store.pool())
            .await;
        }
        tracing::info!(%referral_id, event_type = %envelope.event_type, "Follow-up accepted.");
        Ok::<_, Problem>(respond(&stored, None))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

#[derive(OpenApi)]
#[openapi(
    info(title = "kinlink", description = "Referral intake for agencies, alerts for children's services, operations."),
    paths(post_referral, get_referral, post_update, post_event),
    modifiers(&AGENCY_SECURITY),
    tags((name = "referrals", description = "Agency integration"))
)]
struct IntakeApi;

/// The intake part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    IntakeApi::openapi()
}
