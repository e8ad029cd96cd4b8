//! Budgets, alert states and the notification outbox in the SQLite ledger.

use gpucost_rules::alert::Change;
use gpucost_rules::budget_status::{AlertState, Transition};

use super::{Engine, SqlLedger};
use crate::budgets::{AlertFilter, AlertRecord, BudgetStore, Notification, NotificationRecord, StoredBudget};
use crate::sql::{Db, Tx, Value, bind};
use crate::{LedgerError, sql_params};

impl<E: Engine> BudgetStore for SqlLedger<E> {
    fn budgets(&self) -> Result<Vec<StoredBudget>, LedgerError> {
        self.with_reader(|c| {
            Ok(c.all("SELECT name, spec, source FROM budgets ORDER BY name", sql_params![], |r| {
                Ok(StoredBudget { name: r.get(0)?, spec: r.get(1)?, source: r.get(2)? })
            })?)
        })
    }

    fn put_budget(&self, b: &StoredBudget, now_ns: u64) -> Result<bool, LedgerError> {
        let guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let existed: Option<i64> =
            guard.conn.opt("SELECT 1 FROM budgets WHERE name = $1", sql_params![b.name], |r| r.get(0))?;
        guard.conn.run(
            "INSERT INTO budgets (name, spec, source, updated_ns) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, source = excluded.source, updated_ns = excluded.updated_ns", sql_params![b.name, b.spec, b.source, now_ns as i64])?;
        Ok(existed.is_none())
    }

    fn delete_budget(&self, name: &str) -> Result<bool, LedgerError> {
        let guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        Ok(guard.conn.run("DELETE FROM budgets WHERE name = $1", sql_params![name])? > 0)
    }

    fn alert_states(&self) -> Result<Vec<AlertState>, LedgerError> {
        self.with_reader(|c| {
            Ok(c.all("SELECT budget, threshold, period, alarm, since_ns FROM budget_alerts ORDER BY budget, threshold, period", sql_params![], |r| {
                    Ok(AlertState {
                        budget: r.get(0)?,
                        threshold: r.get(1)?,
                        period: r.get(2)?,
                        alarm: r.get::<i64>(3)? != 0,
                        since_ns: r.get::<i64>(4)? as u64,
                    })
                })?)
        })
    }

