#![allow(clippy::panic)] // Test helpers fail the test on broken fixtures.
//! The alert planner through its public API, with the shipped reference data: grouping,
//! priority, deadlines, cross-authority sections, triage and follow-ups.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use kinlink_domain::alerting::planning::{
    AlertEvent, AlertPolicy, FOLLOW_UP_WAIT_MS, FollowUpWait, History, PersonEvent,
    PersonEventDetail, RaisedAlert, TRIAGE_KEY, Trigger, age_assessment_disputes, alert_key,
    close_alerts, follow_up_wait, merge_joins_bodies, plan_alerts, reroutes,
};
use kinlink_domain::alerting::rules::Rule;
use kinlink_domain::deadline::{Calendars, DeadlinePolicy};
use kinlink_domain::routing::AuthorityResolver;
use kinlink_proto::v1;

const KENT: &str = "E10000016";
const WESTMINSTER: &str = "E09000033";
const BRISTOL: &str = "E06000023";
const DAY_MS: i64 = 86_400_000;

fn resolver() -> &'static AuthorityResolver {
    static RESOLVER: OnceLock<AuthorityResolver> = OnceLock::new();
    RESOLVER.get_or_init(|| match AuthorityResolver::shipped() {
        Ok(r) => r,
        Err(e) => panic!("shipped data: {e}"),
    })
}

fn calendar() -> Calendars {
    match Calendars::shipped() {
        Ok(c) => c,
        Err(e) => panic!("calendar: {e}"),
    }
}

fn policy() -> AlertPolicy {
    AlertPolicy {
        repeat_window_ms: 365 * DAY_MS,
        ..AlertPolicy::default()
    }
}

/// Tuesday 24 November 2026, 10:00 UTC (GMT): a working morning.
fn now() -> DateTime<Utc> {
    match DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z") {
        Ok(t) => t.with_timezone(&Utc),
        Err(e) => panic!("{e}"),
    }
}

fn location(role: v1::LocationRole, code: &str, postcode: &str) -> v1::Location {
    v1::Location {
        role: role as i32,
        authority_code: code.into(),
        postcode: postcode.into(),
        ..Default::default()
    }
}

fn child(person: &str, locations: Vec<v1::Location>) -> v1::EnrichedSubject {
    v1::EnrichedSubject {
        person_id: person.into(),
        role: v1::SubjectRole::Dependant as i32,
        is_child: true,
        child_basis: v1::ChildBasis::ClaimedAge as i32,
        locations,
        ..Default::default()
    }
}

fn enriched(urgency: v1::Urgency, subjects: Vec<v1::EnrichedSubject>) -> v1::ReferralEnriched {
    v1::ReferralEnriched {
        referral_id: "ref-1".into(),
        urgency: urgency as i32,
        subjects,
        version: 1,
        ..Default::default()
    }
}

fn plan(enriched: &v1::ReferralEnriched, history: &History) -> Vec<v1::AlertRaised> {
    let event = AlertEvent {
        event_id: "event-1",
        referral_id: &enriched.referral_id,
        received_at: now(),
        trigger: Trigger::Referral(enriched),
    };
    plan_at(&event, history, now())
}

fn plan_person(rule: Rule, persons: &[&str], history: &History) -> Vec<v1::AlertRaised> {
    let event = AlertEvent {
        event_id: "event-9",
        referral_id: "ref-1",
        received_at: now(),
        trigger: Trigger::Person(PersonEvent {
            rule,
            persons: persons.iter().map(|p| (*p).to_owned()).collect(),
            last_seen: None,
            detail: PersonEventDetail::None,
        }),
    };
    plan_at(&event, history, now())
}

/// Plans `event` with the shipped data and default policy at `at`.
fn plan_at(event: &AlertEvent<'_>, history: &History, at: DateTime<Utc>) -> Vec<v1::AlertRaised> {
    plan_alerts(event, history, resolver(), &calendar(), &policy(), at)
}

/// A timestamp field in milliseconds.
fn millis(ts: &Option<kinlink_proto::Timestamp>) -> Option<i64> {
    ts.as_ref().map(kinlink_proto::millis_from_timestamp)
}

