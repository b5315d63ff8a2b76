//! `kinlink-enricher`: the enricher alone, for the scale-out shape (Kafka + PostgreSQL).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kinlink_runtime::process::run_service(|process| {
        process.spawn_stage(kinlink_enricher::Enricher);
        axum::Router::new()
    })
    .await
    .map_err(|error| anyhow::anyhow!(error))
}
