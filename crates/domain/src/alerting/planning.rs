//! Alert planning: from an event and what the store knows about its children, the alerts to
//! raise. One alert per body (or one for triage), a household's children sharing it with a
//! section each; priority from the rules, an urgent referral always red; the deadline from the
//! body's policy and working calendar; ids derived from the event so a redelivered or
//! replayed event plans the same alerts.
//!
//! Pure: the alerter loads a [`History`], calls [`plan_alerts`] and persists what it returns.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use kinlink_proto::v1::{self, RoutingBasis};

use crate::alerting::rules::{self, ReferralContext, Rule};
use crate::deadline::{Calendars, DeadlinePolicy, Rag, TriageSla};
use crate::routing::authorities::ChildrensServices;
use crate::routing::{self, AuthorityResolver, Resolution, Target, TriageReason};

/// Target key of alerts waiting in triage (an alert's key is its body's code otherwise).
pub const TRIAGE_KEY: &str = "triage";

/// Deadlines and windows the planner applies.
#[derive(Debug, Clone, Default)]
pub struct AlertPolicy {
    /// Deadlines of bodies without an override.
    pub default_deadlines: DeadlinePolicy,
    /// Per-body overrides, by GSS code.
    pub authority_deadlines: HashMap<String, DeadlinePolicy>,
    /// A child on another referral within this window raises `repeat_referral`.
    pub repeat_window_ms: i64,
    /// How long an alert may wait in triage before on-call is paged.
    pub triage_sla: TriageSla,
}

impl AlertPolicy {
    /// The deadline policy of the alert with this key (a body's code, or [`TRIAGE_KEY`]).
    pub fn deadlines_for(&self, key: &str) -> &DeadlinePolicy {
        self.authority_deadlines
            .get(key)
            .unwrap_or(&self.default_deadlines)
    }
}

/// What the store knows about the persons an event concerns, loaded before planning.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Bodies each person was routed to before, oldest first. For a referral, routes of the
    /// referral itself are left out (a new version amends rather than repeats).
    pub previous_bodies: HashMap<String, Vec<String>>,
    /// When each person was last on another referral.
    pub previously_seen_at_ms: HashMap<String, i64>,
}

impl History {
    fn previous_bodies(&self, person: &str) -> &[String] {
        self.previous_bodies.get(person).map_or(&[], Vec::as_slice)
    }
}

/// A follow-up about known persons: a missing episode, an NRM decision, an age dispute or a
/// merge that joined two bodies' histories.
#[derive(Debug, Clone)]
pub struct PersonEvent<'a> {
    pub rule: Rule,
    /// The persons it concerns (an NRM decision on a parent concerns their children). Empty
    /// when the subject is not known: the alert goes to triage as `unknown_subject`.
    pub persons: Vec<String>,
    /// Where the child was last seen (missing episodes).
    pub last_seen: Option<&'a v1::Location>,
    /// What the alert tells about the event itself: the NRM decision's stage and outcome, or
    /// when and where a missing child was last seen.
    pub detail: PersonEventDetail,
}

/// What a follow-up alert carries about its event.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum PersonEventDetail {
    #[default]
    None,
    NrmDecision(v1::AlertNrmDecision),
    Missing {
        missing_since: Option<kinlink_proto::Timestamp>,
    },
}

/// What happened.
#[derive(Debug, Clone)]
pub enum Trigger<'a> {
    Referral(&'a v1::ReferralEnriched),
    Person(PersonEvent<'a>),
}

/// An event to plan alerts for.
#[derive(Debug, Clone)]
pub struct AlertEvent<'a> {
    /// The id of the event being handled: alerts of a follow-up derive their ids from it.
    pub event_id: &'a str,
    /// The referral the alerts belong to.
    pub referral_id: &'a str,
    /// When kinlink received what the event is about (the referral, or the follow-up):
    /// deadlines and the repeat window run from here, so time spent in the pipeline never
    /// eats into a red hour.
    pub received_at: DateTime<Utc>,
    pub trigger: Trigger<'a>,
}

