//! `/api/v1/backstage/…`: GPU cost for the Backstage Cost Insights plugin (`cost_insights` builds the
//! shapes). Owners come from the configured catalog; costs use the `hybrid` policy, so a team's cost
//! includes its share of the idle GPUs it holds.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::cost_insights::{Cost, Intervals, daily_cost};
use crate::http::{ApiError, AppState, Params, QueryParams, on_ledger};
use gpucost_ledger::{CostQuery, Dimension};
use gpucost_rules::catalog::{Catalog, entity_ref};
use gpucost_types::policy::Policy;

const DAY_NS: u64 = 86_400 * 1_000_000_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(last_complete_billing_date))
        .routes(routes!(user_groups))
        .routes(routes!(group_projects))
        .routes(routes!(group_daily_cost))
        .routes(routes!(project_daily_cost))
        .routes(routes!(catalog_entity_daily_cost))
}

/// The parameters of the Cost Insights calls. Each call needs some of them (an empty one is missing);
/// a parameter none of them names is ignored, as Cost Insights may send more.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct UserParams {
    /// user entity reference
    #[serde(rename = "userId")]
    #[param(required = true)]
    user_id: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct GroupParams {
    /// group entity reference
    #[param(required = true)]
    group: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct GroupCostParams {
    /// group entity reference
    #[param(required = true)]
    group: Option<String>,
    /// ISO 8601 repeating interval, e.g. R2/P30D/2026-11-01
    #[param(required = true)]
    intervals: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ProjectCostParams {
    /// component name
    #[param(required = true)]
    project: Option<String>,
    /// e.g. R2/P30D/2026-11-01
    #[param(required = true)]
    intervals: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct EntityCostParams {
    /// entity reference
    #[serde(rename = "entityRef")]
    #[param(required = true)]
    entity_ref: Option<String>,
    /// e.g. R2/P30D/2026-11-01
    #[param(required = true)]
    intervals: Option<String>,
}

impl QueryParams for UserParams {
    const STRICT: bool = false;
}
impl QueryParams for GroupParams {
    const STRICT: bool = false;
}
impl QueryParams for GroupCostParams {
    const STRICT: bool = false;
}
impl QueryParams for ProjectCostParams {
    const STRICT: bool = false;
}
impl QueryParams for EntityCostParams {
    const STRICT: bool = false;
}

/// A parameter a call needs: missing (or empty) is a 400 naming it.
fn param<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, ApiError> {
    value
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, format!("missing parameter {name:?}")))
}

/// A group or project of Cost Insights, by its id (an entity reference or a component name).
#[derive(Debug, Serialize, ToSchema)]
pub struct IdBody {
    id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DateBody {
    /// `YYYY-MM-DD`.
    date: String,
}

/// A snapshot of the catalog in force.
fn owners(s: &AppState) -> Result<Catalog, ApiError> {
    s.owners.as_ref().map(|o| o.read().unwrap_or_else(|e| e.into_inner()).catalog.clone()).ok_or_else(|| {
        ApiError(StatusCode::NOT_FOUND, "no catalog configured (start the collector with --catalog-dir)".into())
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/backstage/last-complete-billing-date",
    tag = "backstage",
    summary = "Cost Insights: the last complete billing date",
    responses((status = 200, description = "OK", body = DateBody))
)]
async fn last_complete_billing_date() -> Json<DateBody> {
    let yesterday = gpucost_types::clock::now_ns() / DAY_NS - 1;
    Json(DateBody { date: Dimension::Day.display(&yesterday.to_string()) })
}

#[utoipa::path(
    get,
    path = "/api/v1/backstage/user-groups",
    tag = "backstage",
    summary = "Cost Insights: the groups a user belongs to",
    params(UserParams),
    responses((status = 200, description = "OK", body = Vec<IdBody>), (status = 400, description = "A parameter is wrong; the message names it", body = crate::http::doc::ErrorBody), (status = 404, description = "No catalog configured", body = crate::http::doc::ErrorBody))
)]
async fn user_groups(State(s): State<AppState>, Params(q): Params<UserParams>) -> Result<Json<Vec<IdBody>>, ApiError> {
    let (catalog, user) = (owners(&s)?, param(&q.user_id, "userId")?);
    let groups = catalog.users.get(&entity_ref(user, "user", "default")).cloned().unwrap_or_default();
    Ok(Json(groups.into_iter().map(|id| IdBody { id }).collect()))
}

#[utoipa::path(
    get,
    path = "/api/v1/backstage/group-projects",
    tag = "backstage",
    summary = "Cost Insights: the components a group owns",
    params(GroupParams),
    responses((status = 200, description = "OK", body = Vec<IdBody>), (status = 400, description = "A parameter is wrong; the message names it", body = crate::http::doc::ErrorBody), (status = 404, description = "No catalog configured", body = crate::http::doc::ErrorBody))
)]
async fn group_projects(
    State(s): State<AppState>,
    Params(q): Params<GroupParams>,
) -> Result<Json<Vec<IdBody>>, ApiError> {
    let (catalog, group) = (owners(&s)?, entity_ref(param(&q.group, "group")?, "group", "default"));
    let projects = catalog
        .components
        .iter()
        .filter(|c| catalog.rolls_up_to(&c.owner, &group))
        .map(|c| IdBody { id: c.name.clone() })
        .collect();
    Ok(Json(projects))
}

