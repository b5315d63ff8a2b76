//! Linking rules: how a referral's person becomes a linkage record, which strong identifiers
//! decide before any scoring, how scored candidates become a decision (link, review or new
//! person), and which household links a dependant's relationship implies. The enricher's
//! registry loads candidates and identifiers from the store, calls these and writes the result.

use std::collections::BTreeMap;

use kinlink_linkage::{Band, Dob, PersonRecord, Scored};
use kinlink_proto::v1::{self, LinkKind, Relationship};

/// Strong identifiers compare without spaces, dashes or case ("485 777 3456" = "4857773456").
pub fn normalise_identifier(value: &str) -> String {
    value
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_uppercase)
        .collect()
}

/// A referral's person as the linkage engine compares them. The postcode is where the person
/// lives if given, else where they were found; the first nationality counts. A claimed age is
/// not used: read as an estimated year of birth it weighed as much as an estimated date and,
/// among namesakes, linked different children (streaming bench, 20,000 synthetic households:
/// precision 0.908 fell to 0.873). It wants a weaker level of its own.
pub fn person_record(record_id: &str, person: &v1::Person) -> PersonRecord {
    let dob = person.date_of_birth.as_ref().and_then(|d| {
        Dob::parse(&d.value).map(|mut dob| {
            dob.estimated = d.precision == v1::DobPrecision::Estimated as i32;
            dob
        })
    });
    let sex = match v1::Sex::try_from(person.sex) {
        Ok(v1::Sex::Female) => "f",
        Ok(v1::Sex::Male) => "m",
        _ => "",
    };
    let postcode = [v1::LocationRole::Lives, v1::LocationRole::Found]
        .iter()
        .find_map(|role| {
            person
                .locations
                .iter()
                .find(|l| l.role == *role as i32 && !l.postcode.trim().is_empty())
        })
        .map(|l| l.postcode.clone())
        .unwrap_or_default();
    PersonRecord {
        id: record_id.to_owned(),
        given: person.given_name.clone(),
        family: person.family_name.clone(),
        aliases: person.aliases.clone(),
        dob,
        sex: sex.to_owned(),
        postcode,
        nationality: person
            .nationalities
            .first()
            .map(|n| n.trim().to_ascii_uppercase())
            .unwrap_or_default(),
    }
}

/// What the strong identifiers on a record decide before any scoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentifierPrecedence<'a> {
    /// The adult of an anonymous Duty-to-Notify report (s52(3)): never linked to anyone.
    Anonymous,
    /// Every identifier that is known points at this one person: a match, no scoring needed.
    Identified(&'a str),
    /// No identifier is known: score the candidates.
    Score,
    /// Identifiers point at different persons: never linked automatically.
    Conflicting,
}

/// Strong identifiers decide first. `persons` are the distinct (current) persons that already
/// hold one of the record's identifiers.
pub fn identifier_precedence(anonymous: bool, persons: &[String]) -> IdentifierPrecedence<'_> {
    match persons {
        _ if anonymous => IdentifierPrecedence::Anonymous,
        [one] => IdentifierPrecedence::Identified(one),
        [] => IdentifierPrecedence::Score,
        _ => IdentifierPrecedence::Conflicting,
    }
}

/// Whether a candidate person holds a strong identifier of a kind the new record also has,
/// with another value (`held` is the person's `(kind, normalised value)` pairs): the two are
/// then different people as far as automatic linking goes.
pub fn identifier_conflict(mine: &[v1::Identifier], held: &[(i64, String)]) -> bool {
    mine.iter().any(|identifier| {
        let value = normalise_identifier(&identifier.value);
        held.iter()
            .any(|(kind, v)| *kind == i64::from(identifier.kind) && *v != value)
    })
}

/// An earlier record scored against the new one, with the person it belongs to now.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub person_id: String,
    pub record_id: String,
    pub scored: Scored,
    /// The person holds a strong identifier of a kind the new record also has, with another
    /// value: the two cannot be linked automatically.
    pub identifier_conflict: bool,
}

