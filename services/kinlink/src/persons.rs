//! `kinlink explain`, `kinlink review` and `kinlink person split`: the operator's side of
//! person linkage. The decisions themselves live in `kinlink_enricher::review`; this file
//! opens the backends, runs one transaction and prints.

use anyhow::Context;
use kinlink_enricher::review::{self, Verdict};

use crate::StoreArgs;
use crate::support::{print, settings, when};

async fn backends(
    args: &StoreArgs,
) -> anyhow::Result<(kinlink_store::Store, kinlink_eventlog::EventLog)> {
    let settings = settings(args)?;
    Ok(kinlink_runtime::open_backends(&settings, kinlink_eventlog::LogMetrics::default()).await?)
}

/// `kinlink explain <person-id>`.
pub async fn explain(person_id: &str, args: &StoreArgs) -> anyhow::Result<()> {
    let (store, _log) = backends(args).await?;
    let mut conn = store.begin().await?;
    let explained = review::explain(&mut conn, person_id).await;
    drop(conn);
    store.close().await;
    let e = explained?;
    print(args.json, &e, |out| {
        if e.asked_for != e.person_id {
            writeln!(out, "{} was merged into {}", e.asked_for, e.person_id)?;
        }
        writeln!(out, "person {}", e.person_id)?;
        if !e.merged_person_ids.is_empty() {
            writeln!(out, "  merged from: {}", e.merged_person_ids.join(", "))?;
        }
        for r in &e.records {
            writeln!(
                out,
                "  record {} (referral {}) {} p={:.4} weight={:.2} model={} at {}",
                r.record_id,
                r.referral_id,
                r.method,
                r.match_probability,
                r.match_weight,
                r.model_version,
                when(r.decided_at_ms)
            )?;
            if let Some(matched) = &r.matched_record_id {
                writeln!(out, "    matched record {matched}")?;
            }
            for f in &r.evidence {
                writeln!(out, "    {:<14} {:<14} {:+.2}", f.field, f.level, f.weight)?;
            }
        }
        for t in &e.reviews {
            writeln!(
                out,
                "  review {} [{}] person {} vs {} p={:.4}",
                t.task_id, t.state, t.person_id, t.candidate_person_id, t.match_probability
            )?;
        }
        for c in &e.changes {
            writeln!(
                out,
                "  {} {} {} / {} by {} at {}{}",
                c.kind,
                c.change_id,
                c.person_id,
                c.other_person_id,
                c.decided_by,
                when(c.decided_at_ms),
                if c.record_ids.is_empty() {
                    String::new()
                } else {
                    format!(" records {}", c.record_ids)
                }
            )?;
        }
        Ok(())
    })
}

/// `kinlink review list`.
pub async fn review_list(all: bool, args: &StoreArgs) -> anyhow::Result<()> {
    let (store, _log) = backends(args).await?;
    let mut conn = store.begin().await?;
    let tasks = review::list(&mut conn, all).await;
    drop(conn);
    store.close().await;
    let tasks = tasks?;
    print(args.json, &tasks, |out| {
        if tasks.is_empty() {
            writeln!(out, "no review tasks")?;
        }
        for t in &tasks {
            writeln!(
                out,
                "{} [{}] referral {} person {} may be {} (p={:.4}, model {}) opened {}",
                t.task_id,
                t.state,
                t.referral_id,
                t.person_id,
                t.candidate_person_id,
                t.match_probability,
                t.model_version,
                when(t.created_at_ms)
            )?;
        }
        Ok(())
    })
}

/// `kinlink review decide`.
pub async fn review_decide(
    task_id: &str,
    same: bool,
    by: &str,
    args: &StoreArgs,
) -> anyhow::Result<()> {
    let (store, log) = backends(args).await?;
    let verdict = if same {
        Verdict::Same
    } else {
        Verdict::Different
    };
    let mut tx = store.begin().await?;
    let merged = review::decide(&mut tx, &log, task_id, verdict, by)
        .await
        .with_context(|| format!("deciding review task {task_id}"))?;
    tx.commit().await?;
    log.notify_appended();
    store.close().await;
    let value = serde_json::json!({
        "task_id": task_id,
        "verdict": if same { "same" } else { "different" },
        "surviving_person_id": merged.as_ref().map(|m| m.surviving_person_id.clone()),
        "merged_person_id": merged.as_ref().map(|m| m.merged_person_id.clone()),
    });
    print(args.json, &value, |out| match &merged {
        Some(m) => writeln!(
            out,
            "{task_id}: same person; {} merged into {} ({})",
            m.merged_person_id, m.surviving_person_id, m.merge_id
        ),
        None => writeln!(out, "{task_id}: different people; nothing merged"),
    })
}

/// `kinlink person split`.
pub async fn split(
    person_id: &str,
    records: &[String],
    reason: &str,
    by: &str,
    args: &StoreArgs,
) -> anyhow::Result<()> {
    let (store, log) = backends(args).await?;
    let mut tx = store.begin().await?;
    let split = review::split(&mut tx, &log, person_id, records, reason, by)
        .await
        .with_context(|| format!("splitting person {person_id}"))?;
    tx.commit().await?;
    log.notify_appended();
    store.close().await;
    let value = serde_json::json!({
        "split_id": split.split_id,
        "from_person_id": split.from_person_id,
        "new_person_id": split.new_person_id,
        "record_ids": split.record_ids,
    });
    print(args.json, &value, |out| {
        writeln!(
            out,
            "{} record(s) moved from {} to new person {} ({})",
            split.record_ids.len(),
            split.from_person_id,
            split.new_person_id,
            split.split_id
        )
    })
}

/// `kinlink model diff`.
pub async fn model_diff(model: Option<&std::path::Path>, args: &StoreArgs) -> anyhow::Result<()> {
    let mut enricher = settings(args)?.enricher;
    if let Some(path) = model {
        enricher.model_path = Some(path.to_owned());
    }
    let model = kinlink_enricher::Enricher::from_settings(&enricher)?
        .model()
        .clone();
    let (store, _log) = backends(args).await?;
    let mut conn = store.begin().await?;
    let registered = kinlink_enricher::relink::load(&mut conn).await;
    drop(conn);
    store.close().await;
    let proposal = kinlink_enricher::relink::propose(&model, &registered?);
    print(args.json, &proposal, |out| {
        writeln!(
            out,
            "model {}: {} records, {} persons, {} automatic links checked; {} possible merge(s), {} person(s) with a link it would not make; nothing changed",
            proposal.model_version,
            proposal.records,
            proposal.persons_now,
            proposal.links_checked,
            proposal.merges.len(),
            proposal.splits.len()
        )?;
        for group in &proposal.merges {
            writeln!(out, "  would merge: {}", group.join(" "))?;
        }
        for person in &proposal.splits {
            writeln!(out, "  would not link all of: {person} (kinlink explain)")?;
        }
        Ok(())
    })
}
