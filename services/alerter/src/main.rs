//! `kinlink-alerter`: the alerter alone, for the scale-out shape (Kafka + PostgreSQL).
//! Same as `kinlink serve alerter`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = kinlink_runtime::process::config_from_env();
    kinlink_runtime::process::run_service("alerter", config.as_deref(), kinlink_alerter::install)
        .await
        .map_err(|error| anyhow::anyhow!(error))
}
