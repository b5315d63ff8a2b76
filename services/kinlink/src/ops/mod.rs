//! `kinlink ops ...`: status, trace, dead letters and replay for on-call staff. Output carries
//! ids, codes and reasons only, never personal data; every command has `--json`.

pub mod dlq;
pub mod metrics;
pub mod replay;
pub mod status;
pub mod trace;

use crate::support::{print, settings, when};
use crate::{DlqCommand, OpsCommand};

/// `kinlink ops ...`.
pub async fn run(command: OpsCommand) -> anyhow::Result<()> {
    match command {
        OpsCommand::Status {
            stalled_after,
            store,
        } => {
            let settings = settings(&store)?;
            let stall = std::time::Duration::from_secs(
                stalled_after.unwrap_or(settings.ops.stalled_after_seconds),
            );
            let (db, log) =
                kinlink_runtime::open_backends(&settings, kinlink_eventlog::LogMetrics::default())
                    .await?;
            let status = status::status(&db, &log, stall).await?;
            db.close().await;
            print(store.json, &status, |out| {
                writeln!(out, "backend: {}", status.backend)?;
                writeln!(
                    out,
                    "{:<10} {:>8} {:>10} {:>8}  stalled",
                    "stage", "lag", "lag (s)", "dlq"
                )?;
                for s in &status.stages {
                    writeln!(
                        out,
                        "{:<10} {:>8} {:>10.1} {:>8}  {}",
                        s.stage,
                        s.lag_events,
                        s.lag_seconds,
                        s.dead_letters,
                        if s.stalled { "STALLED" } else { "no" }
                    )?;
                    for p in s.partitions.iter().filter(|p| p.lag_events > 0) {
                        writeln!(
                            out,
                            "  {}[{}] lag {} ({:.1} s)",
                            p.topic, p.partition, p.lag_events, p.lag_seconds
                        )?;
                    }
                }
                let a = &status.alerts;
                writeln!(
                    out,
                    "triage: {} open, {} overdue",
                    status.triage_open, status.triage_overdue
                )?;
                writeln!(out, "linkage reviews: {} open", status.reviews_open)?;
                writeln!(
                    out,
                    "alerts: {} pending delivery, {} delivered unacknowledged, {} escalated, {} acknowledged, {} resolved, {} failed delivery",
                    a.pending_delivery,
                    a.delivered_unacknowledged,
                    a.escalated,
                    a.acknowledged,
                    a.resolved,
                    a.failed_delivery
                )?;
                writeln!(
                    out,
                    "overdue: {} red, {} amber, {} green",
                    a.overdue_red, a.overdue_amber, a.overdue_green
                )
            })
        }
        OpsCommand::Trace { referral_id, store } => {
            let settings = settings(&store)?;
            let (db, log) =
                kinlink_runtime::open_backends(&settings, kinlink_eventlog::LogMetrics::default())
                    .await?;
            let steps = trace::trace(&db, &log, &referral_id).await?;
            db.close().await;
            anyhow::ensure!(
                !steps.is_empty(),
                "nothing is known about referral {referral_id}"
            );
            print(store.json, &steps, |out| {
                for s in &steps {
                    writeln!(
                        out,
                        "{:<30} {:<15} {}  [{}]",
                        when(s.at_ms),
                        s.kind,
                        s.what,
                        s.ids.join(" ")
                    )?;
                }
                Ok(())
            })
        }
        OpsCommand::Dlq { command } => dlq_command(command).await,
        OpsCommand::Replay {
            stage,
            from,
            dry_run,
            store,
        } => {
            let settings = settings(&store)?;
            let from = match chrono::DateTime::parse_from_rfc3339(&from) {
                Ok(time) => kinlink_eventlog::inspect::ReadFrom::Time(time.timestamp_millis()),
                Err(_) => {
                    kinlink_eventlog::inspect::ReadFrom::Offset(from.parse().map_err(|_| {
                        anyhow::anyhow!("--from must be an RFC 3339 time or an offset")
                    })?)
                }
            };
            let stage = replay::AnyStage::build(&stage, &settings)?;
            let (db, log) =
                kinlink_runtime::open_backends(&settings, kinlink_eventlog::LogMetrics::default())
                    .await?;
            let report = replay::replay(&db, &log, &stage, from, dry_run, !store.json).await?;
            db.close().await;
            print(store.json, &report, |out| {
                if report.dry_run {
                    writeln!(
                        out,
                        "{}: {} input event(s) would yield {} unchanged, {} changed, {} new output(s); {} rejected",
                        report.stage,
                        report.inputs,
                        report.unchanged,
                        report.changed,
                        report.new,
                        report.rejected
                    )?;
                    for id in &report.changes {
                        writeln!(out, "  would change: {id}")?;
                    }
                    Ok(())
                } else {
                    writeln!(
                        out,
                        "{}: {} input event(s) will be applied again by the running stage",
                        report.stage, report.inputs
                    )
                }
            })
        }
    }
}

