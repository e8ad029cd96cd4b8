//! Ingest: the gRPC service agents stream to. Each batch is validated (`validate`), its per-process
//! readings become per-workload holdings (`share`), and the ledger writer stores it; the agent gets an
//! ack only once the batch is durable.

pub mod label_keys;
pub mod limits;
pub mod refs;
pub mod service;
pub mod share;
pub mod validate;
