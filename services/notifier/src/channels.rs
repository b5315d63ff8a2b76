//! Telling people, not only machines: email and text messages to an authority's duty team
//! when an alert is filed, amended or routed from triage, alongside (or instead of) its
//! webhook. Two transports: GOV.UK Notify (email and SMS, its REST API with the API-key JWT
//! scheme) and plain SMTP (the council's own relay). Owns `notifications`.
//!
//! A message carries no personal data: the authority, the rating and priority, the deadline
//! and a link to the alert in the console. Each message is a row filed in the same transaction
//! as the alert, sent by a worker that claims it first (so several notifier instances send it
//! once; a crash between sending and recording repeats at most that one message), retried on
//! the webhook schedule. A message that cannot be sent (retries exhausted, or refused for good)
//! brings the alert's secondary escalation forward when the authority has no webhook, since
//! then nobody has been told.

use std::sync::Arc;
use std::time::Duration;

use kinlink_proto::v1;
use kinlink_runtime::settings::{EmailVia, GovukNotifySettings, SmtpSecurity, SmtpSettings};
use kinlink_store::Store;
use sqlx::{AnyConnection, Row};
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::directory::Directory;

/// How a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    NotifyEmail,
    NotifySms,
    SmtpEmail,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::NotifyEmail => "notify_email",
            Channel::NotifySms => "notify_sms",
            Channel::SmtpEmail => "smtp_email",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Channel::NotifyEmail, Channel::NotifySms, Channel::SmtpEmail]
            .into_iter()
            .find(|c| c.as_str() == text)
    }
}

/// What a message says, with no personal data: everything here is also in the thin webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub subject: String,
    pub body: String,
    /// GOV.UK Notify template fields.
    pub fields: Vec<(&'static str, String)>,
}

/// The message for `alert` (`updated` for an amendment), linking to the console at `base_url`.
pub fn message(alert: &v1::AlertRaised, base_url: &str, updated: bool) -> Message {
    let rating = match v1::Rag::try_from(alert.rag).unwrap_or_default() {
        v1::Rag::Red => "Red",
        v1::Rag::Amber => "Amber",
        v1::Rag::Green => "Green",
        v1::Rag::Unspecified => "Unrated",
    };
    let urgent = alert.priority == v1::Priority::Urgent as i32;
    let deadline = alert
        .deadline
        .as_ref()
        .map(kinlink_proto::millis_from_timestamp)
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|d| d.format("%-d %B %Y, %H:%M UTC").to_string())
        .unwrap_or_else(|| "not set".to_owned());
    let link = format!(
        "{}/console/alerts/{}",
        base_url.trim_end_matches('/'),
        alert.alert_id
    );
    let kind = if updated {
        "Alert updated"
    } else {
        "New alert"
    };
    let priority = if urgent { "urgent" } else { "standard" };
    let children = alert.sections.len().max(1);
    let subject = format!(
        "kinlink: {kind}, {rating}{} for {}",
        if urgent { ", urgent" } else { "" },
        alert.authority_name
    );
    let body = format!(
        "{kind} for {authority}.\n\nRating: {rating}\nPriority: {priority}\nChildren: {children}\n\
         Decide by: {deadline}\n\nOpen the alert (sign in required):\n{link}\n\n\
         This message holds no personal details. Acknowledge the alert in kinlink, or it is \
         escalated at its deadline.\n",
        authority = alert.authority_name,
    );
    Message {
        subject,
        body,
        fields: vec![
            ("kind", kind.to_owned()),
            ("authority", alert.authority_name.clone()),
            ("rating", rating.to_owned()),
            ("priority", priority.to_owned()),
            ("children", children.to_string()),
            ("deadline", deadline),
            ("link", link),
        ],
    }
}

