//! The agent binary's one-shot mode and its failure without a GPU driver.

use std::process::Command;

use gpucost_e2e::bin;

#[test]
fn once_with_the_simulator_prints_one_valid_batch_as_json() {
    let out = Command::new(bin("gpucost-agent"))
        .args(["--source", "sim", "--once", "--output", "json", "--report-interval", "2s", "--sim-node", "5"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    let interval = &v["interval"];
    let span =
        interval["interval_end_unix_nanos"].as_u64().unwrap() - interval["interval_start_unix_nanos"].as_u64().unwrap();
    assert!((2_000_000_000..2_500_000_000).contains(&span), "{span}");
    assert_eq!(interval["sample_count"].as_u64(), Some(2));
    let devices = v["node"]["devices"].as_array().unwrap();
    assert!(!devices.is_empty());
    let gpus = interval["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), devices.len());
    for p in interval["processes"].as_array().unwrap() {
        assert!(p["pid"].as_u64().is_some());
        assert!(devices.iter().any(|d| d["uuid"] == p["gpu_uuid"]));
        let sm = p["sm_util"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&sm));
        assert!(p["used_memory_bytes"].as_u64().unwrap() > 0);
        assert!(p["workload"]["kind"].is_string());
    }
}

#[test]
fn nvml_without_a_driver_fails_with_a_message_naming_the_library() {
    let out = Command::new(bin("gpucost-agent"))
        .args(["--source", "nvml", "--once", "--output", "json"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    if std::path::Path::new("/dev/nvidiactl").exists() {
        // A GPU machine: the driver is there, so the agent reads it instead.
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        return;
    }
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("libnvidia-ml.so.1"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_flags_are_refused_with_a_message_that_names_them() {
    let out = Command::new(bin("gpucost-agent"))
        .args(["--source", "sim", "--report-interval", "1500ms", "--sample-interval", "1s"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--report-interval"));
    let out = Command::new(bin("gpucost-agent"))
        .args(["--source", "sim", "--sim-start", "2026-11-01T00:00:07Z"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a multiple of --report-interval"));
}

#[test]
fn the_agent_serves_its_nodes_gpu_and_pod_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let c = gpucost_e2e::Collector::start(&dir.path().join("l.db"));
    let port = gpucost_e2e::free_port();
    let args: Vec<String> = [
        "--source",
        "sim",
        "--collector",
        &c.grpc_url(),
        "--sim-start",
        "2026-11-01T00:00:00Z",
        "--sim-pace",
        "200ms",
        "--report-interval",
        "15s",
        "--intervals",
        "200",
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let _agent = gpucost_e2e::agent(&args, &dir.path().join("agent.log"));
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let text = loop {
        if let Ok(r) = ureq::get(&url).call() {
            let text = r.into_body().read_to_string().unwrap();
            if text.contains("gpucost_agent_pod_gpu_utilization_ratio{") {
                break text;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no per-pod metrics at {url} within 30 s");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(text.contains("gpucost_agent_gpu_utilization_ratio{node="), "{text}");
    assert!(text.contains("gpucost_agent_gpu_power_watts{node="), "{text}");
    assert!(!text.contains("pid="), "{text}");
    let missing = ureq::get(&format!("http://127.0.0.1:{port}/nope")).call();
    assert!(matches!(missing, Err(ureq::Error::StatusCode(404))));
}
