//! Chargeback and the FOCUS export for a backfilled demo month: the lines add up to the fleet's cost that
//! `/api/v1/costs` reports, the CLI and the API agree, and the FOCUS file passes the FinOps Foundation's
//! validator with allocated rows that sum to their origin charges.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use gpucost_e2e::{Collector, bin, free_port, parse_csv as csv, usd_micros as micros};
use gpucost_types::period::{Cadence, DAY_NS, Period};

fn catalog_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/catalog")
}

fn collector_cli(args: &[&str]) -> String {
    let out = Command::new(bin("gpucost-collector")).args(args).output().expect("run gpucost-collector");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A two-day demo backfill (in the month of yesterday) in `dir`, and a collector serving it.
fn demo(dir: &Path) -> (PathBuf, Collector) {
    let data = dir.join("demo");
    collector_cli(&[
        "--log-format",
        "json",
        "demo",
        "--backfill",
        "2d",
        "--backfill-only",
        "--nodes",
        "6",
        "--clusters",
        "2",
        "--data-dir",
        data.to_str().unwrap(),
        "--http",
        "127.0.0.1:0",
        "--grpc",
        "127.0.0.1:0",
    ]);
    let db = data.join("gpucost.db");
    let c =
        Collector::start_with(&db, free_port(), free_port(), &["--catalog-dir", catalog_dir().to_str().unwrap()], &[]);
    (db, c)
}

#[test]
fn a_demo_months_chargeback_adds_up_and_its_focus_file_passes_the_validator() {
    let dir = tempfile::tempdir().unwrap();
    let (db, c) = demo(dir.path());
    // The month the backfill is in (yesterday's, so that a run on the 1st still has a day of it).
    let period = Period::containing(Cadence::Monthly, gpucost_types::clock::now_ns() - DAY_NS);
    let (from, to) = (period.from_ns / 1_000_000_000, period.to_ns / 1_000_000_000);

    let (status, costs) = c.get(&format!("/api/v1/costs?from={from}&to={to}&group_by=team"));
    assert_eq!(status, 200, "{costs}");
    let fleet = costs["fleet"]["micros"].as_u64().expect("fleet micros") as u128;
    assert!(fleet > 0, "the backfill cost something: {costs}");

    // CSV by team: one line per team plus unallocated and idle, adding up to the fleet.
    let (status, body) = c.get_text(&format!("/api/v1/chargeback?period={}&group_by=team&format=csv", period.label));
    assert_eq!(status, 200, "{body}");
    let lines = csv(&body);
    let sum: u128 = lines.iter().map(|l| micros(&l["total_usd"])).sum();
    assert_eq!(sum, fleet, "chargeback total vs /api/v1/costs fleet");
    let kinds: Vec<&str> = lines.iter().map(|l| l["line"].as_str()).collect();
    assert_eq!(&kinds[kinds.len() - 2..], ["unallocated", "idle"]);
    for l in lines.iter().filter(|l| l["line"] != "unallocated") {
        assert_eq!(micros(&l["total_usd"]), micros(&l["used_usd"]) + micros(&l["idle_usd"]), "{l:?}");
    }
    let vision = lines.iter().find(|l| l["group"] == "vision").expect("the vision team has a line");
    let cost_api = costs["rows"].as_array().unwrap().iter().find(|r| r["team"] == "vision").unwrap();
    assert_eq!(micros(&vision["total_usd"]), cost_api["total_micros"].as_u64().unwrap() as u128);
    assert!(!vision["top_models"].is_empty() || !vision["efficiency_pct"].is_empty());

    // The CLI writes the same report from the ledger file.
    let cli = collector_cli(&[
        "report",
        "chargeback",
        "--db",
        db.to_str().unwrap(),
        "--period",
        &period.label,
        "--group-by",
        "team",
        "--format",
        "csv",
    ]);
    assert_eq!(cli, body);

    // By cost centre (Backstage group annotations, inherited from departments): still the whole fleet.
    let (_, json) = c.get(&format!("/api/v1/chargeback?period={}&group_by=cost_center", period.label));
    let names: Vec<&str> = json["lines"].as_array().unwrap().iter().map(|l| l["group"].as_str().unwrap()).collect();
    assert!(names.iter().any(|n| n.starts_with("CC-")), "{names:?}");
    assert_eq!(micros(json["total_usd"].as_str().unwrap()), fleet);
    assert_eq!(json["fleet_usd"], json["total_usd"]);

    // Bad parameters are refused by name.
    let (status, err) = c.get(&format!("/api/v1/chargeback?period={}&group_by=pod", period.label));
    assert_eq!(status, 400);
    assert!(err["error"].as_str().unwrap().contains("group_by: unknown grouping \"pod\""), "{err}");

    // FOCUS: each origin charge (a GPU-day) is its allocated rows plus the idle row, to the micro-dollar.
    let (status, focus) = c.get_text(&format!("/api/v1/chargeback?period={}&format=focus", period.label));
    assert_eq!(status, 200);
    let rows = csv(&focus);
    let mut origins: BTreeMap<(String, String), (u128, u128)> = BTreeMap::new();
    for r in &rows {
        let o = origins.entry((r["ResourceId"].clone(), r["ChargePeriodStart"].clone())).or_default();
        o.0 += r["x_CostMicros"].parse::<u128>().unwrap();
        o.1 = micros(&r["x_OriginCost"]);
        assert_eq!(r["BilledCost"], r["EffectiveCost"]);
        assert!(r["ChargePeriodStart"].ends_with('Z') && r["ChargePeriodStart"].len() == 20, "{r:?}");
        assert_eq!(r["BillingPeriodStart"], gpucost_types::period::utc(period.from_ns));
    }
    for ((resource, day), (allocated, origin)) in &origins {
        assert_eq!(allocated, origin, "{resource} on {day}: allocated rows vs origin charge");
    }
    assert_eq!(origins.values().map(|o| o.1).sum::<u128>(), fleet, "FOCUS total vs fleet");
    assert!(rows.iter().any(|r| r["AllocatedResourceId"].is_empty()), "an idle row");
    assert!(rows.iter().any(|r| r["AllocatedResourceId"].starts_with("pod:")), "a pod's row");

    let file = dir.path().join("focus.csv");
    std::fs::write(&file, &focus).unwrap();
    gpucost_e2e::assert_focus_valid(&file);
}

fn json_lines(report: &serde_json::Value) -> &Vec<serde_json::Value> {
    report["lines"].as_array().expect("lines")
}

fn usd_of(v: &serde_json::Value) -> u128 {
    micros(v.as_str().unwrap_or_else(|| panic!("dollars expected, got {v}")))
}

#[test]
fn every_kind_of_money_has_one_name_and_the_same_amount_in_every_grouping() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, c) = demo(dir.path());
    let period = Period::containing(Cadence::Monthly, gpucost_types::clock::now_ns() - DAY_NS);
    let report = |group_by: &str| c.get(&format!("/api/v1/chargeback?period={}&group_by={group_by}", period.label)).1;
    let line = |r: &serde_json::Value, kind: &str| -> Vec<u128> {
        json_lines(r).iter().filter(|l| l["line"] == kind).map(|l| micros(l["total_usd"].as_str().unwrap())).collect()
    };
    let by_team = report("team");
    let unallocated = line(&by_team, "unallocated");
    assert_eq!(unallocated.len(), 1, "{by_team}");
    let unattributed = line(&by_team, "unattributed");
    assert!(unattributed.len() == 1 && unattributed[0] > 0, "the demo's ECS tasks are nobody's: {by_team}");
    for group_by in ["owner", "department", "cost_center", "model", "namespace", "cluster"] {
        let r = report(group_by);
        assert_eq!(line(&r, "unallocated"), unallocated, "{group_by}: one unallocated line, the same amount");
        let groups: Vec<&str> =
            json_lines(&r).iter().filter(|l| l["line"] == "group").map(|l| l["group"].as_str().unwrap()).collect();
        assert!(!groups.iter().any(|g| g.is_empty() || *g == "unallocated"), "{group_by}: {groups:?}");
        assert_eq!(usd_of(&r["totals"]["unattributed_usd"]), unattributed[0], "{group_by}");
        assert_eq!(usd_of(&r["totals"]["unallocated_usd"]), unallocated[0], "{group_by}");
        if ["owner", "department", "cost_center"].contains(&group_by) {
            assert_eq!(line(&r, "unattributed"), unattributed, "{group_by}: one unattributed line, the same amount");
            assert!(!groups.contains(&"unattributed"), "{group_by}: {groups:?}");
        } else {
            assert!(line(&r, "unattributed").is_empty(), "{group_by}: unattributed is a figure, not a line");
        }
    }
    let models = report("model");
    assert!(json_lines(&models).iter().any(|l| l["group"] == "(no model)"), "workloads without a model: {models}");

    // The costs API names the same money the same way, and its idle is what the dashboard shows as idle
    // waste: held but unused GPU time, whoever carries it (the holders, under hybrid).
    let (from, to) = (period.from_ns / 1_000_000_000, period.to_ns / 1_000_000_000);
    for group_by in ["team", "owner", "namespace"] {
        let (_, costs) = c.get(&format!("/api/v1/costs?from={from}&to={to}&group_by={group_by}"));
        let m = |k: &str| u128::from(costs[k]["micros"].as_u64().unwrap_or_else(|| panic!("{k}: {costs}")));
        let rows_idle: u128 =
            costs["rows"].as_array().unwrap().iter().map(|r| micros(r["idle_usd"].as_str().unwrap())).sum();
        assert!(m("idle") > 0 && m("idle") == rows_idle + m("idle_uncharged"), "{group_by}: {costs}");
        assert_eq!(m("idle"), usd_of(&by_team["totals"]["idle_usd"]), "{group_by}: API idle vs the chargeback's");
        assert_eq!((m("unattributed"), m("unallocated")), (unattributed[0], unallocated[0]), "{group_by}");
        assert_eq!(m("used") + m("idle") + m("unallocated"), m("fleet"), "{group_by}");
        if group_by != "namespace" {
            // Owner dimensions: GPU time no rule names a payer for is `unattributed`, never "" or unallocated.
            let named = |r: &serde_json::Value| r[group_by] != "" && r[group_by] != "unallocated";
            assert!(costs["rows"].as_array().unwrap().iter().all(named), "{group_by}: {costs}");
        }
    }

    // Hours: each line's share of the GPU time, split like its dollars, adds up to the GPU time observed.
    let (_, usage) = c.get(&format!("/api/v1/usage?from={from}&to={to}"));
    let observed_h = usage["totals"]["gpu_seconds"].as_f64().unwrap() / 3600.0;
    for group_by in ["team", "owner", "model"] {
        let r = report(group_by);
        let charged: f64 = json_lines(&r).iter().map(|l| l["gpu_hours_charged"].as_f64().unwrap()).sum();
        let uncharged = r["gpu_hours"]["uncharged"].as_f64().unwrap();
        assert!(
            observed_h > 0.0 && (charged + uncharged - observed_h).abs() < 1e-6,
            "{group_by}: {charged} + {uncharged} h vs {observed_h} h observed"
        );
        assert!((r["gpu_hours"]["observed"].as_f64().unwrap() - observed_h).abs() < 1e-6);
    }
}

