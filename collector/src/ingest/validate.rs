//! Checks a batch from the wire and turns it into the collector's own `Batch`, or says exactly what is
//! wrong with it. A batch is accepted or rejected whole: nothing of a rejected batch is stored.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use gpucost_proto::limits as contract;
use gpucost_proto::v1 as pb;

use crate::ingest::refs::{MAX_REFS, StreamWorkloads};
use gpucost_types::batch::{
    Allocation, Batch, Device, GpuReading, Identity, Node, PPM, ProcessReading, Workload, WorkloadKind,
};

/// Bounds on what one batch may hold: the contract's counts and lengths (`gpucost_proto::limits`, which the
/// codec also checks before decoding), and the interval and clock bounds this collector is configured with.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_interval_ns: u64,
    pub max_clock_skew_ns: u64,
    pub max_devices: usize,
    pub max_processes: usize,
    pub max_allocations: usize,
    pub max_text_len: usize,
    pub max_labels: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_interval_ns: 3_600 * 1_000_000_000,
            max_clock_skew_ns: 900 * 1_000_000_000,
            max_devices: contract::MAX_DEVICES,
            max_processes: contract::MAX_PROCESSES,
            max_allocations: contract::MAX_ALLOCATIONS,
            max_text_len: contract::MAX_TEXT_LEN,
            max_labels: contract::MAX_LABELS,
        }
    }
}

/// 2020-01-01T00:00:00Z: nothing older is a plausible reading.
const EARLIEST_NS: u64 = 1_577_836_800 * 1_000_000_000;
/// 10 kW: no GPU draws more.
const MAX_POWER_MW: u64 = 10_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("batch {batch}: {field}: {problem}")]
pub struct ValidationError {
    /// `agent=… boot=… seq=…`
    pub batch: String,
    /// Where in the batch, e.g. `processes[3].sm_util_percent`.
    pub field: String,
    pub problem: String,
    pub refusal: Refusal,
}

/// What a refused batch's agent should do with it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Refusal {
    /// Drop it: it is wrong and always will be.
    #[default]
    Invalid,
    /// Not wrong, only early: the batch ends in the future by this collector's clock. The agent keeps it
    /// and sends it again later; it is never dropped for it.
    Later,
    /// It names a workload reference not declared on its stream: the agent keeps it and sends it again on
    /// a new stream, which declares its identities afresh.
    Reconnect,
}

struct Check<'a> {
    batch: String,
    limits: &'a Limits,
}

