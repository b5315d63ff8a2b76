//! Pure alert rules: which persons get an alert, how urgent it is, and by when the authority
//! must decide. Councils decide within one working day; urgent cases within hours.

use chrono::{DateTime, Datelike, Duration, Utc, Weekday};
use kinlink_proto::v1::{Priority, Urgency};

/// Rule name for a child who is a dependant on someone else's referral.
pub const RULE_DEPENDENT_CHILD: &str = "dependent-child";
/// Rule name for a child who is the subject of the referral.
pub const RULE_CHILD_SUBJECT: &str = "child-subject";

/// How long an urgent alert may wait for a decision.
pub const URGENT_WINDOW: Duration = Duration::hours(4);

pub fn priority(urgency: i32) -> Priority {
    match Urgency::try_from(urgency).unwrap_or(Urgency::Unspecified) {
        Urgency::Urgent | Urgency::Immediate => Priority::Urgent,
        Urgency::Routine | Urgency::Unspecified => Priority::Standard,
    }
}

/// Decision deadline: urgent alerts within [`URGENT_WINDOW`]; standard ones by the same time
/// on the next working day (Monday to Friday; bank holidays are not modelled yet).
pub fn deadline(raised_at: DateTime<Utc>, priority: Priority) -> DateTime<Utc> {
    if priority == Priority::Urgent {
        return raised_at + URGENT_WINDOW;
    }
    let mut deadline = raised_at + Duration::days(1);
    while matches!(deadline.weekday(), Weekday::Sat | Weekday::Sun) {
        deadline += Duration::days(1);
    }
    deadline
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn standard_deadlines_skip_the_weekend() {
        // Friday 2026-11-27 15:00 -> Monday 2026-11-30 15:00.
        assert_eq!(
            deadline(at("2026-11-27T15:00:00Z"), Priority::Standard),
            at("2026-11-30T15:00:00Z")
        );
        assert_eq!(
            deadline(at("2026-11-24T09:00:00Z"), Priority::Standard),
            at("2026-11-25T09:00:00Z")
        );
        assert_eq!(
            deadline(at("2026-11-28T09:00:00Z"), Priority::Urgent),
            at("2026-11-28T13:00:00Z")
        );
    }

    #[test]
    fn urgency_maps_to_priority() {
        assert_eq!(priority(Urgency::Immediate as i32), Priority::Urgent);
        assert_eq!(priority(Urgency::Routine as i32), Priority::Standard);
        assert_eq!(priority(99), Priority::Standard);
    }
}
