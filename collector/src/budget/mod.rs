//! Budgets at run time: evaluated against the ledger on a schedule (`engine`), their alerts delivered to
//! Slack, PagerDuty, webhooks and Alertmanager (`notify`). What a budget says and where spend stands are pure
//! rules (`gpucost_rules::budget_spec`, `budget_status`); what is stored, the ledger's (`gpucost_ledger::budgets`).

pub mod engine;
pub mod notify;
