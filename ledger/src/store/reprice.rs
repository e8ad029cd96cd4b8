//! Re-pricing stored history, and checking a fleet line against the price history (`cost::reconcile`).
//!
//! A re-pricing prices each node's *physical* GPUs anew, per bucket: price × observed time, divided with
//! the GPU's MIG slices as at ingest (`cost::reprice::node_bucket_costs`). It never scales a device's
//! stored cost on its own: a MIG-mode GPU whose slices cover it has a stored cost of $0, which a per-device
//! re-pricing once took for "had no price" and billed as a whole GPU, next to its slices (a p4de billed
//! for nine GPUs). Each node's price history becomes the prices applied, and every node in the window is
//! checked against it before anything is committed.

use std::collections::{BTreeMap, HashMap};

use gpucost_rules::book::{Subjects, Unpriced};
use gpucost_rules::reconcile::{NodeCheck, Rate};
use gpucost_rules::reprice::{DeviceBucket, HolderBucket, NodeDevice, node_bucket_costs, rescale};
use gpucost_types::batch::Node;
use gpucost_types::dimension::Dimension;
use gpucost_types::money::GpuPrice;

use super::ids::Writer;
use super::read::{DimSql, sum_ns};
use super::{Engine, HISTORY_LOCK, SqlLedger, days};
use crate::sql::{Db, DbError, Tx, Value, bind};
use crate::{LedgerError, PriceOf, RepriceOptions, RepriceReport, sql_params};

/// One device's bucket, as stored.
struct Row {
    bucket: i64,
    gpu_id: i64,
    node_id: i64,
    node: Node,
    /// Physical GPUs of the node.
    gpus: u32,
    device: NodeDevice,
    stored: DeviceBucket,
    unpriced_ns: u64,
    /// (workload, owner in force) of each holder, in `stored.holders` order.
    holders: Vec<(i64, i64)>,
}

/// What a node was priced at from a bucket on: the price, or why it has none.
type Priced = Result<GpuPrice, Unpriced>;

fn same_price(a: &Priced, b: &Priced) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => a == b,
        (Err(a), Err(b)) => a == b,
        _ => false,
    }
}

/// Per node, the prices applied: one entry (from bucket, price, physical GPUs) from each bucket where it changes.
type Applied = BTreeMap<i64, Vec<(u64, Priced, u32)>>;

impl<E: Engine> SqlLedger<E> {
    /// Re-prices [from_ns, to_ns) in one transaction: reads the stored buckets, prices each node's buckets anew,
    /// rewrites the changed ones and the nodes' price history, checks the window and records the re-pricing.
    /// Committed unless `options` say a dry run or the report is refused.
    pub(super) fn reprice_window(
        &self,
        from_ns: u64,
        to_ns: u64,
        price_of: &PriceOf,
        options: RepriceOptions,
    ) -> Result<RepriceReport, LedgerError> {
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let Writer { conn, ids } = &mut *guard;
        let tx = Tx::begin(&*conn, self.engine.begin())?;
        tx.exclusive(HISTORY_LOCK, 0)?;
        self.refuse_if_closed("re-pricing", from_ns, to_ns)?;
        let rows = stored_rows(&*tx, from_ns, to_ns)?;
        let mut report = RepriceReport::default();
        let mut history = Applied::new();
        for group in rows.chunk_by(|a, b| a.bucket == b.bucket && a.node_id == b.node_id) {
            reprice_node_bucket(&*tx, group, price_of, &mut report, &mut history)?;
        }
        for (node_id, applied) in history {
            rewrite_price_history(&*tx, node_id, applied, from_ns, to_ns)?;
        }
        // The window's days are summed again from the re-priced hours (and the check reads those hours).
        days::unbuild(&*tx, from_ns, to_ns)?;
        report.checked = price_check(&*tx, self.bucket_ns, from_ns, to_ns, &[])?;
        record_repricing(&*tx, from_ns, to_ns, &report)?;
        if options.dry_run {
            // Dropped: rolled back. The report says what would be refused.
            return Ok(report);
        }
        if let Some(why) = report.refusal(options) {
            return Err(LedgerError::Refused(why));
        }
        tx.commit()?;
        // The writer's cached prices may be stale now.
        ids.prices.clear();
        Ok(report)
    }

