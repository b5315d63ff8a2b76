//! How long a referral's personal data is kept, as a plain function of what the referral says.
//!
//! Safeguarding records about a child are kept until the child's 25th birthday (the age to
//! which local authorities keep children's social care records, so a care leaver can still ask
//! what happened and why), taken at the youngest the child may be: a partial or estimated date
//! of birth counts from its latest possible day, a claimed age from the youngest birthday it
//! implies, and a child whose age is unknown is counted as born on the day of the referral.
//! A referral with no child (an adult alone) is kept for six years from receipt (limitation
//! periods for civil claims). The policy is settings (`privacy.retention`); this is the rule.

use chrono::{Months, NaiveDate};
use kinlink_proto::v1;

use crate::child::{child_status, latest_birth};

/// Retention periods, from settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Keep a referral with a child until the youngest child reaches this age.
    pub children_until_age: u32,
    /// Keep a referral with no child this many years after it was received.
    pub adult_only_years: u32,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            children_until_age: 25,
            adult_only_years: 6,
        }
    }
}

/// The last day a referral received on `received` is kept, given the people on it.
pub fn kept_until(
    received: NaiveDate,
    people: &[&v1::Person],
    policy: RetentionPolicy,
) -> NaiveDate {
    let years = |n: u32, from: NaiveDate| {
        from.checked_add_months(Months::new(12 * n))
            .unwrap_or(NaiveDate::MAX)
    };
    let mut until = years(policy.adult_only_years, received);
    for person in people {
        if child_status(person, received).0 {
            let born = latest_birth(person, received)
                .filter(|born| *born <= received)
                .unwrap_or(received);
            until = until.max(years(policy.children_until_age, born));
        }
    }
    until
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or(NaiveDate::MIN)
    }

    fn born(value: &str, precision: v1::DobPrecision) -> v1::Person {
        v1::Person {
            date_of_birth: Some(v1::DateOfBirth {
                value: value.to_owned(),
                precision: precision as i32,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_child_is_kept_until_25_and_an_adult_alone_for_six_years() {
        let received = date("2026-03-10");
        let policy = RetentionPolicy::default();
        let adult = born("1990-04-02", v1::DobPrecision::Exact);
        let child = born("2016-05-01", v1::DobPrecision::Exact);
        assert_eq!(kept_until(received, &[&adult], policy), date("2032-03-10"));
        assert_eq!(
            kept_until(received, &[&adult, &child], policy),
            date("2041-05-01")
        );
        // A year-only date counts from its last day; an estimate from the latest day it
        // allows (two years on), but never from after the referral.
        let year_only = born("2016", v1::DobPrecision::Year);
        assert_eq!(
            kept_until(received, &[&year_only], policy),
            date("2041-12-31")
        );
        let estimated = born("2024-01-01", v1::DobPrecision::Estimated);
        assert_eq!(
            kept_until(received, &[&estimated], policy),
            date("2051-01-01")
        );
        let recent_estimate = born("2025-06-01", v1::DobPrecision::Estimated);
        assert_eq!(
            kept_until(received, &[&recent_estimate], policy),
            date("2051-03-10")
        );
        // Unknown age: a child (s51), counted as born on the day of the referral.
        let unknown = v1::Person::default();
        assert_eq!(
            kept_until(received, &[&unknown], policy),
            date("2051-03-10")
        );
        // A claimed age of 9: the youngest birthday it allows.
        let claimed = v1::Person {
            claimed_age: Some(9),
            ..Default::default()
        };
        assert_eq!(
            kept_until(received, &[&claimed], policy),
            date("2042-03-10")
        );
    }

    #[test]
    fn the_youngest_child_sets_the_date_and_policy_changes_apply() {
        let received = date("2020-01-15");
        let older = born("2008-06-01", v1::DobPrecision::Exact);
        let younger = born("2012-02-29", v1::DobPrecision::Exact);
        let policy = RetentionPolicy {
            children_until_age: 21,
            adult_only_years: 2,
        };
        assert_eq!(
            kept_until(received, &[&older, &younger], policy),
            date("2033-02-28")
        );
    }
}
