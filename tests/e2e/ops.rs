//! `kinlink ops` on both backends: status, trace, dead letters (list, replay), replay
//! --dry-run, and stalled-stage detection.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

const KENT: &str = "E10000016";
const WESTMINSTER: &str = "E09000033";

fn ops(args: &[&str], data: &Path, config: &Path) -> TestResult<Value> {
    let output = std::process::Command::new(crate::helpers::kinlink_bin())
        .arg("ops")
        .args(args)
        .args(["--json", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .output()?;
    if !output.status.success() {
        return Err(format!("kinlink ops {args:?} failed: {output:?}").into());
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

async fn wait_for(what: &str, mut check: impl FnMut() -> TestResult<bool>) -> TestResult {
    for _ in 0..150 {
        if check()? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("timed out waiting for {what}").into())
}

fn stage<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["stages"]
        .as_array()
        .and_then(|s| s.iter().find(|x| x["stage"] == name))
        .unwrap_or(&Value::Null)
}

async fn scenario(data: &Path, config: &Path, receiver: &WebhookReceiver) -> TestResult {
    // Kent's endpoint fails until "fixed": the delivery is given up and dead-lettered.
    receiver.script(KENT, vec![Reply::status(500); 3]);
    let kinlink = Kinlink::up(data, config).await?;
    let accepted = kinlink.post_referral(&family_referral("ops")).await?;
    let referral_id = accepted["referral_id"]
        .as_str()
        .ok_or("no referral id")?
        .to_owned();
    receiver
        .wait_for(Duration::from_secs(60), |r| {
            r.iter().filter(|x| x.authority == KENT).count() >= 3
        })
        .await?;
    receiver
        .wait_for(Duration::from_secs(60), |r| {
            r.iter().any(|x| x.authority == WESTMINSTER)
        })
        .await?;

    // An invalid streamed submission: the intake stage dead-letters it.
    let settings = kinlink_runtime::Settings::load(Some(config))?;
    let settings = kinlink_runtime::Settings {
        data_dir: data.to_owned(),
        ..settings
    };
    let (_store, log) =
        kinlink_runtime::open_backends(&settings, kinlink_eventlog::LogMetrics::default()).await?;
    let bad = kinlink_proto::v1::ReferralSubmission::default();
    let envelope = kinlink_eventlog::Envelope::new(
        "bad-submission".into(),
        "/agencies/ops-agency",
        "bad",
        "bad",
        0,
        &bad,
    );
    log.publish(kinlink_eventlog::topics::INTAKE_SUBMISSIONS, &envelope)
        .await?;

    wait_for("two dead letters", || {
        Ok(ops(&["dlq", "list"], data, config)?
            .as_array()
            .map_or(0, Vec::len)
            >= 2)
    })
    .await?;
    let letters = ops(&["dlq", "list"], data, config)?;
    let intake = letters
        .as_array()
        .and_then(|l| l.iter().find(|x| x["stage"] == "intake"))
        .ok_or("no intake letter")?;
    assert_eq!(intake["event_id"], "bad-submission");
    assert!(
        intake["reason"]
            .as_str()
            .is_some_and(|r| r.contains("/subject")),
        "{intake}"
    );
    let notifier = letters
        .as_array()
        .and_then(|l| l.iter().find(|x| x["stage"] == "notifier"))
        .ok_or("no notifier letter")?;
    assert_eq!(notifier["reason"], "retries exhausted");

    // Status: lag, dead letters, alert states.
    let status = ops(&["status"], data, config)?;
    assert_eq!(stage(&status, "enricher")["lag_events"], 0);
    assert_eq!(stage(&status, "enricher")["stalled"], false);
    assert_eq!(stage(&status, "intake")["dead_letters"], 1);
    assert_eq!(stage(&status, "notifier")["dead_letters"], 1);
    assert_eq!(status["alerts"]["failed_delivery"], 1);
    assert_eq!(status["alerts"]["delivered_unacknowledged"], 1);

    // Trace: the referral's whole story, ids only.
    let trace = ops(&["trace", &referral_id], data, config)?;
    let kinds: Vec<&str> = trace
        .as_array()
        .map(|s| s.iter().filter_map(|x| x["kind"].as_str()).collect())
        .unwrap_or_default();
    for kind in ["person", "link", "routing", "alert", "delivery", "audit"] {
        assert!(
            kinds.contains(&kind),
            "{kind} missing from the trace: {kinds:?}"
        );
    }
    assert!(
        !trace.to_string().contains("Hoxha"),
        "no personal data in the trace"
    );

    // Replay the dead-lettered delivery once Kent's endpoint is fixed: same webhook-id.
    let dry = ops(&["dlq", "replay", "--all", "--dry-run"], data, config)?;
    assert_eq!(dry.as_array().map(Vec::len), Some(2));
    ops(&["dlq", "replay", "--stage", "notifier"], data, config)?;
    let received = receiver
        .wait_for(Duration::from_secs(30), |r| {
            r.iter().filter(|x| x.authority == KENT).count() >= 4
        })
        .await?;
    let kent: Vec<_> = received.iter().filter(|x| x.authority == KENT).collect();
    assert!(kent.iter().all(|x| x.webhook_id == kent[0].webhook_id));
    let status = ops(&["status"], data, config)?;
    assert_eq!(
        stage(&status, "notifier")["dead_letters"],
        0,
        "replayed letters are not counted"
    );

    // Replay --dry-run: re-deriving the alerter's outputs changes nothing.
    let report = ops(
        &["replay", "--stage", "alerter", "--from", "0", "--dry-run"],
        data,
        config,
    )?;
    assert!(
        report["inputs"].as_u64().is_some_and(|n| n >= 1),
        "{report}"
    );
    assert_eq!(
        (report["changed"].as_u64(), report["new"].as_u64()),
        (Some(0), Some(0)),
        "{report}"
    );
    assert_eq!(report["unchanged"], 2);

    // Stalled: with the pipeline stopped, a new referral waits; the enricher is flagged.
    assert!(kinlink.interrupt().await?.success());
    let referral = kinlink_proto::v1::ReferralReceived {
        referral_id: "stalled-1".into(),
        version: 1,
        ..Default::default()
    };
    let envelope = kinlink_eventlog::Envelope::new(
        "stalled-event".into(),
        "/kinlink/intake",
        "stalled-1",
        "stalled-1",
        0,
        &referral,
    );
    log.publish(kinlink_eventlog::topics::REFERRALS_RECEIVED, &envelope)
        .await?;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let status = ops(&["status", "--stalled-after", "1"], data, config)?;
    assert_eq!(stage(&status, "enricher")["lag_events"], 1);
    assert_eq!(stage(&status, "enricher")["stalled"], true, "{status}");
    assert_eq!(stage(&status, "alerter")["stalled"], false);
    let status = ops(&["status", "--stalled-after", "3600"], data, config)?;
    assert_eq!(
        stage(&status, "enricher")["stalled"],
        false,
        "not stalled before the threshold"
    );
    Ok(())
}

#[tokio::test]
async fn ops_on_the_embedded_default() -> TestResult {
    let dir = TempDir::new("e2e-ops")?;
    let receiver = WebhookReceiver::start().await?;
    let config = write_config(&dir.0, &receiver, &[KENT, WESTMINSTER], "")?;
    let text = std::fs::read_to_string(&config)?.replace(
        "retry_delays_ms = [100, 200, 500, 1000]",
        "retry_delays_ms = [50, 50]",
    );
    std::fs::write(&config, text)?;
    scenario(&dir.0.join("data"), &config, &receiver).await
}

#[tokio::test]
async fn ops_on_kafka_and_postgres() -> TestResult {
    let dir = TempDir::new("e2e-ops-kafka")?;
    let stack = KafkaStack::start(&dir.0).await?;
    let receiver = WebhookReceiver::start().await?;
    let extra = stack.settings(1, "ops");
    let config = write_config(&dir.0, &receiver, &[KENT, WESTMINSTER], &extra)?;
    let text = std::fs::read_to_string(&config)?.replace(
        "retry_delays_ms = [100, 200, 500, 1000]",
        "retry_delays_ms = [50, 50]",
    );
    std::fs::write(&config, text)?;
    let outcome = scenario(&dir.0.join("data"), &config, &receiver).await;
    stack.stop().await?;
    outcome
}

/// With an OTLP endpoint configured, each stage's span is exported in the referral's trace:
/// the trace id carried by `traceparent` from intake through enricher, alerter and notifier.
#[tokio::test]
async fn stage_spans_are_exported_in_the_referrals_trace() -> TestResult {
    use sqlx::{Connection, Row};
    let dir = TempDir::new("e2e-otel")?;
    let receiver = WebhookReceiver::start().await?;
    let config = dir.0.join("kinlink.toml");
    std::fs::write(
        &config,
        format!(
            "[telemetry]\nfilter = \"info\"\notlp_endpoint = \"{}\"\n\n[[notifier.authorities]]\ncode = \"{KENT}\"\nwebhook_url = \"{}\"\n\n[[notifier.authorities]]\ncode = \"{WESTMINSTER}\"\nwebhook_url = \"{}\"\n",
            receiver.url("otlp"),
            receiver.url(KENT),
            receiver.url(WESTMINSTER)
        ),
    )?;
    let data = dir.0.join("data");
    let kinlink =
        Kinlink::up_with_env(&data, &config, &[("OTEL_BSP_SCHEDULE_DELAY", "200")]).await?;
    let accepted = kinlink.post_referral(&family_referral("otel")).await?;
    let referral_id = accepted["referral_id"]
        .as_str()
        .ok_or("no referral id")?
        .to_owned();
    receiver
        .wait_for(Duration::from_secs(30), |r| {
            r.iter().filter(|x| x.authority != "otlp").count() >= 2
        })
        .await?;

    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&format!(
        "sqlite://{}?mode=ro",
        data.join("kinlink.db").display()
    ))
    .await?;
    let attributes: String = sqlx::query("SELECT attributes FROM log_events WHERE topic = 'kinlink.referrals.received' AND subject = $1")
        .bind(&referral_id)
        .fetch_one(&mut conn)
        .await?
        .try_get("attributes")?;
    conn.close().await?;
    let traceparent: Value = serde_json::from_str(&attributes)?;
    let trace_hex = traceparent["traceparent"]
        .as_str()
        .and_then(|t| t.split('-').nth(1))
        .ok_or("no traceparent")?
        .to_owned();
    let trace_id: Vec<u8> = (0..16)
        .filter_map(|i| u8::from_str_radix(&trace_hex[i * 2..i * 2 + 2], 16).ok())
        .collect();
    let spans_in_trace = |r: &[Received]| {
        let exported: Vec<u8> = r
            .iter()
            .filter(|x| x.authority == "otlp")
            .flat_map(|x| x.raw.clone())
            .collect();
        exported
            .windows(16)
            .filter(|w| *w == trace_id.as_slice())
            .count()
    };
    // enricher, alerter and notifier each apply one event of this trace.
    receiver
        .wait_for(Duration::from_secs(30), |r| spans_in_trace(r) >= 3)
        .await?;
    assert!(kinlink.interrupt().await?.success());
    Ok(())
}
