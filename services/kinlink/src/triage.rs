//! `kinlink triage list|route`: the alerts no body could be found for, and routing one by
//! hand (filed exactly as if routing had found the body).

use std::io::Write;

use anyhow::Context;

use crate::StoreArgs;
use crate::support::{open_store, print, rfc3339, settings};

/// `kinlink triage list`.
pub async fn list(args: &StoreArgs) -> anyhow::Result<()> {
    let store = open_store(args).await?;
    let items = kinlink_alerter::triage_api::open_items(&store).await?;
    store.close().await;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&items)?)?;
    } else if items.is_empty() {
        writeln!(out, "triage queue is empty")?;
    } else {
        writeln!(out, "{} open triage item(s), oldest first:", items.len())?;
        for item in &items {
            writeln!(
                out,
                "{}  referral {}  due {}{}  reasons: {}  candidates: {}",
                item.alert_id,
                item.referral_id,
                rfc3339(item.sla_deadline_ms),
                if item.overdue { " (OVERDUE)" } else { "" },
                item.reasons.join(","),
                if item.candidates.is_empty() {
                    "-".to_owned()
                } else {
                    item.candidates.join(",")
                }
            )?;
        }
    }
    Ok(())
}

/// `kinlink triage route`.
pub async fn route(
    alert_id: &str,
    authority: &str,
    by: &str,
    args: &StoreArgs,
) -> anyhow::Result<()> {
    let registry = kinlink_domain::routing::authorities::AuthorityRegistry::shipped()
        .context("loading the shipped reference data")?;
    let body =
        kinlink_domain::routing::authorities::body_by_code(&registry, authority).map_err(|_| {
            anyhow::anyhow!(
                "{} is not a children's-services body",
                authority.trim().to_ascii_uppercase()
            )
        })?;
    let settings = settings(args)?;
    let directory = kinlink_notifier::directory::Directory::from_settings(&settings.notifier)?;
    let store = open_store(args).await?;
    let routed = kinlink_notifier::triage::route(
        &store,
        &directory,
        alert_id,
        &body.gss_code,
        &body.name,
        by,
    )
    .await;
    store.close().await;
    routed?;
    print(
        args.json,
        &serde_json::json!({ "alert_id": alert_id, "authority_code": body.gss_code }),
        |out| {
            writeln!(
                out,
                "{alert_id} routed to {} {}; it will be delivered and escalated like any alert",
                body.gss_code, body.name
            )
        },
    )
}
