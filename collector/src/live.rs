//! What each stored batch tells the metrics and the live fleet view: the GPUs' latest readings and who is
//! on them, and the money and GPU time by owner labels. `Observation::of` is pure; `Fleet` keeps the
//! latest interval of every GPU (forgetting one not heard of for ten minutes) for `/api/v1/fleet`. A GPU is
//! numbered as NVML numbers it on its node; its MIG devices are listed under it, never as GPUs of their own.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use serde::Serialize;

use gpucost_rules::owner::UNATTRIBUTED;
use gpucost_types::money::usd;
use gpucost_types::period::utc;
use gpucost_types::stage::Attributed;

/// The MLflow model a workload serves or trains ("" when none).
fn model_of(w: &gpucost_types::batch::Workload) -> &str {
    w.identity.labels.get("mlflow.org/model-name").map_or("", String::as_str)
}

/// A GPU not reported for this long leaves the live view.
const FORGET_NS: u64 = 600 * 1_000_000_000;

/// Cost labels: cluster, namespace, team, owner, model.
pub type CostLabels = [String; 5];

#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    /// Shared with the batch: its key, namespace and pod are read when the view is sent.
    pub workload: std::sync::Arc<gpucost_types::batch::Workload>,
    pub team: String,
    pub owner: String,
    pub model: String,
    pub sm_pct: f64,
    pub memory_bytes: u64,
    /// The MIG device it holds, when it holds a slice of the GPU rather than the GPU.
    pub mig: Option<String>,
}

/// A MIG device of a GPU.
#[derive(Debug, Clone, PartialEq)]
pub struct MigNow {
    pub uuid: String,
    /// NVML's index of the MIG device within its GPU.
    pub index: u32,
    pub profile: String,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GpuNow {
    pub cluster: String,
    pub node: String,
    pub uuid: String,
    /// NVML's index of the GPU on its node.
    pub index: u32,
    pub model: String,
    pub instance_type: String,
    pub utilization: f64,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub power_watts: f64,
    pub interval_end_ns: u64,
    /// What the GPU costs per hour (0 when unpriced).
    pub micros_per_hour: u128,
    pub holders: Vec<Holder>,
    pub mig: Vec<MigNow>,
}

/// What one stored batch adds to the metrics and the live view.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    pub agent: String,
    pub gpus: Vec<GpuNow>,
    /// Hybrid-policy charge (used + idle share) and its idle part, micro-dollars, per cost labels.
    pub costs: Vec<(CostLabels, u128, u128)>,
    /// Held and used GPU time per (cluster, namespace, team), nanoseconds.
    pub time: Vec<([String; 3], u64, u64)>,
    /// Cost of GPUs nobody held, micro-dollars.
    pub unallocated: u128,
    /// Observed GPU time per GPU model, nanoseconds.
    pub observed: Vec<(String, u64)>,
    pub cluster: String,
    pub node: String,
}

