//! The agent's uplink and workload references, against stand-in collectors on loopback: a collector that
//! does not announce references (an older one) gets every identity inline; one that does gets each identity
//! declared once per stream, and declared again on the stream that follows a break.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gpucost_agent::spool::Spool;
use gpucost_agent::uplink::{UplinkConfig, run};
use gpucost_proto::refs::WORKLOAD_REFS_HEADER;
use gpucost_proto::v1::ingest_server::{Ingest, IngestServer};
use gpucost_proto::v1::{Ack, AckStatus, ProcessUsage, UsageBatch, WorkloadIdentity};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

/// Records what each stream carried and acks every batch; announces references when `refs`; ends the
/// first stream (UNAVAILABLE) after acking `break_after` batches.
#[derive(Clone)]
struct StandIn {
    refs: bool,
    break_after: Option<usize>,
    streams: Arc<Mutex<Vec<Vec<UsageBatch>>>>,
}

#[tonic::async_trait]
impl Ingest for StandIn {
    type ReportStream = Pin<Box<dyn Stream<Item = Result<Ack, Status>> + Send + 'static>>;

    async fn report(&self, request: Request<Streaming<UsageBatch>>) -> Result<Response<Self::ReportStream>, Status> {
        let index = {
            let mut s = self.streams.lock().unwrap();
            s.push(Vec::new());
            s.len() - 1
        };
        let break_after = if index == 0 { self.break_after } else { None };
        let streams = self.streams.clone();
        let mut n = 0;
        let acks = request.into_inner().take_while(|m| m.is_ok()).map(move |m| {
            let b = m.expect("taken while ok");
            n += 1;
            streams.lock().unwrap()[index].push(b.clone());
            if break_after.is_some_and(|k| n > k) {
                return Err(Status::unavailable("stand-in: breaking the stream"));
            }
            Ok(Ack { boot_id: b.boot_id, seq: b.seq, status: AckStatus::Stored as i32, label_keys: None })
        });
        let mut response: Response<Self::ReportStream> = Response::new(Box::pin(acks));
        if self.refs {
            response.metadata_mut().insert(WORKLOAD_REFS_HEADER, "1".parse().unwrap());
        }
        Ok(response)
    }
}

fn pod(name: &str) -> WorkloadIdentity {
    let mut w = WorkloadIdentity { kind: 1, namespace: "ml".into(), pod: name.into(), ..Default::default() };
    w.labels.insert("app".into(), name.into());
    w.labels.insert("mlflow.org/model-name".into(), "ranker".into());
    w
}

/// Batch `seq`: two processes of pod a and one of pod b (pod c from batch 4 on).
fn batch(seq: u64) -> UsageBatch {
    let third = if seq >= 4 { "c" } else { "b" };
    UsageBatch {
        agent_id: "node-a".into(),
        boot_id: "boot".into(),
        seq,
        interval_start_unix_nanos: seq * 15,
        interval_end_unix_nanos: seq * 15 + 15,
        processes: [(1, "a"), (2, "a"), (3, third)]
            .into_iter()
            .map(|(pid, p)| ProcessUsage { pid, workload: Some(pod(p)), ..Default::default() })
            .collect(),
        ..Default::default()
    }
}

/// Streams batches 1..=5 through the real uplink to a stand-in; what each stream carried.
fn stream_to(refs: bool, break_after: Option<usize>) -> Vec<Vec<UsageBatch>> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let standin = StandIn { refs, break_after, streams: Arc::default() };
        let server = tonic::transport::Server::builder()
            .add_service(IngestServer::new(standin.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        let server = tokio::spawn(server);
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        for seq in 1..=5 {
            tx.send(batch(seq)).await.unwrap();
        }
        drop(tx);
        let config = UplinkConfig { backoff_min: Duration::from_millis(10), ..UplinkConfig::new(url) };
        let stats = tokio::time::timeout(Duration::from_secs(30), run(config, Spool::memory(64), rx))
            .await
            .expect("the uplink finishes")
            .expect("a good endpoint");
        assert_eq!(stats.rejected, 0);
        server.abort();
        let streams: Vec<Vec<UsageBatch>> = std::mem::take(&mut standin.streams.lock().unwrap());
        streams
    })
}

/// What each batch of a stream names, resolved as a collector does: declarations first, then references.
fn resolve(stream: &[UsageBatch]) -> Vec<(u64, Vec<WorkloadIdentity>)> {
    let mut table: HashMap<u32, WorkloadIdentity> = HashMap::new();
    stream
        .iter()
        .map(|b| {
            for d in &b.declare_workloads {
                table.insert(d.id, d.workload.clone().expect("a declared identity"));
            }
            let named = b
                .processes
                .iter()
                .map(|p| match p.workload_ref {
                    0 => p.workload.clone().expect("inline"),
                    r => {
                        assert!(p.workload.is_none(), "a reference and an identity");
                        table.get(&r).cloned().unwrap_or_else(|| panic!("seq {}: reference {r} undeclared", b.seq))
                    }
                })
                .collect();
            (b.seq, named)
        })
        .collect()
}

fn expected(seq: u64) -> Vec<WorkloadIdentity> {
    batch(seq).processes.into_iter().map(|p| p.workload.unwrap()).collect()
}

#[test]
fn a_collector_that_does_not_announce_references_gets_every_identity_inline() {
    let streams = stream_to(false, None);
    let all: Vec<&UsageBatch> = streams.iter().flatten().collect();
    assert_eq!(all.iter().map(|b| b.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    for b in all {
        assert!(b.declare_workloads.is_empty());
        assert!(b.processes.iter().all(|p| p.workload_ref == 0 && p.workload.is_some()), "seq {}", b.seq);
        assert_eq!(resolve(std::slice::from_ref(b))[0].1, expected(b.seq));
    }
}

#[test]
fn each_identity_is_declared_once_per_stream_and_again_after_a_break() {
    let streams = stream_to(true, Some(2));
    assert!(streams.len() >= 2, "the stand-in broke the first stream: {} streams", streams.len());
    let first = &streams[0];
    // Batch 1 declares a and b; batch 2 names them only; batch 3 was on the stream when it broke.
    assert_eq!(first[0].declare_workloads.len(), 2);
    assert!(first[1].declare_workloads.is_empty());
    assert!(first.iter().flat_map(|b| &b.processes).all(|p| p.workload.is_none() && p.workload_ref > 0));
    let mut seen: HashMap<u64, Vec<WorkloadIdentity>> = HashMap::new();
    for stream in &streams {
        // Every reference resolves on its own stream: nothing leans on an earlier one.
        for (seq, named) in resolve(stream) {
            assert_eq!(named, expected(seq), "seq {seq}");
            seen.insert(seq, named);
        }
    }
    assert_eq!(seen.len(), 5, "every batch arrived: {:?}", seen.keys());
    // The stream after the break declares what its first batch names, even identities declared before.
    let second = &streams[1];
    let declared: Vec<&str> =
        second[0].declare_workloads.iter().map(|d| d.workload.as_ref().unwrap().pod.as_str()).collect();
    assert!(declared.contains(&"a"), "a declared again on the new stream: {declared:?}");
    // Pod c appears from batch 4: declared once on the stream that carries it first.
    let c_declarations =
        second.iter().flat_map(|b| &b.declare_workloads).filter(|d| d.workload.as_ref().unwrap().pod == "c").count();
    assert_eq!(c_declarations, 1);
}
