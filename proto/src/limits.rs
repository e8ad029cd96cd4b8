//! The bounds of one `UsageBatch`, part of the wire contract: what a collector stores at most, what an agent
//! sends at most, and from them the largest message a collector reads ([`MAX_BATCH_BYTES`]).
//!
//! Memory is bounded by design, not by hope: a collector reads no message larger than [`MAX_BATCH_BYTES`],
//! and [`screen`] counts what a message holds (processes, allocations, declarations, devices, label entries,
//! identity bytes) on the wire, before anything is decoded: a small message of a million empty processes
//! would otherwise cost gigabytes once decoded (a minimal process is 2 bytes on the wire and hundreds in
//! memory). Everything [`screen`] refuses would be refused by validation anyway; it only refuses it first.

use prost::bytes::Buf;

/// Devices (GPUs and MIG devices) of one node; also the most device readings (one per device).
pub const MAX_DEVICES: usize = 512;
/// Processes in one batch.
pub const MAX_PROCESSES: usize = 16_384;
/// GPU allocations in one batch.
pub const MAX_ALLOCATIONS: usize = 4_096;
/// Workload declarations in one batch: at most one per process and allocation.
pub const MAX_DECLARATIONS: usize = MAX_PROCESSES + MAX_ALLOCATIONS;
/// A text field (names, label keys and values), bytes.
pub const MAX_TEXT_LEN: usize = 1_024;
/// A GPU or MIG UUID and a GPU's product name, bytes: NVML's own buffers for them
/// (`NVML_DEVICE_UUID_V2_BUFFER_SIZE`, `NVML_DEVICE_NAME_V2_BUFFER_SIZE`) hold 96 with the terminating NUL.
pub const MAX_UUID_LEN: usize = 96;
/// A process name, bytes (`/proc/<pid>/comm` holds at most 15).
pub const MAX_PROCESS_NAME_LEN: usize = 64;
/// Entries of one label map (node labels, a workload's labels, namespace labels or environment).
pub const MAX_LABELS: usize = 128;
/// Label map entries across one batch (node and every identity in it): a node's pods carry a few thousand.
pub const MAX_LABEL_ENTRIES: usize = 65_536;
/// Workload identities one batch carries, inline and declared, encoded bytes (a pod's identity is a few KiB;
/// an agent that declares identities by reference keeps at most 2 MiB of them per stream).
pub const MAX_IDENTITY_BYTES: usize = 4 << 20;

/// Bytes a length-delimited field of `len` bytes takes on the wire (one-byte tag).
const fn field(len: usize) -> usize {
    let mut varint = 1;
    let mut v = len >> 7;
    while v > 0 {
        varint += 1;
        v >>= 7;
    }
    1 + varint + len
}
/// A varint field at its longest (tag and 10 bytes).
const VARINT: usize = 11;
/// A `double` field.
const DOUBLE: usize = 9;
const fn entries(n: usize) -> usize {
    n * field(field(MAX_TEXT_LEN) * 2)
}

/// The largest valid batch, encoded: every count and length at its bound, identities at theirs.
pub const LARGEST_BATCH_BYTES: usize = {
    let text = field(MAX_TEXT_LEN);
    let uuid = field(MAX_UUID_LEN);
    let device = field(uuid * 3 + field(64) + VARINT * 2);
    // Five texts and the instance id (a text too).
    let node = field(text * 6 + VARINT + MAX_DEVICES * device + entries(MAX_LABELS));
    let gpu = field(uuid + DOUBLE * 2 + VARINT * 4);
    // The identity's own bytes are in MAX_IDENTITY_BYTES; its tag and length here.
    // pid, sample count, used and peak memory, busy samples, workload reference; two doubles.
    let process = field(VARINT * 6 + uuid + DOUBLE * 2 + field(MAX_PROCESS_NAME_LEN) + field(0) + 5);
    let allocation = field(uuid + field(0) + VARINT);
    let declaration = field(VARINT + field(0) + 5);
    text * 3
        + VARINT * 6
        + node
        + MAX_DEVICES * gpu
        + MAX_PROCESSES * process
        + MAX_ALLOCATIONS * allocation
        + MAX_DECLARATIONS * declaration
        + MAX_IDENTITY_BYTES
};

/// The largest message a collector reads: the largest valid batch and a quarter more for fields a newer agent
/// adds (which an older collector skips), rounded up to a MiB. Past it the message is refused unread.
pub const MAX_BATCH_BYTES: usize = (LARGEST_BATCH_BYTES + LARGEST_BATCH_BYTES / 4).div_ceil(1 << 20) << 20;
const _: () = assert!(MAX_BATCH_BYTES >= LARGEST_BATCH_BYTES + LARGEST_BATCH_BYTES / 4);

