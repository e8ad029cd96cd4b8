//! The `gpucost-collector` binary's commands: their flags (the `--help` text) and what each runs. One file a
//! command, and the settings `serve` and `demo` share in `ledger_args` (auth, budgets and the server's config
//! built from them in files of their own).

pub(crate) mod auth;
pub(crate) mod bill;
pub(crate) mod budgets;
pub(crate) mod close_period;
pub(crate) mod config;
pub(crate) mod demo;
pub(crate) mod ledger_args;
pub(crate) mod migrate;
pub(crate) mod open;
pub(crate) mod prices;
pub(crate) mod reattribute;
pub(crate) mod report;
pub(crate) mod reprice;
pub(crate) mod serve;
