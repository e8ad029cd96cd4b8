//! What Prometheus and the live view see: cost counters by owner labels that add up to the fleet's cost,
//! per-GPU gauges, pipeline health, bounded labels, and the fleet now over server-sent events.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;

use gpucost_e2e::{Collector, free_port, g5_batch, send_batches};
use gpucost_proto::v1 as pb;

const NS: u64 = 1_000_000_000;

fn pod(name: &str, component: &str) -> pb::WorkloadIdentity {
    pb::WorkloadIdentity {
        kind: pb::WorkloadKind::KubernetesPod as i32,
        namespace: "vision".into(),
        pod: name.into(),
        container: "main".into(),
        labels: [
            ("backstage.io/kubernetes-id".to_string(), component.to_string()),
            ("mlflow.org/model-name".to_string(), component.to_string()),
        ]
        .into(),
        ..Default::default()
    }
}

/// The sum of every sample of `family` in Prometheus text.
fn sum(text: &str, family: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) || l.starts_with(&format!("{family} ")))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[test]
fn metrics_add_up_to_the_fleets_cost_and_the_live_view_streams_the_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/catalog");
    let c = Collector::start_with(
        &dir.path().join("l.db"),
        free_port(),
        free_port(),
        &["--catalog-dir", catalog.to_str().unwrap()],
        &[],
    );
    let now = gpucost_types::clock::now_ns() / NS * NS;
    let batch = g5_batch(
        "n1",
        1,
        now - 600 * NS,
        now,
        vec![(0, 80.0, pod("det-0", "detector")), (1, 20.0, pod("seg-0", "segmenter"))],
    );
    assert_eq!(send_batches(&c.grpc_url(), vec![batch]).len(), 1);

    let (status, text) = c.get_text("/metrics");
    assert_eq!(status, 200);
    // Money: what workloads were charged plus the GPUs nobody held is what the fleet cost.
    let (_, costs) = c.get(&format!("/api/v1/costs?from={}&to={}", (now - 3600 * NS) / NS, (now + 3600 * NS) / NS));
    let fleet = costs["fleet"]["micros"].as_u64().unwrap() as f64 / 1e6;
    let charged = sum(&text, "gpucost_cost_usd_total") + sum(&text, "gpucost_unallocated_cost_usd_total");
    assert!((charged - fleet).abs() < 1e-6, "metrics {charged} vs costs API {fleet}\n{text}");
    assert!(
        text.contains(r#"gpucost_cost_usd_total{cluster="prod",model="detector",namespace="vision",owner="group:default/vision",team="vision"}"#),
        "{text}"
    );
    assert!((sum(&text, "gpucost_gpu_held_seconds_total") - 1200.0).abs() < 1e-9, "two GPUs held ten minutes");
    assert!((sum(&text, "gpucost_gpu_used_seconds_total") - 600.0).abs() < 1e-6, "80 % + 20 % of ten minutes");
    assert!((sum(&text, "gpucost_gpu_idle_seconds_total") - 600.0).abs() < 1e-6, "held but not used");
    assert!(text.contains(r#"gpucost_gpu_memory_total_bytes{cluster="prod",gpu="n1-GPU-0",gpu_model="NVIDIA A10G",node="n1"} 25769803776"#), "{text}");
    assert!(text.contains(r#"gpucost_batches_total{outcome="stored"} 1"#));
    assert!(text.contains("gpucost_ingest_duration_seconds_count 1"));
    assert!(text.contains(r#"gpucost_agent_last_seen_timestamp_seconds{agent="n1"}"#));
    assert!(text.contains("gpucost_agents_connected 0"), "the stream has ended");
    assert!(!text.contains("pid="), "no process ids as labels");

    // The fleet now, once and as a stream.
    let (_, fleet_now) = c.get("/api/v1/fleet");
    let gpus = fleet_now["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), 4);
    assert_eq!(fleet_now["totals"]["busy"], 2);
    let g0 = gpus.iter().find(|g| g["gpu"] == "n1-GPU-0").unwrap();
    assert_eq!(g0["holders"][0]["team"], "vision");
    assert_eq!(g0["holders"][0]["model"], "detector");
    assert!((g0["holders"][0]["sm_pct"].as_f64().unwrap() - 80.0).abs() < 0.1);

    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(10))).build().into();
    let resp = agent.get(&c.http("/api/v1/live")).call().expect("GET /api/v1/live");
    assert_eq!(resp.headers().get("content-type").unwrap(), "text/event-stream");
    let mut lines = BufReader::new(resp.into_body().into_reader()).lines();
    let (mut event, mut data) = (String::new(), String::new());
    for _ in 0..20 {
        let line = lines.next().expect("an event within the timeout").unwrap();
        if let Some(e) = line.strip_prefix("event: ") {
            event = e.to_string();
        }
        if let Some(d) = line.strip_prefix("data: ") {
            data = d.to_string();
            break;
        }
    }
    assert_eq!(event, "fleet");
    let v: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(v["gpus"].as_array().unwrap().len(), 4);
}

#[test]
fn label_sets_past_the_bound_are_counted_as_other() {
    let dir = tempfile::tempdir().unwrap();
    let c =
        Collector::start_with(&dir.path().join("l.db"), free_port(), free_port(), &["--metrics-max-series", "2"], &[]);
    let now = gpucost_types::clock::now_ns() / NS * NS;
    let p = |name: &str| {
        let mut w = pod(name, "x");
        w.namespace = name.into();
        w
    };
    let batch = g5_batch(
        "n1",
        1,
        now - 600 * NS,
        now,
        vec![(0, 50.0, p("a")), (1, 50.0, p("b")), (2, 50.0, p("c")), (3, 50.0, p("d"))],
    );
    assert_eq!(send_batches(&c.grpc_url(), vec![batch]).len(), 1);
    let (_, text) = c.get_text("/metrics");
    let series = text.lines().filter(|l| l.starts_with("gpucost_cost_usd_total{")).count();
    assert_eq!(series, 3, "{text}");
    assert!(text.contains(r#"namespace="other""#), "{text}");
}
