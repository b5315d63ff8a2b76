//! Retention and legal holds on the embedded default: a dry run lists and changes nothing; a
//! run erases what is past its date except what a hold keeps; a held person cannot be erased
//! on request either; lifting the hold lets the next run erase it.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use sqlx::{Connection, Row};

use crate::helpers::*;

const KENT: &str = "E10000016";
const WESTMINSTER: &str = "E09000033";

fn cli(args: &[&str], data: &Path, config: &Path) -> TestResult<std::process::Output> {
    Ok(std::process::Command::new(kinlink_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .output()?)
}

fn json(args: &[&str], data: &Path, config: &Path) -> TestResult<Value> {
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let output = cli(&with_json, data, config)?;
    if !output.status.success() {
        return Err(format!("kinlink {args:?} failed: {output:?}").into());
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

async fn keys_of(store_url: &str, referral_id: &str) -> TestResult<i64> {
    let mut conn = sqlx::AnyConnection::connect(store_url).await?;
    let n: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM data_keys WHERE referral_id = $1 AND erased_at_ms IS NULL",
    )
    .bind(referral_id)
    .fetch_one(&mut conn)
    .await?
    .try_get("n")?;
    conn.close().await?;
    Ok(n)
}

fn on_disk(data: &Path, name: &str) -> TestResult<bool> {
    let mut bytes = std::fs::read(data.join("kinlink.db"))?;
    if let Ok(wal) = std::fs::read(data.join("kinlink.db-wal")) {
        bytes.extend(wal);
    }
    Ok(bytes
        .windows(name.len())
        .any(|w| w.eq_ignore_ascii_case(name.as_bytes())))
}

#[tokio::test]
async fn retention_erases_what_is_due_and_holds_keep_the_rest() -> TestResult {
    let dir = TempDir::new("e2e-retention")?;
    let receiver = WebhookReceiver::start().await?;
    let config = write_config(&dir.0, &receiver, &[KENT, WESTMINSTER], "")?;
    let data = dir.0.join("data");
    let kinlink = Kinlink::up(&data, &config).await?;
    let mut referrals = vec![];
    for tag in ["heldret", "goneret"] {
        let accepted = kinlink.post_referral(&family_referral(tag)).await?;
        referrals.push(accepted["referral_id"].as_str().ok_or("no id")?.to_owned());
    }
    receiver
        .wait_for(Duration::from_secs(30), |r| r.len() >= 4)
        .await?;
    let store_url = format!("sqlite://{}?mode=ro", data.join("kinlink.db").display());
    sqlx::any::install_default_drivers();
    let (held, gone) = (&referrals[0], &referrals[1]);
    let held_child = dependant_person_id(&store_url, held, 0).await?;

    // Today nothing is due: the children are kept until their 25th birthdays.
    let today = json(&["retention", "run", "--dry-run"], &data, &config)?;
    assert_eq!(today["due"].as_array().map(Vec::len), Some(0), "{today}");

    // In 2100 both are due; a dry run changes nothing.
    let dry = json(
        &["retention", "run", "--dry-run", "--as-of", "2100-01-01"],
        &data,
        &config,
    )?;
    assert_eq!(dry["erased"], 2, "{dry}");
    assert!(keys_of(&store_url, gone).await? > 0);

    // A hold on the first referral keeps it, and stops its child's erasure on request too.
    let placed = json(
        &[
            "hold",
            "place",
            "--referral",
            held,
            "--reason",
            "litigation",
            "--by",
            "dpo-1",
        ],
        &data,
        &config,
    )?;
    let hold_id = placed["hold_id"].as_str().ok_or("no hold id")?.to_owned();
    let refused = cli(
        &[
            "erase",
            "person",
            &held_child,
            "--by",
            "dpo-1",
            "--reason",
            "request",
        ],
        &data,
        &config,
    )?;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("legal hold"));

    let run = json(
        &["retention", "run", "--as-of", "2100-01-01", "--by", "dpo-1"],
        &data,
        &config,
    )?;
    assert_eq!(
        (run["erased"].clone(), run["held"].clone()),
        (1.into(), 1.into()),
        "{run}"
    );
    assert_eq!(
        keys_of(&store_url, gone).await?,
        0,
        "the due referral's keys are gone"
    );
    assert!(
        keys_of(&store_url, held).await? > 0,
        "the held referral's keys stay"
    );
    // The erased referral is not looked at again.
    let again = json(
        &["retention", "run", "--dry-run", "--as-of", "2100-01-01"],
        &data,
        &config,
    )?;
    assert_eq!(again["referrals_checked"], 1, "{again}");

    assert!(kinlink.interrupt().await?.success());
    for name in ["Eliragoneret", "Arbengoneret", "Adultgoneret"] {
        assert!(!on_disk(&data, name)?, "{name} is still on disk");
    }
    assert!(on_disk(&data, "Eliraheldret")?, "the held family is kept");

    // Lifting the hold lets the next run erase it.
    json(&["hold", "lift", &hold_id, "--by", "dpo-1"], &data, &config)?;
    let after = json(
        &["retention", "run", "--as-of", "2100-01-01"],
        &data,
        &config,
    )?;
    assert_eq!(after["erased"], 1, "{after}");
    assert_eq!(keys_of(&store_url, held).await?, 0);
    assert!(!on_disk(&data, "Eliraheldret")?);

    let verify = cli(&["audit", "verify"], &data, &config)?;
    assert!(verify.status.success(), "{verify:?}");
    let mut conn = sqlx::AnyConnection::connect(&store_url).await?;
    let actions: Vec<String> = sqlx::query(
        "SELECT action FROM audit_log WHERE action LIKE 'retention%' OR action LIKE 'legal_hold%' ORDER BY seq",
    )
    .fetch_all(&mut conn)
    .await?
    .iter()
    .map(|r| r.try_get("action"))
    .collect::<Result<_, _>>()?;
    conn.close().await?;
    assert_eq!(
        actions,
        [
            "legal_hold_placed",
            "retention_erased",
            "legal_hold_lifted",
            "retention_erased"
        ]
    );
    Ok(())
}
