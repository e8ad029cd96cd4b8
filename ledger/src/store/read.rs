//! Reading: GPU time and cost grouped by any dimensions, per-GPU charges, prices, conflicts and coverage.

use std::collections::HashMap;

use gpucost_rules::owner::UNATTRIBUTED;
use gpucost_types::dimension::Dimension;
use gpucost_types::policy::Policy;

use super::{Engine, NS, SqlLedger, days};
use crate::roles::Reading;
use crate::rows::{Rows, USAGE_VALUES};
use crate::sql::{Db, DbError, Value, bind};
use crate::{
    AllocatedCharge, Conflict, CostQuery, CostReport, CostRow, GpuTime, LedgerError, NodePrice, OriginCharge,
    UsageQuery, UsageReport, UsageRow, sql_params,
};

/// SQL for grouping or filtering by dimensions: one column expression per dimension, over the aliases
/// `n` (nodes), `g` (gpus), `w` (workloads) and `b` (a bucket table), plus the joins label dimensions
/// need. SQLite numbers `$N` parameters in order of first appearance, not by N, so the label keys are
/// bound first ($1…$k), in the joins, and callers number their own parameters after them.
pub(super) struct DimSql {
    pub(super) exprs: Vec<String>,
    pub(super) joins: String,
    pub(super) params: Vec<String>,
    /// Whether a dimension needs the owner the row was billed to (joined as `o`).
    pub(super) owner: bool,
}

/// An owner dimension's value: the owner row's `column`, or [`UNATTRIBUTED`] for GPU time no owner rule named
/// (no row, or a row of no rule; rows stored before issue 18 say `unallocated`).
pub(super) fn owner_dim(column: &str) -> String {
    format!(
        "CASE WHEN o.owner IS NULL OR o.rule IN ('unattributed', 'unallocated') THEN '{UNATTRIBUTED}' ELSE o.{column} END"
    )
}

impl DimSql {
    pub(super) fn new(dims: &[&Dimension]) -> Self {
        Self::with(dims, 0)
    }

    /// `first`: parameters numbered before the label keys (they come first in the statement's text). `b` is a
    /// usage rollup (hourly, daily, booked or summed) with the key of the owner row it was billed to in
    /// `b.owner_from`.
    pub(super) fn with(dims: &[&Dimension], first: usize) -> Self {
        let mut params = Vec::new();
        let mut joins = String::new();
        let mut needs_owner = false;
        // One join per label key, its key bound as the next parameter.
        let mut label = |key: &str| {
            params.push(key.to_string());
            let i = params.len();
            let n = first + i;
            joins.push_str(&format!(
                " LEFT JOIN workload_labels l{i} ON l{i}.workload_id = b.workload_id AND l{i}.key = ${n}"
            ));
            format!("COALESCE(l{i}.value, '')")
        };
        let exprs = dims
            .iter()
            .map(|d| match d {
                Dimension::Cluster => "n.cluster".into(),
                Dimension::Node => "n.name".into(),
                Dimension::Gpu => "g.uuid".into(),
                Dimension::Workload => "w.key".into(),
                Dimension::Kind => "w.kind".into(),
                Dimension::Namespace => "w.namespace".into(),
                // A pod is named with its cluster and namespace: `web-0` runs in many.
                Dimension::Pod => {
                    "CASE WHEN w.pod = '' THEN '' ELSE n.cluster || '/' || w.namespace || '/' || w.pod END".into()
                }
                Dimension::Controller => {
                    "CASE WHEN w.controller_kind = '' THEN '' ELSE w.controller_kind || '/' || w.controller_name END"
                        .into()
                }
                Dimension::Container => "w.container".into(),
                Dimension::EcsTask => "w.ecs_task_arn".into(),
                Dimension::SlurmJob => "w.slurm_job_id".into(),
                Dimension::User => "w.user_name".into(),
                // The owner row's column of the dimension's name (`Dimension::names_owner`).
                Dimension::Owner
                | Dimension::Team
                | Dimension::Department
                | Dimension::Component
                | Dimension::System => {
                    needs_owner = true;
                    owner_dim(&d.name())
                }
                Dimension::Label(key) => label(key),
                Dimension::Model => label("mlflow.org/model-name"),
                Dimension::ModelVersion => label("mlflow.org/model-version"),
                Dimension::Run => {
                    let (annotation, env) = (label("mlflow.org/run-id"), label("env:MLFLOW_RUN_ID"));
                    format!("CASE WHEN {annotation} <> '' THEN {annotation} ELSE {env} END")
                }
                Dimension::Experiment => label("env:MLFLOW_EXPERIMENT_ID"),
                Dimension::Day => "CAST(b.bucket_start_ns / 86400000000000 AS TEXT)".into(),
            })
            .collect();
        if needs_owner {
            joins
                .push_str(" LEFT JOIN workload_owners o ON o.workload_id = b.workload_id AND o.from_ns = b.owner_from");
        }
        Self { exprs, joins, params, owner: needs_owner }
    }
}