#[test]
fn a_households_children_for_one_body_share_one_alert() {
    let referral = enriched(
        v1::Urgency::Routine,
        vec![
            child("p1", vec![location(v1::LocationRole::Lives, KENT, "")]),
            child("p2", vec![location(v1::LocationRole::Lives, "", "CT1 2RR")]),
        ],
    );
    let alerts = plan(&referral, &History::default());
    assert_eq!(alerts.len(), 1);
    let alert = &alerts[0];
    assert_eq!(alert.authority_code, KENT);
    let persons: Vec<&str> = alert
        .sections
        .iter()
        .map(|s| s.person_id.as_str())
        .collect();
    assert_eq!(persons, ["p1", "p2"]);
    assert_eq!(alert.rag, v1::Rag::Amber as i32);
    assert_eq!(alert.priority, v1::Priority::Standard as i32);
    // Amber: 4 working hours from 10:00 GMT.
    let deadline = millis(&alert.deadline);
    assert_eq!(deadline, Some(now().timestamp_millis() + 4 * 3_600_000));
    assert_eq!(alert.rules_version, "rules-v1");
    assert_eq!(alert_key(alert), KENT);
}

#[test]
fn an_urgent_referral_is_red_for_every_body() {
    let referral = enriched(
        v1::Urgency::Urgent,
        vec![child(
            "p1",
            vec![
                location(v1::LocationRole::Lives, KENT, ""),
                location(v1::LocationRole::Found, WESTMINSTER, ""),
            ],
        )],
    );
    let alerts = plan(&referral, &History::default());
    let bodies: Vec<&str> = alerts.iter().map(|a| a.authority_code.as_str()).collect();
    assert_eq!(bodies, [KENT, WESTMINSTER], "lives before found");
    for alert in &alerts {
        assert_eq!(alert.rag, v1::Rag::Red as i32);
        assert_eq!(alert.priority, v1::Priority::Urgent as i32);
        let deadline = millis(&alert.deadline);
        assert_eq!(deadline, Some(now().timestamp_millis() + 3_600_000));
    }
    // Each names the other, so the hand-off can be tracked.
    assert_eq!(alerts[0].sections[0].other_authority_code, WESTMINSTER);
    assert_eq!(alerts[1].sections[0].other_authority_code, KENT);
    // Both see the pending hand-off: Kent (lives) is asked to take it from Westminster.
    for alert in &alerts {
        let handoff = alert.handoff.as_ref();
        assert_eq!(handoff.map(|h| h.home_authority.as_str()), Some(KENT));
        assert_eq!(
            handoff.map(|h| h.found_authority.as_str()),
            Some(WESTMINSTER)
        );
        assert_eq!(handoff.map(|h| h.state.as_str()), Some("pending"));
    }
    assert_eq!(alerts[0].sections[0].basis, v1::RoutingBasis::Lives as i32);
    assert_eq!(alerts[1].sections[0].basis, v1::RoutingBasis::Found as i32);
}

#[test]
fn alert_ids_follow_the_referral_so_a_new_version_amends() {
    let mut referral = enriched(
        v1::Urgency::Routine,
        vec![child(
            "p1",
            vec![location(v1::LocationRole::Lives, KENT, "")],
        )],
    );
    let first = plan(&referral, &History::default());
    referral.version = 2;
    let second = plan(&referral, &History::default());
    assert_eq!(first[0].alert_id, second[0].alert_id);
    assert_eq!(first[0].dedup_key, format!("ref-1/{KENT}"));
    assert_eq!(second[0].revision, 2);
}

#[test]
fn a_child_seen_by_another_body_before_tells_that_body() {
    let mut recognised = child("p1", vec![location(v1::LocationRole::Lives, KENT, "")]);
    recognised.match_method = v1::MatchMethod::Probabilistic as i32;
    recognised.match_probability = 0.97;
    recognised.earlier_referral_ids = vec!["ref-0".into()];
    recognised.person = Some(v1::Person {
        given_name: "Elira".into(),
        ..Default::default()
    });
    let referral = enriched(v1::Urgency::Routine, vec![recognised]);
    let mut history = History::default();
    history
        .previous_bodies
        .insert("p1".into(), vec![WESTMINSTER.into()]);
    history
        .previously_seen_at_ms
        .insert("p1".into(), now().timestamp_millis() - 30 * DAY_MS);
    let alerts = plan(&referral, &history);
    let bodies: Vec<&str> = alerts.iter().map(|a| a.authority_code.as_str()).collect();
    assert_eq!(bodies, [KENT, WESTMINSTER]);
    let kent = &alerts[0].sections[0];
    assert!(kent.rules.contains(&"repeat_referral".to_owned()));
    assert!(
        kent.rules
            .contains(&"cross_authority_reappearance".to_owned())
    );
    assert_eq!(kent.previous_authority_codes, [WESTMINSTER]);
    let westminster = &alerts[1].sections[0];
    assert_eq!(westminster.rules, ["cross_authority_reappearance"]);
    assert_eq!(
        westminster.basis,
        v1::RoutingBasis::PreviousAuthority as i32
    );
    assert_eq!(westminster.other_authority_code, KENT);
    // Why the child was recognised, and the child's details for `full_payload` bodies.
    assert_eq!(
        westminster.match_method,
        v1::MatchMethod::Probabilistic as i32
    );
    assert_eq!(westminster.match_probability, 0.97);
    assert_eq!(westminster.earlier_referral_ids, ["ref-0"]);
    assert_eq!(
        westminster.child.as_ref().map(|p| p.given_name.as_str()),
        Some("Elira")
    );
}

