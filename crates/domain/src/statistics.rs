//! Returns (statistics) for the bodies that fund and run this work, with small-number
//! suppression so that no published figure identifies a child.
//!
//! - [`returns`]: figures folded from the pipeline's events, so a replay reproduces them.
//! - [`suppression`]: counts from 1 to 4 hidden, and as many more as it takes for totals not
//!   to give them away.

pub mod returns;
pub mod suppression;
