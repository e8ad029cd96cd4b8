//! `GET /api/v1/history?gpu=<uuid>|node=<cluster>/<name>|workload=<key>&from=&to=`: one thing's history from
//! the ledger, a point per bucket (hourly by default) with GPU time: observed, held and used GPU-seconds,
//! energy, cost (the GPU's or node's whole cost with its idle and unallocated parts; a workload's hybrid-policy
//! charge, a point per bucket and GPU it held), and for a GPU or a node utilisation (mean, max), memory used
//! (mean, max) and power (mean, max) per GPU from the raw intervals; for a workload its utilisation (used ÷ held),
//! highest interval SM share and peak memory (the evidence, docs/evidence.md) and power (its energy ÷ held time). Past the raw retention (`--raw-retention`,
//! 7 days by default) a point's `source` is `rollup`: the mean utilisation is the rollup's used ÷ observed GPU
//! time and the mean power its energy ÷ observed time; memory and the maxima are null. Cost and GPU time are
//! kept for good.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::{ApiError, AppState, Money, Params, QueryParams, SortedJson, bad, on_ledger, parse_window, rfc3339};
use gpucost_ledger::{HistoryPoint, HistorySource, HistorySubject};

const NS: u64 = 1_000_000_000;

pub fn router() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new().routes(routes!(history))
}

/// `GET /api/v1/history`'s parameters: exactly one of `gpu`, `node` and `workload`.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// a GPU or MIG device UUID
    gpu: Option<String>,
    /// with `gpu`: only that cluster's GPU of that UUID (default: every cluster's)
    cluster: Option<String>,
    /// a node, as `<cluster>/<node name>`
    node: Option<String>,
    /// a workload key (`pod:<cluster>/<namespace>/<pod>/<container>`…)
    workload: Option<String>,
    /// RFC 3339 time or Unix seconds (default: 24 hours before `to`); widened to the bucket
    from: Option<String>,
    /// RFC 3339 time or Unix seconds (default: now); exclusive, widened to the bucket
    to: Option<String>,
}

impl QueryParams for HistoryParams {}

/// `GET /api/v1/history`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryBody {
    /// `gpu`, `node` or `workload`.
    kind: &'static str,
    /// The GPU UUID, `<cluster>/<node>` or workload key asked for.
    id: String,
    /// The window, widened to the ledger's buckets (RFC 3339).
    from: String,
    to: String,
    /// The bucket length.
    bucket_seconds: u64,
    /// A point per bucket with GPU time, oldest first (a workload's: per bucket and GPU); buckets without
    /// GPU time have none.
    points: Vec<HistoryPointView>,
    /// The points' cost, summed.
    cost: Money,
}

/// One bucket of a thing's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPointView {
    /// The bucket's start (RFC 3339).
    start: String,
    /// The bucket's start, Unix seconds.
    t: u64,
    /// A workload's point: the GPU it held; null for a GPU or a node.
    gpu: Option<String>,
    /// GPU time observed (0 for a workload), held, used (SM share × time).
    observed_gpu_seconds: f64,
    held_gpu_seconds: f64,
    used_gpu_seconds: f64,
    energy_kwh: f64,
    /// A GPU's or node's whole cost; a workload's hybrid-policy charge.
    cost_usd: String,
    cost_micros: u64,
    /// The cost of GPU time nobody used (the utilization policy's idle line); 0 for a workload.
    idle_micros: u64,
    /// The cost of GPU time nobody held; 0 for a workload.
    unallocated_micros: u64,
    /// `raw` (from the raw intervals: within the raw retention) or `rollup` (past it, or a workload).
    source: &'static str,
    /// Raw interval time behind the utilisation, memory and power (0 from the rollup).
    raw_gpu_seconds: f64,
    /// Utilisation, percent: the interval-weighted mean per GPU (from the rollup, used ÷ observed, past the
    /// retention) and the highest interval's (null past the retention). A workload's: its used ÷ held time on that
    /// GPU, and its highest interval SM share there (from its evidence; null when none was recorded).
    utilization_mean_pct: Option<f64>,
    utilization_max_pct: Option<f64>,
    /// Memory used per GPU, bytes: mean and highest interval's; null past the retention. A workload's: mean null,
    /// max its peak memory on that GPU as its agents reported it (null from agents that did not).
    memory_used_mean_bytes: Option<u64>,
    memory_used_max_bytes: Option<u64>,
    /// Power per GPU, watts: mean (from the rollup's energy past the retention) and highest interval's. A
    /// workload's: its share of the GPU's energy ÷ its held time; max null.
    power_mean_watts: Option<f64>,
    power_max_watts: Option<f64>,
}

