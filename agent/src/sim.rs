//! A seeded, deterministic GPU fleet: nodes of real AWS GPU instance types, and workloads with the
//! patterns a real platform sees — training jobs near full use, inference following a daily wave,
//! notebooks idling while they hold memory, batch jobs that start and end — each with the identity a
//! real cluster would give it (namespace, pod, controller, Backstage and MLflow labels; a few ECS tasks,
//! Slurm jobs and bare users).
//!
//! Everything is a pure function of (seed, time): a process's readings are constant within one *slot*
//! (the report interval), so the ground truth of any slot-aligned window is exact integer arithmetic
//! that tests compare with what the collector stored. Processes on one GPU never sum to more than
//! 100 % SM, so no normalisation blurs that truth.

use std::collections::BTreeMap;

use crate::reading::{
    CapacityType, GpuAllocation, GpuDevice, GpuSample, NodeInfo, ProcessSample, Tick, WorkloadIdentity, WorkloadKind,
};
use crate::source::{GpuSource, SourceError};

const NS_PER_SEC: u64 = 1_000_000_000;
const GIB: u64 = 1 << 30;

/// Deterministic hashing: splitmix64. The same seed gives the same fleet on every machine.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn hash(parts: &[u64]) -> u64 {
    parts.iter().fold(0x6770_7563_6f73_7400, |h, p| mix(h ^ p))
}

/// A small deterministic generator for building the fleet.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = mix(self.0);
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// How big a fleet to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetSpec {
    pub seed: u64,
    pub clusters: u32,
    pub nodes: u32,
}

impl FleetSpec {
    /// The demo fleet: 3 clusters, 40 nodes, about 200 GPUs.
    pub fn demo(seed: u64) -> Self {
        Self { seed, clusters: 3, nodes: 40 }
    }
}

struct InstanceType {
    name: &'static str,
    gpus: u32,
    model: &'static str,
    memory_gib: u64,
    idle_w: u64,
    max_w: u64,
    /// Nodes of this type in every 40 (the demo fleet's mix: 195 GPUs).
    per_40: u64,
}

const INSTANCE_TYPES: &[InstanceType] = &[
    InstanceType {
        name: "g5.xlarge",
        gpus: 1,
        model: "NVIDIA A10G",
        memory_gib: 24,
        idle_w: 25,
        max_w: 300,
        per_40: 4,
    },
    InstanceType {
        name: "g5.12xlarge",
        gpus: 4,
        model: "NVIDIA A10G",
        memory_gib: 24,
        idle_w: 25,
        max_w: 300,
        per_40: 8,
    },
    InstanceType {
        name: "g5.48xlarge",
        gpus: 8,
        model: "NVIDIA A10G",
        memory_gib: 24,
        idle_w: 25,
        max_w: 300,
        per_40: 4,
    },
    InstanceType { name: "g6.xlarge", gpus: 1, model: "NVIDIA L4", memory_gib: 24, idle_w: 16, max_w: 72, per_40: 3 },
    InstanceType { name: "g6.12xlarge", gpus: 4, model: "NVIDIA L4", memory_gib: 24, idle_w: 16, max_w: 72, per_40: 5 },
    InstanceType {
        name: "g6e.12xlarge",
        gpus: 4,
        model: "NVIDIA L40S",
        memory_gib: 48,
        idle_w: 35,
        max_w: 350,
        per_40: 6,
    },
    InstanceType {
        name: "p4d.24xlarge",
        gpus: 8,
        model: "NVIDIA A100-SXM4-40GB",
        memory_gib: 40,
        idle_w: 55,
        max_w: 400,
        per_40: 4,
    },
    InstanceType {
        name: "p4de.24xlarge",
        gpus: 8,
        model: "NVIDIA A100-SXM4-80GB",
        memory_gib: 80,
        idle_w: 60,
        max_w: 400,
        per_40: 2,
    },
    InstanceType {
        name: "p5.48xlarge",
        gpus: 8,
        model: "NVIDIA H100 80GB HBM3",
        memory_gib: 80,
        idle_w: 70,
        max_w: 700,
        per_40: 4,
    },
];

const CLUSTERS: &[(&str, &str)] = &[
    ("prod-us-east-1", "us-east-1"),
    ("research-us-west-2", "us-west-2"),
    ("inference-eu-west-1", "eu-west-1"),
    ("dev-us-east-2", "us-east-2"),
];

/// Teams with the Backstage components and MLflow models they run.
const TEAMS: &[(&str, &[&str])] = &[
    ("vision", &["detector", "segmenter", "clip-embedder"]),
    ("nlp", &["llama-chat", "summarizer", "translator"]),
    ("recsys", &["ranker", "retrieval-two-tower"]),
    ("speech", &["whisper-asr", "tts"]),
    ("research", &["moe-pretrain", "diffusion-xl"]),
];

const USERS: &[&str] = &["alice", "bob", "carol", "dmitri", "erin", "farah", "gus", "hana"];

/// When a process is on its GPU and how hard it works, slot by slot.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// Always on, SM between `base - 3` and `base`.
    Training { base: u32 },
    /// A daily triangle wave between `trough` and `peak`, highest at `peak_hour` UTC.
    Inference { trough: u32, peak: u32, peak_hour: u64 },
    /// Always holds memory; busy (`busy` %) in about `active_percent` of 10-minute stretches.
    Notebook { active_percent: u64, busy: u32 },
    /// Runs `run_slots` out of every `period_slots`, at about `util` %, with a new pid per run.
    Batch { period_slots: u64, run_slots: u64, offset: u64, util: u32 },
    /// A pod the kubelet allocated a GPU to that never starts a GPU process: it holds the GPU idle.
    Reserved,
    /// Runs at about `util` % only on the 14th to the 16th of each month (UTC): the demo's spend spike.
    MidMonth { util: u32 },
}

#[derive(Debug, Clone)]
struct SimProcess {
    gpu_uuid: String,
    base_pid: u32,
    memory_bytes: u64,
    pattern: Pattern,
    identity: WorkloadIdentity,
    key: String,
    /// A pod's GPU is allocated to it by the kubelet, so the pod holds it even while nothing runs.
    allocated: bool,
    /// On a MIG device: NVML reports memory but no SM utilisation per process.
    mig: bool,
}

struct SimGpu {
    idle_mw: u64,
    max_mw: u64,
    memory_total_bytes: u64,
    /// For a MIG device, its parent GPU.
    mig_parent: Option<String>,
}

/// What the demo plants for right-sizing and alerts to find (issue 24 item 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Planted {
    /// An inference Deployment alone on an 80 GB A100, peaking at 9 GB and 12 % SM.
    Oversized,
    /// A notebook holding a GPU and memory, never busy.
    IdleNotebook,
    /// A training Job that runs only on the 14th to the 16th of the month.
    SpendSpike,
}

