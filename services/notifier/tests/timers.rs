//! Escalation timers driven by a controllable clock, against a real (SQLite) store and a
//! local HTTP receiver: nothing fires before the deadline, the secondary contact at it, on-call
//! after the configured interval, and the timers survive a new worker (a restart).

use kinlink_test_kit::TestResult;

mod support;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::routing::post;
use kinlink_eventlog::{EmbeddedLog, Envelope, EventLog, LogMetrics, Record, Stage};
use kinlink_notifier::AlertInbox;
use kinlink_notifier::directory::Directory;
use kinlink_proto::v1;
use kinlink_store::Store;
use sqlx::Row;
use tokio_util::sync::CancellationToken;

type Hits = Arc<Mutex<Vec<String>>>;

async fn receiver() -> Result<(String, Hits), Box<dyn std::error::Error + Send + Sync>> {
    let hits: Hits = Arc::default();
    let app = axum::Router::new()
        .route(
            "/{path}",
            post(
                |State(hits): State<Hits>, Path(path): Path<String>| async move {
                    if let Ok(mut h) = hits.lock() {
                        h.push(path);
                    }
                    axum::http::StatusCode::ACCEPTED
                },
            ),
        )
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((base, hits))
}

fn hits(h: &Hits) -> Vec<String> {
    h.lock().map(|v| v.clone()).unwrap_or_default()
}

