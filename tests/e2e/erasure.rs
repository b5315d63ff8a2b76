//! Erasure by crypto-shredding: personal data enters the log only sealed; `kinlink erase
//! person` deletes the child's data keys and scrubs the store, after which nothing on disk
//! holds her details, while the rest of the household, the figures and the audit chain stay.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use sqlx::{Connection, Row};

use crate::helpers::*;

const KENT: &str = "E10000016";
const WESTMINSTER: &str = "E09000033";

fn contains(haystack: &[u8], needle: &str) -> bool {
    let needle = needle.as_bytes();
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// The database file and its write-ahead log, as bytes.
fn raw_store(data: &Path) -> TestResult<Vec<u8>> {
    let mut bytes = std::fs::read(data.join("kinlink.db"))?;
    if let Ok(wal) = std::fs::read(data.join("kinlink.db-wal")) {
        bytes.extend(wal);
    }
    Ok(bytes)
}

#[tokio::test]
async fn an_erased_child_is_unreadable_in_the_log_and_the_store() -> TestResult {
    let dir = TempDir::new("e2e-erasure")?;
    let receiver = WebhookReceiver::start().await?;
    let config = write_config(&dir.0, &receiver, &[KENT, WESTMINSTER], "")?;
    let data = dir.0.join("data");
    let kinlink = Kinlink::up(&data, &config).await?;
    let accepted = kinlink.post_referral(&family_referral("erase")).await?;
    let referral_id = accepted["referral_id"]
        .as_str()
        .ok_or("no referral_id")?
        .to_owned();
    receiver
        .wait_for(Duration::from_secs(30), |r| {
            r.iter().any(|x| x.authority == KENT) && r.iter().any(|x| x.authority == WESTMINSTER)
        })
        .await?;
    let store_url = format!("sqlite://{}?mode=ro", data.join("kinlink.db").display());
    let elira = dependant_person_id(&store_url, &referral_id, 0).await?;

    // Every event in the log carries the family's details sealed, never in the clear.
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&store_url).await?;
    let payloads: Vec<Vec<u8>> = sqlx::query("SELECT payload FROM log_events")
        .fetch_all(&mut conn)
        .await?
        .iter()
        .map(|r| r.try_get("payload"))
        .collect::<Result<_, _>>()?;
    assert!(payloads.len() >= 4, "{} events", payloads.len());
    for name in [
        "Eliraerase",
        "Arbenerase",
        "Adulterase",
        "must never reach a log",
    ] {
        assert!(
            !payloads.iter().any(|p| contains(p, name)),
            "{name} is in the log in the clear"
        );
    }
    let slot = format!("slot:{referral_id}:2:0");
    assert!(
        payloads.iter().any(|p| contains(p, &slot)),
        "sealed under {slot}"
    );
    conn.close().await?;

    // Erase Elira while the pipeline runs.
    let output = std::process::Command::new(kinlink_bin())
        .args([
            "erase",
            "person",
            &elira,
            "--by",
            "operator-7",
            "--reason",
            "article17_request",
            "--json",
        ])
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .output()?;
    assert!(output.status.success(), "{output:?}");
    let erasure: Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(erasure["person_id"], elira.as_str());
    assert!(
        erasure["keys_deleted"].as_u64().unwrap_or(0) >= 3,
        "{erasure}"
    );
    assert!(
        erasure["alerts_scrubbed"].as_u64().unwrap_or(0) >= 1,
        "{erasure}"
    );
    // Unknown people are refused, naming the id.
    let unknown = std::process::Command::new(kinlink_bin())
        .args([
            "erase",
            "person",
            "p-nobody",
            "--by",
            "op",
            "--reason",
            "test",
            "--data-dir",
        ])
        .arg(&data)
        .output()?;
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("p-nobody"));

    assert!(kinlink.interrupt().await?.success());

    // Her keys are gone, so the sealed copies in the log open as nobody's.
    let mut conn = sqlx::AnyConnection::connect(&store_url).await?;
    for key in [
        slot.clone(),
        format!("person:{referral_id}:{elira}"),
        format!("referral:{referral_id}"),
    ] {
        let left =
            sqlx::query("SELECT key_id FROM data_keys WHERE key_id = $1 AND erased_at_ms IS NULL")
                .bind(&key)
                .fetch_optional(&mut conn)
                .await?;
        assert!(left.is_none(), "{key} survived");
    }
    // Her brother's key is still there.
    let brother =
        sqlx::query("SELECT key_id FROM data_keys WHERE key_id = $1 AND erased_at_ms IS NULL")
            .bind(format!("slot:{referral_id}:2:1"))
            .fetch_optional(&mut conn)
            .await?;
    assert!(brother.is_some(), "the brother's key went too");
    // The figures and the audit chain still hold.
    let referrals: i64 = sqlx::query("SELECT COUNT(*) AS n FROM intake_referrals")
        .fetch_one(&mut conn)
        .await?
        .try_get("n")?;
    assert_eq!(referrals, 1);
    let audited = sqlx::query("SELECT actor, detail FROM audit_log WHERE action = 'person_erased'")
        .fetch_one(&mut conn)
        .await?;
    assert_eq!(audited.try_get::<String, _>("actor")?, "operator-7");
    assert!(
        audited
            .try_get::<String, _>("detail")?
            .contains("article17_request")
    );
    conn.close().await?;
    let verify = std::process::Command::new(kinlink_bin())
        .args(["audit", "verify", "--data-dir"])
        .arg(&data)
        .output()?;
    assert!(verify.status.success(), "{verify:?}");

    // Nothing on disk holds her name any more; her brother's record is still readable (the
    // scan can see names at all).
    let raw = raw_store(&data)?;
    assert!(
        !contains(&raw, "Eliraerase"),
        "Elira's name is still on disk"
    );
    assert!(
        contains(&raw, "Arbenerase"),
        "the scan must see a name that was not erased"
    );
    Ok(())
}

