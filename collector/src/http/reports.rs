//! `/api/v1/chargeback`: the chargeback for a period as JSON or CSV, or the same money as a FinOps FOCUS
//! file (`report::chargeback`, `report::focus`).
//!
//! Parameters: `period=2026-11` (a month; `2026-W48`, an ISO week) or `from`/`to` (RFC 3339 or Unix
//! seconds), defaulting to the current month; `group_by` (team, department, owner, cost_center, model,
//! namespace, cluster; default team); `format` (json, csv, focus; default json); `policy` (default hybrid).

use std::collections::HashMap;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::http::{ApiError, AppState, Params, QueryParams, SortedJson, bad, on_ledger};
pub use gpucost_report::request::{ChargebackRequest, Format, Rendered, ReportConfig, Window, render};
use gpucost_types::period::{Period, utc};

pub fn router() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(routes!(chargeback))
        .routes(routes!(periods))
        .routes(routes!(close))
}

/// `GET /api/v1/periods`: the closed months.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PeriodsBody {
    closed: Vec<ClosedBody>,
}

/// A closed month (RFC 3339 times).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ClosedBody {
    /// The month, e.g. `2026-10`.
    period: String,
    from: String,
    to: String,
    closed_at: String,
}

impl ClosedBody {
    fn of(c: &gpucost_ledger::ClosedPeriod) -> Self {
        Self { period: c.period.clone(), from: utc(c.from_ns), to: utc(c.to_ns), closed_at: utc(c.closed_at_ns) }
    }
}

/// `GET /api/v1/periods`: the closed months.
#[utoipa::path(
    get,
    path = "/api/v1/periods",
    tag = "chargeback",
    summary = "The closed months",
    responses((status = 200, description = "OK", body = PeriodsBody), (status = 503, description = "The ledger does not answer", body = crate::http::doc::ErrorBody))
)]
async fn periods(State(s): State<AppState>) -> Result<SortedJson<PeriodsBody>, ApiError> {
    let closed = on_ledger(&s, |l| l.closed_periods()).await?;
    Ok(SortedJson(PeriodsBody { closed: closed.iter().map(ClosedBody::of).collect() }))
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
    responses((status = 200, description = "OK", body = ClosedBody), (status = 400, description = "A parameter is wrong; the message names it", body = crate::http::doc::ErrorBody), (status = 409, description = "The month runs still, is closed, or is out of order", body = crate::http::doc::ErrorBody))
)]
async fn close(
    State(s): State<AppState>,
    axum::extract::Path(period): axum::extract::Path<String>,
) -> Result<SortedJson<ClosedBody>, ApiError> {
    let p = Period::parse(&period).map_err(bad)?;
    let closed = on_ledger(&s, move |l| l.close_period(&p, gpucost_types::clock::now_ns())).await?;
    tracing::info!(period = closed.period, "closed a billing period");
    Ok(SortedJson(ClosedBody::of(&closed)))
}

/// `GET /api/v1/chargeback`'s parameters (and `gpucost-collector report chargeback`'s).
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChargebackParams {
    /// a month (2026-11) or ISO week (2026-W48); default: this month
    period: Option<String>,
    /// start of a window (with to)
    from: Option<String>,
    /// end of a window, exclusive
    to: Option<String>,
    /// team (default), department, owner, cost_center, model, namespace or cluster
    group_by: Option<String>,
    /// json (default), csv or focus
    format: Option<String>,
    /// allocation, utilization or hybrid (default)
    policy: Option<String>,
}

impl QueryParams for ChargebackParams {}

/// Parses the query; every error names the parameter.
pub fn parse_request(params: &HashMap<String, String>, now_ns: u64) -> Result<ChargebackRequest, String> {
    ChargebackParams::from_map(params.clone()).map_err(|e| e.1)?.check(now_ns)
}

impl ChargebackParams {
    /// The request these parameters make at `now_ns`; every error names the parameter.
    fn check(&self, now_ns: u64) -> Result<ChargebackRequest, String> {
        ChargebackRequest::new(
            Window { period: self.period.as_deref(), from: self.from.as_deref(), to: self.to.as_deref() },
            self.group_by.as_deref(),
            self.format.as_deref(),
            self.policy.as_deref(),
            now_ns,
        )
    }
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

#[utoipa::path(
    get,
    path = "/api/v1/chargeback",
    tag = "chargeback",
    summary = "The chargeback for a period as JSON or CSV, or a FinOps FOCUS file",
    params(ChargebackParams),
    responses((status = 200, description = "OK: JSON (`format=json`), or CSV (`csv`, `focus`). A `Warning: 199 gpucost \"…\"` header says when the ledger holds no data for part or all of the period", content(
        (gpucost_report::chargeback::ChargebackBody = "application/json"),
        (String = "text/csv; charset=utf-8")
    )), (status = 400, description = "A parameter is wrong; the message names it", body = crate::http::doc::ErrorBody), (status = 503, description = "The ledger does not answer", body = crate::http::doc::ErrorBody))
)]
async fn chargeback(State(s): State<AppState>, Params(params): Params<ChargebackParams>) -> Result<Response, ApiError> {
    let req = params.check(gpucost_types::clock::now_ns()).map_err(bad)?;
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
    use gpucost_report::chargeback::GroupBy;
    use gpucost_types::policy::Policy;

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
