//! Closing a month: its report never changes; GPU time that arrives late for it is billed once, in the
//! next open month, as a correction line (FOCUS `ChargeClass` Correction); history under a closed month
//! cannot be re-priced.

use std::path::Path;

use gpucost_e2e::{Collector, bin, detector_pod, free_port, g5_batch, parse_csv, send_batches, usd_micros};
use serde_json::Value;

const NS: u64 = 1_000_000_000;
/// 2026-09-10T00:00:00Z and 2026-10-10T00:00:00Z.
const SEP_10: u64 = 1_788_998_400 * NS;
const OCT_10: u64 = 1_791_590_400 * NS;

fn post(c: &Collector, path: &str) -> (u16, Value) {
    let mut r = ureq::post(&c.http(path)).config().http_status_as_error(false).build().send_empty().unwrap();
    (r.status().as_u16(), r.body_mut().read_json().unwrap_or_default())
}

fn total(c: &Collector, period: &str) -> (u128, Vec<Value>) {
    let (status, j) = c.get(&format!("/api/v1/chargeback?period={period}&group_by=team"));
    assert_eq!(status, 200, "{j}");
    (usd_micros(j["total_usd"].as_str().unwrap()), j["lines"].as_array().unwrap().clone())
}

#[test]
fn a_closed_month_never_changes_and_late_gpu_time_is_billed_next_month_as_a_correction() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/catalog");
    let db = dir.path().join("ledger.db");
    let c = Collector::start_with(&db, free_port(), free_port(), &["--catalog-dir", catalog.to_str().unwrap()], &[]);
    let hour = 3_600 * NS;
    let on_time = vec![
        g5_batch("n1", 1, SEP_10, SEP_10 + hour, vec![(0, 60.0, detector_pod("detector-0"))]),
        g5_batch("n1", 2, OCT_10, OCT_10 + hour, vec![(0, 60.0, detector_pod("detector-0"))]),
    ];
    assert_eq!(send_batches(&c.grpc_url(), on_time).len(), 2);
    let (_, sep_csv) = c.get_text("/api/v1/chargeback?period=2026-09&group_by=team&format=csv");
    let (sep_before, _) = total(&c, "2026-09");
    let (oct_before, _) = total(&c, "2026-10");

    // Close September; it cannot be closed twice, and a running month cannot be closed.
    let (status, closed) = post(&c, "/api/v1/periods/2026-09/close");
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["to"], "2026-10-01T00:00:00Z");
    assert_eq!(post(&c, "/api/v1/periods/2026-09/close").0, 409);
    let now = gpucost_types::period::Period::containing(
        gpucost_types::period::Cadence::Monthly,
        gpucost_types::clock::now_ns(),
    );
    let (status, err) = post(&c, &format!("/api/v1/periods/{}/close", now.label));
    assert_eq!(status, 409);
    assert!(err["error"].as_str().unwrap().contains("once it has ended"), "{err}");
    assert_eq!(post(&c, "/api/v1/periods/2026-13/close").0, 400);

    // An hour of September arrives late, from another node.
    let late = g5_batch(
        "n2",
        1,
        SEP_10 + 10 * 86_400 * NS,
        SEP_10 + 10 * 86_400 * NS + hour,
        vec![(0, 90.0, detector_pod("detector-1"))],
    );
    assert_eq!(send_batches(&c.grpc_url(), vec![late]).len(), 1);

    // September's report is what it was; the live costs do show the late hours.
    let (_, sep_after) = c.get_text("/api/v1/chargeback?period=2026-09&group_by=team&format=csv");
    assert_eq!(sep_after, sep_csv, "a closed month's report never changes");
    let (_, live) = c.get("/api/v1/costs?from=2026-09-01T00:00:00Z&to=2026-10-01T00:00:00Z");
    let late_micros = live["fleet"]["micros"].as_u64().unwrap() as u128 - sep_before;
    assert!(late_micros > 0);

    // October, the next open month, bills them once as a correction line.
    let (oct, lines) = total(&c, "2026-10");
    assert_eq!(oct, oct_before + late_micros);
    let corrections: Vec<&Value> = lines.iter().filter(|l| l["line"] == "correction").collect();
    assert_eq!(corrections.iter().map(|l| usd_micros(l["total_usd"].as_str().unwrap())).sum::<u128>(), late_micros);
    assert!(corrections.iter().any(|l| l["group"] == "vision"), "{corrections:?}");
    let (_, focus) = c.get_text("/api/v1/chargeback?period=2026-10&format=focus");
    let rows = parse_csv(&focus);
    let late_rows: Vec<_> = rows.iter().filter(|r| r["ChargeClass"] == "Correction").collect();
    assert!(!late_rows.is_empty());
    for r in &late_rows {
        assert!(r["ChargePeriodStart"].starts_with("2026-09-20"), "{r:?}");
        assert_eq!(r["BillingPeriodStart"], "2026-10-01T00:00:00Z");
    }
    assert_eq!(late_rows.iter().map(|r| r["x_CostMicros"].parse::<u128>().unwrap()).sum::<u128>(), late_micros);
    let file = dir.path().join("october.csv");
    std::fs::write(&file, &focus).unwrap();
    gpucost_e2e::assert_focus_valid(&file);

    // Closing October (with the CLI) books the correction there for good; November has none left.
    let out = std::process::Command::new(bin("gpucost-collector"))
        .args(["close-period", "--db", db.to_str().unwrap(), "--period", "2026-10"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(total(&c, "2026-10").0, oct);
    assert!(total(&c, "2026-11").1.iter().all(|l| l["line"] != "correction"));
    let (_, periods) = c.get("/api/v1/periods");
    assert_eq!(periods["closed"].as_array().unwrap().len(), 2);

    // Re-pricing a closed month is refused, naming it.
    let out = std::process::Command::new(bin("gpucost-collector"))
        .args([
            "reprice",
            "--db",
            db.to_str().unwrap(),
            "--from",
            "2026-09-15T00:00:00Z",
            "--to",
            "2026-09-16T00:00:00Z",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2026-09, which is closed"), "{stderr}");
}