    pub(super) fn check_prices(
        &self,
        from_ns: u64,
        to_ns: u64,
        filters: &[(Dimension, String)],
    ) -> Result<Vec<NodeCheck>, LedgerError> {
        self.with_reader(|c| price_check(c, self.bucket_ns, from_ns, to_ns, filters))
    }

    pub(super) fn subjects(&self) -> Result<Subjects, LedgerError> {
        self.with_reader(|c| {
            let mut s = Subjects::default();
            for r in c.rows("SELECT instance_type, region, labels_json FROM nodes", sql_params![])? {
                s.instance_types.insert(r.get(0)?);
                s.regions.insert(r.get(1)?);
                let labels: BTreeMap<String, String> = serde_json::from_str(&r.get::<String>(2)?).unwrap_or_default();
                s.labels.extend(labels);
            }
            for r in c.rows("SELECT DISTINCT model FROM gpus", sql_params![])? {
                s.gpu_models.insert(r.get(0)?);
            }
            Ok(s)
        })
    }
}

/// Every device's bucket in [from_ns, to_ns) as stored, with its holders, in order of bucket, node and GPU.
fn stored_rows(tx: &impl Db, from_ns: u64, to_ns: u64) -> Result<Vec<Row>, LedgerError> {
    let mut rows: Vec<Row> = tx.all(
        "SELECT b.bucket_start_ns, b.gpu_id, b.node_id, n.cluster, n.name, n.instance_type, n.capacity_type, n.region, n.zone,
                n.labels_json, g.uuid, g.model, g.mig_parent_uuid, g.mig_profile, b.observed_ns, b.held_ns, b.cost_micros,
                b.idle_micros, b.unallocated_micros, b.unpriced_ns,
                (SELECT COUNT(*) FROM gpus p WHERE p.node_id = n.node_id AND p.mig_parent_uuid IS NULL)
         FROM gpu_buckets b JOIN nodes n ON n.node_id = b.node_id JOIN gpus g ON g.gpu_id = b.gpu_id
         WHERE b.bucket_start_ns >= $1 AND b.bucket_start_ns < $2 ORDER BY b.bucket_start_ns, b.node_id, b.gpu_id",
        sql_params![from_ns as i64, to_ns as i64],
        Row::read,
    )?;
    add_holders(tx, from_ns, to_ns, &mut rows)?;
    Ok(rows)
}

impl Row {
    /// A row of [`stored_rows`]' statement, without its holders.
    fn read(r: &crate::sql::Row) -> Result<Self, DbError> {
        let labels: String = r.get(9)?;
        let observed_ns = r.get::<i64>(14)? as u64;
        Ok(Row {
            bucket: r.get(0)?,
            gpu_id: r.get(1)?,
            node_id: r.get(2)?,
            node: Node {
                cluster: r.get(3)?,
                name: r.get(4)?,
                instance_type: r.get(5)?,
                capacity_type: r.get(6)?,
                region: r.get(7)?,
                zone: r.get(8)?,
                labels: serde_json::from_str(&labels).unwrap_or_default(),
            },
            gpus: r.get::<i64>(20)? as u32,
            device: NodeDevice {
                uuid: r.get(10)?,
                model: r.get(11)?,
                mig_parent_uuid: r.get(12)?,
                mig_profile: r.get(13)?,
                observed_ns,
            },
            stored: DeviceBucket {
                observed_ns,
                held_ns: r.get::<i64>(15)? as u64,
                cost: r.get::<i64>(16)? as u64,
                idle: r.get::<i64>(17)? as u64,
                unallocated: r.get::<i64>(18)? as u64,
                holders: Vec::new(),
            },
            unpriced_ns: r.get::<i64>(19)? as u64,
            holders: Vec::new(),
        })
    }
}