/// Daily hybrid cost over the intervals, grouped by day and `extra`, filtered by `filters`.
async fn daily(
    s: &AppState,
    iv: &Intervals,
    extra: Option<Dimension>,
    filters: Vec<(Dimension, String)>,
) -> Result<Vec<(u64, String, u128)>, ApiError> {
    let mut group_by = vec![Dimension::Day];
    group_by.extend(extra);
    let query = CostQuery {
        from_ns: iv.start_day() * DAY_NS,
        to_ns: iv.end_day * DAY_NS,
        group_by,
        filters,
        policy: Policy::Hybrid,
    };
    let report = on_ledger(s, move |l| l.costs(&query)).await?;
    Ok(report
        .rows
        .into_iter()
        .filter_map(|r| Some((r.group[0].parse().ok()?, r.group.get(1).cloned().unwrap_or_default(), r.used + r.idle)))
        .collect())
}

fn intervals(value: &Option<String>) -> Result<Intervals, ApiError> {
    Intervals::parse(param(value, "intervals")?).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))
}

#[utoipa::path(
    get,
    path = "/api/v1/backstage/group-daily-cost",
    tag = "backstage",
    summary = "Cost Insights: a group's daily GPU cost (its sub-groups included)",
    params(GroupCostParams),
    responses((status = 200, description = "OK", body = Cost), (status = 400, description = "A parameter is wrong; the message names it", body = crate::http::doc::ErrorBody), (status = 503, description = "The ledger does not answer", body = crate::http::doc::ErrorBody), (status = 404, description = "No catalog configured", body = crate::http::doc::ErrorBody))
)]
async fn group_daily_cost(
    State(s): State<AppState>,
    Params(q): Params<GroupCostParams>,
) -> Result<Json<Cost>, ApiError> {
    let (catalog, group, iv) =
        (owners(&s)?, entity_ref(param(&q.group, "group")?, "group", "default"), intervals(&q.intervals)?);
    // A group's cost includes its sub-groups' (team → department → organisation).
    let rows = daily(&s, &iv, Some(Dimension::Owner), vec![]).await?;
    let mine: Vec<(u64, u128)> =
        rows.into_iter().filter(|(_, owner, _)| catalog.rolls_up_to(owner, &group)).map(|(d, _, m)| (d, m)).collect();
    Ok(Json(daily_cost(&group, &iv, &mine)))
}

async fn entity_cost(s: &AppState, id: &str, component: &str, iv: &Intervals) -> Result<Json<Cost>, ApiError> {
    let rows = daily(s, iv, None, vec![(Dimension::Component, component.to_string())]).await?;
    Ok(Json(daily_cost(id, iv, &rows.into_iter().map(|(d, _, m)| (d, m)).collect::<Vec<_>>())))
}

#[utoipa::path(
    get,
    path = "/api/v1/backstage/project-daily-cost",
    tag = "backstage",
    summary = "Cost Insights: a project's (component's) daily GPU cost",
    params(ProjectCostParams),
    responses((status = 200, description = "OK", body = Cost), (status = 400, description = "A parameter is wrong; the message names it", body = crate::http::doc::ErrorBody), (status = 503, description = "The ledger does not answer", body = crate::http::doc::ErrorBody))
)]
async fn project_daily_cost(
    State(s): State<AppState>,
    Params(q): Params<ProjectCostParams>,
) -> Result<Json<Cost>, ApiError> {
    let (project, iv) = (param(&q.project, "project")?, intervals(&q.intervals)?);
    entity_cost(&s, project, project, &iv).await
}

#[utoipa::path(
    get,
    path = "/api/v1/backstage/catalog-entity-daily-cost",
    tag = "backstage",
    summary = "Cost Insights: a catalog entity's daily GPU cost",
    params(EntityCostParams),
    responses((status = 200, description = "OK", body = Cost), (status = 400, description = "A parameter is wrong; the message names it", body = crate::http::doc::ErrorBody), (status = 503, description = "The ledger does not answer", body = crate::http::doc::ErrorBody))
)]
async fn catalog_entity_daily_cost(
    State(s): State<AppState>,
    Params(q): Params<EntityCostParams>,
) -> Result<Json<Cost>, ApiError> {
    let (entity, iv) =
        (entity_ref(param(&q.entity_ref, "entityRef")?, "component", "default"), intervals(&q.intervals)?);
    let name = entity.rsplit('/').next().unwrap_or_default().to_string();
    entity_cost(&s, &entity, &name, &iv).await
}
