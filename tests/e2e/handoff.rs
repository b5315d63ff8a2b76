//! The lives/found hand-off, end to end on the embedded default: both authorities see it in
//! their inbox; the authority where the child lives declines with a reason code; the authority
//! where the child was found is told in an amendment of its alert; a decision stands.

use std::time::Duration;

use crate::helpers::*;

const KENT: &str = "E10000016";
const WESTMINSTER: &str = "E09000033";

async fn token(data: &std::path::Path, config: &std::path::Path, code: &str) -> TestResult<String> {
    create_token(Some(data), config, "--authority", code)
}

/// `kinlink up` with webhooks for `authorities`, and a referral of a child who lives in Kent
/// (Canterbury) and was found in Westminster, delivered to both.
struct Case {
    _dir: TempDir,
    data: std::path::PathBuf,
    config: std::path::PathBuf,
    receiver: WebhookReceiver,
    kinlink: Kinlink,
    referral_id: String,
    received: Vec<Received>,
}

impl Case {
    async fn start(label: &str, authorities: &[&str]) -> TestResult<Self> {
        let dir = TempDir::new(label)?;
        let data = dir.0.join("data");
        let receiver = WebhookReceiver::start().await?;
        let config = write_config(&dir.0, &receiver, authorities, "")?;
        let kinlink = Kinlink::up(&data, &config).await?;
        let referral = serde_json::json!({
            "subject": { "given_name": "Femi", "family_name": "Adeyemi", "date_of_birth": { "value": "1985-05-05" } },
            "dependants": [{ "relationship": "child", "person": { "given_name": "Tobi", "family_name": "Adeyemi",
                "claimed_age": 12, "locations": [
                    { "role": "lives", "postcode": "CT1 2RR" }, { "role": "found", "postcode": "SW1A 2AA" }] } }],
            "urgency": "routine", "consent": "given" });
        let accepted = kinlink.post_referral(&referral).await?;
        let referral_id = accepted["referral_id"]
            .as_str()
            .ok_or("no referral id")?
            .to_owned();
        let received = receiver
            .wait_for(Duration::from_secs(60), |r| r.len() >= 2)
            .await?;
        Ok(Self {
            _dir: dir,
            data,
            config,
            receiver,
            kinlink,
            referral_id,
            received,
        })
    }
}

