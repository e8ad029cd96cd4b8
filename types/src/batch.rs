//! A validated batch: what one node's agent says of its GPUs over one interval, independent of the wire format.
//!
//! Time is Unix nanoseconds (`u64`); utilisation shares are parts per million (`u32`, 0..=1_000_000), so
//! that everything stored is an integer.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

pub const PPM: u64 = 1_000_000;

/// A validated batch: one node's GPUs over [start_ns, end_ns).
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub agent_id: String,
    pub boot_id: String,
    pub seq: u64,
    /// The first sequence number this batch stands for: `seq`, or less when its agent merged batches.
    pub first_seq: u64,
    pub node: Node,
    pub devices: Vec<Device>,
    pub start_ns: u64,
    pub end_ns: u64,
    pub gpus: Vec<GpuReading>,
    pub processes: Vec<ProcessReading>,
    /// The workloads the node's device plugin or DRA driver allocated GPUs to, whether or not they ran.
    pub allocations: Vec<Allocation>,
    /// The EC2 instance the node ran on over the interval (`i-…`), for matching bill lines; `None`: the agent
    /// did not say (off EC2, or older than the field).
    pub instance_id: Option<String>,
}

impl Batch {
    pub fn duration_ns(&self) -> u64 {
        self.end_ns - self.start_ns
    }

    /// `agent=… boot=… seq=…`, for messages.
    pub fn id(&self) -> String {
        format!("agent={} boot={} seq={}", self.agent_id, self.boot_id, self.seq)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub cluster: String,
    pub name: String,
    pub instance_type: String,
    pub capacity_type: String,
    pub region: String,
    pub zone: String,
    /// Allow-listed labels of the node object, e.g. its node group (prices can be set per label).
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    pub uuid: String,
    /// NVML's index: the GPU's on the node, or a MIG device's within its parent GPU.
    pub index: u32,
    pub model: String,
    pub memory_total_bytes: u64,
    pub mig_parent_uuid: Option<String>,
    pub mig_profile: Option<String>,
}

impl Device {
    pub fn is_mig(&self) -> bool {
        self.mig_parent_uuid.is_some()
    }
}

/// Device-level readings over the interval.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuReading {
    pub uuid: String,
    pub utilization_ppm: u32,
    pub memory_used_bytes: u64,
    pub power_milliwatts: u64,
    pub energy_millijoules: Option<u64>,
}

/// One process on one GPU over the interval.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessReading {
    pub gpu_uuid: String,
    pub pid: u32,
    /// Shared by every process and holding of the workload (and, on a stream, by its batches).
    pub workload: Arc<Workload>,
    /// Mean SM utilisation over the interval.
    pub sm_share_ppm: u32,
    pub memory_util_ppm: u32,
    /// Mean memory held over the interval.
    pub used_memory_bytes: u64,
    /// The most memory held in any one sample of the interval, at least the mean (evidence for right-sizing);
    /// `None`: unknown (an agent older than the field), never read as 0.
    pub peak_memory_bytes: Option<u64>,
    /// Samples in which the process was present.
    pub samples: u32,
    /// Of `samples`, those with SM above zero (at most `samples`); `None`: unknown, as for the peak.
    pub busy_samples: Option<u32>,
}

/// A GPU allocated to a workload over the interval (kubelet pod-resources, DRA claims, ECS, Slurm).
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    pub gpu_uuid: String,
    pub workload: Arc<Workload>,
}

/// A workload holding a GPU over the interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Holding {
    pub gpu_uuid: String,
    pub workload: Arc<Workload>,
    /// The interval's length: a holder holds the GPU for the whole interval.
    pub held_ns: u64,
    /// GPU time its processes used (their SM share × the interval, normalised per GPU to at most 100 %).
    pub used_ns: u64,
    pub memory_bytes: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    #[default]
    Unidentified,
    KubernetesPod,
    EcsTask,
    SlurmJob,
    SystemdService,
    Container,
    HostProcess,
}

impl WorkloadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unidentified => "unidentified",
            Self::KubernetesPod => "kubernetes_pod",
            Self::EcsTask => "ecs_task",
            Self::SlurmJob => "slurm_job",
            Self::SystemdService => "systemd_service",
            Self::Container => "container",
            Self::HostProcess => "host_process",
        }
    }
}

/// Who is behind a process, as the agent found out. Empty strings mean unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Identity {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub container: String,
    pub controller_kind: String,
    pub controller_name: String,
    pub labels: BTreeMap<String, String>,
    pub namespace_labels: BTreeMap<String, String>,
    pub ecs_task_arn: String,
    pub ecs_task_family: String,
    pub ecs_cluster: String,
    pub slurm_job_id: String,
    pub slurm_account: String,
    pub user: String,
    pub uid: Option<u32>,
    pub systemd_unit: String,
    pub container_id: String,
    pub container_runtime: String,
    pub env: BTreeMap<String, String>,
}

/// A workload: its stable key and what is known about it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Workload {
    pub key: String,
    pub identity: Identity,
}

