//! The sending side of workload references (`Ingest.Report`): on a stream whose collector takes them, each
//! identity is declared once and later processes and allocations name it by number.
//!
//! One [`WorkloadRefs`] per stream: a new stream starts with none declared. Encoding happens as a batch is
//! handed to the stream, never before, so a batch kept for resending holds its identities inline and is
//! encoded afresh for whichever stream carries it.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use crate::v1::{DeclaredWorkload, UsageBatch, WorkloadIdentity};

/// The response header a collector that takes workload references answers a stream with.
pub const WORKLOAD_REFS_HEADER: &str = "gpucost-workload-refs";

/// The largest reference: an id is 1 ..= this. A collector takes every id in that range; what it keeps per
/// stream is bounded by bytes ([`held_bytes`]), not by ids.
pub const MAX_WORKLOAD_REFS: u32 = 65_536;

/// What the identities declared on one stream may cost together ([`held_bytes`]) before the least recently
/// used is replaced (a quarter of what a collector keeps per stream, so that one more identity never crosses
/// it).
pub const MAX_DECLARED_BYTES: usize = 2 << 20;

/// What holding one identity costs besides its text and map entries, bytes: its fields and its table entry.
const IDENTITY_OVERHEAD: usize = 512;
/// What one label, namespace label or environment entry costs besides its text, bytes.
const ENTRY_OVERHEAD: usize = 64;

/// Identities declared on one stream, least recently used first out once `capacity` are (or once they hold
/// [`MAX_DECLARED_BYTES`]).
pub struct WorkloadRefs {
    capacity: u32,
    /// What the declared identities cost together ([`held_bytes`]), bytes.
    bytes: usize,
    /// Slot `i` holds reference `i + 1`.
    slots: Vec<Slot>,
    by_hash: HashMap<u64, Vec<u32>>,
    /// Counts batches; a slot used by the batch being encoded is never reused for it.
    batch: u64,
}

struct Slot {
    identity: WorkloadIdentity,
    hash: u64,
    bytes: usize,
    used_in_batch: u64,
}

impl WorkloadRefs {
    /// At most `capacity` identities declared at once (1 ..= [`MAX_WORKLOAD_REFS`]).
    pub fn new(capacity: u32) -> Self {
        Self {
            capacity: capacity.clamp(1, MAX_WORKLOAD_REFS),
            bytes: 0,
            slots: Vec::new(),
            by_hash: HashMap::new(),
            batch: 0,
        }
    }

    /// Replaces each inline identity of `b` by a reference, declaring in `b` those not declared on the stream
    /// yet. Identities beyond what the table can hold in one batch stay inline.
    pub fn encode(&mut self, b: &mut UsageBatch) {
        self.batch += 1;
        let mut declare = Vec::new();
        for p in &mut b.processes {
            p.workload_ref = self.reference(&mut p.workload, &mut declare);
        }
        for a in &mut b.allocations {
            a.workload_ref = self.reference(&mut a.workload, &mut declare);
        }
        b.declare_workloads.extend(declare);
    }

    /// Takes the identity out of `inline` and returns its reference, declaring it in `declare` if new on the
    /// stream; 0 (and `inline` left as it was) when there is none or the table has no slot for it.
    fn reference(&mut self, inline: &mut Option<WorkloadIdentity>, declare: &mut Vec<DeclaredWorkload>) -> u32 {
        let Some(w) = inline.as_ref() else { return 0 };
        let hash = identity_hash(w);
        if let Some(ids) = self.by_hash.get(&hash)
            && let Some(&id) = ids.iter().find(|&&id| self.slots[id as usize - 1].identity == *w)
        {
            self.slots[id as usize - 1].used_in_batch = self.batch;
            *inline = None;
            return id;
        }
        let bytes = held_bytes(w);
        let id = if (self.slots.len() as u32) < self.capacity
            && (self.slots.is_empty() || self.bytes + bytes <= MAX_DECLARED_BYTES)
        {
            self.slots.push(Slot { identity: WorkloadIdentity::default(), hash, bytes: 0, used_in_batch: 0 });
            self.slots.len() as u32
        } else {
            // The least recently used slot that this batch does not use.
            let Some((i, _)) = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.used_in_batch != self.batch)
                .min_by_key(|(_, s)| s.used_in_batch)
            else {
                return 0;
            };
            let old = self.slots[i].hash;
            if let Some(ids) = self.by_hash.get_mut(&old) {
                ids.retain(|&id| id as usize != i + 1);
                if ids.is_empty() {
                    self.by_hash.remove(&old);
                }
            }
            i as u32 + 1
        };
        let Some(w) = inline.take() else { return 0 };
        declare.push(DeclaredWorkload { id, workload: Some(w.clone()) });
        self.bytes = self.bytes - self.slots[id as usize - 1].bytes + bytes;
        self.slots[id as usize - 1] = Slot { identity: w, hash, bytes, used_in_batch: self.batch };
        self.by_hash.entry(hash).or_default().push(id);
        id
    }

    /// Identities declared on the stream now.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// An identity's text fields.
