//! Splits one GPU's cost over one interval among its holders, by policy (PRODUCT.md, the cost model).
//!
//! - `utilization`: each holder pays its used share × the cost; the rest is **idle**, booked to the
//!   cluster's idle line.
//! - `hybrid` (default): each holder pays its used share; the idle rest is split among the holders by the
//!   memory they hold (equally when none holds any) and reported as their idle cost.
//! - `allocation`: the holders pay the whole cost, split by memory held (equally when none); what
//!   OpenCost does. Each holder's charge is shown as used (up to its used share) and idle (the rest).
//! - A GPU nobody holds is **unallocated**.
//!
//! Money is integer micro-dollars, split with largest-remainder rounding, so that for every GPU and
//! interval: Σ holders' (used + idle) + idle line + unallocated = cost, exactly. Pure.

use gpucost_types::money::Micros;
use gpucost_types::policy::Policy;

use crate::share::split_proportionally;

/// What one holder did with the GPU over the interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HolderUse {
    /// GPU time used (SM share × interval), already normalised so the holders' sum ≤ the interval.
    pub used_ns: u64,
    pub memory_bytes: u64,
}

/// One holder's part of the cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Charge {
    pub used: Micros,
    pub idle: Micros,
}

impl Charge {
    pub fn total(&self) -> Micros {
        self.used + self.idle
    }
}

/// A GPU interval's cost, divided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    /// One per holder, in the order given.
    pub holders: Vec<Charge>,
    /// Idle cost nobody is charged for (the cluster's idle line; `utilization` only).
    pub idle: Micros,
    /// Cost of a GPU nobody held.
    pub unallocated: Micros,
}

impl Split {
    pub fn total(&self) -> Micros {
        self.holders.iter().map(Charge::total).sum::<Micros>() + self.idle + self.unallocated
    }
}

/// Memory weights; equal weights when nobody holds memory.
fn memory_weights(holders: &[HolderUse]) -> Vec<u64> {
    if holders.iter().all(|h| h.memory_bytes == 0) {
        vec![1; holders.len()]
    } else {
        holders.iter().map(|h| h.memory_bytes).collect()
    }
}

/// Splits `total` by the holders' used time, the rest (time not used) last.
fn by_use(total: u64, duration_ns: u64, holders: &[HolderUse]) -> (Vec<u64>, u64) {
    let used: u64 = holders.iter().map(|h| h.used_ns).sum();
    let mut weights: Vec<u64> = holders.iter().map(|h| h.used_ns).collect();
    weights.push(duration_ns.saturating_sub(used));
    let mut parts = split_proportionally(total, &weights);
    let rest = parts.pop().unwrap_or(0);
    (parts, rest)
}

/// Divides `cost` (one GPU, one interval of `duration_ns`) among `holders` by `policy`.
pub fn split(cost: Micros, duration_ns: u64, holders: &[HolderUse], policy: Policy) -> Split {
    if holders.is_empty() {
        return Split { holders: Vec::new(), idle: 0, unallocated: cost };
    }
    let (used, rest) = by_use(cost, duration_ns, holders);
    match policy {
        Policy::Utilization => Split {
            holders: used.into_iter().map(|u| Charge { used: u, idle: 0 }).collect(),
            idle: rest,
            unallocated: 0,
        },
        Policy::Hybrid => {
            let idle = split_proportionally(rest, &memory_weights(holders));
            Split {
                holders: used.into_iter().zip(idle).map(|(u, i)| Charge { used: u, idle: i }).collect(),
                idle: 0,
                unallocated: 0,
            }
        }
        Policy::Allocation => {
            let charge = split_proportionally(cost, &memory_weights(holders));
            let holders =
                charge.into_iter().zip(used).map(|(c, u)| Charge { used: u.min(c), idle: c - u.min(c) }).collect();
            Split { holders, idle: 0, unallocated: 0 }
        }
    }
}

