//! kinlink alerter: for every child on an enriched referral or a follow-up event, decides
//! which bodies running children's services must act and raises one alert per body. The
//! decision is [`kinlink_domain::alerting::planning::plan_alerts`]; this crate is the stage
//! around it: it loads what the planner needs ([`history`]), calls it, and persists the
//! result (routing decisions, hand-offs, triage entries, and the alerts on
//! `kinlink.alerts.raised`). Consumes `kinlink.referrals.enriched`, `kinlink.referrals.followups`
//! and `kinlink.persons.changes` (merges).
//!
//! Tables owned here: `routing_decisions`, `handoffs` and `triage_queue` (written on raise;
//! hand-off and triage transitions go through [`records`]).

pub mod history;
pub mod records;
pub mod triage_api;

use std::collections::HashMap;

use kinlink_domain::alerting::planning::{
    self, AlertEvent, AlertPolicy, History, PersonEvent, PersonEventDetail, Trigger,
};
use kinlink_domain::alerting::rules::Rule;
use kinlink_domain::deadline::{Calendars, DeadlinePolicy, TriageSla};
use kinlink_domain::routing::AuthorityResolver;
use kinlink_eventlog::{Envelope, Output, Record, Stage, StageError, topics};
use kinlink_proto::v1;
use kinlink_runtime::settings::{AlerterSettings, DeadlineSettings};
use prost::Name;
use sqlx::AnyConnection;

/// CloudEvents `source` of events the alerter emits.
pub const SOURCE: &str = "/kinlink/alerter";

/// Adds the alerter stage, with the shipped reference data, to a process.
pub fn install(
    process: &mut kinlink_runtime::Process,
) -> Result<axum::Router, kinlink_runtime::process::TaskError> {
    let alerter = Alerter::new(
        AuthorityResolver::shipped()?,
        Calendars::shipped()?,
        &process.settings.alerter,
    )
    .with_agencies(&process.settings.intake.agencies);
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
    calendars: Calendars,
    policy: AlertPolicy,
    clock: kinlink_store::Clock,
    /// Registered agencies, by id: each alert carries its referrer's contact route.
    agencies: HashMap<String, v1::AlertReferrer>,
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
        calendars: Calendars,
        settings: &AlerterSettings,
    ) -> Self {
        let DeadlineSettings {
            red_minutes,
            amber_working_minutes,
            green_working_days,
        } = settings.deadlines;
        Self {
            resolver,
            calendars,
            policy: AlertPolicy {
                default_deadlines: policy(red_minutes, amber_working_minutes, green_working_days),
                authority_deadlines: settings
                    .authority_deadlines
                    .iter()
                    .map(|o| {
                        (
                            o.code.clone(),
                            policy(o.red_minutes, o.amber_working_minutes, o.green_working_days),
                        )
                    })
                    .collect::<HashMap<_, _>>(),
                repeat_window_ms: i64::from(settings.repeat_window_days) * 86_400_000,
                triage_sla: match settings.triage_sla_minutes {
                    Some(minutes) => TriageSla::flat(chrono::Duration::minutes(i64::from(minutes))),
                    None => TriageSla {
                        red: chrono::Duration::minutes(i64::from(settings.triage_sla.red_minutes)),
                        amber: chrono::Duration::minutes(i64::from(
                            settings.triage_sla.amber_minutes,
                        )),
                        green: chrono::Duration::minutes(i64::from(
                            settings.triage_sla.green_minutes,
                        )),
                    },
                },
            },
            clock: kinlink_store::Clock::system(),
            agencies: HashMap::new(),
        }
    }
}

impl Alerter {
    /// The agencies' registrations (`intake.agencies`): how authorities reach each referrer.
    pub fn with_agencies(
        mut self,
        agencies: &[kinlink_runtime::settings::AgencyRegistration],
    ) -> Self {
        self.agencies = agencies
            .iter()
            .map(|a| {
                (
                    a.id.clone(),
                    v1::AlertReferrer {
                        agency_id: a.id.clone(),
                        name: a.name.clone(),
                        contact_mailbox: a.contact_mailbox.clone().unwrap_or_default(),
                        contact_phone: a.contact_phone.clone().unwrap_or_default(),
                    },
                )
            })
            .collect();
        self
    }

