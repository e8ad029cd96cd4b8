//! The HTTP side: health, readiness and the usage API.
//!
//! `GET /api/v1/usage?from=&to=&group_by=`: GPU-seconds observed, held and used over [from, to), grouped
//! by any of `cluster`, `node`, `gpu`, `workload` (comma-separated). `from`/`to` are RFC 3339 times or Unix
//! seconds; they default to the last 24 hours and are widened to the ledger's bucket boundaries (the
//! answer says which window it covers). Bad parameters get 400 with a message that names them.
//!
//! Each endpoint's parameters are a struct (`Params<T>` reads them, and the same struct documents them) and
//! each answer a type the OpenAPI description shows as its schema, so a client can be generated from it.

pub mod alerts;
pub mod backstage;
pub mod budgets;
pub mod cost_insights;
pub mod doc;
pub mod evidence;
pub mod history;
pub mod live;
pub mod models;
pub mod recommendations;
pub mod reports;
pub mod web;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{FromRequestParts, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::jobs::SharedInventory;
use crate::metrics::Metrics;
use gpucost_ledger::{CostQuery, Dimension, GpuTime, Ledger, MAX_FILTER_TERMS, MAX_LABEL_DIMENSIONS, UsageQuery};
use gpucost_report::chargeback::{UNATTRIBUTED, by_leading};
use gpucost_types::money::usd;
use gpucost_types::policy::Policy;

const NS: u64 = 1_000_000_000;
/// The widest window one query may cover.
const MAX_WINDOW_NS: u64 = 400 * 86_400 * NS;

#[derive(Clone)]
pub struct AppState {
    pub ledger: Arc<dyn Ledger>,
    pub metrics: Arc<Metrics>,
    /// What AWS discovery found, when it is on.
    pub inventory: Option<SharedInventory>,
    /// The catalog and rules that name owners, when configured.
    pub owners: Option<crate::enrich::SharedOwners>,
    /// Cost centres and FOCUS parties.
    pub reports: Arc<crate::http::reports::ReportConfig>,
    /// Wakes the budget evaluation after a budget changed.
    pub budget_poke: Arc<tokio::sync::Notify>,
    /// The latest interval of every GPU.
    pub fleet: Arc<crate::live::Fleet>,
    /// Who may read and who may change.
    pub auth: Arc<crate::auth::Auth>,
    /// Longest a request may take (the live stream excepted).
    pub http_timeout: Duration,
    /// MLflow's web UI, for links to models, versions and runs (`--mlflow-ui-url`, default `--mlflow-url`).
    pub mlflow_ui: Option<String>,
    /// The prices in force, for right-sizing's proposals (`recommendations`).
    pub prices: Arc<gpucost_rules::book::PriceBook>,
}

/// Answers 503 for a request that takes longer than `--http-request-timeout` (the live stream excepted).
async fn time_limit(State(s): State<AppState>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if req.uri().path() == "/api/v1/live" {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    match tokio::time::timeout(s.http_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            s.metrics.limit_breach("http_timeout");
            tracing::warn!(path, timeout = ?s.http_timeout, "an HTTP request took too long");
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{path} took longer than {:?} (--http-request-timeout); try a smaller window", s.http_timeout),
            )
            .into_response()
        }
    }
}

/// Every API error is `{"error": …}`: what axum answers by itself (a body over the limit, 413; a query string
/// that does not parse, 400) comes as text and is rewritten here.
async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let r = next.run(req).await;
    let json = r
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if !api || json || !(r.status().is_client_error() || r.status().is_server_error()) {
        return r;
    }
    let status = r.status();
    let text = axum::body::to_bytes(r.into_body(), 64 * 1024).await.unwrap_or_default();
    ApiError(status, String::from_utf8_lossy(&text).trim().to_string()).into_response()
}

/// API and dashboard access: health checks and the OpenAPI description are open; changing budgets and closing periods need an
/// `admin` token; everything else a `read` (or `admin`) token, unless the collector runs `--insecure`.
async fn authorize(State(s): State<AppState>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use crate::auth::{Refusal, Scope};
    let path = req.uri().path();
    // Probes, and the API's description (Backstage's API entity reads it), are open.
    if path == "/healthz" || path == "/readyz" || path == "/api/v1/openapi.json" {
        return next.run(req).await;
    }
    let changes =
        matches!(*req.method(), axum::http::Method::PUT | axum::http::Method::DELETE | axum::http::Method::POST)
            && (path.starts_with("/api/v1/budgets/") || path.starts_with("/api/v1/periods/"));
    let scope = if changes { Scope::Admin } else { Scope::Read };
    let header = req.headers().get("authorization").and_then(|v| v.to_str().ok());
    let oidc = req.headers().get("x-amzn-oidc-data").and_then(|v| v.to_str().ok()).map(str::to_string);
    match s.auth.api(header, scope) {
        Ok(()) => next.run(req).await,
        Err(Refusal::Missing) if oidc.is_some() && s.auth.alb.is_some() => {
            let (alb, jwt) = (s.auth.alb.clone().expect("checked"), oidc.expect("checked"));
            let now_s = gpucost_types::clock::now_ns() / 1_000_000_000;
            match tokio::task::spawn_blocking(move || alb.verify(&jwt, now_s)).await {
                Ok(Ok(user)) if scope == Scope::Admin && !user.admin => ApiError(
                    StatusCode::FORBIDDEN,
                    format!("{} may read; this needs admin (--alb-oidc-admins)", user.name),
                )
                .into_response(),
                Ok(Ok(_)) => next.run(req).await,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "refused an ALB OIDC identity");
                    ApiError(StatusCode::UNAUTHORIZED, format!("x-amzn-oidc-data: {e}")).into_response()
                }
                Err(e) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
            }
        }
        Err(e @ Refusal::NeedsAdmin(_)) => ApiError(StatusCode::FORBIDDEN, e.to_string()).into_response(),
        Err(e) => {
            let mut r =
                ApiError(StatusCode::UNAUTHORIZED, format!("{e}; this collector needs an API token")).into_response();
            r.headers_mut()
                .insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer realm=\"gpucost\""));
            r
        }
    }
}

