//! Endpoints every HTTP-serving kinlink process exposes: `/livez` (the process runs),
//! `/readyz` (its store and log answer) and `/metrics` (Prometheus text format).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kinlink_eventlog::EventLog;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone)]
struct OpsState {
    registry: Arc<Registry>,
    log: EventLog,
}

/// The ops routes; merge them into the process's router. Without `with_metrics`, `/metrics`
/// is left out (it is served on its own address, [`metrics_router`]).
pub fn router(registry: Arc<Registry>, log: EventLog, with_metrics: bool) -> Router {
    let mut router = Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz));
    if with_metrics {
        router = router.route("/metrics", get(metrics));
    }
    router.with_state(OpsState { registry, log })
}

/// `/metrics` alone, for `http.metrics_address`.
pub fn metrics_router(registry: Arc<Registry>, log: EventLog) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(OpsState { registry, log })
}

async fn readyz(State(state): State<OpsState>) -> Response {
    match state.log.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(error) => {
            tracing::warn!(%error, "Readiness check failed.");
            (StatusCode::SERVICE_UNAVAILABLE, "log or store unavailable").into_response()
        }
    }
}

async fn metrics(State(state): State<OpsState>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
