//! kinlink alerter: for every child on an enriched referral or a follow-up event, decides
//! which bodies running children's services must act (where the child lives, is found, or
//! was placed from, and where the child was known before), applies the alert rules, and
//! raises one alert per body, grouping a household's children into one alert with a section
//! each. Anything that cannot be routed goes to the triage queue. Consumes
//! `kinlink.referrals.enriched`, `kinlink.referrals.followups` and `kinlink.persons.changes`
//! (merges); emits `kinlink.alerts.raised`.
//!
//! Layout: [`postcode`] and [`postcode_table`] (postcode → district), [`authorities`]
//! (district → children's-services body), [`routing`] (pure: child → bodies or triage),
//! [`rules`] (pure: alert rules and priority), [`deadline`] (working-time deadlines),
//! [`history`] (what the store knows about a child), this file (the stage).

pub mod authorities;
pub mod deadline;
pub mod history;
pub mod postcode;
pub mod postcode_table;
pub mod routing;
pub mod rules;
pub mod triage_api;

use std::collections::HashMap;

use kinlink_eventlog::{Envelope, Output, Record, Stage, StageError, topics};
use kinlink_proto::v1::{self, RoutingBasis};
use kinlink_runtime::settings::{AlerterSettings, DeadlineSettings};
use prost::Name;
use sqlx::AnyConnection;

use crate::authorities::ChildrensServices;
use crate::deadline::{DeadlinePolicy, Rag, WorkingCalendar};
use crate::routing::{AuthorityResolver, Resolution, Target, TriageReason};
use crate::rules::{ReferralContext, Rule};

/// CloudEvents `source` of events the alerter emits.
pub const SOURCE: &str = "/kinlink/alerter";
/// Target key of alerts waiting in triage.
const TRIAGE: &str = "triage";

/// Adds the alerter stage, with the shipped reference data, to a process.
pub fn install(
    process: &mut kinlink_runtime::Process,
) -> Result<axum::Router, kinlink_runtime::process::TaskError> {
    let alerter = Alerter::new(
        AuthorityResolver::shipped()?,
        WorkingCalendar::england_and_wales()?,
        &process.settings.alerter,
    );
    process.spawn_stage(alerter);
    process.add_openapi(triage_api::openapi());
    Ok(triage_api::router(
        process.store.clone(),
        process.settings.ops.api_token.clone(),
    ))
}

/// The alerter stage.
#[derive(Debug, Clone)]
pub struct Alerter {
    resolver: AuthorityResolver,
    calendar: WorkingCalendar,
    default_policy: DeadlinePolicy,
    policies: HashMap<String, DeadlinePolicy>,
    repeat_window_ms: i64,
    triage_sla_ms: i64,
}

fn policy(red_minutes: u32, amber_working_minutes: u32, green_working_days: u32) -> DeadlinePolicy {
    DeadlinePolicy {
        red: chrono::Duration::minutes(i64::from(red_minutes)),
        amber_working: chrono::Duration::minutes(i64::from(amber_working_minutes)),
        green_working_days,
    }
}

impl Alerter {
    pub fn new(
        resolver: AuthorityResolver,
        calendar: WorkingCalendar,
        settings: &AlerterSettings,
    ) -> Self {
        let DeadlineSettings {
            red_minutes,
            amber_working_minutes,
            green_working_days,
        } = settings.deadlines;
        Self {
            resolver,
            calendar,
            default_policy: policy(red_minutes, amber_working_minutes, green_working_days),
            policies: settings
                .authority_deadlines
                .iter()
                .map(|o| {
                    (
                        o.code.clone(),
                        policy(o.red_minutes, o.amber_working_minutes, o.green_working_days),
                    )
                })
                .collect(),
            repeat_window_ms: i64::from(settings.repeat_window_days) * 86_400_000,
            triage_sla_ms: i64::from(settings.triage_sla_minutes) * 60_000,
        }
    }
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
}

/// An alert being assembled for one body (or triage).
#[derive(Debug)]
struct Draft {
    key: String,
    body: Option<ChildrensServices>,
    sections: Vec<v1::AlertSection>,
    triage_reasons: Vec<String>,
    candidates: Vec<String>,
}

