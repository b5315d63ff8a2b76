#![allow(clippy::panic)] // Test helpers fail the test on broken fixtures.
//! Property tests of the domain rules: child status, deadlines, routing, planning, household
//! links and the state machines. Each holds for every generated input, not just examples.

use std::sync::OnceLock;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use kinlink_domain::alerting::planning::{AlertEvent, AlertPolicy, History, Trigger, plan_alerts};
use kinlink_domain::child::child_status;
use kinlink_domain::deadline::{Calendars, DeadlinePolicy, Rag, WorkingCalendar};
use kinlink_domain::lifecycle::{
    AlertCommand, AlertState, EscalationEvent, EscalationLevel, EscalationState, Step,
};
use kinlink_domain::linking::household_pairs;
use kinlink_domain::routing::{AuthorityResolver, route_child};
use kinlink_proto::v1;
use proptest::prelude::*;

fn resolver() -> &'static AuthorityResolver {
    static RESOLVER: OnceLock<AuthorityResolver> = OnceLock::new();
    RESOLVER.get_or_init(|| match AuthorityResolver::shipped() {
        Ok(r) => r,
        Err(e) => panic!("shipped data: {e}"),
    })
}

fn calendars() -> &'static Calendars {
    static CALENDARS: OnceLock<Calendars> = OnceLock::new();
    CALENDARS.get_or_init(|| match Calendars::shipped() {
        Ok(c) => c,
        Err(e) => panic!("calendars: {e}"),
    })
}

fn calendar() -> &'static WorkingCalendar {
    static CALENDAR: OnceLock<WorkingCalendar> = OnceLock::new();
    CALENDAR.get_or_init(|| match WorkingCalendar::england_and_wales() {
        Ok(c) => c,
        Err(e) => panic!("calendar: {e}"),
    })
}

/// Some instant in 2025–2030.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    (1_735_689_600i64..1_893_456_000i64)
        .prop_map(|s| Utc.timestamp_opt(s, 0).single().unwrap_or_default())
}

/// A place a child can be: a register code, a postcode (real, partial or nonsense), or
/// nothing useful.
fn place() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        prop::sample::select(vec![
            "E10000016",
            "E09000033",
            "E06000023",
            "E07000106",
            "W06000015",
            "S12000036",
            "N09000003",
            "N09000004",
            "E99999999",
        ])
        .prop_map(|c| (c.to_owned(), String::new())),
        prop::sample::select(vec![
            "CT1 2RR",
            "SW1A 2AA",
            "BS1 5TR",
            "BS16 1",
            "ZZ9 9ZZ",
            "B1",
            "not a postcode",
            "",
        ])
        .prop_map(|p| (String::new(), p.to_owned())),
    ]
}

fn location() -> impl Strategy<Value = v1::Location> {
    (0..4i32, place()).prop_map(|(role, (code, postcode))| v1::Location {
        role,
        authority_code: code,
        postcode,
        ..Default::default()
    })
}

