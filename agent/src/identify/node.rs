//! The node's own Kubernetes object: where its instance type, capacity type, region and zone come from
//! when the agent's flags do not say (`node.kubernetes.io/instance-type`,
//! `eks.amazonaws.com/capacityType`, `karpenter.sh/capacity-type`, `topology.kubernetes.io/*`), and the
//! allow-listed labels sent with every batch so that prices can be set per node label; and its
//! `spec.providerID`, which names the EC2 instance.

use std::collections::BTreeMap;

use crate::reading::{CapacityType, NodeInfo};

/// Node labels sent to the collector by default.
pub const DEFAULT_NODE_LABELS: &[&str] = &[
    "node.kubernetes.io/instance-type",
    "topology.kubernetes.io/*",
    "eks.amazonaws.com/*",
    "karpenter.sh/*",
    "karpenter.k8s.aws/*",
    "nvidia.com/gpu.product",
    "nvidia.com/mig.config",
];

/// Fills what `node` leaves open from the node's labels, and keeps the allow-listed ones.
pub fn apply_labels(node: &mut NodeInfo, labels: &BTreeMap<String, String>, allow: &super::labels::LabelAllow) {
    let get = |keys: &[&str]| keys.iter().find_map(|k| labels.get(*k)).cloned();
    if node.instance_type.is_empty()
        && let Some(t) = get(&["node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type"])
    {
        node.instance_type = t;
    }
    if node.capacity_type == CapacityType::Unspecified
        && let Some(c) = get(&["eks.amazonaws.com/capacityType", "karpenter.sh/capacity-type"])
    {
        node.capacity_type = c.parse().unwrap_or(CapacityType::Unspecified);
    }
    if node.region.is_empty()
        && let Some(r) = get(&["topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region"])
    {
        node.region = r;
    }
    if node.zone.is_empty()
        && let Some(z) = get(&["topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone"])
    {
        node.zone = z;
    }
    node.labels = allow.pick([labels]);
}

/// What the agent reads of its node's object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeObject {
    pub labels: BTreeMap<String, String>,
    /// `spec.providerID`, e.g. `aws:///us-east-1a/i-0abc…`; empty where unset.
    pub provider_id: String,
}

/// Fills the node's instance id, when nothing set it, from an AWS `spec.providerID`.
pub fn apply_provider_id(node: &mut NodeInfo, provider_id: &str) {
    if node.instance_id.is_empty()
        && let Some(id) = super::instance::from_provider_id(provider_id)
    {
        node.instance_id = id;
    }
}

/// Reads the labels and provider id of node `name` (RBAC: `get` on `nodes`).
#[cfg(feature = "node")]
pub async fn fetch(client: kube::Client, name: &str) -> Result<NodeObject, kube::Error> {
    let api: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
    let node = api.get(name).await?;
    Ok(NodeObject {
        labels: node.metadata.labels.unwrap_or_default(),
        provider_id: node.spec.and_then(|s| s.provider_id).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identify::labels::LabelAllow;

    fn empty() -> NodeInfo {
        NodeInfo {
            cluster: "c".into(),
            node_name: "n".into(),
            instance_type: String::new(),
            capacity_type: CapacityType::Unspecified,
            region: String::new(),
            zone: String::new(),
            devices: vec![],
            labels: BTreeMap::new(),
            instance_id: String::new(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn eks_managed_node_labels_fill_instance_capacity_region_and_zone() {
        let mut n = empty();
        let l = labels(&[
            ("node.kubernetes.io/instance-type", "p4d.24xlarge"),
            ("eks.amazonaws.com/capacityType", "SPOT"),
            ("eks.amazonaws.com/nodegroup", "a100-spot"),
            ("topology.kubernetes.io/region", "us-west-2"),
            ("topology.kubernetes.io/zone", "us-west-2b"),
            ("kubernetes.io/hostname", "ip-10-0-0-1"),
        ]);
        apply_labels(&mut n, &l, &LabelAllow::new(DEFAULT_NODE_LABELS));
        assert_eq!(
            (n.instance_type.as_str(), n.capacity_type, n.region.as_str(), n.zone.as_str()),
            ("p4d.24xlarge", CapacityType::Spot, "us-west-2", "us-west-2b")
        );
        assert_eq!(n.labels.get("eks.amazonaws.com/nodegroup").map(String::as_str), Some("a100-spot"));
        assert!(!n.labels.contains_key("kubernetes.io/hostname"), "only allow-listed labels travel");
    }

    #[test]
    fn the_instance_id_comes_from_an_aws_provider_id_unless_already_known() {
        let mut n = empty();
        apply_provider_id(&mut n, "gce://p/us-central1-a/gke-1");
        assert_eq!(n.instance_id, "");
        apply_provider_id(&mut n, "aws:///us-east-1a/i-0abcdef1234567890");
        assert_eq!(n.instance_id, "i-0abcdef1234567890");
        apply_provider_id(&mut n, "aws:///us-east-1a/i-1a2b3c4d");
        assert_eq!(n.instance_id, "i-0abcdef1234567890", "what was set first stays");
    }

    #[test]
    fn karpenter_labels_work_and_flags_win_over_labels() {
        let mut n = empty();
        n.instance_type = "g6e.12xlarge".into();
        apply_labels(
            &mut n,
            &labels(&[("node.kubernetes.io/instance-type", "g5.xlarge"), ("karpenter.sh/capacity-type", "on-demand")]),
            &LabelAllow::default(),
        );
        assert_eq!(n.instance_type, "g6e.12xlarge");
        assert_eq!(n.capacity_type, CapacityType::OnDemand);
    }
}