/// What to do with a new record.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    /// The person to attach the record to: the one person scored in the link band, when no
    /// other person is.
    pub link: Option<Candidate>,
    /// The persons a human should compare with the record, best first: every person in the
    /// link band that was not linked (two or more of them, or one held back by a conflicting
    /// identifier); without any, the best person in the review band. So no record whose best
    /// match is uncertain goes without a task, and a common name does not open one task per
    /// namesake (on 100,000 synthetic records that was one task per two records, nearly all
    /// about different children).
    pub review: Vec<Candidate>,
}

/// Decides from scored candidates. Each person counts once, by their best-scoring record.
/// A record links automatically only when exactly one person is in the link band and holds
/// no conflicting identifier; two persons in the link band (two same-named siblings, say, one
/// of them an estimated date away) are a question for a person, not a coin toss, so neither
/// is linked and both are reviewed. Ties go to the smaller person id, so the decision does
/// not depend on the order the store returned candidates in.
pub fn decide(candidates: Vec<Candidate>) -> Decision {
    let mut best: BTreeMap<String, Candidate> = BTreeMap::new();
    for candidate in candidates {
        if candidate.scored.band == Band::Distinct {
            continue;
        }
        match best.get(&candidate.person_id) {
            Some(kept) if !better(&candidate, kept) => {}
            _ => {
                best.insert(candidate.person_id.clone(), candidate);
            }
        }
    }
    let mut ranked: Vec<Candidate> = best.into_values().collect();
    // Stable sort over person-id order: equal probabilities keep the smaller id first.
    ranked.sort_by(|a, b| b.scored.probability.total_cmp(&a.scored.probability));
    let in_link_band = ranked
        .iter()
        .filter(|c| c.scored.band == Band::Link)
        .count();
    let mut decision = Decision::default();
    if in_link_band == 1
        && let Some(position) = ranked
            .iter()
            .position(|c| c.scored.band == Band::Link && !c.identifier_conflict)
    {
        decision.link = Some(ranked.remove(position));
    }
    let (link_band, review_band): (Vec<Candidate>, Vec<Candidate>) = ranked
        .into_iter()
        .partition(|c| c.scored.band == Band::Link);
    decision.review = if !link_band.is_empty() {
        link_band
    } else if decision.link.is_none() {
        review_band.into_iter().take(1).collect()
    } else {
        Vec::new()
    };
    decision
}

fn better(a: &Candidate, b: &Candidate) -> bool {
    match a.scored.probability.total_cmp(&b.scored.probability) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => a.record_id < b.record_id,
    }
}

/// A match method as stored in a `method` column (unknown values read as unspecified).
pub fn method_from_column(value: i64) -> v1::MatchMethod {
    i32::try_from(value)
        .ok()
        .and_then(|v| v1::MatchMethod::try_from(v).ok())
        .unwrap_or(v1::MatchMethod::Unspecified)
}

/// The short name of a match method for metrics labels and operator output
/// (`new_person`, `strong_identifier`, `probabilistic`).
pub fn method_name(method: v1::MatchMethod) -> String {
    method
        .as_str_name()
        .trim_start_matches("MATCH_METHOD_")
        .to_ascii_lowercase()
}

/// The link from the subject to a dependant, seen from each side: (what the dependant is to
/// the subject, what the subject is to the dependant). None for unrelated dependants.
pub fn household_link(relationship: i32) -> Option<(LinkKind, LinkKind)> {
    match Relationship::try_from(relationship).unwrap_or(Relationship::Unspecified) {
        Relationship::Child
        | Relationship::Stepchild
        | Relationship::Grandchild
        | Relationship::Unspecified => Some((LinkKind::Child, LinkKind::Parent)),
        Relationship::Sibling => Some((LinkKind::Sibling, LinkKind::Sibling)),
        Relationship::OtherRelative | Relationship::Unrelated => None,
    }
}

/// One household link between two people on a referral, by their place on it (0 is the
/// subject, 1.. the dependants in order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HouseholdPair {
    pub a: usize,
    pub b: usize,
    /// What `b` is to `a`.
    pub b_is: LinkKind,
    /// What `a` is to `b`.
    pub a_is: LinkKind,
    /// The relationship recorded on the link.
    pub relationship: i32,
}

