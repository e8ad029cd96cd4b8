//! Hostile and careless input cannot starve anyone or cost the collector what it cannot afford, and the agent
//! neither builds what the collector must refuse nor forgets what it never had acked (issue 19). The real
//! collector binary over real gRPC on 127.0.0.1, and the agent's real uplink against stand-in collectors that
//! answer as a broken or hostile one would; every load is bounded (a few megabytes, a few hundred connections).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gpucost_collector::auth::hash_token;
use gpucost_e2e::{Collector, Proc, bin, free_port, g5_batch};
use gpucost_proto::limits::{MAX_BATCH_BYTES, MAX_BATCH_BYTES_HEADER, MAX_PROCESSES};
use gpucost_proto::v1 as pb;
use prost::Message;
use prost::bytes::BufMut;
use tokio_stream::Stream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

const NS: u64 = 1_000_000_000;

fn now_s() -> u64 {
    gpucost_types::clock::now_ns() / NS
}

/// A one-minute batch of node `node` ending a few minutes ago, one process of `pod` on GPU 0.
fn batch(node: &str, seq: u64) -> pb::UsageBatch {
    let end = (now_s() - 600 + seq * 60) * NS;
    let pod = pb::WorkloadIdentity {
        kind: pb::WorkloadKind::KubernetesPod as i32,
        namespace: "ml".into(),
        pod: format!("{node}-trainer"),
        ..Default::default()
    };
    g5_batch(node, seq, end - 60 * NS, end, vec![(0, 50.0, pod)])
}

/// Sends raw messages: what a hostile client can put on the wire, whatever the types say.
#[derive(Clone, Default)]
struct RawCodec;

struct RawEncoder;
impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

struct AckDecoder;
impl Decoder for AckDecoder {
    type Item = pb::Ack;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<pb::Ack>, tonic::Status> {
        pb::Ack::decode(src).map(Some).map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = pb::Ack;
    type Encoder = RawEncoder;
    type Decoder = AckDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> AckDecoder {
        AckDecoder
    }
}

/// Sends `messages` on one Report stream; the acks, and the status that ended the stream (`None`: OK).
fn send_raw(url: &str, token: Option<&str>, messages: Vec<Vec<u8>>) -> (Vec<pb::Ack>, Option<tonic::Status>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(url.to_string()).unwrap().connect().await.unwrap();
        let mut grpc = tonic::client::Grpc::new(channel).max_encoding_message_size(usize::MAX);
        grpc.ready().await.unwrap();
        let mut request = tonic::Request::new(tokio_stream::iter(messages));
        if let Some(t) = token {
            request.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        let path = tonic::codegen::http::uri::PathAndQuery::from_static("/gpucost.v1.Ingest/Report");
        let mut stream = match grpc.streaming(request, path, RawCodec).await {
            Ok(r) => r.into_inner(),
            Err(s) => return (Vec::new(), Some(s)),
        };
        let mut acks = Vec::new();
        loop {
            match stream.message().await {
                Ok(Some(a)) => acks.push(a),
                Ok(None) => return (acks, None),
                Err(s) => return (acks, Some(s)),
            }
        }
    })
}

/// The collector's peak resident memory so far, KiB (`VmHWM`).
fn peak_rss_kib(c: &Collector) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", c.proc.0.id())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/<pid>/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn metric(c: &Collector, series: &str) -> u64 {
    let (_, text) = c.get_text("/metrics");
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0)
}

fn log_of(c: &Collector) -> String {
    std::fs::read_to_string(&c.log).unwrap_or_default()
}

