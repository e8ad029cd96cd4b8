//! Recording: each attributed batch claimed (its sequence numbers, its GPU time), then its rows stored, in the
//! writer's one transaction; raw rows pruned and daily rollups built.

use std::collections::HashMap;

use gpucost_types::stage::Attributed;

use super::ids::{IdCache, Writer};
use super::{Engine, SqlLedger, days, write};
use crate::roles::Recording;
use crate::rollup::buckets;
use crate::sql::{Db, DbError, Tx, Value, bind};
use crate::{Conflict, LedgerError, Recorded, sql_params};

pub(super) fn fnv1a(s: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

pub(super) enum Claim {
    /// Recorded now.
    Taken,
    /// Wholly recorded before: a resend.
    Held,
    /// Partly recorded before, in the stored range [from, to]: neither new nor a resend.
    Overlaps { from: u64, to: u64 },
}

/// Records the batch's sequence numbers (first_seq..=seq) for its boot, coalescing ranges. A boot is its
/// cluster's: the same agent and boot ids under another cluster are another boot.
pub(super) fn claim_seqs(ids: &mut IdCache, tx: &impl Db, b: &Attributed) -> Result<Claim, DbError> {
    let (first, last) = (b.first_seq as i64, b.seq as i64);
    let cluster = &b.node.cluster;
    let key = (cluster.clone(), b.agent_id.clone(), b.boot_id.clone());
    // Writers sharing the database take turns per boot (an agent may reconnect to another collector while
    // its old stream is still being stored).
    // (Only a shared database needs it: the embedded ledger's hot path does not pay for the key.)
    if !tx.single_writer() {
        tx.exclusive(2, fnv1a(&format!("{cluster}\u{0}{}\u{0}{}", b.agent_id, b.boot_id)))?;
    }
    if let Some(&(f, l)) = ids.seqs.get(&key).filter(|_| tx.single_writer())
        && l + 1 == first
    {
        // The next batch of the boot's latest range: nothing can lie beyond it.
        tx.run(
            "UPDATE boot_seqs SET last_seq = $1 WHERE cluster = $2 AND agent_id = $3 AND boot_id = $4 AND first_seq = $5",
            sql_params![last, cluster, b.agent_id, b.boot_id, f],
        )?;
        ids.seqs.insert(key, (f, last));
        return Ok(Claim::Taken);
    }
    let before: Option<(i64, i64)> = tx.opt(
        "SELECT first_seq, last_seq FROM boot_seqs WHERE cluster = $1 AND agent_id = $2 AND boot_id = $3 AND first_seq <= $4
             ORDER BY first_seq DESC LIMIT 1",
        sql_params![cluster, b.agent_id, b.boot_id, last],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if let Some((f, l)) = before
        && l >= first
    {
        return Ok(if f <= first && l >= last {
            Claim::Held
        } else {
            Claim::Overlaps { from: f as u64, to: l as u64 }
        });
    }
    let joins_before = before.filter(|&(_, l)| l + 1 == first);
    let after: Option<i64> = tx.opt(
        "SELECT last_seq FROM boot_seqs WHERE cluster = $1 AND agent_id = $2 AND boot_id = $3 AND first_seq = $4",
        sql_params![cluster, b.agent_id, b.boot_id, last + 1],
        |r| r.get(0),
    )?;
    if after.is_some() {
        tx.run(
            "DELETE FROM boot_seqs WHERE cluster = $1 AND agent_id = $2 AND boot_id = $3 AND first_seq = $4",
            sql_params![cluster, b.agent_id, b.boot_id, last + 1],
        )?;
    }
    let new_last = after.unwrap_or(last);
    match joins_before {
        Some((f, _)) => tx.run(
            "UPDATE boot_seqs SET last_seq = $1 WHERE cluster = $2 AND agent_id = $3 AND boot_id = $4 AND first_seq = $5",
            sql_params![new_last, cluster, b.agent_id, b.boot_id, f],
        )?,
        None => tx.run(
            "INSERT INTO boot_seqs (cluster, agent_id, boot_id, first_seq, last_seq) VALUES ($1, $2, $3, $4, $5)",
            sql_params![cluster, b.agent_id, b.boot_id, first, new_last],
        )?,
    };
    let latest: (i64, i64) = tx
        .one(
            "SELECT first_seq, last_seq FROM boot_seqs WHERE cluster = $1 AND agent_id = $2 AND boot_id = $3 ORDER BY first_seq DESC LIMIT 1", sql_params![cluster, b.agent_id, b.boot_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    ids.seqs.insert(key, latest);
    Ok(Claim::Taken)
}

/// Records [start, end) as billed on the GPU, coalescing ranges; the recorded range it overlaps, if any
/// (then nothing is recorded).
pub(super) fn claim_gpu_time(
    ids: &mut IdCache,
    tx: &impl Db,
    gpu_id: i64,
    start: u64,
    end: u64,
) -> Result<Option<(u64, u64)>, DbError> {
    let (start, end) = (start as i64, end as i64);
    tx.exclusive(1, gpu_id)?;
    if let Some(&(s, e)) = ids.coverage.get(&gpu_id).filter(|_| tx.single_writer())
        && e == start
    {
        // Right after the GPU's latest range: nothing can lie beyond it.
        tx.run("UPDATE gpu_coverage SET end_ns = $1 WHERE gpu_id = $2 AND start_ns = $3", sql_params![end, gpu_id, s])?;
        ids.coverage.insert(gpu_id, (s, end));
        return Ok(None);
    }
    let before: Option<(i64, i64)> = tx.opt(
        "SELECT start_ns, end_ns FROM gpu_coverage WHERE gpu_id = $1 AND start_ns < $2 ORDER BY start_ns DESC LIMIT 1",
        sql_params![gpu_id, end],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if let Some((s, e)) = before
        && e > start
    {
        return Ok(Some((s as u64, e as u64)));
    }
    let joins_before = before.filter(|&(_, e)| e == start);
    let after: Option<i64> =
        tx.opt("SELECT end_ns FROM gpu_coverage WHERE gpu_id = $1 AND start_ns = $2", sql_params![gpu_id, end], |r| {
            r.get(0)
        })?;
    if after.is_some() {
        tx.run("DELETE FROM gpu_coverage WHERE gpu_id = $1 AND start_ns = $2", sql_params![gpu_id, end])?;
    }
    let new_end = after.unwrap_or(end);
    match joins_before {
        Some((s, _)) => tx.run(
            "UPDATE gpu_coverage SET end_ns = $1 WHERE gpu_id = $2 AND start_ns = $3",
            sql_params![new_end, gpu_id, s],
        )?,
        None => tx.run(
            "INSERT INTO gpu_coverage (gpu_id, start_ns, end_ns) VALUES ($1, $2, $3)",
            sql_params![gpu_id, start, new_end],
        )?,
    };
    let latest: (i64, i64) = tx.one(
        "SELECT start_ns, end_ns FROM gpu_coverage WHERE gpu_id = $1 ORDER BY start_ns DESC LIMIT 1",
        sql_params![gpu_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    ids.coverage.insert(gpu_id, latest);
    Ok(None)
}

/// Extends to `end` the coverage range of each of `gpus` that ends at `start`, in one statement; how many.
pub(super) fn extend_ranges(tx: &impl Db, gpus: &[i64], start: i64, end: i64) -> Result<usize, DbError> {
    let list = (0..gpus.len()).map(|i| format!("${}", i + 3)).collect::<Vec<_>>().join(", ");
    let mut params = vec![Value::Int(end), Value::Int(start)];
    params.extend(gpus.iter().map(|&g| Value::Int(g)));
    tx.run(&format!("UPDATE gpu_coverage SET end_ns = $1 WHERE end_ns = $2 AND gpu_id IN ({list})"), &bind(&params))
}

/// The usual case for the single writer of an embedded ledger, in one statement: every GPU's latest coverage
/// (as the writer's cache knows it) ends where the interval starts, so each is extended to its end. `false`
/// (nothing written) when that is not known to be so; then each GPU is claimed on its own ([`claim_gpu_time`]).
pub(super) fn extend_all_coverage(
    ids: &mut IdCache,
    tx: &impl Db,
    gpus: impl Iterator<Item = i64>,
    start: u64,
    end: u64,
) -> Result<bool, DbError> {
    let gpus: Vec<i64> = gpus.collect();
    let mut sorted = gpus.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if gpus.is_empty()
        || sorted.len() != gpus.len()
        || !gpus.iter().all(|g| ids.coverage.get(g).is_some_and(|&(_, e)| e == start as i64))
    {
        return Ok(false);
    }
    let n = extend_ranges(tx, &gpus, start as i64, end as i64)?;
    if n != gpus.len() {
        // The cache was wrong: fail the batch (its writes roll back and the cache is dropped), so that the
        // agent sends it again and it takes the GPU-by-GPU path.
        return Err(DbError(format!("coverage cache out of step: {n} of {} GPU ranges extended", gpus.len())));
    }
    for g in gpus {
        if let Some(r) = ids.coverage.get_mut(&g) {
            r.1 = end as i64;
        }
    }
    Ok(true)
}

/// On a database shared by several writers: claims [start, end) on every GPU in a few round trips (lock
/// them all, read every range that touches the interval, then write), instead of several per GPU. `true`
/// when claimed on all; `false` (nothing written) when a GPU already has time in the interval, so that
/// the GPU-by-GPU path names it.
pub(super) fn claim_coverage_shared(tx: &impl Db, gpus: &[i64], start: u64, end: u64) -> Result<bool, DbError> {
    let (start, end) = (start as i64, end as i64);
    if gpus.is_empty() {
        return Ok(true);
    }
    tx.exclusive_many(1, gpus)?;
    let list = (0..gpus.len()).map(|i| format!("${}", i + 3)).collect::<Vec<_>>().join(", ");
    let mut params = vec![Value::Int(end), Value::Int(start)];
    params.extend(gpus.iter().map(|&g| Value::Int(g)));
    let touching: Vec<(i64, i64, i64)> = tx.all(
        &format!(
            "SELECT gpu_id, start_ns, end_ns FROM gpu_coverage WHERE start_ns <= $1 AND end_ns >= $2 AND gpu_id IN ({list})"
        ),
        &bind(&params),
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    if touching.iter().any(|&(_, s, e)| s < end && e > start) {
        return Ok(false);
    }
    // Per GPU: the range ending where the interval starts, and the one starting where it ends.
    let mut extend = Vec::new();
    for &g in gpus {
        let before = touching.iter().find(|&&(id, _, e)| id == g && e == start).map(|&(_, s, _)| s);
        let after = touching.iter().find(|&&(id, s, _)| id == g && s == end).map(|&(_, _, e)| e);
        match (before, after) {
            (Some(_), None) => extend.push(g),
            (Some(s), Some(e)) => {
                tx.run("DELETE FROM gpu_coverage WHERE gpu_id = $1 AND start_ns = $2", sql_params![g, end])?;
                tx.run(
                    "UPDATE gpu_coverage SET end_ns = $1 WHERE gpu_id = $2 AND start_ns = $3",
                    sql_params![e, g, s],
                )?;
            }
            (None, Some(e)) => {
                tx.run("DELETE FROM gpu_coverage WHERE gpu_id = $1 AND start_ns = $2", sql_params![g, end])?;
                tx.run(
                    "INSERT INTO gpu_coverage (gpu_id, start_ns, end_ns) VALUES ($1, $2, $3)",
                    sql_params![g, start, e],
                )?;
            }
            (None, None) => {
                tx.run(
                    "INSERT INTO gpu_coverage (gpu_id, start_ns, end_ns) VALUES ($1, $2, $3)",
                    sql_params![g, start, end],
                )?;
            }
        }
    }
    if !extend.is_empty() {
        // The usual case, every GPU's latest range reaching the interval: one statement.
        extend_ranges(tx, &extend, start, end)?;
    }
    Ok(true)
}

/// Stores one batch in the writer's transaction: its sequence numbers and its GPU time claimed (a duplicate is
/// acknowledged, an overlap refused), then its rows written (`write`). Nothing of a refused batch is kept: the
/// caller rolls back its savepoint.
pub(super) fn record_one(
    ids: &mut IdCache,
    tx: &impl Db,
    b: &Attributed,
    now_ns: u64,
    bucket_ns: u64,
    keep_raw_after_ns: u64,
) -> Result<Recorded, LedgerError> {
    match claim_seqs(ids, tx, b)? {
        Claim::Taken => {}
        Claim::Held => return Ok(Recorded::Duplicate),
        Claim::Overlaps { from, to } => {
            return Err(LedgerError::SeqOverlap {
                batch: b.id(),
                first_seq: b.first_seq,
                stored_from: from,
                stored_to: to,
            });
        }
    }
    tx.run(
        "INSERT INTO agent_boots (cluster, agent_id, boot_id, last_seq, first_seen_ns, last_seen_ns) VALUES ($1, $2, $3, $4, $5, $5)
         ON CONFLICT (cluster, agent_id, boot_id) DO UPDATE SET last_seq = CASE WHEN agent_boots.last_seq > excluded.last_seq
           THEN agent_boots.last_seq ELSE excluded.last_seq END, last_seen_ns = excluded.last_seen_ns",
        sql_params![b.node.cluster, b.agent_id, b.boot_id, b.seq as i64, now_ns as i64],
    )?;
    let node_id = ids.node_id(tx, &b.node)?;
    let mut gpu_ids = HashMap::with_capacity(b.devices.len());
    for d in &b.devices {
        gpu_ids.insert(d.uuid.as_str(), ids.gpu_id(tx, &b.node.cluster, node_id, d)?);
    }
    claim_interval(ids, tx, b, &gpu_ids)?;
    let conflicts = other_clusters_time(ids, tx, b, now_ns)?;

    ids.record_price(tx, node_id, b)?;
    // A batch of a day that has ended may change a day whose daily rollups are built: unbuild it (days.rs).
    if b.start_ns < now_ns / days::DAY * days::DAY {
        days::unbuild(tx, b.start_ns, b.end_ns)?;
    }
    let at = write::Placed {
        node_id,
        gpu_ids,
        parts: buckets(b.start_ns, b.end_ns, bucket_ns),
        keep_raw: b.end_ns >= keep_raw_after_ns,
    };
    write::rows(ids, tx, b, &at)?;
    Ok(if conflicts.is_empty() { Recorded::Stored } else { Recorded::Contested(conflicts) })
}

/// Claims the batch's interval on every GPU of it: the interval is billed once, so it is refused if any of its
/// GPUs already has time recorded in it (the error names the GPU and the range it overlaps).
fn claim_interval(
    ids: &mut IdCache,
    tx: &impl Db,
    b: &Attributed,
    gpu_ids: &HashMap<&str, i64>,
) -> Result<(), LedgerError> {
    let (start, end) = (b.start_ns, b.end_ns);
    let gpus = b.devices.iter().map(|d| gpu_ids[d.uuid.as_str()]);
    let claimed = if tx.single_writer() {
        extend_all_coverage(ids, tx, gpus, start, end)?
    } else {
        claim_coverage_shared(tx, &gpus.collect::<Vec<_>>(), start, end)?
    };
    if claimed {
        return Ok(());
    }
    // Else GPU by GPU, which names the GPU and the range a refused interval overlaps.
    for d in &b.devices {
        if let Some((from, to)) = claim_gpu_time(ids, tx, gpu_ids[d.uuid.as_str()], start, end)? {
            return Err(LedgerError::Overlap {
                batch: b.id(),
                gpu: d.uuid.clone(),
                start_ns: start,
                end_ns: end,
                covered_from_ns: from,
                covered_until_ns: to,
            });
        }
    }
    Ok(())
}

/// The GPUs of `b` that another cluster has time on over `b`'s interval, each kept in `gpu_conflicts` for an
/// operator. Looked for only where the ledger holds the UUID under another cluster (on a shared database, always:
/// another collector may have just written it).
pub(super) fn other_clusters_time(
    ids: &IdCache,
    tx: &impl Db,
    b: &Attributed,
    now_ns: u64,
) -> Result<Vec<Conflict>, LedgerError> {
    let uuids: Vec<&str> = b
        .devices
        .iter()
        .map(|d| d.uuid.as_str())
        .filter(|u| !tx.single_writer() || ids.contested.contains(*u))
        .collect();
    if uuids.is_empty() {
        return Ok(Vec::new());
    }
    let (cluster, start, end) = (&b.node.cluster, b.start_ns as i64, b.end_ns as i64);
    let list = (0..uuids.len()).map(|i| format!("${}", i + 4)).collect::<Vec<_>>().join(", ");
    let mut params = vec![Value::Text(cluster.clone()), Value::Int(end), Value::Int(start)];
    params.extend(uuids.iter().map(|u| Value::Text(u.to_string())));
    let found: Vec<(String, String)> = tx.all(
        &format!(
            "SELECT DISTINCT g.uuid, g.cluster FROM gpus g JOIN gpu_coverage c ON c.gpu_id = g.gpu_id
             WHERE g.cluster <> $1 AND c.start_ns < $2 AND c.end_ns > $3 AND g.uuid IN ({list}) ORDER BY 1, 2"
        ),
        &bind(&params),
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut conflicts = Vec::with_capacity(found.len());
    for (gpu_uuid, other_cluster) in found {
        tx.run(
            "INSERT INTO gpu_conflicts (gpu_uuid, cluster, other_cluster, start_ns, end_ns, batches, first_seen_ns, last_seen_ns)
             VALUES ($1, $2, $3, $4, $5, 1, $6, $6)
             ON CONFLICT (gpu_uuid, cluster, other_cluster) DO UPDATE SET
               start_ns = CASE WHEN gpu_conflicts.start_ns < excluded.start_ns THEN gpu_conflicts.start_ns ELSE excluded.start_ns END,
               end_ns = CASE WHEN gpu_conflicts.end_ns > excluded.end_ns THEN gpu_conflicts.end_ns ELSE excluded.end_ns END,
               batches = gpu_conflicts.batches + 1, last_seen_ns = excluded.last_seen_ns",
            sql_params![gpu_uuid, cluster, other_cluster, start, end, now_ns as i64],
        )?;
        conflicts.push(Conflict {
            gpu_uuid,
            cluster: cluster.clone(),
            other_cluster,
            start_ns: b.start_ns,
            end_ns: b.end_ns,
            batches: 1,
            first_seen_ns: now_ns,
            last_seen_ns: now_ns,
        });
    }
    Ok(conflicts)
}

impl<E: Engine> Recording for SqlLedger<E> {
    fn record(&self, batches: &[Attributed], now_ns: u64) -> Result<Vec<Result<Recorded, LedgerError>>, LedgerError> {
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let Writer { conn, ids } = &mut *guard;
        let keep_raw_after = now_ns.saturating_sub(self.raw_retention_ns);
        // Most groups store whole: try that first, without a savepoint per batch (each made the engine
        // journal every page a batch touched). If a batch fails, nothing of the try is kept, and the group is
        // stored again batch by batch, each in its own savepoint.
        let whole = (|| -> Result<Option<Vec<Recorded>>, LedgerError> {
            let tx = Tx::begin(&*conn, self.engine.begin())?;
            let mut outcomes = Vec::with_capacity(batches.len());
            for b in batches {
                match record_one(ids, &*tx, b, now_ns, self.bucket_ns, keep_raw_after) {
                    Ok(rec) => outcomes.push(rec),
                    // Rolled back as `tx` drops; the batch-by-batch pass says which batch failed and why.
                    Err(_) => return Ok(None),
                }
            }
            tx.commit()?;
            Ok(Some(outcomes))
        })();
        match whole {
            Ok(Some(outcomes)) => return Ok(outcomes.into_iter().map(Ok).collect()),
            Ok(None) => *ids = IdCache::default(),
            Err(e) => {
                *ids = IdCache::default();
                return Err(e);
            }
        }
        let result = (|| {
            let tx = Tx::begin(&*conn, self.engine.begin())?;
            let mut outcomes = Vec::with_capacity(batches.len());
            for b in batches {
                let sp = tx.savepoint()?;
                match record_one(ids, &*sp, b, now_ns, self.bucket_ns, keep_raw_after) {
                    Ok(rec) => {
                        sp.release()?;
                        outcomes.push(Ok(rec));
                    }
                    Err(e) => {
                        drop(sp); // rolls back this batch's writes, and only them
                        *ids = IdCache::default();
                        outcomes.push(Err(e));
                    }
                }
            }
            tx.commit()?;
            Ok(outcomes)
        })();
        if result.is_err() {
            *ids = IdCache::default();
        }
        result
    }

    fn prune_raw(&self, before_ns: u64) -> Result<u64, LedgerError> {
        let guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let a = guard.conn.run("DELETE FROM gpu_intervals WHERE end_ns < $1", sql_params![before_ns as i64])?;
        let b = guard.conn.run("DELETE FROM process_intervals WHERE end_ns < $1", sql_params![before_ns as i64])?;
        Ok((a + b) as u64)
    }

    fn build_daily_rollups(&self, now_ns: u64, max_days: usize) -> Result<usize, LedgerError> {
        self.build_days(now_ns, max_days)
    }
}
