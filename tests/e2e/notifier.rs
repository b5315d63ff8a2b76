//! Delivery, escalation and audit end to end: signed webhooks checked by the Standard
//! Webhooks reference implementation, retries (5xx, 429 + Retry-After, timeout), 410 and
//! exhausted retries, a SIGKILL in the middle of a retry sequence, escalation to the
//! secondary contact and on-call, acknowledgement, cross-authority denial and the audit log.

use std::time::Duration;

use sqlx::{Connection, Row};

use crate::helpers::*;

const OLD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NEW_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
/// Secrets reach kinlink through the environment only (settings refuse them inline).
const OLD_SECRET_VAR: &str = "KINLINK_E2E_OLD_SECRET";
const NEW_SECRET_VAR: &str = "KINLINK_E2E_NEW_SECRET";
const SECRETS: &[(&str, &str)] = &[(OLD_SECRET_VAR, OLD_SECRET), (NEW_SECRET_VAR, NEW_SECRET)];
const KENT: &str = "E10000016";
const WESTMINSTER: &str = "E09000033";
const BIRMINGHAM: &str = "E08000025";
const BRISTOL: &str = "E06000023";

/// Settings with every authority signing with the old and the new secret (a rotation).
fn config(
    dir: &std::path::Path,
    receiver: &WebhookReceiver,
    notifier: &str,
    extra: &str,
) -> TestResult<std::path::PathBuf> {
    let mut text = format!("[telemetry]\nfilter = \"info\"\n\n[notifier]\n{notifier}\n");
    for code in [KENT, WESTMINSTER, BIRMINGHAM, BRISTOL] {
        text.push_str(&format!(
            "\n[[notifier.authorities]]\ncode = \"{code}\"\nwebhook_url = \"{}\"\nsecondary_webhook_url = \"{}\"\nsigning_secrets = [\"env:{OLD_SECRET_VAR}\", \"env:{NEW_SECRET_VAR}\"]\n",
            receiver.url(code),
            receiver.url(&format!("secondary-{code}"))
        ));
        if code == BRISTOL {
            // Bristol opted in to full payloads.
            text.push_str("full_payload = true\n");
        }
    }
    text.push_str(extra);
    let path = dir.join("kinlink.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

fn child(name: &str, authority: &str) -> serde_json::Value {
    serde_json::json!({ "relationship": "child", "person": { "given_name": name, "family_name": "Osei", "claimed_age": 7,
        "locations": [{ "role": "lives", "authority_code": authority }] } })
}

fn referral(children: Vec<serde_json::Value>, urgency: &str) -> serde_json::Value {
    serde_json::json!({ "subject": { "given_name": "Ama", "family_name": "Osei", "date_of_birth": { "value": "1986-06-06" } },
        "dependants": children, "urgency": urgency })
}

#[tokio::test]
async fn signed_delivery_with_retries_410_and_exhausted_retries() -> TestResult {
    let dir = TempDir::new("e2e-delivery")?;
    let receiver = WebhookReceiver::start().await?;
    // Receivers that hold only the old secret still verify during the rotation.
    receiver.verify_with(OLD_SECRET);
    receiver.script(
        KENT,
        vec![
            Reply::status(503),
            Reply {
                retry_after: Some("1"),
                ..Reply::status(429)
            },
        ],
    );
    receiver.script(WESTMINSTER, vec![Reply::status(410)]);
    receiver.script(BIRMINGHAM, vec![Reply::status(500); 8]);
    receiver.script(
        BRISTOL,
        vec![Reply {
            delay: Duration::from_millis(1500),
            ..Reply::status(204)
        }],
    );
    let config = config(
        &dir.0,
        &receiver,
        "retry_delays_ms = [100, 100, 100]\ntimeout_ms = 1000",
        "",
    )?;
    let data = dir.0.join("data");
    let kinlink = Kinlink::up_with_env(&data, &config, SECRETS).await?;
    kinlink
        .post_referral(&referral(
            vec![
                child("Kofi", KENT),
                child("Esi", WESTMINSTER),
                child("Yaw", BIRMINGHAM),
                child("Abena", BRISTOL),
            ],
            "routine",
        ))
        .await?;

    let everything_settled = |r: &[Received]| {
        let count = |code: &str| r.iter().filter(|x| x.authority == code).count();
        count(KENT) >= 3
            && count(BRISTOL) >= 2
            && count(BIRMINGHAM) >= 4
            && count(&format!("secondary-{WESTMINSTER}")) >= 1
            && count(&format!("secondary-{BIRMINGHAM}")) >= 1
    };
    receiver
        .wait_for(Duration::from_secs(30), everything_settled)
        .await?;
    tokio::time::sleep(Duration::from_millis(800)).await;

    // Every request was signed, and verified with the reference implementation.
    assert!(
        receiver
            .received()
            .iter()
            .all(|r| r.signature_valid == Some(true)),
        "{:?}",
        receiver.received()
    );
    // 503, then 429 with Retry-After: 1 s, then delivered; the same webhook-id each time.
    let kent = receiver.received_by(KENT);
    assert_eq!(kent.len(), 3, "{kent:?}");
    assert!(kent.iter().all(|r| r.webhook_id == kent[0].webhook_id));
    assert!(
        kent[2].at - kent[1].at >= Duration::from_millis(950),
        "Retry-After honoured: {:?}",
        kent[2].at - kent[1].at
    );
    // A timed-out attempt is retried.
    let bristol = receiver.received_by(BRISTOL);
    assert_eq!(bristol.len(), 2);
    assert_eq!(bristol[0].webhook_id, bristol[1].webhook_id);
    // Bristol opted in to full payloads and gets the child's details; Kent gets a thin one.
    assert_eq!(
        bristol[1].body["children"][0]["details"]["given_name"],
        "Abena"
    );
    assert_eq!(bristol[1].body["children"][0]["details"]["claimed_age"], 7);
    assert!(kent[2].body["children"][0].get("details").is_none());
    assert!(!kent[2].body.to_string().contains("Kofi"));
    // 410: one attempt only, then the secondary contact hears at once.
    assert_eq!(receiver.received_by(WESTMINSTER).len(), 1);
    let secondary = receiver.received_by(&format!("secondary-{WESTMINSTER}"));
    assert_eq!(secondary[0].body["escalation"], "secondary_contact");
    // Exhausted: the first attempt and three retries, then the secondary contact.
    assert_eq!(receiver.received_by(BIRMINGHAM).len(), 4);
    assert_eq!(
        receiver
            .received_by(&format!("secondary-{BIRMINGHAM}"))
            .len(),
        1
    );

    let store = format!("sqlite://{}?mode=ro", data.join("kinlink.db").display());
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&store).await?;
    let dead =
        sqlx::query("SELECT COUNT(*) AS n FROM log_events WHERE topic = 'kinlink.notifier.dlq'")
            .fetch_one(&mut conn)
            .await?;
    assert_eq!(
        dead.try_get::<i64, _>("n")?,
        2,
        "410 and exhausted alerts are dead-lettered"
    );
    let disabled = sqlx::query("SELECT authority_code FROM endpoint_state")
        .fetch_all(&mut conn)
        .await?;
    assert_eq!(disabled.len(), 1);
    assert_eq!(
        disabled[0].try_get::<String, _>("authority_code")?,
        WESTMINSTER
    );
    conn.close().await?;
    assert!(kinlink.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn sigkill_during_retries_delivers_with_at_most_one_extra_attempt() -> TestResult {
    let dir = TempDir::new("e2e-retry-crash")?;
    let receiver = WebhookReceiver::start().await?;
    receiver.script(KENT, vec![Reply::status(500), Reply::status(500)]);
    let config = config(
        &dir.0,
        &receiver,
        "retry_delays_ms = [1500, 1500]\ntimeout_ms = 2000",
        "",
    )?;
    let data = dir.0.join("data");
    let kinlink = Kinlink::up_with_env(&data, &config, SECRETS).await?;
    kinlink
        .post_referral(&referral(vec![child("Kojo", KENT)], "routine"))
        .await?;
    receiver
        .wait_for(Duration::from_secs(20), |r| !r.is_empty())
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    kinlink.crash().await?;

    let kinlink = Kinlink::up_with_env(&data, &config, SECRETS).await?;
    // Without the crash: 500, 500, then delivered (3 requests).
    receiver
        .wait_for(Duration::from_secs(30), |r| r.len() >= 3)
        .await?;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let kent = receiver.received_by(KENT);
    assert!(
        (3..=4).contains(&kent.len()),
        "at most one extra attempt: {}",
        kent.len()
    );
    assert!(
        kent.iter().all(|r| r.webhook_id == kent[0].webhook_id),
        "one webhook-id throughout"
    );
    assert!(kinlink.interrupt().await?.success());
    Ok(())
}

fn kinlink_cli(args: &[&str], data: &std::path::Path) -> TestResult<std::process::Output> {
    Ok(std::process::Command::new(crate::helpers::kinlink_bin())
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()?)
}

#[tokio::test]
async fn unacknowledged_alerts_escalate_and_acknowledgement_resolves_on_call() -> TestResult {
    let dir = TempDir::new("e2e-escalation")?;
    let receiver = WebhookReceiver::start().await?;
    let extra = format!(
        "\n[notifier.on_call]\nevents_url = \"{}\"\nrouting_key = \"test-routing-key\"\n\n[alerter.deadlines]\nred_minutes = 0\namber_working_minutes = 240\ngreen_working_days = 1\n",
        receiver.url("pagerduty")
    );
    let config = config(
        &dir.0,
        &receiver,
        "on_call_after_seconds = 2\npublic_base_url = \"http://kinlink.test\"",
        &extra,
    )?;
    let data = dir.0.join("data");
    let kinlink = Kinlink::up_with_env(&data, &config, SECRETS).await?;
    kinlink
        .post_referral(&referral(vec![child("Akua", KENT)], "urgent"))
        .await?;

    // Delivered, never acknowledged: the deadline (now, for this test) passes, the secondary
    // contact is told, then on-call is paged with the alert id as dedup key.
    let received = receiver
        .wait_for(Duration::from_secs(20), |r| {
            r.iter().any(|x| x.authority == "pagerduty")
        })
        .await?;
    let alert_id = received
        .iter()
        .find(|r| r.authority == KENT)
        .map(|r| r.webhook_id.clone())
        .ok_or("no delivery")?;
    let secondary = receiver.received_by(&format!("secondary-{KENT}"));
    assert_eq!(secondary.len(), 1);
    let page = &receiver.received_by("pagerduty")[0];
    assert_eq!(page.body["event_action"], "trigger");
    assert_eq!(page.body["dedup_key"], alert_id.as_str());
    assert_eq!(page.body["routing_key"], "test-routing-key");
    assert!(
        page.at >= secondary[0].at + Duration::from_millis(1500),
        "on-call comes after the secondary contact"
    );

    // Kent acknowledges with its own token: on-call is resolved.
    let token = kinlink_cli(&["tokens", "create", "--authority", KENT, "--json"], &data)?;
    assert!(token.status.success(), "{token:?}");
    let token: serde_json::Value = serde_json::from_slice(&token.stdout)?;
    let kent_token = token["token"].as_str().ok_or("no token")?.to_owned();
    let client = reqwest::Client::new();
    let alert_url = format!("{}/v1/alerts/{alert_id}", kinlink.base_url);
    let read: serde_json::Value = client
        .get(&alert_url)
        .bearer_auth(&kent_token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(read["alert_id"], alert_id.as_str());
    assert_eq!(
        read["content_url"],
        format!("http://kinlink.test/v1/alerts/{alert_id}")
    );
    let ack = client
        .post(format!("{alert_url}/acknowledge"))
        .bearer_auth(&kent_token)
        .send()
        .await?;
    assert_eq!(ack.status(), 200);
    receiver
        .wait_for(Duration::from_secs(10), |r| {
            r.iter()
                .any(|x| x.authority == "pagerduty" && x.body["event_action"] == "resolve")
        })
        .await?;
    let inbox: serde_json::Value = client
        .get(format!(
            "{}/v1/authorities/{KENT}/alerts?state=acknowledged",
            kinlink.base_url
        ))
        .bearer_auth(&kent_token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(inbox[0]["alert_id"], alert_id.as_str());

    // Westminster's token cannot see Kent's alert: 404, as if it did not exist, and audited.
    let other = kinlink_cli(
        &["tokens", "create", "--authority", WESTMINSTER, "--json"],
        &data,
    )?;
    let other: serde_json::Value = serde_json::from_slice(&other.stdout)?;
    let denied = client
        .get(&alert_url)
        .bearer_auth(other["token"].as_str().unwrap_or_default())
        .send()
        .await?;
    assert_eq!(denied.status(), 404);
    assert_eq!(client.get(&alert_url).send().await?.status(), 401);
    assert_eq!(
        client
            .get(&alert_url)
            .bearer_auth("klk_not-a-token")
            .send()
            .await?
            .status(),
        401
    );

    assert!(kinlink.interrupt().await?.success());

    // The audit log holds the disclosure, the escalations, the acknowledgement and the denial,
    // and verifies; altering one entry breaks it.
    let verified = kinlink_cli(&["audit", "verify", "--json"], &data)?;
    assert!(verified.status.success(), "{verified:?}");
    let store = format!("sqlite://{}", data.join("kinlink.db").display());
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&store).await?;
    let actions: Vec<String> = sqlx::query("SELECT action FROM audit_log ORDER BY seq")
        .fetch_all(&mut conn)
        .await?
        .iter()
        .map(|r| r.try_get("action"))
        .collect::<Result<_, _>>()?;
    for action in [
        "webhook_sent",
        "escalated",
        "alert_read",
        "acknowledged",
        "access_denied",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} missing from {actions:?}"
        );
    }
    sqlx::query("UPDATE audit_log SET detail = 'tampered' WHERE seq = 1")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let broken = kinlink_cli(&["audit", "verify"], &data)?;
    assert_eq!(broken.status.code(), Some(1), "{broken:?}");
    assert!(String::from_utf8(broken.stdout)?.contains("BROKEN at entry 1"));
    Ok(())
}
