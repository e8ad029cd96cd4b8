//! `GET /api/v1/evidence?from=&to=&cluster=&namespace=`: what each workload really used over a window (14 days
//! by default), from the ledger's evidence rollups (docs/evidence.md): per workload at the controller level,
//! hours seen, GPU time held, peak memory (null where no agent reported one), the highest, p95 and p50 interval
//! SM share (exact to 1 %), the share of busy samples (null where none reported) and the GPUs and instance
//! types it ran on. Read-only; what right-sizing recommendations read.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::{ApiError, AppState, Params, QueryParams, SortedJson, on_ledger, parse_window, rfc3339};
use gpucost_ledger::evidence::{EvidenceQuery, WorkloadEvidence};

const NS: u64 = 1_000_000_000;
/// The default window: the 14 days a right-sizing reads.
const DEFAULT_WINDOW_NS: u64 = 14 * 86_400 * NS;

pub fn router() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new().routes(routes!(evidence))
}

/// `GET /api/v1/evidence`'s parameters.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EvidenceParams {
    /// RFC 3339 time or Unix seconds (default: 14 days before `to`); widened to the bucket
    from: Option<String>,
    /// RFC 3339 time or Unix seconds (default: now); exclusive, widened to the bucket
    to: Option<String>,
    /// only this cluster's workloads
    cluster: Option<String>,
    /// only this namespace's workloads
    namespace: Option<String>,
}

impl QueryParams for EvidenceParams {}

/// `GET /api/v1/evidence`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EvidenceBody {
    /// The window, widened to the ledger's buckets (RFC 3339).
    from: String,
    to: String,
    /// The bucket length: hours seen are `buckets_seen × bucket_seconds / 3600`.
    bucket_seconds: u64,
    /// One per workload (controller level), by `group`.
    workloads: Vec<EvidenceView>,
}

/// One workload's evidence over the window.
#[derive(Debug, Serialize, ToSchema)]
pub struct EvidenceView {
    /// `controller:<cluster>/<namespace>/<kind>/<name>`, or the workload key of one without a controller.
    group: String,
    cluster: String,
    namespace: String,
    controller_kind: String,
    controller_name: String,
    /// Pods, containers or tasks behind it.
    workloads: u64,
    buckets_seen: u64,
    hours_seen: f64,
    held_gpu_hours: f64,
    /// The largest memory one of its GPUs held in any sample; null: no agent reported a peak.
    peak_memory_bytes: Option<u64>,
    /// GPU time whose peak memory is known.
    peak_known_gpu_hours: f64,
    /// Interval SM share per GPU, percent: highest, p95 and p50 (exact to 1 %).
    sm_max_pct: f64,
    sm_p95_pct: f64,
    sm_p50_pct: f64,
    /// Share of its processes' samples with SM above 0, percent; null: no agent reported it.
    busy_pct: Option<f64>,
    samples: u64,
    /// What it ran on, most held first.
    ran_on: Vec<RanOnView>,
}

/// A GPU kind a workload ran on.
#[derive(Debug, Serialize, ToSchema)]
pub struct RanOnView {
    gpu_model: String,
    memory_total_bytes: u64,
    mig_profile: Option<String>,
    instance_type: String,
    region: String,
    held_gpu_hours: f64,
}

fn hours(ns: u64) -> f64 {
    ns as f64 / (3_600 * NS) as f64
}

fn pct(ppm: u32) -> f64 {
    f64::from(ppm) / 10_000.0
}