/// One planted workload: the ground truth tests compare with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PlantedWorkload {
    pub planted: Planted,
    pub cluster: String,
    pub namespace: String,
    pub controller_kind: String,
    pub controller_name: String,
    pub gpu_uuid: String,
    pub instance_type: String,
    /// The peak memory it reports (bytes) and its highest SM %.
    pub peak_memory_bytes: u64,
    pub sm_max_percent: u32,
}

/// One simulated node: what its agent would see.
pub struct SimNode {
    pub agent_id: String,
    pub info: NodeInfo,
    seed: u64,
    gpus: BTreeMap<String, SimGpu>,
    processes: Vec<SimProcess>,
    planted: Vec<PlantedWorkload>,
}

/// A simulated fleet.
pub struct Fleet {
    pub nodes: Vec<SimNode>,
}

impl Fleet {
    pub fn generate(spec: FleetSpec) -> Self {
        let clusters = spec.clusters.clamp(1, CLUSTERS.len() as u32) as usize;
        // A shuffled deck of instance types keeps the mix (and the GPU count) the same for every seed.
        let mut deck: Vec<&InstanceType> =
            INSTANCE_TYPES.iter().flat_map(|t| std::iter::repeat_n(t, t.per_40 as usize)).collect();
        let mut rng = Rng(hash(&[spec.seed, 0x6465636b]));
        for i in (1..deck.len()).rev() {
            deck.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let nodes = (0..spec.nodes)
            .map(|i| SimNode::generate(spec.seed, i, deck[i as usize % deck.len()], &CLUSTERS[i as usize % clusters]))
            .collect();
        Self { nodes }
    }

    /// The workloads planted for right-sizing and alerts, over every node.
    pub fn planted(&self) -> Vec<PlantedWorkload> {
        self.nodes.iter().flat_map(|n| n.planted.iter().cloned()).collect()
    }

    /// Physical GPUs (MIG devices are parts of one).
    pub fn gpu_count(&self) -> usize {
        self.nodes.iter().map(|n| n.info.devices.iter().filter(|d| d.mig_parent_uuid.is_none()).count()).sum()
    }
}

/// A 64-hex-digit container ID, as containerd, CRI-O and Docker write them.
/// The day of the month (1..=31) of a day counted from 1970-01-01 (the civil calendar, proleptic Gregorian).
fn day_of_month(days: u64) -> u64 {
    // Howard Hinnant's days-to-civil, the day only.
    let z = days + 719_468;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    doy - (153 * mp + 2) / 5 + 1
}

fn container_id(rng: &mut Rng) -> String {
    format!("{:016x}{:016x}{:016x}{:016x}", rng.next(), rng.next(), rng.next(), rng.next())
}

/// A node's EC2 instance id, stable for its cluster and name: "i-" and 17 hex digits, as EC2 makes them.
fn instance_id_of(cluster: &str, node_name: &str) -> String {
    let h = format!("{cluster}/{node_name}").bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| mix(h ^ u64::from(b)));
    format!("i-0{h:016x}")
}

fn uuid_from(h: u64, h2: u64) -> String {
    format!(
        "GPU-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xffff,
        h2 >> 48,
        h2 & 0xffff_ffff_ffff
    )
}

impl SimNode {
    fn generate(seed: u64, index: u32, it: &InstanceType, &(cluster, region): &(&str, &str)) -> Self {
        let mut rng = Rng(hash(&[seed, u64::from(index), 0x6e6f6465]));
        let zone = format!("{region}{}", *rng.pick(&['a', 'b', 'c']));
        let node_name =
            format!("ip-10-{}-{}-{}.{region}.compute.internal", rng.range(0, 31), rng.range(0, 255), rng.range(1, 254));
        let capacity_type = if rng.chance(25) { CapacityType::Spot } else { CapacityType::OnDemand };
        let mut devices = Vec::new();
        let mut gpus = BTreeMap::new();
        for g in 0..it.gpus {
            let uuid = uuid_from(rng.next(), rng.next());
            let memory_total_bytes = it.memory_gib * GIB;
            gpus.insert(
                uuid.clone(),
                SimGpu { idle_mw: it.idle_w * 1000, max_mw: it.max_w * 1000, memory_total_bytes, mig_parent: None },
            );
            devices.push(GpuDevice {
                uuid: uuid.clone(),
                model: it.model.to_string(),
                memory_total_bytes,
                index: g,
                mig_parent_uuid: None,
                mig_profile: None,
            });
            // p4de nodes run their first A100 in MIG mode, as two slices.
            if g == 0 && it.name == "p4de.24xlarge" {
                for (i, (profile, gib)) in [("3g.40gb", 40), ("4g.40gb", 40)].into_iter().enumerate() {
                    let mig = format!("MIG{}", &uuid_from(rng.next(), rng.next())[3..]);
                    gpus.insert(
                        mig.clone(),
                        SimGpu { idle_mw: 0, max_mw: 0, memory_total_bytes: gib * GIB, mig_parent: Some(uuid.clone()) },
                    );
                    devices.push(GpuDevice {
                        uuid: mig,
                        model: it.model.to_string(),
                        memory_total_bytes: gib * GIB,
                        index: i as u32,
                        mig_parent_uuid: Some(uuid.clone()),
                        mig_profile: Some(profile.to_string()),
                    });
                }
            }
        }
        let info = NodeInfo {
            cluster: cluster.to_string(),
            node_name: node_name.clone(),
            instance_type: it.name.to_string(),
            capacity_type,
            region: region.to_string(),
            zone,
            devices,
            labels: BTreeMap::new(),
            instance_id: instance_id_of(cluster, &node_name),
        };
        let mut node = SimNode { agent_id: node_name, info, seed, gpus, processes: Vec::new(), planted: Vec::new() };
        node.place_workloads(&mut rng, index);
        node.plant(index);
        node
    }

