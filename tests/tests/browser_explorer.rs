//! The allocation explorer (`#/explore/`) in Debian's Chromium against a running `gpucost-collector demo`:
//! grouping by one and two dimensions, filters, the split policy, a custom date range, daily and cumulative
//! charts, and the CSV the view downloads, each checked against the costs API; the URL restores the view on
//! reload and back/forward. The checks are in `tests/browser/explorer.test.mjs`; its screenshot stays in
//! `<target dir>/browser-explorer-artifacts/` (not `browser-artifacts/`, which the dashboard's test empties
//! while it may run beside this one).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gpucost_e2e::browser::{Browser, Demo};

#[test]
fn explorer_groups_filters_switches_policy_and_downloads_its_table() {
    let Some(browser) = Browser::installed() else { return };
    let began = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    // Two days of history: yesterday (UTC) is a finished day whose figures hold still while the test compares.
    let demo = Demo::start(
        dir.path(),
        &["--backfill", "2d", "--nodes", "8", "--report-interval", "2s"],
        Duration::from_secs(120),
    );
    let script = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/browser/explorer.test.mjs"));
    let profile = gpucost_e2e::bin("gpucost-collector").parent().expect("profile folder").to_path_buf();
    let artifacts = profile.parent().unwrap_or(&profile).join("browser-explorer-artifacts");
    let _ = std::fs::remove_dir_all(&artifacts);
    let (passed, output) = browser.run(&script, &demo.url(), &artifacts, Duration::from_secs(150));
    assert!(
        passed,
        "the explorer's browser test failed (screenshots in {}):\n{output}\n-- the demo collector:\n{}",
        artifacts.display(),
        demo.output()
    );
    let size = std::fs::metadata(artifacts.join("explorer.png")).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "screenshot explorer.png is missing or blank ({size} bytes)");
    eprintln!("{output}explorer test done after {:.1} s", began.elapsed().as_secs_f64());
}