#[test]
fn a_period_with_no_data_or_part_of_it_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (db, c) = demo(dir.path());
    let period = Period::containing(Cadence::Monthly, gpucost_types::clock::now_ns() - DAY_NS);

    // Part of the period: a two-day backfill covers some of the month's hours, and the report says which.
    let resp = ureq::get(&c.http(&format!("/api/v1/chargeback?period={}", period.label))).call().unwrap();
    let warning = resp.headers().get("warning").map(|w| w.to_str().unwrap().to_string());
    let r: serde_json::Value = resp.into_body().read_json().unwrap();
    let pct = r["coverage"]["pct"].as_f64().unwrap();
    assert!(pct > 0.0 && pct < 100.0, "{r}");
    assert!(r["coverage"]["first_data"].as_str().unwrap() >= r["from"].as_str().unwrap());
    assert!(r["coverage"]["last_data"].as_str().unwrap() <= r["to"].as_str().unwrap());
    assert!(r["warning"].as_str().unwrap().contains("only part of the period"), "{r}");
    assert!(warning.is_some_and(|w| w.starts_with("199 gpucost \"") && w.contains("only part")), "the Warning header");
    let (_, csv_text) = c.get_text(&format!("/api/v1/chargeback?period={}&format=csv", period.label));
    let rows = csv(&csv_text);
    assert!(rows.iter().all(|l| l["coverage_pct"] == format!("{pct:.2}") && !l["data_from"].is_empty()), "{csv_text}");

    // No data at all: the CLI writes the (all-zero) report, warns on standard error and exits 3; the API
    // says so in the JSON and the Warning header.
    let out = Command::new(bin("gpucost-collector"))
        .args(["report", "chargeback", "--db", db.to_str().unwrap(), "--period", "2020-01", "--format", "csv"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("warning: the ledger holds no GPU time for 2020-01"), "{stderr}");
    let rows = csv(&String::from_utf8(out.stdout).unwrap());
    assert!(!rows.is_empty() && rows.iter().all(|l| l["coverage_pct"] == "0.00" && l["total_usd"] == "0.000000"));
    let resp = ureq::get(&c.http("/api/v1/chargeback?period=2020-01&format=focus")).call().unwrap();
    assert!(resp.headers().get("warning").is_some_and(|w| w.to_str().unwrap().contains("no GPU time")));
    let (_, r) = c.get("/api/v1/chargeback?period=2020-01");
    assert_eq!((r["coverage"]["pct"].as_f64(), r["coverage"]["first_data"].is_null()), (Some(0.0), true), "{r}");
    assert!(r["warning"].as_str().unwrap().contains("no GPU time"), "{r}");
}
