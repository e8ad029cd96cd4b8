//! The REST API's OpenAPI description, served at `/api/v1/openapi.json`. Paths come from the handlers'
//! `#[utoipa::path]` attributes, collected by the same `routes!` calls that build the router, so the
//! description and the routes cannot drift apart; each answer's schema is the type its handler returns.
//! Every error is `{"error": "<what and where>"}`.

use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "gpucost collector API",
        description = "GPU usage and cost per workload, owner, team and model; chargeback, FinOps FOCUS export, budgets, the live fleet and Backstage Cost Insights. Errors are always {\"error\": \"...\"}."
    ),
    components(schemas(ErrorBody, BudgetBody, ThresholdBody)),
    tags(
        (name = "usage", description = "GPU time"),
        (name = "costs", description = "GPU dollars, prices and discovery"),
        (name = "chargeback", description = "Chargeback, FOCUS and closed months"),
        (name = "budgets", description = "Budgets and their status"),
        (name = "alerts", description = "The alerts that fired and their notifications"),
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

fn error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(ErrorBody { error: message })).into_response()
}

/// Any path the API does not have.
pub async fn not_found(method: Method, uri: Uri) -> Response {
    error(StatusCode::NOT_FOUND, format!("no such endpoint: {method} {}; see /api/v1/openapi.json", uri.path()))
}

/// A known path with a method it does not take.
pub async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, format!("{} does not take {method}; see /api/v1/openapi.json", uri.path()))
}
