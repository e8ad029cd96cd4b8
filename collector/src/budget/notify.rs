//! Notifiers: a Slack-compatible webhook (`{"text": …}`), a generic JSON webhook signed with HMAC-SHA256
//! (`X-Gpucost-Signature-256: sha256=<hex of HMAC(secret, body)>`, as GitHub signs its webhooks), and
//! Alertmanager (`POST /api/v2/alerts`; a resolution carries `endsAt`). Payloads are built by pure
//! functions; `send` does the one HTTP call, bounded by a timeout.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use gpucost_rules::alert::AlertEvent;
use gpucost_rules::budget_status::Event;
use gpucost_types::period::utc;

/// Where alerts go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notifier {
    Slack { url: String },
    Webhook { url: String, secret: String },
    Alertmanager { url: String },
}

impl Notifier {
    /// The name the outbox stores notifications under.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Slack { .. } => "slack",
            Self::Webhook { .. } => "webhook",
            Self::Alertmanager { .. } => "alertmanager",
        }
    }
}

/// What the outbox delivers: a budget alert's event, or an idle-GPU or anomaly alert's (its JSON has `kind`).
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    Budget(Event),
    Alert(AlertEvent),
}

impl Outgoing {
    /// A stored event (the outbox's JSON) read back.
    pub fn parse(json: &str) -> Result<Outgoing, String> {
        let v: Value = serde_json::from_str(json).map_err(|e| format!("stored event does not parse: {e}"))?;
        let parsed = if v.get("kind").is_some() {
            serde_json::from_value(v).map(Outgoing::Alert)
        } else {
            serde_json::from_value(v).map(Outgoing::Budget)
        };
        parsed.map_err(|e| format!("stored event does not parse: {e}"))
    }

    pub fn id(&self) -> &str {
        match self {
            Self::Budget(e) => &e.id,
            Self::Alert(e) => &e.id,
        }
    }

    /// The webhook's body: the event's JSON as stored.
    fn body(&self) -> Result<String, String> {
        match self {
            Self::Budget(e) => serde_json::to_string(e),
            Self::Alert(e) => serde_json::to_string(e),
        }
        .map_err(|e| e.to_string())
    }

    fn slack(&self) -> Value {
        match self {
            Self::Budget(e) => slack_message(e),
            Self::Alert(e) => alert_slack_message(e),
        }
    }

    fn alertmanager(&self, generator_url: &str, firing_until: &str) -> Value {
        match self {
            Self::Budget(e) => alertmanager_alert(e, generator_url, firing_until),
            Self::Alert(e) => alert_alertmanager_alert(e, generator_url, firing_until),
        }
    }
}

/// `sha256=<hex>` of HMAC-SHA256 over `body` with `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The delay before retry number `attempts` (1, 2, 4 … seconds, at most 5 minutes).
pub fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(9)).min(Duration::from_secs(300))
}

pub fn slack_message(e: &Event) -> Value {
    let icon = if e.state == "ALARM" { ":rotating_light:" } else { ":white_check_mark:" };
    let spend = match (&e.spend_usd, &e.forecast_usd, &e.limit_usd) {
        (Some(s), Some(f), Some(l)) => format!(" Spend {s} USD, forecast {f} USD, budget {l} USD."),
        _ => String::new(),
    };
    json!({
        "text": format!(
            "{icon} GPU budget *{}* {} ({} {} %, {}): {}.{spend}",
            e.budget, e.state, e.basis, e.percent, e.period, e.reason
        )
    })
}

