//! Who is a child, and what the Modern Slavery Act says follows from it.
//!
//! Anyone who *may* be under 18 is a child (s51), and a child needs no consent. An adult who
//! did not consent may only be reported anonymously (s52(3)): intake refuses identifying
//! fields for them, the enricher never links them, and no alert ever names them.

use chrono::{Datelike, NaiveDate};
use kinlink_proto::v1::{self, ChildBasis};

/// How much younger than an estimated date of birth says a person may be, in years. An
/// estimate is a guess from appearance or an account; age disputes routinely find people
/// assessed as adults to be children, so an estimate that puts someone at 18 or 19 still
/// leaves them possibly under 18.
pub const ESTIMATE_UNCERTAINTY_YEARS: i32 = 2;

/// What an age assessment (by a local authority, or a court) decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssessedAge {
    Child,
    Adult,
}

impl AssessedAge {
    /// From the proto outcome; unspecified is no decision.
    pub fn from_proto(outcome: i32) -> Option<Self> {
        match v1::AgeAssessmentOutcome::try_from(outcome) {
            Ok(v1::AgeAssessmentOutcome::Child) => Some(AssessedAge::Child),
            Ok(v1::AgeAssessmentOutcome::Adult) => Some(AssessedAge::Adult),
            _ => None,
        }
    }

    /// The name stored with an assessment.
    pub fn as_str(self) -> &'static str {
        match self {
            AssessedAge::Child => "child",
            AssessedAge::Adult => "adult",
        }
    }

    /// Reads a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "child" => Some(AssessedAge::Child),
            "adult" => Some(AssessedAge::Adult),
            _ => None,
        }
    }
}

/// Whether a person is treated as a child on `at`, and why, before any age assessment.
///
/// Anyone who *may* be under 18 is a child (Modern Slavery Act s51): a partial date of birth
/// may be any day it allows, an estimated one may be up to [`ESTIMATE_UNCERTAINTY_YEARS`]
/// later, a claimed age under 18 outweighs a date that says adult, and an unknown age counts
/// as a child. When the evidence allows both, the basis is `AgeUncertain`: a child until
/// assessed.
pub fn child_status(person: &v1::Person, at: NaiveDate) -> (bool, ChildBasis) {
    child_status_assessed(person, at, None)
}

/// [`child_status`], unless an age assessment has decided: the latest assessment of the
/// person stands until another one replaces it.
pub fn child_status_assessed(
    person: &v1::Person,
    at: NaiveDate,
    assessed: Option<AssessedAge>,
) -> (bool, ChildBasis) {
    match assessed {
        Some(AssessedAge::Child) => return (true, ChildBasis::Assessed),
        Some(AssessedAge::Adult) => return (false, ChildBasis::Assessed),
        None => {}
    }
    let claims_child = person.claimed_age.is_some_and(|age| age < 18);
    if let Some((oldest, youngest)) = person
        .date_of_birth
        .as_ref()
        .and_then(|dob| birth_range(&dob.value, dob.precision))
    {
        let youngest_age = age_on(youngest, at);
        let oldest_age = age_on(oldest, at);
        return if youngest_age >= 18 && !claims_child {
            (false, ChildBasis::Adult)
        } else if oldest_age < 18 {
            (true, ChildBasis::DateOfBirth)
        } else {
            (true, ChildBasis::AgeUncertain)
        };
    }
    match person.claimed_age {
        Some(age) if age < 18 => (true, ChildBasis::ClaimedAge),
        Some(_) => (false, ChildBasis::Adult),
        None => (true, ChildBasis::AgeUncertain),
    }
}

/// The latest birth date the evidence allows on `at` (the youngest the person may be): the end
/// of a partial or estimated date's range, or the birthday a claimed age implies at its
/// youngest. `None` when nothing about the age is known.
pub fn latest_birth(person: &v1::Person, at: NaiveDate) -> Option<NaiveDate> {
    if let Some((_, youngest)) = person
        .date_of_birth
        .as_ref()
        .and_then(|dob| birth_range(&dob.value, dob.precision))
    {
        return Some(youngest);
    }
    let age = person.claimed_age?;
    at.checked_sub_months(chrono::Months::new(12 * age))
}

