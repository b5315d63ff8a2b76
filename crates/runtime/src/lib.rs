//! What every kinlink process shares.
//!
//! - [`settings`]: typed, layered configuration (defaults, then a TOML file, then
//!   `KINLINK__SECTION__KEY` environment variables).
//! - [`telemetry`]: tracing output as text (local) or JSON (production).
//! - [`http`]: problem+json errors, bearer tokens and their OpenAPI security schemes, for
//!   every API.
//! - [`ops_http`]: `/livez`, `/readyz` and `/metrics` for every HTTP-serving process.
//! - [`open_backends`]: the store and event log a process runs on, from settings.
//! - [`shutdown_on_signal`]: SIGINT/SIGTERM cancel one token that every task watches.

pub mod http;
pub mod ops_http;
pub mod process;
pub mod settings;
pub mod telemetry;

use kinlink_eventlog::{EmbeddedLog, EventLog, KafkaConfig, KafkaLog, LogMetrics};
use kinlink_store::Store;
use tokio_util::sync::CancellationToken;

pub use process::Process;
pub use settings::Settings;

/// Errors of process start-up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(#[from] config::ConfigError),
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("telemetry: {0}")]
    Telemetry(String),
    #[error(transparent)]
    Store(#[from] kinlink_store::Error),
    #[error(transparent)]
    Log(#[from] kinlink_eventlog::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Opens the store and the event log the settings ask for.
pub async fn open_backends(settings: &Settings, metrics: LogMetrics) -> Result<(Store, EventLog)> {
    let store = match &settings.store.url {
        Some(url) => Store::connect(url).await?,
        None => Store::open_embedded(&settings.data_dir).await?,
    };
    let log = match settings.log.backend {
        settings::LogBackend::Embedded => EventLog::Embedded(
            EmbeddedLog::open(store.clone(), settings.log.partitions, metrics).await?,
        ),
        settings::LogBackend::Kafka => {
            let kafka = &settings.log.kafka;
            // TLS and SASL first (secrets read from the environment now), then the extra
            // options, which validation keeps off the security properties.
            let mut client_options = kafka
                .security
                .client_properties(|name| std::env::var(name).ok())?;
            client_options.extend(kafka.options.clone());
            let config = KafkaConfig {
                brokers: kafka.brokers.clone(),
                partitions: settings.log.partitions,
                replication_factor: kafka.replication_factor,
                group_prefix: kafka.group_prefix.clone(),
                produce_timeout: std::time::Duration::from_millis(kafka.produce_timeout_ms),
                client_options,
                create_topics: kafka.create_topics,
            };
            EventLog::Kafka(KafkaLog::connect(config, store.clone(), metrics).await?)
        }
    };
    Ok((store, log))
}

/// Cancels `token` on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_on_signal(token: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "Cannot listen for SIGTERM; only Ctrl-C stops the process.");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("Shutdown requested: draining.");
    token.cancel();
}
