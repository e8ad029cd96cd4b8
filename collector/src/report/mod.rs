//! Reports finance books: chargeback per group for a period, the FinOps FOCUS export of the same money,
//! and the calendar periods both use.

pub mod chargeback;
pub mod focus;
pub mod period;

use crate::ledger::rows::Rows;
use crate::ledger::{ClosedPeriod, Ledger, LedgerError};
use period::{Cadence, DAY_NS, Period};

/// A window as wide as the ledger's time (whole days, so on bucket boundaries).
pub const ALL_TIME: (u64, u64) = (0, i64::MAX as u64 / DAY_NS * DAY_NS);

/// Which rows a period's report reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// The period's own GPU time: frozen when it is closed, live otherwise.
    pub own: Rows,
    /// GPU time of earlier closed months that arrived after they closed, billed in this period: booked
    /// when this period is closed; outstanding when this is the first open month after the last closed.
    pub corrections: Option<Rows>,
    pub closed: Option<ClosedPeriod>,
}

/// The rows `period`'s report reads.
pub fn sources(ledger: &dyn Ledger, period: &Period) -> Result<Sources, LedgerError> {
    let closed = ledger.closed_periods()?;
    if let Some(c) = closed.iter().find(|c| c.period == period.label) {
        return Ok(Sources {
            own: Rows::Booked { period: c.period.clone(), corrections: false },
            corrections: Some(Rows::Booked { period: c.period.clone(), corrections: true }),
            closed: Some(c.clone()),
        });
    }
    let first_open = closed.iter().max_by_key(|c| c.to_ns).map(|last| Period::containing(Cadence::Monthly, last.to_ns));
    let corrections = (first_open.as_ref() == Some(period))
        .then(|| Rows::Outstanding { closed: closed.iter().map(|c| (c.from_ns, c.to_ns)).collect() });
    Ok(Sources { own: Rows::Live, corrections, closed: None })
}