#[tokio::test]
async fn escalation_timers_follow_the_clock_and_survive_a_restart() -> TestResult {
    let (base, received) = receiver().await?;
    let settings = support::kent_settings(&base, "primary", Some("secondary"), true);
    let dir = std::env::temp_dir().join(format!("kinlink-timers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open_embedded(&dir).await?;
    let log = EventLog::Embedded(
        EmbeddedLog::open(
            store.clone(),
            1,
            LogMetrics::default(),
            kinlink_test_kit::test_sealer(),
        )
        .await?,
    );
    let directory = Arc::new(Directory::from_settings(&settings)?);

    // File an alert whose deadline is one hour from "now" (the test's clock).
    let start = 1_900_000_000_000i64;
    let deadline = start + 3_600_000;
    let alert = v1::AlertRaised {
        alert_id: "alert-1".into(),
        referral_id: "r-1".into(),
        authority_code: "E10000016".into(),
        deadline: Some(kinlink_proto::timestamp_from_millis(deadline)),
        ..Default::default()
    };
    let envelope = Envelope::new("e-1".into(), "/t", "alert-1", "r-1", 0, &alert);
    let record = Record {
        topic: "t".into(),
        partition: 0,
        offset: 0,
        envelope,
    };
    let mut tx = store.begin().await?;
    AlertInbox::new(directory.clone())
        .handle(&mut tx, &record)
        .await?;
    tx.commit().await?;

    let clock = Arc::new(AtomicI64::new(start));
    let worker = |clock: Arc<AtomicI64>| {
        support::clocked_worker(&store, &log, &directory, &settings, &clock)
    };
    let shutdown = CancellationToken::new();
    let first = worker(clock.clone())?;

    // The alert was filed due at the system time; the test clock is far ahead of it.
    assert_eq!(first.deliver_due(&shutdown).await?, 1);
    clock.store(deadline - 1, Ordering::SeqCst);
    assert_eq!(
        first.escalate_due(&shutdown).await?,
        0,
        "nothing before the deadline"
    );
    assert_eq!(hits(&received), ["primary"]);

    // At the deadline: the secondary contact.
    clock.store(deadline, Ordering::SeqCst);
    assert_eq!(first.escalate_due(&shutdown).await?, 1);
    assert_eq!(hits(&received), ["primary", "secondary"]);

    // A new worker (a restart) picks up the on-call timer from the store, on time.
    drop(first);
    let second = worker(clock.clone())?;
    clock.store(deadline + 1_799_999, Ordering::SeqCst);
    assert_eq!(second.escalate_due(&shutdown).await?, 0);
    clock.store(deadline + 1_800_000, Ordering::SeqCst);
    assert_eq!(second.escalate_due(&shutdown).await?, 1);
    assert_eq!(hits(&received), ["primary", "secondary", "pagerduty"]);
    // Nothing fires twice.
    clock.store(deadline + 10_000_000, Ordering::SeqCst);
    assert_eq!(second.escalate_due(&shutdown).await?, 0);

    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test]
async fn a_triage_item_past_its_sla_pages_on_call_and_routing_resolves_the_page() -> TestResult {
    let (base, received) = receiver().await?;
    let settings = support::kent_settings(&base, "primary", None, true);
    let dir = std::env::temp_dir().join(format!("kinlink-triage-timers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open_embedded(&dir).await?;
    let log = EventLog::Embedded(
        EmbeddedLog::open(
            store.clone(),
            1,
            LogMetrics::default(),
            kinlink_test_kit::test_sealer(),
        )
        .await?,
    );
    let directory = Arc::new(Directory::from_settings(&settings)?);

    // A red alert nobody could route: its SLA is 15 minutes.
    let start = kinlink_store::now_millis();
    let sla = start + 15 * 60_000;
    let alert = v1::AlertRaised {
        alert_id: "alert-t".into(),
        referral_id: "r-t".into(),
        rag: v1::Rag::Red as i32,
        deadline: Some(kinlink_proto::timestamp_from_millis(start + 3_600_000)),
        triage_sla_deadline: Some(kinlink_proto::timestamp_from_millis(sla)),
        ..Default::default()
    };
    let envelope = Envelope::new("e-t".into(), "/t", "alert-t", "r-t", 0, &alert);
    let mut tx = store.begin().await?;
    AlertInbox::new(directory.clone())
        .handle(
            &mut tx,
            &Record {
                topic: "t".into(),
                partition: 0,
                offset: 0,
                envelope,
            },
        )
        .await?;
    tx.commit().await?;

    let clock = Arc::new(AtomicI64::new(start));
    let worker = support::clocked_worker(&store, &log, &directory, &settings, &clock)?;
    let shutdown = CancellationToken::new();
    clock.store(sla - 1, Ordering::SeqCst);
    assert_eq!(
        worker.escalate_due(&shutdown).await?,
        0,
        "not before its SLA"
    );
    clock.store(sla, Ordering::SeqCst);
    assert_eq!(worker.escalate_due(&shutdown).await?, 1);
    assert_eq!(
        hits(&received),
        ["pagerduty"],
        "on-call paged for the triage item"
    );
    assert_eq!(worker.escalate_due(&shutdown).await?, 0, "once");

    // An operator routes it to Kent: the triage page is resolved and Kent gets the alert.
    kinlink_notifier::triage::route(&store, &directory, "alert-t", "E10000016", "Kent", "op-1")
        .await?;
    assert_eq!(
        worker.escalate_due(&shutdown).await?,
        1,
        "the triage page is resolved"
    );
    assert_eq!(hits(&received), ["pagerduty", "pagerduty"]);
    assert_eq!(worker.deliver_due(&shutdown).await?, 1);
    assert_eq!(hits(&received), ["pagerduty", "pagerduty", "primary"]);
    let states: Vec<(i64, String)> = sqlx::query(
        "SELECT level, state FROM escalations WHERE alert_id = 'alert-t' ORDER BY level",
    )
    .fetch_all(store.pool())
    .await?
    .iter()
    .map(|r| Ok((r.try_get("level")?, r.try_get("state")?)))
    .collect::<Result<_, sqlx::Error>>()?;
    assert_eq!(
        states,
        [
            (1, "scheduled".to_owned()),
            (2, "scheduled".to_owned()),
            (3, "resolved".to_owned())
        ]
    );
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test]
async fn an_undecided_handoff_pages_on_call_at_the_deadline_and_a_decision_resolves_it()
-> TestResult {
    let (base, received) = receiver().await?;
    let settings = support::kent_settings(&base, "primary", None, true);
    let dir = std::env::temp_dir().join(format!("kinlink-handoff-timers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open_embedded(&dir).await?;
    let log = EventLog::Embedded(
        EmbeddedLog::open(
            store.clone(),
            1,
            LogMetrics::default(),
            kinlink_test_kit::test_sealer(),
        )
        .await?,
    );
    let directory = Arc::new(Directory::from_settings(&settings)?);
    let start = kinlink_store::now_millis();
    let deadline = start + 3_600_000;
    // Kent is where the child lives; Westminster found them.
    let alert = v1::AlertRaised {
        alert_id: "alert-h".into(),
        referral_id: "r-h".into(),
        authority_code: support::KENT.into(),
        deadline: Some(kinlink_proto::timestamp_from_millis(deadline)),
        sections: vec![v1::AlertSection {
            person_id: "p".into(),
            basis: v1::RoutingBasis::Lives as i32,
            other_authority_code: "E09000033".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut tx = store.begin().await?;
    AlertInbox::new(directory.clone())
        .handle(
            &mut tx,
            &kinlink_test_kit::record(
                "t",
                Envelope::new("e-h".into(), "/t", "alert-h", "r-h", 0, &alert),
            ),
        )
        .await?;
    tx.commit().await?;
    let clock = Arc::new(AtomicI64::new(deadline));
    let worker = support::clocked_worker(&store, &log, &directory, &settings, &clock)?;
    let shutdown = CancellationToken::new();
    // At the deadline: no secondary contact configured (skipped); the hand-off page goes out.
    worker.escalate_due(&shutdown).await?;
    assert_eq!(hits(&received), ["pagerduty"]);
    // Kent decides: the page is resolved.
    let mut conn = store.pool().acquire().await?;
    kinlink_notifier::escalation::stop_timer(
        &mut conn,
        "alert-h",
        kinlink_domain::lifecycle::EscalationLevel::Handoff,
    )
    .await?;
    drop(conn);
    assert_eq!(worker.escalate_due(&shutdown).await?, 1);
    assert_eq!(hits(&received), ["pagerduty", "pagerduty"]);
    let handoff: String =
        sqlx::query("SELECT state FROM escalations WHERE alert_id = 'alert-h' AND level = 4")
            .fetch_one(store.pool())
            .await?
            .try_get("state")?;
    assert_eq!(handoff, "resolved");
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