pub(super) fn sum_ns(secs: Option<i64>, rest: Option<i64>) -> u128 {
    (secs.unwrap_or(0) as u128) * u128::from(NS) + rest.unwrap_or(0) as u128
}

impl<E: Engine> Reading for SqlLedger<E> {
    fn history(
        &self,
        subject: &crate::HistorySubject,
        from_ns: u64,
        to_ns: u64,
    ) -> Result<Vec<crate::HistoryPoint>, LedgerError> {
        self.history_of(subject, from_ns, to_ns)
    }

    fn usage(&self, q: &UsageQuery) -> Result<UsageReport, LedgerError> {
        self.with_reader(|conn| {
            let by_workload = q.group_by.iter().any(Dimension::is_per_workload);
            let dims = DimSql::new(&q.group_by.iter().collect::<Vec<_>>());
            let (cols, label_joins, label_keys) = (&dims.exprs, &dims.joins, &dims.params);
            let (from_p, to_p) = (label_keys.len() + 1, label_keys.len() + 2);
            let select_cols = cols.iter().map(|c| format!("{c}, ")).collect::<String>();
            let group = if cols.is_empty() { String::new() } else { format!("GROUP BY {0} ORDER BY {0}", cols.join(", ")) };
            let split = |c: &str| format!("SUM({c} / 1000000000), SUM({c} % 1000000000)");
            let sql = if by_workload {
                format!(
                    "SELECT {select_cols} NULL, NULL, {}, {} FROM usage_buckets b
                     JOIN gpus g ON g.gpu_id = b.gpu_id JOIN nodes n ON n.node_id = b.node_id JOIN workloads w ON w.workload_id = b.workload_id{label_joins}
                     WHERE b.bucket_start_ns >= ${from_p} AND b.bucket_start_ns < ${to_p} {group}",
                    split("b.held_ns"),
                    split("b.used_ns")
                )
            } else {
                format!(
                    "SELECT {select_cols} {}, {}, {} FROM gpu_buckets b
                     JOIN gpus g ON g.gpu_id = b.gpu_id JOIN nodes n ON n.node_id = b.node_id
                     WHERE b.bucket_start_ns >= $1 AND b.bucket_start_ns < $2 {group}",
                    split("b.observed_ns"),
                    split("b.held_ns"),
                    split("b.used_ns")
                )
            };
            let dims = q.group_by.len();
            let read_time = |r: &crate::sql::Row, at: usize, observed: bool| -> Result<GpuTime, DbError> {
                Ok(GpuTime {
                    observed_ns: if observed { Some(sum_ns(r.get(at)?, r.get(at + 1)?)) } else { None },
                    held_ns: sum_ns(r.get(at + 2)?, r.get(at + 3)?),
                    used_ns: sum_ns(r.get(at + 4)?, r.get(at + 5)?),
                })
            };
            let mut bound: Vec<Value> = label_keys.iter().map(|k| Value::Text(k.clone())).collect();
            bound.push(Value::Int(q.from_ns as i64));
            bound.push(Value::Int(q.to_ns as i64));
            let rows = conn.all(&sql, &bind(&bound), |r| {
                let group = (0..dims).map(|i| r.get::<String>(i)).collect::<Result<Vec<_>, DbError>>()?;
                Ok(UsageRow { group, time: read_time(r, dims, !by_workload)? })
            })?;
            let totals = conn.one(
                &format!(
                    "SELECT {}, {}, {} FROM gpu_buckets b WHERE b.bucket_start_ns >= $1 AND b.bucket_start_ns < $2",
                    split("b.observed_ns"),
                    split("b.held_ns"),
                    split("b.used_ns")
                ), sql_params![q.from_ns as i64, q.to_ns as i64],
                |r| read_time(r, 0, true))?;
            Ok(UsageReport { rows, totals })
        })
    }

