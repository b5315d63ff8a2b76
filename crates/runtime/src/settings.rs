//! Typed, layered settings. Every field has a default, so `kinlink up` needs no file; a TOML
//! file (`--config`) overrides defaults and `KINLINK__SECTION__KEY` environment variables
//! override the file (e.g. `KINLINK__HTTP__ADDRESS=0.0.0.0:8080`). Unknown keys are errors, so
//! a typo does not silently fall back to a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Error, Result};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the embedded store and log live.
    pub data_dir: PathBuf,
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub log: LogSettings,
    pub store: StoreSettings,
    pub intake: IntakeSettings,
    pub enricher: EnricherSettings,
    pub alerter: AlerterSettings,
    pub notifier: NotifierSettings,
    pub ops: OpsSettings,
    pub console: ConsoleSettings,
    pub privacy: PrivacySettings,
}

/// The master key that wraps the per-person data keys sealing personal data in the log
/// (crypto-shredding). Every process of one deployment must use the same key.
#[derive(Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacySettings {
    /// `env:NAME`: a variable holding 32 random bytes in base64 (`head -c 32 /dev/urandom |
    /// base64`). Wins over `master_key_file`.
    pub master_key: Option<String>,
    /// A file holding the key in base64. Unset on the embedded default: `<data_dir>/master.key`,
    /// made on first start (mode 0600). The Kafka backend needs `master_key` or this.
    pub master_key_file: Option<PathBuf>,
    /// Earlier master keys (`env:NAME`), still able to open data keys wrapped before a rotation.
    pub previous_master_keys: Vec<String>,
    pub retention: RetentionSettings,
}

/// How long referrals' personal data is kept (`kinlink retention run` applies it).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// A referral with a child is kept until the youngest child reaches this age.
    pub children_until_age: u32,
    /// A referral with no child is kept this many years after it was received.
    pub adult_only_years: u32,
    /// `kinlink up` and `kinlink serve notifier` apply the policy this often (0: never; run
    /// `kinlink retention run` from a scheduler instead).
    pub run_every_hours: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            children_until_age: 25,
            adult_only_years: 6,
            run_every_hours: 24,
        }
    }
}

impl std::fmt::Debug for PrivacySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivacySettings")
            .field("master_key", &self.master_key)
            .field("master_key_file", &self.master_key_file)
            .field("previous_master_keys", &self.previous_master_keys)
            .field("retention", &self.retention)
            .finish()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            http: HttpSettings::default(),
            telemetry: TelemetrySettings::default(),
            log: LogSettings::default(),
            store: StoreSettings::default(),
            intake: IntakeSettings::default(),
            enricher: EnricherSettings::default(),
            alerter: AlerterSettings::default(),
            notifier: NotifierSettings::default(),
            ops: OpsSettings::default(),
            console: ConsoleSettings::default(),
            privacy: PrivacySettings::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Address of the process's HTTP server (intake API and ops endpoints). Port 0 picks a
    /// free port; the chosen address is printed at start-up.
    pub address: String,
    /// Serve `/metrics` on this address instead (e.g. `10.0.0.5:9090`, reachable only by the
    /// Prometheus network), so the public address does not expose operational figures.
    /// Unset: `/metrics` is served on `address` beside `/livez` and `/readyz`.
    pub metrics_address: Option<String>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:8080".to_owned(),
            metrics_address: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    pub format: LogFormat,
    /// `tracing` filter directives, e.g. `info,kinlink_eventlog=debug`. `RUST_LOG` wins if set.
    pub filter: String,
    /// OTLP/HTTP traces endpoint, e.g. `http://otel-collector:4318/v1/traces`. Unset: off.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of exported spans.
    pub service_name: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".to_owned(),
            otlp_endpoint: None,
            service_name: "kinlink".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogBackend {
    /// Topics inside the store's database: no external service needed.
    Embedded,
    /// Apache Kafka (or a Kafka-protocol broker).
    Kafka,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub backend: LogBackend,
    /// Partitions per topic, for topics created by this process.
    pub partitions: i32,
    pub kafka: KafkaSettings,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            backend: LogBackend::Embedded,
            partitions: 3,
            kafka: KafkaSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    pub brokers: String,
    pub replication_factor: i32,
    /// Consumer groups are named `<group_prefix><stage>`.
    pub group_prefix: String,
    pub produce_timeout_ms: u64,
    /// How clients authenticate and encrypt: TLS and SASL (see [`KafkaSecuritySettings`]).
    pub security: KafkaSecuritySettings,
    /// Extra librdkafka properties, applied last. Secrets are refused here: they come from
    /// the environment through `security`.
    pub options: BTreeMap<String, String>,
    /// Create missing topics (with `log.partitions`) at start-up; turn off where topics are
    /// provisioned separately.
    pub create_topics: bool,
}

