//! Tracing output: human-readable text locally, JSON in production. Never log personal data:
//! log ids (referral, person, alert, event) and codes only.

use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, TelemetrySettings};
use crate::{Error, Result};

/// Installs the global subscriber, writing to stderr (stdout is for the CLI's own output).
pub fn init(settings: &TelemetrySettings) -> Result<()> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.filter))
        .map_err(|e| Error::Telemetry(e.to_string()))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match settings.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|e| Error::Telemetry(e.to_string()))
}
