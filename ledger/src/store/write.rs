//! Writing a claimed batch's rows, a statement per table (a statement per row was most of the cost): the raw
//! GPU readings, the hourly usage of each (GPU, workload, owner), the raw process readings, the evidence
//! (`evidence.rs`), and each GPU's hourly totals. Raw rows only for intervals within the raw retention.

use std::collections::{BTreeMap, HashMap};

use gpucost_types::batch::Workload;
use gpucost_types::stage::Attributed;

use super::ids::IdCache;
use super::{NO_OWNER, spread};
use crate::error::LedgerError;
use crate::sql::{Db, DbError, Value, bind};

/// Stands for an absent energy reading in a row of integers (written as NULL).
pub(super) const NULL_ENERGY: i64 = i64::MIN;
/// Most rows one multi-row statement writes (its parameters stay far below either engine's limit).
pub(super) const ROWS_PER_STATEMENT: usize = 256;

/// `head VALUES (…), (…) tail` for the rows in `values` (`width` integers each), a statement per
/// [`ROWS_PER_STATEMENT`] rows. In column `nullable`, [`NULL_ENERGY`] is written as NULL.
pub(super) fn insert_rows(
    tx: &impl Db,
    head: &str,
    width: usize,
    tail: &str,
    values: &[i64],
    nullable: Option<usize>,
) -> Result<(), DbError> {
    for chunk in values.chunks(width * ROWS_PER_STATEMENT) {
        let rows = chunk.len() / width;
        let mut sql = String::with_capacity(head.len() + tail.len() + rows * width * 6 + 16);
        sql.push_str(head);
        sql.push_str(" VALUES ");
        for r in 0..rows {
            sql.push_str(if r == 0 { "(" } else { ", (" });
            for c in 0..width {
                if c > 0 {
                    sql.push_str(", ");
                }
                sql.push('$');
                sql.push_str(&(r * width + c + 1).to_string());
            }
            sql.push(')');
        }
        sql.push(' ');
        sql.push_str(tail);
        let params: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, &v)| if nullable == Some(i % width) && v == NULL_ENERGY { Value::Null } else { Value::Int(v) })
            .collect();
        tx.run(&sql, &bind(&params))?;
    }
    Ok(())
}

/// Where a batch's rows go: its node's and GPUs' ids, the buckets its interval spans (start, length), and
/// whether its raw rows are kept.
pub(super) struct Placed<'b> {
    pub(super) node_id: i64,
    pub(super) gpu_ids: HashMap<&'b str, i64>,
    pub(super) parts: Vec<(u64, u64)>,
    pub(super) keep_raw: bool,
}

/// One GPU's interval, summed before it is spread over the buckets.
#[derive(Default)]
struct GpuRoll {
    observed: bool,
    held: bool,
    used_ns: u64,
    energy_mj: u64,
    cost: u64,
    idle: u64,
    unallocated: u64,
    unpriced: bool,
}

/// Writes every row of `b`, in the order raw GPU readings, usage, raw process readings, GPU totals.
pub(super) fn rows<'b>(ids: &mut IdCache, tx: &impl Db, b: &'b Attributed, at: &Placed<'b>) -> Result<(), LedgerError> {
    let mut rolls = device_rolls(b);
    raw_gpus(tx, b, at, &mut rolls)?;
    let mut workloads = WorkloadIds::default();
    usage(ids, tx, b, at, &mut rolls, &mut workloads)?;
    if at.keep_raw {
        raw_processes(ids, tx, b, at, &mut workloads)?;
    }
    super::evidence::write(ids, tx, b, at, |ids, w| workloads.of(ids, tx, w))?;
    gpu_totals(tx, at, &rolls)
}

/// Every device of the node is part of the interval (and of its cost), read or not: a physical GPU the node
/// lists is observed for the interval (the time it is billed for), so that the fleet is its GPUs' price × time.
fn device_rolls(b: &Attributed) -> BTreeMap<&str, GpuRoll> {
    let mut rolls: BTreeMap<&str, GpuRoll> = BTreeMap::new();
    for (i, d) in b.devices.iter().enumerate() {
        let roll = rolls.entry(&d.uuid).or_default();
        roll.observed = !d.is_mig();
        if let Some(c) = b.cost.devices.get(i) {
            roll.cost = c.cost;
            roll.idle = c.idle;
            roll.unallocated = c.unallocated;
            roll.unpriced = c.unpriced.is_some();
        }
    }
    rolls
}