#[utoipa::path(get, path = "/healthz", tag = "health", summary = "200 while the process runs", responses((status = 200, description = "ok", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok\n"
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    summary = "Prometheus metrics (docs/metrics.md)",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"))
)]
async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    ([("content-type", "text/plain; version=0.0.4")], s.metrics.render())
}

/// The collector's HTTP routes: the API (described at `/api/v1/openapi.json`, generated from the same
/// routes), the web dashboard, and JSON errors for unknown paths and methods.
pub fn router(state: AppState) -> Router {
    use utoipa::OpenApi;
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;
    let (api, spec) = OpenApiRouter::with_openapi(crate::http::doc::ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(usage))
        .routes(routes!(costs))
        .routes(routes!(prices))
        .routes(routes!(conflicts))
        .routes(routes!(inventory))
        .routes(routes!(metrics))
        .merge(crate::http::backstage::router())
        .merge(crate::http::reports::router())
        .merge(crate::http::budgets::router())
        .merge(crate::http::alerts::router())
        .merge(crate::http::live::router())
        .merge(crate::http::history::router())
        .merge(crate::http::evidence::router())
        .merge(crate::http::recommendations::router())
        .merge(crate::http::models::router())
        .split_for_parts();
    let spec = Arc::new(spec.to_pretty_json().expect("the OpenAPI description serialises"));
    api.route(
        "/api/v1/openapi.json",
        get(move || {
            let spec = spec.clone();
            async move { ([("content-type", "application/json")], spec.as_str().to_string()) }
        }),
    )
    .merge(crate::http::web::router())
    .fallback(crate::http::doc::not_found)
    .method_not_allowed_fallback(crate::http::doc::method_not_allowed)
    .layer(axum::middleware::from_fn_with_state(state.clone(), time_limit))
    .layer(axum::middleware::from_fn_with_state(state.clone(), authorize))
    .layer(axum::middleware::from_fn(json_errors))
    .with_state(state)
}

pub(crate) struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(crate::http::doc::ErrorBody { error: self.1 })).into_response()
    }
}

/// A JSON answer whose objects have their keys in alphabetical order, as the API wrote them when its answers
/// were built as `serde_json::Value`s: a typed answer serialises byte for byte as it did then.
pub(crate) struct SortedJson<T>(pub T);

impl<T: Serialize> IntoResponse for SortedJson<T> {
    fn into_response(self) -> Response {
        match serde_json::to_value(&self.0) {
            Ok(v) => Json(v).into_response(),
            Err(e) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("the answer does not serialise: {e}"))
                .into_response(),
        }
    }
}

/// An endpoint's query parameters: the fields of a struct, which `IntoParams` describes in the OpenAPI
/// document and which names the parameters the endpoint takes.
pub(crate) trait QueryParams: serde::de::DeserializeOwned + IntoParams {
    /// Whether a parameter the struct does not name is refused (400, naming it) rather than ignored.
    const STRICT: bool = true;

    /// The parameters from a query string read into a map (a repeated parameter keeps its last value).
    fn from_map(params: HashMap<String, String>) -> Result<Self, ApiError> {
        if Self::STRICT {
            let names: Vec<String> = Self::into_params(|| Some(utoipa::openapi::path::ParameterIn::Query))
                .into_iter()
                .map(|p| p.name)
                .collect();
            if let Some(unknown) = params.keys().find(|k| !names.contains(k)) {
                return Err(bad(format!("unknown parameter {unknown:?}; expected {}", names.join(", "))));
            }
        }
        // Every field is text that its handler parses and checks (naming the parameter), so the map reads
        // into the struct as a JSON object of strings.
        let object = params.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        serde_json::from_value(Value::Object(object)).map_err(|e| bad(format!("parameters: {e}")))
    }
}

/// Extracts a [`QueryParams`] struct from the query string.
pub(crate) struct Params<T>(pub T);

impl<S: Send + Sync, T: QueryParams> FromRequestParts<S> for Params<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Response> {
        let Query(map) = Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        T::from_map(map).map(Params).map_err(IntoResponse::into_response)
    }
}

