//! Owners from a real Backstage catalog backend: synced over its REST API, kept when Backstage goes down, kept
//! in the ledger across a restart while it is down, and read back from there by `reattribute`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gpucost_e2e::{Backstage, Collector, bin, free_port, send_batches};
use gpucost_proto::v1 as pb;
use gpucost_rules::catalog::Catalog;

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
    let example = gpucost_rules::catalog::Catalog::example();
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

/// `batch` with a host process of `bob` (a catalog User, member of `nlp` and `research`) on the same GPU.
fn batch_with_bob(seq: u64, start: u64) -> pb::UsageBatch {
    let mut b = batch(seq, start);
    b.processes.push(pb::ProcessUsage {
        pid: 8,
        gpu_uuid: "GPU-1".into(),
        sm_util_percent: 20.0,
        used_memory_bytes: 1 << 30,
        workload: Some(pb::WorkloadIdentity {
            kind: pb::WorkloadKind::HostProcess as i32,
            user: "bob".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    b
}

fn example_backstage(dir: &Path) -> Option<Backstage> {
    let catalog = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/catalog")).canonicalize().unwrap();
    let files: Vec<PathBuf> = ["org.yaml", "components.yaml", "users.yaml"].iter().map(|f| catalog.join(f)).collect();
    let example = Catalog::example();
    let expected = example.groups.len() + example.users.len() + example.systems.len() + example.components.len();
    Backstage::start(dir, &files, expected)
}

/// The held GPU-seconds of each owner (with its team) over the two hours from 2026-11-02.
fn held_by_owner(c: &Collector) -> Vec<(String, String, f64)> {
    let (status, costs) = c.get("/api/v1/costs?from=2026-11-02T00:00:00Z&to=2026-11-02T02:00:00Z&group_by=owner,team");
    assert_eq!(status, 200, "{costs}");
    let mut rows: Vec<(String, String, f64)> = costs["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (text("owner"), text("team"), r["held_gpu_seconds"].as_f64().unwrap())
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn a_collector_restarted_while_backstage_is_down_keeps_every_owner() {
    let dir = tempfile::tempdir().unwrap();
    let Some(backstage) = example_backstage(dir.path()) else { return };
    let url = backstage.url();
    let args = ["--backstage-url", &url, "--backstage-token", Backstage::TOKEN, "--backstage-sync-interval", "1s"];
    let db = dir.path().join("ledger.db");
    let c = Collector::start_with(&db, free_port(), free_port(), &args, &[]);
    let t0 = 1_793_577_600 * NS;
    assert_eq!(send_batches(&c.grpc_url(), vec![batch_with_bob(1, t0)]).len(), 1);
    let (_, metrics) = c.get_text("/metrics");
    assert!(metric(&metrics, "gpucost_catalog_syncs_total{via=\"backstage\"}") >= Some(1.0), "{metrics}");

    // The collector stops, Backstage goes away, the collector starts again on the same ledger.
    c.kill();
    drop(backstage);
    let c = Collector::start_with(&db, free_port(), free_port(), &args, &[]);
    assert_eq!(send_batches(&c.grpc_url(), vec![batch_with_bob(2, t0 + 3_600 * NS)]).len(), 1);
    assert_eq!(
        held_by_owner(&c),
        [
            ("group:default/nlp".to_string(), "nlp".to_string(), 7_200.0),
            ("group:default/recsys".to_string(), "recsys".to_string(), 7_200.0)
        ],
        "both hours keep the component's owner and bob's team; nothing unattributed"
    );

    let (_, metrics) = c.get_text("/metrics");
    assert_eq!(metric(&metrics, "gpucost_catalog_syncs_total{via=\"ledger\"}"), Some(1.0), "{metrics}");
    assert_eq!(metric(&metrics, "gpucost_catalog_syncs_total{via=\"backstage\"}"), Some(0.0), "{metrics}");
    let fetched =
        metric(&metrics, "gpucost_catalog_fetched_timestamp_seconds{via=\"ledger\"}").expect("the copy's age");
    assert!(fetched > 1.7e9 && fetched <= gpucost_types::clock::now_ns() as f64 / 1e9, "{metrics}");
    assert_eq!(metric(&metrics, "gpucost_sync_up{source=\"backstage\"}"), Some(0.0), "{metrics}");
    let log = std::fs::read_to_string(&c.log).unwrap();
    let warn = log
        .lines()
        .find(|l| l.contains("attributing with the last good copy, kept in the ledger"))
        .unwrap_or_else(|| panic!("no WARN about the kept copy:\n{log}"));
    assert!(warn.contains("\"WARN\"") && warn.contains(&format!("Backstage at {url}")), "{warn}");
    assert!(warn.contains("\"age\"") && warn.contains("\"fetched\""), "{warn}");
}

fn reattribute(db: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin("gpucost-collector"))
        .args(["reattribute", "--db", db.to_str().unwrap(), "--from", "2026-11-02T00:00:00Z"])
        .args(["--to", "2026-11-02T01:00:00Z"])
        .args(args)
        .env_remove("GPUCOST_CATALOG_DIR")
        .env_remove("GPUCOST_BACKSTAGE_URL")
        .output()
        .expect("run gpucost-collector reattribute");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn reattribute_takes_the_catalog_kept_in_the_ledger_when_backstage_cannot_be_reached() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    // Ingested without any catalog: nobody is named to pay.
    let c = Collector::start(&db);
    assert_eq!(send_batches(&c.grpc_url(), vec![batch_with_bob(1, 1_793_577_600 * NS)]).len(), 1);
    c.kill();
    let nowhere = format!("http://127.0.0.1:{}", free_port());

    let (ok, out) = reattribute(&db, &[]);
    assert!(!ok && out.contains("no catalog to re-attribute with") && out.contains("--catalog-from ledger"), "{out}");
    let (ok, out) = reattribute(&db, &["--catalog-from", "ledger"]);
    assert!(!ok && out.contains("keeps no Backstage catalog"), "{out}");
    let (ok, out) = reattribute(&db, &["--backstage-url", &nowhere]);
    assert!(!ok && out.contains(&format!("cannot read the catalog: Backstage at {nowhere}")), "{out}");

    // What a collector syncing from Backstage keeps after each fetch.
    {
        let ledger = gpucost_ledger::SqliteLedger::open(&db, 3_600 * NS, u64::MAX).unwrap();
        gpucost_collector::enrich::backstage::keep(&ledger, &Catalog::example(), 1_793_500_000 * NS).unwrap();
    }
    let (ok, out) = reattribute(&db, &["--backstage-url", &nowhere]);
    assert!(!ok && out.contains("--catalog-from ledger re-attributes with the copy"), "{out}");
    let (ok, out) = reattribute(&db, &["--catalog-from", "ledger"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("-> group:default/recsys: 1 workloads") && out.contains("-> group:default/nlp: 1 workloads"),
        "{out}"
    );

    let c = Collector::start(&db);
    let (_, usage) = c.get("/api/v1/usage?from=2026-11-02T00:00:00Z&to=2026-11-02T01:00:00Z&group_by=team,user");
    let mut teams: Vec<(String, String)> = usage["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["team"].as_str().unwrap().to_string(), r["user"].as_str().unwrap().to_string()))
        .collect();
    teams.sort();
    assert_eq!(teams, [("nlp".into(), "bob".into()), ("recsys".into(), String::new())], "{usage}");
}

#[test]
fn an_empty_answer_from_backstage_does_not_wipe_the_owners() {
    let dir = tempfile::tempdir().unwrap();
    let Some(backstage) = example_backstage(dir.path()) else { return };
    let db = dir.path().join("ledger.db");
    let serve = |url: &str| {
        let args = ["--backstage-url", url, "--backstage-token", Backstage::TOKEN, "--backstage-sync-interval", "1s"];
        Collector::start_with(&db, free_port(), free_port(), &args, &[])
    };
    let c = serve(&backstage.url());
    let t0 = 1_793_577_600 * NS;
    assert_eq!(send_batches(&c.grpc_url(), vec![batch_with_bob(1, t0)]).len(), 1);
    c.kill();
    drop(backstage);

    // A Backstage that lost its catalog: it answers, with no entity at all.
    let nothing = dir.path().join("nothing.yaml");
    std::fs::write(&nothing, "# no entities\n").unwrap();
    let Some(empty) = Backstage::start(dir.path(), &[nothing], 0) else { return };
    let answers = || {
        ureq::get(&format!("{}/api/catalog/entities/by-query", empty.url()))
            .header("Authorization", &format!("Bearer {}", Backstage::TOKEN))
            .call()
            .is_ok()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !answers() {
        assert!(std::time::Instant::now() < deadline, "the empty Backstage never answered");
        std::thread::sleep(Duration::from_millis(250));
    }
    let c = serve(&empty.url());
    assert_eq!(send_batches(&c.grpc_url(), vec![batch_with_bob(2, t0 + 3_600 * NS)]).len(), 1);
    assert_eq!(
        held_by_owner(&c),
        [
            ("group:default/nlp".to_string(), "nlp".to_string(), 7_200.0),
            ("group:default/recsys".to_string(), "recsys".to_string(), 7_200.0)
        ]
    );
    let log = std::fs::read_to_string(&c.log).unwrap();
    assert!(log.contains("Backstage answered an empty catalog") && log.contains("refused as suspect"), "{log}");
}
