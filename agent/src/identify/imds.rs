//! EC2 instance metadata (IMDSv2): the instance id, type, lifecycle (spot or on-demand), region and zone of
//! a node whose flags and Kubernetes node object did not say — an ECS container instance or a bare EC2 host.
//! One token request and a handful of reads, each bounded by a short timeout.

use std::time::Duration;

use crate::reading::{CapacityType, NodeInfo};

/// What the instance metadata says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceFacts {
    pub instance_id: String,
    pub instance_type: String,
    pub capacity_type: CapacityType,
    pub region: String,
    pub zone: String,
}

#[derive(Debug, thiserror::Error)]
#[error("EC2 instance metadata at {endpoint}: {reason}")]
pub struct ImdsError {
    pub endpoint: String,
    pub reason: String,
}

/// Reads the instance's facts from `endpoint` (normally `http://169.254.169.254`). Blocking.
pub fn read(endpoint: &str, timeout: Duration) -> Result<InstanceFacts, ImdsError> {
    let base = endpoint.trim_end_matches('/');
    let err = |reason: String| ImdsError { endpoint: base.to_string(), reason };
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(true).build().into();
    let token = agent
        .put(&format!("{base}/latest/api/token"))
        .header("X-aws-ec2-metadata-token-ttl-seconds", "60")
        .send_empty()
        .map_err(|e| err(format!("token: {e}")))?
        .into_body()
        .read_to_string()
        .map_err(|e| err(format!("token: {e}")))?;
    let get = |path: &str| -> Result<String, ImdsError> {
        agent
            .get(&format!("{base}/latest/meta-data/{path}"))
            .header("X-aws-ec2-metadata-token", &token)
            .call()
            .map_err(|e| err(format!("{path}: {e}")))?
            .into_body()
            .read_to_string()
            .map(|s| s.trim().to_string())
            .map_err(|e| err(format!("{path}: {e}")))
    };
    let zone = get("placement/availability-zone")?;
    Ok(InstanceFacts {
        instance_id: get("instance-id")?,
        instance_type: get("instance-type")?,
        capacity_type: match get("instance-life-cycle")?.as_str() {
            "spot" => CapacityType::Spot,
            "on-demand" => CapacityType::OnDemand,
            _ => CapacityType::Unspecified,
        },
        region: get("placement/region").unwrap_or_else(|_| zone.trim_end_matches(char::is_alphabetic).to_string()),
        zone,
    })
}

/// Fills what `node` leaves open (an instance id only if it is one: "i-" and 8 or 17 hex digits).
pub fn apply(node: &mut NodeInfo, facts: &InstanceFacts) {
    if node.instance_id.is_empty() && super::instance::is_ec2_instance_id(&facts.instance_id) {
        node.instance_id = facts.instance_id.clone();
    }
    if node.instance_type.is_empty() {
        node.instance_type = facts.instance_type.clone();
    }
    if node.capacity_type == CapacityType::Unspecified {
        node.capacity_type = facts.capacity_type;
    }
    if node.region.is_empty() {
        node.region = facts.region.clone();
    }
    if node.zone.is_empty() {
        node.zone = facts.zone.clone();
    }
}
