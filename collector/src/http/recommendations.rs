//! `GET /api/v1/recommendations`: right-sizing (issue 24 item 2). Reads each workload's evidence over a window
//! (14 days by default, `docs/evidence.md`), its team and model from the costs of the same window, and asks the
//! pure `gpucost_rules::recommend` what it could run on for less at the price book's prices: a cheaper GPU, a
//! MIG profile, a shared GPU, or releasing an unused one. Every input of the saving is in the answer, so that a
//! client can recompute it (docs/recommendations.md). JSON, or CSV with `format=csv`.

use std::collections::HashMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::{ApiError, AppState, Params, QueryParams, SortedJson, bad, on_ledger, parse_window, rfc3339};
use gpucost_ledger::evidence::{EvidenceQuery, WorkloadEvidence};
use gpucost_ledger::query::CostQuery;
use gpucost_rules::recommend::{self, Evidence, Kind, Offer, Placement, Recommendation, Settings, Throughput};
use gpucost_types::dimension::Dimension;
use gpucost_types::money::usd;
use gpucost_types::policy::Policy;

const NS: u64 = 1_000_000_000;
const HOUR_NS: u64 = 3_600 * NS;
const DEFAULT_WINDOW_NS: u64 = 14 * 24 * HOUR_NS;
const DEFAULT_MIN_HOURS: u64 = 24;
const DEFAULT_IDLE_HOURS: u64 = 24;

pub fn router() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new().routes(routes!(recommendations))
}

/// `GET /api/v1/recommendations`' parameters.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecommendationParams {
    /// RFC 3339 time or Unix seconds (default: `window` before `to`); widened to the bucket
    from: Option<String>,
    /// RFC 3339 time or Unix seconds (default: now); exclusive, widened to the bucket
    to: Option<String>,
    /// the window's length when `from` is not given, e.g. `14d`, `36h` (default 14d)
    window: Option<String>,
    /// hours of evidence a workload needs for a recommendation (default 24)
    min_hours: Option<String>,
    /// hours a GPU must be held with no use before releasing it is proposed (default 24)
    idle_hours: Option<String>,
    /// only this team's workloads (the team its costs were charged to)
    team: Option<String>,
    /// only this namespace's workloads
    namespace: Option<String>,
    /// only workloads serving or training this MLflow model
    model: Option<String>,
    /// only this kind: cheaper_gpu, mig_profile, share or release
    kind: Option<String>,
    /// json (default) or csv: one line per recommendation, the columns of `RECOMMENDATIONS_CSV_COLUMNS`
    format: Option<String>,
}

impl QueryParams for RecommendationParams {}

/// `GET /api/v1/recommendations`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecommendationsBody {
    /// The window, widened to the ledger's buckets (RFC 3339).
    from: String,
    to: String,
    min_hours: u64,
    idle_hours: u64,
    /// How the monthly figures are computed from the prices given with each recommendation.
    formula: String,
    /// Sum of the savings, dollars a month (a workload's proposals are alternatives: its largest counts).
    total_saving_usd_monthly: String,
    recommendations: Vec<RecommendationView>,
}

/// A GPU (or part of one) at its price: every input of `usd_per_gpu_hour`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OfferView {
    instance_type: String,
    gpu_model: String,
    gpu_memory_bytes: u64,
    /// The MIG profile proposed or run on; null for a whole GPU.
    mig_profile: Option<String>,
    usd_per_instance_hour: String,
    gpus_per_instance: u32,
    /// The share of one GPU: MIG compute slices of 7, or 1 of the workloads sharing it; 1/1 for a whole GPU.
    share_numerator: u64,
    share_denominator: u64,
    /// floor(floor(instance price ÷ GPUs) × numerator ÷ denominator), micro-dollars.
    usd_per_gpu_hour: String,
    /// Where the price came from.
    price_source: String,
}

