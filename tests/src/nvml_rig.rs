//! A node for the end-to-end tests through NVML's C interface: the real collector, the Kubernetes API
//! stand-in with the node's pods (and DRA objects), a fake `/proc`, the kubelet's pod-resources stand-in,
//! and the real agent loading the NVML stand-in (`nvml-stub`) on a scenario; and the truth of a window,
//! built interval by interval, to compare the ledger with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gpucost_agent::reading::{CapacityType, NodeInfo, WorkloadIdentity, WorkloadKind};
use gpucost_agent::sim::{Truth, World, workload_key};
use serde_json::{Value, json};

use crate::standins::{ApiLog, Background, ClaimUse, kubeconfig};
use crate::{Agent, Collector, agent_with_env, assert_matches_truth, bin, free_port, stored};

/// The report interval (and the collector's bucket), and the sample interval: two ticks an interval, so a
/// tick that runs up to a second late still reads its own interval's state.
pub const R_S: u64 = 2;
pub const R_NS: u64 = R_S * 1_000_000_000;
pub const NODE: &str = "gpu-node-1";
pub const CLUSTER: &str = "lab";
/// The EC2 instance the rig's Node names in its `spec.providerID`.
pub const INSTANCE_ID: &str = "i-0b1c2d3e4f5a6b7c8";
pub const GIB: u64 = 1 << 30;

pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A scenario start on an interval boundary at least `ahead_s` from now.
pub fn start_ahead(ahead_s: u64) -> u64 {
    (unix_ms() + ahead_s * 1000).div_ceil(R_S * 1000) * R_S * 1000
}

/// The built stand-in, next to the binaries.
pub fn stub_library() -> PathBuf {
    let lib = bin("gpucost-agent").with_file_name("libnvml_stub.so");
    assert!(lib.exists(), "{} is missing: cargo build --workspace --bins --lib (scripts/test does)", lib.display());
    lib
}

/// One node: a collector, the Kubernetes API stand-in with its pods, a fake `/proc`, and the agent.
pub struct Rig {
    dir: tempfile::TempDir,
    bg: Background,
    collector: Collector,
    pods: Vec<Value>,
    namespaces: BTreeMap<String, Value>,
    node: NodeInfo,
    metrics_port: u16,
    /// ResourceSlices and ResourceClaims the API stand-in serves.
    pub dra_objects: Vec<Value>,
    /// The DRA claims the kubelet's pod-resources stand-in reports (none: no kubelet socket).
    pub claim_uses: Vec<ClaimUse>,
    /// Every request the agent made to the API stand-in, once it runs.
    pub api_log: Option<ApiLog>,
}

impl Default for Rig {
    fn default() -> Self {
        Self::new()
    }
}

