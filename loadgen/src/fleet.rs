//! The simulated fleet: nodes with GPUs, pods holding them, processes on the GPUs. What a node's agent
//! reports for an interval is a pure function of the shape, the node, the interval and the pods in place,
//! and pods come and go (churn) by a deterministic draw per (node, pod slot, interval), so the gRPC driver
//! and the Prometheus exporter, each with its own copy, describe the same fleet.

use std::collections::HashMap;

use gpucost_proto::v1 as pb;

/// The fleet's shape.
#[derive(Debug, Clone)]
pub struct Shape {
    pub nodes: usize,
    pub gpus_per_node: usize,
    pub procs_per_gpu: usize,
    pub pods_per_node: usize,
    /// Chance that a pod is replaced by a new one at each interval boundary.
    pub churn: f64,
    pub cluster: String,
    pub seed: u64,
}

impl Shape {
    pub fn processes_per_node(&self) -> usize {
        self.gpus_per_node * self.procs_per_gpu
    }
}

/// SplitMix64: a well-mixed 64-bit hash of `x`.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A uniform draw in [0, 1) from `parts`.
fn draw(parts: &[u64]) -> f64 {
    let h = parts.iter().fold(0u64, |h, p| mix(h ^ p));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

const NAMESPACES: usize = 40;
const TEAMS: usize = 25;

/// One pod in a node's pod slot.
#[derive(Debug, Clone)]
pub struct Pod {
    pub identity: pb::WorkloadIdentity,
    /// Its GPUs: indexes into the node's GPUs.
    pub gpus: std::ops::Range<usize>,
    pub first_pid: u32,
}

/// One simulated node.
#[derive(Debug, Clone)]
pub struct Node {
    pub index: usize,
    pub name: String,
    pub boot: String,
    pub gpus: Vec<String>,
    /// (slot, generation) → the pod in that slot since the generation's interval.
    pods: Vec<(u64, Pod)>,
    /// The interval the pods are for.
    at: u64,
}

impl Node {
    pub fn new(shape: &Shape, index: usize, first_interval: u64) -> Self {
        let name = format!("ip-10-{}-{}-{}.ec2.internal", index / 65_536, index / 256 % 256, index % 256);
        let gpus = (0..shape.gpus_per_node)
            .map(|g| {
                let h = mix(shape.seed ^ mix(index as u64) ^ g as u64);
                format!("GPU-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", h >> 32, h >> 16 & 0xffff, h & 0xffff, g, index)
            })
            .collect();
        let mut node = Self {
            index,
            name,
            // A new boot for every run, as a restarted agent has: runs against the same ledger never collide.
            boot: format!("{:016x}", mix(shape.seed ^ index as u64 ^ 0xb007 ^ mix(first_interval))),
            gpus,
            pods: Vec::new(),
            at: first_interval,
        };
        node.pods = (0..shape.pods_per_node).map(|slot| (0, node.pod(shape, slot, 0))).collect();
        node
    }

    fn pod(&self, shape: &Shape, slot: usize, generation: u64) -> Pod {
        let per_pod = shape.gpus_per_node / shape.pods_per_node.max(1);
        let gpus =
            slot * per_pod..if slot + 1 == shape.pods_per_node { shape.gpus_per_node } else { (slot + 1) * per_pod };
        let h = mix(shape.seed ^ mix(self.index as u64) ^ mix(slot as u64) ^ generation);
        let ns = (h % NAMESPACES as u64) as usize;
        let team = ns % TEAMS;
        let app = ["trainer", "finetune", "serving", "eval", "embed"][(h >> 8) as usize % 5];
        let pod = format!("{app}-{:x}-{slot}", h >> 20 & 0xfffff);
        let mut labels: HashMap<String, String> =
            [("app".to_string(), app.to_string()), ("team".to_string(), format!("team-{team}"))].into();
        if app == "serving" {
            labels.insert("mlflow.org/model-name".into(), format!("model-{}", h % 97));
            labels.insert("mlflow.org/model-version".into(), format!("{}", 1 + (h >> 40) % 9));
        }
        let (controller_kind, controller_name) = match app {
            "serving" => ("Deployment", format!("{app}-{}", h % 97)),
            _ => ("Job", pod.clone()),
        };
        Pod {
            identity: pb::WorkloadIdentity {
                kind: pb::WorkloadKind::KubernetesPod as i32,
                namespace: format!("ml-{ns}"),
                pod: pod.clone(),
                pod_uid: format!("{:016x}-{:016x}", mix(h), mix(h ^ 1)),
                container: "main".into(),
                controller_kind: controller_kind.into(),
                controller_name,
                labels,
                env: if app == "trainer" {
                    [("MLFLOW_RUN_ID".to_string(), format!("{:032x}", mix(h ^ 2)))].into()
                } else {
                    HashMap::new()
                },
                ..Default::default()
            },
            gpus,
            first_pid: 1_000 + (h % 30_000) as u32,
        }
    }

    /// Moves the node's pods on to `interval`, replacing each pod with the churn's chance at every boundary.
    pub fn advance_to(&mut self, shape: &Shape, interval: u64) {
        while self.at < interval {
            self.at += 1;
            for slot in 0..self.pods.len() {
                if draw(&[shape.seed, self.index as u64, slot as u64, self.at, 0xc4]) < shape.churn {
                    let generation = self.pods[slot].0 + 1;
                    self.pods[slot] = (generation, self.pod(shape, slot, generation));
                }
            }
        }
    }

    pub fn pods(&self) -> impl Iterator<Item = &Pod> {
        self.pods.iter().map(|(_, p)| p)
    }

    /// The SM utilisation (percent) of process `p` of GPU `g` over `interval`.
    pub fn sm_percent(&self, shape: &Shape, interval: u64, g: usize, p: usize) -> f64 {
        let gpu_load = draw(&[shape.seed, self.index as u64, g as u64, interval, 0x51]);
        100.0 * gpu_load / shape.procs_per_gpu as f64 * (0.5 + draw(&[shape.seed, g as u64, p as u64, interval]) / 2.0)
    }

    /// What the node's agent reports for `interval` (of `interval_ns`), as batch `seq`.
    pub fn batch(&self, shape: &Shape, interval: u64, interval_ns: u64, seq: u64) -> pb::UsageBatch {
        let start = interval * interval_ns;
        let mut processes = Vec::with_capacity(shape.processes_per_node());
        let mut allocations = Vec::with_capacity(shape.gpus_per_node);
        let mut gpus = Vec::with_capacity(shape.gpus_per_node);
        for pod in self.pods() {
            for g in pod.gpus.clone() {
                allocations.push(pb::GpuAllocation {
                    gpu_uuid: self.gpus[g].clone(),
                    workload: Some(pod.identity.clone()),
                    workload_ref: 0,
                });
                let mut util = 0.0;
                for p in 0..shape.procs_per_gpu {
                    let sm = self.sm_percent(shape, interval, g, p);
                    util += sm;
                    processes.push(pb::ProcessUsage {
                        pid: pod.first_pid + (g * shape.procs_per_gpu + p) as u32,
                        gpu_uuid: self.gpus[g].clone(),
                        sm_util_percent: sm,
                        memory_util_percent: sm / 2.0,
                        used_memory_bytes: (4 + (p as u64 % 4) * 2) << 30,
                        sample_count: 15,
                        workload: Some(pod.identity.clone()),
                        process_name: "python3".into(),
                        workload_ref: 0,
                        // A gigabyte above the mean at its peak; busy in every sample while it computes.
                        peak_memory_bytes: Some((5 + (p as u64 % 4) * 2) << 30),
                        busy_sample_count: Some(if sm > 0.0 { 15 } else { 0 }),
                    });
                }
                gpus.push(pb::GpuUsage {
                    uuid: self.gpus[g].clone(),
                    utilization_percent: util.min(100.0),
                    memory_utilization_percent: (util / 2.0).min(100.0),
                    memory_used_bytes: 24 << 30,
                    power_milliwatts: 150_000 + (util * 3_000.0) as u64,
                    energy_millijoules: Some((150 + (util * 3.0) as u64) * interval_ns / 1_000_000),
                    sample_count: 15,
                });
            }
        }
        pb::UsageBatch {
            agent_id: self.name.clone(),
            boot_id: self.boot.clone(),
            seq,
            first_seq: 0,
            declare_workloads: Vec::new(),
            node: Some(pb::NodeInfo {
                cluster: shape.cluster.clone(),
                node_name: self.name.clone(),
                instance_type: "p4d.24xlarge".into(),
                capacity_type: pb::CapacityType::OnDemand as i32,
                region: "us-east-1".into(),
                zone: "us-east-1a".into(),
                devices: self
                    .gpus
                    .iter()
                    .enumerate()
                    .map(|(i, uuid)| pb::GpuDevice {
                        uuid: uuid.clone(),
                        model: "NVIDIA A100-SXM4-40GB".into(),
                        memory_total_bytes: 40 << 30,
                        index: i as u32,
                        ..Default::default()
                    })
                    .collect(),
                labels: [("eks.amazonaws.com/nodegroup".to_string(), "gpu-p4d".to_string())].into(),
                instance_id: String::new(),
            }),
            interval_start_unix_nanos: start,
            interval_end_unix_nanos: start + interval_ns,
            gpus,
            processes,
            allocations,
            agent_version: concat!("loadgen-", env!("CARGO_PKG_VERSION")).into(),
            sample_interval_nanos: interval_ns / 15,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(churn: f64) -> Shape {
        Shape { nodes: 3, gpus_per_node: 8, procs_per_gpu: 4, pods_per_node: 2, churn, cluster: "c".into(), seed: 7 }
    }

    #[test]
    fn a_batch_has_every_gpu_and_process_of_the_shape() {
        let s = shape(0.0);
        let n = Node::new(&s, 1, 100);
        let b = n.batch(&s, 100, 15_000_000_000, 1);
        assert_eq!((b.gpus.len(), b.processes.len(), b.allocations.len()), (8, 32, 8));
        assert!(b.processes.iter().all(|p| (0.0..=100.0).contains(&p.sm_util_percent)));
        assert!(b.gpus.iter().all(|g| (0.0..=100.0).contains(&g.utilization_percent)));
        let pods: std::collections::HashSet<_> =
            b.processes.iter().map(|p| p.workload.as_ref().unwrap().pod.clone()).collect();
        assert_eq!(pods.len(), 2);
    }

    #[test]
    fn two_copies_of_a_churning_fleet_agree_and_pods_are_replaced() {
        let s = shape(0.2);
        let (mut a, mut b) = (Node::new(&s, 2, 0), Node::new(&s, 2, 0));
        let before: Vec<String> = a.pods().map(|p| p.identity.pod.clone()).collect();
        a.advance_to(&s, 5);
        a.advance_to(&s, 40);
        b.advance_to(&s, 40);
        let (pa, pb): (Vec<_>, Vec<_>) =
            (a.pods().map(|p| p.identity.pod.clone()).collect(), b.pods().map(|p| p.identity.pod.clone()).collect());
        assert_eq!(pa, pb, "the same draws in whatever steps");
        assert_ne!(pa, before, "40 intervals at 20 % replace pods");
    }
}