/// Adds to `rows` their holders' buckets in [from_ns, to_ns), in order of workload and owner.
fn add_holders(tx: &impl Db, from_ns: u64, to_ns: u64, rows: &mut [Row]) -> Result<(), LedgerError> {
    let at: HashMap<(i64, i64, i64), usize> =
        rows.iter().enumerate().map(|(i, r)| ((r.bucket, r.gpu_id, r.node_id), i)).collect();
    for h in tx.rows(
        "SELECT bucket_start_ns, gpu_id, node_id, workload_id, owner_from, held_ns, used_ns, used_micros, hybrid_idle_micros,
                allocation_used_micros, allocation_idle_micros
         FROM usage_buckets WHERE bucket_start_ns >= $1 AND bucket_start_ns < $2
         ORDER BY bucket_start_ns, gpu_id, node_id, workload_id, owner_from",
        sql_params![from_ns as i64, to_ns as i64],
    )? {
        let Some(&i) = at.get(&(h.get(0)?, h.get(1)?, h.get(2)?)) else { continue };
        rows[i].holders.push((h.get(3)?, h.get(4)?));
        rows[i].stored.holders.push(HolderBucket {
            held_ns: h.get::<i64>(5)? as u64,
            used_ns: h.get::<i64>(6)? as u64,
            used: h.get::<i64>(7)? as u64,
            hybrid_idle: h.get::<i64>(8)? as u64,
            allocation_used: h.get::<i64>(9)? as u64,
            allocation_idle: h.get::<i64>(10)? as u64,
        });
    }
    Ok(())
}

/// Prices one node's devices in one bucket (`group`) anew: notes a node that had a cost and now has none, adds the
/// price to the node's `history` where it changed, and rewrites each device whose cost or unpriced time changed.
fn reprice_node_bucket(
    tx: &impl Db,
    group: &[Row],
    price_of: &PriceOf,
    report: &mut RepriceReport,
    history: &mut Applied,
) -> Result<(), LedgerError> {
    let first = &group[0];
    let name = format!("{}/{}", first.node.cluster, first.node.name);
    let model = group.iter().find(|r| r.device.mig_parent_uuid.is_none()).map_or("", |r| r.device.model.as_str());
    let new = price_of(&first.node, model, first.gpus, first.bucket as u64);
    let devices: Vec<NodeDevice> = group.iter().map(|r| r.device.clone()).collect();
    let stored: Vec<u64> = group.iter().map(|r| r.stored.cost).collect();
    let costs = node_bucket_costs(new.as_ref().ok(), first.bucket as u64, &devices, &stored);
    let old_total: u128 = group.iter().map(|r| u128::from(r.stored.cost)).sum();
    if old_total > 0 && costs.iter().all(|&c| c == 0) {
        report.unpriced.entry(name.clone()).or_insert_with(|| match &new {
            Err(u) => u.reason.clone(),
            Ok(p) => format!("priced at $0 by {}", p.source),
        });
    }
    let applied = history.entry(first.node_id).or_default();
    if applied.last().is_none_or(|(_, p, _)| !same_price(p, &new)) {
        applied.push((first.bucket as u64, new.clone(), first.gpus));
    }
    for (row, cost) in group.iter().zip(costs) {
        let unpriced_ns = if new.is_ok() { 0 } else { row.stored.observed_ns };
        if cost == row.stored.cost && unpriced_ns == row.unpriced_ns {
            continue;
        }
        report.buckets += 1;
        report.old_micros += u128::from(row.stored.cost);
        report.new_micros += u128::from(cost);
        let e = report.nodes.entry(name.clone()).or_default();
        e.0 += u128::from(row.stored.cost);
        e.1 += u128::from(cost);
        rewrite_row(tx, row, &rescale(&row.stored, cost), unpriced_ns)?;
    }
    Ok(())
}

