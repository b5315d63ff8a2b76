//! The pipeline's health as operators see it, computed once for three readers: `kinlink ops
//! status`, the gauges the metrics sampler exports, and the console's stage status page. Per
//! stage and partition lag in events and seconds, stalled stages, dead letters, the triage
//! queue, open reviews and alerts by state. Ids and counts only.

use std::time::Duration;

use kinlink_eventlog::inspect::PartitionLag;
use kinlink_eventlog::{EventLog, topics};
use kinlink_store::Store;
use serde::Serialize;
use sqlx::Row;

#[derive(Debug, Serialize)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: i32,
    pub lag_events: i64,
    pub lag_seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct StageStatus {
    pub stage: String,
    pub lag_events: i64,
    /// Age of the oldest event the stage has not consumed.
    pub lag_seconds: f64,
    /// When the stage last applied an event (ms since epoch), if ever.
    pub last_progress_ms: Option<i64>,
    /// Lag and no progress for longer than the stall threshold.
    pub stalled: bool,
    pub dead_letters: i64,
    pub partitions: Vec<PartitionStatus>,
}

#[derive(Debug, Default, Serialize)]
pub struct AlertCounts {
    pub pending_delivery: i64,
    pub delivered_unacknowledged: i64,
    pub escalated: i64,
    pub acknowledged: i64,
    pub resolved: i64,
    pub failed_delivery: i64,
    pub overdue_red: i64,
    pub overdue_amber: i64,
    pub overdue_green: i64,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub backend: &'static str,
    pub stages: Vec<StageStatus>,
    pub triage_open: i64,
    pub triage_overdue: i64,
    /// Linkage review tasks waiting for a person (the review band).
    pub reviews_open: i64,
    pub alerts: AlertCounts,
}

async fn count(store: &Store, sql: &str, now: i64) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(sql).bind(now).fetch_one(store.pool()).await?;
    row.try_get("n")
}

/// Everything `status` reports.
pub async fn status(
    store: &Store,
    log: &EventLog,
    stalled_after: Duration,
) -> Result<Status, crate::Error> {
    let now = kinlink_store::now_millis();
    let stall_ms = i64::try_from(stalled_after.as_millis()).unwrap_or(i64::MAX);
    let mut stages = Vec::new();
    for stage in topics::STAGES {
        let group = log.group_id(stage);
        let lags: Vec<PartitionLag> = log.lag(&group, &topics::inputs_of(stage)).await?;
        let partitions: Vec<PartitionStatus> = lags
            .iter()
            .map(|l| PartitionStatus {
                topic: l.topic.clone(),
                partition: l.partition,
                lag_events: l.events(),
                lag_seconds: l
                    .oldest_unconsumed_ms
                    .map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0),
            })
            .collect();
        let lag_events: i64 = partitions.iter().map(|p| p.lag_events).sum();
        let lag_seconds = partitions.iter().map(|p| p.lag_seconds).fold(0.0, f64::max);
        let last_progress_ms: Option<i64> = sqlx::query(
            "SELECT MAX(processed_at_ms) AS last FROM processed_events WHERE group_id = $1",
        )
        .bind(*stage)
        .fetch_one(store.pool())
        .await?
        .try_get("last")?;
        let idle_ms = match last_progress_ms {
            Some(last) => now - last,
            None => (lag_seconds * 1000.0) as i64,
        };
        let stalled =
            lag_events > 0 && idle_ms > stall_ms && (lag_seconds * 1000.0) as i64 > stall_ms;
        let dead_letters = dead_letters(store, log, stage).await?;
        stages.push(StageStatus {
            stage: (*stage).to_owned(),
            lag_events,
            lag_seconds,
            last_progress_ms,
            stalled,
            dead_letters,
            partitions,
        });
    }
    let triage_open = count(
        store,
        "SELECT COUNT(*) AS n FROM triage_queue WHERE state = 'open' AND $1 >= 0",
        now,
    )
    .await?;
    let triage_overdue = count(
        store,
        "SELECT COUNT(*) AS n FROM triage_queue WHERE state = 'open' AND sla_deadline_ms < $1",
        now,
    )
    .await?;
    let reviews_open = count(
        store,
        "SELECT COUNT(*) AS n FROM linkage_reviews WHERE state = 'open' AND $1 >= 0",
        now,
    )
    .await?;
    let mut alerts = AlertCounts {
        pending_delivery: count(store, "SELECT COUNT(*) AS n FROM deliveries WHERE state = 'pending' AND $1 >= 0", now).await?,
        failed_delivery: count(store, "SELECT COUNT(*) AS n FROM deliveries WHERE state = 'failed' AND $1 >= 0", now).await?,
        delivered_unacknowledged: count(
            store,
            "SELECT COUNT(*) AS n FROM deliveries d JOIN alerts a ON a.alert_id = d.alert_id \
             WHERE d.state = 'delivered' AND a.state = 'open' AND $1 >= 0",
            now,
        )
        .await?,
        escalated: count(
            store,
            "SELECT COUNT(DISTINCT e.alert_id) AS n FROM escalations e JOIN alerts a ON a.alert_id = e.alert_id \
             WHERE e.state IN ('fired', 'resolve_pending') AND a.state = 'open' AND $1 >= 0",
            now,
        )
        .await?,
        acknowledged: count(store, "SELECT COUNT(*) AS n FROM alerts WHERE state = 'acknowledged' AND $1 >= 0", now).await?,
        resolved: count(store, "SELECT COUNT(*) AS n FROM alerts WHERE state = 'resolved' AND $1 >= 0", now).await?,
        ..AlertCounts::default()
    };
    // Overdue by rating, from the inbox columns (migration 0016).
    let overdue = sqlx::query(
        "SELECT rag, COUNT(*) AS n FROM alerts WHERE state = 'open' AND deadline_ms < $1 \
         AND authority_code <> '' GROUP BY rag",
    )
    .bind(now)
    .fetch_all(store.pool())
    .await?;
    for row in overdue {
        let rag: String = row.try_get("rag")?;
        let n: i64 = row.try_get("n")?;
        match rag.as_str() {
            "red" => alerts.overdue_red += n,
            "amber" => alerts.overdue_amber += n,
            _ => alerts.overdue_green += n,
        }
    }
    let backend = match log {
        EventLog::Embedded(_) => "embedded",
        EventLog::Kafka(_) => "kafka",
    };
    Ok(Status {
        backend,
        stages,
        triage_open,
        triage_overdue,
        reviews_open,
        alerts,
    })
}

/// Dead letters of a stage not yet replayed.
pub async fn dead_letters(store: &Store, log: &EventLog, stage: &str) -> Result<i64, crate::Error> {
    let topic = topics::dead_letter(stage);
    let total: i64 = log
        .lag(&format!("kinlink-ops-dlq-count-{stage}"), &[topic])
        .await?
        .iter()
        .map(|l| l.end - offset_floor(l))
        .sum();
    let replayed: i64 = sqlx::query("SELECT COUNT(*) AS n FROM dlq_replays WHERE stage = $1")
        .bind(stage)
        .fetch_one(store.pool())
        .await?
        .try_get("n")?;
    Ok((total - replayed).max(0))
}

/// The first offset still in the partition: 0 on the embedded log, the low watermark on Kafka
/// (a group that never committed starts there).
fn offset_floor(lag: &PartitionLag) -> i64 {
    lag.committed.min(lag.end)
}
