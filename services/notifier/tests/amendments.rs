//! Amendments reach the authority. One filed while the previous revision's attempt is still
//! in flight is delivered with its own webhook-id, on SQLite and on PostgreSQL (before the fix
//! the slow attempt's outcome marked the delivery delivered and the amendment was never sent).
//! A closed alert (referral withdrawn, child found) is delivered as an amendment saying so, and
//! its escalation stops.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use kinlink_eventlog::{EmbeddedLog, Envelope, EventLog, LogMetrics, Stage};
use kinlink_notifier::directory::Directory;
use kinlink_notifier::{AlertInbox, DeliveryWorker};
use kinlink_proto::v1;
use kinlink_runtime::settings::NotifierSettings;
use kinlink_store::Store;
use kinlink_test_kit::{TestResult, record};

mod support;
use prometheus_client::registry::Registry;
use sqlx::Row;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// A receiver that records each request's `webhook-id` on arrival and answers only when the
/// test releases a permit, so an attempt can be held in flight.
#[derive(Clone)]
struct Gate {
    ids: Arc<Mutex<Vec<String>>>,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    permits: Arc<Semaphore>,
}

impl Gate {
    fn ids(&self) -> Vec<String> {
        self.ids.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

async fn gated_receiver() -> TestResult<(String, Gate)> {
    let gate = Gate {
        ids: Arc::default(),
        bodies: Arc::default(),
        permits: Arc::new(Semaphore::new(0)),
    };
    let app = axum::Router::new()
        .route(
            "/kent",
            post(
                |State(gate): State<Gate>, headers: HeaderMap, body: axum::body::Bytes| async move {
                    if let (Ok(mut bodies), Ok(json)) = (
                        gate.bodies.lock(),
                        serde_json::from_slice::<serde_json::Value>(&body),
                    ) {
                        bodies.push(json);
                    }
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    if let Ok(mut ids) = gate.ids.lock() {
                        ids.push(id);
                    }
                    if let Ok(permit) = gate.permits.acquire().await {
                        permit.forget();
                    }
                    axum::http::StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(gate.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((base, gate))
}

fn settings(base: &str) -> NotifierSettings {
    support::kent_settings(base, "kent", Some("kent"), false)
}

fn alert(revision: u32) -> v1::AlertRaised {
    v1::AlertRaised {
        alert_id: "alert-1".into(),
        referral_id: "r-1".into(),
        authority_code: "E10000016".into(),
        revision,
        deadline: Some(kinlink_proto::timestamp_from_millis(
            kinlink_store::now_millis() + 3_600_000,
        )),
        ..Default::default()
    }
}

async fn file(store: &Store, inbox: &AlertInbox, revision: u32) -> TestResult {
    let envelope = Envelope::new(
        format!("raised-r{revision}"),
        "/t",
        "alert-1",
        "r-1",
        0,
        &alert(revision),
    );
    let mut tx = store.begin().await?;
    inbox.handle(&mut tx, &record("t", envelope)).await?;
    tx.commit().await?;
    Ok(())
}

async fn amendment_during_a_slow_attempt_is_delivered(store: Store) -> TestResult {
    let (base, gate) = gated_receiver().await?;
    let settings = support::kent_settings(&base, "kent", None, false);
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
    let inbox = AlertInbox::new(directory.clone());
    let worker = Arc::new(DeliveryWorker::new(
        store.clone(),
        log,
        directory,
        &settings,
        &mut Registry::default(),
    )?);
    let shutdown = CancellationToken::new();

    // Revision 1 is sent; the authority is slow to answer.
    file(&store, &inbox, 1).await?;
    let sending = {
        let worker = worker.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { worker.deliver_due(&shutdown).await })
    };
    for _ in 0..200 {
        if !gate.ids().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(gate.ids(), ["alert-1"], "revision 1 in flight");

    // The referral is corrected meanwhile: revision 2 is filed.
    file(&store, &inbox, 2).await?;

    // Revision 1's answer arrives after the amendment.
    gate.permits.add_permits(1);
    assert_eq!(sending.await??, 1);

    // The amendment is still due and goes out with its own webhook-id.
    gate.permits.add_permits(1);
    assert_eq!(worker.deliver_due(&shutdown).await?, 1);
    assert_eq!(gate.ids(), ["alert-1", "alert-1:r2"]);
    let row = sqlx::query("SELECT state, revision FROM deliveries WHERE alert_id = 'alert-1'")
        .fetch_one(store.pool())
        .await?;
    assert_eq!(row.try_get::<String, _>("state")?, "delivered");
    assert_eq!(row.try_get::<i64, _>("revision")?, 2);
    // Nothing more to send.
    assert_eq!(worker.deliver_due(&shutdown).await?, 0);
    Ok(())
}

#[tokio::test]
async fn amendment_during_a_slow_attempt_is_delivered_on_sqlite() -> TestResult {
    let dir = std::env::temp_dir().join(format!("kinlink-amend-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open_embedded(&dir).await?;
    let result = amendment_during_a_slow_attempt_is_delivered(store.clone()).await;
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[tokio::test]
async fn amendment_during_a_slow_attempt_is_delivered_on_postgres() -> TestResult {
    let database = kinlink_store::test_support::TempPostgres::create()
        .await
        .map_err(|e| format!("PostgreSQL is required for this test: {e}"))?;
    let store = database.store().await?;
    let result = amendment_during_a_slow_attempt_is_delivered(store.clone()).await;
    store.close().await;
    let _ = database.drop_database().await;
    result
}

/// Hands the alerter's closure of `alert-1` to the inbox, as event `event_id`, `times` times
/// (a redelivery changes nothing more).
async fn close(
    store: &Store,
    inbox: &AlertInbox,
    event_id: &str,
    closed: &v1::AlertClosed,
    times: usize,
) -> TestResult {
    let envelope = Envelope::new(event_id.into(), "/t", "alert-1", "r-1", 0, closed);
    let mut tx = store.begin().await?;
    for _ in 0..times {
        inbox
            .handle(&mut tx, &record("t", envelope.clone()))
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// An embedded store, a receiver that answers at once, Kent's settings, the inbox and a
/// worker on a test clock a minute ahead (so what is filed now is due).
struct Fixture {
    dir: std::path::PathBuf,
    store: Store,
    gate: Gate,
    inbox: AlertInbox,
    clock: Arc<std::sync::atomic::AtomicI64>,
    worker: DeliveryWorker,
}

impl Fixture {
    async fn new(name: &str) -> TestResult<Self> {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open_embedded(&dir).await?;
        let (base, gate) = gated_receiver().await?;
        gate.permits.add_permits(100);
        let settings = settings(&base);
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
        let inbox = AlertInbox::new(directory.clone());
        let clock = Arc::new(std::sync::atomic::AtomicI64::new(
            kinlink_store::now_millis() + 60_000,
        ));
        let worker = support::clocked_worker(&store, &log, &directory, &settings, &clock)?;
        Ok(Self {
            dir,
            store,
            gate,
            inbox,
            clock,
            worker,
        })
    }
}

#[tokio::test]
async fn a_closed_alert_is_delivered_as_an_amendment_and_stops_escalating() -> TestResult {
    let Fixture {
        dir,
        store,
        gate,
        inbox,
        clock,
        worker,
    } = Fixture::new("kinlink-closed").await?;
    let shutdown = CancellationToken::new();
    file(&store, &inbox, 1).await?;
    assert_eq!(worker.deliver_due(&shutdown).await?, 1);

    // The referral is withdrawn: the alerter's closure reaches the notifier.
    let closed = v1::AlertClosed {
        alert_id: "alert-1".into(),
        referral_id: "r-1".into(),
        authority_code: "E10000016".into(),
        reason: v1::AlertCloseReason::ReferralWithdrawn as i32,
        reason_code: "referred_in_error".into(),
        closed_at: Some(kinlink_proto::timestamp_from_millis(
            kinlink_store::now_millis(),
        )),
        rerouted_to: Vec::new(),
    };
    // Twice (a redelivery) changes nothing more.
    close(&store, &inbox, "closed-1", &closed, 2).await?;

    assert_eq!(worker.deliver_due(&shutdown).await?, 1);
    assert_eq!(gate.ids(), ["alert-1", "alert-1:r2"]);
    let bodies = gate.bodies.lock().map(|b| b.clone()).unwrap_or_default();
    assert_eq!(bodies[1]["closed"]["reason"], "referral_withdrawn");
    assert_eq!(bodies[1]["closed"]["reason_code"], "referred_in_error");
    assert!(bodies[0].get("closed").is_none());
    let state: String = sqlx::query("SELECT state FROM alerts WHERE alert_id = 'alert-1'")
        .fetch_one(store.pool())
        .await?
        .try_get("state")?;
    assert_eq!(state, "closed");

    // Past the deadline and the on-call delay: nobody is paged for a closed alert.
    clock.store(
        kinlink_store::now_millis() + 10 * 3_600_000,
        std::sync::atomic::Ordering::SeqCst,
    );
    assert_eq!(worker.escalate_due(&shutdown).await?, 0);
    assert_eq!(gate.ids().len(), 2, "no secondary-contact message");
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test]
async fn an_alert_first_raised_by_a_later_version_is_delivered_once() -> TestResult {
    let Fixture {
        dir,
        store,
        gate,
        inbox,
        clock,
        worker,
    } = Fixture::new("kinlink-first-r2").await?;
    let shutdown = CancellationToken::new();
    // A corrected address moved the child here: the alert's first revision is 2.
    file(&store, &inbox, 2).await?;
    assert_eq!(worker.deliver_due(&shutdown).await?, 1);
    // Settled: not sent again after the claim lease.
    clock.fetch_add(10 * 60_000, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(worker.deliver_due(&shutdown).await?, 0);
    assert_eq!(gate.ids(), ["alert-1:r2"]);

    // The alert is closed (the notifier's own amendment, r3), then the referral changes
    // again (the alerter's revision 3): delivered as r4, still saying it was closed.
    let closed = v1::AlertClosed {
        alert_id: "alert-1".into(),
        referral_id: "r-1".into(),
        authority_code: "E10000016".into(),
        reason: v1::AlertCloseReason::ReferralWithdrawn as i32,
        reason_code: "referred_in_error".into(),
        closed_at: None,
        rerouted_to: Vec::new(),
    };
    close(&store, &inbox, "closed-1", &closed, 1).await?;
    assert_eq!(worker.deliver_due(&shutdown).await?, 1);
    file(&store, &inbox, 3).await?;
    assert_eq!(worker.deliver_due(&shutdown).await?, 1);
    assert_eq!(gate.ids(), ["alert-1:r2", "alert-1:r3", "alert-1:r4"]);
    let bodies = gate.bodies.lock().map(|b| b.clone()).unwrap_or_default();
    assert_eq!(bodies[2]["closed"]["reason"], "referral_withdrawn");
    // The same revision again (a replay) changes nothing.
    file(&store, &inbox, 3).await?;
    assert_eq!(worker.deliver_due(&shutdown).await?, 0);
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test]
async fn an_alert_closed_as_rerouted_reopens_when_the_child_is_routed_back() -> TestResult {
    let Fixture {
        dir,
        store,
        gate,
        inbox,
        worker,
        ..
    } = Fixture::new("kinlink-reopen").await?;
    let shutdown = CancellationToken::new();
    file(&store, &inbox, 1).await?;
    assert_eq!(worker.deliver_due(&shutdown).await?, 1);
    // Version 2 moved the child to Bristol: Kent's alert is closed as re-routed.
    let closed = v1::AlertClosed {
        alert_id: "alert-1".into(),
        referral_id: "r-1".into(),
        authority_code: "E10000016".into(),
        reason: v1::AlertCloseReason::Rerouted as i32,
        reason_code: String::new(),
        closed_at: None,
        rerouted_to: vec!["E06000023".into()],
    };
    close(&store, &inbox, "closed-r", &closed, 1).await?;
    assert_eq!(worker.deliver_due(&shutdown).await?, 1);
    // Version 3 corrects it back to Kent: the alert is Kent's again, open and escalating.
    file(&store, &inbox, 3).await?;
    assert_eq!(worker.deliver_due(&shutdown).await?, 1);
    assert_eq!(gate.ids(), ["alert-1", "alert-1:r2", "alert-1:r3"]);
    let bodies = gate.bodies.lock().map(|b| b.clone()).unwrap_or_default();
    assert_eq!(bodies[1]["closed"]["reason"], "rerouted");
    assert!(bodies[2].get("closed").is_none(), "{}", bodies[2]);
    let state: String = sqlx::query("SELECT state FROM alerts WHERE alert_id = 'alert-1'")
        .fetch_one(store.pool())
        .await?
        .try_get("state")?;
    assert_eq!(state, "open");
    let scheduled: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM escalations WHERE alert_id = 'alert-1' AND state = 'scheduled'",
    )
    .fetch_one(store.pool())
    .await?
    .try_get("n")?;
    assert_eq!(
        scheduled, 2,
        "the secondary-contact and on-call timers run again"
    );
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