    /// On GPUs nobody holds, with a random stream of its own (the other workloads stay as they were): the
    /// first free A100 80 GB of a p4de node gets an over-provisioned inference Deployment; other free GPUs an
    /// idle notebook or a mid-month training Job, about a third each, the rest stay free.
    fn plant(&mut self, node_index: u32) {
        let mut rng = Rng(hash(&[self.seed, u64::from(node_index), 0x706c616e74]));
        let free: Vec<(String, u64)> = self
            .info
            .devices
            .iter()
            .filter(|d| {
                d.mig_parent_uuid.is_none()
                    && !self.info.devices.iter().any(|m| m.mig_parent_uuid.as_ref() == Some(&d.uuid))
            })
            .filter(|d| !self.processes.iter().any(|p| p.gpu_uuid == d.uuid))
            .map(|d| (d.uuid.clone(), d.memory_total_bytes))
            .collect();
        let oversized_here = self.info.instance_type == "p4de.24xlarge";
        for (i, (uuid, memory)) in free.into_iter().enumerate() {
            let slot = 200 + i as u32;
            let pid = 300_000 + (rng.below(1_000) as u32) * 8 + i as u32;
            let (planted, identity, memory_bytes, pattern, sm_max) = if oversized_here && i == 0 {
                let ident = self.pod_identity(&mut rng, "serve", node_index, slot);
                let pattern = Pattern::Inference { trough: 4, peak: 12, peak_hour: 14 };
                (Planted::Oversized, ident, 9_000_000_000, pattern, 12)
            } else {
                match rng.below(3) {
                    0 => {
                        let ident = self.notebook_identity(&mut rng);
                        let pattern = Pattern::Notebook { active_percent: 0, busy: 1 };
                        (Planted::IdleNotebook, ident, memory / 100 * rng.range(10, 30), pattern, 0)
                    }
                    1 => {
                        let ident = self.pod_identity(&mut rng, "train", node_index, slot);
                        let util = rng.range(85, 95) as u32;
                        (Planted::SpendSpike, ident, memory / 100 * rng.range(60, 85), Pattern::MidMonth { util }, util)
                    }
                    _ => continue,
                }
            };
            self.planted.push(PlantedWorkload {
                planted,
                cluster: self.info.cluster.clone(),
                namespace: identity.namespace.clone(),
                controller_kind: identity.controller_kind.clone(),
                controller_name: identity.controller_name.clone(),
                gpu_uuid: uuid.clone(),
                instance_type: self.info.instance_type.clone(),
                peak_memory_bytes: memory_bytes,
                sm_max_percent: sm_max,
            });
            self.push(&uuid, pid, memory_bytes, pattern, identity);
        }
    }

    /// Decides who runs on each GPU. A multi-GPU training job may take the whole node.
    fn place_workloads(&mut self, rng: &mut Rng, node_index: u32) {
        let mig_parents: Vec<String> = self.gpus.values().filter_map(|g| g.mig_parent.clone()).collect();
        let slices: Vec<String> =
            self.gpus.iter().filter(|(_, g)| g.mig_parent.is_some()).map(|(u, _)| u.clone()).collect();
        let uuids: Vec<String> = self
            .info
            .devices
            .iter()
            .filter(|d| d.mig_parent_uuid.is_none() && !mig_parents.contains(&d.uuid))
            .map(|d| d.uuid.clone())
            .collect();
        let mut pid = 1000 + rng.range(0, 30_000) as u32;
        let mut next_pid = || {
            pid += 1 + (pid % 7);
            pid
        };
        for (i, uuid) in slices.iter().enumerate() {
            let ident = self.pod_identity(rng, "serve", node_index, 100 + i as u32);
            let pattern = Pattern::Inference { trough: 5, peak: 50, peak_hour: 15 };
            let mem = self.gpus[uuid].memory_total_bytes / 100 * rng.range(30, 70);
            self.push(uuid, next_pid(), mem, pattern, ident);
        }
        if uuids.len() >= 4 && slices.is_empty() && rng.chance(35) {
            let ident = self.pod_identity(rng, "train", node_index, 0);
            let base = rng.range(90, 99) as u32;
            let mem_frac = rng.range(60, 92);
            for uuid in &uuids {
                let memory_bytes = self.gpus[uuid].memory_total_bytes / 100 * mem_frac;
                self.push(uuid, next_pid(), memory_bytes, Pattern::Training { base }, ident.clone());
            }
            return;
        }
        for (g, uuid) in uuids.iter().enumerate() {
            let mem = self.gpus[uuid].memory_total_bytes;
            let slot = g as u32;
            match rng.below(100) {
                0..=19 => {
                    let ident = self.pod_identity(rng, "train", node_index, slot);
                    let base = rng.range(88, 99) as u32;
                    self.push(uuid, next_pid(), mem / 100 * rng.range(50, 90), Pattern::Training { base }, ident);
                }
                20..=44 => {
                    let ident = self.pod_identity(rng, "serve", node_index, slot);
                    let peak = rng.range(40, 60) as u32;
                    let trough = rng.range(3, 15) as u32;
                    let pattern = Pattern::Inference { trough, peak, peak_hour: rng.range(13, 20) };
                    self.push(uuid, next_pid(), mem / 100 * rng.range(30, 60), pattern, ident);
                    if rng.chance(40) {
                        // Time-sliced: a notebook shares this GPU with the inference server.
                        let ident = self.notebook_identity(rng);
                        let pattern =
                            Pattern::Notebook { active_percent: rng.range(10, 30), busy: rng.range(15, 35) as u32 };
                        self.push(uuid, next_pid(), mem / 100 * rng.range(10, 30), pattern, ident);
                    }
                }
                45..=62 => {
                    let ident = self.notebook_identity(rng);
                    let pattern =
                        Pattern::Notebook { active_percent: rng.range(5, 25), busy: rng.range(20, 70) as u32 };
                    self.push(uuid, next_pid(), mem / 100 * rng.range(15, 60), pattern, ident);
                }
                63..=74 => {
                    let ident = self.batch_identity(rng, node_index, slot);
                    let period_slots = rng.range(40, 400);
                    let pattern = Pattern::Batch {
                        period_slots,
                        run_slots: rng.range(period_slots / 5, period_slots * 3 / 4),
                        offset: rng.below(period_slots),
                        util: rng.range(65, 95) as u32,
                    };
                    self.push(uuid, next_pid(), mem / 100 * rng.range(30, 80), pattern, ident);
                }
                75..=82 => {
                    let ident = self.host_identity(rng);
                    let pattern = Pattern::Batch {
                        period_slots: rng.range(100, 600),
                        run_slots: rng.range(20, 90),
                        offset: rng.below(100),
                        util: rng.range(30, 90) as u32,
                    };
                    self.push(uuid, next_pid(), mem / 100 * rng.range(10, 50), pattern, ident);
                }
                83..=90 => {
                    // Allocated to a pod that runs nothing on it: idle, but held.
                    let ident = self.pod_identity(rng, "serve", node_index, slot);
                    self.push(uuid, next_pid(), 0, Pattern::Reserved, ident);
                }
                _ => {} // nobody: an idle GPU
            }
        }
    }

    fn push(&mut self, uuid: &str, base_pid: u32, memory_bytes: u64, pattern: Pattern, identity: WorkloadIdentity) {
        let key = workload_key(&self.info, &identity);
        let allocated = identity.kind == WorkloadKind::KubernetesPod;
        let mig = self.gpus.get(uuid).is_some_and(|g| g.mig_parent.is_some());
        self.processes.push(SimProcess {
            gpu_uuid: uuid.to_string(),
            base_pid,
            memory_bytes,
            pattern,
            identity,
            key,
            allocated,
            mig,
        });
    }

