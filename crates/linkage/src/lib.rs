//! Probabilistic person linkage (Fellegi–Sunter) for records of people who are often
//! children, often without identifiers, named in several transliterations, with estimated
//! dates of birth.
//!
//! - [`compare`]: comparison levels per field (pure).
//! - [`model`]: m/u probabilities per level, weights, match probability, bands.
//! - [`blocking`]: keys that bring candidate pairs together without scanning everything.
//! - [`batch`]: scoring and clustering whole files (`kinlink link`).
//! - [`train`]: u by random sampling, m by expectation maximisation.
//! - [`synth`]: synthetic households with ground truth, for evaluation.

pub mod batch;
pub mod blocking;
pub mod compare;
pub mod model;
pub mod normalise;
pub mod synth;
pub mod train;

pub use compare::{Dob, PersonRecord};
pub use model::{Band, Model, Scored};

/// Errors of the linkage crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("model file is not valid: {0}")]
    Model(#[from] serde_json::Error),
    #[error("model {field} has no level {level}")]
    MissingLevel { field: String, level: String },
    #[error("date_of_birth on record {id} is not YYYY-MM-DD, YYYYMMDD, YYYY-MM or YYYY")]
    BadDate { id: String },
}
