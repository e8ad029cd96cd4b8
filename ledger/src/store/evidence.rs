//! The evidence rollups (`crate::evidence`): written with a batch's other rows, in its transaction, and read
//! back over a window.
//!
//! Written per holding (a workload on a GPU over the interval), spread over the buckets the interval touches:
//! its interval SM share (used ÷ held time, as billed), the peak memory of its processes on that GPU (their
//! peaks summed, an upper bound when they peak apart; known only when every one of them reported it; a holder
//! without a process held nothing, 0), and their sampled and busy sample counts (of those that reported them).
//! Rows merge by upsert as the hourly usage rollups do, so that they can move with them.

use std::collections::{BTreeMap, HashMap};

use gpucost_types::batch::{Holding, PPM, ProcessReading};
use gpucost_types::stage::Attributed;

use super::ids::IdCache;
use super::write::{Placed, insert_rows};
use super::{Engine, SqlLedger};
use crate::LedgerError;
use crate::evidence::{EvidenceQuery, EvidenceStore, NodeInstance, RanOn, WorkloadEvidence, percentile_ppm, sm_bin};
use crate::rollup::spread;
use crate::sql::{Db, Value, bind};

/// One holding's evidence over its interval.
#[derive(Debug, PartialEq, Eq)]
struct Held {
    sm_ppm: u64,
    peak: Option<u64>,
    samples: u64,
    busy: u64,
}

/// The evidence of holding `h`, from its workload's processes on its GPU (`procs`; none for a holder that ran
/// nothing): its used share of the time held, its processes' peaks summed (unknown if any did not report one),
/// and the samples and busy samples of those that reported them.
fn held(h: &Holding, procs: &[&ProcessReading]) -> Held {
    let sm_ppm = match h.held_ns {
        0 => 0,
        held => (u128::from(h.used_ns) * u128::from(PPM) / u128::from(held)) as u64,
    };
    let (mut peak, mut samples, mut busy) = (Some(0u64), 0u64, 0u64);
    for p in procs {
        peak = match (peak, p.peak_memory_bytes) {
            (Some(a), Some(b)) => Some(a.saturating_add(b)),
            _ => None,
        };
        if let Some(b) = p.busy_samples {
            samples += u64::from(p.samples);
            busy += u64::from(b.min(p.samples));
        }
    }
    Held { sm_ppm, peak, samples, busy }
}

