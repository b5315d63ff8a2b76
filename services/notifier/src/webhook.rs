//! The HTTP side of delivery: a thin JSON payload (ids, codes, deadline; no personal data)
//! POSTed with the alert id as `webhook-id`, so a receiver can drop repeats.

use std::time::Duration;

use kinlink_proto::v1;
use serde::Serialize;

use crate::policy::{AttemptOutcome, parse_retry_after};
use crate::signing::{SigningSecret, signature_header};

/// The webhook body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookPayload<'a> {
    pub alert_id: &'a str,
    pub referral_id: &'a str,
    pub person_id: &'a str,
    pub authority_code: &'a str,
    pub authority_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_authority_code: Option<&'a str>,
    pub basis: &'static str,
    pub priority: &'static str,
    pub rule: &'a str,
    pub sequence: u32,
    pub deadline: Option<String>,
    pub routing_data_version: &'a str,
    /// red, amber or green.
    pub rag: &'static str,
    /// One section per child of the household this body must act for.
    pub children: Vec<ChildSection<'a>>,
    pub rules_version: &'a str,
    /// 1 for the first alert; higher for an amendment after a referral update.
    pub revision: u32,
    /// Where the authority fetches the full alert with its API token.
    pub content_url: String,
    /// Set on messages to a secondary contact: the alert passed its deadline unacknowledged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalation: Option<&'static str>,
    /// Full payloads only: the referral's exploitation types and county-lines flag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exploitation: Option<Exploitation>,
    /// Set when the alert no longer needs action: the referral was withdrawn or the missing
    /// child found. Escalation has stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed: Option<Closed<'a>>,
    /// nrm_decision alerts: which decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nrm_decision: Option<NrmDecisionDetails>,
    /// missing_child alerts: when and where the child was last seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<MissingDetails<'a>>,
    /// Full payloads only: how to reach the referring agency (its registered role mailbox or
    /// phone line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrer: Option<Referrer<'a>>,
    /// Full payloads only: the referrer's account of the concern.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concern: Option<&'a str>,
    /// A lives/found hand-off the home authority has decided: `accepted` (it takes
    /// responsibility) or `declined` (with a reason code; the found authority keeps it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handoff: Option<HandoffDetails<'a>>,
}

/// A lives/found hand-off: pending while the home authority decides, then its outcome (which
/// the authority where the child was found is told in an amendment).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HandoffDetails<'a> {
    pub home_authority: &'a str,
    pub found_authority: &'a str,
    pub state: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<&'a str>,
    /// When the home authority decided (absent while pending).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    /// A transfer: the body now asked to take responsibility.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transferred_to: Option<&'a str>,
}

/// The referring agency and its contact route.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Referrer<'a> {
    pub agency_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact_mailbox: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact_phone: Option<&'a str>,
}

/// Why an alert no longer needs action.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Closed<'a> {
    /// `referral_withdrawn`, `child_found` or `rerouted`.
    pub reason: String,
    /// The agency's reason code for a withdrawal (empty otherwise).
    pub reason_code: &'a str,
    pub closed_at: Option<String>,
    /// A re-route: the bodies alerted instead.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub rerouted_to: &'a [String],
}

/// A proto string field as JSON: absent when empty, never `""`.
fn non_empty(value: &str) -> Option<&str> {
    (!value.is_empty()).then_some(value)
}

fn rfc3339(ts: Option<&kinlink_proto::Timestamp>) -> Option<String> {
    ts.and_then(|ts| {
        chrono::DateTime::from_timestamp_millis(kinlink_proto::millis_from_timestamp(ts))
    })
    .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// Referral context in full payloads.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Exploitation {
    pub types: Vec<String>,
    pub county_lines: bool,
}

/// A child's own details, in full payloads and through the authority API only.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChildDetails<'a> {
    pub given_name: &'a str,
    pub family_name: &'a str,
    #[schema(value_type = Vec<String>)]
    pub aliases: &'a [String],
    pub date_of_birth: Option<&'a str>,
    pub date_of_birth_precision: Option<String>,
    pub claimed_age: Option<u32>,
    pub sex: String,
    #[schema(value_type = Vec<String>)]
    pub nationalities: &'a [String],
    #[schema(value_type = Vec<String>)]
    pub languages: &'a [String],
    pub identifiers: Vec<IdentifierDetails<'a>>,
    pub locations: Vec<LocationDetails<'a>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IdentifierDetails<'a> {
    pub kind: String,
    pub value: &'a str,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LocationDetails<'a> {
    pub role: String,
    pub postcode: &'a str,
    pub authority_code: &'a str,
    pub overseas: bool,
    pub no_fixed_abode: bool,
}

impl<'a> LocationDetails<'a> {
    fn from_location(l: &'a v1::Location) -> Self {
        Self {
            role: enum_name(
                v1::LocationRole::try_from(l.role)
                    .ok()
                    .map(|e| e.as_str_name()),
                "LOCATION_ROLE_",
            ),
            postcode: &l.postcode,
            authority_code: &l.authority_code,
            overseas: l.overseas,
            no_fixed_abode: l.no_fixed_abode,
        }
    }
}

/// An NRM decision, in nrm_decision alerts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NrmDecisionDetails {
    /// `reasonable_grounds` or `conclusive_grounds`.
    pub stage: String,
    /// `positive` or `negative`.
    pub outcome: String,
    pub decided_at: Option<String>,
}

