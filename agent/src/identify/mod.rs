//! Names the workload behind every GPU process: process → container (`cgroup`) → Kubernetes pod
//! (`pods`, a watcher's cache), ECS task (`ecs`), Slurm job, systemd service, or Unix user (`proc`); and
//! GPU → holder (`pod_resources` for device-plugin allocations, `dra` for claims), so an allocated GPU that
//! runs nothing still has its pod.
//!
//! What `/proc` says about a process is read once per (pid, start time) and cached; the pod and task
//! lookups are hash-map reads on every interval, so a pod the watcher learns about later is picked up.

pub mod cgroup;
pub mod dra;
pub mod ecs;
pub mod imds;
pub mod instance;
pub mod labels;
pub mod node;
pub mod pod_resources;
pub mod pods;
pub mod proc;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::reading::{GpuAllocation, GpuDevice, WorkloadIdentity, WorkloadKind};
use pods::{PodCache, PodInfo};
use proc::ProcFacts;

/// The environment variables read by default.
pub const DEFAULT_ENV_KEYS: &[&str] = &["MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"];

#[derive(Debug, Clone)]
pub struct IdentifyConfig {
    pub proc_root: PathBuf,
    pub passwd: Option<PathBuf>,
    pub env_keys: Vec<String>,
    /// The kubelet's pod-resources socket, if this is a Kubernetes node.
    pub pod_resources_socket: Option<PathBuf>,
    /// Device-plugin resource names that are GPUs start with this.
    pub gpu_resource_prefix: String,
    /// The ECS agent's introspection API, if this is an ECS container instance.
    pub ecs_introspection: Option<String>,
}

/// How often the process cache answered without reading `/proc`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
}

pub struct Identifier {
    config: IdentifyConfig,
    users: HashMap<u32, String>,
    procs: HashMap<(u32, u64), ProcFacts>,
    pods: Option<PodCache>,
    ecs_tasks: HashMap<String, ecs::EcsTask>,
    ecs_fetched: Option<Instant>,
    allocations: Vec<GpuAllocation>,
    /// Holders of GPUs allocated through DRA, on a Kubernetes node whose API serves ResourceSlices.
    dra: Option<dra::Dra>,
    stats: CacheStats,
    /// The collector's label keys, waited for before the first interval is identified (then `None`).
    awaiting_keys: Option<labels::CollectorKeys>,
}

/// How long the first interval waits for the collector's label keys and the re-list they cause.
const KEYS_WAIT: Duration = Duration::from_secs(10);

