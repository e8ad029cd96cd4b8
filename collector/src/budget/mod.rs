//! Budgets and their alerts: a budget caps what a scope (a team, department, owner, model, namespace,
//! cluster, or any filter) may spend on GPUs per month or week; thresholds on actual spend and on the
//! forecast raise alerts once per period (OK → ALARM → OK), delivered to Slack, a signed webhook and
//! Alertmanager through a persisted outbox.
//!
//! - `spec`: what a budget is, parsed and checked from the API's JSON or the config file's TOML (pure).
//! - `evaluate`: spend, forecast and threshold crossings, and the state transitions they cause (pure).
//! - `store`: what is persisted (budgets, alert states, the outbox), implemented by the ledger.
//! - `notify`: the notifiers' payloads and delivery.
//! - `engine`: the evaluation and delivery loops.

pub mod engine;
pub mod evaluate;
pub mod notify;
pub mod spec;
pub mod store;
