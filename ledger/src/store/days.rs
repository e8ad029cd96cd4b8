//! Daily rollups (migration 0012): a day's hourly rollups summed once the day has ended, so that reports over
//! whole days read one row per holder and day instead of one per hour. Derived, never the record: a day is
//! unbuilt (its daily rows deleted) whenever its hourly rows or the owners they are billed to change, and queries
//! read a day's daily rows only while it is built.

use std::collections::HashSet;

use super::{Engine, HISTORY_LOCK, SqlLedger};
use crate::rows::{GPU_VALUES, USAGE_VALUES};
use crate::sql::{Db, DbError, Tx};
use crate::{LedgerError, sql_params};

pub(super) const DAY: u64 = 86_400 * 1_000_000_000;

/// Unbuilds the built days that overlap [from_ns, to_ns), deleting their daily rows.
pub(super) fn unbuild(tx: &impl Db, from_ns: u64, to_ns: u64) -> Result<(), DbError> {
    let from = (from_ns / DAY * DAY) as i64;
    let to = to_ns.min(i64::MAX as u64) as i64;
    if tx.run("DELETE FROM built_days WHERE day_start_ns >= $1 AND day_start_ns < $2", sql_params![from, to])? > 0 {
        tx.run("DELETE FROM usage_days WHERE day_start_ns >= $1 AND day_start_ns < $2", sql_params![from, to])?;
        tx.run("DELETE FROM gpu_days WHERE day_start_ns >= $1 AND day_start_ns < $2", sql_params![from, to])?;
    }
    Ok(())
}

/// The built days wholly inside [from_ns, to_ns), merged into ranges [start, end) of day starts.
pub(super) fn built_ranges(c: &impl Db, from_ns: u64, to_ns: u64) -> Result<Vec<(u64, u64)>, DbError> {
    let days: Vec<i64> = c.all(
        &format!("SELECT day_start_ns FROM built_days WHERE day_start_ns >= $1 AND day_start_ns + {DAY} <= $2 ORDER BY day_start_ns"),
        sql_params![from_ns.min(i64::MAX as u64) as i64, to_ns.min(i64::MAX as u64) as i64],
        |r| r.get(0),
    )?;
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for d in days.into_iter().map(|d| d as u64) {
        match ranges.last_mut() {
            Some(last) if last.1 == d => last.1 = d + DAY,
            _ => ranges.push((d, d + DAY)),
        }
    }
    Ok(ranges)
}

/// The statement that sums the hourly rows (of `usage_buckets`, or of `gpu_buckets` with `gpu`) whose bucket
/// starts in [`$1`, `$2`) per day into `table`, the usage per owner it was billed to too (`owner_from`, -1: none).
/// With `booked`, the rows are tagged `booked_period = $1` and the window is [`$2`, `$3`).
pub(super) fn sum_into_days(table: &str, gpu: bool, booked: bool) -> String {
    let (values, key) = if gpu {
        (&GPU_VALUES[..], "gpu_id, node_id")
    } else {
        (&USAGE_VALUES[..], "gpu_id, workload_id, node_id, owner_from")
    };
    let source_key = key.split(", ").map(|k| format!("u.{k}")).collect::<Vec<_>>().join(", ");
    let sums = values.iter().map(|v| format!("SUM(u.{v})")).collect::<Vec<_>>().join(", ");
    let (tag_col, tag, first) = if booked { ("booked_period, ", "CAST($1 AS TEXT), ", 2) } else { ("", "", 1) };
    let keys = key.split(", ").count() + 1 + usize::from(booked);
    format!(
        "INSERT INTO {table} ({tag_col}day_start_ns, {key}, {}) SELECT {tag}u.bucket_start_ns / {DAY} * {DAY}, {source_key}, {sums}
         FROM {} u WHERE u.bucket_start_ns >= ${first} AND u.bucket_start_ns < ${} GROUP BY {}",
        values.join(", "),
        if gpu { "gpu_buckets" } else { "usage_buckets" },
        first + 1,
        (1..=keys).map(|k| k.to_string()).collect::<Vec<_>>().join(", ")
    )
}

/// Whether closing `period` summed its days (months closed before migration 0013 did not).
pub(super) fn booked_days(c: &impl Db, period: &str) -> Result<bool, DbError> {
    Ok(c.opt("SELECT 1 FROM booked_gpu_days WHERE booked_period = $1 LIMIT 1", sql_params![period], |r| {
        r.get::<i64>(0)
    })?
    .is_some())
}

/// Whole days a report can read summed, and where: see [`summed_days`].
pub(super) struct SummedDays {
    /// The ranges of whole days (none: read the hourly rows only).
    pub built: Vec<(u64, u64)>,
    /// The `FROM` sources of their usage and GPU rows (columns of `usage_days` and `gpu_days`).
    pub usage: String,
    pub gpu: String,
}

