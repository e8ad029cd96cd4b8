//! The metering pipeline end to end: real agent and collector binaries, real gRPC, a real SQLite file.

use std::time::Duration;

use gpucost_agent::sim::{Fleet, FleetSpec, Truth};
use gpucost_e2e::{Collector, agent, assert_matches_truth};

const SEED: u64 = 7;
const NODES: u32 = 4;
const CLUSTERS: u32 = 2;
/// 2026-11-01T00:00:00Z: the simulated agents replay from here on a virtual clock.
const START_S: u64 = 1_793_491_200;
const SLOT_S: u64 = 15;
const NS: u64 = 1_000_000_000;

fn spec() -> FleetSpec {
    FleetSpec { seed: SEED, clusters: CLUSTERS, nodes: NODES }
}

fn agent_args(c: &Collector, node: u32, intervals: u64, pace_ms: u64) -> Vec<String> {
    [
        "--source",
        "sim",
        "--collector",
        &c.grpc_url(),
        "--sim-seed",
        &SEED.to_string(),
        "--sim-nodes",
        &NODES.to_string(),
        "--sim-clusters",
        &CLUSTERS.to_string(),
        "--sim-node",
        &node.to_string(),
        "--sim-start",
        "2026-11-01T00:00:00Z",
        "--sim-pace",
        &format!("{pace_ms}ms"),
        "--intervals",
        &intervals.to_string(),
        "--report-interval",
        "15s",
        "--sample-interval",
        "1s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The simulator's ground truth for every node over `intervals` slots from the start.
fn truth(intervals: u64) -> Truth {
    let mut all = Truth::default();
    for node in Fleet::generate(spec()).nodes {
        let t = node.truth(START_S * NS, (START_S + intervals * SLOT_S) * NS, SLOT_S * NS);
        all.gpus.extend(t.gpus);
        all.workloads.extend(t.workloads);
    }
    all
}

fn ns(v: &serde_json::Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or_else(|| panic!("{field} missing in {v}"))
}

fn stored(c: &Collector, intervals: u64) -> Truth {
    gpucost_e2e::stored(c, START_S, START_S + intervals * SLOT_S)
}

#[test]
fn gpu_seconds_stored_equal_the_simulators_ground_truth_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(&dir.path().join("ledger.db"));
    let intervals = 240; // one hour
    let agents: Vec<_> = (0..NODES)
        .map(|n| agent(&agent_args(&c, n, intervals, 0), &dir.path().join(format!("agent{n}.log"))))
        .collect();
    for a in agents {
        let (ok, log) = a.wait(Duration::from_secs(120));
        assert!(ok, "agent failed:\n{log}");
    }
    let truth = truth(intervals);
    assert_matches_truth(&stored(&c, intervals), &truth);

    // Totals agree with the per-GPU truth as well, and idle = observed - used.
    let (_, all) = c.get(&format!("/api/v1/usage?from={START_S}&to={}", START_S + intervals * SLOT_S));
    let observed: u64 = truth.gpus.values().map(|g| g.observed_ns).sum();
    let used: u64 = truth.gpus.values().map(|g| g.used_ns).sum();
    assert_eq!(ns(&all["totals"], "observed_ns"), observed);
    assert_eq!(ns(&all["totals"], "used_ns"), used);
    let idle = all["totals"]["idle_gpu_seconds"].as_f64().unwrap();
    assert!((idle - (observed - used) as f64 / 1e9).abs() < 1e-3);
}

#[test]
fn killing_and_restarting_the_collector_mid_stream_loses_nothing_and_counts_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let c = Collector::start(&db);
    let (grpc, http) = (c.grpc_port, c.http_port);
    let intervals = 400;
    let agents: Vec<_> = (0..NODES)
        .map(|n| agent(&agent_args(&c, n, intervals, 15), &dir.path().join(format!("agent{n}.log"))))
        .collect();
    let mut c = c;
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(1500));
        let db = c.kill();
        std::thread::sleep(Duration::from_millis(700));
        c = Collector::start_on(&db, grpc, http);
    }
    let mut reconnects = 0;
    for a in agents {
        let (ok, log) = a.wait(Duration::from_secs(180));
        assert!(ok, "agent failed:\n{log}");
        reconnects += log.matches("cannot reach the collector").count() + log.matches("stream broke").count();
    }
    assert!(reconnects > 0, "the agents should have noticed the collector going away");
    assert_matches_truth(&stored(&c, intervals), &truth(intervals));
}

#[test]
fn an_empty_ledger_answers_zero_and_bad_parameters_get_400_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(&dir.path().join("ledger.db"));
    let (status, body) = c.get("/api/v1/usage?group_by=node");
    assert_eq!(status, 200);
    assert_eq!(body["rows"].as_array().map(Vec::len), Some(0));
    assert_eq!(ns(&body["totals"], "observed_ns"), 0);
    for (query, says) in [
        ("group_by=flavour", "unknown dimension \"flavour\""),
        ("from=last-tuesday", "from=\"last-tuesday\""),
        ("from=1700003600&to=1700000000", "must be before"),
        ("limit=5", "unknown parameter \"limit\""),
    ] {
        let (status, body) = c.get(&format!("/api/v1/usage?{query}"));
        assert_eq!(status, 400, "{query}");
        assert!(body["error"].as_str().unwrap().contains(says), "{query}: {body}");
    }
}