    /// Replaces the clock the stage plans with (tests).
    pub fn with_clock(mut self, clock: kinlink_store::Clock) -> Self {
        self.clock = clock;
        self
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
        let now = self.clock.now();
        if let Some(outputs) = self.closures(conn, envelope, now).await? {
            return Ok(outputs);
        }
        // Load: the event and what the store knows about the persons it concerns.
        let Some((referral_id, trigger, history)) =
            self.load(conn, envelope, now.timestamp_millis()).await?
        else {
            return Ok(Vec::new());
        };
        // Decide.
        // A referral's deadlines run from when intake received it; a follow-up's from when
        // intake accepted the follow-up (the event's CloudEvents time).
        let received_ms = match &trigger {
            Loaded::Referral(enriched) => enriched
                .received_at
                .as_ref()
                .map_or(envelope.time_ms, kinlink_proto::millis_from_timestamp),
            Loaded::Person { .. } => envelope.time_ms,
        };
        let event = AlertEvent {
            event_id: &envelope.id,
            referral_id: &referral_id,
            received_at: chrono::DateTime::from_timestamp_millis(received_ms).unwrap_or(now),
            trigger: trigger.as_trigger(),
        };
        let alerts = planning::plan_alerts(
            &event,
            &history,
            &self.resolver,
            &self.calendars,
            &self.policy,
            now,
        );
        // A later version of a referral may have moved a child: the bodies its earlier alerts
        // went to and that it no longer plans are told the alert was re-routed.
        let rerouted = match &trigger {
            Loaded::Referral(enriched) if enriched.version > 1 => {
                let previous = history::alerts_of_referral(conn, &referral_id).await?;
                planning::reroutes(&referral_id, &previous, &alerts, now)
            }
            _ => Vec::new(),
        };
        // Persist.
        if let Loaded::Referral(enriched) = &trigger
            && enriched.anonymous_duty_to_notify
        {
            records::not_shared(conn, &enriched.referral_id).await?;
        }
        let mut outputs = self.closure_outputs(conn, envelope, &rerouted, now).await?;
        for mut alert in alerts {
            alert.referrer = self.agencies.get(&alert.agency_id).cloned();
            records::record(conn, &alert, now.timestamp_millis()).await?;
            tracing::info!(
                referral_id = %alert.referral_id,
                alert_id = %alert.alert_id,
                authority = %alert.authority_code,
                children = alert.sections.len(),
                rag = kinlink_domain::deadline::Rag::from_proto(alert.rag).as_str(),
                triage = alert.authority_code.is_empty(),
                "Alert raised."
            );
            let out = envelope.derive(
                &format!("alert/{}", planning::alert_key(&alert)),
                SOURCE,
                &alert.alert_id,
                &referral_id,
                now.timestamp_millis(),
                &alert,
            );
            outputs.push(Output::new(topics::ALERTS_RAISED, out));
        }
        Ok(outputs)
    }
}

/// A follow-up whose subject is not known yet: if its referral has not been enriched, the
/// follow-up raced ahead of the enricher and waits (bounded by the domain's
/// `FOLLOW_UP_WAIT_MS`, then dead-lettered with the reason) instead of going to triage as an
/// unknown subject. Returns when the referral is enriched (the subject is then truly unknown).
async fn wait_for_enrichment(
    conn: &mut AnyConnection,
    referral_id: &str,
    envelope: &Envelope,
    now_ms: i64,
) -> Result<(), StageError> {
    if history::referral_enriched(conn, referral_id).await? {
        return Ok(());
    }
    match planning::follow_up_wait(envelope.time_ms, now_ms) {
        planning::FollowUpWait::Wait => Err(StageError::Retry(format!(
            "follow-up {} waits for referral {referral_id} to be enriched",
            envelope.id
        ))),
        planning::FollowUpWait::GiveUp => Err(StageError::Rejected(format!(
            "referral {referral_id} was not enriched within {} minutes of the follow-up; replay it once it is",
            planning::FOLLOW_UP_WAIT_MS / 60_000
        ))),
    }
}

/// An event decoded, owning what the planner borrows.
#[derive(Debug)]
enum Loaded {
    Referral(Box<v1::ReferralEnriched>),
    Person {
        rule: Rule,
        persons: Vec<String>,
        last_seen: Option<v1::Location>,
        detail: PersonEventDetail,
    },
}

