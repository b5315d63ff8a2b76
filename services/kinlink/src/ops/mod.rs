//! Commands for on-call staff: status, trace, dead letters, replay, routing checks, the
//! triage queue, tokens and the audit log. Output carries ids, codes and reasons only, never
//! personal data; every command has `--json`.

pub mod dlq;
pub mod metrics;
pub mod persons;
pub mod replay;
pub mod status;
pub mod trace;

use std::io::Write;

use anyhow::Context;
use kinlink_domain::routing::{AuthorityResolver, Resolution};
use kinlink_runtime::Settings;
use kinlink_store::Store;
use serde::Serialize;

use crate::{AuthorityArgs, DlqCommand, OpsCommand, StoreArgs, TokensCommand};

#[derive(Debug, Serialize)]
struct AuthorityAnswer {
    query: String,
    resolved: bool,
    code: Option<String>,
    name: Option<String>,
    nation: Option<String>,
    district: Option<String>,
    terminated_postcode: bool,
    reason: Option<String>,
    candidates: Vec<String>,
    data_version: String,
}

/// `kinlink authority <place>`: exits with code 2 when the place does not resolve to one body.
pub fn authority(args: &AuthorityArgs) -> anyhow::Result<()> {
    let resolver = AuthorityResolver::shipped().context("loading the shipped reference data")?;
    let place = args.place.trim();
    let looks_like_code = place.len() == 9 && place[1..].chars().all(|c| c.is_ascii_digit());
    let resolution = if looks_like_code {
        resolver.resolve_code(&place.to_ascii_uppercase())
    } else {
        resolver.resolve_postcode(place)
    };
    let answer = match resolution {
        Resolution::Resolved {
            body,
            district,
            terminated_postcode,
        } => AuthorityAnswer {
            query: place.to_owned(),
            resolved: true,
            code: Some(body.gss_code),
            name: Some(body.name),
            nation: Some(body.nation),
            district: body.via_district.or(if district.is_empty() {
                None
            } else {
                Some(district)
            }),
            terminated_postcode,
            reason: None,
            candidates: Vec::new(),
            data_version: resolver.version().to_owned(),
        },
        Resolution::Unresolved { reason, candidates } => AuthorityAnswer {
            query: place.to_owned(),
            resolved: false,
            code: None,
            name: None,
            nation: None,
            district: None,
            terminated_postcode: false,
            reason: Some(reason.to_string()),
            candidates: candidates
                .into_iter()
                .map(|c| format!("{} {}", c.gss_code, c.name))
                .collect(),
            data_version: resolver.version().to_owned(),
        },
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&answer)?)?;
    } else if answer.resolved {
        writeln!(
            out,
            "{} {} ({})",
            answer.code.as_deref().unwrap_or_default(),
            answer.name.as_deref().unwrap_or_default(),
            answer.nation.as_deref().unwrap_or_default()
        )?;
        if let Some(district) = &answer.district {
            writeln!(out, "  via district {district}")?;
        }
        if answer.terminated_postcode {
            writeln!(
                out,
                "  postcode is terminated: routed through its last district"
            )?;
        }
        writeln!(out, "  data: {}", answer.data_version)?;
    } else {
        writeln!(
            out,
            "unresolved: {}",
            answer.reason.as_deref().unwrap_or_default()
        )?;
        for candidate in &answer.candidates {
            writeln!(out, "  candidate: {candidate}")?;
        }
        writeln!(out, "  data: {}", answer.data_version)?;
    }
    out.flush()?;
    if !answer.resolved {
        std::process::exit(2);
    }
    Ok(())
}

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

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339())
        .unwrap_or_default()
}

/// `kinlink triage list`.
pub async fn triage_list(args: &StoreArgs) -> anyhow::Result<()> {
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

/// `kinlink tokens ...`.
pub async fn tokens(command: TokensCommand) -> anyhow::Result<()> {
    use kinlink_store::tokens;
    let mut out = std::io::stdout().lock();
    match command {
        TokensCommand::Create {
            authority,
            agency,
            label,
            store,
        } => {
            let (kind, principal) = match (authority, agency) {
                (Some(authority), _) => (kinlink_notifier::authority_api::TOKEN_KIND, authority),
                (None, Some(agency)) => (kinlink_intake::auth::TOKEN_KIND, agency),
                (None, None) => anyhow::bail!("give --authority or --agency"),
            };
            anyhow::ensure!(
                !principal.trim().is_empty() && principal.len() <= 64,
                "the id must be 1 to 64 characters"
            );
            let db = open_store(&store).await?;
            let token = tokens::create(&db, kind, &principal, &label).await?;
            db.close().await;
            if store.json {
                let json = serde_json::json!({ "token_id": token.token_id, "kind": kind, "principal": principal, "token": token.secret });
                writeln!(out, "{json}")?;
            } else {
                writeln!(
                    out,
                    "token id: {}\n{kind}: {principal}\ntoken (shown once): {}",
                    token.token_id, token.secret
                )?;
            }
        }
        TokensCommand::List(store) => {
            let db = open_store(&store).await?;
            let list = tokens::list(&db).await?;
            db.close().await;
            if store.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
            } else {
                for t in &list {
                    writeln!(
                        out,
                        "{}  {} {}  {}{}",
                        t.token_id,
                        t.kind,
                        t.principal,
                        t.label,
                        if t.revoked { "  (revoked)" } else { "" }
                    )?;
                }
            }
        }
        TokensCommand::Revoke { token_id, store } => {
            let db = open_store(&store).await?;
            let revoked = tokens::revoke(&db, &token_id).await?;
            db.close().await;
            anyhow::ensure!(revoked, "no live token with id {token_id}");
            writeln!(out, "revoked {token_id}")?;
        }
    }
    Ok(())
}

/// `kinlink audit verify`: exit code 1 when the chain is broken.
pub async fn audit_verify(args: &StoreArgs) -> anyhow::Result<()> {
    use kinlink_store::audit::{self, Verification};
    let store = open_store(args).await?;
    let verification = audit::verify(&store).await?;
    store.close().await;
    let mut out = std::io::stdout().lock();
    match verification {
        Verification::Intact { entries } => {
            if args.json {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({ "intact": true, "entries": entries })
                )?;
            } else {
                writeln!(out, "audit log intact: {entries} entries")?;
            }
            Ok(())
        }
        Verification::Broken { seq, reason } => {
            if args.json {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({ "intact": false, "seq": seq, "reason": reason })
                )?;
            } else {
                writeln!(out, "audit log BROKEN at entry {seq}: {reason}")?;
            }
            out.flush()?;
            std::process::exit(1);
        }
    }
}

fn print<T: serde::Serialize>(
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

fn when(ms: i64) -> String {
    if ms == 0 { "-".to_owned() } else { rfc3339(ms) }
}

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

/// `kinlink triage route`.
pub async fn triage_route(
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