    fn pod_identity(&self, rng: &mut Rng, role: &str, node_index: u32, slot: u32) -> WorkloadIdentity {
        let (team, components) = rng.pick(TEAMS);
        let component = *rng.pick(components);
        let version = rng.range(1, 12);
        let suffix = format!("{:05x}", hash(&[self.seed, u64::from(node_index), u64::from(slot), 0x706f64]) & 0xfffff);
        let (controller_kind, controller_name, pod) = if role == "train" {
            let job = format!("{component}-train-v{version}");
            ("Job", job.clone(), format!("{job}-{suffix}"))
        } else {
            let dep = format!("{component}-serving");
            ("Deployment", dep.clone(), format!("{dep}-7d9f8c{}-{suffix}", rng.range(10, 99)))
        };
        let mut labels = BTreeMap::new();
        labels.insert("app.kubernetes.io/name".into(), component.to_string());
        labels.insert("backstage.io/kubernetes-id".into(), component.to_string());
        labels.insert("team".into(), team.to_string());
        labels.insert("mlflow.org/model-name".into(), component.to_string());
        labels.insert("mlflow.org/model-version".into(), version.to_string());
        let mut env = BTreeMap::new();
        if role == "train" {
            env.insert(
                "MLFLOW_RUN_ID".into(),
                format!("{:032x}", u128::from(hash(&[self.seed, u64::from(node_index), u64::from(slot)]))),
            );
            env.insert("MLFLOW_EXPERIMENT_ID".into(), (rng.range(1, 40)).to_string());
        }
        let mut namespace_labels = BTreeMap::new();
        namespace_labels.insert("backstage.io/owner".into(), format!("group:default/{team}"));
        let uid_hash = hash(&[self.seed, u64::from(node_index), u64::from(slot), 0x756964]);
        WorkloadIdentity {
            kind: WorkloadKind::KubernetesPod,
            namespace: format!("team-{team}"),
            pod,
            pod_uid: format!(
                "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                uid_hash >> 32,
                (uid_hash >> 16) & 0xffff,
                uid_hash & 0xffff,
                rng.below(0xffff),
                rng.next() & 0xffff_ffff_ffff
            ),
            container: if role == "train" { "trainer".into() } else { "server".into() },
            controller_kind: controller_kind.into(),
            controller_name,
            labels,
            namespace_labels,
            container_runtime: "containerd".into(),
            container_id: container_id(rng),
            env,
            ..Default::default()
        }
    }

    fn notebook_identity(&self, rng: &mut Rng) -> WorkloadIdentity {
        let user = *rng.pick(USERS);
        let mut labels = BTreeMap::new();
        labels.insert("app.kubernetes.io/name".into(), "jupyter".into());
        labels.insert("team".into(), rng.pick(TEAMS).0.to_string());
        let sts = format!("jupyter-{user}-{:04x}", rng.below(0x10000));
        WorkloadIdentity {
            kind: WorkloadKind::KubernetesPod,
            namespace: "notebooks".into(),
            pod: format!("{sts}-0"),
            pod_uid: uuid_from(rng.next(), rng.next())[4..].to_string(),
            container: "notebook".into(),
            controller_kind: "StatefulSet".into(),
            controller_name: sts,
            labels,
            container_runtime: "containerd".into(),
            container_id: container_id(rng),
            ..Default::default()
        }
    }

    fn batch_identity(&self, rng: &mut Rng, node_index: u32, slot: u32) -> WorkloadIdentity {
        if rng.chance(50) {
            let family = format!("{}-batch-embed", rng.pick(TEAMS).0);
            let task =
                format!("{:032x}", u128::from(hash(&[self.seed, u64::from(node_index), u64::from(slot), 0x65637])));
            WorkloadIdentity {
                kind: WorkloadKind::EcsTask,
                ecs_cluster: "gpu-batch".into(),
                ecs_task_family: family,
                ecs_task_arn: format!("arn:aws:ecs:{}:123456789012:task/gpu-batch/{task}", self.info.region),
                container_runtime: "docker".into(),
                container_id: container_id(rng),
                ..Default::default()
            }
        } else {
            let user = *rng.pick(USERS);
            WorkloadIdentity {
                kind: WorkloadKind::SlurmJob,
                slurm_job_id: (100_000 + hash(&[self.seed, u64::from(node_index), u64::from(slot)]) % 900_000)
                    .to_string(),
                slurm_account: rng.pick(TEAMS).0.to_string(),
                user: user.into(),
                ..Default::default()
            }
        }
    }

    fn host_identity(&self, rng: &mut Rng) -> WorkloadIdentity {
        let i = rng.below(USERS.len() as u64);
        WorkloadIdentity {
            kind: WorkloadKind::HostProcess,
            user: USERS[i as usize].into(),
            uid: Some(1000 + i as u32),
            ..Default::default()
        }
    }

    /// The readings of process `p` in slot `slot` (of `slot_ns` nanoseconds), or `None` when it is not
    /// on the GPU then. Returns (pid, SM percent).
    fn process_in_slot(&self, p: &SimProcess, slot: u64, slot_ns: u64) -> Option<(u32, u32)> {
        let noise = hash(&[self.seed, u64::from(p.base_pid), slot]);
        match p.pattern {
            Pattern::Training { base } => Some((p.base_pid, base - (noise % 4) as u32)),
            Pattern::Inference { trough, peak, peak_hour } => {
                // Minutes from the daily peak, 0..=720, turned into a triangle wave.
                let minute_of_day = (slot * slot_ns / NS_PER_SEC / 60) % 1440;
                let from_peak = (minute_of_day + 1440 - peak_hour * 60) % 1440;
                let distance = from_peak.min(1440 - from_peak);
                let span = u64::from(peak - trough);
                let level = u64::from(peak) - span * distance / 720;
                let jitter = (noise % 5) as u32;
                Some((p.base_pid, (level as u32).saturating_sub(jitter).max(1)))
            }
            Pattern::Notebook { active_percent, busy } => {
                let stretch = slot * slot_ns / (600 * NS_PER_SEC);
                let active = hash(&[self.seed, u64::from(p.base_pid), stretch]) % 100 < active_percent;
                Some((p.base_pid, if active { busy - (noise % 5) as u32 } else { 0 }))
            }
            Pattern::Batch { period_slots, run_slots, offset, util } => {
                // Periods are defined on a 15-second grid so that a job's schedule does not depend on
                // the report interval.
                let grid = slot * slot_ns / (15 * NS_PER_SEC);
                let phase = (grid + offset) % period_slots;
                let run = (grid + offset) / period_slots;
                (phase < run_slots).then(|| (p.base_pid + (run % 50_000) as u32 * 2, util - (noise % 6) as u32))
            }
            Pattern::Reserved => None,
            Pattern::MidMonth { util } => {
                let day_of_month = day_of_month(slot * slot_ns / NS_PER_SEC / 86_400);
                (14..=16).contains(&day_of_month).then(|| (p.base_pid, util - (noise % 4) as u32))
            }
        }
    }

