//! Keeps what the agent sends within the contract's bounds (`gpucost_proto::limits`), so that it never builds a
//! batch the collector must refuse, and is never stuck behind one: a refused batch would be resent on every
//! reconnect, or dropped whole with all its GPU time.
//!
//! Two steps, both deterministic (a resend is trimmed as the first send was):
//! - [`sanitize`], before identities are declared: label entries the collector would refuse (a key or value
//!   too long, control characters, past 128 in a map) are left out, and a process name is cut to its bound
//!   with control characters replaced; a pod's other labels and the batch go through;
//! - [`trim`], on the batch as it goes on the wire: past the collector's message limit (or the contract's
//!   counts), the processes using the least SM are left out until it fits. Splitting is no way out: two
//!   batches over the same interval of the same GPUs would be refused as billing it twice. What is left out
//!   is only the per-process detail (a GPU's holders also come from its allocations, its time from the
//!   device readings), logged as an ERROR and counted (`gpucost_agent_batches_trimmed_total`,
//!   `gpucost_agent_processes_trimmed_total`).

use std::collections::HashMap;

use gpucost_proto::limits::{
    MAX_ALLOCATIONS, MAX_IDENTITY_BYTES, MAX_LABEL_ENTRIES, MAX_LABELS, MAX_PROCESS_NAME_LEN, MAX_PROCESSES,
    MAX_TEXT_LEN,
};
use gpucost_proto::v1::{UsageBatch, WorkloadIdentity};
use prost::Message;

/// What [`trim`] left out of a batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Trimmed {
    pub processes: usize,
    pub allocations: usize,
}

/// Leaves out of `b` the label entries and fixes the process names the collector would refuse; how many
/// entries were left out.
pub fn sanitize(b: &mut UsageBatch) -> usize {
    let mut dropped = 0;
    if let Some(n) = &mut b.node {
        dropped += labels(&mut n.labels);
    }
    let identities = b
        .processes
        .iter_mut()
        .filter_map(|p| p.workload.as_mut())
        .chain(b.allocations.iter_mut().filter_map(|a| a.workload.as_mut()));
    for w in identities {
        dropped += identity(w);
    }
    for p in &mut b.processes {
        if p.process_name.len() > MAX_PROCESS_NAME_LEN || p.process_name.chars().any(char::is_control) {
            let cut: String = p.process_name.chars().map(|c| if c.is_control() { '?' } else { c }).collect();
            p.process_name = truncate(cut, MAX_PROCESS_NAME_LEN);
        }
    }
    dropped
}

fn identity(w: &mut WorkloadIdentity) -> usize {
    labels(&mut w.labels) + labels(&mut w.namespace_labels) + labels(&mut w.env)
}

/// Keeps the entries the collector takes: a key of 1 ..= 1 024 bytes, a value of at most 1 024, no control
/// characters, and of those the first 128 by key. How many were left out.
fn labels(m: &mut HashMap<String, String>) -> usize {
    let before = m.len();
    let fine = |t: &str| t.len() <= MAX_TEXT_LEN && !t.chars().any(char::is_control);
    m.retain(|k, v| !k.is_empty() && fine(k) && fine(v));
    if m.len() > MAX_LABELS {
        let mut keys: Vec<String> = m.keys().cloned().collect();
        keys.sort_unstable();
        for k in &keys[MAX_LABELS..] {
            m.remove(k);
        }
    }
    before - m.len()
}

fn truncate(mut s: String, max: usize) -> String {
    let mut at = max.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    s.truncate(at);
    s
}