    fn apply_transitions(&self, t: &[Transition], notifiers: &[String], now_ns: u64) -> Result<(), LedgerError> {
        if t.is_empty() {
            return Ok(());
        }
        let guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let tx = Tx::begin(&guard.conn, self.engine.begin())?;
        for tr in t {
            let s = &tr.state;
            tx.run(
                "INSERT INTO budget_alerts (budget, threshold, period, alarm, since_ns) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (budget, threshold, period) DO UPDATE SET alarm = excluded.alarm, since_ns = excluded.since_ns", sql_params![s.budget, s.threshold, s.period, i64::from(s.alarm), s.since_ns as i64])?;
            let alert = record_alert(&tx, tr, now_ns)?;
            let event = serde_json::to_string(&tr.event).map_err(|e| LedgerError::Io(e.to_string()))?;
            for n in notifiers {
                tx.run(
                    "INSERT INTO notifications (notifier, event, created_ns, next_attempt_ns, alert_id) VALUES ($1, $2, $3, $3, $4)",
                    sql_params![n, event, now_ns as i64, alert],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn apply_alert_changes(&self, changes: &[Change], notifiers: &[String], now_ns: u64) -> Result<(), LedgerError> {
        if changes.is_empty() {
            return Ok(());
        }
        let guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let tx = Tx::begin(&guard.conn, self.engine.begin())?;
        for c in changes {
            let open: Option<i64> = tx.opt(
                "SELECT id FROM alerts WHERE kind = $1 AND alert_key = $2 AND resolved_ns IS NULL ORDER BY id DESC LIMIT 1",
                sql_params![c.kind, c.key],
                |r| r.get(0),
            )?;
            let alert = match (c.firing, open) {
                // Already open (another evaluation got there first): nothing to tell.
                (true, Some(_)) | (false, None) => continue,
                (true, None) => {
                    let labels = serde_json::to_string(&c.labels).map_err(|e| LedgerError::Io(e.to_string()))?;
                    tx.one(
                        "INSERT INTO alerts (kind, alert_key, subject, labels, summary, fired_ns)
                         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                        sql_params![c.kind, c.key, c.subject, labels, c.summary, c.since_ns as i64],
                        |r| r.get::<i64>(0),
                    )?
                }
                (false, Some(id)) => {
                    tx.run(
                        "UPDATE alerts SET resolved_ns = $1, resolution = $2 WHERE id = $3",
                        sql_params![now_ns as i64, c.resolution.clone().unwrap_or_default(), id],
                    )?;
                    id
                }
            };
            let event = serde_json::to_string(&c.event).map_err(|e| LedgerError::Io(e.to_string()))?;
            for n in notifiers {
                tx.run(
                    "INSERT INTO notifications (notifier, event, created_ns, next_attempt_ns, alert_id) VALUES ($1, $2, $3, $3, $4)",
                    sql_params![n, event, now_ns as i64, alert],
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
        if notifiers.is_empty() {
            return Ok(Vec::new());
        }
        // One parameter per notifier (portable: no JSON functions).
        let list = (0..notifiers.len()).map(|i| format!("${}", i + 2)).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT id, notifier, event, attempts FROM notifications
             WHERE delivered_ns IS NULL AND next_attempt_ns <= $1 AND notifier IN ({list})
             ORDER BY id LIMIT ${}",
            notifiers.len() + 2
        );
        let mut bound = vec![Value::Int(now_ns as i64)];
        bound.extend(notifiers.iter().map(|n| Value::Text(n.clone())));
        bound.push(Value::Int(i64::from(limit)));
        self.with_reader(|c| {
            Ok(c.all(&sql, &bind(&bound), |r| {
                Ok(Notification { id: r.get(0)?, notifier: r.get(1)?, event: r.get(2)?, attempts: r.get(3)? })
            })?)
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
            Ok(()) => guard.conn.run(
                "UPDATE notifications SET attempts = attempts + 1, delivered_ns = $1, last_error = NULL WHERE id = $2",
                sql_params![now_ns as i64, id],
            )?,
            Err(e) => guard.conn.run(
                "UPDATE notifications SET attempts = attempts + 1, next_attempt_ns = $1, last_error = $2 WHERE id = $3",
                sql_params![retry_at_ns as i64, e, id],
            )?,
        };
        Ok(())
    }

    fn alerts(&self, filter: &AlertFilter) -> Result<Vec<AlertRecord>, LedgerError> {
        let mut conds = Vec::new();
        let mut bound = Vec::new();
        match filter.firing {
            Some(true) => conds.push("resolved_ns IS NULL".to_string()),
            Some(false) => conds.push("resolved_ns IS NOT NULL".to_string()),
            None => {}
        }
        if let Some(since) = filter.since_ns {
            bound.push(Value::Int(since as i64));
            let n = bound.len();
            conds.push(format!("(fired_ns >= ${n} OR resolved_ns IS NULL OR resolved_ns >= ${n})"));
        }
        if let Some(kind) = &filter.kind {
            bound.push(Value::Text(kind.clone()));
            conds.push(format!("kind = ${}", bound.len()));
        }
        bound.push(Value::Int(i64::from(filter.limit)));
        let sql = format!(
            "SELECT id, kind, alert_key, subject, labels, summary, fired_ns, resolved_ns, resolution FROM alerts
             {} ORDER BY fired_ns DESC, id DESC LIMIT ${}",
            if conds.is_empty() { String::new() } else { format!("WHERE {}", conds.join(" AND ")) },
            bound.len()
        );
        self.with_reader(|c| {
            let mut alerts = c.all(&sql, &bind(&bound), |r| {
                Ok(AlertRecord {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    key: r.get(2)?,
                    subject: r.get(3)?,
                    labels: r.get(4)?,
                    summary: r.get(5)?,
                    fired_ns: r.get::<i64>(6)? as u64,
                    resolved_ns: r.get::<Option<i64>>(7)?.map(|v| v as u64),
                    resolution: r.get(8)?,
                    notifications: Vec::new(),
                })
            })?;
            if alerts.is_empty() {
                return Ok(alerts);
            }
            // One parameter per alert (portable: no arrays).
            let list = (1..=alerts.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
            let ids: Vec<Value> = alerts.iter().map(|a| Value::Int(a.id)).collect();
            let sent = c.all(
                &format!(
                    "SELECT alert_id, id, notifier, event, created_ns, attempts, delivered_ns, last_error, next_attempt_ns
                     FROM notifications WHERE alert_id IN ({list}) ORDER BY id"
                ),
                &bind(&ids),
                |r| {
                    Ok((
                        r.get::<i64>(0)?,
                        NotificationRecord {
                            id: r.get(1)?,
                            notifier: r.get(2)?,
                            event: r.get(3)?,
                            created_ns: r.get::<i64>(4)? as u64,
                            attempts: r.get(5)?,
                            delivered_ns: r.get::<Option<i64>>(6)?.map(|v| v as u64),
                            last_error: r.get(7)?,
                            next_attempt_ns: r.get::<i64>(8)? as u64,
                        },
                    ))
                },
            )?;
            for (alert, n) in sent {
                if let Some(a) = alerts.iter_mut().find(|a| a.id == alert) {
                    a.notifications.push(n);
                }
            }
            Ok(alerts)
        })
    }

    fn pending_notifications(&self) -> Result<u64, LedgerError> {
        self.with_reader(|c| {
            Ok(c.one("SELECT COUNT(*) FROM notifications WHERE delivered_ns IS NULL", sql_params![], |r| {
                r.get::<i64>(0)
            })? as u64)
        })
    }
}

/// Records `tr` in the alert history: a firing opens an alert, a resolution closes the open one (or, for an
/// alarm older than the history, records it fired at its `since_ns` and resolved now). Returns its id.
fn record_alert<C: Db>(tx: &Tx<'_, C>, tr: &Transition, now_ns: u64) -> Result<i64, LedgerError> {
    let s = &tr.state;
    let key = format!("{}/{}/{}", s.budget, s.threshold, s.period);
    let labels = serde_json::json!({ "budget": s.budget, "threshold": s.threshold, "period": s.period }).to_string();
    let open = |summary: &str, fired: u64, resolved: Option<i64>, resolution: Option<&str>| {
        tx.one(
            "INSERT INTO alerts (kind, alert_key, subject, labels, summary, fired_ns, resolved_ns, resolution)
             VALUES ('budget', $1, $2, $3, $4, $5, $6, $7) RETURNING id",
            sql_params![key, s.budget, labels, summary, fired as i64, resolved, resolution],
            |r| r.get::<i64>(0),
        )
    };
    if s.alarm {
        return Ok(open(&tr.event.reason, s.since_ns, None, None)?);
    }
    let current: Option<i64> = tx.opt(
        "SELECT id FROM alerts WHERE kind = 'budget' AND alert_key = $1 AND resolved_ns IS NULL ORDER BY id DESC LIMIT 1",
        sql_params![key],
        |r| r.get(0),
    )?;
    match current {
        Some(id) => {
            tx.run(
                "UPDATE alerts SET resolved_ns = $1, resolution = $2 WHERE id = $3",
                sql_params![now_ns as i64, tr.event.reason, id],
            )?;
            Ok(id)
        }
        None => Ok(open(
            &format!("{} threshold crossed", s.threshold),
            s.since_ns,
            Some(now_ns as i64),
            Some(&tr.event.reason),
        )?),
    }
}