/// The earliest and latest birth dates a date of birth allows: a partial ISO date spans its
/// year or month (`2008` -> 2008-01-01 to 2008-12-31), and an estimated one widens by
/// [`ESTIMATE_UNCERTAINTY_YEARS`] each way.
fn birth_range(value: &str, precision: i32) -> Option<(NaiveDate, NaiveDate)> {
    let mut parts = value.split('-');
    let year: i32 = parts.next()?.parse().ok()?;
    let (earliest, latest) = match (parts.next(), parts.next()) {
        (None, _) => (
            NaiveDate::from_ymd_opt(year, 1, 1)?,
            NaiveDate::from_ymd_opt(year, 12, 31)?,
        ),
        (Some(month), None) => {
            let month: u32 = month.parse().ok()?;
            let first = NaiveDate::from_ymd_opt(year, month, 1)?;
            let first_of_next = if month == 12 {
                NaiveDate::from_ymd_opt(year + 1, 1, 1)?
            } else {
                NaiveDate::from_ymd_opt(year, month + 1, 1)?
            };
            (first, first_of_next.pred_opt()?)
        }
        (Some(month), Some(day)) => {
            let date = NaiveDate::from_ymd_opt(year, month.parse().ok()?, day.parse().ok()?)?;
            (date, date)
        }
    };
    if precision == v1::DobPrecision::Estimated as i32 {
        let years = chrono::Months::new(12 * ESTIMATE_UNCERTAINTY_YEARS.unsigned_abs());
        Some((
            earliest.checked_sub_months(years)?,
            latest.checked_add_months(years)?,
        ))
    } else {
        Some((earliest, latest))
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
    fn an_estimate_that_says_18_or_19_may_still_be_a_child() {
        let at = day("2026-11-23");
        // Estimated 19: could be 17.
        assert_eq!(
            child_status(
                &person(Some(("2007-06-01", v1::DobPrecision::Estimated)), None),
                at
            ),
            (true, ChildBasis::AgeUncertain)
        );
        // The same date given as exact is an adult.
        assert_eq!(
            child_status(
                &person(Some(("2007-06-01", v1::DobPrecision::Exact)), None),
                at
            ),
            (false, ChildBasis::Adult)
        );
        // An estimate that says 25 cannot be under 18.
        assert_eq!(
            child_status(
                &person(Some(("2001-06-01", v1::DobPrecision::Estimated)), None),
                at
            ),
            (false, ChildBasis::Adult)
        );
        // An estimate that says 10 is a child either way.
        assert_eq!(
            child_status(
                &person(Some(("2016-06-01", v1::DobPrecision::Estimated)), None),
                at
            ),
            (true, ChildBasis::DateOfBirth)
        );
        // A year that straddles the 18th birthday is uncertain.
        assert_eq!(
            child_status(&person(Some(("2008", v1::DobPrecision::Year)), None), at),
            (true, ChildBasis::AgeUncertain)
        );
    }

    #[test]
    fn a_claimed_child_with_an_adult_date_is_a_child_until_assessed() {
        let at = day("2026-11-23");
        let disputed = person(Some(("2000-01-01", v1::DobPrecision::Exact)), Some(16));
        assert_eq!(
            child_status(&disputed, at),
            (true, ChildBasis::AgeUncertain)
        );
        assert_eq!(
            child_status_assessed(&disputed, at, Some(AssessedAge::Adult)),
            (false, ChildBasis::Assessed)
        );
        let young = person(Some(("2016-01-01", v1::DobPrecision::Exact)), None);
        assert_eq!(
            child_status_assessed(&young, at, Some(AssessedAge::Adult)),
            (false, ChildBasis::Assessed),
            "the assessment decides"
        );
        assert_eq!(
            child_status_assessed(&disputed, at, Some(AssessedAge::Child)),
            (true, ChildBasis::Assessed)
        );
        assert_eq!(
            AssessedAge::parse(AssessedAge::Adult.as_str()),
            Some(AssessedAge::Adult)
        );
        assert_eq!(
            AssessedAge::from_proto(v1::AgeAssessmentOutcome::Unspecified as i32),
            None
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