pub(crate) fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    summary = "Ready when the ledger answers",
    responses((status = 200, description = "Ready", body = String, content_type = "text/plain"), (status = 503, description = "The ledger does not answer", body = String, content_type = "text/plain"))
)]
async fn readyz(State(s): State<AppState>) -> Response {
    match tokio::task::spawn_blocking(move || s.ledger.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("ledger not ready: {e}\n")).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("ledger not ready: {e}\n")).into_response(),
    }
}

/// A time parameter: RFC 3339 (`2026-11-01T00:00:00Z`) or Unix seconds.
pub(crate) fn parse_time(name: &str, value: &str) -> Result<u64, ApiError> {
    gpucost_types::period::parse_instant(name, value).map_err(bad)
}

/// Refuses a query that reads more labels than [`MAX_LABEL_DIMENSIONS`]: each is a join, and past SQLite's 64
/// tables a join is the database's error, not the caller's.
fn check_label_dimensions<'a>(dims: impl Iterator<Item = &'a Dimension>) -> Result<(), ApiError> {
    let labels = dims.filter(|d| d.reads_labels()).count();
    if labels > MAX_LABEL_DIMENSIONS {
        return Err(bad(format!(
            "group_by and filter read {labels} labels (label:<key>, model, model_version, run, experiment); at most {MAX_LABEL_DIMENSIONS}"
        )));
    }
    Ok(())
}

fn rfc3339(ns: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
}

fn dimension(param: &str, name: &str) -> Result<Dimension, ApiError> {
    Dimension::parse(name).ok_or_else(|| {
        let known: Vec<String> = Dimension::FIXED.iter().map(Dimension::name).collect();
        bad(format!("{param}: unknown dimension {name:?}; expected any of {}, label:<key>", known.join(", ")))
    })
}

/// `GET /api/v1/usage`'s parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UsageParams {
    /// RFC 3339 time or Unix seconds, until 2262-01-01T00:00:00Z (default: 24 hours before `to`)
    from: Option<String>,
    /// RFC 3339 time or Unix seconds, until 2262-01-01T00:00:00Z (default: now); exclusive
    to: Option<String>,
    /// comma-separated dimensions: cluster, node, gpu, workload, kind, namespace, pod, controller, container, ecs_task, slurm_job, user, owner, team, department, component, system, model, model_version, run, experiment, day, label:<key>; at most 16 of them, with any filter's, read labels (label:<key>, model, model_version, run, experiment)
    group_by: Option<String>,
}

impl QueryParams for UsageParams {}

/// `GET /api/v1/costs`'s parameters: the window and grouping of [`UsageParams`], a filter and a policy.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CostsParams {
    /// RFC 3339 time or Unix seconds, until 2262-01-01T00:00:00Z (default: 24 hours before `to`)
    from: Option<String>,
    /// RFC 3339 time or Unix seconds, until 2262-01-01T00:00:00Z (default: now); exclusive
    to: Option<String>,
    /// comma-separated dimensions: cluster, node, gpu, workload, kind, namespace, pod, controller, container, ecs_task, slurm_job, user, owner, team, department, component, system, model, model_version, run, experiment, day, label:<key>; at most 16 of them, with any filter's, read labels (label:<key>, model, model_version, run, experiment)
    group_by: Option<String>,
    /// <dimension>=<value>, comma-separated; at most 32; in a value `\,` is a comma and `\\` a backslash
    filter: Option<String>,
    /// allocation, utilization or hybrid (default)
    policy: Option<String>,
    /// json (default) or csv: the rows only, one line each, as `<group_by dimensions…>,used_usd,idle_usd,total_usd,held_gpu_seconds,used_gpu_seconds,energy_kwh,co2e_kg`, in the JSON's order
    format: Option<String>,
}

impl QueryParams for CostsParams {}

/// The window (`from`, `to`, widened to buckets) and the grouping that usage and cost queries share.
fn parse_window(
    from: Option<&str>,
    to: Option<&str>,
    group_by: Option<&str>,
    now_ns: u64,
    bucket_ns: u64,
) -> Result<UsageQuery, ApiError> {
    let to = to.map(|v| parse_time("to", v)).transpose()?.unwrap_or(now_ns);
    let from = from.map(|v| parse_time("from", v)).transpose()?.unwrap_or(to.saturating_sub(86_400 * NS));
    if from >= to {
        return Err(bad(format!("from ({}) must be before to ({})", rfc3339(from), rfc3339(to))));
    }
    if to - from > MAX_WINDOW_NS {
        return Err(bad("the window from..to is longer than 400 days"));
    }
    let mut dims = Vec::new();
    for name in group_by.unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let d = dimension("group_by", name)?;
        if dims.contains(&d) {
            return Err(bad(format!("group_by: {name} is given twice")));
        }
        dims.push(d);
    }
    check_label_dimensions(dims.iter())?;
    let from_ns = from / bucket_ns * bucket_ns;
    let to_ns = to.div_ceil(bucket_ns) * bucket_ns;
    Ok(UsageQuery { from_ns, to_ns, group_by: dims })
}

fn parse_query(p: &UsageParams, now_ns: u64, bucket_ns: u64) -> Result<UsageQuery, ApiError> {
    parse_window(p.from.as_deref(), p.to.as_deref(), p.group_by.as_deref(), now_ns, bucket_ns)
}