    fn conflicts(&self) -> Result<Vec<Conflict>, LedgerError> {
        self.with_reader(|c| {
            Ok(c.all(
                "SELECT gpu_uuid, cluster, other_cluster, start_ns, end_ns, batches, first_seen_ns, last_seen_ns
                 FROM gpu_conflicts ORDER BY first_seen_ns, gpu_uuid, cluster, other_cluster",
                sql_params![],
                |r| {
                    Ok(Conflict {
                        gpu_uuid: r.get(0)?,
                        cluster: r.get(1)?,
                        other_cluster: r.get(2)?,
                        start_ns: r.get::<i64>(3)? as u64,
                        end_ns: r.get::<i64>(4)? as u64,
                        batches: r.get::<i64>(5)? as u64,
                        first_seen_ns: r.get::<i64>(6)? as u64,
                        last_seen_ns: r.get::<i64>(7)? as u64,
                    })
                },
            )?)
        })
    }

    fn costs_of(&self, source: &Rows, q: &CostQuery) -> Result<CostReport, LedgerError> {
        let (usage_rows, gpu_rows) = (source.usage(), source.gpu());
        self.with_reader(|conn| {
            // A closed month's report reads the days its closing summed (migration 0013) when it asks for whole days.
            let summed = days::summed_days(conn, source, q.from_ns, q.to_ns)?;
            let rows = cost_rows(conn, &usage_rows, q, &summed)?;
            let (fleet, idle, unallocated, unpriced_ns) = fleet_lines(conn, &gpu_rows, q, &summed)?;
            let by_workload = q.filters.iter().any(|(d, _)| d.is_per_workload());
            let idle = if q.policy == Policy::Utilization { idle } else { 0 };
            Ok(CostReport {
                rows,
                idle: (!by_workload).then_some(idle),
                unallocated: (!by_workload).then_some(unallocated),
                unpriced_ns,
                fleet,
            })
        })
    }

    fn allocations_of(
        &self,
        source: &Rows,
        from_ns: u64,
        to_ns: u64,
        period_ns: u64,
        policy: Policy,
    ) -> Result<Vec<OriginCharge>, LedgerError> {
        self.with_reader(|conn| {
            let (usage_rows, gpu_rows) = period_sources(conn, source, from_ns, to_ns, period_ns)?;
            let mut origins = origin_charges(conn, &gpu_rows, from_ns, to_ns, period_ns)?;
            add_allocations(conn, &usage_rows, from_ns, to_ns, period_ns, policy, &mut origins)?;
            Ok(origins.charges)
        })
    }

