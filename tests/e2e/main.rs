//! End-to-end tests: the real `kinlink` binary, real storage, a real Kafka-protocol broker
//! (tansu) and PostgreSQL, and a local webhook receiver standing in for the authorities.

mod channels;
mod console;
mod erasure;
mod golden;
mod handoff;
mod helpers;
mod intake;
mod linkage_cli;
mod linkage_safety;
mod notifier;
mod oidc;
mod ops;
mod person_linkage;
mod report;
mod retention;
mod routing_cli;
mod safeguarding;
mod subject_access;
mod transport_security;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use helpers::*;

const KENT: &str = "E10000016";
const WESTMINSTER: &str = "E09000033";

/// Posts the family referral and checks each authority got exactly one alert, naming the
/// person id the enricher gave that authority's child.
async fn family_reaches_both_authorities(
    kinlink: &Kinlink,
    receiver: &WebhookReceiver,
    store_url: &str,
) -> TestResult {
    let accepted = kinlink.post_referral(&family_referral("1")).await?;
    let referral_id = accepted["referral_id"]
        .as_str()
        .ok_or("no referral_id")?
        .to_owned();

    receiver
        .wait_for(Duration::from_secs(60), |r| r.len() >= 2)
        .await?;
    // Give a stray duplicate the chance to show up before counting.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let received = receiver.received();
    assert_eq!(received.len(), 2, "exactly two alerts: {received:?}");

    let kent_child = dependant_person_id(store_url, &referral_id, 0).await?;
    let westminster_child = dependant_person_id(store_url, &referral_id, 1).await?;
    assert_ne!(kent_child, westminster_child);
    for (authority, child) in [(KENT, &kent_child), (WESTMINSTER, &westminster_child)] {
        let alerts: Vec<_> = received
            .iter()
            .filter(|r| r.authority == authority)
            .collect();
        assert_eq!(alerts.len(), 1, "{authority} gets exactly one alert");
        let alert = &alerts[0].body;
        assert_eq!(
            alert["person_id"].as_str(),
            Some(child.as_str()),
            "{authority} alert names its child"
        );
        assert_eq!(alert["referral_id"].as_str(), Some(referral_id.as_str()));
        assert_eq!(alert["authority_code"].as_str(), Some(authority));
        assert_eq!(alert["priority"].as_str(), Some("urgent"));
        assert_eq!(
            alerts[0].webhook_id,
            alert["alert_id"].as_str().unwrap_or_default(),
            "webhook-id is the alert id"
        );
    }
    // No personal data in the thin payload.
    let text = serde_json::to_string(&received.iter().map(|r| &r.body).collect::<Vec<_>>())?;
    assert!(
        !text.contains("Hoxha") && !text.contains("Elira"),
        "payload leaked a name: {text}"
    );
    drop(received);
    Ok(())
}

#[tokio::test]
async fn embedded_default_alerts_each_childs_authority_once() -> TestResult {
    let dir = TempDir::new("e2e-embedded")?;
    let receiver = WebhookReceiver::start().await?;
    let config = write_config(&dir.0, &receiver, &[KENT, WESTMINSTER], "")?;
    let data = dir.0.join("data");
    let kinlink = Kinlink::up(&data, &config).await?;
    let store_url = format!("sqlite://{}?mode=ro", data.join("kinlink.db").display());
    family_reaches_both_authorities(&kinlink, &receiver, &store_url).await?;
    // `--address 127.0.0.1:0` chose a port: the link to the full alert uses it.
    for r in receiver.received() {
        let url = r.body["content_url"].as_str().unwrap_or_default();
        assert!(
            url.starts_with(&format!("{}/v1/alerts/", kinlink.base_url)),
            "content_url {url} does not follow {}",
            kinlink.base_url
        );
    }

    // The ops endpoints answer.
    let metrics = reqwest::get(format!("{}/metrics", kinlink.base_url))
        .await?
        .text()
        .await?;
    assert!(metrics.contains("kinlink_stage_events_total"), "{metrics}");
    assert_eq!(
        reqwest::get(format!("{}/readyz", kinlink.base_url))
            .await?
            .status(),
        200
    );

    let status = kinlink.interrupt().await?;
    assert!(
        status.success(),
        "Ctrl-C drains and exits cleanly: {status:?}"
    );
    Ok(())
}

