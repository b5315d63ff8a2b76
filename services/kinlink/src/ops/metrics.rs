//! Gauges sampled from the same numbers as `kinlink ops status`, so dashboards and alerting
//! rules see what operators see: lag, stalls, dead letters, triage and alert states.
//! Labels are low-cardinality only (stage, state, priority).

use std::time::Duration;

use kinlink_eventlog::EventLog;
use kinlink_store::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RagLabel {
    rag: String,
}

/// The sampled gauges.
#[derive(Debug, Clone, Default)]
pub struct OpsGauges {
    lag_events: Family<StageLabel, Gauge>,
    lag_seconds: Family<StageLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    stalled: Family<StageLabel, Gauge>,
    dead_letters: Family<StageLabel, Gauge>,
    triage_open: Gauge,
    triage_overdue: Gauge,
    reviews_open: Gauge,
    alerts: Family<StateLabel, Gauge>,
    overdue: Family<RagLabel, Gauge>,
}

impl OpsGauges {
    pub fn register(registry: &mut Registry) -> Self {
        let g = Self::default();
        registry.register(
            "kinlink_stage_lag_events",
            "Events a stage has not consumed yet",
            g.lag_events.clone(),
        );
        registry.register(
            "kinlink_stage_lag_seconds",
            "Age of the oldest event a stage has not consumed",
            g.lag_seconds.clone(),
        );
        registry.register(
            "kinlink_stage_stalled",
            "1 when a stage has lag and made no progress for the stall threshold",
            g.stalled.clone(),
        );
        registry.register(
            "kinlink_dead_letters",
            "Events in a stage's dead-letter topic not yet replayed",
            g.dead_letters.clone(),
        );
        registry.register(
            "kinlink_triage_open",
            "Alerts waiting in triage for a person to route them",
            g.triage_open.clone(),
        );
        registry.register(
            "kinlink_triage_overdue",
            "Triage items past their SLA",
            g.triage_overdue.clone(),
        );
        registry.register(
            "kinlink_linkage_reviews_open",
            "Linkage review tasks waiting for a person to decide (nothing merged meanwhile)",
            g.reviews_open.clone(),
        );
        registry.register("kinlink_alerts", "Alerts by state", g.alerts.clone());
        registry.register(
            "kinlink_alerts_overdue",
            "Open alerts past their acknowledgement deadline, by priority",
            g.overdue.clone(),
        );
        g
    }

    async fn sample(
        &self,
        store: &Store,
        log: &EventLog,
        stalled_after: Duration,
    ) -> anyhow::Result<()> {
        let status = super::status::status(store, log, stalled_after).await?;
        for stage in &status.stages {
            let label = StageLabel {
                stage: stage.stage.clone(),
            };
            self.lag_events.get_or_create(&label).set(stage.lag_events);
            self.lag_seconds
                .get_or_create(&label)
                .set(stage.lag_seconds);
            self.stalled
                .get_or_create(&label)
                .set(i64::from(stage.stalled));
            self.dead_letters
                .get_or_create(&label)
                .set(stage.dead_letters);
        }
        self.triage_open.set(status.triage_open);
        self.triage_overdue.set(status.triage_overdue);
        self.reviews_open.set(status.reviews_open);
        let a = &status.alerts;
        for (state, value) in [
            ("pending_delivery", a.pending_delivery),
            ("delivered_unacknowledged", a.delivered_unacknowledged),
            ("escalated", a.escalated),
            ("acknowledged", a.acknowledged),
            ("resolved", a.resolved),
            ("failed_delivery", a.failed_delivery),
        ] {
            self.alerts
                .get_or_create(&StateLabel {
                    state: state.to_owned(),
                })
                .set(value);
        }
        for (rag, value) in [
            ("red", a.overdue_red),
            ("amber", a.overdue_amber),
            ("green", a.overdue_green),
        ] {
            self.overdue
                .get_or_create(&RagLabel {
                    rag: rag.to_owned(),
                })
                .set(value);
        }
        Ok(())
    }

    /// Samples every `every` until shutdown.
    pub async fn run(
        self,
        store: Store,
        log: EventLog,
        every: Duration,
        stalled_after: Duration,
        shutdown: CancellationToken,
    ) {
        while !shutdown.is_cancelled() {
            if let Err(error) = self.sample(&store, &log, stalled_after).await {
                tracing::warn!(%error, "Ops metrics sample failed.");
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.cancelled() => {}
            }
        }
    }
}

/// Adds the sampler to a process.
pub fn spawn(process: &mut kinlink_runtime::Process) {
    let gauges = OpsGauges::register(&mut process.registry);
    let (store, log, shutdown) = (
        process.store.clone(),
        process.log.clone(),
        process.shutdown.clone(),
    );
    let every = Duration::from_millis(process.settings.ops.sample_interval_ms.max(500));
    let stalled_after = Duration::from_secs(process.settings.ops.stalled_after_seconds);
    process.spawn("ops-metrics", async move {
        gauges.run(store, log, every, stalled_after, shutdown).await;
        Ok(())
    });
}
