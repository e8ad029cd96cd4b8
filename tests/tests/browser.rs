//! The dashboard at `/`, in Debian's Chromium against a running `gpucost-collector demo`: every panel
//! renders with data, the fleet view updates live (server-sent events), filters live in shareable links,
//! the drill-down team → workload → GPU works, and the browser logs no error. The checks themselves are in
//! `tests/browser/dashboard.test.mjs`; screenshots stay in `<target dir>/browser-artifacts/`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gpucost_e2e::browser::{Browser, Demo, artifacts_dir};

#[test]
fn dashboard_renders_updates_live_and_drills_down() {
    let Some(browser) = Browser::installed() else { return };
    let began = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    // Two days of history on 8 nodes; live intervals of 2 s, so the readings change while the browser watches.
    let demo = Demo::start(
        dir.path(),
        &["--backfill", "2d", "--nodes", "8", "--report-interval", "2s"],
        Duration::from_secs(120),
    );
    let started = began.elapsed();
    let script = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/browser/dashboard.test.mjs"));
    let artifacts = artifacts_dir();
    let (passed, output) = browser.run(&script, &demo.url(), &artifacts, Duration::from_secs(180));
    assert!(
        passed,
        "the dashboard's browser test failed (screenshots in {}):\n{output}\n-- the demo collector:\n{}",
        artifacts.display(),
        demo.output()
    );
    for shot in
        ["overview.png", "overview-dark.png", "team.png", "workload.png", "gpu.png", "phone.png", "phone-teams.png"]
    {
        let size = std::fs::metadata(artifacts.join(shot)).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "screenshot {shot} is missing or blank ({size} bytes)");
    }
    eprintln!(
        "{output}demo ready in {:.1} s, browser test done after {:.1} s; screenshots in {}",
        started.as_secs_f64(),
        began.elapsed().as_secs_f64(),
        artifacts.display()
    );
}
