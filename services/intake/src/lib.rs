//! kinlink intake: the HTTP API agencies send referrals to.
//!
//! - `POST /v1/referrals` (JSON or `application/x-protobuf`): checks a referral, records it
//!   and answers 202 only once its `ReferralReceived` event is durable in the log. A referral
//!   with any failing field is refused whole with an RFC 9457 problem listing every field.
//!   Replays (same `Idempotency-Key`, or same external reference) return the original answer.
//! - `GET /v1/referrals/{id}`: what the pipeline did with it, for the submitting agency only.
//! - `POST /v1/referrals/{id}/updates`: a new version of the referral.
//! - `POST /v1/events`: follow-ups (NRM decisions, age assessments, missing/found episodes,
//!   withdrawal).
//!
//! Every call carries an agency API token; the agency on every event comes from it.
//!
//! Layout: [`request`] (wire shape, checks, conversion), [`accept`] (durable, idempotent
//! acceptance), [`followup`] (follow-up events), [`status`], [`auth`], [`problem`], [`api`]
//! (routes and the OpenAPI document), [`submissions`] (the streaming intake stage).

pub mod accept;
pub mod api;
pub mod auth;
pub mod followup;
pub mod problem;
pub mod request;
pub mod status;
pub mod submissions;

pub use api::{openapi, router};

/// CloudEvents `source` of events intake emits.
pub const SOURCE: &str = "/kinlink/intake";

/// Adds intake to a process: the API routes and the streaming-submissions stage.
pub fn install(
    process: &mut kinlink_runtime::Process,
) -> Result<axum::Router, kinlink_runtime::process::TaskError> {
    process.spawn_stage(submissions::Submissions);
    process.add_openapi(openapi());
    Ok(router(
        process.log.clone(),
        process.store.clone(),
        &process.settings.intake,
    ))
}