/// Master key rotation on the embedded default: the key file made on first start is moved to
/// `previous_master_keys`, a new key takes over, `kinlink keys rotate` re-wraps every data key,
/// and afterwards the new key alone opens everything sealed before (a replay re-derives the
/// same outputs from the old, sealed events).
#[tokio::test]
async fn a_rotated_master_key_alone_opens_what_was_sealed_before() -> TestResult {
    let dir = TempDir::new("e2e-rotation")?;
    let receiver = WebhookReceiver::start().await?;
    let config = write_config(&dir.0, &receiver, &[KENT, WESTMINSTER], "")?;
    let data = dir.0.join("data");
    let kinlink = Kinlink::up(&data, &config).await?;
    kinlink.post_referral(&family_referral("rotate")).await?;
    receiver
        .wait_for(Duration::from_secs(30), |r| r.len() >= 2)
        .await?;
    assert!(kinlink.interrupt().await?.success());
    let old = std::fs::read_to_string(data.join("master.key"))?;
    let new = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=";

    let base = std::fs::read_to_string(&config)?;
    let rotating_config = dir.0.join("rotating.toml");
    std::fs::write(
        &rotating_config,
        format!(
            "{base}\n[privacy]\nmaster_key = \"env:E2E_NEW_KEY\"\nprevious_master_keys = [\"env:E2E_OLD_KEY\"]\n"
        ),
    )?;
    let new_config = dir.0.join("new.toml");
    std::fs::write(
        &new_config,
        format!("{base}\n[privacy]\nmaster_key = \"env:E2E_NEW_KEY\"\n"),
    )?;
    let run = |args: &[&str], config: &Path| -> TestResult<Value> {
        let output = std::process::Command::new(kinlink_bin())
            .args(args)
            .args(["--json", "--data-dir"])
            .arg(&data)
            .arg("--config")
            .arg(config)
            .env("E2E_NEW_KEY", new)
            .env("E2E_OLD_KEY", old.trim())
            .output()?;
        if !output.status.success() {
            return Err(format!("kinlink {args:?}: {output:?}").into());
        }
        Ok(serde_json::from_slice(&output.stdout)?)
    };
    let rotating = rotating_config.as_path();
    let before = run(&["keys", "status"], rotating)?;
    assert_eq!(before.as_array().map(Vec::len), Some(1), "{before}");
    assert_eq!(before[0]["current"], false, "{before}");
    let rotated = run(
        &["keys", "rotate", "--by", "dpo-1", "--batch", "2"],
        rotating,
    )?;
    assert!(rotated["rewrapped"].as_u64().unwrap_or(0) >= 4, "{rotated}");

    let new_only = new_config.as_path();
    let after = run(&["keys", "status"], new_only)?;
    assert_eq!(after.as_array().map(Vec::len), Some(1), "{after}");
    assert_eq!(after[0]["current"], true, "{after}");
    // The enricher's and alerter's inputs, sealed under the old arrangement, open and re-derive
    // the same outputs with the new key alone.
    for stage in ["enricher", "alerter"] {
        let replay = run(
            &[
                "ops",
                "replay",
                "--stage",
                stage,
                "--from",
                "0",
                "--dry-run",
            ],
            new_only,
        )?;
        assert_eq!(replay["rejected"], 0, "{replay}");
        assert_eq!(replay["new"], 0, "{replay}");
        assert_eq!(replay["changed"], 0, "{replay}");
    }
    Ok(())
}
