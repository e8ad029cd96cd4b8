//! `gpucost-collector`: ingests agent streams, stores GPU time in the ledger, serves the API.
//!
//! Data flow: `ingest` (gRPC: validate → share) → `ledger` (writer → SQLite) → `api` (HTTP).
//! `server` wires them together; `demo` adds a simulated fleet streaming over real gRPC.

pub mod alb_oidc;
pub mod api;
pub mod api_backstage;
pub mod api_budgets;
pub mod api_doc;
pub mod api_live;
pub mod api_reports;
pub mod auth;
pub mod budget;
pub mod cost;
pub mod cost_insights;
pub mod demo;
pub mod discover;
pub mod enrich;
pub mod ingest;
pub mod jobs;
pub mod ledger;
pub mod listen;
pub mod live;
pub use gpucost_cli::logs;
pub mod metrics;
pub mod model;
pub mod report;
pub mod server;
pub mod tls;
pub mod web;

/// Wall-clock time, Unix nanoseconds.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}
