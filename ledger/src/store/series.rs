//! Reading a thing's history: per bucket, what one GPU, one node or one workload did and cost, from the
//! hourly rollups (kept for good) and, within the raw retention, the raw per-interval readings (utilisation,
//! memory and power).
//!
//! - A GPU or a node: per bucket, its `gpu_buckets` summed (observed, held and used GPU time, energy, cost, the
//!   utilization policy's idle line, unallocated cost), and from its `gpu_intervals` the interval-time-weighted
//!   mean and the maximum of utilisation, memory used and power, per GPU (a node's means are over all its GPUs'
//!   intervals; its maxima the highest single GPU interval). A raw interval counts in the bucket it starts in.
//! - Past the raw retention (no raw rows left for a bucket), the mean utilisation is the rollup's used ÷ observed
//!   time and the mean power its energy ÷ observed time; memory and the maxima are unknown (`None`).
//! - A workload: per bucket and GPU it held, its `usage_buckets` (held and used time, energy, and its cost under
//!   the hybrid policy: its used share plus its part of the idle rest).

use super::{Engine, SqlLedger};
use crate::sql::Db;
use crate::{LedgerError, sql_params};
use std::collections::HashMap;

/// Whose history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistorySubject {
    /// A GPU (or MIG device) by UUID; in one cluster when `cluster` is given, else in every cluster that has it.
    Gpu { uuid: String, cluster: Option<String> },
    /// A node of a cluster.
    Node { cluster: String, name: String },
    /// A workload by its key (`pod:<cluster>/<namespace>/<pod>`…).
    Workload { key: String },
}

/// Where a bucket's utilisation, memory and power come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistorySource {
    /// The raw per-interval readings, kept within the raw retention.
    Raw,
    /// The hourly rollup only: the raw rows are past the retention (or were never kept).
    Rollup,
}

/// One bucket of a thing's history (for a workload, one bucket of one GPU it held).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPoint {
    pub bucket_start_ns: u64,
    /// The GPU (a workload's history has a point per GPU it held; `None` for a GPU or a node).
    pub gpu: Option<String>,
    /// GPU time observed (0 for a workload: its GPUs' time is theirs), held, used.
    pub observed_ns: u64,
    pub held_ns: u64,
    pub used_ns: u64,
    pub energy_millijoules: u64,
    /// What the GPU time cost: a GPU's or node's whole cost; a workload's hybrid-policy charge.
    pub cost_micros: u64,
    /// The utilization policy's idle line (cost nobody used) and the cost while nobody held the GPU; 0 for a
    /// workload.
    pub idle_micros: u64,
    pub unallocated_micros: u64,
    /// Raw interval time behind the utilisation, memory and power figures (0 when they come from the rollup).
    pub raw_ns: u64,
    pub source: HistorySource,
    /// Utilisation in ppm: mean (interval-time-weighted; from the rollup past the retention) and maximum.
    pub utilization_mean_ppm: Option<u64>,
    pub utilization_max_ppm: Option<u64>,
    /// Memory used per GPU, bytes: mean and maximum (raw only).
    pub memory_used_mean_bytes: Option<u64>,
    pub memory_used_max_bytes: Option<u64>,
    /// Power per GPU, milliwatts: mean (from the rollup's energy past the retention) and maximum (raw only).
    pub power_mean_milliwatts: Option<u64>,
    pub power_max_milliwatts: Option<u64>,
}

type Raw = (i64, i64, i64, i64, i64, i64, i64, i64);

fn u(v: Option<i64>) -> u64 {
    v.unwrap_or(0).max(0) as u64
}

/// A workload's point with what follows from its GPU time and evidence: utilisation (used ÷ held time), the
/// highest interval SM share, the peak memory, and power (its share of the GPU's energy ÷ held time).
fn workload_point(mut p: HistoryPoint, evidence: &HashMap<(i64, String), (u64, Option<u64>)>) -> HistoryPoint {
    if p.held_ns > 0 {
        p.utilization_mean_ppm = Some((u128::from(p.used_ns) * 1_000_000 / u128::from(p.held_ns)) as u64);
        p.power_mean_milliwatts =
            Some((u128::from(p.energy_millijoules) * 1_000_000_000 / u128::from(p.held_ns)) as u64);
    }
    if let Some((sm_max, peak)) = evidence.get(&(p.bucket_start_ns as i64, p.gpu.clone().unwrap_or_default())) {
        p.utilization_max_ppm = Some(*sm_max);
        p.memory_used_max_bytes = *peak;
    }
    p
}