#[test]
fn unroutable_children_go_to_triage_with_reasons_and_adults_raise_nothing() {
    let mut adult = child("adult", vec![location(v1::LocationRole::Lives, KENT, "")]);
    adult.is_child = false;
    let referral = enriched(
        v1::Urgency::Routine,
        vec![
            adult,
            child("p1", vec![location(v1::LocationRole::Lives, "", "ZZ9 9ZZ")]),
            child("p2", vec![location(v1::LocationRole::Lives, BRISTOL, "")]),
        ],
    );
    let alerts = plan(&referral, &History::default());
    let keys: Vec<&str> = alerts.iter().map(alert_key).collect();
    assert_eq!(keys, [TRIAGE_KEY, BRISTOL]);
    assert!(alerts[0].authority_code.is_empty());
    // Amber in triage: on-call is paged an hour after receipt if nobody routes it.
    let sla = millis(&alerts[0].triage_sla_deadline);
    assert_eq!(sla, Some(now().timestamp_millis() + 3_600_000));
    assert!(
        alerts[1].triage_sla_deadline.is_none(),
        "a routed alert has no triage SLA"
    );
    assert!(
        alerts[0]
            .triage_reasons
            .iter()
            .any(|r| r == "unknown_postcode" || r == "invalid_postcode"),
        "{:?}",
        alerts[0].triage_reasons
    );
    assert!(
        alerts
            .iter()
            .all(|a| a.sections.iter().all(|s| s.person_id != "adult"))
    );
}

#[test]
fn follow_ups_reach_every_body_that_knew_the_child() {
    let mut history = History::default();
    history
        .previous_bodies
        .insert("p1".into(), vec![KENT.into(), WESTMINSTER.into()]);
    let alerts = plan_person(Rule::MissingChild, &["p1"], &history);
    let bodies: Vec<&str> = alerts.iter().map(|a| a.authority_code.as_str()).collect();
    assert_eq!(bodies, [KENT, WESTMINSTER]);
    assert!(alerts.iter().all(|a| a.rag == v1::Rag::Red as i32));
    assert!(alerts.iter().all(|a| a.rule == "missing_child"));
    // Follow-up alerts derive their ids from the event, not the referral.
    assert_eq!(alerts[0].dedup_key, format!("event-9/{KENT}"));

    // Nobody known: triage, saying why.
    let unknown = plan_person(Rule::NrmDecision, &[], &History::default());
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0].triage_reasons, ["unknown_subject"]);
    let unrouted = plan_person(Rule::NrmDecision, &["p9"], &History::default());
    assert_eq!(unrouted[0].triage_reasons, ["no_known_authority"]);
    assert_eq!(unrouted[0].rag, v1::Rag::Green as i32);
}

#[test]
fn missing_child_last_seen_elsewhere_alerts_that_body_too() {
    let mut history = History::default();
    history
        .previous_bodies
        .insert("p1".into(), vec![KENT.into()]);
    let last_seen = location(v1::LocationRole::Found, "", "BS1 5TR");
    let event = AlertEvent {
        event_id: "event-3",
        referral_id: "ref-1",
        received_at: now(),
        trigger: Trigger::Person(PersonEvent {
            rule: Rule::MissingChild,
            persons: vec!["p1".into()],
            last_seen: Some(&last_seen),
            detail: PersonEventDetail::Missing {
                missing_since: Some(kinlink_proto::timestamp_from_millis(1_000)),
            },
        }),
    };
    let alerts = plan_at(&event, &history, now());
    let bodies: Vec<&str> = alerts.iter().map(|a| a.authority_code.as_str()).collect();
    assert_eq!(bodies, [KENT, BRISTOL]);
    assert_eq!(alerts[1].sections[0].basis, v1::RoutingBasis::Found as i32);
    // Each says when and where the child was last seen.
    for alert in &alerts {
        let episode = alert.missing_episode.as_ref();
        assert_eq!(
            episode
                .and_then(|e| e.missing_since.as_ref())
                .map(kinlink_proto::millis_from_timestamp),
            Some(1_000)
        );
        assert_eq!(
            episode.map(|e| e.last_seen_authority_code.as_str()),
            Some(BRISTOL)
        );
    }
}

