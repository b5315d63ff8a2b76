//! Two notifier workers on one PostgreSQL store (the documented scale-out: each replica has
//! its own connection pool) fire every escalation timer exactly once: one secondary-contact
//! message, one on-call trigger and one audit entry per level per alert.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use kinlink_eventlog::{EmbeddedLog, Envelope, EventLog, LogMetrics, Stage};
use kinlink_notifier::directory::Directory;
use kinlink_notifier::{AlertInbox, DeliveryWorker};
use kinlink_proto::v1;
use kinlink_store::Store;
use kinlink_test_kit::{TestResult, record};

mod support;
use sqlx::Row;
use tokio_util::sync::CancellationToken;

/// Messages received, by path and webhook-id.
type Hits = Arc<Mutex<BTreeMap<(String, String), usize>>>;

async fn slow_receiver() -> TestResult<(String, Hits)> {
    let hits: Hits = Arc::default();
    let app = axum::Router::new()
        .route(
            "/{path}",
            post(
                |State(hits): State<Hits>, Path(path): Path<String>, headers: HeaderMap| async move {
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    if let Ok(mut h) = hits.lock() {
                        *h.entry((path, id)).or_default() += 1;
                    }
                    // Slow enough that both workers see the same due timers.
                    tokio::time::sleep(Duration::from_millis(30)).await;
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

fn count(hits: &Hits, path: &str) -> (usize, usize) {
    let h = hits.lock().map(|h| h.clone()).unwrap_or_default();
    let of_path: Vec<usize> = h
        .iter()
        .filter(|((p, _), _)| p == path)
        .map(|(_, n)| *n)
        .collect();
    (of_path.len(), of_path.iter().sum())
}

/// Runs both workers' escalation passes side by side until neither finds anything due.
async fn escalate_together(a: &DeliveryWorker, b: &DeliveryWorker) -> TestResult {
    let shutdown = CancellationToken::new();
    for _ in 0..20 {
        let (x, y) = tokio::join!(a.escalate_due(&shutdown), b.escalate_due(&shutdown));
        if x? + y? == 0 {
            return Ok(());
        }
    }
    Err("escalation passes did not settle".into())
}

#[tokio::test]
async fn two_notifiers_fire_each_escalation_once_on_postgres() -> TestResult {
    const ALERTS: usize = 12;
    let database = kinlink_store::test_support::TempPostgres::create()
        .await
        .map_err(|e| format!("PostgreSQL is required for this test: {e}"))?;
    let (base, hits) = slow_receiver().await?;
    let settings = support::kent_settings(&base, "primary", Some("secondary"), true);
    let directory = Arc::new(Directory::from_settings(&settings)?);
    let start = kinlink_store::now_millis();
    let deadline = start + 3_600_000;
    let filing: Store = database.store().await?;
    let inbox = AlertInbox::new(directory.clone());
    for n in 0..ALERTS {
        let alert = v1::AlertRaised {
            alert_id: format!("alert-{n}"),
            referral_id: format!("r-{n}"),
            authority_code: "E10000016".into(),
            deadline: Some(kinlink_proto::timestamp_from_millis(deadline)),
            ..Default::default()
        };
        let envelope = Envelope::new(format!("e-{n}"), "/t", &alert.alert_id, "r", 0, &alert);
        let mut tx = filing.begin().await?;
        inbox.handle(&mut tx, &record("t", envelope)).await?;
        tx.commit().await?;
    }

    // Two replicas: each its own pool and log on the same database, one shared test clock.
    let clock = Arc::new(AtomicI64::new(start));
    let mut workers = Vec::new();
    let mut stores = Vec::new();
    for _ in 0..2 {
        let store = database.store().await?;
        let log = EventLog::Embedded(
            EmbeddedLog::open(
                store.clone(),
                1,
                LogMetrics::default(),
                kinlink_test_kit::test_sealer(),
            )
            .await?,
        );
        workers.push(support::clocked_worker(
            &store, &log, &directory, &settings, &clock,
        )?);
        stores.push(store);
    }
    let (a, b) = (&workers[0], &workers[1]);

    clock.store(deadline, Ordering::SeqCst);
    escalate_together(a, b).await?;
    assert_eq!(
        count(&hits, "secondary"),
        (ALERTS, ALERTS),
        "each alert's secondary contact is told once"
    );
    clock.store(deadline + 1_800_000, Ordering::SeqCst);
    escalate_together(a, b).await?;
    assert_eq!(
        count(&hits, "pagerduty"),
        (ALERTS, ALERTS),
        "on-call is paged once per alert"
    );

    let audited: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'escalated'")
            .fetch_one(filing.pool())
            .await?
            .try_get("n")?;
    assert_eq!(audited, i64::try_from(2 * ALERTS)?);
    let fired: i64 = sqlx::query("SELECT COUNT(*) AS n FROM escalations WHERE state = 'fired'")
        .fetch_one(filing.pool())
        .await?
        .try_get("n")?;
    assert_eq!(fired, i64::try_from(2 * ALERTS)?);

    for store in stores {
        store.close().await;
    }
    filing.close().await;
    let _ = database.drop_database().await;
    Ok(())
}
