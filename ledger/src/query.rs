//! What the ledger is asked and what it answers: GPU time and cost grouped by dimensions, prices in force,
//! and per-GPU charges with each holder's part (FOCUS's origin and allocated charges). Money in micro-dollars.

use serde::Serialize;

use gpucost_types::dimension::Dimension;
use gpucost_types::policy::Policy;

/// A usage query over [from_ns, to_ns), both on bucket boundaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    pub from_ns: u64,
    pub to_ns: u64,
    pub group_by: Vec<Dimension>,
}

/// GPU time in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GpuTime {
    /// GPU time observed: `None` when grouped by workload (a workload does not own a GPU's clock).
    pub observed_ns: Option<u128>,
    /// Held: by any workload when grouped by GPU/node/cluster, by this workload when grouped by workload.
    pub held_ns: u128,
    pub used_ns: u128,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// One value per `group_by` dimension, in order.
    pub group: Vec<String>,
    pub time: GpuTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageReport {
    pub rows: Vec<UsageRow>,
    /// Over every GPU in the window, whatever the grouping.
    pub totals: GpuTime,
}

/// A cost query over [from_ns, to_ns), both on bucket boundaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostQuery {
    pub from_ns: u64,
    pub to_ns: u64,
    pub group_by: Vec<Dimension>,
    /// Only rows whose dimension equals the value.
    pub filters: Vec<(Dimension, String)>,
    pub policy: Policy,
}

/// What one group of holders was charged, in micro-dollars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostRow {
    pub group: Vec<String>,
    pub used: u128,
    pub idle: u128,
    pub held_ns: u128,
    pub used_ns: u128,
    pub energy_mj: u128,
    /// CO2e of that energy, in milligrams, when a grid factor covered any of it.
    pub co2e_mg: Option<u128>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostReport {
    pub rows: Vec<CostRow>,
    /// The idle line (cost nobody is charged for: `utilization` only), unless filtered by workload.
    pub idle: Option<u128>,
    /// Cost of GPUs nobody held, unless filtered by workload.
    pub unallocated: Option<u128>,
    /// Observed GPU time without a price.
    pub unpriced_ns: u128,
    /// What the GPUs in the window (and the GPU filters) cost.
    pub fleet: u128,
}

/// The price in force for a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePrice {
    pub cluster: String,
    pub node: String,
    pub instance_type: String,
    pub capacity_type: String,
    pub region: String,
    pub effective_from_ns: u64,
    /// `None`: unpriced (the source says why).
    pub instance_micros_per_hour: Option<u64>,
    pub gpus: u32,
    pub source: String,
}

/// One GPU's cost in one charge period (FOCUS's origin charge) and each holder's part of it (its
/// allocated charges). What the holders' parts leave is idle (GPU time nobody held, and under the
/// `utilization` policy what no holder used). Money in micro-dollars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginCharge {
    pub start_ns: u64,
    pub end_ns: u64,
    pub cluster: String,
    pub node: String,
    pub instance_type: String,
    pub capacity_type: String,
    pub region: String,
    pub zone: String,
    pub gpu_uuid: String,
    pub gpu_model: String,
    pub mig_profile: Option<String>,
    pub cost: u128,
    pub observed_ns: u128,
    pub held_ns: u128,
    pub used_ns: u128,
    pub energy_mj: u128,
    pub allocations: Vec<AllocatedCharge>,
}

/// A holder's part of an origin charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocatedCharge {
    /// The workload key (`pod:<cluster>/<namespace>/<pod>/<container>`, `ecs:<task arn>`, …) and its parts.
    pub workload: String,
    pub kind: String,
    pub namespace: String,
    pub pod: String,
    pub owner: String,
    pub team: String,
    pub department: String,
    pub model: String,
    pub model_version: String,
    pub cost: u128,
    pub held_ns: u128,
    pub used_ns: u128,
}
