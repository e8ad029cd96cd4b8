//! GPU dollars end to end: simulated agents stream to the real collector, which prices every interval
//! and splits it by policy; the costs API must reconcile to the fleet's cost to the micro-dollar.

use std::time::Duration;

use gpucost_agent::sim::{Fleet, FleetSpec};
use gpucost_e2e::{Collector, agent, free_port, send_batches};
use gpucost_proto::v1 as pb;
use gpucost_rules::book::PriceBook;
use gpucost_types::batch::Node;
use serde_json::Value;

const NODES: u32 = 5;
const SEED: u64 = 3;
/// 2026-11-01T00:00:00Z
const START_S: u64 = 1_793_491_200;
const INTERVALS: u64 = 480;
const NS: u64 = 1_000_000_000;

fn micros(v: &Value) -> u128 {
    v["micros"].as_u64().unwrap_or_else(|| panic!("micros missing in {v}")).into()
}

#[test]
fn every_policy_reconciles_to_the_fleets_cost_to_the_micro_dollar() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/catalog");
    let c = Collector::start_with(
        &dir.path().join("ledger.db"),
        free_port(),
        free_port(),
        &["--catalog-dir", catalog],
        &[],
    );
    let spec = FleetSpec { seed: SEED, clusters: 2, nodes: NODES };
    let agents: Vec<_> = (0..NODES)
        .map(|n| {
            let args: Vec<String> = [
                "--source",
                "sim",
                "--collector",
                &c.grpc_url(),
                "--sim-seed",
                &SEED.to_string(),
                "--sim-nodes",
                &NODES.to_string(),
                "--sim-clusters",
                "2",
                "--sim-node",
                &n.to_string(),
                "--sim-start",
                "2026-11-01T00:00:00Z",
                "--intervals",
                &INTERVALS.to_string(),
                "--report-interval",
                "15s",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            agent(&args, &dir.path().join(format!("agent{n}.log")))
        })
        .collect();
    for a in agents {
        let (ok, log) = a.wait(Duration::from_secs(120));
        assert!(ok, "agent failed:\n{log}");
    }
    let (from, to) = (START_S, START_S + INTERVALS * 15);

    // What the fleet cost, from the catalogue: each physical GPU, priced per second over the window.
    let book = PriceBook::catalogue_only();
    let mut expected: u128 = 0;
    for n in Fleet::generate(spec).nodes {
        let node = Node {
            cluster: n.info.cluster.clone(),
            name: n.info.node_name.clone(),
            instance_type: n.info.instance_type.clone(),
            capacity_type: "on_demand".into(),
            region: n.info.region.clone(),
            zone: n.info.zone.clone(),
            labels: Default::default(),
        };
        let physical: Vec<_> = n.info.devices.iter().filter(|d| d.mig_parent_uuid.is_none()).collect();
        let price = book
            .price(&node, &physical[0].model, physical.len() as u32, from * NS)
            .expect("the sim's US regions are in the catalogue");
        expected += u128::from(price.cost(from * NS, to * NS)) * physical.len() as u128;
    }

    let mut charged_by_policy = Vec::new();
    for policy in ["hybrid", "utilization", "allocation"] {
        let (status, body) =
            c.get(&format!("/api/v1/costs?from={from}&to={to}&group_by=namespace,pod&policy={policy}"));
        assert_eq!(status, 200, "{body}");
        assert_eq!(micros(&body["fleet"]), expected, "{policy}: fleet cost");
        assert_eq!(body["reconciled"], true, "{policy}: {body}");
        let rows: u128 =
            body["rows"].as_array().unwrap().iter().map(|r| u128::from(r["total_micros"].as_u64().unwrap())).sum();
        assert_eq!(rows + micros(&body["idle_uncharged"]) + micros(&body["unallocated"]), expected, "{policy}");
        // Each kind of money once: used + idle (whoever carries it) + unallocated is the fleet.
        assert_eq!(micros(&body["used"]) + micros(&body["idle"]) + micros(&body["unallocated"]), expected, "{policy}");
        assert!(micros(&body["idle"]) > 0 && micros(&body["unattributed"]) <= rows, "{policy}: {body}");
        if policy != "utilization" {
            assert_eq!(micros(&body["idle_uncharged"]), 0, "{policy} charges idle to holders");
        }
        charged_by_policy.push(rows);
    }
    assert!(
        charged_by_policy[0] != charged_by_policy[1] && charged_by_policy[1] != charged_by_policy[2],
        "{charged_by_policy:?}"
    );

    // Per cluster and per GPU too.
    let (_, by_gpu) = c.get(&format!("/api/v1/usage?from={from}&to={to}&group_by=cluster,gpu"));
    let gpus = by_gpu["rows"].as_array().unwrap();
    for cluster in ["prod-us-east-1", "research-us-west-2"] {
        let (_, body) = c.get(&format!("/api/v1/costs?from={from}&to={to}&group_by=workload&filter=cluster={cluster}"));
        assert_eq!(body["reconciled"], true, "{cluster}: {body}");
        assert!(micros(&body["fleet"]) > 0);
    }
    for g in gpus.iter().take(6) {
        let uuid = g["gpu"].as_str().unwrap();
        let (_, body) =
            c.get(&format!("/api/v1/costs?from={from}&to={to}&group_by=workload&filter=gpu={uuid}&policy=utilization"));
        assert_eq!(body["reconciled"], true, "{uuid}: {body}");
    }
    // A workload filter selects holders only: no idle line or unallocated to reconcile with; the holders'
    // idle is still known under hybrid, not under utilization (where the idle line carries it).
    let (_, body) = c.get(&format!("/api/v1/costs?from={from}&to={to}&group_by=pod&filter=kind=kubernetes_pod"));
    assert!(body["idle_uncharged"].is_null() && body["unallocated"].is_null() && body["reconciled"].is_null());
    assert!(micros(&body["idle"]) > 0, "{body}");
    let (_, body) =
        c.get(&format!("/api/v1/costs?from={from}&to={to}&group_by=pod&filter=kind=kubernetes_pod&policy=utilization"));
    assert!(body["idle"].is_null(), "{body}");
    // Energy follows the used share.
    let (_, body) = c.get(&format!("/api/v1/costs?from={from}&to={to}&group_by=cluster"));
    assert!(body["rows"].as_array().unwrap().iter().all(|r| r["energy_kwh"].as_f64().unwrap() > 0.0));
    // Owners from the example catalog: every team's cost adds up to what was charged, notebooks belong to
    // the platform team through a label selector, and no pod is unattributed: only ECS tasks (no tags without
    // discovery) and the processes of Unix users the catalog does not know.
    let (_, by_team) = c.get(&format!("/api/v1/costs?from={from}&to={to}&group_by=department,team"));
    let teams: u128 =
        by_team["rows"].as_array().unwrap().iter().map(|r| u128::from(r["total_micros"].as_u64().unwrap())).sum();
    assert_eq!(teams, micros(&by_team["charged"]), "{by_team}");
    assert!(by_team["rows"].as_array().unwrap().iter().any(|r| r["department"] == "applied-ml"), "{by_team}");
    // format=csv: the same rows as the JSON, in its order, with the grouping's columns first.
    let (status, csv) =
        c.get_text(&format!("/api/v1/costs?from={from}&to={to}&group_by=department,team&policy=hybrid&format=csv"));
    assert_eq!(status, 200, "{csv}");
    let lines = gpucost_report::chargeback::csv_rows(&csv);
    assert_eq!(
        lines[0],
        [
            "department",
            "team",
            "used_usd",
            "idle_usd",
            "total_usd",
            "held_gpu_seconds",
            "used_gpu_seconds",
            "energy_kwh",
            "co2e_kg"
        ]
    );
    let json_rows = by_team["rows"].as_array().unwrap();
    assert_eq!(lines.len() - 1, json_rows.len(), "{csv}");
    for (line, r) in lines[1..].iter().zip(json_rows) {
        assert_eq!(
            (line[0].as_str(), line[1].as_str()),
            (r["department"].as_str().unwrap(), r["team"].as_str().unwrap())
        );
        assert_eq!(line[4], r["total_usd"].as_str().unwrap(), "{line:?} vs {r}");
        assert_eq!(line[5].parse::<f64>().unwrap(), r["held_gpu_seconds"].as_f64().unwrap());
    }
    let (status, wrong) = c.get(&format!("/api/v1/costs?from={from}&to={to}&format=xml"));
    assert_eq!(status, 400, "{wrong}");
    assert!(wrong["error"].as_str().unwrap().contains("format: unknown format \"xml\""), "{wrong}");
    let (_, by_owner) = c.get(&format!("/api/v1/usage?from={from}&to={to}&group_by=owner,kind"));
    for r in by_owner["rows"].as_array().unwrap() {
        assert_ne!(r["owner"], "unallocated", "GPU time someone held is never unallocated: {r}");
        if r["owner"] == "unattributed" {
            assert!(r["kind"] == "ecs_task" || r["kind"] == "host_process", "{r}");
        }
    }
    assert!(by_owner["rows"].as_array().unwrap().iter().any(|r| r["owner"] == "unattributed"), "{by_owner}");
    assert!(
        by_owner["rows"].as_array().unwrap().iter().any(|r| r["owner"].as_str().unwrap().starts_with("group:default/")),
        "{by_owner}"
    );

    // Backstage Cost Insights: each team's daily series (hybrid) sums to its cost in /api/v1/costs.
    let (_, teams) = c.get(&format!("/api/v1/costs?from={from}&to={to}&group_by=owner"));
    let mut checked = 0;
    for row in teams["rows"].as_array().unwrap().iter().filter(|r| r["owner"].as_str().unwrap().starts_with("group:")) {
        let group = row["owner"].as_str().unwrap();
        let (status, cost) =
            c.get(&format!("/api/v1/backstage/group-daily-cost?group={group}&intervals=R2/P1D/2026-11-02"));
        assert_eq!(status, 200, "{cost}");
        assert_eq!(cost["id"], group);
        let days: Vec<&str> =
            cost["aggregation"].as_array().unwrap().iter().map(|a| a["date"].as_str().unwrap()).collect();
        assert_eq!(days, vec!["2026-10-31", "2026-11-01"]);
        let series: f64 = cost["aggregation"].as_array().unwrap().iter().map(|a| a["amount"].as_f64().unwrap()).sum();
        let expected = row["total_micros"].as_u64().unwrap() as f64 / 1e6;
        assert!((series - expected).abs() < 1e-6, "{group}: {series} vs {expected}");
        checked += 1;
    }
    assert!(checked > 0, "{teams}");
    // A department rolls up its teams.
    let (_, dept) = c.get("/api/v1/backstage/group-daily-cost?group=applied-ml&intervals=R1/P2D/2026-11-02");
    let (_, by_dept) = c.get(&format!("/api/v1/costs?from={from}&to={to}&group_by=department"));
    let applied = by_dept["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["department"] == "applied-ml")
        .map_or(0, |r| r["total_micros"].as_u64().unwrap());
    let series: f64 = dept["aggregation"].as_array().unwrap().iter().map(|a| a["amount"].as_f64().unwrap()).sum();
    assert!((series - applied as f64 / 1e6).abs() < 1e-6, "{dept}");
    let (status, bad) = c.get("/api/v1/backstage/group-daily-cost?group=vision&intervals=last-month");
    assert_eq!(status, 400);
    assert!(bad["error"].as_str().unwrap().contains("R<periods>/P<days>D"), "{bad}");
    let (_, groups) = c.get("/api/v1/backstage/user-groups?userId=bob");
    assert_eq!(groups, serde_json::json!([{ "id": "group:default/nlp" }, { "id": "group:default/research" }]));
    let (_, projects) = c.get("/api/v1/backstage/group-projects?group=recsys");
    assert_eq!(projects, serde_json::json!([{ "id": "ranker" }, { "id": "retrieval-two-tower" }]));

    // Every node has a price, with where it came from.
    let (_, prices) = c.get("/api/v1/prices");
    let nodes = prices["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), NODES as usize);
    assert!(nodes.iter().all(|n| n["priced"] == true && n["source"].as_str().unwrap().contains("AWS catalogue")));
}

#[test]
fn an_unpriced_instance_type_is_reported_unpriced_not_as_zero_dollars() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(&dir.path().join("ledger.db"));
    let t0 = 1_793_577_600 * NS;
    let batch = pb::UsageBatch {
        agent_id: "odd-node".into(),
        boot_id: "b".into(),
        seq: 1,
        node: Some(pb::NodeInfo {
            cluster: "lab".into(),
            node_name: "odd-node".into(),
            instance_type: "x9.mega".into(),
            capacity_type: pb::CapacityType::OnDemand as i32,
            region: "us-east-1".into(),
            zone: "us-east-1a".into(),
            labels: Default::default(),
            devices: vec![pb::GpuDevice {
                uuid: "GPU-odd".into(),
                model: "NVIDIA Future".into(),
                memory_total_bytes: 80 << 30,
                ..Default::default()
            }],
            instance_id: String::new(),
        }),
        interval_start_unix_nanos: t0,
        interval_end_unix_nanos: t0 + 60 * NS,
        gpus: vec![pb::GpuUsage {
            uuid: "GPU-odd".into(),
            utilization_percent: 10.0,
            sample_count: 60,
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(send_batches(&c.grpc_url(), vec![batch]).len(), 1, "stored");
    let (_, body) = c.get("/api/v1/costs?from=2026-11-02T00:00:00Z&to=2026-11-02T01:00:00Z&group_by=node");
    assert_eq!(body["unpriced"]["gpu_seconds"].as_f64(), Some(60.0), "{body}");
    assert_eq!(micros(&body["fleet"]), 0);
    let (status, metrics) = c.get_text("/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("gpucost_ingested_gpu_seconds_total{priced=\"false\"} 60\n"), "{metrics}");
    assert!(metrics.contains("gpucost_batches_total{outcome=\"stored\"} 1\n"), "{metrics}");
    let (_, prices) = c.get("/api/v1/prices");
    let node = &prices["nodes"][0];
    assert_eq!(node["priced"], false);
    assert!(node["source"].as_str().unwrap().contains("no price for x9.mega"), "{node}");

    // Priced later: `reprice` charges the stored hour at the new price, and it reconciles.
    let prices_file = dir.path().join("prices.toml");
    std::fs::write(&prices_file, "[[instance]]\ninstance_type = \"x9.mega\"\nusd_per_hour = \"10.00\"\ngpus = 1\n")
        .unwrap();
    let out = std::process::Command::new(gpucost_e2e::bin("gpucost-collector"))
        .args(["reprice", "--from", "2026-11-02T00:00:00Z", "--to", "2026-11-02T01:00:00Z", "--db"])
        .arg(&c.db)
        .arg("--prices")
        .arg(&prices_file)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{printed}{}", String::from_utf8_lossy(&out.stderr));
    assert!(printed.contains("lab/odd-node: 0.000000 -> 0.166666 USD"), "{printed}");
    let (_, body) = c.get("/api/v1/costs?from=2026-11-02T00:00:00Z&to=2026-11-02T01:00:00Z&group_by=node");
    assert_eq!(micros(&body["fleet"]), 166_666, "{body}");
    assert_eq!(body["unpriced"]["gpu_seconds"].as_f64(), Some(0.0), "{body}");
    assert_eq!(body["reconciled"], true, "{body}");
}

#[test]
fn a_gpu_the_node_lists_without_a_reading_is_billed_and_observed_so_the_fleet_reconciles() {
    use gpucost_e2e::{detector_pod, g5_batch};
    // An hour of a g5.12xlarge whose agent sent no device readings (a GPU off the bus, or a client that sends
    // processes only): its four GPUs are still on the node, and billed.
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(&dir.path().join("l.db"));
    let s = 1_793_577_600u64; // 2026-11-02T00:00:00Z
    let batch = g5_batch("n1", 1, s * 1_000_000_000, (s + 3600) * 1_000_000_000, vec![(0, 80.0, detector_pod("d-0"))]);
    assert!(batch.gpus.is_empty());
    assert_eq!(send_batches(&c.grpc_url(), vec![batch]).len(), 1);
    let (_, costs) = c.get("/api/v1/costs?from=2026-11-02T00:00:00Z&to=2026-11-02T01:00:00Z");
    assert_eq!(micros(&costs["fleet"]), 5_672_000, "four A10Gs of a g5.12xlarge for an hour: {costs}");
    assert_eq!(costs["reconciled"], true, "{costs}");
    let (_, usage) = c.get("/api/v1/usage?from=2026-11-02T00:00:00Z&to=2026-11-02T01:00:00Z&group_by=gpu");
    assert_eq!(usage["totals"]["gpu_seconds"].as_f64(), Some(4.0 * 3600.0), "{usage}");
}
