//! `/api/v1/budgets`: budgets through the API, and where each stands.
//!
//! - `GET /api/v1/budgets`: every budget, with its source (`api`, or `config:<file>`).
//! - `PUT /api/v1/budgets/{name}`: create (201) or replace (200) a budget from JSON
//!   (`{"scope": {"team": "vision"}, "period": "monthly", "amount_usd": 5000, "thresholds": [...]}`).
//! - `GET /api/v1/budgets/{name}`, `DELETE /api/v1/budgets/{name}` (204; 404 when there is none).
//! - `GET /api/v1/budgets/status`: spend, limit, forecast (and its method) and each threshold's state.
//!
//! A budget from the config file is changed there: the API answers 409 for it.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::budget::engine;
use crate::http::{ApiError, AppState, SortedJson, bad, on_ledger};
use gpucost_ledger::budgets::StoredBudget;
use gpucost_rules::budget_spec::{Budget, BudgetSpec, check_name};
use gpucost_rules::budget_status::StatusBody;

pub fn router() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(status))
        .routes(routes!(one, put, delete))
}

/// A budget, and where it comes from.
#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetView {
    #[serde(flatten)]
    spec: BudgetSpec,
    /// `api`, or `config:<file>` (changed in that file only).
    source: String,
}

/// `GET /api/v1/budgets`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetsBody {
    budgets: Vec<BudgetView>,
}

/// `GET /api/v1/budgets/status`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusesBody {
    /// How `forecast_usd` is computed.
    forecast_method: &'static str,
    budgets: Vec<StatusBody>,
}

fn shown(s: &StoredBudget) -> Result<BudgetView, ApiError> {
    let spec = serde_json::from_str(&s.spec).map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("budget {:?}: the stored budget does not read: {e}", s.name),
        )
    })?;
    Ok(BudgetView { spec, source: s.source.clone() })
}

#[utoipa::path(
    get,
    path = "/api/v1/budgets",
    tag = "budgets",
    summary = "Every budget, with its source",
    responses((status = 200, description = "OK", body = BudgetsBody), (status = 503, description = "The ledger does not answer", body = crate::http::doc::ErrorBody))
)]
async fn list(State(s): State<AppState>) -> Result<SortedJson<BudgetsBody>, ApiError> {
    let all = on_ledger(&s, |l| l.budgets()).await?;
    Ok(SortedJson(BudgetsBody { budgets: all.iter().map(shown).collect::<Result<_, _>>()? }))
}

#[utoipa::path(
    get,
    path = "/api/v1/budgets/{name}",
    tag = "budgets",
    summary = "One budget",
    params(
        ("name" = String, Path, description = "the budget's name"),
    ),
    responses((status = 200, description = "OK", body = BudgetView), (status = 404, description = "No such budget", body = crate::http::doc::ErrorBody))
)]
async fn one(State(s): State<AppState>, Path(name): Path<String>) -> Result<SortedJson<BudgetView>, ApiError> {
    let all = on_ledger(&s, |l| l.budgets()).await?;
    let b = all
        .iter()
        .find(|b| b.name == name)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no budget {name:?}")))?;
    Ok(SortedJson(shown(b)?))
}

/// The stored budget `name` when it comes from the config file (the API may not change it).
async fn from_config(s: &AppState, name: &str) -> Result<(), ApiError> {
    let n = name.to_string();
    let existing = on_ledger(s, move |l| Ok(l.budgets()?.into_iter().find(|b| b.name == n))).await?;
    match existing {
        Some(b) if b.source.starts_with("config:") => Err(ApiError(
            StatusCode::CONFLICT,
            format!("budget {name:?} is defined in the config file {}; change it there", &b.source["config:".len()..]),
        )),
        _ => Ok(()),
    }
}

#[utoipa::path(
    put,
    path = "/api/v1/budgets/{name}",
    tag = "budgets",
    summary = "Create or replace a budget",
    params(
        ("name" = String, Path, description = "1 to 64 letters, digits, '.', '_' or '-'; not `.` or `..` (a URL cannot name them)"),
    ),
    request_body(content = crate::http::doc::BudgetBody, content_type = "application/json"),
    responses((status = 200, description = "Replaced", body = BudgetView), (status = 201, description = "Created", body = BudgetView), (status = 400, description = "A parameter is wrong; the message names it", body = crate::http::doc::ErrorBody), (status = 409, description = "The budget is defined in the config file", body = crate::http::doc::ErrorBody))
)]
async fn put(State(s): State<AppState>, Path(name): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    check_name(&name).map_err(bad)?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| bad(format!("body: not JSON: {e}")))?;
    let budget = Budget::from_json(&name, &v).map_err(|e| bad(format!("budget {name:?}: {e}")))?;
    from_config(&s, &name).await?;
    let stored = StoredBudget { name: name.clone(), spec: budget.to_json().to_string(), source: "api".into() };
    let shown_budget = BudgetView { spec: budget.spec(), source: stored.source.clone() };
    let created = on_ledger(&s, move |l| l.put_budget(&stored, gpucost_types::clock::now_ns())).await?;
    s.budget_poke.notify_one();
    let code = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((code, SortedJson(shown_budget)).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/budgets/{name}",
    tag = "budgets",
    summary = "Delete a budget",
    params(
        ("name" = String, Path, description = "the budget's name"),
    ),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such budget", body = crate::http::doc::ErrorBody), (status = 409, description = "The budget is defined in the config file", body = crate::http::doc::ErrorBody))
)]
async fn delete(State(s): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    from_config(&s, &name).await?;
    let n = name.clone();
    if on_ledger(&s, move |l| l.delete_budget(&n)).await? {
        s.budget_poke.notify_one();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError(StatusCode::NOT_FOUND, format!("no budget {name:?}")))
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/budgets/status",
    tag = "budgets",
    summary = "Where each budget stands: spend, limit, forecast and thresholds",
    responses((status = 200, description = "OK", body = StatusesBody), (status = 503, description = "The ledger does not answer", body = crate::http::doc::ErrorBody))
)]
async fn status(State(s): State<AppState>) -> Result<SortedJson<StatusesBody>, ApiError> {
    let statuses = on_ledger(&s, |l| {
        let budgets = engine::budgets(l)?;
        engine::statuses(l, &budgets, gpucost_types::clock::now_ns())
    })
    .await?;
    Ok(SortedJson(StatusesBody {
        forecast_method: gpucost_rules::budget_status::FORECAST_METHOD,
        budgets: statuses.iter().map(|s| s.body()).collect(),
    }))
}