/// `http.metrics_address` moves `/metrics` off the public address: the API's port answers
/// 404 for it, the metrics port serves it, and the probes stay on the API's port.
#[tokio::test]
async fn metrics_can_have_an_address_of_their_own() -> TestResult {
    let dir = TempDir::new("e2e-metrics-address")?;
    let receiver = WebhookReceiver::start().await?;
    let config = write_config(&dir.0, &receiver, &[KENT], "")?;
    let metrics_address = format!("127.0.0.1:{}", free_port()?);
    let kinlink = Kinlink::up_with_env(
        &dir.0.join("data"),
        &config,
        &[("KINLINK__HTTP__METRICS_ADDRESS", metrics_address.as_str())],
    )
    .await?;
    let public = reqwest::get(format!("{}/metrics", kinlink.base_url)).await?;
    assert_eq!(public.status(), 404, "metrics left the public address");
    let metrics = reqwest::get(format!("http://{metrics_address}/metrics"))
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("kinlink_intake_oldest_pending_seconds"),
        "{metrics}"
    );
    for probe in ["livez", "readyz"] {
        let status = reqwest::get(format!("{}/{probe}", kinlink.base_url))
            .await?
            .status();
        assert_eq!(status, 200, "{probe} stays on the API's address");
    }
    let status = kinlink.interrupt().await?;
    assert!(status.success(), "{status:?}");
    Ok(())
}

/// The scale-out shape: each service in its own process, the enricher and the notifier twice,
/// sharing a Kafka-protocol broker (tansu) and one PostgreSQL database.
#[tokio::test]
async fn scale_out_on_kafka_and_postgres_alerts_each_childs_authority_once() -> TestResult {
    let dir = TempDir::new("e2e-kafka")?;
    let stack = KafkaStack::start(&dir.0).await?;
    let receiver = WebhookReceiver::start().await?;
    let extra = stack.settings(2, "e2e");
    let config = write_config(&dir.0, &receiver, &[KENT, WESTMINSTER], &extra)?;
    let (intake, workers) = serve_scale_out(
        &config,
        &["enricher", "enricher", "alerter", "notifier", "notifier"],
    )
    .await?;
    let outcome = family_reaches_both_authorities(&intake, &receiver, &stack.database.url).await;
    let sealed = if outcome.is_ok() {
        topics_hold_no_personal_data_in_the_clear(&stack, &config).await
    } else {
        Ok(())
    };
    let clean = interrupt_all(intake, workers).await?;
    stack.stop().await?;
    outcome?;
    sealed?;
    assert!(clean, "every process drains and exits cleanly on Ctrl-C");
    Ok(())
}

/// Read raw from the broker, the pipeline's topics carry the family's details only sealed;
/// erasing the child deletes her data keys from the shared PostgreSQL store (so the sealed
/// copies on every broker replica are nobody's to read) and leaves her brother's.
async fn topics_hold_no_personal_data_in_the_clear(
    stack: &KafkaStack,
    config: &std::path::Path,
) -> TestResult {
    let mut seen = 0;
    for topic in [
        kinlink_eventlog::topics::REFERRALS_RECEIVED,
        kinlink_eventlog::topics::REFERRALS_ENRICHED,
        kinlink_eventlog::topics::ALERTS_RAISED,
    ] {
        for value in raw_topic_values(&stack.tansu.bootstrap, topic)? {
            seen += 1;
            for name in [
                "Elira1",
                "Arben1",
                "Adult1",
                "Hoxha",
                "must never reach a log",
            ] {
                assert!(
                    !value.windows(name.len()).any(|w| w == name.as_bytes()),
                    "{name} in the clear on {topic}"
                );
            }
        }
    }
    assert!(seen >= 4, "{seen} messages read");
    let referral_id = {
        use sqlx::{Connection, Row};
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&stack.database.url).await?;
        let id: String = sqlx::query("SELECT referral_id FROM intake_referrals")
            .fetch_one(&mut conn)
            .await?
            .try_get("referral_id")?;
        conn.close().await?;
        id
    };
    let elira = dependant_person_id(&stack.database.url, &referral_id, 0).await?;
    let output = std::process::Command::new(kinlink_bin())
        .args([
            "erase", "person", &elira, "--by", "op", "--reason", "test", "--config",
        ])
        .arg(config)
        .output()?;
    assert!(output.status.success(), "{output:?}");
    use sqlx::{Connection, Row};
    let mut conn = sqlx::AnyConnection::connect(&stack.database.url).await?;
    let keys: Vec<String> =
        sqlx::query("SELECT key_id FROM data_keys WHERE erased_at_ms IS NULL ORDER BY key_id")
            .fetch_all(&mut conn)
            .await?
            .iter()
            .map(|r| r.try_get("key_id"))
            .collect::<Result<_, _>>()?;
    conn.close().await?;
    assert!(
        !keys.contains(&format!("slot:{referral_id}:2:0")),
        "Elira's key survived: {keys:?}"
    );
    assert!(
        keys.contains(&format!("slot:{referral_id}:2:1")),
        "her brother's key went too: {keys:?}"
    );
    Ok(())
}