    fn prices(&self) -> Result<Vec<NodePrice>, LedgerError> {
        self.with_reader(|conn| {
            let rows = conn.all(
                "SELECT n.cluster, n.name, n.instance_type, n.capacity_type, n.region, p.effective_from_ns, p.instance_micros_per_hour, p.gpus, p.source
                 FROM node_prices p JOIN nodes n ON n.node_id = p.node_id
                 WHERE p.effective_from_ns = (SELECT MAX(q.effective_from_ns) FROM node_prices q WHERE q.node_id = p.node_id)
                 ORDER BY n.cluster, n.name",
                sql_params![],
                |r| {
                    Ok(NodePrice {
                        cluster: r.get(0)?,
                        node: r.get(1)?,
                        instance_type: r.get(2)?,
                        capacity_type: r.get(3)?,
                        region: r.get(4)?,
                        effective_from_ns: r.get::<i64>(5)? as u64,
                        instance_micros_per_hour: r.get::<Option<i64>>(6)?.map(|v| v as u64),
                        gpus: r.get(7)?,
                        source: r.get(8)?,
                    })
                },
            )?;
            Ok(rows)
        })
    }

    fn price_check(
        &self,
        from_ns: u64,
        to_ns: u64,
        filters: &[(Dimension, String)],
    ) -> Result<Vec<gpucost_rules::reconcile::NodeCheck>, LedgerError> {
        self.check_prices(from_ns, to_ns, filters)
    }

    fn price_subjects(&self) -> Result<gpucost_rules::book::Subjects, LedgerError> {
        self.subjects()
    }

    fn bucket_ns(&self) -> u64 {
        self.bucket_ns
    }

    fn data_buckets(&self, source: &Rows, from_ns: u64, to_ns: u64) -> Result<Vec<u64>, LedgerError> {
        self.with_reader(|c| {
            Ok(c.all(
                &format!(
                    "SELECT DISTINCT b.bucket_start_ns FROM {} b
                     WHERE b.bucket_start_ns >= $1 AND b.bucket_start_ns < $2 AND b.observed_ns > 0 ORDER BY 1",
                    source.gpu()
                ),
                sql_params![from_ns as i64, to_ns as i64],
                |r| Ok(r.get::<i64>(0)? as u64),
            )?)
        })
    }
}

/// `SUM(c)` in whole seconds and the nanoseconds left (read back with [`sum_ns`]): two columns.
fn split_sum(c: &str) -> String {
    format!("SUM({c} / 1000000000), SUM({c} % 1000000000)")
}

/// A summed amount (micro-dollars, millijoules, …) at column `i`; none summed is 0.
fn amount(r: &crate::sql::Row, i: usize) -> Result<u128, DbError> {
    r.get::<Option<i64>>(i).map(|v| v.unwrap_or(0) as u128)
}

/// The usage columns of what a workload is charged under `policy`: its use, and its share of the idle rest.
fn policy_cols(policy: Policy) -> (&'static str, &'static str) {
    match policy {
        Policy::Utilization => ("b.used_micros", "0"),
        Policy::Hybrid => ("b.used_micros", "b.hybrid_idle_micros"),
        Policy::Allocation => ("b.allocation_used_micros", "b.allocation_idle_micros"),
    }
}

/// The cost report's rows: the window's usage rows (of `usage_rows`, with the days `summed`) charged under the
/// query's policy, grouped by its dimensions and narrowed by its filters.
fn cost_rows(
    conn: &impl Db,
    usage_rows: &str,
    q: &CostQuery,
    summed: &days::SummedDays,
) -> Result<Vec<CostRow>, DbError> {
    let all: Vec<&Dimension> = q.group_by.iter().chain(q.filters.iter().map(|(d, _)| d)).collect();
    // The window's bounds are written into the statement when days are read summed, else bound as $1 and $2
    // (they come first in the statement's text).
    let first = if summed.built.is_empty() { 2 } else { 0 };
    let dims = DimSql::with(&all, first);
    let keys = SumKeys::new(dims.owner, all.contains(&&Dimension::Day));
    let inner = window_sums(usage_rows, q, summed, &keys);
    let sql = grouped_costs(&inner, q, &dims, first);
    let mut bound: Vec<Value> = Vec::new();
    if summed.built.is_empty() {
        bound.extend([Value::Int(q.from_ns as i64), Value::Int(q.to_ns as i64)]);
    }
    bound.extend(dims.params.iter().map(|p| Value::Text(p.clone())));
    bound.extend(q.filters.iter().map(|(_, v)| Value::Text(v.clone())));
    let n = q.group_by.len();
    let rows = conn.all(&sql, &bind(&bound), |r| {
        Ok(CostRow {
            group: (0..n).map(|i| r.get::<String>(i)).collect::<Result<Vec<_>, DbError>>()?,
            used: amount(r, n)?,
            idle: amount(r, n + 1)?,
            held_ns: sum_ns(r.get(n + 2)?, r.get(n + 3)?),
            used_ns: sum_ns(r.get(n + 4)?, r.get(n + 5)?),
            energy_mj: amount(r, n + 6)?,
            co2e_mg: match amount(r, n + 8)? {
                0 => None,
                _ => Some(amount(r, n + 7)?),
            },
        })
    })?;
    Ok(rows.into_iter().filter(|r| n > 0 || r.held_ns > 0 || r.used + r.idle > 0).collect())
}

