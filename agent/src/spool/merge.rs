//! Coarsening under pressure: two consecutive batches of the same boot, node and holders become one
//! batch over both intervals. Pure: no I/O.
//!
//! What is kept exactly: the interval covered (start of the first to end of the second), which GPUs were
//! read, and who held which GPU — so the collector bills the same held GPU-seconds to the same workloads.
//! What becomes coarser: utilisation, memory and power are time-weighted means over the merged interval
//! (a process absent from one half counts as 0 % there), energy is summed. The collector turns a mean
//! utilisation into parts per million, so the used/idle split of a merged interval is exact to 1 ppm of
//! its length.
//!
//! Batches with different holders are never merged: holding is all-or-nothing per interval, so merging
//! them would bill a workload for time it did not hold.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use gpucost_proto::v1::{GpuAllocation, GpuUsage, NodeInfo, ProcessUsage, UsageBatch, WorkloadIdentity};

/// The first sequence number a batch stands for (itself, unless it was merged).
pub fn first_seq(b: &UsageBatch) -> u64 {
    if b.first_seq == 0 { b.seq } else { b.first_seq.min(b.seq) }
}

/// A workload identity in a stable text form (its maps sorted), for comparing and hashing.
fn identity_key(w: Option<&WorkloadIdentity>) -> String {
    let Some(w) = w else { return String::new() };
    fn sorted(m: &std::collections::HashMap<String, String>) -> BTreeMap<&String, &String> {
        m.iter().collect()
    }
    let mut bare = w.clone();
    bare.labels.clear();
    bare.namespace_labels.clear();
    bare.env.clear();
    format!("{bare:?}|{:?}|{:?}|{:?}", sorted(&w.labels), sorted(&w.namespace_labels), sorted(&w.env))
}

fn node_key(n: Option<&NodeInfo>) -> String {
    let Some(n) = n else { return String::new() };
    let mut bare = n.clone();
    bare.labels.clear();
    format!("{bare:?}|{:?}", n.labels.iter().collect::<BTreeMap<_, _>>())
}

/// Who holds which GPU: (GPU, workload) from the processes and the allocations.
fn holders(b: &UsageBatch) -> std::collections::BTreeSet<(String, String)> {
    b.processes
        .iter()
        .map(|p| (p.gpu_uuid.clone(), identity_key(p.workload.as_ref())))
        .chain(b.allocations.iter().map(|a| (a.gpu_uuid.clone(), identity_key(a.workload.as_ref()))))
        .collect()
}

/// Batches with equal signatures may be merged (when they also follow each other); others never.
pub fn signature(b: &UsageBatch) -> u64 {
    let mut h = DefaultHasher::new();
    b.agent_id.hash(&mut h);
    b.boot_id.hash(&mut h);
    b.sample_interval_nanos.hash(&mut h);
    node_key(b.node.as_ref()).hash(&mut h);
    let gpus: std::collections::BTreeSet<&str> = b.gpus.iter().map(|g| g.uuid.as_str()).collect();
    gpus.hash(&mut h);
    holders(b).hash(&mut h);
    h.finish()
}

/// GPU-seconds (in ns) an interval stands for: held (GPUs with a holder) and observed (whole GPUs read).
pub fn gpu_time(b: &UsageBatch) -> (u64, u64) {
    let d = b.interval_end_unix_nanos.saturating_sub(b.interval_start_unix_nanos);
    let held: std::collections::BTreeSet<&str> = b
        .processes
        .iter()
        .map(|p| p.gpu_uuid.as_str())
        .chain(b.allocations.iter().map(|a| a.gpu_uuid.as_str()))
        .collect();
    let slices: std::collections::BTreeSet<&str> = b
        .node
        .iter()
        .flat_map(|n| &n.devices)
        .filter(|d| !d.mig_parent_uuid.is_empty())
        .map(|d| d.uuid.as_str())
        .collect();
    let observed = b.gpus.iter().filter(|g| !slices.contains(g.uuid.as_str())).count() as u64;
    (held.len() as u64 * d, observed * d)
}

fn mean_f(a: f64, da: u64, b: f64, db: u64) -> f64 {
    (a * da as f64 + b * db as f64) / (da + db) as f64
}

