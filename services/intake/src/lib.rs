//! kinlink intake: the HTTP API agencies send referrals to.
//!
//! `POST /v1/referrals` parses and checks a referral, turns it into a
//! `kinlink.v1.ReferralReceived` event and answers 202 only once that event is durable in the
//! log. Nothing is half-accepted: a referral with any failing field is refused whole with an
//! RFC 9457 problem listing every failing field.
//!
//! Layout: [`request`] (JSON wire shape, checks, conversion to the event), [`problem`]
//! (problem+json responses), this file (routes).

pub mod problem;
pub mod request;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kinlink_eventlog::{Envelope, EventLog, topics};
use serde::Serialize;

use crate::problem::Problem;

/// CloudEvents `source` of events intake emits.
pub const SOURCE: &str = "/kinlink/intake";

#[derive(Debug, Clone)]
struct IntakeState {
    log: EventLog,
    agency_id: String,
}

/// Adds intake to a process: the API routes only (intake consumes no topic).
pub fn install(
    process: &mut kinlink_runtime::Process,
) -> Result<Router, kinlink_runtime::process::TaskError> {
    Ok(router(process.log.clone(), &process.settings.intake))
}

/// The intake API routes.
pub fn router(log: EventLog, settings: &kinlink_runtime::settings::IntakeSettings) -> Router {
    Router::new()
        .route("/v1/referrals", post(post_referral))
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .with_state(IntakeState {
            log,
            agency_id: settings.default_agency.clone(),
        })
}

#[derive(Debug, Serialize)]
struct Accepted {
    referral_id: String,
    warnings: Vec<String>,
}

async fn post_referral(
    State(state): State<IntakeState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !is_json {
        return Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Send the referral as application/json.",
        )
        .into_response();
    }
    let request = match request::parse_body(&body) {
        Ok(request) => request,
        Err(field) => return Problem::invalid(vec![field]).into_response(),
    };
    let warnings = request::warnings(&request);
    let referral_id = uuid::Uuid::now_v7().to_string();
    let received_at = kinlink_store::now_millis();
    let event = match request::into_event(request, &referral_id, &state.agency_id, received_at) {
        Ok(event) => event,
        Err(errors) => return Problem::invalid(errors).into_response(),
    };
    let envelope = Envelope::new(
        kinlink_eventlog::envelope::derive_id(&referral_id, "received"),
        SOURCE,
        &referral_id,
        &referral_id,
        received_at,
        &event,
    );
    if let Err(error) = state
        .log
        .publish(topics::REFERRALS_RECEIVED, &envelope)
        .await
    {
        tracing::error!(%referral_id, %error, "Referral not accepted: the log did not take it.");
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "log-unavailable",
            "The referral was not recorded; nothing was accepted. Retry later.",
        )
        .into_response();
    }
    tracing::info!(%referral_id, dependants = event.dependants.len(), "Referral accepted.");
    (
        StatusCode::ACCEPTED,
        axum::Json(Accepted {
            referral_id,
            warnings,
        }),
    )
        .into_response()
}