/// Files the messages for an alert just filed, amended or routed (revision `revision`) for
/// each recipient its authority configured. Filing again for the same revision changes
/// nothing.
pub async fn file(
    conn: &mut AnyConnection,
    directory: &Directory,
    alert: &v1::AlertRaised,
    revision: u32,
    now_ms: i64,
) -> Result<usize, sqlx::Error> {
    let Some(endpoint) = directory.endpoint(&alert.authority_code) else {
        return Ok(0);
    };
    let email_channel = match endpoint.email_via {
        EmailVia::Notify => Channel::NotifyEmail,
        EmailVia::Smtp => Channel::SmtpEmail,
    };
    let recipients = endpoint
        .email
        .iter()
        .map(|r| (email_channel, r))
        .chain(endpoint.sms.iter().map(|r| (Channel::NotifySms, r)));
    let mut filed = 0;
    for (index, (channel, recipient)) in recipients.enumerate() {
        let id = kinlink_proto::derive_id(
            &alert.alert_id,
            &format!("message/{revision}/{}/{index}", channel.as_str()),
        );
        let inserted = sqlx::query(
            "INSERT INTO notifications (notification_id, alert_id, revision, authority_code, channel, recipient, \
             state, attempts, next_attempt_at_ms, last_error, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, '', $7, $7) ON CONFLICT DO NOTHING",
        )
        .bind(&id)
        .bind(&alert.alert_id)
        .bind(i64::from(revision))
        .bind(&alert.authority_code)
        .bind(channel.as_str())
        .bind(recipient)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
        filed += usize::try_from(inserted.rows_affected()).unwrap_or(0);
    }
    Ok(filed)
}

/// How one send ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// Accepted; the provider's id when it gives one.
    Accepted(String),
    /// Try again later.
    Retry(String),
    /// Refused for good (bad address, bad template): retrying cannot help.
    Refused(String),
}

/// GOV.UK Notify's REST API. The API key (`name-<service id>-<secret>`) signs a short-lived
/// JWT per request (HS256, `iss` the service id, `iat` now), as Notify requires.
#[derive(Clone)]
pub struct NotifyClient {
    http: reqwest::Client,
    base_url: String,
    service_id: String,
    secret: String,
    email_template_id: String,
    sms_template_id: String,
}

impl std::fmt::Debug for NotifyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyClient")
            .field("base_url", &self.base_url)
            .field("service_id", &self.service_id)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Serialize)]
struct NotifyClaims<'a> {
    iss: &'a str,
    iat: i64,
}

/// Reads a secret given inline or as `env:NAME`; the error names the setting, never the value.
fn secret(value: &str, setting: &'static str) -> Result<String, Error> {
    kinlink_runtime::settings::secret_value(value).map_err(|name| Error::Channel {
        setting,
        reason: format!("environment variable {name} is not set"),
    })
}

impl NotifyClient {
    pub fn new(settings: &GovukNotifySettings, timeout: Duration) -> Result<Self, Error> {
        let key = secret(&settings.api_key, "notifier.govuk_notify.api_key")?;
        // The key ends with two UUIDs: the service id, then the secret.
        let invalid = || Error::Channel {
            setting: "notifier.govuk_notify.api_key",
            reason: "not a GOV.UK Notify API key (name-<service id>-<secret>)".to_owned(),
        };
        if key.len() < 74 || !key.is_char_boundary(key.len() - 73) {
            return Err(invalid());
        }
        let secret = key[key.len() - 36..].to_owned();
        let service_id = key[key.len() - 73..key.len() - 37].to_owned();
        if uuid::Uuid::parse_str(&secret).is_err() || uuid::Uuid::parse_str(&service_id).is_err() {
            return Err(invalid());
        }
        Ok(Self {
            http: reqwest::Client::builder().timeout(timeout).build()?,
            base_url: settings.base_url.trim_end_matches('/').to_owned(),
            service_id,
            secret,
            email_template_id: settings.email_template_id.clone(),
            sms_template_id: settings.sms_template_id.clone(),
        })
    }

    fn token(&self, now_ms: i64) -> Result<String, Error> {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &NotifyClaims {
                iss: &self.service_id,
                iat: now_ms / 1000,
            },
            &jsonwebtoken::EncodingKey::from_secret(self.secret.as_bytes()),
        )
        .map_err(|e| Error::Channel {
            setting: "notifier.govuk_notify.api_key",
            reason: e.to_string(),
        })
    }

    async fn send(
        &self,
        channel: Channel,
        recipient: &str,
        message: &Message,
        reference: &str,
        now_ms: i64,
    ) -> Result<Sent, Error> {
        let personalisation: serde_json::Map<String, serde_json::Value> = message
            .fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone().into()))
            .collect();
        let (path, body) = match channel {
            Channel::NotifySms => (
                "sms",
                serde_json::json!({ "phone_number": recipient, "template_id": self.sms_template_id,
                    "personalisation": personalisation, "reference": reference }),
            ),
            _ => (
                "email",
                serde_json::json!({ "email_address": recipient, "template_id": self.email_template_id,
                    "personalisation": personalisation, "reference": reference }),
            ),
        };
        let response = self
            .http
            .post(format!("{}/v2/notifications/{path}", self.base_url))
            .bearer_auth(self.token(now_ms)?)
            .json(&body)
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(error) => return Ok(Sent::Retry(format!("no response: {}", error.without_url()))),
        };
        let status = response.status();
        if status.is_success() {
            let id = response
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_owned))
                .unwrap_or_default();
            return Ok(Sent::Accepted(id));
        }
        // Notify's errors name the problem (never the recipient).
        let reason = format!("HTTP {}", status.as_u16());
        Ok(if status.as_u16() == 429 || status.is_server_error() {
            Sent::Retry(reason)
        } else {
            Sent::Refused(reason)
        })
    }
}