/// The alerts of one event, in the order their bodies first appeared.
#[derive(Debug, Default)]
struct Drafts(Vec<Draft>);

impl Drafts {
    fn for_body(&mut self, body: &ChildrensServices) -> &mut Draft {
        self.entry(&body.gss_code, Some(body.clone()))
    }

    fn for_triage(&mut self) -> &mut Draft {
        self.entry(TRIAGE, None)
    }

    fn entry(&mut self, key: &str, body: Option<ChildrensServices>) -> &mut Draft {
        let position = match self.0.iter().position(|d| d.key == key) {
            Some(position) => position,
            None => {
                self.0.push(Draft {
                    key: key.to_owned(),
                    body,
                    sections: Vec::new(),
                    triage_reasons: Vec::new(),
                    candidates: Vec::new(),
                });
                self.0.len() - 1
            }
        };
        &mut self.0[position]
    }
}

fn section(person_id: &str, rules: &[Rule], basis: RoutingBasis, urgency: i32) -> v1::AlertSection {
    v1::AlertSection {
        person_id: person_id.to_owned(),
        rules: rules.iter().map(|r| r.name().to_owned()).collect(),
        basis: basis as i32,
        rag: proto_rag(rules::rag(rules, urgency)) as i32,
        ..Default::default()
    }
}

fn proto_rag(rag: Rag) -> v1::Rag {
    match rag {
        Rag::Red => v1::Rag::Red,
        Rag::Amber => v1::Rag::Amber,
        Rag::Green => v1::Rag::Green,
    }
}

fn rag_of(section: &v1::AlertSection) -> Rag {
    match v1::Rag::try_from(section.rag) {
        Ok(v1::Rag::Red) => Rag::Red,
        Ok(v1::Rag::Amber) => Rag::Amber,
        _ => Rag::Green,
    }
}

