//! Prometheus metrics of the log runners. Labels are low-cardinality only: stage, topic and
//! outcome, never an event, referral or person id.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageOutcome {
    pub stage: String,
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    pub topic: String,
}

/// Counters and histograms shared by every runner in a process.
#[derive(Debug, Clone)]
pub struct LogMetrics {
    events_processed: Family<StageOutcome, Counter>,
    processing_seconds: Family<StageLabel, Histogram>,
    events_appended: Family<TopicLabel, Counter>,
}

impl Default for LogMetrics {
    fn default() -> Self {
        Self {
            events_processed: Family::default(),
            processing_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
            events_appended: Family::default(),
        }
    }
}

impl LogMetrics {
    /// Creates the metrics and registers them under the `kinlink_` prefix.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "kinlink_stage_events",
            "Events a stage consumed, by outcome (applied, duplicate, rejected, retried)",
            metrics.events_processed.clone(),
        );
        registry.register(
            "kinlink_stage_processing_seconds",
            "Time to apply one event, transaction included",
            metrics.processing_seconds.clone(),
        );
        registry.register(
            "kinlink_log_events_appended",
            "Events appended to a topic (directly, or relayed from the outbox)",
            metrics.events_appended.clone(),
        );
        metrics
    }

    pub(crate) fn processed(&self, stage: &str, outcome: &str) {
        self.events_processed
            .get_or_create(&StageOutcome {
                stage: stage.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub(crate) fn observe(&self, stage: &str, seconds: f64) {
        self.processing_seconds
            .get_or_create(&StageLabel {
                stage: stage.to_owned(),
            })
            .observe(seconds);
    }

    pub(crate) fn appended(&self, topic: &str) {
        self.events_appended
            .get_or_create(&TopicLabel {
                topic: topic.to_owned(),
            })
            .inc();
    }
}
