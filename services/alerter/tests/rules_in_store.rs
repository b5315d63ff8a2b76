#![allow(clippy::panic)] // Test helpers fail the test on broken fixtures.
//! The alerter stage against a real (SQLite) store, fed by the real enricher: grouping,
//! lives/found double routing, every rule, and replays that raise nothing new.

use kinlink_alerter::Alerter;
use kinlink_domain::deadline::Calendars;
use kinlink_domain::routing::AuthorityResolver;
use kinlink_enricher::Enricher;
use kinlink_eventlog::{Envelope, Record, Stage};
use kinlink_proto::v1::{self, LocationRole, subject_ref};
use kinlink_runtime::settings::AlerterSettings;
use kinlink_store::Store;
use kinlink_test_kit::{TestResult, record, referral};
use sqlx::Row;

struct Harness {
    store: Store,
    alerter: Alerter,
    dir: std::path::PathBuf,
}

impl Harness {
    async fn new(name: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let dir =
            std::env::temp_dir().join(format!("kinlink-alerter-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open_embedded(&dir).await?;
        let alerter = Alerter::new(
            AuthorityResolver::shipped()?,
            Calendars::shipped()?,
            &AlerterSettings::default(),
        );
        Ok(Self {
            store,
            alerter,
            dir,
        })
    }

    /// Runs a referral through the enricher and the alerter; returns the alerts.
    async fn refer(
        &self,
        referral: v1::ReferralReceived,
    ) -> Result<Vec<v1::AlertRaised>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.refer_keeping_input(referral).await?.0)
    }

    /// Like `refer`, and also returns the enriched event the alerter consumed.
    async fn refer_keeping_input(
        &self,
        referral: v1::ReferralReceived,
    ) -> Result<(Vec<v1::AlertRaised>, Record), Box<dyn std::error::Error + Send + Sync>> {
        let id = referral.referral_id.clone();
        let received = record(
            "t",
            Envelope::new(format!("event-{id}"), "/test", &id, &id, 0, &referral),
        );
        let mut tx = self.store.begin().await?;
        let enriched = Enricher::shipped()?.handle(&mut tx, &received).await?;
        tx.commit().await?;
        let enriched = enriched
            .into_iter()
            .next()
            .ok_or("enricher emitted nothing")?;
        let enriched = record("t", enriched.envelope);
        Ok((self.alert(&enriched).await?, enriched))
    }

