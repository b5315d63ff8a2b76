//! Shared fixtures for kinlink's tests, so each test file says only what its scenario needs.
//!
//! - [`TestResult`]: what every test returns, so `?` works on any error.
//! - [`referral`] and [`referral_record`]: a `ReferralReceived` of an adult with child
//!   dependants, as a stage would read it from the log.
//! - [`record`]: an envelope as a stage receives it.

use kinlink_eventlog::{Envelope, Record};
use kinlink_proto::v1;

/// What tests return: any error fails the test with its message.
pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A referral of `subject` with each of `children` as a child dependant living with them,
/// received at `received_at_ms`.
pub fn referral(
    id: &str,
    subject: v1::Person,
    children: Vec<v1::Person>,
    received_at_ms: i64,
) -> v1::ReferralReceived {
    v1::ReferralReceived {
        referral_id: id.into(),
        subject: Some(subject),
        dependants: children
            .into_iter()
            .map(|p| v1::Dependant {
                person: Some(p),
                relationship: v1::Relationship::Child as i32,
                with_subject: true,
            })
            .collect(),
        received_at: Some(kinlink_proto::timestamp_from_millis(received_at_ms)),
        ..Default::default()
    }
}

/// An envelope on `topic` as a stage reads it (partition 0, offset 0).
pub fn record(topic: &str, envelope: Envelope) -> Record {
    Record {
        topic: topic.into(),
        partition: 0,
        offset: 0,
        envelope,
    }
}

/// When [`referral_record`]'s referrals were received: November 2026.
pub const RECEIVED_AT_MS: i64 = 1_795_000_000_000;

/// [`referral`] received at [`RECEIVED_AT_MS`], wrapped as the record the enricher reads,
/// with event id `event-<id>`.
pub fn referral_record(id: &str, subject: v1::Person, children: Vec<v1::Person>) -> Record {
    let event = referral(id, subject, children, RECEIVED_AT_MS);
    record(
        kinlink_eventlog::topics::REFERRALS_RECEIVED,
        Envelope::new(format!("event-{id}"), "/test", id, id, 0, &event),
    )
}

/// A sealer with a fixed master key, for tests that open a log directly.
pub fn test_sealer() -> kinlink_eventlog::Sealer {
    kinlink_eventlog::Sealer::new(kinlink_eventlog::MasterKeys::new([7; 32], vec![]))
}