/// `security.protocol` of every Kafka client.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum KafkaProtocol {
    /// No TLS, no authentication: a local broker only.
    #[default]
    Plaintext,
    /// TLS; with `certificate_file` and `key_file`, the client is authenticated by its
    /// certificate (mutual TLS).
    Ssl,
    /// SASL without TLS: the password crosses the network in the clear for PLAIN. Refused
    /// unless `allow_plaintext_sasl` is set (a broker on loopback, say).
    SaslPlaintext,
    /// SASL over TLS: what managed Kafka services ask for.
    SaslSsl,
}

impl KafkaProtocol {
    fn property(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// SASL mechanisms kinlink is built for. GSSAPI (Kerberos) and OAUTHBEARER need libraries
/// kinlink is not built with.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    fn property(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// TLS and SASL for the Kafka clients (`[log.kafka.security]`). Secrets are given as
/// `env:NAME` and read from the environment at start-up; an inline secret is refused, so a
/// settings file can be committed and shared.
#[derive(Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSecuritySettings {
    pub protocol: KafkaProtocol,
    /// PEM file of the CA(s) that signed the brokers' certificates. Unset: the system's trust
    /// store (right for managed services with public certificates).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for brokers that authenticate clients by certificate.
    pub certificate_file: Option<PathBuf>,
    /// PEM private key of `certificate_file`.
    pub key_file: Option<PathBuf>,
    /// `env:NAME` of the key's passphrase, when the key file is encrypted.
    pub key_password: Option<String>,
    /// Check that a broker's certificate names the host connected to. Turn off only for a
    /// broker reached through an address its certificate does not name.
    pub verify_hostname: Option<bool>,
    pub sasl_mechanism: Option<SaslMechanism>,
    pub sasl_username: Option<String>,
    /// `env:NAME` of the SASL password.
    pub sasl_password: Option<String>,
    /// Let `sasl_plaintext` start (the password is not encrypted on the way).
    pub allow_plaintext_sasl: bool,
}

impl std::fmt::Debug for KafkaSecuritySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSecuritySettings")
            .field("protocol", &self.protocol)
            .field("ca_file", &self.ca_file)
            .field("certificate_file", &self.certificate_file)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .finish_non_exhaustive()
    }
}

/// librdkafka properties that carry secrets: never taken from `log.kafka.options`.
const SECRET_KAFKA_OPTIONS: &[&str] = &[
    "sasl.password",
    "ssl.key.password",
    "ssl.keystore.password",
    "ssl.key.pem",
    "ssl_key",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.config",
];

/// librdkafka properties that `[log.kafka.security]` sets (and checks): not taken from
/// `log.kafka.options`, so one place says how kinlink connects.
const MANAGED_KAFKA_OPTIONS: &[&str] = &[
    "security.protocol",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.endpoint.identification.algorithm",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
];

impl KafkaSecuritySettings {
    /// The checks that need no environment: what is missing or contradicts, by field name.
    fn validate(&self) -> Result<()> {
        let field = |name: &str| format!("log.kafka.security.{name}");
        let protocol = self.protocol;
        if !protocol.uses_tls() {
            for (name, given) in [
                ("ca_file", self.ca_file.is_some()),
                ("certificate_file", self.certificate_file.is_some()),
                ("key_file", self.key_file.is_some()),
                ("verify_hostname", self.verify_hostname.is_some()),
            ] {
                if given {
                    return Err(Error::Invalid(format!(
                        "{} is set but protocol = \"{}\" does not use TLS",
                        field(name),
                        protocol.property()
                    )));
                }
            }
        }
        if self.certificate_file.is_some() != self.key_file.is_some() {
            return Err(Error::Invalid(format!(
                "{} and {} go together (a client certificate and its key)",
                field("certificate_file"),
                field("key_file")
            )));
        }
        if self.key_password.is_some() && self.key_file.is_none() {
            return Err(Error::Invalid(format!(
                "{} is set without {}",
                field("key_password"),
                field("key_file")
            )));
        }
        if protocol.uses_sasl() {
            if self.sasl_mechanism.is_none() {
                return Err(Error::Invalid(format!(
                    "{} is required with protocol = \"{}\" (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)",
                    field("sasl_mechanism"),
                    protocol.property()
                )));
            }
            if self.sasl_username.as_deref().is_none_or(str::is_empty) {
                return Err(Error::Invalid(format!(
                    "{} is required with protocol = \"{}\"",
                    field("sasl_username"),
                    protocol.property()
                )));
            }
            if self.sasl_password.is_none() {
                return Err(Error::Invalid(format!(
                    "{} is required with protocol = \"{}\" (as env:NAME)",
                    field("sasl_password"),
                    protocol.property()
                )));
            }
            if protocol == KafkaProtocol::SaslPlaintext && !self.allow_plaintext_sasl {
                return Err(Error::Invalid(format!(
                    "{} = \"sasl_plaintext\" sends credentials unencrypted; use \"sasl_ssl\", or set {} for a broker on a trusted network",
                    field("protocol"),
                    field("allow_plaintext_sasl")
                )));
            }
        } else {
            for (name, given) in [
                ("sasl_mechanism", self.sasl_mechanism.is_some()),
                ("sasl_username", self.sasl_username.is_some()),
                ("sasl_password", self.sasl_password.is_some()),
            ] {
                if given {
                    return Err(Error::Invalid(format!(
                        "{} is set but protocol = \"{}\" does not use SASL",
                        field(name),
                        protocol.property()
                    )));
                }
            }
        }
        for (name, secret) in [
            ("sasl_password", &self.sasl_password),
            ("key_password", &self.key_password),
        ] {
            if let Some(secret) = secret
                && secret.strip_prefix("env:").is_none_or(str::is_empty)
            {
                return Err(Error::Invalid(format!(
                    "{} must be env:NAME (secrets are read from the environment, never written in settings)",
                    field(name)
                )));
            }
        }
        Ok(())
    }

