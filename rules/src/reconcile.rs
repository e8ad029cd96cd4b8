//! Whether a fleet line is what its GPUs cost. The lines of a cost report adding up (charged + idle +
//! unallocated = fleet) says nothing about the fleet line itself: a re-pricing that billed a MIG node as if
//! it had a ninth GPU still added up. So the fleet line is also checked against the price history: each
//! node's physical GPUs' observed time × the node's price in force (MIG devices add no time of their own,
//! they divide their parent's cost). Pure.
//!
//! Stored amounts are rounded to the micro-dollar per interval and split at bucket boundaries, and a price
//! can change inside a bucket (then the bucket's time may have been charged at either price), so a node
//! reconciles when its fleet line lies within its price × time range, give or take `ROUNDING_PER_ROW` per
//! stored GPU-bucket.

use serde::Serialize;

const NS_PER_HOUR: u128 = 3_600_000_000_000;

/// Micro-dollars of rounding allowed per stored (physical GPU, bucket) row.
pub const ROUNDING_PER_ROW: u128 = 2;

/// A rate from a node's price history: the instance price per hour (`None`: unpriced) over its GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub instance_micros_per_hour: Option<u64>,
    pub gpus: u32,
}

impl Rate {
    /// What `observed_ns` of one physical GPU cost at this rate, rounded down and up.
    pub fn cost_of(&self, observed_ns: u128) -> (u128, u128) {
        let Some(m) = self.instance_micros_per_hour else { return (0, 0) };
        let num = u128::from(m) * observed_ns;
        let den = NS_PER_HOUR * u128::from(self.gpus.max(1));
        (num / den, num.div_ceil(den))
    }
}

/// One node's fleet line over a window against its price history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeCheck {
    /// `cluster/name`.
    pub node: String,
    /// What its devices cost in the ledger, MIG devices included.
    pub fleet: u128,
    /// Its physical GPUs' observed time × the price in force: the least and the most it can be.
    pub expected_min: u128,
    pub expected_max: u128,
    /// Stored (physical GPU, bucket) rows: the rounding allowed.
    pub rows: u128,
}

impl NodeCheck {
    /// Adds time observed while the price was `at_start` or `at_end` (the same where it did not change).
    pub fn add_time(&mut self, at_start: Option<Rate>, at_end: Option<Rate>, observed_ns: u128, rows: u128) {
        let costs: Vec<(u128, u128)> =
            [at_start, at_end].into_iter().flatten().map(|r| r.cost_of(observed_ns)).collect();
        self.expected_min += costs.iter().map(|c| c.0).min().unwrap_or(0);
        self.expected_max += costs.iter().map(|c| c.1).max().unwrap_or(0);
        self.rows += rows;
    }

    /// Whether the fleet line is its GPUs' price × time, to the rounding.
    pub fn holds(&self) -> bool {
        let slack = ROUNDING_PER_ROW * self.rows;
        self.fleet + slack >= self.expected_min && self.fleet <= self.expected_max + slack
    }
}

impl std::fmt::Display for NodeCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let usd = gpucost_types::money::usd;
        write!(f, "{}: fleet {} USD, its GPUs' price × time ", self.node, usd(self.fleet))?;
        if self.expected_min == self.expected_max {
            write!(f, "{} USD", usd(self.expected_min))
        } else {
            write!(f, "{} to {} USD", usd(self.expected_min), usd(self.expected_max))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u128 = 3_600_000_000_000;
    const P4DE: Rate = Rate { instance_micros_per_hour: Some(40_965_700), gpus: 8 };

    #[test]
    fn a_node_reconciles_when_its_fleet_line_is_its_gpus_price_times_time() {
        let mut c = NodeCheck { node: "c/p4de".into(), ..Default::default() };
        // 8 GPUs × 161 h, one row per GPU-hour.
        c.add_time(Some(P4DE), Some(P4DE), 8 * 161 * HOUR, 8 * 161);
        assert_eq!((c.expected_min, c.expected_max), (6_595_477_700, 6_595_477_700));
        c.fleet = 6_595_477_700 - 100;
        assert!(c.holds(), "rounding");
        c.fleet = 6_595_477_700 + 161 * 5_120_712;
        assert!(!c.holds(), "a ninth GPU: {c}");
        c.fleet = 0;
        assert!(!c.holds(), "priced time at $0");
    }

    #[test]
    fn a_price_change_inside_a_bucket_allows_either_price_and_unpriced_time_costs_nothing() {
        let half = Rate { instance_micros_per_hour: Some(20_482_850), gpus: 8 };
        let mut c = NodeCheck::default();
        c.add_time(Some(P4DE), Some(half), HOUR, 1);
        assert_eq!((c.expected_min, c.expected_max), (2_560_356, 5_120_713));
        c.fleet = 3_000_000;
        assert!(c.holds());
        let mut u = NodeCheck::default();
        u.add_time(None, Some(Rate { instance_micros_per_hour: None, gpus: 1 }), HOUR, 1);
        assert!(u.holds() && u.expected_max == 0);
    }
}