    fn slot_tick(&self, slot: u64, slot_ns: u64) -> Tick {
        let mut tick = Tick::default();
        let mut busy: BTreeMap<&str, (u32, u64)> = BTreeMap::new();
        for p in &self.processes {
            if let Some((pid, sm)) = self.process_in_slot(p, slot, slot_ns) {
                // Its working set breathes: up to 15 % below its footprint, which is its peak.
                let dip = hash(&[self.seed, u64::from(pid), slot, 1]) % 16;
                let memory_bytes = p.memory_bytes - p.memory_bytes / 100 * dip;
                let e = busy.entry(&p.gpu_uuid).or_default();
                e.0 += sm;
                e.1 += memory_bytes;
                tick.processes.push(ProcessSample {
                    pid,
                    gpu_uuid: p.gpu_uuid.clone(),
                    // NVML has no per-process utilisation under MIG.
                    sm_util_percent: (!p.mig).then_some(sm),
                    memory_util_percent: (!p.mig).then_some(sm / 2),
                    used_memory_bytes: memory_bytes,
                    identity: Some(p.identity.clone()),
                });
            }
        }
        for (uuid, g) in &self.gpus {
            let (sm, mem) = busy.get(uuid.as_str()).copied().unwrap_or_default();
            let util = sm.min(100);
            let mig = g.mig_parent.is_some();
            tick.gpus.push(GpuSample {
                uuid: uuid.clone(),
                utilization_percent: (!mig).then_some(util),
                memory_utilization_percent: (!mig).then_some(util / 2),
                memory_used_bytes: (mem + if mem > 0 { 512 << 20 } else { 0 }).min(g.memory_total_bytes),
                power_milliwatts: (!mig).then(|| g.idle_mw + (g.max_mw - g.idle_mw) * u64::from(util) / 100),
                energy_counter_millijoules: None,
            });
        }
        tick
    }

    /// The exact ground truth of a slot-aligned window [from, to): per GPU, and per (GPU, workload).
    /// A MIG device is held and used through its slices' workloads but adds no observed time of its
    /// own (its parent's time is the GPU's time); processes on MIG devices use no measured SM time.
    pub fn truth(&self, from_ns: u64, to_ns: u64, slot_ns: u64) -> Truth {
        let mut truth = Truth::default();
        let mut slot = from_ns / slot_ns;
        while slot * slot_ns < to_ns {
            let start = (slot * slot_ns).max(from_ns);
            let end = ((slot + 1) * slot_ns).min(to_ns);
            let len = end - start;
            for (uuid, g) in &self.gpus {
                truth.gpus.entry(uuid.clone()).or_default().observed_ns += if g.mig_parent.is_some() { 0 } else { len };
            }
            let mut held: BTreeMap<(&str, &str), u64> = BTreeMap::new();
            for p in &self.processes {
                let present = self.process_in_slot(p, slot, slot_ns);
                if present.is_none() && !p.allocated {
                    continue;
                }
                let used = match present {
                    Some((_, sm)) if !p.mig => len * u64::from(sm) / 100,
                    _ => 0,
                };
                *held.entry((&p.gpu_uuid, &p.key)).or_default() += used;
            }
            let mut held_gpus = std::collections::BTreeSet::new();
            for ((uuid, key), used) in held {
                let w = truth.workloads.entry((uuid.to_string(), key.to_string())).or_default();
                w.held_ns += len;
                w.used_ns += used;
                truth.gpus.entry(uuid.to_string()).or_default().used_ns += used;
                held_gpus.insert(uuid);
            }
            for uuid in held_gpus {
                truth.gpus.entry(uuid.to_string()).or_default().held_ns += len;
            }
            slot += 1;
        }
        truth
    }

    /// GPUs the kubelet allocated to pods, with their holders.
    pub fn allocations(&self) -> Vec<GpuAllocation> {
        let mut out: Vec<GpuAllocation> = self
            .processes
            .iter()
            .filter(|p| p.allocated)
            .map(|p| GpuAllocation { gpu_uuid: p.gpu_uuid.clone(), workload: p.identity.clone() })
            .collect();
        out.dedup();
        out
    }
}

/// One container's claim on a device, as the kubelet's pod-resources API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldAllocation {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// As the NVIDIA device plugin writes it: `GPU-<uuid>`, `GPU-<uuid>::<replica>` when time-sliced,
    /// `MIG-<uuid>`.
    pub device_id: String,
}

/// A simulated node's surroundings as a real agent finds them: the pods and namespaces the API server
/// lists, the kubelet's device allocations and the ECS agent's task list (the `/proc` tree is written to
/// disk by `materialize`). Objects are in the APIs' own JSON shapes.
#[derive(Debug, Clone)]
pub struct World {
    /// The node's own object, with the labels EKS puts on managed nodes.
    pub node: serde_json::Value,
    pub pods: Vec<serde_json::Value>,
    pub namespaces: Vec<serde_json::Value>,
    pub allocations: Vec<WorldAllocation>,
    pub ecs_tasks: Vec<serde_json::Value>,
}

impl SimNode {
    fn uid_of(identity: &WorkloadIdentity) -> u32 {
        identity.uid.unwrap_or_else(|| USERS.iter().position(|u| *u == identity.user).map_or(0, |i| 1000 + i as u32))
    }

