//! kinlink alerter: for every child on an enriched referral, finds the bodies running
//! children's services where the child lives or is found, and raises one alert per child per
//! body. Consumes `kinlink.referrals.enriched`, emits `kinlink.alerts.raised`.
//!
//! Layout: [`authorities`] (the register), [`routing`] (pure: child -> bodies), [`rules`]
//! (pure: priority, deadline), this file (the stage, recording each routing decision).

pub mod authorities;
pub mod routing;
pub mod rules;

use std::sync::Arc;

use kinlink_eventlog::{Output, Record, Stage, StageError, topics};
use kinlink_proto::v1::{self, RoutingBasis, SubjectRole};
use sqlx::AnyConnection;

use crate::authorities::AuthorityRegistry;

/// CloudEvents `source` of events the alerter emits.
pub const SOURCE: &str = "/kinlink/alerter";

/// Adds the alerter stage, with the shipped authority register, to a process.
pub fn install(
    process: &mut kinlink_runtime::Process,
) -> Result<axum::Router, kinlink_runtime::process::TaskError> {
    let registry = Arc::new(AuthorityRegistry::shipped()?);
    process.spawn_stage(Alerter::new(registry));
    Ok(axum::Router::new())
}

/// The alerter stage.
#[derive(Debug, Clone)]
pub struct Alerter {
    registry: Arc<AuthorityRegistry>,
}

impl Alerter {
    pub fn new(registry: Arc<AuthorityRegistry>) -> Self {
        Self { registry }
    }
}

impl Stage for Alerter {
    fn name(&self) -> &'static str {
        "alerter"
    }

    fn input_topics(&self) -> Vec<String> {
        vec![topics::REFERRALS_ENRICHED.to_owned()]
    }

    async fn handle(
        &self,
        conn: &mut AnyConnection,
        record: &Record,
    ) -> Result<Vec<Output>, StageError> {
        let enriched: v1::ReferralEnriched = record.envelope.decode()?;
        let raised_at = chrono::Utc::now();
        let priority = rules::priority(enriched.urgency);
        let deadline = rules::deadline(raised_at, priority);
        let mut outputs = Vec::new();
        let mut sequence = 0u32;
        for subject in enriched.subjects.iter().filter(|s| s.is_child) {
            let routes = routing::route_child(&subject.locations, &self.registry);
            let rule = if subject.role == SubjectRole::ReferralSubject as i32 {
                rules::RULE_CHILD_SUBJECT
            } else {
                rules::RULE_DEPENDENT_CHILD
            };
            for route in &routes {
                sequence += 1;
                let code = route
                    .authority
                    .as_ref()
                    .map(|a| a.gss_code.clone())
                    .unwrap_or_default();
                let other = routes
                    .iter()
                    .filter_map(|r| r.authority.as_ref())
                    .find(|a| a.gss_code != code)
                    .map(|a| a.gss_code.clone())
                    .unwrap_or_default();
                let discriminator = format!(
                    "alert/{}/{}",
                    subject.person_id,
                    if code.is_empty() { "triage" } else { &code }
                );
                let alert_id =
                    kinlink_eventlog::envelope::derive_id(&enriched.referral_id, &discriminator);
                let alert = v1::AlertRaised {
                    alert_id: alert_id.clone(),
                    referral_id: enriched.referral_id.clone(),
                    person_id: subject.person_id.clone(),
                    authority_code: code.clone(),
                    authority_name: route
                        .authority
                        .as_ref()
                        .map(|a| a.name.clone())
                        .unwrap_or_default(),
                    basis: route.basis as i32,
                    other_authority_code: other,
                    priority: priority as i32,
                    deadline: Some(kinlink_proto::timestamp_from_millis(
                        deadline.timestamp_millis(),
                    )),
                    rule: rule.to_owned(),
                    sequence,
                    routing_data_version: self.registry.version().to_owned(),
                    raised_at: Some(kinlink_proto::timestamp_from_millis(
                        raised_at.timestamp_millis(),
                    )),
                };
                record_decision(conn, &alert, route.basis).await?;
                tracing::info!(
                    referral_id = %alert.referral_id,
                    person_id = %alert.person_id,
                    alert_id = %alert_id,
                    authority = %code,
                    basis = ?route.basis,
                    "Alert raised."
                );
                let envelope = record.envelope.derive(
                    &discriminator,
                    SOURCE,
                    &alert_id,
                    &enriched.referral_id,
                    raised_at.timestamp_millis(),
                    &alert,
                );
                outputs.push(Output::new(topics::ALERTS_RAISED, envelope));
            }
        }
        Ok(outputs)
    }
}

async fn record_decision(
    conn: &mut AnyConnection,
    alert: &v1::AlertRaised,
    basis: RoutingBasis,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO routing_decisions (alert_id, referral_id, person_id, authority_code, basis, data_version, decided_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(&alert.alert_id)
    .bind(&alert.referral_id)
    .bind(&alert.person_id)
    .bind(&alert.authority_code)
    .bind(basis as i64)
    .bind(&alert.routing_data_version)
    .bind(kinlink_store::now_millis())
    .execute(conn)
    .await?;
    Ok(())
}