#[test]
fn a_4_mib_message_of_a_million_empty_processes_is_refused_before_it_costs_memory() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(&dir.path().join("l.db"));
    let mut wire = batch("n1", 1).encode_to_vec();
    // Field 8 (processes), each an empty message: two bytes on the wire, hundreds once decoded.
    for _ in 0..2_000_000 {
        wire.extend_from_slice(&[0x42, 0x00]);
    }
    assert!(wire.len() < MAX_BATCH_BYTES, "under the size limit: only its counts give it away");
    let before = peak_rss_kib(&c);
    let (acks, status) = send_raw(&c.grpc_url(), None, vec![wire]);
    let after = peak_rss_kib(&c);
    println!("collector peak RSS: {before} KiB before, {after} KiB after a 4 MiB message of 2 000 001 processes");
    assert!(acks.is_empty());
    let status = status.expect("refused with a status, not OK");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("processes: 2000001 processes; at most 16384"), "{status:?}");
    assert_eq!(status.metadata().get("gpucost-rejected-seq").and_then(|v| v.to_str().ok()), Some("1"));
    // The 4 MiB it read and little more; decoding it cost 1.6 GB before.
    assert!(after - before < 32 << 10, "the peak grew by {} KiB", after - before);
    assert_eq!(metric(&c, "gpucost_batches_total{outcome=\"rejected\"}"), 1);
    assert!(log_of(&c).contains("rejected a batch before decoding it"));
}

/// The costliest message the screen lets through: every count at its bound (empty processes, allocations,
/// declarations whose identities hold every label entry and identity byte a batch may), padded to the size
/// limit. Validation refuses it after decoding; what decoding it cost is the worst case of one message.
fn costliest_message() -> Vec<u8> {
    use gpucost_proto::limits::{
        MAX_ALLOCATIONS, MAX_DECLARATIONS, MAX_DEVICES, MAX_IDENTITY_BYTES, MAX_LABEL_ENTRIES,
    };
    let mut b = batch("n1", 1);
    let node = b.node.as_mut().unwrap();
    node.devices = (0..MAX_DEVICES)
        .map(|i| pb::GpuDevice { uuid: format!("GPU-{i:090}"), memory_total_bytes: 1, ..Default::default() })
        .collect();
    b.processes = vec![pb::ProcessUsage::default(); MAX_PROCESSES];
    b.allocations = vec![pb::GpuAllocation::default(); MAX_ALLOCATIONS];
    let per = MAX_LABEL_ENTRIES.div_ceil(MAX_DECLARATIONS);
    let text = MAX_IDENTITY_BYTES / MAX_DECLARATIONS - per * 12 - 16;
    b.declare_workloads = (0..MAX_DECLARATIONS)
        .map(|i| pb::DeclaredWorkload {
            id: i as u32 + 1,
            workload: Some(pb::WorkloadIdentity {
                pod: "p".repeat(text),
                labels: (0..per)
                    .filter(|k| i * per + k < MAX_LABEL_ENTRIES)
                    .map(|k| (format!("k{k}"), String::new()))
                    .collect(),
                ..Default::default()
            }),
        })
        .collect();
    let mut wire = b.encode_to_vec();
    assert!(gpucost_proto::limits::screen(&wire).is_ok(), "{:?}", gpucost_proto::limits::screen(&wire));
    // Padding in a field no batch has (skipped by prost), up to the limit.
    let pad = MAX_BATCH_BYTES - wire.len() - 8;
    prost::encoding::bytes::encode(99, &vec![b'x'; pad - 5], &mut wire);
    assert!(wire.len() <= MAX_BATCH_BYTES, "{} bytes", wire.len());
    wire
}

#[test]
fn the_costliest_message_the_screen_lets_through_costs_a_bounded_multiple_of_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(&dir.path().join("l.db"));
    let wire = costliest_message();
    let before = peak_rss_kib(&c);
    let (acks, status) = send_raw(&c.grpc_url(), None, vec![wire.clone()]);
    let after = peak_rss_kib(&c);
    println!("collector peak RSS: {before} KiB before, {after} KiB after the costliest message ({} bytes)", wire.len());
    assert!(acks.is_empty() && status.is_some(), "refused: {status:?}");
    // docs/security.md: one message costs at most 128 MiB (12 MiB read, the rest decoded); measured 75 MiB.
    assert!(after - before < 128 << 10, "the peak grew by {} KiB", after - before);
}