/// The terms of a `filter=` value: split at commas, where `\,` is a comma inside a value and `\\` a backslash
/// (any other backslash is itself).
fn filter_terms(s: &str) -> Vec<String> {
    let mut terms = vec![String::new()];
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some(&next)) if next == ',' || next == '\\' => {
                terms.last_mut().expect("never empty").push(next);
                chars.next();
            }
            (',', _) => terms.push(String::new()),
            (c, _) => terms.last_mut().expect("never empty").push(c),
        }
    }
    terms
}

/// `/api/v1/costs`: the window and grouping, `filter=<dimension>=<value>,…` and `policy=` (default hybrid).
fn parse_cost_query(p: &CostsParams, now_ns: u64, bucket_ns: u64) -> Result<CostQuery, ApiError> {
    let w = parse_window(p.from.as_deref(), p.to.as_deref(), p.group_by.as_deref(), now_ns, bucket_ns)?;
    let mut filters = Vec::new();
    for f in filter_terms(p.filter.as_deref().unwrap_or("")) {
        let f = f.trim();
        if f.is_empty() {
            continue;
        }
        let (name, value) = f
            .split_once('=')
            .ok_or_else(|| bad(format!("filter: {f:?} is not <dimension>=<value> (e.g. namespace=team-nlp)")))?;
        if filters.len() == MAX_FILTER_TERMS {
            return Err(bad(format!("filter: more than {MAX_FILTER_TERMS} terms")));
        }
        filters.push((dimension("filter", name.trim())?, value.trim().to_string()));
    }
    check_label_dimensions(w.group_by.iter().chain(filters.iter().map(|(d, _)| d)))?;
    let policy = match &p.policy {
        None => Policy::Hybrid,
        Some(p) => Policy::parse(p)
            .ok_or_else(|| bad(format!("policy: unknown policy {p:?}; expected allocation, utilization or hybrid")))?,
    };
    Ok(CostQuery { from_ns: w.from_ns, to_ns: w.to_ns, group_by: w.group_by, filters, policy })
}

/// Runs a ledger read off the async threads; a storage error is a 503.
pub(crate) async fn on_ledger<T: Send + 'static>(
    s: &AppState,
    read: impl FnOnce(&dyn Ledger) -> Result<T, gpucost_ledger::LedgerError> + Send + 'static,
) -> Result<T, ApiError> {
    let ledger = s.ledger.clone();
    tokio::task::spawn_blocking(move || read(ledger.as_ref()))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| match e {
            gpucost_ledger::LedgerError::Refused(m) => ApiError(StatusCode::CONFLICT, m),
            e => ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        })
}

/// An amount of money: exact integer micro-dollars, and the same as a decimal string of dollars.
#[derive(Debug, Serialize, ToSchema)]
pub struct Money {
    /// Dollars with six decimals, e.g. `"12.345678"`.
    pub usd: String,
    pub micros: u128,
}

impl Money {
    pub fn of(micros: u128) -> Self {
        Self { usd: usd(micros), micros }
    }
}

/// A group's values: one per `group_by` dimension, keyed by the dimension's name (`team`, `label:app`…).
fn group(dims: &[Dimension], values: &[String]) -> BTreeMap<String, String> {
    dims.iter().zip(values).map(|(d, v)| (d.name(), d.display(v))).collect()
}

/// `GET /api/v1/costs`. The four kinds of money (docs/chargeback.md, "Four kinds of money"): `used` +
/// `idle` + `unallocated` = `fleet`; `unattributed` is the part of `used` + `idle` that workloads no owner
/// rule names a payer for; `charged` + `idle_uncharged` + `unallocated` = `fleet`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CostsBody {
    /// The window, widened to the ledger's buckets (RFC 3339).
    from: String,
    to: String,
    policy: String,
    group_by: Vec<String>,
    /// The filter terms, `<dimension>=<value>`.
    filter: Vec<String>,
    rows: Vec<CostsRow>,
    /// What the rows are charged (used + their idle).
    charged: Money,
    /// What the holders' SM use cost.
    used: Money,
    /// Held but unused GPU time's cost under the policy, whoever carries it: the holders under `hybrid` and
    /// `allocation`, nobody under `utilization`. Null under `utilization` with a per-workload filter. Before
    /// issue 18 this field was what `idle_uncharged` is now.
    idle: Option<Money>,
    /// The part of `idle` no holder pays: the `utilization` policy's idle line, 0 under `hybrid` and
    /// `allocation`. Null with a per-workload filter (team, namespace…).
    idle_uncharged: Option<Money>,
    /// Cost of workloads that held a GPU but that no owner rule names a payer for (within the filters).
    unattributed: Money,
    /// Cost of GPUs nobody held. Null with a per-workload filter.
    unallocated: Option<Money>,
    /// Observed GPU time without a price: in no amount.
    unpriced: Unpriced,
    /// What the GPUs in the window (and the GPU filters) cost.
    fleet: Money,
    /// Whether the amounts add up to the fleet line and the fleet line to each node's GPUs' price × time
    /// (docs/cost-model.md); null with a per-workload filter.
    reconciled: Option<bool>,
    /// The nodes whose fleet line does not match their price × time.
    unreconciled_nodes: Vec<String>,
}

