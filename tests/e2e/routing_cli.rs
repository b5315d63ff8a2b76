//! Routing as on-call staff see it: `kinlink authority`, the triage queue through the CLI and
//! the API, and postcodes routed end to end.

use std::time::Duration;

use crate::helpers::*;

const KENT: &str = "E10000016";

fn kinlink_command() -> std::process::Command {
    std::process::Command::new(crate::helpers::kinlink_bin())
}

#[test]
fn authority_command_resolves_postcodes_and_exits_2_when_it_cannot() -> TestResult {
    let output = kinlink_command()
        .args(["authority", "ct1 2rr", "--json"])
        .output()?;
    assert!(output.status.success(), "{output:?}");
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(answer["code"], KENT);
    assert_eq!(
        answer["district"], "E07000106",
        "the district on the way (Canterbury)"
    );
    assert!(
        answer["data_version"]
            .as_str()
            .is_some_and(|v| v.contains("onspd"))
    );

    let output = kinlink_command().args(["authority", "BS16 1"]).output()?;
    assert_eq!(
        output.status.code(),
        Some(2),
        "ambiguous sector: {output:?}"
    );
    let text = String::from_utf8(output.stdout)?;
    assert!(
        text.contains("E06000023") && text.contains("E06000025"),
        "names both candidates: {text}"
    );

    let output = kinlink_command()
        .args(["authority", "not a postcode"])
        .output()?;
    assert_eq!(output.status.code(), Some(2));
    Ok(())
}

#[tokio::test]
async fn postcodes_route_and_unresolvable_children_wait_in_triage() -> TestResult {
    let dir = TempDir::new("e2e-triage")?;
    let receiver = WebhookReceiver::start().await?;
    let config = write_config(
        &dir.0,
        &receiver,
        &[KENT, "E06000023"],
        "\n[ops]\napi_token = \"test-operator-token\"\n",
    )?;
    let data = dir.0.join("data");
    let kinlink = Kinlink::up(&data, &config).await?;
    let referral = serde_json::json!({
        "subject": { "given_name": "Adult", "family_name": "Tran", "date_of_birth": { "value": "1988-01-01" } },
        "dependants": [
            { "relationship": "child", "person": { "given_name": "Kim", "family_name": "Tran", "claimed_age": 8,
              "locations": [{ "role": "lives", "postcode": "ct1 2rr" }] } },
            { "relationship": "child", "person": { "given_name": "Lien", "family_name": "Tran", "claimed_age": 6,
              "locations": [{ "role": "found", "postcode": "BS16 1" }] } }
        ]
    });
    let accepted = kinlink.post_referral(&referral).await?;
    let referral_id = accepted["referral_id"]
        .as_str()
        .ok_or("no referral id")?
        .to_owned();

    // The Canterbury postcode reaches Kent County Council.
    let received = receiver
        .wait_for(Duration::from_secs(30), |r| !r.is_empty())
        .await?;
    assert_eq!(received[0].authority, KENT);
    assert_eq!(
        received[0].body["children"].as_array().map(Vec::len),
        Some(1)
    );

    // The ambiguous sector waits in triage, visible through the API (with the operator token)...
    let client = reqwest::Client::new();
    let url = format!("{}/v1/triage", kinlink.base_url);
    assert_eq!(client.get(&url).send().await?.status(), 401);
    let mut items = serde_json::Value::Null;
    for _ in 0..50 {
        items = client
            .get(&url)
            .bearer_auth("test-operator-token")
            .send()
            .await?
            .json()
            .await?;
        if items.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let item = &items[0];
    assert_eq!(item["referral_id"], referral_id.as_str());
    assert_eq!(item["reasons"], serde_json::json!(["ambiguous_postcode"]));
    assert_eq!(
        item["candidates"],
        serde_json::json!(["E06000023", "E06000025"])
    );

    // ...and through the CLI, next to the running pipeline.
    let output = kinlink_command()
        .args(["triage", "list", "--json", "--data-dir"])
        .arg(&data)
        .output()?;
    assert!(output.status.success(), "{output:?}");
    let listed: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(listed[0]["alert_id"], item["alert_id"]);

    // Routing by API needs the operator token and a body that runs children's services.
    let alert_id = item["alert_id"].as_str().ok_or("no alert id")?;
    let route_url = format!("{}/v1/triage/{alert_id}/route", kinlink.base_url);
    let route = serde_json::json!({ "authority_code": "E06000023", "operator": "op-17" });
    let response = client.post(&route_url).json(&route).send().await?;
    assert_eq!(response.status(), 401);
    let response = client
        .post(&route_url)
        .bearer_auth("test-operator-token")
        .json(&serde_json::json!({ "authority_code": "E07000106", "operator": "" }))
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    let problem: serde_json::Value = response.json().await?;
    assert_eq!(problem["errors"][0]["pointer"], "/operator");
    let response = client
        .post(&route_url)
        .bearer_auth("test-operator-token")
        .json(&serde_json::json!({ "authority_code": "E99999999", "operator": "op-17" }))
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    let problem: serde_json::Value = response.json().await?;
    assert_eq!(problem["errors"][0]["pointer"], "/authority_code");

    // A person decides: Bristol. The alert is delivered there under its own id.
    let output = kinlink_command()
        .args([
            "triage",
            "route",
            alert_id,
            "--authority",
            "E06000023",
            "--by",
            "op-17",
            "--config",
        ])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .output()?;
    assert!(output.status.success(), "{output:?}");
    let received = receiver
        .wait_for(Duration::from_secs(30), |r| {
            r.iter().any(|x| x.authority == "E06000023")
        })
        .await?;
    let bristol = received
        .iter()
        .find(|x| x.authority == "E06000023")
        .ok_or("no Bristol delivery")?;
    assert_eq!(bristol.webhook_id, alert_id);
    // Routed once; the API now says it is no longer in triage.
    let response = client
        .post(&route_url)
        .bearer_auth("test-operator-token")
        .json(&route)
        .send()
        .await?;
    assert_eq!(response.status(), 409);
    let output = kinlink_command()
        .args(["triage", "list", "--json", "--data-dir"])
        .arg(&data)
        .output()?;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&output.stdout)?,
        serde_json::json!([])
    );

    assert!(kinlink.interrupt().await?.success());
    Ok(())
}
