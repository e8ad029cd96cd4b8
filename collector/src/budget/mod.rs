//! Budgets at run time: evaluated against the ledger on a schedule (`engine`), their alerts delivered to
//! Slack, PagerDuty, webhooks and Alertmanager (`notify`). What a budget says and where spend stands are pure
//! rules (`gpucost_rules::budget_spec`, `budget_status`); what is stored, the ledger's (`gpucost_ledger::budgets`).
//! Beside them, the idle-GPU and spend-anomaly alerts of the same file (`alerts`), through the same outbox.

pub mod alerts;
pub mod backtest;
pub mod engine;
pub mod notify;
