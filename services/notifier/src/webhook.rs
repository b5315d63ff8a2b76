//! The HTTP side of delivery: a thin JSON payload (ids, codes, deadline; no personal data)
//! POSTed with the alert id as `webhook-id`, so a receiver can drop repeats.

use std::time::Duration;

use kinlink_proto::v1;
use serde::Serialize;

use crate::policy::AttemptOutcome;

/// The webhook body.
#[derive(Debug, Serialize)]
pub struct WebhookPayload<'a> {
    pub alert_id: &'a str,
    pub referral_id: &'a str,
    pub person_id: &'a str,
    pub authority_code: &'a str,
    pub authority_name: &'a str,
    pub other_authority_code: &'a str,
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
}

/// A child's part of a grouped alert: ids and rule names only.
#[derive(Debug, Serialize)]
pub struct ChildSection<'a> {
    pub person_id: &'a str,
    pub rules: &'a [String],
    pub basis: &'static str,
    pub other_authority_code: &'a str,
    pub previous_authority_codes: &'a [String],
    pub ever_referred_in_own_right: bool,
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
    pub fn from_alert(alert: &'a v1::AlertRaised) -> Self {
        Self {
            alert_id: &alert.alert_id,
            referral_id: &alert.referral_id,
            person_id: &alert.person_id,
            authority_code: &alert.authority_code,
            authority_name: &alert.authority_name,
            other_authority_code: &alert.other_authority_code,
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
                    other_authority_code: &s.other_authority_code,
                    previous_authority_codes: &s.previous_authority_codes,
                    ever_referred_in_own_right: s.ever_referred_in_own_right,
                })
                .collect(),
            rules_version: &alert.rules_version,
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

    /// Sends one attempt. Only 2xx counts as delivered.
    pub async fn send(&self, url: &str, alert: &v1::AlertRaised) -> AttemptOutcome {
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let response = self
            .http
            .post(url)
            .header("webhook-id", &alert.alert_id)
            .header("webhook-timestamp", timestamp)
            .json(&WebhookPayload::from_alert(alert))
            .send()
            .await;
        match response {
            Ok(response) if response.status().is_success() => {
                AttemptOutcome::Accepted(response.status().as_u16())
            }
            Ok(response) => AttemptOutcome::Status(response.status().as_u16()),
            Err(error) => {
                tracing::debug!(alert_id = %alert.alert_id, error = %error.without_url(), "Webhook request failed.");
                AttemptOutcome::NoResponse
            }
        }
    }
}
