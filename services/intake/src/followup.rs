//! Follow-up events on a referral: NRM decisions, age assessments, missing and found
//! episodes, withdrawal. Each names the referral and, where it concerns one person, which
//! (`subject`, or a dependant by index, or a person id from the referral's status).

use chrono::{DateTime, Utc};
use kinlink_eventlog::Envelope;
use kinlink_proto::v1;
use serde::Deserialize;

use crate::request::{DateOfBirthRequest, FieldError, LocationRequest};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubjectSelector {
    #[serde(default)]
    pub referral_subject: bool,
    #[serde(default)]
    pub dependant_index: Option<u32>,
    #[serde(default)]
    pub person_id: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NrmStage {
    ReasonableGrounds,
    ConclusiveGrounds,
}

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NrmOutcome {
    Positive,
    Negative,
}

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgeOutcome {
    Child,
    Adult,
}

/// A follow-up event, by `type`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FollowUp {
    NrmDecision {
        referral_id: String,
        subject: SubjectSelector,
        stage: NrmStage,
        outcome: NrmOutcome,
        decided_at: DateTime<Utc>,
    },
    AgeAssessment {
        referral_id: String,
        subject: SubjectSelector,
        outcome: AgeOutcome,
        #[serde(default)]
        assessed_date_of_birth: Option<DateOfBirthRequest>,
        assessed_at: DateTime<Utc>,
    },
    MissingEpisode {
        referral_id: String,
        subject: SubjectSelector,
        missing_since: DateTime<Utc>,
        #[serde(default)]
        last_seen: Option<LocationRequest>,
    },
    FoundEpisode {
        referral_id: String,
        subject: SubjectSelector,
        found_at: DateTime<Utc>,
        #[serde(default)]
        found_location: Option<LocationRequest>,
    },
    Withdrawal {
        referral_id: String,
        reason_code: String,
    },
}

impl FollowUp {
    pub fn referral_id(&self) -> &str {
        match self {
            FollowUp::NrmDecision { referral_id, .. }
            | FollowUp::AgeAssessment { referral_id, .. }
            | FollowUp::MissingEpisode { referral_id, .. }
            | FollowUp::FoundEpisode { referral_id, .. }
            | FollowUp::Withdrawal { referral_id, .. } => referral_id,
        }
    }
}

fn ts(at: &DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(kinlink_proto::timestamp_from_millis(at.timestamp_millis()))
}

fn subject_ref(selector: SubjectSelector) -> Result<v1::SubjectRef, FieldError> {
    use v1::subject_ref::Target;
    let chosen = usize::from(selector.referral_subject)
        + usize::from(selector.dependant_index.is_some())
        + usize::from(selector.person_id.is_some());
    if chosen != 1 {
        return Err(FieldError {
            pointer: "/subject".into(),
            reason: "give exactly one of referral_subject, dependant_index or person_id".into(),
        });
    }
    let target = match (selector.dependant_index, selector.person_id) {
        (Some(index), _) => Target::DependantIndex(index),
        (_, Some(person)) => Target::PersonId(person),
        _ => Target::ReferralSubject(true),
    };
    Ok(v1::SubjectRef {
        target: Some(target),
    })
}

fn location(l: LocationRequest) -> v1::Location {
    v1::Location {
        role: l.role.into(),
        postcode: l.postcode.trim().to_owned(),
        authority_code: l.authority_code.trim().to_ascii_uppercase(),
        overseas: l.overseas,
        no_fixed_abode: l.no_fixed_abode,
    }
}