/// The whole days of [from_ns, to_ns) that a report over `rows` can read from summed days, and the daily sources
/// of its usage and GPU rows (same columns as `usage_days` and `gpu_days`): the live rows' built days, or the days a
/// closed month's closing summed when the window is whole days. No ranges: read the hourly rows only.
pub(super) fn summed_days(
    c: &impl Db,
    rows: &crate::rows::Rows,
    from_ns: u64,
    to_ns: u64,
) -> Result<SummedDays, DbError> {
    use crate::rows::{Rows, safe};
    Ok(match rows {
        Rows::Live => SummedDays {
            built: built_ranges(c, from_ns, to_ns)?,
            usage: "usage_days".to_string(),
            gpu: "gpu_days".to_string(),
        },
        Rows::Booked { period, corrections: false }
            if booked_days(c, period)? && from_ns.is_multiple_of(DAY) && to_ns.is_multiple_of(DAY) =>
        {
            SummedDays {
                built: vec![(from_ns, to_ns)],
                usage: format!("(SELECT * FROM booked_usage_days WHERE booked_period = '{}')", safe(period)),
                gpu: format!("(SELECT * FROM booked_gpu_days WHERE booked_period = '{}')", safe(period)),
            }
        }
        _ => SummedDays { built: Vec::new(), usage: String::new(), gpu: String::new() },
    })
}

/// [from, to) less `ranges` (sorted, inside it).
pub(super) fn complement(from: u64, to: u64, ranges: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = from;
    for &(s, e) in ranges {
        if s > at {
            out.push((at, s));
        }
        at = at.max(e);
    }
    if at < to {
        out.push((at, to));
    }
    out
}

/// `col >= a AND col < b OR …` for `ranges` (integers written into the statement); `0 = 1` for none.
pub(super) fn within(col: &str, ranges: &[(u64, u64)]) -> String {
    if ranges.is_empty() {
        return "0 = 1".into();
    }
    let parts: Vec<String> = ranges.iter().map(|(a, b)| format!("({col} >= {a} AND {col} < {b})")).collect();
    format!("({})", parts.join(" OR "))
}

impl<E: Engine> SqlLedger<E> {
    /// Builds the daily rollups of up to `max` days that ended by `now_ns` and are not built yet; how many. Each
    /// day in its own transaction, under the history lock (re-pricing and re-attribution unbuild days).
    pub(super) fn build_days(&self, now_ns: u64, max: usize) -> Result<usize, LedgerError> {
        let today = now_ns / DAY * DAY;
        let first: Option<i64> = {
            let guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            guard.conn.one("SELECT MIN(bucket_start_ns) FROM gpu_buckets", sql_params![], |r| r.get(0))?
        };
        let Some(first) = first else { return Ok(0) };
        let first = first as u64 / DAY * DAY;
        let built: HashSet<i64> = self.with_reader(|c| {
            Ok(c.all("SELECT day_start_ns FROM built_days WHERE day_start_ns >= $1", sql_params![first as i64], |r| {
                r.get(0)
            })?
            .into_iter()
            .collect())
        })?;
        let (usage, gpus) = (sum_into_days("usage_days", false, false), sum_into_days("gpu_days", true, false));
        let mut n = 0;
        let mut day = first;
        while day < today && n < max {
            if !built.contains(&(day as i64)) {
                // The writer is taken a day at a time, so that ingest goes on between days.
                let guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
                let tx = Tx::begin(&guard.conn, self.engine.begin())?;
                tx.exclusive(HISTORY_LOCK, 0)?;
                let (from, to) = (day as i64, (day + DAY) as i64);
                let done: Option<i64> =
                    tx.opt("SELECT built_at_ns FROM built_days WHERE day_start_ns = $1", sql_params![from], |r| {
                        r.get(0)
                    })?;
                if done.is_none() {
                    tx.run(&usage, sql_params![from, to])?;
                    tx.run(&gpus, sql_params![from, to])?;
                    tx.run(
                        "INSERT INTO built_days (day_start_ns, built_at_ns) VALUES ($1, $2)",
                        sql_params![from, now_ns as i64],
                    )?;
                }
                tx.commit()?;
                n += 1;
            }
            day += DAY;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_merged_complemented_and_written_as_conditions() {
        assert_eq!(
            complement(0, 10 * DAY, &[(2 * DAY, 4 * DAY), (6 * DAY, 7 * DAY)]),
            vec![(0, 2 * DAY), (4 * DAY, 6 * DAY), (7 * DAY, 10 * DAY)]
        );
        assert_eq!(complement(0, 2 * DAY, &[(0, 2 * DAY)]), vec![]);
        assert_eq!(within("x", &[]), "0 = 1");
        assert_eq!(within("x", &[(1, 2), (3, 4)]), "((x >= 1 AND x < 2) OR (x >= 3 AND x < 4))");
    }
}
