//! `kinlink-intake`: the intake API alone, for the scale-out shape (Kafka + PostgreSQL).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kinlink_runtime::process::run_service(|process| {
        kinlink_intake::router(process.log.clone(), &process.settings.intake)
    })
    .await
    .map_err(|error| anyhow::anyhow!(error))
}
