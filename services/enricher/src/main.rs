//! `kinlink-enricher`: the enricher alone, for the scale-out shape (Kafka + PostgreSQL).
//! Same as `kinlink serve enricher`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = kinlink_runtime::process::config_from_env();
    kinlink_runtime::process::run_service("enricher", config.as_deref(), kinlink_enricher::install)
        .await
        .map_err(|error| anyhow::anyhow!(error))
}