#[test]
fn a_message_over_the_size_limit_is_refused_naming_the_limit_and_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(&dir.path().join("l.db"));
    let mut b = batch("n1", 1);
    b.agent_version = "x".repeat(40 << 20);
    let wire = b.encode_to_vec();
    let (acks, status) = send_raw(&c.grpc_url(), None, vec![wire.clone()]);
    assert!(acks.is_empty());
    let status = status.expect("refused with a status, not OK");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains(&format!("a message of {} bytes", wire.len()))
            && status.message().contains(&format!("limit of {MAX_BATCH_BYTES} bytes")),
        "{status:?}"
    );
    let named = status.metadata().get(MAX_BATCH_BYTES_HEADER).and_then(|v| v.to_str().ok());
    assert_eq!(named, Some(MAX_BATCH_BYTES.to_string().as_str()), "the limit, for the agent to keep under");
    assert_eq!(metric(&c, "gpucost_limit_breaches_total{limit=\"message_size\"}"), 1);
    assert!(log_of(&c).contains("refused a message over the size limit"));
    // The same batch within the limit is stored.
    assert_eq!(send_raw(&c.grpc_url(), None, vec![batch("n1", 1).encode_to_vec()]).0.len(), 1);
}

#[test]
fn reference_5000_from_a_client_following_the_proto_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(&dir.path().join("l.db"));
    let mut b = batch("n1", 1);
    let identity = b.processes[0].workload.take();
    b.processes[0].workload_ref = 5_000;
    b.declare_workloads.push(pb::DeclaredWorkload { id: 5_000, workload: identity });
    let (acks, status) = send_raw(&c.grpc_url(), None, vec![b.encode_to_vec()]);
    assert!(status.is_none(), "{status:?}");
    assert_eq!(acks[0].status, pb::AckStatus::Stored as i32);
    let (_, usage) = c.get("/api/v1/usage?group_by=workload");
    assert_eq!(usage["rows"][0]["workload"], "pod:prod/ml/n1-trainer", "{usage}");
}

/// How a stand-in answers a batch on its `n`th stream: `None` acks it as stored.
type Answer = dyn Fn(usize, &pb::UsageBatch) -> Option<Result<pb::Ack, tonic::Status>> + Send + Sync;

/// A stand-in collector: answers each stream as `answer` says, recording every batch it is sent.
#[derive(Clone)]
struct StandIn {
    /// (stream index, batch) → the answer; `None` acks it.
    answer: Arc<Answer>,
    /// Announced as `gpucost-max-batch-bytes`.
    max_bytes: Option<usize>,
    streams: Arc<Mutex<usize>>,
    /// Batches acked as stored, and every message's encoded size.
    stored: Arc<Mutex<BTreeSet<u64>>>,
    sizes: Arc<Mutex<Vec<usize>>>,
}

impl StandIn {
    fn new(
        answer: impl Fn(usize, &pb::UsageBatch) -> Option<Result<pb::Ack, tonic::Status>> + Send + Sync + 'static,
    ) -> Self {
        Self {
            answer: Arc::new(answer),
            max_bytes: None,
            streams: Arc::default(),
            stored: Arc::default(),
            sizes: Arc::default(),
        }
    }

    /// Serves on a loopback port; its URL.
    fn serve(&self, rt: &tokio::runtime::Runtime) -> String {
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = pb::ingest_server::IngestServer::new(self.clone())
            .max_decoding_message_size(self.max_bytes.unwrap_or(MAX_BATCH_BYTES));
        rt.spawn(
            tonic::transport::Server::builder()
                .add_service(server)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        url
    }
}

#[tonic::async_trait]
impl pb::ingest_server::Ingest for StandIn {
    type ReportStream = Pin<Box<dyn Stream<Item = Result<pb::Ack, tonic::Status>> + Send + 'static>>;

    async fn report(
        &self,
        request: tonic::Request<tonic::Streaming<pb::UsageBatch>>,
    ) -> Result<tonic::Response<Self::ReportStream>, tonic::Status> {
        let index = {
            let mut n = self.streams.lock().unwrap();
            *n += 1;
            *n - 1
        };
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let (me, mut inbound) = (self.clone(), request.into_inner());
        tokio::spawn(async move {
            while let Ok(Some(b)) = inbound.message().await {
                me.sizes.lock().unwrap().push(b.encoded_len());
                let answer = (me.answer)(index, &b).unwrap_or_else(|| {
                    me.stored.lock().unwrap().insert(b.seq);
                    Ok(pb::Ack {
                        boot_id: b.boot_id.clone(),
                        seq: b.seq,
                        status: pb::AckStatus::Stored as i32,
                        label_keys: None,
                    })
                });
                let end = answer.is_err();
                if tx.send(answer).await.is_err() || end {
                    return;
                }
            }
        });
        let mut response: tonic::Response<Self::ReportStream> =
            tonic::Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)));
        if let Some(max) = self.max_bytes {
            response.metadata_mut().insert(MAX_BATCH_BYTES_HEADER, max.into());
        }
        Ok(response)
    }
}