/// How long a follow-up (missing episode, NRM decision, age assessment) may wait for its
/// referral to be enriched. The enricher normally takes well under a second; ten minutes
/// covers a restart or a backlog. After that the follow-up is dead-lettered with the reason,
/// for an operator to replay, rather than routed to triage as an unknown subject.
pub const FOLLOW_UP_WAIT_MS: i64 = 10 * 60_000;

/// What to do with a follow-up whose referral has not been enriched yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUpWait {
    /// Try again later (the stage retries with back-off).
    Wait,
    /// Waited long enough: dead-letter it.
    GiveUp,
}

/// Whether a follow-up received at `received_ms` may still wait at `now_ms`.
pub fn follow_up_wait(received_ms: i64, now_ms: i64) -> FollowUpWait {
    if now_ms.saturating_sub(received_ms) < FOLLOW_UP_WAIT_MS {
        FollowUpWait::Wait
    } else {
        FollowUpWait::GiveUp
    }
}

/// Whether an age assessment raises `age_dispute`: the person was assessed adult after being
/// routed as a child.
pub fn age_assessment_disputes(outcome: i32, was_routed_as_child: bool) -> bool {
    outcome == v1::AgeAssessmentOutcome::Adult as i32 && was_routed_as_child
}

/// Whether a merge of two persons raises `cross_authority_reappearance`: the merged child was
/// known to at least two bodies.
pub fn merge_joins_bodies(previous_bodies: &[String]) -> bool {
    previous_bodies.len() >= 2
}

/// The alerts an event raises, in the order their bodies first appeared.
pub fn plan_alerts(
    event: &AlertEvent<'_>,
    history: &History,
    resolver: &AuthorityResolver,
    calendars: &Calendars,
    policy: &AlertPolicy,
    now: DateTime<Utc>,
) -> Vec<v1::AlertRaised> {
    // A receipt time from the future (a skewed clock) counts from now.
    let received_at = event.received_at.min(now);
    let (drafts, context) = match &event.trigger {
        Trigger::Referral(enriched) => (
            referral_drafts(enriched, history, resolver, policy, received_at),
            Context {
                urgency: enriched.urgency,
                exploitation_types: enriched.exploitation_types.clone(),
                county_lines: enriched.county_lines,
                episode: Some(enriched.referral_id.clone()),
                revision: enriched.version.max(1),
                agency_id: enriched.agency_id.clone(),
                concern: enriched.concern.clone(),
                ..Context::default()
            },
        ),
        Trigger::Person(person_event) => {
            let mut drafts = Drafts::default();
            if person_event.persons.is_empty() {
                drafts = person_drafts(None, person_event, history, resolver);
            }
            for person in &person_event.persons {
                let more = person_drafts(Some(person), person_event, history, resolver);
                drafts.merge(more);
            }
            let context = match &person_event.detail {
                PersonEventDetail::None => Context::default(),
                PersonEventDetail::NrmDecision(decision) => Context {
                    nrm_decision: Some(*decision),
                    ..Context::default()
                },
                PersonEventDetail::Missing { missing_since } => Context {
                    missing_episode: Some(v1::AlertMissingEpisode {
                        missing_since: *missing_since,
                        last_seen: person_event.last_seen.cloned(),
                        last_seen_authority_code: person_event
                            .last_seen
                            .and_then(|l| match resolver.resolve_location(l) {
                                Resolution::Resolved { body, .. } => Some(body.gss_code),
                                Resolution::Unresolved { .. } => None,
                            })
                            .unwrap_or_default(),
                        sealed_last_seen: None,
                    }),
                    ..Context::default()
                },
            };
            (drafts, context)
        }
    };
    raise(
        event,
        drafts,
        &context,
        resolver,
        calendars,
        policy,
        received_at,
        now,
    )
}

