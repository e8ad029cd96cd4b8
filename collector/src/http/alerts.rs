//! `GET /api/v1/alerts`: the alerts that fired, the latest first — budget, idle-GPU and spend-anomaly alerts
//! (a `kind`, a `subject` and `labels`) — with their state (`firing` or
//! `resolved`), when they fired and resolved, and every notification of them: the notifier, whether it tells
//! of the firing or the resolution, and whether it was delivered (`delivered`), waits for its first attempt
//! (`pending`) or failed and is retried with backoff (`retrying`, with the attempts and the last error).
//! Filters: `state`, `since`, `kind` and `limit`.

use std::collections::BTreeMap;

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::{ApiError, AppState, Params, QueryParams, SortedJson, bad, on_ledger, parse_time};
use gpucost_ledger::budgets::{AlertFilter, AlertRecord, NotificationRecord};
use gpucost_types::period::utc;

/// The most alerts one answer lists.
const MAX_LIMIT: u32 = 1000;
const DEFAULT_LIMIT: u32 = 200;

pub fn router() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new().routes(routes!(alerts))
}

/// `GET /api/v1/alerts`'s parameters.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertsParams {
    /// firing or resolved (default: both)
    state: Option<String>,
    /// RFC 3339 time or Unix seconds: only alerts that fired or resolved at or after it, or fire still
    since: Option<String>,
    /// what raised them: budget, idle-gpu or anomaly
    kind: Option<String>,
    /// at most this many, the latest fired first: 1 to 1000 (default 200)
    limit: Option<String>,
}

impl QueryParams for AlertsParams {}

impl AlertsParams {
    fn filter(&self) -> Result<AlertFilter, ApiError> {
        let firing = match self.state.as_deref() {
            None | Some("") => None,
            Some("firing") => Some(true),
            Some("resolved") => Some(false),
            Some(other) => return Err(bad(format!("state: {other:?}; expected firing or resolved"))),
        };
        let since_ns = self.since.as_deref().map(|v| parse_time("since", v)).transpose()?;
        let kind = match self.kind.as_deref() {
            None | Some("") => None,
            Some(k @ ("budget" | "idle-gpu" | "anomaly")) => Some(k.to_string()),
            Some(other) => return Err(bad(format!("kind: {other:?}; expected budget, idle-gpu or anomaly"))),
        };
        let limit = match self.limit.as_deref() {
            None | Some("") => DEFAULT_LIMIT,
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| bad(format!("limit: {v:?}; expected 1 to {MAX_LIMIT}")))?,
        };
        Ok(AlertFilter { firing, since_ns, kind, limit })
    }
}

/// `GET /api/v1/alerts`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertsBody {
    /// How many of `alerts` fire still.
    firing: usize,
    /// The latest fired first.
    alerts: Vec<AlertView>,
}

/// An alert that fired.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertView {
    /// Unique: the ledger's id of this firing.
    id: i64,
    /// What raised it: `budget`, `idle-gpu` or `anomaly`.
    kind: String,
    /// Which alert of its kind: `<budget>/<threshold>/<period>` for a budget,
    /// `<rule>/<cluster>/<node>/<gpu>/<workload>` for an idle GPU, `<rule>/<dimension>=<value>/<hour|day>` for an
    /// anomaly (the same key fires again as a new alert after it resolved).
    key: String,
    /// What it is about: the budget's name, the idle workload, the anomalous team/model/namespace.
    subject: String,
    /// What describes it: a budget alert's `budget`, `threshold` (`actual-80`…) and `period` (`2026-11`); an
    /// idle-GPU or anomaly alert's Alertmanager labels (`alertname`, `rule`, `cluster`, `node`, `gpu`,
    /// `workload`, `pod`, `namespace`, `team`; `team`/`model`/`namespace`, `granularity`, `direction`,
    /// `workloads`).
    labels: BTreeMap<String, String>,
    /// `firing` or `resolved`.
    state: &'static str,
    /// Why it fired.
    summary: String,
    /// When it fired (RFC 3339).
    fired_at: String,
    /// When it resolved; null while it fires.
    resolved_at: Option<String>,
    /// Why it resolved; null while it fires.
    resolution: Option<String>,
    /// Every notification of it, oldest first (none when no notifier is configured).
    notifications: Vec<NotificationView>,
}

/// A notification of an alert to one notifier, and how its delivery went.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationView {
    /// `webhook`, `slack` or `alertmanager`.
    notifier: String,
    /// What it tells: `firing` or `resolved`.
    event: &'static str,
    /// `delivered`; `pending` (not attempted yet); `retrying` (failed, retried with backoff).
    status: &'static str,
    /// Attempts made so far.
    attempts: u32,
    /// When it was queued (RFC 3339).
    queued_at: String,
    /// When it was delivered; null until then.
    delivered_at: Option<String>,
    /// When the next attempt is due; null once delivered.
    next_attempt_at: Option<String>,
    /// The last failed attempt's error; null once delivered.
    last_error: Option<String>,
}

impl NotificationView {
    fn of(n: &NotificationRecord) -> Self {
        let resolves = serde_json::from_str::<serde_json::Value>(&n.event)
            .is_ok_and(|e| e.get("state").and_then(|s| s.as_str()) == Some("OK"));
        let status = match (n.delivered_ns, n.attempts) {
            (Some(_), _) => "delivered",
            (None, 0) => "pending",
            (None, _) => "retrying",
        };
        Self {
            notifier: n.notifier.clone(),
            event: if resolves { "resolved" } else { "firing" },
            status,
            attempts: n.attempts,
            queued_at: utc(n.created_ns),
            delivered_at: n.delivered_ns.map(utc),
            next_attempt_at: n.delivered_ns.is_none().then(|| utc(n.next_attempt_ns)),
            last_error: n.last_error.clone(),
        }
    }
}

impl AlertView {
    fn of(a: &AlertRecord) -> Self {
        let labels = serde_json::from_str::<BTreeMap<String, serde_json::Value>>(&a.labels)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string)))
            .collect();
        Self {
            id: a.id,
            kind: a.kind.clone(),
            key: a.key.clone(),
            subject: a.subject.clone(),
            labels,
            state: if a.resolved_ns.is_some() { "resolved" } else { "firing" },
            summary: a.summary.clone(),
            fired_at: utc(a.fired_ns),
            resolved_at: a.resolved_ns.map(utc),
            resolution: a.resolution.clone(),
            notifications: a.notifications.iter().map(NotificationView::of).collect(),
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    tag = "alerts",
    summary = "The alerts that fired, their state and times, and where each notification went",
    params(AlertsParams),
    responses((status = 200, description = "OK", body = AlertsBody), (status = 400, description = "A parameter is wrong; the message names it", body = crate::http::doc::ErrorBody), (status = 503, description = "The ledger does not answer", body = crate::http::doc::ErrorBody))
)]
async fn alerts(
    State(s): State<AppState>,
    Params(params): Params<AlertsParams>,
) -> Result<SortedJson<AlertsBody>, ApiError> {
    let filter = params.filter()?;
    let alerts = on_ledger(&s, move |l| l.alerts(&filter)).await?;
    let alerts: Vec<AlertView> = alerts.iter().map(AlertView::of).collect();
    Ok(SortedJson(AlertsBody { firing: alerts.iter().filter(|a| a.state == "firing").count(), alerts }))
}