/// One group of `GET /api/v1/costs`: its value per `group_by` dimension, by the dimension's name (e.g.
/// `"team": "vision"`), and its money and GPU time. Under an owner dimension (owner, team, department,
/// component, system) the group `unattributed` is GPU time no owner rule named.
#[derive(Debug, Serialize, ToSchema)]
pub struct CostsRow {
    #[serde(flatten)]
    group: BTreeMap<String, String>,
    used_usd: String,
    idle_usd: String,
    total_usd: String,
    used_micros: u128,
    idle_micros: u128,
    total_micros: u128,
    held_gpu_seconds: f64,
    used_gpu_seconds: f64,
    energy_kwh: f64,
    /// Null when no grid factor covered any of its energy.
    co2e_kg: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Unpriced {
    gpu_seconds: f64,
}

#[utoipa::path(
    get,
    path = "/api/v1/costs",
    tag = "costs",
    summary = "GPU dollars per group under a split policy, reconciled to the fleet",
    params(CostsParams),
    responses((status = 200, description = "OK: JSON, or with `format=csv` the rows as CSV (RFC 4180, a header line, then a line per row in the JSON's order)", content(
        (CostsBody = "application/json"),
        (String = "text/csv; charset=utf-8")
    )), (status = 400, description = "A parameter is wrong; the message names it", body = crate::http::doc::ErrorBody), (status = 503, description = "The ledger does not answer", body = crate::http::doc::ErrorBody))
)]
async fn costs(State(s): State<AppState>, Params(params): Params<CostsParams>) -> Result<Response, ApiError> {
    let csv = match params.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(f) => return Err(bad(format!("format: unknown format {f:?}; expected json or csv"))),
    };
    let body = costs_body(&s, &params).await?;
    if !csv {
        return Ok(SortedJson(body).into_response());
    }
    let name = format!("gpucost-costs-{}-{}.csv", body.from, body.to).replace(':', "");
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (axum::http::header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        costs_csv(&body),
    )
        .into_response())
}

/// The money columns of `GET /api/v1/costs?format=csv`, after the `group_by` dimensions.
const COSTS_CSV_COLUMNS: [&str; 7] =
    ["used_usd", "idle_usd", "total_usd", "held_gpu_seconds", "used_gpu_seconds", "energy_kwh", "co2e_kg"];