/// Writes the batch's evidence rows and its node's instance id, in the batch's transaction. `workload_id`
/// resolves a workload's id (once per batch, with the usage rows).
pub(super) fn write<'b>(
    ids: &mut IdCache,
    tx: &impl Db,
    b: &'b Attributed,
    at: &Placed<'b>,
    mut workload_id: impl FnMut(&mut IdCache, &'b gpucost_types::batch::Workload) -> Result<i64, LedgerError>,
) -> Result<(), LedgerError> {
    let mut procs: HashMap<(&str, &str), Vec<&ProcessReading>> = HashMap::new();
    for p in &b.processes {
        procs.entry((p.gpu_uuid.as_str(), p.workload.key.as_str())).or_default().push(p);
    }
    let mut rows: Vec<i64> = Vec::with_capacity(b.holdings.len() * at.parts.len() * 10);
    let mut bins: BTreeMap<(i64, i64, i64, i64), i64> = BTreeMap::new();
    for h in &b.holdings {
        let gpu_id = at.gpu_ids[h.gpu_uuid.as_str()];
        let wid = workload_id(ids, &h.workload)?;
        let e = held(h, procs.get(&(h.gpu_uuid.as_str(), h.workload.key.as_str())).map_or(&[], Vec::as_slice));
        let (samples, busy) = (spread(e.samples, &at.parts), spread(e.busy, &at.parts));
        for (p, &(bucket, len)) in at.parts.iter().enumerate() {
            rows.extend([
                bucket as i64,
                gpu_id,
                wid,
                at.node_id,
                len as i64,
                e.sm_ppm as i64,
                e.peak.unwrap_or(0) as i64,
                if e.peak.is_some() { len as i64 } else { 0 },
                samples[p] as i64,
                busy[p] as i64,
            ]);
            *bins.entry((bucket as i64, gpu_id, wid, i64::from(sm_bin(e.sm_ppm)))).or_default() += len as i64;
        }
    }
    insert_rows(
        tx,
        "INSERT INTO workload_evidence (bucket_start_ns, gpu_id, workload_id, node_id, held_ns, sm_max_ppm,
           peak_memory_bytes, peak_known_ns, samples, busy_samples)",
        10,
        "ON CONFLICT (bucket_start_ns, gpu_id, workload_id, node_id) DO UPDATE SET
           held_ns = workload_evidence.held_ns + excluded.held_ns,
           sm_max_ppm = CASE WHEN workload_evidence.sm_max_ppm > excluded.sm_max_ppm
             THEN workload_evidence.sm_max_ppm ELSE excluded.sm_max_ppm END,
           peak_memory_bytes = CASE WHEN workload_evidence.peak_memory_bytes > excluded.peak_memory_bytes
             THEN workload_evidence.peak_memory_bytes ELSE excluded.peak_memory_bytes END,
           peak_known_ns = workload_evidence.peak_known_ns + excluded.peak_known_ns,
           samples = workload_evidence.samples + excluded.samples,
           busy_samples = workload_evidence.busy_samples + excluded.busy_samples",
        &rows,
        None,
    )?;
    let bin_rows: Vec<i64> =
        bins.iter().flat_map(|(&(bucket, gpu_id, wid, bin), &ns)| [bucket, gpu_id, wid, at.node_id, bin, ns]).collect();
    insert_rows(
        tx,
        "INSERT INTO workload_sm_bins (bucket_start_ns, gpu_id, workload_id, node_id, bin, held_ns)",
        6,
        "ON CONFLICT (bucket_start_ns, gpu_id, workload_id, node_id, bin) DO UPDATE SET
           held_ns = workload_sm_bins.held_ns + excluded.held_ns",
        &bin_rows,
        None,
    )?;
    if let Some(instance_id) = &b.instance_id {
        for &(bucket, len) in &at.parts {
            tx.run(
                "INSERT INTO node_instances (bucket_start_ns, node_id, instance_id, seen_ns) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (node_id, bucket_start_ns, instance_id) DO UPDATE SET
                   seen_ns = node_instances.seen_ns + excluded.seen_ns",
                &bind(&[
                    Value::Int(bucket as i64),
                    Value::Int(at.node_id),
                    Value::Text(instance_id.clone()),
                    Value::Int(len as i64),
                ]),
            )?;
        }
    }
    Ok(())
}

/// One evidence row as read, with what it names.
struct Row {
    workload_id: i64,
    key: String,
    namespace: String,
    controller_kind: String,
    controller_name: String,
    cluster: String,
    bucket: i64,
    ran_on: RanOn,
    held_ns: u64,
    sm_max_ppm: u64,
    peak: u64,
    peak_known_ns: u64,
    samples: u64,
    busy: u64,
}

/// The controller-level group of a workload: its controller's, or its own key.
fn group(r: &Row) -> String {
    if r.controller_name.is_empty() {
        r.key.clone()
    } else {
        format!("controller:{}/{}/{}/{}", r.cluster, r.namespace, r.controller_kind, r.controller_name)
    }
}

/// The WHERE clause and parameters of `q`, on evidence rows `e`, workloads `w` and nodes `n`.
fn filters(q: &EvidenceQuery) -> (String, Vec<Value>) {
    let mut sql = "e.bucket_start_ns >= $1 AND e.bucket_start_ns < $2".to_string();
    let mut params =
        vec![Value::Int(q.from_ns.min(i64::MAX as u64) as i64), Value::Int(q.to_ns.min(i64::MAX as u64) as i64)];
    if let Some(c) = &q.cluster {
        params.push(Value::Text(c.clone()));
        sql.push_str(&format!(" AND n.cluster = ${}", params.len()));
    }
    if let Some(ns) = &q.namespace {
        params.push(Value::Text(ns.clone()));
        sql.push_str(&format!(" AND w.namespace = ${}", params.len()));
    }
    (sql, params)
}

