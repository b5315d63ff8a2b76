//! Who is a child, and what the Modern Slavery Act says follows from it.
//!
//! Anyone who *may* be under 18 is a child (s51), and a child needs no consent. An adult who
//! did not consent may only be reported anonymously (s52(3)): intake refuses identifying
//! fields for them, the enricher never links them, and no alert ever names them.

use chrono::{Datelike, NaiveDate};
use kinlink_proto::v1::{self, ChildBasis};

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

/// Whether a referral's subject may only be reported as an anonymous Duty-to-Notify report
/// (s52(3)): an adult (as far as [`child_status`] can tell) who did not consent.
pub fn anonymous_duty_to_notify(subject_is_child: bool, consent_refused: bool) -> bool {
    consent_refused && !subject_is_child
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::person;

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
    fn only_an_adult_without_consent_is_anonymous() {
        assert!(anonymous_duty_to_notify(false, true));
        assert!(
            !anonymous_duty_to_notify(true, true),
            "a child needs no consent"
        );
        assert!(!anonymous_duty_to_notify(false, false));
        assert!(!anonymous_duty_to_notify(true, false));
    }
}
