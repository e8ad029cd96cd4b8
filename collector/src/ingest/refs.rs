//! The receiving side of workload references (`Ingest.Report`, `gpucost_proto::refs`): the identities an
//! agent declared on its stream, checked once when declared, and the workload each names for the stream's
//! node, built once and shared by every process and batch that refers to it.

use std::collections::HashMap;
use std::sync::Arc;

use gpucost_types::batch::{Identity, Node, Workload};

/// The largest reference (ids 1 ..= this), as the contract says: what a stream may make the collector keep
/// is bounded by bytes ([`MAX_DECLARED_BYTES`]), whatever ids it uses.
pub const MAX_REFS: u32 = gpucost_proto::refs::MAX_WORKLOAD_REFS;

/// The most the identities declared on one stream may cost together (`gpucost_proto::refs::held_bytes`: their
/// text and an allowance per identity and per map entry): at most 16 384 identities, however small, and a few
/// thousand pods' worth of labels; what an agent can make the collector keep for it stays bounded, however it
/// declares.
pub const MAX_DECLARED_BYTES: usize = 8 << 20;

/// One stream's declared identities. A new stream starts empty.
#[derive(Default)]
pub struct StreamWorkloads {
    declared: HashMap<u32, Declared>,
    /// What the declared identities cost together, bytes.
    bytes: usize,
    /// The node the cached workloads were keyed for (a workload's key names its cluster and node).
    node: Option<(String, String)>,
}

struct Declared {
    identity: Identity,
    bytes: usize,
    workload: Option<Arc<Workload>>,
}

impl StreamWorkloads {
    /// Binds `id` (1 ..= [`MAX_REFS`], checked by the caller) to a checked identity costing `bytes`
    /// (`gpucost_proto::refs::held_bytes`), replacing what it named; refused (nothing changed) when the
    /// stream's identities would then hold more than [`MAX_DECLARED_BYTES`], with the bytes they would hold.
    pub fn declare(&mut self, id: u32, identity: Identity, bytes: usize) -> Result<(), usize> {
        let replaced = self.declared.get(&id).map_or(0, |d| d.bytes);
        let total = self.bytes - replaced + bytes;
        if total > MAX_DECLARED_BYTES {
            return Err(total);
        }
        self.bytes = total;
        self.declared.insert(id, Declared { identity, bytes, workload: None });
        Ok(())
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

    /// What the declared identities cost together, bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
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
    use gpucost_types::batch::WorkloadKind;

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
        t.declare(1, Identity { kind: WorkloadKind::HostProcess, user: "alice".into(), ..Default::default() }, 5)
            .unwrap();
        let a = t.workload(1, &node("n1")).unwrap();
        let b = t.workload(1, &node("n1")).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "built once");
        assert_eq!(a.key, "user:prod/n1/alice");
        assert_eq!(t.workload(1, &node("n2")).unwrap().key, "user:prod/n2/alice", "keyed again for another node");
        t.declare(1, Identity { kind: WorkloadKind::HostProcess, user: "bob".into(), ..Default::default() }, 3)
            .unwrap();
        assert_eq!(t.workload(1, &node("n2")).unwrap().key, "user:prod/n2/bob", "declared again");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn what_a_stream_may_declare_is_bounded_in_bytes_and_redeclaring_gives_back_the_old() {
        let mut t = StreamWorkloads::default();
        let declare = |t: &mut StreamWorkloads, id: u32, n: usize| {
            t.declare(id, Identity { pod: "x".repeat(n), ..Default::default() }, n)
        };
        declare(&mut t, 1, MAX_DECLARED_BYTES / 2).unwrap();
        declare(&mut t, 2, MAX_DECLARED_BYTES / 2).unwrap();
        assert_eq!(declare(&mut t, 3, 10), Err(MAX_DECLARED_BYTES + 10), "over the bound: refused");
        assert!(t.workload(3, &node("n1")).is_none(), "nothing of a refused declaration is kept");
        declare(&mut t, 2, 10).unwrap();
        assert_eq!(t.bytes(), MAX_DECLARED_BYTES / 2 + 10, "id 2's old identity no longer counts");
        declare(&mut t, 3, 10).unwrap();
    }
}