/// What the window's usage rows are first summed per: (workload, GPU, node[, owner in force][, day]).
struct SumKeys {
    /// `, u.owner_from AS owner_from` when a dimension needs the owner, else empty.
    owner_col: String,
    /// The day a row falls in, as `bucket_start_ns`, when the report is by day, else empty.
    day_col: String,
    /// The keys' positions, to group by.
    keys: String,
}

impl SumKeys {
    fn new(owner: bool, by_day: bool) -> Self {
        // Grouped by position: an alias that is also a column's name means the column to PostgreSQL.
        let mut keys = vec!["1", "2", "3"];
        let owner_col = if owner {
            keys.push("4");
            ", u.owner_from AS owner_from".to_string()
        } else {
            String::new()
        };
        let day_col = if by_day {
            keys.push(if keys.len() == 4 { "5" } else { "4" });
            format!(", u.bucket_start_ns / {d} * {d} AS bucket_start_ns", d = days::DAY)
        } else {
            String::new()
        };
        Self { owner_col, day_col, keys: keys.join(", ") }
    }
}

/// The window's usage rows summed per `keys` (the dimensions are joined onto those few thousand sums rather than
/// onto every hourly row: a month's chargeback went from 1.9 s to a fraction of it over a year of 50 000
/// workloads, BENCHMARKS.md). Whole days whose daily rollups are built are read from those (days.rs), the rest
/// from the hourly rows.
fn window_sums(usage_rows: &str, q: &CostQuery, summed: &days::SummedDays, keys: &SumKeys) -> String {
    let (used_col, idle_col) = policy_cols(q.policy);
    let SumKeys { owner_col, day_col, keys } = keys;
    let sums = |t: &str| {
        let col = |c: &str| c.replacen("b.", &format!("{t}."), 1);
        format!(
            "SUM({}) AS used_p, SUM({}) AS idle_p,
             SUM({t}.held_ns / 1000000000) AS held_s, SUM({t}.held_ns % 1000000000) AS held_r,
             SUM({t}.used_ns / 1000000000) AS used_s, SUM({t}.used_ns % 1000000000) AS used_r,
             SUM({t}.energy_millijoules) AS energy_millijoules, SUM({t}.co2e_mg) AS co2e_mg,
             SUM({t}.co2e_known_ns) AS co2e_known_ns",
            col(used_col),
            col(idle_col)
        )
    };
    let hourly = |window: &str| {
        format!(
            "SELECT u.workload_id, u.gpu_id, u.node_id{owner_col}{day_col}, {} FROM {usage_rows} u WHERE {window} GROUP BY {keys}",
            sums("u")
        )
    };
    if summed.built.is_empty() {
        return hourly("u.bucket_start_ns >= $1 AND u.bucket_start_ns < $2");
    }
    // A built day's rows carry the owner in force (-1: none) and the day's start.
    let daily = format!(
        "SELECT d.workload_id, d.gpu_id, d.node_id{}{}, {} FROM {} d WHERE {} GROUP BY {keys}",
        if owner_col.is_empty() { "" } else { ", d.owner_from AS owner_from" },
        if day_col.is_empty() { "" } else { ", d.day_start_ns AS bucket_start_ns" },
        sums("d"),
        summed.usage,
        days::within("d.day_start_ns", &summed.built)
    );
    let rest = days::complement(q.from_ns, q.to_ns, &summed.built);
    if rest.is_empty() {
        daily
    } else {
        format!("{} UNION ALL {daily}", hourly(&days::within("u.bucket_start_ns", &rest)))
    }
}

