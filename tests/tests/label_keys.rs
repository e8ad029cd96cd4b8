//! Label keys the catalog needs reach the agents: a Backstage component selected on `tier`, a key outside
//! the agent's default `--label-allow`, gets its pod's GPU time with default agent flags, because the
//! collector asks for the keys its label selectors and owner rules read (`gpucost-label-keys`). The real
//! agent identifies the pod through a fake `/proc`, the Kubernetes API stand-in and the kubelet's
//! pod-resources socket, and streams to the real collector reading a catalog folder.

use std::time::Duration;

use gpucost_agent::sim::{Fleet, FleetSpec, World};
use gpucost_e2e::standins::{Background, kubeconfig};
use gpucost_e2e::{Collector, agent_with_env, free_port};

/// 2026-11-01T00:00:00Z
const START_S: u64 = 1_793_491_200;
const SLOT_S: u64 = 15;
const INTERVALS: u64 = 20;
const NS: u64 = 1_000_000_000;

const CATALOG: &str = "apiVersion: backstage.io/v1alpha1
kind: Group
metadata:
  name: gold-team
spec:
  type: team
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: gold-api
  annotations:
    backstage.io/kubernetes-label-selector: tier=gold
spec:
  type: service
  owner: group:default/gold-team
";

/// Runs one simulated node's agent (default label flags, plus `extra`) against a collector reading
/// [`CATALOG`], with one pod labelled `tier=gold`; returns the GPU time the usage API gives that pod and
/// the component's owner, and the agent's log.
fn gold_pod_and_owner_held_ns(extra: &[&str]) -> (u64, u64, String) {
    let dir = tempfile::tempdir().unwrap();
    let (from, to) = (START_S * NS, (START_S + INTERVALS * SLOT_S) * NS);
    let root = dir.path().join("node");
    std::fs::create_dir_all(root.join("proc")).unwrap();
    // The first seed whose one node runs a pod holding a GPU in the window.
    let (seed, fleet, mut world, (namespace, pod)) = (1..200)
        .find_map(|seed| {
            let fleet = Fleet::generate(FleetSpec { seed, clusters: 1, nodes: 1 });
            let world: World =
                fleet.nodes[0].materialize(&root.join("proc"), &root.join("passwd"), from, to, SLOT_S * NS).unwrap();
            let held = world.allocations.first().map(|a| (a.namespace.clone(), a.pod.clone()))?;
            Some((seed, fleet, world, held))
        })
        .expect("some seed runs a pod on a GPU");
    let labelled = world
        .pods
        .iter_mut()
        .find(|p| p["metadata"]["namespace"] == namespace.as_str() && p["metadata"]["name"] == pod.as_str())
        .expect("the pod's object");
    labelled["metadata"]["labels"]["tier"] = "gold".into();

    let bg = Background::new();
    let api = bg.kube_and_ecs(std::slice::from_ref(&world));
    let kcfg = dir.path().join("kubeconfig");
    kubeconfig(&kcfg, api);
    let catalog = dir.path().join("catalog");
    std::fs::create_dir_all(&catalog).unwrap();
    std::fs::write(catalog.join("catalog-info.yaml"), CATALOG).unwrap();
    let c = Collector::start_with(
        &dir.path().join("ledger.db"),
        free_port(),
        free_port(),
        &["--catalog-dir", catalog.to_str().unwrap()],
        &[],
    );
    let socket = root.join("kubelet.sock");
    bg.pod_resources(&socket, &world.allocations);
    let mut args: Vec<String> = [
        "--source",
        "sim",
        "--sim-anonymous",
        "--sim-seed",
        &seed.to_string(),
        "--sim-nodes",
        "1",
        "--sim-clusters",
        "1",
        "--sim-node",
        "0",
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
        &fleet.nodes[0].info.node_name,
        "--kubernetes",
        "on",
        "--proc-root",
        root.join("proc").to_str().unwrap(),
        "--passwd",
        root.join("passwd").to_str().unwrap(),
        "--pod-resources-socket",
        socket.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let (ok, log) =
        agent_with_env(&args, &[("KUBECONFIG", &kcfg)], &root.join("agent.log")).wait(Duration::from_secs(120));
    assert!(ok, "agent failed:\n{log}");

    let window = format!("from={START_S}&to={}", START_S + INTERVALS * SLOT_S);
    let held = |group_by: &str, matches: &dyn Fn(&serde_json::Value) -> bool| {
        let (status, body) = c.get(&format!("/api/v1/usage?{window}&group_by={group_by}"));
        assert_eq!(status, 200, "{body}");
        body["rows"].as_array().unwrap().iter().filter(|r| matches(r)).filter_map(|r| r["held_ns"].as_u64()).sum()
    };
    // A pod is keyed with its cluster and namespace, or by its name alone.
    let in_ns = format!("/{namespace}/{pod}");
    let is_pod = |p: &str| p == pod || p.ends_with(&in_ns);
    let pod_ns =
        held("namespace,pod", &|r| r["namespace"] == namespace.as_str() && r["pod"].as_str().is_some_and(is_pod));
    let owner_ns = held("owner", &|r| r["owner"] == "group:default/gold-team");
    let rows = c.get(&format!("/api/v1/usage?{window}&group_by=namespace,pod,owner")).1;
    (pod_ns, owner_ns, format!("{namespace}/{pod}: {rows}\nagent log:\n{log}"))
}

#[test]
fn a_component_selected_on_a_key_outside_the_default_allow_list_gets_its_pods_gpu_time() {
    let (pod, owner, log) = gold_pod_and_owner_held_ns(&[]);
    assert!(pod > 0, "the pod held a GPU\n{log}");
    assert_eq!(owner, pod, "every second of the tier=gold pod is the component owner's\n{log}");
}

#[test]
fn an_agent_told_to_ignore_the_collectors_keys_keeps_its_flags() {
    let (pod, owner, log) = gold_pod_and_owner_held_ns(&["--collector-label-keys", "false"]);
    assert!(pod > 0, "the pod held a GPU\n{log}");
    assert_eq!(owner, 0, "tier is not in the default --label-allow\n{log}");
}