fn secs(ns: u64) -> f64 {
    ns as f64 / NS as f64
}

impl HistoryPointView {
    fn of(p: &HistoryPoint) -> Self {
        let pct = |ppm: Option<u64>| ppm.map(|v| v as f64 / 10_000.0);
        let watts = |mw: Option<u64>| mw.map(|v| v as f64 / 1000.0);
        Self {
            start: rfc3339(p.bucket_start_ns),
            t: p.bucket_start_ns / NS,
            gpu: p.gpu.clone(),
            observed_gpu_seconds: secs(p.observed_ns),
            held_gpu_seconds: secs(p.held_ns),
            used_gpu_seconds: secs(p.used_ns),
            energy_kwh: p.energy_millijoules as f64 / 3.6e9,
            cost_usd: gpucost_types::money::usd(u128::from(p.cost_micros)),
            cost_micros: p.cost_micros,
            idle_micros: p.idle_micros,
            unallocated_micros: p.unallocated_micros,
            source: match p.source {
                HistorySource::Raw => "raw",
                HistorySource::Rollup => "rollup",
            },
            raw_gpu_seconds: secs(p.raw_ns),
            utilization_mean_pct: pct(p.utilization_mean_ppm),
            utilization_max_pct: pct(p.utilization_max_ppm),
            memory_used_mean_bytes: p.memory_used_mean_bytes,
            memory_used_max_bytes: p.memory_used_max_bytes,
            power_mean_watts: watts(p.power_mean_milliwatts),
            power_max_watts: watts(p.power_max_milliwatts),
        }
    }
}