    async fn alert(
        &self,
        input: &Record,
    ) -> Result<Vec<v1::AlertRaised>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.alert_all(input).await?.0)
    }

    /// The alerts an event raises and the alerts it closes.
    async fn alert_all(
        &self,
        input: &Record,
    ) -> TestResult<(Vec<v1::AlertRaised>, Vec<v1::AlertClosed>)> {
        use prost::Name;
        let mut tx = self.store.begin().await?;
        let outputs = self.alerter.handle(&mut tx, input).await?;
        tx.commit().await?;
        let mut raised = Vec::new();
        let mut closed = Vec::new();
        for output in outputs {
            if output.envelope.event_type == v1::AlertClosed::full_name() {
                closed.push(output.envelope.decode()?);
            } else {
                raised.push(output.envelope.decode()?);
            }
        }
        Ok((raised, closed))
    }

    async fn follow_up<M: prost::Message + prost::Name>(
        &self,
        id: &str,
        message: &M,
    ) -> Result<Vec<v1::AlertRaised>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.follow_up_all(id, message).await?.0)
    }

    /// Like `follow_up`, also returning the alerts the event closes.
    async fn follow_up_all<M: prost::Message + prost::Name>(
        &self,
        id: &str,
        message: &M,
    ) -> TestResult<(Vec<v1::AlertRaised>, Vec<v1::AlertClosed>)> {
        self.alert_all(&record(
            "t",
            Envelope::new(id.into(), "/test", id, id, 0, message),
        ))
        .await
    }

    async fn close(self) {
        self.store.close().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A routine referral received now.
fn routine_referral(
    id: &str,
    subject: v1::Person,
    children: Vec<v1::Person>,
) -> v1::ReferralReceived {
    v1::ReferralReceived {
        urgency: v1::Urgency::Routine as i32,
        ..referral(id, subject, children, kinlink_store::now_millis())
    }
}

fn location(role: LocationRole, postcode: &str) -> v1::Location {
    v1::Location {
        role: role as i32,
        postcode: postcode.into(),
        ..Default::default()
    }
}

fn person(given: &str, dob: &str, locations: Vec<v1::Location>) -> v1::Person {
    v1::Person {
        given_name: given.into(),
        family_name: "Nguyen".into(),
        date_of_birth: Some(v1::DateOfBirth {
            value: dob.into(),
            precision: v1::DobPrecision::Exact as i32,
        }),
        locations,
        ..Default::default()
    }
}

fn rules_of(alert: &v1::AlertRaised, person_id: &str) -> Vec<String> {
    alert
        .sections
        .iter()
        .filter(|s| s.person_id == person_id)
        .flat_map(|s| s.rules.clone())
        .collect()
}

#[tokio::test]
async fn a_household_groups_per_body_and_lives_found_alerts_both() -> TestResult {
    let h = Harness::new("grouping").await?;
    // Two children living in Canterbury (Kent); the second is found in Westminster.
    let (alerts, enriched) = h
        .refer_keeping_input(routine_referral(
            "r-group",
            person(
                "Lan",
                "1985-05-05",
                vec![location(LocationRole::Found, "SW1A 2AA")],
            ),
            vec![
                person(
                    "Minh",
                    "2015-03-03",
                    vec![location(LocationRole::Lives, "CT1 2RR")],
                ),
                person(
                    "Thu",
                    "2018-08-08",
                    vec![
                        location(LocationRole::Lives, "CT1 2RR"),
                        location(LocationRole::Found, "SW1A 2AA"),
                    ],
                ),
            ],
        ))
        .await?;
    let codes: Vec<&str> = alerts.iter().map(|a| a.authority_code.as_str()).collect();
    assert_eq!(
        codes,
        ["E10000016", "E09000033"],
        "one alert per body, Kent first"
    );
    let kent = &alerts[0];
    assert_eq!(kent.sections.len(), 2, "both children in one Kent alert");
    assert_eq!(
        kent.sections[0].rules,
        ["child_referral", "unrecognised_dependant"]
    );
    assert_eq!(kent.rag, v1::Rag::Amber as i32);
    let westminster = &alerts[1];
    assert_eq!(westminster.sections.len(), 1);
    let thu = &westminster.sections[0];
    assert_eq!(thu.basis, v1::RoutingBasis::Found as i32);
    assert_eq!(
        thu.other_authority_code, "E10000016",
        "the found authority's alert names the home authority"
    );
    let thu_in_kent = kent
        .sections
        .iter()
        .find(|s| s.person_id == thu.person_id)
        .ok_or("Thu missing from Kent")?;
    assert_eq!(
        thu_in_kent.other_authority_code, "E09000033",
        "and the other way round"
    );
    assert!(
        alerts
            .iter()
            .all(|a| !a.routing_data_version.is_empty() && a.rules_version == "rules-v1")
    );

    // Replaying the same enriched event raises the same alerts (same ids and dedup keys), so
    // downstream drops them; the store records each decision once.
    let again = h.alert(&enriched).await?;
    let ids = |a: &[v1::AlertRaised]| {
        a.iter()
            .map(|x| (x.alert_id.clone(), x.dedup_key.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&again), ids(&alerts));
    let rows = sqlx::query(
        "SELECT COUNT(DISTINCT alert_id) AS n FROM routing_decisions WHERE referral_id = 'r-group'",
    )
    .fetch_one(h.store.pool())
    .await?;
    assert_eq!(rows.try_get::<i64, _>("n")?, 2);
    h.close().await;
    Ok(())
}

#[tokio::test]
async fn reappearance_repeat_missing_nrm_and_age_rules() -> TestResult {
    let h = Harness::new("rules").await?;
    let first = h
        .refer(routine_referral(
            "r1",
            person("Hoa", "1980-01-02", vec![]),
            vec![person(
                "Bao",
                "2014-02-02",
                vec![location(LocationRole::Lives, "B1 1BB")],
            )],
        ))
        .await?;
    let bao = first[0].sections[0].person_id.clone();
    assert_eq!(first[0].authority_code, "E08000025");

    // Bao is referred in his own right months later, found in Bristol: a linked child in a
    // new authority. Bristol hears it (repeat, reappearance); Birmingham hears he reappeared.
    let second = h
        .refer(routine_referral(
            "r2",
            person(
                "Bao",
                "2014-02-02",
                vec![location(LocationRole::Found, "BS1 5TR")],
            ),
            vec![],
        ))
        .await?;
    let codes: Vec<&str> = second.iter().map(|a| a.authority_code.as_str()).collect();
    assert_eq!(codes, ["E06000023", "E08000025"]);
    let bristol_rules = rules_of(&second[0], &bao);
    for rule in [
        "child_referral",
        "cross_authority_reappearance",
        "repeat_referral",
    ] {
        assert!(
            bristol_rules.contains(&rule.to_owned()),
            "{rule} missing from {bristol_rules:?}"
        );
    }
    assert_eq!(rules_of(&second[1], &bao), ["cross_authority_reappearance"]);
    assert_eq!(
        second[1].sections[0].basis,
        v1::RoutingBasis::PreviousAuthority as i32
    );

    // Bao goes missing: every body that knew him hears it, red.
    let missing = v1::MissingEpisodeReported {
        referral_id: "r2".into(),
        subject: Some(v1::SubjectRef {
            target: Some(subject_ref::Target::ReferralSubject(true)),
        }),
        ..Default::default()
    };
    let alerts = h.follow_up("missing-1", &missing).await?;
    let codes: Vec<&str> = alerts.iter().map(|a| a.authority_code.as_str()).collect();
    assert_eq!(codes, ["E08000025", "E06000023"]);
    assert!(
        alerts
            .iter()
            .all(|a| a.rag == v1::Rag::Red as i32 && rules_of(a, &bao) == ["missing_child"])
    );

    // A conclusive grounds decision on the mother concerns her child.
    let nrm = v1::NrmDecisionRecorded {
        referral_id: "r1".into(),
        subject: Some(v1::SubjectRef {
            target: Some(subject_ref::Target::ReferralSubject(true)),
        }),
        stage: v1::NrmDecisionStage::ConclusiveGrounds as i32,
        outcome: v1::NrmDecisionOutcome::Positive as i32,
        ..Default::default()
    };
    let alerts = h.follow_up("nrm-1", &nrm).await?;
    assert!(
        !alerts.is_empty()
            && alerts
                .iter()
                .all(|a| rules_of(a, &bao) == ["nrm_decision"] && a.rag == v1::Rag::Green as i32)
    );

    // Assessed adult after being treated as a child: an age dispute for the same bodies.
    let age = v1::AgeAssessmentRecorded {
        referral_id: "r2".into(),
        subject: Some(v1::SubjectRef {
            target: Some(subject_ref::Target::PersonId(bao.clone())),
        }),
        outcome: v1::AgeAssessmentOutcome::Adult as i32,
        ..Default::default()
    };
    let alerts = h.follow_up("age-1", &age).await?;
    assert!(!alerts.is_empty() && alerts.iter().all(|a| rules_of(a, &bao) == ["age_dispute"]));

    // A child whose age is unknown raises an age dispute on the referral itself; an unknown
    // postcode sends the child to triage, recorded in the triage queue.
    let unknown_age = v1::Person {
        given_name: "Khanh".into(),
        locations: vec![location(LocationRole::Lives, "ZZ99 9ZZ")],
        ..Default::default()
    };
    let alerts = h
        .refer(routine_referral(
            "r3",
            person("Mai", "1990-09-09", vec![]),
            vec![unknown_age],
        ))
        .await?;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].authority_code, "", "triage");
    assert_eq!(alerts[0].triage_reasons, ["unknown_postcode"]);
    assert!(
        alerts[0].sections[0]
            .rules
            .contains(&"age_dispute".to_owned())
    );
    // An anonymous Duty-to-Notify report: the child is alerted, the adult's non-disclosure audited.
    let mut anonymous = routine_referral(
        "r4",
        v1::Person {
            claimed_age: Some(30),
            ..Default::default()
        },
        vec![person(
            "Linh",
            "2019-01-01",
            vec![location(LocationRole::Lives, "B1 1BB")],
        )],
    );
    anonymous.anonymous_duty_to_notify = true;
    anonymous.consent = v1::Consent::NotGiven as i32;
    let alerts_r4 = h.refer(anonymous).await?;
    assert_eq!(alerts_r4.len(), 1);
    assert!(
        alerts_r4[0]
            .sections
            .iter()
            .all(|s| s.child.as_ref().is_some_and(|c| c.given_name == "Linh"))
    );
    let not_shared = sqlx::query("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'not_shared'")
        .fetch_one(h.store.pool())
        .await?;
    assert_eq!(not_shared.try_get::<i64, _>("n")?, 1);
    let queued = sqlx::query(
        "SELECT COUNT(*) AS n FROM triage_queue WHERE referral_id = 'r3' AND state = 'open'",
    )
    .fetch_one(h.store.pool())
    .await?;
    assert_eq!(queued.try_get::<i64, _>("n")?, 1);
    h.close().await;
    Ok(())
}

