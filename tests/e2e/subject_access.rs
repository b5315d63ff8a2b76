//! `kinlink sar export`: everything held about one child, with the rest of the household
//! withheld, the disclosures listed, and the export itself audited.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

const KENT: &str = "E10000016";
const WESTMINSTER: &str = "E09000033";

#[tokio::test]
async fn subject_access_export_shows_the_childs_own_data_and_withholds_the_family() -> TestResult {
    let dir = TempDir::new("e2e-sar")?;
    let receiver = WebhookReceiver::start().await?;
    let config = write_config(&dir.0, &receiver, &[KENT, WESTMINSTER], "")?;
    let data = dir.0.join("data");
    let kinlink = Kinlink::up(&data, &config).await?;
    let accepted = kinlink.post_referral(&family_referral("sar")).await?;
    let referral_id = accepted["referral_id"].as_str().ok_or("no referral_id")?;
    receiver
        .wait_for(Duration::from_secs(30), |r| {
            r.iter().any(|x| x.authority == KENT) && r.iter().any(|x| x.authority == WESTMINSTER)
        })
        .await?;
    let store_url = format!("sqlite://{}?mode=ro", data.join("kinlink.db").display());
    // Elirasar, who lives in Kent.
    let elira = dependant_person_id(&store_url, referral_id, 0).await?;

    let html = dir.0.join("sar.html");
    let output = std::process::Command::new(kinlink_bin())
        .args(["sar", "export", &elira, "--by", "operator-7", "--html"])
        .arg(&html)
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .output()?;
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout)?;
    let export: Value = serde_json::from_str(&text)?;
    assert_eq!(export["person_id"], elira.as_str());
    let referral = &export["referrals"][0];
    assert_eq!(referral["referral_id"], referral_id);
    assert_eq!(referral["role"], "dependant");
    assert_eq!(referral["details"]["given_name"], "Elirasar");
    assert_eq!(referral["details"]["date_of_birth"], "2016-01-01");
    // The adult and the brother are counted, never described; the free text is withheld.
    assert_eq!(referral["other_people_withheld"], 2);
    assert_eq!(referral["concern_withheld"], true);
    let page = std::fs::read_to_string(&html)?;
    for output in [&text, &page] {
        assert!(!output.contains("Arbensar"), "a sibling's name leaked");
        assert!(!output.contains("Adultsar"), "the adult's name leaked");
        assert!(
            !output.contains("must never reach a log"),
            "the concern leaked"
        );
    }
    assert!(page.contains("Elirasar") && page.contains("<html lang=\"en\">"));
    // Her alert went to Kent, and the audit log says when it was sent.
    let alerts = export["alerts"].as_array().ok_or("no alerts")?;
    assert!(
        alerts.iter().any(|a| a["authority_code"] == KENT),
        "{alerts:?}"
    );
    assert!(
        alerts.iter().all(|a| a["authority_code"] != WESTMINSTER),
        "Arben's alert to Westminster is not hers: {alerts:?}"
    );
    let disclosures = export["disclosures"].as_array().ok_or("no disclosures")?;
    assert!(
        disclosures
            .iter()
            .any(|d| d["action"] == "webhook_sent" && d["authority_code"] == KENT),
        "{disclosures:?}"
    );
    assert!(
        !export["linkage_decisions"]
            .as_array()
            .is_none_or(Vec::is_empty)
    );

    // An unknown person is an error naming the id; --by is required.
    let unknown = std::process::Command::new(kinlink_bin())
        .args([
            "sar",
            "export",
            "p-unknown",
            "--by",
            "operator-7",
            "--data-dir",
        ])
        .arg(&data)
        .output()?;
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("p-unknown"));

    assert!(kinlink.interrupt().await?.success());
    // The export is audited, and the chain still verifies.
    let verify = std::process::Command::new(kinlink_bin())
        .args(["audit", "verify", "--data-dir"])
        .arg(&data)
        .output()?;
    assert!(verify.status.success(), "{verify:?}");
    sqlx::any::install_default_drivers();
    use sqlx::{Connection, Row};
    let mut conn = sqlx::AnyConnection::connect(&store_url).await?;
    let row =
        sqlx::query("SELECT actor, detail FROM audit_log WHERE action = 'subject_access_export'")
            .fetch_one(&mut conn)
            .await?;
    assert_eq!(row.try_get::<String, _>("actor")?, "operator-7");
    assert!(row.try_get::<String, _>("detail")?.contains(&elira));
    conn.close().await?;
    Ok(())
}