impl Identifier {
    pub fn new(config: IdentifyConfig, pods: Option<PodCache>) -> Self {
        let users = config
            .passwd
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| proc::parse_passwd(&t))
            .unwrap_or_default();
        Self {
            config,
            users,
            procs: HashMap::new(),
            pods,
            ecs_tasks: HashMap::new(),
            ecs_fetched: None,
            allocations: Vec::new(),
            dra: None,
            stats: CacheStats::default(),
            awaiting_keys: None,
        }
    }

    /// Keeps the label keys the collector asks for (the watchers add them), and lets the first interval wait
    /// for them, at most [`KEYS_WAIT`] once: identified before, its pods would lack the keys.
    pub fn with_collector_keys(mut self, keys: labels::CollectorKeys) -> Self {
        self.awaiting_keys = Some(keys);
        self
    }

    /// Also names the holders of GPUs allocated through DRA (the pod-resources API's claims).
    pub fn with_dra(mut self, dra: dra::Dra) -> Self {
        self.dra = Some(dra);
        self
    }

    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Refreshes what changes between intervals: reads `/proc` for the processes `pids` not seen before,
    /// lists the kubelet's allocations, and the ECS task list when a process belongs to a task it does not
    /// know yet (at most every 10 s); the first time, it waits for the collector's label keys if asked to.
    pub async fn refresh(&mut self, devices: &[GpuDevice], pids: &[u32]) {
        if let (Some(keys), Some(pods)) = (self.awaiting_keys.take(), &self.pods)
            && !pods.wait_listed_with(&keys, KEYS_WAIT).await
        {
            tracing::warn!(wait = ?KEYS_WAIT, "no word from the collector on label keys yet; identifying with --label-allow alone until it comes");
        }
        for &pid in pids {
            self.facts(pid);
        }
        if let Some(socket) = &self.config.pod_resources_socket {
            match pod_resources::list(socket, Duration::from_secs(2)).await {
                Ok(resp) => {
                    let mut allocations = pod_resources::allocations(&resp, devices, &self.config.gpu_resource_prefix);
                    if let Some(dra) = &mut self.dra {
                        let claimed = pod_resources::claimed_devices(&resp, dra.driver());
                        allocations.extend(dra.holders(&claimed, devices).await);
                    }
                    self.allocations = allocations
                        .into_iter()
                        .map(|a| GpuAllocation {
                            workload: self.pod_by_name(&a.namespace, &a.pod, &a.container),
                            gpu_uuid: a.gpu_uuid,
                        })
                        .collect();
                }
                // Keep the last known allocations: a kubelet restart should not make GPUs holderless.
                Err(e) => tracing::warn!(error = %e, "cannot list GPU allocations; keeping the last known"),
            }
        }
        let unknown_task = self.procs.values().any(|f| {
            f.cgroup.ecs_task_id.is_some()
                && f.cgroup.container_id.as_ref().is_some_and(|c| !self.ecs_tasks.contains_key(c))
        });
        if let Some(base) = self.config.ecs_introspection.clone()
            && unknown_task
            && self.ecs_fetched.is_none_or(|t| t.elapsed() > Duration::from_secs(10))
        {
            self.ecs_fetched = Some(Instant::now());
            match tokio::task::spawn_blocking(move || ecs::fetch(&base, Duration::from_secs(2))).await {
                Ok(Ok(tasks)) => self.ecs_tasks = tasks,
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot list ECS tasks"),
                Err(e) => tracing::warn!(error = %e, "ECS task lookup panicked"),
            }
        }
    }

    /// GPUs the kubelet allocated, with their holders, as of the last `refresh`.
    pub fn allocations(&self) -> Vec<GpuAllocation> {
        self.allocations.clone()
    }

    /// The identity and command name of `pid`. A process that has already exited gets an empty identity
    /// (it is still billed, to `unidentified`).
    pub fn identify(&mut self, pid: u32) -> (WorkloadIdentity, String) {
        let Some(facts) = self.facts(pid) else {
            return (WorkloadIdentity::default(), String::new());
        };
        let comm = facts.comm.clone();
        (self.resolve(facts), comm)
    }

    /// What `/proc` says about `pid`, read once per (pid, start time).
    fn facts(&mut self, pid: u32) -> Option<ProcFacts> {
        let start = proc::read_start_time(&self.config.proc_root, pid)?;
        if let Some(f) = self.procs.get(&(pid, start)) {
            self.stats.hits += 1;
            return Some(f.clone());
        }
        self.stats.misses += 1;
        let f = proc::read(&self.config.proc_root, pid, start, &self.config.env_keys);
        self.procs.insert((pid, start), f.clone());
        Some(f)
    }

    /// Forgets processes no longer running, so the cache stays as small as the node's GPU process list.
    pub fn retain(&mut self, live_pids: &HashSet<u32>) {
        self.procs.retain(|(pid, _), _| live_pids.contains(pid));
    }

    fn user_name(&self, uid: u32) -> String {
        self.users.get(&uid).cloned().unwrap_or_else(|| format!("uid-{uid}"))
    }

    fn pod_identity(pod: &PodInfo, namespace_labels: BTreeMap<String, String>, container: String) -> WorkloadIdentity {
        WorkloadIdentity {
            kind: WorkloadKind::KubernetesPod,
            namespace: pod.namespace.clone(),
            pod: pod.name.clone(),
            pod_uid: pod.uid.clone(),
            container,
            controller_kind: pod.controller_kind.clone(),
            controller_name: pod.controller_name.clone(),
            labels: pod.labels.clone(),
            namespace_labels,
            ..Default::default()
        }
    }

    fn pod_by_name(&self, namespace: &str, name: &str, container: &str) -> WorkloadIdentity {
        match self.pods.as_ref().and_then(|c| c.by_name(namespace, name)) {
            Some((pod, ns_labels)) => Self::pod_identity(&pod, ns_labels, container.to_string()),
            None => WorkloadIdentity {
                kind: WorkloadKind::KubernetesPod,
                namespace: namespace.into(),
                pod: name.into(),
                container: container.into(),
                ..Default::default()
            },
        }
    }

    /// Pod, else ECS task, else Slurm job, else container, else systemd service, else Unix user.
    fn resolve(&self, f: ProcFacts) -> WorkloadIdentity {
        let cg = f.cgroup;
        let mut w = WorkloadIdentity {
            user: f.uid.map(|u| self.user_name(u)).unwrap_or_default(),
            uid: f.uid,
            env: f.env,
            container_id: cg.container_id.clone().unwrap_or_default(),
            container_runtime: cg.runtime.unwrap_or_default().to_string(),
            ..Default::default()
        };
        if let Some(uid) = cg.pod_uid {
            let found = self.pods.as_ref().and_then(|c| c.by_uid(&uid));
            if let Some((pod, ns_labels)) = found {
                let container =
                    cg.container_id.as_ref().and_then(|id| pod.containers.get(id)).cloned().unwrap_or_default();
                let base = Self::pod_identity(&pod, ns_labels, container);
                w = WorkloadIdentity {
                    user: w.user,
                    uid: w.uid,
                    env: w.env,
                    container_id: w.container_id,
                    container_runtime: w.container_runtime,
                    ..base
                };
            } else {
                w.kind = WorkloadKind::KubernetesPod;
                w.pod_uid = uid;
            }
        } else if let Some(task) = cg.ecs_task_id {
            w.kind = WorkloadKind::EcsTask;
            match cg.container_id.as_ref().and_then(|c| self.ecs_tasks.get(c)) {
                Some(t) => {
                    w.ecs_task_arn = t.arn.clone();
                    w.ecs_task_family = t.family.clone();
                    w.ecs_cluster = t.cluster.clone();
                }
                None => w.ecs_task_arn = task,
            }
        } else if let Some(job) = cg.slurm_job_id {
            w.kind = WorkloadKind::SlurmJob;
            w.slurm_job_id = job;
            if let Some(uid) = cg.slurm_uid {
                w.user = self.user_name(uid);
                w.uid = Some(uid);
            }
        } else if cg.container_id.is_some() {
            w.kind = WorkloadKind::Container;
        } else if let Some(unit) = cg.systemd_unit.filter(|u| !u.starts_with("user@")) {
            w.kind = WorkloadKind::SystemdService;
            w.systemd_unit = unit;
        } else {
            w.kind = WorkloadKind::HostProcess;
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "4f2c8e3a9b1d7f6e5c4b3a29180716253443526170819a0b1c2d3e4f5a6b7c8d";
    const UID: &str = "0c2f1e4a-5b6d-4c3e-9f8a-7b6c5d4e3f2a";

    fn identifier(root: &std::path::Path, pods: Option<PodCache>) -> Identifier {
        std::fs::write(root.join("passwd"), "alice:x:1001:1001::/home/alice:/bin/bash\n").unwrap();
        let config = IdentifyConfig {
            proc_root: root.to_path_buf(),
            passwd: Some(root.join("passwd")),
            env_keys: DEFAULT_ENV_KEYS.iter().map(|s| s.to_string()).collect(),
            pod_resources_socket: None,
            gpu_resource_prefix: "nvidia.com/".into(),
            ecs_introspection: None,
        };
        Identifier::new(config, pods)
    }

    #[test]
    fn a_container_process_is_named_by_its_pod_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cg = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{CID}.scope",
            UID.replace('-', "_")
        );
        proc::write_fake(dir.path(), 10, 0, 100, "python", &[("MLFLOW_RUN_ID", "r1")], &cg).unwrap();
        let cache = PodCache::default();
        cache.apply_pod(PodInfo {
            uid: UID.into(),
            namespace: "team-nlp".into(),
            name: "llama-train-0".into(),
            controller_kind: "Job".into(),
            controller_name: "llama-train".into(),
            labels: [("team".to_string(), "nlp".to_string())].into(),
            containers: [(CID.to_string(), "trainer".to_string())].into(),
        });
        cache.apply_namespace("team-nlp".into(), [("backstage.io/owner".to_string(), "group:nlp".to_string())].into());
        let mut id = identifier(dir.path(), Some(cache));
        let (w, comm) = id.identify(10);
        assert_eq!(comm, "python");
        assert_eq!(
            (w.kind, w.namespace.as_str(), w.pod.as_str(), w.container.as_str()),
            (WorkloadKind::KubernetesPod, "team-nlp", "llama-train-0", "trainer")
        );
        assert_eq!((w.controller_kind.as_str(), w.controller_name.as_str()), ("Job", "llama-train"));
        assert_eq!(w.namespace_labels["backstage.io/owner"], "group:nlp");
        assert_eq!(w.env["MLFLOW_RUN_ID"], "r1");
        assert_eq!(w.container_runtime, "containerd");
        id.identify(10);
        assert_eq!(id.stats(), CacheStats { hits: 1, misses: 1 });
    }

    #[test]
    fn a_pod_not_yet_in_the_cache_is_still_a_pod_known_by_its_uid() {
        let dir = tempfile::tempdir().unwrap();
        proc::write_fake(dir.path(), 10, 0, 100, "python", &[], &format!("4:devices:/kubepods/pod{UID}/{CID}"))
            .unwrap();
        let (w, _) = identifier(dir.path(), Some(PodCache::default())).identify(10);
        assert_eq!((w.kind, w.pod_uid.as_str()), (WorkloadKind::KubernetesPod, UID));
    }

    #[test]
    fn slurm_jobs_services_containers_and_plain_processes_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        proc::write_fake(dir.path(), 1, 0, 1, "srun", &[], "4:devices:/slurm/uid_1001/job_4711/step_0/task_0").unwrap();
        proc::write_fake(dir.path(), 2, 0, 1, "vllm", &[], "0::/system.slice/vllm.service").unwrap();
        proc::write_fake(dir.path(), 3, 0, 1, "python", &[], &format!("0::/system.slice/docker-{CID}.scope")).unwrap();
        proc::write_fake(dir.path(), 4, 1001, 1, "python", &[], "0::/user.slice/user-1001.slice/session-3.scope")
            .unwrap();
        let mut id = identifier(dir.path(), None);
        let slurm = id.identify(1).0;
        assert_eq!(
            (slurm.kind, slurm.slurm_job_id.as_str(), slurm.user.as_str()),
            (WorkloadKind::SlurmJob, "4711", "alice")
        );
        let svc = id.identify(2).0;
        assert_eq!((svc.kind, svc.systemd_unit.as_str()), (WorkloadKind::SystemdService, "vllm.service"));
        let docker = id.identify(3).0;
        assert_eq!((docker.kind, docker.container_runtime.as_str()), (WorkloadKind::Container, "docker"));
        let user = id.identify(4).0;
        assert_eq!((user.kind, user.user.as_str()), (WorkloadKind::HostProcess, "alice"));
        assert_eq!(id.identify(99).0, WorkloadIdentity::default(), "an exited process");
    }
}