/// Writes a device's bucket re-priced (`rescaled`, with `unpriced_ns`) over its stored one, and its holders' parts.
fn rewrite_row(tx: &impl Db, row: &Row, rescaled: &DeviceBucket, unpriced_ns: u64) -> Result<(), LedgerError> {
    tx.run(
        "UPDATE gpu_buckets SET cost_micros = $1, idle_micros = $2, unallocated_micros = $3, unpriced_ns = $4
         WHERE bucket_start_ns = $5 AND gpu_id = $6 AND node_id = $7",
        sql_params![
            rescaled.cost as i64,
            rescaled.idle as i64,
            rescaled.unallocated as i64,
            unpriced_ns as i64,
            row.bucket,
            row.gpu_id,
            row.node_id
        ],
    )?;
    for ((workload, owner_from), h) in row.holders.iter().zip(&rescaled.holders) {
        tx.run(
            "UPDATE usage_buckets SET used_micros = $1, hybrid_idle_micros = $2, allocation_used_micros = $3,
               allocation_idle_micros = $4
             WHERE bucket_start_ns = $5 AND gpu_id = $6 AND node_id = $7 AND workload_id = $8 AND owner_from = $9",
            sql_params![
                h.used as i64,
                h.hybrid_idle as i64,
                h.allocation_used as i64,
                h.allocation_idle as i64,
                row.bucket,
                row.gpu_id,
                row.node_id,
                workload,
                owner_from
            ],
        )?;
    }
    Ok(())
}

/// The node's price history becomes the prices `applied` over the window, then whatever was in force at its end,
/// so that the history says what every bucket was charged at.
fn rewrite_price_history(
    tx: &impl Db,
    node_id: i64,
    applied: Vec<(u64, Priced, u32)>,
    from_ns: u64,
    to_ns: u64,
) -> Result<(), LedgerError> {
    let after: Option<(Option<i64>, i64, String)> = tx.opt(
        "SELECT instance_micros_per_hour, gpus, source FROM node_prices WHERE node_id = $1 AND effective_from_ns <= $2
         ORDER BY effective_from_ns DESC LIMIT 1",
        sql_params![node_id, to_ns as i64],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    tx.run(
        "DELETE FROM node_prices WHERE node_id = $1 AND effective_from_ns >= $2 AND effective_from_ns < $3",
        sql_params![node_id, from_ns as i64, to_ns as i64],
    )?;
    if let Some((micros, gpus, source)) = after {
        tx.run(
            "INSERT INTO node_prices (node_id, effective_from_ns, instance_micros_per_hour, gpus, source) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (node_id, effective_from_ns) DO NOTHING",
            sql_params![node_id, to_ns as i64, micros, gpus, source],
        )?;
    }
    for (from, priced, physical) in applied {
        let (micros, gpus, source) = match priced {
            Ok(p) => (Some(p.instance_micros_per_hour as i64), p.gpus, format!("repriced: {}", p.source)),
            Err(u) => (None, physical, format!("repriced: unpriced: {}", u.reason)),
        };
        tx.run(
            "INSERT INTO node_prices (node_id, effective_from_ns, instance_micros_per_hour, gpus, source) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (node_id, effective_from_ns) DO UPDATE SET instance_micros_per_hour = excluded.instance_micros_per_hour,
               gpus = excluded.gpus, source = excluded.source",
            sql_params![node_id, from as i64, micros, gpus, source],
        )?;
    }
    Ok(())
}

/// Records the re-pricing of [from_ns, to_ns) and what it changed, per node.
fn record_repricing(tx: &impl Db, from_ns: u64, to_ns: u64, report: &RepriceReport) -> Result<(), LedgerError> {
    let detail = serde_json::to_string(&report.nodes).map_err(|e| LedgerError::Io(e.to_string()))?;
    tx.run(
        "INSERT INTO repricings (ran_at_ns, from_ns, to_ns, buckets, old_micros, new_micros, detail_json) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        sql_params![
            gpucost_types::clock::now_ns() as i64,
            from_ns as i64,
            to_ns as i64,
            report.buckets as i64,
            report.old_micros as i64,
            report.new_micros as i64,
            detail
        ],
    )?;
    Ok(())
}