#[tokio::test]
async fn an_adult_age_assessment_changes_how_later_referrals_are_treated() -> TestResult {
    let h = Harness::new("assessed").await?;
    // Claims 16, but the documents say 26: a child until assessed (s51).
    let mut claimed = person(
        "Dawit",
        "2000-03-03",
        vec![location(LocationRole::Found, "CT1 2RR")],
    );
    claimed.claimed_age = Some(16);
    claimed.identifiers = vec![v1::Identifier {
        kind: v1::IdentifierKind::HomeOfficeReference as i32,
        value: "HO-1234".into(),
    }];
    let (alerts, enriched) = h
        .refer_keeping_input(routine_referral("a1", claimed.clone(), vec![]))
        .await?;
    let enriched: v1::ReferralEnriched = enriched.envelope.decode()?;
    let subject = &enriched.subjects[0];
    assert!(subject.is_child, "may be under 18: a child");
    assert_eq!(subject.child_basis, v1::ChildBasis::AgeUncertain as i32);
    assert_eq!(alerts.len(), 1);
    let dawit = subject.person_id.clone();

    // The local authority assesses him as an adult.
    let age = v1::AgeAssessmentRecorded {
        referral_id: "a1".into(),
        subject: Some(v1::SubjectRef {
            target: Some(subject_ref::Target::PersonId(dawit.clone())),
        }),
        outcome: v1::AgeAssessmentOutcome::Adult as i32,
        ..Default::default()
    };
    h.follow_up("age-a1", &age).await?;

    // Referred again (same Home Office reference): the assessment stands, so he is an adult
    // and no children's-services alert is raised for him.
    let (alerts, enriched) = h
        .refer_keeping_input(routine_referral("a2", claimed.clone(), vec![]))
        .await?;
    let enriched: v1::ReferralEnriched = enriched.envelope.decode()?;
    let subject = &enriched.subjects[0];
    assert_eq!(subject.person_id, dawit);
    assert!(!subject.is_child);
    assert_eq!(subject.child_basis, v1::ChildBasis::Assessed as i32);
    assert!(alerts.is_empty(), "{alerts:?}");

    // A later assessment (on appeal) that finds him a child replaces it.
    let appeal = v1::AgeAssessmentRecorded {
        outcome: v1::AgeAssessmentOutcome::Child as i32,
        assessed_at: Some(kinlink_proto::timestamp_from_millis(
            kinlink_store::now_millis() + 1_000,
        )),
        ..age
    };
    h.follow_up("age-a1-appeal", &appeal).await?;
    let alerts = h.refer(routine_referral("a3", claimed, vec![])).await?;
    assert_eq!(alerts.len(), 1);
    h.close().await;
    Ok(())
}

