//! Each workload's owner over time: the row in force when GPU time was used, and re-attribution.

use gpucost_rules::owner::{Ownership, Rule, UNATTRIBUTED};

use crate::rows::USAGE_VALUES;
use crate::sql::Db;
use crate::{LedgerError, sql_params};

/// FNV-1a, 64 bits: a stable key for an advisory lock.
/// The owner row of `workload_id` in force at `at` (the latest that began by then), and from when.
pub(super) fn owner_row(tx: &impl Db, workload_id: i64, at: i64) -> Result<Option<(u64, Ownership)>, LedgerError> {
    Ok(tx.opt(
        "SELECT from_ns, owner, team, department, component, system, rule FROM workload_owners
         WHERE workload_id = $1 AND from_ns <= $2 ORDER BY from_ns DESC LIMIT 1",
        sql_params![workload_id, at],
        |r| {
            Ok((
                r.get::<i64>(0)? as u64,
                Ownership {
                    owner: r.get(1)?,
                    team: r.get(2)?,
                    department: r.get(3)?,
                    component: r.get(4)?,
                    system: r.get(5)?,
                    rule: Rule::parse(&r.get::<String>(6)?).map_or(UNATTRIBUTED, Rule::name),
                },
            ))
        },
    )?)
}

pub(super) fn insert_owner(tx: &impl Db, workload_id: i64, from_ns: u64, o: &Ownership) -> Result<(), LedgerError> {
    tx.run(
        "INSERT INTO workload_owners (workload_id, from_ns, owner, team, department, component, system, rule)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (workload_id, from_ns) DO UPDATE SET owner = excluded.owner,
           team = excluded.team, department = excluded.department, component = excluded.component, system = excluded.system,
           rule = excluded.rule",
        sql_params![workload_id, from_ns as i64, o.owner, o.team, o.department, o.component, o.system, o.rule],
    )?;
    Ok(())
}

/// Bills `workload_id`'s GPU time in the buckets of [from_ns, to_ns) to `owner`: one owner row for the window
/// (from `from_ns`, or just after it when the row there is still the owner of time outside the window), the
/// window's usage rows moved onto it (rows of one bucket that were billed to several owners merged), and the
/// window's owner rows that no usage row names any more deleted. Time outside the window keeps its owner rows.
pub(super) fn reattribute_rows(
    tx: &impl Db,
    workload_id: i64,
    from_ns: u64,
    to_ns: u64,
    owner: &Ownership,
) -> Result<(), LedgerError> {
    let (from, to) = (from_ns as i64, to_ns.min(i64::MAX as u64) as i64);
    let named_outside = |key: i64| -> Result<bool, LedgerError> {
        Ok(tx
            .opt(
                "SELECT 1 FROM usage_buckets WHERE workload_id = $1 AND owner_from = $2
                   AND (bucket_start_ns < $3 OR bucket_start_ns >= $4) LIMIT 1",
                sql_params![workload_id, key, from, to],
                |r| r.get::<i64>(0),
            )?
            .is_some())
    };
    let mut key = from;
    while key < to && named_outside(key)? {
        key += 1;
    }
    insert_owner(tx, workload_id, key as u64, owner)?;
    let values = USAGE_VALUES.join(", ");
    let sums = USAGE_VALUES.iter().map(|v| format!("SUM({v})")).collect::<Vec<_>>().join(", ");
    let adds =
        USAGE_VALUES.iter().map(|v| format!("{v} = usage_buckets.{v} + excluded.{v}")).collect::<Vec<_>>().join(", ");
    // Parameters are numbered in order of first appearance (SQLite binds them that way).
    tx.run(
        &format!(
            "INSERT INTO usage_buckets (bucket_start_ns, gpu_id, workload_id, node_id, owner_from, {values})
             SELECT bucket_start_ns, gpu_id, workload_id, node_id, CAST($1 AS BIGINT), {sums} FROM usage_buckets
             WHERE workload_id = $2 AND bucket_start_ns >= $3 AND bucket_start_ns < $4 AND owner_from <> $1
             GROUP BY bucket_start_ns, gpu_id, workload_id, node_id
             ON CONFLICT (bucket_start_ns, gpu_id, workload_id, node_id, owner_from) DO UPDATE SET {adds}"
        ),
        sql_params![key, workload_id, from, to],
    )?;
    tx.run(
        "DELETE FROM usage_buckets WHERE workload_id = $1 AND bucket_start_ns >= $2 AND bucket_start_ns < $3 AND owner_from <> $4",
        sql_params![workload_id, from, to, key],
    )?;
    tx.run(
        "DELETE FROM workload_owners WHERE workload_id = $1 AND from_ns >= $2 AND from_ns < $3 AND from_ns <> $4
           AND NOT EXISTS (SELECT 1 FROM usage_buckets u WHERE u.workload_id = $1 AND u.owner_from = workload_owners.from_ns)
           AND NOT EXISTS (SELECT 1 FROM usage_days d WHERE d.workload_id = $1 AND d.owner_from = workload_owners.from_ns)",
        sql_params![workload_id, from, to, key],
    )?;
    Ok(())
}