/// Runs the agent's uplink on `batches` against `url` until every batch is acked (or `limit` passes: then
/// `None`); its stats.
fn uplink(
    rt: &tokio::runtime::Runtime,
    url: String,
    batches: Vec<pb::UsageBatch>,
    limit: Duration,
) -> Option<gpucost_agent::uplink::UplinkStats> {
    let mut config = gpucost_agent::uplink::UplinkConfig::new(url);
    config.backoff_min = Duration::from_millis(20);
    config.backoff_max = Duration::from_millis(200);
    let (tx, rx) = tokio::sync::mpsc::channel(batches.len().max(1));
    for b in batches {
        tx.try_send(b).unwrap();
    }
    drop(tx);
    let spool = gpucost_agent::spool::Spool::memory(1_000);
    rt.block_on(async { tokio::time::timeout(limit, gpucost_agent::uplink::run(config, spool, rx)).await.ok() })
        .map(|r| r.expect("a good URL"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn an_agent_acked_far_ahead_of_what_it_sent_forgets_nothing_it_was_not_acked_for() {
    let rt = runtime();
    // The first stream answers the first batch with an ack of a batch never sent, then breaks.
    let standin = StandIn::new(|stream, b| match stream {
        0 if b.seq == 1 => {
            Some(Ok(pb::Ack { boot_id: b.boot_id.clone(), seq: 1_000_000, status: 1, label_keys: None }))
        }
        0 => Some(Err(tonic::Status::unavailable("stand-in: breaking the stream"))),
        _ => None,
    });
    let url = standin.serve(&rt);
    let batches: Vec<_> = (1..=5).map(|seq| batch("n1", seq)).collect();
    let stats = uplink(&rt, url, batches, Duration::from_secs(30)).expect("every batch acked in the end");
    assert_eq!(*standin.stored.lock().unwrap(), (1..=5).collect::<BTreeSet<u64>>(), "{stats:?}");
}

#[test]
fn an_agent_rejected_without_a_named_batch_drops_none_of_its_batches() {
    let rt = runtime();
    // The first stream rejects the first batch with INVALID_ARGUMENT but no `gpucost-rejected-seq`.
    let standin = StandIn::new(|stream, _| (stream == 0).then(|| Err(tonic::Status::invalid_argument("stand-in: no"))));
    let url = standin.serve(&rt);
    let batches: Vec<_> = (1..=3).map(|seq| batch("n1", seq)).collect();
    let stats = uplink(&rt, url, batches, Duration::from_secs(30)).expect("every batch acked in the end");
    assert_eq!(*standin.stored.lock().unwrap(), (1..=3).collect::<BTreeSet<u64>>(), "{stats:?}");
    assert_eq!(stats.rejected, 0);
}

/// A batch of `n` processes of distinct pods, SM use from 0 to 99 %: over 1 MiB at 3 000.
fn crowded(seq: u64, n: u32) -> pb::UsageBatch {
    let mut b = batch("n1", seq);
    let template = b.processes[0].clone();
    b.processes = (0..n)
        .map(|i| {
            let mut p = template.clone();
            p.pid = 100 + i;
            p.sm_util_percent = f64::from(i % 100);
            let w = p.workload.as_mut().unwrap();
            w.pod = format!("pod-{i}");
            w.labels = (0..20).map(|k| (format!("label-{k}"), "v".repeat(40))).collect();
            p
        })
        .collect();
    b
}

#[test]
fn an_agent_never_sends_a_batch_over_the_limit_its_collector_names() {
    let rt = runtime();
    let mut standin = StandIn::new(|_, _| None);
    standin.max_bytes = Some(256 << 10);
    let url = standin.serve(&rt);
    let stats = uplink(&rt, url, vec![crowded(1, 3_000), batch("n1", 2)], Duration::from_secs(30))
        .expect("both acked: the crowded one trimmed, not stuck");
    assert_eq!(*standin.stored.lock().unwrap(), BTreeSet::from([1, 2]), "{stats:?}");
    let sizes = standin.sizes.lock().unwrap().clone();
    assert!(sizes.iter().all(|&s| s <= 256 << 10), "{sizes:?}");
}

#[test]
fn an_agent_refused_for_size_learns_the_limit_and_sends_the_batch_trimmed() {
    let rt = runtime();
    // A collector that names its limit only when it refuses (an older one, or one behind a proxy).
    let standin = StandIn::new(|_, b| {
        (b.encoded_len() > 256 << 10).then(|| {
            let mut md = tonic::metadata::MetadataMap::new();
            md.insert(MAX_BATCH_BYTES_HEADER, (256usize << 10).into());
            Err(tonic::Status::with_metadata(tonic::Code::ResourceExhausted, "stand-in: too large", md))
        })
    });
    let url = standin.serve(&rt);
    let stats = uplink(&rt, url, vec![crowded(1, 3_000), batch("n1", 2)], Duration::from_secs(30))
        .expect("both acked: the crowded one trimmed after the refusal");
    assert_eq!(*standin.stored.lock().unwrap(), BTreeSet::from([1, 2]), "{stats:?}");
}

#[test]
fn an_agent_with_more_processes_than_the_contract_allows_sends_the_busiest_and_they_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(&dir.path().join("l.db"));
    let rt = runtime();
    let mut b = batch("n1", 1);
    let template = b.processes.remove(0);
    b.processes = (0..MAX_PROCESSES as u32 + 100)
        .map(|i| {
            let mut p = template.clone();
            p.pid = 100 + i;
            // 100 busy processes and many idle ones: the idle ones are left out.
            p.sm_util_percent = if i % 165 == 0 { 0.5 } else { 0.0 };
            p
        })
        .collect();
    let stats = uplink(&rt, c.grpc_url(), vec![b], Duration::from_secs(60)).expect("acked");
    assert_eq!((stats.stored, stats.rejected), (1, 0));
    let (_, usage) = c.get("/api/v1/usage?group_by=node");
    assert_eq!(usage["totals"]["used_ns"].as_u64().unwrap(), 100 * 60 * NS / 200, "the busy ones' use: {usage}");
}

const ALPHA: &str = "agent-token-of-cluster-alpha-01";
const BETA: &str = "agent-token-of-cluster-beta-001";
const READER: &str = "read-token-of-the-hostile-suite";

/// A collector with agent tokens for clusters alpha and beta (plain-text gRPC, tokens required) and `args`.
fn zoned(dir: &Path, args: &[&str]) -> Collector {
    let auth = dir.join("auth.toml");
    let agent = |cluster: &str, token: &str| {
        format!("[[agent]]\ncluster = \"{cluster}\"\nsha256 = \"{}\"\n", hash_token(token))
    };
    let api = format!("[[api]]\nname = \"reader\"\nscope = \"read\"\nsha256 = \"{}\"\n", hash_token(READER));
    std::fs::write(&auth, agent("alpha", ALPHA) + &agent("beta", BETA) + &api).unwrap();
    let mut all = vec!["--auth", auth.to_str().unwrap(), "--grpc-plaintext"];
    all.extend_from_slice(args);
    Collector::start_with(&dir.join("l.db"), free_port(), free_port(), &all, &[])
}

/// `batch` for node `node` of `cluster`.
fn of_cluster(cluster: &str, node: &str, seq: u64) -> pb::UsageBatch {
    let mut b = batch(node, seq);
    b.node.as_mut().unwrap().cluster = cluster.into();
    b
}

fn metric_with(c: &Collector, token: &str, series: &str) -> u64 {
    let text = ureq::get(&c.http("/metrics"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0)
}

/// Opens a Report stream with `token` that sends nothing (until its sender is dropped).
async fn silent_stream(
    url: &str,
    token: &str,
) -> Result<(tokio::sync::mpsc::Sender<pb::UsageBatch>, tonic::Streaming<pb::Ack>), tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string()).unwrap().connect().await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let acks = pb::ingest_client::IngestClient::new(channel).report(request).await?.into_inner();
    Ok((tx, acks))
}

#[test]
fn one_clusters_idle_streams_leave_another_cluster_a_slot_and_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let c = zoned(dir.path(), &["--max-streams", "4", "--stream-idle-timeout", "2s"]);
    let url = c.grpc_url();
    let rt = runtime();
    let mut held = Vec::new();
    let refused = rt.block_on(async {
        for _ in 0..4 {
            match silent_stream(&url, ALPHA).await {
                Ok(s) => held.push(s),
                Err(status) => return Some(status),
            }
        }
        None
    });
    // Two zones share 4 slots: each is guaranteed one; alpha borrows the rest but not beta's.
    assert_eq!(held.len(), 3, "alpha's streams");
    let refused = refused.expect("the fourth alpha stream is refused");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("kept for other clusters"), "{refused:?}");
    let (acks, status) = send_raw(&url, Some(BETA), vec![of_cluster("beta", "b1", 1).encode_to_vec()]);
    assert!(status.is_none() && acks.len() == 1, "beta's agent gets its slot: {status:?}");
    // Alpha's silent streams are closed after the idle timeout, with a status that says so.
    rt.block_on(async {
        for (_tx, acks) in &mut held {
            let end =
                tokio::time::timeout(Duration::from_secs(30), acks.message()).await.expect("closed in bounded time");
            let status = end.expect_err("closed with a status");
            assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
            assert!(status.message().contains("no batch on this stream for 2 s"), "{status:?}");
        }
    });
    assert_eq!(metric_with(&c, READER, "gpucost_limit_breaches_total{limit=\"stream_idle\"}"), 3);
    assert_eq!(metric_with(&c, READER, "gpucost_limit_breaches_total{limit=\"stream_share\"}"), 1);
}