/// Each GPU reading's energy into its roll, and the raw readings kept.
fn raw_gpus<'b>(
    tx: &impl Db,
    b: &'b Attributed,
    at: &Placed<'b>,
    rolls: &mut BTreeMap<&'b str, GpuRoll>,
) -> Result<(), LedgerError> {
    let (start, end) = (b.start_ns as i64, b.end_ns as i64);
    let mut raw: Vec<i64> = Vec::new();
    for g in &b.gpus {
        // Validation made every reading one of the node's devices: observed above.
        let roll = rolls.entry(&g.uuid).or_default();
        roll.energy_mj = g.energy_millijoules.unwrap_or(0);
        if at.keep_raw {
            raw.extend([
                at.gpu_ids[g.uuid.as_str()],
                start,
                end,
                at.node_id,
                i64::from(g.utilization_ppm),
                g.memory_used_bytes as i64,
                g.power_milliwatts as i64,
            ]);
            raw.push(g.energy_millijoules.map_or(NULL_ENERGY, |e| e as i64));
        }
    }
    insert_rows(
        tx,
        "INSERT INTO gpu_intervals (gpu_id, start_ns, end_ns, node_id, utilization_ppm, memory_used_bytes, power_milliwatts, energy_millijoules)",
        8,
        "",
        &raw,
        Some(7),
    )?;
    Ok(())
}

/// A workload appears on every process and holding of it: its id is resolved once per batch.
#[derive(Default)]
struct WorkloadIds<'b>(HashMap<&'b str, i64>);

impl<'b> WorkloadIds<'b> {
    fn of(&mut self, ids: &mut IdCache, tx: &impl Db, w: &'b Workload) -> Result<i64, LedgerError> {
        if let Some(&id) = self.0.get(w.key.as_str()) {
            return Ok(id);
        }
        let id = ids.workload_id(tx, w)?;
        self.0.insert(w.key.as_str(), id);
        Ok(id)
    }
}

/// Each holding's GPU time, money, energy and CO2e, spread over the buckets and summed per (bucket, GPU,
/// workload, owner in force); the holdings' use into their GPUs' rolls.
fn usage<'b>(
    ids: &mut IdCache,
    tx: &impl Db,
    b: &'b Attributed,
    at: &Placed<'b>,
    rolls: &mut BTreeMap<&'b str, GpuRoll>,
    workloads: &mut WorkloadIds<'b>,
) -> Result<(), LedgerError> {
    let mut usage: BTreeMap<(i64, i64, i64, i64), [i64; 9]> = BTreeMap::new();
    for (k, h) in b.holdings.iter().enumerate() {
        let gpu_id = at.gpu_ids[h.gpu_uuid.as_str()];
        let workload_id = workloads.of(ids, tx, &h.workload)?;
        let roll = rolls.entry(&h.gpu_uuid).or_default();
        roll.held = true;
        roll.used_ns += h.used_ns;
        // The owner this interval's time is billed to (-1: no owner rules).
        let owner_from = match b.owners.get(k) {
            Some(o) => ids.owner_from(tx, workload_id, b.start_ns, o)?,
            None => NO_OWNER,
        };
        let c = b.cost.holdings.get(k).copied().unwrap_or_default();
        let amounts = [
            h.used_ns,
            c.used,
            c.hybrid_idle,
            c.allocation_used,
            c.allocation_idle,
            c.energy_mj,
            c.co2e_mg.unwrap_or(0),
        ]
        .map(|a| spread(a, &at.parts));
        for (p, (bucket, len)) in at.parts.iter().enumerate() {
            let row = usage.entry((*bucket as i64, gpu_id, workload_id, owner_from)).or_default();
            row[0] += *len as i64;
            for (n, a) in amounts.iter().enumerate() {
                row[1 + n] += a[p] as i64;
            }
            row[8] += if c.co2e_mg.is_some() { *len as i64 } else { 0 };
        }
    }
    let usage_rows: Vec<i64> = usage
        .iter()
        .flat_map(|(&(bucket, gpu_id, workload_id, owner_from), v)| {
            [bucket, gpu_id, workload_id, at.node_id, owner_from].into_iter().chain(*v)
        })
        .collect();
    insert_rows(
        tx,
        "INSERT INTO usage_buckets (bucket_start_ns, gpu_id, workload_id, node_id, owner_from, held_ns, used_ns, used_micros,
           hybrid_idle_micros, allocation_used_micros, allocation_idle_micros, energy_millijoules, co2e_mg, co2e_known_ns)",
        14,
        "ON CONFLICT (bucket_start_ns, gpu_id, workload_id, node_id, owner_from) DO UPDATE SET
           held_ns = usage_buckets.held_ns + excluded.held_ns, used_ns = usage_buckets.used_ns + excluded.used_ns,
           used_micros = usage_buckets.used_micros + excluded.used_micros,
           hybrid_idle_micros = usage_buckets.hybrid_idle_micros + excluded.hybrid_idle_micros,
           allocation_used_micros = usage_buckets.allocation_used_micros + excluded.allocation_used_micros,
           allocation_idle_micros = usage_buckets.allocation_idle_micros + excluded.allocation_idle_micros,
           energy_millijoules = usage_buckets.energy_millijoules + excluded.energy_millijoules,
           co2e_mg = usage_buckets.co2e_mg + excluded.co2e_mg, co2e_known_ns = usage_buckets.co2e_known_ns + excluded.co2e_known_ns",
        &usage_rows,
        None,
    )?;
    Ok(())
}