/// Leaves out of `b` (as it goes on the wire) the processes using the least SM, then the last allocations,
/// until it is at most `max_bytes` long and within the contract's counts.
pub fn trim(b: &mut UsageBatch, max_bytes: usize) -> Trimmed {
    let mut out = Trimmed::default();
    if b.allocations.len() > MAX_ALLOCATIONS {
        out.allocations += b.allocations.len() - MAX_ALLOCATIONS;
        b.allocations.truncate(MAX_ALLOCATIONS);
    }
    let identity_bytes = |w: &Option<WorkloadIdentity>| w.as_ref().map_or(0, Message::encoded_len);
    let entries = |w: &Option<WorkloadIdentity>| {
        w.as_ref().map_or(0, |w| w.labels.len() + w.namespace_labels.len() + w.env.len())
    };
    // What the processes do not carry: declarations, allocations' identities, the node's labels.
    let others = b.declare_workloads.iter().map(|d| &d.workload).chain(b.allocations.iter().map(|a| &a.workload));
    let (others_bytes, others_entries) = others.fold((0, 0), |(n, e), w| (n + identity_bytes(w), e + entries(w)));
    let mut bytes = b.encoded_len();
    let mut idents = others_bytes + b.processes.iter().map(|p| identity_bytes(&p.workload)).sum::<usize>();
    let mut labels = others_entries
        + b.node.as_ref().map_or(0, |n| n.labels.len())
        + b.processes.iter().map(|p| entries(&p.workload)).sum::<usize>();
    let fits = |n: usize, bytes: usize, idents: usize, labels: usize| {
        n <= MAX_PROCESSES && bytes <= max_bytes && idents <= MAX_IDENTITY_BYTES && labels <= MAX_LABEL_ENTRIES
    };
    if fits(b.processes.len(), bytes, idents, labels) {
        return out;
    }
    // Most SM first; the least used go first. Stable, so equal ones keep their order.
    b.processes.sort_by(|x, y| y.sm_util_percent.total_cmp(&x.sm_util_percent));
    while !b.processes.is_empty() && !fits(b.processes.len(), bytes, idents, labels) {
        let p = b.processes.pop().expect("not empty");
        bytes -= prost::encoding::message::encoded_len(8, &p);
        idents -= identity_bytes(&p.workload);
        labels -= entries(&p.workload);
        out.processes += 1;
    }
    while !b.allocations.is_empty() && bytes > max_bytes {
        let a = b.allocations.pop().expect("not empty");
        bytes -= prost::encoding::message::encoded_len(9, &a);
        out.allocations += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpucost_proto::v1::{GpuAllocation, NodeInfo, ProcessUsage};

    fn pod(name: &str, labels: usize) -> WorkloadIdentity {
        let mut w = WorkloadIdentity { kind: 1, namespace: "ml".into(), pod: name.into(), ..Default::default() };
        for i in 0..labels {
            w.labels.insert(format!("k{i:03}"), "v".repeat(100));
        }
        w
    }

    fn batch(processes: usize) -> UsageBatch {
        UsageBatch {
            agent_id: "n1".into(),
            boot_id: "b".into(),
            seq: 1,
            node: Some(NodeInfo::default()),
            processes: (0..processes)
                .map(|i| ProcessUsage {
                    pid: i as u32,
                    gpu_uuid: "GPU-0".into(),
                    sm_util_percent: (i % 100) as f64,
                    workload: Some(pod(&format!("p{i}"), 20)),
                    ..Default::default()
                })
                .collect(),
            allocations: vec![GpuAllocation { gpu_uuid: "GPU-0".into(), workload: Some(pod("a", 1)), workload_ref: 0 }],
            ..Default::default()
        }
    }

    #[test]
    fn a_batch_within_the_bounds_is_left_as_it_is() {
        let mut b = batch(10);
        let before = b.clone();
        assert_eq!(trim(&mut b, 1 << 20), Trimmed::default());
        assert_eq!(b, before);
    }

    #[test]
    fn past_the_limit_the_least_used_processes_go_until_it_fits() {
        let mut b = batch(3_000);
        let limit = 1 << 20;
        assert!(b.encoded_len() > limit * 2, "{}", b.encoded_len());
        let t = trim(&mut b, limit);
        assert!(b.encoded_len() <= limit, "{}", b.encoded_len());
        assert_eq!(t.processes, 3_000 - b.processes.len());
        assert_eq!(t.allocations, 0);
        let least_kept = b.processes.iter().map(|p| p.sm_util_percent).fold(f64::MAX, f64::min);
        assert!(least_kept > 0.0, "the idle ones went first");
        assert!(gpucost_proto::limits::screen(&b.encode_to_vec()).is_ok());
    }

    #[test]
    fn more_processes_than_the_contract_allows_are_cut_to_its_count_even_when_small() {
        let mut b = UsageBatch {
            processes: (0..MAX_PROCESSES as u32 + 10).map(|pid| ProcessUsage { pid, ..Default::default() }).collect(),
            ..Default::default()
        };
        assert_eq!(trim(&mut b, usize::MAX).processes, 10);
        assert_eq!(b.processes.len(), MAX_PROCESSES);
    }

    #[test]
    fn label_entries_the_collector_would_refuse_are_left_out_and_process_names_fixed() {
        let mut b = batch(1);
        let w = b.processes[0].workload.as_mut().unwrap();
        w.labels.insert("note".into(), "x".repeat(MAX_TEXT_LEN + 1));
        w.labels.insert("bad\nkey".into(), "v".into());
        w.env.extend((0..200).map(|i| (format!("E{i:03}"), "1".into())));
        b.processes[0].process_name = format!("a\tb{}", "é".repeat(40));
        assert_eq!(sanitize(&mut b), 2 + 72);
        let w = b.processes[0].workload.as_ref().unwrap();
        assert_eq!((w.labels.len(), w.env.len()), (20, MAX_LABELS));
        assert!(w.env.contains_key("E000") && !w.env.contains_key("E199"), "the first 128 by key are kept");
        let name = &b.processes[0].process_name;
        assert!(name.starts_with("a?b") && name.len() <= MAX_PROCESS_NAME_LEN, "{name:?}");
    }
}