impl<E: Engine> SqlLedger<E> {
    /// Per bucket in [from_ns, to_ns) with GPU time of `subject`, in order (a workload's: by bucket, then GPU).
    pub(super) fn history_of(
        &self,
        subject: &HistorySubject,
        from_ns: u64,
        to_ns: u64,
    ) -> Result<Vec<HistoryPoint>, LedgerError> {
        let bucket = self.bucket_ns as i64;
        let (from, to) = (from_ns as i64, to_ns as i64);
        self.with_reader(|c| {
            if let HistorySubject::Workload { key } = subject {
                let rows = c.all(
                    "SELECT b.bucket_start_ns, g.uuid, SUM(b.held_ns), SUM(b.used_ns), SUM(b.energy_millijoules),
                            SUM(b.used_micros + b.hybrid_idle_micros)
                     FROM usage_buckets b JOIN workloads w ON w.workload_id = b.workload_id JOIN gpus g ON g.gpu_id = b.gpu_id
                     WHERE w.key = $1 AND b.bucket_start_ns >= $2 AND b.bucket_start_ns < $3
                     GROUP BY b.bucket_start_ns, g.uuid ORDER BY b.bucket_start_ns, g.uuid",
                    sql_params![key.as_str(), from, to],
                    |r| {
                        Ok(HistoryPoint {
                            bucket_start_ns: r.get::<i64>(0)? as u64,
                            gpu: Some(r.get(1)?),
                            observed_ns: 0,
                            held_ns: u(r.get(2)?),
                            used_ns: u(r.get(3)?),
                            energy_millijoules: u(r.get(4)?),
                            cost_micros: u(r.get(5)?),
                            idle_micros: 0,
                            unallocated_micros: 0,
                            raw_ns: 0,
                            source: HistorySource::Rollup,
                            utilization_mean_ppm: None,
                            utilization_max_ppm: None,
                            memory_used_mean_bytes: None,
                            memory_used_max_bytes: None,
                            power_mean_milliwatts: None,
                            power_max_milliwatts: None,
                        })
                    },
                )?;
                // The evidence of the same buckets and GPUs (migration 0018): the highest interval SM share and
                // the peak memory its agents reported (the processes' peaks summed; unknown from older agents).
                let evidence: HashMap<(i64, String), (u64, Option<u64>)> = c
                    .all(
                        "SELECT e.bucket_start_ns, g.uuid, MAX(e.sm_max_ppm), MAX(e.peak_memory_bytes), SUM(e.peak_known_ns)
                         FROM workload_evidence e JOIN workloads w ON w.workload_id = e.workload_id JOIN gpus g ON g.gpu_id = e.gpu_id
                         WHERE w.key = $1 AND e.bucket_start_ns >= $2 AND e.bucket_start_ns < $3
                         GROUP BY e.bucket_start_ns, g.uuid",
                        sql_params![key.as_str(), from, to],
                        |r| {
                            let (peak, known) = (u(r.get(3)?), u(r.get(4)?) > 0);
                            Ok(((r.get::<i64>(0)?, r.get::<String>(1)?), (u(r.get(2)?), known.then_some(peak))))
                        },
                    )?
                    .into_iter()
                    .collect();
                return Ok(rows.into_iter().map(|p| workload_point(p, &evidence)).collect());
            }
            // The GPUs' filter, over `g` (gpus) and `n` (nodes), its two parameters numbered from `k` (SQLite
            // numbers parameters in order of first appearance, so they come last in each statement).
            let (a, b) = match subject {
                HistorySubject::Gpu { uuid, cluster } => (uuid.clone(), cluster.clone().unwrap_or_default()),
                HistorySubject::Node { cluster, name } => (cluster.clone(), name.clone()),
                HistorySubject::Workload { .. } => unreachable!("answered above"),
            };
            let filter = |k: usize| match subject {
                HistorySubject::Gpu { .. } => format!("g.uuid = ${k} AND (${} = '' OR g.cluster = ${})", k + 1, k + 1),
                _ => format!("n.cluster = ${k} AND n.name = ${}", k + 1),
            };
            let (f3, f4) = (filter(3), filter(4));
            let buckets: Vec<(i64, [i64; 7])> = c.all(
                &format!(
                    "SELECT b.bucket_start_ns, SUM(b.observed_ns), SUM(b.held_ns), SUM(b.used_ns), SUM(b.energy_millijoules),
                            SUM(b.cost_micros), SUM(b.idle_micros), SUM(b.unallocated_micros)
                     FROM gpu_buckets b JOIN gpus g ON g.gpu_id = b.gpu_id JOIN nodes n ON n.node_id = b.node_id
                     WHERE b.bucket_start_ns >= $1 AND b.bucket_start_ns < $2 AND {f3}
                     GROUP BY b.bucket_start_ns ORDER BY b.bucket_start_ns"
                ),
                sql_params![from, to, a.as_str(), b.as_str()],
                |r| {
                    let mut v = [0i64; 7];
                    for (i, x) in v.iter_mut().enumerate() {
                        *x = r.get::<Option<i64>>(i + 1)?.unwrap_or(0);
                    }
                    Ok((r.get(0)?, v))
                },
            )?;
            // Raw readings, weighted by their interval in milliseconds and memory in KiB, so that no sum can
            // overflow 64 bits (a node's 8 GPUs × an hour of 80 GiB: ~2.4e15).
            let raw: Vec<Raw> = c.all(
                &format!(
                    "SELECT (i.start_ns / $1) * $1, SUM((i.end_ns - i.start_ns) / 1000000),
                            SUM(i.utilization_ppm * ((i.end_ns - i.start_ns) / 1000000)), MAX(i.utilization_ppm),
                            SUM((i.memory_used_bytes / 1024) * ((i.end_ns - i.start_ns) / 1000000)), MAX(i.memory_used_bytes),
                            SUM(i.power_milliwatts * ((i.end_ns - i.start_ns) / 1000000)), MAX(i.power_milliwatts)
                     FROM gpu_intervals i JOIN gpus g ON g.gpu_id = i.gpu_id JOIN nodes n ON n.node_id = i.node_id
                     WHERE i.start_ns >= $2 AND i.start_ns < $3 AND {f4}
                     GROUP BY 1 ORDER BY 1"
                ),
                sql_params![bucket, from, to, a.as_str(), b.as_str()],
                |r| {
                    let g = |i: usize| -> Result<i64, crate::sql::DbError> { Ok(r.get::<Option<i64>>(i)?.unwrap_or(0)) };
                    Ok((g(0)?, g(1)?, g(2)?, g(3)?, g(4)?, g(5)?, g(6)?, g(7)?))
                },
            )?;
            let raw: std::collections::HashMap<i64, Raw> = raw.into_iter().map(|r| (r.0, r)).collect();
            Ok(buckets
                .into_iter()
                .map(|(start, v)| {
                    let [observed, held, used, energy, cost, idle, unallocated] = v.map(|x| x.max(0) as u64);
                    let mut p = HistoryPoint {
                        bucket_start_ns: start as u64,
                        gpu: None,
                        observed_ns: observed,
                        held_ns: held,
                        used_ns: used,
                        energy_millijoules: energy,
                        cost_micros: cost,
                        idle_micros: idle,
                        unallocated_micros: unallocated,
                        raw_ns: 0,
                        source: HistorySource::Rollup,
                        utilization_mean_ppm: None,
                        utilization_max_ppm: None,
                        memory_used_mean_bytes: None,
                        memory_used_max_bytes: None,
                        power_mean_milliwatts: None,
                        power_max_milliwatts: None,
                    };
                    match raw.get(&start) {
                        Some(&(_, ms, util, util_max, mem_kib, mem_max, power, power_max)) if ms > 0 => {
                            let ms = ms as u64;
                            p.source = HistorySource::Raw;
                            p.raw_ns = ms * 1_000_000;
                            p.utilization_mean_ppm = Some(util as u64 / ms);
                            p.utilization_max_ppm = Some(util_max as u64);
                            p.memory_used_mean_bytes = Some(mem_kib as u64 / ms * 1024);
                            p.memory_used_max_bytes = Some(mem_max as u64);
                            p.power_mean_milliwatts = Some(power as u64 / ms);
                            p.power_max_milliwatts = Some(power_max as u64);
                        }
                        _ if observed > 0 => {
                            p.utilization_mean_ppm = Some((u128::from(used) * 1_000_000 / u128::from(observed)) as u64);
                            p.power_mean_milliwatts =
                                Some((u128::from(energy) * 1_000_000_000 / u128::from(observed)) as u64);
                        }
                        _ => {}
                    }
                    p
                })
                .collect())
        })
    }
}
