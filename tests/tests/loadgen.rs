//! The load generator (issue 11) against a real collector over gRPC: every batch it sends is acked and stored,
//! its report counts what it sent and measures the collector, and the ledger holds exactly the GPU time the
//! simulated fleet reported.

use std::process::Command;

use gpucost_e2e::{Collector, bin, free_port};

#[test]
fn every_batch_of_the_simulated_fleet_is_acked_stored_and_measured() {
    let dir = tempfile::tempdir().unwrap();
    let c =
        Collector::start_with(&dir.path().join("ledger.db"), free_port(), free_port(), &["--max-streams", "100"], &[]);
    let report_path = dir.path().join("report.json");
    let (nodes, intervals) = (12u64, 3u64);
    let started_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let out = Command::new(bin("gpucost-loadgen"))
        .args(["--collector", &c.grpc_url(), "--nodes", &nodes.to_string(), "--interval", "1s"])
        .args(["--intervals", &intervals.to_string(), "--warmup", "1", "--streams-per-connection", "5"])
        .args(["--collector-pid", &c.proc.0.id().to_string(), "--json"])
        .arg(&report_path)
        .output()
        .expect("run gpucost-loadgen");
    assert!(out.status.success(), "loadgen failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    let sent = nodes * intervals;
    assert_eq!(r["batches"]["sent"], sent, "{r}");
    assert_eq!(r["batches"]["stored"], sent, "{r}");
    assert_eq!((r["batches"]["failed"].as_u64(), r["batches"]["duplicate"].as_u64()), (Some(0), Some(0)), "{r}");
    assert_eq!(r["connections"], 3, "12 streams, 5 a connection");
    // The measured window: the intervals after the warm-up, 8 GPUs x 4 processes a node.
    let measured = nodes * (intervals - 1);
    assert_eq!(r["window"]["batches_acked"].as_f64(), Some(measured as f64), "{r}");
    assert_eq!(r["window"]["process_samples_acked"].as_f64(), Some((measured * 32) as f64), "{r}");
    assert_eq!(r["ack_latency_ms"]["count"], measured, "{r}");
    assert!(r["ack_latency_ms"]["p50"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["collector"]["peak_rss_mib"].as_f64().unwrap() > 1.0, "{r}");
    assert!(r["collector"]["cpu_us_per_process_sample"].as_f64().is_some(), "{r}");

    // The ledger holds each node's 8 GPUs for every interval sent, exactly (the hourly buckets around the run).
    let (from, to) = (started_s / 3_600 * 3_600 - 3_600, started_s / 3_600 * 3_600 + 2 * 3_600);
    let iso = |s: u64| gpucost_types::period::utc(s * 1_000_000_000);
    let (status, usage) = c.get(&format!("/api/v1/usage?from={}&to={}", iso(from), iso(to)));
    assert_eq!(status, 200, "{usage}");
    let observed = usage["totals"]["observed_ns"].as_u64().unwrap();
    assert_eq!(observed, sent * 8 * 1_000_000_000, "{usage}");
    // Every GPU was held by one of its node's two pods the whole time.
    assert_eq!(usage["totals"]["held_ns"].as_u64(), Some(observed), "{usage}");
}
