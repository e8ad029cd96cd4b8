//! Cost per model version and per training run, written back to a real MLflow server.

use std::time::{Duration, Instant};

use gpucost_e2e::{Collector, Mlflow, free_port, send_batches};
use gpucost_proto::v1 as pb;
use serde_json::{Value, json};

const NS: u64 = 1_000_000_000;

fn tag(tags: &Value, key: &str) -> Option<String> {
    tags.as_array()?.iter().find(|t| t["key"] == key).and_then(|t| t["value"].as_str()).map(String::from)
}

fn pod(pod: &str, labels: &[(&str, &str)], env: &[(&str, &str)]) -> pb::WorkloadIdentity {
    pb::WorkloadIdentity {
        kind: pb::WorkloadKind::KubernetesPod as i32,
        namespace: "team-recsys".into(),
        pod: pod.into(),
        container: "main".into(),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    }
}

#[test]
fn each_model_version_and_run_carries_its_gpu_cost_in_mlflow() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mlflow) = Mlflow::start(dir.path()) else { return };
    let experiment = mlflow.post("experiments/create", json!({ "name": "ranker-training" }))["experiment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let run = mlflow.post("runs/create", json!({ "experiment_id": experiment }))["run"]["info"]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    mlflow.post("registered-models/create", json!({ "name": "ranker" }));
    for _ in 0..2 {
        mlflow.post(
            "model-versions/create",
            json!({ "name": "ranker", "source": format!("runs:/{run}/model"), "run_id": run }),
        );
    }

    let c = Collector::start_with(
        &dir.path().join("ledger.db"),
        free_port(),
        free_port(),
        &["--mlflow-url", &mlflow.url(), "--mlflow-writeback-interval", "1s"],
        &[],
    );
    // One hour on a g5.12xlarge: version 1 and version 2 serving, and the training run.
    let t0 = 1_793_577_600 * NS;
    let gpus: Vec<String> = (0..4).map(|i| format!("GPU-{i}")).collect();
    let process = |gpu: usize, pid: u32, sm: f64, workload: pb::WorkloadIdentity| pb::ProcessUsage {
        pid,
        gpu_uuid: gpus[gpu].clone(),
        sm_util_percent: sm,
        used_memory_bytes: 8 << 30,
        sample_count: 3600,
        workload: Some(workload),
        ..Default::default()
    };
    let batch = pb::UsageBatch {
        agent_id: "n1".into(),
        boot_id: "b".into(),
        seq: 1,
        node: Some(pb::NodeInfo {
            cluster: "prod".into(),
            node_name: "n1".into(),
            instance_type: "g5.12xlarge".into(),
            capacity_type: pb::CapacityType::OnDemand as i32,
            region: "us-east-1".into(),
            devices: gpus
                .iter()
                .enumerate()
                .map(|(i, u)| pb::GpuDevice {
                    uuid: u.clone(),
                    model: "NVIDIA A10G".into(),
                    memory_total_bytes: 24 << 30,
                    index: i as u32,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        interval_start_unix_nanos: t0,
        interval_end_unix_nanos: t0 + 3_600 * NS,
        processes: vec![
            process(
                0,
                10,
                40.0,
                pod("ranker-v1", &[("mlflow.org/model-name", "ranker"), ("mlflow.org/model-version", "1")], &[]),
            ),
            process(
                1,
                11,
                70.0,
                pod("ranker-v2", &[("mlflow.org/model-name", "ranker"), ("mlflow.org/model-version", "2")], &[]),
            ),
            process(
                2,
                12,
                95.0,
                pod("ranker-train", &[], &[("MLFLOW_RUN_ID", &run), ("MLFLOW_EXPERIMENT_ID", &experiment)]),
            ),
        ],
        ..Default::default()
    };
    assert_eq!(send_batches(&c.grpc_url(), vec![batch]).len(), 1);

    // Two cost lines for the two versions, one for the run.
    let (_, versions) =
        c.get("/api/v1/costs?from=2026-11-02T00:00:00Z&to=2026-11-02T01:00:00Z&group_by=model,model_version");
    let line = |v: &str| {
        versions["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["model"] == "ranker" && r["model_version"] == v)
            .cloned()
            .expect("a line per version")
    };
    let (_, runs) = c.get("/api/v1/costs?from=2026-11-02T00:00:00Z&to=2026-11-02T01:00:00Z&group_by=run,experiment");
    let run_line = runs["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["run"] == run.as_str())
        .cloned()
        .expect("a line for the run");
    assert_eq!(run_line["experiment"], experiment.as_str());

    // The write-back puts the same numbers on the model versions and the run.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v2 = mlflow.get("model-versions/get", &[("name", "ranker"), ("version", "2")]);
        let r = mlflow.get("runs/get", &[("run_id", &run)]);
        if tag(&v2["model_version"]["tags"], "gpucost.cost_usd").is_some()
            && tag(&r["run"]["data"]["tags"], "gpucost.cost_usd").is_some()
        {
            break;
        }
        assert!(Instant::now() < deadline, "no gpucost tags in MLflow after 30 s");
        std::thread::sleep(Duration::from_millis(300));
    }
    for v in ["1", "2"] {
        let mv = mlflow.get("model-versions/get", &[("name", "ranker"), ("version", v)]);
        let tags = &mv["model_version"]["tags"];
        assert_eq!(tag(tags, "gpucost.cost_usd").as_deref(), line(v)["total_usd"].as_str(), "version {v}");
        assert_eq!(tag(tags, "gpucost.idle_cost_usd").as_deref(), line(v)["idle_usd"].as_str(), "version {v}");
        assert_eq!(tag(tags, "gpucost.gpu_hours").as_deref(), Some("1.0000"), "version {v}");
    }
    // Each version holds a whole GPU (same total under hybrid), but they used it differently.
    assert_ne!(line("1")["used_usd"], line("2")["used_usd"]);
    let r = mlflow.get("runs/get", &[("run_id", &run)]);
    assert_eq!(tag(&r["run"]["data"]["tags"], "gpucost.cost_usd").as_deref(), run_line["total_usd"].as_str());
}
