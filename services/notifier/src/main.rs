//! `kinlink-notifier`: the notifier alone, for the scale-out shape (Kafka + PostgreSQL).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kinlink_runtime::process::run_service(|process| {
        if let Err(error) = kinlink_notifier::spawn(process, false) {
            tracing::error!(%error, "Notifier could not start.");
            process.shutdown.cancel();
        }
        axum::Router::new()
    })
    .await
    .map_err(|error| anyhow::anyhow!(error))
}
