//! The state machines of an alert after it is raised, as enums with transition functions.
//! Services load the current state, ask for the transition, and persist the result with a
//! guard on the state they loaded (`... WHERE state = <from>`), so two writers never both
//! apply one transition.
//!
//! - [`AlertState`]: what the authority has done with the alert (open, acknowledged, resolved).
//! - [`DeliveryState`]: whether the webhook reached the authority (triage, pending, delivered,
//!   failed).
//! - [`EscalationState`]: one escalation timer (scheduled, fired, skipped, cancelled, and for an
//!   on-call page, resolve pending then resolved). [`schedule_escalations`] is the one place
//!   the timers of an alert are planned, for alerts routed by the alerter and by an operator.
//! - [`HandoffState`] and [`TriageState`]: a lives/found hand-off and a triage item.
//!
//! States are stored as their `as_str` names; [`parse`](AlertState::parse) reads them back and
//! an unknown name is `None`, never a guess.

use std::fmt;

/// Names and parsing shared by every state enum.
macro_rules! stored_names {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every state, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The name stored in the database and shown to users.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }

            /// Reads a stored name.
            pub fn parse(name: &str) -> Option<Self> {
                match name {
                    $($name => Some($ty::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// What an authority has done with an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertState {
    /// Raised and not yet acknowledged: escalation timers run.
    Open,
    /// The authority has seen it: escalation stops.
    Acknowledged,
    /// The authority recorded an outcome. Final.
    Resolved,
    /// No longer needs action: the referral was withdrawn or the missing child found. The
    /// authority was told in an amendment. Final.
    Closed,
}

stored_names!(AlertState {
    Open => "open",
    Acknowledged => "acknowledged",
    Resolved => "resolved",
    Closed => "closed",
});

/// What is asked of an alert: by its authority (acknowledge, resolve), or by the pipeline
/// when the case changes (close).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertCommand {
    Acknowledge,
    Resolve,
    Close,
    /// The body is responsible again (a later correction routed the child back to it after
    /// the alert was closed as re-routed).
    Reopen,
}

/// The result of applying a command to a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<S> {
    /// The state changes: persist `to` guarded on `from`, and carry out the effects.
    Move { from: S, to: S },
    /// Already done (or overtaken): answer with the current state and change nothing, so a
    /// retried request is harmless.
    Stay(S),
}

impl<S: Copy> Step<S> {
    /// The state after the step.
    pub fn state(self) -> S {
        match self {
            Step::Move { to, .. } => to,
            Step::Stay(state) => state,
        }
    }
}

impl AlertState {
    /// Acknowledging an open alert acknowledges it; an acknowledged or resolved one stays as
    /// it is. Resolving works from open or acknowledged; a resolved alert stays resolved with
    /// its first outcome.
    /// Closing works from open or acknowledged; a resolved alert keeps its outcome and a
    /// closed one stays closed.
    pub fn apply(self, command: AlertCommand) -> Step<AlertState> {
        let to = match (self, command) {
            (AlertState::Open, AlertCommand::Acknowledge) => AlertState::Acknowledged,
            (AlertState::Open | AlertState::Acknowledged, AlertCommand::Resolve) => {
                AlertState::Resolved
            }
            (AlertState::Open | AlertState::Acknowledged, AlertCommand::Close) => {
                AlertState::Closed
            }
            (AlertState::Closed, AlertCommand::Reopen) => AlertState::Open,
            _ => return Step::Stay(self),
        };
        Step::Move { from: self, to }
    }

    /// Whether escalation timers of an alert in this state may still fire.
    pub fn escalates(self) -> bool {
        self == AlertState::Open
    }
}

/// Whether an alert's webhook has reached its authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// No body was found: waits for a person to route it.
    Triage,
    /// To be sent (or retried) at its next attempt time.
    Pending,
    /// A 2xx answer was received for the current revision.
    Delivered,
    /// Retries ran out or the endpoint is gone; escalated at once.
    Failed,
}

stored_names!(DeliveryState {
    Triage => "triage",
    Pending => "pending",
    Delivered => "delivered",
    Failed => "failed",
});

/// How one delivery attempt ended, as far as the delivery state cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    /// Try again later.
    Retry,
    /// Give up: retries exhausted or the endpoint told us to stop.
    GiveUp,
}