#[test]
fn per_body_deadlines_override_the_default() {
    let mut policy = policy();
    policy.authority_deadlines.insert(
        KENT.into(),
        DeadlinePolicy {
            red: chrono::Duration::minutes(15),
            ..DeadlinePolicy::default()
        },
    );
    let referral = enriched(
        v1::Urgency::Immediate,
        vec![child(
            "p1",
            vec![location(v1::LocationRole::Lives, KENT, "")],
        )],
    );
    let event = AlertEvent {
        event_id: "e",
        referral_id: "ref-1",
        received_at: now(),
        trigger: Trigger::Referral(&referral),
    };
    let alerts = plan_alerts(
        &event,
        &History::default(),
        resolver(),
        &calendar(),
        &policy,
        now(),
    );
    let deadline = millis(&alerts[0].deadline);
    assert_eq!(deadline, Some(now().timestamp_millis() + 15 * 60_000));
}

#[test]
fn a_follow_up_waits_for_its_referral_for_ten_minutes() {
    assert_eq!(follow_up_wait(1_000, 1_000), FollowUpWait::Wait);
    assert_eq!(
        follow_up_wait(1_000, 1_000 + FOLLOW_UP_WAIT_MS - 1),
        FollowUpWait::Wait
    );
    assert_eq!(
        follow_up_wait(1_000, 1_000 + FOLLOW_UP_WAIT_MS),
        FollowUpWait::GiveUp
    );
}

#[test]
fn follow_up_conditions() {
    let adult = v1::AgeAssessmentOutcome::Adult as i32;
    let child = v1::AgeAssessmentOutcome::Child as i32;
    assert!(age_assessment_disputes(adult, true));
    assert!(!age_assessment_disputes(adult, false));
    assert!(!age_assessment_disputes(child, true));
    assert!(merge_joins_bodies(&[KENT.into(), WESTMINSTER.into()]));
    assert!(!merge_joins_bodies(&[KENT.into()]));
}

#[test]
fn deadlines_run_from_when_the_referral_was_received() {
    let referral = enriched(
        v1::Urgency::Urgent,
        vec![child(
            "p1",
            vec![location(v1::LocationRole::Lives, KENT, "")],
        )],
    );
    // Received 40 minutes before the alerter got to it: 20 minutes of the red hour are left.
    let received_at = now() - chrono::Duration::minutes(40);
    let event = AlertEvent {
        event_id: "event-1",
        referral_id: "ref-1",
        received_at,
        trigger: Trigger::Referral(&referral),
    };
    let alerts = plan_at(&event, &History::default(), now());
    let deadline = millis(&alerts[0].deadline);
    assert_eq!(deadline, Some(received_at.timestamp_millis() + 3_600_000));
    let raised = millis(&alerts[0].raised_at);
    assert_eq!(raised, Some(now().timestamp_millis()));
    // A receipt time ahead of the clock counts from now.
    let event = AlertEvent {
        received_at: now() + chrono::Duration::hours(3),
        ..event
    };
    let alerts = plan_at(&event, &History::default(), now());
    let deadline = millis(&alerts[0].deadline);
    assert_eq!(deadline, Some(now().timestamp_millis() + 3_600_000));
}

#[test]
fn a_scottish_body_works_to_scotlands_calendar() {
    let referral = enriched(
        v1::Urgency::Routine,
        vec![child(
            "p1",
            vec![location(v1::LocationRole::Lives, "S12000036", "")],
        )],
    );
    // Friday 27 November 2026, 15:00 GMT: Monday is St Andrew's Day in Scotland.
    let at = match DateTime::parse_from_rfc3339("2026-11-27T15:00:00Z") {
        Ok(t) => t.with_timezone(&Utc),
        Err(e) => panic!("{e}"),
    };
    let event = AlertEvent {
        event_id: "event-1",
        referral_id: "ref-1",
        received_at: at,
        trigger: Trigger::Referral(&referral),
    };
    let alerts = plan_at(&event, &History::default(), at);
    assert_eq!(alerts[0].authority_code, "S12000036");
    let deadline = millis(&alerts[0].deadline);
    let tuesday =
        DateTime::parse_from_rfc3339("2026-12-01T11:00:00Z").map(|t| t.timestamp_millis());
    assert_eq!(deadline, tuesday.ok());
}

