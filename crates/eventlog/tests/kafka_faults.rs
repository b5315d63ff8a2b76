//! Broker faults injected with rdkafka's in-process mock cluster, in addition to the real
//! broker (tansu) tests in `tests/e2e`: transient produce errors, and a broker that goes down
//! while the outbox holds events. Nothing may be lost and nothing acknowledged early.

use kinlink_test_kit::TestResult;
use std::time::Duration;

use kinlink_eventlog::{Envelope, KafkaConfig, KafkaLog, LogMetrics, topics};
use kinlink_proto::v1::AlertAcknowledged;
use kinlink_store::Store;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use sqlx::Row;
use tokio_util::sync::CancellationToken;

fn event(id: &str) -> Envelope {
    let message = AlertAcknowledged {
        alert_id: id.into(),
        ..Default::default()
    };
    Envelope::new(id.into(), "/test", id, id, 1_700_000_000_000, &message)
}

async fn outbox_len(store: &Store) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) AS n FROM outbox")
        .fetch_one(store.pool())
        .await?
        .try_get("n")
}

#[tokio::test]
async fn transient_errors_are_retried_and_a_down_broker_loses_nothing() -> TestResult {
    let mock = MockCluster::new(1)?;
    for topic in topics::all_with_dead_letters() {
        mock.create_topic(&topic, 1, 1)?;
    }
    let dir = std::env::temp_dir().join(format!("kinlink-faults-{}", std::process::id()));
    let store = Store::open_embedded(&dir).await?;
    let config = KafkaConfig {
        brokers: mock.bootstrap_servers(),
        partitions: 1,
        replication_factor: 1,
        group_prefix: "faults-".into(),
        produce_timeout: Duration::from_secs(3),
        client_options: [("reconnect.backoff.max.ms".to_owned(), "500".to_owned())].into(),
        // The mock broker does not implement CreateTopics; topics were made above.
        create_topics: false,
    };
    let log = KafkaLog::connect(
        config,
        store.clone(),
        LogMetrics::default(),
        kinlink_test_kit::test_sealer(),
    )
    .await?;
    let topic = topics::ALERTS_LIFECYCLE;

    // Transient produce errors: the idempotent producer retries, publish still succeeds.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        ],
    );
    log.publish(topic, &event("before-outage")).await?;

    // Broker down: a direct publish fails (intake answers 503 and accepts nothing)...
    mock.broker_down(1)?;
    assert!(
        log.publish(topic, &event("refused")).await.is_err(),
        "publish must not succeed with the broker down"
    );

    // ...and an event committed to the outbox waits there until the broker is back.
    let mut tx = store.begin().await?;
    log.append_in(&mut tx, topic, &event("from-outbox")).await?;
    tx.commit().await?;
    let shutdown = CancellationToken::new();
    let relay = tokio::spawn({
        let log = log.clone();
        let shutdown = shutdown.clone();
        async move { log.run_outbox_relay(shutdown).await }
    });
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        outbox_len(&store).await?,
        1,
        "the outbox keeps the event while the broker is down"
    );

    mock.broker_up(1)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while outbox_len(&store).await? > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "outbox not drained after the broker came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.cancel();
    relay.await??;

    // The topic holds exactly what was acknowledged: the first event and the outbox one.
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
        .set("group.id", "faults-reader")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut ids = Vec::new();
    while ids.len() < 2 {
        let message = tokio::time::timeout(Duration::from_secs(20), consumer.recv()).await??;
        let id = message
            .headers()
            .and_then(|h| {
                h.iter()
                    .find(|h| h.key == "ce_id")
                    .and_then(|h| h.value.map(<[u8]>::to_vec))
            })
            .ok_or("message without ce_id")?;
        ids.push(String::from_utf8(id)?);
    }
    ids.retain(|id| id != "refused");
    assert_eq!(ids, ["before-outage", "from-outbox"]);
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