/// A node's checked rows summed, per price in force at their start and at their end: (cluster, name, node id,
/// price from at start, price from at end, observed time of its physical GPUs, hourly rows they stand for, cost).
type CheckGroup = (String, String, i64, Option<i64>, Option<i64>, u128, u128, u128);

/// Per node with GPU time in [from_ns, to_ns), narrowed by GPU-level `filters`: its devices' cost against its
/// physical GPUs' observed time × the price in force at each bucket's start and end (both, where it changed
/// inside the bucket). A MIG device counts under its parent GPU, so a filter on a GPU takes its slices too.
fn price_check(
    c: &impl Db,
    bucket_ns: u64,
    from_ns: u64,
    to_ns: u64,
    filters: &[(Dimension, String)],
) -> Result<Vec<NodeCheck>, LedgerError> {
    let dims = DimSql::new(&filters.iter().map(|(d, _)| d).collect::<Vec<_>>());
    let mut params: Vec<Value> = filters.iter().map(|(_, v)| Value::Text(v.clone())).collect();
    params.extend([Value::Int(from_ns as i64), Value::Int(to_ns as i64)]);
    let source = checked_rows(c, bucket_ns, from_ns, to_ns)?;
    let groups = c.all(&check_sql(&dims, &source), &bind(&params), |r| {
        Ok((
            r.get::<String>(0)?,
            r.get::<String>(1)?,
            r.get::<i64>(2)?,
            r.get::<Option<i64>>(3)?,
            r.get::<Option<i64>>(4)?,
            sum_ns(r.get(5)?, r.get(6)?),
            r.get::<Option<i64>>(7)?.unwrap_or(0) as u128,
            r.get::<Option<i64>>(8)?.unwrap_or(0) as u128,
        ))
    })?;
    Ok(node_checks(groups, &rates(c)?))
}

/// The `FROM` source of the rows checked, with each row's length and the hourly rows it stands for (`hours`).
/// Built days are read from their daily rows (a day per row instead of 24), except the days in which a node's
/// price changed, whose hours are each checked at their own price.
fn checked_rows(c: &impl Db, bucket_ns: u64, from_ns: u64, to_ns: u64) -> Result<String, LedgerError> {
    let built = days::built_ranges(c, from_ns, to_ns)?;
    if built.is_empty() {
        return Ok(format!(
            "(SELECT bucket_start_ns, {bucket_ns} AS len_ns, 1 AS hours, gpu_id, node_id, observed_ns, cost_micros FROM gpu_buckets)"
        ));
    }
    let changed = price_change_days(c, from_ns, to_ns, &built)?;
    let hourly = days::within("bucket_start_ns", &days::complement(from_ns, to_ns, &built));
    let changed_hours = if changed.is_empty() { "0 = 1".to_string() } else { changed.join(" OR ") };
    let changed_days = changed_hours.replace("bucket_start_ns", "day_start_ns");
    Ok(format!(
        "(SELECT bucket_start_ns, {bucket_ns} AS len_ns, 1 AS hours, gpu_id, node_id, observed_ns, cost_micros FROM gpu_buckets
           WHERE {hourly} OR {changed_hours}
          UNION ALL SELECT day_start_ns, {} AS len_ns, {} AS hours, gpu_id, node_id, observed_ns, cost_micros FROM gpu_days
           WHERE {} AND NOT ({changed_days}))",
        days::DAY,
        days::DAY / bucket_ns.max(1),
        days::within("day_start_ns", &built)
    ))
}