/// Splits an interval's energy like the used share: each holder gets its used share, the rest is idle
/// energy (returned last).
pub fn split_energy(energy_mj: u64, duration_ns: u64, holders: &[HolderUse]) -> (Vec<u64>, u64) {
    by_use(energy_mj, duration_ns, holders)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const D: u64 = 15_000_000_000;

    fn h(used_ns: u64, memory_bytes: u64) -> HolderUse {
        HolderUse { used_ns, memory_bytes }
    }

    #[test]
    fn utilization_charges_use_and_books_the_rest_as_idle() {
        let s = split(1_000, D, &[h(D / 2, 1), h(D / 4, 3)], Policy::Utilization);
        assert_eq!(s.holders, vec![Charge { used: 500, idle: 0 }, Charge { used: 250, idle: 0 }]);
        assert_eq!((s.idle, s.unallocated), (250, 0));
    }

    #[test]
    fn hybrid_splits_the_idle_rest_among_holders_by_memory() {
        let s = split(1_000, D, &[h(D / 2, 1), h(D / 4, 3)], Policy::Hybrid);
        assert_eq!(s.holders, vec![Charge { used: 500, idle: 63 }, Charge { used: 250, idle: 187 }]);
        assert_eq!(s.idle, 0);
    }

    #[test]
    fn allocation_charges_holders_the_whole_gpu_by_memory() {
        let s = split(1_000, D, &[h(D / 2, 1), h(D / 4, 3)], Policy::Allocation);
        assert_eq!(s.holders.iter().map(Charge::total).collect::<Vec<_>>(), vec![250, 750]);
        assert_eq!(s.holders[0], Charge { used: 250, idle: 0 }, "used is capped by the charge");
        assert_eq!(s.holders[1], Charge { used: 250, idle: 500 });
    }

    #[test]
    fn with_no_memory_held_idle_and_allocation_split_equally() {
        let s = split(1_000, D, &[h(0, 0), h(0, 0)], Policy::Hybrid);
        assert_eq!(s.holders, vec![Charge { used: 0, idle: 500 }, Charge { used: 0, idle: 500 }]);
    }

    #[test]
    fn a_gpu_nobody_holds_is_unallocated() {
        for p in Policy::ALL {
            assert_eq!(split(777, D, &[], p), Split { holders: vec![], idle: 0, unallocated: 777 });
        }
    }

    #[test]
    fn over_reported_use_never_charges_more_than_the_gpu_costs() {
        let s = split(1_000, D, &[h(D, 1), h(D, 1)], Policy::Utilization);
        assert_eq!(s.total(), 1_000);
        assert_eq!(s.idle, 0);
    }

    fn holders() -> impl Strategy<Value = Vec<HolderUse>> {
        prop::collection::vec((0..=D, prop_oneof![Just(0u64), 0..80u64 << 30]).prop_map(|(u, m)| h(u, m)), 0..8)
    }

    proptest! {
        #[test]
        fn every_policy_conserves_the_cost_exactly(cost in 0u64..50_000_000, hs in holders(), energy in 0u64..10_000_000) {
            // Shares as the collector hands them over: normalised to the interval.
            let total: u64 = hs.iter().map(|x| x.used_ns).sum();
            let hs: Vec<HolderUse> = if total > D {
                let w: Vec<u64> = hs.iter().map(|x| x.used_ns).collect();
                split_proportionally(D, &w).into_iter().zip(&hs).map(|(u, x)| h(u, x.memory_bytes)).collect()
            } else { hs };
            for p in Policy::ALL {
                let s = split(cost, D, &hs, p);
                prop_assert_eq!(s.total(), cost, "{:?}", p);
                prop_assert_eq!(s.holders.len(), hs.len());
            }
            let (parts, rest) = split_energy(energy, D, &hs);
            prop_assert_eq!(parts.iter().sum::<u64>() + rest, energy);
            // Used cost is the same under utilization and hybrid.
            let u = split(cost, D, &hs, Policy::Utilization);
            let y = split(cost, D, &hs, Policy::Hybrid);
            prop_assert_eq!(u.holders.iter().map(|c| c.used).collect::<Vec<_>>(), y.holders.iter().map(|c| c.used).collect::<Vec<_>>());
        }
    }
}
