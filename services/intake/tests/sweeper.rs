//! A referral recorded as pending whose publish never happened (a broker outage after the
//! record was written) is published by the sweeper with its own event id, once, and the
//! oldest-pending gauge reports it while it waits.

use kinlink_eventlog::{EmbeddedLog, EventLog, LogMetrics, topics};
use kinlink_intake::sweeper::{GRACE_MS, OLDEST_PENDING_SECONDS, sweep};
use kinlink_proto::v1;
use kinlink_store::Store;
use kinlink_test_kit::TestResult;
use prost::Message;
use sqlx::Row;

#[tokio::test]
async fn a_referral_left_pending_is_published_once_with_its_own_event_id() -> TestResult {
    let dir = std::env::temp_dir().join(format!("kinlink-sweeper-{}", std::process::id()));
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
    let received_at = 1_795_000_000_000i64;
    let referral = kinlink_test_kit::referral(
        "r-pending",
        v1::Person {
            given_name: "Ana".into(),
            ..Default::default()
        },
        vec![],
        received_at,
    );
    let referral = v1::ReferralReceived {
        version: 1,
        ..referral
    };
    // What a failed Kafka publish leaves behind: the record, pending.
    sqlx::query(
        "INSERT INTO intake_referrals (referral_id, agency_id, external_reference, request_hash, version, state, \
         received_at_ms, referral) VALUES ('r-pending', 'a', '', 'h', 1, 'pending', $1, $2)",
    )
    .bind(received_at)
    .bind(referral.encode_to_vec())
    .execute(store.pool())
    .await?;

    // Within the grace period it is left to the request that is still publishing it.
    assert_eq!(sweep(&store, &log, received_at + GRACE_MS - 1).await?, 0);
    assert_eq!(OLDEST_PENDING_SECONDS.get(), (GRACE_MS - 1) / 1000);

    assert_eq!(sweep(&store, &log, received_at + GRACE_MS).await?, 1);
    let rows = sqlx::query("SELECT event_id FROM log_events WHERE topic = $1")
        .bind(topics::REFERRALS_RECEIVED)
        .fetch_all(store.pool())
        .await?;
    assert_eq!(rows.len(), 1);
    let event_id: String = rows[0].try_get("event_id")?;
    assert_eq!(event_id, kinlink_intake::accept::envelope(&referral).id);
    let state: String =
        sqlx::query("SELECT state FROM intake_referrals WHERE referral_id = 'r-pending'")
            .fetch_one(store.pool())
            .await?
            .try_get("state")?;
    assert_eq!(state, "accepted");
    assert_eq!(OLDEST_PENDING_SECONDS.get(), 0);
    // Nothing left to publish.
    assert_eq!(sweep(&store, &log, received_at + 10 * GRACE_MS).await?, 0);

    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
