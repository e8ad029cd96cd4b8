//! What the cloud knows about the fleet, for nodes whose agent could not tell: EKS managed node groups
//! (instance types, capacity type, labels) and ECS GPU container instances with their tasks and tags.
//!
//! The collector's `discover` finds it (aws-sdk-eks, aws-sdk-ecs, tested against moto's server); `Inventory` is
//! what it finds, and `resolve_instance` the pure rule that prices a node from it.

use std::collections::BTreeMap;

use crate::book::PriceBook;
use gpucost_types::batch::Node;

/// An EKS managed node group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct NodeGroup {
    pub cluster: String,
    pub name: String,
    pub instance_types: Vec<String>,
    /// `on_demand` or `spot` (as the agent reports capacity types).
    pub capacity_type: String,
    pub labels: BTreeMap<String, String>,
}

/// An ECS container instance with GPUs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct EcsInstance {
    pub cluster: String,
    pub ec2_instance_id: String,
    pub instance_type: String,
    pub gpus: u32,
}

/// An ECS task on a GPU container instance, with its tags (for owners, later).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct EcsTask {
    pub cluster: String,
    pub task_arn: String,
    pub family: String,
    pub tags: BTreeMap<String, String>,
}

/// Everything discovered in one pass (`GET /api/v1/inventory` answers it as it is).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Inventory {
    pub node_groups: Vec<NodeGroup>,
    pub ecs_instances: Vec<EcsInstance>,
    pub ecs_tasks: Vec<EcsTask>,
}

/// The instance type (and capacity type, and where it came from) of a node that reported none, if the
/// inventory settles it: among the node groups of the node's cluster, the instance types whose GPU
/// count and model (from the catalogue) match the GPUs the agent reported. Exactly one must remain.
pub fn resolve_instance(
    inv: &Inventory,
    book: &PriceBook,
    node: &Node,
    gpus: u32,
    model: &str,
) -> Option<(String, String, String)> {
    // A node named after an EC2 instance that is an ECS GPU container instance takes that instance's type.
    if let Some(ci) =
        inv.ecs_instances.iter().find(|ci| ci.ec2_instance_id == node.name && !ci.instance_type.is_empty())
    {
        return Some((
            ci.instance_type.clone(),
            "unspecified".into(),
            format!("ECS container instance {}", ci.ec2_instance_id),
        ));
    }
    let mut found: Vec<(&NodeGroup, &String)> = Vec::new();
    for g in inv.node_groups.iter().filter(|g| g.cluster == node.cluster) {
        for t in &g.instance_types {
            if book.describes(t, gpus, model) && !found.iter().any(|(_, f)| *f == t) {
                found.push((g, t));
            }
        }
    }
    let [(group, instance_type)] = found[..] else { return None };
    Some((
        instance_type.clone(),
        group.capacity_type.clone(),
        format!("EKS node group {}/{}", group.cluster, group.name),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(cluster: &str, name: &str, types: &[&str]) -> NodeGroup {
        NodeGroup {
            cluster: cluster.into(),
            name: name.into(),
            instance_types: types.iter().map(|t| t.to_string()).collect(),
            capacity_type: "spot".into(),
            labels: BTreeMap::new(),
        }
    }

    fn node(cluster: &str) -> Node {
        Node {
            cluster: cluster.into(),
            name: "ip-10-0-0-1".into(),
            instance_type: String::new(),
            capacity_type: "unspecified".into(),
            region: "us-east-1".into(),
            zone: String::new(),
            labels: Default::default(),
        }
    }

    #[test]
    fn a_node_is_matched_to_the_one_node_group_type_with_its_gpus() {
        let inv = Inventory {
            node_groups: vec![
                group("prod", "cpu", &["m6i.large"]),
                group("prod", "gpu", &["g5.12xlarge"]),
                group("dev", "gpu", &["g5.48xlarge"]),
            ],
            ..Default::default()
        };
        let book = PriceBook::catalogue_only();
        let got = resolve_instance(&inv, &book, &node("prod"), 4, "NVIDIA A10G");
        assert_eq!(got, Some(("g5.12xlarge".into(), "spot".into(), "EKS node group prod/gpu".into())));
        assert_eq!(resolve_instance(&inv, &book, &node("prod"), 8, "NVIDIA A10G"), None, "no 8-GPU type in prod");
        assert_eq!(resolve_instance(&inv, &book, &node("other"), 4, "NVIDIA A10G"), None);
    }

    #[test]
    fn an_ecs_container_instance_is_matched_by_its_ec2_instance_id() {
        let inv = Inventory {
            ecs_instances: vec![EcsInstance {
                cluster: "batch".into(),
                ec2_instance_id: "i-0abc".into(),
                instance_type: "g6.xlarge".into(),
                gpus: 1,
            }],
            ..Default::default()
        };
        let mut n = node("batch");
        n.name = "i-0abc".into();
        let got = resolve_instance(&inv, &PriceBook::catalogue_only(), &n, 1, "NVIDIA L4").unwrap();
        assert_eq!((got.0.as_str(), got.2.as_str()), ("g6.xlarge", "ECS container instance i-0abc"));
    }

    #[test]
    fn two_candidate_types_leave_the_node_unresolved() {
        let inv =
            Inventory { node_groups: vec![group("prod", "a", &["g5.12xlarge", "g5.24xlarge"])], ..Default::default() };
        assert_eq!(resolve_instance(&inv, &PriceBook::catalogue_only(), &node("prod"), 4, "NVIDIA A10G"), None);
    }
}