/// The rows of a costs answer as CSV (RFC 4180, CRLF): the `group_by` dimensions, then [`COSTS_CSV_COLUMNS`];
/// numbers as the JSON writes them, a null CO2e as an empty field.
fn costs_csv(body: &CostsBody) -> String {
    use gpucost_report::chargeback::csv_field;
    let mut out = String::new();
    let header: Vec<String> =
        body.group_by.iter().map(String::as_str).chain(COSTS_CSV_COLUMNS).map(csv_field).collect();
    out.push_str(&header.join(","));
    out.push_str("\r\n");
    for r in &body.rows {
        let mut fields: Vec<String> =
            body.group_by.iter().map(|d| csv_field(r.group.get(d).map_or("", String::as_str))).collect();
        let json = |v: f64| serde_json::Value::from(v).to_string();
        fields.extend([
            r.used_usd.clone(),
            r.idle_usd.clone(),
            r.total_usd.clone(),
            json(r.held_gpu_seconds),
            json(r.used_gpu_seconds),
            json(r.energy_kwh),
            r.co2e_kg.map(json).unwrap_or_default(),
        ]);
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

/// The JSON answer of `GET /api/v1/costs` (whatever the format).
async fn costs_body(s: &AppState, params: &CostsParams) -> Result<CostsBody, ApiError> {
    let q = parse_cost_query(params, gpucost_types::clock::now_ns(), s.ledger.bucket_ns())?;
    // The unattributed money is read from an owner dimension: the request's, or the owner added to its
    // grouping and summed away again.
    let owner_at = q.group_by.iter().position(Dimension::names_owner);
    let mut query = q.clone();
    if owner_at.is_none() {
        query.group_by.push(Dimension::Owner);
    }
    let (report, unattributed) = on_ledger(s, move |l| l.costs(&query)).await.map(|r| {
        let at = owner_at.unwrap_or(q.group_by.len());
        let unattributed: u128 = r.rows.iter().filter(|x| x.group[at] == UNATTRIBUTED).map(|x| x.used + x.idle).sum();
        (if owner_at.is_some() { r } else { by_leading(&r, q.group_by.len()) }, unattributed)
    })?;
    let rows = report
        .rows
        .iter()
        .map(|r| CostsRow {
            group: group(&q.group_by, &r.group),
            used_usd: usd(r.used),
            idle_usd: usd(r.idle),
            total_usd: usd(r.used + r.idle),
            used_micros: r.used,
            idle_micros: r.idle,
            total_micros: r.used + r.idle,
            held_gpu_seconds: secs(r.held_ns),
            used_gpu_seconds: secs(r.used_ns),
            energy_kwh: r.energy_mj as f64 / 3.6e9,
            co2e_kg: r.co2e_mg.map(|mg| mg as f64 / 1e6),
        })
        .collect();
    let charged: u128 = report.rows.iter().map(|r| r.used + r.idle).sum();
    let used: u128 = report.rows.iter().map(|r| r.used).sum();
    // Held but unused GPU time's cost, whoever carries it: the holders' idle, and the idle line no holder
    // pays (unknown when filtered by workload).
    let holders_idle: u128 = report.rows.iter().map(|r| r.idle).sum();
    let idle = match (q.policy, report.idle) {
        (Policy::Utilization, None) => None,
        (_, line) => Some(holders_idle + line.unwrap_or(0)),
    };
    // Reconciled: the lines add up to the fleet line, and the fleet line is every node's physical GPUs'
    // price in force × observed time (`cost::reconcile`); the nodes that are not are named.
    let (reconciled, unreconciled_nodes) = match (report.idle, report.unallocated) {
        (Some(i), Some(u)) => {
            let filters: Vec<(Dimension, String)> =
                q.filters.iter().filter(|(d, _)| !d.is_per_workload()).cloned().collect();
            let (from, to) = (q.from_ns, q.to_ns);
            let checks = on_ledger(s, move |l| l.price_check(from, to, &filters)).await?;
            let off: Vec<String> = checks.iter().filter(|c| !c.holds()).map(ToString::to_string).collect();
            (Some(charged + i + u == report.fleet && off.is_empty()), off)
        }
        _ => (None, Vec::new()),
    };
    Ok(CostsBody {
        from: rfc3339(q.from_ns),
        to: rfc3339(q.to_ns),
        policy: q.policy.name().to_string(),
        group_by: q.group_by.iter().map(Dimension::name).collect(),
        filter: q.filters.iter().map(|(d, v)| format!("{}={v}", d.name())).collect(),
        rows,
        charged: Money::of(charged),
        used: Money::of(used),
        idle: idle.map(Money::of),
        idle_uncharged: report.idle.map(Money::of),
        unattributed: Money::of(unattributed),
        unallocated: report.unallocated.map(Money::of),
        unpriced: Unpriced { gpu_seconds: secs(report.unpriced_ns) },
        fleet: Money::of(report.fleet),
        reconciled,
        unreconciled_nodes,
    })
}

/// What AWS discovery found: EKS node groups, ECS GPU container instances and their tasks with tags.
#[utoipa::path(
    get,
    path = "/api/v1/inventory",
    tag = "costs",
    summary = "What AWS discovery found",
    responses((status = 200, description = "OK", body = gpucost_rules::inventory::Inventory), (status = 404, description = "Discovery is off", body = crate::http::doc::ErrorBody))
)]
async fn inventory(State(s): State<AppState>) -> Result<SortedJson<gpucost_rules::inventory::Inventory>, ApiError> {
    let Some(shared) = &s.inventory else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "AWS discovery is off (start the collector with --aws-discovery)".into(),
        ));
    };
    Ok(SortedJson(shared.read().unwrap_or_else(|e| e.into_inner()).clone()))
}

/// `GET /api/v1/prices`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PricesBody {
    nodes: Vec<NodePriceBody>,
}

/// The price in force for a node.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodePriceBody {
    cluster: String,
    node: String,
    instance_type: String,
    /// `on_demand`, `spot`…
    capacity_type: String,
    region: String,
    /// Since when (RFC 3339).
    effective_from: String,
    /// False when no price is known (`source` says why).
    priced: bool,
    /// Null when unpriced.
    usd_per_instance_hour: Option<String>,
    /// The instance's price over its GPUs; null when unpriced.
    usd_per_gpu_hour: Option<String>,
    gpus: u32,
    /// Where the price came from.
    source: String,
}

#[utoipa::path(
    get,
    path = "/api/v1/prices",
    tag = "costs",
    summary = "The price in force for every node, and where it came from",
    responses((status = 200, description = "OK", body = PricesBody), (status = 503, description = "The ledger does not answer", body = crate::http::doc::ErrorBody))
)]
async fn prices(State(s): State<AppState>) -> Result<SortedJson<PricesBody>, ApiError> {
    let rows = on_ledger(&s, |l| l.prices()).await?;
    let nodes = rows
        .into_iter()
        .map(|p| NodePriceBody {
            effective_from: rfc3339(p.effective_from_ns),
            priced: p.instance_micros_per_hour.is_some(),
            usd_per_instance_hour: p.instance_micros_per_hour.map(|m| usd(m.into())),
            usd_per_gpu_hour: p.instance_micros_per_hour.map(|m| usd((m / u64::from(p.gpus.max(1))).into())),
            cluster: p.cluster,
            node: p.node,
            instance_type: p.instance_type,
            capacity_type: p.capacity_type,
            region: p.region,
            gpus: p.gpus,
            source: p.source,
        })
        .collect();
    Ok(SortedJson(PricesBody { nodes }))
}