    /// The librdkafka properties these settings stand for, with secrets read from the
    /// environment through `env` (a variable's name, never its value, appears in errors).
    pub fn client_properties(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<BTreeMap<String, String>> {
        self.validate()?;
        // Files are checked here, on the machine that connects, not where settings are linted.
        for (name, path) in [
            ("ca_file", &self.ca_file),
            ("certificate_file", &self.certificate_file),
            ("key_file", &self.key_file),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                return Err(Error::Invalid(format!(
                    "log.kafka.security.{name} = {} is not a readable file",
                    path.display()
                )));
            }
        }
        let secret = |name: &str, reference: &str| -> Result<String> {
            let variable = reference.strip_prefix("env:").unwrap_or(reference);
            env(variable).filter(|value| !value.is_empty()).ok_or_else(|| {
                Error::Invalid(format!(
                    "log.kafka.security.{name} reads the environment variable {variable}, which is not set"
                ))
            })
        };
        let mut properties = BTreeMap::new();
        let mut set = |key: &str, value: String| {
            properties.insert(key.to_owned(), value);
        };
        set("security.protocol", self.protocol.property().to_owned());
        if self.protocol.uses_tls() {
            let verify = self.verify_hostname.unwrap_or(true);
            set(
                "ssl.endpoint.identification.algorithm",
                if verify { "https" } else { "none" }.to_owned(),
            );
            if let Some(ca) = &self.ca_file {
                set("ssl.ca.location", ca.display().to_string());
            }
            if let (Some(certificate), Some(key)) = (&self.certificate_file, &self.key_file) {
                set(
                    "ssl.certificate.location",
                    certificate.display().to_string(),
                );
                set("ssl.key.location", key.display().to_string());
            }
            if let Some(reference) = &self.key_password {
                set("ssl.key.password", secret("key_password", reference)?);
            }
        }
        if self.protocol.uses_sasl()
            && let (Some(mechanism), Some(username), Some(reference)) = (
                self.sasl_mechanism,
                &self.sasl_username,
                &self.sasl_password,
            )
        {
            set("sasl.mechanism", mechanism.property().to_owned());
            set("sasl.username", username.clone());
            set("sasl.password", secret("sasl_password", reference)?);
        }
        Ok(properties)
    }
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".to_owned(),
            replication_factor: 1,
            group_prefix: "kinlink-".to_owned(),
            produce_timeout_ms: 30_000,
            security: KafkaSecuritySettings::default(),
            options: BTreeMap::new(),
            create_topics: true,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// `postgres://...` or `sqlite://...`; unset means `<data_dir>/kinlink.db`.
    pub url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntakeSettings {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Registered agencies: how an authority reaches the referrer (a role mailbox or phone,
    /// never a person's name), given in full alert payloads.
    pub agencies: Vec<AgencyRegistration>,
    /// Consume the shared `kinlink.intake.submissions` topic, where the CloudEvents `source`
    /// alone names the agency. Turn off once every streaming agency has its own topic.
    pub shared_submissions_topic: bool,
}

impl Default for IntakeSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            agencies: Vec::new(),
            shared_submissions_topic: true,
        }
    }
}

impl IntakeSettings {
    /// Agencies that stream on their own topic (`own_submissions_topic`).
    pub fn agencies_with_own_topic(&self) -> impl Iterator<Item = &str> {
        self.agencies
            .iter()
            .filter(|a| a.own_submissions_topic)
            .map(|a| a.id.as_str())
    }
}

/// One referring agency's registration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgencyRegistration {
    /// The id its API tokens are bound to.
    pub id: String,
    pub name: String,
    /// A role mailbox (e.g. the force's modern-slavery unit), not a person's address.
    pub contact_mailbox: Option<String>,
    pub contact_phone: Option<String>,
    /// The agency streams referrals on `kinlink.intake.submissions.<id>`, a topic only its
    /// Kafka principal may write (broker ACLs): intake takes the topic, not the event's
    /// `source`, as the agency, and refuses this agency's `source` on the shared topic.
    #[serde(default)]
    pub own_submissions_topic: bool,
}