    fn cgroup_of(identity: &WorkloadIdentity) -> String {
        match identity.kind {
            WorkloadKind::KubernetesPod => format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{}.scope",
                identity.pod_uid.replace('-', "_"),
                identity.container_id
            ),
            WorkloadKind::EcsTask => format!(
                "0::/ecstasks.slice/ecstasks-{}.slice/docker-{}.scope",
                identity.ecs_task_arn.rsplit('/').next().unwrap_or_default(),
                identity.container_id
            ),
            WorkloadKind::SlurmJob => {
                format!("0::/system.slice/slurmstepd.scope/job_{}/step_0/user/task_0", identity.slurm_job_id)
            }
            _ => format!("0::/user.slice/user-{0}.slice/session-{0}.scope", Self::uid_of(identity)),
        }
    }

    /// Writes the `/proc` entries of every process that runs in [from, to) under `proc_root`, and the
    /// users into `passwd`; returns what the API server, the kubelet and the ECS agent would answer.
    pub fn materialize(
        &self,
        proc_root: &std::path::Path,
        passwd: &std::path::Path,
        from_ns: u64,
        to_ns: u64,
        slot_ns: u64,
    ) -> std::io::Result<World> {
        let users: String =
            USERS.iter().enumerate().map(|(i, u)| format!("{u}:x:{0}:{0}::/home/{u}:/bin/bash\n", 1000 + i)).collect();
        std::fs::write(passwd, format!("root:x:0:0:root:/root:/bin/bash\n{users}"))?;
        for p in &self.processes {
            let mut pids = std::collections::BTreeSet::new();
            let mut slot = from_ns / slot_ns;
            while slot * slot_ns < to_ns {
                if let Some((pid, _)) = self.process_in_slot(p, slot, slot_ns) {
                    pids.insert(pid);
                }
                slot += 1;
            }
            let env: Vec<(&str, &str)> = p.identity.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            for pid in pids {
                crate::identify::proc::write_fake(
                    proc_root,
                    pid,
                    Self::uid_of(&p.identity),
                    u64::from(pid),
                    "python3",
                    &env,
                    &Self::cgroup_of(&p.identity),
                )?;
            }
        }
        let info = &self.info;
        let capacity = if info.capacity_type == CapacityType::Spot { "SPOT" } else { "ON_DEMAND" };
        let node = serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": { "name": info.node_name, "uid": format!("node-{}", info.node_name), "resourceVersion": "1", "labels": {
                "kubernetes.io/hostname": info.node_name,
                "node.kubernetes.io/instance-type": info.instance_type,
                "eks.amazonaws.com/capacityType": capacity,
                "eks.amazonaws.com/nodegroup": format!("{}-{}", info.instance_type.split('.').next().unwrap_or_default(), capacity.to_ascii_lowercase()),
                "topology.kubernetes.io/region": info.region,
                "topology.kubernetes.io/zone": info.zone,
            } },
        });
        let mut world =
            World { node, pods: Vec::new(), namespaces: Vec::new(), allocations: Vec::new(), ecs_tasks: Vec::new() };
        let mut seen_pods = std::collections::BTreeSet::new();
        let mut seen_ns = std::collections::BTreeSet::new();
        let mut seen_tasks = std::collections::BTreeSet::new();
        for p in &self.processes {
            let w = &p.identity;
            match w.kind {
                WorkloadKind::KubernetesPod if seen_pods.insert(w.pod_uid.clone()) => world.pods.push(self.pod_json(w)),
                WorkloadKind::EcsTask if seen_tasks.insert(w.ecs_task_arn.clone()) => world.ecs_tasks.push(serde_json::json!({
                    "Arn": w.ecs_task_arn, "DesiredStatus": "RUNNING", "KnownStatus": "RUNNING",
                    "Family": w.ecs_task_family, "Version": "3",
                    "Containers": [{ "DockerId": w.container_id, "DockerName": format!("ecs-{}-3-main", w.ecs_task_family), "Name": "main" }],
                })),
                _ => {}
            }
            if w.kind == WorkloadKind::KubernetesPod && seen_ns.insert(w.namespace.clone()) {
                world.namespaces.push(serde_json::json!({
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": { "name": w.namespace, "uid": format!("ns-{}", w.namespace), "resourceVersion": "1", "labels": w.namespace_labels },
                    "spec": { "finalizers": ["kubernetes"] }, "status": { "phase": "Active" },
                }));
            }
        }
        for a in self.allocations() {
            let sharing = self.processes.iter().filter(|p| p.allocated && p.gpu_uuid == a.gpu_uuid).count();
            let replica = world.allocations.iter().filter(|x| x.device_id.starts_with(&a.gpu_uuid)).count();
            world.allocations.push(WorldAllocation {
                namespace: a.workload.namespace.clone(),
                pod: a.workload.pod.clone(),
                container: a.workload.container.clone(),
                device_id: if sharing > 1 { format!("{}::{replica}", a.gpu_uuid) } else { a.gpu_uuid.clone() },
            });
        }
        Ok(world)
    }

    fn pod_json(&self, w: &WorkloadIdentity) -> serde_json::Value {
        let mut labels = w.labels.clone();
        let (api_version, owner_kind, owner_name) = match w.controller_kind.as_str() {
            "Deployment" => {
                // <deployment>-<pod-template-hash>-<suffix>: the ReplicaSet is the pod name less its suffix.
                let rs = w.pod.rsplit_once('-').map_or(w.pod.as_str(), |(rs, _)| rs).to_string();
                let hash = rs.rsplit_once('-').map_or("", |(_, h)| h).to_string();
                labels.insert("pod-template-hash".into(), hash);
                ("apps/v1", "ReplicaSet", rs)
            }
            "Job" => ("batch/v1", "Job", w.controller_name.clone()),
            kind => ("apps/v1", kind, w.controller_name.clone()),
        };
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": w.pod, "namespace": w.namespace, "uid": w.pod_uid, "resourceVersion": "1",
                "labels": labels,
                "annotations": { "kubectl.kubernetes.io/restartedAt": "2026-11-01T00:00:00Z" },
                "ownerReferences": [{ "apiVersion": api_version, "kind": owner_kind, "name": owner_name,
                                      "uid": format!("owner-{}", w.pod_uid), "controller": true, "blockOwnerDeletion": true }],
            },
            "spec": {
                "nodeName": self.info.node_name,
                "containers": [{ "name": w.container, "image": "registry.example.com/ml/serving:1.4.2",
                                 "resources": { "limits": { "nvidia.com/gpu": "1" } } }],
            },
            "status": {
                "phase": "Running",
                "containerStatuses": [{ "name": w.container, "ready": true, "restartCount": 0, "started": true,
                                        "image": "registry.example.com/ml/serving:1.4.2",
                                        "imageID": "registry.example.com/ml/serving@sha256:0f1e2d3c4b5a",
                                        "containerID": format!("containerd://{}", w.container_id) }],
            },
        })
    }
}

/// GPU time, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GpuTime {
    /// Time the GPU was observed (only meaningful per GPU).
    pub observed_ns: u64,
    /// Time held: by any workload (per GPU), or by this workload.
    pub held_ns: u64,
    /// Time used: mean SM utilisation × time.
    pub used_ns: u64,
}

/// What really happened over a window, for tests to compare with the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Truth {
    pub gpus: BTreeMap<String, GpuTime>,
    /// Keyed by (GPU UUID, workload key as the collector names it).
    pub workloads: BTreeMap<(String, String), GpuTime>,
}

/// The collector's name for a workload: `pod:<cluster>/<namespace>/<pod>/<container>`,
/// `ecs:<cluster>/<task family>/<task id>`,
/// `slurm:<cluster>/<job id>`, `systemd:<cluster>/<node>/<unit>`, `container:<cluster>/<node>/<id>`,
/// `user:<cluster>/<node>/<user>`, or `unidentified:<cluster>/<node>`. The simulator names its workloads
/// the same way so that its ground truth can be compared with the ledger.
pub fn workload_key(node: &NodeInfo, w: &WorkloadIdentity) -> String {
    let (c, n) = (&node.cluster, &node.node_name);
    match w.kind {
        WorkloadKind::KubernetesPod => format!("pod:{c}/{}/{}/{}", w.namespace, w.pod, w.container),
        WorkloadKind::EcsTask => {
            let id = w.ecs_task_arn.rsplit('/').next().unwrap_or_default();
            match w.ecs_task_family.as_str() {
                "" => format!("ecs:{c}/{id}"),
                family => format!("ecs:{c}/{family}/{id}"),
            }
        }
        WorkloadKind::SlurmJob => format!("slurm:{c}/{}", w.slurm_job_id),
        WorkloadKind::SystemdService => format!("systemd:{c}/{n}/{}", w.systemd_unit),
        WorkloadKind::Container => format!("container:{c}/{n}/{}", w.container_id),
        WorkloadKind::HostProcess => format!("user:{c}/{n}/{}", w.user),
        WorkloadKind::Unspecified => format!("unidentified:{c}/{n}"),
    }
}

