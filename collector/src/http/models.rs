//! `GET /api/v1/models/{name}?from=&to=&cluster=&policy=`: one MLflow model's costs over a window — what serving
//! it cost, its versions, the runs that trained it and their cost, the idle share of each — with links to the
//! model, its versions and runs in MLflow's UI when `--mlflow-ui-url` (default: `--mlflow-url`) is set.
//! Training is GPU time of workloads that carry an MLflow run id; serving is the model's other GPU time
//! (docs/owners.md#a-models-costs).

use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::{
    ApiError, AppState, Params, QueryParams, SortedJson, bad, on_ledger, parse_time, parse_window, rfc3339,
};
use gpucost_report::model::{ModelCosts, RunCosts, Seen, Spend, VersionCosts};
use gpucost_types::money::usd;
use gpucost_types::policy::Policy;

const NS: u128 = 1_000_000_000;

pub fn router() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new().routes(routes!(model))
}

/// `GET /api/v1/models/{name}`'s parameters.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ModelParams {
    /// RFC 3339 time or Unix seconds (default: 30 days before `to`); widened to the bucket
    from: Option<String>,
    /// RFC 3339 time or Unix seconds (default: now); exclusive, widened to the bucket
    to: Option<String>,
    /// only this cluster's GPU time
    cluster: Option<String>,
    /// how idle GPU time is split: `hybrid` (default: the holder pays for the idle GPUs it holds),
    /// `allocation` or `utilization` (docs/cost-model.md)
    policy: Option<String>,
}

impl QueryParams for ModelParams {}

/// GPU time and its cost.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpendView {
    held_gpu_seconds: f64,
    used_gpu_seconds: f64,
    used_usd: String,
    idle_usd: String,
    total_usd: String,
    total_micros: u128,
    idle_micros: u128,
    /// The idle share of the total, percent; null when nothing was spent.
    idle_pct: Option<f64>,
}

impl SpendView {
    fn of(s: &Spend) -> Self {
        let secs = |ns: u128| (ns / NS) as f64 + (ns % NS) as f64 / NS as f64;
        Self {
            held_gpu_seconds: secs(s.held_ns),
            used_gpu_seconds: secs(s.used_ns),
            used_usd: usd(s.used),
            idle_usd: usd(s.idle),
            total_usd: usd(s.total()),
            total_micros: s.total(),
            idle_micros: s.idle,
            idle_pct: s.idle_ppm().map(|ppm| ppm as f64 / 10_000.0),
        }
    }
}

/// One version of the model.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionView {
    /// The `mlflow.org/model-version` label; empty for the model's workloads that named no version.
    version: String,
    /// Serving this version: its workloads without a run.
    serving: SpendView,
    /// Its workloads with a run.
    training: SpendView,
    /// Those runs.
    runs: Vec<String>,
    /// The first and last UTC day (`YYYY-MM-DD`) of the window with GPU time of this version.
    first_day: String,
    last_day: String,
    /// The version in MLflow's UI; null without an MLflow URL or a version.
    mlflow_url: Option<String>,
}

/// One MLflow run of the model.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    run: String,
    /// The workloads' `MLFLOW_EXPERIMENT_ID`; empty when they gave none.
    experiment: String,
    /// The model versions its workloads were labelled with.
    versions: Vec<String>,
    cost: SpendView,
    first_day: String,
    last_day: String,
    /// The run in MLflow's UI; null without an MLflow URL.
    mlflow_url: Option<String>,
}

/// `GET /api/v1/models/{name}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelBody {
    model: String,
    /// The window, widened to the ledger's buckets (RFC 3339).
    from: String,
    to: String,
    policy: String,
    /// The cluster asked for; null for every cluster.
    cluster: Option<String>,
    /// Serving and training together.
    total: SpendView,
    serving: SpendView,
    training: SpendView,
    /// Newest first (numeric versions by number); the unversioned last.
    versions: Vec<VersionView>,
    /// Most expensive first.
    runs: Vec<RunView>,
    /// The registered model in MLflow's UI; null without an MLflow URL.
    mlflow_url: Option<String>,
}

/// Links into MLflow's web UI (its hash routes: `#/models/<name>`, `#/models/<name>/versions/<v>`,
/// `#/experiments/<id>/runs/<run>`, and `#/runs/<run>` when the experiment is not known).
struct MlflowUi<'a>(Option<&'a str>);

impl MlflowUi<'_> {
    fn at(&self, route: String) -> Option<String> {
        self.0.map(|base| format!("{}/#/{route}", base.trim_end_matches('/')))
    }
    fn model(&self, name: &str) -> Option<String> {
        self.at(format!("models/{}", enc(name)))
    }
    fn version(&self, name: &str, version: &str) -> Option<String> {
        (!version.is_empty()).then(|| self.at(format!("models/{}/versions/{}", enc(name), enc(version))))?
    }
    fn run(&self, run: &str, experiment: &str) -> Option<String> {
        if experiment.is_empty() {
            self.at(format!("runs/{}", enc(run)))
        } else {
            self.at(format!("experiments/{}/runs/{}", enc(experiment), enc(run)))
        }
    }
}

/// Percent-encodes what is not unreserved in a URL path segment.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn days(seen: &Seen) -> (String, String) {
    (seen.first_day.clone(), seen.last_day.clone())
}

