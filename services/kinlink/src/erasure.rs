//! `kinlink erase person <id>`: the right to erasure, by crypto-shredding the log and
//! scrubbing the store, in one transaction.
//!
//! The log is immutable (and on Kafka, copied to every replica and backup), so it is never
//! edited: the person's data keys are deleted instead, and every sealed copy of their details
//! becomes unreadable (`kinlink_eventlog::sealing`). The store's own copies are scrubbed by the
//! module that owns each table: linkage records lose their personal values, intake's copy of
//! each referral and every stored alert lose the person and the referrer's free text. Ids,
//! codes, states and times stay, so counts, returns and the audit chain still add up. The
//! erasure itself is an audit entry (ids and counts only).
//!
//! What goes with a person: their keys on every referral they are on (`slot:`), their keys in
//! alerts (`person:`), and the free text of those referrals (`referral:`), which may name them.

use std::io::Write;

use anyhow::Context;
use kinlink_eventlog::sealing;
use serde::Serialize;

use crate::StoreArgs;
use crate::support::settings;

#[derive(Debug, clap::Subcommand)]
pub enum EraseCommand {
    /// Erase a person (a merged id erases the person it was merged into, with every merged id).
    Person {
        person_id: String,
        /// Who decided the erasure, for the audit log (an operator id, not a name).
        #[arg(long)]
        by: String,
        /// Why, as a code for the audit log (e.g. `article17_request`, `retention`).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Serialize)]
pub struct Erasure {
    pub person_id: String,
    pub person_ids: Vec<String>,
    pub referrals: Vec<String>,
    pub keys_deleted: u64,
    pub records_scrubbed: u64,
    pub alerts_scrubbed: usize,
}

/// `kinlink erase ...`.
pub async fn run(command: EraseCommand) -> anyhow::Result<()> {
    let EraseCommand::Person {
        person_id,
        by,
        reason,
        store,
    } = command;
    for (flag, value) in [("--by", &by), ("--reason", &reason)] {
        if value.trim().is_empty() || value.len() > 100 {
            anyhow::bail!("{flag} must be a short code or id (1 to 100 characters)");
        }
    }
    let settings = settings(&store)?;
    let (db, _log) =
        kinlink_runtime::open_backends(&settings, kinlink_eventlog::LogMetrics::default()).await?;
    let mut tx = db.begin().await?;
    let erasure = erase(&mut tx, &person_id, &by, &reason).await;
    let erasure = match erasure {
        Ok(erasure) => erasure,
        Err(error) => {
            drop(tx);
            db.close().await;
            return Err(error);
        }
    };
    tx.commit().await?;
    if db.backend() == kinlink_store::Backend::Sqlite {
        // Fold the write-ahead log into the database file now, so the old pages holding the
        // person's details do not linger in the -wal file (secure_delete zeroes freed space).
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(db.pool())
            .await?;
    }
    db.close().await;
    crate::support::print(store.json, &erasure, |out: &mut dyn Write| {
        writeln!(
            out,
            "erased person {} ({} ids): {} data keys deleted, {} records and {} alerts scrubbed, on {} referrals",
            erasure.person_id,
            erasure.person_ids.len(),
            erasure.keys_deleted,
            erasure.records_scrubbed,
            erasure.alerts_scrubbed,
            erasure.referrals.len()
        )
    })
}

async fn erase(
    conn: &mut sqlx::AnyConnection,
    person_id: &str,
    by: &str,
    reason: &str,
) -> anyhow::Result<Erasure> {
    let explained = kinlink_enricher::review::explain(conn, person_id)
        .await
        .with_context(|| format!("person {person_id}"))?;
    let mut person_ids = vec![explained.person_id.clone()];
    person_ids.extend(explained.merged_person_ids.iter().cloned());

    let mut all_appearances = vec![];
    for id in &person_ids {
        all_appearances.push(kinlink_enricher::registry::appearances(conn, id).await?);
    }
    let on_referrals: Vec<String> = all_appearances
        .iter()
        .flatten()
        .map(|(referral_id, _, _)| referral_id.clone())
        .collect();
    let holds = crate::retention::active_holds(conn, &on_referrals, &person_ids).await?;
    if !holds.is_empty() {
        anyhow::bail!(
            "person {} is under legal hold ({}): lift the hold before erasing",
            explained.person_id,
            holds.join(", ")
        );
    }
    let mut keys = vec![];
    let mut referrals: Vec<String> = vec![];
    let mut records_scrubbed = 0;
    for (id, appearances) in person_ids.iter().zip(all_appearances) {
        let mut by_referral: std::collections::BTreeMap<String, Vec<(i32, u32)>> =
            Default::default();
        for (referral_id, role, index) in appearances {
            keys.push(sealing::slot_key(&referral_id, role, index));
            // Alerts name the person as they were known then: any of the merged ids.
            for alias in &person_ids {
                keys.push(sealing::person_key(&referral_id, alias));
            }
            keys.push(sealing::referral_key(&referral_id));
            by_referral
                .entry(referral_id)
                .or_default()
                .push((role, index));
        }
        for (referral_id, slots) in by_referral {
            kinlink_intake::accept::erase_subjects(conn, &referral_id, &slots).await?;
            if !referrals.contains(&referral_id) {
                referrals.push(referral_id);
            }
        }
        records_scrubbed += kinlink_enricher::registry::erase_person(conn, id).await?;
    }
    keys.sort();
    keys.dedup();
    let keys_deleted = sealing::erase_keys(conn, &keys).await?;
    let alerts = kinlink_notifier::inbox::erase_person(conn, &person_ids).await?;
    kinlink_notifier::inbox::erase_concern(conn, &referrals).await?;
    let detail = format!(
        "person={} reason={reason} referrals={} keys={keys_deleted} alerts={}",
        explained.person_id,
        referrals.len(),
        alerts.len()
    );
    crate::support::audit(conn, "person_erased", by, &detail).await?;
    Ok(Erasure {
        person_id: explained.person_id,
        person_ids,
        referrals,
        keys_deleted,
        records_scrubbed,
        alerts_scrubbed: alerts.len(),
    })
}