impl<E: Engine> EvidenceStore for SqlLedger<E> {
    fn evidence(&self, q: &EvidenceQuery) -> Result<Vec<WorkloadEvidence>, LedgerError> {
        let (cond, params) = filters(q);
        let bucket_ns = self.bucket_ns;
        self.with_reader(|c| {
            let rows: Vec<Row> = c.all(
                &format!(
                    "SELECT e.workload_id, w.key, w.namespace, w.controller_kind, w.controller_name, n.cluster,
                       e.bucket_start_ns, g.model, g.memory_total_bytes, g.mig_profile, n.instance_type, n.region,
                       e.held_ns, e.sm_max_ppm, e.peak_memory_bytes, e.peak_known_ns, e.samples, e.busy_samples
                     FROM workload_evidence e JOIN workloads w ON w.workload_id = e.workload_id
                       JOIN gpus g ON g.gpu_id = e.gpu_id JOIN nodes n ON n.node_id = e.node_id
                     WHERE {cond}"
                ),
                &bind(&params),
                |r| {
                    Ok(Row {
                        workload_id: r.get(0)?,
                        key: r.get(1)?,
                        namespace: r.get(2)?,
                        controller_kind: r.get(3)?,
                        controller_name: r.get(4)?,
                        cluster: r.get(5)?,
                        bucket: r.get(6)?,
                        ran_on: RanOn {
                            gpu_model: r.get(7)?,
                            memory_total_bytes: r.get(8)?,
                            mig_profile: r.get(9)?,
                            instance_type: r.get(10)?,
                            region: r.get(11)?,
                            held_ns: 0,
                        },
                        held_ns: r.get(12)?,
                        sm_max_ppm: r.get(13)?,
                        peak: r.get(14)?,
                        peak_known_ns: r.get(15)?,
                        samples: r.get(16)?,
                        busy: r.get(17)?,
                    })
                },
            )?;
            let bins: Vec<(i64, u32, u64)> = c.all(
                &format!(
                    "SELECT e.workload_id, e.bin, CAST(SUM(e.held_ns) AS BIGINT)
                     FROM workload_sm_bins e JOIN workloads w ON w.workload_id = e.workload_id
                       JOIN nodes n ON n.node_id = e.node_id
                     WHERE {cond} GROUP BY e.workload_id, e.bin"
                ),
                &bind(&params),
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            Ok(fold(rows, &bins, bucket_ns))
        })
    }

    fn node_instances(
        &self,
        from_ns: u64,
        to_ns: u64,
        instance_id: Option<&str>,
    ) -> Result<Vec<NodeInstance>, LedgerError> {
        let mut params =
            vec![Value::Int(from_ns.min(i64::MAX as u64) as i64), Value::Int(to_ns.min(i64::MAX as u64) as i64)];
        let mut cond = "i.bucket_start_ns >= $1 AND i.bucket_start_ns < $2".to_string();
        if let Some(id) = instance_id {
            params.push(Value::Text(id.to_string()));
            cond.push_str(" AND i.instance_id = $3");
        }
        self.with_reader(|c| {
            Ok(c.all(
                &format!(
                    "SELECT n.cluster, n.name, i.bucket_start_ns, i.instance_id, i.seen_ns
                     FROM node_instances i JOIN nodes n ON n.node_id = i.node_id WHERE {cond}
                     ORDER BY n.cluster, n.name, i.bucket_start_ns, i.instance_id"
                ),
                &bind(&params),
                |r| {
                    Ok(NodeInstance {
                        cluster: r.get(0)?,
                        node: r.get(1)?,
                        bucket_start_ns: r.get(2)?,
                        instance_id: r.get(3)?,
                        seen_ns: r.get(4)?,
                    })
                },
            )?)
        })
    }
}

/// The rows and SM bins of a window, per controller-level group.
fn fold(rows: Vec<Row>, bins: &[(i64, u32, u64)], bucket_ns: u64) -> Vec<WorkloadEvidence> {
    struct Acc {
        e: WorkloadEvidence,
        workloads: std::collections::BTreeSet<i64>,
        buckets: std::collections::BTreeSet<i64>,
        ran_on: BTreeMap<RanOn, u64>,
        peak: Option<u64>,
        busy: u64,
    }
    let mut groups: BTreeMap<String, Acc> = BTreeMap::new();
    let mut group_of: HashMap<i64, String> = HashMap::new();
    for r in rows {
        let name = group(&r);
        group_of.insert(r.workload_id, name.clone());
        let a = groups.entry(name.clone()).or_insert_with(|| Acc {
            e: WorkloadEvidence {
                group: name,
                cluster: r.cluster.clone(),
                namespace: r.namespace.clone(),
                controller_kind: r.controller_kind.clone(),
                controller_name: r.controller_name.clone(),
                workloads: 0,
                buckets_seen: 0,
                bucket_ns,
                held_ns: 0,
                peak_memory_bytes: None,
                peak_known_ns: 0,
                sm_max_ppm: 0,
                sm_p95_ppm: 0,
                sm_p50_ppm: 0,
                busy_ppm: None,
                samples: 0,
                ran_on: Vec::new(),
            },
            workloads: Default::default(),
            buckets: Default::default(),
            ran_on: BTreeMap::new(),
            peak: None,
            busy: 0,
        });
        a.workloads.insert(r.workload_id);
        a.buckets.insert(r.bucket);
        *a.ran_on.entry(r.ran_on).or_default() += r.held_ns;
        a.e.held_ns += r.held_ns;
        a.e.sm_max_ppm = a.e.sm_max_ppm.max(r.sm_max_ppm.min(PPM) as u32);
        if r.peak_known_ns > 0 {
            a.peak = Some(a.peak.unwrap_or(0).max(r.peak));
            a.e.peak_known_ns += r.peak_known_ns;
        }
        a.e.samples += r.samples;
        a.busy += r.busy;
    }
    let mut hist: HashMap<&str, Vec<(u32, u64)>> = HashMap::new();
    for (wid, bin, ns) in bins {
        if let Some(g) = group_of.get(wid) {
            hist.entry(g.as_str()).or_default().push((*bin, *ns));
        }
    }
    groups
        .into_iter()
        .map(|(name, a)| {
            let mut e = a.e;
            e.workloads = a.workloads.len() as u64;
            e.buckets_seen = a.buckets.len() as u64;
            e.peak_memory_bytes = a.peak;
            e.busy_ppm = (e.samples > 0).then(|| (u128::from(a.busy) * u128::from(PPM) / u128::from(e.samples)) as u32);
            let bins = merge_bins(hist.get(name.as_str()).map(Vec::as_slice).unwrap_or_default());
            e.sm_p95_ppm = percentile_ppm(&bins, 950_000).unwrap_or(0);
            e.sm_p50_ppm = percentile_ppm(&bins, 500_000).unwrap_or(0);
            let mut ran_on: Vec<RanOn> = a.ran_on.into_iter().map(|(r, held_ns)| RanOn { held_ns, ..r }).collect();
            ran_on.sort_by(|x, y| y.held_ns.cmp(&x.held_ns).then_with(|| x.cmp(y)));
            e.ran_on = ran_on;
            e
        })
        .collect()
}

/// Bins summed by bin (a group's workloads each bring theirs).
fn merge_bins(bins: &[(u32, u64)]) -> Vec<(u32, u64)> {
    let mut m: BTreeMap<u32, u64> = BTreeMap::new();
    for &(b, ns) in bins {
        *m.entry(b).or_default() += ns;
    }
    m.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpucost_types::batch::{Identity, Workload};
    use std::sync::Arc;

    fn w() -> Arc<Workload> {
        Arc::new(Workload { key: "pod:c/ml/p".into(), identity: Identity::default() })
    }

    fn proc(peak: Option<u64>, samples: u32, busy: Option<u32>) -> ProcessReading {
        ProcessReading {
            gpu_uuid: "GPU-1".into(),
            pid: 1,
            workload: w(),
            sm_share_ppm: 0,
            memory_util_ppm: 0,
            used_memory_bytes: 0,
            peak_memory_bytes: peak,
            samples,
            busy_samples: busy,
        }
    }

    #[test]
    fn a_holdings_peak_is_its_processes_peaks_summed_and_unknown_if_one_is() {
        let h = Holding { gpu_uuid: "GPU-1".into(), workload: w(), held_ns: 100, used_ns: 25, memory_bytes: 0 };
        let (a, b) = (proc(Some(3), 15, Some(15)), proc(Some(4), 10, Some(2)));
        assert_eq!(held(&h, &[&a, &b]), Held { sm_ppm: 250_000, peak: Some(7), samples: 25, busy: 17 });
        // A process from an older agent: the peak is unknown, its samples are left out of the busy share.
        let old = proc(None, 15, None);
        assert_eq!(held(&h, &[&a, &old]), Held { sm_ppm: 250_000, peak: None, samples: 15, busy: 15 });
        // A holder that ran nothing held no memory and was never busy: known zeros.
        let idle = Holding { used_ns: 0, ..h };
        assert_eq!(held(&idle, &[]), Held { sm_ppm: 0, peak: Some(0), samples: 0, busy: 0 });
    }
}
