//! `kinlink report` on a running embedded pipeline: the returns are read from the event log,
//! agree with what was sent, and hide small counts.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

const KENT: &str = "E10000016";
const WESTMINSTER: &str = "E09000033";

fn report(args: &[&str], data: &Path, config: &Path) -> TestResult<std::process::Output> {
    let output = std::process::Command::new(kinlink_bin())
        .arg("report")
        .args(args)
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .output()?;
    if !output.status.success() {
        return Err(format!("kinlink report {args:?} failed: {output:?}").into());
    }
    Ok(output)
}

fn json(args: &[&str], data: &Path, config: &Path) -> TestResult<Value> {
    let mut with_json = args.to_vec();
    with_json.push("--json");
    Ok(serde_json::from_slice(
        &report(&with_json, data, config)?.stdout,
    )?)
}

fn headline(report: &Value, measure: &str) -> Value {
    report["headlines"]
        .as_array()
        .and_then(|h| h.iter().find(|x| x["measure"] == measure))
        .map_or(Value::Null, |h| h["value"].clone())
}

fn table<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["tables"]
        .as_array()
        .and_then(|t| t.iter().find(|x| x["name"] == name))
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn returns_come_from_the_log_and_hide_small_counts() -> TestResult {
    let dir = TempDir::new("e2e-report")?;
    let receiver = WebhookReceiver::start().await?;
    let config = write_config(&dir.0, &receiver, &[KENT, WESTMINSTER], "")?;
    let data = dir.0.join("data");
    let kinlink = Kinlink::up(&data, &config).await?;
    // Six families: an adult found in Westminster, one child living in Kent (Ashford) and
    // one in Westminster.
    // Names far apart, so linkage keeps the twelve children apart.
    let families = [
        ("Osei", "Kwame", "Ama"),
        ("Nguyen", "Minh", "Lan"),
        ("Haddad", "Omar", "Leila"),
        ("Popescu", "Andrei", "Ioana"),
        ("Tesfaye", "Dawit", "Selam"),
        ("Kowalczyk", "Piotr", "Zofia"),
    ];
    for (n, (family, first, second)) in families.iter().enumerate() {
        let mut referral = family_referral(&format!("report{n}"));
        referral["subject"]["family_name"] = (*family).into();
        for (index, given) in [first, second].iter().enumerate() {
            referral["dependants"][index]["person"]["given_name"] = (**given).into();
            referral["dependants"][index]["person"]["family_name"] = (*family).into();
        }
        kinlink.post_referral(&referral).await?;
    }
    receiver
        .wait_for(Duration::from_secs(60), |r| {
            r.iter().filter(|x| x.authority == KENT).count() >= 6
                && r.iter().filter(|x| x.authority == WESTMINSTER).count() >= 6
        })
        .await?;

    let today = chrono::Utc::now().date_naive().to_string();
    let all = json(&["--from", &today, "--to", &today], &data, &config)?;
    assert_eq!(headline(&all, "referrals_received"), 6, "{all}");
    assert_eq!(headline(&all, "adults_with_dependants"), 6, "{all}");
    assert_eq!(headline(&all, "dependent_children"), 12, "{all}");
    // No child was on an earlier referral: 0 is shown, not hidden.
    assert_eq!(headline(&all, "children_already_known"), 0, "{all}");
    let by_basis = table(&all, "children_by_authority_and_basis");
    let rows: Vec<&str> = by_basis["rows"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        rows.contains(&KENT) && rows.contains(&WESTMINSTER),
        "{by_basis}"
    );
    // Every figure is a count of 0 or at least 5, or "[c]".
    for figure in by_basis["figures"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r.as_array().into_iter().flatten())
    {
        match figure.as_u64() {
            Some(n) => assert!(n == 0 || n >= 5, "{by_basis}"),
            None => assert_eq!(figure, "[c]", "{by_basis}"),
        }
    }

    // One authority: Kent's alerts and the referrals behind them.
    let kent = json(
        &["--from", &today, "--to", &today, "--authority", KENT],
        &data,
        &config,
    )?;
    assert_eq!(headline(&kent, "alerts_raised"), 6, "{kent}");
    assert_eq!(headline(&kent, "referrals_received"), 6, "{kent}");

    // A period before any of it: nothing.
    let before = json(
        &["--from", "2020-01-01", "--to", "2020-12-31"],
        &data,
        &config,
    )?;
    assert_eq!(headline(&before, "referrals_received"), 0, "{before}");

    // CSV and text carry the same figures, and no names.
    let csv = String::from_utf8(
        report(&["--from", &today, "--to", &today, "--csv"], &data, &config)?.stdout,
    )?;
    assert!(
        csv.starts_with("section,measure,row,column,value\n"),
        "{csv}"
    );
    assert!(csv.contains("headline,referrals_received,,,6\n"), "{csv}");
    let text =
        String::from_utf8(report(&["--from", &today, "--to", &today], &data, &config)?.stdout)?;
    assert!(text.contains("Referrals received"), "{text}");
    for output in [&csv, &text] {
        assert!(
            !output.contains("Hoxha") && !output.contains("Elira"),
            "{output}"
        );
    }
    // A reversed period is refused, naming the flags.
    let reversed = std::process::Command::new(kinlink_bin())
        .args([
            "report",
            "--from",
            "2026-02-01",
            "--to",
            "2026-01-01",
            "--data-dir",
        ])
        .arg(&data)
        .output()?;
    assert!(!reversed.status.success());
    assert!(String::from_utf8_lossy(&reversed.stderr).contains("--to"));

    let status = kinlink.interrupt().await?;
    assert!(status.success(), "{status:?}");
    Ok(())
}
