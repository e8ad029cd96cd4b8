//! Reports finance books: chargeback per group for a period, the FinOps FOCUS export of the same money,
//! and the calendar periods both use.

pub mod chargeback;
pub mod focus;
pub mod model;
pub mod request;

use gpucost_ledger::prelude::*;
use gpucost_ledger::rows::Rows;
use gpucost_ledger::{ClosedPeriod, LedgerError};
use gpucost_types::period::{self, Cadence, DAY_NS, Period};

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

/// How much of a report's period the ledger holds data for: the buckets (hours) in which any agent
/// reported GPU time. A report over a period with no data, or part of it, says so instead of showing a
/// silent zero (docs/chargeback.md, "Coverage").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    /// The period's length.
    pub period_ns: u64,
    /// The part of it inside buckets with data (a bucket with any data counts whole).
    pub covered_ns: u64,
    /// The start of the first bucket with data and the end of the last one.
    pub first_ns: Option<u64>,
    pub last_ns: Option<u64>,
}

/// The hours of the period in which any agent reported (docs/chargeback.md, "Coverage").
#[derive(Debug, serde::Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct CoverageBody {
    pub pct: f64,
    pub covered_hours: f64,
    pub period_hours: f64,
    /// The start of the first hour with data, and the end of the last one (RFC 3339); null without data.
    pub first_data: Option<String>,
    pub last_data: Option<String>,
}

impl Coverage {
    /// The coverage of `period` by the buckets starting at `starts` (each `bucket_ns` long). Pure.
    pub fn of(period: &Period, starts: &[u64], bucket_ns: u64) -> Self {
        let clip = |s: u64| ((s + bucket_ns).min(period.to_ns), s.max(period.from_ns));
        Self {
            period_ns: period.len_ns(),
            covered_ns: starts.iter().map(|&s| clip(s)).map(|(end, start)| end.saturating_sub(start)).sum(),
            first_ns: starts.first().map(|&s| s.max(period.from_ns)),
            last_ns: starts.last().map(|&s| (s + bucket_ns).min(period.to_ns)),
        }
    }

    /// Reads the coverage of `period`'s own rows.
    pub fn read(ledger: &dyn Ledger, sources: &Sources, period: &Period) -> Result<Self, LedgerError> {
        let starts = ledger.data_buckets(&sources.own, period.from_ns, period.to_ns)?;
        Ok(Self::of(period, &starts, ledger.bucket_ns()))
    }

    /// The covered share of the period, in percent.
    pub fn pct(&self) -> f64 {
        if self.period_ns == 0 { 0.0 } else { self.covered_ns as f64 * 100.0 / self.period_ns as f64 }
    }

    pub fn is_empty(&self) -> bool {
        self.covered_ns == 0
    }

    /// What a reader must be told about `period` when data is missing for part or all of it; `None` when
    /// every hour of it has data.
    pub fn warning(&self, period: &Period) -> Option<String> {
        let span = format!("{} ({} to {})", period.label, period::utc(period.from_ns), period::utc(period.to_ns));
        let hours = |ns: u64| ns as f64 / 3.6e12;
        match (self.first_ns, self.last_ns) {
            _ if self.covered_ns >= self.period_ns => None,
            (Some(first), Some(last)) => Some(format!(
                "the ledger holds GPU time for {:.0} of the {:.0} hours of {span} ({:.2} %), from {} to {}: \
                 the report covers only part of the period",
                hours(self.covered_ns),
                hours(self.period_ns),
                self.pct(),
                period::utc(first),
                period::utc(last),
            )),
            _ => Some(format!("the ledger holds no GPU time for {span}: every figure of the report is zero")),
        }
    }

    /// The coverage as the chargeback's JSON gives it.
    pub fn body(&self) -> CoverageBody {
        CoverageBody {
            pct: self.pct(),
            covered_hours: self.covered_ns as f64 / 3.6e12,
            period_hours: self.period_ns as f64 / 3.6e12,
            first_data: self.first_ns.map(period::utc),
            last_data: self.last_ns.map(period::utc),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3_600_000_000_000;

    #[test]
    fn coverage_counts_the_hours_with_data_and_warns_when_some_are_missing() {
        let p = Period::parse("2026-11").unwrap();
        let full: Vec<u64> = (0..p.len_ns() / H).map(|i| p.from_ns + i * H).collect();
        assert_eq!(Coverage::of(&p, &full, H).warning(&p), None);
        let part = Coverage::of(&p, &[p.from_ns + 5 * H, p.from_ns + 6 * H], H);
        assert_eq!(
            (part.covered_ns, part.first_ns, part.last_ns),
            (2 * H, Some(p.from_ns + 5 * H), Some(p.from_ns + 7 * H))
        );
        let w = part.warning(&p).unwrap();
        assert!(w.contains("2 of the 720 hours") && w.contains("0.28 %") && w.contains("2026-11-01T05:00:00Z"), "{w}");
        let none = Coverage::of(&p, &[], H);
        assert!(none.is_empty() && none.warning(&p).unwrap().contains("no GPU time for 2026-11"));
    }
}
