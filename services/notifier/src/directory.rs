//! The authority directory, from settings: where each body receives alerts, the secrets that
//! sign them, its secondary contact and how long before kinlink on-call is paged.

use std::collections::HashMap;

use kinlink_domain::lifecycle::{EscalationTimer, schedule_escalations};
use std::time::Duration;

use kinlink_runtime::settings::NotifierSettings;

use crate::signing::{SecretError, SigningSecret};

/// One authority's delivery settings.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Empty: no webhook; the authority hears by email or SMS only.
    pub url: String,
    pub secrets: Vec<SigningSecret>,
    pub secondary_url: Option<String>,
    pub on_call_after: Duration,
    /// Webhooks carry the children's details.
    pub full_payload: bool,
    /// Duty mailboxes and phones told of each alert (see `channels.rs`).
    pub email: Vec<String>,
    pub sms: Vec<String>,
    pub email_via: kinlink_runtime::settings::EmailVia,
}

/// kinlink on-call (PagerDuty Events API v2 compatible).
#[derive(Clone)]
pub struct OnCall {
    pub events_url: String,
    pub routing_key: String,
}

impl std::fmt::Debug for OnCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnCall")
            .field("events_url", &self.events_url)
            .finish_non_exhaustive()
    }
}

/// Every authority's endpoint, plus on-call.
#[derive(Debug, Clone)]
pub struct Directory {
    endpoints: HashMap<String, Endpoint>,
    default_on_call_after: Duration,
    pub on_call: Option<OnCall>,
    pub public_base_url: String,
}

/// A directory entry that cannot be used. Names the authority, never the secret.
#[derive(Debug, thiserror::Error)]
#[error("notifier.authorities[{code}]: {source}")]
pub struct DirectoryError {
    pub code: String,
    #[source]
    pub source: SecretError,
}

impl Directory {
    pub fn from_settings(settings: &NotifierSettings) -> Result<Self, DirectoryError> {
        let mut endpoints = HashMap::new();
        for authority in &settings.authorities {
            let secrets = authority
                .signing_secrets
                .iter()
                .map(|s| SigningSecret::parse(s))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|source| DirectoryError {
                    code: authority.code.clone(),
                    source,
                })?;
            endpoints.insert(
                authority.code.clone(),
                Endpoint {
                    url: authority.webhook_url.clone(),
                    secrets,
                    secondary_url: authority.secondary_webhook_url.clone(),
                    full_payload: authority.full_payload,
                    email: authority.email.clone(),
                    sms: authority.sms.clone(),
                    email_via: authority.email_via,
                    on_call_after: Duration::from_secs(
                        authority
                            .on_call_after_seconds
                            .unwrap_or(settings.on_call_after_seconds),
                    ),
                },
            );
        }
        let on_call = match (&settings.on_call.events_url, &settings.on_call.routing_key) {
            (Some(url), Some(key)) => {
                let routing_key = kinlink_runtime::settings::secret_value(key).map_err(|name| {
                    DirectoryError {
                        code: "on_call".into(),
                        source: SecretError::MissingEnv(name),
                    }
                })?;
                Some(OnCall {
                    events_url: url.clone(),
                    routing_key,
                })
            }
            _ => None,
        };
        Ok(Self {
            endpoints,
            default_on_call_after: Duration::from_secs(settings.on_call_after_seconds),
            on_call,
            public_base_url: settings.public_base_url.clone(),
        })
    }

    /// Codes of every configured authority.
    pub fn codes(&self) -> impl Iterator<Item = &str> {
        self.endpoints.keys().map(String::as_str)
    }

    pub fn endpoint(&self, code: &str) -> Option<&Endpoint> {
        self.endpoints.get(code)
    }

    pub fn on_call_after(&self, code: &str) -> Duration {
        self.endpoints
            .get(code)
            .map_or(self.default_on_call_after, |e| e.on_call_after)
    }

    /// The escalation timers of an alert for `code` due at `deadline_ms`, with this
    /// authority's secondary contact and on-call delay (the policy snapshotted at filing).
    pub fn escalation_timers(&self, code: &str, deadline_ms: i64) -> [EscalationTimer; 2] {
        let secondary = self.endpoint(code).and_then(|e| e.secondary_url.as_deref());
        let on_call_after = i64::try_from(self.on_call_after(code).as_millis()).unwrap_or(0);
        schedule_escalations(deadline_ms, secondary, on_call_after)
    }
}
