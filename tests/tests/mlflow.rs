//! Cost per model version, training run, experiment and registered model, written back to a real MLflow
//! server that runs its basic-auth app.

use std::time::{Duration, Instant};

use gpucost_e2e::{Collector, Mlflow, free_port, g5_batch, send_batches, usd_micros};
use gpucost_proto::v1 as pb;
use serde_json::{Value, json};

const NS: u64 = 1_000_000_000;
const PASSWORD: &str = "gpucost-admin-pass-1";

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

/// One hour on a g5.12xlarge, one process on each of the first `workloads.len()` GPUs.
fn hour_on_node(node: &str, t0: u64, workloads: Vec<(f64, pb::WorkloadIdentity)>) -> pb::UsageBatch {
    let processes = workloads.into_iter().enumerate().map(|(i, (sm, w))| (i, sm, w)).collect();
    g5_batch(node, 1, t0, t0 + 3_600 * NS, processes)
}

#[test]
fn each_model_version_run_experiment_and_model_carries_its_gpu_cost_in_mlflow() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mlflow) = Mlflow::start_with_basic_auth(dir.path(), PASSWORD) else { return };
    let experiment = mlflow.post("experiments/create", json!({ "name": "ranker-training" }))["experiment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let new_run = || {
        mlflow.post("runs/create", json!({ "experiment_id": experiment }))["run"]["info"]["run_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (run, retrain) = (new_run(), new_run());
    mlflow.post("registered-models/create", json!({ "name": "ranker" }));
    // Both versions were trained by `run`.
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
        &[("MLFLOW_TRACKING_USERNAME", Mlflow::ADMIN), ("MLFLOW_TRACKING_PASSWORD", PASSWORD)],
    );
    // Version 1 and version 2 serving, the training run (run and experiment in its environment), and a
    // retraining run that names only its run: its experiment comes from MLflow.
    let t0 = 1_793_577_600 * NS;
    let batch = hour_on_node(
        "n1",
        t0,
        vec![
            (40.0, pod("ranker-v1", &[("mlflow.org/model-name", "ranker"), ("mlflow.org/model-version", "1")], &[])),
            (70.0, pod("ranker-v2", &[("mlflow.org/model-name", "ranker"), ("mlflow.org/model-version", "2")], &[])),
            (95.0, pod("ranker-train", &[], &[("MLFLOW_RUN_ID", &run), ("MLFLOW_EXPERIMENT_ID", &experiment)])),
            (80.0, pod("ranker-retrain", &[("mlflow.org/run-id", &retrain)], &[])),
        ],
    );
    assert_eq!(send_batches(&c.grpc_url(), vec![batch]).len(), 1);

    // Two cost lines for the two versions, one per run.
    let window = "from=2026-11-02T00:00:00Z&to=2026-11-02T01:00:00Z";
    let rows = |group_by: &str| -> Vec<Value> {
        c.get(&format!("/api/v1/costs?{window}&group_by={group_by}")).1["rows"].as_array().unwrap().clone()
    };
    let versions = rows("model,model_version");
    let line = |v: &str| {
        versions.iter().find(|r| r["model"] == "ranker" && r["model_version"] == v).cloned().expect("a version line")
    };
    let runs = rows("run,experiment");
    let run_line = |id: &str| runs.iter().find(|r| r["run"] == id).cloned().expect("a line for the run");
    assert_eq!(run_line(&run)["experiment"], experiment.as_str());
    assert_eq!(run_line(&retrain)["experiment"], "", "the ledger keeps what the workload said");
    let model_line = rows("model").into_iter().find(|r| r["model"] == "ranker").expect("a model line");

    // The write-back puts the same numbers on the versions, the runs, the experiment and the model (the
    // model's last: its GPU-seconds are the pass's last tag).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v1 = mlflow.get("model-versions/get", &[("name", "ranker"), ("version", "1")]);
        let r = mlflow.get("runs/get", &[("run_id", &retrain)]);
        let m = mlflow.get("registered-models/get", &[("name", "ranker")]);
        let e = mlflow.get("experiments/get", &[("experiment_id", &experiment)]);
        if tag(&v1["model_version"]["tags"], "gpucost.training_cost_usd").is_some()
            && tag(&v1["model_version"]["tags"], "gpucost.cost_usd").is_some()
            && tag(&r["run"]["data"]["tags"], "gpucost.cost_usd").is_some()
            && tag(&m["registered_model"]["tags"], "gpucost.gpu_seconds").is_some()
            && tag(&e["experiment"]["tags"], "gpucost.gpu_seconds").is_some()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no gpucost tags in MLflow after 30 s; see {}",
            c.db.with_extension("collector.log").display()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    for v in ["1", "2"] {
        let mv = mlflow.get("model-versions/get", &[("name", "ranker"), ("version", v)]);
        let tags = &mv["model_version"]["tags"];
        assert_eq!(tag(tags, "gpucost.cost_usd").as_deref(), line(v)["total_usd"].as_str(), "version {v}");
        assert_eq!(tag(tags, "gpucost.idle_cost_usd").as_deref(), line(v)["idle_usd"].as_str(), "version {v}");
        assert_eq!(tag(tags, "gpucost.gpu_hours").as_deref(), Some("1.000000000"), "version {v}");
        assert_eq!(tag(tags, "gpucost.gpu_seconds").as_deref(), Some("3600.000000000"), "version {v}");
        // What training the version cost: the run MLflow says produced it.
        assert_eq!(
            tag(tags, "gpucost.training_cost_usd").as_deref(),
            run_line(&run)["total_usd"].as_str(),
            "version {v}"
        );
        assert_eq!(tag(tags, "gpucost.training_run_id").as_deref(), Some(run.as_str()), "version {v}");
    }
    // Each version holds a whole GPU (same total under hybrid), but they used it differently.
    assert_ne!(line("1")["used_usd"], line("2")["used_usd"]);
    // Each run's exact GPU-seconds are the usage API's held nanoseconds, and the experiment's their sum.
    let (_, usage) = c.get(&format!("/api/v1/usage?{window}&group_by=run"));
    let held_ns = |id: &str| {
        usage["rows"].as_array().unwrap().iter().find(|r| r["run"] == id).and_then(|r| r["held_ns"].as_u64()).unwrap()
    };
    let ns = |seconds: &str| seconds.replace('.', "").parse::<u64>().unwrap();
    let mut runs_ns = 0;
    for id in [&run, &retrain] {
        let r = mlflow.get("runs/get", &[("run_id", id)]);
        assert_eq!(tag(&r["run"]["data"]["tags"], "gpucost.cost_usd").as_deref(), run_line(id)["total_usd"].as_str());
        let seconds = tag(&r["run"]["data"]["tags"], "gpucost.gpu_seconds").expect("the run's GPU-seconds");
        assert_eq!(ns(&seconds), held_ns(id), "run {id}");
        runs_ns += ns(&seconds);
    }
    let m = mlflow.get("registered-models/get", &[("name", "ranker")]);
    assert_eq!(tag(&m["registered_model"]["tags"], "gpucost.cost_usd").as_deref(), model_line["total_usd"].as_str());
    assert_eq!(tag(&m["registered_model"]["tags"], "gpucost.gpu_hours").as_deref(), Some("2.000000000"));
    // The experiment holds both runs, the one MLflow placed there included.
    let e = mlflow.get("experiments/get", &[("experiment_id", &experiment)]);
    let both = usd_micros(run_line(&run)["total_usd"].as_str().unwrap())
        + usd_micros(run_line(&retrain)["total_usd"].as_str().unwrap());
    assert_eq!(tag(&e["experiment"]["tags"], "gpucost.cost_usd").map(|s| usd_micros(&s)), Some(both));
    assert_eq!(tag(&e["experiment"]["tags"], "gpucost.gpu_seconds").map(|s| ns(&s)), Some(runs_ns));

    // A collector with the wrong password says so in its log and writes nothing.
    let stranger = new_run();
    let db = dir.path().join("other.db");
    let other = Collector::start_with(
        &db,
        free_port(),
        free_port(),
        &["--mlflow-url", &mlflow.url(), "--mlflow-writeback-interval", "1s"],
        &[("MLFLOW_TRACKING_USERNAME", Mlflow::ADMIN), ("MLFLOW_TRACKING_PASSWORD", "not-the-password")],
    );
    let batch = hour_on_node("n2", t0, vec![(50.0, pod("other", &[("mlflow.org/run-id", &stranger)], &[]))]);
    assert_eq!(send_batches(&other.grpc_url(), vec![batch]).len(), 1);
    let log = db.with_extension("collector.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("HTTP 401") {
        assert!(Instant::now() < deadline, "no 401 from MLflow in {} after 30 s", log.display());
        std::thread::sleep(Duration::from_millis(300));
    }
    let r = mlflow.get("runs/get", &[("run_id", &stranger)]);
    assert_eq!(tag(&r["run"]["data"]["tags"], "gpucost.cost_usd"), None);
}