impl EvidenceView {
    fn of(e: &WorkloadEvidence) -> Self {
        Self {
            group: e.group.clone(),
            cluster: e.cluster.clone(),
            namespace: e.namespace.clone(),
            controller_kind: e.controller_kind.clone(),
            controller_name: e.controller_name.clone(),
            workloads: e.workloads,
            buckets_seen: e.buckets_seen,
            hours_seen: hours(e.buckets_seen * e.bucket_ns),
            held_gpu_hours: hours(e.held_ns),
            peak_memory_bytes: e.peak_memory_bytes,
            peak_known_gpu_hours: hours(e.peak_known_ns),
            sm_max_pct: pct(e.sm_max_ppm),
            sm_p95_pct: pct(e.sm_p95_ppm),
            sm_p50_pct: pct(e.sm_p50_ppm),
            busy_pct: e.busy_ppm.map(pct),
            samples: e.samples,
            ran_on: e
                .ran_on
                .iter()
                .map(|r| RanOnView {
                    gpu_model: r.gpu_model.clone(),
                    memory_total_bytes: r.memory_total_bytes,
                    mig_profile: r.mig_profile.clone(),
                    instance_type: r.instance_type.clone(),
                    region: r.region.clone(),
                    held_gpu_hours: hours(r.held_ns),
                })
                .collect(),
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/evidence",
    tag = "usage",
    summary = "What each workload really used over a window (14 days by default): hours seen, peak memory, max/p95/p50 SM, busy share, GPUs it ran on",
    params(EvidenceParams),
    responses((status = 200, description = "OK", body = EvidenceBody), (status = 400, description = "A parameter is wrong; the message names it", body = crate::http::doc::ErrorBody), (status = 503, description = "The ledger does not answer", body = crate::http::doc::ErrorBody))
)]
async fn evidence(
    State(s): State<AppState>,
    Params(params): Params<EvidenceParams>,
) -> Result<SortedJson<EvidenceBody>, ApiError> {
    let bucket_ns = s.ledger.bucket_ns();
    let now = gpucost_types::clock::now_ns();
    let query = params.query(now, bucket_ns)?;
    let (from_ns, to_ns) = (query.from_ns, query.to_ns);
    let found = on_ledger(&s, move |l| l.evidence(&query)).await?;
    Ok(SortedJson(EvidenceBody {
        from: rfc3339(from_ns),
        to: rfc3339(to_ns),
        bucket_seconds: bucket_ns / NS,
        workloads: found.iter().map(EvidenceView::of).collect(),
    }))
}

impl EvidenceParams {
    fn query(&self, now_ns: u64, bucket_ns: u64) -> Result<EvidenceQuery, ApiError> {
        let w = parse_window(self.from.as_deref(), self.to.as_deref(), None, now_ns, bucket_ns)?;
        let from_ns = match self.from {
            Some(_) => w.from_ns,
            None => w.to_ns.saturating_sub(DEFAULT_WINDOW_NS) / bucket_ns * bucket_ns,
        };
        let given = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        Ok(EvidenceQuery { from_ns, to_ns: w.to_ns, cluster: given(&self.cluster), namespace: given(&self.namespace) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpucost_ledger::evidence::RanOn;

    const HOUR: u64 = 3_600 * NS;

    fn query(pairs: &[(&str, &str)]) -> Result<EvidenceQuery, String> {
        let map = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        EvidenceParams::from_map(map).map_err(|e| e.1)?.query(100 * 86_400 * NS + 1, HOUR).map_err(|e| e.1)
    }

    #[test]
    fn the_window_defaults_to_14_days_and_filters_are_taken_by_name() {
        let q = query(&[]).unwrap();
        assert_eq!((q.to_ns, q.to_ns - q.from_ns), (100 * 86_400 * NS + HOUR, 14 * 86_400 * NS));
        let q = query(&[("from", "86400"), ("to", "172800"), ("namespace", "ml")]).unwrap();
        assert_eq!(
            (q.from_ns, q.to_ns, q.namespace.as_deref(), q.cluster),
            (86_400 * NS, 172_800 * NS, Some("ml"), None)
        );
        assert!(query(&[("from", "172800"), ("to", "86400")]).unwrap_err().contains("must be before"));
        assert!(query(&[("team", "x")]).unwrap_err().contains("unknown parameter \"team\""));
    }

    #[test]
    fn unknown_evidence_is_null_not_zero() {
        let e = WorkloadEvidence {
            group: "pod:prod/ml/p".into(),
            cluster: "prod".into(),
            namespace: "ml".into(),
            controller_kind: String::new(),
            controller_name: String::new(),
            workloads: 1,
            buckets_seen: 2,
            bucket_ns: HOUR,
            held_ns: 2 * HOUR,
            peak_memory_bytes: None,
            peak_known_ns: 0,
            sm_max_ppm: 400_000,
            sm_p95_ppm: 400_000,
            sm_p50_ppm: 120_000,
            busy_ppm: None,
            samples: 0,
            ran_on: vec![RanOn {
                gpu_model: "NVIDIA A10G".into(),
                memory_total_bytes: 24 << 30,
                mig_profile: None,
                instance_type: "g5.xlarge".into(),
                region: "us-east-1".into(),
                held_ns: 2 * HOUR,
            }],
        };
        let v = serde_json::to_value(EvidenceView::of(&e)).unwrap();
        assert!(v["peak_memory_bytes"].is_null() && v["busy_pct"].is_null());
        assert_eq!(
            (v["hours_seen"].as_f64(), v["sm_p95_pct"].as_f64(), v["sm_p50_pct"].as_f64()),
            (Some(2.0), Some(40.0), Some(12.0))
        );
        assert_eq!(v["ran_on"][0]["held_gpu_hours"], 2.0);
    }
}