#[test]
fn an_agent_whose_intervals_outlast_the_idle_timeout_keeps_its_stream_between_batches() {
    let dir = tempfile::tempdir().unwrap();
    let c = zoned(dir.path(), &["--stream-idle-timeout", "2s"]);
    let rt = runtime();
    rt.block_on(async {
        let (tx, mut acks) = silent_stream(&c.grpc_url(), ALPHA).await.expect("a stream");
        // One-minute intervals: the stream may stay silent for three of them, not just the 2 s timeout.
        tx.send(of_cluster("alpha", "slow", 1)).await.unwrap();
        let first = tokio::time::timeout(Duration::from_secs(30), acks.message()).await.unwrap().unwrap();
        assert!(first.is_some_and(|a| a.seq == 1));
        tokio::time::sleep(Duration::from_secs(4)).await;
        tx.send(of_cluster("alpha", "slow", 2)).await.unwrap();
        let second = tokio::time::timeout(Duration::from_secs(30), acks.message()).await.unwrap();
        assert!(second.as_ref().is_ok_and(|a| a.as_ref().is_some_and(|a| a.seq == 2)), "{second:?}");
    });
    assert_eq!(metric_with(&c, READER, "gpucost_limit_breaches_total{limit=\"stream_idle\"}"), 0);
}