impl Observation {
    pub fn of(b: &Attributed) -> Self {
        let (cluster, node) = (b.node.cluster.clone(), b.node.name.clone());
        let len = b.duration_ns();
        let owner = |i: usize| b.owners.get(i);
        // Summed under borrowed labels, copied once per distinct set (this runs for every stored batch).
        let mut costs: BTreeMap<[&str; 5], (u128, u128)> = BTreeMap::new();
        let mut time: BTreeMap<[&str; 3], (u64, u64)> = BTreeMap::new();
        for (i, h) in b.holdings.iter().enumerate() {
            let id = &h.workload.identity;
            let (team, own) = owner(i).map_or((UNATTRIBUTED, UNATTRIBUTED), |o| (o.team.as_str(), o.owner.as_str()));
            let model = model_of(&h.workload);
            let c = b.cost.holdings.get(i).copied().unwrap_or_default();
            let e = costs.entry([&b.node.cluster, &id.namespace, team, own, model]).or_default();
            e.0 += u128::from(c.used + c.hybrid_idle);
            e.1 += u128::from(c.hybrid_idle);
            let t = time.entry([&b.node.cluster, &id.namespace, team]).or_default();
            t.0 += h.held_ns;
            t.1 += h.used_ns;
        }
        let mut observed: BTreeMap<String, u64> = BTreeMap::new();
        let per_hour =
            b.cost.price.as_ref().map_or(0, |p| u128::from(p.instance_micros_per_hour) / u128::from(p.gpus.max(1)));
        let reading = |uuid: &str| b.gpus.iter().find(|g| g.uuid == uuid);
        let gpus = b
            .devices
            .iter()
            .filter(|d| !d.is_mig())
            .map(|d| {
                *observed.entry(d.model.clone()).or_default() += len;
                let slices: Vec<_> =
                    b.devices.iter().filter(|s| s.mig_parent_uuid.as_deref() == Some(d.uuid.as_str())).collect();
                // The GPU's holders, on it or on its MIG slices.
                let on_it = |uuid: &str| uuid == d.uuid || slices.iter().any(|s| s.uuid == uuid);
                let holders = b
                    .holdings
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| on_it(&h.gpu_uuid))
                    .map(|(i, h)| Holder {
                        workload: h.workload.clone(),
                        team: owner(i).map_or(UNATTRIBUTED.into(), |o| o.team.clone()),
                        owner: owner(i).map_or(UNATTRIBUTED.into(), |o| o.owner.clone()),
                        model: model_of(&h.workload).to_string(),
                        sm_pct: if len > 0 { h.used_ns as f64 * 100.0 / len as f64 } else { 0.0 },
                        memory_bytes: h.memory_bytes,
                        mig: (h.gpu_uuid != d.uuid).then(|| h.gpu_uuid.clone()),
                    })
                    .collect();
                let mig = slices
                    .iter()
                    .map(|s| MigNow {
                        uuid: s.uuid.clone(),
                        index: s.index,
                        profile: s.mig_profile.clone().unwrap_or_default(),
                        memory_used_bytes: reading(&s.uuid).map_or(0, |r| r.memory_used_bytes),
                        memory_total_bytes: s.memory_total_bytes,
                    })
                    .collect();
                let reading = reading(&d.uuid);
                GpuNow {
                    cluster: cluster.clone(),
                    node: node.clone(),
                    uuid: d.uuid.clone(),
                    index: d.index,
                    model: d.model.clone(),
                    instance_type: b.node.instance_type.clone(),
                    utilization: reading.map_or(0.0, |r| f64::from(r.utilization_ppm) / 1e6),
                    memory_used_bytes: reading.map_or(0, |r| r.memory_used_bytes),
                    memory_total_bytes: d.memory_total_bytes,
                    power_watts: reading.map_or(0.0, |r| r.power_milliwatts as f64 / 1000.0),
                    interval_end_ns: b.end_ns,
                    micros_per_hour: per_hour,
                    holders,
                    mig,
                }
            })
            .collect();
        Observation {
            agent: b.agent_id.clone(),
            gpus,
            costs: costs.into_iter().map(|(k, (c, i))| (k.map(str::to_string), c, i)).collect(),
            time: time.into_iter().map(|(k, (h, u))| (k.map(str::to_string), h, u)).collect(),
            unallocated: b.cost.devices.iter().map(|d| u128::from(d.unallocated)).sum(),
            observed: observed.into_iter().collect(),
            cluster,
            node,
        }
    }
}

/// The latest interval of every GPU, by cluster and UUID (a GPU is its cluster's: another cluster reporting the
/// same UUID does not replace it).
#[derive(Debug, Default)]
pub struct Fleet {
    gpus: RwLock<HashMap<String, HashMap<String, GpuNow>>>,
}

impl Fleet {
    pub fn update(&self, o: Observation) {
        let mut g = self.gpus.write().unwrap_or_else(|e| e.into_inner());
        for gpu in o.gpus {
            // Moved in, not copied: this runs for every stored batch.
            let cluster = match g.get_mut(&gpu.cluster) {
                Some(c) => c,
                None => g.entry(gpu.cluster.clone()).or_default(),
            };
            match cluster.get_mut(&gpu.uuid) {
                Some(old) if old.interval_end_ns <= gpu.interval_end_ns => *old = gpu,
                Some(_) => {}
                None => {
                    cluster.insert(gpu.uuid.clone(), gpu);
                }
            }
        }
    }