/// The household a referral describes, from each dependant's relationship to the subject:
/// the subject and each related dependant, then siblings among the subject's children.
pub fn household_pairs(dependant_relationships: &[i32]) -> Vec<HouseholdPair> {
    let mut pairs = Vec::new();
    let mut children_of_subject = Vec::new();
    for (index, relationship) in dependant_relationships.iter().enumerate() {
        let position = index + 1;
        if let Some((dependant_is, subject_is)) = household_link(*relationship) {
            pairs.push(HouseholdPair {
                a: 0,
                b: position,
                b_is: dependant_is,
                a_is: subject_is,
                relationship: *relationship,
            });
            if dependant_is == LinkKind::Child {
                children_of_subject.push(position);
            }
        }
    }
    for (i, &a) in children_of_subject.iter().enumerate() {
        for &b in &children_of_subject[i + 1..] {
            pairs.push(HouseholdPair {
                a,
                b,
                b_is: LinkKind::Sibling,
                a_is: LinkKind::Sibling,
                relationship: Relationship::Sibling as i32,
            });
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::person;

    fn candidate(person: &str, record: &str, probability: f64, band: Band) -> Candidate {
        Candidate {
            person_id: person.into(),
            record_id: record.into(),
            scored: Scored {
                weight: 0.0,
                probability,
                band,
                evidence: Vec::new(),
            },
            identifier_conflict: false,
        }
    }

    #[test]
    fn decision_links_the_one_link_band_person() {
        let decision = decide(vec![
            candidate("p1", "r1", 0.99, Band::Link),
            candidate("p1", "r2", 0.60, Band::Review),
            candidate("p3", "r4", 0.70, Band::Review),
            candidate("p2", "r3", 0.55, Band::Review),
            candidate("p4", "r5", 0.10, Band::Distinct),
        ]);
        let link = decision.link.as_ref().map(|c| c.person_id.as_str());
        assert_eq!(link, Some("p1"));
        // Next to a clear link, review-band namesakes open no task.
        assert!(decision.review.is_empty());
    }

    #[test]
    fn two_persons_in_the_link_band_are_a_question_not_a_link() {
        let decision = decide(vec![
            candidate("p2", "r3", 0.97, Band::Link),
            candidate("p1", "r1", 0.99, Band::Link),
            candidate("p3", "r4", 0.70, Band::Review),
        ]);
        assert!(decision.link.is_none());
        let review: Vec<&str> = decision
            .review
            .iter()
            .map(|c| c.person_id.as_str())
            .collect();
        assert_eq!(review, ["p1", "p2"]);
    }

    #[test]
    fn review_band_alone_never_links_and_reviews_the_best() {
        let decision = decide(vec![
            candidate("p1", "r1", 0.7, Band::Review),
            candidate("p2", "r2", 0.9, Band::Review),
        ]);
        assert!(decision.link.is_none());
        let review: Vec<&str> = decision
            .review
            .iter()
            .map(|c| c.person_id.as_str())
            .collect();
        assert_eq!(review, ["p2"]);
        assert!(decide(Vec::new()).link.is_none());
    }

    #[test]
    fn identifier_conflict_turns_a_link_into_a_review() {
        let mut conflicting = candidate("p1", "r1", 0.999, Band::Link);
        conflicting.identifier_conflict = true;
        let decision = decide(vec![conflicting.clone()]);
        assert!(decision.link.is_none());
        assert_eq!(decision.review[0].person_id, "p1");
        // Next to another link-band person it still makes the decision a person's.
        let decision = decide(vec![conflicting, candidate("p2", "r2", 0.96, Band::Link)]);
        assert!(decision.link.is_none());
        assert_eq!(decision.review.len(), 2);
    }

    #[test]
    fn decision_does_not_depend_on_candidate_order() {
        let mut candidates = vec![
            candidate("p1", "r1", 0.98, Band::Link),
            candidate("p2", "r2", 0.98, Band::Link),
            candidate("p3", "r3", 0.80, Band::Review),
        ];
        let first = decide(candidates.clone());
        candidates.reverse();
        let second = decide(candidates);
        let ids = |d: &Decision| {
            (
                d.link.as_ref().map(|c| c.person_id.clone()),
                d.review
                    .iter()
                    .map(|c| c.person_id.clone())
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(ids(&first), ids(&second));
        assert_eq!(ids(&first).0, None);
        assert_eq!(ids(&first).1, ["p1", "p2"]);
    }

    #[test]
    fn linkage_record_takes_where_the_child_lives_first() {
        let mut p = person(Some(("2016", v1::DobPrecision::Estimated)), None);
        p.sex = v1::Sex::Female as i32;
        p.nationalities = vec![" al ".into(), "XK".into()];
        p.locations = vec![
            v1::Location {
                role: v1::LocationRole::Found as i32,
                postcode: "B1 1BB".into(),
                ..Default::default()
            },
            v1::Location {
                role: v1::LocationRole::Lives as i32,
                postcode: "CT1 2RR".into(),
                ..Default::default()
            },
        ];
        let record = person_record("rec-1", &p);
        assert_eq!(record.id, "rec-1");
        assert_eq!(record.postcode, "CT1 2RR");
        assert_eq!(record.sex, "f");
        assert_eq!(record.nationality, "AL");
        let dob = record.dob.unwrap_or(Dob {
            year: 0,
            month: None,
            day: None,
            estimated: false,
        });
        assert_eq!((dob.year, dob.month, dob.estimated), (2016, None, true));
        // A malformed date is unknown, not a guess.
        let bad = person(Some(("16/03/2016", v1::DobPrecision::Exact)), None);
        assert!(person_record("rec-2", &bad).dob.is_none());
        // A claimed age is not a date of birth.
        assert!(person_record("rec-3", &person(None, Some(9))).dob.is_none());
    }

    #[test]
    fn identifiers_ignore_formatting() {
        assert_eq!(normalise_identifier("485 777-3456"), "4857773456");
        assert_eq!(normalise_identifier("ab12"), "AB12");
    }

    #[test]
    fn identifiers_decide_before_scoring() {
        let one = vec!["p1".to_owned()];
        let two = vec!["p1".to_owned(), "p2".to_owned()];
        assert_eq!(
            identifier_precedence(false, &[]),
            IdentifierPrecedence::Score
        );
        assert_eq!(
            identifier_precedence(false, &one),
            IdentifierPrecedence::Identified("p1")
        );
        assert_eq!(
            identifier_precedence(false, &two),
            IdentifierPrecedence::Conflicting
        );
        assert_eq!(
            identifier_precedence(true, &one),
            IdentifierPrecedence::Anonymous
        );
    }

    #[test]
    fn another_value_of_the_same_identifier_conflicts() {
        let mine = vec![v1::Identifier {
            kind: 1,
            value: "485 777 3456".into(),
        }];
        assert!(!identifier_conflict(&mine, &[(1, "4857773456".into())]));
        assert!(identifier_conflict(&mine, &[(1, "9999999999".into())]));
        assert!(!identifier_conflict(&mine, &[(2, "9999999999".into())]));
        assert!(!identifier_conflict(&[], &[(1, "9999999999".into())]));
    }

    #[test]
    fn household_links_the_subject_and_siblings() {
        let child = Relationship::Child as i32;
        let pairs = household_pairs(&[child, Relationship::Unrelated as i32, child]);
        let shape: Vec<(usize, usize, LinkKind)> =
            pairs.iter().map(|p| (p.a, p.b, p.b_is)).collect();
        assert_eq!(
            shape,
            [
                (0, 1, LinkKind::Child),
                (0, 3, LinkKind::Child),
                (1, 3, LinkKind::Sibling)
            ]
        );
        assert_eq!(pairs[0].a_is, LinkKind::Parent);
        let sibling = household_pairs(&[Relationship::Sibling as i32]);
        assert_eq!(
            (sibling[0].a_is, sibling[0].b_is),
            (LinkKind::Sibling, LinkKind::Sibling)
        );
        assert!(household_pairs(&[]).is_empty());
    }
}