/// Person linkage. Without a model file the shipped model (`default-v1`) is used; the
/// thresholds override the model's own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnricherSettings {
    /// A model written by `kinlink model train`.
    pub model_path: Option<PathBuf>,
    /// Match probability at or above which a record links automatically.
    pub link_threshold: Option<f64>,
    /// Match probability at or above which (and below the link threshold) a review task is
    /// opened and nothing is merged.
    pub review_threshold: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlerterSettings {
    /// A child on another referral within this many days raises `repeat_referral`.
    pub repeat_window_days: u32,
    /// How long an alert may wait in the triage queue for a person to route it before kinlink
    /// on-call is paged, by priority (wall-clock minutes).
    pub triage_sla: TriageSlaSettings,
    /// Earlier single triage SLA for every priority; when set it overrides `triage_sla`.
    pub triage_sla_minutes: Option<u32>,
    /// Acknowledgement deadlines for every authority without an override.
    pub deadlines: DeadlineSettings,
    /// Per-authority deadline overrides.
    pub authority_deadlines: Vec<AuthorityDeadlines>,
}

impl Default for AlerterSettings {
    fn default() -> Self {
        Self {
            repeat_window_days: 365,
            triage_sla: TriageSlaSettings::default(),
            triage_sla_minutes: None,
            deadlines: DeadlineSettings::default(),
            authority_deadlines: Vec::new(),
        }
    }
}

/// Triage SLA by priority, in wall-clock minutes.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TriageSlaSettings {
    pub red_minutes: u32,
    pub amber_minutes: u32,
    pub green_minutes: u32,
}

impl Default for TriageSlaSettings {
    fn default() -> Self {
        Self {
            red_minutes: 15,
            amber_minutes: 60,
            green_minutes: 240,
        }
    }
}

/// Red is wall-clock time (24/7); amber and green count working time (09:00–17:00 UK time,
/// Monday to Friday, England and Wales bank holidays excluded).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeadlineSettings {
    pub red_minutes: u32,
    pub amber_working_minutes: u32,
    pub green_working_days: u32,
}

impl Default for DeadlineSettings {
    fn default() -> Self {
        Self {
            red_minutes: 60,
            amber_working_minutes: 240,
            green_working_days: 1,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorityDeadlines {
    /// Code of the children's-services body.
    pub code: String,
    pub red_minutes: u32,
    pub amber_working_minutes: u32,
    pub green_working_days: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifierSettings {
    /// Where each authority receives alerts.
    pub authorities: Vec<AuthorityEndpoint>,
    /// Base URL of this deployment's API, for the link in each webhook to the alert's full
    /// content (`<base>/v1/alerts/<id>`). Empty (the default): `http://` and the address this
    /// process listens on, once bound (so `--address 127.0.0.1:0` links to the real port).
    pub public_base_url: String,
    /// Seconds after an unacknowledged alert's deadline before kinlink on-call is paged
    /// (the authority's secondary contact is tried at the deadline itself).
    pub on_call_after_seconds: u64,
    /// kinlink on-call: a PagerDuty Events API v2 compatible endpoint.
    pub on_call: OnCallSettings,
    /// Per-request timeout of a webhook delivery.
    pub timeout_ms: u64,
    /// Pause before each retry of a failed delivery, in order; exhausted means failed.
    /// Messages (email, SMS) follow the same schedule.
    pub retry_delays_ms: Vec<u64>,
    /// Webhook requests the delivery worker has in flight at once, in all.
    pub delivery_concurrency: usize,
    /// Webhook requests in flight at once to one authority's endpoint, so a burst does not
    /// overwhelm a council's receiver.
    pub per_endpoint_concurrency: usize,
    /// GOV.UK Notify, for authorities' `email` (with `email_via = "notify"`) and `sms`.
    pub govuk_notify: Option<GovukNotifySettings>,
    /// An SMTP relay, for authorities' `email` with `email_via = "smtp"`.
    pub smtp: Option<SmtpSettings>,
}

/// How an authority's email goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailVia {
    /// GOV.UK Notify (`notifier.govuk_notify`).
    #[default]
    Notify,
    /// The SMTP relay (`notifier.smtp`).
    Smtp,
}

/// GOV.UK Notify: the service UK public bodies use to send email and text messages.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovukNotifySettings {
    /// The API key (`name-<service id>-<secret>`), or `env:NAME` (keep it out of files).
    pub api_key: String,
    #[serde(default = "notify_base_url")]
    pub base_url: String,
    /// The email template; its fields: kind, authority, rating, priority, children,
    /// deadline, link.
    #[serde(default)]
    pub email_template_id: String,
    /// The text message template, with the same fields.
    #[serde(default)]
    pub sms_template_id: String,
}

fn notify_base_url() -> String {
    "https://api.notifications.service.gov.uk".to_owned()
}

impl std::fmt::Debug for GovukNotifySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GovukNotifySettings")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Transport security to an SMTP relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (port 587); refused if the relay cannot.
    #[default]
    Starttls,
    /// TLS from the start (port 465).
    Tls,
    /// No TLS: only to a relay on localhost.
    None,
}

/// A council's own SMTP relay.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    #[serde(default = "smtp_port")]
    pub port: u16,
    #[serde(default)]
    pub security: SmtpSecurity,
    #[serde(default)]
    pub username: Option<String>,
    /// The password, or `env:NAME`.
    #[serde(default)]
    pub password: Option<String>,
    /// The sender, e.g. `kinlink <kinlink@council.gov.uk>`.
    pub from: String,
}

