//! The REST API's OpenAPI description, served at `/api/v1/openapi.json`. Paths come from the handlers'
//! `#[utoipa::path]` attributes, collected by the same `routes!` calls that build the router, so the
//! description and the routes cannot drift apart. Every error is `{"error": "<what and where>"}`.

use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "gpucost collector API",
        description = "GPU usage and cost per workload, owner, team and model; chargeback, FinOps FOCUS export, budgets, the live fleet and Backstage Cost Insights. Errors are always {\"error\": \"...\"}."
    ),
    components(schemas(ErrorBody, BudgetBody, ThresholdBody, Money, CostsBody, ChargebackBody, ConflictsBody, ConflictBody)),
    tags(
        (name = "usage", description = "GPU time"),
        (name = "costs", description = "GPU dollars, prices and discovery"),
        (name = "chargeback", description = "Chargeback, FOCUS and closed months"),
        (name = "budgets", description = "Budgets and their status"),
        (name = "live", description = "The fleet now"),
        (name = "backstage", description = "Backstage Cost Insights"),
        (name = "health", description = "Liveness, readiness and metrics")
    )
)]
pub struct ApiDoc;

/// Every error the API answers.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What is wrong and where (the parameter, field or resource).
    pub error: String,
}

/// A budget, as `PUT /api/v1/budgets/{name}` takes it (docs/budgets.md).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct BudgetBody {
    /// Exactly one of team, department, owner, model, namespace, cluster, or filter (`dim=value,…`).
    #[schema(value_type = Object, example = json!({"team": "vision"}))]
    scope: serde_json::Value,
    /// `monthly` (default) or `weekly`.
    period: Option<String>,
    /// USD, a number or a decimal string with at most six decimals.
    #[schema(value_type = String, example = "25000")]
    amount_usd: String,
    /// Default: 50/80/100 % actual and 100 % forecast.
    thresholds: Option<Vec<ThresholdBody>>,
    /// `allocation`, `utilization` or `hybrid` (default).
    policy: Option<String>,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ThresholdBody {
    /// `actual` or `forecast`.
    #[schema(rename = "type")]
    kind: String,
    /// 1 to 1000.
    percent: u32,
}

/// An amount of money: exact integer micro-dollars, and the same as a decimal string of dollars.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Money {
    /// Dollars with six decimals, e.g. `"12.345678"`.
    usd: String,
    micros: u64,
}

/// `GET /api/v1/costs`. The four kinds of money (docs/chargeback.md, "Four kinds of money"): `used` +
/// `idle` + `unallocated` = `fleet`; `unattributed` is the part of `used` + `idle` that workloads no owner
/// rule names a payer for; `charged` + `idle_uncharged` + `unallocated` = `fleet`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct CostsBody {
    /// The window, widened to the ledger's buckets.
    from: String,
    to: String,
    policy: String,
    group_by: Vec<String>,
    filter: Vec<String>,
    /// One per group: the group's value per `group_by` dimension (by name), then `used_usd`, `idle_usd`,
    /// `total_usd` (and `_micros`), `held_gpu_seconds`, `used_gpu_seconds`, `energy_kwh`, `co2e_kg`. Under an
    /// owner dimension (owner, team, department, component, system) the group `unattributed` is GPU time
    /// no owner rule named.
    #[schema(value_type = Vec<Object>)]
    rows: Vec<serde_json::Value>,
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
    /// Observed GPU time without a price, `{"gpu_seconds": …}`: in no amount.
    #[schema(value_type = Object)]
    unpriced: serde_json::Value,
    /// What the GPUs in the window (and the GPU filters) cost.
    fleet: Money,
    /// Whether the amounts add up to the fleet line and the fleet line to each node's GPUs' price × time
    /// (docs/cost-model.md); null with a per-workload filter.
    reconciled: Option<bool>,
    /// The nodes whose fleet line does not match their price × time.
    unreconciled_nodes: Vec<String>,
}

/// `GET /api/v1/conflicts`: every GPU UUID that two clusters reported over the same time, oldest first. Both
/// clusters' batches were stored, each billed to its own cluster (a GPU is its cluster's), so neither moved or
/// erased the other's GPU time; a pair here means one of them reports a GPU that is not its own (docs/security.md).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ConflictsBody {
    conflicts: Vec<ConflictBody>,
}

/// One GPU UUID and two clusters: `cluster`'s batches found `other_cluster`'s GPU time on it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
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

/// `GET /api/v1/chargeback?format=json` (docs/chargeback.md).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ChargebackBody {
    period: String,
    /// When the period was closed (its report no longer changes), or null.
    closed_at: Option<String>,
    from: String,
    to: String,
    group_by: String,
    policy: String,
    /// Group lines by descending total, then `unattributed` (owner groupings), `unallocated`, `idle` and
    /// `correction` lines. Each: `line` (group, unattributed, unallocated, idle, correction), `group`,
    /// `gpu_hours_charged` (its share of each GPU's observed time, split as its dollars are: the lines add up
    /// to `gpu_hours.charged`), `gpu_hours_held` (time its workloads held GPUs, a shared GPU counted for
    /// each holder), `gpu_hours_used`, `efficiency_pct`, `used_usd`, `idle_usd`, `total_usd`, `total_micros`,
    /// `energy_kwh`, `top_models`.
    #[schema(value_type = Vec<Object>)]
    lines: Vec<serde_json::Value>,
    /// The sum of the lines: the fleet's cost.
    total_usd: String,
    fleet_usd: String,
    /// The money by kind: `used_usd`, `idle_usd` (whoever carries it), `idle_uncharged_usd` (the idle line),
    /// `unattributed_usd` (under any grouping), `unallocated_usd`, `fleet_usd`.
    #[schema(value_type = Object)]
    totals: serde_json::Value,
    /// `observed` (every GPU's observed time) = `charged` (the lines' sum) + `uncharged` (time that cost
    /// nothing: no price, or a price of $0).
    #[schema(value_type = Object)]
    gpu_hours: serde_json::Value,
    /// Observed GPU time without a price.
    unpriced_gpu_hours: f64,
    /// `pct`, `covered_hours`, `period_hours`, `first_data`, `last_data`: the hours of the period in which
    /// any agent reported (docs/chargeback.md, "Coverage").
    #[schema(value_type = Object)]
    coverage: serde_json::Value,
    /// Set when the ledger holds no data for part or all of the period (also the `Warning` header).
    warning: Option<String>,
}

fn error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// Any path the API does not have.
pub async fn not_found(method: Method, uri: Uri) -> Response {
    error(StatusCode::NOT_FOUND, format!("no such endpoint: {method} {}; see /api/v1/openapi.json", uri.path()))
}

/// A known path with a method it does not take.
pub async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, format!("{} does not take {method}; see /api/v1/openapi.json", uri.path()))
}