#[tokio::test]
async fn a_follow_up_that_overtakes_its_referral_waits_instead_of_going_to_triage() -> TestResult {
    use kinlink_eventlog::StageError;
    let h = Harness::new("overtaken").await?;
    let missing = v1::MissingEpisodeReported {
        referral_id: "late".into(),
        subject: Some(v1::SubjectRef {
            target: Some(subject_ref::Target::DependantIndex(0)),
        }),
        ..Default::default()
    };
    let now = kinlink_store::now_millis();
    let handle = |time_ms: i64| {
        let input = record(
            "t",
            Envelope::new(
                "missing-1".into(),
                "/test",
                "late",
                "late",
                time_ms,
                &missing,
            ),
        );
        let (store, alerter) = (h.store.clone(), h.alerter.clone());
        async move {
            let mut tx = store.begin().await?;
            let result = alerter.handle(&mut tx, &input).await;
            tx.rollback().await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(result)
        }
    };
    // Just reported, referral not enriched yet: wait (the runner retries with back-off).
    assert!(matches!(handle(now).await?, Err(StageError::Retry(_))));
    // Still not enriched ten minutes on: dead-lettered with the reason, not triaged.
    assert!(matches!(
        handle(now - 11 * 60_000).await?,
        Err(StageError::Rejected(reason)) if reason.contains("not enriched")
    ));

    // Once the referral is enriched, the same follow-up reaches the child's body.
    h.refer(routine_referral(
        "late",
        person("Lan", "1988-08-08", vec![]),
        vec![person(
            "Minh",
            "2017-07-07",
            vec![location(LocationRole::Lives, "CT1 2RR")],
        )],
    ))
    .await?;
    let alerts = match handle(now).await? {
        Ok(outputs) => outputs
            .iter()
            .map(|o| o.envelope.decode::<v1::AlertRaised>())
            .collect::<Result<Vec<_>, _>>()?,
        Err(error) => return Err(error.into()),
    };
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].authority_code, "E10000016");
    assert_eq!(alerts[0].rule, "missing_child");
    h.close().await;
    Ok(())
}

