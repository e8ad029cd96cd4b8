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
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::api::{ApiError, AppState, bad, on_ledger};
use crate::budget::engine;
use crate::budget::spec::{Budget, check_name};
use crate::budget::store::StoredBudget;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/budgets", get(list))
        .route("/api/v1/budgets/status", get(status))
        .route("/api/v1/budgets/{name}", get(one).put(put).delete(delete))
}

fn shown(s: &StoredBudget) -> Value {
    let mut v: Value = serde_json::from_str(&s.spec).unwrap_or(Value::Null);
    v["source"] = json!(s.source);
    v
}

async fn list(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let all = on_ledger(&s, |l| l.budgets()).await?;
    Ok(Json(json!({ "budgets": all.iter().map(shown).collect::<Vec<_>>() })))
}

async fn one(State(s): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let all = on_ledger(&s, |l| l.budgets()).await?;
    all.iter()
        .find(|b| b.name == name)
        .map(|b| Json(shown(b)))
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no budget {name:?}")))
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

async fn put(State(s): State<AppState>, Path(name): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    check_name(&name).map_err(bad)?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| bad(format!("body: not JSON: {e}")))?;
    let budget = Budget::from_json(&name, &v).map_err(|e| bad(format!("budget {name:?}: {e}")))?;
    from_config(&s, &name).await?;
    let stored = StoredBudget { name: name.clone(), spec: budget.to_json().to_string(), source: "api".into() };
    let shown_budget = shown(&stored);
    let created = on_ledger(&s, move |l| l.put_budget(&stored, crate::now_ns())).await?;
    s.budget_poke.notify_one();
    let code = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((code, Json(shown_budget)).into_response())
}

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

async fn status(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let statuses = on_ledger(&s, |l| {
        let budgets = engine::budgets(l)?;
        engine::statuses(l, &budgets, crate::now_ns())
    })
    .await?;
    Ok(Json(json!({
        "forecast_method": crate::budget::evaluate::FORECAST_METHOD,
        "budgets": statuses.iter().map(|s| s.to_json()).collect::<Vec<_>>(),
    })))
}
