//! The receiving side of workload references (`Ingest.Report`, `gpucost_proto::refs`): the identities an
//! agent declared on its stream, checked once when declared, and the workload each names for the stream's
//! node, built once and shared by every process and batch that refers to it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{Identity, Node, Workload};

/// The most references one stream may hold (ids 1 ..= this): bounds what an agent can make the collector
/// keep for it.
pub const MAX_REFS: u32 = 4_096;

/// The most bytes of text the identities declared on one stream may hold together (a pod's identity is a
/// few KiB): what an agent can make the collector keep for it stays bounded, however it declares.
pub const MAX_DECLARED_BYTES: usize = 8 << 20;

/// One stream's declared identities. A new stream starts empty.
#[derive(Default)]
pub struct StreamWorkloads {
    declared: HashMap<u32, Declared>,
    /// Text held by the declared identities, bytes.
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
    /// Binds `id` (1 ..= [`MAX_REFS`], checked by the caller) to a checked identity, replacing what it named;
    /// refused (nothing changed) when the stream's identities would then hold more than
    /// [`MAX_DECLARED_BYTES`], with the bytes they would hold.
    pub fn declare(&mut self, id: u32, identity: Identity) -> Result<(), usize> {
        let bytes = text_bytes(&identity);
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

    /// Text held by the declared identities, bytes.
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

/// The text an identity holds, bytes (its strings and map entries).
fn text_bytes(i: &Identity) -> usize {
    let maps = [&i.labels, &i.namespace_labels, &i.env]
        .iter()
        .flat_map(|m| m.iter())
        .map(|(k, v)| k.len() + v.len())
        .sum::<usize>();
    let texts = [
        &i.namespace,
        &i.pod,
        &i.pod_uid,
        &i.container,
        &i.controller_kind,
        &i.controller_name,
        &i.ecs_task_arn,
        &i.ecs_task_family,
        &i.ecs_cluster,
        &i.slurm_job_id,
        &i.slurm_account,
        &i.user,
        &i.systemd_unit,
        &i.container_id,
        &i.container_runtime,
    ];
    maps + texts.iter().map(|t| t.len()).sum::<usize>()
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
        t.declare(1, Identity { kind: WorkloadKind::HostProcess, user: "alice".into(), ..Default::default() }).unwrap();
        let a = t.workload(1, &node("n1")).unwrap();
        let b = t.workload(1, &node("n1")).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "built once");
        assert_eq!(a.key, "user:prod/n1/alice");
        assert_eq!(t.workload(1, &node("n2")).unwrap().key, "user:prod/n2/alice", "keyed again for another node");
        t.declare(1, Identity { kind: WorkloadKind::HostProcess, user: "bob".into(), ..Default::default() }).unwrap();
        assert_eq!(t.workload(1, &node("n2")).unwrap().key, "user:prod/n2/bob", "declared again");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn what_a_stream_may_declare_is_bounded_in_bytes_and_redeclaring_gives_back_the_old() {
        let mut t = StreamWorkloads::default();
        let big = |n: usize| Identity { pod: "x".repeat(n), ..Default::default() };
        t.declare(1, big(MAX_DECLARED_BYTES / 2)).unwrap();
        t.declare(2, big(MAX_DECLARED_BYTES / 2)).unwrap();
        assert_eq!(t.declare(3, big(10)), Err(MAX_DECLARED_BYTES + 10), "over the bound: refused");
        assert!(t.workload(3, &node("n1")).is_none(), "nothing of a refused declaration is kept");
        t.declare(2, big(10)).unwrap();
        assert_eq!(t.bytes(), MAX_DECLARED_BYTES / 2 + 10, "id 2's old identity no longer counts");
        t.declare(3, big(10)).unwrap();
    }
}
