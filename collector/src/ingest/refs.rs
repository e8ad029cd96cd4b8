//! The receiving side of workload references (`Ingest.Report`, `gpucost_proto::refs`): the identities an
//! agent declared on its stream, checked once when declared, and the workload each names for the stream's
//! node, built once and shared by every process and batch that refers to it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{Identity, Node, Workload};

/// The most references one stream may hold (ids 1 ..= this): bounds what an agent can make the collector
/// keep for it.
pub const MAX_REFS: u32 = 4_096;

/// One stream's declared identities. A new stream starts empty.
#[derive(Default)]
pub struct StreamWorkloads {
    declared: HashMap<u32, Declared>,
    /// The node the cached workloads were keyed for (a workload's key names its cluster and node).
    node: Option<(String, String)>,
}

struct Declared {
    identity: Identity,
    workload: Option<Arc<Workload>>,
}

impl StreamWorkloads {
    /// Binds `id` (1 ..= [`MAX_REFS`], checked by the caller) to a checked identity, replacing what it named.
    pub fn declare(&mut self, id: u32, identity: Identity) {
        self.declared.insert(id, Declared { identity, workload: None });
    }

    /// The workload `id` names on `node`; `None` when nothing was declared under it.
    pub fn workload(&mut self, id: u32, node: &Node) -> Option<Arc<Workload>> {
        if self.node.as_ref().is_none_or(|(c, n)| *c != node.cluster || *n != node.name) {
            // Another node on the same stream (an agent that renamed itself): key every workload again.
            self.declared.values_mut().for_each(|d| d.workload = None);
            self.node = Some((node.cluster.clone(), node.name.clone()));
        }
        let d = self.declared.get_mut(&id)?;
        Some(d.workload.get_or_insert_with(|| Arc::new(Workload::new(node, d.identity.clone()))).clone())
    }

    pub fn len(&self) -> usize {
        self.declared.len()
    }

    pub fn is_empty(&self) -> bool {
        self.declared.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::WorkloadKind;

    fn node(name: &str) -> Node {
        Node {
            cluster: "prod".into(),
            name: name.into(),
            instance_type: String::new(),
            capacity_type: String::new(),
            region: String::new(),
            zone: String::new(),
            labels: Default::default(),
        }
    }

    #[test]
    fn a_declared_identity_is_one_shared_workload_keyed_for_the_streams_node() {
        let mut t = StreamWorkloads::default();
        assert!(t.workload(1, &node("n1")).is_none());
        t.declare(1, Identity { kind: WorkloadKind::HostProcess, user: "alice".into(), ..Default::default() });
        let a = t.workload(1, &node("n1")).unwrap();
        let b = t.workload(1, &node("n1")).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "built once");
        assert_eq!(a.key, "user:prod/n1/alice");
        assert_eq!(t.workload(1, &node("n2")).unwrap().key, "user:prod/n2/alice", "keyed again for another node");
        t.declare(1, Identity { kind: WorkloadKind::HostProcess, user: "bob".into(), ..Default::default() });
        assert_eq!(t.workload(1, &node("n2")).unwrap().key, "user:prod/n2/bob", "declared again");
        assert_eq!(t.len(), 1);
    }
}