impl ModelBody {
    fn of(model: &str, costs: &ModelCosts, ui: &MlflowUi<'_>) -> Self {
        let version = |v: &VersionCosts| {
            let (first_day, last_day) = days(&v.seen);
            VersionView {
                version: v.version.clone(),
                serving: SpendView::of(&v.serving),
                training: SpendView::of(&v.training),
                runs: v.runs.iter().cloned().collect(),
                first_day,
                last_day,
                mlflow_url: ui.version(model, &v.version),
            }
        };
        let run = |r: &RunCosts| {
            let (first_day, last_day) = days(&r.seen);
            RunView {
                run: r.run.clone(),
                experiment: r.experiment.clone(),
                versions: r.versions.iter().cloned().collect(),
                cost: SpendView::of(&r.spend),
                first_day,
                last_day,
                mlflow_url: ui.run(&r.run, &r.experiment),
            }
        };
        ModelBody {
            model: model.to_string(),
            from: String::new(),
            to: String::new(),
            policy: String::new(),
            cluster: None,
            total: SpendView::of(&costs.total()),
            serving: SpendView::of(&costs.serving),
            training: SpendView::of(&costs.training),
            versions: costs.versions.iter().map(version).collect(),
            runs: costs.runs.iter().map(run).collect(),
            mlflow_url: ui.model(model),
        }
    }
}

const DEFAULT_SPAN_NS: u64 = 30 * 86_400 * 1_000_000_000;

#[utoipa::path(
    get,
    path = "/api/v1/models/{name}",
    tag = "costs",
    summary = "One MLflow model's costs over a window: serving and training, per version and per run, with idle shares and MLflow links",
    params(("name" = String, Path, description = "the model's name (`mlflow.org/model-name`)"), ModelParams),
    responses((status = 200, description = "OK (a model without GPU time in the window has zeros and no versions)", body = ModelBody), (status = 400, description = "A parameter is wrong; the message names it", body = crate::http::doc::ErrorBody), (status = 503, description = "The ledger does not answer", body = crate::http::doc::ErrorBody))
)]
async fn model(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Params(params): Params<ModelParams>,
) -> Result<SortedJson<ModelBody>, ApiError> {
    if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
        return Err(bad("name: a model name is 1 to 256 characters, none of them control characters"));
    }
    let now = gpucost_types::clock::now_ns();
    let to_ns = params.to.as_deref().map(|v| parse_time("to", v)).transpose()?.unwrap_or(now);
    let from_default = (to_ns.saturating_sub(DEFAULT_SPAN_NS) / 1_000_000_000).to_string();
    let from = params.from.as_deref().or(Some(&from_default));
    let w = parse_window(from, params.to.as_deref(), None, now, s.ledger.bucket_ns())?;
    let policy = match params.policy.as_deref() {
        None => Policy::Hybrid,
        Some(p) => Policy::parse(p)
            .ok_or_else(|| bad(format!("policy: unknown policy {p:?}; expected allocation, utilization or hybrid")))?,
    };
    let cluster = params.cluster.clone().filter(|c| !c.is_empty());
    let (window, model_name, c) = ((w.from_ns, w.to_ns), name.clone(), cluster.clone());
    let costs =
        on_ledger(&s, move |l| gpucost_report::model::model_costs(l, &model_name, window, c.as_deref(), policy))
            .await?;
    let mut body = ModelBody::of(&name, &costs, &MlflowUi(s.mlflow_ui.as_deref()));
    body.from = rfc3339(w.from_ns);
    body.to = rfc3339(w.to_ns);
    body.policy = policy.name().to_string();
    body.cluster = cluster;
    Ok(SortedJson(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlflow_links_follow_its_ui_routes_and_encode_names() {
        let ui = MlflowUi(Some("https://mlflow.example.com/"));
        assert_eq!(ui.model("ranker v2").as_deref(), Some("https://mlflow.example.com/#/models/ranker%20v2"));
        assert_eq!(ui.version("ranker", "3").as_deref(), Some("https://mlflow.example.com/#/models/ranker/versions/3"));
        assert_eq!(ui.version("ranker", ""), None);
        assert_eq!(ui.run("abc", "7").as_deref(), Some("https://mlflow.example.com/#/experiments/7/runs/abc"));
        assert_eq!(ui.run("abc", "").as_deref(), Some("https://mlflow.example.com/#/runs/abc"));
        assert_eq!(MlflowUi(None).model("ranker"), None);
    }

    #[test]
    fn the_body_carries_every_version_and_run_with_exact_money() {
        use gpucost_ledger::CostRow;
        let row = |v: &str, run: &str, used: u128, idle: u128| CostRow {
            group: vec![v.into(), run.into(), "4".into(), "2026-11-02".into()],
            used,
            idle,
            held_ns: 3_600 * NS,
            used_ns: 1_800 * NS,
            energy_mj: 0,
            co2e_mg: None,
        };
        let costs = ModelCosts::from_rows(&[row("2", "", 1_500_000, 500_000), row("2", "r1", 7_000_001, 0)]);
        let v = serde_json::to_value(ModelBody::of("ranker", &costs, &MlflowUi(Some("http://m")))).unwrap();
        assert_eq!(v["total"]["total_usd"], "9.000001");
        assert_eq!(v["serving"]["idle_pct"], 25.0);
        assert_eq!(v["training"]["total_micros"], 7_000_001);
        assert_eq!(v["versions"][0]["version"], "2");
        assert_eq!(v["versions"][0]["runs"][0], "r1");
        assert_eq!(v["versions"][0]["mlflow_url"], "http://m/#/models/ranker/versions/2");
        assert_eq!(v["runs"][0]["mlflow_url"], "http://m/#/experiments/4/runs/r1");
        assert_eq!(v["runs"][0]["cost"]["held_gpu_seconds"], 3600.0);
        assert_eq!(v["mlflow_url"], "http://m/#/models/ranker");
    }
}
