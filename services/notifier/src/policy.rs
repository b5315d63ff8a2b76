//! Pure delivery policy: what one attempt's outcome means for the alert. Retry timing is data
//! (`notifier.retry_delays_ms`), so operators tune it without code changes.

use std::time::Duration;

/// What one HTTP attempt came back with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Any 2xx.
    Accepted(u16),
    /// A non-2xx status, with the server's `Retry-After` if it sent one.
    Status(u16, Option<Duration>),
    /// No response: connection refused, timeout, TLS failure.
    NoResponse,
    /// No usable endpoint: none configured, or disabled after a 410.
    NoEndpoint,
}

/// Why delivery stopped without success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// 410 Gone: the endpoint was withdrawn; it is disabled.
    Gone,
    /// Every retry of the schedule failed.
    Exhausted,
    NoEndpoint,
}

/// What happens next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Delivered,
    /// Try again after this pause.
    RetryAfter(Duration),
    /// Stop: the alert needs a person (escalation, dead-letter topic).
    GiveUp(GiveUp),
}

/// Decides the next step after attempt number `attempts_made` (1-based) ended in `outcome`.
/// `delays[i]` is the pause before attempt `i + 2`; `jitter` in [-1, 1] spreads it by ±20 %
/// so retries to a recovering endpoint do not arrive in step. A `Retry-After` longer than the
/// schedule's pause wins.
pub fn next_step(
    outcome: AttemptOutcome,
    attempts_made: u32,
    delays: &[Duration],
    jitter: f64,
) -> NextStep {
    let retry_after = match outcome {
        AttemptOutcome::Accepted(_) => return NextStep::Delivered,
        AttemptOutcome::Status(410, _) => return NextStep::GiveUp(GiveUp::Gone),
        AttemptOutcome::NoEndpoint => return NextStep::GiveUp(GiveUp::NoEndpoint),
        AttemptOutcome::Status(_, retry_after) => retry_after,
        AttemptOutcome::NoResponse => None,
    };
    let index = usize::try_from(attempts_made.saturating_sub(1)).unwrap_or(usize::MAX);
    match delays.get(index) {
        Some(delay) => {
            let spread = delay.mul_f64(1.0 + 0.2 * jitter.clamp(-1.0, 1.0));
            NextStep::RetryAfter(retry_after.map_or(spread, |server| server.max(spread)))
        }
        None => NextStep::GiveUp(GiveUp::Exhausted),
    }
}

/// Parses `Retry-After`: delay seconds, or an HTTP date.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (at.with_timezone(&chrono::Utc) - now).to_std().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn retries_follow_the_schedule_then_give_up() {
        let delays = [S(0), S(5)];
        assert_eq!(
            next_step(AttemptOutcome::Accepted(204), 1, &delays, 0.0),
            NextStep::Delivered
        );
        assert_eq!(
            next_step(AttemptOutcome::Status(503, None), 1, &delays, 0.0),
            NextStep::RetryAfter(S(0))
        );
        assert_eq!(
            next_step(AttemptOutcome::NoResponse, 2, &delays, 0.0),
            NextStep::RetryAfter(S(5))
        );
        assert_eq!(
            next_step(AttemptOutcome::Status(500, None), 3, &delays, 0.0),
            NextStep::GiveUp(GiveUp::Exhausted)
        );
        assert_eq!(
            next_step(AttemptOutcome::Status(410, None), 1, &delays, 0.0),
            NextStep::GiveUp(GiveUp::Gone)
        );
        assert_eq!(
            next_step(AttemptOutcome::NoEndpoint, 1, &delays, 0.0),
            NextStep::GiveUp(GiveUp::NoEndpoint)
        );
    }

    #[test]
    fn jitter_spreads_by_at_most_a_fifth() {
        let delays = [S(100)];
        assert_eq!(
            next_step(AttemptOutcome::NoResponse, 1, &delays, 1.0),
            NextStep::RetryAfter(S(120))
        );
        assert_eq!(
            next_step(AttemptOutcome::NoResponse, 1, &delays, -1.0),
            NextStep::RetryAfter(S(80))
        );
        assert_eq!(
            next_step(AttemptOutcome::NoResponse, 1, &delays, 7.0),
            NextStep::RetryAfter(S(120))
        );
    }

    #[test]
    fn retry_after_wins_when_longer() {
        let delays = [S(5)];
        assert_eq!(
            next_step(AttemptOutcome::Status(429, Some(S(60))), 1, &delays, 0.0),
            NextStep::RetryAfter(S(60))
        );
        assert_eq!(
            next_step(AttemptOutcome::Status(429, Some(S(1))), 1, &delays, 0.0),
            NextStep::RetryAfter(S(5))
        );
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
            .map(|d| d.to_utc())
            .unwrap_or_default();
        assert_eq!(parse_retry_after("120", now), Some(S(120)));
        assert_eq!(
            parse_retry_after("Mon, 23 Nov 2026 10:01:00 GMT", now),
            Some(S(60))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
