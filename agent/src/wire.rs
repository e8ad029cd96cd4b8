//! Frames the agent's interval reports as `gpucost.v1` batches: the one place the agent touches wire
//! types.

use gpucost_proto::v1 as pb;

use crate::reading::{CapacityType, IntervalReport, NodeInfo, WorkloadIdentity, WorkloadKind};

/// Numbers batches within one boot of the agent.
pub struct Framer {
    pub agent_id: String,
    pub boot_id: String,
    next_seq: u64,
}

impl Framer {
    pub fn new(agent_id: String, boot_id: String) -> Self {
        Self { agent_id, boot_id, next_seq: 1 }
    }

    pub fn frame(&mut self, node: &NodeInfo, report: IntervalReport) -> pb::UsageBatch {
        let seq = self.next_seq;
        self.next_seq += 1;
        pb::UsageBatch {
            agent_id: self.agent_id.clone(),
            boot_id: self.boot_id.clone(),
            seq,
            node: Some(node_info(node)),
            interval_start_unix_nanos: report.interval_start_unix_nanos,
            interval_end_unix_nanos: report.interval_end_unix_nanos,
            gpus: report
                .gpus
                .into_iter()
                .map(|g| pb::GpuUsage {
                    uuid: g.uuid,
                    utilization_percent: g.utilization_percent,
                    memory_utilization_percent: g.memory_utilization_percent,
                    memory_used_bytes: g.memory_used_bytes,
                    power_milliwatts: g.power_milliwatts,
                    energy_millijoules: g.energy_millijoules,
                    sample_count: g.sample_count,
                })
                .collect(),
            processes: report
                .processes
                .into_iter()
                .map(|p| pb::ProcessUsage {
                    pid: p.pid,
                    gpu_uuid: p.gpu_uuid,
                    sm_util_percent: p.sm_util,
                    memory_util_percent: p.mem_util,
                    used_memory_bytes: p.used_memory_bytes,
                    sample_count: p.sample_count,
                    peak_memory_bytes: Some(p.peak_memory_bytes),
                    busy_sample_count: Some(p.busy_sample_count),
                    workload: Some(identity(p.workload)),
                    process_name: p.process_name,
                    // Inline: made a reference per stream as it is sent (`gpucost_proto::refs`).
                    workload_ref: 0,
                })
                .collect(),
            allocations: report
                .allocations
                .into_iter()
                .map(|a| pb::GpuAllocation {
                    gpu_uuid: a.gpu_uuid,
                    workload: Some(identity(a.workload)),
                    workload_ref: 0,
                })
                .collect(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            sample_interval_nanos: report.sample_interval_nanos,
            first_seq: 0,
            declare_workloads: Vec::new(),
        }
    }
}

fn node_info(n: &NodeInfo) -> pb::NodeInfo {
    pb::NodeInfo {
        cluster: n.cluster.clone(),
        node_name: n.node_name.clone(),
        instance_type: n.instance_type.clone(),
        capacity_type: match n.capacity_type {
            CapacityType::Unspecified => pb::CapacityType::Unspecified,
            CapacityType::OnDemand => pb::CapacityType::OnDemand,
            CapacityType::Spot => pb::CapacityType::Spot,
            CapacityType::Reserved => pb::CapacityType::Reserved,
        } as i32,
        region: n.region.clone(),
        zone: n.zone.clone(),
        labels: n.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        instance_id: n.instance_id.clone(),
        devices: n
            .devices
            .iter()
            .map(|d| pb::GpuDevice {
                uuid: d.uuid.clone(),
                model: d.model.clone(),
                memory_total_bytes: d.memory_total_bytes,
                mig_parent_uuid: d.mig_parent_uuid.clone().unwrap_or_default(),
                mig_profile: d.mig_profile.clone().unwrap_or_default(),
                index: d.index,
            })
            .collect(),
    }
}

fn identity(w: WorkloadIdentity) -> pb::WorkloadIdentity {
    pb::WorkloadIdentity {
        kind: match w.kind {
            WorkloadKind::Unspecified => pb::WorkloadKind::Unspecified,
            WorkloadKind::KubernetesPod => pb::WorkloadKind::KubernetesPod,
            WorkloadKind::EcsTask => pb::WorkloadKind::EcsTask,
            WorkloadKind::SlurmJob => pb::WorkloadKind::SlurmJob,
            WorkloadKind::SystemdService => pb::WorkloadKind::SystemdService,
            WorkloadKind::Container => pb::WorkloadKind::Container,
            WorkloadKind::HostProcess => pb::WorkloadKind::HostProcess,
        } as i32,
        namespace: w.namespace,
        pod: w.pod,
        pod_uid: w.pod_uid,
        container: w.container,
        controller_kind: w.controller_kind,
        controller_name: w.controller_name,
        labels: w.labels.into_iter().collect(),
        namespace_labels: w.namespace_labels.into_iter().collect(),
        ecs_task_arn: w.ecs_task_arn,
        ecs_task_family: w.ecs_task_family,
        ecs_cluster: w.ecs_cluster,
        slurm_job_id: w.slurm_job_id,
        slurm_account: w.slurm_account,
        user: w.user,
        uid: w.uid,
        systemd_unit: w.systemd_unit,
        container_id: w.container_id,
        container_runtime: w.container_runtime,
        env: w.env.into_iter().collect(),
    }
}
