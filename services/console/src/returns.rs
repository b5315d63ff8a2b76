//! Returns (statistics) for operators: the page at `/console/returns`, and the fold from the
//! event log that `kinlink report` uses too, so the page and the CLI cannot disagree.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{Datelike, Days, NaiveDate};
use kinlink_domain::statistics::returns::{Period, Report, Returns};
use kinlink_eventlog::inspect::ReadFrom;
use kinlink_eventlog::{EventLog, topics};
use kinlink_proto::v1;
use prost::Name;
use serde::Deserialize;

use crate::accounts::Role;
use crate::view::{self, Chrome};
use crate::{Console, Error};

/// Most events read from one topic; a longer log is refused rather than reported in part.
pub const MOST_EVENTS_PER_TOPIC: usize = 5_000_000;

/// Every event the returns need, from the start of the log.
pub async fn fold(log: &EventLog) -> Result<Returns, Error> {
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
            .await?;
        if records.len() >= MOST_EVENTS_PER_TOPIC {
            return Err(Error::Invalid {
                field: "log",
                reason: "a topic holds too many events for one report run",
            });
        }
        for record in records {
            let envelope = &record.envelope;
            let t = envelope.event_type.as_str();
            if t == v1::ReferralReceived::full_name() {
                returns.observe_received(&envelope.decode()?);
            } else if t == v1::ReferralEnriched::full_name() {
                returns.observe_enriched(&envelope.decode()?);
            } else if t == v1::AlertRaised::full_name() {
                returns.observe_alert(&envelope.decode()?);
            } else if t == v1::AlertClosed::full_name() {
                returns.observe_closed(&envelope.decode()?);
            } else if t == v1::AlertAcknowledged::full_name() {
                returns.observe_acknowledged(&envelope.decode()?);
            } else if t == v1::MissingEpisodeReported::full_name() {
                returns.observe_missing(&envelope.decode()?);
            } else if t == v1::FoundEpisodeReported::full_name() {
                returns.observe_found(&envelope.decode()?);
            }
        }
    }
    Ok(returns)
}

/// `[from, to]` as UTC days, both included.
pub fn period(from: NaiveDate, to: NaiveDate) -> Option<Period> {
    let start = |day: NaiveDate| Some(day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis());
    Some(Period {
        from_ms: start(from)?,
        to_ms: start(to.checked_add_days(Days::new(1))?)?,
    })
}

#[derive(Debug, Deserialize)]
pub struct ReturnsQuery {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    authority: String,
}

struct TableView {
    id: &'static str,
    caption: &'static str,
    columns: Vec<String>,
    rows: Vec<(String, Vec<String>)>,
}

#[derive(Template)]
#[template(path = "returns.html")]
struct ReturnsPage {
    chrome: Chrome,
    from: String,
    to: String,
    authority: String,
    errors: Vec<(&'static str, String)>,
    headlines: Vec<(&'static str, String)>,
    tables: Vec<TableView>,
    timings: Vec<(String, String, String)>,
}

fn parse_day(value: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d").ok()
}

/// `GET /console/returns`: operators only.
pub async fn page(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(query): Query<ReturnsQuery>,
) -> Response {
    let session = match crate::session_as(&console, &headers, |r| r == Role::Operator).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let today = chrono::Utc::now().date_naive();
    let first_of_year = NaiveDate::from_ymd_opt(today.year(), 1, 1).unwrap_or(today);
    let (from_text, to_text) = (
        if query.from.is_empty() {
            first_of_year.to_string()
        } else {
            query.from.clone()
        },
        if query.to.is_empty() {
            today.to_string()
        } else {
            query.to.clone()
        },
    );
    let mut errors = vec![];
    let from = parse_day(&from_text);
    let to = parse_day(&to_text);
    if from.is_none() {
        errors.push((
            "from",
            "Enter the first day as a date, like 2026-04-01".to_owned(),
        ));
    }
    if to.is_none() {
        errors.push((
            "to",
            "Enter the last day as a date, like 2027-03-31".to_owned(),
        ));
    }
    let authority = query.authority.trim().to_owned();
    if !authority.is_empty()
        && !authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        errors.push((
            "authority",
            "Enter an authority code, like E10000016".to_owned(),
        ));
    }
    let mut page = ReturnsPage {
        chrome: Chrome::new("Returns", Some(&session), "/console/returns"),
        from: from_text,
        to: to_text,
        authority: authority.clone(),
        errors: vec![],
        headlines: vec![],
        tables: vec![],
        timings: vec![],
    };
    let period = match (from, to) {
        (Some(from), Some(to)) if errors.is_empty() => {
            if to < from {
                errors.push((
                    "to",
                    "The last day must be on or after the first day".to_owned(),
                ));
                None
            } else {
                period(from, to)
            }
        }
        _ => None,
    };
    let Some(period) = period else {
        page.errors = errors;
        return view::render(StatusCode::BAD_REQUEST, &page);
    };
    let returns = match fold(&console.log).await {
        Ok(returns) => returns,
        Err(error) => return crate::unavailable(&error),
    };
    let report = returns.report(
        period,
        (!authority.is_empty()).then_some(authority.as_str()),
    );
    fill(&mut page, &report);
    view::render(StatusCode::OK, &page)
}

fn fill(page: &mut ReturnsPage, report: &Report) {
    page.headlines = report
        .headlines
        .iter()
        .map(|h| (h.description, h.value.to_string()))
        .collect();
    page.tables = report
        .tables
        .iter()
        .map(|t| TableView {
            id: t.name,
            caption: t.description,
            columns: t.table.columns.clone(),
            rows: t
                .table
                .rows
                .iter()
                .zip(&t.table.figures)
                .map(|(row, figures)| {
                    (
                        row.clone(),
                        figures.iter().map(ToString::to_string).collect(),
                    )
                })
                .collect(),
        })
        .collect();
    let hours = |v: Option<f64>| v.map_or_else(|| "[c]".to_owned(), |h| format!("{h:.1}"));
    page.timings = report
        .timings
        .iter()
        .map(|t| {
            (
                t.measure.replace('_', " "),
                hours(t.median_hours),
                hours(t.p90_hours),
            )
        })
        .collect();
}