/// The council's own mail relay.
#[derive(Clone)]
pub struct SmtpMailer {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    from: lettre::message::Mailbox,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer").finish_non_exhaustive()
    }
}

impl SmtpMailer {
    pub fn new(settings: &SmtpSettings, timeout: Duration) -> Result<Self, Error> {
        use lettre::AsyncSmtpTransport;
        let invalid = |setting: &'static str, reason: String| Error::Channel { setting, reason };
        let loopback = settings.host == "localhost"
            || settings
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let builder = match settings.security {
            SmtpSecurity::Starttls => {
                AsyncSmtpTransport::<lettre::Tokio1Executor>::starttls_relay(&settings.host)
                    .map_err(|e| invalid("notifier.smtp.host", e.to_string()))?
            }
            SmtpSecurity::Tls => {
                AsyncSmtpTransport::<lettre::Tokio1Executor>::relay(&settings.host)
                    .map_err(|e| invalid("notifier.smtp.host", e.to_string()))?
            }
            // Plain text only to a relay on this machine (tests, a local forwarding agent).
            SmtpSecurity::None if loopback => {
                AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(&settings.host)
            }
            SmtpSecurity::None => {
                return Err(invalid(
                    "notifier.smtp.security",
                    "\"none\" (no TLS) is allowed only for a relay on localhost".to_owned(),
                ));
            }
        };
        let mut builder = builder.port(settings.port).timeout(Some(timeout));
        if let Some(username) = &settings.username {
            let password = secret(
                settings.password.as_deref().unwrap_or_default(),
                "notifier.smtp.password",
            )?;
            builder =
                builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
                    username.clone(),
                    password,
                ));
        }
        let from = settings
            .from
            .parse()
            .map_err(|_| invalid("notifier.smtp.from", "not an email address".to_owned()))?;
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }

    async fn send(
        &self,
        recipient: &str,
        message: &Message,
        reference: &str,
    ) -> Result<Sent, Error> {
        use lettre::AsyncTransport;
        let Ok(to) = recipient.parse::<lettre::message::Mailbox>() else {
            return Ok(Sent::Refused(
                "recipient is not an email address".to_owned(),
            ));
        };
        let email = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(message.subject.clone())
            .message_id(Some(format!("<{reference}@kinlink>")))
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(message.body.clone());
        let email = match email {
            Ok(email) => email,
            Err(error) => return Ok(Sent::Refused(error.to_string())),
        };
        Ok(match self.transport.send(email).await {
            Ok(response) => {
                Sent::Accepted(response.message().next().unwrap_or_default().to_owned())
            }
            Err(error) if error.is_permanent() => Sent::Refused(format!(
                "SMTP {}",
                error.status().map(|c| c.to_string()).unwrap_or_default()
            )),
            Err(error) => Sent::Retry(if error.is_transient() {
                format!(
                    "SMTP {}",
                    error.status().map(|c| c.to_string()).unwrap_or_default()
                )
            } else {
                "no response from the relay".to_owned()
            }),
        })
    }
}

/// Sends due messages: claims each, sends it, records the outcome.
#[derive(Debug, Clone)]
pub struct MessageWorker {
    store: Store,
    directory: Arc<Directory>,
    notify: Option<NotifyClient>,
    smtp: Option<SmtpMailer>,
    delays: Vec<u64>,
}

/// How long a claimed message is held before another instance may take it: well beyond a
/// send's worst case (each SMTP step has its own timeout), so a slow send is not repeated.
const LEASE_MS: i64 = 300_000;