/// A missing episode, in missing_child alerts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MissingDetails<'a> {
    pub missing_since: Option<String>,
    /// The body whose area the child was last seen in, when it resolves to one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen_authority_code: Option<&'a str>,
    /// Where the child was last seen, as reported (full payloads only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<LocationDetails<'a>>,
}

/// The proto enum name without its prefix, lower case: `EXPLOITATION_TYPE_LABOUR` -> `labour`.
fn enum_name(name: Option<&str>, prefix: &str) -> String {
    name.map(|n| n.trim_start_matches(prefix).to_ascii_lowercase())
        .unwrap_or_default()
}

impl<'a> ChildDetails<'a> {
    pub fn from_person(p: &'a v1::Person) -> Self {
        Self {
            given_name: &p.given_name,
            family_name: &p.family_name,
            aliases: &p.aliases,
            date_of_birth: p.date_of_birth.as_ref().map(|d| d.value.as_str()),
            date_of_birth_precision: p.date_of_birth.as_ref().map(|d| {
                enum_name(
                    v1::DobPrecision::try_from(d.precision)
                        .ok()
                        .map(|e| e.as_str_name()),
                    "DOB_PRECISION_",
                )
            }),
            claimed_age: p.claimed_age,
            sex: enum_name(
                v1::Sex::try_from(p.sex).ok().map(|e| e.as_str_name()),
                "SEX_",
            ),
            nationalities: &p.nationalities,
            languages: &p.languages,
            identifiers: p
                .identifiers
                .iter()
                .map(|i| IdentifierDetails {
                    kind: enum_name(
                        v1::IdentifierKind::try_from(i.kind)
                            .ok()
                            .map(|e| e.as_str_name()),
                        "IDENTIFIER_KIND_",
                    ),
                    value: i.value.as_str(),
                })
                .collect(),
            locations: p
                .locations
                .iter()
                .map(LocationDetails::from_location)
                .collect(),
        }
    }
}

/// A child's part of a grouped alert: ids and rule names only.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChildSection<'a> {
    pub person_id: &'a str,
    #[schema(value_type = Vec<String>)]
    pub rules: &'a [String],
    pub basis: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_authority_code: Option<&'a str>,
    #[schema(value_type = Vec<String>)]
    pub previous_authority_codes: &'a [String],
    pub ever_referred_in_own_right: bool,
    /// How the child was recognised: `new_person` (first seen), `strong_identifier`,
    /// `probabilistic` (linkage scored above the automatic-link threshold), `linkage_review`
    /// (a person decided two records are one child) or `earlier_referral` (a follow-up about a
    /// child already known).
    pub recognised_by: &'static str,
    /// Probability of the match that recognised the child (absent for a new person).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub match_probability: Option<f64>,
    /// Referrals the child was already on, as a dependant or in their own right.
    #[schema(value_type = Vec<String>)]
    pub earlier_referral_ids: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<ChildDetails<'a>>,
}

fn recognised_by(method: i32) -> &'static str {
    match v1::MatchMethod::try_from(method) {
        Ok(v1::MatchMethod::StrongIdentifier) => "strong_identifier",
        Ok(v1::MatchMethod::Probabilistic) => "probabilistic",
        Ok(v1::MatchMethod::ExactNameAndDob) => "exact_name_and_dob",
        Ok(v1::MatchMethod::LinkageReview) => "linkage_review",
        Ok(v1::MatchMethod::NewPerson) => "new_person",
        // Follow-ups name a person already known; they carry no match of their own.
        _ => "earlier_referral",
    }
}

fn basis_name(basis: i32) -> &'static str {
    match v1::RoutingBasis::try_from(basis) {
        Ok(v1::RoutingBasis::Lives) => "lives",
        Ok(v1::RoutingBasis::Found) => "found",
        Ok(v1::RoutingBasis::PlacingAuthority) => "placing_authority",
        Ok(v1::RoutingBasis::PreviousAuthority) => "previous_authority",
        _ => "triage",
    }
}