async fn dlq_command(command: DlqCommand) -> anyhow::Result<()> {
    let store_args = match &command {
        DlqCommand::List { store, .. }
        | DlqCommand::Show { store, .. }
        | DlqCommand::Replay { store, .. } => store,
    };
    let settings = settings(store_args)?;
    let (db, log) =
        kinlink_runtime::open_backends(&settings, kinlink_eventlog::LogMetrics::default()).await?;
    let json = store_args.json;
    let result = match command {
        DlqCommand::List { stage, .. } => {
            let letters = dlq::list(&db, &log, stage.as_deref()).await?;
            print(json, &letters, |out| {
                if letters.is_empty() {
                    writeln!(out, "no dead letters")?;
                }
                for l in &letters {
                    writeln!(
                        out,
                        "{} {:<9} {}  {}  {}{}",
                        when(l.time_ms),
                        l.stage,
                        l.event_id,
                        l.event_type,
                        l.reason,
                        if l.replayed { "  (replayed)" } else { "" }
                    )?;
                }
                Ok(())
            })
        }
        DlqCommand::Show { event_id, .. } => {
            let letter = dlq::list(&db, &log, None)
                .await?
                .into_iter()
                .find(|l| l.event_id == event_id)
                .ok_or_else(|| anyhow::anyhow!("no dead letter with event id {event_id}"))?;
            print(json, &letter, |out| {
                writeln!(
                    out,
                    "event id:  {}\nstage:     {}\ntype:      {}\nfrom:      {}\nreason:    {}\npayload:   {} bytes (not shown)\nreplayed:  {}",
                    letter.event_id,
                    letter.stage,
                    letter.event_type,
                    letter.original_topic,
                    letter.reason,
                    letter.payload_bytes,
                    letter.replayed
                )
            })
        }
        DlqCommand::Replay {
            event,
            stage,
            all,
            dry_run,
            ..
        } => {
            anyhow::ensure!(
                event.is_some() || stage.is_some() || all,
                "choose --event ID, --stage STAGE or --all"
            );
            let letters = dlq::list(&db, &log, stage.as_deref()).await?;
            let selected: Vec<_> = letters
                .into_iter()
                .filter(|l| event.as_ref().is_none_or(|id| &l.event_id == id))
                .collect();
            let done = dlq::replay(&db, &log, selected, dry_run).await?;
            print(json, &done, |out| {
                for d in &done {
                    writeln!(
                        out,
                        "{}{} {}: {}",
                        if dry_run { "(dry run) " } else { "" },
                        d.stage,
                        d.event_id,
                        d.action
                    )?;
                }
                writeln!(
                    out,
                    "{} dead letter(s) {}",
                    done.len(),
                    if dry_run {
                        "would be replayed"
                    } else {
                        "replayed"
                    }
                )
            })
        }
    };
    db.close().await;
    result
}
