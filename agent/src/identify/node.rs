//! The node's own Kubernetes object: where its instance type, capacity type, region and zone come from
//! when the agent's flags do not say (`node.kubernetes.io/instance-type`,
//! `eks.amazonaws.com/capacityType`, `karpenter.sh/capacity-type`, `topology.kubernetes.io/*`), and the
//! allow-listed labels sent with every batch so that prices can be set per node label.

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

/// Reads the labels of node `name` (RBAC: `get` on `nodes`).
#[cfg(feature = "node")]
pub async fn fetch_labels(client: kube::Client, name: &str) -> Result<BTreeMap<String, String>, kube::Error> {
    let api: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
    Ok(api.get(name).await?.metadata.labels.unwrap_or_default())
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