/// A `GpuSource` over one simulated node. Readings are those of the slot (report interval) the sample
/// time falls in; the energy counter integrates power over the sample spacing.
pub struct SimSource {
    node: SimNode,
    /// Report processes without identities (the agent's identifier must find them).
    anonymous: bool,
    slot_ns: u64,
    energy_mj: BTreeMap<String, u64>,
    last_sample_ns: Option<u64>,
}

impl SimSource {
    pub fn new(node: SimNode, slot_ns: u64) -> Self {
        let energy_mj = node
            .gpus
            .keys()
            .map(|u| (u.clone(), hash(&[node.seed, u.len() as u64, u.as_bytes()[4] as u64]) % 1_000_000_000))
            .collect();
        Self { node, anonymous: false, slot_ns: slot_ns.max(1), energy_mj, last_sample_ns: None }
    }

    /// The node as reported (for an agent that fills in what its node object says).
    pub fn node_info_mut(&mut self) -> &mut NodeInfo {
        &mut self.node.info
    }

    pub fn set_anonymous(&mut self, anonymous: bool) {
        self.anonymous = anonymous;
    }
}

impl GpuSource for SimSource {
    fn node(&self) -> &NodeInfo {
        &self.node.info
    }

    fn allocations(&self) -> Vec<GpuAllocation> {
        if self.anonymous { Vec::new() } else { self.node.allocations() }
    }