#[test]
fn a_token_rotating_agent_ids_does_not_escape_the_batch_rate() {
    let dir = tempfile::tempdir().unwrap();
    let c = zoned(dir.path(), &["--max-agent-batches-per-minute", "20"]);
    // 40 batches on one stream, each from a different agent (and node) of cluster alpha.
    let batches = (0..40).map(|i| of_cluster("alpha", &format!("rotating-{i}"), 1).encode_to_vec()).collect();
    let (acks, status) = send_raw(&c.grpc_url(), Some(ALPHA), batches);
    assert_eq!(acks.len(), 20, "a minute's burst for the one stream, whatever the agent ids");
    let status = status.expect("refused past the rate");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("more than 20 batches a minute"), "{status:?}");
}

/// A collector started by `sh` with at most `files` open files, plain text and no tokens.
fn with_open_files(dir: &Path, files: u32, args: &[&str]) -> Collector {
    let mut all = vec!["--insecure"];
    all.extend_from_slice(args);
    spawned(dir, &format!("ulimit -n {files} &&"), "json", &all)
}

/// A collector started by `sh` after `prefix`, logging in `log_format`, with `args`.
fn spawned(dir: &Path, prefix: &str, log_format: &str, args: &[&str]) -> Collector {
    let (grpc_port, http_port) = (free_port(), free_port());
    let (db, log) = (dir.join("l.db"), dir.join("collector.log"));
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{prefix} exec \"$0\" \"$@\""))
        .arg(bin("gpucost-collector"))
        .args(["--log-format", log_format, "serve"])
        .args(["--grpc", &format!("127.0.0.1:{grpc_port}"), "--http", &format!("127.0.0.1:{http_port}")])
        .arg("--db")
        .arg(&db)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let c = Collector { proc: Proc(child), grpc_port, http_port, db: PathBuf::from(&db), log };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !healthy(&c) {
        assert!(Instant::now() < deadline, "not ready: {}", log_of(&c));
        std::thread::sleep(Duration::from_millis(100));
    }
    c
}

