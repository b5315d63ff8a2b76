//! The returns councils, the Home Office and charities ask for: how many dependent children of
//! referred adults are identified, where, and how fast councils respond.
//!
//! Figures are folded from the pipeline's own events ([`Returns::observe_*`] in log order),
//! so replaying the log reproduces them, and the same events give the same figures on either
//! backend. Every count that is published goes through [`super::suppression`].
//!
//! Which period a fact belongs to: a referral by when it was first received, an alert by when
//! it was first raised, a missing or found episode by when the child went missing or was
//! found. With an authority, the figures cover the alerts raised to it, the referrals and
//! children behind them; triage is not one authority's, so it is left out.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kinlink_proto::v1;
use serde::Serialize;

use super::suppression::{CountTable, Figure, PublishedTable, suppress};

/// `[from_ms, to_ms)`, milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    pub from_ms: i64,
    pub to_ms: i64,
}

impl Period {
    fn contains(&self, ms: i64) -> bool {
        (self.from_ms..self.to_ms).contains(&ms)
    }
}

fn ms(timestamp: Option<&kinlink_proto::Timestamp>) -> Option<i64> {
    timestamp.map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
}

#[derive(Debug, Default)]
struct Referral {
    received_ms: Option<i64>,
    /// The latest enrichment (highest version).
    enriched: Option<v1::ReferralEnriched>,
}

#[derive(Debug)]
struct Alert {
    first_raised_ms: i64,
    /// The latest revision.
    latest: v1::AlertRaised,
}

/// Folds events into returns. Feed every event of the topics it observes, in log order.
#[derive(Debug, Default)]
pub struct Returns {
    referrals: HashMap<String, Referral>,
    alerts: HashMap<String, Alert>,
    /// First acknowledgement and first closure per alert id (kept apart from the alerts, so
    /// the order topics are read in does not matter).
    acknowledged: HashMap<String, i64>,
    closed: HashMap<String, i64>,
    /// (referral id, dependant index or subject, time) of missing and found reports.
    missing: Vec<(String, i64)>,
    found: Vec<(String, i64)>,
}

/// One published measure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Headline {
    pub measure: &'static str,
    pub description: &'static str,
    pub value: Figure,
}

/// A duration measure: median and 90th percentile in hours, hidden (`None`) when fewer than
/// five alerts are behind it (a median of two alerts is nearly their times).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timing {
    pub measure: String,
    pub median_hours: Option<f64>,
    pub p90_hours: Option<f64>,
}

/// The returns for a period, every count suppressed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub period: Period,
    pub authority: Option<String>,
    pub headlines: Vec<Headline>,
    pub tables: Vec<NamedTable>,
    pub timings: Vec<Timing>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamedTable {
    pub name: &'static str,
    pub description: &'static str,
    #[serde(flatten)]
    pub table: PublishedTable,
}

impl Returns {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn observe_received(&mut self, event: &v1::ReferralReceived) {
        let referral = self.referrals.entry(event.referral_id.clone()).or_default();
        if let Some(at) = ms(event.received_at.as_ref()) {
            referral.received_ms = Some(referral.received_ms.map_or(at, |seen| seen.min(at)));
        }
    }

    pub fn observe_enriched(&mut self, event: &v1::ReferralEnriched) {
        let referral = self.referrals.entry(event.referral_id.clone()).or_default();
        if referral
            .enriched
            .as_ref()
            .is_none_or(|seen| seen.version <= event.version)
        {
            referral.enriched = Some(event.clone());
        }
        if referral.received_ms.is_none() {
            referral.received_ms = ms(event.received_at.as_ref());
        }
    }

    pub fn observe_alert(&mut self, event: &v1::AlertRaised) {
        let raised = ms(event.raised_at.as_ref()).unwrap_or(i64::MAX);
        match self.alerts.get_mut(&event.alert_id) {
            Some(alert) => {
                alert.first_raised_ms = alert.first_raised_ms.min(raised);
                if alert.latest.revision <= event.revision {
                    alert.latest = event.clone();
                }
            }
            None => {
                self.alerts.insert(
                    event.alert_id.clone(),
                    Alert {
                        first_raised_ms: raised,
                        latest: event.clone(),
                    },
                );
            }
        }
        if let Some(closed) = ms(event.closed_at.as_ref()) {
            earliest(&mut self.closed, &event.alert_id, closed);
        }
    }