    /// The fleet now, as `/api/v1/fleet` and `/api/v1/live` send it.
    pub fn snapshot(&self, now_ns: u64) -> FleetBody {
        let mut g = self.gpus.write().unwrap_or_else(|e| e.into_inner());
        for cluster in g.values_mut() {
            cluster.retain(|_, x| x.interval_end_ns + FORGET_NS >= now_ns);
        }
        g.retain(|_, c| !c.is_empty());
        let mut gpus: Vec<&GpuNow> = g.values().flat_map(HashMap::values).collect();
        gpus.sort_by(|a, b| (&a.cluster, &a.node, a.index).cmp(&(&b.cluster, &b.node, b.index)));
        let busy = gpus.iter().filter(|x| !x.holders.is_empty()).count();
        let util = if gpus.is_empty() {
            0.0
        } else {
            gpus.iter().map(|x| x.utilization).sum::<f64>() * 100.0 / gpus.len() as f64
        };
        let per_hour: u128 = gpus.iter().map(|x| x.micros_per_hour).sum();
        FleetBody {
            at: utc(now_ns),
            gpus: gpus.iter().map(|x| GpuBody::of(x)).collect(),
            totals: FleetTotals {
                gpus: gpus.len(),
                busy,
                utilization_pct: (util * 10.0).round() / 10.0,
                cost_usd_per_hour: usd(per_hour),
            },
        }
    }
}

/// `GET /api/v1/fleet`, and each `fleet` event of `/api/v1/live`: every GPU reported in the last ten minutes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FleetBody {
    /// Now (RFC 3339).
    pub at: String,
    /// By cluster, node and index.
    pub gpus: Vec<GpuBody>,
    pub totals: FleetTotals,
}

/// A GPU's latest interval and who is on it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GpuBody {
    pub cluster: String,
    pub node: String,
    /// The GPU's UUID.
    pub gpu: String,
    /// NVML's index of the GPU on its node.
    pub index: u32,
    pub model: String,
    pub instance_type: String,
    pub utilization_pct: f64,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub power_watts: f64,
    /// The end of its latest interval (RFC 3339).
    pub interval_end: String,
    pub holders: Vec<HolderBody>,
    /// Its MIG devices (none when it is not in MIG mode).
    pub mig: Vec<MigBody>,
}

impl GpuBody {
    fn of(x: &GpuNow) -> Self {
        Self {
            cluster: x.cluster.clone(),
            node: x.node.clone(),
            gpu: x.uuid.clone(),
            index: x.index,
            model: x.model.clone(),
            instance_type: x.instance_type.clone(),
            utilization_pct: (x.utilization * 1000.0).round() / 10.0,
            memory_used_bytes: x.memory_used_bytes,
            memory_total_bytes: x.memory_total_bytes,
            power_watts: (x.power_watts * 10.0).round() / 10.0,
            interval_end: utc(x.interval_end_ns),
            holders: x
                .holders
                .iter()
                .map(|h| HolderBody {
                    workload: h.workload.key.clone(),
                    namespace: h.workload.identity.namespace.clone(),
                    pod: h.workload.identity.pod.clone(),
                    team: h.team.clone(),
                    owner: h.owner.clone(),
                    model: h.model.clone(),
                    sm_pct: (h.sm_pct * 10.0).round() / 10.0,
                    memory_bytes: h.memory_bytes,
                    mig: h.mig.clone(),
                })
                .collect(),
            mig: x
                .mig
                .iter()
                .map(|m| MigBody {
                    gpu: m.uuid.clone(),
                    index: m.index,
                    profile: m.profile.clone(),
                    memory_used_bytes: m.memory_used_bytes,
                    memory_total_bytes: m.memory_total_bytes,
                })
                .collect(),
        }
    }
}

/// A workload on a GPU.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HolderBody {
    pub workload: String,
    pub namespace: String,
    pub pod: String,
    pub team: String,
    pub owner: String,
    pub model: String,
    pub sm_pct: f64,
    pub memory_bytes: u64,
    /// The MIG device it holds, when it holds a slice of the GPU rather than the GPU.
    pub mig: Option<String>,
}

