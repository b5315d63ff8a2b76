//! `kinlink-notifier`: the notifier alone, for the scale-out shape (Kafka + PostgreSQL).
//! Same as `kinlink serve notifier`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = kinlink_runtime::process::config_from_env();
    kinlink_runtime::process::run_service("notifier", config.as_deref(), kinlink_notifier::install)
        .await
        .map_err(|error| anyhow::anyhow!(error))
}
