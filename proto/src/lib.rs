//! The wire contract between `gpucost-agent` and `gpucost-collector`.
//!
//! These types stop at the edges: the agent builds them from its own readings just before sending, and
//! the collector converts them into its own types right after validating them.

/// `gpucost.v1`: the ingest stream and its messages.
pub mod v1 {
    tonic::include_proto!("gpucost.v1");
}