fn subject() -> impl Strategy<Value = v1::EnrichedSubject> {
    (
        "p[0-9]{1,2}",
        any::<bool>(),
        prop::collection::vec(location(), 0..3),
        0..5i32,
    )
        .prop_map(
            |(person_id, is_child, locations, basis)| v1::EnrichedSubject {
                person_id,
                is_child,
                child_basis: basis,
                role: v1::SubjectRole::Dependant as i32,
                locations,
                ..Default::default()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// s51: a year-only date of birth makes a child whenever someone born on its last day
    /// would be under 18; an exact one exactly when the person is under 18.
    #[test]
    fn anyone_who_may_be_under_18_is_a_child(
        birth in (1990i32..2026, 1u32..13, 1u32..29),
        at in (2020i32..2030, 1u32..13, 1u32..29),
    ) {
        let birth_date = NaiveDate::from_ymd_opt(birth.0, birth.1, birth.2).unwrap_or_default();
        let at = NaiveDate::from_ymd_opt(at.0, at.1, at.2).unwrap_or_default();
        let person = |value: String, precision: v1::DobPrecision| v1::Person {
            date_of_birth: Some(v1::DateOfBirth { value, precision: precision as i32 }),
            ..Default::default()
        };
        let under_18 = at < birth_date.with_year(birth_date.year() + 18).unwrap_or(birth_date);
        let (exact, _) = child_status(&person(birth_date.to_string(), v1::DobPrecision::Exact), at);
        prop_assert_eq!(exact, under_18);
        let (year_only, _) = child_status(&person(birth.0.to_string(), v1::DobPrecision::Year), at);
        let youngest = NaiveDate::from_ymd_opt(birth.0 + 18, 12, 31).unwrap_or_default();
        prop_assert_eq!(year_only, at < youngest);
        // A year is never less of a child than an exact date within it.
        prop_assert!(year_only || !exact);
    }

    /// Deadlines never come before the alert; red is wall-clock; amber and green end inside
    /// working hours and do not move earlier when the alert is raised later.
    #[test]
    fn deadlines_are_after_the_alert_and_monotonic(at in instant(), later in 0i64..500_000) {
        let calendar = calendar();
        let policy = DeadlinePolicy::default();
        prop_assert_eq!(calendar.deadline(at, Rag::Red, &policy), at + policy.red);
        for rag in [Rag::Amber, Rag::Green] {
            let deadline = calendar.deadline(at, rag, &policy);
            prop_assert!(deadline > at);
            let local_hour = (deadline + Duration::hours(1)).hour();
            prop_assert!((9..=18).contains(&local_hour), "{deadline} ends outside working hours");
            prop_assert!(calendar.is_working_day((deadline + Duration::hours(1)).date_naive())
                || calendar.is_working_day(deadline.date_naive()));
            let after = calendar.deadline(at + Duration::seconds(later), rag, &policy);
            prop_assert!(after >= deadline);
        }
    }

    /// Every child gets at least one route; a body is reached at most once; a child with no
    /// resolvable place goes to triage.
    #[test]
    fn routing_never_drops_a_child(locations in prop::collection::vec(location(), 0..4)) {
        let routes = route_child(&locations, resolver());
        prop_assert!(!routes.is_empty());
        let mut bodies: Vec<&str> =
            routes.iter().filter_map(|r| r.authority()).map(|b| b.gss_code.as_str()).collect();
        let before = bodies.len();
        bodies.sort_unstable();
        bodies.dedup();
        prop_assert_eq!(bodies.len(), before, "a body reached twice");
        if bodies.is_empty() {
            prop_assert!(routes.iter().any(|r| r.authority().is_none()));
        }
    }

    /// The planner is a function: the same event plans the same alerts. Every child on the
    /// referral is in some alert, adults in none; one alert per body; alert ids are unique.
    #[test]
    fn planning_covers_every_child_once_per_body(
        subjects in prop::collection::vec(subject(), 1..5),
        urgent in any::<bool>(),
        at in instant(),
    ) {
        let enriched = v1::ReferralEnriched {
            referral_id: "ref".into(),
            urgency: if urgent { v1::Urgency::Urgent } else { v1::Urgency::Routine } as i32,
            subjects,
            version: 1,
            ..Default::default()
        };
        let event = AlertEvent { event_id: "e", referral_id: "ref", received_at: at, trigger: Trigger::Referral(&enriched) };
        let policy = AlertPolicy { repeat_window_ms: 1, ..AlertPolicy::default() };
        let alerts = plan_alerts(&event, &History::default(), resolver(), calendars(), &policy, at);
        let again = plan_alerts(&event, &History::default(), resolver(), calendars(), &policy, at);
        prop_assert_eq!(&alerts, &again);
        for child in enriched.subjects.iter() {
            let alerted = alerts.iter().any(|a| a.sections.iter().any(|s| s.person_id == child.person_id));
            if child.is_child {
                prop_assert!(alerted, "child {} not alerted", child.person_id);
            } else if !enriched.subjects.iter().any(|s| s.is_child && s.person_id == child.person_id) {
                prop_assert!(!alerted, "adult {} alerted", child.person_id);
            }
        }
        let mut ids: Vec<&str> = alerts.iter().map(|a| a.alert_id.as_str()).collect();
        let mut keys: Vec<&str> = alerts.iter().map(|a| a.dedup_key.as_str()).collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        keys.sort_unstable();
        keys.dedup();
        prop_assert_eq!(ids.len(), n);
        prop_assert_eq!(keys.len(), n);
        for alert in &alerts {
            prop_assert!(!alert.sections.is_empty());
            if urgent {
                prop_assert_eq!(alert.rag, v1::Rag::Red as i32);
            }
            // The alert is as urgent as its most urgent section.
            let most = alert.sections.iter().map(|s| Rag::from_proto(s.rag)).min();
            prop_assert!(Rag::from_proto(alert.rag) <= most.unwrap_or(Rag::Green));
        }
    }

    /// Household links: never a person with themselves, always within the referral, and the
    /// subject is linked to every related dependant.
    #[test]
    fn household_pairs_stay_within_the_referral(relationships in prop::collection::vec(0..8i32, 0..6)) {
        let pairs = household_pairs(&relationships);
        for pair in &pairs {
            prop_assert!(pair.a != pair.b);
            prop_assert!(pair.a < pair.b);
            prop_assert!(pair.b <= relationships.len());
        }
        let children = pairs.iter().filter(|p| p.a == 0 && p.b_is == v1::LinkKind::Child).count();
        let siblings = pairs.iter().filter(|p| p.a != 0).count();
        prop_assert_eq!(siblings, children * children.saturating_sub(1) / 2);
    }

    /// Whatever an authority does, in whatever order: a resolved alert stays resolved, and a
    /// state only changes through a `Move` from the state it was in.
    #[test]
    fn alert_commands_never_reopen(commands in prop::collection::vec(0..3u8, 0..12)) {
        // (Reopen is the one way back, and only for an alert closed as re-routed: not generated.)
        let mut state = AlertState::Open;
        let mut resolved = false;
        for command in commands {
            let command = match command {
                0 => AlertCommand::Acknowledge,
                1 => AlertCommand::Resolve,
                _ => AlertCommand::Close,
            };
            match state.apply(command) {
                Step::Move { from, to } => {
                    prop_assert_eq!(from, state);
                    prop_assert!(!resolved, "moved after resolution");
                    state = to;
                }
                Step::Stay(s) => prop_assert_eq!(s, state),
            }
            resolved |= matches!(state, AlertState::Resolved | AlertState::Closed);
            prop_assert!(state != AlertState::Open || !resolved);
        }
    }

    /// An escalation timer fires at most once, whatever events arrive in whatever order.
    #[test]
    fn a_timer_fires_at_most_once(
        on_call in any::<bool>(),
        events in prop::collection::vec(0..4u8, 0..16),
    ) {
        let level = if on_call { EscalationLevel::OnCall } else { EscalationLevel::Secondary };
        let mut state = EscalationState::Scheduled;
        let mut fired = 0;
        for event in events {
            let event = match event {
                0 => EscalationEvent::Due { has_target: true },
                1 => EscalationEvent::Due { has_target: false },
                2 => EscalationEvent::AlertClosed,
                _ => EscalationEvent::PageResolved,
            };
            if let Step::Move { from, to } = state.apply(level, event) {
                prop_assert_eq!(from, state);
                if to == EscalationState::Fired {
                    fired += 1;
                }
                state = to;
            }
        }
        prop_assert!(fired <= 1);
        if !on_call {
            prop_assert!(state != EscalationState::ResolvePending);
        }
    }
}
