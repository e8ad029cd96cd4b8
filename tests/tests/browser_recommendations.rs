//! The recommendations page (`#/recommendations`) in Debian's Chromium against a running `gpucost-collector
//! demo` with two days of backfill: every recommendation of `GET /api/v1/recommendations` with its saving,
//! sortable, and a row's evidence. The checks are in `tests/browser/recommendations.test.mjs`; screenshots stay
//! in `<target dir>/browser-artifacts-recommendations/`.

use std::path::PathBuf;
use std::time::Duration;

use gpucost_e2e::browser::{Browser, Demo};

#[test]
fn the_recommendations_page_lists_every_recommendation_with_its_saving_and_evidence() {
    let Some(browser) = Browser::installed() else { return };
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(
        dir.path(),
        &["--backfill", "2d", "--nodes", "12", "--report-interval", "2s"],
        Duration::from_secs(120),
    );
    let base = demo.url();
    let script = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/browser/recommendations.test.mjs"));
    let profile = gpucost_e2e::bin("gpucost-collector").parent().expect("profile folder").to_path_buf();
    let artifacts = profile.parent().unwrap_or(&profile).join("browser-artifacts-recommendations");
    let _ = std::fs::remove_dir_all(&artifacts);
    let (passed, output) = browser.run(&script, &base, &artifacts, Duration::from_secs(120));
    assert!(
        passed,
        "the recommendations page's browser test failed (screenshots in {}):\n{output}\n-- the demo collector:\n{}",
        artifacts.display(),
        demo.output()
    );
    eprintln!("{output}");
}
