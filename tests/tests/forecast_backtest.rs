//! The budget forecasts' backtest on the demo's month (issue 24 item 4): the demo's simulated fleet (4 nodes)
//! backfills 30 days; over the last 30 whole days, per team and for the fleet, the trailing-week line's and the
//! seasonal model's forecasts of the month's total at days 7, 14 and 21 are printed with their errors
//! (`CI=true cargo nextest run -p gpucost-e2e --test forecast_backtest --no-capture`; the figures are in
//! `docs/budgets.md`). It checks what the forecasts must be, not that one method wins: the demo's simulator
//! has a daily rhythm and no weekly one.

use gpucost_collector::budget::backtest::backtest;
use gpucost_e2e::{Collector, free_port};

const DAY_S: u64 = 86_400;

#[test]
fn the_demo_month_backtest_of_the_trailing_and_seasonal_forecasts() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(gpucost_e2e::bin("gpucost-collector"))
        .args(["demo", "--backfill", "31d", "--backfill-only", "--nodes", "4", "--seed", "1"])
        .args(["--grpc", &format!("127.0.0.1:{}", free_port()), "--http", &format!("127.0.0.1:{}", free_port())])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let c = Collector::start_with(&dir.path().join("gpucost.db"), free_port(), free_port(), &[], &[]);
    let today = gpucost_types::clock::now_ns() / 1_000_000_000 / DAY_S * DAY_S;
    let (from, to) = (today - 30 * DAY_S, today);
    let (_, body) = c.get(&format!("/api/v1/costs?from={from}&to={to}&group_by=team,day"));
    let mut series: std::collections::BTreeMap<String, Vec<u128>> = Default::default();
    for r in body["rows"].as_array().unwrap() {
        let (team, day) = (r["team"].as_str().unwrap().to_string(), r["day"].as_str().unwrap());
        let day_s = gpucost_types::period::parse_instant("day", &format!("{day}T00:00:00Z")).unwrap() / 1_000_000_000;
        let i = ((day_s - from) / DAY_S) as usize;
        let micros = r["total_micros"].as_u64().unwrap() as u128;
        for key in [team, "(fleet)".to_string()] {
            series.entry(key).or_insert_with(|| vec![0; 30])[i] += micros;
        }
    }
    assert!(series.len() > 2, "{body}");
    // Beside the demo's, a month with a working week (the demo's simulator has none): 1000 USD on weekdays,
    // 200 at weekends, +-5 % deterministic scatter, starting on a Monday.
    let mut s: u64 = 3;
    let week: Vec<u128> = (0..30u64)
        .map(|d| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let base = if d % 7 >= 5 { 200.0 } else { 1000.0 };
            (base * (0.95 + 0.1 * ((s >> 11) as f64 / (1u64 << 53) as f64)) * 1e6) as u128
        })
        .collect();
    series.insert("(synthetic working week)".into(), week);
    println!("scope | day | actual USD | trailing USD (error) | seasonal USD (error)");
    for (scope, month) in &series {
        let cuts = backtest(month, &[7, 14, 21]);
        assert_eq!(cuts.len(), 3);
        for cut in &cuts {
            assert_eq!(cut.actual, month.iter().sum::<u128>());
            assert_eq!(cut.seasonal.is_some(), cut.day >= 14, "{scope} day {}", cut.day);
            let seasonal = cut.seasonal.map_or("(trailing: < 14 days)".to_string(), |s| {
                format!("{:.2} ({:.2} %)", s as f64 / 1e6, cut.error_pct(s))
            });
            println!(
                "{scope} | {} | {:.2} | {:.2} ({:.2} %) | {seasonal}",
                cut.day,
                cut.actual as f64 / 1e6,
                cut.trailing as f64 / 1e6,
                cut.error_pct(cut.trailing)
            );
        }
    }
}