impl Stage for Alerter {
    fn name(&self) -> &'static str {
        "alerter"
    }

    async fn handle(
        &self,
        conn: &mut AnyConnection,
        record: &Record,
    ) -> Result<Vec<Output>, StageError> {
        let envelope = &record.envelope;
        let now = chrono::Utc::now();
        let (referral_id, drafts, context) = match envelope.event_type.as_str() {
            t if t == v1::ReferralEnriched::full_name() => {
                let enriched: v1::ReferralEnriched = envelope.decode()?;
                let drafts = self
                    .on_referral(conn, &enriched, now.timestamp_millis())
                    .await?;
                let context = Context {
                    urgency: enriched.urgency,
                    exploitation_types: enriched.exploitation_types.clone(),
                    county_lines: enriched.county_lines,
                    episode: Some(enriched.referral_id.clone()),
                    revision: enriched.version.max(1),
                };
                (enriched.referral_id, drafts, context)
            }
            t if t == v1::MissingEpisodeReported::full_name() => {
                let missing: v1::MissingEpisodeReported = envelope.decode()?;
                let person =
                    history::person_of(conn, &missing.referral_id, missing.subject.as_ref())
                        .await?;
                let drafts = self
                    .on_person_event(
                        conn,
                        person.as_deref(),
                        Rule::MissingChild,
                        missing.last_seen.as_ref(),
                    )
                    .await?;
                (missing.referral_id, drafts, Context::default())
            }
            t if t == v1::NrmDecisionRecorded::full_name() => {
                let decision: v1::NrmDecisionRecorded = envelope.decode()?;
                let person =
                    history::person_of(conn, &decision.referral_id, decision.subject.as_ref())
                        .await?;
                // A decision on a parent concerns their children; on a child, the child.
                let mut drafts = Drafts::default();
                if let Some(person) = person {
                    let children = history::children_of(conn, &person).await?;
                    let persons = if children.is_empty() {
                        vec![person]
                    } else {
                        children
                    };
                    for child in persons {
                        let more = self
                            .on_person_event(conn, Some(&child), Rule::NrmDecision, None)
                            .await?;
                        merge(&mut drafts, more);
                    }
                } else {
                    drafts = self
                        .on_person_event(conn, None, Rule::NrmDecision, None)
                        .await?;
                }
                (decision.referral_id, drafts, Context::default())
            }
            t if t == v1::AgeAssessmentRecorded::full_name() => {
                let assessment: v1::AgeAssessmentRecorded = envelope.decode()?;
                let person =
                    history::person_of(conn, &assessment.referral_id, assessment.subject.as_ref())
                        .await?;
                let disputed = assessment.outcome == v1::AgeAssessmentOutcome::Adult as i32;
                let was_child = match &person {
                    Some(person) => history::was_routed(conn, person).await?,
                    None => false,
                };
                let drafts = if disputed && was_child {
                    self.on_person_event(conn, person.as_deref(), Rule::AgeDispute, None)
                        .await?
                } else {
                    Drafts::default()
                };
                (assessment.referral_id, drafts, Context::default())
            }
            // A person decided that two persons are one child. When the two were known to
            // different bodies, each body hears that the child is known to the others.
            t if t == v1::PersonsMerged::full_name() => {
                let merged: v1::PersonsMerged = envelope.decode()?;
                let person = merged.surviving_person_id.as_str();
                let bodies = history::previous_bodies(conn, person, "").await?;
                let Some(referral_id) = history::latest_referral(conn, person).await? else {
                    return Ok(Vec::new());
                };
                if bodies.len() < 2 {
                    return Ok(Vec::new());
                }
                let drafts = self
                    .on_person_event(conn, Some(person), Rule::CrossAuthorityReappearance, None)
                    .await?;
                (referral_id, drafts, Context::default())
            }
            // Found episodes, withdrawals, review tasks and splits raise no alert of their own
            // (yet).
            t if t == v1::FoundEpisodeReported::full_name()
                || t == v1::ReferralWithdrawn::full_name()
                || t == v1::LinkageReviewOpened::full_name()
                || t == v1::PersonSplit::full_name() =>
            {
                return Ok(Vec::new());
            }
            other => {
                return Err(StageError::Rejected(format!(
                    "the alerter does not handle events of type {other}"
                )));
            }
        };
        self.raise(conn, envelope, &referral_id, drafts, &context, now)
            .await
    }
}

fn merge(into: &mut Drafts, from: Drafts) {
    for draft in from.0 {
        let target = into.entry(&draft.key, draft.body.clone());
        target.sections.extend(draft.sections);
        target.triage_reasons.extend(draft.triage_reasons);
        target.candidates.extend(draft.candidates);
    }
}

