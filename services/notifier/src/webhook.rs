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
            basis: match v1::RoutingBasis::try_from(alert.basis) {
                Ok(v1::RoutingBasis::Lives) => "lives",
                Ok(v1::RoutingBasis::Found) => "found",
                _ => "triage",
            },
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
