//! Intake's problems: the shared RFC 9457 [`Problem`] with the two details agencies see most.

pub use kinlink_runtime::http::{FieldError, Problem};

/// A 503: nothing was accepted; retry with the same key.
pub fn unavailable() -> Problem {
    Problem::unavailable("Nothing was accepted; retry later with the same Idempotency-Key.")
}

/// A 400 listing every failing field of a referral or event.
pub fn invalid(errors: Vec<FieldError>) -> Problem {
    Problem::invalid(
        "invalid-referral",
        "The referral was refused whole; fix the listed fields and send it again.",
        errors,
    )
}