/// What the event says about the referral as a whole.
#[derive(Debug, Default)]
struct Context {
    urgency: i32,
    exploitation_types: Vec<i32>,
    county_lines: bool,
    /// What makes the alerts of this event unique with their target: the referral for
    /// referral events (so a new version amends the same alerts), the event for follow-ups.
    episode: Option<String>,
    /// Referral version (1 for follow-ups).
    revision: u32,
    nrm_decision: Option<v1::AlertNrmDecision>,
    missing_episode: Option<v1::AlertMissingEpisode>,
    agency_id: String,
    concern: String,
}

/// An alert being assembled for one body (or triage).
#[derive(Debug)]
struct Draft {
    key: String,
    body: Option<ChildrensServices>,
    sections: Vec<v1::AlertSection>,
    /// The priority of each section, as decided (the proto field only carries it).
    rags: Vec<Rag>,
    triage_reasons: Vec<String>,
    candidates: Vec<String>,
}

impl Draft {
    fn push(&mut self, (section, rag): (v1::AlertSection, Rag)) {
        self.sections.push(section);
        self.rags.push(rag);
    }

    fn add_triage(&mut self, reasons: &[TriageReason], candidates: &[ChildrensServices]) {
        for reason in reasons {
            let code = reason.code().to_owned();
            if !self.triage_reasons.contains(&code) {
                self.triage_reasons.push(code);
            }
        }
        for candidate in candidates {
            if !self.candidates.contains(&candidate.gss_code) {
                self.candidates.push(candidate.gss_code.clone());
            }
        }
    }
}

/// The alerts of one event, in the order their bodies first appeared.
#[derive(Debug, Default)]
struct Drafts(Vec<Draft>);

impl Drafts {
    fn for_body(&mut self, body: &ChildrensServices) -> &mut Draft {
        self.entry(&body.gss_code, Some(body.clone()))
    }

    fn for_triage(&mut self) -> &mut Draft {
        self.entry(TRIAGE_KEY, None)
    }

    fn has(&self, key: &str) -> bool {
        self.0.iter().any(|d| d.key == key)
    }

    fn entry(&mut self, key: &str, body: Option<ChildrensServices>) -> &mut Draft {
        let position = match self.0.iter().position(|d| d.key == key) {
            Some(position) => position,
            None => {
                self.0.push(Draft {
                    key: key.to_owned(),
                    body,
                    sections: Vec::new(),
                    rags: Vec::new(),
                    triage_reasons: Vec::new(),
                    candidates: Vec::new(),
                });
                self.0.len() - 1
            }
        };
        &mut self.0[position]
    }

    fn merge(&mut self, from: Drafts) {
        for draft in from.0 {
            let target = self.entry(&draft.key, draft.body.clone());
            target.sections.extend(draft.sections);
            target.rags.extend(draft.rags);
            target.triage_reasons.extend(draft.triage_reasons);
            target.candidates.extend(draft.candidates);
        }
    }
}

/// A child's section of an alert, with its priority.
fn section(
    person_id: &str,
    rules: &[Rule],
    basis: RoutingBasis,
    urgency: i32,
) -> (v1::AlertSection, Rag) {
    let rag = rules::rag(rules, urgency);
    let section = v1::AlertSection {
        person_id: person_id.to_owned(),
        rules: rules.iter().map(|r| r.name().to_owned()).collect(),
        basis: basis as i32,
        rag: rag.to_proto() as i32,
        ..Default::default()
    };
    (section, rag)
}

