//! One conformance suite for the event log's store-backed parts, run against both store
//! backends: SQLite (embedded default) and PostgreSQL (scale-out). PostgreSQL must be
//! reachable (`KINLINK_TEST_POSTGRES_URL`); the suite fails rather than skips without it.

use kinlink_test_kit::TestResult;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kinlink_eventlog::envelope::{DLQ_REASON, DLQ_STAGE};
use kinlink_eventlog::{
    EmbeddedLog, Envelope, EventLog, LogMetrics, Output, Record, Stage, StageError, topics,
};
use kinlink_proto::v1::{AlertAcknowledged, AlertResolved};
use kinlink_store::Store;
use kinlink_store::test_support::TempPostgres;
use sqlx::{AnyConnection, Row};
use tokio_util::sync::CancellationToken;

/// Where the test stage writes its outputs (any topic it does not consume).
const OUTPUT_TOPIC: &str = topics::REFERRAL_FOLLOWUPS;

/// Resolves every acknowledged alert; rejects "poison"; fails "flaky" once, transiently.
#[derive(Debug, Default)]
struct Resolver {
    failed_once: AtomicBool,
}

impl Stage for Resolver {
    fn name(&self) -> &'static str {
        "resolver"
    }

    fn input_topics(&self) -> Vec<String> {
        vec![topics::ALERTS_LIFECYCLE.to_owned()]
    }

    async fn handle(
        &self,
        conn: &mut AnyConnection,
        record: &Record,
    ) -> Result<Vec<Output>, StageError> {
        let ack: AlertAcknowledged = record.envelope.decode()?;
        if ack.alert_id == "poison" {
            return Err(StageError::Rejected("poison pill".into()));
        }
        if ack.alert_id == "flaky" && !self.failed_once.swap(true, Ordering::SeqCst) {
            return Err(StageError::Retry("flaky dependency".into()));
        }
        // A state change in the stage's transaction: it must commit with the offset, once.
        sqlx::query("INSERT INTO test_effects (id) VALUES ($1)")
            .bind(&ack.alert_id)
            .execute(conn)
            .await?;
        let resolved = AlertResolved {
            alert_id: ack.alert_id.clone(),
            ..Default::default()
        };
        let out = record.envelope.derive(
            "resolved",
            "/test",
            &ack.alert_id,
            &ack.alert_id,
            0,
            &resolved,
        );
        Ok(vec![Output::new(OUTPUT_TOPIC, out)])
    }
}

fn ack(id: &str, alert_id: &str) -> Envelope {
    let message = AlertAcknowledged {
        alert_id: alert_id.into(),
        ..Default::default()
    };
    Envelope::new(
        id.into(),
        "/test",
        alert_id,
        alert_id,
        1_700_000_000_000,
        &message,
    )
}

async fn read_all(log: &EmbeddedLog, topic: &str) -> Result<Vec<Record>, kinlink_eventlog::Error> {
    let mut all = Vec::new();
    for partition in 0..3 {
        all.extend(log.read(topic, partition, 0, 1000).await?);
    }
    Ok(all)
}

/// Runs the stage until `expected` outputs exist (or `patience` runs out), then stops it.
async fn run_until(
    log: &EmbeddedLog,
    stage: Arc<Resolver>,
    expected: usize,
    patience: Duration,
) -> Result<Vec<Record>, Box<dyn std::error::Error + Send + Sync>> {
    let shutdown = CancellationToken::new();
    let runner = tokio::spawn({
        let log = EventLog::Embedded(log.clone());
        let shutdown = shutdown.clone();
        async move { log.run_stage(stage, shutdown).await }
    });
    let deadline = tokio::time::Instant::now() + patience;
    let outputs = loop {
        let outputs = read_all(log, OUTPUT_TOPIC).await?;
        if outputs.len() >= expected || tokio::time::Instant::now() > deadline {
            break outputs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    shutdown.cancel();
    runner.await??;
    Ok(outputs)
}

async fn conformance(store: Store) -> TestResult {
    let log = EmbeddedLog::open(
        store.clone(),
        3,
        LogMetrics::default(),
        kinlink_test_kit::test_sealer(),
    )
    .await?;
    sqlx::query("CREATE TABLE test_effects (id TEXT PRIMARY KEY)")
        .execute(store.pool())
        .await?;
    let stage = Arc::new(Resolver::default());
    for (id, alert) in [
        ("e1", "a1"),
        ("e2", "poison"),
        ("e3", "flaky"),
        ("e4", "a4"),
    ] {
        log.publish(topics::ALERTS_LIFECYCLE, &ack(id, alert))
            .await?;
    }
    // The same event again (a producer retry): must be applied once.
    log.publish(topics::ALERTS_LIFECYCLE, &ack("e1", "a1"))
        .await?;

    let outputs = run_until(&log, stage.clone(), 3, Duration::from_secs(20)).await?;
    let mut resolved: Vec<String> = outputs
        .iter()
        .map(|r| r.envelope.decode::<AlertResolved>().map(|m| m.alert_id))
        .collect::<Result<_, _>>()?;
    resolved.sort();
    assert_eq!(
        resolved,
        ["a1", "a4", "flaky"],
        "each good event applied exactly once"
    );
    assert!(
        stage.failed_once.load(Ordering::SeqCst),
        "the transient failure happened and was retried"
    );

    let letters = read_all(&log, &topics::dead_letter("resolver")).await?;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].envelope.id, "e2",
        "dead letter keeps the original event id"
    );
    assert_eq!(
        letters[0]
            .envelope
            .extensions
            .get(DLQ_REASON)
            .map(String::as_str),
        Some("poison pill")
    );
    assert_eq!(
        letters[0]
            .envelope
            .extensions
            .get(DLQ_STAGE)
            .map(String::as_str),
        Some("resolver")
    );

    // State changes committed with the offsets, once each.
    let rows = sqlx::query("SELECT COUNT(*) AS n FROM test_effects")
        .fetch_one(store.pool())
        .await?;
    assert_eq!(rows.try_get::<i64, _>("n")?, 3);

    // Restarting the consumer group re-applies nothing: offsets were committed.
    let again = run_until(&log, stage, 4, Duration::from_millis(1500)).await?;
    assert_eq!(
        again.len(),
        3,
        "a restarted consumer must not re-apply committed events"
    );
    let offsets = sqlx::query("SELECT CAST(SUM(next_offset) AS BIGINT) AS n FROM consumer_offsets WHERE group_id = 'resolver'")
        .fetch_one(store.pool())
        .await?;
    assert_eq!(
        offsets.try_get::<i64, _>("n")?,
        5,
        "every input offset committed, duplicate included"
    );

    group_commit(&log, &store).await?;
    // Reopening the store runs migrations again harmlessly.
    Ok(())
}

