//! What each stored batch tells the metrics and the live fleet view: the GPUs' latest readings and who is
//! on them, and the money and GPU time by owner labels. `Observation::of` is pure; `Fleet` keeps the
//! latest interval of every GPU (forgetting one not heard of for ten minutes) for `/api/v1/fleet`.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use serde_json::{Value, json};

use crate::cost::price::usd;
use crate::model::Batch;
use crate::report::period::utc;

/// The MLflow model a workload serves or trains ("" when none).
fn model_of(w: &crate::model::Workload) -> &str {
    w.identity.labels.get("mlflow.org/model-name").map_or("", String::as_str)
}

/// A GPU not reported for this long leaves the live view.
const FORGET_NS: u64 = 600 * 1_000_000_000;

/// Cost labels: cluster, namespace, team, owner, model.
pub type CostLabels = [String; 5];

#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    /// Shared with the batch: its key, namespace and pod are read when the view is sent.
    pub workload: std::sync::Arc<crate::model::Workload>,
    pub team: String,
    pub owner: String,
    pub model: String,
    pub sm_pct: f64,
    pub memory_bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GpuNow {
    pub cluster: String,
    pub node: String,
    pub uuid: String,
    pub index: usize,
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
    pub fn of(b: &Batch) -> Self {
        let (cluster, node) = (b.node.cluster.clone(), b.node.name.clone());
        let len = b.duration_ns();
        let owner = |i: usize| b.owners.get(i);
        // Summed under borrowed labels, copied once per distinct set (this runs for every stored batch).
        let mut costs: BTreeMap<[&str; 5], (u128, u128)> = BTreeMap::new();
        let mut time: BTreeMap<[&str; 3], (u64, u64)> = BTreeMap::new();
        for (i, h) in b.holdings.iter().enumerate() {
            let id = &h.workload.identity;
            let (team, own) = owner(i).map_or(("", "unallocated"), |o| (o.team.as_str(), o.owner.as_str()));
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
        let gpus = b
            .devices
            .iter()
            .enumerate()
            .filter(|(_, d)| !d.is_mig())
            .map(|(index, d)| {
                *observed.entry(d.model.clone()).or_default() += len;
                let reading = b.gpus.iter().find(|g| g.uuid == d.uuid);
                // The GPU's holders, on it or on its MIG slices.
                let on_it = |uuid: &str| {
                    uuid == d.uuid
                        || b.devices.iter().any(|s| s.uuid == uuid && s.mig_parent_uuid.as_deref() == Some(&d.uuid))
                };
                let holders = b
                    .holdings
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| on_it(&h.gpu_uuid))
                    .map(|(i, h)| Holder {
                        workload: h.workload.clone(),
                        team: owner(i).map(|o| o.team.clone()).unwrap_or_default(),
                        owner: owner(i).map_or("unallocated".into(), |o| o.owner.clone()),
                        model: model_of(&h.workload).to_string(),
                        sm_pct: if len > 0 { h.used_ns as f64 * 100.0 / len as f64 } else { 0.0 },
                        memory_bytes: h.memory_bytes,
                    })
                    .collect();
                GpuNow {
                    cluster: cluster.clone(),
                    node: node.clone(),
                    uuid: d.uuid.clone(),
                    index,
                    model: d.model.clone(),
                    instance_type: b.node.instance_type.clone(),
                    utilization: reading.map_or(0.0, |r| f64::from(r.utilization_ppm) / 1e6),
                    memory_used_bytes: reading.map_or(0, |r| r.memory_used_bytes),
                    memory_total_bytes: d.memory_total_bytes,
                    power_watts: reading.map_or(0.0, |r| r.power_milliwatts as f64 / 1000.0),
                    interval_end_ns: b.end_ns,
                    micros_per_hour: per_hour,
                    holders,
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

/// The latest interval of every GPU.
#[derive(Debug, Default)]
pub struct Fleet {
    gpus: RwLock<HashMap<String, GpuNow>>,
}

impl Fleet {
    pub fn update(&self, o: Observation) {
        let mut g = self.gpus.write().unwrap_or_else(|e| e.into_inner());
        for gpu in o.gpus {
            // Moved in, not copied: this runs for every stored batch.
            match g.get_mut(&gpu.uuid) {
                Some(old) if old.interval_end_ns <= gpu.interval_end_ns => *old = gpu,
                Some(_) => {}
                None => {
                    g.insert(gpu.uuid.clone(), gpu);
                }
            }
        }
    }

    /// The fleet now, as `/api/v1/fleet` and `/api/v1/live` send it.
    pub fn snapshot(&self, now_ns: u64) -> Value {
        let mut g = self.gpus.write().unwrap_or_else(|e| e.into_inner());
        g.retain(|_, x| x.interval_end_ns + FORGET_NS >= now_ns);
        let mut gpus: Vec<&GpuNow> = g.values().collect();
        gpus.sort_by(|a, b| (&a.cluster, &a.node, a.index).cmp(&(&b.cluster, &b.node, b.index)));
        let busy = gpus.iter().filter(|x| !x.holders.is_empty()).count();
        let util = if gpus.is_empty() {
            0.0
        } else {
            gpus.iter().map(|x| x.utilization).sum::<f64>() * 100.0 / gpus.len() as f64
        };
        let per_hour: u128 = gpus.iter().map(|x| x.micros_per_hour).sum();
        json!({
            "at": utc(now_ns),
            "gpus": gpus.iter().map(|x| json!({
                "cluster": x.cluster, "node": x.node, "gpu": x.uuid, "index": x.index, "model": x.model,
                "instance_type": x.instance_type,
                "utilization_pct": (x.utilization * 1000.0).round() / 10.0,
                "memory_used_bytes": x.memory_used_bytes, "memory_total_bytes": x.memory_total_bytes,
                "power_watts": (x.power_watts * 10.0).round() / 10.0,
                "interval_end": utc(x.interval_end_ns),
                "holders": x.holders.iter().map(|h| json!({
                    "workload": h.workload.key, "namespace": h.workload.identity.namespace,
                    "pod": h.workload.identity.pod, "team": h.team,
                    "owner": h.owner, "model": h.model, "sm_pct": (h.sm_pct * 10.0).round() / 10.0,
                    "memory_bytes": h.memory_bytes,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "totals": {
                "gpus": gpus.len(),
                "busy": busy,
                "utilization_pct": (util * 10.0).round() / 10.0,
                "cost_usd_per_hour": usd(per_hour),
            },
        })
    }
}