fn smtp_port() -> u16 {
    587
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .finish_non_exhaustive()
    }
}

impl Default for NotifierSettings {
    fn default() -> Self {
        Self {
            authorities: Vec::new(),
            public_base_url: String::new(),
            on_call_after_seconds: 1800,
            on_call: OnCallSettings::default(),
            timeout_ms: 15_000,
            retry_delays_ms: vec![
                0, 5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000,
            ],
            delivery_concurrency: 32,
            per_endpoint_concurrency: 4,
            govuk_notify: None,
            smtp: None,
        }
    }
}

/// A secret as settings give it: inline, or `env:NAME` to read it from the environment (so
/// secrets stay out of files). `Err` carries the name of the unset variable, never a value.
pub fn secret_value(value: &str) -> std::result::Result<String, String> {
    match value.strip_prefix("env:") {
        Some(name) => std::env::var(name).map_err(|_| name.to_owned()),
        None => Ok(value.to_owned()),
    }
}

/// The web console (`/console`): sessions and sign-in.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleSettings {
    /// Serve the console at all.
    pub enabled: bool,
    /// A session unused for this long must sign in again.
    pub idle_timeout_minutes: u64,
    /// Session cookies carry `Secure` (browsers still send them to http://localhost). Turn off
    /// only behind a proxy that terminates TLS and rewrites cookies.
    pub secure_cookies: bool,
    /// Failed sign-ins in a row before an account is locked.
    pub lockout_after_failures: u32,
    /// How long a locked account stays locked.
    pub lockout_minutes: u64,
    /// Serve GDS Transport (the GOV.UK typeface): only for services on a gov.uk domain, as its
    /// licence says. Otherwise pages use the Design System's fallback (Arial).
    pub gds_transport_font: bool,
    /// The console's public address (e.g. `https://kinlink.example.org`), for the redirect
    /// URIs registered with OpenID Connect providers. Empty: the request's host, over http.
    pub public_url: String,
    /// OpenID Connect providers people may sign in with, besides local passwords.
    pub oidc: Vec<OidcProvider>,
}

/// One OpenID Connect provider (a council's Microsoft Entra ID tenant, say). Register the
/// redirect URI `<public_url>/console/oidc/<name>/callback` with it.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProvider {
    /// Short name, in URLs: letters, digits and '-'.
    pub name: String,
    /// On the sign-in button, e.g. "Kent County Council".
    pub label: String,
    /// The issuer; its `/.well-known/openid-configuration` is read at sign-in.
    pub issuer: String,
    pub client_id: String,
    /// The client secret, or `env:NAME` (keep it out of files).
    pub client_secret: String,
    /// The authority whose staff sign in here; empty for kinlink's own operators and reviewers.
    #[serde(default)]
    pub authority: String,
    /// The ID token claim that is the kinlink username (default `email`).
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
}

fn default_username_claim() -> String {
    "email".to_owned()
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            idle_timeout_minutes: 30,
            secure_cookies: true,
            lockout_after_failures: 5,
            lockout_minutes: 15,
            gds_transport_font: false,
            public_url: String::new(),
            oidc: Vec::new(),
        }
    }
}

/// Operations: the operators' API token and the sampled health gauges.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpsSettings {
    /// Bearer token for `/v1/triage`. Give it through the environment
    /// (`KINLINK__OPS__API_TOKEN`), never in a committed file. Unset: the API is disabled.
    pub api_token: Option<String>,
    /// How often lag, triage and alert gauges are sampled for `/metrics`.
    pub sample_interval_ms: u64,
    /// A stage with lag and no progress for this long is stalled.
    pub stalled_after_seconds: u64,
}

impl Default for OpsSettings {
    fn default() -> Self {
        Self {
            api_token: None,
            sample_interval_ms: 15_000,
            stalled_after_seconds: 300,
        }
    }
}