impl Alerter {
    /// Routes every child of an enriched referral and applies the referral rules.
    async fn on_referral(
        &self,
        conn: &mut AnyConnection,
        enriched: &v1::ReferralEnriched,
        now_ms: i64,
    ) -> Result<Drafts, StageError> {
        let mut drafts = Drafts::default();
        if enriched.anonymous_duty_to_notify {
            // The adult is never shared; record that decision (children still are).
            kinlink_store::audit::append(
                conn,
                &kinlink_store::audit::AuditEntry {
                    action: "not_shared",
                    actor: "alerter",
                    authority_code: "",
                    alert_id: "",
                    detail: &format!(
                        "referral {}: adult subject of an anonymous Duty to Notify report (s52(3))",
                        enriched.referral_id
                    ),
                },
            )
            .await
            .map_err(|e| StageError::Retry(e.to_string()))?;
        }
        for child in enriched.subjects.iter().filter(|s| s.is_child) {
            let previous =
                history::previous_bodies(conn, &child.person_id, &enriched.referral_id).await?;
            let context = ReferralContext {
                referral_at_ms: now_ms,
                previously_seen_at_ms: history::previously_seen(
                    conn,
                    &child.person_id,
                    &enriched.referral_id,
                )
                .await?,
                repeat_window_ms: self.repeat_window_ms,
            };
            let mut child_rules = rules::referral_rules(child, &context);
            let routes = routing::route_child(&child.locations, &self.resolver);
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
                let mut part = section(
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
                        drafts.for_body(body).sections.push(part);
                    }
                    Target::Triage {
                        reasons,
                        candidates,
                    } => {
                        let draft = drafts.for_triage();
                        draft.sections.push(part);
                        add_triage(draft, reasons, candidates);
                    }
                }
            }
            // The bodies that knew the child before hear that the child reappeared elsewhere.
            for code in elsewhere {
                if let Resolution::Resolved { body, .. } = self.resolver.resolve_code(&code) {
                    let mut part = section(
                        &child.person_id,
                        &[Rule::CrossAuthorityReappearance],
                        RoutingBasis::PreviousAuthority,
                        enriched.urgency,
                    );
                    part.previous_authority_codes = previous.clone();
                    part.other_authority_code =
                        current.first().map(|c| (*c).to_owned()).unwrap_or_default();
                    drafts.for_body(&body).sections.push(part);
                }
            }
        }
        Ok(drafts)
    }

    /// A follow-up about one person: alert every body that knew them, plus where they were
    /// last seen; triage when none is known.
    async fn on_person_event(
        &self,
        conn: &mut AnyConnection,
        person: Option<&str>,
        rule: Rule,
        last_seen: Option<&v1::Location>,
    ) -> Result<Drafts, StageError> {
        let mut drafts = Drafts::default();
        let Some(person) = person else {
            let draft = drafts.for_triage();
            draft
                .sections
                .push(section("", &[rule], RoutingBasis::Triage, 0));
            draft.triage_reasons.push("unknown_subject".to_owned());
            return Ok(drafts);
        };
        let previous = history::previous_bodies(conn, person, "").await?;
        for code in &previous {
            if let Resolution::Resolved { body, .. } = self.resolver.resolve_code(code) {
                let mut part = section(person, &[rule], RoutingBasis::PreviousAuthority, 0);
                part.previous_authority_codes = previous.clone();
                drafts.for_body(&body).sections.push(part);
            }
        }
        if let Some(location) = last_seen {
            match self.resolver.resolve_location(location) {
                Resolution::Resolved { body, .. } => {
                    if !drafts.0.iter().any(|d| d.key == body.gss_code) {
                        drafts.for_body(&body).sections.push(section(
                            person,
                            &[rule],
                            RoutingBasis::Found,
                            0,
                        ));
                    }
                }
                Resolution::Unresolved { reason, candidates } if drafts.0.is_empty() => {
                    let draft = drafts.for_triage();
                    draft
                        .sections
                        .push(section(person, &[rule], RoutingBasis::Triage, 0));
                    add_triage(draft, &[reason], &candidates);
                }
                Resolution::Unresolved { .. } => {}
            }
        }
        if drafts.0.is_empty() {
            let draft = drafts.for_triage();
            draft
                .sections
                .push(section(person, &[rule], RoutingBasis::Triage, 0));
            draft.triage_reasons.push("no_known_authority".to_owned());
        }
        Ok(drafts)
    }

    /// Turns drafts into alerts: ids and dedup keys derived from the event, so a redelivered
    /// or replayed event raises the same alerts; routing decisions and triage entries recorded.
    async fn raise(
        &self,
        conn: &mut AnyConnection,
        envelope: &Envelope,
        referral_id: &str,
        drafts: Drafts,
        context: &Context,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Output>, StageError> {
        let urgency = context.urgency;
        let mut outputs = Vec::new();
        for (index, draft) in drafts.0.into_iter().enumerate() {
            let Some(first) = draft.sections.first() else {
                continue;
            };
            let rag = draft
                .sections
                .iter()
                .map(rag_of)
                .min()
                .unwrap_or(Rag::Green);
            let rag = if rules::rag(&[], urgency) == Rag::Red {
                Rag::Red
            } else {
                rag
            };
            let policy = self
                .policies
                .get(&draft.key)
                .unwrap_or(&self.default_policy);
            let deadline = self.calendar.deadline(now, rag, policy);
            let episode = context.episode.as_deref().unwrap_or(&envelope.id);
            let dedup_key = format!("{episode}/{}", draft.key);
            let alert_id =
                kinlink_eventlog::envelope::derive_id(episode, &format!("alert/{}", draft.key));
            let alert = v1::AlertRaised {
                alert_id: alert_id.clone(),
                referral_id: referral_id.to_owned(),
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
                routing_data_version: self.resolver.version().to_owned(),
                raised_at: Some(kinlink_proto::timestamp_from_millis(now.timestamp_millis())),
                rag: proto_rag(rag) as i32,
                triage_reasons: draft.triage_reasons.clone(),
                candidate_authority_codes: draft.candidates.clone(),
                sections: draft.sections,
                dedup_key,
                rules_version: rules::RULES_VERSION.to_owned(),
                exploitation_types: context.exploitation_types.clone(),
                county_lines: context.county_lines,
                revision: context.revision.max(1),
            };
            self.record(conn, &alert, now.timestamp_millis()).await?;
            tracing::info!(
                referral_id = %alert.referral_id,
                alert_id = %alert_id,
                authority = %alert.authority_code,
                children = alert.sections.len(),
                rag = rag.as_str(),
                triage = alert.authority_code.is_empty(),
                "Alert raised."
            );
            let out = envelope.derive(
                &format!("alert/{}", draft.key),
                SOURCE,
                &alert_id,
                referral_id,
                now.timestamp_millis(),
                &alert,
            );
            outputs.push(Output::new(topics::ALERTS_RAISED, out));
        }
        Ok(outputs)
    }

    async fn record(
        &self,
        conn: &mut AnyConnection,
        alert: &v1::AlertRaised,
        now_ms: i64,
    ) -> Result<(), sqlx::Error> {
        for part in &alert.sections {
            if part.person_id.is_empty() {
                continue;
            }
            if part.basis == RoutingBasis::Lives as i32 && !part.other_authority_code.is_empty() {
                sqlx::query(
                    "INSERT INTO handoffs (referral_id, person_id, home_authority, found_authority, state, created_at_ms, \
                     updated_at_ms) VALUES ($1, $2, $3, $4, 'pending', $5, $5) ON CONFLICT DO NOTHING",
                )
                .bind(&alert.referral_id)
                .bind(&part.person_id)
                .bind(&alert.authority_code)
                .bind(&part.other_authority_code)
                .bind(now_ms)
                .execute(&mut *conn)
                .await?;
            }
            sqlx::query(
                "INSERT INTO routing_decisions (referral_id, person_id, authority_code, basis, alert_id, rules, reasons, \
                 data_version, decided_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
            )
            .bind(&alert.referral_id)
            .bind(&part.person_id)
            .bind(&alert.authority_code)
            .bind(i64::from(part.basis))
            .bind(&alert.alert_id)
            .bind(part.rules.join(","))
            .bind(alert.triage_reasons.join(","))
            .bind(&alert.routing_data_version)
            .bind(now_ms)
            .execute(&mut *conn)
            .await?;
        }
        if alert.authority_code.is_empty() {
            sqlx::query(
                "INSERT INTO triage_queue (alert_id, referral_id, reasons, candidates, state, created_at_ms, sla_deadline_ms) \
                 VALUES ($1, $2, $3, $4, 'open', $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(&alert.alert_id)
            .bind(&alert.referral_id)
            .bind(alert.triage_reasons.join(","))
            .bind(alert.candidate_authority_codes.join(","))
            .bind(now_ms)
            .bind(now_ms + self.triage_sla_ms)
            .execute(conn)
            .await?;
        }
        Ok(())
    }
}

fn add_triage(draft: &mut Draft, reasons: &[TriageReason], candidates: &[ChildrensServices]) {
    for reason in reasons {
        let code = reason.code().to_owned();
        if !draft.triage_reasons.contains(&code) {
            draft.triage_reasons.push(code);
        }
    }
    for candidate in candidates {
        if !draft.candidates.contains(&candidate.gss_code) {
            draft.candidates.push(candidate.gss_code.clone());
        }
    }
}
