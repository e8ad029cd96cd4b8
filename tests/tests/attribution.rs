//! Who is on the GPU, end to end: simulated nodes whose processes carry no identity are attributed by
//! the real agent through a fake `/proc`, the Kubernetes API stand-in, the kubelet's pod-resources API
//! over a real Unix socket and the ECS introspection stand-in, and stream to the real collector.

use std::time::Duration;

use gpucost_agent::sim::{Fleet, FleetSpec, Truth, World};
use gpucost_e2e::standins::{Background, kubeconfig};
use gpucost_e2e::{Collector, agent_with_env, assert_matches_truth, stored};

const NODES: u32 = 4;
/// 2026-11-01T00:00:00Z
const START_S: u64 = 1_793_491_200;
const SLOT_S: u64 = 15;
const INTERVALS: u64 = 80;
const NS: u64 = 1_000_000_000;

fn spec(seed: u64) -> FleetSpec {
    FleetSpec { seed, clusters: 1, nodes: NODES }
}

fn truth(fleet: &Fleet) -> Truth {
    let mut all = Truth::default();
    for node in &fleet.nodes {
        let t = node.truth(START_S * NS, (START_S + INTERVALS * SLOT_S) * NS, SLOT_S * NS);
        all.gpus.extend(t.gpus);
        all.workloads.extend(t.workloads);
    }
    all
}

/// What a fleet shows in the window: time-sliced GPUs, idle allocated GPUs, MIG slices, bare users.
struct Features {
    time_sliced_gpu: Option<String>,
    idle_holder: Option<(String, String)>,
    mig_slice: Option<String>,
    user: Option<String>,
}

fn features(worlds: &[World], truth: &Truth) -> Features {
    let allocations: Vec<_> = worlds.iter().flat_map(|w| w.allocations.iter()).collect();
    let holders = |gpu: &str| truth.workloads.keys().filter(|(g, _)| g == gpu).count();
    Features {
        time_sliced_gpu: allocations.iter().find_map(|a| a.device_id.split_once("::").map(|(g, _)| g.to_string())),
        idle_holder: truth
            .workloads
            .iter()
            .find(|((g, k), w)| k.starts_with("pod:") && w.used_ns == 0 && g.starts_with("GPU-") && holders(g) == 1)
            .map(|((g, k), _)| (g.clone(), k.clone())),
        mig_slice: allocations.iter().find(|a| a.device_id.starts_with("MIG-")).map(|a| a.device_id.clone()),
        user: truth.workloads.keys().find(|(_, k)| k.starts_with("user:")).map(|(_, k)| k.clone()),
    }
}

impl Features {
    fn complete(&self) -> bool {
        self.time_sliced_gpu.is_some() && self.idle_holder.is_some() && self.mig_slice.is_some() && self.user.is_some()
    }
}