/// The response header (and, on a refusal for size, trailer) in which a collector names the largest message
/// it reads, bytes. Without it an agent keeps below [`MAX_BATCH_BYTES`].
pub const MAX_BATCH_BYTES_HEADER: &str = "gpucost-max-batch-bytes";

/// What [`screen`] found wrong, and which batch it was (as far as its wire form names it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub agent_id: String,
    pub boot_id: String,
    pub seq: u64,
    /// Where in the batch, e.g. `processes`.
    pub field: String,
    pub problem: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "batch agent={} boot={} seq={}: {}: {} (refused before decoding)",
            self.agent_id.escape_debug(),
            self.boot_id.escape_debug(),
            self.seq,
            self.field,
            self.problem
        )
    }
}

/// One field of a message on the wire.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Reads the fields of one message; `None` at its end or where it is malformed (prost then says why).
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = (u64, Value<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let key = prost::encoding::decode_varint(&mut self.0).ok()?;
        let value = match key & 7 {
            0 => Value::Varint(prost::encoding::decode_varint(&mut self.0).ok()?),
            1 if self.0.len() >= 8 => {
                self.0.advance(8);
                Value::Fixed
            }
            5 if self.0.len() >= 4 => {
                self.0.advance(4);
                Value::Fixed
            }
            2 => {
                let len = usize::try_from(prost::encoding::decode_varint(&mut self.0).ok()?).ok()?;
                if len > self.0.len() {
                    self.0 = &[];
                    return None;
                }
                let (bytes, rest) = self.0.split_at(len);
                self.0 = rest;
                Value::Bytes(bytes)
            }
            _ => {
                self.0 = &[];
                return None;
            }
        };
        Some((key >> 3, value))
    }
}

/// Counts along the way.
#[derive(Default)]
struct Tally {
    label_entries: usize,
    identity_bytes: usize,
}

/// Entries of each label map of a `WorkloadIdentity` (labels, namespace_labels, env), where `w` may be
/// one of several occurrences that prost would merge into one.
fn identity(w: &[u8], maps: &mut [usize; 3]) {
    for (tag, _) in Fields(w) {
        match tag {
            8 => maps[0] += 1,
            9 => maps[1] += 1,
            20 => maps[2] += 1,
            _ => {}
        }
    }
}