/// The alert Alertmanager gets for `e`: firing until `firing_until_ns` (re-posted while the alarm lasts),
/// or resolved at the event's time.
pub fn alertmanager_alert(e: &Event, generator_url: &str, firing_until: &str) -> Value {
    let severity = if e.percent >= 100 { "critical" } else { "warning" };
    json!([{
        "labels": {
            "alertname": "GpuCostBudget",
            "budget": e.budget,
            "threshold": e.threshold,
            "period": e.period,
            "severity": severity,
        },
        "annotations": {
            "summary": format!("GPU budget {} at {} % ({})", e.budget, e.percent, e.basis),
            "description": e.reason,
            "spend_usd": e.spend_usd.clone().unwrap_or_default(),
            "forecast_usd": e.forecast_usd.clone().unwrap_or_default(),
            "limit_usd": e.limit_usd.clone().unwrap_or_default(),
        },
        "startsAt": e.alarm_since,
        "endsAt": if e.state == "ALARM" { firing_until.to_string() } else { e.at.clone() },
        "generatorURL": generator_url,
    }])
}

/// An idle-GPU or anomaly alert for Slack.
pub fn alert_slack_message(e: &AlertEvent) -> Value {
    let (icon, what) = if e.state == "ALARM" {
        (":rotating_light:", e.summary.clone())
    } else {
        (":white_check_mark:", format!("resolved: {} (fired {})", e.reason, e.alarm_since))
    };
    let title = if e.kind == gpucost_rules::alert::IDLE_GPU { "Idle GPU" } else { "GPU spend anomaly" };
    json!({ "text": format!("{icon} {title} *{}* {}: {what}", e.subject, e.state) })
}

/// An idle-GPU or anomaly alert for Alertmanager: its labels as evaluated (`alertname` among them; the same
/// for its firing and its resolution), firing until `firing_until` or resolved at the event's time.
pub fn alert_alertmanager_alert(e: &AlertEvent, generator_url: &str, firing_until: &str) -> Value {
    json!([{
        "labels": e.labels,
        "annotations": {
            "summary": e.summary,
            "description": e.reason,
        },
        "startsAt": e.alarm_since,
        "endsAt": if e.state == "ALARM" { firing_until.to_string() } else { e.at.clone() },
        "generatorURL": generator_url,
    }])
}

/// Delivers `e` to `n`; `Err` says what went wrong (the outbox retries it).
pub fn send(
    n: &Notifier,
    e: &Outgoing,
    generator_url: &str,
    firing_for: Duration,
    timeout: Duration,
) -> Result<(), String> {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build().into();
    let (url, body, signature) = match n {
        Notifier::Slack { url } => (url, e.slack().to_string(), None),
        Notifier::Webhook { url, secret } => {
            let body = e.body()?;
            let sig = sign(secret, body.as_bytes());
            (url, body, Some(sig))
        }
        Notifier::Alertmanager { url } => {
            let until = utc(gpucost_types::clock::now_ns() + firing_for.as_nanos() as u64);
            let endpoint = format!("{}/api/v2/alerts", url.trim_end_matches('/'));
            let body = e.alertmanager(generator_url, &until).to_string();
            return post(&agent, &endpoint, body, None, e.id());
        }
    };
    post(&agent, url, body, signature, e.id())
}

