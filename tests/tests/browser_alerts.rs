//! The budgets and alerts pages (`#/budgets`, `#/alerts`) in Debian's Chromium against a running
//! `gpucost-collector demo` with a webhook receiver and a Slack URL nobody answers: a budget made to fire, one
//! made to fire and resolve, and the demo's own budgets. The pages must show every budget with its burn-down
//! and forecast, and every alert with its state, times and notifications (delivered to the webhook, retrying
//! to Slack), as `GET /api/v1/budgets/status` and `GET /api/v1/alerts` give them. The checks are in
//! `tests/browser/alerts.test.mjs`; screenshots stay in `<target dir>/browser-artifacts-alerts/`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gpucost_e2e::Receiver;
use gpucost_e2e::browser::{Browser, Demo};
use serde_json::{Value, json};

fn get(base: &str, path: &str) -> Value {
    ureq::get(&format!("{base}{path}")).call().expect("GET").body_mut().read_json().expect("JSON")
}

fn put(base: &str, name: &str, body: Value) -> u16 {
    ureq::put(&format!("{base}/api/v1/budgets/{name}"))
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .expect("PUT budget")
        .status()
        .as_u16()
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The alert of budget `name`, if it fired.
fn alert(base: &str, name: &str) -> Option<Value> {
    get(base, "/api/v1/alerts")["alerts"].as_array()?.iter().find(|a| a["subject"] == name).cloned()
}

#[test]
fn budgets_and_alerts_pages_show_every_budget_and_every_fired_alert_with_its_notifications() {
    let Some(browser) = Browser::installed() else { return };
    let began = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(1);
    // Slack at a loopback port nobody listens on: its deliveries fail and are retried.
    let slack = format!("http://127.0.0.1:{}/slack", gpucost_e2e::free_port());
    let demo = Demo::start(
        dir.path(),
        &[
            "--backfill",
            "2d",
            "--nodes",
            "6",
            "--report-interval",
            "2s",
            "--budget-eval-interval",
            "1s",
            "--alert-webhook",
            &hook.url(),
            "--alert-webhook-secret",
            "browser-test-secret-1",
            "--alert-slack-webhook",
            &slack,
        ],
        Duration::from_secs(120),
    );
    let base = demo.url();
    // One that fires and stays firing, one that fires and resolves once its budget is raised.
    let tiny = |pct: u32| json!({ "scope": { "team": "vision" }, "amount_usd": "0.01", "thresholds": [{ "type": "actual", "percent": pct }] });
    assert_eq!(put(&base, "page-firing", tiny(50)), 201);
    assert_eq!(put(&base, "page-resolved", tiny(80)), 201);
    wait_for("both alerts fire", Duration::from_secs(30), || {
        alert(&base, "page-firing").is_some() && alert(&base, "page-resolved").is_some()
    });
    let mut raised = tiny(80);
    raised["amount_usd"] = json!("100000000");
    assert_eq!(put(&base, "page-resolved", raised), 200);
    wait_for("the webhook delivers every event, Slack has failed", Duration::from_secs(40), || {
        let (Some(f), Some(r)) = (alert(&base, "page-firing"), alert(&base, "page-resolved")) else { return false };
        let sent = |a: &Value, notifier: &str, status: &str| {
            a["notifications"].as_array().unwrap().iter().any(|n| n["notifier"] == notifier && n["status"] == status)
        };
        r["state"] == "resolved"
            && r["notifications"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|n| n["notifier"] == "webhook" && n["status"] == "delivered")
                .count()
                == 2
            && sent(&f, "webhook", "delivered")
            && sent(&f, "slack", "retrying")
    });

    let script = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/browser/alerts.test.mjs"));
    let profile = gpucost_e2e::bin("gpucost-collector").parent().expect("profile folder").to_path_buf();
    let artifacts = profile.parent().unwrap_or(&profile).join("browser-artifacts-alerts");
    let _ = std::fs::remove_dir_all(&artifacts);
    let (passed, output) = browser.run(&script, &base, &artifacts, Duration::from_secs(120));
    assert!(
        passed,
        "the budgets and alerts pages' browser test failed (screenshots in {}):\n{output}\n-- the demo collector:\n{}",
        artifacts.display(),
        demo.output()
    );
    for shot in ["alerts.png", "alerts-firing.png", "budgets.png", "alerts-phone.png"] {
        let size = std::fs::metadata(artifacts.join(shot)).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "screenshot {shot} is missing or blank ({size} bytes)");
    }
    eprintln!(
        "{output}browser test done after {:.1} s; screenshots in {}",
        began.elapsed().as_secs_f64(),
        artifacts.display()
    );
}
