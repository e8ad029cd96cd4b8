//! Where GPU readings come from. One trait, two sources: `nvml` (a real node) and `sim` (a
//! deterministic fleet for demos and tests).

use std::sync::atomic::AtomicU64;

use crate::reading::{GpuAllocation, NodeInfo, Tick};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "cannot load NVML ({library}): {reason}. Is the NVIDIA driver installed and its library visible to this process (on Kubernetes: the NVIDIA container toolkit, or a hostPath mount of the driver)? Use --nvml-lib to point at the library."
    )]
    NvmlUnavailable { library: String, reason: String },
    #[error("NVML call {call} failed on GPU {device}: {reason}")]
    Device { call: &'static str, device: String, reason: String },
}

/// How reading the devices goes, for the agent's `/metrics`: a device that does not answer is skipped for
/// that tick (the others are still read), so these counters are where its trouble shows.
#[derive(Debug, Default)]
pub struct SourceHealth {
    /// Times a GPU fell off the bus (NVML's `GPU_IS_LOST`), counted when it stops answering.
    pub gpus_lost: AtomicU64,
    /// Device readings that failed, one per device per tick.
    pub read_errors: AtomicU64,
}

/// A source of GPU readings for one node.
pub trait GpuSource: Send {
    /// The node and every GPU and MIG device on it.
    fn node(&self) -> &NodeInfo;
    /// Reads every device and process once. `at_unix_nanos` is the sample time; real sources read
    /// the hardware now and ignore it, the simulator answers for that time.
    fn sample(&mut self, at_unix_nanos: u64) -> Result<Tick, SourceError>;
    /// GPUs allocated to workloads, when the source itself knows (the simulator); on a real node the
    /// identifier asks the kubelet instead.
    fn allocations(&self) -> Vec<GpuAllocation> {
        Vec::new()
    }
}