/// The statement grouping the sums `inner` by the query's dimensions (`dims`, their parameters numbered after
/// `first`), narrowed by its filters (numbered after those).
fn grouped_costs(inner: &str, q: &CostQuery, dims: &DimSql, first: usize) -> String {
    let (group_cols, filter_cols) = dims.exprs.split_at(q.group_by.len());
    let k = first + dims.params.len();
    let conds: Vec<String> = filter_cols.iter().enumerate().map(|(i, c)| format!("{c} = ${}", k + i + 1)).collect();
    let conds = if conds.is_empty() { String::new() } else { format!("WHERE {}", conds.join(" AND ")) };
    let select_cols = group_cols.iter().map(|c| format!("{c}, ")).collect::<String>();
    let group =
        if group_cols.is_empty() { String::new() } else { format!("GROUP BY {0} ORDER BY {0}", group_cols.join(", ")) };
    format!(
        "SELECT {select_cols} SUM(b.used_p), SUM(b.idle_p), SUM(b.held_s), SUM(b.held_r), SUM(b.used_s), SUM(b.used_r),
           SUM(b.energy_millijoules), SUM(b.co2e_mg), SUM(b.co2e_known_ns)
         FROM ({inner}) b
         JOIN gpus g ON g.gpu_id = b.gpu_id JOIN nodes n ON n.node_id = b.node_id JOIN workloads w ON w.workload_id = b.workload_id{}
         {conds} {group}",
        dims.joins
    )
}

/// The lines no workload is charged for, over the GPUs the query's GPU filters select: (the fleet's cost, idle,
/// unallocated, unpriced GPU time).
fn fleet_lines(
    conn: &impl Db,
    gpu_rows: &str,
    q: &CostQuery,
    summed: &days::SummedDays,
) -> Result<(u128, u128, u128, u128), DbError> {
    let gpu_filters: Vec<&(Dimension, String)> = q.filters.iter().filter(|(d, _)| !d.is_per_workload()).collect();
    let gdims = DimSql::new(&gpu_filters.iter().map(|(d, _)| d).collect::<Vec<_>>());
    let gconds: String = gdims.exprs.iter().enumerate().map(|(i, c)| format!("{c} = ${} AND ", i + 1)).collect();
    let (gf, gt) = (gdims.exprs.len() + 1, gdims.exprs.len() + 2);
    let mut gbound: Vec<Value> = gpu_filters.iter().map(|(_, v)| Value::Text(v.clone())).collect();
    gbound.push(Value::Int(q.from_ns as i64));
    gbound.push(Value::Int(q.to_ns as i64));
    // Built days from the daily rows here too.
    let gpu_rows = if summed.built.is_empty() {
        gpu_rows.to_string()
    } else {
        let cols = crate::rows::GPU_VALUES.join(", ");
        format!(
            "(SELECT bucket_start_ns, gpu_id, node_id, {cols} FROM {gpu_rows} x WHERE {}
              UNION ALL SELECT day_start_ns, gpu_id, node_id, {cols} FROM {} y WHERE {})",
            days::within("bucket_start_ns", &days::complement(q.from_ns, q.to_ns, &summed.built)),
            summed.gpu,
            days::within("day_start_ns", &summed.built)
        )
    };
    conn.one(
        &format!(
            "SELECT SUM(b.cost_micros), SUM(b.idle_micros), SUM(b.unallocated_micros), {} FROM {gpu_rows} b
             JOIN gpus g ON g.gpu_id = b.gpu_id JOIN nodes n ON n.node_id = b.node_id
             WHERE {gconds}b.bucket_start_ns >= ${gf} AND b.bucket_start_ns < ${gt}",
            split_sum("b.unpriced_ns")
        ),
        &bind(&gbound),
        |r| Ok((amount(r, 0)?, amount(r, 1)?, amount(r, 2)?, sum_ns(r.get(3)?, r.get(4)?))),
    )
}

