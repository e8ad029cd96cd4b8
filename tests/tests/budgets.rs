//! Budget alerts end to end: a team pushed past 80 % of its budget raises exactly one alert in a real
//! Alertmanager, one HMAC-signed webhook (delivered on retry after the receiver failed once) and one Slack
//! message; a collector restart sends nothing twice; raising the budget resolves the alert everywhere.

use std::path::Path;
use std::time::{Duration, Instant};

use gpucost_e2e::{
    Alertmanager, Collector, Receiver, detector_pod, free_port, g5_batch, send_batches, usd_micros as micros,
};
use gpucost_types::period::{Cadence, Period};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};

const SECRET: &str = "budget-webhook-secret-1";
const NS: u64 = 1_000_000_000;

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The webhook deliveries that succeeded, checked against their HMAC-SHA256 signature.
fn delivered(hook: &Receiver) -> Vec<Value> {
    hook.requests()
        .into_iter()
        .filter(|r| r.status == 200)
        .map(|r| {
            let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
            mac.update(r.body.as_bytes());
            let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
            assert_eq!(r.headers.get("x-gpucost-signature-256"), Some(&expected), "signature of {}", r.body);
            serde_json::from_str(&r.body).unwrap()
        })
        .collect()
}

fn put(c: &Collector, name: &str, body: Value) -> (u16, Value) {
    let mut resp = ureq::put(&c.http(&format!("/api/v1/budgets/{name}")))
        .config()
        .http_status_as_error(false)
        .build()
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .expect("PUT budget");
    (resp.status().as_u16(), resp.body_mut().read_json().unwrap_or_default())
}

