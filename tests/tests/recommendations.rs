//! Right-sizing through the HTTP API (issue 24 item 2): a Deployment's pod on a p4d.24xlarge A100 peaking at
//! 8 GB and 10 % SM for two days gets a cheaper GPU and a MIG profile, each saving recomputed from the prices
//! the answer carries and from `GET /api/v1/prices`; a notebook holding an A100 unused for two days gets a
//! release with what it cost; CSV has the same rows.

use gpucost_e2e::{Collector, send_batches};
use gpucost_proto::v1 as pb;
use serde_json::Value;

const NS: u64 = 1_000_000_000;
const HOUR: u64 = 3_600 * NS;
/// 2026-11-01T00:00:00Z
const START_NS: u64 = 1_793_491_200 * NS;
const GB: u64 = 1_000_000_000;

fn pod(name: &str, kind: &str, controller: &str) -> pb::WorkloadIdentity {
    pb::WorkloadIdentity {
        kind: pb::WorkloadKind::KubernetesPod as i32,
        namespace: "serving".into(),
        pod: name.into(),
        container: "main".into(),
        controller_kind: kind.into(),
        controller_name: controller.into(),
        ..Default::default()
    }
}

/// An hour of a p4d.24xlarge (8 × A100 40 GB): the Deployment's pod on GPU 0, a notebook holding GPU 1 unused.
fn hour(base_ns: u64, seq: u64) -> pb::UsageBatch {
    let start = base_ns + seq * HOUR;
    let gpus: Vec<String> = (0..8).map(|i| format!("GPU-p4d-{i}")).collect();
    let samples = 3_600;
    let process = |pid: u32, gpu: usize, sm: f64, mean: u64, peak: u64, busy: u32, workload| pb::ProcessUsage {
        pid,
        gpu_uuid: gpus[gpu].clone(),
        sm_util_percent: sm,
        used_memory_bytes: mean,
        peak_memory_bytes: Some(peak),
        sample_count: samples,
        busy_sample_count: Some(busy),
        workload: Some(workload),
        ..Default::default()
    };
    pb::UsageBatch {
        agent_id: "p4d".into(),
        boot_id: "b".into(),
        seq: seq + 1,
        node: Some(pb::NodeInfo {
            cluster: "prod".into(),
            node_name: "ip-10-0-0-9".into(),
            instance_type: "p4d.24xlarge".into(),
            capacity_type: pb::CapacityType::OnDemand as i32,
            region: "us-east-1".into(),
            devices: gpus
                .iter()
                .enumerate()
                .map(|(i, u)| pb::GpuDevice {
                    uuid: u.clone(),
                    model: "NVIDIA A100-SXM4-40GB".into(),
                    memory_total_bytes: 40 << 30,
                    index: i as u32,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        interval_start_unix_nanos: start,
        interval_end_unix_nanos: start + HOUR,
        processes: vec![
            process(10, 0, 10.0, 6 * GB, 8 * GB, samples, pod("bert-7d9-abc", "Deployment", "bert")),
            process(11, 1, 0.0, 2 * GB, 2 * GB, 0, pod("jupyter-ana-0", "StatefulSet", "jupyter-ana")),
        ],
        ..Default::default()
    }
}

fn micros(usd: &Value) -> u64 {
    gpucost_e2e::usd_micros(usd.as_str().unwrap_or_else(|| panic!("not a USD string: {usd}"))) as u64
}

#[test]
fn an_oversized_a100_pod_gets_a_cheaper_gpu_and_a_mig_slice_whose_saving_recomputes_from_the_prices() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(&dir.path().join("ledger.db"));
    let acks = send_batches(&c.grpc_url(), (0..48).map(|h| hour(START_NS, h)).collect());
    assert!(acks.iter().all(|a| a.status == pb::AckStatus::Stored as i32), "{acks:?}");

    let window = "from=2026-11-01T00:00:00Z&to=2026-11-03T00:00:00Z";
    let (status, body) = c.get(&format!("/api/v1/recommendations?{window}"));
    assert_eq!(status, 200, "{body}");
    let recs = body["recommendations"].as_array().unwrap();
    let of = |group: &str, kind: &str| {
        recs.iter()
            .find(|r| r["group"] == group && r["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} for {group} in {body:#}"))
    };
    let bert = "controller:prod/serving/Deployment/bert";

    // The price in force for the node, as /api/v1/prices shows it.
    let (_, prices) = c.get("/api/v1/prices");
    let node = &prices["nodes"][0];
    assert_eq!(node["instance_type"], "p4d.24xlarge");
    let per_gpu_hour = micros(&node["usd_per_gpu_hour"]);

    let mig = of(bert, "mig_profile");
    assert_eq!(mig["proposed"]["mig_profile"], "2g.10gb", "8 GB × 1.2 fits 10 GiB; 1g.5gb does not");
    assert_eq!((mig["hours_seen"].as_u64(), mig["gpus_held_milli"].as_u64()), (Some(48), Some(1000)));
    assert_eq!(mig["peak_memory_bytes"].as_u64(), Some(8 * GB));
    assert_eq!(mig["sm_p95_pct"].as_f64(), Some(10.0));
    assert_eq!(micros(&mig["current"]["usd_per_gpu_hour"]), per_gpu_hour);
    let current = per_gpu_hour * 730;
    let proposed = per_gpu_hour * 2 / 7 * 730;
    assert_eq!(micros(&mig["current_usd_monthly"]), current);
    assert_eq!(micros(&mig["proposed_usd_monthly"]), proposed);
    assert_eq!(micros(&mig["saving_usd_monthly"]), current - proposed);

    let cheaper = of(bert, "cheaper_gpu");
    let target = &cheaper["proposed"];
    assert_eq!(target["instance_type"], "g4dn.xlarge");
    let target_per_gpu = micros(&target["usd_per_instance_hour"]) / target["gpus_per_instance"].as_u64().unwrap();
    assert_eq!(micros(&target["usd_per_gpu_hour"]), target_per_gpu);
    assert_eq!(micros(&cheaper["saving_usd_monthly"]), current - target_per_gpu * 730);

    let notebook = of("controller:prod/serving/StatefulSet/jupyter-ana", "release");
    assert_eq!(micros(&notebook["saving_usd_monthly"]), current);
    assert_eq!(micros(&notebook["spent_usd"]), per_gpu_hour * 48);
    assert!(
        recs.iter().all(|r| r["group"] != "controller:prod/serving/StatefulSet/jupyter-ana" || r["kind"] == "release")
    );

    // Filters, and fewer than min_hours of evidence: nothing.
    let (_, only) = c.get(&format!("/api/v1/recommendations?{window}&kind=release"));
    assert_eq!(only["recommendations"].as_array().unwrap().len(), 1, "{only}");
    let (_, none) = c.get(&format!("/api/v1/recommendations?{window}&min_hours=49"));
    assert_eq!(none["recommendations"].as_array().unwrap().len(), 0, "{none}");
    let (status, bad) = c.get(&format!("/api/v1/recommendations?{window}&kind=resize"));
    assert_eq!(status, 400);
    assert!(bad["error"].as_str().unwrap().contains("kind"), "{bad}");

    let (status, csv) = c.get_text(&format!("/api/v1/recommendations?{window}&format=csv"));
    assert_eq!(status, 200);
    let rows = gpucost_e2e::parse_csv(&csv);
    assert_eq!(rows.len(), recs.len());
    let row = rows.iter().find(|r| r["group"] == bert && r["kind"] == "mig_profile").unwrap();
    assert_eq!(gpucost_e2e::usd_micros(&row["saving_usd_monthly"]) as u64, current - proposed);
    assert_eq!(row["proposed_share"], "2/7");
}

#[test]
fn the_savings_gauge_sums_each_workloads_largest_saving_per_team() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(&dir.path().join("ledger.db"));
    // The last 48 whole hours: inside the gauge's 14-day window.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let base = (now / HOUR - 49) * HOUR;
    let acks = send_batches(&c.grpc_url(), (0..48).map(|h| hour(base, h)).collect());
    assert!(acks.iter().all(|a| a.status == pb::AckStatus::Stored as i32), "{acks:?}");
    let (_, prices) = c.get("/api/v1/prices");
    let per_gpu_hour = micros(&prices["nodes"][0]["usd_per_gpu_hour"]);
    let (_, t4) = c.get("/api/v1/recommendations?kind=cheaper_gpu");
    let t4 = micros(&t4["recommendations"][0]["proposed"]["usd_per_gpu_hour"]);
    // bert's largest is the T4; the notebook's the release of its whole GPU.
    let expected = (per_gpu_hour * 730 - t4 * 730) + per_gpu_hour * 730;
    let mut value = None;
    for _ in 0..60 {
        let (_, text) = c.get_text("/metrics");
        value = text
            .lines()
            .find(|l| l.starts_with("gpucost_recommendation_savings_usd_monthly{team=\"unattributed\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok());
        if value.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let value = value.expect("the gauge within 30 s");
    assert!((value - expected as f64 / 1e6).abs() < 1e-6, "{value} != {expected} micro-dollars");
}

#[test]
fn the_demos_oversized_a100_pod_gets_a_mig_profile_and_a_cheaper_gpu() {
    use gpucost_agent::sim::{Fleet, FleetSpec, Planted};
    let spec = FleetSpec::demo(1);
    let fleet = Fleet::generate(spec);
    // The ground truth: the first over-provisioned Deployment the simulator planted, and its node.
    let planted = fleet.planted().into_iter().find(|p| p.planted == Planted::Oversized).expect("one in the demo");
    let n = fleet.nodes.iter().position(|n| n.info.devices.iter().any(|d| d.uuid == planted.gpu_uuid)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(&dir.path().join("ledger.db"));
    let args: Vec<String> = [
        "--source",
        "sim",
        "--collector",
        &c.grpc_url(),
        "--sim-seed",
        "1",
        "--sim-nodes",
        &spec.nodes.to_string(),
        "--sim-clusters",
        &spec.clusters.to_string(),
        "--sim-node",
        &n.to_string(),
        "--sim-start",
        "2026-11-01T00:00:00Z",
        "--intervals",
        "25",
        "--report-interval",
        "1h",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (ok, log) = gpucost_e2e::agent(&args, &dir.path().join("agent.log")).wait(std::time::Duration::from_secs(120));
    assert!(ok, "agent failed:\n{log}");

    let group = format!(
        "controller:{}/{}/{}/{}",
        planted.cluster, planted.namespace, planted.controller_kind, planted.controller_name
    );
    let (status, body) = c.get("/api/v1/recommendations?from=2026-11-01T00:00:00Z&to=2026-11-02T01:00:00Z");
    assert_eq!(status, 200, "{body}");
    let recs: Vec<&Value> =
        body["recommendations"].as_array().unwrap().iter().filter(|r| r["group"] == group).collect();
    let mig =
        recs.iter().find(|r| r["kind"] == "mig_profile").unwrap_or_else(|| panic!("no MIG for {group}: {body:#}"));
    let peak = mig["peak_memory_bytes"].as_u64().unwrap();
    assert!(peak <= planted.peak_memory_bytes && mig["sm_p95_pct"].as_f64().unwrap() <= 12.0, "{mig}");
    let profile = if peak * 6 <= (10 << 30) * 5 { "1g.10gb" } else { "2g.20gb" };
    assert_eq!(mig["proposed"]["mig_profile"], profile, "{mig}");
    let (_, prices) = c.get("/api/v1/prices");
    let node = prices["nodes"].as_array().unwrap().iter().find(|p| p["instance_type"] == "p4de.24xlarge").unwrap();
    let per_gpu_hour = micros(&node["usd_per_gpu_hour"]);
    let slices: u64 = profile[..1].parse().unwrap();
    let milli = mig["gpus_held_milli"].as_u64().unwrap();
    let monthly = |p: u64| p * 730 * milli / 1000;
    assert_eq!(micros(&mig["saving_usd_monthly"]), monthly(per_gpu_hour) - monthly(per_gpu_hour * slices / 7));
    assert!(recs.iter().any(|r| r["kind"] == "cheaper_gpu"), "{recs:?}");
}