/// The `FROM` sources of the usage and GPU rows of `source` for periods of `period_ns`: periods of whole days read
/// the days summed by the daily rollups where they are built (as costs do).
fn period_sources(
    conn: &impl Db,
    source: &Rows,
    from_ns: u64,
    to_ns: u64,
    period_ns: u64,
) -> Result<(String, String), DbError> {
    let (mut usage_rows, mut gpu_rows) = (source.usage(), source.gpu());
    if period_ns.is_multiple_of(days::DAY) {
        let days::SummedDays { built, usage: usage_days, gpu: gpu_days } =
            days::summed_days(conn, source, from_ns, to_ns)?;
        if !built.is_empty() {
            let rest = days::within("bucket_start_ns", &days::complement(from_ns, to_ns, &built));
            let (usage_cols, gpu_cols) = (USAGE_VALUES.join(", "), crate::rows::GPU_VALUES.join(", "));
            usage_rows = format!(
                "(SELECT bucket_start_ns, gpu_id, workload_id, node_id, owner_from, {usage_cols} FROM {usage_rows} x WHERE {rest}
                  UNION ALL SELECT day_start_ns, gpu_id, workload_id, node_id, owner_from, {usage_cols} FROM {usage_days} y WHERE {})",
                days::within("day_start_ns", &built)
            );
            gpu_rows = format!(
                "(SELECT bucket_start_ns, gpu_id, node_id, {gpu_cols} FROM {gpu_rows} x WHERE {rest}
                  UNION ALL SELECT day_start_ns, gpu_id, node_id, {gpu_cols} FROM {gpu_days} y WHERE {})",
                days::within("day_start_ns", &built)
            );
        }
    }
    Ok((usage_rows, gpu_rows))
}

/// Each GPU's charge per period, and where each is in the list by (period, GPU id, node id).
struct Origins {
    charges: Vec<OriginCharge>,
    at: HashMap<(i64, i64, i64), usize>,
}

/// Each GPU's charge per period of `period_ns` in [from_ns, to_ns) (clipped to it), without its allocations, in
/// order of period, cluster, node and GPU.
fn origin_charges(
    conn: &impl Db,
    gpu_rows: &str,
    from_ns: u64,
    to_ns: u64,
    period_ns: u64,
) -> Result<Origins, DbError> {
    let mut origins: Vec<OriginCharge> = Vec::new();
    let mut at = HashMap::new();
    let sql = format!(
        // Grouped by the tables' own keys, so that PostgreSQL takes their other columns as determined by them.
        "SELECT b.bucket_start_ns / {period_ns}, g.gpu_id, n.node_id, n.cluster, n.name, n.instance_type,
                n.capacity_type, n.region, n.zone, g.uuid, g.model, g.mig_profile, SUM(b.cost_micros),
                {}, {}, {}, SUM(b.energy_millijoules)
         FROM {gpu_rows} b JOIN gpus g ON g.gpu_id = b.gpu_id JOIN nodes n ON n.node_id = b.node_id
         WHERE b.bucket_start_ns >= $1 AND b.bucket_start_ns < $2
         GROUP BY b.bucket_start_ns / {period_ns}, g.gpu_id, n.node_id
         ORDER BY 1, n.cluster, n.name, g.uuid",
        split_sum("b.observed_ns"),
        split_sum("b.held_ns"),
        split_sum("b.used_ns")
    );
    for r in conn.rows(&sql, sql_params![from_ns as i64, to_ns as i64])? {
        let r = &r;
        let p: i64 = r.get(0)?;
        at.insert((p, r.get(1)?, r.get(2)?), origins.len());
        let start = p as u64 * period_ns;
        origins.push(OriginCharge {
            start_ns: start.max(from_ns),
            end_ns: (start + period_ns).min(to_ns),
            cluster: r.get(3)?,
            node: r.get(4)?,
            instance_type: r.get(5)?,
            capacity_type: r.get(6)?,
            region: r.get(7)?,
            zone: r.get(8)?,
            gpu_uuid: r.get(9)?,
            gpu_model: r.get(10)?,
            mig_profile: r.get(11)?,
            cost: amount(r, 12)?,
            observed_ns: sum_ns(r.get(13)?, r.get(14)?),
            held_ns: sum_ns(r.get(15)?, r.get(16)?),
            used_ns: sum_ns(r.get(17)?, r.get(18)?),
            energy_mj: amount(r, 19)?,
            allocations: vec![],
        });
    }
    Ok(Origins { charges: origins, at })
}