fn post(agent: &ureq::Agent, url: &str, body: String, signature: Option<String>, id: &str) -> Result<(), String> {
    let mut req = agent.post(url).header("Content-Type", "application/json").header("X-Gpucost-Event-Id", id);
    if let Some(sig) = &signature {
        req = req.header("X-Gpucost-Signature-256", sig);
    }
    let mut resp = req.send(body).map_err(|e| format!("POST {url}: {e}"))?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    Err(format!("POST {url}: HTTP {status}: {}", text.chars().take(300).collect::<String>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(state: &str) -> Event {
        Event {
            id: "vision/actual-80/2026-11/alarm/1".into(),
            budget: "vision".into(),
            threshold: "actual-80".into(),
            basis: "actual".into(),
            percent: 80,
            state: state.into(),
            reason: "actual spend 85.000000 USD reached 80 % of the 100.000000 USD budget".into(),
            period: "2026-11".into(),
            period_start: "2026-11-01T00:00:00Z".into(),
            period_end: "2026-12-01T00:00:00Z".into(),
            spend_usd: Some("85.000000".into()),
            forecast_usd: Some("90.000000".into()),
            limit_usd: Some("100.000000".into()),
            scope: json!({ "team": "vision" }),
            alarm_since: "2026-11-02T00:00:00Z".into(),
            at: "2026-11-03T00:00:00Z".into(),
        }
    }

    #[test]
    fn the_signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn alertmanager_gets_stable_labels_and_endsat_only_ends_a_resolved_alert() {
        let firing = alertmanager_alert(&event("ALARM"), "http://c/api/v1/budgets/status", "2026-11-03T00:15:00Z");
        let resolved = alertmanager_alert(&event("OK"), "http://c/api/v1/budgets/status", "2026-11-03T00:15:00Z");
        assert_eq!(firing[0]["labels"], resolved[0]["labels"], "the same alert, so Alertmanager resolves it");
        assert_eq!(firing[0]["labels"]["severity"], "warning");
        assert_eq!(firing[0]["endsAt"], "2026-11-03T00:15:00Z");
        assert_eq!(resolved[0]["endsAt"], "2026-11-03T00:00:00Z");
        assert_eq!(resolved[0]["startsAt"], "2026-11-02T00:00:00Z");
    }

    #[test]
    fn idle_and_anomaly_events_round_trip_the_outbox_and_keep_their_labels_in_alertmanager() {
        let e = AlertEvent {
            id: "idle-gpu/nb/c/n1/GPU-1/w/1/alarm".into(),
            kind: "idle-gpu".into(),
            key: "nb/c/n1/GPU-1/w".into(),
            subject: "w".into(),
            state: "ALARM".into(),
            summary: "GPU GPU-1 held with no use for 4.0 h".into(),
            reason: "GPU GPU-1 held with no use for 4.0 h".into(),
            labels: [("alertname", "GpuCostIdleGpu"), ("gpu", "GPU-1"), ("workload", "w")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            alarm_since: "2026-11-02T00:00:00Z".into(),
            at: "2026-11-02T04:00:00Z".into(),
        };
        let out = Outgoing::parse(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(out, Outgoing::Alert(e.clone()));
        let budget = Outgoing::parse(&serde_json::to_string(&event("ALARM")).unwrap()).unwrap();
        assert!(matches!(budget, Outgoing::Budget(_)), "a budget event has no kind");
        let mut ok = e.clone();
        (ok.state, ok.reason, ok.at) = ("OK".into(), "w used GPU GPU-1 again".into(), "2026-11-02T05:00:00Z".into());
        let firing = alert_alertmanager_alert(&e, "http://c/api/v1/alerts", "2026-11-02T04:15:00Z");
        let resolved = alert_alertmanager_alert(&ok, "http://c/api/v1/alerts", "2026-11-02T05:15:00Z");
        assert_eq!(firing[0]["labels"], resolved[0]["labels"]);
        assert_eq!(firing[0]["labels"]["alertname"], "GpuCostIdleGpu");
        assert_eq!(
            (firing[0]["endsAt"].as_str(), resolved[0]["endsAt"].as_str()),
            (Some("2026-11-02T04:15:00Z"), Some("2026-11-02T05:00:00Z"))
        );
        let text = alert_slack_message(&ok)["text"].as_str().unwrap().to_string();
        assert!(text.contains("Idle GPU *w* OK: resolved: w used GPU GPU-1 again"), "{text}");
        assert!(Outgoing::parse("{").unwrap_err().contains("does not parse"));
    }

    #[test]
    fn slack_text_names_the_budget_state_and_money_and_retries_back_off() {
        let text = slack_message(&event("ALARM"))["text"].as_str().unwrap().to_string();
        assert!(
            text.contains("*vision* ALARM (actual 80 %, 2026-11)") && text.contains("budget 100.000000 USD"),
            "{text}"
        );
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(40), Duration::from_secs(300));
    }
}