impl Loaded {
    fn as_trigger(&self) -> Trigger<'_> {
        match self {
            Loaded::Referral(enriched) => Trigger::Referral(enriched),
            Loaded::Person {
                rule,
                persons,
                last_seen,
                detail,
            } => Trigger::Person(PersonEvent {
                rule: *rule,
                persons: persons.clone(),
                last_seen: last_seen.as_ref(),
                detail: detail.clone(),
            }),
        }
    }
}

impl Alerter {
    /// Withdrawals and found episodes: the alerts that no longer need action are closed (the
    /// notifier tells each authority and stops escalation). `None` for other events.
    async fn closures(
        &self,
        conn: &mut AnyConnection,
        envelope: &Envelope,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Vec<Output>>, StageError> {
        let (alerts, reason, reason_code) = match envelope.event_type.as_str() {
            t if t == v1::ReferralWithdrawn::full_name() => {
                let withdrawn: v1::ReferralWithdrawn = envelope.decode()?;
                let alerts = history::alerts_of_referral(conn, &withdrawn.referral_id).await?;
                (
                    alerts,
                    v1::AlertCloseReason::ReferralWithdrawn,
                    withdrawn.reason_code,
                )
            }
            t if t == v1::FoundEpisodeReported::full_name() => {
                let found: v1::FoundEpisodeReported = envelope.decode()?;
                let person =
                    history::person_of(conn, &found.referral_id, found.subject.as_ref()).await?;
                let alerts = match person {
                    Some(person) => history::missing_alerts_of(conn, &person).await?,
                    None => {
                        wait_for_enrichment(
                            conn,
                            &found.referral_id,
                            envelope,
                            now.timestamp_millis(),
                        )
                        .await?;
                        Vec::new()
                    }
                };
                (alerts, v1::AlertCloseReason::ChildFound, String::new())
            }
            _ => return Ok(None),
        };
        let closed = planning::close_alerts(&alerts, reason, &reason_code, now);
        Ok(Some(
            self.closure_outputs(conn, envelope, &closed, now).await?,
        ))
    }

    /// The events that close alerts (for the notifier, on `kinlink.alerts.raised`, keyed like
    /// the alerts), with their triage items leaving the queue.
    async fn closure_outputs(
        &self,
        conn: &mut AnyConnection,
        envelope: &Envelope,
        closed: &[v1::AlertClosed],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Output>, StageError> {
        let ids: Vec<&str> = closed.iter().map(|c| c.alert_id.as_str()).collect();
        records::close_triage_items(conn, &ids).await?;
        Ok(closed
            .iter()
            .map(|c| {
                tracing::info!(alert_id = %c.alert_id, authority = %c.authority_code, reason = c.reason, "Alert closed.");
                Output::new(
                    topics::ALERTS_RAISED,
                    envelope.derive(
                        &format!("closed/{}", c.alert_id),
                        SOURCE,
                        &c.alert_id,
                        &c.referral_id,
                        now.timestamp_millis(),
                        c,
                    ),
                )
            })
            .collect())
    }

    /// Decodes the event and loads the history its decision needs. `None` when the event
    /// raises nothing (found episodes, withdrawals, review tasks and splits, for now).
    async fn load(
        &self,
        conn: &mut AnyConnection,
        envelope: &Envelope,
        now_ms: i64,
    ) -> Result<Option<(String, Loaded, History)>, StageError> {
        let mut history = History::default();
        let loaded = match envelope.event_type.as_str() {
            t if t == v1::ReferralEnriched::full_name() => {
                let enriched: v1::ReferralEnriched = envelope.decode()?;
                for child in enriched.subjects.iter().filter(|s| s.is_child) {
                    let person = &child.person_id;
                    let bodies =
                        history::previous_bodies(conn, person, &enriched.referral_id).await?;
                    history.previous_bodies.insert(person.clone(), bodies);
                    if let Some(seen) =
                        history::previously_seen(conn, person, &enriched.referral_id).await?
                    {
                        history.previously_seen_at_ms.insert(person.clone(), seen);
                    }
                }
                (
                    enriched.referral_id.clone(),
                    Loaded::Referral(Box::new(enriched)),
                )
            }
            t if t == v1::MissingEpisodeReported::full_name() => {
                let missing: v1::MissingEpisodeReported = envelope.decode()?;
                let person =
                    history::person_of(conn, &missing.referral_id, missing.subject.as_ref())
                        .await?;
                if person.is_none() {
                    wait_for_enrichment(conn, &missing.referral_id, envelope, now_ms).await?;
                }
                let loaded = Loaded::Person {
                    rule: Rule::MissingChild,
                    persons: person.into_iter().collect(),
                    last_seen: missing.last_seen,
                    detail: PersonEventDetail::Missing {
                        missing_since: missing.missing_since,
                    },
                };
                (missing.referral_id, loaded)
            }
            t if t == v1::NrmDecisionRecorded::full_name() => {
                let decision: v1::NrmDecisionRecorded = envelope.decode()?;
                let person =
                    history::person_of(conn, &decision.referral_id, decision.subject.as_ref())
                        .await?;
                if person.is_none() {
                    wait_for_enrichment(conn, &decision.referral_id, envelope, now_ms).await?;
                }
                // A decision on a parent concerns their children; on a child, the child.
                let persons = match person {
                    Some(person) => {
                        let children = history::children_of(conn, &person).await?;
                        if children.is_empty() {
                            vec![person]
                        } else {
                            children
                        }
                    }
                    None => Vec::new(),
                };
                let loaded = Loaded::Person {
                    rule: Rule::NrmDecision,
                    persons,
                    last_seen: None,
                    detail: PersonEventDetail::NrmDecision(v1::AlertNrmDecision {
                        stage: decision.stage,
                        outcome: decision.outcome,
                        decided_at: decision.decided_at,
                    }),
                };
                (decision.referral_id, loaded)
            }
            t if t == v1::AgeAssessmentRecorded::full_name() => {
                let assessment: v1::AgeAssessmentRecorded = envelope.decode()?;
                let person =
                    history::person_of(conn, &assessment.referral_id, assessment.subject.as_ref())
                        .await?;
                if person.is_none() {
                    wait_for_enrichment(conn, &assessment.referral_id, envelope, now_ms).await?;
                }
                // Later referrals of the person follow the assessment (the enricher reads it).
                if let (Some(person), Some(outcome)) = (
                    &person,
                    kinlink_domain::child::AssessedAge::from_proto(assessment.outcome),
                ) {
                    let assessed_at_ms = assessment
                        .assessed_at
                        .as_ref()
                        .map_or(envelope.time_ms, kinlink_proto::millis_from_timestamp);
                    records::record_assessment(
                        conn,
                        &envelope.id,
                        person,
                        &assessment.referral_id,
                        outcome,
                        assessed_at_ms,
                    )
                    .await?;
                }
                let was_child = match &person {
                    Some(person) => history::was_routed(conn, person).await?,
                    None => false,
                };
                if !planning::age_assessment_disputes(assessment.outcome, was_child) {
                    return Ok(None);
                }
                let loaded = Loaded::Person {
                    rule: Rule::AgeDispute,
                    persons: person.into_iter().collect(),
                    last_seen: None,
                    detail: PersonEventDetail::None,
                };
                (assessment.referral_id, loaded)
            }
            // A person decided that two persons are one child. When the two were known to
            // different bodies, each body hears that the child is known to the others.
            t if t == v1::PersonsMerged::full_name() => {
                let merged: v1::PersonsMerged = envelope.decode()?;
                let person = merged.surviving_person_id;
                let bodies = history::previous_bodies(conn, &person, "").await?;
                let Some(referral_id) = history::latest_referral(conn, &person).await? else {
                    return Ok(None);
                };
                if !planning::merge_joins_bodies(&bodies) {
                    return Ok(None);
                }
                // Already loaded: the planner needs the same bodies.
                history.previous_bodies.insert(person.clone(), bodies);
                let loaded = Loaded::Person {
                    rule: Rule::CrossAuthorityReappearance,
                    persons: vec![person],
                    last_seen: None,
                    detail: PersonEventDetail::None,
                };
                (referral_id, loaded)
            }
            // Review tasks and splits raise no alert of their own (yet).
            t if t == v1::LinkageReviewOpened::full_name() || t == v1::PersonSplit::full_name() => {
                return Ok(None);
            }
            other => {
                return Err(StageError::Rejected(format!(
                    "the alerter does not handle events of type {other}"
                )));
            }
        };
        let (referral_id, loaded) = loaded;
        // A follow-up alerts every body that knew its persons (any referral).
        if let Loaded::Person { persons, .. } = &loaded {
            for person in persons {
                if !history.previous_bodies.contains_key(person) {
                    let bodies = history::previous_bodies(conn, person, "").await?;
                    history.previous_bodies.insert(person.clone(), bodies);
                }
            }
        }
        Ok(Some((referral_id, loaded, history)))
    }
}
