//! The agent's RBAC proven from what it really calls: the real agent runs against the Kubernetes API
//! stand-in, which records every request (verb, group, resource, namespace, field selector), and the
//! agent chart rendered by real helm must grant exactly those, no more; an agent whose role lacks one says
//! which verb on which resource, rather than running on with an empty pod cache.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use gpucost_agent::sim::{Fleet, FleetSpec, World};
use gpucost_e2e::standins::{ApiLog, Background, kubeconfig};
use gpucost_e2e::{Agent, Collector, agent_cluster_role_grants, agent_with_env, installed_peer};

/// 2026-11-01T00:00:00Z
const START_S: u64 = 1_793_491_200;
const SLOT_S: u64 = 15;
const NS: u64 = 1_000_000_000;

/// One simulated Kubernetes node whose processes the agent must identify through the API (the stand-in
/// recording, and refusing `forbid`), streaming `intervals` intervals to `collector`.
fn agent_on_a_kubernetes_node(
    dir: &Path,
    collector: &Collector,
    forbid: &[(&str, &str)],
    intervals: u64,
) -> (Agent, ApiLog, String) {
    let node = Fleet::generate(FleetSpec { seed: 3, clusters: 1, nodes: 1 }).nodes.remove(0);
    std::fs::create_dir_all(dir.join("proc")).unwrap();
    let (from, to) = (START_S * NS, (START_S + intervals * SLOT_S) * NS);
    let world: World = node.materialize(&dir.join("proc"), &dir.join("passwd"), from, to, SLOT_S * NS).unwrap();
    let bg = Box::leak(Box::new(Background::new()));
    let (api, log) = bg.kube_api(&[world], forbid);
    let kcfg = dir.join("kubeconfig");
    kubeconfig(&kcfg, api);
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let args: Vec<String> = [
        "--source",
        "sim",
        "--sim-anonymous",
        "--sim-seed",
        "3",
        "--sim-nodes",
        "1",
        "--sim-clusters",
        "1",
        "--sim-start",
        "2026-11-01T00:00:00Z",
        "--intervals",
        &intervals.to_string(),
        "--collector",
        &collector.grpc_url(),
        "--node-name",
        &node.info.node_name,
        "--kubernetes",
        "on",
        "--proc-root",
        &path(&dir.join("proc")),
        "--passwd",
        &path(&dir.join("passwd")),
        "--pod-resources-socket",
        &path(&dir.join("no-kubelet.sock")),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let agent = agent_with_env(&args, &[("KUBECONFIG", &kcfg)], &dir.join("agent.log"));
    (agent, log, node.info.node_name.clone())
}

#[test]
fn the_agent_charts_cluster_role_grants_exactly_the_calls_the_agent_makes() {
    let Some(helm) = installed_peer("helm 3", "GPUCOST_HELM", "helm/helm", "") else { return };
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(&dir.path().join("ledger.db"));
    let (agent, log, node) = agent_on_a_kubernetes_node(dir.path(), &c, &[], 3);
    let (ok, agent_log) = agent.wait(Duration::from_secs(120));
    assert!(ok, "agent failed:\n{agent_log}");

    let requests = log.lock().unwrap().clone();
    let called: BTreeSet<(String, String, String)> =
        requests.iter().map(|r| (r.group.clone(), r.resource.clone(), r.verb.clone())).collect();
    // Reading a ResourceClaim is the one call this node has no cause for (no DRA device left unnamed by its
    // slice); tests/tests/dra.rs makes it and checks the whole role against those calls.
    let mut granted = agent_cluster_role_grants(&helm);
    let claims = ("resource.k8s.io".to_string(), "resourceclaims".to_string(), "get".to_string());
    assert!(granted.remove(&claims), "the ClusterRole lets the agent read ResourceClaims");
    assert_eq!(granted, called, "the ClusterRole against the requests the agent made: {requests:#?}");
    // Cluster-wide (the role is a ClusterRole), and pods only this node's.
    assert!(requests.iter().all(|r| r.namespace.is_empty()), "{requests:#?}");
    let pods: Vec<_> = requests.iter().filter(|r| r.resource == "pods").collect();
    assert!(!pods.is_empty() && pods.iter().all(|r| r.field_selector == format!("spec.nodeName={node}")), "{pods:#?}");
    // ResourceSlices only this node's, of NVIDIA's driver.
    let slices: Vec<_> = requests.iter().filter(|r| r.resource == "resourceslices").collect();
    assert!(
        !slices.is_empty()
            && slices.iter().all(|r| r.field_selector == format!("spec.nodeName={node},spec.driver=gpu.nvidia.com")),
        "{slices:#?}"
    );
}

/// Runs an agent whose role lacks `verb` on `resource`, and returns its log line saying so.
fn refused_line(verb: &str, resource: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(&dir.path().join("ledger.db"));
    let (mut agent, _log, _) = agent_on_a_kubernetes_node(dir.path(), &c, &[(verb, resource)], 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    let said = loop {
        let text = std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default();
        let line = text
            .lines()
            .find(|l| l.contains("\"level\":\"ERROR\"") && l.contains("does not allow"))
            .map(str::to_string);
        if line.is_some() || Instant::now() > deadline || agent.proc.0.try_wait().ok().flatten().is_some() {
            break line.unwrap_or(text);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    serde_json::from_str(&said).unwrap_or_else(|_| panic!("no error naming the missing grant:\n{said}"))
}

#[test]
fn an_agent_whose_role_may_not_list_pods_says_which_verb_on_which_resource_it_lacks() {
    let line = refused_line("list", "pods");
    assert_eq!(line["fields"]["verb"], "list", "{line}");
    assert_eq!(line["fields"]["resource"], "pods", "{line}");
}

#[test]
fn an_agent_whose_role_may_not_watch_resourceslices_says_so_naming_the_api_group() {
    let line = refused_line("watch", "resourceslices");
    assert_eq!(line["fields"]["verb"], "watch", "{line}");
    assert_eq!(line["fields"]["resource"], "resourceslices", "{line}");
    assert_eq!(line["fields"]["api_group"], "resource.k8s.io", "{line}");
    assert!(line["fields"]["message"].as_str().unwrap_or_default().contains("DRA"), "{line}");
}
