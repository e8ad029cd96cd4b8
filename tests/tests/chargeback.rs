//! Chargeback and the FOCUS export for a backfilled demo month: the lines add up to the fleet's cost that
//! `/api/v1/costs` reports, the CLI and the API agree, and the FOCUS file passes the FinOps Foundation's
//! validator with allocated rows that sum to their origin charges.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use gpucost_collector::report::period::{Cadence, DAY_NS, Period};
use gpucost_e2e::{Collector, bin, free_port, parse_csv as csv, usd_micros as micros};

fn catalog_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/catalog")
}

fn collector_cli(args: &[&str]) -> String {
    let out = Command::new(bin("gpucost-collector")).args(args).output().expect("run gpucost-collector");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_demo_months_chargeback_adds_up_and_its_focus_file_passes_the_validator() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
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
    // The month the backfill is in (yesterday's, so that a run on the 1st still has a day of it).
    let period = Period::containing(Cadence::Monthly, gpucost_collector::now_ns() - DAY_NS);
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
    for l in &lines {
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
        assert_eq!(r["BillingPeriodStart"], gpucost_collector::report::period::utc(period.from_ns));
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