#[test]
fn a_withdrawal_closes_each_alert_once() {
    let raised = |id: &str, code: &str| RaisedAlert {
        alert_id: id.into(),
        referral_id: "ref-1".into(),
        authority_code: code.into(),
    };
    let closed = close_alerts(
        &[
            raised("a1", KENT),
            raised("a2", WESTMINSTER),
            raised("a1", KENT),
            raised("a3", ""),
        ],
        v1::AlertCloseReason::ReferralWithdrawn,
        "duplicate_referral",
        now(),
    );
    let ids: Vec<&str> = closed.iter().map(|c| c.alert_id.as_str()).collect();
    assert_eq!(ids, ["a1", "a2", "a3"]);
    assert!(closed.iter().all(
        |c| c.reason == v1::AlertCloseReason::ReferralWithdrawn as i32
            && c.reason_code == "duplicate_referral"
    ));
    assert!(close_alerts(&[], v1::AlertCloseReason::ChildFound, "", now()).is_empty());
}

#[test]
fn an_nrm_decision_alert_says_which_decision() {
    let mut history = History::default();
    history
        .previous_bodies
        .insert("p1".into(), vec![KENT.into()]);
    let plan = |outcome: v1::NrmDecisionOutcome| {
        let event = AlertEvent {
            event_id: "nrm-1",
            referral_id: "ref-1",
            received_at: now(),
            trigger: Trigger::Person(PersonEvent {
                rule: Rule::NrmDecision,
                persons: vec!["p1".into()],
                last_seen: None,
                detail: PersonEventDetail::NrmDecision(v1::AlertNrmDecision {
                    stage: v1::NrmDecisionStage::ConclusiveGrounds as i32,
                    outcome: outcome as i32,
                    decided_at: None,
                }),
            }),
        };
        plan_at(&event, &history, now())
    };
    let positive = plan(v1::NrmDecisionOutcome::Positive);
    let negative = plan(v1::NrmDecisionOutcome::Negative);
    assert_ne!(
        positive, negative,
        "a positive and a negative decision are different news"
    );
    let decision = negative[0].nrm_decision.as_ref();
    assert_eq!(
        decision.map(|d| d.outcome),
        Some(v1::NrmDecisionOutcome::Negative as i32)
    );
    assert_eq!(
        decision.map(|d| d.stage),
        Some(v1::NrmDecisionStage::ConclusiveGrounds as i32)
    );
}

#[test]
fn a_corrected_location_reroutes_and_tells_the_previous_body() {
    let first = enriched(
        v1::Urgency::Routine,
        vec![child(
            "p1",
            vec![location(v1::LocationRole::Lives, KENT, "")],
        )],
    );
    let kent = plan(&first, &History::default());
    let previous: Vec<RaisedAlert> = kent
        .iter()
        .map(|a| RaisedAlert {
            alert_id: a.alert_id.clone(),
            referral_id: a.referral_id.clone(),
            authority_code: a.authority_code.clone(),
        })
        .chain(std::iter::once(RaisedAlert {
            // A missing-child follow-up about the same referral is not the referral's own.
            alert_id: "follow-up-alert".into(),
            referral_id: "ref-1".into(),
            authority_code: KENT.into(),
        }))
        .collect();
    let mut corrected = enriched(
        v1::Urgency::Routine,
        vec![child(
            "p1",
            vec![location(v1::LocationRole::Lives, BRISTOL, "")],
        )],
    );
    corrected.version = 2;
    let bristol = plan(&corrected, &History::default());
    assert_eq!(bristol[0].authority_code, BRISTOL);
    let closed = reroutes("ref-1", &previous, &bristol, now());
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].alert_id, kent[0].alert_id);
    assert_eq!(closed[0].reason, v1::AlertCloseReason::Rerouted as i32);
    assert_eq!(closed[0].rerouted_to, [BRISTOL]);
    // The same location again re-routes nothing.
    assert!(reroutes("ref-1", &previous, &kent, now()).is_empty());
}