/// One recommendation.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecommendationView {
    /// The workload (controller level), as `GET /api/v1/evidence` names it.
    group: String,
    cluster: String,
    namespace: String,
    controller_kind: String,
    controller_name: String,
    /// The team and model its costs in the window were charged to most ("" when none).
    team: String,
    model: String,
    /// cheaper_gpu, mig_profile, share or release.
    kind: String,
    proposal: String,
    /// 0 to 1: hours seen over the window × the share of held time with a known peak.
    confidence: f64,
    /// The evidence.
    hours_seen: u64,
    peak_memory_bytes: Option<u64>,
    sm_p95_pct: f64,
    sm_max_pct: f64,
    /// GPUs held on average over the hours seen, in thousandths.
    gpus_held_milli: u64,
    current: OfferView,
    /// Null for release.
    proposed: Option<OfferView>,
    current_usd_monthly: String,
    proposed_usd_monthly: String,
    saving_usd_monthly: String,
    /// Release: what the unused GPU time cost in the window.
    spent_usd: Option<String>,
}

impl OfferView {
    fn of(o: &Offer) -> Self {
        Self {
            instance_type: o.instance_type.clone(),
            gpu_model: o.gpu_model.clone(),
            gpu_memory_bytes: o.gpu_memory_bytes,
            mig_profile: o.mig_profile.clone(),
            usd_per_instance_hour: usd(o.instance_micros_per_hour.into()),
            gpus_per_instance: o.gpus,
            share_numerator: o.share.0,
            share_denominator: o.share.1,
            usd_per_gpu_hour: usd(o.micros_per_gpu_hour.into()),
            price_source: o.source.clone(),
        }
    }
}

const FORMULA: &str = "monthly = floor(usd_per_gpu_hour × 730 × gpus_held_milli ÷ 1000); saving = current − proposed; \
usd_per_gpu_hour = floor(floor(usd_per_instance_hour ÷ gpus_per_instance) × share_numerator ÷ share_denominator), in micro-dollars";

#[derive(Debug)]
struct Found {
    settings: Settings,
    from_ns: u64,
    to_ns: u64,
    min_hours: u64,
    idle_hours: u64,
    kind: Option<Kind>,
    team: Option<String>,
    model: Option<String>,
}

impl RecommendationParams {
    fn settings(&self, now_ns: u64, bucket_ns: u64) -> Result<(Found, EvidenceQuery), ApiError> {
        let w = parse_window(self.from.as_deref(), self.to.as_deref(), None, now_ns, bucket_ns)?;
        let window_ns = match self.window.as_deref() {
            None | Some("") => DEFAULT_WINDOW_NS,
            Some(v) => {
                let d = humantime::parse_duration(v)
                    .map_err(|e| bad(format!("window: {v:?}: {e} (expected e.g. 14d or 36h)")))?;
                let ns = u64::try_from(d.as_nanos()).map_err(|_| bad(format!("window: {v:?} is too long")))?;
                if !(HOUR_NS..=400 * 24 * HOUR_NS).contains(&ns) {
                    return Err(bad(format!("window: {v:?} must be between 1h and 400d")));
                }
                ns
            }
        };
        let from_ns = match self.from {
            Some(_) => w.from_ns,
            None => w.to_ns.saturating_sub(window_ns) / bucket_ns * bucket_ns,
        };
        let kind = match self.kind.as_deref() {
            None | Some("") => None,
            Some(k) => Some(Kind::parse(k).ok_or_else(|| {
                bad(format!("kind: unknown kind {k:?}; expected cheaper_gpu, mig_profile, share or release"))
            })?),
        };
        let hours = |name: &str, v: &Option<String>, default: u64| match v.as_deref() {
            None | Some("") => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|h| *h <= 24 * 400)
                .ok_or_else(|| bad(format!("{name}: {v:?} is not a number of hours from 0 to 9600 (400 days)"))),
        };
        let min_hours = hours("min_hours", &self.min_hours, DEFAULT_MIN_HOURS)?;
        let idle_hours = hours("idle_hours", &self.idle_hours, DEFAULT_IDLE_HOURS)?;
        let given = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let found = Found {
            settings: Settings {
                window_ns: w.to_ns - from_ns,
                min_seen_ns: min_hours * HOUR_NS,
                idle_after_ns: idle_hours * HOUR_NS,
                at_ns: w.to_ns.min(now_ns),
            },
            from_ns,
            to_ns: w.to_ns,
            min_hours,
            idle_hours,
            kind,
            team: given(&self.team),
            model: given(&self.model),
        };
        let query = EvidenceQuery { from_ns, to_ns: w.to_ns, cluster: None, namespace: given(&self.namespace) };
        Ok((found, query))
    }
}