/// Routes every child of an enriched referral and applies the referral rules.
fn referral_drafts(
    enriched: &v1::ReferralEnriched,
    history: &History,
    resolver: &AuthorityResolver,
    policy: &AlertPolicy,
    received_at: DateTime<Utc>,
) -> Drafts {
    let mut drafts = Drafts::default();
    for child in enriched.subjects.iter().filter(|s| s.is_child) {
        let previous = history.previous_bodies(&child.person_id).to_vec();
        let context = ReferralContext {
            referral_at_ms: received_at.timestamp_millis(),
            previously_seen_at_ms: history.previously_seen_at_ms.get(&child.person_id).copied(),
            repeat_window_ms: policy.repeat_window_ms,
        };
        let mut child_rules = rules::referral_rules(child, &context);
        let routes = routing::route_child(&child.locations, resolver);
        let current: Vec<&str> = routes
            .iter()
            .filter_map(|r| r.authority())
            .map(|a| a.gss_code.as_str())
            .collect();
        let elsewhere = rules::reappeared_elsewhere(&previous, &current);
        if !elsewhere.is_empty() {
            child_rules.push(Rule::CrossAuthorityReappearance);
        }
        for route in &routes {
            let (mut part, rag) = section(
                &child.person_id,
                &child_rules,
                route.basis,
                enriched.urgency,
            );
            part.ever_referred_in_own_right = child.ever_referred_in_own_right;
            part.match_method = child.match_method;
            part.match_probability = child.match_probability;
            part.earlier_referral_ids = child.earlier_referral_ids.clone();
            part.previous_authority_codes = previous.clone();
            part.child = child.person.clone();
            match &route.target {
                Target::Body {
                    body,
                    terminated_postcode,
                } => {
                    part.terminated_postcode = *terminated_postcode;
                    part.other_authority_code = current
                        .iter()
                        .find(|c| **c != body.gss_code)
                        .map(|c| (*c).to_owned())
                        .unwrap_or_default();
                    drafts.for_body(body).push((part, rag));
                }
                Target::Triage {
                    reasons,
                    candidates,
                } => {
                    let draft = drafts.for_triage();
                    draft.push((part, rag));
                    draft.add_triage(reasons, candidates);
                }
            }
        }
        // The bodies that knew the child before hear that the child reappeared elsewhere.
        for code in elsewhere {
            if let Resolution::Resolved { body, .. } = resolver.resolve_code(&code) {
                let (mut part, rag) = section(
                    &child.person_id,
                    &[Rule::CrossAuthorityReappearance],
                    RoutingBasis::PreviousAuthority,
                    enriched.urgency,
                );
                // Why the child was recognised (method, probability, the earlier referrals)
                // and, for a body whose agreement allows details, who the child is: a section
                // that says only "reappeared" cannot be checked by the council.
                part.previous_authority_codes = previous.clone();
                part.other_authority_code =
                    current.first().map(|c| (*c).to_owned()).unwrap_or_default();
                part.ever_referred_in_own_right = child.ever_referred_in_own_right;
                part.match_method = child.match_method;
                part.match_probability = child.match_probability;
                part.earlier_referral_ids = child.earlier_referral_ids.clone();
                part.child = child.person.clone();
                drafts.for_body(&body).push((part, rag));
            }
        }
    }
    drafts
}

/// A follow-up about one person: alert every body that knew them, plus where they were last
/// seen; triage when none is known.
fn person_drafts(
    person: Option<&str>,
    event: &PersonEvent<'_>,
    history: &History,
    resolver: &AuthorityResolver,
) -> Drafts {
    let rule = event.rule;
    let mut drafts = Drafts::default();
    let Some(person) = person else {
        let draft = drafts.for_triage();
        draft.push(section("", &[rule], RoutingBasis::Triage, 0));
        draft.triage_reasons.push("unknown_subject".to_owned());
        return drafts;
    };
    let previous = history.previous_bodies(person);
    for code in previous {
        if let Resolution::Resolved { body, .. } = resolver.resolve_code(code) {
            let (mut part, rag) = section(person, &[rule], RoutingBasis::PreviousAuthority, 0);
            part.previous_authority_codes = previous.to_vec();
            // A person event about two bodies' histories is a merge a reviewer decided.
            if rule == Rule::CrossAuthorityReappearance {
                part.match_method = v1::MatchMethod::LinkageReview as i32;
                part.match_probability = 1.0;
            }
            drafts.for_body(&body).push((part, rag));
        }
    }
    if let Some(location) = event.last_seen {
        match resolver.resolve_location(location) {
            Resolution::Resolved { body, .. } => {
                if !drafts.has(&body.gss_code) {
                    drafts
                        .for_body(&body)
                        .push(section(person, &[rule], RoutingBasis::Found, 0));
                }
            }
            Resolution::Unresolved { reason, candidates } if drafts.0.is_empty() => {
                let draft = drafts.for_triage();
                draft.push(section(person, &[rule], RoutingBasis::Triage, 0));
                draft.add_triage(&[reason], &candidates);
            }
            Resolution::Unresolved { .. } => {}
        }
    }
    if drafts.0.is_empty() {
        let draft = drafts.for_triage();
        draft.push(section(person, &[rule], RoutingBasis::Triage, 0));
        draft.triage_reasons.push("no_known_authority".to_owned());
    }
    drafts
}

