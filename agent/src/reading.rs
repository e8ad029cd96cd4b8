//! The agent's own picture of a node and of what its GPUs did: what sources produce, what the
//! interval accumulator folds, and what `--output json` prints. Wire types are made from these only
//! at the uplink (see `wire`).

use std::collections::BTreeMap;

use serde::Serialize;

/// The node and its GPUs, as reported with every batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    pub cluster: String,
    pub node_name: String,
    pub instance_type: String,
    pub capacity_type: CapacityType,
    pub region: String,
    pub zone: String,
    pub devices: Vec<GpuDevice>,
    /// Allow-listed labels of the node object (Kubernetes).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The EC2 instance id (`i-…`), from the flags, the Node's `spec.providerID` or IMDSv2; empty: unknown.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub instance_id: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CapacityType {
    #[default]
    Unspecified,
    OnDemand,
    Spot,
    Reserved,
}

impl std::str::FromStr for CapacityType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "" | "unspecified" => Ok(Self::Unspecified),
            "on_demand" | "ondemand" => Ok(Self::OnDemand),
            "spot" => Ok(Self::Spot),
            "reserved" => Ok(Self::Reserved),
            other => Err(format!("unknown capacity type {other:?}: expected on-demand, spot or reserved")),
        }
    }
}

/// A physical GPU or a MIG device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuDevice {
    pub uuid: String,
    pub model: String,
    pub memory_total_bytes: u64,
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mig_parent_uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mig_profile: Option<String>,
}

/// Everything a source read at one sampling tick.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tick {
    pub gpus: Vec<GpuSample>,
    pub processes: Vec<ProcessSample>,
}

/// One device reading at one tick.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuSample {
    pub uuid: String,
    /// Percent, 0..=100; `None` where the device does not report it (a MIG device, for instance).
    pub utilization_percent: Option<u32>,
    pub memory_utilization_percent: Option<u32>,
    pub memory_used_bytes: u64,
    pub power_milliwatts: Option<u64>,
    /// NVML's cumulative energy counter, millijoules since the driver loaded.
    pub energy_counter_millijoules: Option<u64>,
}

/// One process on one GPU at one tick.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessSample {
    pub pid: u32,
    pub gpu_uuid: String,
    /// SM utilisation in this tick, percent 0..=100. `None`: no utilisation sample (counts as 0).
    pub sm_util_percent: Option<u32>,
    pub memory_util_percent: Option<u32>,
    pub used_memory_bytes: u64,
    /// Filled by sources that know who runs the process (the simulator); otherwise the agent's
    /// identifier fills it from `/proc`.
    pub identity: Option<WorkloadIdentity>,
}

/// Who is behind a process. Empty strings and empty maps mean "unknown".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WorkloadIdentity {
    pub kind: WorkloadKind,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pod: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pod_uid: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub container: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub controller_kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub controller_name: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub namespace_labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ecs_task_arn: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ecs_task_family: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ecs_cluster: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub slurm_job_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub slurm_account: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub systemd_unit: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub container_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub container_runtime: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    #[default]
    Unspecified,
    KubernetesPod,
    EcsTask,
    SlurmJob,
    SystemdService,
    Container,
    HostProcess,
}

/// What one node's GPUs did over one interval [start, end): the agent's batch before it is framed
/// for the wire.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntervalReport {
    pub interval_start_unix_nanos: u64,
    pub interval_end_unix_nanos: u64,
    pub sample_interval_nanos: u64,
    pub sample_count: u32,
    pub gpus: Vec<GpuUsage>,
    pub processes: Vec<ProcessUsage>,
    pub allocations: Vec<GpuAllocation>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuUsage {
    pub uuid: String,
    pub utilization_percent: f64,
    pub memory_utilization_percent: f64,
    pub memory_used_bytes: u64,
    pub power_milliwatts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub energy_millijoules: Option<u64>,
    pub sample_count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessUsage {
    pub pid: u32,
    pub gpu_uuid: String,
    /// Mean over the whole interval, 0..=100.
    pub sm_util: f64,
    pub mem_util: f64,
    pub used_memory_bytes: u64,
    /// The most memory the process held in any one sample of the interval.
    pub peak_memory_bytes: u64,
    pub sample_count: u32,
    /// Samples (of `sample_count`) in which its SM utilisation was above zero.
    pub busy_sample_count: u32,
    pub workload: WorkloadIdentity,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub process_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuAllocation {
    pub gpu_uuid: String,
    pub workload: WorkloadIdentity,
}
