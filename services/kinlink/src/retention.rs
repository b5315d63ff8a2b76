//! `kinlink retention run` and `kinlink hold`: keeping personal data no longer than needed,
//! and never erasing what a legal hold protects.
//!
//! A run looks at every referral not yet erased, works out the last day it is kept
//! (`kinlink_domain::retention`: until the youngest child's 25th birthday, six years for an
//! adult alone, from settings), and for each referral past that day and under no hold, in one
//! transaction per referral: deletes the referral's data keys (its sealed events in the log
//! become unreadable everywhere), scrubs the store's copies (intake's referral, the linkage
//! records it made, its stored alerts), records the erasure and audits it (ids and dates
//! only). `--dry-run` lists what would go, and what a hold keeps. A hold on a person protects
//! every referral they are on.

use anyhow::Context;
use chrono::NaiveDate;
use indicatif::{ProgressBar, ProgressStyle};
use kinlink_domain::retention::{RetentionPolicy, kept_until};
use kinlink_proto::v1;
use prost::Message;
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use crate::StoreArgs;
use crate::support::{audit, print, rfc3339, settings};

#[derive(Debug, clap::Subcommand)]
pub enum RetentionCommand {
    /// Erase the personal data of referrals past their retention date (not under a hold).
    Run {
        /// List what would be erased, and what holds keep, without changing anything.
        #[arg(long)]
        dry_run: bool,
        /// Who ran it, for the audit log (an operator id, or `scheduler`).
        #[arg(long, default_value = "retention")]
        by: String,
        /// Apply the policy as on this day (YYYY-MM-DD) instead of today.
        #[arg(long)]
        as_of: Option<NaiveDate>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum HoldCommand {
    /// Place a legal hold on a referral or a person: nothing of it is erased until lifted.
    Place {
        #[arg(long, conflicts_with = "person", required_unless_present = "person")]
        referral: Option<String>,
        #[arg(long)]
        person: Option<String>,
        /// Why, as a code (e.g. `litigation`, `police_investigation`): no personal data.
        #[arg(long)]
        reason: String,
        #[arg(long)]
        by: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Lift a hold.
    Lift {
        hold_id: String,
        #[arg(long)]
        by: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Active holds.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Serialize)]
pub struct Hold {
    pub hold_id: String,
    pub referral_id: String,
    pub person_id: String,
    pub reason: String,
    pub placed_by: String,
    pub placed_at: String,
}

#[derive(Debug, Serialize)]
pub struct DueReferral {
    pub referral_id: String,
    pub received: String,
    pub kept_until: String,
    /// Active holds keeping it.
    pub held_by: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct RetentionReport {
    pub as_of: String,
    pub dry_run: bool,
    pub referrals_checked: usize,
    pub due: Vec<DueReferral>,
    pub erased: usize,
    pub held: usize,
}

fn short_code(flag: &str, value: &str) -> anyhow::Result<()> {
    if value.trim().is_empty()
        || value.len() > 100
        || !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
    {
        anyhow::bail!(
            "{flag} must be a code or id: 1 to 100 letters, digits, '_', '-', '.' or ':'"
        );
    }
    Ok(())
}

/// Active holds on any of these referrals or persons.
pub async fn active_holds(
    conn: &mut AnyConnection,
    referral_ids: &[String],
    person_ids: &[String],
) -> anyhow::Result<Vec<String>> {
    let mut holds = vec![];
    for (column, ids) in [("referral_id", referral_ids), ("person_id", person_ids)] {
        for id in ids {
            for row in sqlx::query(&format!(
                "SELECT hold_id FROM legal_holds WHERE {column} = $1 AND lifted_at_ms IS NULL"
            ))
            .bind(id)
            .fetch_all(&mut *conn)
            .await?
            {
                holds.push(row.try_get::<String, _>("hold_id")?);
            }
        }
    }
    holds.sort();
    holds.dedup();
    Ok(holds)
}

/// The persons on a referral (any role).
async fn persons_on(conn: &mut AnyConnection, referral_id: &str) -> anyhow::Result<Vec<String>> {
    Ok(sqlx::query(
        "SELECT DISTINCT person_id FROM referral_persons WHERE referral_id = $1 ORDER BY person_id",
    )
    .bind(referral_id)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| r.try_get("person_id"))
    .collect::<Result<_, _>>()?)
}

/// `kinlink hold ...`.
pub async fn hold(command: HoldCommand) -> anyhow::Result<()> {
    match command {
        HoldCommand::Place {
            referral,
            person,
            reason,
            by,
            store,
        } => {
            short_code("--reason", &reason)?;
            short_code("--by", &by)?;
            let db = crate::support::open_store(&store).await?;
            let mut tx = db.begin().await?;
            let (referral_id, person_id) =
                (referral.unwrap_or_default(), person.unwrap_or_default());
            let known = if referral_id.is_empty() {
                sqlx::query("SELECT 1 AS found FROM persons WHERE person_id = $1")
                    .bind(&person_id)
                    .fetch_optional(&mut *tx)
                    .await?
            } else {
                sqlx::query("SELECT 1 AS found FROM intake_referrals WHERE referral_id = $1")
                    .bind(&referral_id)
                    .fetch_optional(&mut *tx)
                    .await?
            };
            if known.is_none() {
                anyhow::bail!(
                    "no {} {}",
                    if referral_id.is_empty() {
                        "person"
                    } else {
                        "referral"
                    },
                    if referral_id.is_empty() {
                        &person_id
                    } else {
                        &referral_id
                    }
                );
            }
            let hold_id = uuid::Uuid::now_v7().to_string();
            sqlx::query(
                "INSERT INTO legal_holds (hold_id, referral_id, person_id, reason, placed_by, placed_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&hold_id)
            .bind(&referral_id)
            .bind(&person_id)
            .bind(&reason)
            .bind(&by)
            .bind(chrono::Utc::now().timestamp_millis())
            .execute(&mut *tx)
            .await?;
            let detail =
                format!("hold={hold_id} referral={referral_id} person={person_id} reason={reason}");
            audit(&mut tx, "legal_hold_placed", &by, &detail).await?;
            tx.commit().await?;
            db.close().await;
            print(
                store.json,
                &serde_json::json!({ "hold_id": hold_id }),
                |out| writeln!(out, "hold {hold_id} placed"),
            )
        }
        HoldCommand::Lift { hold_id, by, store } => {
            short_code("--by", &by)?;
            let db = crate::support::open_store(&store).await?;
            let mut tx = db.begin().await?;
            let lifted = sqlx::query(
                "UPDATE legal_holds SET lifted_by = $1, lifted_at_ms = $2 \
                 WHERE hold_id = $3 AND lifted_at_ms IS NULL",
            )
            .bind(&by)
            .bind(chrono::Utc::now().timestamp_millis())
            .bind(&hold_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if lifted == 0 {
                anyhow::bail!("no active hold {hold_id}");
            }
            audit(
                &mut tx,
                "legal_hold_lifted",
                &by,
                &format!("hold={hold_id}"),
            )
            .await?;
            tx.commit().await?;
            db.close().await;
            print(
                store.json,
                &serde_json::json!({ "hold_id": hold_id, "lifted": true }),
                |out| writeln!(out, "hold {hold_id} lifted"),
            )
        }
        HoldCommand::List { store } => {
            let db = crate::support::open_store(&store).await?;
            let holds: Vec<Hold> = sqlx::query(
                "SELECT * FROM legal_holds WHERE lifted_at_ms IS NULL ORDER BY placed_at_ms, hold_id",
            )
            .fetch_all(db.pool())
            .await?
            .iter()
            .map(|r| {
                Ok(Hold {
                    hold_id: r.try_get("hold_id")?,
                    referral_id: r.try_get("referral_id")?,
                    person_id: r.try_get("person_id")?,
                    reason: r.try_get("reason")?,
                    placed_by: r.try_get("placed_by")?,
                    placed_at: rfc3339(r.try_get("placed_at_ms")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
            db.close().await;
            print(store.json, &holds, |out| {
                for h in &holds {
                    writeln!(
                        out,
                        "{} referral={} person={} reason={} by {} at {}",
                        h.hold_id, h.referral_id, h.person_id, h.reason, h.placed_by, h.placed_at
                    )?;
                }
                Ok(())
            })
        }
    }
}

/// `kinlink retention run`.
pub async fn run(command: RetentionCommand) -> anyhow::Result<()> {
    let RetentionCommand::Run {
        dry_run,
        by,
        as_of,
        store,
    } = command;
    short_code("--by", &by)?;
    let settings = settings(&store)?;
    let policy = RetentionPolicy {
        children_until_age: settings.privacy.retention.children_until_age,
        adult_only_years: settings.privacy.retention.adult_only_years,
    };
    let as_of = as_of.unwrap_or_else(|| chrono::Utc::now().date_naive());
    let (db, _log) =
        kinlink_runtime::open_backends(&settings, kinlink_eventlog::LogMetrics::default()).await?;
    let result = apply(&db, policy, as_of, dry_run, &by, !store.json).await;
    if !dry_run && db.backend() == kinlink_store::Backend::Sqlite {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(db.pool())
            .await?;
    }
    db.close().await;
    let report = result?;
    print(store.json, &report, |out| {
        for d in &report.due {
            writeln!(
                out,
                "{} received {} kept until {}{}",
                d.referral_id,
                d.received,
                d.kept_until,
                if d.held_by.is_empty() {
                    String::new()
                } else {
                    format!(" HELD ({})", d.held_by.join(", "))
                }
            )?;
        }
        writeln!(
            out,
            "{} referrals checked as of {}: {} past retention, {} {}, {} kept by a hold",
            report.referrals_checked,
            report.as_of,
            report.due.len(),
            report.erased,
            if report.dry_run {
                "would be erased"
            } else {
                "erased"
            },
            report.held
        )
    })
}

async fn apply(
    db: &kinlink_store::Store,
    policy: RetentionPolicy,
    as_of: NaiveDate,
    dry_run: bool,
    by: &str,
    show_progress: bool,
) -> anyhow::Result<RetentionReport> {
    let rows = sqlx::query(
        "SELECT r.referral_id, r.received_at_ms, r.referral FROM intake_referrals r \
         WHERE NOT EXISTS (SELECT 1 FROM retention_erasures e WHERE e.referral_id = r.referral_id) \
         ORDER BY r.received_at_ms, r.referral_id",
    )
    .fetch_all(db.pool())
    .await?;
    let mut report = RetentionReport {
        as_of: as_of.to_string(),
        dry_run,
        referrals_checked: rows.len(),
        due: vec![],
        erased: 0,
        held: 0,
    };
    let mut due = vec![];
    for row in &rows {
        let referral_id: String = row.try_get("referral_id")?;
        let received_ms: i64 = row.try_get("received_at_ms")?;
        let received = chrono::DateTime::from_timestamp_millis(received_ms)
            .context("received_at_ms out of range")?
            .date_naive();
        let referral =
            v1::ReferralReceived::decode(row.try_get::<Vec<u8>, _>("referral")?.as_slice())
                .with_context(|| format!("referral {referral_id}"))?;
        let people: Vec<&v1::Person> = referral
            .subject
            .iter()
            .chain(referral.dependants.iter().filter_map(|d| d.person.as_ref()))
            .collect();
        let until = kept_until(received, &people, policy);
        if until < as_of {
            due.push((referral_id, received, until));
        }
    }
    let progress = if show_progress && !dry_run {
        ProgressBar::new(due.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} referrals {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    for (referral_id, received, until) in due {
        progress.inc(1);
        let mut tx = db.begin().await?;
        let persons = persons_on(&mut tx, &referral_id).await?;
        let held_by = active_holds(&mut tx, std::slice::from_ref(&referral_id), &persons).await?;
        if held_by.is_empty() {
            if dry_run {
                report.erased += 1;
            } else if erase_referral(&mut tx, &referral_id, until, by).await? {
                tx.commit().await?;
                report.erased += 1;
            } else {
                continue;
            }
        } else {
            report.held += 1;
        }
        report.due.push(DueReferral {
            referral_id,
            received: received.to_string(),
            kept_until: until.to_string(),
            held_by,
        });
    }
    progress.finish_and_clear();
    Ok(report)
}

/// One referral's personal data, gone: its data keys, intake's copy, the linkage records it
/// made and its stored alerts; recorded and audited in the same transaction.
/// Returns false (nothing done) when another run erased it first: the claim below makes
/// concurrent runs in several instances safe without a lock.
async fn erase_referral(
    conn: &mut AnyConnection,
    referral_id: &str,
    kept_until: NaiveDate,
    by: &str,
) -> anyhow::Result<bool> {
    let claimed = sqlx::query(
        "INSERT INTO retention_erasures (referral_id, kept_until, erased_by, erased_at_ms) \
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(referral_id)
    .bind(kept_until.to_string())
    .bind(by)
    .bind(chrono::Utc::now().timestamp_millis())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if claimed == 0 {
        return Ok(false);
    }
    let keys = kinlink_eventlog::sealing::erase_referral_keys(conn, referral_id).await?;
    kinlink_intake::accept::erase_referral(conn, referral_id).await?;
    let records = kinlink_enricher::registry::erase_referral(conn, referral_id).await?;
    let alerts = kinlink_notifier::inbox::erase_referral(conn, referral_id).await?;
    let detail = format!(
        "referral={referral_id} kept_until={kept_until} keys={keys} records={records} alerts={}",
        alerts.len()
    );
    audit(conn, "retention_erased", by, &detail).await?;
    Ok(true)
}

/// Runs retention inside a long-running process (`kinlink up`, `kinlink serve notifier`) every
/// `privacy.retention.run_every_hours` (0: never), first an hour after start. Runs in several
/// instances at once are safe: each referral is claimed before it is erased.
pub fn spawn(process: &mut kinlink_runtime::Process) {
    let hours = process.settings.privacy.retention.run_every_hours;
    if hours == 0 {
        return;
    }
    let retention = &process.settings.privacy.retention;
    let policy = RetentionPolicy {
        children_until_age: retention.children_until_age,
        adult_only_years: retention.adult_only_years,
    };
    let (store, shutdown) = (process.store.clone(), process.shutdown.clone());
    let every = std::time::Duration::from_secs(hours.saturating_mul(3600));
    process.spawn("retention", async move {
        let mut next =
            tokio::time::Instant::now() + std::time::Duration::from_secs(3600).min(every);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep_until(next) => {}
            }
            next += every;
            let today = chrono::Utc::now().date_naive();
            match apply(&store, policy, today, false, "scheduler", false).await {
                Ok(report) => tracing::info!(
                    checked = report.referrals_checked,
                    erased = report.erased,
                    held = report.held,
                    "Retention run finished."
                ),
                Err(error) => {
                    tracing::error!(%error, "Retention run failed; next run as scheduled.")
                }
            }
        }
    });
}