/// Closures as (alert id, authority, reason).
fn closures(closed: &[v1::AlertClosed]) -> Vec<(String, String, i32)> {
    closed
        .iter()
        .map(|c| (c.alert_id.clone(), c.authority_code.clone(), c.reason))
        .collect()
}

#[tokio::test]
async fn withdrawal_closes_every_alert_and_found_closes_the_missing_ones() -> TestResult {
    let h = Harness::new("closures").await?;
    // One child lives in Kent and was found in Westminster; a sibling's postcode is unknown.
    let mut unknown = person(
        "Tuan",
        "2016-06-06",
        vec![location(LocationRole::Lives, "ZZ9 9ZZ")],
    );
    unknown.family_name = "Pham".into();
    let raised = h
        .refer(routine_referral(
            "w1",
            person("Hoa", "1985-05-05", vec![]),
            vec![
                person(
                    "Linh",
                    "2015-05-05",
                    vec![
                        location(LocationRole::Lives, "CT1 2RR"),
                        location(LocationRole::Found, "SW1A 2AA"),
                    ],
                ),
                unknown,
            ],
        ))
        .await?;
    assert_eq!(raised.len(), 3, "Kent, Westminster and triage");

    // The agency withdraws the referral: every alert is closed, each body is told.
    let withdrawn = v1::ReferralWithdrawn {
        referral_id: "w1".into(),
        reason_code: "referred_in_error".into(),
        ..Default::default()
    };
    let (_, closed) = h.follow_up_all("withdraw-1", &withdrawn).await?;
    let closed = closures(&closed);
    let mut expected: Vec<(String, String, i32)> = raised
        .iter()
        .map(|a| {
            (
                a.alert_id.clone(),
                a.authority_code.clone(),
                v1::AlertCloseReason::ReferralWithdrawn as i32,
            )
        })
        .collect();
    expected.sort();
    let mut got = closed.clone();
    got.sort();
    assert_eq!(got, expected);
    let open_triage: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM triage_queue WHERE referral_id = 'w1' AND state = 'open'",
    )
    .fetch_one(h.store.pool())
    .await?
    .try_get("n")?;
    assert_eq!(open_triage, 0, "the triage item leaves the queue");

    // A missing child is found: only the missing-child alerts about her are closed.
    let (alerts, enriched) = h
        .refer_keeping_input(routine_referral(
            "m1",
            person("Thu", "1983-03-03", vec![]),
            vec![person(
                "Mai",
                "2014-04-04",
                vec![location(LocationRole::Lives, "CT1 2RR")],
            )],
        ))
        .await?;
    let enriched: v1::ReferralEnriched = enriched.envelope.decode()?;
    let mai = enriched.subjects[1].person_id.clone();
    let child_alert = alerts[0].alert_id.clone();
    let missing = v1::MissingEpisodeReported {
        referral_id: "m1".into(),
        subject: Some(v1::SubjectRef {
            target: Some(subject_ref::Target::PersonId(mai.clone())),
        }),
        ..Default::default()
    };
    let missing_alerts = h.follow_up("missing-m1", &missing).await?;
    assert_eq!(missing_alerts.len(), 1);
    let found = v1::FoundEpisodeReported {
        referral_id: "m1".into(),
        subject: Some(v1::SubjectRef {
            target: Some(subject_ref::Target::PersonId(mai)),
        }),
        ..Default::default()
    };
    let (_, closed) = h.follow_up_all("found-m1", &found).await?;
    let closed = closures(&closed);
    assert_eq!(
        closed,
        [(
            missing_alerts[0].alert_id.clone(),
            "E10000016".to_owned(),
            v1::AlertCloseReason::ChildFound as i32
        )]
    );
    assert!(
        closed.iter().all(|(id, _, _)| *id != child_alert),
        "the referral's own alert stays"
    );
    h.close().await;
    Ok(())
}

