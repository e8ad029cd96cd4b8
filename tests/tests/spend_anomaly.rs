//! Spend-anomaly alerts end to end (issue 24 item 3): three days of a namespace's hourly spend with a daily
//! rhythm and some noise raise nothing; a spike in the last complete hour (a new trainer on eight GPUs) raises
//! exactly one anomaly alert in a real Alertmanager naming that workload, also in `GET /api/v1/alerts`.

use std::time::{Duration, Instant};

use gpucost_e2e::{Alertmanager, Collector, free_port, g5_batch, send_batches};
use serde_json::Value;

const NS: u64 = 1_000_000_000;
const HOUR: u64 = 3_600 * NS;

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn pod(name: &str) -> gpucost_proto::v1::WorkloadIdentity {
    gpucost_proto::v1::WorkloadIdentity {
        kind: gpucost_proto::v1::WorkloadKind::KubernetesPod as i32,
        namespace: "vision".into(),
        pod: name.into(),
        container: "main".into(),
        ..Default::default()
    }
}

fn anomalies(c: &Collector) -> Vec<Value> {
    c.get("/api/v1/alerts").1["alerts"].as_array().unwrap().iter().filter(|a| a["kind"] == "anomaly").cloned().collect()
}

#[test]
fn a_daily_rhythm_raises_nothing_and_a_spike_raises_one_anomaly_naming_its_workload() {
    let dir = tempfile::tempdir().unwrap();
    let Some(am) = Alertmanager::start(dir.path()) else { return };
    let file = dir.path().join("budgets.toml");
    std::fs::write(
        &file,
        "[[anomaly]]\nname = \"namespace-spend\"\nby = \"namespace\"\nevery = \"hour\"\nmin_usd = 1\n",
    )
    .unwrap();
    let args = ["--budgets", file.to_str().unwrap(), "--budget-eval-interval", "1s", "--alertmanager-url", &am.url()];
    let c = Collector::start_with(&dir.path().join("ledger.db"), free_port(), free_port(), &args, &[]);

    // 72 whole hours before the current one on n1: three GPUs held from 08 to 20 h UTC, one at night, each
    // hour for 50 to 59 minutes (a deterministic scatter), the last of them the latest complete hour.
    let end = gpucost_types::clock::now_ns() / HOUR * HOUR;
    let mut s: u64 = 5;
    let batches: Vec<_> = (0..72u64)
        .map(|i| {
            let start = end - (72 - i) * HOUR;
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let minutes = 50 + (s >> 33) % 10;
            let busy = (8..20).contains(&(start / HOUR % 24));
            let procs = (0..if busy { 3 } else { 1 }).map(|g| (g, 70.0, pod(&format!("detector-{g}")))).collect();
            g5_batch("n1", i + 1, start, start + minutes * 60 * NS, procs)
        })
        .collect();
    assert_eq!(send_batches(&c.grpc_url(), batches).len(), 72);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(anomalies(&c), Vec::<Value>::new(), "a daily rhythm is expected");
    assert!(am.alerts().is_empty());

    // The spike: a trainer on the eight GPUs of n2 and n3 through the latest complete hour.
    let spike: Vec<_> = ["n2", "n3"]
        .iter()
        .map(|n| g5_batch(n, 1, end - HOUR, end, (0..4).map(|g| (g, 95.0, pod("spiky-trainer-0"))).collect()))
        .collect();
    assert_eq!(send_batches(&c.grpc_url(), spike).len(), 2);
    wait_for("the anomaly alert in Alertmanager", Duration::from_secs(60), || !am.alerts().is_empty());
    std::thread::sleep(Duration::from_secs(3));
    let alerts = am.alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let labels = &alerts[0]["labels"];
    assert_eq!(labels["alertname"], "GpuCostSpendAnomaly");
    assert_eq!(labels["namespace"], "vision");
    assert_eq!(labels["direction"], "above");
    let first = labels["workloads"].as_str().unwrap().split(',').next().unwrap().to_string();
    assert!(first.contains("spiky-trainer-0"), "the workload that changed most first: {labels}");
    let history = anomalies(&c);
    assert_eq!(history.len(), 1, "{history:?}");
    assert!(history[0]["summary"].as_str().unwrap().contains("spiky-trainer-0"), "{}", history[0]);
    assert_eq!(history[0]["state"], "firing");
}
