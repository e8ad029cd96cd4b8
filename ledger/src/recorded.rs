//! What became of a batch handed to the ledger.

use serde::Serialize;

/// What became of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Stored now.
    Stored,
    /// Stored now, while another cluster holds GPU time on one of its GPU UUIDs over the same time. Each cluster
    /// keeps its own (GPUs are per cluster), so neither moves or erases the other's; the pairs are kept for an
    /// operator ([`Ledger::conflicts`]).
    Contested(Vec<Conflict>),
    /// Stored before (same agent, boot and sequence numbers): acknowledged, not counted again.
    Duplicate,
}

/// The same GPU UUID reported by two clusters over the same time: `cluster`'s batches found `other_cluster`'s
/// GPU time there (over [start_ns, end_ns), the span of those batches' intervals).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub gpu_uuid: String,
    pub cluster: String,
    pub other_cluster: String,
    pub start_ns: u64,
    pub end_ns: u64,
    /// How many of `cluster`'s batches overlapped `other_cluster`'s time.
    pub batches: u64,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
}
