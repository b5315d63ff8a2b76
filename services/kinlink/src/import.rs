//! `kinlink import`: a backlog of referrals through the same validation and the same durable,
//! idempotent acceptance as `POST /v1/referrals`. Each line's replay key is the hash of the
//! line, so re-running after an interruption accepts nothing twice.

use std::io::Write;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use kinlink_intake::accept::{self, StoredResponse};
use kinlink_intake::request;
use serde::Serialize;

use crate::ImportArgs;

#[derive(Debug, Default, Serialize)]
struct Summary {
    accepted: u64,
    already_imported: u64,
    rejected: u64,
}

#[derive(Debug, Serialize)]
struct LineError<'a> {
    line: usize,
    errors: &'a [request::FieldError],
}

pub async fn run(args: &ImportArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    let settings = crate::support::settings(&args.store)?;
    let (store, log) =
        kinlink_runtime::open_backends(&settings, kinlink_eventlog::LogMetrics::default()).await?;
    let mut report: Box<dyn Write> = match &args.errors {
        Some(path) => Box::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ),
        None => Box::new(std::io::stderr()),
    };
    let progress = if args.store.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(lines.len() as u64)
    };
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} lines  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut summary = Summary::default();
    for (index, line) in lines.iter().enumerate() {
        progress.inc(1);
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let reject =
            |errors: &[request::FieldError], report: &mut Box<dyn Write>| -> anyhow::Result<()> {
                writeln!(
                    report,
                    "{}",
                    serde_json::to_string(&LineError {
                        line: number,
                        errors
                    })?
                )?;
                Ok(())
            };
        let parsed = match request::parse_body(line.as_bytes()) {
            Ok(parsed) => parsed,
            Err(error) => {
                reject(&[error], &mut report)?;
                summary.rejected += 1;
                continue;
            }
        };
        let hash = accept::body_hash(line.as_bytes());
        let keys = accept::replay_keys(Some(&format!("import:{hash}")), &parsed.external_reference);
        match accept::replay(&store, &log, &args.agency, &keys, &hash).await {
            Ok(Some(_)) => {
                summary.already_imported += 1;
                continue;
            }
            Ok(None) => {}
            Err(problem) => {
                reject(
                    &[request::FieldError {
                        pointer: String::new(),
                        reason: problem.detail,
                    }],
                    &mut report,
                )?;
                summary.rejected += 1;
                continue;
            }
        }
        let referral_id = uuid::Uuid::now_v7().to_string();
        let referral = match request::into_event(
            parsed,
            &referral_id,
            &args.agency,
            kinlink_store::now_millis(),
        ) {
            Ok(referral) => referral,
            Err(errors) => {
                reject(&errors, &mut report)?;
                summary.rejected += 1;
                continue;
            }
        };
        let body = serde_json::json!({ "referral_id": referral_id, "version": 1, "warnings": [] })
            .to_string();
        let stored = StoredResponse { status: 202, body };
        if let Err(problem) =
            accept::record_and_publish(&store, &log, &referral, &hash, &keys, &stored).await
        {
            progress.abandon();
            anyhow::bail!(
                "line {number}: {} (re-run to resume; accepted lines are skipped)",
                problem.detail
            );
        }
        summary.accepted += 1;
    }
    progress.finish_and_clear();
    report.flush()?;
    // Let the outbox relay, if any, finish before closing.
    store.close().await;
    let mut out = std::io::stdout().lock();
    if args.store.json {
        writeln!(out, "{}", serde_json::to_string(&summary)?)?;
    } else {
        writeln!(
            out,
            "imported {} referral(s); {} already imported; {} rejected",
            summary.accepted, summary.already_imported, summary.rejected
        )?;
    }
    Ok(())
}