impl MessageWorker {
    pub fn new(
        store: Store,
        directory: Arc<Directory>,
        settings: &kinlink_runtime::settings::NotifierSettings,
    ) -> Result<Self, Error> {
        let timeout = Duration::from_millis(settings.timeout_ms);
        let notify = settings
            .govuk_notify
            .as_ref()
            .map(|s| NotifyClient::new(s, timeout))
            .transpose()?;
        let smtp = settings
            .smtp
            .as_ref()
            .map(|s| SmtpMailer::new(s, timeout))
            .transpose()?;
        for authority in &settings.authorities {
            let needs_notify = !authority.sms.is_empty()
                || (!authority.email.is_empty() && authority.email_via == EmailVia::Notify);
            let needs_smtp = !authority.email.is_empty() && authority.email_via == EmailVia::Smtp;
            if needs_notify && notify.is_none() {
                return Err(Error::Channel {
                    setting: "notifier.govuk_notify",
                    reason: format!(
                        "authority {} sends through GOV.UK Notify, which is not configured",
                        authority.code
                    ),
                });
            }
            if needs_smtp && smtp.is_none() {
                return Err(Error::Channel {
                    setting: "notifier.smtp",
                    reason: format!(
                        "authority {} sends email by SMTP, which is not configured",
                        authority.code
                    ),
                });
            }
        }
        Ok(Self {
            store,
            directory,
            notify,
            smtp,
            delays: settings.retry_delays_ms.clone(),
        })
    }