impl std::fmt::Debug for OpsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpsSettings")
            .field("api_token", &self.api_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorityEndpoint {
    /// GSS code of the body running children's services, e.g. `E10000016`.
    pub code: String,
    /// Where alerts are posted; empty when the authority has no webhook receiver (it then
    /// hears by `email` and `sms`).
    #[serde(default)]
    pub webhook_url: String,
    /// Standard Webhooks secrets, each as `env:NAME` (a variable holding `whsec_...`; a
    /// secret written into settings is refused). Every secret signs, so a rotation lists the
    /// old and the new.
    #[serde(default)]
    pub signing_secrets: Vec<String>,
    /// Secondary / out-of-hours contact, alerted when the deadline passes unacknowledged.
    #[serde(default)]
    pub secondary_webhook_url: Option<String>,
    /// Send the child's details (names, date of birth, locations) in webhooks. Off by default:
    /// the thin payload carries ids and a link, and the authority fetches the rest with its
    /// API token.
    #[serde(default)]
    pub full_payload: bool,
    /// Overrides `notifier.on_call_after_seconds` for this authority.
    #[serde(default)]
    pub on_call_after_seconds: Option<u64>,
    /// Duty mailboxes told of each new, amended or routed alert (no personal data: a link).
    #[serde(default)]
    pub email: Vec<String>,
    /// Duty phone numbers texted through GOV.UK Notify, likewise.
    #[serde(default)]
    pub sms: Vec<String>,
    /// `notify` (default) or `smtp`.
    #[serde(default)]
    pub email_via: EmailVia,
}

impl AuthorityEndpoint {
    /// Personal data travels only over TLS, and secrets never sit in a settings file:
    /// an endpoint on `full_payload` (names, dates of birth, locations) must be `https`
    /// unless it is on this machine's loopback (a receiver in a test or a local relay), and
    /// every signing secret must be `env:NAME`, so a leaked or committed config file holds
    /// no key that forges alerts.
    fn validate_transport(&self) -> Result<()> {
        if self.full_payload {
            for (field, url) in [
                ("webhook_url", Some(self.webhook_url.as_str())),
                (
                    "secondary_webhook_url",
                    self.secondary_webhook_url.as_deref(),
                ),
            ] {
                if let Some(url) = url.filter(|u| !u.is_empty())
                    && !url.starts_with("https://")
                    && !is_loopback_http(url)
                {
                    return Err(Error::Invalid(format!(
                        "notifier.authorities[{}].{field}: an endpoint with full_payload = true receives children's details and must be https (plain http only to a loopback address)",
                        self.code
                    )));
                }
            }
        }
        for (index, secret) in self.signing_secrets.iter().enumerate() {
            if !secret.starts_with("env:") {
                return Err(Error::Invalid(format!(
                    "notifier.authorities[{}].signing_secrets[{index}]: give the secret as env:NAME (a variable holding whsec_...); secrets written into settings are refused",
                    self.code
                )));
            }
        }
        Ok(())
    }
}

/// Whether `url` is `http://` to a loopback host (`localhost`, `127.0.0.0/8`, `[::1]`).
fn is_loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return false;
    }
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[derive(Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnCallSettings {
    /// e.g. `https://events.pagerduty.com/v2/enqueue`. Unset: on-call escalation is logged
    /// as failed, which the `kinlink_notifier_escalations_total{outcome="failed"}` alert catches.
    pub events_url: Option<String>,
    /// Integration routing key (`env:NAME` reads it from the environment).
    pub routing_key: Option<String>,
}

impl std::fmt::Debug for OnCallSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnCallSettings")
            .field("events_url", &self.events_url)
            .field(
                "routing_key",
                &self.routing_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Settings {
    /// Defaults, then `file` if given, then `KINLINK__*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            if !path.exists() {
                return Err(Error::Invalid(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("KINLINK")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Cross-field rules that types cannot express.
    pub fn validate(&self) -> Result<()> {
        let enricher = &self.enricher;
        for (name, value) in [
            ("enricher.link_threshold", enricher.link_threshold),
            ("enricher.review_threshold", enricher.review_threshold),
        ] {
            if value.is_some_and(|v| !(v > 0.0 && v <= 1.0)) {
                return Err(Error::Invalid(format!(
                    "{name} must be a probability above 0 and at most 1"
                )));
            }
        }
        if let (Some(link), Some(review)) = (enricher.link_threshold, enricher.review_threshold)
            && review > link
        {
            return Err(Error::Invalid(
                "enricher.review_threshold must not be above enricher.link_threshold".to_owned(),
            ));
        }
        if self.log.partitions < 1 {
            return Err(Error::Invalid(
                "log.partitions must be at least 1".to_owned(),
            ));
        }
        self.log.kafka.security.validate()?;
        for agency in &self.intake.agencies {
            if agency.own_submissions_topic
                && !kinlink_eventlog::topics::valid_topic_suffix(&agency.id)
            {
                return Err(Error::Invalid(format!(
                    "intake.agencies id {:?}: own_submissions_topic needs an id of letters, digits, '.', '_' or '-' (it names a Kafka topic)",
                    agency.id
                )));
            }
        }
        for key in self.log.kafka.options.keys() {
            if SECRET_KAFKA_OPTIONS.contains(&key.as_str()) {
                return Err(Error::Invalid(format!(
                    "log.kafka.options.\"{key}\" is a secret: give it through log.kafka.security as env:NAME"
                )));
            }
            if MANAGED_KAFKA_OPTIONS.contains(&key.as_str()) {
                return Err(Error::Invalid(format!(
                    "log.kafka.options.\"{key}\": TLS and SASL are set in log.kafka.security, which checks them at start-up"
                )));
            }
        }
        for (field, value) in
            std::iter::once(("privacy.master_key", self.privacy.master_key.as_ref())).chain(
                self.privacy
                    .previous_master_keys
                    .iter()
                    .map(|k| ("privacy.previous_master_keys", Some(k))),
            )
        {
            if value.is_some_and(|v| !v.starts_with("env:")) {
                return Err(Error::Invalid(format!(
                    "{field}: give the key as env:NAME (a variable holding it in base64); keys written into settings are refused"
                )));
            }
        }
        if self.privacy.retention.children_until_age < 18 {
            return Err(Error::Invalid(
                "privacy.retention.children_until_age must be at least 18".to_owned(),
            ));
        }
        if (self.log.backend == LogBackend::Kafka || self.store.url.is_some())
            && self.privacy.master_key.is_none()
            && self.privacy.master_key_file.is_none()
        {
            return Err(Error::Invalid(
                "a shared store (store.url) or the Kafka log needs privacy.master_key (env:NAME) or privacy.master_key_file: every instance must seal personal data with the same key"
                    .to_owned(),
            ));
        }
        if self.log.backend == LogBackend::Kafka && self.store.url.is_none() {
            return Err(Error::Invalid(
                "log.backend = \"kafka\" needs store.url (PostgreSQL) shared by every instance"
                    .to_owned(),
            ));
        }
        for provider in &self.console.oidc {
            if provider.name.is_empty()
                || !provider
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                return Err(Error::Invalid(format!(
                    "console.oidc[{}].name must be letters, digits and '-'",
                    provider.name
                )));
            }
        }
        for endpoint in &self.notifier.authorities {
            endpoint.validate_transport()?;
            let no_webhook = endpoint.webhook_url.is_empty();
            if !no_webhook
                && !endpoint.webhook_url.starts_with("http://")
                && !endpoint.webhook_url.starts_with("https://")
            {
                return Err(Error::Invalid(format!(
                    "notifier.authorities[{}].webhook_url must be an http(s) URL",
                    endpoint.code
                )));
            }
            if no_webhook && endpoint.email.is_empty() && endpoint.sms.is_empty() {
                return Err(Error::Invalid(format!(
                    "notifier.authorities[{}]: give a webhook_url, or email or sms to tell the authority by",
                    endpoint.code
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example files in `deploy/` are real settings: they parse (unknown keys are errors)
    /// and validate.
    #[test]
    fn deploy_examples_are_valid_settings() -> Result<()> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let scale_out = Settings::load(Some(&root.join("deploy/config/scale-out.example.toml")))?;
        scale_out.validate()?;
        assert_eq!(scale_out.log.backend, LogBackend::Kafka);
        assert_eq!(scale_out.enricher.link_threshold, Some(0.95));
        Settings::load(Some(&root.join("deploy/compose/kinlink.toml")))?.validate()?;
        Ok(())
    }

    fn sasl_ssl() -> KafkaSecuritySettings {
        KafkaSecuritySettings {
            protocol: KafkaProtocol::SaslSsl,
            sasl_mechanism: Some(SaslMechanism::ScramSha512),
            sasl_username: Some("kinlink-enricher".to_owned()),
            sasl_password: Some("env:TEST_KAFKA_PASSWORD".to_owned()),
            ..KafkaSecuritySettings::default()
        }
    }

    fn message(result: Result<BTreeMap<String, String>>) -> String {
        result.err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn kafka_security_becomes_librdkafka_properties_with_the_secret_from_the_environment()
    -> Result<()> {
        let properties = sasl_ssl().client_properties(|name| {
            (name == "TEST_KAFKA_PASSWORD").then(|| "s3cret-value".to_owned())
        })?;
        let expected: BTreeMap<String, String> = [
            ("security.protocol", "sasl_ssl"),
            ("ssl.endpoint.identification.algorithm", "https"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "kinlink-enricher"),
            ("sasl.password", "s3cret-value"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(properties, expected);
        // Plaintext (the default) sets only the protocol.
        let plain = KafkaSecuritySettings::default().client_properties(|_| None)?;
        assert_eq!(plain.len(), 1);
        assert_eq!(plain["security.protocol"], "plaintext");
        Ok(())
    }

    #[test]
    fn kafka_secrets_never_come_from_settings_and_errors_never_show_them() {
        let unset = message(sasl_ssl().client_properties(|_| None));
        assert!(unset.contains("TEST_KAFKA_PASSWORD"), "{unset}");
        assert!(
            unset.contains("log.kafka.security.sasl_password"),
            "{unset}"
        );

        let mut inline = sasl_ssl();
        inline.sasl_password = Some("hunter2-inline".to_owned());
        let refused = message(inline.client_properties(|_| None));
        assert!(refused.contains("must be env:NAME"), "{refused}");
        assert!(!refused.contains("hunter2"), "{refused}");

        let mut settings = Settings::default();
        settings
            .log
            .kafka
            .options
            .insert("sasl.password".to_owned(), "hunter2".to_owned());
        let refused = settings.validate().err().map(|e| e.to_string());
        assert!(
            refused.as_deref().is_some_and(
                |e| e.contains("\"sasl.password\" is a secret") && !e.contains("hunter2")
            ),
            "{refused:?}"
        );
        let mut settings = Settings::default();
        settings
            .log
            .kafka
            .options
            .insert("security.protocol".to_owned(), "SASL_SSL".to_owned());
        assert!(settings.validate().is_err());
    }

    #[test]
    fn kafka_security_names_the_field_that_is_missing_or_contradicts() {
        let cases: Vec<(KafkaSecuritySettings, &str)> = vec![
            (
                KafkaSecuritySettings {
                    sasl_mechanism: None,
                    ..sasl_ssl()
                },
                "sasl_mechanism is required",
            ),
            (
                KafkaSecuritySettings {
                    sasl_username: None,
                    ..sasl_ssl()
                },
                "sasl_username is required",
            ),
            (
                KafkaSecuritySettings {
                    protocol: KafkaProtocol::SaslPlaintext,
                    ..sasl_ssl()
                },
                "allow_plaintext_sasl",
            ),
            (
                KafkaSecuritySettings {
                    protocol: KafkaProtocol::Ssl,
                    ..sasl_ssl()
                },
                "does not use SASL",
            ),
            (
                KafkaSecuritySettings {
                    ca_file: Some(PathBuf::from("/no/such/ca.pem")),
                    ..sasl_ssl()
                },
                "log.kafka.security.ca_file = /no/such/ca.pem is not a readable file",
            ),
            (
                KafkaSecuritySettings {
                    protocol: KafkaProtocol::Plaintext,
                    ca_file: Some(PathBuf::from("/no/such/ca.pem")),
                    ..KafkaSecuritySettings::default()
                },
                "does not use TLS",
            ),
            (
                KafkaSecuritySettings {
                    protocol: KafkaProtocol::Ssl,
                    key_file: Some(PathBuf::from("/no/such/key.pem")),
                    ..KafkaSecuritySettings::default()
                },
                "certificate_file and log.kafka.security.key_file go together",
            ),
        ];
        for (settings, expected) in cases {
            let error = message(settings.client_properties(|_| Some("x".to_owned())));
            assert!(error.contains(expected), "{expected:?} not in {error:?}");
        }
        let allowed = KafkaSecuritySettings {
            protocol: KafkaProtocol::SaslPlaintext,
            allow_plaintext_sasl: true,
            ..sasl_ssl()
        };
        assert!(allowed.client_properties(|_| Some("x".to_owned())).is_ok());
    }

    fn endpoint(url: &str, full_payload: bool, secrets: &[&str]) -> AuthorityEndpoint {
        AuthorityEndpoint {
            code: "E09000033".to_owned(),
            webhook_url: url.to_owned(),
            signing_secrets: secrets.iter().map(|s| (*s).to_owned()).collect(),
            secondary_webhook_url: None,
            full_payload,
            on_call_after_seconds: None,
            email: vec![],
            sms: vec![],
            email_via: EmailVia::default(),
        }
    }

    fn refusal(endpoint: AuthorityEndpoint) -> Option<String> {
        let mut settings = Settings::default();
        settings.notifier.authorities.push(endpoint);
        settings.validate().err().map(|e| e.to_string())
    }

    #[test]
    fn full_payloads_go_only_over_https_or_loopback() {
        for url in [
            "https://council.example.org/alerts",
            "http://127.0.0.1:9000/w",
            "http://localhost/w",
            "http://[::1]:8080/w",
        ] {
            assert_eq!(refusal(endpoint(url, true, &[])), None, "{url}");
        }
        for url in [
            "http://council.example.org/alerts",
            "http://10.1.2.3/alerts",
            "http://127.0.0.1.evil.example/w",
            "http://127.0.0.1@council.example.org/w",
        ] {
            let error = refusal(endpoint(url, true, &[])).unwrap_or_default();
            assert!(
                error.contains("webhook_url") && error.contains("https"),
                "{url}: {error}"
            );
        }
        // A thin payload (ids and a link) may use plain http inside a private network.
        assert_eq!(
            refusal(endpoint("http://webhook-sink:9000/w", false, &[])),
            None
        );
        let mut secondary = endpoint("https://council.example.org/alerts", true, &[]);
        secondary.secondary_webhook_url = Some("http://out-of-hours.example.org".to_owned());
        let error = refusal(secondary).unwrap_or_default();
        assert!(error.contains("secondary_webhook_url"), "{error}");
    }

    #[test]
    fn signing_secrets_written_into_settings_are_refused_without_echoing_them() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let error =
            refusal(endpoint("https://c.example.org", false, &[secret])).unwrap_or_default();
        assert!(
            error.contains("signing_secrets[0]") && error.contains("env:NAME"),
            "{error}"
        );
        assert!(!error.contains("MfKQ9r8"), "{error}");
        assert_eq!(
            refusal(endpoint(
                "https://c.example.org",
                false,
                &["env:WESTMINSTER_SECRET"]
            )),
            None
        );
    }

    #[test]
    fn linkage_thresholds_must_be_probabilities_in_order() {
        let mut settings = Settings::default();
        settings.enricher.link_threshold = Some(0.6);
        settings.enricher.review_threshold = Some(0.8);
        let error = settings.validate().err().map(|e| e.to_string());
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.contains("enricher.review_threshold")),
            "{error:?}"
        );
        settings.enricher.review_threshold = Some(0.0);
        assert!(settings.validate().is_err());
        settings.enricher.review_threshold = Some(0.5);
        assert!(settings.validate().is_ok());
    }
}
