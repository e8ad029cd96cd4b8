//! `gpucost-collector reprice` on a backfilled demo ledger with the demo's own prices file: every node,
//! the MIG-mode p4de included, still costs its physical GPUs × price × time and the API says `reconciled`;
//! a prices file with a misspelt entry, or one that loses the `[[region]]` rule, is refused and writes nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gpucost_agent::sim::{Fleet, FleetSpec};
use gpucost_e2e::{Collector, bin, free_port};
use serde_json::Value;

const NS: u128 = 1_000_000_000;
const HOUR: u128 = 3_600 * NS;
const DEMO_PRICES: &str = include_str!("../../rules/data/demo-prices.toml");

fn collector(args: &[&str]) -> Output {
    Command::new(bin("gpucost-collector")).args(args).output().expect("run gpucost-collector")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn micros(v: &Value) -> u128 {
    v["micros"].as_u64().unwrap_or_else(|| panic!("micros in {v}")) as u128
}

/// The fewest demo nodes (3 clusters, the default seed) that include a p4de, whose first GPU runs in MIG mode.
fn nodes_with_a_p4de() -> u32 {
    (3..=40)
        .find(|&n| {
            Fleet::generate(FleetSpec { seed: 1, clusters: 3, nodes: n })
                .nodes
                .iter()
                .any(|node| node.info.instance_type == "p4de.24xlarge")
        })
        .expect("the demo fleet has a p4de")
}

fn backfill(dir: &Path) -> PathBuf {
    let data = dir.join("demo");
    let nodes = nodes_with_a_p4de().to_string();
    let out = collector(&[
        "demo",
        "--backfill",
        "3h",
        "--backfill-only",
        "--nodes",
        &nodes,
        "--clusters",
        "3",
        "--data-dir",
        data.to_str().unwrap(),
        "--http",
        "127.0.0.1:0",
        "--grpc",
        "127.0.0.1:0",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    data.join("gpucost.db")
}

fn reprice(db: &Path, from: &str, prices: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["reprice", "--db", db.to_str().unwrap(), "--from", from, "--prices", prices.to_str().unwrap()];
    args.extend(extra);
    collector(&args)
}

/// Per node: (fleet, its physical GPUs' price in force × observed time, GPU-hours stored) over [from, to).
fn fleet_by_node(c: &Collector, from: u64, to: u64) -> Vec<(String, u128, u128, u128)> {
    let (_, prices) = c.get("/api/v1/prices");
    let (_, usage) = c.get(&format!("/api/v1/usage?from={from}&to={to}&group_by=node"));
    let mut out = Vec::new();
    for p in prices["nodes"].as_array().unwrap() {
        let name = p["node"].as_str().unwrap();
        let row = usage["rows"].as_array().unwrap().iter().find(|r| r["node"] == name).expect("usage of the node");
        let observed = row["observed_ns"].as_u64().unwrap() as u128;
        let rate = match p["usd_per_instance_hour"].as_str() {
            Some(usd) => gpucost_e2e::usd_micros(usd),
            None => 0,
        };
        let gpus = p["gpus"].as_u64().unwrap() as u128;
        let (_, costs) = c.get(&format!("/api/v1/costs?from={from}&to={to}&filter=node={name}"));
        assert_eq!(costs["reconciled"], true, "{name}: {costs}");
        out.push((name.to_string(), micros(&costs["fleet"]), rate * observed / (HOUR * gpus), observed / HOUR + gpus));
    }
    out
}

#[test]
fn repricing_a_demo_ledger_with_its_own_prices_keeps_every_node_at_its_gpus_price_times_time() {
    let dir = tempfile::tempdir().unwrap();
    let db = backfill(dir.path());
    let now = gpucost_types::clock::now_ns() / NS as u64;
    let (from, to) = ((now - 5 * 3_600) / 3_600 * 3_600, (now / 3_600 + 1) * 3_600);
    let from_rfc = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(from));
    let prices = dir.path().join("demo-prices.toml");
    std::fs::write(&prices, DEMO_PRICES).unwrap();

    let out = reprice(&db, &from_rfc.to_string(), &prices, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("reconciled: true"), "{}", text(&out));

    // A file with a misspelt instance type is refused, naming the entry and the near miss; so is one that
    // lost the eu-west-1 rule, naming the nodes. Neither writes anything.
    let misspelt = dir.path().join("misspelt.toml");
    std::fs::write(
        &misspelt,
        format!("{DEMO_PRICES}\n[[instance]]\ninstance_type = \"p5.48xlarg\"\nusd_per_hour = \"60\"\n"),
    )
    .unwrap();
    let out = reprice(&db, &from_rfc.to_string(), &misspelt, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("misspelt.toml") && said.contains("instance[0].instance_type"), "{said}");
    assert!(said.contains("did you mean \"p5.48xlarge\"?") && said.contains("--allow-unmatched"), "{said}");
    let start = DEMO_PRICES.find("[[region]]").unwrap();
    let end = DEMO_PRICES.find("# Grid carbon").unwrap();
    let no_region = dir.path().join("no-region.toml");
    std::fs::write(&no_region, format!("{}{}", &DEMO_PRICES[..start], &DEMO_PRICES[end..])).unwrap();
    let eu_node = Fleet::generate(FleetSpec { seed: 1, clusters: 3, nodes: nodes_with_a_p4de() })
        .nodes
        .into_iter()
        .find(|n| n.info.region == "eu-west-1")
        .expect("an eu-west-1 node")
        .info
        .node_name;
    for extra in [&["--dry-run"][..], &[]] {
        let out = reprice(&db, &from_rfc.to_string(), &no_region, extra);
        assert!(!out.status.success(), "{extra:?}: {}", text(&out));
        let said = text(&out);
        assert!(said.contains(&eu_node) && said.contains("no price for"), "{extra:?}: {said}");
        assert!(said.contains("--allow-unpriced"), "{said}");
    }

    let c = Collector::start_with(&db, free_port(), free_port(), &[], &[]);
    let (_, costs) = c.get(&format!("/api/v1/costs?from={from}&to={to}"));
    assert_eq!(costs["reconciled"], true, "{costs}");
    let nodes = fleet_by_node(&c, from, to);
    assert!(nodes.iter().any(|(n, ..)| *n == eu_node));
    for (node, fleet, expected, rounding) in &nodes {
        assert!(*expected > 0, "{node} is priced");
        assert!(
            fleet.abs_diff(*expected) <= 2 * rounding,
            "{node}: fleet {fleet} µ$, GPUs × price × time {expected} µ$"
        );
    }
    let (_, prices) = c.get("/api/v1/prices");
    let p4de = prices["nodes"].as_array().unwrap().iter().find(|p| p["instance_type"] == "p4de.24xlarge").unwrap();
    assert_eq!(p4de["gpus"], 8, "{p4de}");
}