    pub fn observe_closed(&mut self, event: &v1::AlertClosed) {
        if let Some(closed) = ms(event.closed_at.as_ref()) {
            earliest(&mut self.closed, &event.alert_id, closed);
        }
    }

    pub fn observe_acknowledged(&mut self, event: &v1::AlertAcknowledged) {
        if let Some(at) = ms(event.acknowledged_at.as_ref()) {
            earliest(&mut self.acknowledged, &event.alert_id, at);
        }
    }

    pub fn observe_missing(&mut self, event: &v1::MissingEpisodeReported) {
        if let Some(at) = ms(event.missing_since.as_ref()) {
            self.missing.push((event.referral_id.clone(), at));
        }
    }

    pub fn observe_found(&mut self, event: &v1::FoundEpisodeReported) {
        if let Some(at) = ms(event.found_at.as_ref()) {
            self.found.push((event.referral_id.clone(), at));
        }
    }

    /// The report for `period`, for every authority or one.
    pub fn report(&self, period: Period, authority: Option<&str>) -> Report {
        let for_authority = |alert: &Alert| {
            authority.is_none_or(|code| alert.latest.authority_code == code)
                && (authority.is_none() || alert.latest.basis != v1::RoutingBasis::Triage as i32)
        };
        let alerts: Vec<&Alert> = self
            .alerts
            .values()
            .filter(|a| period.contains(a.first_raised_ms) && for_authority(a))
            .collect();
        // With an authority: only referrals it was alerted about (at any time).
        let alerted_referrals: BTreeSet<&str> = self
            .alerts
            .values()
            .filter(|a| for_authority(a))
            .map(|a| a.latest.referral_id.as_str())
            .collect();
        let in_scope =
            |referral_id: &str| authority.is_none() || alerted_referrals.contains(referral_id);
        let referrals: Vec<&v1::ReferralEnriched> = self
            .referrals
            .iter()
            .filter(|(id, r)| r.received_ms.is_some_and(|at| period.contains(at)) && in_scope(id))
            .filter_map(|(_, r)| r.enriched.as_ref())
            .collect();
        let received = self
            .referrals
            .iter()
            .filter(|(id, r)| r.received_ms.is_some_and(|at| period.contains(at)) && in_scope(id))
            .count();

        let is_dependant = |s: &v1::EnrichedSubject| s.role == v1::SubjectRole::Dependant as i32;
        let mut adults_with_dependants = 0u64;
        let mut dependent_children = BTreeSet::new();
        let mut children_in_own_right = BTreeSet::new();
        let mut already_known = BTreeSet::new();
        let mut by_exploitation: BTreeMap<i32, BTreeSet<&str>> = BTreeMap::new();
        for referral in &referrals {
            let adult_subject = referral
                .subjects
                .iter()
                .any(|s| !is_dependant(s) && !s.is_child);
            if adult_subject && referral.subjects.iter().any(is_dependant) {
                adults_with_dependants += 1;
            }
            for subject in referral.subjects.iter().filter(|s| s.is_child) {
                let person = subject.person_id.as_str();
                if is_dependant(subject) {
                    dependent_children.insert(person);
                } else {
                    children_in_own_right.insert(person);
                }
                if !subject.earlier_referral_ids.is_empty() {
                    already_known.insert(person);
                }
                for kind in &referral.exploitation_types {
                    by_exploitation.entry(*kind).or_default().insert(person);
                }
            }
        }

        let count = |n: usize| Figure::of(n as u64);
        let triage: Vec<&&Alert> = alerts
            .iter()
            .filter(|a| a.latest.basis == v1::RoutingBasis::Triage as i32)
            .collect();
        let handoff_state = |state: &str| {
            alerts
                .iter()
                .filter(|a| a.latest.handoff.as_ref().is_some_and(|h| h.state == state))
                .count()
        };
        let episodes = |list: &[(String, i64)]| {
            list.iter()
                .filter(|(referral, at)| period.contains(*at) && in_scope(referral))
                .count()
        };
        let mut headlines = vec![
            Headline {
                measure: "referrals_received",
                description: "Referrals received",
                value: count(received),
            },
            Headline {
                measure: "adults_with_dependants",
                description: "Referrals of an adult with one or more dependants",
                value: Figure::of(adults_with_dependants),
            },
            Headline {
                measure: "dependent_children",
                description: "Dependent children identified (distinct persons)",
                value: count(dependent_children.len()),
            },
            Headline {
                measure: "children_in_own_right",
                description: "Children referred in their own right (distinct persons)",
                value: count(children_in_own_right.len()),
            },
            Headline {
                measure: "children_already_known",
                description: "Children already on an earlier referral (re-referrals)",
                value: count(already_known.len()),
            },
            Headline {
                measure: "alerts_raised",
                description: "Alerts raised",
                value: count(alerts.len()),
            },
            Headline {
                measure: "handoffs_accepted",
                description: "Hand-offs the home authority accepted",
                value: count(handoff_state("accepted")),
            },
            Headline {
                measure: "handoffs_declined",
                description: "Hand-offs the home authority declined",
                value: count(handoff_state("declined")),
            },
            Headline {
                measure: "handoffs_transferred",
                description: "Hand-offs transferred to another body",
                value: count(handoff_state("transferred")),
            },
            Headline {
                measure: "children_reported_missing",
                description: "Missing episodes reported",
                value: count(episodes(&self.missing)),
            },
            Headline {
                measure: "children_found",
                description: "Found episodes reported",
                value: count(episodes(&self.found)),
            },
        ];
        if authority.is_none() {
            headlines.push(Headline {
                measure: "triage_alerts",
                description: "Alerts that needed a person to route them (triage)",
                value: count(triage.len()),
            });
        }

        let tables = vec![
            NamedTable {
                name: "children_by_authority_and_basis",
                description: "Children alerted, by authority and why it is responsible (a child is counted once per authority)",
                table: suppress(&children_by_basis(&alerts)),
            },
            NamedTable {
                name: "alerts_by_rag_and_acknowledgement",
                description: "Alerts by RAG rating: acknowledged by the deadline, after it, or not (yet)",
                table: suppress(&acknowledgement_by_rag(&alerts, &self.acknowledged)),
            },
            NamedTable {
                name: "alerts_by_rule",
                description: "Alerts by the rule that raised them",
                table: suppress(&by_rule(&alerts)),
            },
            NamedTable {
                name: "children_by_exploitation_type",
                description: "Children by the exploitation types on their referral (a child can be under several: no total)",
                table: suppress(&CountTable {
                    rows: by_exploitation
                        .keys()
                        .map(|k| exploitation_name(*k))
                        .collect(),
                    columns: vec!["Children".to_owned()],
                    cells: by_exploitation
                        .values()
                        .map(|children| vec![children.len() as u64])
                        .collect(),
                    row_totals: false,
                    column_totals: false,
                }),
            },
        ];

        let mut timings = vec![];
        for rag in [v1::Rag::Red, v1::Rag::Amber, v1::Rag::Green] {
            let hours: Vec<f64> = alerts
                .iter()
                .filter(|a| a.latest.rag == rag as i32)
                .filter_map(|a| {
                    let acknowledged = self.acknowledged.get(&a.latest.alert_id)?;
                    Some(hours(acknowledged - a.first_raised_ms))
                })
                .collect();
            timings.push(timing(
                format!("time_to_acknowledge_{}", rag_name(rag as i32)),
                hours,
            ));
        }
        if authority.is_none() {
            let hours = triage
                .iter()
                .filter_map(|a| {
                    let closed = self.closed.get(&a.latest.alert_id)?;
                    Some(hours(closed - a.first_raised_ms))
                })
                .collect();
            timings.push(timing("time_in_triage".to_owned(), hours));
        }
        Report {
            period,
            authority: authority.map(str::to_owned),
            headlines,
            tables,
            timings,
        }
    }
}

