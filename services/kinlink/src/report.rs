//! `kinlink report`: returns for a period (and optionally one authority), read from the
//! event log so a replay reproduces them, every count suppressed from 1 to 4.

use std::io::Write;

use anyhow::Context;
use chrono::{Days, NaiveDate};
use kinlink_domain::statistics::returns::{Period, Report, Returns};
use kinlink_domain::statistics::suppression::Figure;
use kinlink_eventlog::inspect::ReadFrom;
use kinlink_eventlog::{EventLog, topics};
use kinlink_proto::v1;
use prost::Name;

use crate::StoreArgs;
use crate::support::settings;

/// Most events read from one topic; a longer log is refused rather than reported in part.
const MOST_EVENTS_PER_TOPIC: usize = 5_000_000;

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// First day of the period (YYYY-MM-DD, UTC).
    #[arg(long)]
    pub from: NaiveDate,
    /// Last day of the period, included (YYYY-MM-DD, UTC).
    #[arg(long)]
    pub to: NaiveDate,
    /// Only what concerns this body (GSS or HSCT code): its alerts, and the referrals and
    /// children behind them.
    #[arg(long)]
    pub authority: Option<String>,
    /// CSV (section, measure, row, column, value) instead of text.
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `kinlink report`.
pub async fn run(args: &ReportArgs) -> anyhow::Result<()> {
    if args.to < args.from {
        anyhow::bail!("--to ({}) is before --from ({})", args.to, args.from);
    }
    let period = Period {
        from_ms: day_start_ms(args.from)?,
        to_ms: day_start_ms(
            args.to
                .checked_add_days(Days::new(1))
                .context("--to is too far in the future")?,
        )?,
    };
    let settings = settings(&args.store)?;
    let (store, log) =
        kinlink_runtime::open_backends(&settings, kinlink_eventlog::LogMetrics::default()).await?;
    let returns = fold(&log).await;
    store.close().await;
    let report = returns?.report(period, args.authority.as_deref());
    if args.csv {
        write_csv(&report)
    } else {
        crate::support::print(args.store.json, &report, |out| write_text(out, &report))
    }
}

fn day_start_ms(day: NaiveDate) -> anyhow::Result<i64> {
    Ok(day
        .and_hms_opt(0, 0, 0)
        .context("no midnight on that day")?
        .and_utc()
        .timestamp_millis())
}

/// Every event the returns need, from the start of the log.
pub async fn fold(log: &EventLog) -> anyhow::Result<Returns> {
    let mut returns = Returns::new();
    for topic in [
        topics::REFERRALS_RECEIVED,
        topics::REFERRALS_ENRICHED,
        topics::ALERTS_RAISED,
        topics::ALERTS_LIFECYCLE,
        topics::REFERRAL_FOLLOWUPS,
    ] {
        let records = log
            .read(topic, ReadFrom::Start, MOST_EVENTS_PER_TOPIC)
            .await
            .with_context(|| format!("reading {topic}"))?;
        if records.len() >= MOST_EVENTS_PER_TOPIC {
            anyhow::bail!(
                "{topic} holds {MOST_EVENTS_PER_TOPIC} events or more: too many for one report run"
            );
        }
        for record in records {
            let envelope = &record.envelope;
            let t = envelope.event_type.as_str();
            let at = || format!("{topic}[{}]@{}", record.partition, record.offset);
            if t == v1::ReferralReceived::full_name() {
                returns.observe_received(&envelope.decode().with_context(at)?);
            } else if t == v1::ReferralEnriched::full_name() {
                returns.observe_enriched(&envelope.decode().with_context(at)?);
            } else if t == v1::AlertRaised::full_name() {
                returns.observe_alert(&envelope.decode().with_context(at)?);
            } else if t == v1::AlertClosed::full_name() {
                returns.observe_closed(&envelope.decode().with_context(at)?);
            } else if t == v1::AlertAcknowledged::full_name() {
                returns.observe_acknowledged(&envelope.decode().with_context(at)?);
            } else if t == v1::MissingEpisodeReported::full_name() {
                returns.observe_missing(&envelope.decode().with_context(at)?);
            } else if t == v1::FoundEpisodeReported::full_name() {
                returns.observe_found(&envelope.decode().with_context(at)?);
            }
        }
    }
    Ok(returns)
}

fn hours(value: Option<f64>) -> String {
    value.map_or_else(|| "[c]".to_owned(), |h| format!("{h:.1}"))
}

fn write_text(out: &mut dyn Write, report: &Report) -> std::io::Result<()> {
    let day = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_default()
    };
    writeln!(
        out,
        "Returns for {} to {} (to the end of the day before {}){}",
        day(report.period.from_ms),
        day(report.period.to_ms - 1),
        day(report.period.to_ms),
        report
            .authority
            .as_deref()
            .map(|a| format!(", authority {a}"))
            .unwrap_or_default()
    )?;
    writeln!(
        out,
        "[c]: 1 to 4, or a figure hidden so that totals do not reveal one\n"
    )?;
    for headline in &report.headlines {
        writeln!(out, "{:>8}  {}", headline.value, headline.description)?;
    }
    for table in &report.tables {
        writeln!(out, "\n{}", table.description)?;
        let t = &table.table;
        let label = t.rows.iter().map(String::len).max().unwrap_or(0).max(10);
        write!(out, "{:label$}", "")?;
        for column in &t.columns {
            write!(out, "  {column:>w$}", w = column.len().max(5))?;
        }
        writeln!(out)?;
        for (row, figures) in t.rows.iter().zip(&t.figures) {
            write!(out, "{row:label$}")?;
            for (column, figure) in t.columns.iter().zip(figures) {
                write!(out, "  {:>w$}", figure.to_string(), w = column.len().max(5))?;
            }
            writeln!(out)?;
        }
    }
    writeln!(out, "\nHours (median / 90th percentile; [c]: fewer than 5)")?;
    for timing in &report.timings {
        writeln!(
            out,
            "{:>8} / {:>8}  {}",
            hours(timing.median_hours),
            hours(timing.p90_hours),
            timing.measure
        )?;
    }
    Ok(())
}

fn write_csv(report: &Report) -> anyhow::Result<()> {
    let mut csv = csv::Writer::from_writer(std::io::stdout().lock());
    csv.write_record(["section", "measure", "row", "column", "value"])?;
    let figure = |f: &Figure| f.to_string();
    for headline in &report.headlines {
        csv.write_record([
            "headline",
            headline.measure,
            "",
            "",
            &figure(&headline.value),
        ])?;
    }
    for table in &report.tables {
        let t = &table.table;
        for (row, figures) in t.rows.iter().zip(&t.figures) {
            for (column, value) in t.columns.iter().zip(figures) {
                csv.write_record(["table", table.name, row, column, &figure(value)])?;
            }
        }
    }
    for timing in &report.timings {
        csv.write_record([
            "timing",
            timing.measure.as_str(),
            "",
            "median_hours",
            &hours(timing.median_hours),
        ])?;
        csv.write_record([
            "timing",
            timing.measure.as_str(),
            "",
            "p90_hours",
            &hours(timing.p90_hours),
        ])?;
    }
    csv.flush()?;
    Ok(())
}
