//! Re-pricing stored history: one (bucket, device) at a time, a new cost is divided among the bucket's
//! holders in the proportions the stored split had, so that every policy still adds up to the new cost
//! exactly. Pure.
//!
//! Used time is rescaled first (it is shared by `utilization` and `hybrid`); the `utilization` idle line is
//! the rest, and `hybrid` divides that same rest among holders as before; `allocation` charges are
//! rescaled and split into used (at most the holder's used cost) and idle. A bucket that had no price
//! has no stored proportions: it is divided by time (used time, held time) instead.

use crate::price::{mig_parts, mig_slices};
use crate::share::split_proportionally;
use gpucost_types::money::GpuPrice;
use gpucost_types::money::Micros;

/// One device of a node in one bucket, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeDevice {
    pub uuid: String,
    pub model: String,
    pub mig_parent_uuid: Option<String>,
    pub mig_profile: Option<String>,
    /// A MIG device has none of its own: its parent's time is the GPU's time.
    pub observed_ns: u64,
}

/// What each of a node's devices costs over the bucket starting at `bucket_start_ns` at `price` (`None`:
/// unpriced, nothing): a physical GPU its price × its observed time, divided with its MIG slices by their
/// compute slices as at ingest (`price::mig_parts`). A MIG slice is never priced as a GPU of its own, so
/// the devices add up to the physical GPUs' price × time whatever the MIG layout. The time is priced with
/// the cumulative formula from the bucket's start: a whole bucket costs what ingest charged for it. A GPU
/// whose cost comes out as `stored` had it keeps its stored division with its slices (made interval by
/// interval at ingest, so rounded differently), so that re-pricing at the same prices changes nothing.
pub fn node_bucket_costs(
    price: Option<&GpuPrice>,
    bucket_start_ns: u64,
    devices: &[NodeDevice],
    stored: &[Micros],
) -> Vec<Micros> {
    let mut costs = vec![0; devices.len()];
    let Some(price) = price else { return costs };
    for (pi, parent) in devices.iter().enumerate().filter(|(_, d)| d.mig_parent_uuid.is_none()) {
        let full = price.cost(bucket_start_ns, bucket_start_ns + parent.observed_ns);
        let slices: Vec<(usize, (u64, u64))> = devices
            .iter()
            .enumerate()
            .filter(|(_, d)| d.mig_parent_uuid.as_deref() == Some(parent.uuid.as_str()))
            .filter_map(|(i, d)| mig_slices(d.mig_profile.as_deref().unwrap_or_default(), &d.model).map(|s| (i, s)))
            .collect();
        let gpu: Vec<usize> = slices.iter().map(|s| s.0).chain([pi]).collect();
        if gpu.iter().map(|&i| stored.get(i).copied().unwrap_or(0)).sum::<Micros>() == full {
            gpu.iter().for_each(|&i| costs[i] = stored[i]);
            continue;
        }
        let (parts, own) = mig_parts(full, &slices.iter().map(|s| s.1).collect::<Vec<_>>());
        for ((i, _), part) in slices.iter().zip(parts) {
            costs[*i] = part;
        }
        costs[pi] = own;
    }
    costs
}

/// What a holder had in one bucket of one device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HolderBucket {
    pub held_ns: u64,
    pub used_ns: u64,
    pub used: Micros,
    pub hybrid_idle: Micros,
    pub allocation_used: Micros,
    pub allocation_idle: Micros,
}

/// One device's bucket: its cost lines and its holders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceBucket {
    pub observed_ns: u64,
    pub held_ns: u64,
    pub cost: Micros,
    pub idle: Micros,
    pub unallocated: Micros,
    pub holders: Vec<HolderBucket>,
}