impl<'a> WebhookPayload<'a> {
    /// The payload for `alert`; `full` adds the children's details and the referral context.
    pub fn from_alert(alert: &'a v1::AlertRaised, public_base_url: &str, full: bool) -> Self {
        Self {
            alert_id: &alert.alert_id,
            referral_id: &alert.referral_id,
            person_id: &alert.person_id,
            authority_code: &alert.authority_code,
            authority_name: &alert.authority_name,
            other_authority_code: non_empty(&alert.other_authority_code),
            basis: basis_name(alert.basis),
            priority: match v1::Priority::try_from(alert.priority) {
                Ok(v1::Priority::Urgent) => "urgent",
                _ => "standard",
            },
            rule: &alert.rule,
            sequence: alert.sequence,
            deadline: alert
                .deadline
                .as_ref()
                .and_then(|ts| {
                    chrono::DateTime::from_timestamp_millis(kinlink_proto::millis_from_timestamp(
                        ts,
                    ))
                })
                .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            routing_data_version: &alert.routing_data_version,
            rag: match v1::Rag::try_from(alert.rag) {
                Ok(v1::Rag::Red) => "red",
                Ok(v1::Rag::Amber) => "amber",
                _ => "green",
            },
            children: alert
                .sections
                .iter()
                .map(|s| ChildSection {
                    person_id: &s.person_id,
                    rules: &s.rules,
                    basis: basis_name(s.basis),
                    other_authority_code: non_empty(&s.other_authority_code),
                    previous_authority_codes: &s.previous_authority_codes,
                    ever_referred_in_own_right: s.ever_referred_in_own_right,
                    recognised_by: recognised_by(s.match_method),
                    // A new person was not matched: no probability, rather than 0.
                    match_probability: (s.match_method != v1::MatchMethod::NewPerson as i32
                        && s.match_method != v1::MatchMethod::Unspecified as i32)
                        .then_some(s.match_probability),
                    earlier_referral_ids: &s.earlier_referral_ids,
                    details: if full {
                        s.child.as_ref().map(ChildDetails::from_person)
                    } else {
                        None
                    },
                })
                .collect(),
            rules_version: &alert.rules_version,
            revision: alert.revision.max(1),
            content_url: format!(
                "{}/v1/alerts/{}",
                public_base_url.trim_end_matches('/'),
                alert.alert_id
            ),
            escalation: None,
            exploitation: full.then(|| Exploitation {
                types: alert
                    .exploitation_types
                    .iter()
                    .map(|t| {
                        enum_name(
                            v1::ExploitationType::try_from(*t)
                                .ok()
                                .map(|e| e.as_str_name()),
                            "EXPLOITATION_TYPE_",
                        )
                    })
                    .collect(),
                county_lines: alert.county_lines,
            }),
            closed: (alert.closed_reason != v1::AlertCloseReason::Unspecified as i32).then(|| {
                Closed {
                    reason: enum_name(
                        v1::AlertCloseReason::try_from(alert.closed_reason)
                            .ok()
                            .map(|e| e.as_str_name()),
                        "ALERT_CLOSE_REASON_",
                    ),
                    reason_code: &alert.closed_reason_code,
                    closed_at: rfc3339(alert.closed_at.as_ref()),
                    rerouted_to: &alert.closed_rerouted_to,
                }
            }),
            nrm_decision: alert.nrm_decision.as_ref().map(|d| NrmDecisionDetails {
                stage: enum_name(
                    v1::NrmDecisionStage::try_from(d.stage)
                        .ok()
                        .map(|e| e.as_str_name()),
                    "NRM_DECISION_STAGE_",
                ),
                outcome: enum_name(
                    v1::NrmDecisionOutcome::try_from(d.outcome)
                        .ok()
                        .map(|e| e.as_str_name()),
                    "NRM_DECISION_OUTCOME_",
                ),
                decided_at: rfc3339(d.decided_at.as_ref()),
            }),
            referrer: if full && !alert.agency_id.is_empty() {
                let registered = alert.referrer.as_ref();
                Some(Referrer {
                    agency_id: &alert.agency_id,
                    name: registered.and_then(|r| non_empty(&r.name)),
                    contact_mailbox: registered.and_then(|r| non_empty(&r.contact_mailbox)),
                    contact_phone: registered.and_then(|r| non_empty(&r.contact_phone)),
                })
            } else {
                None
            },
            concern: if full {
                non_empty(&alert.concern)
            } else {
                None
            },
            handoff: alert.handoff.as_ref().map(|h| HandoffDetails {
                home_authority: &h.home_authority,
                found_authority: &h.found_authority,
                state: &h.state,
                reason_code: non_empty(&h.reason_code),
                decided_at: rfc3339(h.decided_at.as_ref()),
                transferred_to: non_empty(&h.transferred_to),
            }),
            missing: alert.missing_episode.as_ref().map(|m| MissingDetails {
                missing_since: rfc3339(m.missing_since.as_ref()),
                last_seen_authority_code: non_empty(&m.last_seen_authority_code),
                last_seen: if full {
                    m.last_seen.as_ref().map(LocationDetails::from_location)
                } else {
                    None
                },
            }),
        }
    }
}