    fn sample(&mut self, at_unix_nanos: u64) -> Result<Tick, SourceError> {
        let mut tick = self.node.slot_tick(at_unix_nanos / self.slot_ns, self.slot_ns);
        if self.anonymous {
            tick.processes.iter_mut().for_each(|p| p.identity = None);
        }
        let elapsed_ns = self.last_sample_ns.map_or(0, |last| at_unix_nanos.saturating_sub(last));
        self.last_sample_ns = Some(at_unix_nanos);
        for g in &mut tick.gpus {
            let Some(power) = g.power_milliwatts else { continue };
            let counter = self.energy_mj.entry(g.uuid.clone()).or_default();
            // mW × ns / 1e9 = mJ
            *counter += power * elapsed_ns / NS_PER_SEC;
            g.energy_counter_millijoules = Some(*counter);
        }
        Ok(tick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_fleet_and_another_seed_a_different_one() {
        let a = Fleet::generate(FleetSpec::demo(7));
        let b = Fleet::generate(FleetSpec::demo(7));
        let c = Fleet::generate(FleetSpec::demo(8));
        let names = |f: &Fleet| f.nodes.iter().map(|n| n.info.clone()).collect::<Vec<_>>();
        assert_eq!(names(&a), names(&b));
        assert_ne!(names(&a), names(&c));
        assert_eq!(a.nodes[3].slot_tick(1234, 15 * NS_PER_SEC), b.nodes[3].slot_tick(1234, 15 * NS_PER_SEC));
    }

    #[test]
    fn the_demo_fleet_has_about_200_gpus_over_3_clusters_with_idle_and_busy_ones() {
        let fleet = Fleet::generate(FleetSpec::demo(1));
        assert_eq!(fleet.nodes.len(), 40);
        let gpus = fleet.gpu_count();
        assert_eq!(gpus, 195);
        let clusters: std::collections::BTreeSet<_> = fleet.nodes.iter().map(|n| n.info.cluster.clone()).collect();
        assert_eq!(clusters.len(), 3);
        let kinds: std::collections::BTreeSet<_> =
            fleet.nodes.iter().flat_map(|n| n.processes.iter().map(|p| format!("{:?}", p.identity.kind))).collect();
        for k in ["KubernetesPod", "EcsTask", "SlurmJob", "HostProcess"] {
            assert!(kinds.contains(k), "no {k} workload in {kinds:?}");
        }
        let unheld = fleet
            .nodes
            .iter()
            .flat_map(|n| n.gpus.keys().filter(|u| !n.processes.iter().any(|p| &&p.gpu_uuid == u)))
            .count();
        assert!(unheld > 0, "the demo should show some idle GPUs");
    }

    #[test]
    fn the_demo_plants_an_oversized_a100_pod_idle_notebooks_and_a_mid_month_spike_with_their_ground_truth() {
        let fleet = Fleet::generate(FleetSpec::demo(1));
        let planted = fleet.planted();
        assert_eq!(planted, Fleet::generate(FleetSpec::demo(1)).planted(), "deterministic from the seed");
        let of = |k: Planted| planted.iter().filter(|p| p.planted == k).collect::<Vec<_>>();
        let oversized = of(Planted::Oversized);
        assert!(!oversized.is_empty() && !of(Planted::IdleNotebook).is_empty() && !of(Planted::SpendSpike).is_empty());
        let slot_ns = 15 * NS_PER_SEC;
        // 2026-11-13 and 2026-11-14, 00:00 UTC, in slots.
        let (nov13, nov14) = (1_794_528_000 * NS_PER_SEC / slot_ns, 1_794_614_400 * NS_PER_SEC / slot_ns);
        for o in &oversized {
            assert_eq!(
                (o.instance_type.as_str(), o.controller_kind.as_str(), o.peak_memory_bytes),
                ("p4de.24xlarge", "Deployment", 9_000_000_000)
            );
            let node = fleet.nodes.iter().find(|n| n.info.devices.iter().any(|d| d.uuid == o.gpu_uuid)).unwrap();
            let device = node.info.devices.iter().find(|d| d.uuid == o.gpu_uuid).unwrap();
            assert_eq!((device.model.as_str(), device.mig_profile.clone()), ("NVIDIA A100-SXM4-80GB", None));
            let max = (0..5_760)
                .filter_map(|s| {
                    node.slot_tick(nov13 + s, slot_ns).processes.into_iter().find(|p| p.gpu_uuid == o.gpu_uuid)
                })
                .map(|p| (p.sm_util_percent.unwrap(), p.used_memory_bytes))
                .fold((0, 0), |a, b| (a.0.max(b.0), a.1.max(b.1)));
            assert!(max.0 <= 12 && max.0 >= 10 && max.1 <= 9_000_000_000, "{max:?}");
        }
        let on = |p: &PlantedWorkload, slot: u64| {
            let node = fleet
                .nodes
                .iter()
                .find(|n| n.info.cluster == p.cluster && n.info.devices.iter().any(|d| d.uuid == p.gpu_uuid))
                .unwrap();
            node.slot_tick(slot, slot_ns)
                .processes
                .into_iter()
                .find(|s| s.gpu_uuid == p.gpu_uuid)
                .map(|s| s.sm_util_percent)
        };
        for p in of(Planted::SpendSpike) {
            assert_eq!(on(p, nov13), None, "not on the 13th");
            assert!(on(p, nov14).flatten().is_some_and(|sm| sm >= 80), "on the 14th");
        }
        for p in of(Planted::IdleNotebook) {
            assert_eq!(on(p, nov13), Some(Some(0)));
        }
        assert_eq!(
            (day_of_month(0), day_of_month(31), day_of_month(20_771)),
            (1, 1, 14),
            "1970-01-01, 02-01, 2026-11-14"
        );
    }

    #[test]
    fn every_node_has_its_own_stable_ec2_instance_id() {
        let fleet = Fleet::generate(FleetSpec::demo(1));
        let ids: std::collections::BTreeSet<_> = fleet.nodes.iter().map(|n| n.info.instance_id.clone()).collect();
        assert_eq!(ids.len(), fleet.nodes.len(), "one per node");
        assert!(ids.iter().all(|id| crate::identify::instance::is_ec2_instance_id(id) && id.len() == 19), "{ids:?}");
        let again = Fleet::generate(FleetSpec::demo(1));
        assert_eq!(again.nodes[5].info.instance_id, fleet.nodes[5].info.instance_id);
    }

    #[test]
    fn a_process_peaks_above_its_mean_memory_and_idle_notebook_samples_are_not_busy() {
        use crate::interval::IntervalAccumulator;
        let fleet = Fleet::generate(FleetSpec::demo(1));
        let slot_ns = 15 * NS_PER_SEC;
        let (mut peaked, mut partly_busy) = (0, 0);
        for node in &fleet.nodes {
            let mut acc = IntervalAccumulator::new(0, slot_ns);
            for slot in 0..240 {
                acc.add(node.slot_tick(slot, slot_ns));
            }
            for p in acc.close(240 * slot_ns).processes {
                assert!(p.peak_memory_bytes >= p.used_memory_bytes && p.busy_sample_count <= p.sample_count);
                peaked += usize::from(p.peak_memory_bytes > p.used_memory_bytes);
                partly_busy += usize::from(p.busy_sample_count > 0 && p.busy_sample_count < p.sample_count);
            }
        }
        assert!(peaked > 0, "some process's peak is above its mean");
        assert!(partly_busy > 0, "some process (a notebook) idles in some samples");
    }

    #[test]
    fn processes_on_one_gpu_never_exceed_100_percent() {
        let fleet = Fleet::generate(FleetSpec::demo(3));
        for node in &fleet.nodes {
            for slot in (0..20_000).step_by(37) {
                let tick = node.slot_tick(slot, 15 * NS_PER_SEC);
                let mut sums: BTreeMap<&str, u32> = BTreeMap::new();
                for p in &tick.processes {
                    *sums.entry(&p.gpu_uuid).or_default() += p.sm_util_percent.unwrap_or(0);
                }
                assert!(sums.values().all(|&s| s <= 100), "{sums:?}");
            }
        }
    }

    #[test]
    fn inference_follows_a_daily_wave_and_training_stays_high() {
        let fleet = Fleet::generate(FleetSpec::demo(11));
        let slot_ns = 60 * NS_PER_SEC;
        let mut checked = 0;
        for node in &fleet.nodes {
            for p in &node.processes {
                let at = |hour: u64| node.process_in_slot(p, hour * 60, slot_ns).map(|x| x.1);
                match p.pattern {
                    Pattern::Inference { peak_hour, trough, .. } => {
                        let peak = at(peak_hour).unwrap();
                        let night = at((peak_hour + 12) % 24).unwrap();
                        assert!(peak > night + 10, "peak {peak} night {night}");
                        assert!(night <= trough + 1);
                        checked += 1;
                    }
                    Pattern::Training { .. } => assert!(at(3).unwrap() >= 85),
                    _ => {}
                }
            }
        }
        assert!(checked > 5);
    }

    #[test]
    fn batch_jobs_start_and_end_with_a_new_pid_per_run() {
        let fleet = Fleet::generate(FleetSpec::demo(5));
        let slot_ns = 15 * NS_PER_SEC;
        let node = fleet
            .nodes
            .iter()
            .find(|n| n.processes.iter().any(|p| matches!(p.pattern, Pattern::Batch { .. })))
            .unwrap();
        let p = node.processes.iter().find(|p| matches!(p.pattern, Pattern::Batch { .. })).unwrap();
        let runs: Vec<Option<u32>> = (0..3000).map(|s| node.process_in_slot(p, s, slot_ns).map(|x| x.0)).collect();
        assert!(runs.iter().any(Option::is_none) && runs.iter().any(Option::is_some));
        let pids: std::collections::BTreeSet<_> = runs.iter().flatten().collect();
        assert!(pids.len() > 1, "one pid for every run");
    }

    #[test]
    fn truth_adds_up_per_gpu_and_per_workload() {
        let fleet = Fleet::generate(FleetSpec::demo(2));
        let slot = 15 * NS_PER_SEC;
        let from = 1_800_000_000 * NS_PER_SEC;
        for node in &fleet.nodes {
            let t = node.truth(from, from + 240 * slot, slot);
            for (uuid, g) in &t.gpus {
                let mig = node.gpus[uuid].mig_parent.is_some();
                assert_eq!(g.observed_ns, if mig { 0 } else { 240 * slot });
                let used: u64 = t.workloads.iter().filter(|((u, _), _)| u == uuid).map(|(_, w)| w.used_ns).sum();
                assert_eq!(used, g.used_ns);
                assert!(g.used_ns <= g.held_ns && (mig || g.held_ns <= g.observed_ns));
            }
        }
    }

    #[test]
    fn allocated_idle_pods_and_mig_slices_hold_their_gpus_without_measured_use() {
        let fleet = Fleet::generate(FleetSpec::demo(2));
        let slot = 15 * NS_PER_SEC;
        let (mut reserved, mut slices) = (0, 0);
        for node in &fleet.nodes {
            let t = node.truth(0, 40 * slot, slot);
            for p in &node.processes {
                let w = t.workloads.get(&(p.gpu_uuid.clone(), p.key.clone())).copied().unwrap_or_default();
                if p.pattern == Pattern::Reserved {
                    reserved += 1;
                    assert_eq!((w.held_ns, w.used_ns), (40 * slot, 0));
                }
                if p.mig {
                    slices += 1;
                    assert_eq!((w.held_ns, w.used_ns), (40 * slot, 0));
                }
            }
            assert_eq!(node.allocations().len(), node.processes.iter().filter(|p| p.allocated).count());
        }
        assert!(reserved > 0 && slices > 0, "reserved {reserved}, MIG slices {slices}");
    }

    #[test]
    fn the_sim_source_integrates_energy_from_power() {
        let fleet = Fleet::generate(FleetSpec { seed: 4, clusters: 1, nodes: 1 });
        let node = fleet.nodes.into_iter().next().unwrap();
        let mut src = SimSource::new(node, 15 * NS_PER_SEC);
        let t0 = src.sample(0).unwrap();
        let t1 = src.sample(NS_PER_SEC).unwrap();
        let (a, b) = (&t0.gpus[0], &t1.gpus[0]);
        assert_eq!(
            b.energy_counter_millijoules.unwrap() - a.energy_counter_millijoules.unwrap(),
            b.power_milliwatts.unwrap()
        );
    }
}
