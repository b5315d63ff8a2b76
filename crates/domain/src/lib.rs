//! kinlink's domain rules as plain functions and types.
//!
//! Everything here decides; nothing here does I/O. There is no async runtime, database,
//! broker or HTTP crate behind it (CI checks with `cargo tree`), and the time of a decision is
//! always an argument. Services load what a decision needs, call it, and persist the result.
//!
//! - [`child`]: who is a child (Modern Slavery Act s51) and who must stay anonymous (s52(3)).
//! - [`linking`]: linkage records, strong-identifier precedence, link/review decisions and the
//!   household a referral describes.
//! - [`routing`]: postcodes, the authority register, and which bodies must hear about a child
//!   (where they live, are found, or were placed from), or why a person must route it.
//! - [`alerting`]: the alert rules and the alert planner.
//! - [`deadline`]: priorities (RAG), deadline policies and the working calendar.
//! - [`lifecycle`]: the alert, delivery, escalation, hand-off and triage state machines, and
//!   escalation scheduling.
//! - [`retention`]: how long a referral's personal data is kept.
//! - [`statistics`]: returns folded from the events, with small-number suppression.
//!
//! The reference data the rules need (authority register, postcode table, bank holidays) is
//! shipped in `data/` and compiled in, each with its licence and the script that regenerates it.

pub mod alerting;
pub mod child;
pub mod deadline;
pub mod lifecycle;
pub mod linking;
pub mod retention;
pub mod routing;
pub mod statistics;

#[cfg(test)]
mod test_fixtures {
    use kinlink_proto::v1;

    /// A person with the given date of birth (value, precision) and claimed age.
    pub fn person(dob: Option<(&str, v1::DobPrecision)>, claimed_age: Option<u32>) -> v1::Person {
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
}

/// Reference data that failed to load. The shipped data is checked by tests, so these only
/// appear for a file given at run time or a corrupted build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("authority register row {row} does not parse: {message}")]
    Register { row: usize, message: String },
    #[error("postcode table does not decompress: {0}")]
    PostcodeTableGzip(String),
    #[error("postcode table line {line} is malformed")]
    PostcodeTableLine { line: usize },
    #[error("bank holiday list line {line} is not `YYYY-MM-DD,name`")]
    BankHolidays { line: usize },
}