#[test]
fn a_team_past_80_percent_alerts_once_everywhere_and_raising_the_budget_resolves_it() {
    let dir = tempfile::tempdir().unwrap();
    let Some(am) = Alertmanager::start(dir.path()) else { return };
    let hook = Receiver::start(1);
    let slack = Receiver::start(0);
    let catalog = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/catalog");
    let args = [
        "--catalog-dir",
        catalog.to_str().unwrap(),
        "--budget-eval-interval",
        "1s",
        "--alertmanager-url",
        &am.url(),
        "--alert-webhook",
        &hook.url(),
        "--alert-slack-webhook",
        &slack.url(),
    ];
    let env = [("GPUCOST_ALERT_WEBHOOK_SECRET", SECRET)];
    let db = dir.path().join("ledger.db");
    let (grpc, http) = (free_port(), free_port());
    let c = Collector::start_with(&db, grpc, http, &args, &env);

    // Half an hour of the vision team's detector on one GPU, this month.
    let now = gpucost_types::clock::now_ns() / NS * NS;
    let month = Period::containing(Cadence::Monthly, now);
    if now - month.from_ns < 120 * NS {
        std::thread::sleep(Duration::from_secs(120));
    }
    let now = gpucost_types::clock::now_ns() / NS * NS;
    let from = (now - 1800 * NS).max(month.from_ns);
    let first = g5_batch("n1", 1, from, now, vec![(0, 90.0, detector_pod("detector-0"))]);
    assert_eq!(send_batches(&c.grpc_url(), vec![first]).len(), 1);

    // A budget the team is at 70 % of: nothing fires.
    let (_, costs) =
        c.get(&format!("/api/v1/costs?from={}&to={}&filter=team=vision", month.from_ns / NS, month.to_ns / NS));
    let spent = costs["rows"][0]["total_micros"].as_u64().expect("the team's spend") as u128;
    let amount = spent * 10 / 7;
    let budget = json!({
        "scope": { "team": "vision" },
        "period": "monthly",
        "amount_usd": format!("{}.{:06}", amount / 1_000_000, amount % 1_000_000),
        "thresholds": [{ "type": "actual", "percent": 80 }],
    });
    let (status, created) = put(&c, "vision-gpu", budget.clone());
    assert_eq!(status, 201, "{created}");
    let (_, st) = c.get("/api/v1/budgets/status");
    let vision = &st["budgets"][0];
    assert_eq!(micros(vision["spend_usd"].as_str().unwrap()), spent);
    assert!(vision["forecast_method"].as_str().unwrap().contains("trailing 7 days"));
    assert_eq!(vision["thresholds"][0]["state"], "OK");
    std::thread::sleep(Duration::from_secs(3));
    assert!(am.alerts().is_empty());
    assert!(hook.requests().is_empty() && slack.requests().is_empty());

    // A second GPU for the team: past 80 %.
    let second = g5_batch("n2", 1, from, now, vec![(0, 90.0, detector_pod("detector-1"))]);
    assert_eq!(send_batches(&c.grpc_url(), vec![second]).len(), 1);
    wait_for("one Alertmanager alert", Duration::from_secs(30), || am.alerts().len() == 1);
    wait_for("the webhook, delivered on retry", Duration::from_secs(30), || delivered(&hook).len() == 1);
    wait_for("the Slack message", Duration::from_secs(30), || slack.requests().len() == 1);
    let alert = &am.alerts()[0];
    assert_eq!(alert["labels"]["budget"], "vision-gpu");
    assert_eq!(alert["labels"]["threshold"], "actual-80");
    assert_eq!(alert["status"]["state"], "active");
    let attempts = hook.requests();
    assert_eq!((attempts.len(), attempts[0].status), (2, 500), "one failed attempt, then the retry");
    assert_eq!(attempts[0].body, attempts[1].body, "the retry is the same event, not a new alert");
    let event = &delivered(&hook)[0];
    assert_eq!((event["state"].as_str(), event["threshold"].as_str()), (Some("ALARM"), Some("actual-80")));
    assert!(slack.requests()[0].body.contains("*vision-gpu* ALARM"), "{}", slack.requests()[0].body);
    let (_, metrics) = c.get_text("/metrics");
    assert!(metrics.contains("gpucost_budget_alarm{budget=\"vision-gpu\",threshold=\"actual-80\"} 1"), "{metrics}");
    assert!(metrics.contains("gpucost_budget_limit_usd{budget=\"vision-gpu\""), "{metrics}");

    // A restart evaluates again and sends nothing twice.
    c.kill();
    let c = Collector::start_with(&db, grpc, http, &args, &env);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(delivered(&hook).len(), 1);
    assert_eq!(slack.requests().len(), 1);
    assert_eq!(am.alerts().len(), 1);

    // Raising the budget resolves it: Alertmanager drops the alert, the webhook and Slack hear OK.
    let mut raised = budget.clone();
    raised["amount_usd"] = json!(format!("{}", amount * 3 / 1_000_000 + 1));
    let (status, _) = put(&c, "vision-gpu", raised);
    assert_eq!(status, 200);
    wait_for("the resolution", Duration::from_secs(30), || delivered(&hook).len() == 2 && am.alerts().is_empty());
    assert_eq!(delivered(&hook)[1]["state"], "OK");
    wait_for("Slack's resolution", Duration::from_secs(30), || slack.requests().len() == 2);

    // Bad input is refused by name; deleting works once.
    let (status, err) = put(&c, "vision-gpu", json!({ "scope": { "team": "vision" }, "amount_usd": "lots" }));
    assert_eq!(status, 400);
    assert!(err["error"].as_str().unwrap().contains("amount_usd: \"lots\""), "{err}");
    let del = |name: &str| {
        ureq::delete(&c.http(&format!("/api/v1/budgets/{name}")))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(del("vision-gpu"), 204);
    assert_eq!(del("vision-gpu"), 404);
}

#[test]
fn budgets_from_the_config_file_are_served_and_cannot_be_changed_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("budgets.toml");
    std::fs::write(
        &file,
        "[[budget]]\nname = \"nlp-weekly\"\nscope = { namespace = \"nlp\" }\nperiod = \"weekly\"\namount_usd = 700\n",
    )
    .unwrap();
    let c = Collector::start_with(
        &dir.path().join("l.db"),
        free_port(),
        free_port(),
        &["--budgets", file.to_str().unwrap()],
        &[],
    );
    let (_, b) = c.get("/api/v1/budgets/nlp-weekly");
    assert_eq!(b["period"], "weekly");
    assert_eq!(b["thresholds"].as_array().unwrap().len(), 4, "the default thresholds");
    assert!(b["source"].as_str().unwrap().starts_with("config:"));
    let (status, err) = put(&c, "nlp-weekly", json!({ "scope": { "namespace": "nlp" }, "amount_usd": 1 }));
    assert_eq!(status, 409, "{err}");
    assert!(err["error"].as_str().unwrap().contains("change it there"));

    // A bad file stops the collector with the file, budget and field named.
    std::fs::write(&file, "[[budget]]\nname = \"x\"\nscope = { pod = \"a\" }\namount_usd = 1\n").unwrap();
    let out = std::process::Command::new(gpucost_e2e::bin("gpucost-collector"))
        .args(["serve", "--budgets", file.to_str().unwrap(), "--db", dir.path().join("m.db").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("budgets.toml: budget \"x\": scope: unknown scope \"pod\""), "{stderr}");
}

#[test]
fn the_alerts_api_lists_a_budget_alert_firing_where_it_was_delivered_and_then_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(1);
    let catalog = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/catalog");
    let args =
        ["--catalog-dir", catalog.to_str().unwrap(), "--budget-eval-interval", "1s", "--alert-webhook", &hook.url()];
    let c = Collector::start_with(
        &dir.path().join("ledger.db"),
        free_port(),
        free_port(),
        &args,
        &[("GPUCOST_ALERT_WEBHOOK_SECRET", SECRET)],
    );
    let (_, none) = c.get("/api/v1/alerts");
    assert_eq!(none, json!({ "alerts": [], "firing": 0 }));

    // Half an hour of the vision team's detector, this month; a budget it is past 80 % of.
    let now = gpucost_types::clock::now_ns() / NS * NS;
    let month = Period::containing(Cadence::Monthly, now);
    if now - month.from_ns < 120 * NS {
        std::thread::sleep(Duration::from_secs(120));
    }
    let now = gpucost_types::clock::now_ns() / NS * NS;
    let from = (now - 1800 * NS).max(month.from_ns);
    let batch = g5_batch("n1", 1, from, now, vec![(0, 90.0, detector_pod("detector-0"))]);
    assert_eq!(send_batches(&c.grpc_url(), vec![batch]).len(), 1);
    let budget = json!({ "scope": { "team": "vision" }, "amount_usd": "0.01", "thresholds": [{ "type": "actual", "percent": 80 }] });
    assert_eq!(put(&c, "vision-tiny", budget.clone()).0, 201);

    // Firing, and delivered to the webhook on its second attempt (the receiver failed the first).
    let alerts = |q: &str| c.get(&format!("/api/v1/alerts{q}")).1;
    wait_for("the alert, delivered", Duration::from_secs(30), || {
        alerts("")["alerts"][0]["notifications"][0]["status"] == "delivered"
    });
    let body = alerts("");
    assert_eq!(body["firing"], 1, "{body}");
    let a = &body["alerts"][0];
    assert_eq!(
        (a["kind"].as_str(), a["subject"].as_str(), a["state"].as_str()),
        (Some("budget"), Some("vision-tiny"), Some("firing"))
    );
    assert_eq!(a["labels"]["threshold"], "actual-80");
    assert_eq!(a["labels"]["period"], month.label.as_str());
    assert_eq!(a["key"], format!("vision-tiny/actual-80/{}", month.label));
    assert!(a["summary"].as_str().unwrap().contains("reached 80 %"), "{a}");
    assert!(a["resolved_at"].is_null() && a["resolution"].is_null());
    let n = &a["notifications"][0];
    assert_eq!(
        (n["notifier"].as_str(), n["event"].as_str(), n["attempts"].as_u64()),
        (Some("webhook"), Some("firing"), Some(2))
    );
    assert!(n["last_error"].is_null() && n["next_attempt_at"].is_null() && n["delivered_at"].is_string(), "{n}");
    let fired = a["fired_at"].as_str().unwrap().to_string();
    assert_eq!(delivered(&hook)[0]["alarm_since"], fired.as_str(), "the API and the webhook agree on when it fired");
    assert_eq!(alerts("?state=firing")["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(alerts("?state=resolved")["alerts"], json!([]));

    // Raised: the alert resolves, the resolution delivered to the webhook too.
    let mut raised = budget;
    raised["amount_usd"] = json!("1000000");
    assert_eq!(put(&c, "vision-tiny", raised).0, 200);
    wait_for("the resolution, delivered", Duration::from_secs(30), || {
        alerts("")["alerts"][0]["notifications"][1]["status"] == "delivered"
    });
    let body = alerts("?state=resolved");
    let a = &body["alerts"][0];
    assert_eq!((a["state"].as_str(), a["fired_at"].as_str()), (Some("resolved"), Some(fired.as_str())));
    assert!(a["resolution"].as_str().unwrap().contains("back under 80 %"), "{a}");
    assert!(a["resolved_at"].as_str().unwrap() >= fired.as_str());
    assert_eq!(a["notifications"][1]["event"], "resolved");
    assert_eq!(delivered(&hook)[1]["state"], "OK");
    assert_eq!(alerts("")["firing"], 0);
    assert_eq!(
        alerts(&format!("?since={}", (now + 3600 * NS) / NS))["alerts"],
        json!([]),
        "nothing fired or resolved since"
    );

    // Bad filters are refused by name.
    let (status, err) = c.get("/api/v1/alerts?state=open");
    assert_eq!(status, 400);
    assert!(err["error"].as_str().unwrap().contains("state: \"open\""), "{err}");
    let (status, _) = c.get("/api/v1/alerts?limit=0");
    assert_eq!(status, 400);
}
