//! `gpucost-collector`: the collector service, on top of its crates (`docs/architecture.md`).
//!
//! Data flow: [`ingest`] (gRPC: each batch validated → held → priced → attributed → stored, `ingest/stages.rs`)
//! → the ledger (`gpucost-ledger`) → [`http`] (the API, the dashboard) and the reports (`gpucost-report`).
//! Around it: [`jobs`] (background work under one supervisor), the integrations ([`discover`]: AWS,
//! [`enrich`]: Backstage and MLflow, [`budget`]: budget alerts and their notifiers), [`live`] (the latest
//! interval of every GPU), [`metrics`], [`auth`], [`tls`] and [`listen`]; [`server`] wires them together and
//! [`demo`] adds a simulated fleet streaming over real gRPC. The rules are pure code in `gpucost-rules`, the types
//! in `gpucost-types`.

pub mod auth;
pub mod bill;
pub mod budget;
pub mod demo;
#[cfg(feature = "aws")]
pub mod discover;
pub mod enrich;
pub mod files;
pub mod http;
pub mod ingest;
pub mod jobs;
pub mod listen;
pub mod live;
pub use gpucost_cli::logs;
pub mod metrics;
pub mod prices;
pub mod server;
pub mod tls;

pub use gpucost_types::clock::now_ns;