/// Turns drafts into alerts: ids and dedup keys derived from the event, priority from the
/// sections (an urgent referral is always red), deadline from the body's policy counted from
/// when the event's subject was received.
#[allow(clippy::too_many_arguments)]
fn raise(
    event: &AlertEvent<'_>,
    drafts: Drafts,
    context: &Context,
    resolver: &AuthorityResolver,
    calendars: &Calendars,
    policy: &AlertPolicy,
    received_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<v1::AlertRaised> {
    let mut alerts = Vec::new();
    for (index, draft) in drafts.0.into_iter().enumerate() {
        let Some(first) = draft.sections.first() else {
            continue;
        };
        let rag = draft.rags.iter().copied().min().unwrap_or(Rag::Green);
        let rag = if rules::rag(&[], context.urgency) == Rag::Red {
            Rag::Red
        } else {
            rag
        };
        // The body's own nation's working days.
        let nation = draft.body.as_ref().map_or("", |b| b.nation.as_str());
        let deadline = calendars.for_nation(nation).deadline(
            received_at,
            rag,
            policy.deadlines_for(&draft.key),
        );
        let episode = context.episode.as_deref().unwrap_or(event.event_id);
        let dedup_key = format!("{episode}/{}", draft.key);
        let alert_id = referral_alert_id(episode, &draft.key);
        let handoff = draft
            .body
            .as_ref()
            .and_then(|body| pending_handoff(&body.gss_code, &draft.sections));
        alerts.push(v1::AlertRaised {
            alert_id,
            referral_id: event.referral_id.to_owned(),
            person_id: first.person_id.clone(),
            authority_code: draft
                .body
                .as_ref()
                .map(|b| b.gss_code.clone())
                .unwrap_or_default(),
            authority_name: draft
                .body
                .as_ref()
                .map(|b| b.name.clone())
                .unwrap_or_default(),
            basis: first.basis,
            other_authority_code: first.other_authority_code.clone(),
            priority: if rag == Rag::Red {
                v1::Priority::Urgent
            } else {
                v1::Priority::Standard
            } as i32,
            deadline: Some(kinlink_proto::timestamp_from_millis(
                deadline.timestamp_millis(),
            )),
            rule: first.rules.first().cloned().unwrap_or_default(),
            sequence: u32::try_from(index + 1).unwrap_or(u32::MAX),
            routing_data_version: resolver.version().to_owned(),
            raised_at: Some(kinlink_proto::timestamp_from_millis(now.timestamp_millis())),
            rag: rag.to_proto() as i32,
            triage_reasons: draft.triage_reasons,
            candidate_authority_codes: draft.candidates,
            sections: draft.sections,
            dedup_key,
            rules_version: rules::RULES_VERSION.to_owned(),
            exploitation_types: context.exploitation_types.clone(),
            county_lines: context.county_lines,
            revision: context.revision.max(1),
            nrm_decision: context.nrm_decision,
            missing_episode: context.missing_episode.clone(),
            agency_id: context.agency_id.clone(),
            concern: context.concern.clone(),
            handoff,
            triage_sla_deadline: draft.body.is_none().then(|| {
                kinlink_proto::timestamp_from_millis(
                    (received_at + policy.triage_sla.for_rag(rag)).timestamp_millis(),
                )
            }),
            ..Default::default()
        });
    }
    alerts
}

/// An alert already raised, as the alerter's routing decisions record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaisedAlert {
    pub alert_id: String,
    pub referral_id: String,
    /// Empty for an alert waiting in triage.
    pub authority_code: String,
}

