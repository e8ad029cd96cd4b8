//! What budgets persist: the budgets (from the API or the config file), alert states, and the outbox of
//! notifications still to deliver. State changes and the notifications they cause are written in one
//! transaction, so a restart neither loses an alert nor sends one twice.

use crate::LedgerError;
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

pub trait BudgetStore: Send + Sync {
    fn budgets(&self) -> Result<Vec<StoredBudget>, LedgerError>;
    /// Creates or replaces a budget; returns whether it was created.
    fn put_budget(&self, b: &StoredBudget, now_ns: u64) -> Result<bool, LedgerError>;
    /// Returns whether there was such a budget.
    fn delete_budget(&self, name: &str) -> Result<bool, LedgerError>;
    fn alert_states(&self) -> Result<Vec<AlertState>, LedgerError>;
    /// Stores each transition's new state and queues its event for every notifier, in one transaction.
    fn apply_transitions(&self, t: &[Transition], notifiers: &[String], now_ns: u64) -> Result<(), LedgerError>;
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
}