fn evidence_of(e: &WorkloadEvidence) -> Option<Evidence> {
    let on = e.ran_on.first()?;
    Some(Evidence {
        group: e.group.clone(),
        controller_kind: e.controller_kind.clone(),
        seen_ns: e.buckets_seen * e.bucket_ns,
        held_ns: e.held_ns,
        peak_memory_bytes: e.peak_memory_bytes,
        peak_known_ns: e.peak_known_ns,
        sm_max_ppm: e.sm_max_ppm,
        sm_p95_ppm: e.sm_p95_ppm,
        on: Placement {
            gpu_model: on.gpu_model.clone(),
            memory_total_bytes: on.memory_total_bytes,
            mig_profile: on.mig_profile.clone(),
            instance_type: on.instance_type.clone(),
            region: on.region.clone(),
        },
    })
}

/// (cluster, namespace, `<kind>/<name>`) → (team, model) its costs were charged to most.
type Owners = HashMap<(String, String, String), (String, String)>;

fn owners_of(rows: &[gpucost_ledger::query::CostRow]) -> Owners {
    let mut best: HashMap<(String, String, String), (u128, String, String)> = HashMap::new();
    for r in rows {
        let [cluster, namespace, controller, team, model] = &r.group[..] else { continue };
        let e = best.entry((cluster.clone(), namespace.clone(), controller.clone())).or_default();
        if r.held_ns > e.0 {
            *e = (r.held_ns, team.clone(), model.clone());
        }
    }
    best.into_iter().map(|(k, (_, t, m))| (k, (t, m))).collect()
}

fn pct(ppm: u32) -> f64 {
    f64::from(ppm) / 10_000.0
}

fn view(r: &Recommendation, e: &WorkloadEvidence, owners: &Owners) -> RecommendationView {
    let controller = format!("{}/{}", e.controller_kind, e.controller_name);
    let (team, model) = owners.get(&(e.cluster.clone(), e.namespace.clone(), controller)).cloned().unwrap_or_default();
    RecommendationView {
        group: r.group.clone(),
        cluster: e.cluster.clone(),
        namespace: e.namespace.clone(),
        controller_kind: e.controller_kind.clone(),
        controller_name: e.controller_name.clone(),
        team,
        model,
        kind: r.kind.name().to_string(),
        proposal: r.proposal.clone(),
        confidence: f64::from(r.confidence_ppm) / 1e6,
        hours_seen: e.buckets_seen * e.bucket_ns / HOUR_NS,
        peak_memory_bytes: e.peak_memory_bytes,
        sm_p95_pct: pct(e.sm_p95_ppm),
        sm_max_pct: pct(e.sm_max_ppm),
        gpus_held_milli: r.gpus_held_milli,
        current: OfferView::of(&r.current),
        proposed: r.proposed.as_ref().map(OfferView::of),
        current_usd_monthly: usd(r.current_monthly.into()),
        proposed_usd_monthly: usd(r.proposed_monthly.into()),
        saving_usd_monthly: usd(r.saving_monthly.into()),
        spent_usd: r.spent.map(|m| usd(m.into())),
    }
}

/// The costs query that names each controller's team and model over the window (`owners_of` reads its rows).
fn owners_query(found: &Found, filters: Vec<(Dimension, String)>) -> CostQuery {
    CostQuery {
        from_ns: found.from_ns,
        to_ns: found.to_ns,
        group_by: vec![
            Dimension::Cluster,
            Dimension::Namespace,
            Dimension::Controller,
            Dimension::Team,
            Dimension::Model,
        ],
        filters,
        policy: Policy::Hybrid,
    }
}