/// The dimensions of a workload's allocated charge, in [`AllocatedCharge`]'s order.
const ALLOCATION_DIMS: [Dimension; 9] = [
    Dimension::Workload,
    Dimension::Kind,
    Dimension::Namespace,
    Dimension::Pod,
    Dimension::Owner,
    Dimension::Team,
    Dimension::Department,
    Dimension::Model,
    Dimension::ModelVersion,
];

/// Adds to each of `origins` what each workload holding its GPU was charged in its period,
/// under `policy`, in order of workload (then kind, namespace, …).
fn add_allocations(
    conn: &impl Db,
    usage_rows: &str,
    from_ns: u64,
    to_ns: u64,
    period_ns: u64,
    policy: Policy,
    origins: &mut Origins,
) -> Result<(), DbError> {
    let (used_col, idle_col) = policy_cols(policy);
    let d = DimSql::new(&ALLOCATION_DIMS.iter().collect::<Vec<_>>());
    let k = d.params.len();
    let sql = format!(
        "SELECT b.bucket_start_ns / {period_ns}, g.gpu_id, n.node_id, {}, SUM({used_col}) + SUM({idle_col}), {}, {}
         FROM {usage_rows} b
         JOIN gpus g ON g.gpu_id = b.gpu_id JOIN nodes n ON n.node_id = b.node_id JOIN workloads w ON w.workload_id = b.workload_id{}
         WHERE b.bucket_start_ns >= ${} AND b.bucket_start_ns < ${}
         GROUP BY b.bucket_start_ns / {period_ns}, g.gpu_id, n.node_id, {}
         ORDER BY 1, 2, 3, 4",
        d.exprs.join(", "),
        split_sum("b.held_ns"),
        split_sum("b.used_ns"),
        d.joins,
        k + 1,
        k + 2,
        d.exprs.join(", ")
    );
    let mut bound: Vec<Value> = d.params.iter().map(|p| Value::Text(p.clone())).collect();
    bound.push(Value::Int(from_ns as i64));
    bound.push(Value::Int(to_ns as i64));
    for r in conn.rows(&sql, &bind(&bound))? {
        let r = &r;
        let key = (r.get::<i64>(0)?, r.get::<i64>(1)?, r.get::<i64>(2)?);
        let Some(&i) = origins.at.get(&key) else { continue };
        let n = ALLOCATION_DIMS.len() + 3;
        origins.charges[i].allocations.push(AllocatedCharge {
            workload: r.get(3)?,
            kind: r.get(4)?,
            namespace: r.get(5)?,
            pod: r.get(6)?,
            owner: r.get(7)?,
            team: r.get(8)?,
            department: r.get(9)?,
            model: r.get(10)?,
            model_version: r.get(11)?,
            cost: amount(r, n)?,
            held_ns: sum_ns(r.get(n + 1)?, r.get(n + 2)?),
            used_ns: sum_ns(r.get(n + 3)?, r.get(n + 4)?),
        });
    }
    Ok(())
}
