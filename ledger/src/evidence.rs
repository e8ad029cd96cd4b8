//! The evidence a right-sizing recommendation reads (issue 24), and the EC2 instance behind each node (issue 25):
//! what the ledger keeps per (bucket, GPU, workload) and per (bucket, node), and how it is read over a window.
//!
//! Kept per bucket (an hour by default), mergeable over any window: the time behind it, the highest interval SM
//! share, the largest peak memory the agent reported (and the time it was known for), sampled and busy sample
//! counts, and the distribution of interval SM share as a histogram of interval time in 1 %-wide bins. A
//! percentile over a window is read from the histogram's summed bins: the upper edge of the bin in which the
//! cumulated time reaches the share asked for, so it is exact to 1 % whatever the window ([`percentile_ppm`]).
//! See docs/evidence.md.

use gpucost_types::batch::PPM;

use crate::LedgerError;

/// Width of an SM histogram bin, ppm (1 %).
pub const SM_BIN_PPM: u64 = 10_000;
/// Bins: 0 (exactly 0 %), then 1..=100 for (k-1 %, k %].
pub const SM_BINS: u32 = 101;

/// The bin an interval SM share falls in.
pub fn sm_bin(sm_ppm: u64) -> u32 {
    sm_ppm.min(PPM).div_ceil(SM_BIN_PPM) as u32
}

/// The `q_ppm` quantile (950_000: p95) of a distribution given as (bin, weight) pairs, ppm: the upper edge of the
/// first bin at which the cumulated weight reaches `q_ppm` of the total. `None` for no weight.
pub fn percentile_ppm(bins: &[(u32, u64)], q_ppm: u64) -> Option<u32> {
    let total: u128 = bins.iter().map(|&(_, w)| u128::from(w)).sum();
    if total == 0 {
        return None;
    }
    let mut sorted: Vec<(u32, u64)> = bins.to_vec();
    sorted.sort_unstable();
    let need = total * u128::from(q_ppm.min(PPM));
    let mut cum: u128 = 0;
    for (bin, w) in sorted {
        cum += u128::from(w);
        // cum / total >= q / PPM, in integers.
        if cum * u128::from(PPM) >= need && w > 0 {
            return Some((u64::from(bin) * SM_BIN_PPM).min(PPM) as u32);
        }
    }
    // Unreached: the last bin with weight has all of it.
    None
}

/// Which workloads' evidence, over [from_ns, to_ns) (bucket starts in it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvidenceQuery {
    pub from_ns: u64,
    pub to_ns: u64,
    /// Only this cluster's, or namespace's.
    pub cluster: Option<String>,
    pub namespace: Option<String>,
}

/// A GPU kind a workload ran on, and for how long.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RanOn {
    /// NVML's product name, e.g. "NVIDIA A100-SXM4-80GB".
    pub gpu_model: String,
    pub memory_total_bytes: u64,
    /// The MIG profile of a MIG device, e.g. "1g.10gb".
    pub mig_profile: Option<String>,
    pub instance_type: String,
    pub region: String,
    /// GPU time held on it in the window.
    pub held_ns: u64,
}

/// One workload's evidence over a window, at the controller level: a Kubernetes workload's pods are one
/// workload under their controller (a Deployment, a Job, a StatefulSet…); anything without a controller is
/// its own workload key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadEvidence {
    /// `controller:<cluster>/<namespace>/<kind>/<name>`, or the workload key (`pod:…`, `ecs:…`, …).
    pub group: String,
    pub cluster: String,
    pub namespace: String,
    pub controller_kind: String,
    pub controller_name: String,
    /// Workload keys (pods, containers, tasks) behind it.
    pub workloads: u64,
    /// Buckets in which it held a GPU, and the bucket length: hours seen = buckets_seen × bucket_ns / 1 h.
    pub buckets_seen: u64,
    pub bucket_ns: u64,
    /// GPU time held (all its GPUs).
    pub held_ns: u64,
    /// The largest peak memory on one GPU the agents reported; `None`: none did (older agents).
    pub peak_memory_bytes: Option<u64>,
    /// Held time whose peak memory is known.
    pub peak_known_ns: u64,
    /// The interval SM share per GPU: highest, p95 and p50 (from the histogram: exact to 1 %).
    pub sm_max_ppm: u32,
    pub sm_p95_ppm: u32,
    pub sm_p50_ppm: u32,
    /// Share of its processes' samples with SM above zero, ppm; `None`: no agent said.
    pub busy_ppm: Option<u32>,
    pub samples: u64,
    /// What it ran on, most held first.
    pub ran_on: Vec<RanOn>,
}

/// The instance id a node reported in one bucket.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeInstance {
    pub cluster: String,
    pub node: String,
    pub bucket_start_ns: u64,
    pub instance_id: String,
    /// Interval time reported with it in the bucket.
    pub seen_ns: u64,
}

/// Reading the evidence back.
pub trait EvidenceStore: Send + Sync {
    /// Per workload (controller level) with GPU time in the window, its evidence; ordered by group.
    fn evidence(&self, query: &EvidenceQuery) -> Result<Vec<WorkloadEvidence>, LedgerError>;
    /// Per node and bucket in [from_ns, to_ns), the instance ids it reported (only `instance_id`'s when given),
    /// ordered by cluster, node, bucket, instance id.
    fn node_instances(
        &self,
        from_ns: u64,
        to_ns: u64,
        instance_id: Option<&str>,
    ) -> Result<Vec<NodeInstance>, LedgerError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_1_percent_wide_with_zero_on_its_own() {
        assert_eq!(sm_bin(0), 0);
        assert_eq!(sm_bin(1), 1);
        assert_eq!(sm_bin(10_000), 1);
        assert_eq!(sm_bin(10_001), 2);
        assert_eq!(sm_bin(120_000), 12);
        assert_eq!(sm_bin(1_000_000), 100);
        assert_eq!(sm_bin(2_000_000), 100, "clamped");
    }

    #[test]
    fn a_percentile_is_the_upper_edge_of_the_bin_where_the_time_reaches_it() {
        // 100 equal intervals at 1 %, 2 %, … 100 %: p95 is 95 %, p50 50 %, the maximum 100 %.
        let bins: Vec<(u32, u64)> = (1..=100).map(|b| (b, 15)).collect();
        assert_eq!(percentile_ppm(&bins, 950_000), Some(950_000));
        assert_eq!(percentile_ppm(&bins, 500_000), Some(500_000));
        assert_eq!(percentile_ppm(&bins, 1_000_000), Some(1_000_000));
        // Idle 90 % of the time, at 12 % SM 8 % of it, at 40 % the last 2 %: p99 is 40 %, p95 12 %, p90 0.
        let bins = [(40, 2), (0, 90), (12, 8)];
        assert_eq!(percentile_ppm(&bins, 990_000), Some(400_000));
        assert_eq!(percentile_ppm(&bins, 950_000), Some(120_000));
        assert_eq!(percentile_ppm(&bins, 900_000), Some(0));
        assert_eq!(percentile_ppm(&bins, 910_000), Some(120_000));
        assert_eq!(percentile_ppm(&[], 950_000), None);
        assert_eq!(percentile_ppm(&[(3, 0)], 950_000), None);
    }
}
