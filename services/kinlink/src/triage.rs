//! `kinlink triage list|route`: the alerts no body could be found for, and routing one by
//! hand (filed exactly as if routing had found the body).

use std::io::Write;

use anyhow::Context;
use kinlink_domain::routing::{AuthorityResolver, Resolution};

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
    let resolver = AuthorityResolver::shipped().context("loading the shipped reference data")?;
    let code = authority.trim().to_ascii_uppercase();
    let body = match resolver.resolve_code(&code) {
        Resolution::Resolved { body, .. } => body,
        Resolution::Unresolved { reason, .. } => {
            kinlink_domain::routing::authorities::trust_by_code(&code).ok_or_else(|| {
                anyhow::anyhow!("{code} is not a children's-services body ({reason})")
            })?
        }
    };
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