/// An HTTP client with the delivery timeout.
#[derive(Debug, Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    timeout: Duration,
}

impl WebhookClient {
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent("kinlink-notifier")
            .build()?;
        Ok(Self { http, timeout })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends one signed message. `message_id` is the `webhook-id`: the same on every retry,
    /// so receivers drop repeats. Only 2xx counts as delivered.
    pub async fn send<T: Serialize>(
        &self,
        url: &str,
        message_id: &str,
        body: &T,
        secrets: &[SigningSecret],
    ) -> AttemptOutcome {
        let Ok(body) = serde_json::to_vec(body) else {
            return AttemptOutcome::NoEndpoint;
        };
        let timestamp = chrono::Utc::now().timestamp();
        let mut request = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", message_id)
            .header("webhook-timestamp", timestamp.to_string());
        if !secrets.is_empty() {
            request = request.header(
                "webhook-signature",
                signature_header(secrets, message_id, timestamp, &body),
            );
        }
        match request.body(body).send().await {
            Ok(response) if response.status().is_success() => {
                AttemptOutcome::Accepted(response.status().as_u16())
            }
            Ok(response) => {
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
                AttemptOutcome::Status(response.status().as_u16(), retry_after)
            }
            Err(error) => {
                tracing::debug!(message_id, error = %error.without_url(), "Webhook request failed.");
                AttemptOutcome::NoResponse
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_up_payloads_say_what_happened_without_personal_data_when_thin() {
        let alert = v1::AlertRaised {
            alert_id: "a".into(),
            nrm_decision: Some(v1::AlertNrmDecision {
                stage: v1::NrmDecisionStage::ReasonableGrounds as i32,
                outcome: v1::NrmDecisionOutcome::Negative as i32,
                decided_at: None,
            }),
            missing_episode: Some(v1::AlertMissingEpisode {
                sealed_last_seen: None,
                missing_since: Some(kinlink_proto::timestamp_from_millis(1_795_000_000_000)),
                last_seen: Some(v1::Location {
                    postcode: "CT1 2RR".into(),
                    ..Default::default()
                }),
                last_seen_authority_code: "E10000016".into(),
            }),
            ..Default::default()
        };
        let thin = serde_json::to_value(WebhookPayload::from_alert(&alert, "http://k", false))
            .unwrap_or_default();
        assert_eq!(thin["nrm_decision"]["stage"], "reasonable_grounds");
        assert_eq!(thin["nrm_decision"]["outcome"], "negative");
        assert_eq!(thin["missing"]["missing_since"], "2026-11-18T11:06:40Z");
        assert_eq!(thin["missing"]["last_seen_authority_code"], "E10000016");
        assert!(
            !thin.to_string().contains("CT1"),
            "no postcode in a thin payload"
        );
        assert!(
            thin.get("other_authority_code").is_none(),
            "empty means absent"
        );
        let full = serde_json::to_value(WebhookPayload::from_alert(&alert, "http://k", true))
            .unwrap_or_default();
        assert_eq!(full["missing"]["last_seen"]["postcode"], "CT1 2RR");
    }

    #[test]
    fn full_payloads_say_how_to_reach_the_referrer_and_what_the_concern_is() {
        let alert = v1::AlertRaised {
            alert_id: "a".into(),
            agency_id: "met-police".into(),
            concern: "Seen working at a car wash late at night.".into(),
            referrer: Some(v1::AlertReferrer {
                agency_id: "met-police".into(),
                name: "Metropolitan Police".into(),
                contact_mailbox: "modern.slavery@met.example".into(),
                contact_phone: String::new(),
            }),
            ..Default::default()
        };
        let full = serde_json::to_value(WebhookPayload::from_alert(&alert, "http://k", true))
            .unwrap_or_default();
        assert_eq!(
            full["referrer"]["contact_mailbox"],
            "modern.slavery@met.example"
        );
        assert_eq!(full["referrer"]["name"], "Metropolitan Police");
        assert!(full["referrer"].get("contact_phone").is_none());
        assert_eq!(full["concern"], "Seen working at a car wash late at night.");
        let thin = serde_json::to_value(WebhookPayload::from_alert(&alert, "http://k", false))
            .unwrap_or_default();
        assert!(thin.get("referrer").is_none() && thin.get("concern").is_none());
    }
}