/// Per built day (of `built`) in which a node's price changed inside [from_ns, to_ns), a condition on the node and
/// the day's `bucket_start_ns`.
fn price_change_days(c: &impl Db, from_ns: u64, to_ns: u64, built: &[(u64, u64)]) -> Result<Vec<String>, LedgerError> {
    let changes: Vec<(i64, i64)> = c.all(
        "SELECT node_id, effective_from_ns FROM node_prices WHERE effective_from_ns > $1 AND effective_from_ns < $2",
        sql_params![from_ns as i64, to_ns.min(i64::MAX as u64) as i64],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut changed: Vec<String> = Vec::new();
    for (node, at) in changes {
        let day = at as u64 / days::DAY * days::DAY;
        if at as u64 != day && built.iter().any(|&(s, e)| day >= s && day < e) {
            changed.push(format!(
                "(node_id = {node} AND bucket_start_ns >= {day} AND bucket_start_ns < {})",
                day + days::DAY
            ));
        }
    }
    Ok(changed)
}

/// The statement of [`CheckGroup`]s over `source`, narrowed by `dims` (bound first), then the window ($f, $t).
fn check_sql(dims: &DimSql, source: &str) -> String {
    let conds: String = dims.exprs.iter().enumerate().map(|(i, e)| format!("{e} = ${} AND ", i + 1)).collect();
    let (f, t) = (dims.exprs.len() + 1, dims.exprs.len() + 2);
    // The price in force at a row's start and at its end: the latest change at or before each.
    let in_force = |bound: &str| {
        format!(
            "(SELECT MAX(q.effective_from_ns) FROM node_prices q WHERE q.node_id = b.node_id AND q.effective_from_ns {bound})"
        )
    };
    format!(
        "SELECT x.cluster, x.name, x.node_id, x.at_start, x.at_end, SUM(x.observed_s), SUM(x.observed_r), SUM(x.physical), SUM(x.cost)
         FROM (SELECT n.cluster, n.name, b.node_id, {} AS at_start, {} AS at_end,
                      CASE WHEN d.mig_parent_uuid IS NULL THEN b.observed_ns / 1000000000 ELSE 0 END AS observed_s,
                      CASE WHEN d.mig_parent_uuid IS NULL THEN b.observed_ns % 1000000000 ELSE 0 END AS observed_r,
                      CASE WHEN d.mig_parent_uuid IS NULL THEN b.hours ELSE 0 END AS physical, b.cost_micros AS cost
               FROM {source} b JOIN gpus d ON d.gpu_id = b.gpu_id
                 JOIN gpus g ON g.cluster = d.cluster AND g.uuid = COALESCE(d.mig_parent_uuid, d.uuid) JOIN nodes n ON n.node_id = b.node_id
               WHERE {conds}b.bucket_start_ns >= ${f} AND b.bucket_start_ns < ${t}) x
         GROUP BY x.cluster, x.name, x.node_id, x.at_start, x.at_end ORDER BY x.cluster, x.name",
        in_force("<= b.bucket_start_ns"),
        in_force("< b.bucket_start_ns + b.len_ns")
    )
}

/// Every price in the history, by (node id, effective from).
fn rates(c: &impl Db) -> Result<HashMap<(i64, i64), Rate>, LedgerError> {
    Ok(c.all(
        "SELECT node_id, effective_from_ns, instance_micros_per_hour, gpus FROM node_prices",
        sql_params![],
        |r| {
            Ok((
                (r.get(0)?, r.get(1)?),
                Rate {
                    instance_micros_per_hour: r.get::<Option<i64>>(2)?.map(|m| m as u64),
                    gpus: r.get::<i64>(3)? as u32,
                },
            ))
        },
    )?
    .into_iter()
    .collect())
}

/// One check per node (`groups` come in order of node), each group's cost and time at the rates in force.
fn node_checks(groups: Vec<CheckGroup>, rates: &HashMap<(i64, i64), Rate>) -> Vec<NodeCheck> {
    let mut checks: Vec<NodeCheck> = Vec::new();
    for (cluster, name, node_id, at_start, at_end, observed_ns, physical, cost) in groups {
        let node = format!("{cluster}/{name}");
        if checks.last().is_none_or(|c| c.node != node) {
            checks.push(NodeCheck { node, ..Default::default() });
        }
        let check = checks.last_mut().expect("pushed above");
        let rate = |at: Option<i64>| at.and_then(|at| rates.get(&(node_id, at)).copied());
        check.fleet += cost;
        check.add_time(rate(at_start), rate(at_end), observed_ns, physical);
    }
    checks
}
