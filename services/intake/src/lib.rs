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
//! (routes and the OpenAPI document), [`submissions`] (the streaming intake stage),
//! [`sweeper`] (publishes referrals left pending on the Kafka shape).

pub mod accept;
pub mod api;
pub mod auth;
pub mod followup;
pub mod problem;
pub mod request;
pub mod status;
pub mod submissions;
pub mod sweeper;

pub use api::{openapi, router};

/// Errors of intake's background work (requests answer with a [`problem::Problem`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Log(#[from] kinlink_eventlog::Error),
}

/// CloudEvents `source` of events intake emits.
pub const SOURCE: &str = "/kinlink/intake";

/// Adds intake to a process: the API routes and the streaming-submissions stage.
pub fn install(
    process: &mut kinlink_runtime::Process,
) -> Result<axum::Router, kinlink_runtime::process::TaskError> {
    let submissions = submissions::Submissions::from_settings(&process.settings.intake);
    // Nothing to consume when the shared topic is off and no agency has its own.
    if !kinlink_eventlog::Stage::input_topics(&submissions).is_empty() {
        process.spawn_stage(submissions);
    }
    process.add_openapi(openapi());
    process.registry.register(
        "kinlink_intake_oldest_pending_seconds",
        "Age of the oldest referral recorded but not yet published to the log",
        sweeper::OLDEST_PENDING_SECONDS.clone(),
    );
    // Only the Kafka shape records a referral before publishing it.
    if matches!(process.log, kinlink_eventlog::EventLog::Kafka(_)) {
        let (store, log, shutdown) = (
            process.store.clone(),
            process.log.clone(),
            process.shutdown.clone(),
        );
        process.spawn("intake-sweeper", async move {
            sweeper::run(store, log, shutdown).await;
            Ok(())
        });
    }
    Ok(router(
        process.log.clone(),
        process.store.clone(),
        &process.settings.intake,
    ))
}
