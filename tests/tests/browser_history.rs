//! A GPU's, a node's, a workload's and a model's history (issue 22 item 3) in Debian's Chromium against a running
//! `gpucost-collector demo`: the history charts on the GPU and node pages, and on a workload's page reached
//! from its team's (GPU time and cost per hour and GPU), hold the points `GET /api/v1/history` gives for the same
//! thing and period (yesterday, a finished day of the backfill), from the ledger rather than the live stream.
//! The checks are in `tests/browser/history.test.mjs`; screenshots stay in
//! `<target dir>/browser-history-artifacts/`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gpucost_e2e::browser::{Browser, Demo};

#[test]
fn gpu_and_node_pages_chart_their_history_from_the_ledger() {
    let Some(browser) = Browser::installed() else { return };
    let began = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(
        dir.path(),
        &["--backfill", "2d", "--nodes", "4", "--report-interval", "2s", "--mlflow-ui-url", "http://mlflow.test:5000"],
        Duration::from_secs(120),
    );
    let script = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/browser/history.test.mjs"));
    let profile = gpucost_e2e::bin("gpucost-collector").parent().expect("profile folder").to_path_buf();
    let artifacts = profile.parent().unwrap_or(&profile).join("browser-history-artifacts");
    let _ = std::fs::remove_dir_all(&artifacts);
    let (passed, output) = browser.run(&script, &demo.url(), &artifacts, Duration::from_secs(120));
    assert!(
        passed,
        "the history browser test failed (screenshots in {}):\n{output}\n-- the demo collector:\n{}",
        artifacts.display(),
        demo.output()
    );
    let size = std::fs::metadata(artifacts.join("node.png")).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "screenshot node.png is missing or blank ({size} bytes)");
    eprintln!("{output}history test done after {:.1} s", began.elapsed().as_secs_f64());
}