fn mean_u(a: u64, da: u64, b: u64, db: u64) -> u64 {
    ((u128::from(a) * u128::from(da) + u128::from(b) * u128::from(db)) / u128::from(da + db)) as u64
}

/// A process's evidence over the halves of a merge that have it (`None`: absent there), folded with `fold`;
/// `None` (unknown) when a half that has the process does not say.
fn evidence<T: Copy>(
    halves: [Option<&ProcessUsage>; 2],
    get: impl Fn(&ProcessUsage) -> Option<T>,
    fold: impl Fn(T, T) -> T,
) -> Option<T> {
    let mut present = halves.into_iter().flatten().map(get);
    let first = present.next()??;
    present.try_fold(first, |acc, v| Some(fold(acc, v?)))
}

/// `a` then `b` as one batch over both intervals, or `None` when they may not be merged: another boot,
/// node or set of holders, not back to back, or a process id that changed workload between them.
pub fn merge(a: &UsageBatch, b: &UsageBatch) -> Option<UsageBatch> {
    if a.interval_end_unix_nanos != b.interval_start_unix_nanos
        || a.seq >= first_seq(b)
        || signature(a) != signature(b)
        || holders(a) != holders(b)
        || node_key(a.node.as_ref()) != node_key(b.node.as_ref())
    {
        return None;
    }
    let da = a.interval_end_unix_nanos - a.interval_start_unix_nanos;
    let db = b.interval_end_unix_nanos - b.interval_start_unix_nanos;

    let mut gpus: BTreeMap<&str, (Option<&GpuUsage>, Option<&GpuUsage>)> = BTreeMap::new();
    for g in &a.gpus {
        gpus.entry(&g.uuid).or_default().0 = Some(g);
    }
    for g in &b.gpus {
        gpus.entry(&g.uuid).or_default().1 = Some(g);
    }
    let mut merged_gpus = Vec::with_capacity(gpus.len());
    for (uuid, pair) in gpus {
        let (Some(x), Some(y)) = pair else { return None };
        merged_gpus.push(GpuUsage {
            uuid: uuid.to_string(),
            utilization_percent: mean_f(x.utilization_percent, da, y.utilization_percent, db),
            memory_utilization_percent: mean_f(x.memory_utilization_percent, da, y.memory_utilization_percent, db),
            memory_used_bytes: mean_u(x.memory_used_bytes, da, y.memory_used_bytes, db),
            power_milliwatts: mean_u(x.power_milliwatts, da, y.power_milliwatts, db),
            energy_millijoules: match (x.energy_millijoules, y.energy_millijoules) {
                (Some(e), Some(f)) => Some(e.saturating_add(f)),
                _ => None,
            },
            sample_count: x.sample_count.saturating_add(y.sample_count),
        });
    }

    let zero = ProcessUsage::default();
    type Halves<'a> = (Option<&'a ProcessUsage>, Option<&'a ProcessUsage>);
    let mut procs: BTreeMap<(u32, &str), Halves> = BTreeMap::new();
    for p in &a.processes {
        procs.entry((p.pid, &p.gpu_uuid)).or_default().0 = Some(p);
    }
    for p in &b.processes {
        procs.entry((p.pid, &p.gpu_uuid)).or_default().1 = Some(p);
    }
    let mut merged_procs = Vec::with_capacity(procs.len());
    for ((pid, gpu), (x, y)) in procs {
        if let (Some(x), Some(y)) = (x, y)
            && identity_key(x.workload.as_ref()) != identity_key(y.workload.as_ref())
        {
            return None;
        }
        let halves = [x, y];
        let named = y.or(x).unwrap_or(&zero);
        let (x, y) = (x.unwrap_or(&zero), y.unwrap_or(&zero));
        merged_procs.push(ProcessUsage {
            pid,
            gpu_uuid: gpu.to_string(),
            sm_util_percent: mean_f(x.sm_util_percent, da, y.sm_util_percent, db),
            memory_util_percent: mean_f(x.memory_util_percent, da, y.memory_util_percent, db),
            used_memory_bytes: mean_u(x.used_memory_bytes, da, y.used_memory_bytes, db),
            sample_count: x.sample_count.saturating_add(y.sample_count),
            workload: named.workload.clone(),
            process_name: named.process_name.clone(),
            // Spooled batches hold their identities inline; references are made per stream, as sent.
            workload_ref: 0,
            // The larger peak and the busy samples of both; unknown if either half that has the process
            // does not say (a batch spooled by an agent older than the fields).
            peak_memory_bytes: evidence(halves, |p| p.peak_memory_bytes, u64::max),
            busy_sample_count: evidence(halves, |p| p.busy_sample_count, u32::saturating_add),
        });
    }

    let mut allocations: Vec<GpuAllocation> = b.allocations.clone();
    allocations.sort_by(|p, q| p.gpu_uuid.cmp(&q.gpu_uuid));
    Some(UsageBatch {
        agent_id: b.agent_id.clone(),
        boot_id: b.boot_id.clone(),
        seq: b.seq,
        first_seq: first_seq(a),
        node: b.node.clone(),
        interval_start_unix_nanos: a.interval_start_unix_nanos,
        interval_end_unix_nanos: b.interval_end_unix_nanos,
        gpus: merged_gpus,
        processes: merged_procs,
        allocations,
        agent_version: b.agent_version.clone(),
        sample_interval_nanos: b.sample_interval_nanos,
        declare_workloads: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpucost_proto::v1::GpuDevice;

    const S: u64 = 1_000_000_000;

    fn pod(name: &str) -> WorkloadIdentity {
        let mut w = WorkloadIdentity { kind: 1, namespace: "ml".into(), pod: name.into(), ..Default::default() };
        w.labels.insert("team".into(), "vision".into());
        w.labels.insert("app".into(), name.into());
        w
    }

    fn batch(seq: u64, start_s: u64, len_s: u64, procs: &[(u32, &str, f64)]) -> UsageBatch {
        UsageBatch {
            agent_id: "node-a".into(),
            boot_id: "boot-1".into(),
            seq,
            node: Some(NodeInfo {
                cluster: "c".into(),
                node_name: "node-a".into(),
                devices: vec![
                    GpuDevice {
                        uuid: "GPU-0".into(),
                        model: "L4".into(),
                        memory_total_bytes: 1 << 34,
                        ..Default::default()
                    },
                    GpuDevice {
                        uuid: "GPU-1".into(),
                        model: "L4".into(),
                        memory_total_bytes: 1 << 34,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            interval_start_unix_nanos: start_s * S,
            interval_end_unix_nanos: (start_s + len_s) * S,
            gpus: ["GPU-0", "GPU-1"]
                .iter()
                .map(|u| GpuUsage {
                    uuid: u.to_string(),
                    utilization_percent: 50.0,
                    energy_millijoules: Some(1000 * len_s),
                    power_milliwatts: 70_000,
                    sample_count: len_s as u32,
                    ..Default::default()
                })
                .collect(),
            processes: procs
                .iter()
                .map(|&(pid, name, sm)| ProcessUsage {
                    pid,
                    gpu_uuid: "GPU-0".into(),
                    sm_util_percent: sm,
                    sample_count: len_s as u32,
                    workload: Some(pod(name)),
                    ..Default::default()
                })
                .collect(),
            allocations: vec![GpuAllocation {
                gpu_uuid: "GPU-1".into(),
                workload: Some(pod("serve")),
                workload_ref: 0,
            }],
            agent_version: "t".into(),
            sample_interval_nanos: S,
            first_seq: 0,
            declare_workloads: Vec::new(),
        }
    }

    /// What the collector would bill as used: Σ sm% × length, per process.
    fn used_ns(b: &UsageBatch) -> f64 {
        let d = (b.interval_end_unix_nanos - b.interval_start_unix_nanos) as f64;
        b.processes.iter().map(|p| p.sm_util_percent / 100.0 * d).sum()
    }

    #[test]
    fn merging_keeps_held_and_observed_gpu_time_and_the_used_time() {
        let a = batch(1, 0, 15, &[(10, "train", 40.0), (11, "train", 20.0)]);
        let b = batch(2, 15, 15, &[(10, "train", 60.0)]);
        let m = merge(&a, &b).expect("same holders, back to back");
        assert_eq!((m.interval_start_unix_nanos, m.interval_end_unix_nanos), (0, 30 * S));
        assert_eq!((m.first_seq, m.seq), (1, 2));
        let (ha, oa) = gpu_time(&a);
        let (hb, ob) = gpu_time(&b);
        assert_eq!(gpu_time(&m), (ha + hb, oa + ob));
        assert!(
            (used_ns(&m) - (used_ns(&a) + used_ns(&b))).abs() < 1.0,
            "{} vs {}",
            used_ns(&m),
            used_ns(&a) + used_ns(&b)
        );
        let p11 = m.processes.iter().find(|p| p.pid == 11).expect("pid 11 kept");
        assert_eq!(p11.sm_util_percent, 10.0, "absent for half the time counts as 0 % there");
        assert_eq!(m.gpus[0].energy_millijoules, Some(30_000));
        assert_eq!(m.gpus[0].sample_count, 30);
        // Merging again, with a third interval of another length, still adds up.
        let c = batch(3, 30, 60, &[(12, "train", 90.0)]);
        let mm = merge(&m, &c).expect("mergeable");
        assert_eq!((mm.first_seq, mm.seq, mm.interval_end_unix_nanos), (1, 3, 90 * S));
        assert!((used_ns(&mm) - (used_ns(&a) + used_ns(&b) + used_ns(&c))).abs() < 1.0);
    }

    #[test]
    fn merging_keeps_the_larger_peak_and_adds_busy_samples_unless_a_half_does_not_say() {
        let mut a = batch(1, 0, 15, &[(10, "train", 40.0), (11, "train", 20.0)]);
        let mut b = batch(2, 15, 15, &[(10, "train", 60.0)]);
        for (p, (peak, busy)) in a.processes.iter_mut().zip([(7 << 30, 15), (1 << 30, 3)]) {
            (p.peak_memory_bytes, p.busy_sample_count) = (Some(peak), Some(busy));
        }
        (b.processes[0].peak_memory_bytes, b.processes[0].busy_sample_count) = (Some(9 << 30), Some(10));
        let m = merge(&a, &b).expect("mergeable");
        let pid = |m: &UsageBatch, pid: u32| m.processes.iter().find(|p| p.pid == pid).cloned().expect("kept");
        assert_eq!((pid(&m, 10).peak_memory_bytes, pid(&m, 10).busy_sample_count), (Some(9 << 30), Some(25)));
        assert_eq!(
            (pid(&m, 11).peak_memory_bytes, pid(&m, 11).busy_sample_count),
            (Some(1 << 30), Some(3)),
            "absent from the second half: the first half's evidence"
        );
        // A batch spooled by an older agent says nothing: the merged evidence is unknown, not the other half's.
        b.processes[0].peak_memory_bytes = None;
        b.processes[0].busy_sample_count = None;
        let m = merge(&a, &b).expect("mergeable");
        assert_eq!((pid(&m, 10).peak_memory_bytes, pid(&m, 10).busy_sample_count), (None, None));
    }

    #[test]
    fn batches_with_other_holders_or_a_gap_are_not_merged() {
        let a = batch(1, 0, 15, &[(10, "train", 40.0)]);
        assert!(merge(&a, &batch(2, 15, 15, &[(10, "other", 40.0)])).is_none(), "another workload");
        assert!(merge(&a, &batch(2, 16, 15, &[(10, "train", 40.0)])).is_none(), "a gap");
        assert!(merge(&a, &batch(1, 15, 15, &[(10, "train", 40.0)])).is_none(), "not a later sequence");
        let mut other_boot = batch(2, 15, 15, &[(10, "train", 40.0)]);
        other_boot.boot_id = "boot-2".into();
        assert!(merge(&a, &other_boot).is_none(), "another boot");
        let mut b = batch(2, 15, 15, &[(10, "train", 40.0)]);
        b.allocations.clear();
        assert!(merge(&a, &b).is_none(), "the allocation ended");
    }

    #[test]
    fn the_signature_ignores_map_order_and_readings() {
        let a = batch(1, 0, 15, &[(10, "train", 40.0)]);
        let mut b = batch(2, 15, 15, &[(10, "train", 99.0)]);
        let w = b.processes[0].workload.as_mut().expect("workload");
        let labels: Vec<_> = w.labels.drain().collect();
        for (k, v) in labels.into_iter().rev() {
            w.labels.insert(k, v);
        }
        assert_eq!(signature(&a), signature(&b));
        b.processes[0].pid = 77;
        assert_eq!(signature(&a), signature(&b), "pids may change; holders did not");
    }
}
