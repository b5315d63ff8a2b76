//! kinlink notifier: delivers every alert to the authority's webhook and records each attempt.
//!
//! Parts, so a slow or failing authority never blocks the log:
//! - [`inbox::AlertInbox`], a stage on `kinlink.alerts.raised`, files each alert as a pending
//!   delivery with its escalation timers (in the stage's transaction, so an alert is never
//!   lost or filed twice);
//! - [`delivery::DeliveryWorker`] sends due deliveries (signed, Standard Webhooks), records
//!   every attempt in the delivery ledger, emits `AlertDelivered` / `AlertDeliveryFailed` to
//!   `kinlink.alerts.lifecycle`, and fires due escalations ([`escalation`]);
//! - [`authority_api`]: the authorities' inbox, acknowledgement, hand-off and resolution.
//!
//! Everything disclosed or decided is written to the hash-chained audit log.
//!
//! An attempt is recorded as in flight *before* the request is sent and its outcome after, so
//! a crash in between leads to one more attempt carrying the same `webhook-id` (the alert id),
//! which the receiver can drop. A retry is the only way an alert is sent twice.
//!
//! Tables owned here: `deliveries`, `delivery_attempts`, `endpoint_state` ([`delivery`]),
//! `alerts` ([`inbox`] files them, [`authority_api`] moves them, [`triage`] names the body of
//! one routed by hand) and `escalations` ([`escalation`]). State names
//! and transitions come from [`kinlink_domain::lifecycle`].
//!
//! Layout: [`policy`] (pure: outcome -> next step), [`signing`], [`webhook`] (HTTP),
//! [`directory`] (authority endpoints from settings), [`inbox`], [`delivery`], [`escalation`],
//! [`authority_api`].

pub mod authority_api;
pub mod channels;
pub mod delivery;
pub mod directory;
pub mod escalation;
pub mod inbox;
pub mod policy;
pub mod signing;
pub mod triage;
pub mod webhook;

use std::sync::Arc;

pub use delivery::DeliveryWorker;
pub use inbox::AlertInbox;

/// CloudEvents `source` of events the notifier emits.
pub const SOURCE: &str = "/kinlink/notifier";

/// Errors of the notifier.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Log(#[from] kinlink_eventlog::Error),
    #[error(transparent)]
    Store(#[from] kinlink_store::Error),
    #[error("stored alert {alert_id} does not decode")]
    CorruptAlert { alert_id: String },
    #[error("could not build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error(transparent)]
    Directory(#[from] directory::DirectoryError),
    /// The shipped register of bodies could not be read.
    #[error("reference data: {0}")]
    Reference(String),
    /// A message channel (GOV.UK Notify, SMTP) is misconfigured; names the setting.
    #[error("{setting}: {reason}")]
    Channel {
        setting: &'static str,
        reason: String,
    },
}

/// Decodes an alert as stored in `deliveries.alert` and `alerts.alert`.
pub fn stored_alert(alert_id: &str, bytes: &[u8]) -> Result<kinlink_proto::v1::AlertRaised, Error> {
    use prost::Message;
    kinlink_proto::v1::AlertRaised::decode(bytes).map_err(|_| Error::CorruptAlert {
        alert_id: alert_id.to_owned(),
    })
}

/// Adds the notifier to a process that may share its store with other notifiers.
pub fn install(
    process: &mut kinlink_runtime::Process,
) -> Result<axum::Router, kinlink_runtime::process::TaskError> {
    Ok(spawn(process, false)?)
}

/// Adds the notifier to a process: the alert inbox stage, the delivery worker and the
/// authority API (returned). `sole_notifier` is true when no other process delivers from the
/// same store (the embedded default): claims left by a crash are then released at once
/// instead of after the lease.
pub fn spawn(
    process: &mut kinlink_runtime::Process,
    sole_notifier: bool,
) -> Result<axum::Router, Error> {
    let settings = &process.settings.notifier;
    let directory = Arc::new(directory::Directory::from_settings(settings)?);
    let worker = DeliveryWorker::new(
        process.store.clone(),
        process.log.clone(),
        directory.clone(),
        settings,
        &mut process.registry,
    )?;
    let api = authority_api::router(
        process.store.clone(),
        process.log.clone(),
        settings.public_base_url.clone(),
    );
    let api = api.merge(triage::router(
        process.store.clone(),
        directory.clone(),
        process.settings.ops.api_token.clone(),
    ));
    let messages =
        channels::MessageWorker::new(process.store.clone(), directory.clone(), settings)?;
    process.spawn_stage(AlertInbox::new(directory));
    process.add_openapi(authority_api::openapi());
    process.add_openapi(triage::openapi());
    process.registry.register(
        "kinlink_notifier_acknowledgement_seconds",
        "Time from an alert being filed to its acknowledgement",
        authority_api::ACKNOWLEDGEMENT_SECONDS.clone(),
    );
    process.registry.register(
        "kinlink_notifier_messages",
        "Email and text messages to authorities' duty teams, by channel and outcome",
        channels::MESSAGES.clone(),
    );
    let messages_shutdown = process.shutdown.clone();
    process.spawn("messages", async move {
        messages.run(messages_shutdown).await.map_err(Into::into)
    });
    let shutdown = process.shutdown.clone();
    let store = process.store.clone();
    process.spawn("delivery", async move {
        let filled = inbox::backfill_summaries(&store).await?;
        if filled > 0 {
            tracing::info!(
                filled,
                "Filled the inbox columns of alerts filed before them."
            );
        }
        if sole_notifier {
            let released = worker.release_claims().await?;
            if released > 0 {
                tracing::info!(
                    released,
                    "Released delivery claims left by the previous run."
                );
            }
        }
        worker.run(shutdown).await.map_err(Into::into)
    });
    Ok(api)
}
