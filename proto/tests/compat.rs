//! The evidence fields (`ProcessUsage.peak_memory_bytes`, `busy_sample_count`) and `NodeInfo.instance_id`
//! keep the wire compatible both ways: an older collector, whose messages end at the fields it knew (copied
//! here as they were before them), reads a new agent's batch and skips them; a new collector reads an older
//! agent's batch with them absent, which it takes as unknown, not as 0.

use gpucost_proto::v1 as pb;
use prost::Message;

/// `ProcessUsage` before the evidence fields (numbers 1..=9).
#[derive(Clone, PartialEq, prost::Message)]
struct OldProcessUsage {
    #[prost(uint32, tag = "1")]
    pid: u32,
    #[prost(string, tag = "2")]
    gpu_uuid: String,
    #[prost(double, tag = "3")]
    sm_util_percent: f64,
    #[prost(double, tag = "4")]
    memory_util_percent: f64,
    #[prost(uint64, tag = "5")]
    used_memory_bytes: u64,
    #[prost(uint32, tag = "6")]
    sample_count: u32,
    #[prost(message, optional, tag = "7")]
    workload: Option<pb::WorkloadIdentity>,
    #[prost(string, tag = "8")]
    process_name: String,
    #[prost(uint32, tag = "9")]
    workload_ref: u32,
}

/// `NodeInfo` before `instance_id` (numbers 1..=8).
#[derive(Clone, PartialEq, prost::Message)]
struct OldNodeInfo {
    #[prost(string, tag = "1")]
    cluster: String,
    #[prost(string, tag = "2")]
    node_name: String,
    #[prost(string, tag = "3")]
    instance_type: String,
    #[prost(int32, tag = "4")]
    capacity_type: i32,
    #[prost(string, tag = "5")]
    region: String,
    #[prost(string, tag = "6")]
    zone: String,
    #[prost(message, repeated, tag = "7")]
    devices: Vec<pb::GpuDevice>,
    #[prost(map = "string, string", tag = "8")]
    labels: std::collections::HashMap<String, String>,
}

/// `UsageBatch` as an older collector knows it, with the older node and processes.
#[derive(Clone, PartialEq, prost::Message)]
struct OldUsageBatch {
    #[prost(string, tag = "1")]
    agent_id: String,
    #[prost(uint64, tag = "3")]
    seq: u64,
    #[prost(message, optional, tag = "4")]
    node: Option<OldNodeInfo>,
    #[prost(message, repeated, tag = "8")]
    processes: Vec<OldProcessUsage>,
}

fn new_process() -> pb::ProcessUsage {
    pb::ProcessUsage {
        pid: 42,
        gpu_uuid: "GPU-a".into(),
        sm_util_percent: 12.5,
        used_memory_bytes: 6 << 30,
        sample_count: 15,
        process_name: "python3".into(),
        peak_memory_bytes: Some(9 << 30),
        busy_sample_count: Some(4),
        ..Default::default()
    }
}

#[test]
fn an_older_collector_reads_a_new_agents_batch_and_skips_the_new_fields() {
    let new = pb::UsageBatch {
        agent_id: "node-1".into(),
        seq: 3,
        node: Some(pb::NodeInfo {
            cluster: "prod".into(),
            node_name: "node-1".into(),
            instance_type: "p4d.24xlarge".into(),
            instance_id: "i-0abcdef1234567890".into(),
            ..Default::default()
        }),
        processes: vec![new_process()],
        ..Default::default()
    };
    let old = OldUsageBatch::decode(new.encode_to_vec().as_slice()).expect("an older collector decodes it");
    let node = old.node.expect("node");
    assert_eq!((node.cluster.as_str(), node.instance_type.as_str()), ("prod", "p4d.24xlarge"));
    let p = &old.processes[0];
    assert_eq!((p.pid, p.used_memory_bytes, p.sample_count, p.sm_util_percent), (42, 6 << 30, 15, 12.5));
    assert_eq!(p.process_name, "python3");
    // What the older collector keeps is exactly the batch without the new fields.
    let mut stripped = new.clone();
    stripped.node.as_mut().unwrap().instance_id.clear();
    (stripped.processes[0].peak_memory_bytes, stripped.processes[0].busy_sample_count) = (None, None);
    assert_eq!(
        OldUsageBatch::decode(new.encode_to_vec().as_slice()).unwrap().encode_to_vec(),
        stripped.encode_to_vec()
    );
}

#[test]
fn a_new_collector_reads_an_older_agents_batch_with_the_evidence_absent_not_zero() {
    let old = OldProcessUsage {
        pid: 7,
        gpu_uuid: "GPU-a".into(),
        sm_util_percent: 50.0,
        used_memory_bytes: 1 << 30,
        sample_count: 15,
        ..Default::default()
    };
    let p = pb::ProcessUsage::decode(old.encode_to_vec().as_slice()).expect("a new collector decodes it");
    assert_eq!((p.pid, p.used_memory_bytes, p.sample_count), (7, 1 << 30, 15));
    assert_eq!((p.peak_memory_bytes, p.busy_sample_count), (None, None), "absent: unknown");
    let node = pb::NodeInfo::decode(
        OldNodeInfo { cluster: "prod".into(), node_name: "n".into(), ..Default::default() }.encode_to_vec().as_slice(),
    )
    .unwrap();
    assert_eq!(node.instance_id, "", "empty: unknown");
    // A new agent's real zeros travel as zeros: present, and told apart from absent.
    let zero = pb::ProcessUsage { peak_memory_bytes: Some(0), busy_sample_count: Some(0), ..Default::default() };
    let back = pb::ProcessUsage::decode(zero.encode_to_vec().as_slice()).unwrap();
    assert_eq!((back.peak_memory_bytes, back.busy_sample_count), (Some(0), Some(0)));
    assert_ne!(zero.encode_to_vec(), pb::ProcessUsage::default().encode_to_vec());
}
