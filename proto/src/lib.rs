//! The wire contract between `gpucost-agent` and `gpucost-collector`.
//!
//! These types stop at the edges: the agent builds them from its own readings just before sending, and
//! the collector converts them into its own types right after validating them.

/// `gpucost.v1`: the ingest stream and its messages.
pub mod v1 {
    tonic::include_proto!("gpucost.v1");
}

/// The kubelet's pod-resources API (`v1.PodResourcesLister`): which pod and container each device was
/// allocated to.
pub mod podresources {
    pub mod v1 {
        tonic::include_proto!("v1");
    }
}

pub mod codec;
pub mod instance_id;
pub mod label_keys;
pub mod limits;
pub mod refs;
