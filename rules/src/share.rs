//! From per-process readings to the workloads holding each GPU and the GPU time each used.
//!
//! Rules (PRODUCT.md, the cost model):
//! - every workload with a process on a GPU, or with the GPU allocated to it, *holds* the GPU for the
//!   whole interval;
//! - a process *uses* its mean SM share × the interval;
//! - when the shares on one GPU add up to more than 100 % (NVML over-reports under time-slicing and MPS)
//!   they are scaled down to exactly 100 %, with largest-remainder rounding, so a GPU never reports more
//!   used time than it has.
//!
//! Pure: no clock, no I/O.

use gpucost_types::batch::{Allocation, Batch, Holding, PPM, ProcessReading};
use gpucost_types::stage::Held;
use std::collections::BTreeMap;

/// Splits `total` in proportion to `weights` so that the parts add up to exactly `total`
/// (largest-remainder method; ties go to the earlier weight). All weights zero: all parts zero.
pub fn split_proportionally(total: u64, weights: &[u64]) -> Vec<u64> {
    let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    if sum == 0 {
        return vec![0; weights.len()];
    }
    let mut parts = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    let mut given: u64 = 0;
    for (i, &w) in weights.iter().enumerate() {
        let exact = u128::from(total) * u128::from(w);
        let part = (exact / sum) as u64;
        parts.push(part);
        remainders.push((exact % sum, i));
        given += part;
    }
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in remainders.iter().take((total - given) as usize) {
        parts[i] += 1;
    }
    parts
}

/// The holding stage: which workloads held each GPU of a validated batch, and the GPU time each used.
pub fn hold(batch: Batch) -> Held {
    let holdings = holdings(batch.duration_ns(), &batch.processes, &batch.allocations);
    Held { batch, holdings }
}

/// The holdings of one interval of `duration_ns`: one per (GPU, workload), from the processes and from
/// the allocations (GPU, workload) of workloads that may run nothing.
pub fn holdings(duration_ns: u64, processes: &[ProcessReading], allocations: &[Allocation]) -> Vec<Holding> {
    let mut per_gpu: BTreeMap<&str, Vec<&ProcessReading>> = BTreeMap::new();
    for p in processes {
        per_gpu.entry(&p.gpu_uuid).or_default().push(p);
    }
    let mut out: BTreeMap<(&str, &str), Holding> = BTreeMap::new();
    for (gpu, procs) in per_gpu {
        let shares: Vec<u64> = procs.iter().map(|p| u64::from(p.sm_share_ppm)).collect();
        let total_share: u64 = shares.iter().sum();
        let used: Vec<u64> = if total_share > PPM {
            split_proportionally(duration_ns, &shares)
        } else {
            shares.iter().map(|&s| (u128::from(duration_ns) * u128::from(s) / u128::from(PPM)) as u64).collect()
        };
        for (p, used_ns) in procs.into_iter().zip(used) {
            let h = out.entry((gpu, p.workload.key.as_str())).or_insert_with(|| Holding {
                gpu_uuid: gpu.to_string(),
                workload: p.workload.clone(),
                held_ns: duration_ns,
                used_ns: 0,
                memory_bytes: 0,
            });
            h.used_ns += used_ns;
            // Saturating: each process is bounded by the device, not their sum.
            h.memory_bytes = h.memory_bytes.saturating_add(p.used_memory_bytes);
        }
    }
    for Allocation { gpu_uuid, workload } in allocations {
        out.entry((gpu_uuid.as_str(), workload.key.as_str())).or_insert_with(|| Holding {
            gpu_uuid: gpu_uuid.clone(),
            workload: workload.clone(),
            held_ns: duration_ns,
            used_ns: 0,
            memory_bytes: 0,
        });
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use gpucost_types::batch::{Identity, Node, Workload, WorkloadKind};

    fn workload(pod: &str) -> Workload {
        let node = Node {
            cluster: "c".into(),
            name: "n".into(),
            instance_type: String::new(),
            capacity_type: String::new(),
            region: String::new(),
            zone: String::new(),
            labels: Default::default(),
        };
        Workload::new(
            &node,
            Identity {
                kind: WorkloadKind::KubernetesPod,
                namespace: "ns".into(),
                pod: pod.into(),
                ..Default::default()
            },
        )
    }

    fn proc(gpu: &str, pid: u32, pod: &str, share_ppm: u32, mem: u64) -> ProcessReading {
        ProcessReading {
            gpu_uuid: gpu.into(),
            pid,
            workload: Arc::new(workload(pod)),
            sm_share_ppm: share_ppm,
            memory_util_ppm: 0,
            used_memory_bytes: mem,
            peak_memory_bytes: None,
            samples: 0,
            busy_samples: None,
        }
    }

    #[test]
    fn proportional_split_always_adds_up_to_the_total() {
        for (total, weights) in [
            (10u64, vec![1u64, 1, 1]),
            (15_000_000_000, vec![333_333, 333_333, 333_334]),
            (7, vec![0, 5, 0]),
            (1, vec![3, 3]),
        ] {
            let parts = split_proportionally(total, &weights);
            assert_eq!(parts.iter().sum::<u64>(), total, "{weights:?}");
        }
        assert_eq!(split_proportionally(10, &[1, 1, 1]), vec![4, 3, 3]);
        assert_eq!(split_proportionally(10, &[0, 0]), vec![0, 0]);
    }

    #[test]
    fn each_process_uses_its_share_of_the_interval() {
        let h = holdings(15_000_000_000, &[proc("g", 1, "a", 400_000, 10), proc("g", 2, "b", 250_000, 20)], &[]);
        assert_eq!(h.len(), 2);
        assert_eq!((h[0].held_ns, h[0].used_ns, h[0].memory_bytes), (15_000_000_000, 6_000_000_000, 10));
        assert_eq!((h[1].held_ns, h[1].used_ns), (15_000_000_000, 3_750_000_000));
    }

    #[test]
    fn over_reported_shares_are_scaled_to_exactly_the_interval() {
        let h = holdings(
            1_000,
            &[proc("g", 1, "a", 900_000, 0), proc("g", 2, "b", 900_000, 0), proc("g", 3, "c", 900_000, 0)],
            &[],
        );
        assert_eq!(h.iter().map(|x| x.used_ns).sum::<u64>(), 1_000);
        assert_eq!(h.iter().map(|x| x.used_ns).collect::<Vec<_>>(), vec![334, 333, 333]);
    }

    #[test]
    fn several_processes_of_one_workload_hold_the_gpu_once() {
        let h = holdings(100, &[proc("g", 1, "a", 100_000, 5), proc("g", 2, "a", 200_000, 7)], &[]);
        assert_eq!(h.len(), 1);
        assert_eq!((h[0].held_ns, h[0].used_ns, h[0].memory_bytes), (100, 30, 12));
    }

    #[test]
    fn an_allocated_gpu_with_no_process_is_held_by_its_pod_and_used_by_nobody() {
        let h = holdings(
            100,
            &[proc("g1", 1, "a", 500_000, 5)],
            &[
                Allocation { gpu_uuid: "g2".into(), workload: Arc::new(workload("idle-pod")) },
                Allocation { gpu_uuid: "g1".into(), workload: Arc::new(workload("a")) },
            ],
        );
        assert_eq!(h.len(), 2);
        let idle = h.iter().find(|x| x.gpu_uuid == "g2").unwrap();
        assert_eq!((idle.workload.key.as_str(), idle.held_ns, idle.used_ns), ("pod:c/ns/idle-pod", 100, 0));
        assert_eq!(h.iter().find(|x| x.gpu_uuid == "g1").unwrap().used_ns, 50);
    }
}
