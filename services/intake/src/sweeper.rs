//! Publishes referrals left pending. On the Kafka shape a referral is recorded as pending,
//! its event produced, then the record marked accepted; when producing fails after the record
//! is written (a broker outage, a crash), the agency got no 202 and may never retry. The
//! sweeper finds pending referrals older than a grace period and publishes them, with the same
//! event id (derived from referral and version), so a referral whose original publish did
//! land is recognised downstream as a duplicate. A gauge reports the oldest pending age.

use std::sync::LazyLock;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use kinlink_eventlog::EventLog;
use kinlink_proto::v1;
use kinlink_store::Store;
use prometheus_client::metrics::gauge::Gauge;
use prost::Message;
use sqlx::Row;
use tokio_util::sync::CancellationToken;

/// How long a referral may stay pending before the sweeper publishes it: longer than a
/// request takes to produce its event.
pub const GRACE_MS: i64 = 30_000;

/// How often the sweeper looks.
const INTERVAL: Duration = Duration::from_secs(10);

/// Age of the oldest referral still pending, in seconds (0 when none).
pub static OLDEST_PENDING_SECONDS: LazyLock<Gauge<i64, AtomicI64>> = LazyLock::new(Gauge::default);

/// Publishes every referral pending since before `now_ms - GRACE_MS` and marks it accepted;
/// returns how many it published. Updates [`OLDEST_PENDING_SECONDS`].
pub async fn sweep(store: &Store, log: &EventLog, now_ms: i64) -> Result<usize, crate::Error> {
    let rows = sqlx::query(
        "SELECT referral_id, version, referral, received_at_ms FROM intake_referrals \
         WHERE state = 'pending' ORDER BY received_at_ms",
    )
    .fetch_all(store.pool())
    .await?;
    let oldest = rows
        .iter()
        .filter_map(|r| r.try_get::<i64, _>("received_at_ms").ok())
        .min()
        .map_or(0, |at| (now_ms - at).max(0) / 1000);
    OLDEST_PENDING_SECONDS.set(oldest);
    let mut published = 0;
    for row in rows {
        let received_at_ms: i64 = row.try_get("received_at_ms")?;
        if now_ms - received_at_ms < GRACE_MS {
            continue;
        }
        let referral_id: String = row.try_get("referral_id")?;
        let version: i64 = row.try_get("version")?;
        let bytes: Vec<u8> = row.try_get("referral")?;
        let Ok(referral) = v1::ReferralReceived::decode(bytes.as_slice()) else {
            tracing::error!(%referral_id, "Pending referral does not decode; left for an operator.");
            continue;
        };
        crate::accept::publish_pending(store, log, &referral).await?;
        tracing::warn!(%referral_id, version, "Pending referral published by the sweeper.");
        published += 1;
    }
    if published > 0 {
        OLDEST_PENDING_SECONDS.set(0);
    }
    Ok(published)
}

/// Runs [`sweep`] every few seconds until shutdown. Failures are logged and tried again.
pub async fn run(store: Store, log: EventLog, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(INTERVAL) => {}
        }
        if let Err(error) = sweep(&store, &log, kinlink_store::now_millis()).await {
            tracing::warn!(%error, "Pending-referral sweep failed; trying again.");
        }
    }
}