impl Check<'_> {
    fn fail<T>(&self, field: impl Into<String>, problem: impl Into<String>) -> Result<T, ValidationError> {
        self.refuse(field, problem, Refusal::Invalid)
    }

    fn refuse<T>(
        &self,
        field: impl Into<String>,
        problem: impl Into<String>,
        refusal: Refusal,
    ) -> Result<T, ValidationError> {
        Err(ValidationError { batch: self.batch.clone(), field: field.into(), problem: problem.into(), refusal })
    }

    /// `field` is only rendered when the value is refused (`format_args!`): naming every field of every
    /// process up front cost more than the rest of the check.
    fn text(&self, field: impl std::fmt::Display, value: &str, required: bool) -> Result<(), ValidationError> {
        self.text_of(field, value, required, self.limits.max_text_len)
    }

    /// [`Self::text`] of at most `max` bytes.
    fn text_of(
        &self,
        field: impl std::fmt::Display,
        value: &str,
        required: bool,
        max: usize,
    ) -> Result<(), ValidationError> {
        if required && value.is_empty() {
            return self.fail(field.to_string(), "is empty");
        }
        if value.len() > max {
            return self.fail(field.to_string(), format!("is {} bytes long; at most {max}", value.len()));
        }
        if value.chars().any(char::is_control) {
            return self.fail(field.to_string(), "holds control characters");
        }
        Ok(())
    }

    fn labels(
        &self,
        field: impl std::fmt::Display + Copy,
        m: &HashMap<String, String>,
    ) -> Result<BTreeMap<String, String>, ValidationError> {
        if m.len() > self.limits.max_labels {
            return self
                .fail(field.to_string(), format!("has {} entries; at most {}", m.len(), self.limits.max_labels));
        }
        for (k, v) in m {
            self.text(format_args!("{field} key {k:?}"), k, true)?;
            self.text(format_args!("{field}[{k:?}]"), v, false)?;
        }
        Ok(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    fn percent(&self, field: impl std::fmt::Display, value: f64) -> Result<u32, ValidationError> {
        if !value.is_finite() || !(0.0..=100.0).contains(&value) {
            return self.fail(field.to_string(), format!("{value} is outside 0..=100"));
        }
        Ok((value * 10_000.0).round().min(PPM as f64) as u32)
    }

    fn identity(
        &self,
        field: impl std::fmt::Display + Copy,
        w: Option<&pb::WorkloadIdentity>,
    ) -> Result<Identity, ValidationError> {
        let Some(w) = w else { return Ok(Identity::default()) };
        let texts = [
            ("namespace", &w.namespace),
            ("pod", &w.pod),
            ("pod_uid", &w.pod_uid),
            ("container", &w.container),
            ("controller_kind", &w.controller_kind),
            ("controller_name", &w.controller_name),
            ("ecs_task_arn", &w.ecs_task_arn),
            ("ecs_task_family", &w.ecs_task_family),
            ("ecs_cluster", &w.ecs_cluster),
            ("slurm_job_id", &w.slurm_job_id),
            ("slurm_account", &w.slurm_account),
            ("user", &w.user),
            ("systemd_unit", &w.systemd_unit),
            ("container_id", &w.container_id),
            ("container_runtime", &w.container_runtime),
        ];
        for (name, value) in texts {
            self.text(format_args!("{field}.{name}"), value, false)?;
        }
        let map = |name: &str, m: &HashMap<String, String>| self.labels(format_args!("{field}.{name}"), m);
        let kind = match pb::WorkloadKind::try_from(w.kind) {
            Ok(pb::WorkloadKind::Unspecified) => WorkloadKind::Unidentified,
            Ok(pb::WorkloadKind::KubernetesPod) => WorkloadKind::KubernetesPod,
            Ok(pb::WorkloadKind::EcsTask) => WorkloadKind::EcsTask,
            Ok(pb::WorkloadKind::SlurmJob) => WorkloadKind::SlurmJob,
            Ok(pb::WorkloadKind::SystemdService) => WorkloadKind::SystemdService,
            Ok(pb::WorkloadKind::Container) => WorkloadKind::Container,
            Ok(pb::WorkloadKind::HostProcess) => WorkloadKind::HostProcess,
            // A kind added by a newer agent: keep the data, name it by what we know.
            Err(_) => WorkloadKind::Unidentified,
        };
        Ok(Identity {
            kind,
            namespace: w.namespace.clone(),
            pod: w.pod.clone(),
            pod_uid: w.pod_uid.clone(),
            container: w.container.clone(),
            controller_kind: w.controller_kind.clone(),
            controller_name: w.controller_name.clone(),
            labels: map("labels", &w.labels)?,
            namespace_labels: map("namespace_labels", &w.namespace_labels)?,
            ecs_task_arn: w.ecs_task_arn.clone(),
            ecs_task_family: w.ecs_task_family.clone(),
            ecs_cluster: w.ecs_cluster.clone(),
            slurm_job_id: w.slurm_job_id.clone(),
            slurm_account: w.slurm_account.clone(),
            user: w.user.clone(),
            uid: w.uid,
            systemd_unit: w.systemd_unit.clone(),
            container_id: w.container_id.clone(),
            container_runtime: w.container_runtime.clone(),
            env: map("env", &w.env)?,
        })
    }
}

/// Validates `b` as received at `now_ns`, on its own: its workloads are inline or declared in it.
pub fn validate(b: &pb::UsageBatch, now_ns: u64, limits: &Limits) -> Result<Batch, ValidationError> {
    validate_on_stream(b, now_ns, limits, &mut StreamWorkloads::default())
}

/// Validates `b` as received at `now_ns` on a stream whose declared workloads are `refs`; the batch's own
/// declarations are added to them (a refused batch ends its stream, and with it `refs`).
pub fn validate_on_stream(
    b: &pb::UsageBatch,
    now_ns: u64,
    limits: &Limits,
    refs: &mut StreamWorkloads,
) -> Result<Batch, ValidationError> {
    // Escaped: the agent's own words end up in logs.
    let c = Check {
        batch: format!("agent={} boot={} seq={}", b.agent_id.escape_debug(), b.boot_id.escape_debug(), b.seq),
        limits,
    };
    c.header(b)?;
    let (n, node) = c.node(b)?;
    let (start, end) = c.interval(b, now_ns)?;
    let (devices, by_uuid) = c.devices(n)?;
    let gpus = c.gpus(b, &by_uuid)?;
    c.count("processes", "processes", b.processes.len(), limits.max_processes)?;
    c.declarations(b, refs)?;
    let instance_id = c.instance_id(n)?;
    let processes = c.processes(b, &by_uuid, &node, refs)?;
    let allocations = c.allocations(b, &by_uuid, &node, refs)?;
    Ok(Batch {
        agent_id: b.agent_id.clone(),
        boot_id: b.boot_id.clone(),
        seq: b.seq,
        first_seq: if b.first_seq == 0 { b.seq } else { b.first_seq },
        node,
        devices,
        start_ns: start,
        end_ns: end,
        gpus,
        processes,
        allocations,
        instance_id,
    })
}

/// A node's devices by UUID, for the readings to name.
type ByUuid<'b> = HashMap<&'b str, &'b pb::GpuDevice>;

/// The steps of [`validate_on_stream`], in its order.
impl Check<'_> {
    /// The agent, its boot and the batch's sequence numbers.
    fn header(&self, b: &pb::UsageBatch) -> Result<(), ValidationError> {
        self.text("agent_id", &b.agent_id, true)?;
        self.text("boot_id", &b.boot_id, true)?;
        if b.seq == 0 {
            return self.fail("seq", "must start at 1");
        }
        if b.first_seq > b.seq {
            return self.fail("first_seq", format!("{} is after seq {}", b.first_seq, b.seq));
        }
        Ok(())
    }

    /// The node the batch comes from, as sent and as the collector's own `Node`; its devices are checked
    /// apart, by [`Self::devices`].
    fn node<'b>(&self, b: &'b pb::UsageBatch) -> Result<(&'b pb::NodeInfo, Node), ValidationError> {
        let Some(n) = &b.node else { return self.fail("node", "is missing") };
        self.text("node.cluster", &n.cluster, true)?;
        self.text("node.node_name", &n.node_name, true)?;
        for (f, v) in [("node.instance_type", &n.instance_type), ("node.region", &n.region), ("node.zone", &n.zone)] {
            self.text(f, v, false)?;
        }
        let capacity_type = match pb::CapacityType::try_from(n.capacity_type) {
            Ok(pb::CapacityType::OnDemand) => "on_demand",
            Ok(pb::CapacityType::Spot) => "spot",
            Ok(pb::CapacityType::Reserved) => "reserved",
            _ => "unspecified",
        };
        let node = Node {
            cluster: n.cluster.clone(),
            name: n.node_name.clone(),
            instance_type: n.instance_type.clone(),
            capacity_type: capacity_type.to_string(),
            region: n.region.clone(),
            zone: n.zone.clone(),
            labels: self.labels("node.labels", &n.labels)?,
        };
        Ok((n, node))
    }

    /// The node's EC2 instance id, if the agent sent one: "i-" and 8 or 17 lowercase hex digits.
    fn instance_id(&self, n: &pb::NodeInfo) -> Result<Option<String>, ValidationError> {
        if n.instance_id.is_empty() {
            return Ok(None);
        }
        if !gpucost_proto::instance_id::is_ec2_instance_id(&n.instance_id) {
            let shown: String = n.instance_id.chars().take(40).collect();
            return self.fail(
                "node.instance_id",
                format!(
                    "{:?} is not an EC2 instance id (\"i-\" and 8 or 17 lowercase hex digits)",
                    shown.escape_debug()
                ),
            );
        }
        Ok(Some(n.instance_id.clone()))
    }

    /// The interval's start and end: in order, after 2020, not too long, and not ending in the future by
    /// more than the clock skew allowed at `now_ns` (that batch is refused for later, not rejected).
    fn interval(&self, b: &pb::UsageBatch, now_ns: u64) -> Result<(u64, u64), ValidationError> {
        let (start, end) = (b.interval_start_unix_nanos, b.interval_end_unix_nanos);
        let limits = self.limits;
        if start >= end {
            return self.fail("interval", format!("start {start} is not before end {end}"));
        }
        if start < EARLIEST_NS {
            return self
                .fail("interval_start_unix_nanos", format!("{start} is before 2020-01-01: is the agent's clock set?"));
        }
        if end - start > limits.max_interval_ns {
            return self.fail(
                "interval",
                format!(
                    "{} s long; at most {} s",
                    (end - start) / 1_000_000_000,
                    limits.max_interval_ns / 1_000_000_000
                ),
            );
        }
        if end > now_ns.saturating_add(limits.max_clock_skew_ns) {
            return self.refuse(
                "interval_end_unix_nanos",
                format!(
                    "{} s in the future by the collector's clock, past the {} s allowed (--max-clock-skew): is the agent's clock set? Not stored yet; send it again later",
                    (end - now_ns) / 1_000_000_000,
                    limits.max_clock_skew_ns / 1_000_000_000
                ),
                Refusal::Later,
            );
        }
        Ok((start, end))
    }

    /// `field` holds at most `max` entries; it holds `len`, `noun` in the error.
    fn count(&self, field: &str, noun: &str, len: usize, max: usize) -> Result<(), ValidationError> {
        if len > max {
            return self.fail(field, format!("{len} {noun}; at most {max}"));
        }
        Ok(())
    }

    /// The node's devices: at least one and not too many, each listed once, and a MIG device's parent a
    /// whole GPU of the same node. Also the devices by UUID.
    fn devices<'b>(&self, n: &'b pb::NodeInfo) -> Result<(Vec<Device>, ByUuid<'b>), ValidationError> {
        if n.devices.is_empty() {
            return self.fail("node.devices", "is empty: a node without GPUs has nothing to report");
        }
        self.count("node.devices", "devices", n.devices.len(), self.limits.max_devices)?;
        let mut by_uuid: ByUuid = HashMap::new();
        for (i, d) in n.devices.iter().enumerate() {
            self.device(i, d)?;
            if by_uuid.insert(&d.uuid, d).is_some() {
                return self.fail(format!("node.devices[{i}].uuid"), format!("{} is listed twice", d.uuid));
            }
        }
        let mut devices = Vec::with_capacity(n.devices.len());
        for (i, d) in n.devices.iter().enumerate() {
            self.mig_parent(&by_uuid, i, d)?;
            devices.push(Device {
                uuid: d.uuid.clone(),
                index: d.index,
                model: d.model.clone(),
                memory_total_bytes: d.memory_total_bytes,
                mig_parent_uuid: (!d.mig_parent_uuid.is_empty()).then(|| d.mig_parent_uuid.clone()),
                mig_profile: (!d.mig_profile.is_empty()).then(|| d.mig_profile.clone()),
            });
        }
        Ok((devices, by_uuid))
    }

    /// Device `i` on its own: its names no longer than NVML makes them, and some memory.
    fn device(&self, i: usize, d: &pb::GpuDevice) -> Result<(), ValidationError> {
        self.text_of(format_args!("node.devices[{i}].uuid"), &d.uuid, true, contract::MAX_UUID_LEN)?;
        self.text_of(format_args!("node.devices[{i}].model"), &d.model, false, contract::MAX_UUID_LEN)?;
        self.text_of(
            format_args!("node.devices[{i}].mig_parent_uuid"),
            &d.mig_parent_uuid,
            false,
            contract::MAX_UUID_LEN,
        )?;
        self.text_of(
            format_args!("node.devices[{i}].mig_profile"),
            &d.mig_profile,
            false,
            contract::MAX_PROCESS_NAME_LEN,
        )?;
        if d.memory_total_bytes == 0 {
            return self.fail(format!("node.devices[{i}].memory_total_bytes"), "is 0");
        }
        Ok(())
    }

    /// Device `i`'s MIG parent, if it has one: a device of this node that is not itself a MIG device.
    fn mig_parent(&self, by_uuid: &ByUuid, i: usize, d: &pb::GpuDevice) -> Result<(), ValidationError> {
        if d.mig_parent_uuid.is_empty() {
            return Ok(());
        }
        match by_uuid.get(d.mig_parent_uuid.as_str()) {
            None => self.fail(
                format!("node.devices[{i}].mig_parent_uuid"),
                format!("{} is not a device of this node", d.mig_parent_uuid),
            ),
            Some(p) if !p.mig_parent_uuid.is_empty() => self.fail(
                format!("node.devices[{i}].mig_parent_uuid"),
                format!("{} is itself a MIG device", d.mig_parent_uuid),
            ),
            Some(_) => Ok(()),
        }
    }

    /// The device `uuid` names, which must be one of the node's; `field` is only rendered when it is not.
    fn known<'b>(
        &self,
        by_uuid: &ByUuid<'b>,
        field: impl std::fmt::Display,
        uuid: &str,
    ) -> Result<&'b pb::GpuDevice, ValidationError> {
        match by_uuid.get(uuid) {
            Some(d) => Ok(*d),
            None => self.fail(field.to_string(), format!("GPU {uuid:?} is not among node.devices")),
        }
    }

    /// The GPUs' readings: each of a listed device, one per device.
    fn gpus(&self, b: &pb::UsageBatch, by_uuid: &ByUuid) -> Result<Vec<GpuReading>, ValidationError> {
        let duration_s = (b.interval_end_unix_nanos - b.interval_start_unix_nanos) as f64 / 1e9;
        let mut gpus = Vec::with_capacity(b.gpus.len());
        let mut seen = HashSet::new();
        for (i, g) in b.gpus.iter().enumerate() {
            let dev = self.known(by_uuid, format_args!("gpus[{i}].uuid"), &g.uuid)?;
            if !seen.insert(g.uuid.as_str()) {
                return self.fail(format!("gpus[{i}].uuid"), format!("{} has two readings", g.uuid));
            }
            gpus.push(self.gpu(i, g, dev, duration_s)?);
        }
        Ok(gpus)
    }

    /// GPU reading `i`, of device `dev` over `duration_s` seconds: percentages, and no more memory, power or
    /// energy than a GPU has or draws.
    fn gpu(
        &self,
        i: usize,
        g: &pb::GpuUsage,
        dev: &pb::GpuDevice,
        duration_s: f64,
    ) -> Result<GpuReading, ValidationError> {
        let utilization_ppm = self.percent(format_args!("gpus[{i}].utilization_percent"), g.utilization_percent)?;
        self.percent(format_args!("gpus[{i}].memory_utilization_percent"), g.memory_utilization_percent)?;
        if g.memory_used_bytes > dev.memory_total_bytes {
            return self.fail(
                format!("gpus[{i}].memory_used_bytes"),
                format!("{} exceeds the device's {} bytes", g.memory_used_bytes, dev.memory_total_bytes),
            );
        }
        if g.power_milliwatts > MAX_POWER_MW {
            return self
                .fail(format!("gpus[{i}].power_milliwatts"), format!("{} mW is beyond any GPU", g.power_milliwatts));
        }
        if let Some(e) = g.energy_millijoules
            && e as f64 > MAX_POWER_MW as f64 * duration_s
        {
            return self
                .fail(format!("gpus[{i}].energy_millijoules"), format!("{e} mJ in {duration_s} s is beyond any GPU"));
        }
        Ok(GpuReading {
            uuid: g.uuid.clone(),
            utilization_ppm,
            memory_used_bytes: g.memory_used_bytes,
            power_milliwatts: g.power_milliwatts,
            energy_millijoules: g.energy_millijoules,
        })
    }

    /// The batch's workload declarations, not too many, each added to the stream's `refs`.
    fn declarations(&self, b: &pb::UsageBatch, refs: &mut StreamWorkloads) -> Result<(), ValidationError> {
        let max = self.limits.max_processes + self.limits.max_allocations;
        self.count("declare_workloads", "declarations", b.declare_workloads.len(), max)?;
        for (i, d) in b.declare_workloads.iter().enumerate() {
            if d.id == 0 || d.id > MAX_REFS {
                return self.fail(format!("declare_workloads[{i}].id"), format!("{} is outside 1..={MAX_REFS}", d.id));
            }
            let Some(w) = &d.workload else {
                return self.fail(format!("declare_workloads[{i}].workload"), "is missing");
            };
            let identity = self.identity(format_args!("declare_workloads[{i}].workload"), Some(w))?;
            if let Err(bytes) = refs.declare(d.id, identity, gpucost_proto::refs::held_bytes(w)) {
                // Not the batch's fault: a new stream starts with nothing declared.
                return self.refuse(
                    format!("declare_workloads[{i}]"),
                    format!(
                        "this stream's declared identities would cost {bytes} bytes, past the {} a stream may hold; not stored: send it again on a new stream",
                        crate::ingest::refs::MAX_DECLARED_BYTES
                    ),
                    Refusal::Reconnect,
                );
            }
        }
        Ok(())
    }

    /// A workload by reference (declared on the stream) or inline: the one `id` names, or `None` when `id` is
    /// 0 and the identity, if any, is inline.
    fn named(
        &self,
        refs: &mut StreamWorkloads,
        node: &Node,
        field: impl std::fmt::Display,
        id: u32,
        inline: Option<&pb::WorkloadIdentity>,
    ) -> Result<Option<Arc<Workload>>, ValidationError> {
        match (id, inline) {
            (0, _) => Ok(None),
            (_, Some(_)) => self.fail(field.to_string(), format!("names reference {id} and carries an identity too")),
            (id, None) => match refs.workload(id, node) {
                Some(w) => Ok(Some(w)),
                None => self.refuse(
                    field.to_string(),
                    format!(
                        "reference {id} was not declared on this stream; not stored: send it again on a new stream"
                    ),
                    Refusal::Reconnect,
                ),
            },
        }
    }

    /// The processes' readings: each on a listed device, a pid once per device, with its workload.
    fn processes(
        &self,
        b: &pb::UsageBatch,
        by_uuid: &ByUuid,
        node: &Node,
        refs: &mut StreamWorkloads,
    ) -> Result<Vec<ProcessReading>, ValidationError> {
        let mut processes: Vec<ProcessReading> = Vec::with_capacity(b.processes.len());
        let mut seen = HashSet::new();
        for (i, p) in b.processes.iter().enumerate() {
            let dev = self.known(by_uuid, format_args!("processes[{i}].gpu_uuid"), &p.gpu_uuid)?;
            if !seen.insert((p.gpu_uuid.as_str(), p.pid)) {
                return self
                    .fail(format!("processes[{i}].pid"), format!("pid {} appears twice on {}", p.pid, p.gpu_uuid));
            }
            let sm_share_ppm = self.percent(format_args!("processes[{i}].sm_util_percent"), p.sm_util_percent)?;
            let memory_util_ppm =
                self.percent(format_args!("processes[{i}].memory_util_percent"), p.memory_util_percent)?;
            if p.used_memory_bytes > dev.memory_total_bytes {
                return self.fail(
                    format!("processes[{i}].used_memory_bytes"),
                    format!("{} exceeds the device's {} bytes", p.used_memory_bytes, dev.memory_total_bytes),
                );
            }
            self.evidence(i, p, dev)?;
            self.text_of(
                format_args!("processes[{i}].process_name"),
                &p.process_name,
                false,
                contract::MAX_PROCESS_NAME_LEN,
            )?;
            let workload = self.process_workload(&b.processes, i, processes.last(), node, refs)?;
            processes.push(ProcessReading {
                gpu_uuid: p.gpu_uuid.clone(),
                pid: p.pid,
                workload,
                sm_share_ppm,
                memory_util_ppm,
                used_memory_bytes: p.used_memory_bytes,
                peak_memory_bytes: p.peak_memory_bytes,
                samples: p.sample_count,
                busy_samples: p.busy_sample_count,
            });
        }
        Ok(processes)
    }

    /// Process `i`'s evidence, where sent: a peak between its mean and the device's memory (NVML counts a
    /// process's memory within its device, so a peak beyond it is a broken reading), and no more busy samples
    /// than samples.
    fn evidence(&self, i: usize, p: &pb::ProcessUsage, dev: &pb::GpuDevice) -> Result<(), ValidationError> {
        if let Some(peak) = p.peak_memory_bytes {
            if peak > dev.memory_total_bytes {
                return self.fail(
                    format!("processes[{i}].peak_memory_bytes"),
                    format!("{peak} exceeds the device's {} bytes", dev.memory_total_bytes),
                );
            }
            if peak < p.used_memory_bytes {
                return self.fail(
                    format!("processes[{i}].peak_memory_bytes"),
                    format!(
                        "{peak} is below the mean used_memory_bytes {}: a peak is the largest sample",
                        p.used_memory_bytes
                    ),
                );
            }
        }
        if let Some(busy) = p.busy_sample_count
            && busy > p.sample_count
        {
            return self.fail(
                format!("processes[{i}].busy_sample_count"),
                format!("{busy} is more than the process's sample_count {}", p.sample_count),
            );
        }
        Ok(())
    }

    /// The workload of process `i` of `sent`, whose reading before it, if any, is `last`.
    fn process_workload(
        &self,
        sent: &[pb::ProcessUsage],
        i: usize,
        last: Option<&ProcessReading>,
        node: &Node,
        refs: &mut StreamWorkloads,
    ) -> Result<Arc<Workload>, ValidationError> {
        let p = &sent[i];
        let field = format_args!("processes[{i}].workload_ref");
        if let Some(w) = self.named(refs, node, field, p.workload_ref, p.workload.as_ref())? {
            return Ok(w);
        }
        // An agent without references sends its pod's identity with every process of it: check and key it
        // once.
        match (i.checked_sub(1).map(|j| &sent[j]), last) {
            (Some(prev), Some(last)) if prev.workload_ref == 0 && prev.workload == p.workload => {
                Ok(last.workload.clone())
            }
            _ => Ok(Arc::new(Workload::new(
                node,
                self.identity(format_args!("processes[{i}].workload"), p.workload.as_ref())?,
            ))),
        }
    }

    /// The allocations, not too many: each of a listed device, with its workload.
    fn allocations(
        &self,
        b: &pb::UsageBatch,
        by_uuid: &ByUuid,
        node: &Node,
        refs: &mut StreamWorkloads,
    ) -> Result<Vec<Allocation>, ValidationError> {
        self.count("allocations", "allocations", b.allocations.len(), self.limits.max_allocations)?;
        let mut allocations = Vec::with_capacity(b.allocations.len());
        for (i, a) in b.allocations.iter().enumerate() {
            self.known(by_uuid, format_args!("allocations[{i}].gpu_uuid"), &a.gpu_uuid)?;
            let field = format_args!("allocations[{i}].workload_ref");
            let workload = match self.named(refs, node, field, a.workload_ref, a.workload.as_ref())? {
                Some(w) => w,
                None => Arc::new(Workload::new(
                    node,
                    self.identity(format_args!("allocations[{i}].workload"), a.workload.as_ref())?,
                )),
            };
            allocations.push(Allocation { gpu_uuid: a.gpu_uuid.clone(), workload });
        }
        Ok(allocations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000 * 1_000_000_000;

    fn good() -> pb::UsageBatch {
        pb::UsageBatch {
            agent_id: "node-1".into(),
            boot_id: "b1".into(),
            seq: 1,
            node: Some(pb::NodeInfo {
                cluster: "prod".into(),
                node_name: "node-1".into(),
                instance_type: "g5.12xlarge".into(),
                capacity_type: pb::CapacityType::Spot as i32,
                region: "us-east-1".into(),
                zone: "us-east-1a".into(),
                labels: Default::default(),
                instance_id: "i-0abcdef1234567890".into(),
                devices: vec![
                    pb::GpuDevice {
                        uuid: "GPU-a".into(),
                        model: "NVIDIA A10G".into(),
                        memory_total_bytes: 24 << 30,
                        ..Default::default()
                    },
                    pb::GpuDevice {
                        uuid: "GPU-b".into(),
                        model: "NVIDIA A10G".into(),
                        memory_total_bytes: 24 << 30,
                        ..Default::default()
                    },
                ],
            }),
            interval_start_unix_nanos: NOW - 15_000_000_000,
            interval_end_unix_nanos: NOW,
            gpus: vec![pb::GpuUsage {
                uuid: "GPU-a".into(),
                utilization_percent: 60.0,
                memory_used_bytes: 1 << 30,
                power_milliwatts: 200_000,
                energy_millijoules: Some(3_000_000),
                sample_count: 15,
                ..Default::default()
            }],
            processes: vec![pb::ProcessUsage {
                pid: 42,
                gpu_uuid: "GPU-a".into(),
                sm_util_percent: 60.0,
                used_memory_bytes: 1 << 30,
                sample_count: 15,
                peak_memory_bytes: Some(3 << 29),
                busy_sample_count: Some(12),
                workload: Some(pb::WorkloadIdentity {
                    kind: pb::WorkloadKind::KubernetesPod as i32,
                    namespace: "ml".into(),
                    pod: "p".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn rejects(change: impl FnOnce(&mut pb::UsageBatch), field: &str, says: &str) {
        let mut b = good();
        change(&mut b);
        let e = validate(&b, NOW, &Limits::default()).expect_err("should be rejected");
        assert_eq!(e.field, field, "{e}");
        assert!(e.problem.contains(says), "{e}");
        assert!(e.to_string().starts_with("batch agent=") && e.to_string().contains(" boot=b1 seq="), "{e}");
    }

    #[test]
    fn a_good_batch_becomes_the_collectors_own_batch() {
        let b = validate(&good(), NOW, &Limits::default()).unwrap();
        assert_eq!(b.node.capacity_type, "spot");
        assert_eq!(b.processes[0].sm_share_ppm, 600_000);
        assert_eq!(b.processes[0].workload.key, "pod:prod/ml/p");
        let b = gpucost_rules::share::hold(b);
        assert_eq!(b.holdings.len(), 1);
        assert_eq!(b.holdings[0].used_ns, 9_000_000_000);
    }

    #[test]
    fn the_evidence_and_instance_id_are_kept_and_absent_ones_are_unknown_not_zero() {
        let b = validate(&good(), NOW, &Limits::default()).unwrap();
        let p = &b.processes[0];
        assert_eq!((p.peak_memory_bytes, p.samples, p.busy_samples), (Some(3 << 29), 15, Some(12)));
        assert_eq!(b.instance_id.as_deref(), Some("i-0abcdef1234567890"));
        // As an agent older than the fields sends it.
        let mut old = good();
        (old.processes[0].peak_memory_bytes, old.processes[0].busy_sample_count) = (None, None);
        old.node.as_mut().unwrap().instance_id.clear();
        let b = validate(&old, NOW, &Limits::default()).unwrap();
        assert_eq!((b.processes[0].peak_memory_bytes, b.processes[0].busy_samples), (None, None));
        assert_eq!(b.instance_id, None);
        // A real 0 stays 0: a process that held no memory and was never busy.
        let mut idle = good();
        let p = &mut idle.processes[0];
        (p.used_memory_bytes, p.peak_memory_bytes, p.busy_sample_count) = (0, Some(0), Some(0));
        let b = validate(&idle, NOW, &Limits::default()).unwrap();
        assert_eq!((b.processes[0].peak_memory_bytes, b.processes[0].busy_samples), (Some(0), Some(0)));
    }

    #[test]
    fn bad_evidence_and_instance_ids_are_rejected_naming_the_field() {
        fn p(b: &mut pb::UsageBatch) -> &mut pb::ProcessUsage {
            &mut b.processes[0]
        }
        rejects(
            |b| p(b).peak_memory_bytes = Some((24 << 30) + 1),
            "processes[0].peak_memory_bytes",
            "exceeds the device's",
        );
        rejects(|b| p(b).peak_memory_bytes = Some((1 << 30) - 1), "processes[0].peak_memory_bytes", "below the mean");
        rejects(
            |b| p(b).busy_sample_count = Some(16),
            "processes[0].busy_sample_count",
            "more than the process's sample_count 15",
        );
        for bad in ["i-0ABCDEF1234567890", "i-0abc", "0abcdef1234567890", "i-0abcdef1234567890 ", "arn:aws:ec2:i-1"] {
            rejects(
                |b| b.node.as_mut().unwrap().instance_id = bad.into(),
                "node.instance_id",
                "is not an EC2 instance id",
            );
        }
        let mut short = good();
        short.node.as_mut().unwrap().instance_id = "i-1a2b3c4d".into();
        assert_eq!(validate(&short, NOW, &Limits::default()).unwrap().instance_id.as_deref(), Some("i-1a2b3c4d"));
    }

    #[test]
    fn bad_batches_are_rejected_with_the_field_and_the_problem() {
        rejects(|b| b.agent_id.clear(), "agent_id", "empty");
        rejects(|b| b.seq = 0, "seq", "start at 1");
        rejects(|b| b.node = None, "node", "missing");
        rejects(|b| b.interval_end_unix_nanos = b.interval_start_unix_nanos, "interval", "not before");
        rejects(|b| b.interval_start_unix_nanos = 5, "interval_start_unix_nanos", "before 2020");
        rejects(|b| b.interval_start_unix_nanos = NOW - 7_200_000_000_000, "interval", "at most 3600 s");
        rejects(
            |b| {
                b.interval_start_unix_nanos = NOW + 3_600_000_000_000;
                b.interval_end_unix_nanos = NOW + 3_615_000_000_000;
            },
            "interval_end_unix_nanos",
            "future",
        );
        let mut early = good();
        early.interval_start_unix_nanos = NOW + 3_600_000_000_000;
        early.interval_end_unix_nanos = NOW + 3_615_000_000_000;
        assert!(
            validate(&early, NOW, &Limits::default()).expect_err("early").refusal == Refusal::Later,
            "early is not invalid"
        );
        // Ten minutes ahead is within the default skew.
        early.interval_start_unix_nanos = NOW + 585_000_000_000;
        early.interval_end_unix_nanos = NOW + 600_000_000_000;
        assert!(validate(&early, NOW, &Limits::default()).is_ok());
        rejects(|b| b.processes[0].sm_util_percent = 140.0, "processes[0].sm_util_percent", "140 is outside 0..=100");
        rejects(|b| b.processes[0].sm_util_percent = f64::NAN, "processes[0].sm_util_percent", "outside");
        rejects(|b| b.processes[0].gpu_uuid = "GPU-zzz".into(), "processes[0].gpu_uuid", "not among node.devices");
        rejects(|b| b.gpus[0].uuid = "GPU-zzz".into(), "gpus[0].uuid", "not among node.devices");
        rejects(|b| b.gpus[0].memory_used_bytes = 25 << 30, "gpus[0].memory_used_bytes", "exceeds");
        rejects(
            |b| {
                let p = b.processes[0].clone();
                b.processes.push(p);
            },
            "processes[1].pid",
            "twice",
        );
        rejects(|b| b.node.as_mut().unwrap().devices[1].uuid = "GPU-a".into(), "node.devices[1].uuid", "listed twice");
        rejects(
            |b| b.node.as_mut().unwrap().devices[1].mig_parent_uuid = "GPU-x".into(),
            "node.devices[1].mig_parent_uuid",
            "not a device",
        );
        rejects(|b| b.node.as_mut().unwrap().devices.clear(), "node.devices", "empty");
        rejects(
            |b| b.processes[0].workload.as_mut().unwrap().pod = "x".repeat(5000),
            "processes[0].workload.pod",
            "at most 1024",
        );
        rejects(|b| b.gpus[0].power_milliwatts = 50_000_000, "gpus[0].power_milliwatts", "beyond");
    }

    /// `good()` with its process naming reference `id`, declared in the batch when `declare` is set.
    fn by_reference(id: u32, declare: bool) -> pb::UsageBatch {
        let mut b = good();
        let w = b.processes[0].workload.take();
        b.processes[0].workload_ref = id;
        if declare {
            b.declare_workloads.push(pb::DeclaredWorkload { id, workload: w });
        }
        b
    }

    #[test]
    fn a_workload_declared_once_on_a_stream_is_named_by_reference_in_later_batches() {
        let mut refs = StreamWorkloads::default();
        let first = validate_on_stream(&by_reference(7, true), NOW, &Limits::default(), &mut refs).unwrap();
        assert_eq!(first.processes[0].workload.key, "pod:prod/ml/p");
        let mut later = by_reference(7, false);
        later.seq = 2;
        let second = validate_on_stream(&later, NOW, &Limits::default(), &mut refs).unwrap();
        assert_eq!(second.processes[0].workload.key, "pod:prod/ml/p");
        assert!(Arc::ptr_eq(&first.processes[0].workload, &second.processes[0].workload), "shared, not rebuilt");
        assert_eq!(gpucost_rules::share::hold(second.clone()).holdings[0].workload.key, "pod:prod/ml/p");
        // The same batch with its identity inline is the same batch.
        let mut inline = validate(&good(), NOW, &Limits::default()).unwrap();
        (inline.seq, inline.first_seq) = (2, 2);
        assert_eq!(inline, second);
    }

    #[test]
    fn a_reference_never_declared_on_the_stream_is_refused_for_a_new_stream_not_rejected() {
        let e = validate_on_stream(&by_reference(3, false), NOW, &Limits::default(), &mut StreamWorkloads::default())
            .expect_err("undeclared");
        assert_eq!(e.refusal, Refusal::Reconnect, "{e}");
        assert_eq!(e.field, "processes[0].workload_ref");
        assert!(e.problem.contains("reference 3 was not declared on this stream"), "{e}");
    }

    #[test]
    fn a_stream_declaring_more_text_than_it_may_is_told_to_start_a_new_stream() {
        // Identities as large as the limits let them be: 3 maps of 128 entries of 1 KiB keys and values.
        let full = |n: u32| {
            let map: HashMap<String, String> =
                (0..128).map(|k| (format!("{n}-{k:04}-{}", "k".repeat(1_000)), "v".repeat(1_024))).collect();
            pb::WorkloadIdentity {
                kind: pb::WorkloadKind::KubernetesPod as i32,
                namespace: "ml".into(),
                pod: format!("p{n}"),
                labels: map.clone(),
                namespace_labels: map.clone(),
                env: map,
                ..Default::default()
            }
        };
        let mut refs = StreamWorkloads::default();
        let mut stored = 0;
        let refused = (1..=20u32).find_map(|n| {
            let mut b = by_reference(n, true);
            b.seq = u64::from(n);
            b.declare_workloads[0].workload = Some(full(n));
            match validate_on_stream(&b, NOW, &Limits::default(), &mut refs) {
                Ok(_) => {
                    stored += 1;
                    None
                }
                Err(e) => Some(e),
            }
        });
        let e = refused.expect("the stream's bound is reached within 20 identities of ~780 KB");
        assert!(stored >= 10, "{stored} stored first");
        assert_eq!(e.refusal, Refusal::Reconnect, "{e}");
        assert!(e.problem.contains("send it again on a new stream"), "{e}");
        // A new stream takes the same batch.
        let mut b = by_reference(stored + 1, true);
        b.declare_workloads[0].workload = Some(full(stored + 1));
        assert!(validate_on_stream(&b, NOW, &Limits::default(), &mut StreamWorkloads::default()).is_ok());
    }

    #[test]
    fn bad_references_and_declarations_are_rejected_with_the_field() {
        rejects(|b| *b = by_reference(0, true), "declare_workloads[0].id", "outside 1..=65536");
        rejects(|b| *b = by_reference(65_537, true), "declare_workloads[0].id", "outside 1..=65536");
        rejects(
            |b| {
                *b = by_reference(2, true);
                b.processes[0].workload = b.declare_workloads[0].workload.clone();
            },
            "processes[0].workload_ref",
            "carries an identity too",
        );
        rejects(
            |b| {
                *b = by_reference(2, true);
                b.declare_workloads[0].workload.as_mut().unwrap().namespace = "bad\u{7}".into();
            },
            "declare_workloads[0].workload.namespace",
            "control characters",
        );
        rejects(
            |b| {
                *b = by_reference(2, true);
                b.declare_workloads[0].workload = None;
            },
            "declare_workloads[0].workload",
            "missing",
        );
    }

    #[test]
    fn every_reference_the_contract_allows_is_taken() {
        for id in [1, 4_097, 5_000, gpucost_proto::refs::MAX_WORKLOAD_REFS] {
            let mut refs = StreamWorkloads::default();
            let b = validate_on_stream(&by_reference(id, true), NOW, &Limits::default(), &mut refs)
                .unwrap_or_else(|e| panic!("reference {id}: {e}"));
            assert_eq!(b.processes[0].workload.key, "pod:prod/ml/p");
        }
    }

    #[test]
    fn uuids_and_names_longer_than_nvml_makes_them_are_rejected() {
        rejects(
            |b| b.node.as_mut().unwrap().devices[1].uuid = format!("GPU-{}", "f".repeat(93)),
            "node.devices[1].uuid",
            "97 bytes long; at most 96",
        );
        rejects(|b| b.processes[0].process_name = "p".repeat(65), "processes[0].process_name", "at most 64");
    }

    #[test]
    fn an_agents_own_words_are_escaped_in_the_error() {
        let mut b = good();
        b.agent_id = "n1\nFORGED line".into();
        let e = validate(&b, NOW, &Limits::default()).expect_err("control characters");
        assert!(!e.to_string().contains('\n'), "{e}");
        assert!(e.to_string().starts_with("batch agent=n1\\nFORGED line boot=b1"), "{e}");
    }

    #[test]
    fn a_workload_kind_from_a_newer_agent_is_kept_as_unidentified() {
        let mut b = good();
        b.processes[0].workload.as_mut().unwrap().kind = 99;
        let v = validate(&b, NOW, &Limits::default()).unwrap();
        assert_eq!(v.processes[0].workload.key, "unidentified:prod/node-1");
    }
}