fn healthy(c: &Collector) -> bool {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(5))).build().into();
    agent.get(&c.http("/healthz")).call().is_ok_and(|r| r.status() == 200)
}

/// Whether the peer closed `s` (EOF or reset) before `limit`; anything the server says first is read past.
fn closed_within(s: &mut std::net::TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn hundreds_of_silent_connections_are_closed_and_do_not_take_healthz_down() {
    let dir = tempfile::tempdir().unwrap();
    let c = with_open_files(dir.path(), 256, &["--handshake-timeout", "2s"]);
    let addr = format!("127.0.0.1:{}", c.grpc_port);
    let mut silent: Vec<_> = (0..300).map(|_| std::net::TcpStream::connect(&addr).unwrap()).collect();
    assert!(healthy(&c), "/healthz answers while 300 silent connections wait on the gRPC port");
    // Each is closed once the port takes it and it sends no HTTP/2 preface in time.
    for (i, s) in silent.iter_mut().enumerate() {
        assert!(closed_within(s, Duration::from_secs(30)), "silent connection {i} still open");
    }
    assert!(healthy(&c));
    // An agent is served as before.
    assert_eq!(send_raw(&c.grpc_url(), None, vec![batch("n1", 1).encode_to_vec()]).0.len(), 1);
}

#[test]
fn an_http_connection_that_never_finishes_its_headers_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let c =
        Collector::start_with(&dir.path().join("l.db"), free_port(), free_port(), &["--handshake-timeout", "2s"], &[]);
    let mut s = std::net::TcpStream::connect(format!("127.0.0.1:{}", c.http_port)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: collector\r\nX-Slow: ").unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(30)), "the connection is still open");
    assert!(healthy(&c));
}

#[test]
fn an_agents_control_characters_cannot_forge_a_line_in_text_logs() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth.toml");
    std::fs::write(&auth, format!("[[agent]]\ncluster = \"alpha\"\nsha256 = \"{}\"\n[[api]]\nname = \"r\"\nscope = \"read\"\nsha256 = \"{}\"\n", hash_token(ALPHA), hash_token(READER))).unwrap();
    let c = spawned(dir.path(), "", "text", &["--auth", auth.to_str().unwrap(), "--grpc-plaintext"]);
    let forged = "INFO gpucost_collector: all batches stored";
    // A batch for another cluster (refused and logged with its agent id), and one over the rate's key.
    let mut b = of_cluster("beta", &format!("n1\n{forged}\u{1b}[2K"), 1);
    b.agent_id = b.node.as_ref().unwrap().node_name.clone();
    let (_, status) = send_raw(&c.grpc_url(), Some(ALPHA), vec![b.encode_to_vec()]);
    assert_eq!(status.expect("refused").code(), tonic::Code::PermissionDenied);
    let log = log_of(&c);
    assert!(log.contains("refused a batch for a cluster its token does not cover"), "{log}");
    assert!(log.lines().all(|l| !l.starts_with(forged)), "a forged line:\n{log}");
    assert!(log.contains(&format!("n1\\n{forged}")), "escaped on its own line:\n{log}");
    assert!(!log.contains('\u{1b}'), "no terminal escape reaches the log");
}
