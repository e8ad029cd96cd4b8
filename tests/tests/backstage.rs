//! Owners from a real Backstage catalog backend: synced over its REST API, kept when Backstage goes down.

use std::path::PathBuf;
use std::time::Duration;

use gpucost_e2e::{Backstage, Collector, free_port, send_batches};
use gpucost_proto::v1 as pb;

const NS: u64 = 1_000_000_000;

fn batch(seq: u64, start: u64) -> pb::UsageBatch {
    pb::UsageBatch {
        agent_id: "n1".into(),
        boot_id: "b".into(),
        seq,
        node: Some(pb::NodeInfo {
            cluster: "prod".into(),
            node_name: "n1".into(),
            instance_type: "g5.xlarge".into(),
            capacity_type: pb::CapacityType::OnDemand as i32,
            region: "us-east-1".into(),
            devices: vec![pb::GpuDevice {
                uuid: "GPU-1".into(),
                model: "NVIDIA A10G".into(),
                memory_total_bytes: 24 << 30,
                ..Default::default()
            }],
            ..Default::default()
        }),
        interval_start_unix_nanos: start,
        interval_end_unix_nanos: start + 3_600 * NS,
        processes: vec![pb::ProcessUsage {
            pid: 7,
            gpu_uuid: "GPU-1".into(),
            sm_util_percent: 60.0,
            used_memory_bytes: 1 << 30,
            workload: Some(pb::WorkloadIdentity {
                kind: pb::WorkloadKind::KubernetesPod as i32,
                namespace: "team-recsys".into(),
                pod: "ranker-serving-0".into(),
                labels: [("backstage.io/kubernetes-id".to_string(), "ranker".to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn owners_come_from_backstage_and_survive_it_going_down() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/catalog")).canonicalize().unwrap();
    let files: Vec<PathBuf> = ["org.yaml", "components.yaml", "users.yaml"].iter().map(|f| catalog.join(f)).collect();
    let example = gpucost_collector::enrich::catalog::Catalog::example();
    let expected = example.groups.len() + example.users.len() + example.systems.len() + example.components.len();
    let Some(backstage) = Backstage::start(dir.path(), &files, expected) else { return };
    let c = Collector::start_with(
        &dir.path().join("ledger.db"),
        free_port(),
        free_port(),
        &[
            "--backstage-url",
            &backstage.url(),
            "--backstage-token",
            Backstage::TOKEN,
            "--backstage-sync-interval",
            "1s",
        ],
        &[],
    );
    let t0 = 1_793_577_600 * NS;
    assert_eq!(send_batches(&c.grpc_url(), vec![batch(1, t0)]).len(), 1);
    let (_, groups) = c.get("/api/v1/backstage/user-groups?userId=bob");
    assert_eq!(
        groups,
        serde_json::json!([{ "id": "group:default/nlp" }, { "id": "group:default/research" }]),
        "users come from Backstage"
    );

    // Backstage goes down; once a sync has failed, the next hour is still the component owner's.
    drop(backstage);
    let log = dir.path().join("ledger.collector.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("cannot sync the catalog from Backstage") {
        assert!(std::time::Instant::now() < deadline, "the collector never noticed Backstage going away");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(send_batches(&c.grpc_url(), vec![batch(2, t0 + 3_600 * NS)]).len(), 1);
    let (_, owners) = c.get("/api/v1/usage?from=2026-11-02T00:00:00Z&to=2026-11-02T02:00:00Z&group_by=owner,team,department,component,system");
    let rows = owners["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{owners}");
    assert_eq!(rows[0]["owner"], "group:default/recsys");
    assert_eq!((rows[0]["team"].as_str(), rows[0]["department"].as_str()), (Some("recsys"), Some("applied-ml")));
    assert_eq!((rows[0]["component"].as_str(), rows[0]["system"].as_str()), (Some("ranker"), Some("recommendations")));
    assert_eq!(rows[0]["held_ns"].as_u64(), Some(2 * 3_600 * NS), "both hours, nothing unallocated");
}
