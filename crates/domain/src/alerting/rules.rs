//! Pure alert rules: which facts about a child raise an alert, and how urgent it is. Rules
//! are versioned ([`RULES_VERSION`]); every alert records the version that raised it.

use kinlink_proto::v1::{self, ChildBasis, SubjectRole, Urgency};

use crate::deadline::Rag;

/// Version of these rules.
pub const RULES_VERSION: &str = "rules-v1";

/// The alert rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// A child (possibly under 18) is on a referral, as its subject or as a dependant.
    ChildReferral,
    /// A child listed as a dependant who has never been referred in their own right.
    UnrecognisedDependant,
    /// A linked child appears in a referral routed to a different body than before.
    CrossAuthorityReappearance,
    /// The child was on another referral within the repeat window: re-exploitation risk.
    RepeatReferral,
    /// A missing episode for a linked child.
    MissingChild,
    /// Age uncertain, or assessed adult while claiming to be a child.
    AgeDispute,
    /// A reasonable or conclusive grounds decision for the child, or for a parent.
    NrmDecision,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::ChildReferral => "child_referral",
            Rule::UnrecognisedDependant => "unrecognised_dependant",
            Rule::CrossAuthorityReappearance => "cross_authority_reappearance",
            Rule::RepeatReferral => "repeat_referral",
            Rule::MissingChild => "missing_child",
            Rule::AgeDispute => "age_dispute",
            Rule::NrmDecision => "nrm_decision",
        }
    }

    /// Priority of the rule on its own; urgency on the referral can raise it.
    pub fn base_rag(self) -> Rag {
        match self {
            Rule::MissingChild => Rag::Red,
            Rule::ChildReferral
            | Rule::UnrecognisedDependant
            | Rule::CrossAuthorityReappearance
            | Rule::RepeatReferral => Rag::Amber,
            Rule::AgeDispute | Rule::NrmDecision => Rag::Green,
        }
    }
}

/// What is known about a child on a referral, beyond the enriched event itself.
#[derive(Debug, Clone, Copy)]
pub struct ReferralContext {
    /// When the referral was received.
    pub referral_at_ms: i64,
    /// The last time the child was on another referral, if ever.
    pub previously_seen_at_ms: Option<i64>,
    /// Repeat-referral window.
    pub repeat_window_ms: i64,
}

/// The rules a child on a referral triggers (before routing; cross-authority reappearance
/// is decided against the routes, see [`reappeared_elsewhere`]).
pub fn referral_rules(child: &v1::EnrichedSubject, context: &ReferralContext) -> Vec<Rule> {
    let mut rules = vec![Rule::ChildReferral];
    if child.role == SubjectRole::Dependant as i32 && !child.ever_referred_in_own_right {
        rules.push(Rule::UnrecognisedDependant);
    }
    if child.child_basis == ChildBasis::AgeUncertain as i32 {
        rules.push(Rule::AgeDispute);
    }
    if let Some(seen) = context.previously_seen_at_ms
        && context.referral_at_ms.saturating_sub(seen) <= context.repeat_window_ms
    {
        rules.push(Rule::RepeatReferral);
    }
    rules
}

/// Bodies the child was routed to before that the current routes do not reach.
pub fn reappeared_elsewhere(previous: &[String], current: &[&str]) -> Vec<String> {
    previous
        .iter()
        .filter(|code| !current.contains(&code.as_str()))
        .cloned()
        .collect()
}

/// Priority of a set of rules: the most urgent rule wins, and an urgent or immediate referral
/// is always red.
pub fn rag(rules: &[Rule], urgency: i32) -> Rag {
    let urgent = matches!(
        Urgency::try_from(urgency),
        Ok(Urgency::Urgent | Urgency::Immediate)
    );
    if urgent {
        return Rag::Red;
    }
    rules
        .iter()
        .map(|r| r.base_rag())
        .min()
        .unwrap_or(Rag::Green)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(role: SubjectRole, basis: ChildBasis, own_right: bool) -> v1::EnrichedSubject {
        v1::EnrichedSubject {
            role: role as i32,
            child_basis: basis as i32,
            ever_referred_in_own_right: own_right,
            is_child: true,
            ..Default::default()
        }
    }

    const DAY: i64 = 86_400_000;

    fn context(previous_days_ago: Option<i64>) -> ReferralContext {
        ReferralContext {
            referral_at_ms: 1_000 * DAY,
            previously_seen_at_ms: previous_days_ago.map(|d| (1_000 - d) * DAY),
            repeat_window_ms: 365 * DAY,
        }
    }

    #[test]
    fn every_child_on_a_referral_raises_child_referral() {
        let subject = child(SubjectRole::ReferralSubject, ChildBasis::DateOfBirth, true);
        assert_eq!(
            referral_rules(&subject, &context(None)),
            [Rule::ChildReferral]
        );
    }

    #[test]
    fn unrecognised_dependants_and_age_disputes() {
        let dependant = child(SubjectRole::Dependant, ChildBasis::AgeUncertain, false);
        assert_eq!(
            referral_rules(&dependant, &context(None)),
            [
                Rule::ChildReferral,
                Rule::UnrecognisedDependant,
                Rule::AgeDispute
            ]
        );
        let known = child(SubjectRole::Dependant, ChildBasis::ClaimedAge, true);
        assert_eq!(
            referral_rules(&known, &context(None)),
            [Rule::ChildReferral]
        );
    }

    #[test]
    fn repeat_referral_only_within_the_window() {
        let subject = child(SubjectRole::ReferralSubject, ChildBasis::DateOfBirth, true);
        assert!(referral_rules(&subject, &context(Some(30))).contains(&Rule::RepeatReferral));
        assert!(!referral_rules(&subject, &context(Some(400))).contains(&Rule::RepeatReferral));
    }

    #[test]
    fn cross_authority_reappearance_names_only_new_ground() {
        let previous = vec!["E09000033".to_owned(), "E10000016".to_owned()];
        assert_eq!(
            reappeared_elsewhere(&previous, &["E10000016"]),
            ["E09000033"]
        );
        assert!(reappeared_elsewhere(&previous, &["E10000016", "E09000033"]).is_empty());
    }

    #[test]
    fn priority_takes_the_most_urgent_rule_and_urgency() {
        assert_eq!(
            rag(&[Rule::NrmDecision], Urgency::Routine as i32),
            Rag::Green
        );
        assert_eq!(
            rag(
                &[Rule::NrmDecision, Rule::ChildReferral],
                Urgency::Routine as i32
            ),
            Rag::Amber
        );
        assert_eq!(
            rag(&[Rule::MissingChild], Urgency::Routine as i32),
            Rag::Red
        );
        assert_eq!(rag(&[Rule::AgeDispute], Urgency::Urgent as i32), Rag::Red);
    }
}
