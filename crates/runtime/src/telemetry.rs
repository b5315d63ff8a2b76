//! Tracing output: human-readable text locally, JSON in production, and optionally
//! OpenTelemetry traces exported over OTLP/HTTP (`telemetry.otlp_endpoint`, off by default).
//! Stage spans take their parent from each event's `traceparent`, so one referral's spans
//! across intake, enricher, alerter and notifier share a trace even across processes.
//! Never log personal data: ids (referral, person, alert, event) and codes only.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::settings::{LogFormat, TelemetrySettings};
use crate::{Error, Result};

/// Keeps the trace exporter alive; dropping it flushes what is buffered.
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("trace exporter did not shut down cleanly: {error}");
        }
    }
}

/// Installs the global subscriber, writing to stderr (stdout is for the CLI's own output).
pub fn init(settings: &TelemetrySettings) -> Result<TelemetryGuard> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.filter))
        .map_err(|e| Error::Telemetry(e.to_string()))?;
    let (otel, provider) = match &settings.otlp_endpoint {
        Some(endpoint) => {
            use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(endpoint)
                .with_headers(Default::default())
                .build()
                .map_err(|e| Error::Telemetry(format!("OTLP exporter: {e}")))?;
            let resource = opentelemetry_sdk::Resource::builder()
                .with_service_name(settings.service_name.clone())
                .build();
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build();
            let tracer = provider.tracer("kinlink");
            (
                Some(tracing_opentelemetry::layer().with_tracer(tracer)),
                Some(provider),
            )
        }
        None => (None, None),
    };
    let registry = tracing_subscriber::registry().with(otel);
    // Colour only on a terminal: files and journald get plain text.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let installed = match settings.format {
        LogFormat::Text => registry.with(fmt.with_filter(filter)).try_init(),
        LogFormat::Json => registry
            .with(fmt.json().flatten_event(true).with_filter(filter))
            .try_init(),
    };
    installed.map_err(|e| Error::Telemetry(e.to_string()))?;
    Ok(TelemetryGuard { provider })
}