/// Concurrent callers of the group committer: every accepted job is durable and its event
/// appended; a job that fails (a duplicate key) or declines leaves nothing behind and does
/// not sink the others sharing its commit.
async fn group_commit(log: &EmbeddedLog, store: &Store) -> TestResult {
    sqlx::query("INSERT INTO test_effects (id) VALUES ('taken')")
        .execute(store.pool())
        .await?;
    let before = read_all(log, topics::REFERRAL_FOLLOWUPS).await?.len();
    let mut callers = tokio::task::JoinSet::new();
    for n in 0..40 {
        let (log, writer) = (log.clone(), EventLog::Embedded(log.clone()));
        callers.spawn(async move {
            let id = match n {
                7 => "taken".to_owned(),
                _ => format!("group-{n}"),
            };
            let envelope = ack(&format!("group-event-{n}"), &id);
            let outcome = log
                .commit_grouped(Box::new(move |conn| {
                    Box::pin(async move {
                        sqlx::query("INSERT INTO test_effects (id) VALUES ($1)")
                            .bind(&id)
                            .execute(&mut *conn)
                            .await?;
                        writer
                            .append_in(conn, topics::REFERRAL_FOLLOWUPS, &envelope)
                            .await?;
                        // Caller 13 changes its mind after writing: nothing of it may stay.
                        Ok(n != 13)
                    })
                }))
                .await;
            (n, outcome)
        });
    }
    while let Some(joined) = callers.join_next().await {
        let (n, outcome) = joined?;
        match n {
            7 => assert!(outcome.is_err(), "the duplicate key fails its own job"),
            13 => assert!(matches!(outcome, Ok(false)), "declined: {outcome:?}"),
            _ => assert!(matches!(outcome, Ok(true)), "caller {n}: {outcome:?}"),
        }
    }
    let written: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM test_effects WHERE id LIKE 'group-%'")
            .fetch_one(store.pool())
            .await?
            .try_get("n")?;
    assert_eq!(written, 38, "every job but the failed and the declined one");
    assert_eq!(
        sqlx::query("SELECT COUNT(*) AS n FROM test_effects WHERE id = 'group-13'")
            .fetch_one(store.pool())
            .await?
            .try_get::<i64, _>("n")?,
        0
    );
    let appended = read_all(log, topics::REFERRAL_FOLLOWUPS).await?.len() - before;
    assert_eq!(appended, 38, "events appended only with their job");
    // publish goes through the same committer.
    log.publish(topics::REFERRAL_FOLLOWUPS, &ack("group-publish", "p"))
        .await?;
    assert_eq!(
        read_all(log, topics::REFERRAL_FOLLOWUPS).await?.len() - before,
        39
    );
    Ok(())
}

#[tokio::test]
async fn embedded_log_on_sqlite() -> TestResult {
    let dir = std::env::temp_dir().join(format!("kinlink-conformance-{}", uuid_like()));
    let store = Store::open_embedded(&dir).await?;
    let result = conformance(store.clone()).await;
    store.close().await;
    Store::open_embedded(&dir).await?.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[tokio::test]
async fn embedded_log_on_postgres() -> TestResult {
    let database = TempPostgres::create().await.map_err(|e| {
        format!("PostgreSQL is required for this test (set KINLINK_TEST_POSTGRES_URL): {e}")
    })?;
    let store = database.store().await?;
    let result = conformance(store.clone()).await;
    store.close().await;
    database.store().await?.close().await;
    database.drop_database().await?;
    result
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}
