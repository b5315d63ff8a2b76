//! One kinlink process: its backends, its tasks and its HTTP server, started and stopped the
//! same way whether it runs one service (a scale-out binary) or all of them (`kinlink up`).
//!
//! Shutdown: one [`CancellationToken`]. When it is cancelled (signal, or a task failing), the
//! HTTP server stops accepting, each stage finishes the event in hand and commits, the outbox
//! relay flushes, and the process waits up to [`DRAIN_TIMEOUT`] before aborting stragglers.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use kinlink_eventlog::{EventLog, LogMetrics, Stage};
use kinlink_store::Store;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{Result, Settings, open_backends};

/// Longest wait for tasks to finish after shutdown begins. Kubernetes' grace period must be
/// longer than this.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// A failure a task reports when it ends.
pub type TaskError = Box<dyn std::error::Error + Send + Sync>;

type TaskResult = (&'static str, Result<(), TaskError>);

/// A running kinlink process.
pub struct Process {
    pub settings: Settings,
    /// Metrics registry; services register their metrics before [`Process::run_until_stopped`].
    pub registry: Registry,
    pub store: Store,
    pub log: EventLog,
    pub shutdown: CancellationToken,
    tasks: JoinSet<TaskResult>,
    listener: TcpListener,
    /// `http.metrics_address`, when `/metrics` has an address of its own.
    metrics_listener: Option<TcpListener>,
    /// OpenAPI document of the routes the installed services serve, at `/openapi.json`.
    openapi: Option<utoipa::openapi::OpenApi>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("store", &self.store)
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

impl Process {
    /// Opens the backends, binds the HTTP listener and starts the log's background work.
    pub async fn build(settings: Settings) -> Result<Self> {
        let mut registry = Registry::default();
        let metrics = LogMetrics::register(&mut registry);
        let (store, log) = open_backends(&settings, metrics).await?;
        let listener = TcpListener::bind(&settings.http.address).await?;
        let metrics_listener = match &settings.http.metrics_address {
            Some(address) => Some(TcpListener::bind(address).await?),
            None => None,
        };
        let mut settings = settings;
        if settings.notifier.public_base_url.is_empty() {
            settings.notifier.public_base_url = format!("http://{}", listener.local_addr()?);
        }
        let mut process = Self {
            settings,
            registry,
            store,
            log,
            shutdown: CancellationToken::new(),
            tasks: JoinSet::new(),
            listener,
            metrics_listener,
            openapi: None,
        };
        let log = process.log.clone();
        let token = process.shutdown.clone();
        process.spawn("log", async move {
            log.run_background(token).await.map_err(Into::into)
        });
        Ok(process)
    }

    /// The address the HTTP server listens on (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// The address `/metrics` is served on when `http.metrics_address` is set.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>> {
        Ok(match &self.metrics_listener {
            Some(listener) => Some(listener.local_addr()?),
            None => None,
        })
    }

    /// Adds a service's routes to the document served at `/openapi.json`.
    pub fn add_openapi(&mut self, doc: utoipa::openapi::OpenApi) {
        match &mut self.openapi {
            Some(existing) => existing.merge(doc),
            None => self.openapi = Some(doc),
        }
    }

    /// Runs a stage on this process's log until shutdown.
    pub fn spawn_stage<S: Stage>(&mut self, stage: S) {
        let log = self.log.clone();
        let token = self.shutdown.clone();
        let name = stage.name();
        self.spawn(name, async move {
            log.run_stage(Arc::new(stage), token)
                .await
                .map_err(Into::into)
        });
    }

    /// Runs a long-lived task; it must return soon after `self.shutdown` is cancelled.
    pub fn spawn<F>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = Result<(), TaskError>> + Send + 'static,
    {
        self.tasks.spawn(async move { (name, task.await) });
    }

    /// Serves `api` plus the ops endpoints until shutdown, then drains every task.
    /// Returns an error if a task failed (which also triggers shutdown).
    pub async fn run_until_stopped(mut self, api: Router) -> Result<(), TaskError> {
        let registry = Arc::new(self.registry);
        let mut router = api.merge(crate::ops_http::router(
            registry.clone(),
            self.log.clone(),
            self.metrics_listener.is_none(),
        ));
        if let Some(listener) = self.metrics_listener.take() {
            let metrics = crate::ops_http::metrics_router(registry, self.log.clone());
            let token = self.shutdown.clone();
            self.tasks.spawn(async move {
                let served = axum::serve(listener, metrics)
                    .with_graceful_shutdown(async move { token.cancelled().await })
                    .await;
                ("metrics http", served.map_err(Into::into))
            });
        }
        if let Some(doc) = self.openapi.take() {
            let json = doc.to_pretty_json().unwrap_or_default();
            router = router.route(
                "/openapi.json",
                axum::routing::get(move || async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        json,
                    )
                }),
            );
        }
        let token = self.shutdown.clone();
        let listener = self.listener;
        self.tasks.spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await;
            ("http", served.map_err(Into::into))
        });
        let mut failure: Option<TaskError> = None;
        let mut record =
            |name: &'static str, result: Result<(), TaskError>, stopping: bool| match result {
                Err(error) => {
                    tracing::error!(task = name, %error, "Task failed.");
                    failure.get_or_insert(error);
                }
                Ok(()) if !stopping => {
                    tracing::error!(task = name, "Task ended before shutdown.");
                    failure
                        .get_or_insert_with(|| format!("task {name} ended before shutdown").into());
                }
                Ok(()) => tracing::debug!(task = name, "Task drained."),
            };
        // Run until shutdown is requested or a task ends on its own, which is a failure:
        // every task is meant to run until shutdown.
        tokio::select! {
            biased;
            () = self.shutdown.cancelled() => {}
            joined = self.tasks.join_next() => {
                // A task that ended because shutdown began in the meantime is not a failure.
                let stopping = self.shutdown.is_cancelled();
                match joined {
                    Some(Ok((name, result))) => record(name, result, stopping),
                    Some(Err(join_error)) => record("task", Err(join_error.into()), stopping),
                    None => {}
                }
                self.shutdown.cancel();
            }
        }
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while let Some(joined) = self.tasks.join_next().await {
                match joined {
                    Ok((name, result)) => record(name, result, true),
                    Err(join_error) => record("task", Err(join_error.into()), true),
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!("Drain timed out; aborting remaining tasks.");
            self.tasks.abort_all();
        }
        self.store.close().await;
        match failure {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// What a service adds to a process: its tasks (spawned on the process) and its API routes.
pub type Install = fn(&mut Process) -> Result<Router, TaskError>;

/// The whole life of a single-service process: settings from `config` (a TOML file) and
/// `KINLINK__*` variables, telemetry, backends, then `install` adds the service; prints the
/// address it listens on and runs until SIGINT/SIGTERM. Used by each service's own binary
/// and by `kinlink serve <service>`.
pub async fn run_service(
    name: &str,
    config: Option<&std::path::Path>,
    install: Install,
) -> Result<(), TaskError> {
    let settings = Settings::load(config)?;
    let _telemetry = crate::telemetry::init(&settings.telemetry)?;
    let mut process = Process::build(settings).await?;
    let api = install(&mut process)?;
    let address = process.local_addr()?;
    tracing::info!(service = name, %address, "Listening.");
    println!("kinlink {name} listening on http://{address}");
    if let Some(metrics) = process.metrics_addr()? {
        println!("kinlink {name} metrics on http://{metrics}/metrics");
    }
    tokio::spawn(crate::shutdown_on_signal(process.shutdown.clone()));
    process.run_until_stopped(api).await
}

/// The config file a single-service binary reads: the `KINLINK_CONFIG` variable.
pub fn config_from_env() -> Option<std::path::PathBuf> {
    std::env::var_os("KINLINK_CONFIG").map(std::path::PathBuf::from)
}