#[tokio::test]
async fn the_home_authority_declines_and_the_found_authority_is_told() -> TestResult {
    let Case {
        _dir,
        data,
        config,
        receiver,
        kinlink,
        referral_id,
        received,
    } = Case::start("e2e-handoff", &[KENT, WESTMINSTER]).await?;
    let alert_of = |code: &str| {
        received
            .iter()
            .find(|r| r.authority == code)
            .map(|r| r.webhook_id.clone())
            .ok_or(format!("no alert for {code}"))
    };
    let (kent_alert, westminster_alert) = (alert_of(KENT)?, alert_of(WESTMINSTER)?);
    let kent = token(&data, &config, KENT).await?;
    let westminster = token(&data, &config, WESTMINSTER).await?;
    let client = reqwest::Client::new();

    // Both inboxes show the pending hand-off.
    for (code, token) in [(KENT, &kent), (WESTMINSTER, &westminster)] {
        let response = client
            .get(format!("{}/v1/authorities/{code}/alerts", kinlink.base_url))
            .bearer_auth(token)
            .send()
            .await?;
        assert_eq!(
            response
                .headers()
                .get("x-total-count")
                .and_then(|v| v.to_str().ok()),
            Some("1"),
            "{code}: the total is given"
        );
        let inbox: serde_json::Value = response.json().await?;
        assert_eq!(inbox[0]["rag"], "amber", "{code} inbox: {inbox}");
        assert_eq!(inbox[0]["priority"], "standard", "{code} inbox: {inbox}");
        assert_eq!(inbox[0]["child_count"], 1, "{code} inbox: {inbox}");
        assert_eq!(
            inbox[0]["handoffs"],
            serde_json::json!([{ "home_authority": KENT, "found_authority": WESTMINSTER, "state": "pending" }]),
            "{code} inbox: {inbox}"
        );
    }

    // Only the home authority decides, and only with a reason code.
    let decline = format!(
        "{}/v1/alerts/{kent_alert}/decline-responsibility",
        kinlink.base_url
    );
    let bad = client
        .post(&decline)
        .bearer_auth(&kent)
        .json(&serde_json::json!({ "reason_code": "" }))
        .send()
        .await?;
    assert_eq!(bad.status(), 400);
    let problem: serde_json::Value = bad.json().await?;
    assert_eq!(problem["errors"][0]["pointer"], "/reason_code");
    let not_home = client
        .post(format!(
            "{}/v1/alerts/{westminster_alert}/decline-responsibility",
            kinlink.base_url
        ))
        .bearer_auth(&westminster)
        .json(&serde_json::json!({ "reason_code": "not_ours" }))
        .send()
        .await?;
    assert_eq!(
        not_home.status(),
        409,
        "the found authority has no hand-off to decide"
    );

    let declined = client
        .post(&decline)
        .bearer_auth(&kent)
        .json(&serde_json::json!({ "reason_code": "child_not_resident" }))
        .send()
        .await?;
    assert_eq!(declined.status(), 200);
    let declined: serde_json::Value = declined.json().await?;
    assert_eq!(declined["handoff"], "declined");

    // Westminster hears, in an amendment of its own alert.
    let amended = format!("{westminster_alert}:r2");
    let received = receiver
        .wait_for(Duration::from_secs(30), |r| {
            r.iter().any(|x| x.webhook_id == amended)
        })
        .await?;
    let told = received
        .iter()
        .find(|x| x.webhook_id == amended)
        .ok_or("no amendment")?;
    assert_eq!(told.authority, WESTMINSTER);
    assert_eq!(told.body["handoff"]["state"], "declined");
    assert_eq!(told.body["handoff"]["reason_code"], "child_not_resident");
    assert_eq!(told.body["handoff"]["home_authority"], KENT);

    // A decision stands.
    let again = client
        .post(format!(
            "{}/v1/alerts/{kent_alert}/accept-responsibility",
            kinlink.base_url
        ))
        .bearer_auth(&kent)
        .send()
        .await?;
    assert_eq!(again.status(), 409);
    let inbox: serde_json::Value = client
        .get(format!(
            "{}/v1/authorities/{WESTMINSTER}/alerts",
            kinlink.base_url
        ))
        .bearer_auth(&westminster)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(inbox[0]["handoffs"][0]["state"], "declined");

    // The referring agency sees it in the referral's status.
    let status: serde_json::Value = client
        .get(format!("{}/v1/referrals/{referral_id}", kinlink.base_url))
        .bearer_auth(&kinlink.agency_token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(status["handoffs"][0]["home_authority"], KENT);
    assert_eq!(status["handoffs"][0]["found_authority"], WESTMINSTER);
    assert_eq!(status["handoffs"][0]["state"], "declined");

    // On-call sees the hand-off in the referral's trace.
    let output = std::process::Command::new(kinlink_bin())
        .args(["ops", "trace", &referral_id, "--json", "--data-dir"])
        .arg(&data)
        .output()?;
    assert!(output.status.success(), "{output:?}");
    let trace: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let handoff_steps: Vec<&str> = trace
        .as_array()
        .or_else(|| trace["steps"].as_array())
        .into_iter()
        .flatten()
        .filter(|s| s["kind"] == "handoff")
        .filter_map(|s| s["what"].as_str())
        .collect();
    assert_eq!(
        handoff_steps,
        [
            format!("{KENT} asked to take responsibility from {WESTMINSTER}"),
            format!("{KENT} declined (child_not_resident)")
        ]
    );
    kinlink.interrupt().await?;
    Ok(())
}

#[tokio::test]
async fn the_home_authority_transfers_to_a_third_body_which_is_alerted_and_asked() -> TestResult {
    const BRISTOL: &str = "E06000023";
    let Case {
        _dir,
        data,
        config,
        receiver,
        kinlink,
        received,
        ..
    } = Case::start("e2e-transfer", &[KENT, WESTMINSTER, BRISTOL]).await?;
    let kent_alert = received
        .iter()
        .find(|r| r.authority == KENT)
        .map(|r| r.webhook_id.clone())
        .ok_or("no Kent alert")?;
    let kent = token(&data, &config, KENT).await?;
    let client = reqwest::Client::new();
    let transfer = format!(
        "{}/v1/alerts/{kent_alert}/transfer-responsibility",
        kinlink.base_url
    );
    let bad = client
        .post(&transfer)
        .bearer_auth(&kent)
        .json(&serde_json::json!({ "authority_code": "E99999999", "reason_code": "moved" }))
        .send()
        .await?;
    assert_eq!(bad.status(), 400);
    let problem: serde_json::Value = bad.json().await?;
    assert_eq!(problem["errors"][0]["pointer"], "/authority_code");

    // The family has moved to Bristol: Kent transfers.
    let moved = client
        .post(&transfer)
        .bearer_auth(&kent)
        .json(&serde_json::json!({ "authority_code": BRISTOL, "reason_code": "family_moved" }))
        .send()
        .await?;
    assert_eq!(moved.status(), 200);
    let received = receiver
        .wait_for(Duration::from_secs(30), |r| {
            r.iter().any(|x| x.authority == BRISTOL)
                && r.iter().any(|x| {
                    x.authority == WESTMINSTER && x.body["handoff"]["state"] == "transferred"
                })
        })
        .await?;
    let told = received
        .iter()
        .find(|x| x.authority == WESTMINSTER && x.body["handoff"]["state"] == "transferred")
        .ok_or("Westminster not told")?;
    assert_eq!(told.body["handoff"]["transferred_to"], BRISTOL);
    let bristol_alert = received
        .iter()
        .find(|x| x.authority == BRISTOL)
        .ok_or("Bristol not alerted")?;
    assert_eq!(
        bristol_alert.body["children"].as_array().map(Vec::len),
        Some(1)
    );

    // Bristol is asked in turn, and can decide.
    let bristol = token(&data, &config, BRISTOL).await?;
    let inbox: serde_json::Value = client
        .get(format!(
            "{}/v1/authorities/{BRISTOL}/alerts",
            kinlink.base_url
        ))
        .bearer_auth(&bristol)
        .send()
        .await?
        .json()
        .await?;
    let asked = inbox[0]["handoffs"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|h| h["home_authority"] == BRISTOL && h["state"] == "pending");
    assert!(asked, "{inbox}");
    let accepted = client
        .post(format!(
            "{}/v1/alerts/{}/accept-responsibility",
            kinlink.base_url, bristol_alert.webhook_id
        ))
        .bearer_auth(&bristol)
        .send()
        .await?;
    assert_eq!(accepted.status(), 200);
    kinlink.interrupt().await?;
    Ok(())
}