impl HistoryParams {
    fn subject(&self) -> Result<(HistorySubject, &'static str, String), ApiError> {
        let given = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        let n = [&self.gpu, &self.node, &self.workload].into_iter().filter(|v| given(v)).count();
        if n != 1 {
            return Err(bad("give exactly one of gpu=<uuid>, node=<cluster>/<name> and workload=<key>"));
        }
        if given(&self.cluster) && !given(&self.gpu) {
            return Err(bad("cluster: only with gpu= (a node names its cluster: node=<cluster>/<name>)"));
        }
        if let Some(uuid) = self.gpu.as_deref().filter(|s| !s.is_empty()) {
            let cluster = self.cluster.clone().filter(|c| !c.is_empty());
            return Ok((HistorySubject::Gpu { uuid: uuid.to_string(), cluster }, "gpu", uuid.to_string()));
        }
        if let Some(node) = self.node.as_deref().filter(|s| !s.is_empty()) {
            let (cluster, name) = node
                .split_once('/')
                .filter(|(c, n)| !c.is_empty() && !n.is_empty())
                .ok_or_else(|| bad(format!("node: {node:?} is not <cluster>/<name> (e.g. prod/ip-10-0-1-5)")))?;
            return Ok((
                HistorySubject::Node { cluster: cluster.to_string(), name: name.to_string() },
                "node",
                node.to_string(),
            ));
        }
        let key = self.workload.clone().unwrap_or_default();
        Ok((HistorySubject::Workload { key: key.clone() }, "workload", key))
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/history",
    tag = "usage",
    summary = "One GPU's, node's or workload's history per bucket from the ledger: utilisation, memory, power, GPU time and cost",
    params(HistoryParams),
    responses((status = 200, description = "OK", body = HistoryBody), (status = 400, description = "A parameter is wrong; the message names it", body = crate::http::doc::ErrorBody), (status = 503, description = "The ledger does not answer", body = crate::http::doc::ErrorBody))
)]
async fn history(
    State(s): State<AppState>,
    Params(params): Params<HistoryParams>,
) -> Result<SortedJson<HistoryBody>, ApiError> {
    let (subject, kind, id) = params.subject()?;
    let bucket_ns = s.ledger.bucket_ns();
    let now = gpucost_types::clock::now_ns();
    let w = parse_window(params.from.as_deref(), params.to.as_deref(), None, now, bucket_ns)?;
    let (from_ns, to_ns) = (w.from_ns, w.to_ns);
    let points = on_ledger(&s, move |l| l.history(&subject, from_ns, to_ns)).await?;
    let cost: u128 = points.iter().map(|p| u128::from(p.cost_micros)).sum();
    Ok(SortedJson(HistoryBody {
        kind,
        id,
        from: rfc3339(from_ns),
        to: rfc3339(to_ns),
        bucket_seconds: bucket_ns / NS,
        points: points.iter().map(HistoryPointView::of).collect(),
        cost: Money::of(cost),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(pairs: &[(&str, &str)]) -> Result<(HistorySubject, &'static str, String), String> {
        let map = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        HistoryParams::from_map(map).map_err(|e| e.1)?.subject().map_err(|e| e.1)
    }

    #[test]
    fn the_subject_is_exactly_one_gpu_node_or_workload() {
        assert_eq!(
            subject(&[("gpu", "GPU-1"), ("cluster", "prod")]).unwrap().0,
            HistorySubject::Gpu { uuid: "GPU-1".into(), cluster: Some("prod".into()) }
        );
        assert_eq!(
            subject(&[("node", "prod/ip-10-0-1-5")]).unwrap().0,
            HistorySubject::Node { cluster: "prod".into(), name: "ip-10-0-1-5".into() }
        );
        assert_eq!(subject(&[("workload", "pod:prod/ml/p/c")]).unwrap().1, "workload");
        assert!(subject(&[]).unwrap_err().contains("exactly one"));
        assert!(subject(&[("gpu", "GPU-1"), ("node", "prod/n")]).unwrap_err().contains("exactly one"));
        assert!(subject(&[("node", "n1")]).unwrap_err().contains("<cluster>/<name>"));
        assert!(subject(&[("node", "prod/n"), ("cluster", "prod")]).unwrap_err().contains("only with gpu"));
        assert!(subject(&[("gpus", "x")]).unwrap_err().contains("unknown parameter \"gpus\""));
    }

    #[test]
    fn a_point_past_the_raw_retention_says_so_and_has_no_memory() {
        let p = HistoryPoint {
            bucket_start_ns: 3_600 * NS,
            gpu: None,
            observed_ns: 3_600 * NS,
            held_ns: 3_600 * NS,
            used_ns: 1_800 * NS,
            energy_millijoules: 3_600_000_000,
            cost_micros: 1_234_567,
            idle_micros: 617_284,
            unallocated_micros: 0,
            raw_ns: 0,
            source: HistorySource::Rollup,
            utilization_mean_ppm: Some(500_000),
            utilization_max_ppm: None,
            memory_used_mean_bytes: None,
            memory_used_max_bytes: None,
            power_mean_milliwatts: Some(1_000_000),
            power_max_milliwatts: None,
        };
        let v = serde_json::to_value(HistoryPointView::of(&p)).unwrap();
        assert_eq!(v["source"], "rollup");
        assert_eq!(v["start"], "1970-01-01T01:00:00Z");
        assert_eq!(v["utilization_mean_pct"], 50.0);
        assert_eq!(v["power_mean_watts"], 1000.0);
        assert_eq!(v["energy_kwh"], 1.0);
        assert_eq!(v["cost_usd"], "1.234567");
        assert!(v["memory_used_mean_bytes"].is_null() && v["utilization_max_pct"].is_null());
    }
}
