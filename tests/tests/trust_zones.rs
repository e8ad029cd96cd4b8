//! Each cluster's agents are a trust zone of their own (issue 19, docs/security.md "Trust zones"): with one valid
//! agent token of cluster alpha, nothing sent can make a GPU-second of cluster beta vanish or move. Two agent
//! tokens of two clusters against a real collector: alpha reports beta's GPU UUIDs under beta's agent and boot
//! ids, and beta's pod and ECS task with its own labels, before beta's agent sends its real batches.

use gpucost_collector::auth::hash_token;
use gpucost_e2e::{Collector, free_port, g5_batch, try_send_batches};
use gpucost_proto::v1 as pb;

const NS: u64 = 1_000_000_000;
const ALPHA: &str = "agent-token-of-cluster-alpha";
const BETA: &str = "agent-token-of-cluster-beta-";
const READER: &str = "read-token-finance-000001";

fn get(c: &Collector, path: &str) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut resp = agent.get(&c.http(path)).header("Authorization", format!("Bearer {READER}")).call().unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.body_mut().read_to_string().unwrap()
}

fn json(c: &Collector, path: &str) -> serde_json::Value {
    serde_json::from_str(&get(c, path)).unwrap()
}

/// Beta's workloads: a pod and an ECS task, each labelled `team=beta-team` (or what `team` says).
fn workloads(team: &str) -> [pb::WorkloadIdentity; 2] {
    let labels: std::collections::HashMap<String, String> = [("team".to_string(), team.to_string())].into();
    [
        pb::WorkloadIdentity {
            kind: pb::WorkloadKind::KubernetesPod as i32,
            namespace: "ml".into(),
            pod: "trainer-0".into(),
            container: "main".into(),
            labels: labels.clone(),
            ..Default::default()
        },
        pb::WorkloadIdentity {
            kind: pb::WorkloadKind::EcsTask as i32,
            ecs_task_arn: "arn:aws:ecs:us-east-1:123456789012:task/beta/0f1e2d3c4b5a".into(),
            ecs_task_family: "inference".into(),
            ecs_cluster: "beta".into(),
            labels,
            ..Default::default()
        },
    ]
}

/// A batch of beta's node `b1` (four GPUs `b1-GPU-0..3`, agent `b1`, boot `b`) as `cluster` sends it.
fn batch(cluster: &str, node: &str, seq: u64, start: u64, end: u64, team: &str) -> pb::UsageBatch {
    let [pod, task] = workloads(team);
    let mut b = g5_batch("b1", seq, start, end, vec![(0, 60.0, pod), (1, 40.0, task)]);
    let n = b.node.as_mut().unwrap();
    n.cluster = cluster.into();
    n.node_name = node.into();
    b
}

