//! Ingest: the gRPC service agents stream to. `service` keeps the stream's flow control (window, limits,
//! acks); `stages` is what happens to each batch, top to bottom: validated (`validate`, with `refs` for the
//! workloads a stream declared) → held → priced → attributed → stored. The agent gets an ack only once the
//! batch is durable.

pub mod label_keys;
pub mod limits;
pub mod refs;
pub mod service;
pub mod stages;
pub mod validate;
