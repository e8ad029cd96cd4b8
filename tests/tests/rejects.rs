//! A rogue or broken agent: malformed batches are rejected whole with a clear error, resends are
//! acknowledged without being counted again, and an interval is never billed twice.

use gpucost_e2e::Collector;
use gpucost_proto::v1 as pb;
use gpucost_proto::v1::ingest_client::IngestClient;

const NS: u64 = 1_000_000_000;
/// 2026-11-02T00:00:00Z
const T0: u64 = 1_793_577_600 * NS;

fn batch(boot: &str, seq: u64, start: u64) -> pb::UsageBatch {
    pb::UsageBatch {
        agent_id: "node-a".into(),
        boot_id: boot.into(),
        seq,
        node: Some(pb::NodeInfo {
            cluster: "prod".into(),
            node_name: "node-a".into(),
            instance_type: "g5.xlarge".into(),
            capacity_type: pb::CapacityType::OnDemand as i32,
            region: "us-east-1".into(),
            zone: "us-east-1a".into(),
            labels: Default::default(),
            devices: vec![pb::GpuDevice {
                uuid: "GPU-1111".into(),
                model: "NVIDIA A10G".into(),
                memory_total_bytes: 24 << 30,
                ..Default::default()
            }],
            instance_id: String::new(),
        }),
        interval_start_unix_nanos: start,
        interval_end_unix_nanos: start + 15 * NS,
        gpus: vec![pb::GpuUsage {
            uuid: "GPU-1111".into(),
            utilization_percent: 50.0,
            memory_used_bytes: 1 << 30,
            power_milliwatts: 150_000,
            sample_count: 15,
            ..Default::default()
        }],
        processes: vec![pb::ProcessUsage {
            pid: 4242,
            gpu_uuid: "GPU-1111".into(),
            sm_util_percent: 50.0,
            used_memory_bytes: 1 << 30,
            sample_count: 15,
            workload: Some(pb::WorkloadIdentity {
                kind: pb::WorkloadKind::KubernetesPod as i32,
                namespace: "ml".into(),
                pod: "trainer-0".into(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Sends `batches` on one stream; returns the acks and, if the stream ended with an error, that status.
async fn send(url: &str, batches: Vec<pb::UsageBatch>) -> (Vec<pb::Ack>, Option<tonic::Status>) {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .expect("connect to the collector");
    let mut client = IngestClient::new(channel);
    let n = batches.len();
    let mut stream = client.report(tokio_stream::iter(batches)).await.expect("open stream").into_inner();
    let mut acks = Vec::new();
    while acks.len() < n {
        match stream.message().await {
            Ok(Some(a)) => acks.push(a),
            Ok(None) => break,
            Err(s) => return (acks, Some(s)),
        }
    }
    (acks, None)
}

fn ledger_state(c: &Collector) -> serde_json::Value {
    let (status, body) = c.get("/api/v1/usage?from=2026-11-01T00:00:00Z&to=2026-11-03T00:00:00Z&group_by=gpu,workload");
    assert_eq!(status, 200);
    body
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn a_malformed_batch_is_rejected_whole_with_a_clear_error_and_the_ledger_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(&dir.path().join("ledger.db"));
    let rt = runtime();
    let (acks, err) = rt.block_on(send(&c.grpc_url(), vec![batch("b1", 1, T0)]));
    assert!(err.is_none(), "{err:?}");
    assert_eq!(acks[0].status, pb::AckStatus::Stored as i32);
    let before = ledger_state(&c);
    assert_eq!(before["rows"][0]["used_ns"].as_u64(), Some(7_500_000_000));

    type Break = fn(&mut pb::UsageBatch);
    let broken: Vec<(Break, &str)> = vec![
        (|b| b.processes[0].sm_util_percent = 140.0, "processes[0].sm_util_percent: 140 is outside 0..=100"),
        (
            |b| b.processes[0].gpu_uuid = "GPU-9999".into(),
            "processes[0].gpu_uuid: GPU \"GPU-9999\" is not among node.devices",
        ),
        (|b| b.interval_end_unix_nanos = b.interval_start_unix_nanos - 1, "interval: start"),
        (|b| b.node = None, "node: is missing"),
    ];
    for (seq, (breaks, says)) in broken.into_iter().enumerate() {
        let mut bad = batch("b1", seq as u64 + 2, T0 + 15 * NS);
        breaks(&mut bad);
        let (acks, err) = rt.block_on(send(&c.grpc_url(), vec![bad]));
        assert!(acks.is_empty());
        let status = err.expect("the stream must end with an error");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains(says), "{}", status.message());
        assert!(status.message().contains("agent=node-a boot=b1"), "{}", status.message());
        assert_eq!(
            status.metadata().get("gpucost-rejected-seq").and_then(|v| v.to_str().ok()),
            Some((seq + 2).to_string().as_str())
        );
        assert_eq!(ledger_state(&c), before, "nothing of a rejected batch may be stored");
    }
}

#[test]
fn batches_before_a_rejected_one_are_acked_and_the_rest_are_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(&dir.path().join("ledger.db"));
    let rt = runtime();
    let mut bad = batch("b1", 2, T0 + 15 * NS);
    bad.gpus[0].utilization_percent = -3.0;
    let (acks, err) = rt.block_on(send(&c.grpc_url(), vec![batch("b1", 1, T0), bad, batch("b1", 3, T0 + 30 * NS)]));
    assert_eq!(acks.iter().map(|a| a.seq).collect::<Vec<_>>(), vec![1]);
    assert_eq!(err.unwrap().code(), tonic::Code::InvalidArgument);
    let state = ledger_state(&c);
    assert_eq!(state["rows"][0]["held_ns"].as_u64(), Some(15 * NS), "only the first batch is stored");
}

#[test]
fn a_resent_batch_is_acked_as_a_duplicate_and_not_counted_again() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(&dir.path().join("ledger.db"));
    let rt = runtime();
    let (acks, _) = rt.block_on(send(&c.grpc_url(), vec![batch("b1", 1, T0), batch("b1", 2, T0 + 15 * NS)]));
    assert!(acks.iter().all(|a| a.status == pb::AckStatus::Stored as i32));
    let once = ledger_state(&c);
    let (acks, err) = rt.block_on(send(&c.grpc_url(), vec![batch("b1", 1, T0), batch("b1", 2, T0 + 15 * NS)]));
    assert!(err.is_none());
    assert_eq!(
        acks.iter().map(|a| (a.seq, a.status)).collect::<Vec<_>>(),
        vec![(1, pb::AckStatus::Duplicate as i32), (2, pb::AckStatus::Duplicate as i32)]
    );
    assert_eq!(ledger_state(&c), once);
    assert_eq!(once["rows"][0]["held_ns"].as_u64(), Some(30 * NS));
}

#[test]
fn the_same_interval_under_a_new_boot_id_is_refused_rather_than_billed_twice() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(&dir.path().join("ledger.db"));
    let rt = runtime();
    rt.block_on(send(&c.grpc_url(), vec![batch("b1", 1, T0), batch("b1", 2, T0 + 15 * NS)]));
    let before = ledger_state(&c);
    let (acks, err) = rt.block_on(send(&c.grpc_url(), vec![batch("b2", 1, T0 + 15 * NS)]));
    assert!(acks.is_empty());
    let status = err.expect("overlap must be refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("billed once"), "{}", status.message());
    assert_eq!(ledger_state(&c), before);
    // The next interval of the new boot is fine.
    let (acks, err) = rt.block_on(send(&c.grpc_url(), vec![batch("b2", 2, T0 + 30 * NS)]));
    assert!(err.is_none(), "{err:?}");
    assert_eq!(acks.len(), 1);
}

#[test]
fn workload_references_hold_for_their_stream_only_and_an_unknown_one_is_refused_for_a_resend_not_rejected() {
    use gpucost_proto::refs::{WORKLOAD_REFS_HEADER, WorkloadRefs};
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(&dir.path().join("ledger.db"));
    let rt = runtime();
    let encoded = |refs: &mut WorkloadRefs, seq: u64| {
        let mut b = batch("b1", seq, T0 + (seq - 1) * 15 * NS);
        refs.encode(&mut b);
        b
    };
    // One stream: the first batch declares the pod, the second names it by number only.
    let mut first_stream = WorkloadRefs::new(16);
    let (b1, b2) = (encoded(&mut first_stream, 1), encoded(&mut first_stream, 2));
    assert_eq!(b1.declare_workloads.len(), 1);
    assert!(b2.declare_workloads.is_empty() && b2.processes[0].workload.is_none() && b2.processes[0].workload_ref > 0);
    let header = rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(c.grpc_url()).unwrap().connect().await.unwrap();
        let response = IngestClient::new(channel).report(tokio_stream::iter(vec![b1, b2])).await.unwrap();
        let header = response.metadata().get(WORKLOAD_REFS_HEADER).map(|v| v.to_str().unwrap().to_string());
        let mut acks = response.into_inner();
        for seq in [1, 2] {
            let ack = acks.message().await.unwrap().expect("an ack");
            assert_eq!((ack.seq, ack.status), (seq, pb::AckStatus::Stored as i32));
        }
        header
    });
    assert_eq!(header.as_deref(), Some("1"), "the collector says it takes references");
    let before = ledger_state(&c);

    // The next batch, encoded for the first stream, sent on a new one: its reference means nothing there.
    let (acks, err) = rt.block_on(send(&c.grpc_url(), vec![encoded(&mut first_stream, 3)]));
    assert!(acks.is_empty());
    let status = err.expect("refused");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "kept by the agent and resent, not dropped");
    assert!(status.message().contains("processes[0].workload_ref"), "{}", status.message());
    assert!(status.message().contains("was not declared on this stream"), "{}", status.message());
    assert!(status.metadata().get("gpucost-rejected-seq").is_none(), "not a rejection");
    assert_eq!(ledger_state(&c), before, "nothing of the refused batch is stored");

    // Resent on a new stream with its identity declared again: stored, and billed to the same pod.
    let (acks, err) = rt.block_on(send(&c.grpc_url(), vec![encoded(&mut WorkloadRefs::new(16), 3)]));
    assert!(err.is_none(), "{err:?}");
    assert_eq!(acks[0].status, pb::AckStatus::Stored as i32);
    let rows = ledger_state(&c)["rows"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["workload"], "pod:prod/ml/trainer-0");
    assert_eq!(rows[0]["held_ns"].as_u64(), Some(45 * NS), "three intervals of the one pod");
}