impl Rig {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        std::fs::write(dir.path().join("passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
        let db = dir.path().join("ledger.db");
        let collector = Collector::start_with(&db, free_port(), free_port(), &["--bucket", "2s"], &[]);
        let node = NodeInfo {
            cluster: CLUSTER.into(),
            node_name: NODE.into(),
            instance_type: String::new(),
            capacity_type: CapacityType::Unspecified,
            region: String::new(),
            zone: String::new(),
            devices: vec![],
            labels: Default::default(),
            instance_id: String::new(),
        };
        let (pods, namespaces) = (Vec::new(), BTreeMap::new());
        Self {
            dir,
            bg: Background::new(),
            collector,
            pods,
            namespaces,
            node,
            metrics_port: free_port(),
            dra_objects: Vec::new(),
            claim_uses: Vec::new(),
            api_log: None,
        }
    }

    /// A pod with one container, `main`, known to the API stand-in; returns its identity.
    pub fn pod(&mut self, namespace: &str, name: &str) -> WorkloadIdentity {
        let n = self.pods.len() as u64 + 1;
        let uid = format!("{n:08x}-0000-4000-8000-{n:012x}");
        let container_id = format!("{:064x}", 0x00c0_ffee_0000 + n);
        self.pods.push(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": name, "namespace": namespace, "uid": uid, "resourceVersion": "1", "labels": { "team": "ml" } },
            "spec": { "nodeName": NODE, "containers": [{ "name": "main", "image": "registry.example.com/ml/train:1",
                      "resources": { "limits": { "nvidia.com/gpu": "1" } } }] },
            "status": { "phase": "Running", "containerStatuses": [{ "name": "main", "ready": true, "restartCount": 0,
                        "image": "registry.example.com/ml/train:1", "imageID": "registry.example.com/ml/train@sha256:00",
                        "containerID": format!("containerd://{container_id}") }] },
        }));
        self.namespaces.entry(namespace.to_string()).or_insert_with(|| {
            json!({ "apiVersion": "v1", "kind": "Namespace",
                    "metadata": { "name": namespace, "uid": format!("ns-{namespace}"), "resourceVersion": "1" },
                    "status": { "phase": "Active" } })
        });
        WorkloadIdentity {
            kind: WorkloadKind::KubernetesPod,
            namespace: namespace.into(),
            pod: name.into(),
            pod_uid: uid,
            container: "main".into(),
            container_id,
            ..Default::default()
        }
    }

    /// Writes `/proc/<pid>` for a process of `who` (a pod's container, or a systemd service).
    pub fn process(&self, pid: u32, who: &WorkloadIdentity) {
        let cgroup = match who.kind {
            WorkloadKind::KubernetesPod => format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{}.scope",
                who.pod_uid.replace('-', "_"),
                who.container_id
            ),
            _ => format!("0::/system.slice/{}", who.systemd_unit),
        };
        gpucost_agent::identify::proc::write_fake(
            &self.dir.path().join("proc"),
            pid,
            0,
            u64::from(pid),
            "python3",
            &[],
            &cgroup,
        )
        .unwrap();
    }

    /// The collector's name for `who`'s workload.
    pub fn key(&self, who: &WorkloadIdentity) -> String {
        workload_key(&self.node, who)
    }

    /// Starts the agent on `scenario` (the stand-in's JSON).
    pub fn agent(&mut self, scenario: &Value) -> Agent {
        let scenario_file = self.dir.path().join("scenario.json");
        std::fs::write(&scenario_file, serde_json::to_vec_pretty(scenario).unwrap()).unwrap();
        let world = World {
            node: json!({ "apiVersion": "v1", "kind": "Node",
                          "metadata": { "name": NODE, "uid": "node-1", "resourceVersion": "1", "labels": {} },
                          "spec": { "providerID": format!("aws:///us-east-1a/{INSTANCE_ID}") } }),
            pods: self.pods.clone(),
            namespaces: self.namespaces.values().cloned().collect(),
            allocations: vec![],
            ecs_tasks: vec![],
        };
        let (api, log) = self.bg.kube_api_with_dra(&[world], &self.dra_objects, &[]);
        self.api_log = Some(log);
        let kcfg = self.dir.path().join("kubeconfig");
        kubeconfig(&kcfg, api);
        let kubelet = self.dir.path().join("kubelet.sock");
        if !self.claim_uses.is_empty() {
            self.bg.pod_resources_with_claims(&kubelet, &[], &self.claim_uses);
        }
        let path = |p: &Path| p.to_str().unwrap().to_string();
        let args: Vec<String> = [
            "--source",
            "nvml",
            "--nvml-lib",
            &path(&stub_library()),
            "--collector",
            &self.collector.grpc_url(),
            "--sample-interval",
            "1s",
            "--report-interval",
            "2s",
            "--cluster",
            CLUSTER,
            "--node-name",
            NODE,
            "--kubernetes",
            "on",
            "--imds",
            "off",
            "--proc-root",
            &path(&self.dir.path().join("proc")),
            "--passwd",
            &path(&self.dir.path().join("passwd")),
            "--pod-resources-socket",
            &path(&kubelet),
            "--metrics-addr",
            &format!("127.0.0.1:{}", self.metrics_port),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        agent_with_env(
            &args,
            &[("KUBECONFIG", &kcfg), ("GPUCOST_NVML_STUB_SCENARIO", &scenario_file)],
            &self.dir.path().join("agent.log"),
        )
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// The agent's own `/metrics`.
    pub fn agent_metrics(&self) -> String {
        ureq::get(&format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .call()
            .expect("the agent's /metrics")
            .into_body()
            .read_to_string()
            .unwrap()
    }

    /// The collector's ledger file (SQLite), to read it directly.
    pub fn ledger_path(&self) -> &Path {
        &self.collector.db
    }

    /// Energy per GPU the ledger stored over [from_ms, to_ms).
    pub fn stored_energy(&self, from_ms: u64, to_ms: u64) -> BTreeMap<String, u64> {
        let db = rusqlite::Connection::open_with_flags(&self.collector.db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
        let mut q = db
            .prepare(
                "SELECT g.uuid, SUM(b.energy_millijoules) FROM gpu_buckets b JOIN gpus g ON g.gpu_id = b.gpu_id
                 WHERE b.bucket_start_ns >= ?1 AND b.bucket_start_ns < ?2 GROUP BY g.uuid",
            )
            .unwrap();
        let ns = |ms: u64| (ms * 1_000_000) as i64;
        q.query_map([ns(from_ms), ns(to_ms)], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// Waits (bounded) until the ledger holds `want` over [from_ms, to_ms), then asserts it exactly,
    /// GPU by GPU and workload by workload, and the energy per GPU.
    pub fn assert_ledger(&self, agent: &mut Agent, from_ms: u64, to_ms: u64, want: &Expected) {
        let deadline =
            Instant::now() + Duration::from_millis(to_ms.saturating_sub(unix_ms())) + Duration::from_secs(30);
        let (from_s, to_s) = (from_ms / 1000, to_ms / 1000);
        loop {
            if let Ok(Some(status)) = agent.proc.0.try_wait() {
                panic!("the agent exited ({status}); its log:\n{}", self.agent_log());
            }
            let done = stored(&self.collector, from_s, to_s) == want.truth
                && self.stored_energy(from_ms, to_ms) == want.energy;
            if done || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let got = stored(&self.collector, from_s, to_s);
        if got != want.truth {
            eprintln!("agent log:\n{}", self.agent_log());
        }
        assert_matches_truth(&got, &want.truth);
        assert_eq!(self.stored_energy(from_ms, to_ms), want.energy, "energy per GPU (mJ)");
    }
}

/// The truth of a window, built interval by interval.
#[derive(Default)]
pub struct Expected {
    pub truth: Truth,
    pub energy: BTreeMap<String, u64>,
}

impl Expected {
    /// A GPU (or MIG device) the ledger knows, with nothing booked yet.
    pub fn device(&mut self, uuid: &str) {
        self.truth.gpus.entry(uuid.to_string()).or_default();
        self.energy.entry(uuid.to_string()).or_default();
    }

    /// One interval: the physical GPUs that answered, the energy each booked, and each holding
    /// (device, workload, used ns) — several for one workload add up, as its processes do.
    pub fn interval(&mut self, observed: &[&str], energy: &[(&str, u64)], holdings: &[(&str, String, u64)]) {
        for g in observed {
            self.truth.gpus.entry(g.to_string()).or_default().observed_ns += R_NS;
        }
        for (g, mj) in energy {
            *self.energy.entry(g.to_string()).or_default() += mj;
        }
        let mut held = std::collections::BTreeSet::new();
        let mut holders = std::collections::BTreeSet::new();
        for (g, key, used) in holdings {
            let gpu = self.truth.gpus.entry(g.to_string()).or_default();
            gpu.used_ns += used;
            if held.insert(g.to_string()) {
                gpu.held_ns += R_NS;
            }
            let w = self.truth.workloads.entry((g.to_string(), key.clone())).or_default();
            w.used_ns += used;
            if holders.insert((g.to_string(), key.clone())) {
                w.held_ns += R_NS;
            }
        }
    }
}

/// GPU time used in one interval at `sm` percent.
pub fn used(sm: u64) -> u64 {
    R_NS * sm / 100
}

pub fn device(uuid: &str, name: &str, memory_gib: u64, power_mw: u64) -> Value {
    json!({ "uuid": uuid, "name": name, "memory_total_bytes": memory_gib * GIB, "power_mw": power_mw })
}