#[tokio::test]
async fn a_corrected_location_reroutes_and_the_previous_body_is_told() -> TestResult {
    let h = Harness::new("reroute").await?;
    let child = |postcode: &str| {
        person(
            "Binh",
            "2016-01-01",
            vec![location(LocationRole::Lives, postcode)],
        )
    };
    let first = routine_referral(
        "c1",
        person("Lan", "1980-01-01", vec![]),
        vec![child("CT1 2RR")],
    );
    let kent = h.refer(first.clone()).await?;
    assert_eq!(kent[0].authority_code, "E10000016");

    // The agency corrects the address: version 2 lives in Bristol.
    let corrected = v1::ReferralReceived {
        version: 2,
        dependants: routine_referral(
            "c1",
            person("Lan", "1980-01-01", vec![]),
            vec![child("BS1 5TR")],
        )
        .dependants,
        ..first
    };
    let received = record(
        "t",
        Envelope::new("event-c1-v2".into(), "/test", "c1", "c1", 0, &corrected),
    );
    let mut tx = h.store.begin().await?;
    let enriched = Enricher::shipped()?.handle(&mut tx, &received).await?;
    tx.commit().await?;
    let enriched = record(
        "t",
        enriched
            .into_iter()
            .next()
            .ok_or("nothing enriched")?
            .envelope,
    );
    let (raised, closed) = h.alert_all(&enriched).await?;
    let bodies: Vec<&str> = raised.iter().map(|a| a.authority_code.as_str()).collect();
    assert_eq!(bodies, ["E06000023"], "Bristol is alerted");
    assert_eq!(closed.len(), 1, "Kent is told");
    assert_eq!(closed[0].alert_id, kent[0].alert_id);
    assert_eq!(closed[0].reason, v1::AlertCloseReason::Rerouted as i32);
    assert_eq!(closed[0].rerouted_to, ["E06000023"]);
    h.close().await;
    Ok(())
}
