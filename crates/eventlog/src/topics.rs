//! The topics of the pipeline. Every topic is keyed by a case id (referral or alert), so the
//! events of one case stay in order within a partition.

/// Referrals streamed by agencies (`ReferralSubmission`), validated by intake.
pub const INTAKE_SUBMISSIONS: &str = "kinlink.intake.submissions";
/// Referrals accepted by intake (`ReferralReceived`).
pub const REFERRALS_RECEIVED: &str = "kinlink.referrals.received";
/// Follow-up events on a referral (NRM decisions, age assessments, missing/found episodes).
pub const REFERRAL_FOLLOWUPS: &str = "kinlink.referrals.followups";
/// Referrals with every person linked (`ReferralEnriched`).
pub const REFERRALS_ENRICHED: &str = "kinlink.referrals.enriched";
/// Alerts for an authority (`AlertRaised`).
pub const ALERTS_RAISED: &str = "kinlink.alerts.raised";
/// What happened to an alert afterwards: delivered, failed, acknowledged, escalated, resolved.
pub const ALERTS_LIFECYCLE: &str = "kinlink.alerts.lifecycle";
/// Person-registry changes: review tasks opened, merges and splits (keyed by person id).
pub const PERSONS_CHANGES: &str = "kinlink.persons.changes";

/// The pipeline's main topics.
pub const ALL: &[&str] = &[
    INTAKE_SUBMISSIONS,
    REFERRALS_RECEIVED,
    REFERRAL_FOLLOWUPS,
    REFERRALS_ENRICHED,
    ALERTS_RAISED,
    ALERTS_LIFECYCLE,
    PERSONS_CHANGES,
];

/// The stages that consume topics, each with its own dead-letter topic, and what they
/// consume. Stages and the ops tooling both read this, so they cannot disagree.
pub const STAGE_INPUTS: &[(&str, &[&str])] = &[
    ("intake", &[INTAKE_SUBMISSIONS]),
    ("enricher", &[REFERRALS_RECEIVED]),
    (
        "alerter",
        &[REFERRALS_ENRICHED, REFERRAL_FOLLOWUPS, PERSONS_CHANGES],
    ),
    ("notifier", &[ALERTS_RAISED]),
];

/// The stages, in pipeline order.
pub const STAGES: &[&str] = &["intake", "enricher", "alerter", "notifier"];

/// The topics a stage consumes.
pub fn inputs_of(stage: &str) -> Vec<String> {
    STAGE_INPUTS
        .iter()
        .find(|(name, _)| *name == stage)
        .map(|(_, topics)| topics.iter().map(|t| (*t).to_owned()).collect())
        .unwrap_or_default()
}

/// The submissions topic of one agency, `kinlink.intake.submissions.<agency id>`. Broker ACLs
/// let only that agency's principal write to it, so the topic itself says who produced an
/// event; on the shared [`INTAKE_SUBMISSIONS`] only the CloudEvents `source` does.
pub fn agency_submissions(agency: &str) -> String {
    format!("{INTAKE_SUBMISSIONS}.{agency}")
}

/// The agency whose own submissions topic `topic` is, if it is one.
pub fn agency_of_submissions_topic(topic: &str) -> Option<&str> {
    topic
        .strip_prefix(INTAKE_SUBMISSIONS)?
        .strip_prefix('.')
        .filter(|agency| !agency.is_empty())
}

/// Whether `agency` can name a Kafka topic (`[A-Za-z0-9._-]`, and short enough).
pub fn valid_topic_suffix(agency: &str) -> bool {
    !agency.is_empty()
        && agency.len() <= 200
        && agency
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The dead-letter topic of a stage: events it rejected, with the reason attached.
pub fn dead_letter(stage: &str) -> String {
    format!("kinlink.{stage}.dlq")
}

/// Every topic kinlink needs, dead-letter topics included.
pub fn all_with_dead_letters() -> Vec<String> {
    ALL.iter()
        .map(|t| (*t).to_owned())
        .chain(STAGES.iter().map(|s| dead_letter(s)))
        .collect()
}

/// Stable partition choice for the embedded log (FNV-1a); Kafka partitions by message key.
pub fn partition_for(key: &str, partitions: i32) -> i32 {
    let hash = kinlink_proto::stable_hash(&[key.as_bytes()]);
    let partitions = u64::try_from(partitions.max(1)).unwrap_or(1);
    i32::try_from(hash % partitions).unwrap_or(0)
}
