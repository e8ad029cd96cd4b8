//! What budgets persist: the budgets (from the API or the config file), alert states, and the outbox of
//! notifications still to deliver. State changes and the notifications they cause are written in one
//! transaction, so a restart neither loses an alert nor sends one twice.

use crate::LedgerError;
use gpucost_rules::alert::Change;
use gpucost_rules::budget_status::{AlertState, Transition};

/// A budget as stored: its JSON form and where it came from (`api`, or `config:<file>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBudget {
    pub name: String,
    pub spec: String,
    pub source: String,
}

/// A notification to deliver to one notifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub id: i64,
    pub notifier: String,
    /// The event, JSON.
    pub event: String,
    pub attempts: u32,
}

/// Which alerts [`BudgetStore::alerts`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    /// Firing (`Some(true)`), resolved (`Some(false)`), or both.
    pub firing: Option<bool>,
    /// Only alerts firing at or after this time (fired or resolved since, or still firing).
    pub since_ns: Option<u64>,
    /// Only alerts of this kind (`budget`, `idle-gpu`, `anomaly`).
    pub kind: Option<String>,
    /// At most this many, the latest fired first.
    pub limit: u32,
}

/// An alert that fired, as the ledger keeps it, with the notifications sent of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRecord {
    pub id: i64,
    /// What raised it: `budget`, `idle-gpu` or `anomaly`.
    pub kind: String,
    /// Which alert of its kind: `<budget>/<threshold>/<period>` for a budget,
    /// `<rule>/<cluster>/<node>/<gpu>/<workload>` for an idle GPU, `<rule>/<dimension>=<value>/<hour|day>` for an
    /// anomaly.
    pub key: String,
    /// What it is about: the budget's name, the idle workload, the anomalous team/model/namespace.
    pub subject: String,
    /// A JSON object describing it (`{"budget", "threshold", "period"}`; an idle-GPU or anomaly alert's
    /// Alertmanager labels).
    pub labels: String,
    /// Why it fired.
    pub summary: String,
    pub fired_ns: u64,
    pub resolved_ns: Option<u64>,
    /// Why it resolved.
    pub resolution: Option<String>,
    /// Oldest first.
    pub notifications: Vec<NotificationRecord>,
}

/// A notification of an alert (its firing or its resolution) to one notifier, and how its delivery went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRecord {
    pub id: i64,
    pub notifier: String,
    /// The event sent, JSON.
    pub event: String,
    pub created_ns: u64,
    pub attempts: u32,
    pub delivered_ns: Option<u64>,
    /// The last failed attempt's error (cleared on delivery).
    pub last_error: Option<String>,
    /// When the next attempt is due (undelivered).
    pub next_attempt_ns: u64,
}

pub trait BudgetStore: Send + Sync {
    fn budgets(&self) -> Result<Vec<StoredBudget>, LedgerError>;
    /// Creates or replaces a budget; returns whether it was created.
    fn put_budget(&self, b: &StoredBudget, now_ns: u64) -> Result<bool, LedgerError>;
    /// Returns whether there was such a budget.
    fn delete_budget(&self, name: &str) -> Result<bool, LedgerError>;
    fn alert_states(&self) -> Result<Vec<AlertState>, LedgerError>;
    /// Stores each transition's new state, records it in the alert history (a firing opens an alert, a
    /// resolution closes the open one) and queues its event for every notifier, in one transaction.
    fn apply_transitions(&self, t: &[Transition], notifiers: &[String], now_ns: u64) -> Result<(), LedgerError>;
    /// Records idle-GPU and anomaly alert changes (`gpucost_rules::alert`): a firing opens an alert (unless
    /// one of its kind and key is open already), a resolution closes the open one; each queues its event for
    /// every notifier; all in one transaction. The open alerts are these alerts' state (`alerts` with
    /// `firing: Some(true)` reads them back).
    fn apply_alert_changes(&self, changes: &[Change], notifiers: &[String], now_ns: u64) -> Result<(), LedgerError>;
    /// Up to `limit` notifications for `notifiers` due at `now_ns`, oldest first.
    fn due_notifications(
        &self,
        now_ns: u64,
        limit: u32,
        notifiers: &[String],
    ) -> Result<Vec<Notification>, LedgerError>;
    /// Records a delivery (`Ok`) or a failed attempt, to be retried at `retry_at_ns`.
    fn notification_attempted(
        &self,
        id: i64,
        result: Result<(), String>,
        now_ns: u64,
        retry_at_ns: u64,
    ) -> Result<(), LedgerError>;
    /// Notifications not yet delivered.
    fn pending_notifications(&self) -> Result<u64, LedgerError>;
    /// The alerts that fired, the latest first, with their notifications.
    fn alerts(&self, filter: &AlertFilter) -> Result<Vec<AlertRecord>, LedgerError>;
}