#[test]
fn an_agent_token_of_one_cluster_cannot_make_another_clusters_gpu_seconds_vanish_or_move() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth.toml");
    std::fs::write(
        &auth,
        format!(
            "[[agent]]\ncluster = \"alpha\"\nsha256 = \"{}\"\n\n[[agent]]\ncluster = \"beta\"\nsha256 = \"{}\"\n\n\
             [[api]]\nname = \"finance\"\nscope = \"read\"\nsha256 = \"{}\"\n",
            hash_token(ALPHA),
            hash_token(BETA),
            hash_token(READER)
        ),
    )
    .unwrap();
    let c = Collector::start_with(
        &dir.path().join("l.db"),
        free_port(),
        free_port(),
        &["--auth", auth.to_str().unwrap(), "--grpc-plaintext"],
        &[],
    );
    let now = gpucost_types::clock::now_ns() / NS * NS;
    let (t0, t1, t2) = (now - 120 * NS, now - 60 * NS, now);

    // Alpha first: beta's GPUs, agent and boot ids, sequence numbers and workloads, relabelled, on a node of alpha.
    let forged = vec![batch("alpha", "a1", 1, t0, t1, "alpha-evil"), batch("alpha", "a1", 2, t1, t2, "alpha-evil")];
    let acks = try_send_batches(&c.grpc_url(), Some(ALPHA), forged).expect("alpha's batches bill alpha");
    assert!(acks.iter().all(|a| a.status == pb::AckStatus::Stored as i32), "{acks:?}");

    // Beta's real batches: stored, neither refused as overlaps nor acked as duplicates.
    let real = vec![batch("beta", "b1", 1, t0, t1, "beta-team"), batch("beta", "b1", 2, t1, t2, "beta-team")];
    let acks = try_send_batches(&c.grpc_url(), Some(BETA), real.clone()).expect("beta's batches are taken");
    assert_eq!(
        acks.iter().map(|a| (a.seq, a.status)).collect::<Vec<_>>(),
        [(1, pb::AckStatus::Stored as i32), (2, pb::AckStatus::Stored as i32)]
    );
    // A resend of beta's own is still a duplicate of beta's own.
    let acks = try_send_batches(&c.grpc_url(), Some(BETA), real).unwrap();
    assert!(acks.iter().all(|a| a.status == pb::AckStatus::Duplicate as i32), "{acks:?}");

    // Every beta GPU-second is beta's, on beta's node, under beta's labels; alpha's are alpha's own.
    let window = format!("from={}&to={}", t0 / NS, t2 / NS);
    let usage = json(&c, &format!("/api/v1/usage?{window}&group_by=cluster,node,gpu"));
    let rows = usage["rows"].as_array().unwrap();
    let held = |cluster: &str| -> Vec<(String, String, u64)> {
        rows.iter()
            .filter(|r| r["cluster"] == cluster)
            .map(|r| {
                (r["node"].as_str().unwrap().into(), r["gpu"].as_str().unwrap().into(), r["held_ns"].as_u64().unwrap())
            })
            .collect()
    };
    let on = |node: &str| -> Vec<(String, String, u64)> {
        (0..4).map(|i| (node.to_string(), format!("b1-GPU-{i}"), if i < 2 { 120 * NS } else { 0 })).collect()
    };
    assert_eq!(held("beta"), on("b1"), "{usage}");
    assert_eq!(held("alpha"), on("a1"), "{usage}");
    let labels = json(&c, &format!("/api/v1/usage?{window}&group_by=cluster,workload,label:team"));
    let teams: Vec<(String, String, f64)> = labels["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["cluster"].as_str().unwrap().into(),
                r["label:team"].as_str().unwrap().into(),
                r["held_gpu_seconds"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        teams.iter().filter(|(c, ..)| c == "beta").map(|(_, t, h)| (t.as_str(), *h)).collect::<Vec<_>>(),
        [("beta-team", 120.0), ("beta-team", 120.0)],
        "beta's pod and ECS task keep their labels and time: {labels}"
    );
    let costs = json(&c, &format!("/api/v1/costs?{window}&group_by=cluster"));
    let held: Vec<(String, f64)> = costs["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["cluster"].as_str().unwrap().into(), r["held_gpu_seconds"].as_f64().unwrap()))
        .collect();
    assert_eq!(held, [("alpha".to_string(), 240.0), ("beta".to_string(), 240.0)], "{costs}");

    // Both kept, and shown to an operator: the API, the metric, a WARN line.
    let conflicts = json(&c, "/api/v1/conflicts");
    let listed = conflicts["conflicts"].as_array().unwrap();
    assert_eq!(listed.len(), 4, "one per GPU: {conflicts}");
    assert!(
        listed.iter().all(|x| x["cluster"] == "beta" && x["other_cluster"] == "alpha" && x["batches"] == 2),
        "{conflicts}"
    );
    let metrics = get(&c, "/metrics");
    assert!(
        metrics.contains("gpucost_ingest_conflicts_total{cluster=\"beta\",other_cluster=\"alpha\"} 8"),
        "{metrics}"
    );
    let log = std::fs::read_to_string(&c.log).unwrap();
    assert!(log.contains("two clusters report the same GPU over the same time") && log.contains("\"WARN\""), "{log}");
}