/// The closures a withdrawn referral or a found child asks for: every alert named, each once,
/// in the order given. Each authority that was alerted is told; escalation stops.
pub fn close_alerts(
    alerts: &[RaisedAlert],
    reason: v1::AlertCloseReason,
    reason_code: &str,
    at: DateTime<Utc>,
) -> Vec<v1::AlertClosed> {
    let mut closed: Vec<v1::AlertClosed> = Vec::new();
    for alert in alerts {
        if closed.iter().any(|c| c.alert_id == alert.alert_id) {
            continue;
        }
        closed.push(v1::AlertClosed {
            alert_id: alert.alert_id.clone(),
            referral_id: alert.referral_id.clone(),
            authority_code: alert.authority_code.clone(),
            reason: reason as i32,
            reason_code: reason_code.to_owned(),
            closed_at: Some(kinlink_proto::timestamp_from_millis(at.timestamp_millis())),
            rerouted_to: Vec::new(),
        });
    }
    closed
}

/// The id of a referral's own alert for the body (or triage) with this key: every version of
/// the referral amends the same alert.
pub fn referral_alert_id(referral_id: &str, key: &str) -> String {
    kinlink_proto::derive_id(referral_id, &format!("alert/{key}"))
}

/// The referral's own alerts that a new version of it no longer plans: an update corrected a
/// child's location, and another body is responsible now. Each previous body is told the
/// alert was re-routed, and to which bodies. Follow-up alerts (missing, NRM) are not touched.
pub fn reroutes(
    referral_id: &str,
    previous: &[RaisedAlert],
    planned: &[v1::AlertRaised],
    at: DateTime<Utc>,
) -> Vec<v1::AlertClosed> {
    let rerouted_to: Vec<String> = planned
        .iter()
        .filter(|a| !a.authority_code.is_empty())
        .map(|a| a.authority_code.clone())
        .collect();
    let gone: Vec<RaisedAlert> = previous
        .iter()
        .filter(|p| {
            // The referral's own alert for that body, or its triage alert routed by hand.
            let own = p.alert_id == referral_alert_id(referral_id, &p.authority_code)
                || p.alert_id == referral_alert_id(referral_id, TRIAGE_KEY);
            own && !planned.iter().any(|a| a.alert_id == p.alert_id)
        })
        .cloned()
        .collect();
    close_alerts(&gone, v1::AlertCloseReason::Rerouted, "", at)
        .into_iter()
        .map(|closed| v1::AlertClosed {
            rerouted_to: rerouted_to.clone(),
            ..closed
        })
        .collect()
}

/// The lives/found hand-off an alert to `code` is part of, while it waits for the home
/// authority: asked (a child lives here and was found elsewhere) or waiting (found here, lives
/// elsewhere). The first such child of the alert names it.
fn pending_handoff(code: &str, sections: &[v1::AlertSection]) -> Option<v1::AlertHandoff> {
    sections.iter().find_map(|s| {
        if s.other_authority_code.is_empty() {
            return None;
        }
        let (home, found) = match RoutingBasis::try_from(s.basis) {
            Ok(RoutingBasis::Lives) => (code, s.other_authority_code.as_str()),
            Ok(RoutingBasis::Found) => (s.other_authority_code.as_str(), code),
            _ => return None,
        };
        Some(v1::AlertHandoff {
            home_authority: home.to_owned(),
            found_authority: found.to_owned(),
            state: crate::lifecycle::HandoffState::Pending.as_str().to_owned(),
            ..Default::default()
        })
    })
}

/// The key an alert was planned under: its body's code, or [`TRIAGE_KEY`].
pub fn alert_key(alert: &v1::AlertRaised) -> &str {
    if alert.authority_code.is_empty() {
        TRIAGE_KEY
    } else {
        &alert.authority_code
    }
}