impl DeliveryState {
    /// The state a newly raised alert is filed in.
    pub fn filed(routed: bool) -> Self {
        if routed {
            DeliveryState::Pending
        } else {
            DeliveryState::Triage
        }
    }

    /// A later revision of the alert arrived: it is delivered again, unless it still waits in
    /// triage (it is delivered once routed).
    pub fn amended(self) -> Self {
        match self {
            DeliveryState::Triage => DeliveryState::Triage,
            _ => DeliveryState::Pending,
        }
    }

    /// The state after an attempt.
    pub fn after_attempt(outcome: AttemptOutcome) -> Self {
        match outcome {
            AttemptOutcome::Delivered => DeliveryState::Delivered,
            AttemptOutcome::Retry => DeliveryState::Pending,
            AttemptOutcome::GiveUp => DeliveryState::Failed,
        }
    }

    /// An operator routed a triage item: it is delivered like any routed alert. `None` when
    /// the alert is not waiting in triage.
    pub fn routed_by_operator(self) -> Option<Self> {
        (self == DeliveryState::Triage).then_some(DeliveryState::Pending)
    }
}

/// Who an escalation timer pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EscalationLevel {
    /// The authority's secondary contact, at the deadline.
    Secondary,
    /// kinlink's on-call, some time after the deadline.
    OnCall,
    /// kinlink's on-call, when an alert has waited in triage past its SLA.
    Triage,
    /// kinlink's on-call, when the authority where a child lives has not decided a lives/found
    /// hand-off by the alert's deadline (acknowledging the alert is not deciding).
    Handoff,
}

impl EscalationLevel {
    /// The number stored in `escalations.level`.
    pub fn number(self) -> i64 {
        match self {
            EscalationLevel::Secondary => 1,
            EscalationLevel::OnCall => 2,
            EscalationLevel::Triage => 3,
            EscalationLevel::Handoff => 4,
        }
    }

    /// Reads a stored level number.
    pub fn from_number(level: i64) -> Option<Self> {
        match level {
            1 => Some(EscalationLevel::Secondary),
            2 => Some(EscalationLevel::OnCall),
            3 => Some(EscalationLevel::Triage),
            4 => Some(EscalationLevel::Handoff),
            _ => None,
        }
    }
}

/// The target stored for the on-call level.
pub const ON_CALL_TARGET: &str = "on_call";

/// One escalation timer to file with an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationTimer {
    pub level: EscalationLevel,
    /// When it fires, in milliseconds since the epoch.
    pub due_at_ms: i64,
    /// Secondary contact URL (empty when the authority has none: the timer is skipped when
    /// due), or [`ON_CALL_TARGET`].
    pub target: String,
}

/// The escalation timers of an alert due at `deadline_ms`: the authority's secondary contact
/// at the deadline, then kinlink on-call `on_call_after_ms` later. Used for alerts filed by
/// routing and for triage items an operator routes, so the two cannot drift.
pub fn schedule_escalations(
    deadline_ms: i64,
    secondary_target: Option<&str>,
    on_call_after_ms: i64,
) -> [EscalationTimer; 2] {
    [
        EscalationTimer {
            level: EscalationLevel::Secondary,
            due_at_ms: deadline_ms,
            target: secondary_target.unwrap_or_default().to_owned(),
        },
        EscalationTimer {
            level: EscalationLevel::OnCall,
            due_at_ms: deadline_ms.saturating_add(on_call_after_ms),
            target: ON_CALL_TARGET.to_owned(),
        },
    ]
}

/// The escalation timer of an alert waiting in triage: kinlink on-call at the triage SLA
/// deadline. Routing the alert stops it (and resolves the page if it was sent); the routed
/// alert then gets the timers of [`schedule_escalations`].
pub fn schedule_triage_escalation(sla_deadline_ms: i64) -> EscalationTimer {
    EscalationTimer {
        level: EscalationLevel::Triage,
        due_at_ms: sla_deadline_ms,
        target: ON_CALL_TARGET.to_owned(),
    }
}

impl EscalationLevel {
    /// Every level, in the order they fire.
    pub const ALL: [EscalationLevel; 4] = [
        EscalationLevel::Triage,
        EscalationLevel::Secondary,
        EscalationLevel::OnCall,
        EscalationLevel::Handoff,
    ];

