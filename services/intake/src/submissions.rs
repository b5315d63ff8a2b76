//! Streaming intake: agencies that integrate by producing `kinlink.v1.ReferralSubmission` in
//! CloudEvents binary mode, with `source` set to `/agencies/<agency id>`.
//!
//! Who produced an event cannot be read from the event itself, so where the agency comes from
//! depends on the topic:
//! - `kinlink.intake.submissions.<agency id>`, an agency's own topic (`own_submissions_topic`
//!   in its registration): only that agency's Kafka principal may write it (broker ACLs), so
//!   the topic names the agency, and a `source` naming anyone else is refused;
//! - the shared `kinlink.intake.submissions`: the `source` names the agency, which is only as
//!   trustworthy as the ACLs on who may write the topic at all. An agency with its own topic
//!   is refused here, so a producer on the shared topic cannot speak for it.
//!
//! Valid submissions take the same path as HTTP ones; invalid ones go to the dead-letter topic
//! with every failing field in the reason.

use std::collections::BTreeSet;

use kinlink_eventlog::{Output, Record, Stage, StageError, topics};
use kinlink_proto::v1;
use prost::Message;
use sqlx::AnyConnection;

use crate::request;

/// The streaming-submissions stage.
#[derive(Debug, Clone)]
pub struct Submissions {
    /// Consume the shared topic (`intake.shared_submissions_topic`).
    shared: bool,
    /// Agencies with their own topic.
    own_topic: BTreeSet<String>,
}

impl Submissions {
    /// The stage as `[intake]` settings configure it (the service and `ops replay` alike).
    pub fn from_settings(settings: &kinlink_runtime::settings::IntakeSettings) -> Self {
        Self::new(
            settings.shared_submissions_topic,
            settings.agencies_with_own_topic().map(str::to_owned),
        )
    }

    pub fn new(shared: bool, own_topic: impl IntoIterator<Item = String>) -> Self {
        Self {
            shared,
            own_topic: own_topic.into_iter().collect(),
        }
    }

    /// The agency a submission on `topic` with CloudEvents `source` speaks for, or why it is
    /// refused (agency ids only: they are not personal data).
    pub fn agency_of(&self, topic: &str, source: &str) -> Result<String, StageError> {
        let claimed = source
            .strip_prefix("/agencies/")
            .filter(|a| !a.is_empty() && a.len() <= 64)
            .ok_or_else(|| StageError::Rejected("source must be /agencies/<agency id>".into()))?;
        match topics::agency_of_submissions_topic(topic) {
            Some(owner) if owner == claimed => Ok(owner.to_owned()),
            Some(owner) => Err(StageError::Rejected(format!(
                "source names agency {claimed} on the submissions topic of agency {owner}"
            ))),
            None if self.own_topic.contains(claimed) => Err(StageError::Rejected(format!(
                "agency {claimed} submits on its own topic {}, not the shared one",
                topics::agency_submissions(claimed)
            ))),
            None => Ok(claimed.to_owned()),
        }
    }
}

impl Stage for Submissions {
    fn name(&self) -> &'static str {
        "intake"
    }

    fn input_topics(&self) -> Vec<String> {
        let shared = self.shared.then(|| topics::INTAKE_SUBMISSIONS.to_owned());
        shared
            .into_iter()
            .chain(self.own_topic.iter().map(|a| topics::agency_submissions(a)))
            .collect()
    }

    async fn handle(
        &self,
        conn: &mut AnyConnection,
        record: &Record,
    ) -> Result<Vec<Output>, StageError> {
        let agency = self.agency_of(&record.topic, &record.envelope.source)?;
        let submission: v1::ReferralSubmission = record.envelope.decode()?;
        let describe = |errors: Vec<request::FieldError>| {
            StageError::Rejected(
                errors
                    .iter()
                    .map(|e| format!("{}: {}", e.pointer, e.reason))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        };
        // The referral id is derived from the submission's event id: a redelivered
        // submission becomes the same referral.
        let referral_id = kinlink_eventlog::envelope::derive_id(&record.envelope.id, "referral");
        let now = kinlink_store::now_millis();
        let referral = request::submission_into_event(submission, &referral_id, &agency, now)
            .map_err(describe)?;
        sqlx::query(
            "INSERT INTO intake_referrals (referral_id, agency_id, external_reference, request_hash, version, state, \
             received_at_ms, referral) VALUES ($1, $2, $3, $4, 1, 'accepted', $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(&referral.referral_id)
        .bind(&agency)
        .bind(&referral.external_reference)
        .bind(crate::accept::body_hash(&record.envelope.data))
        .bind(now)
        .bind(referral.encode_to_vec())
        .execute(conn)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StageError::Rejected("external_reference already used by this agency".into())
            }
            other => StageError::from(other),
        })?;
        tracing::info!(referral_id = %referral.referral_id, agency = %agency, "Streamed referral accepted.");
        Ok(vec![Output::new(
            topics::REFERRALS_RECEIVED,
            crate::accept::envelope(&referral),
        )])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(result: Result<String, StageError>) -> String {
        match result {
            Err(StageError::Rejected(reason)) => reason,
            other => format!("not refused: {other:?}"),
        }
    }

    #[test]
    fn an_agencys_own_topic_names_the_agency_and_the_shared_topic_cannot_speak_for_it() {
        let stage = Submissions::new(true, ["met-police".to_owned()]);
        let own = topics::agency_submissions("met-police");
        assert_eq!(
            stage.input_topics(),
            vec![topics::INTAKE_SUBMISSIONS.to_owned(), own.clone()]
        );
        assert_eq!(
            stage
                .agency_of(&own, "/agencies/met-police")
                .ok()
                .as_deref(),
            Some("met-police")
        );
        let reason = refused(stage.agency_of(&own, "/agencies/kent-police"));
        assert!(
            reason.contains("agency kent-police on the submissions topic of agency met-police"),
            "{reason}"
        );
        let reason = refused(stage.agency_of(topics::INTAKE_SUBMISSIONS, "/agencies/met-police"));
        assert!(
            reason.contains("its own topic kinlink.intake.submissions.met-police"),
            "{reason}"
        );
        // An agency without its own topic is still taken at its word on the shared topic.
        assert_eq!(
            stage
                .agency_of(topics::INTAKE_SUBMISSIONS, "/agencies/kent-police")
                .ok()
                .as_deref(),
            Some("kent-police")
        );
        assert!(refused(stage.agency_of(&own, "/somewhere-else")).contains("source must be"));
        // Shared topic off: only the agencies' own topics are consumed.
        let strict = Submissions::new(false, ["met-police".to_owned()]);
        assert_eq!(strict.input_topics(), vec![own]);
    }
}