fn texts(w: &WorkloadIdentity) -> [&String; 15] {
    [
        &w.namespace,
        &w.pod,
        &w.pod_uid,
        &w.container,
        &w.controller_kind,
        &w.controller_name,
        &w.ecs_task_arn,
        &w.ecs_task_family,
        &w.ecs_cluster,
        &w.slurm_job_id,
        &w.slurm_account,
        &w.user,
        &w.systemd_unit,
        &w.container_id,
        &w.container_runtime,
    ]
}

/// What holding an identity costs, bytes: its text (strings, map keys and values) and an allowance for its
/// fields and each map entry, so that many tiny entries cost what they take in memory. What both ends count
/// against their bounds.
pub fn held_bytes(w: &WorkloadIdentity) -> usize {
    let maps = [&w.labels, &w.namespace_labels, &w.env];
    let entries: usize = maps.iter().map(|m| m.len()).sum();
    let text: usize = maps.iter().flat_map(|m| m.iter()).map(|(k, v)| k.len() + v.len()).sum();
    IDENTITY_OVERHEAD + ENTRY_OVERHEAD * entries + text + texts(w).iter().map(|t| t.len()).sum::<usize>()
}

/// A hash of `w` that does not depend on the order of its maps.
fn identity_hash(w: &WorkloadIdentity) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (w.kind, texts(w), w.uid).hash(&mut h);
    for m in [&w.labels, &w.namespace_labels, &w.env] {
        let mut entries: Vec<_> = m.iter().collect();
        entries.sort_unstable();
        entries.hash(&mut h);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{GpuAllocation, ProcessUsage};

    fn pod(name: &str) -> WorkloadIdentity {
        let mut w = WorkloadIdentity { kind: 1, namespace: "ml".into(), pod: name.into(), ..Default::default() };
        for i in 0..20 {
            w.labels.insert(format!("k{i}"), format!("v{i}"));
        }
        w
    }

    fn batch(pods: &[&str]) -> UsageBatch {
        UsageBatch {
            processes: pods
                .iter()
                .enumerate()
                .map(|(i, p)| ProcessUsage { pid: i as u32, workload: Some(pod(p)), ..Default::default() })
                .collect(),
            allocations: vec![GpuAllocation {
                gpu_uuid: "GPU-1".into(),
                workload: Some(pod(pods[0])),
                workload_ref: 0,
            }],
            ..Default::default()
        }
    }

    /// What the collector does: declarations first, then each reference looked up.
    fn decode(table: &mut HashMap<u32, WorkloadIdentity>, b: &UsageBatch) -> Vec<WorkloadIdentity> {
        for d in &b.declare_workloads {
            table.insert(d.id, d.workload.clone().unwrap());
        }
        let named = |w: &Option<WorkloadIdentity>, r: u32| match r {
            0 => w.clone().unwrap(),
            r => {
                assert!(w.is_none(), "a reference and an inline identity");
                table[&r].clone()
            }
        };
        let mut out: Vec<_> = b.processes.iter().map(|p| named(&p.workload, p.workload_ref)).collect();
        out.extend(b.allocations.iter().map(|a| named(&a.workload, a.workload_ref)));
        out
    }

    #[test]
    fn each_identity_is_declared_once_per_stream_and_named_after() {
        let mut refs = WorkloadRefs::new(16);
        let mut table = HashMap::new();
        let mut first = batch(&["a", "a", "b", "a"]);
        refs.encode(&mut first);
        assert_eq!(first.declare_workloads.len(), 2);
        assert_eq!(decode(&mut table, &first), decode(&mut HashMap::new(), &batch(&["a", "a", "b", "a"])));
        assert!(first.processes.iter().all(|p| p.workload.is_none() && p.workload_ref != 0));

        let mut second = batch(&["b", "c"]);
        refs.encode(&mut second);
        assert_eq!(second.declare_workloads.len(), 1, "only c is new");
        assert_eq!(second.declare_workloads[0].workload.as_ref().unwrap().pod, "c");
        let pods: Vec<String> = decode(&mut table, &second).into_iter().map(|w| w.pod).collect();
        assert_eq!(pods, ["b", "c", "b"]);
    }

    #[test]
    fn the_same_identity_with_its_maps_built_in_another_order_is_the_same_reference() {
        let mut refs = WorkloadRefs::new(16);
        let mut a = batch(&["x"]);
        refs.encode(&mut a);
        let mut rebuilt = pod("x");
        // A map filled in another order (and with its own hasher's seed) iterates in another order.
        let mut entries: Vec<_> = rebuilt.labels.drain().collect();
        entries.reverse();
        rebuilt.labels.extend(entries);
        let mut b = UsageBatch {
            processes: vec![ProcessUsage { workload: Some(rebuilt), ..Default::default() }],
            ..Default::default()
        };
        refs.encode(&mut b);
        assert!(b.declare_workloads.is_empty());
        assert_eq!(b.processes[0].workload_ref, a.processes[0].workload_ref);
    }

    #[test]
    fn a_full_table_reuses_the_least_recently_used_reference_and_declares_it_again() {
        let mut refs = WorkloadRefs::new(2);
        let mut table = HashMap::new();
        for pods in [&["a"][..], &["b"], &["a"], &["c"], &["b", "c"], &["a", "b", "c", "d"]] {
            let mut b = batch(pods);
            refs.encode(&mut b);
            let got: Vec<String> = decode(&mut table, &b).into_iter().map(|w| w.pod).collect();
            let mut want: Vec<String> = pods.iter().map(|p| p.to_string()).collect();
            want.push(pods[0].to_string());
            assert_eq!(got, want, "batch {pods:?}");
            assert!(refs.len() <= 2);
        }
        // The last batch declared a and b in place of b and c: they are named without declaring again.
        let mut b = batch(&["b", "a"]);
        refs.encode(&mut b);
        assert!(b.declare_workloads.is_empty());
    }

    #[test]
    fn a_batch_with_more_identities_than_the_table_keeps_the_rest_inline() {
        let mut refs = WorkloadRefs::new(2);
        let mut b = batch(&["a", "b", "c", "d"]);
        refs.encode(&mut b);
        assert_eq!(b.declare_workloads.len(), 2);
        let inline = b.processes.iter().filter(|p| p.workload.is_some()).count();
        assert_eq!(inline, 2);
        let got: Vec<String> = decode(&mut HashMap::new(), &b).into_iter().map(|w| w.pod).collect();
        assert_eq!(got, ["a", "b", "c", "d", "a"]);
    }

    #[test]
    fn large_identities_are_replaced_before_their_text_passes_the_bound() {
        let mut refs = WorkloadRefs::new(1_024);
        let big = |name: &str| {
            let mut w = pod(name);
            w.pod_uid = "u".repeat(MAX_DECLARED_BYTES / 3);
            w
        };
        for (k, name) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
            let mut b = UsageBatch {
                processes: vec![ProcessUsage { workload: Some(big(name)), ..Default::default() }],
                ..Default::default()
            };
            refs.encode(&mut b);
            assert_eq!(b.declare_workloads.len(), 1, "batch {k}");
            assert!(refs.bytes <= MAX_DECLARED_BYTES, "batch {k}: {} bytes declared", refs.bytes);
        }
        assert!(refs.len() <= 3, "{} identities of a third of the bound each", refs.len());
    }
}
