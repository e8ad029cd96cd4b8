//! Budgets, alert states and the notification outbox in the SQLite ledger.

use rusqlite::{OptionalExtension, params};

use super::SqliteLedger;
use crate::budget::evaluate::{AlertState, Transition};
use crate::budget::store::{BudgetStore, Notification, StoredBudget};
use crate::ledger::LedgerError;

impl BudgetStore for SqliteLedger {
    fn budgets(&self) -> Result<Vec<StoredBudget>, LedgerError> {
        self.with_reader(|c| {
            Ok(c.prepare("SELECT name, spec, source FROM budgets ORDER BY name")?
                .query_map([], |r| Ok(StoredBudget { name: r.get(0)?, spec: r.get(1)?, source: r.get(2)? }))?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn put_budget(&self, b: &StoredBudget, now_ns: u64) -> Result<bool, LedgerError> {
        let guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let existed: Option<i64> =
            guard.conn.query_row("SELECT 1 FROM budgets WHERE name = $1", params![b.name], |r| r.get(0)).optional()?;
        guard.conn.execute(
            "INSERT INTO budgets (name, spec, source, updated_ns) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, source = excluded.source, updated_ns = excluded.updated_ns",
            params![b.name, b.spec, b.source, now_ns as i64],
        )?;
        Ok(existed.is_none())
    }

    fn delete_budget(&self, name: &str) -> Result<bool, LedgerError> {
        let guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        Ok(guard.conn.execute("DELETE FROM budgets WHERE name = $1", params![name])? > 0)
    }

    fn alert_states(&self) -> Result<Vec<AlertState>, LedgerError> {
        self.with_reader(|c| {
            Ok(c.prepare("SELECT budget, threshold, period, alarm, since_ns FROM budget_alerts ORDER BY budget, threshold, period")?
                .query_map([], |r| {
                    Ok(AlertState {
                        budget: r.get(0)?,
                        threshold: r.get(1)?,
                        period: r.get(2)?,
                        alarm: r.get::<_, i64>(3)? != 0,
                        since_ns: r.get::<_, i64>(4)? as u64,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn apply_transitions(&self, t: &[Transition], notifiers: &[String], now_ns: u64) -> Result<(), LedgerError> {
        if t.is_empty() {
            return Ok(());
        }
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let tx = guard.conn.transaction()?;
        for tr in t {
            let s = &tr.state;
            tx.execute(
                "INSERT INTO budget_alerts (budget, threshold, period, alarm, since_ns) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (budget, threshold, period) DO UPDATE SET alarm = excluded.alarm, since_ns = excluded.since_ns",
                params![s.budget, s.threshold, s.period, i64::from(s.alarm), s.since_ns as i64],
            )?;
            let event = serde_json::to_string(&tr.event).map_err(|e| LedgerError::Io(e.to_string()))?;
            for n in notifiers {
                tx.execute(
                    "INSERT INTO notifications (notifier, event, created_ns, next_attempt_ns) VALUES ($1, $2, $3, $3)",
                    params![n, event, now_ns as i64],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn due_notifications(
        &self,
        now_ns: u64,
        limit: u32,
        notifiers: &[String],
    ) -> Result<Vec<Notification>, LedgerError> {
        let names = serde_json::to_string(notifiers).map_err(|e| LedgerError::Io(e.to_string()))?;
        self.with_reader(|c| {
            Ok(c.prepare(
                "SELECT id, notifier, event, attempts FROM notifications
                 WHERE delivered_ns IS NULL AND next_attempt_ns <= $1 AND notifier IN (SELECT value FROM json_each($3))
                 ORDER BY id LIMIT $2",
            )?
            .query_map(params![now_ns as i64, limit, names], |r| {
                Ok(Notification { id: r.get(0)?, notifier: r.get(1)?, event: r.get(2)?, attempts: r.get(3)? })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn notification_attempted(
        &self,
        id: i64,
        result: Result<(), String>,
        now_ns: u64,
        retry_at_ns: u64,
    ) -> Result<(), LedgerError> {
        let guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) => guard.conn.execute(
                "UPDATE notifications SET attempts = attempts + 1, delivered_ns = $2, last_error = NULL WHERE id = $1",
                params![id, now_ns as i64],
            )?,
            Err(e) => guard.conn.execute(
                "UPDATE notifications SET attempts = attempts + 1, next_attempt_ns = $2, last_error = $3 WHERE id = $1",
                params![id, retry_at_ns as i64, e],
            )?,
        };
        Ok(())
    }

    fn pending_notifications(&self) -> Result<u64, LedgerError> {
        self.with_reader(|c| {
            Ok(
                c.query_row("SELECT COUNT(*) FROM notifications WHERE delivered_ns IS NULL", [], |r| {
                    r.get::<_, i64>(0)
                })? as u64,
            )
        })
    }
}
