//! Changing the past on purpose: re-pricing and re-attributing stored buckets, and closing billing periods.

use serde::Serialize;

use gpucost_rules::reconcile::NodeCheck;

/// What a re-attribution changed: per (old owner, new owner), how many workloads moved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReattributeReport {
    pub workloads: u64,
    pub moved: std::collections::BTreeMap<String, u64>,
}

/// What a re-pricing changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepriceReport {
    pub buckets: u64,
    pub old_micros: u128,
    pub new_micros: u128,
    /// Per node (`cluster/name`): old and new cost over the window.
    pub nodes: std::collections::BTreeMap<String, (u128, u128)>,
    /// Nodes whose priced GPU time the new prices leave unpriced or at $0, and why. A re-pricing with any
    /// is refused unless `RepriceOptions::allow_unpriced`.
    pub unpriced: std::collections::BTreeMap<String, String>,
    /// Every node in the window, re-priced, against its new price history (`cost::reconcile`).
    pub checked: Vec<NodeCheck>,
}

impl RepriceReport {
    /// The nodes whose fleet line is not their GPUs' price × time after the re-pricing.
    pub fn unreconciled(&self) -> impl Iterator<Item = &NodeCheck> {
        self.checked.iter().filter(|c| !c.holds())
    }

    /// Why a re-pricing with this report must not be written, if it must not: a node that would not
    /// reconcile, or priced GPU time taken to unpriced or $0 without `allow_unpriced`.
    pub fn refusal(&self, options: RepriceOptions) -> Option<String> {
        let unreconciled: Vec<String> = self.unreconciled().map(ToString::to_string).collect();
        if !unreconciled.is_empty() {
            return Some(format!(
                "re-pricing refused, nothing written: the fleet would not be its GPUs' price × time: {}",
                unreconciled.join("; ")
            ));
        }
        if !options.allow_unpriced && !self.unpriced.is_empty() {
            let nodes: Vec<String> = self.unpriced.iter().map(|(n, why)| format!("{n} ({why})")).collect();
            return Some(format!(
                "re-pricing refused, nothing written: it would take the priced GPU time of {} node(s) to unpriced \
                 or $0: {} (fix the prices file, or allow it with --allow-unpriced)",
                nodes.len(),
                nodes.join("; ")
            ));
        }
        None
    }
}

/// The price of a node (its GPU model and physical GPUs) at a time, or why it has none.
pub type PriceOf = dyn Fn(
    &gpucost_types::batch::Node,
    &str,
    u32,
    u64,
) -> Result<gpucost_types::money::GpuPrice, gpucost_rules::book::Unpriced>;

/// How to re-price.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepriceOptions {
    /// Work it out and report, write nothing.
    pub dry_run: bool,
    /// Let prices that leave priced GPU time unpriced or at $0 apply.
    pub allow_unpriced: bool,
}

/// A closed billing period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClosedPeriod {
    pub period: String,
    pub from_ns: u64,
    pub to_ns: u64,
    pub closed_at_ns: u64,
}
