//! `kinlink keys`: the master key that wraps the per-person data keys.
//!
//! Rotation: put the new key in `privacy.master_key`, move the old one to
//! `privacy.previous_master_keys`, restart (new data keys are wrapped under the new key and old
//! ones still open), then run `kinlink keys rotate` to re-wrap every older data key under the
//! new one, batch by batch. When `kinlink keys status` shows nothing under the old key, it can
//! be dropped from settings. The data keys themselves do not change, so nothing in the log is
//! touched.

use serde::Serialize;

use crate::StoreArgs;
use crate::support::{print, settings};

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// How many data keys each master key wraps, and which master keys are configured.
    Status {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Re-wrap every data key still under an older master key with the current one.
    Rotate {
        /// Data keys re-wrapped per transaction.
        #[arg(long, default_value_t = 500)]
        batch: i64,
        /// Who ran it, for the audit log.
        #[arg(long)]
        by: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Serialize)]
struct MasterKeyUse {
    fingerprint: String,
    data_keys: i64,
    current: bool,
    configured: bool,
}

/// `kinlink keys ...`.
pub async fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Status { store } => {
            let settings = settings(&store)?;
            let master = kinlink_runtime::master_keys(&settings)?;
            let db = crate::support::open_store(&store).await?;
            let mut conn = db.pool().acquire().await?;
            let counts = kinlink_eventlog::sealing::keys_by_master(&mut conn).await?;
            drop(conn);
            db.close().await;
            let current = master.current_fingerprint();
            let uses: Vec<MasterKeyUse> = counts
                .into_iter()
                .map(|(fingerprint, data_keys)| MasterKeyUse {
                    current: fingerprint == current,
                    configured: master.knows(&fingerprint),
                    fingerprint,
                    data_keys,
                })
                .collect();
            print(store.json, &uses, |out| {
                writeln!(out, "current master key {current}")?;
                for u in &uses {
                    writeln!(
                        out,
                        "{} wraps {} data keys{}",
                        u.fingerprint,
                        u.data_keys,
                        if u.current {
                            " (current)"
                        } else if u.configured {
                            " (previous: run kinlink keys rotate)"
                        } else {
                            " (NOT CONFIGURED: these cannot be opened)"
                        }
                    )?;
                }
                Ok(())
            })
        }
        KeysCommand::Rotate { batch, by, store } => {
            if by.trim().is_empty() {
                anyhow::bail!("--by must name who ran the rotation");
            }
            if batch < 1 {
                anyhow::bail!("--batch must be at least 1");
            }
            let settings = settings(&store)?;
            let master = kinlink_runtime::master_keys(&settings)?;
            let db = crate::support::open_store(&store).await?;
            let mut total = 0;
            loop {
                let mut tx = db.begin().await?;
                let done = kinlink_eventlog::sealing::rewrap_keys(&mut tx, &master, batch).await?;
                if done == 0 {
                    break;
                }
                tx.commit().await?;
                total += done;
            }
            let mut tx = db.begin().await?;
            let detail = format!("master={} rewrapped={total}", master.current_fingerprint());
            crate::support::audit(&mut tx, "master_key_rotated", &by, &detail).await?;
            tx.commit().await?;
            db.close().await;
            print(
                store.json,
                &serde_json::json!({ "rewrapped": total, "master_key": master.current_fingerprint() }),
                |out| {
                    writeln!(
                        out,
                        "{total} data keys re-wrapped under master key {}",
                        master.current_fingerprint()
                    )
                },
            )
        }
    }
}