fn earliest(times: &mut HashMap<String, i64>, id: &str, at: i64) {
    times
        .entry(id.to_owned())
        .and_modify(|seen| *seen = (*seen).min(at))
        .or_insert(at);
}

fn hours(ms: i64) -> f64 {
    ms.max(0) as f64 / 3_600_000.0
}

/// Fewer than this many durations: no median or 90th percentile.
const MIN_FOR_TIMING: usize = 5;

fn timing(measure: String, mut hours: Vec<f64>) -> Timing {
    if hours.len() < MIN_FOR_TIMING {
        return Timing {
            measure,
            median_hours: None,
            p90_hours: None,
        };
    }
    hours.sort_by(f64::total_cmp);
    // Nearest rank, rounded to a tenth of an hour.
    let at = |q: f64| {
        let rank = ((q * hours.len() as f64).ceil() as usize).clamp(1, hours.len());
        (hours[rank - 1] * 10.0).round() / 10.0
    };
    Timing {
        measure,
        median_hours: Some(at(0.5)),
        p90_hours: Some(at(0.9)),
    }
}

fn children_by_basis(alerts: &[&Alert]) -> CountTable {
    const COLUMNS: [(v1::RoutingBasis, &str); 4] = [
        (v1::RoutingBasis::Lives, "Lives there"),
        (v1::RoutingBasis::Found, "Found there"),
        (v1::RoutingBasis::PlacingAuthority, "Placing authority"),
        (v1::RoutingBasis::PreviousAuthority, "Known there before"),
    ];
    // Each child once per authority, under the basis of its earliest alert there.
    let mut first: BTreeMap<(&str, &str), (i64, i32)> = BTreeMap::new();
    for alert in alerts {
        let code = alert.latest.authority_code.as_str();
        if code.is_empty() {
            continue;
        }
        for section in &alert.latest.sections {
            let basis = if section.basis == 0 {
                alert.latest.basis
            } else {
                section.basis
            };
            let entry = first
                .entry((code, section.person_id.as_str()))
                .or_insert((alert.first_raised_ms, basis));
            if alert.first_raised_ms < entry.0 {
                *entry = (alert.first_raised_ms, basis);
            }
        }
    }
    let authorities: Vec<&str> = first
        .keys()
        .map(|(code, _)| *code)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut cells = vec![vec![0u64; COLUMNS.len()]; authorities.len()];
    for ((code, _), (_, basis)) in &first {
        if let (Some(r), Some(c)) = (
            authorities.iter().position(|a| a == code),
            COLUMNS.iter().position(|(b, _)| *b as i32 == *basis),
        ) {
            cells[r][c] += 1;
        }
    }
    CountTable {
        rows: authorities.iter().map(|a| (*a).to_owned()).collect(),
        columns: COLUMNS.iter().map(|(_, name)| (*name).to_owned()).collect(),
        cells,
        row_totals: true,
        column_totals: true,
    }
}

