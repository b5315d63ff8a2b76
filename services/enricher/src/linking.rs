//! Pure linking rules: who is a child, how identifiers and names are normalised for exact
//! matching, and which household links a dependant's relationship implies. No I/O here;
//! [`crate::registry`] applies these against the person tables.
//!
//! This is the exact-match first step. Probabilistic (Fellegi–Sunter) linkage replaces
//! [`match_key`] as the fallback in a later step, behind the same registry.

use chrono::{Datelike, NaiveDate};
use kinlink_proto::v1::{self, ChildBasis, LinkKind, Relationship};

/// Version of these rules, recorded on every `ReferralEnriched`.
pub const LINKAGE_VERSION: &str = "exact-v1";

/// Whether a person is treated as a child on `at`, and why.
///
/// Anyone who *may* be under 18 is a child (Modern Slavery Act s51): a partial or estimated
/// date of birth is read as the youngest date it allows, and an unknown age counts as a child.
pub fn child_status(person: &v1::Person, at: NaiveDate) -> (bool, ChildBasis) {
    if let Some(youngest) = person
        .date_of_birth
        .as_ref()
        .and_then(|dob| latest_possible_birth(&dob.value))
    {
        let child = age_on(youngest, at) < 18;
        return (
            child,
            if child {
                ChildBasis::DateOfBirth
            } else {
                ChildBasis::Adult
            },
        );
    }
    match person.claimed_age {
        Some(age) if age < 18 => (true, ChildBasis::ClaimedAge),
        Some(_) => (false, ChildBasis::Adult),
        None => (true, ChildBasis::AgeUncertain),
    }
}

/// The latest birth date a partial ISO date allows (`2008` -> 2008-12-31).
fn latest_possible_birth(value: &str) -> Option<NaiveDate> {
    let mut parts = value.split('-');
    let year: i32 = parts.next()?.parse().ok()?;
    match (parts.next(), parts.next()) {
        (None, _) => NaiveDate::from_ymd_opt(year, 12, 31),
        (Some(month), None) => {
            let month: u32 = month.parse().ok()?;
            let first_of_next = if month == 12 {
                NaiveDate::from_ymd_opt(year + 1, 1, 1)?
            } else {
                NaiveDate::from_ymd_opt(year, month + 1, 1)?
            };
            first_of_next.pred_opt()
        }
        (Some(month), Some(day)) => {
            NaiveDate::from_ymd_opt(year, month.parse().ok()?, day.parse().ok()?)
        }
    }
}

fn age_on(birth: NaiveDate, at: NaiveDate) -> i32 {
    let mut age = at.year() - birth.year();
    if (at.month(), at.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age
}

/// Strong identifiers compare without spaces, dashes or case ("485 777 3456" = "4857773456").
pub fn normalise_identifier(value: &str) -> String {
    value
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_uppercase)
        .collect()
}

/// The exact-match key: both names and a full date of birth, normalised. None when any is
/// missing or the date is partial or estimated, since those match too many people.
pub fn match_key(person: &v1::Person) -> Option<String> {
    let dob = person.date_of_birth.as_ref()?;
    let exact = dob.precision == v1::DobPrecision::Exact as i32 || dob.precision == 0;
    if !exact || dob.value.len() != 10 {
        return None;
    }
    let given = normalise_name(&person.given_name);
    let family = normalise_name(&person.family_name);
    if given.is_empty() || family.is_empty() {
        return None;
    }
    Some(format!("{given}|{family}|{}", dob.value))
}

fn normalise_name(name: &str) -> String {
    name.split_whitespace()
        .map(|word| {
            word.chars()
                .filter(|c| c.is_alphabetic())
                .flat_map(char::to_lowercase)
                .collect::<String>()
        })
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn person(dob: Option<(&str, v1::DobPrecision)>, claimed_age: Option<u32>) -> v1::Person {
        v1::Person {
            given_name: "Ana".into(),
            family_name: "Hoxha".into(),
            date_of_birth: dob.map(|(value, precision)| v1::DateOfBirth {
                value: value.into(),
                precision: precision as i32,
            }),
            claimed_age,
            ..Default::default()
        }
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_default()
    }

    #[test]
    fn may_be_under_18_is_a_child() {
        let at = day("2026-11-23");
        assert_eq!(
            child_status(
                &person(Some(("2008-11-24", v1::DobPrecision::Exact)), None),
                at
            ),
            (true, ChildBasis::DateOfBirth)
        );
        assert_eq!(
            child_status(
                &person(Some(("2008-11-23", v1::DobPrecision::Exact)), None),
                at
            ),
            (false, ChildBasis::Adult)
        );
        // Year only: could be born 2008-12-31, so may be 17.
        assert!(child_status(&person(Some(("2008", v1::DobPrecision::Year)), None), at).0);
        assert!(
            !child_status(
                &person(Some(("2008-10", v1::DobPrecision::Month)), None),
                at
            )
            .0
        );
        assert_eq!(
            child_status(&person(None, Some(16)), at),
            (true, ChildBasis::ClaimedAge)
        );
        assert_eq!(
            child_status(&person(None, Some(0)), at),
            (true, ChildBasis::ClaimedAge)
        );
        assert_eq!(
            child_status(&person(None, Some(30)), at),
            (false, ChildBasis::Adult)
        );
        assert_eq!(
            child_status(&person(None, None), at),
            (true, ChildBasis::AgeUncertain)
        );
    }

    #[test]
    fn exact_match_key_needs_full_names_and_an_exact_date() {
        assert_eq!(
            match_key(&person(Some(("2015-03-02", v1::DobPrecision::Exact)), None)).as_deref(),
            Some("ana|hoxha|2015-03-02")
        );
        assert_eq!(
            match_key(&person(
                Some(("2015-01-01", v1::DobPrecision::Estimated)),
                None
            )),
            None
        );
        assert_eq!(
            match_key(&person(Some(("2015", v1::DobPrecision::Year)), None)),
            None
        );
        let mut spaced = person(Some(("2015-03-02", v1::DobPrecision::Exact)), None);
        spaced.given_name = "  ANA ".into();
        assert_eq!(match_key(&spaced).as_deref(), Some("ana|hoxha|2015-03-02"));
    }

    #[test]
    fn identifiers_ignore_formatting() {
        assert_eq!(normalise_identifier("485 777-3456"), "4857773456");
        assert_eq!(normalise_identifier("ab12"), "AB12");
    }
}
