//! Safeguarding as the case changes, on the scale-out shape (Kafka-protocol broker, PostgreSQL,
//! every service its own process, two notifier processes): each escalation fires once, an
//! amendment is delivered with its own webhook-id, a corrected address re-routes and tells the
//! previous body, a withdrawal stops escalation and tells the body why, and a declined
//! lives/found hand-off reaches the authority where the child was found.

use std::time::Duration;

use sqlx::{Connection, Row};

use crate::helpers::*;

const KENT: &str = "E10000016";
const BRISTOL: &str = "E06000023";
const WESTMINSTER: &str = "E09000033";

fn config(
    dir: &std::path::Path,
    receiver: &WebhookReceiver,
    stack: &str,
) -> TestResult<std::path::PathBuf> {
    let mut text = format!(
        "[telemetry]\nfilter = \"warn\"\n\n[notifier]\nretry_delays_ms = [100, 200, 500, 1000]\ntimeout_ms = 2000\non_call_after_seconds = 2\n\n[notifier.on_call]\nevents_url = \"{}\"\nrouting_key = \"e2e\"\n",
        receiver.url("pagerduty")
    );
    for code in [KENT, BRISTOL, WESTMINSTER] {
        text.push_str(&format!(
            "\n[[notifier.authorities]]\ncode = \"{code}\"\nwebhook_url = \"{}\"\nsecondary_webhook_url = \"{}\"\n",
            receiver.url(code),
            receiver.url(&format!("secondary-{code}"))
        ));
    }
    // Kent's red alerts are due at once, so escalation is seen within the test.
    text.push_str(&format!(
        "\n[[alerter.authority_deadlines]]\ncode = \"{KENT}\"\nred_minutes = 0\namber_working_minutes = 240\ngreen_working_days = 1\n{stack}"
    ));
    let path = dir.join("kinlink.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

fn child_at(given: &str, postcode: &str) -> serde_json::Value {
    serde_json::json!({ "relationship": "child", "with_subject": true, "person": {
        "given_name": given, "family_name": "Okafor", "claimed_age": 8,
        "locations": [{ "role": "lives", "postcode": postcode }] } })
}

fn referral(child: serde_json::Value, urgency: &str) -> serde_json::Value {
    serde_json::json!({
        "subject": { "given_name": "Ngozi", "family_name": "Okafor", "date_of_birth": { "value": "1984-02-02" } },
        "dependants": [child], "urgency": urgency, "consent": "given" })
}

async fn post(
    kinlink: &Kinlink,
    path: &str,
    body: &serde_json::Value,
) -> TestResult<serde_json::Value> {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", kinlink.base_url))
        .bearer_auth(&kinlink.agency_token)
        .json(body)
        .send()
        .await?;
    let status = response.status();
    let body: serde_json::Value = response.json().await?;
    if !status.is_success() {
        return Err(format!("{path} answered {status}: {body}").into());
    }
    Ok(body)
}

/// Messages to `path` about the alert `alert_id`.
fn count(receiver: &WebhookReceiver, path: &str, alert_id: &str) -> usize {
    receiver
        .received_by(path)
        .iter()
        .filter(|r| r.body["alert_id"] == alert_id || r.body["dedup_key"] == alert_id)
        .count()
}

#[tokio::test]
async fn case_changes_on_kafka_and_postgres_with_two_notifiers() -> TestResult {
    let dir = TempDir::new("e2e-safeguarding")?;
    let stack = KafkaStack::start(&dir.0).await?;
    let receiver = WebhookReceiver::start().await?;
    let config = config(&dir.0, &receiver, &stack.settings(2, "safe"))?;
    let (intake, workers) =
        serve_scale_out(&config, &["enricher", "alerter", "notifier", "notifier"]).await?;
    // workers[2] is a notifier process: it serves the authority API.
    let outcome = scenario(
        &intake,
        &workers[2],
        &config,
        &receiver,
        &stack.database.url,
    )
    .await;
    let clean = interrupt_all(intake, workers).await?;
    stack.stop().await?;
    outcome?;
    assert!(clean, "every process drains and exits cleanly on Ctrl-C");
    Ok(())
}

async fn scenario(
    intake: &Kinlink,
    notifier: &Kinlink,
    config: &std::path::Path,
    receiver: &WebhookReceiver,
    store_url: &str,
) -> TestResult {
    // 1. An urgent referral for a child in Kent: due at once, so Kent's secondary contact and
    //    then on-call hear, each exactly once although two notifiers are running.
    let accepted = intake
        .post_referral(&referral(child_at("Chidi", "CT1 2RR"), "urgent"))
        .await?;
    let referral_id = accepted["referral_id"]
        .as_str()
        .ok_or("no referral id")?
        .to_owned();
    let first = receiver
        .wait_for(Duration::from_secs(60), |r| {
            r.iter().any(|x| x.authority == KENT)
        })
        .await?;
    let alert_id = first
        .iter()
        .find(|x| x.authority == KENT)
        .map(|x| x.webhook_id.clone())
        .ok_or("no Kent alert")?;
    receiver
        .wait_for(Duration::from_secs(30), |r| {
            r.iter()
                .any(|x| x.authority == "pagerduty" && x.body["dedup_key"] == alert_id.as_str())
        })
        .await?;
    // Give a duplicate from the second notifier time to show up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        count(receiver, &format!("secondary-{KENT}"), &alert_id),
        1,
        "secondary contact once"
    );
    let pages = receiver
        .received_by("pagerduty")
        .iter()
        .filter(|x| x.body["dedup_key"] == alert_id.as_str() && x.body["event_action"] == "trigger")
        .count();
    assert_eq!(pages, 1, "on-call paged once");
    assert_eq!(count(receiver, KENT, &alert_id), 1, "the alert itself once");

    // A correction naming a dependant the referral does not have is refused whole, by field.
    let refused = reqwest::Client::new()
        .post(format!(
            "{}/v1/referrals/{referral_id}/updates",
            intake.base_url
        ))
        .bearer_auth(&intake.agency_token)
        .json(
            &serde_json::json!({ "expected_version": 1, "correct_locations": [
            { "dependant_index": 5, "locations": [{ "role": "lives", "postcode": "BS1 5TR" }] }] }),
        )
        .send()
        .await?;
    assert_eq!(refused.status(), 400);
    let problem: serde_json::Value = refused.json().await?;
    assert_eq!(
        problem["errors"][0]["pointer"],
        "/correct_locations/0/dependant_index"
    );

    // 2. The agency corrects the address: the child lives in Bristol. Bristol is alerted, and
    //    Kent hears (amendment r2, its own webhook-id) that the alert was re-routed.
    post(
        intake,
        &format!("/v1/referrals/{referral_id}/updates"),
        &serde_json::json!({ "expected_version": 1, "correct_locations": [
            { "dependant_index": 0, "locations": [{ "role": "lives", "postcode": "BS1 5TR" }] }] }),
    )
    .await?;
    let amended = format!("{alert_id}:r2");
    let received = receiver
        .wait_for(Duration::from_secs(60), |r| {
            r.iter().any(|x| x.webhook_id == amended) && r.iter().any(|x| x.authority == BRISTOL)
        })
        .await?;
    let kent_r2 = received
        .iter()
        .find(|x| x.webhook_id == amended)
        .ok_or("no amendment")?;
    assert_eq!(kent_r2.body["closed"]["reason"], "rerouted");
    assert_eq!(
        kent_r2.body["closed"]["rerouted_to"],
        serde_json::json!([BRISTOL])
    );
    assert_eq!(kent_r2.body["revision"], 2);
    // Bristol's alert, first raised by version 2, is delivered once and settles.
    let bristol = received
        .iter()
        .find(|x| x.authority == BRISTOL)
        .map(|x| x.webhook_id.clone())
        .ok_or("no Bristol alert")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        receiver
            .received_by(BRISTOL)
            .iter()
            .filter(|x| x.webhook_id == bristol)
            .count(),
        1
    );

    // 3. A routine referral for a child in Westminster, then withdrawn: Westminster is told why
    //    and its escalation timers are cancelled.
    let accepted = intake
        .post_referral(&referral(child_at("Ada", "SW1A 2AA"), "routine"))
        .await?;
    let second = accepted["referral_id"]
        .as_str()
        .ok_or("no referral id")?
        .to_owned();
    let received = receiver
        .wait_for(Duration::from_secs(60), |r| {
            r.iter().any(|x| x.authority == WESTMINSTER)
        })
        .await?;
    let westminster = received
        .iter()
        .find(|x| x.authority == WESTMINSTER)
        .map(|x| x.webhook_id.clone())
        .ok_or("no Westminster alert")?;
    post(
        intake,
        "/v1/events",
        &serde_json::json!({ "type": "withdrawal", "referral_id": second, "reason_code": "referred_in_error" }),
    )
    .await?;
    let closed_id = format!("{westminster}:r2");
    let received = receiver
        .wait_for(Duration::from_secs(60), |r| {
            r.iter().any(|x| x.webhook_id == closed_id)
        })
        .await?;
    let closure = received
        .iter()
        .find(|x| x.webhook_id == closed_id)
        .ok_or("no closure")?;
    assert_eq!(closure.body["closed"]["reason"], "referral_withdrawn");
    assert_eq!(closure.body["closed"]["reason_code"], "referred_in_error");
    let mut db = sqlx::PgConnection::connect(store_url).await?;
    let state: String = sqlx::query("SELECT state FROM alerts WHERE alert_id = $1")
        .bind(&westminster)
        .fetch_one(&mut db)
        .await?
        .try_get("state")?;
    assert_eq!(state, "closed");
    let live: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM escalations WHERE alert_id = $1 AND state = 'scheduled'",
    )
    .bind(&westminster)
    .fetch_one(&mut db)
    .await?
    .try_get("n")?;
    assert_eq!(
        live, 0,
        "no escalation left to fire for a withdrawn referral"
    );

    // 4. A child who lives in Kent and was found in Westminster: Kent declines the hand-off
    //    through a notifier process's authority API, and Westminster is told.
    let mut found = child_at("Emeka", "CT1 2RR");
    found["person"]["locations"]
        .as_array_mut()
        .ok_or("no locations")?
        .push(serde_json::json!({ "role": "found", "postcode": "SW1A 2AA" }));
    let accepted = intake.post_referral(&referral(found, "routine")).await?;
    let third = accepted["referral_id"]
        .as_str()
        .ok_or("no referral id")?
        .to_owned();
    let of_third = |r: &[Received], code: &str| {
        r.iter()
            .find(|x| x.authority == code && x.body["referral_id"] == third.as_str())
            .map(|x| x.webhook_id.clone())
    };
    let received = receiver
        .wait_for(Duration::from_secs(60), |r| {
            of_third(r, KENT).is_some() && of_third(r, WESTMINSTER).is_some()
        })
        .await?;
    let kent_alert = of_third(&received, KENT).ok_or("no Kent alert")?;
    let westminster_alert = of_third(&received, WESTMINSTER).ok_or("no Westminster alert")?;
    let kent_token = create_token(None, config, "--authority", KENT)?;
    let decided = reqwest::Client::new()
        .post(format!(
            "{}/v1/alerts/{kent_alert}/decline-responsibility",
            notifier.base_url
        ))
        .bearer_auth(&kent_token)
        .json(&serde_json::json!({ "reason_code": "child_not_resident" }))
        .send()
        .await?;
    assert_eq!(decided.status(), 200);
    let told = format!("{westminster_alert}:r2");
    let received = receiver
        .wait_for(Duration::from_secs(60), |r| {
            r.iter().any(|x| x.webhook_id == told)
        })
        .await?;
    let told = received
        .iter()
        .find(|x| x.webhook_id == told)
        .ok_or("not told")?;
    assert_eq!(told.body["handoff"]["state"], "declined");
    assert_eq!(told.body["handoff"]["reason_code"], "child_not_resident");
    db.close().await?;
    Ok(())
}
