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

use base64::Engine;
use kinlink_eventlog::{
    EmbeddedLog, EventLog, KafkaConfig, KafkaLog, LogMetrics, MasterKeys, Sealer,
};
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
    let sealer = Sealer::new(master_keys(settings)?);
    let log = match settings.log.backend {
        settings::LogBackend::Embedded => EventLog::Embedded(
            EmbeddedLog::open(store.clone(), settings.log.partitions, metrics, sealer).await?,
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
            EventLog::Kafka(KafkaLog::connect(config, store.clone(), metrics, sealer).await?)
        }
    };
    Ok((store, log))
}

fn decode_key(what: &str, text: &str) -> Result<[u8; 32]> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| Error::Invalid(format!("{what} is not 32 bytes in base64")))
}

fn key_from_env(field: &str, value: &str) -> Result<[u8; 32]> {
    let name = value.strip_prefix("env:").unwrap_or(value);
    let text = std::env::var(name)
        .map_err(|_| Error::Invalid(format!("{field}: environment variable {name} is not set")))?;
    decode_key(&format!("{field} (variable {name})"), &text)
}

/// The master keys from settings: `privacy.master_key` from the environment, else the key
/// file (made with a fresh random key on the embedded default's first start).
pub fn master_keys(settings: &Settings) -> Result<MasterKeys> {
    let privacy = &settings.privacy;
    let current = match (&privacy.master_key, &privacy.master_key_file) {
        (Some(value), _) => key_from_env("privacy.master_key", value)?,
        (None, file) => {
            let path = file
                .clone()
                .unwrap_or_else(|| settings.data_dir.join("master.key"));
            if !path.exists() && file.is_none() {
                std::fs::create_dir_all(&settings.data_dir)?;
                let text = base64::engine::general_purpose::STANDARD.encode(MasterKeys::generate());
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                std::io::Write::write_all(&mut options.open(&path)?, text.as_bytes())?;
                tracing::info!(path = %path.display(), "Made a new master key for sealing personal data.");
            }
            let text = std::fs::read_to_string(&path).map_err(|e| {
                Error::Invalid(format!("privacy.master_key_file {}: {e}", path.display()))
            })?;
            decode_key(&format!("the master key in {}", path.display()), &text)?
        }
    };
    let previous = privacy
        .previous_master_keys
        .iter()
        .map(|value| key_from_env("privacy.previous_master_keys", value))
        .collect::<Result<_>>()?;
    Ok(MasterKeys::new(current, previous))
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
