//! `kinlink-alerter`: the alerter alone, for the scale-out shape (Kafka + PostgreSQL).

use std::sync::Arc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let registry = Arc::new(kinlink_alerter::authorities::AuthorityRegistry::shipped()?);
    kinlink_runtime::process::run_service(|process| {
        process.spawn_stage(kinlink_alerter::Alerter::new(registry));
        axum::Router::new()
    })
    .await
    .map_err(|error| anyhow::anyhow!(error))
}
