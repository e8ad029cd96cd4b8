//! Reports finance books: chargeback per group for a period, the FinOps FOCUS export of the same money,
//! and the calendar periods both use.

pub mod chargeback;
pub mod focus;
pub mod period;