/// `GET /api/v1/conflicts`: every GPU UUID that two clusters reported over the same time, oldest first. Both
/// clusters' batches were stored, each billed to its own cluster (a GPU is its cluster's), so neither moved or
/// erased the other's GPU time; a pair here means one of them reports a GPU that is not its own (docs/security.md).
#[derive(Debug, Serialize, ToSchema)]
pub struct ConflictsBody {
    conflicts: Vec<ConflictBody>,
}

/// One GPU UUID and two clusters: `cluster`'s batches found `other_cluster`'s GPU time on it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConflictBody {
    /// The GPU (or MIG device) UUID.
    gpu: String,
    /// The cluster whose batches came second over the overlapping time.
    cluster: String,
    /// The cluster that had time on the same UUID there already.
    other_cluster: String,
    /// The span of `cluster`'s overlapping intervals (RFC 3339).
    from: String,
    to: String,
    /// How many of `cluster`'s batches overlapped.
    batches: u64,
    first_seen: String,
    last_seen: String,
}

/// GPU UUIDs two clusters reported over the same time (docs/security.md, "Trust zones").
#[utoipa::path(
    get,
    path = "/api/v1/conflicts",
    tag = "usage",
    summary = "GPU UUIDs two clusters reported over the same time; each cluster is billed its own",
    responses((status = 200, description = "OK", body = ConflictsBody), (status = 503, description = "The ledger does not answer", body = crate::http::doc::ErrorBody))
)]
async fn conflicts(State(s): State<AppState>) -> Result<SortedJson<ConflictsBody>, ApiError> {
    let all = on_ledger(&s, |l| l.conflicts()).await?;
    let conflicts = all
        .into_iter()
        .map(|c| ConflictBody {
            from: rfc3339(c.start_ns),
            to: rfc3339(c.end_ns),
            first_seen: rfc3339(c.first_seen_ns),
            last_seen: rfc3339(c.last_seen_ns),
            gpu: c.gpu_uuid,
            cluster: c.cluster,
            other_cluster: c.other_cluster,
            batches: c.batches,
        })
        .collect();
    Ok(SortedJson(ConflictsBody { conflicts }))
}

fn secs(ns: u128) -> f64 {
    ns as f64 / NS as f64
}

/// `GET /api/v1/usage`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageBody {
    /// The window, widened to the ledger's buckets (RFC 3339).
    from: String,
    to: String,
    /// The ledger's bucket length.
    bucket_seconds: u64,
    group_by: Vec<String>,
    rows: Vec<UsageRow>,
    /// Every GPU in the window, whatever the grouping (no group values).
    totals: UsageRow,
}

/// GPU time in seconds and in exact nanoseconds: of one group of `GET /api/v1/usage`, with its value per
/// `group_by` dimension by the dimension's name (e.g. `"node": "ip-10-0-0-1"`), or of the totals.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageRow {
    #[serde(flatten)]
    group: BTreeMap<String, String>,
    /// Observed: null when grouped by workload (a workload does not own a GPU's clock).
    #[schema(required = true)]
    gpu_seconds: Option<f64>,
    /// Observed but not used; absent when grouped by workload.
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_gpu_seconds: Option<f64>,
    /// Observed; absent when grouped by workload.
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_ns: Option<u128>,
    /// Held: by any workload when grouped by GPU, node or cluster; by this workload when grouped by workload.
    held_gpu_seconds: f64,
    used_gpu_seconds: f64,
    held_ns: u128,
    used_ns: u128,
}