/// A MIG device of a GPU.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MigBody {
    /// The MIG device's UUID.
    pub gpu: String,
    pub index: u32,
    pub profile: String,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FleetTotals {
    pub gpus: usize,
    /// GPUs with at least one holder.
    pub busy: usize,
    pub utilization_pct: f64,
    /// What the GPUs cost per hour, together.
    pub cost_usd_per_hour: String,
}

#[cfg(test)]
mod tests {
    use gpucost_proto::v1 as pb;

    use super::*;

    const NOW: u64 = 1_800_000_000 * 1_000_000_000;

    /// A node whose GPU 0 is in MIG mode with two slices (listed after it, as the agent lists them) and whose
    /// GPU 1 is whole; a pod holds the first slice.
    fn mig_node_batch() -> Attributed {
        let gpu = |uuid: &str, index: u32| pb::GpuDevice {
            uuid: uuid.into(),
            model: "NVIDIA A100-SXM4-80GB".into(),
            memory_total_bytes: 80 << 30,
            index,
            ..Default::default()
        };
        let slice = |uuid: &str, index: u32, profile: &str| pb::GpuDevice {
            mig_parent_uuid: "GPU-0".into(),
            mig_profile: profile.into(),
            memory_total_bytes: 40 << 30,
            ..gpu(uuid, index)
        };
        let b = pb::UsageBatch {
            agent_id: "p4de-1".into(),
            boot_id: "b".into(),
            seq: 1,
            node: Some(pb::NodeInfo {
                cluster: "prod".into(),
                node_name: "p4de-1".into(),
                instance_type: "p4de.24xlarge".into(),
                devices: vec![
                    gpu("GPU-0", 0),
                    slice("MIG-a", 0, "3g.40gb"),
                    slice("MIG-b", 1, "4g.40gb"),
                    gpu("GPU-1", 1),
                ],
                ..Default::default()
            }),
            interval_start_unix_nanos: NOW - 15_000_000_000,
            interval_end_unix_nanos: NOW,
            processes: vec![pb::ProcessUsage {
                pid: 7,
                gpu_uuid: "MIG-a".into(),
                sm_util_percent: 50.0,
                used_memory_bytes: 1 << 30,
                sample_count: 15,
                workload: Some(pb::WorkloadIdentity {
                    kind: pb::WorkloadKind::KubernetesPod as i32,
                    namespace: "ml".into(),
                    pod: "serve-0".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let batch = crate::ingest::validate::validate(&b, NOW, &Default::default()).expect("a valid batch");
        let priced = gpucost_types::stage::Priced { held: gpucost_rules::share::hold(batch), cost: Default::default() };
        Attributed { priced, owners: Vec::new() }
    }

    #[test]
    fn a_gpu_keeps_its_nvml_index_and_its_mig_slices_are_listed_under_it() {
        let fleet = Fleet::default();
        fleet.update(Observation::of(&mig_node_batch()));
        let now = serde_json::to_value(fleet.snapshot(NOW)).unwrap();
        let gpus = now["gpus"].as_array().unwrap();
        let numbered: Vec<_> =
            gpus.iter().map(|g| (g["gpu"].as_str().unwrap(), g["index"].as_u64().unwrap())).collect();
        assert_eq!(numbered, [("GPU-0", 0), ("GPU-1", 1)], "two GPUs numbered 0 and 1, no slice among them");
        assert_eq!(now["totals"]["gpus"], 2);
        let slices: Vec<_> = gpus[0]["mig"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["gpu"].as_str().unwrap(), m["index"].as_u64().unwrap(), m["profile"].as_str().unwrap()))
            .collect();
        assert_eq!(slices, [("MIG-a", 0, "3g.40gb"), ("MIG-b", 1, "4g.40gb")]);
        assert_eq!(gpus[0]["holders"][0]["pod"], "serve-0");
        assert_eq!(gpus[0]["holders"][0]["mig"], "MIG-a", "the holder's slice");
        assert_eq!(gpus[1]["mig"].as_array().map(Vec::len), Some(0));
        assert_eq!(now["totals"]["busy"], 1);
    }
}