/// Checks the counts of the batch whose wire form is `wire` against the bounds above, without decoding it.
pub fn screen(wire: &[u8]) -> Result<(), Refused> {
    let (mut agent_id, mut boot_id, mut seq) = (String::new(), String::new(), 0);
    let (mut devices, mut gpus, mut processes, mut allocations, mut declarations) = (0, 0, 0, 0, 0);
    let mut node_labels = 0;
    let mut tally = Tally::default();
    let mut worst: Option<(String, String)> = None;
    let mut refuse = |field: String, problem: String| {
        worst.get_or_insert((field, problem));
    };
    // An element (process, allocation, declaration) with its identity at `tag`.
    let holder = |kind: &str, i: usize, element: &[u8], tag: u64, tally: &mut Tally| -> Option<(String, String)> {
        let mut maps = [0; 3];
        for (t, v) in Fields(element) {
            if let (true, Value::Bytes(w)) = (t == tag, v) {
                tally.identity_bytes += w.len();
                identity(w, &mut maps);
            }
        }
        tally.label_entries += maps.iter().sum::<usize>();
        let names = ["labels", "namespace_labels", "env"];
        maps.iter()
            .zip(names)
            .find(|(n, _)| **n > MAX_LABELS)
            .map(|(n, name)| (format!("{kind}[{i}].workload.{name}"), format!("has {n} entries; at most {MAX_LABELS}")))
    };
    for (tag, value) in Fields(wire) {
        match (tag, value) {
            (1, Value::Bytes(b)) => agent_id = String::from_utf8_lossy(&b[..b.len().min(MAX_TEXT_LEN)]).into_owned(),
            (2, Value::Bytes(b)) => boot_id = String::from_utf8_lossy(&b[..b.len().min(MAX_TEXT_LEN)]).into_owned(),
            (3, Value::Varint(v)) => seq = v,
            (4, Value::Bytes(node)) => {
                for (t, _) in Fields(node) {
                    match t {
                        7 => devices += 1,
                        8 => node_labels += 1,
                        _ => {}
                    }
                }
            }
            (7, _) => gpus += 1,
            (8, Value::Bytes(p)) => {
                if let Some((f, why)) = holder("processes", processes, p, 7, &mut tally) {
                    refuse(f, why);
                }
                processes += 1;
            }
            (9, Value::Bytes(a)) => {
                if let Some((f, why)) = holder("allocations", allocations, a, 2, &mut tally) {
                    refuse(f, why);
                }
                allocations += 1;
            }
            (13, Value::Bytes(d)) => {
                if let Some((f, why)) = holder("declare_workloads", declarations, d, 2, &mut tally) {
                    refuse(f, why);
                }
                declarations += 1;
            }
            _ => {}
        }
    }
    tally.label_entries += node_labels;
    let counts = [
        ("node.devices", "devices", devices, MAX_DEVICES),
        ("node.labels", "entries", node_labels, MAX_LABELS),
        ("gpus", "readings", gpus, MAX_DEVICES),
        ("processes", "processes", processes, MAX_PROCESSES),
        ("allocations", "allocations", allocations, MAX_ALLOCATIONS),
        ("declare_workloads", "declarations", declarations, MAX_DECLARATIONS),
        ("label entries", "entries across the batch", tally.label_entries, MAX_LABEL_ENTRIES),
        ("workload identities", "bytes", tally.identity_bytes, MAX_IDENTITY_BYTES),
    ];
    let over = counts.iter().find(|(_, _, n, max)| n > max);
    let found = over.map(|(f, what, n, max)| (f.to_string(), format!("{n} {what}; at most {max}"))).or(worst);
    match found {
        None => Ok(()),
        Some((field, problem)) => Err(Refused { agent_id, boot_id, seq, field, problem }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{DeclaredWorkload, GpuDevice, NodeInfo, ProcessUsage, UsageBatch, WorkloadIdentity};
    use prost::Message;

    fn batch() -> UsageBatch {
        UsageBatch {
            agent_id: "n1".into(),
            boot_id: "b".into(),
            seq: 7,
            node: Some(NodeInfo {
                devices: vec![GpuDevice { uuid: "GPU-1".into(), ..Default::default() }],
                ..Default::default()
            }),
            processes: vec![ProcessUsage {
                workload: Some(WorkloadIdentity { pod: "p".into(), ..Default::default() }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_batch_within_the_bounds_passes() {
        assert_eq!(screen(&batch().encode_to_vec()), Ok(()));
    }

    #[test]
    fn a_million_empty_processes_are_refused_unread_naming_the_batch() {
        let mut wire = batch().encode_to_vec();
        // Field 8 (processes), an empty message: two bytes each.
        for _ in 0..1_000_000 {
            wire.extend_from_slice(&[0x42, 0x00]);
        }
        let e = screen(&wire).unwrap_err();
        assert_eq!((e.agent_id.as_str(), e.seq, e.field.as_str()), ("n1", 7, "processes"), "{e}");
        assert!(e.problem.contains("1000001 processes; at most 16384"), "{e}");
    }

    #[test]
    fn label_entries_are_counted_across_repeated_occurrences_of_an_identity() {
        let mut b = batch();
        let half = |k: &str| WorkloadIdentity {
            labels: (0..100).map(|i| (format!("{k}{i}"), String::new())).collect(),
            ..Default::default()
        };
        let mut wire = b.encode_to_vec();
        // One process with its identity twice: prost merges the two into one of 200 labels.
        let mut p = ProcessUsage { workload: Some(half("a")), ..Default::default() }.encode_to_vec();
        p.extend(ProcessUsage { workload: Some(half("b")), ..Default::default() }.encode_to_vec());
        assert_eq!(ProcessUsage::decode(&p[..]).unwrap().workload.unwrap().labels.len(), 200);
        prost::encoding::bytes::encode(8, &p, &mut wire);
        let e = screen(&wire).unwrap_err();
        assert_eq!(e.field, "processes[1].workload.labels", "{e}");
        b.declare_workloads =
            (0..MAX_DECLARATIONS as u32 + 1).map(|id| DeclaredWorkload { id, workload: None }).collect();
        assert_eq!(screen(&b.encode_to_vec()).unwrap_err().field, "declare_workloads");
    }

    #[test]
    fn the_message_limit_is_what_the_docs_say_and_fields_are_sized_as_on_the_wire() {
        assert_eq!(MAX_BATCH_BYTES, 12 << 20, "docs/security.md and ingest.proto say 12 MiB");
        assert_eq!(field(1_024), 1_027);
        assert_eq!(field(100), 102);
    }
}
