//! The enricher against a real (SQLite) store: household links, child decisions, and the same
//! child recognised across referrals by strong identifier or by probabilistic linkage.

use kinlink_enricher::Enricher;
use kinlink_eventlog::{Record, Stage};
use kinlink_proto::v1::{self, ChildBasis, LinkKind, MatchMethod, SubjectRole};
use kinlink_store::Store;
use kinlink_test_kit::{TestResult, referral_record};

fn person(given: &str, dob: Option<&str>, nhs: Option<&str>) -> v1::Person {
    v1::Person {
        given_name: given.into(),
        family_name: "Tesfay".into(),
        date_of_birth: dob.map(|d| v1::DateOfBirth {
            value: d.into(),
            precision: v1::DobPrecision::Exact as i32,
        }),
        identifiers: nhs
            .map(|n| {
                vec![v1::Identifier {
                    kind: v1::IdentifierKind::NhsNumber as i32,
                    value: n.into(),
                }]
            })
            .unwrap_or_default(),
        ..Default::default()
    }
}

async fn enrich(store: &Store, record: &Record) -> TestResult<v1::ReferralEnriched> {
    let mut tx = store.begin().await?;
    let outputs = Enricher::shipped()?.handle(&mut tx, record).await?;
    tx.commit().await?;
    Ok(outputs.first().ok_or("no output")?.envelope.decode()?)
}

fn kinds(subject: &v1::EnrichedSubject) -> Vec<i32> {
    let mut kinds: Vec<i32> = subject.links.iter().map(|l| l.kind).collect();
    kinds.sort();
    kinds
}

#[tokio::test]
async fn households_link_and_children_are_recognised_across_referrals() -> TestResult {
    let dir = std::env::temp_dir().join(format!("kinlink-enricher-{}", std::process::id()));
    let store = Store::open_embedded(&dir).await?;

    // An adult with two children: one with an NHS number, one with an exact date of birth.
    let first = enrich(
        &store,
        &referral_record(
            "r1",
            person("Selam", Some("1988-02-11"), None),
            vec![
                person("Yonas", None, Some("485 777 3456")),
                person("Hana", Some("2017-06-30"), None),
            ],
        ),
    )
    .await?;
    let [adult, yonas, hana] = first.subjects.as_slice() else {
        return Err("expected three persons".into());
    };
    assert_eq!(
        (adult.is_child, adult.child_basis),
        (false, ChildBasis::Adult as i32)
    );
    assert_eq!(
        (yonas.is_child, yonas.child_basis),
        (true, ChildBasis::AgeUncertain as i32)
    );
    assert_eq!(
        (hana.is_child, hana.child_basis),
        (true, ChildBasis::DateOfBirth as i32)
    );
    assert_eq!(
        kinds(adult),
        [LinkKind::Child as i32, LinkKind::Child as i32]
    );
    assert_eq!(
        kinds(yonas),
        [LinkKind::Parent as i32, LinkKind::Sibling as i32]
    );
    assert!(
        hana.links
            .iter()
            .any(|l| l.kind == LinkKind::Sibling as i32 && l.person_id == yonas.person_id)
    );
    assert!(
        first
            .subjects
            .iter()
            .all(|s| s.match_method == MatchMethod::NewPerson as i32)
    );
    assert!(!yonas.ever_referred_in_own_right);

    // Later Yonas is referred in his own right; the NHS number is written differently.
    let second = enrich(
        &store,
        &referral_record("r2", person("Jonas", None, Some("4857773456")), vec![]),
    )
    .await?;
    let own = &second.subjects[0];
    assert_eq!(
        own.person_id, yonas.person_id,
        "same child by strong identifier"
    );
    assert_eq!(own.match_method, MatchMethod::StrongIdentifier as i32);
    assert_eq!(own.role, SubjectRole::ReferralSubject as i32);
    assert!(own.ever_referred_in_own_right);

    // A "Hana Tesfay" with the same date of birth appears as another adult's dependant, at no
    // known address: Hana is known only as the first adult's child, so names and date alone
    // do not merge them (that would tell one family's council about another family's child).
    // A person decides: the pair is a review task.
    let third = enrich(
        &store,
        &referral_record(
            "r3",
            person("Mebrat", None, None),
            vec![person("Hana", Some("2017-06-30"), None)],
        ),
    )
    .await?;
    let namesake = &third.subjects[1];
    assert_ne!(
        namesake.person_id, hana.person_id,
        "another household's child merged on name and date of birth"
    );
    assert_eq!(namesake.match_method, MatchMethod::NewPerson as i32);
    assert_eq!(namesake.review_task_ids.len(), 1, "{namesake:?}");
    assert!(namesake.earlier_referral_ids.is_empty());

    // Conflicting strong identifiers never merge automatically.
    enrich(
        &store,
        &referral_record("r4", person("Other", None, Some("9999999999")), vec![]),
    )
    .await?;
    let mut clash = person("Yonas", None, Some("4857773456"));
    clash.identifiers.push(v1::Identifier {
        kind: v1::IdentifierKind::NhsNumber as i32,
        value: "9999999999".into(),
    });
    let fifth = enrich(
        &store,
        &referral_record("r5", person("Adult", None, None), vec![clash]),
    )
    .await?;
    let resolved = &fifth.subjects[1];
    assert_eq!(resolved.match_method, MatchMethod::NewPerson as i32);
    assert_ne!(resolved.person_id, yonas.person_id);

    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A household referred again with the adult's details written less fully (a year of birth
/// instead of the date): the adult is only a possible match, left to a person, so the
/// household is undecided rather than another household. The child, whose own name and date
/// of birth agree exactly, is recognised instead of being sent to review as "another adult's
/// child". A child of an adult the new subject does not resemble at all still goes to review.
#[tokio::test]
async fn a_child_of_a_possible_match_for_the_adult_is_recognised() -> TestResult {
    let dir =
        std::env::temp_dir().join(format!("kinlink-enricher-possible-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open_embedded(&dir).await?;
    let first = enrich(
        &store,
        &referral_record(
            "p1",
            person("Selam", Some("1988-02-11"), None),
            vec![person("Hana", Some("2017-06-30"), None)],
        ),
    )
    .await?;
    let [adult, hana] = first.subjects.as_slice() else {
        return Err("expected two persons".into());
    };

    let second = enrich(
        &store,
        &referral_record(
            "p2",
            person("Selam", Some("1988"), None),
            vec![person("Hana", Some("2017-06-30"), None)],
        ),
    )
    .await?;
    let [again, child] = second.subjects.as_slice() else {
        return Err("expected two persons".into());
    };
    // The adult is a review task, not a link: the year alone is not enough.
    assert_eq!(again.match_method, MatchMethod::NewPerson as i32);
    assert_ne!(again.person_id, adult.person_id);
    assert_eq!(again.review_task_ids.len(), 1, "{again:?}");
    // The child is recognised.
    assert_eq!(child.person_id, hana.person_id, "{child:?}");
    assert_eq!(child.match_method, MatchMethod::Probabilistic as i32);

    // An adult nothing like the first brings a namesake child: another household.
    let third = enrich(
        &store,
        &referral_record(
            "p3",
            person("Mebrat", None, None),
            vec![person("Hana", Some("2017-06-30"), None)],
        ),
    )
    .await?;
    let namesake = &third.subjects[1];
    assert_ne!(namesake.person_id, hana.person_id);
    assert_eq!(namesake.match_method, MatchMethod::NewPerson as i32);
    assert!(!namesake.review_task_ids.is_empty(), "{namesake:?}");

    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
