//! `/api/v1/chargeback`: the chargeback for a period as JSON or CSV, or the same money as a FinOps FOCUS
//! file (`report::chargeback`, `report::focus`).
//!
//! Parameters: `period=2026-11` (a month; `2026-W48`, an ISO week) or `from`/`to` (RFC 3339 or Unix
//! seconds), defaulting to the current month; `group_by` (team, department, owner, cost_center, model,
//! namespace, cluster; default team); `format` (json, csv, focus; default json); `policy` (default hybrid).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::api::{ApiError, AppState, bad, on_ledger, parse_time};
use crate::cost::split::Policy;
use crate::report::Coverage;
use crate::report::chargeback::{self, GroupBy};
use crate::report::focus;
use crate::report::period::{Cadence, Period, utc};

/// How reports name cost centres and the parties of the FOCUS export.
#[derive(Debug, Clone)]
pub struct ReportConfig {
    /// The Backstage group annotation that holds a team's cost centre.
    pub cost_center_annotation: String,
    pub parties: focus::Parties,
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self { cost_center_annotation: "gpucost.io/cost-center".into(), parties: focus::Parties::default() }
    }
}

pub fn router() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(routes!(chargeback))
        .routes(routes!(periods))
        .routes(routes!(close))
}

fn closed_json(c: &crate::ledger::ClosedPeriod) -> serde_json::Value {
    serde_json::json!({ "period": c.period, "from": utc(c.from_ns), "to": utc(c.to_ns), "closed_at": utc(c.closed_at_ns) })
}

/// `GET /api/v1/periods`: the closed months.
#[utoipa::path(
    get,
    path = "/api/v1/periods",
    tag = "chargeback",
    summary = "The closed months",
    responses((status = 200, description = "OK"), (status = 503, description = "The ledger does not answer", body = crate::api_doc::ErrorBody))
)]
async fn periods(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let closed = on_ledger(&s, |l| l.closed_periods()).await?;
    Ok(Json(serde_json::json!({ "closed": closed.iter().map(closed_json).collect::<Vec<_>>() })))
}

/// `POST /api/v1/periods/{month}/close`: closes an ended month (409 when it runs still, is closed, or
/// the month before it is open).
#[utoipa::path(
    post,
    path = "/api/v1/periods/{period}/close",
    tag = "chargeback",
    summary = "Close an ended month: its report never changes",
    params(
        ("period" = String, Path, description = "the month, e.g. 2026-10"),
    ),
    responses((status = 200, description = "OK"), (status = 400, description = "A parameter is wrong; the message names it", body = crate::api_doc::ErrorBody), (status = 409, description = "The month runs still, is closed, or is out of order", body = crate::api_doc::ErrorBody))
)]
async fn close(
    State(s): State<AppState>,
    axum::extract::Path(period): axum::extract::Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = Period::parse(&period).map_err(bad)?;
    let closed = on_ledger(&s, move |l| l.close_period(&p, crate::now_ns())).await?;
    tracing::info!(period = closed.period, "closed a billing period");
    Ok(Json(closed_json(&closed)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Focus,
}

/// The parameters of a chargeback request, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargebackRequest {
    pub period: Period,
    pub group_by: GroupBy,
    pub format: Format,
    pub policy: Policy,
}

/// Parses the query; every error names the parameter.
pub fn parse_request(params: &HashMap<String, String>, now_ns: u64) -> Result<ChargebackRequest, String> {
    const ALLOWED: [&str; 6] = ["period", "from", "to", "group_by", "format", "policy"];
    if let Some(unknown) = params.keys().find(|k| !ALLOWED.contains(&k.as_str())) {
        return Err(format!("unknown parameter {unknown:?}; expected {}", ALLOWED.join(", ")));
    }
    let period = match (params.get("period"), params.get("from"), params.get("to")) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => return Err("give period, or from and to, not both".into()),
        (Some(p), None, None) => Period::parse(p)?,
        (None, Some(f), Some(t)) => {
            let (from_ns, to_ns) = (parse_time("from", f).map_err(|e| e.1)?, parse_time("to", t).map_err(|e| e.1)?);
            if from_ns >= to_ns {
                return Err(format!("from ({}) must be before to ({})", utc(from_ns), utc(to_ns)));
            }
            if to_ns - from_ns > 400 * 86_400 * 1_000_000_000 {
                return Err("the window from..to is longer than 400 days".into());
            }
            Period { label: format!("{}/{}", utc(from_ns), utc(to_ns)), from_ns, to_ns }
        }
        (None, Some(_), None) | (None, None, Some(_)) => return Err("from and to go together".into()),
        (None, None, None) => Period::containing(Cadence::Monthly, now_ns),
    };
    let group_by = GroupBy::parse(params.get("group_by").map_or("team", String::as_str))?;
    let format = match params.get("format").map_or("json", String::as_str) {
        "json" => Format::Json,
        "csv" => Format::Csv,
        "focus" => Format::Focus,
        other => return Err(format!("format: unknown format {other:?}; expected json, csv or focus")),
    };
    let policy = match params.get("policy") {
        None => Policy::Hybrid,
        Some(p) => Policy::parse(p)
            .ok_or_else(|| format!("policy: unknown policy {p:?}; expected allocation, utilization or hybrid"))?,
    };
    Ok(ChargebackRequest { period, group_by, format, policy })
}

/// A team → cost centre lookup over the catalog in force (none configured: no cost centres).
pub fn cost_centers(
    owners: Option<&crate::enrich::SharedOwners>,
    annotation: &str,
) -> impl Fn(&str) -> Option<String> + Send + 'static {
    let catalog = owners.map(|o| o.read().unwrap_or_else(|e| e.into_inner()).catalog.clone());
    let annotation = annotation.to_string();
    move |team: &str| catalog.as_ref()?.cost_center(team, &annotation)
}