/// The raw process readings.
fn raw_processes<'b>(
    ids: &mut IdCache,
    tx: &impl Db,
    b: &'b Attributed,
    at: &Placed<'b>,
    workloads: &mut WorkloadIds<'b>,
) -> Result<(), LedgerError> {
    let (start, end) = (b.start_ns as i64, b.end_ns as i64);
    let mut raw: Vec<i64> = Vec::with_capacity(b.processes.len() * 8);
    for p in &b.processes {
        let workload_id = workloads.of(ids, tx, &p.workload)?;
        raw.extend([
            at.gpu_ids[p.gpu_uuid.as_str()],
            start,
            i64::from(p.pid),
            end,
            workload_id,
            i64::from(p.sm_share_ppm),
            i64::from(p.memory_util_ppm),
            p.used_memory_bytes as i64,
        ]);
    }
    insert_rows(
        tx,
        "INSERT INTO process_intervals (gpu_id, start_ns, pid, end_ns, workload_id, sm_util_ppm, memory_util_ppm, used_memory_bytes)",
        8,
        "",
        &raw,
        None,
    )?;
    Ok(())
}

/// Each GPU's observed, held and used time, energy and money, spread over the buckets.
fn gpu_totals(tx: &impl Db, at: &Placed<'_>, rolls: &BTreeMap<&str, GpuRoll>) -> Result<(), LedgerError> {
    let mut gpu_rows: Vec<i64> = Vec::with_capacity(rolls.len() * at.parts.len() * 11);
    for (uuid, roll) in rolls {
        let amounts =
            [roll.used_ns, roll.energy_mj, roll.cost, roll.idle, roll.unallocated].map(|a| spread(a, &at.parts));
        for (p, (bucket, len)) in at.parts.iter().enumerate() {
            let a = |n: usize| amounts[n][p] as i64;
            let observed_ns = if roll.observed { *len } else { 0 };
            let held_ns = if roll.held { *len } else { 0 };
            let unpriced_ns = if roll.unpriced { observed_ns } else { 0 };
            gpu_rows.extend([
                *bucket as i64,
                at.gpu_ids[uuid],
                at.node_id,
                observed_ns as i64,
                held_ns as i64,
                a(0),
                a(1),
                a(2),
                a(3),
                a(4),
                unpriced_ns as i64,
            ]);
        }
    }
    insert_rows(
        tx,
        "INSERT INTO gpu_buckets (bucket_start_ns, gpu_id, node_id, observed_ns, held_ns, used_ns, energy_millijoules,
           cost_micros, idle_micros, unallocated_micros, unpriced_ns)",
        11,
        "ON CONFLICT (bucket_start_ns, gpu_id, node_id) DO UPDATE SET
           observed_ns = gpu_buckets.observed_ns + excluded.observed_ns, held_ns = gpu_buckets.held_ns + excluded.held_ns,
           used_ns = gpu_buckets.used_ns + excluded.used_ns, energy_millijoules = gpu_buckets.energy_millijoules + excluded.energy_millijoules,
           cost_micros = gpu_buckets.cost_micros + excluded.cost_micros, idle_micros = gpu_buckets.idle_micros + excluded.idle_micros,
           unallocated_micros = gpu_buckets.unallocated_micros + excluded.unallocated_micros,
           unpriced_ns = gpu_buckets.unpriced_ns + excluded.unpriced_ns",
        &gpu_rows,
        None,
    )?;
    Ok(())
}
