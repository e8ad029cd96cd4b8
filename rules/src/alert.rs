//! Episodes of idle-GPU and spend-anomaly alerts: what is in force now against the alerts the ledger keeps
//! open (`alerts` rows with no `resolved_ns`). One in force with no open alert of its kind and key fires; an
//! open one no longer in force resolves. Evaluating again changes nothing, so an episode alerts once, and a
//! restart (which reads the open alerts back) sends nothing twice. Pure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use gpucost_types::period::utc;

/// `kind` of an idle-GPU alert.
pub const IDLE_GPU: &str = "idle-gpu";
/// `kind` of a spend-anomaly alert.
pub const ANOMALY: &str = "anomaly";

/// An alert in force, as evaluated now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    pub kind: &'static str,
    /// Which alert of its kind (`<rule>/<cluster>/<node>/<gpu>/<workload>`, `<rule>/<dimension>=<value>/<hour|day>`).
    pub key: String,
    /// What it is about: the workload, the team…
    pub subject: String,
    /// What describes it, for Alertmanager's labels and the history (alertname first among them).
    pub labels: BTreeMap<String, String>,
    pub summary: String,
    /// When the episode began (the idle GPU's first unused hour, the anomalous bucket).
    pub since_ns: u64,
}

/// An alert the ledger keeps open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub kind: String,
    pub key: String,
    pub subject: String,
    pub labels: BTreeMap<String, String>,
    pub summary: String,
    pub fired_ns: u64,
}

/// What notifiers are told of an idle-GPU or anomaly alert (the outbox's JSON; budget alerts have their own
/// `budget_status::Event`, told apart by `kind`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// Unique per transition: receivers can drop a redelivery by it.
    pub id: String,
    /// `idle-gpu` or `anomaly`.
    pub kind: String,
    pub key: String,
    pub subject: String,
    /// `ALARM` or `OK`.
    pub state: String,
    /// Why it fired.
    pub summary: String,
    /// Why it fired (`ALARM`) or resolved (`OK`).
    pub reason: String,
    pub labels: BTreeMap<String, String>,
    /// When the episode began (for a resolution too).
    pub alarm_since: String,
    pub at: String,
}

/// A firing or a resolution, with its event.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub firing: bool,
    pub kind: String,
    pub key: String,
    pub subject: String,
    pub labels: BTreeMap<String, String>,
    /// Why it fired (kept with the alert).
    pub summary: String,
    pub since_ns: u64,
    /// Why it resolved (a resolution).
    pub resolution: Option<String>,
    pub event: AlertEvent,
}

/// The changes of kind `kind` from `open` to `now`: every alert in force without an open one fires; every
/// open one not in force resolves with the reason `why_over` gives it.
pub fn plan(kind: &str, open: &[Open], now: &[Firing], why_over: &dyn Fn(&Open) -> String, now_ns: u64) -> Vec<Change> {
    let mut out = Vec::new();
    for f in now.iter().filter(|f| f.kind == kind) {
        if open.iter().any(|o| o.kind == kind && o.key == f.key) || out.iter().any(|c: &Change| c.key == f.key) {
            continue;
        }
        out.push(change(true, kind, &f.key, &f.subject, &f.labels, &f.summary, f.since_ns, None, now_ns));
    }
    for o in open.iter().filter(|o| o.kind == kind) {
        if now.iter().any(|f| f.kind == kind && f.key == o.key) {
            continue;
        }
        let why = why_over(o);
        out.push(change(false, kind, &o.key, &o.subject, &o.labels, &o.summary, o.fired_ns, Some(why), now_ns));
    }
    out
}

/// The firing event of an open alert (to re-post to Alertmanager, which forgets an alert it is not told of again).
pub fn firing_event(o: &Open, now_ns: u64) -> AlertEvent {
    change(true, &o.kind, &o.key, &o.subject, &o.labels, &o.summary, o.fired_ns, None, now_ns).event
}

#[allow(clippy::too_many_arguments)]
fn change(
    firing: bool,
    kind: &str,
    key: &str,
    subject: &str,
    labels: &BTreeMap<String, String>,
    summary: &str,
    since_ns: u64,
    resolution: Option<String>,
    now_ns: u64,
) -> Change {
    let state = if firing { "ALARM" } else { "OK" };
    Change {
        firing,
        kind: kind.to_string(),
        key: key.to_string(),
        subject: subject.to_string(),
        labels: labels.clone(),
        summary: summary.to_string(),
        since_ns,
        resolution: resolution.clone(),
        event: AlertEvent {
            id: format!("{kind}/{key}/{since_ns}/{}", state.to_ascii_lowercase()),
            kind: kind.to_string(),
            key: key.to_string(),
            subject: subject.to_string(),
            state: state.to_string(),
            summary: summary.to_string(),
            reason: resolution.unwrap_or_else(|| summary.to_string()),
            labels: labels.clone(),
            alarm_since: utc(since_ns),
            at: utc(now_ns),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn firing(key: &str) -> Firing {
        Firing {
            kind: IDLE_GPU,
            key: key.into(),
            subject: "pod:c/notebooks/nb-0/main".into(),
            labels: BTreeMap::from([("alertname".into(), "GpuCostIdleGpu".into())]),
            summary: "held unused for 5h".into(),
            since_ns: 100,
        }
    }

    fn opened(c: &Change) -> Open {
        Open {
            kind: c.kind.clone(),
            key: c.key.clone(),
            subject: c.subject.clone(),
            labels: c.labels.clone(),
            summary: c.summary.clone(),
            fired_ns: c.since_ns,
        }
    }

    #[test]
    fn an_episode_fires_once_and_resolves_once() {
        let why = |_: &Open| "the GPU was used".to_string();
        let fire = plan(IDLE_GPU, &[], &[firing("r/c/n/g/w")], &why, 1_000);
        assert_eq!(fire.len(), 1);
        assert!(fire[0].firing && fire[0].event.state == "ALARM");
        let open = vec![opened(&fire[0])];
        // In force and open: nothing; other kinds' alerts are not touched.
        assert!(plan(IDLE_GPU, &open, &[firing("r/c/n/g/w")], &why, 2_000).is_empty());
        assert!(plan(ANOMALY, &open, &[], &why, 2_000).is_empty());
        let over = plan(IDLE_GPU, &open, &[], &why, 3_000);
        assert_eq!(over.len(), 1);
        assert_eq!((over[0].firing, over[0].resolution.as_deref()), (false, Some("the GPU was used")));
        assert_eq!(over[0].event.alarm_since, utc(100), "the resolution says when the episode began");
        assert_eq!(over[0].event.reason, "the GPU was used");
        assert_ne!(over[0].event.id, fire[0].event.id);
        assert_eq!(firing_event(&open[0], 5).id, fire[0].event.id, "a refresh is the same alert");
    }
}
