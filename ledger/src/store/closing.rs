//! Closing billing periods in the SQLite ledger (see migration 0008 and `ledger::rows`).

use gpucost_types::period::{Cadence, Period, utc};

use super::{Engine, HISTORY_LOCK, SqlLedger};
use crate::rows::{GPU_VALUES, Rows, USAGE_VALUES};
use crate::sql::{Db, Tx};
use crate::{ClosedPeriod, LedgerError, sql_params};

impl<E: Engine> SqlLedger<E> {
    pub(super) fn close(&self, period: &Period, now_ns: u64) -> Result<ClosedPeriod, LedgerError> {
        if Period::parse(&period.label).ok().as_ref() != Some(period) || period.label.contains('W') {
            return Err(LedgerError::Refused(format!("only calendar months are closed, not {:?}", period.label)));
        }
        if period.to_ns > now_ns {
            return Err(LedgerError::Refused(format!(
                "{} runs until {}; a month is closed once it has ended",
                period.label,
                utc(period.to_ns)
            )));
        }
        let guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let tx = Tx::begin(&guard.conn, self.engine.begin())?;
        // Collectors sharing a ledger close, re-price and re-attribute one at a time.
        tx.exclusive(HISTORY_LOCK, 0)?;
        let closed = closed_periods(&*tx)?;
        if closed.iter().any(|c| c.period == period.label) {
            return Err(LedgerError::Refused(format!("{} is already closed", period.label)));
        }
        if let Some(last) = closed.iter().max_by_key(|c| c.to_ns) {
            let next = Period::containing(Cadence::Monthly, last.to_ns);
            if next.label != period.label {
                return Err(LedgerError::Refused(format!(
                    "months are closed in order: the last closed is {}, so the next to close is {}",
                    last.period, next.label
                )));
            }
        }
        let label = &period.label;
        let usage_cols =
            format!("bucket_start_ns, gpu_id, workload_id, node_id, owner_from, {}", USAGE_VALUES.join(", "));
        let gpu_cols = format!("bucket_start_ns, gpu_id, node_id, {}", GPU_VALUES.join(", "));
        // Late rows of the months closed before, booked here as corrections (computed before this month's
        // own rows are booked, which they do not overlap). PostgreSQL before 16 wants the subquery named (`e`).
        let earlier = Rows::Outstanding { closed: closed.iter().map(|c| (c.from_ns, c.to_ns)).collect() };
        tx.run(
            &format!(
                "INSERT INTO booked_usage (booked_period, correction, {usage_cols}) SELECT $1, 1, {usage_cols} FROM {} e",
                earlier.usage()
            ),
            sql_params![label],
        )?;
        tx.run(
            &format!(
                "INSERT INTO booked_gpu (booked_period, correction, {gpu_cols}) SELECT $1, 1, {gpu_cols} FROM {} e",
                earlier.gpu()
            ),
            sql_params![label],
        )?;
        tx.run(
            &format!(
                "INSERT INTO booked_usage (booked_period, correction, {usage_cols})
                 SELECT $1, 0, {usage_cols} FROM usage_buckets WHERE bucket_start_ns >= $2 AND bucket_start_ns < $3"
            ),
            sql_params![label, period.from_ns as i64, period.to_ns as i64],
        )?;
        tx.run(
            &format!(
                "INSERT INTO booked_gpu (booked_period, correction, {gpu_cols})
                 SELECT $1, 0, {gpu_cols} FROM gpu_buckets WHERE bucket_start_ns >= $2 AND bucket_start_ns < $3"
            ),
            sql_params![label, period.from_ns as i64, period.to_ns as i64],
        )?;
        // The month's own rows summed per day too (each row's owner kept), which its report reads (days.rs).
        let window = sql_params![label, period.from_ns as i64, period.to_ns as i64];
        tx.run(&super::days::sum_into_days("booked_usage_days", false, true), window)?;
        tx.run(&super::days::sum_into_days("booked_gpu_days", true, true), window)?;
        tx.run(
            "INSERT INTO closed_periods (period, from_ns, to_ns, closed_at_ns) VALUES ($1, $2, $3, $4)",
            sql_params![label, period.from_ns as i64, period.to_ns as i64, now_ns as i64],
        )?;
        tx.commit()?;
        Ok(ClosedPeriod { period: label.clone(), from_ns: period.from_ns, to_ns: period.to_ns, closed_at_ns: now_ns })
    }

    pub(super) fn closed(&self) -> Result<Vec<ClosedPeriod>, LedgerError> {
        self.with_reader(closed_periods)
    }

    /// Refuses a change to stored history (re-pricing, re-attribution) over a closed period.
    /// Refuses a change to history over [from, to) that reaches into a closed month; call it holding
    /// [`HISTORY_LOCK`], so that no month closes between the check and the change.
    pub(super) fn refuse_if_closed(&self, what: &str, from_ns: u64, to_ns: u64) -> Result<(), LedgerError> {
        let hit: Option<String> = self.with_reader(|c| {
            Ok(c.opt(
                "SELECT period FROM closed_periods WHERE from_ns < $1 AND to_ns > $2 ORDER BY from_ns LIMIT 1",
                sql_params![to_ns as i64, from_ns as i64],
                |r| r.get(0),
            )?)
        })?;
        match hit {
            Some(p) => Err(LedgerError::Refused(format!(
                "{what} would change {p}, which is closed; its report never changes (start after {p})"
            ))),
            None => Ok(()),
        }
    }
}

fn closed_periods(c: &impl Db) -> Result<Vec<ClosedPeriod>, LedgerError> {
    Ok(c.all("SELECT period, from_ns, to_ns, closed_at_ns FROM closed_periods ORDER BY from_ns", sql_params![], |r| {
        Ok(ClosedPeriod {
            period: r.get(0)?,
            from_ns: r.get::<i64>(1)? as u64,
            to_ns: r.get::<i64>(2)? as u64,
            closed_at_ns: r.get::<i64>(3)? as u64,
        })
    })?)
}