impl Workload {
    /// Names the workload: `pod:<cluster>/<namespace>/<pod>/<container>` (`pod:<cluster>/uid/<pod uid>` while
    /// the pod's name is unknown), `ecs:<cluster>/<task family>/<task id>` (`ecs:<cluster>/<task id>` while the
    /// family is unknown: a task reads by what it runs, its ARN stays in the `ecs_task` dimension),
    /// `slurm:<cluster>/<job id>`,
    /// `systemd:<cluster>/<node>/<unit>`, `container:<cluster>/<node>/<id>`, `user:<cluster>/<node>/<user>`,
    /// or `unidentified:<cluster>/<node>`. An identity missing the field its kind is keyed by is
    /// unidentified.
    pub fn new(node: &Node, identity: Identity) -> Self {
        let (c, n) = (&node.cluster, &node.name);
        let keyed = |field: &str, key: String| if field.is_empty() { None } else { Some(key) };
        let key = match identity.kind {
            WorkloadKind::KubernetesPod if identity.pod.is_empty() => {
                keyed(&identity.pod_uid, format!("pod:{c}/uid/{}", identity.pod_uid))
            }
            WorkloadKind::KubernetesPod => Some(match identity.container.as_str() {
                "" => format!("pod:{c}/{}/{}", identity.namespace, identity.pod),
                container => format!("pod:{c}/{}/{}/{container}", identity.namespace, identity.pod),
            }),
            WorkloadKind::EcsTask => {
                let id = identity.ecs_task_arn.rsplit('/').next().unwrap_or_default();
                keyed(
                    id,
                    match identity.ecs_task_family.as_str() {
                        "" => format!("ecs:{c}/{id}"),
                        family => format!("ecs:{c}/{family}/{id}"),
                    },
                )
            }
            WorkloadKind::SlurmJob => keyed(&identity.slurm_job_id, format!("slurm:{c}/{}", identity.slurm_job_id)),
            WorkloadKind::SystemdService => {
                keyed(&identity.systemd_unit, format!("systemd:{c}/{n}/{}", identity.systemd_unit))
            }
            WorkloadKind::Container => {
                keyed(&identity.container_id, format!("container:{c}/{n}/{}", identity.container_id))
            }
            WorkloadKind::HostProcess => keyed(&identity.user, format!("user:{c}/{n}/{}", identity.user)),
            WorkloadKind::Unidentified => None,
        };
        match key {
            Some(key) => Self { key, identity },
            None => Self { key: format!("unidentified:{c}/{n}"), identity: Identity::default() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        Node {
            cluster: "prod".into(),
            name: "ip-10-0-0-1".into(),
            instance_type: "g5.xlarge".into(),
            capacity_type: "on_demand".into(),
            region: "us-east-1".into(),
            zone: "us-east-1a".into(),
            labels: Default::default(),
        }
    }

    #[test]
    fn workloads_are_keyed_by_what_identifies_their_kind() {
        let pod = Identity {
            kind: WorkloadKind::KubernetesPod,
            namespace: "ml".into(),
            pod: "train-0".into(),
            ..Default::default()
        };
        assert_eq!(Workload::new(&node(), pod.clone()).key, "pod:prod/ml/train-0");
        let container = Identity { container: "trainer".into(), ..pod };
        assert_eq!(Workload::new(&node(), container).key, "pod:prod/ml/train-0/trainer");
        let unnamed = Identity { kind: WorkloadKind::KubernetesPod, pod_uid: "0c2f".into(), ..Default::default() };
        assert_eq!(Workload::new(&node(), unnamed).key, "pod:prod/uid/0c2f");
        let user = Identity { kind: WorkloadKind::HostProcess, user: "alice".into(), ..Default::default() };
        assert_eq!(Workload::new(&node(), user).key, "user:prod/ip-10-0-0-1/alice");
        let slurm = Identity { kind: WorkloadKind::SlurmJob, slurm_job_id: "4711".into(), ..Default::default() };
        assert_eq!(Workload::new(&node(), slurm).key, "slurm:prod/4711");
    }

    #[test]
    fn an_ecs_task_is_named_by_its_family_with_its_task_id_kept() {
        let task = Identity {
            kind: WorkloadKind::EcsTask,
            ecs_task_arn: "arn:aws:ecs:us-east-1:123456789012:task/gpu-batch/5a8c1d2e3f4b4a5c9d8e7f6a5b4c3d2e".into(),
            ecs_task_family: "vision-batch-embed".into(),
            ..Default::default()
        };
        assert_eq!(
            Workload::new(&node(), task.clone()).key,
            "ecs:prod/vision-batch-embed/5a8c1d2e3f4b4a5c9d8e7f6a5b4c3d2e"
        );
        // Without the ECS agent's introspection the agent knows only the task id, from the cgroup path.
        let bare = Identity { ecs_task_arn: "5a8c1d2e".into(), ecs_task_family: String::new(), ..task };
        assert_eq!(Workload::new(&node(), bare).key, "ecs:prod/5a8c1d2e");
    }

    #[test]
    fn an_identity_without_its_key_field_is_unidentified_not_an_empty_name() {
        let pod = Identity { kind: WorkloadKind::KubernetesPod, namespace: "ml".into(), ..Default::default() };
        let w = Workload::new(&node(), pod);
        assert_eq!(w.key, "unidentified:prod/ip-10-0-0-1");
        assert_eq!(w.identity.kind, WorkloadKind::Unidentified);
    }
}
