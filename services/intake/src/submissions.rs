//! Streaming intake: agencies that integrate by producing to `kinlink.intake.submissions`
//! send `kinlink.v1.ReferralSubmission` in CloudEvents binary mode, with `source` set to
//! `/agencies/<agency id>` (the broker's ACLs decide who may produce which source). Valid
//! submissions take the same path as HTTP ones; invalid ones go to the dead-letter topic
//! with every failing field in the reason.

use kinlink_eventlog::{Output, Record, Stage, StageError, topics};
use kinlink_proto::v1;
use prost::Message;
use sqlx::AnyConnection;

use crate::request;

/// The streaming-submissions stage.
#[derive(Debug, Default, Clone)]
pub struct Submissions;

impl Stage for Submissions {
    fn name(&self) -> &'static str {
        "intake"
    }

    async fn handle(
        &self,
        conn: &mut AnyConnection,
        record: &Record,
    ) -> Result<Vec<Output>, StageError> {
        let agency = record
            .envelope
            .source
            .strip_prefix("/agencies/")
            .filter(|a| !a.is_empty() && a.len() <= 64)
            .ok_or_else(|| StageError::Rejected("source must be /agencies/<agency id>".into()))?
            .to_owned();
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