/// `bucket` divided anew for `new_cost`.
pub fn rescale(bucket: &DeviceBucket, new_cost: Micros) -> DeviceBucket {
    let h = &bucket.holders;
    let priced = bucket.cost > 0;
    // Utilization: used per holder, the idle line, unallocated.
    let mut weights: Vec<u64> =
        if priced { h.iter().map(|x| x.used).collect() } else { h.iter().map(|x| x.used_ns).collect() };
    if priced {
        weights.extend([bucket.idle, bucket.unallocated]);
    } else {
        let used: u64 = h.iter().map(|x| x.used_ns).sum();
        weights.extend([bucket.held_ns.saturating_sub(used), bucket.observed_ns.saturating_sub(bucket.held_ns)]);
    }
    let mut parts = split_proportionally(new_cost, &weights);
    if weights.iter().all(|&w| w == 0) {
        // Nothing to go by: the whole cost is unallocated.
        parts = vec![0; weights.len()];
        *parts.last_mut().expect("two lines at least") = new_cost;
    }
    let unallocated = parts.pop().unwrap_or(0);
    let idle = parts.pop().unwrap_or(0);
    let used = parts;
    // Hybrid: the same idle rest, divided among holders as before (by held time when unpriced).
    let idle_weights: Vec<u64> = if priced && h.iter().any(|x| x.hybrid_idle > 0) {
        h.iter().map(|x| x.hybrid_idle).collect()
    } else {
        h.iter().map(|x| x.held_ns.max(1)).collect()
    };
    let hybrid_idle = if h.is_empty() { Vec::new() } else { split_proportionally(idle, &idle_weights) };
    // Allocation: the holders' charges rescaled over what is not unallocated.
    let alloc_weights: Vec<u64> = if priced {
        h.iter().map(|x| x.allocation_used + x.allocation_idle).collect()
    } else {
        h.iter().map(|x| x.held_ns).collect()
    };
    let held_cost = new_cost - unallocated;
    let alloc = if h.is_empty() { Vec::new() } else { split_proportionally(held_cost, &alloc_weights) };
    let holders = h
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let charge = alloc.get(i).copied().unwrap_or(0);
            let u = used[i].min(charge);
            HolderBucket {
                used: used[i],
                hybrid_idle: hybrid_idle[i],
                allocation_used: u,
                allocation_idle: charge - u,
                ..*x
            }
        })
        .collect();
    DeviceBucket {
        cost: new_cost,
        idle: if h.is_empty() { 0 } else { idle },
        unallocated: if h.is_empty() { new_cost } else { unallocated },
        holders,
        ..*bucket
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn conserves(b: &DeviceBucket) -> bool {
        let used: Micros = b.holders.iter().map(|h| h.used).sum();
        let hybrid: Micros = b.holders.iter().map(|h| h.used + h.hybrid_idle).sum();
        let alloc: Micros = b.holders.iter().map(|h| h.allocation_used + h.allocation_idle).sum();
        used + b.idle + b.unallocated == b.cost && hybrid + b.unallocated == b.cost && alloc + b.unallocated == b.cost
    }

    #[test]
    fn a_price_cut_scales_every_line_and_keeps_the_proportions() {
        let old = DeviceBucket {
            observed_ns: 3_600,
            held_ns: 3_600,
            cost: 1_000,
            idle: 400,
            unallocated: 0,
            holders: vec![
                HolderBucket {
                    held_ns: 3_600,
                    used_ns: 1_800,
                    used: 500,
                    hybrid_idle: 100,
                    allocation_used: 250,
                    allocation_idle: 0,
                },
                HolderBucket {
                    held_ns: 3_600,
                    used_ns: 360,
                    used: 100,
                    hybrid_idle: 300,
                    allocation_used: 100,
                    allocation_idle: 650,
                },
            ],
        };
        let new = rescale(&old, 500);
        assert_eq!(new.holders.iter().map(|h| h.used).collect::<Vec<_>>(), vec![250, 50]);
        assert_eq!(new.idle, 200);
        assert_eq!(new.holders.iter().map(|h| h.hybrid_idle).collect::<Vec<_>>(), vec![50, 150]);
        assert_eq!(new.holders[1].allocation_used + new.holders[1].allocation_idle, 375);
        assert!(conserves(&new));
    }

    fn gpu(uuid: &str, parent: Option<&str>, profile: Option<&str>, observed_ns: u64) -> NodeDevice {
        NodeDevice {
            uuid: uuid.into(),
            model: "NVIDIA A100-SXM4-80GB".into(),
            mig_parent_uuid: parent.map(String::from),
            mig_profile: profile.map(String::from),
            observed_ns,
        }
    }

    #[test]
    fn a_node_in_mig_mode_costs_its_physical_gpus_and_no_more() {
        // The demo's p4de: eight A100s, the first in MIG mode as 3g + 4g slices that add no time of their own.
        let hour = 3_600_000_000_000;
        let mut devices: Vec<NodeDevice> = (0..8).map(|i| gpu(&format!("GPU-{i}"), None, None, hour)).collect();
        devices.push(gpu("MIG-a", Some("GPU-0"), Some("3g.40gb"), 0));
        devices.push(gpu("MIG-b", Some("GPU-0"), Some("4g.40gb"), 0));
        let p4de = GpuPrice { instance_micros_per_hour: 40_965_700, gpus: 8, source: String::new() };
        let t0 = 1_800_000_000 * 1_000_000_000 / hour * hour;
        let full = p4de.cost(t0, t0 + hour);
        // As a per-device re-pricing stored it: the fully sliced parent as a whole GPU.
        let mut nine = vec![full; 8];
        nine.extend([full * 3 / 7, full - full * 3 / 7]);
        let costs = node_bucket_costs(Some(&p4de), t0, &devices, &nine);
        assert_eq!(costs.iter().sum::<Micros>(), 8 * full, "eight GPUs, not nine");
        assert_eq!(costs[0], 0, "the slices cover the whole parent");
        assert_eq!(costs[8] + costs[9], full, "the slices share their parent's cost");
        assert!(costs[8].abs_diff(full * 3 / 7) <= 1, "3g is 3/7 of it: {costs:?}");
        let mut ingested = costs.clone();
        (ingested[8], ingested[9]) = (ingested[8] + 1, ingested[9] - 1);
        assert_eq!(node_bucket_costs(Some(&p4de), t0, &devices, &ingested), ingested, "unchanged: kept as stored");
        assert_eq!(node_bucket_costs(None, t0, &devices, &costs), vec![0; 10], "unpriced: nothing, never a guess");
    }

    #[test]
    fn a_bucket_that_had_no_price_is_divided_by_time() {
        let old = DeviceBucket {
            observed_ns: 3_600,
            held_ns: 1_800,
            cost: 0,
            idle: 0,
            unallocated: 0,
            holders: vec![HolderBucket { held_ns: 1_800, used_ns: 900, ..Default::default() }],
        };
        let new = rescale(&old, 4_000);
        assert_eq!((new.holders[0].used, new.idle, new.unallocated), (1_000, 1_000, 2_000));
        assert!(conserves(&new));
    }

    proptest! {
        #[test]
        fn rescaling_conserves_every_policy(new_cost in 0u64..10_000_000, holders in prop::collection::vec((0u64..1_000, 0u64..1_000, 0u64..1_000, 0u64..1_000), 0..5), idle in 0u64..1_000, unalloc in 0u64..1_000) {
            let hs: Vec<HolderBucket> = holders.iter().map(|&(u, hi, au, ai)| HolderBucket { held_ns: 10, used_ns: 5, used: u, hybrid_idle: hi, allocation_used: au, allocation_idle: ai }).collect();
            let cost = hs.iter().map(|h| h.used).sum::<u64>() + idle + unalloc;
            let old = DeviceBucket { observed_ns: 10, held_ns: if hs.is_empty() { 0 } else { 10 }, cost, idle, unallocated: unalloc, holders: hs };
            prop_assert!(conserves(&rescale(&old, new_cost)), "{:?}", rescale(&old, new_cost));
        }
    }
}