/// The recommendations of a window, filtered; shared with the savings gauge.
pub(crate) async fn body(s: &AppState, params: &RecommendationParams) -> Result<RecommendationsBody, ApiError> {
    let bucket_ns = s.ledger.bucket_ns();
    let (found, query) = params.settings(gpucost_types::clock::now_ns(), bucket_ns)?;
    let costs = owners_query(&found, query.namespace.iter().map(|n| (Dimension::Namespace, n.clone())).collect());
    let (evidence, report) = on_ledger(s, move |l| Ok((l.evidence(&query)?, l.costs(&costs)?))).await?;
    let owners = owners_of(&report.rows);
    let inputs: Vec<Evidence> = evidence.iter().filter_map(evidence_of).collect();
    let by_group: HashMap<&str, &WorkloadEvidence> = evidence.iter().map(|e| (e.group.as_str(), e)).collect();
    let recs = recommend::recommend(&inputs, &s.prices, &Throughput::shipped(), &found.settings);
    let views: Vec<RecommendationView> = recs
        .iter()
        .filter(|r| found.kind.is_none_or(|k| k == r.kind))
        .filter_map(|r| by_group.get(r.group.as_str()).map(|e| view(r, e, &owners)))
        .filter(|v| found.team.as_ref().is_none_or(|t| *t == v.team))
        .filter(|v| found.model.as_ref().is_none_or(|m| *m == v.model))
        .collect();
    let mut best: HashMap<&str, u64> = HashMap::new();
    for r in recs.iter().filter(|r| views.iter().any(|v| v.group == r.group && v.kind == r.kind.name())) {
        let b = best.entry(r.group.as_str()).or_default();
        *b = (*b).max(r.saving_monthly);
    }
    let total: u128 = best.values().map(|&m| u128::from(m)).sum();
    Ok(RecommendationsBody {
        from: rfc3339(found.from_ns),
        to: rfc3339(found.to_ns),
        min_hours: found.min_hours,
        idle_hours: found.idle_hours,
        formula: FORMULA.to_string(),
        total_saving_usd_monthly: usd(total),
        recommendations: views,
    })
}

/// Potential monthly savings per team over the last 14 days with the defaults (each workload's largest
/// saving), for the `gpucost_recommendation_savings_usd_monthly` gauge (`jobs::recommendation_savings`).
pub fn savings_by_team(
    ledger: &dyn gpucost_ledger::Ledger,
    book: &gpucost_rules::book::PriceBook,
    now_ns: u64,
) -> anyhow::Result<Vec<(String, u64)>> {
    let bucket_ns = ledger.bucket_ns();
    let (found, query) =
        RecommendationParams::default().settings(now_ns, bucket_ns).map_err(|e| anyhow::anyhow!(e.1))?;
    let costs = owners_query(&found, vec![]);
    let evidence = ledger.evidence(&query)?;
    let owners = owners_of(&ledger.costs(&costs)?.rows);
    let inputs: Vec<Evidence> = evidence.iter().filter_map(evidence_of).collect();
    let recs = recommend::recommend(&inputs, book, &Throughput::shipped(), &found.settings);
    let mut best: HashMap<&str, u64> = HashMap::new();
    for r in &recs {
        let b = best.entry(r.group.as_str()).or_default();
        *b = (*b).max(r.saving_monthly);
    }
    let mut teams: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for e in &evidence {
        let Some(saving) = best.get(e.group.as_str()) else { continue };
        let controller = format!("{}/{}", e.controller_kind, e.controller_name);
        let team =
            owners.get(&(e.cluster.clone(), e.namespace.clone(), controller)).map(|o| o.0.clone()).unwrap_or_default();
        *teams.entry(team).or_default() += saving;
    }
    Ok(teams.into_iter().collect())
}

