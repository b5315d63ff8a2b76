//! `kinlink ops replay --stage S --from <time|offset> [--dry-run]`: re-derive a stage's
//! outputs from its inputs, e.g. after a rule or reference-data change.
//!
//! The dry run applies each input in a transaction that is rolled back and compares the
//! outputs with what the log holds (by event id; timestamps that always differ are ignored):
//! unchanged, changed or new. The real run moves the stage's consumer group back and forgets
//! that it applied those events, so the running stage applies them again. Outputs whose id is
//! unchanged are dropped downstream as duplicates; changed alerts reach authorities as
//! amendments only through a referral update.

use std::collections::HashMap;

use indicatif::{ProgressBar, ProgressStyle};
use kinlink_eventlog::inspect::ReadFrom;
use kinlink_eventlog::{EventLog, Output, Record, Stage, StageError};
use kinlink_proto::v1;
use kinlink_runtime::Settings;
use kinlink_store::Store;
use prost::{Message, Name};
use serde::Serialize;
use sqlx::AnyConnection;

/// The stages, as one type (the `Stage` trait has async methods, so no trait objects).
pub enum AnyStage {
    Intake(kinlink_intake::submissions::Submissions),
    Enricher(kinlink_enricher::Enricher),
    Alerter(Box<kinlink_alerter::Alerter>),
    Notifier(kinlink_notifier::AlertInbox),
}

impl AnyStage {
    pub fn build(name: &str, settings: &Settings) -> anyhow::Result<Self> {
        Ok(match name {
            "intake" => AnyStage::Intake(kinlink_intake::submissions::Submissions::from_settings(
                &settings.intake,
            )),
            "enricher" => AnyStage::Enricher(kinlink_enricher::Enricher::from_settings(
                &settings.enricher,
            )?),
            "alerter" => AnyStage::Alerter(Box::new(kinlink_alerter::Alerter::new(
                kinlink_domain::routing::AuthorityResolver::shipped()?,
                kinlink_domain::deadline::Calendars::shipped()?,
                &settings.alerter,
            ))),
            "notifier" => {
                AnyStage::Notifier(kinlink_notifier::AlertInbox::new(std::sync::Arc::new(
                    kinlink_notifier::directory::Directory::from_settings(&settings.notifier)?,
                )))
            }
            other => anyhow::bail!(
                "unknown stage {other} (expected intake, enricher, alerter or notifier)"
            ),
        })
    }

    fn input_topics(&self) -> Vec<String> {
        match self {
            AnyStage::Intake(s) => s.input_topics(),
            AnyStage::Enricher(s) => s.input_topics(),
            AnyStage::Alerter(s) => s.input_topics(),
            AnyStage::Notifier(s) => s.input_topics(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            AnyStage::Intake(s) => s.name(),
            AnyStage::Enricher(s) => s.name(),
            AnyStage::Alerter(s) => s.name(),
            AnyStage::Notifier(s) => s.name(),
        }
    }

    async fn handle(
        &self,
        conn: &mut AnyConnection,
        record: &Record,
    ) -> Result<Vec<Output>, StageError> {
        match self {
            AnyStage::Intake(s) => s.handle(conn, record).await,
            AnyStage::Enricher(s) => s.handle(conn, record).await,
            AnyStage::Alerter(s) => s.handle(conn, record).await,
            AnyStage::Notifier(s) => s.handle(conn, record).await,
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct ReplayReport {
    pub stage: String,
    pub dry_run: bool,
    pub inputs: usize,
    pub unchanged: usize,
    pub changed: usize,
    pub new: usize,
    pub rejected: usize,
    /// Ids of outputs that would change or be new (first 50).
    pub changes: Vec<String>,
}

/// Payload with fields that differ on every derivation (times) cleared, for comparison.
fn comparable(event_type: &str, data: &[u8]) -> Vec<u8> {
    if event_type == v1::AlertRaised::full_name()
        && let Ok(mut alert) = v1::AlertRaised::decode(data)
    {
        alert.raised_at = None;
        alert.deadline = None;
        return alert.encode_to_vec();
    }
    if event_type == v1::ReferralReceived::full_name()
        && let Ok(mut referral) = v1::ReferralReceived::decode(data)
    {
        referral.received_at = None;
        return referral.encode_to_vec();
    }
    data.to_vec()
}

pub async fn replay(
    store: &Store,
    log: &EventLog,
    stage: &AnyStage,
    from: ReadFrom,
    dry_run: bool,
    show_progress: bool,
) -> anyhow::Result<ReplayReport> {
    let mut report = ReplayReport {
        stage: stage.name().to_owned(),
        dry_run,
        ..ReplayReport::default()
    };
    let mut inputs = Vec::new();
    for topic in stage.input_topics() {
        inputs.extend(log.read(&topic, from, 1_000_000).await?);
    }
    report.inputs = inputs.len();
    let progress = if show_progress {
        ProgressBar::new(inputs.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if dry_run {
        let mut existing: HashMap<String, HashMap<String, Vec<u8>>> = HashMap::new();
        for record in &inputs {
            progress.inc(1);
            let mut tx = store.begin().await?;
            // The stage sees the event opened, as the runner gives it.
            let mut opened = record.clone();
            log.sealer().open(&mut tx, &mut opened.envelope).await?;
            let outcome = stage.handle(&mut tx, &opened).await;
            tx.rollback().await?;
            let outputs = match outcome {
                Ok(outputs) => outputs,
                Err(_) => {
                    report.rejected += 1;
                    continue;
                }
            };
            for output in outputs {
                if !existing.contains_key(&output.topic) {
                    let records = log.read(&output.topic, ReadFrom::Start, 1_000_000).await?;
                    // Compared opened: sealing uses fresh nonces, so sealed bytes always differ.
                    let mut conn = store.pool().acquire().await?;
                    let mut map = HashMap::new();
                    for mut r in records {
                        log.sealer().open(&mut conn, &mut r.envelope).await?;
                        map.insert(
                            r.envelope.id.clone(),
                            comparable(&r.envelope.event_type, &r.envelope.data),
                        );
                    }
                    existing.insert(output.topic.clone(), map);
                }
                let known = existing
                    .get(&output.topic)
                    .and_then(|m| m.get(&output.envelope.id));
                let now = comparable(&output.envelope.event_type, &output.envelope.data);
                match known {
                    Some(before) if *before == now => report.unchanged += 1,
                    Some(_) => {
                        report.changed += 1;
                        if report.changes.len() < 50 {
                            report.changes.push(output.envelope.id.clone());
                        }
                    }
                    None => {
                        report.new += 1;
                        if report.changes.len() < 50 {
                            report.changes.push(output.envelope.id.clone());
                        }
                    }
                }
            }
        }
    } else {
        let group = log.group_id(stage.name());
        let mut first: HashMap<(String, i32), i64> = HashMap::new();
        for record in &inputs {
            progress.inc(1);
            let entry = first
                .entry((record.topic.clone(), record.partition))
                .or_insert(record.offset);
            *entry = (*entry).min(record.offset);
            let mut conn = store.pool().acquire().await?;
            kinlink_eventlog::sql::forget_processed(&mut conn, stage.name(), &record.envelope.id)
                .await?;
        }
        for ((topic, partition), offset) in first {
            log.reset_group(&group, &topic, partition, offset).await?;
        }
    }
    progress.finish_and_clear();
    Ok(report)
}