fn acknowledgement_by_rag(alerts: &[&Alert], acknowledged: &HashMap<String, i64>) -> CountTable {
    let rags = [v1::Rag::Red, v1::Rag::Amber, v1::Rag::Green];
    let mut cells = vec![vec![0u64; 3]; rags.len()];
    for alert in alerts {
        if alert.latest.basis == v1::RoutingBasis::Triage as i32 {
            continue;
        }
        let Some(r) = rags.iter().position(|rag| *rag as i32 == alert.latest.rag) else {
            continue;
        };
        let deadline = ms(alert.latest.deadline.as_ref());
        let column = match (acknowledged.get(&alert.latest.alert_id).copied(), deadline) {
            (Some(at), Some(deadline)) if at <= deadline => 0,
            (Some(_), None) => 0,
            (Some(_), Some(_)) => 1,
            (None, _) => 2,
        };
        cells[r][column] += 1;
    }
    CountTable {
        rows: rags
            .iter()
            .map(|rag| rag_name(*rag as i32).to_owned())
            .collect(),
        columns: vec![
            "Acknowledged by the deadline".to_owned(),
            "Acknowledged late".to_owned(),
            "Not acknowledged".to_owned(),
        ],
        cells,
        row_totals: true,
        column_totals: true,
    }
}

fn by_rule(alerts: &[&Alert]) -> CountTable {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for alert in alerts {
        *counts.entry(alert.latest.rule.as_str()).or_default() += 1;
    }
    CountTable {
        rows: counts.keys().map(|rule| (*rule).to_owned()).collect(),
        columns: vec!["Alerts".to_owned()],
        cells: counts.values().map(|n| vec![*n]).collect(),
        row_totals: false,
        column_totals: true,
    }
}

