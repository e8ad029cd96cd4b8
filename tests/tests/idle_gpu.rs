//! Idle-GPU alerts end to end (issue 24 item 3): a notebook holding a GPU with no SM use for longer than its
//! rule's `after` raises exactly one alert in a real Alertmanager, kept once across a collector restart, and
//! resolves there when the notebook uses the GPU again; `GET /api/v1/alerts` keeps it (kind `idle-gpu`).

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

fn notebook() -> gpucost_proto::v1::WorkloadIdentity {
    gpucost_proto::v1::WorkloadIdentity {
        kind: gpucost_proto::v1::WorkloadKind::KubernetesPod as i32,
        namespace: "notebooks".into(),
        pod: "nb-alice-0".into(),
        container: "main".into(),
        ..Default::default()
    }
}

fn idle_alerts(c: &Collector) -> Vec<Value> {
    c.get("/api/v1/alerts").1["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "idle-gpu")
        .cloned()
        .collect()
}

#[test]
fn an_idle_notebook_alerts_once_in_alertmanager_and_resolves_when_it_uses_the_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let Some(am) = Alertmanager::start(dir.path()) else { return };
    let file = dir.path().join("budgets.toml");
    std::fs::write(
        &file,
        "[[idle_gpu]]\nname = \"notebooks-idle\"\nscope = { namespace = \"notebooks\" }\nafter = \"2h\"\n",
    )
    .unwrap();
    let args = ["--budgets", file.to_str().unwrap(), "--budget-eval-interval", "1s", "--alertmanager-url", &am.url()];
    let db = dir.path().join("ledger.db");
    let (grpc, http) = (free_port(), free_port());
    let c = Collector::start_with(&db, grpc, http, &args, &[]);

    // The notebook holds GPU 0 of n1 with no SM use from three whole hours ago until now, one batch per hour;
    // a training pod on GPU 1 of the same node uses its GPU (never idle).
    let now = gpucost_types::clock::now_ns() / NS * NS;
    let start = (now / HOUR - 3) * HOUR;
    let mut bounds: Vec<u64> = (0..=3).map(|i| start + i * HOUR).collect();
    bounds.push(now);
    let trainer = gpucost_proto::v1::WorkloadIdentity { pod: "trainer-0".into(), namespace: "ml".into(), ..notebook() };
    let batches: Vec<_> = bounds
        .windows(2)
        .enumerate()
        .map(|(i, w)| g5_batch("n1", i as u64 + 1, w[0], w[1], vec![(0, 0.0, notebook()), (1, 80.0, trainer.clone())]))
        .collect();
    assert_eq!(send_batches(&c.grpc_url(), batches).len(), 4);

    wait_for("the idle-GPU alert in Alertmanager", Duration::from_secs(60), || !am.alerts().is_empty());
    std::thread::sleep(Duration::from_secs(3));
    let alerts = am.alerts();
    assert_eq!(alerts.len(), 1, "one alert, not one per evaluation: {alerts:?}");
    let labels = &alerts[0]["labels"];
    assert_eq!(labels["alertname"], "GpuCostIdleGpu");
    assert_eq!(labels["gpu"], "n1-GPU-0");
    assert_eq!(labels["node"], "n1");
    assert_eq!(labels["namespace"], "notebooks");
    assert!(labels["workload"].as_str().unwrap().contains("nb-alice-0"), "{labels}");
    assert_eq!(alerts[0]["status"]["state"], "active");
    let history = idle_alerts(&c);
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["state"], "firing");
    assert!(history[0]["summary"].as_str().unwrap().contains("with no use for"), "{}", history[0]);

    // A restart evaluates again and sends nothing twice.
    c.kill();
    let c = Collector::start_with(&db, grpc, http, &args, &[]);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(am.alerts().len(), 1);
    let history = idle_alerts(&c);
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["notifications"].as_array().unwrap().len(), 1, "{}", history[0]);

    // The notebook uses the GPU: the alert resolves, in Alertmanager and in the history.
    let later = (gpucost_types::clock::now_ns() / NS * NS).max(now + 2 * NS);
    let used = g5_batch("n1", 5, now, later, vec![(0, 60.0, notebook()), (1, 80.0, trainer)]);
    assert_eq!(send_batches(&c.grpc_url(), vec![used]).len(), 1);
    wait_for("the resolution", Duration::from_secs(60), || am.alerts().is_empty());
    let history = idle_alerts(&c);
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["state"], "resolved");
    assert!(history[0]["resolution"].as_str().unwrap().contains("used GPU n1-GPU-0 again"), "{}", history[0]);
}