    /// The levels an acknowledgement stops: the alert has been seen. A pending hand-off still
    /// needs its decision.
    pub const ACKNOWLEDGED: [EscalationLevel; 3] = [
        EscalationLevel::Triage,
        EscalationLevel::Secondary,
        EscalationLevel::OnCall,
    ];

    /// Whether this level pages on-call (a page that must be resolved once the alert is
    /// dealt with).
    pub fn pages_on_call(self) -> bool {
        matches!(
            self,
            EscalationLevel::OnCall | EscalationLevel::Triage | EscalationLevel::Handoff
        )
    }
}

/// The escalation timer of an alert asking the authority where the child lives to take
/// responsibility: kinlink on-call at the alert's deadline if the hand-off is still undecided.
pub fn schedule_handoff_escalation(deadline_ms: i64) -> EscalationTimer {
    EscalationTimer {
        level: EscalationLevel::Handoff,
        due_at_ms: deadline_ms,
        target: ON_CALL_TARGET.to_owned(),
    }
}

/// One escalation timer's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EscalationState {
    /// Waiting for its due time.
    Scheduled,
    /// Sent.
    Fired,
    /// Due, but there was nobody to send it to.
    Skipped,
    /// The alert was acknowledged or resolved before it was due.
    Cancelled,
    /// An on-call page was sent and the alert has since been acknowledged: the page is to be
    /// resolved.
    ResolvePending,
    /// The on-call page was resolved. Final.
    Resolved,
}

stored_names!(EscalationState {
    Scheduled => "scheduled",
    Fired => "fired",
    Skipped => "skipped",
    Cancelled => "cancelled",
    ResolvePending => "resolve_pending",
    Resolved => "resolved",
});

/// What happens to an escalation timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscalationEvent {
    /// Its due time came while the alert was open; `has_target` says whether there is anyone
    /// to page.
    Due { has_target: bool },
    /// The alert was acknowledged or resolved.
    AlertClosed,
    /// The on-call service accepted the `resolve`.
    PageResolved,
}

impl EscalationState {
    /// The next state of a timer at `level` on `event`; [`Step::Stay`] when the event does
    /// not apply (a timer already fired is not fired again).
    pub fn apply(self, level: EscalationLevel, event: EscalationEvent) -> Step<EscalationState> {
        let to = match (self, event) {
            (EscalationState::Scheduled, EscalationEvent::Due { has_target: true }) => {
                EscalationState::Fired
            }
            (EscalationState::Scheduled, EscalationEvent::Due { has_target: false }) => {
                EscalationState::Skipped
            }
            (EscalationState::Scheduled, EscalationEvent::AlertClosed) => {
                EscalationState::Cancelled
            }
            (EscalationState::Fired, EscalationEvent::AlertClosed) if level.pages_on_call() => {
                EscalationState::ResolvePending
            }
            (EscalationState::ResolvePending, EscalationEvent::PageResolved) => {
                EscalationState::Resolved
            }
            _ => return Step::Stay(self),
        };
        Step::Move { from: self, to }
    }
}

/// A lives/found hand-off: the authority where the child lives is asked to take
/// responsibility from the authority where the child was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandoffState {
    Pending,
    /// The authority where the child lives takes responsibility.
    Accepted,
    /// It does not, with a reason; the authority where the child was found keeps it.
    Declined,
    /// It names a third body, which is alerted and asked in turn (a new hand-off).
    Transferred,
}

stored_names!(HandoffState {
    Pending => "pending",
    Accepted => "accepted",
    Declined => "declined",
    Transferred => "transferred",
});

/// What the home authority decides about a hand-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffDecision {
    Accept,
    Decline,
    Transfer,
}

impl HandoffState {
    /// The home authority accepts: only a pending hand-off moves.
    pub fn accept(self) -> Step<HandoffState> {
        self.decide(HandoffDecision::Accept)
    }

    /// The home authority decides: only a pending hand-off moves, and a decision stands.
    pub fn decide(self, decision: HandoffDecision) -> Step<HandoffState> {
        match self {
            HandoffState::Pending => Step::Move {
                from: self,
                to: match decision {
                    HandoffDecision::Accept => HandoffState::Accepted,
                    HandoffDecision::Decline => HandoffState::Declined,
                    HandoffDecision::Transfer => HandoffState::Transferred,
                },
            },
            HandoffState::Accepted | HandoffState::Declined | HandoffState::Transferred => {
                Step::Stay(self)
            }
        }
    }
}

