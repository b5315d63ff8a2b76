//! What every command shares: settings and the store from `--config` / `--data-dir`, and
//! output as text or JSON.

use std::io::Write;

use anyhow::Context;
use kinlink_runtime::Settings;
use kinlink_store::Store;

use crate::StoreArgs;

pub(crate) fn settings(args: &StoreArgs) -> anyhow::Result<Settings> {
    let mut settings = Settings::load(args.config.as_deref()).context("loading settings")?;
    if let Some(dir) = &args.data_dir {
        settings.data_dir = dir.clone();
    }
    Ok(settings)
}

pub(crate) async fn open_store(args: &StoreArgs) -> anyhow::Result<Store> {
    let settings = settings(args)?;
    Ok(match &settings.store.url {
        Some(url) => Store::connect(url).await?,
        None => Store::open_embedded(&settings.data_dir).await?,
    })
}

pub(crate) fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339())
        .unwrap_or_default()
}

pub(crate) fn print<T: serde::Serialize>(
    json: bool,
    value: &T,
    text: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
    } else {
        text(&mut out)?;
    }
    Ok(())
}

pub(crate) fn when(ms: i64) -> String {
    if ms == 0 { "-".to_owned() } else { rfc3339(ms) }
}

/// Appends an operator action to the audit log, in the caller's transaction (ids and codes
/// only in `detail`).
pub(crate) async fn audit(
    conn: &mut sqlx::AnyConnection,
    action: &str,
    by: &str,
    detail: &str,
) -> anyhow::Result<()> {
    kinlink_store::audit::append(
        conn,
        &kinlink_store::audit::AuditEntry {
            action,
            actor: by,
            authority_code: "",
            alert_id: "",
            detail,
        },
    )
    .await?;
    Ok(())
}
