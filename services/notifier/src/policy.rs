//! Pure delivery policy: what one attempt's outcome means for the alert. Retry timing is data
//! (`notifier.retry_delays_ms`), so operators tune it without code changes.

use std::time::Duration;

/// What one HTTP attempt came back with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Any 2xx.
    Accepted(u16),
    /// A non-2xx status.
    Status(u16),
    /// No response: connection refused, timeout, TLS failure.
    NoResponse,
    /// No endpoint is configured for the authority.
    NoEndpoint,
}

/// What happens next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Delivered,
    /// Try again after this pause.
    RetryAfter(Duration),
    /// Stop: the alert needs a person (escalation and the dead-letter path).
    GiveUp,
}

/// Decides the next step after attempt number `attempts_made` (1-based) ended in `outcome`.
/// `delays[i]` is the pause before attempt `i + 2`.
pub fn next_step(outcome: AttemptOutcome, attempts_made: u32, delays: &[Duration]) -> NextStep {
    match outcome {
        AttemptOutcome::Accepted(_) => NextStep::Delivered,
        // 410 Gone: the endpoint was withdrawn; retrying cannot help.
        AttemptOutcome::Status(410) | AttemptOutcome::NoEndpoint => NextStep::GiveUp,
        AttemptOutcome::Status(_) | AttemptOutcome::NoResponse => {
            let index = usize::try_from(attempts_made.saturating_sub(1)).unwrap_or(usize::MAX);
            delays
                .get(index)
                .map_or(NextStep::GiveUp, |delay| NextStep::RetryAfter(*delay))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_follow_the_schedule_then_give_up() {
        let delays = [Duration::from_secs(0), Duration::from_secs(5)];
        assert_eq!(
            next_step(AttemptOutcome::Accepted(204), 1, &delays),
            NextStep::Delivered
        );
        assert_eq!(
            next_step(AttemptOutcome::Status(503), 1, &delays),
            NextStep::RetryAfter(Duration::from_secs(0))
        );
        assert_eq!(
            next_step(AttemptOutcome::NoResponse, 2, &delays),
            NextStep::RetryAfter(Duration::from_secs(5))
        );
        assert_eq!(
            next_step(AttemptOutcome::Status(500), 3, &delays),
            NextStep::GiveUp
        );
        assert_eq!(
            next_step(AttemptOutcome::Status(410), 1, &delays),
            NextStep::GiveUp
        );
        assert_eq!(
            next_step(AttemptOutcome::NoEndpoint, 1, &delays),
            NextStep::GiveUp
        );
    }
}