/// An alert no body could be found for, waiting for a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TriageState {
    Open,
    /// An operator named the body; the alert was filed for it.
    Routed,
    /// The alert no longer needs action (the referral was withdrawn) before anyone routed it.
    Closed,
}

stored_names!(TriageState {
    Open => "open",
    Routed => "routed",
    Closed => "closed",
});

impl TriageState {
    /// An operator routes the item: only an open item moves.
    pub fn route(self) -> Step<TriageState> {
        match self {
            TriageState::Open => Step::Move {
                from: self,
                to: TriageState::Routed,
            },
            TriageState::Routed | TriageState::Closed => Step::Stay(self),
        }
    }

    /// The alert waiting in triage no longer needs action: only an open item moves.
    pub fn close(self) -> Step<TriageState> {
        match self {
            TriageState::Open => Step::Move {
                from: self,
                to: TriageState::Closed,
            },
            TriageState::Routed | TriageState::Closed => Step::Stay(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in AlertState::ALL {
            assert_eq!(AlertState::parse(s.as_str()), Some(*s));
        }
        for s in DeliveryState::ALL {
            assert_eq!(DeliveryState::parse(s.as_str()), Some(*s));
        }
        for s in EscalationState::ALL {
            assert_eq!(EscalationState::parse(s.as_str()), Some(*s));
        }
        for s in HandoffState::ALL {
            assert_eq!(HandoffState::parse(s.as_str()), Some(*s));
        }
        for s in TriageState::ALL {
            assert_eq!(TriageState::parse(s.as_str()), Some(*s));
        }
        assert_eq!(AlertState::parse("withdrawn"), None);
        assert_eq!(
            EscalationLevel::from_number(EscalationLevel::OnCall.number()),
            Some(EscalationLevel::OnCall)
        );
        assert_eq!(EscalationLevel::from_number(5), None);
        assert!(!EscalationLevel::ACKNOWLEDGED.contains(&EscalationLevel::Handoff));
        assert_eq!(
            schedule_handoff_escalation(7).level,
            EscalationLevel::Handoff
        );
        for level in EscalationLevel::ALL {
            assert_eq!(EscalationLevel::from_number(level.number()), Some(level));
        }
        let triage = schedule_triage_escalation(900_000);
        assert_eq!(
            (triage.level, triage.due_at_ms, triage.target.as_str()),
            (EscalationLevel::Triage, 900_000, ON_CALL_TARGET)
        );
        assert_eq!(
            EscalationState::Fired
                .apply(EscalationLevel::Triage, EscalationEvent::AlertClosed)
                .state(),
            EscalationState::ResolvePending,
            "a triage page is resolved once someone routes the alert"
        );
    }

    #[test]
    fn acknowledge_once_then_resolve() {
        let open = AlertState::Open;
        assert_eq!(
            open.apply(AlertCommand::Acknowledge),
            Step::Move {
                from: AlertState::Open,
                to: AlertState::Acknowledged
            }
        );
        assert_eq!(
            AlertState::Acknowledged.apply(AlertCommand::Acknowledge),
            Step::Stay(AlertState::Acknowledged)
        );
        assert_eq!(
            AlertState::Acknowledged
                .apply(AlertCommand::Resolve)
                .state(),
            AlertState::Resolved
        );
        assert_eq!(
            open.apply(AlertCommand::Resolve).state(),
            AlertState::Resolved
        );
        assert_eq!(
            AlertState::Resolved.apply(AlertCommand::Acknowledge),
            Step::Stay(AlertState::Resolved)
        );
        assert_eq!(
            AlertState::Resolved.apply(AlertCommand::Resolve),
            Step::Stay(AlertState::Resolved)
        );
        assert_eq!(open.apply(AlertCommand::Close).state(), AlertState::Closed);
        assert_eq!(
            AlertState::Acknowledged.apply(AlertCommand::Close).state(),
            AlertState::Closed
        );
        assert_eq!(
            AlertState::Resolved.apply(AlertCommand::Close),
            Step::Stay(AlertState::Resolved)
        );
        assert_eq!(
            AlertState::Closed.apply(AlertCommand::Acknowledge),
            Step::Stay(AlertState::Closed)
        );
        assert!(!AlertState::Closed.escalates());
        assert_eq!(
            AlertState::Closed.apply(AlertCommand::Reopen).state(),
            AlertState::Open
        );
        assert_eq!(
            AlertState::Resolved.apply(AlertCommand::Reopen),
            Step::Stay(AlertState::Resolved)
        );
        assert!(open.escalates());
        assert!(!AlertState::Acknowledged.escalates());
    }

    #[test]
    fn delivery_states() {
        assert_eq!(DeliveryState::filed(false), DeliveryState::Triage);
        assert_eq!(DeliveryState::filed(true), DeliveryState::Pending);
        assert_eq!(DeliveryState::Triage.amended(), DeliveryState::Triage);
        assert_eq!(DeliveryState::Delivered.amended(), DeliveryState::Pending);
        assert_eq!(DeliveryState::Failed.amended(), DeliveryState::Pending);
        assert_eq!(
            DeliveryState::after_attempt(AttemptOutcome::Retry),
            DeliveryState::Pending
        );
        assert_eq!(
            DeliveryState::after_attempt(AttemptOutcome::GiveUp),
            DeliveryState::Failed
        );
        assert_eq!(
            DeliveryState::Triage.routed_by_operator(),
            Some(DeliveryState::Pending)
        );
        assert_eq!(DeliveryState::Pending.routed_by_operator(), None);
    }

    #[test]
    fn escalation_timers_are_planned_from_the_deadline() {
        let [secondary, on_call] = schedule_escalations(1_000, Some("https://x"), 500);
        assert_eq!(
            (
                secondary.level,
                secondary.due_at_ms,
                secondary.target.as_str()
            ),
            (EscalationLevel::Secondary, 1_000, "https://x")
        );
        assert_eq!(
            (on_call.level, on_call.due_at_ms, on_call.target.as_str()),
            (EscalationLevel::OnCall, 1_500, ON_CALL_TARGET)
        );
        let [secondary, _] = schedule_escalations(1_000, None, 0);
        assert!(secondary.target.is_empty());
        let [_, late] = schedule_escalations(i64::MAX, None, 10);
        assert_eq!(late.due_at_ms, i64::MAX);
    }

    #[test]
    fn a_timer_fires_at_most_once() {
        use EscalationEvent::*;
        use EscalationLevel::*;
        let s = EscalationState::Scheduled;
        assert_eq!(
            s.apply(Secondary, Due { has_target: true }).state(),
            EscalationState::Fired
        );
        assert_eq!(
            s.apply(Secondary, Due { has_target: false }).state(),
            EscalationState::Skipped
        );
        assert_eq!(
            EscalationState::Fired.apply(OnCall, Due { has_target: true }),
            Step::Stay(EscalationState::Fired)
        );
        assert_eq!(
            s.apply(OnCall, AlertClosed).state(),
            EscalationState::Cancelled
        );
        // Only an on-call page needs resolving once the alert closes.
        assert_eq!(
            EscalationState::Fired.apply(Secondary, AlertClosed),
            Step::Stay(EscalationState::Fired)
        );
        assert_eq!(
            EscalationState::Fired.apply(OnCall, AlertClosed).state(),
            EscalationState::ResolvePending
        );
        assert_eq!(
            EscalationState::ResolvePending
                .apply(OnCall, PageResolved)
                .state(),
            EscalationState::Resolved
        );
        assert_eq!(
            EscalationState::Cancelled.apply(OnCall, Due { has_target: true }),
            Step::Stay(EscalationState::Cancelled)
        );
    }

    #[test]
    fn handoff_and_triage_move_once() {
        assert_eq!(
            HandoffState::Pending.accept().state(),
            HandoffState::Accepted
        );
        assert_eq!(
            HandoffState::Accepted.accept(),
            Step::Stay(HandoffState::Accepted)
        );
        assert_eq!(
            HandoffState::Pending
                .decide(HandoffDecision::Decline)
                .state(),
            HandoffState::Declined
        );
        assert_eq!(
            HandoffState::Declined.decide(HandoffDecision::Accept),
            Step::Stay(HandoffState::Declined),
            "a decision stands"
        );
        assert_eq!(TriageState::Open.route().state(), TriageState::Routed);
        assert_eq!(TriageState::Routed.route(), Step::Stay(TriageState::Routed));
        assert_eq!(TriageState::Open.close().state(), TriageState::Closed);
        assert_eq!(TriageState::Closed.route(), Step::Stay(TriageState::Closed));
    }
}