/// The event for a follow-up, with an id derived from `request_id` (stable for replays).
pub fn into_envelope(
    follow_up: FollowUp,
    agency_id: &str,
    request_id: &str,
    now_ms: i64,
) -> Result<Envelope, FieldError> {
    let id = kinlink_eventlog::envelope::derive_id(request_id, "follow-up");
    let referral_id = follow_up.referral_id().to_owned();
    // Every follow-up is keyed by its referral, so it stays in order with the referral's events.
    fn envelope<M: prost::Message + prost::Name>(
        id: &str,
        referral_id: &str,
        now_ms: i64,
        event: &M,
    ) -> Envelope {
        Envelope::new(
            id.to_owned(),
            crate::SOURCE,
            referral_id,
            referral_id,
            now_ms,
            event,
        )
    }

    let envelope = match follow_up {
        FollowUp::NrmDecision {
            subject,
            stage,
            outcome,
            decided_at,
            ..
        } => {
            let event = v1::NrmDecisionRecorded {
                referral_id: referral_id.clone(),
                agency_id: agency_id.to_owned(),
                subject: Some(subject_ref(subject)?),
                stage: match stage {
                    NrmStage::ReasonableGrounds => v1::NrmDecisionStage::ReasonableGrounds,
                    NrmStage::ConclusiveGrounds => v1::NrmDecisionStage::ConclusiveGrounds,
                } as i32,
                outcome: match outcome {
                    NrmOutcome::Positive => v1::NrmDecisionOutcome::Positive,
                    NrmOutcome::Negative => v1::NrmDecisionOutcome::Negative,
                } as i32,
                decided_at: ts(&decided_at),
            };
            envelope(&id, &referral_id, now_ms, &event)
        }
        FollowUp::AgeAssessment {
            subject,
            outcome,
            assessed_date_of_birth,
            assessed_at,
            ..
        } => {
            let event = v1::AgeAssessmentRecorded {
                sealed_assessed_date_of_birth: None,
                referral_id: referral_id.clone(),
                agency_id: agency_id.to_owned(),
                subject: Some(subject_ref(subject)?),
                outcome: match outcome {
                    AgeOutcome::Child => v1::AgeAssessmentOutcome::Child,
                    AgeOutcome::Adult => v1::AgeAssessmentOutcome::Adult,
                } as i32,
                assessed_date_of_birth: assessed_date_of_birth.map(|d| v1::DateOfBirth {
                    precision: d.precision.map(i32::from).unwrap_or_default(),
                    value: d.value,
                }),
                assessed_at: ts(&assessed_at),
            };
            envelope(&id, &referral_id, now_ms, &event)
        }
        FollowUp::MissingEpisode {
            subject,
            missing_since,
            last_seen,
            ..
        } => {
            let event = v1::MissingEpisodeReported {
                sealed_last_seen: None,
                referral_id: referral_id.clone(),
                agency_id: agency_id.to_owned(),
                subject: Some(subject_ref(subject)?),
                missing_since: ts(&missing_since),
                last_seen: last_seen.map(location),
            };
            envelope(&id, &referral_id, now_ms, &event)
        }
        FollowUp::FoundEpisode {
            subject,
            found_at,
            found_location,
            ..
        } => {
            let event = v1::FoundEpisodeReported {
                sealed_found_location: None,
                referral_id: referral_id.clone(),
                agency_id: agency_id.to_owned(),
                subject: Some(subject_ref(subject)?),
                found_at: ts(&found_at),
                found_location: found_location.map(location),
            };
            envelope(&id, &referral_id, now_ms, &event)
        }
        FollowUp::Withdrawal { reason_code, .. } => {
            if reason_code.is_empty()
                || reason_code.len() > 40
                || !reason_code
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_')
            {
                return Err(FieldError {
                    pointer: "/reason_code".into(),
                    reason: "lower-case code of at most 40 characters".into(),
                });
            }
            let event = v1::ReferralWithdrawn {
                referral_id: referral_id.clone(),
                agency_id: agency_id.to_owned(),
                reason_code,
                withdrawn_at: Some(kinlink_proto::timestamp_from_millis(now_ms)),
            };
            envelope(&id, &referral_id, now_ms, &event)
        }
    };
    Ok(envelope)
}