/// A report as written: its body, content type, and how much of the period the ledger holds data for.
pub struct Rendered {
    pub body: String,
    pub content_type: &'static str,
    pub coverage: Coverage,
    /// What a reader must be told when data is missing for part or all of the period.
    pub warning: Option<String>,
}

/// Writes the report `req` asks for.
pub fn render(
    ledger: &dyn crate::ledger::Ledger,
    req: &ChargebackRequest,
    config: &ReportConfig,
    cost_center: &dyn Fn(&str) -> Option<String>,
) -> Result<Rendered, crate::ledger::LedgerError> {
    let (body, content_type, coverage) = match req.format {
        Format::Focus => {
            let sources = crate::report::sources(ledger, &req.period)?;
            let coverage = Coverage::read(ledger, &sources, &req.period)?;
            (focus::export(ledger, &req.period, req.policy, &config.parties)?, "text/csv; charset=utf-8", coverage)
        }
        Format::Csv | Format::Json => {
            let c = chargeback::build(ledger, req.period.clone(), req.group_by, req.policy, cost_center)?;
            if req.format == Format::Csv {
                (c.to_csv(), "text/csv; charset=utf-8", c.coverage)
            } else {
                (c.to_json().to_string(), "application/json", c.coverage)
            }
        }
    };
    let warning = coverage.warning(&req.period);
    Ok(Rendered { body, content_type, coverage, warning })
}

#[utoipa::path(
    get,
    path = "/api/v1/chargeback",
    tag = "chargeback",
    summary = "The chargeback for a period as JSON or CSV, or a FinOps FOCUS file",
    params(
        ("period" = Option<String>, Query, description = "a month (2026-11) or ISO week (2026-W48); default: this month"),
        ("from" = Option<String>, Query, description = "start of a window (with to)"),
        ("to" = Option<String>, Query, description = "end of a window, exclusive"),
        ("group_by" = Option<String>, Query, description = "team (default), department, owner, cost_center, model, namespace or cluster"),
        ("format" = Option<String>, Query, description = "json (default), csv or focus"),
        ("policy" = Option<String>, Query, description = "allocation, utilization or hybrid (default)"),
    ),
    responses((status = 200, description = "OK: JSON (`format=json`), or CSV (`csv`, `focus`). A `Warning: 199 gpucost \"…\"` header says when the ledger holds no data for part or all of the period", body = crate::api_doc::ChargebackBody), (status = 400, description = "A parameter is wrong; the message names it", body = crate::api_doc::ErrorBody), (status = 503, description = "The ledger does not answer", body = crate::api_doc::ErrorBody))
)]
async fn chargeback(
    State(s): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let req = parse_request(&params, crate::now_ns()).map_err(bad)?;
    let config = s.reports.clone();
    let centers = cost_centers(s.owners.as_ref(), &config.cost_center_annotation);
    let r = req.clone();
    let Rendered { body, content_type, warning, .. } = on_ledger(&s, move |l| render(l, &r, &config, &centers)).await?;
    // RFC 7234's miscellaneous warning (199), for any client; the JSON says it in `warning` too.
    let warning = warning.and_then(|w| header::HeaderValue::from_str(&format!("199 gpucost {w:?}")).ok());
    let mut response = if req.format == Format::Json {
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    } else {
        let name = format!(
            "gpucost-{}-{}.csv",
            req.period.label.replace([':', '/'], "-"),
            if req.format == Format::Focus { "focus" } else { req.group_by.name() }
        );
        (
            [
                (header::CONTENT_TYPE, content_type.to_string()),
                (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
            ],
            body,
        )
            .into_response()
    };
    if let Some(w) = warning {
        response.headers_mut().insert(header::WARNING, w);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<ChargebackRequest, String> {
        let now = 1_795_910_400 * 1_000_000_000; // 2026-11-28
        parse_request(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), now)
    }

    #[test]
    fn defaults_are_this_month_by_team_as_json_under_hybrid() {
        let r = q(&[]).unwrap();
        assert_eq!(
            (r.period.label.as_str(), r.group_by, r.format, r.policy),
            ("2026-11", GroupBy::Team, Format::Json, Policy::Hybrid)
        );
        let r = q(&[("from", "2026-11-02T00:00:00Z"), ("to", "2026-11-03T00:00:00Z"), ("format", "focus")]).unwrap();
        assert_eq!(r.period.len_ns(), 86_400 * 1_000_000_000);
    }

    #[test]
    fn bad_parameters_are_named() {
        for (pairs, needle) in [
            (vec![("period", "2026-13")], "period \"2026-13\""),
            (vec![("group_by", "pod")], "group_by: unknown grouping \"pod\""),
            (vec![("format", "xml")], "format: unknown format \"xml\""),
            (vec![("period", "2026-11"), ("from", "2026-11-01T00:00:00Z")], "not both"),
            (vec![("from", "2026-11-01T00:00:00Z")], "from and to go together"),
            (vec![("from", "2026-11-02T00:00:00Z"), ("to", "2026-11-01T00:00:00Z")], "must be before"),
            (vec![("month", "2026-11")], "unknown parameter \"month\""),
            (vec![("policy", "fair")], "policy: unknown policy \"fair\""),
        ] {
            let e = q(&pairs).unwrap_err();
            assert!(e.contains(needle), "{pairs:?}: {e}");
        }
    }
}