#[utoipa::path(
    get,
    path = "/api/v1/recommendations",
    tag = "costs",
    summary = "Right-sizing per workload over a window (14 days by default): a cheaper GPU, a MIG profile, sharing a GPU or releasing an unused one, with the evidence, a confidence and the monthly saving at the price book's prices",
    params(RecommendationParams),
    responses((status = 200, description = "OK: JSON, or with `format=csv` one line per recommendation (RFC 4180, a header line)", content(
        (RecommendationsBody = "application/json"),
        (String = "text/csv; charset=utf-8")
    )), (status = 400, description = "A parameter is wrong; the message names it", body = crate::http::doc::ErrorBody), (status = 503, description = "The ledger does not answer", body = crate::http::doc::ErrorBody))
)]
async fn recommendations(
    State(s): State<AppState>,
    Params(params): Params<RecommendationParams>,
) -> Result<Response, ApiError> {
    let csv = match params.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(f) => return Err(bad(format!("format: unknown format {f:?}; expected json or csv"))),
    };
    let body = body(&s, &params).await?;
    if !csv {
        return Ok(SortedJson(body).into_response());
    }
    let name = format!("gpucost-recommendations-{}-{}.csv", body.from, body.to).replace(':', "");
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (axum::http::header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        recommendations_csv(&body),
    )
        .into_response())
}

const RECOMMENDATIONS_CSV_COLUMNS: [&str; 21] = [
    "group",
    "team",
    "namespace",
    "model",
    "kind",
    "proposal",
    "confidence",
    "hours_seen",
    "peak_memory_bytes",
    "sm_p95_pct",
    "gpus_held_milli",
    "current_instance_type",
    "current_usd_per_gpu_hour",
    "proposed_instance_type",
    "proposed_mig_profile",
    "proposed_share",
    "proposed_usd_per_gpu_hour",
    "current_usd_monthly",
    "proposed_usd_monthly",
    "saving_usd_monthly",
    "spent_usd",
];

fn recommendations_csv(body: &RecommendationsBody) -> String {
    use gpucost_report::chargeback::csv_field;
    let mut out = RECOMMENDATIONS_CSV_COLUMNS.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(",");
    out.push_str("\r\n");
    for r in &body.recommendations {
        let p = r.proposed.as_ref();
        let fields: Vec<String> = vec![
            r.group.clone(),
            r.team.clone(),
            r.namespace.clone(),
            r.model.clone(),
            r.kind.clone(),
            r.proposal.clone(),
            format!("{:.3}", r.confidence),
            r.hours_seen.to_string(),
            r.peak_memory_bytes.map_or(String::new(), |b| b.to_string()),
            r.sm_p95_pct.to_string(),
            r.gpus_held_milli.to_string(),
            r.current.instance_type.clone(),
            r.current.usd_per_gpu_hour.clone(),
            p.map_or(String::new(), |o| o.instance_type.clone()),
            p.and_then(|o| o.mig_profile.clone()).unwrap_or_default(),
            p.map_or(String::new(), |o| format!("{}/{}", o.share_numerator, o.share_denominator)),
            p.map_or(String::new(), |o| o.usd_per_gpu_hour.clone()),
            r.current_usd_monthly.clone(),
            r.proposed_usd_monthly.clone(),
            r.saving_usd_monthly.clone(),
            r.spent_usd.clone().unwrap_or_default(),
        ];
        out.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Found, String> {
        let map = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let p = RecommendationParams::from_map(map).map_err(|e| e.1)?;
        p.settings(100 * 86_400 * NS + 1, HOUR_NS).map(|(f, _)| f).map_err(|e| e.1)
    }

    #[test]
    fn the_window_defaults_to_14_days_with_24_hours_of_evidence_and_both_are_configurable() {
        let f = settings(&[]).unwrap();
        assert_eq!((f.settings.window_ns, f.min_hours, f.settings.min_seen_ns), (DEFAULT_WINDOW_NS, 24, 24 * HOUR_NS));
        let f = settings(&[("window", "3d"), ("min_hours", "48"), ("kind", "release")]).unwrap();
        assert_eq!(
            (f.settings.window_ns, f.settings.min_seen_ns, f.kind),
            (3 * 24 * HOUR_NS, 48 * HOUR_NS, Some(Kind::Release))
        );
        assert!(settings(&[("kind", "resize")]).unwrap_err().contains("unknown kind \"resize\""));
        assert!(settings(&[("min_hours", "-1")]).unwrap_err().contains("min_hours: \"-1\""));
        assert!(settings(&[("window", "soon")]).unwrap_err().contains("window: \"soon\""));
        assert!(settings(&[("cluster_of", "x")]).unwrap_err().contains("unknown parameter"));
    }
}