/// SIGKILL while referrals are in flight, restart, and compare with the expected alerts:
/// none lost, and any repeat carries the same webhook-id (the receiver can drop it).
#[tokio::test]
async fn sigkill_mid_flight_loses_no_alert() -> TestResult {
    const REFERRALS: usize = 12;
    let dir = TempDir::new("e2e-crash")?;
    let receiver = WebhookReceiver::start_slow(Duration::from_millis(150)).await?;
    let config = write_config(&dir.0, &receiver, &[KENT, WESTMINSTER], "")?;
    let data = dir.0.join("data");

    let kinlink = Kinlink::up(&data, &config).await?;
    let mut referral_ids = Vec::new();
    for i in 0..REFERRALS {
        let accepted = kinlink
            .post_referral(&family_referral(&format!("crash{i}")))
            .await?;
        referral_ids.push(
            accepted["referral_id"]
                .as_str()
                .ok_or("no referral_id")?
                .to_owned(),
        );
    }
    // Kill as soon as the first alert lands: the rest of the pipeline is mid-flight.
    receiver
        .wait_for(Duration::from_secs(60), |r| !r.is_empty())
        .await?;
    kinlink.crash().await?;
    let before_restart = receiver.received().len();
    assert!(
        before_restart < REFERRALS * 2,
        "the crash must fall while alerts are still in flight"
    );

    let kinlink = Kinlink::up(&data, &config).await?;
    let expected = REFERRALS * 2;
    receiver
        .wait_for(Duration::from_secs(90), |r| {
            r.iter()
                .map(|x| &x.webhook_id)
                .collect::<BTreeSet<_>>()
                .len()
                >= expected
        })
        .await?;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let received = receiver.received();
    let status = kinlink.interrupt().await?;
    assert!(status.success());

    let mut per_alert: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &received {
        *per_alert.entry(r.webhook_id.as_str()).or_default() += 1;
    }
    let repeats: usize = per_alert.values().map(|n| n - 1).sum();
    println!(
        "crash test: {before_restart} alert(s) delivered before SIGKILL, {} distinct after restart, {repeats} repeated delivery(ies)",
        per_alert.len()
    );
    assert_eq!(
        per_alert.len(),
        expected,
        "every alert delivered, none lost and none extra"
    );
    // Each referral's two alerts, one per authority.
    for referral_id in &referral_ids {
        let authorities: BTreeSet<_> = received
            .iter()
            .filter(|r| r.body["referral_id"].as_str() == Some(referral_id))
            .map(|r| r.authority.as_str())
            .collect();
        assert_eq!(
            authorities,
            BTreeSet::from([KENT, WESTMINSTER]),
            "referral {referral_id}"
        );
    }
    // Only attempts in flight, or answered and not yet recorded, are repeated: at most twice
    // the requests allowed in flight (two endpoints, `per_endpoint_concurrency` = 4 each).
    assert!(repeats <= 2 * 2 * 4, "{repeats} repeats after one crash");
    Ok(())
}