#[test]
fn every_gpu_second_lands_on_the_right_pod_task_job_or_user() {
    let dir = tempfile::tempdir().unwrap();
    let (from, to) = (START_S * NS, (START_S + INTERVALS * SLOT_S) * NS);
    // The first seed whose small fleet shows every case this test is about.
    let (seed, fleet, worlds, truth, f) = (1..500)
        .find_map(|seed| {
            let fleet = Fleet::generate(spec(seed));
            let worlds: Vec<World> = fleet
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let root = dir.path().join(format!("node{i}"));
                    std::fs::create_dir_all(root.join("proc")).unwrap();
                    n.materialize(&root.join("proc"), &root.join("passwd"), from, to, SLOT_S * NS).unwrap()
                })
                .collect();
            let truth = truth(&fleet);
            let f = features(&worlds, &truth);
            f.complete().then_some((seed, fleet, worlds, truth, f))
        })
        .expect("some seed shows time-slicing, an idle allocated GPU, a MIG slice and a bare user");

    let bg = Background::new();
    let api = bg.kube_and_ecs(&worlds);
    let kcfg = dir.path().join("kubeconfig");
    kubeconfig(&kcfg, api);
    let c = Collector::start(&dir.path().join("ledger.db"));
    let mut agents = Vec::new();
    for (i, (node, world)) in fleet.nodes.iter().zip(&worlds).enumerate() {
        let root = dir.path().join(format!("node{i}"));
        let socket = root.join("kubelet.sock");
        bg.pod_resources(&socket, &world.allocations);
        let args: Vec<String> = [
            "--source",
            "sim",
            "--sim-anonymous",
            "--sim-seed",
            &seed.to_string(),
            "--sim-nodes",
            &NODES.to_string(),
            "--sim-clusters",
            "1",
            "--sim-node",
            &i.to_string(),
            "--sim-start",
            "2026-11-01T00:00:00Z",
            "--intervals",
            &INTERVALS.to_string(),
            "--report-interval",
            "15s",
            "--sample-interval",
            "1s",
            "--collector",
            &c.grpc_url(),
            "--node-name",
            &node.info.node_name,
            "--kubernetes",
            "on",
            "--proc-root",
            root.join("proc").to_str().unwrap(),
            "--passwd",
            root.join("passwd").to_str().unwrap(),
            "--pod-resources-socket",
            socket.to_str().unwrap(),
            "--ecs-introspection",
            &format!("http://{api}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        agents.push(agent_with_env(&args, &[("KUBECONFIG", &kcfg)], &root.join("agent.log")));
    }
    let mut logs = String::new();
    for a in agents {
        let (ok, log) = a.wait(Duration::from_secs(120));
        assert!(ok, "agent failed:\n{log}");
        logs.push_str(&log);
    }

    // The agents knew no instance type: they read it, the capacity type, region and zone from their Node
    // objects' labels, and so every node is priced.
    let (_, prices) = c.get("/api/v1/prices");
    for node in &fleet.nodes {
        let p = prices["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["node"] == node.info.node_name.as_str())
            .expect("a price per node");
        assert_eq!(p["instance_type"], node.info.instance_type.as_str(), "{p}\nagent logs:\n{logs}");
        assert_eq!(p["priced"], true, "{p}");
    }

    // Every GPU-second on the right workload, exactly.
    assert_matches_truth(&stored(&c, START_S, START_S + INTERVALS * SLOT_S), &truth);

    let window = format!("from={START_S}&to={}", START_S + INTERVALS * SLOT_S);
    let rows = |group_by: &str| {
        let (status, body) = c.get(&format!("/api/v1/usage?{window}&group_by={group_by}"));
        assert_eq!(status, 200, "{body}");
        body["rows"].as_array().unwrap().clone()
    };
    // Two pods time-sliced on one GPU each get their own share.
    let sliced = f.time_sliced_gpu.unwrap();
    let on_sliced: Vec<_> = rows("gpu,namespace,pod").into_iter().filter(|r| r["gpu"] == sliced.as_str()).collect();
    assert_eq!(on_sliced.len(), 2, "{on_sliced:?}");
    assert!(
        on_sliced.iter().all(|r| r["pod"].as_str().is_some_and(|p| !p.is_empty())
            && r["held_ns"].as_u64() == Some(INTERVALS * SLOT_S * NS))
    );
    // An allocated GPU that runs nothing counts to its holder, as held and unused.
    let (idle_gpu, idle_key) = f.idle_holder.unwrap();
    let idle = rows("gpu,workload").into_iter().find(|r| r["gpu"] == idle_gpu.as_str()).unwrap();
    assert_eq!((idle["workload"].as_str(), idle["used_ns"].as_u64()), (Some(idle_key.as_str()), Some(0)));
    assert_eq!(idle["held_ns"].as_u64(), Some(INTERVALS * SLOT_S * NS));
    // A MIG slice is its pod's.
    let mig = f.mig_slice.unwrap();
    let slice = rows("gpu,namespace,pod,controller")
        .into_iter()
        .find(|r| r["gpu"] == mig.as_str())
        .expect("the MIG slice is held");
    assert!(slice["pod"].as_str().is_some_and(|p| p.contains("-serving-")), "{slice}");
    assert_eq!(slice["controller"].as_str().map(|c| c.starts_with("Deployment/")), Some(true), "{slice}");
    // A process with no pod is its Unix user's.
    let user = f.user.unwrap();
    let name = user.rsplit('/').next().unwrap();
    assert!(rows("kind,user").iter().any(|r| r["kind"] == "host_process" && r["user"] == name));
    // Labels and ECS tasks come through as well.
    assert!(rows("label:team").iter().any(|r| r["label:team"].as_str().is_some_and(|t| !t.is_empty())));
}
