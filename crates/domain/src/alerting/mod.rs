//! Alert rules (which facts raise an alert, and how urgent it is) and alert planning (which
//! alerts an event raises, for which bodies, by when).

pub mod planning;
pub mod rules;