fn rag_name(rag: i32) -> &'static str {
    match v1::Rag::try_from(rag) {
        Ok(v1::Rag::Red) => "red",
        Ok(v1::Rag::Amber) => "amber",
        Ok(v1::Rag::Green) => "green",
        _ => "unrated",
    }
}

fn exploitation_name(kind: i32) -> String {
    match v1::ExploitationType::try_from(kind) {
        Ok(v1::ExploitationType::Labour) => "labour",
        Ok(v1::ExploitationType::Sexual) => "sexual",
        Ok(v1::ExploitationType::Criminal) => "criminal",
        Ok(v1::ExploitationType::DomesticServitude) => "domestic_servitude",
        Ok(v1::ExploitationType::OrganHarvesting) => "organ_harvesting",
        Ok(v1::ExploitationType::Unknown) => "unknown",
        _ => "not_given",
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kinlink_proto::timestamp_from_millis;

    const HOUR: i64 = 3_600_000;
    const KENT: &str = "E10000016";
    const LEEDS: &str = "E08000035";

    fn subject(
        person: &str,
        role: v1::SubjectRole,
        child: bool,
        earlier: &[&str],
    ) -> v1::EnrichedSubject {
        v1::EnrichedSubject {
            person_id: person.to_owned(),
            role: role as i32,
            is_child: child,
            earlier_referral_ids: earlier.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        }
    }

    /// Referral `n` at hour `n`: an adult with one child, alerted to `authority` (red, due
    /// two hours after it was raised), acknowledged `ack_after` hours after it was raised.
    fn family(returns: &mut Returns, n: i64, authority: &str, ack_after: Option<i64>) {
        let referral_id = format!("r{n}");
        let at = n * HOUR;
        returns.observe_received(&v1::ReferralReceived {
            referral_id: referral_id.clone(),
            received_at: Some(timestamp_from_millis(at)),
            version: 1,
            ..Default::default()
        });
        returns.observe_enriched(&v1::ReferralEnriched {
            referral_id: referral_id.clone(),
            version: 1,
            exploitation_types: vec![v1::ExploitationType::Criminal as i32],
            subjects: vec![
                subject(
                    &format!("adult{n}"),
                    v1::SubjectRole::ReferralSubject,
                    false,
                    &[],
                ),
                subject(&format!("child{n}"), v1::SubjectRole::Dependant, true, &[]),
            ],
            ..Default::default()
        });
        let alert_id = format!("a{n}");
        returns.observe_alert(&v1::AlertRaised {
            alert_id: alert_id.clone(),
            referral_id,
            authority_code: authority.to_owned(),
            basis: v1::RoutingBasis::Lives as i32,
            rag: v1::Rag::Red as i32,
            rule: "unrecognised_dependant".to_owned(),
            raised_at: Some(timestamp_from_millis(at)),
            deadline: Some(timestamp_from_millis(at + 2 * HOUR)),
            revision: 1,
            sections: vec![v1::AlertSection {
                person_id: format!("child{n}"),
                basis: v1::RoutingBasis::Lives as i32,
                ..Default::default()
            }],
            ..Default::default()
        });
        if let Some(after) = ack_after {
            returns.observe_acknowledged(&v1::AlertAcknowledged {
                alert_id,
                acknowledged_at: Some(timestamp_from_millis(at + after * HOUR)),
                ..Default::default()
            });
        }
    }

    fn headline(report: &Report, measure: &str) -> Figure {
        report
            .headlines
            .iter()
            .find(|h| h.measure == measure)
            .map_or(Figure::Count(u64::MAX), |h| h.value)
    }

    fn table<'a>(report: &'a Report, name: &str) -> &'a PublishedTable {
        report
            .tables
            .iter()
            .find(|t| t.name == name)
            .map(|t| &t.table)
            .unwrap_or_else(|| panic!("no table {name}"))
    }

    #[test]
    fn figures_come_from_the_events_and_small_ones_are_hidden() {
        let mut returns = Returns::new();
        // Kent: 8 families, 6 acknowledged in an hour, 1 late (3 h), 1 not yet.
        for n in 0..8 {
            let ack = match n {
                0..=5 => Some(1),
                6 => Some(3),
                _ => None,
            };
            family(&mut returns, n, KENT, ack);
        }
        // Leeds: 2 families.
        family(&mut returns, 8, LEEDS, Some(1));
        family(&mut returns, 9, LEEDS, Some(1));
        // A later version of referral 0 names the same child again: still one child.
        returns.observe_enriched(&v1::ReferralEnriched {
            referral_id: "r0".to_owned(),
            version: 2,
            exploitation_types: vec![v1::ExploitationType::Criminal as i32],
            subjects: vec![
                subject("adult0", v1::SubjectRole::ReferralSubject, false, &[]),
                subject("child0", v1::SubjectRole::Dependant, true, &["r-old"]),
            ],
            ..Default::default()
        });
        let period = Period {
            from_ms: 0,
            to_ms: 24 * HOUR,
        };
        let report = returns.report(period, None);
        assert_eq!(headline(&report, "referrals_received"), Figure::Count(10));
        assert_eq!(
            headline(&report, "adults_with_dependants"),
            Figure::Count(10)
        );
        assert_eq!(headline(&report, "dependent_children"), Figure::Count(10));
        // One child known before: 1 is hidden.
        assert_eq!(
            headline(&report, "children_already_known"),
            Figure::Suppressed
        );
        assert_eq!(headline(&report, "alerts_raised"), Figure::Count(10));

        // Leeds's 2 children are hidden; with the total of 10 shown, Kent's 8 would give
        // them away, so Kent's figures are hidden too.
        let by_basis = table(&report, "children_by_authority_and_basis");
        assert_eq!(by_basis.rows, vec![LEEDS, KENT, "Total"]);
        assert_eq!(by_basis.figures[0][0], Figure::Suppressed);
        assert_eq!(by_basis.figures[0][4], Figure::Suppressed);
        assert_eq!(by_basis.figures[1][0], Figure::Suppressed);
        assert_eq!(by_basis.figures[1][4], Figure::Suppressed);
        assert_eq!(by_basis.figures[2][0], Figure::Count(10));
        assert_eq!(by_basis.figures[2][4], Figure::Count(10));

        let acks = table(&report, "alerts_by_rag_and_acknowledgement");
        // Red: 8 in time, 1 late, 1 not acknowledged; amber and green rows are zero.
        assert_eq!(acks.figures[0][0], Figure::Count(8));
        assert_eq!(acks.figures[0][1], Figure::Suppressed);
        assert_eq!(acks.figures[0][2], Figure::Suppressed);
        assert_eq!(acks.figures[0][3], Figure::Count(10));

        let red = &report.timings[0];
        assert_eq!(red.measure, "time_to_acknowledge_red");
        assert_eq!((red.median_hours, red.p90_hours), (Some(1.0), Some(3.0)));
        // Amber: no alerts, nothing shown.
        assert_eq!(report.timings[1].median_hours, None);

        // One authority: only its alerts and the referrals behind them.
        let kent = returns.report(period, Some(KENT));
        assert_eq!(headline(&kent, "referrals_received"), Figure::Count(8));
        assert_eq!(headline(&kent, "alerts_raised"), Figure::Count(8));
        assert!(kent.headlines.iter().all(|h| h.measure != "triage_alerts"));

        // Another period: nothing.
        let later = returns.report(
            Period {
                from_ms: 24 * HOUR,
                to_ms: 48 * HOUR,
            },
            None,
        );
        assert_eq!(headline(&later, "referrals_received"), Figure::Count(0));
    }

    #[test]
    fn the_order_topics_are_read_in_does_not_change_the_figures() {
        let mut first = Returns::new();
        family(&mut first, 1, KENT, Some(1));
        // The acknowledgement arrives before the alert it acknowledges.
        let mut second = Returns::new();
        second.observe_acknowledged(&v1::AlertAcknowledged {
            alert_id: "a1".to_owned(),
            acknowledged_at: Some(timestamp_from_millis(2 * HOUR)),
            ..Default::default()
        });
        family(&mut second, 1, KENT, None);
        let period = Period {
            from_ms: 0,
            to_ms: 24 * HOUR,
        };
        assert_eq!(first.report(period, None), second.report(period, None));
    }
}