    /// Runs until shutdown. A failure (the database away, say) is logged and retried after a
    /// pause: the worker never takes the notifier down with it.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), Error> {
        loop {
            let sent = match self.send_due().await {
                Ok(sent) => sent,
                Err(error) => {
                    tracing::error!(%error, "Sending messages failed; trying again shortly.");
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                    continue;
                }
            };
            if sent == 0 {
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            } else if shutdown.is_cancelled() {
                return Ok(());
            }
        }
    }

    /// Sends the messages due now; returns how many were tried.
    pub async fn send_due(&self) -> Result<usize, Error> {
        let now = kinlink_store::now_millis();
        let due = sqlx::query(
            "SELECT notification_id FROM notifications WHERE state = 'pending' AND next_attempt_at_ms <= $1 \
             ORDER BY next_attempt_at_ms LIMIT 20",
        )
        .bind(now)
        .fetch_all(self.store.pool())
        .await?;
        let mut tried = 0;
        for row in &due {
            let id: String = row.try_get("notification_id")?;
            if self.send_one(&id).await? {
                tried += 1;
            }
        }
        Ok(tried)
    }

    /// Claims, sends and records one message; false when another instance claimed it first.
    async fn send_one(&self, id: &str) -> Result<bool, Error> {
        let now = kinlink_store::now_millis();
        let claimed = sqlx::query(
            "UPDATE notifications SET attempts = attempts + 1, next_attempt_at_ms = $1, updated_at_ms = $2 \
             WHERE notification_id = $3 AND state = 'pending' AND next_attempt_at_ms <= $2",
        )
        .bind(now + LEASE_MS)
        .bind(now)
        .bind(id)
        .execute(self.store.pool())
        .await?;
        if claimed.rows_affected() == 0 {
            return Ok(false);
        }
        let row = sqlx::query(
            "SELECT n.alert_id, n.revision, n.channel, n.recipient, n.attempts, a.alert FROM notifications n \
             LEFT JOIN alerts a ON a.alert_id = n.alert_id WHERE n.notification_id = $1",
        )
        .bind(id)
        .fetch_one(self.store.pool())
        .await?;
        let alert_id: String = row.try_get("alert_id")?;
        let revision: i64 = row.try_get("revision")?;
        let channel: String = row.try_get("channel")?;
        let recipient: String = row.try_get("recipient")?;
        let attempts: i64 = row.try_get("attempts")?;
        let bytes: Option<Vec<u8>> = row.try_get("alert")?;
        // A message whose alert is gone or unreadable can never be sent: it fails, it does not
        // stop the worker.
        let alert = bytes
            .ok_or_else(|| "the alert is missing".to_owned())
            .and_then(|b| crate::stored_alert(&alert_id, &b).map_err(|e| e.to_string()));
        let sent = match alert {
            Err(ref reason) => Sent::Refused(reason.clone()),
            Ok(ref alert) => {
                let message = message(alert, &self.directory.public_base_url, revision > 1);
                let outcome = match Channel::parse(&channel) {
                    Some(Channel::SmtpEmail) => match &self.smtp {
                        Some(smtp) => smtp.send(&recipient, &message, id).await,
                        None => Ok(Sent::Refused("SMTP is not configured".to_owned())),
                    },
                    Some(channel) => match &self.notify {
                        Some(notify) => notify.send(channel, &recipient, &message, id, now).await,
                        None => Ok(Sent::Refused("GOV.UK Notify is not configured".to_owned())),
                    },
                    None => Ok(Sent::Refused(format!("unknown channel {channel}"))),
                };
                outcome.unwrap_or_else(|error| Sent::Retry(error.to_string()))
            }
        };
        let authority = alert
            .as_ref()
            .map(|a| a.authority_code.clone())
            .unwrap_or_default();
        let now = kinlink_store::now_millis();
        // After attempt n comes the n-th pause, as for webhooks.
        let retry_index = usize::try_from(attempts - 1).unwrap_or(usize::MAX);
        let (state, next, detail) = match &sent {
            Sent::Accepted(provider_id) => ("sent", now, provider_id.clone()),
            Sent::Retry(reason) => match self.delays.get(retry_index) {
                Some(delay) => (
                    "pending",
                    now + i64::try_from(*delay).unwrap_or(i64::MAX / 2),
                    reason.clone(),
                ),
                None => ("failed", now, reason.clone()),
            },
            Sent::Refused(reason) => ("failed", now, reason.clone()),
        };
        let mut tx = self.store.begin().await?;
        let (error_text, provider_id) = if state == "sent" {
            (String::new(), detail)
        } else {
            (detail, String::new())
        };
        // Fenced on the claim: if this send outlived its lease and another instance claimed
        // the message again, the later claim's outcome stands.
        let recorded = sqlx::query(
            "UPDATE notifications SET state = $1, next_attempt_at_ms = $2, last_error = $3, provider_id = $4, \
             updated_at_ms = $5 WHERE notification_id = $6 AND state = 'pending' AND attempts = $7",
        )
        .bind(state)
        .bind(next)
        .bind(&error_text)
        .bind(&provider_id)
        .bind(now)
        .bind(id)
        .bind(attempts)
        .execute(&mut *tx)
        .await?;
        if state == "failed" && recorded.rows_affected() == 1 {
            // With no webhook, the messages were the authority's only way to hear: if none of
            // this revision's reached anyone, escalate now.
            let webhook = self
                .directory
                .endpoint(&authority)
                .is_some_and(|e| !e.url.is_empty());
            let any_sent = sqlx::query(
                "SELECT 1 FROM notifications WHERE alert_id = $1 AND revision = $2 AND state = 'sent' LIMIT 1",
            )
            .bind(&alert_id)
            .bind(revision)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
            if !webhook && !any_sent {
                crate::escalation::bring_forward(&mut tx, &alert_id, now).await?;
            }
        }
        tx.commit().await?;
        MESSAGES
            .get_or_create(&MessageLabels {
                channel: channel.clone(),
                outcome: match &sent {
                    Sent::Accepted(_) => "sent",
                    Sent::Retry(_) => "retry",
                    Sent::Refused(_) => "refused",
                }
                .to_owned(),
            })
            .inc();
        match &sent {
            Sent::Accepted(_) => {
                tracing::info!(notification_id = id, alert_id = %alert_id, channel = %channel, "Message sent.")
            }
            Sent::Retry(reason) => {
                tracing::warn!(notification_id = id, alert_id = %alert_id, channel = %channel, %reason, state, "Message not sent.")
            }
            Sent::Refused(reason) => {
                tracing::error!(notification_id = id, alert_id = %alert_id, channel = %channel, %reason, "Message refused; not retried.")
            }
        }
        Ok(true)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct MessageLabels {
    channel: String,
    outcome: String,
}

/// Messages by channel and outcome.
pub static MESSAGES: std::sync::LazyLock<
    prometheus_client::metrics::family::Family<
        MessageLabels,
        prometheus_client::metrics::counter::Counter,
    >,
> = std::sync::LazyLock::new(Default::default);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_links_to_the_console_and_holds_no_personal_data() {
        let alert = v1::AlertRaised {
            alert_id: "a-1".into(),
            authority_name: "Kent County Council".into(),
            rag: v1::Rag::Red as i32,
            priority: v1::Priority::Urgent as i32,
            concern: "secret concern".into(),
            sections: vec![v1::AlertSection {
                child: Some(v1::Person {
                    given_name: "Elira".into(),
                    family_name: "Hoxha".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let m = message(&alert, "https://kinlink.example.org/", false);
        let all = format!("{} {} {:?}", m.subject, m.body, m.fields);
        assert!(all.contains("https://kinlink.example.org/console/alerts/a-1"));
        assert!(
            m.subject.contains("Red, urgent for Kent County Council"),
            "{}",
            m.subject
        );
        for private in ["Elira", "Hoxha", "secret concern"] {
            assert!(!all.contains(private), "{private} leaked: {all}");
        }
        assert!(message(&alert, "x", true).subject.contains("Alert updated"));
    }
}
