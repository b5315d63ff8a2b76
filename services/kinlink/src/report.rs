//! `kinlink report`: returns for a period (and optionally one authority), read from the
//! event log so a replay reproduces them, every count suppressed from 1 to 4.

use std::io::Write;

use anyhow::Context;
use chrono::NaiveDate;
use kinlink_domain::statistics::returns::Report;
use kinlink_domain::statistics::suppression::Figure;

use crate::StoreArgs;
use crate::support::settings;

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
    let period = kinlink_console::returns::period(args.from, args.to)
        .context("--to is too far in the future")?;
    let settings = settings(&args.store)?;
    let (store, log) =
        kinlink_runtime::open_backends(&settings, kinlink_eventlog::LogMetrics::default()).await?;
    let returns = kinlink_console::returns::fold(&log).await;
    store.close().await;
    let report = returns?.report(period, args.authority.as_deref());
    if args.csv {
        write_csv(&report)
    } else {
        crate::support::print(args.store.json, &report, |out| write_text(out, &report))
    }
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
