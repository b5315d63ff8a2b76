//! `kinlink-intake`: the intake alone, for the scale-out shape (Kafka + PostgreSQL).
//! Same as `kinlink serve intake`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = kinlink_runtime::process::config_from_env();
    kinlink_runtime::process::run_service("intake", config.as_deref(), kinlink_intake::install)
        .await
        .map_err(|error| anyhow::anyhow!(error))
}