impl UsageRow {
    fn of(group: BTreeMap<String, String>, t: &GpuTime) -> Self {
        Self {
            group,
            gpu_seconds: t.observed_ns.map(secs),
            idle_gpu_seconds: t.observed_ns.map(|o| secs(o.saturating_sub(t.used_ns))),
            observed_ns: t.observed_ns,
            held_gpu_seconds: secs(t.held_ns),
            used_gpu_seconds: secs(t.used_ns),
            held_ns: t.held_ns,
            used_ns: t.used_ns,
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/usage",
    tag = "usage",
    summary = "GPU-seconds observed, held and used per group",
    params(UsageParams),
    responses((status = 200, description = "OK", body = UsageBody), (status = 400, description = "A parameter is wrong; the message names it", body = crate::http::doc::ErrorBody), (status = 503, description = "The ledger does not answer", body = crate::http::doc::ErrorBody))
)]
async fn usage(
    State(s): State<AppState>,
    Params(params): Params<UsageParams>,
) -> Result<SortedJson<UsageBody>, ApiError> {
    let q = parse_query(&params, gpucost_types::clock::now_ns(), s.ledger.bucket_ns())?;
    let query = q.clone();
    let report = on_ledger(&s, move |l| l.usage(&query)).await?;
    let rows = report.rows.iter().map(|r| UsageRow::of(group(&q.group_by, &r.group), &r.time)).collect();
    Ok(SortedJson(UsageBody {
        from: rfc3339(q.from_ns),
        to: rfc3339(q.to_ns),
        bucket_seconds: s.ledger.bucket_ns() / NS,
        group_by: q.group_by.iter().map(Dimension::name).collect(),
        rows,
        totals: UsageRow::of(BTreeMap::new(), &report.totals),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<UsageQuery, String> {
        let params = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        UsageParams::from_map(params).and_then(|p| parse_query(&p, 1_800_000_000 * NS, 3_600 * NS)).map_err(|e| e.1)
    }

    #[test]
    fn windows_widen_to_bucket_boundaries_and_default_to_the_last_day() {
        let w = q(&[("from", "2026-11-01T00:30:00Z"), ("to", "2026-11-01T02:10:00Z")]).unwrap();
        assert_eq!(rfc3339(w.from_ns), "2026-11-01T00:00:00Z");
        assert_eq!(rfc3339(w.to_ns), "2026-11-01T03:00:00Z");
        let d = q(&[]).unwrap();
        assert!(d.to_ns - d.from_ns >= 86_400 * NS);
        assert_eq!(
            q(&[("from", "1700000000"), ("to", "1700003600"), ("group_by", "node,workload")]).unwrap().group_by,
            vec![Dimension::Node, Dimension::Workload]
        );
    }

    #[test]
    fn filter_values_may_hold_escaped_commas_and_backslashes() {
        assert_eq!(filter_terms("team=nlp,label:app=a\\,b"), ["team=nlp", "label:app=a,b"]);
        assert_eq!(filter_terms("user=x\\\\,team="), ["user=x\\", "team="]);
        assert_eq!(filter_terms("user=c:\\dir"), ["user=c:\\dir"], "any other backslash is itself");
        assert_eq!(filter_terms(""), [""]);
    }

    #[test]
    fn bad_parameters_are_named_in_the_error() {
        assert!(
            q(&[("from", "2600-01-01T00:00:00Z")]).unwrap_err().contains("too far in the future"),
            "no wrap-around"
        );
        assert!(q(&[("from", "yesterday")]).unwrap_err().contains("from=\"yesterday\""));
        assert!(q(&[("group_by", "node,flavour")]).unwrap_err().contains("unknown dimension \"flavour\""));
        assert!(q(&[("group_by", "node,node")]).unwrap_err().contains("given twice"));
        assert!(q(&[("from", "1700003600"), ("to", "1700000000")]).unwrap_err().contains("must be before"));
        assert!(q(&[("form", "1")]).unwrap_err().contains("unknown parameter \"form\""));
        assert!(q(&[("from", "1000000000"), ("to", "1700000000")]).unwrap_err().contains("400 days"));
    }

    #[test]
    fn costs_csv_has_the_rows_of_the_json_with_their_group_values_quoted_where_needed() {
        let row = |team: &str, used: u128, idle: u128, co2e_kg: Option<f64>| CostsRow {
            group: [("department".to_string(), "ml, research".to_string()), ("team".to_string(), team.to_string())]
                .into(),
            used_usd: usd(used),
            idle_usd: usd(idle),
            total_usd: usd(used + idle),
            used_micros: used,
            idle_micros: idle,
            total_micros: used + idle,
            held_gpu_seconds: 7200.5,
            used_gpu_seconds: 3600.0,
            energy_kwh: 1.25,
            co2e_kg,
        };
        let body = CostsBody {
            from: "2026-11-01T00:00:00Z".into(),
            to: "2026-11-02T00:00:00Z".into(),
            policy: "hybrid".into(),
            group_by: vec!["department".into(), "team".into()],
            filter: vec![],
            rows: vec![row("nlp", 1_500_000, 250_000, Some(0.5)), row("say \"hi\"", 1, 0, None)],
            charged: Money::of(1_750_001),
            used: Money::of(1_500_001),
            idle: Some(Money::of(250_000)),
            idle_uncharged: Some(Money::of(0)),
            unattributed: Money::of(0),
            unallocated: Some(Money::of(0)),
            unpriced: Unpriced { gpu_seconds: 0.0 },
            fleet: Money::of(1_750_001),
            reconciled: Some(true),
            unreconciled_nodes: vec![],
        };
        let csv = costs_csv(&body);
        assert_eq!(
            csv,
            "department,team,used_usd,idle_usd,total_usd,held_gpu_seconds,used_gpu_seconds,energy_kwh,co2e_kg\r\n\
             \"ml, research\",nlp,1.500000,0.250000,1.750000,7200.5,3600.0,1.25,0.5\r\n\
             \"ml, research\",\"say \"\"hi\"\"\",0.000001,0.000000,0.000001,7200.5,3600.0,1.25,\r\n"
        );
        let rows = gpucost_report::chargeback::csv_rows(&csv);
        assert_eq!(rows.len(), 1 + body.rows.len());
        assert_eq!(rows[2][1], "say \"hi\"");
    }

    #[test]
    fn times_past_2262_are_refused_rather_than_wrapped() {
        for (name, value) in [("to", "18446744073"), ("from", "18446744073709551615"), ("to", "2300-01-01T00:00:00Z")] {
            let e = q(&[(name, value)]).unwrap_err();
            assert!(
                e.contains("too far in the future; the latest time is 2262-01-01T00:00:00Z"),
                "{name}={value}: {e}"
            );
        }
        let last = q(&[("from", "9183106800"), ("to", "9183110400")]).unwrap();
        assert!(last.to_ns <= i64::MAX as u64 && last.from_ns < last.to_ns, "{last:?}");
    }
}
