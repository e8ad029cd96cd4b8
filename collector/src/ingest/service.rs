//! `gpucost.v1.Ingest/Report`: one bidirectional stream per agent connection.
//!
//! Batches are validated as they arrive and handed to the ledger writer, up to `WINDOW` at a time and
//! [`MAX_BATCH_BYTES`] of them (so that what one stream holds stays a small multiple of the largest valid
//! batch, `docs/security.md`), and acked in arrival order as their transactions commit. A batch that fails
//! validation (or would bill
//! a GPU-second twice) ends the stream with INVALID_ARGUMENT after the batches before it are acked; the
//! trailer `gpucost-rejected-seq` names it. A storage failure ends the stream with UNAVAILABLE so that the
//! agent retries. The stream opens with the label keys the catalog needs (`label_keys`), and an ack carries
//! them again when they changed.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use gpucost_proto::label_keys::LABEL_KEYS_HEADER;
use gpucost_proto::limits::{MAX_BATCH_BYTES, MAX_BATCH_BYTES_HEADER};
use gpucost_proto::refs::WORKLOAD_REFS_HEADER;
use gpucost_proto::v1::ingest_server::Ingest;
use gpucost_proto::v1::{Ack, AckStatus, LabelKeys as AnnouncedKeys, UsageBatch};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use super::label_keys::{Announced, LabelKeys};
use super::limits::Full;
use super::refs::StreamWorkloads;
use super::stages::Stages;
use super::validate::Refusal;
use crate::metrics::Metrics;
use gpucost_ledger::{LedgerError, Recorded};
use gpucost_types::stage::Attributed;

/// Batches of one stream in the writer's hands at once.
const WINDOW: usize = 64;

use gpucost_proto::codec::REJECTED_SEQ_TRAILER;

/// What every stream shares: the stages its batches go through (`stages`: validated, held, priced,
/// attributed, stored), the limits on streams, and the counters. Cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    pub stages: Stages,
    pub metrics: Arc<Metrics>,
    /// The latest interval of every GPU, for the live view.
    pub fleet: Arc<crate::live::Fleet>,
    /// Which agent tokens may write which cluster.
    pub auth: Arc<crate::auth::Auth>,
    /// Streams open at once, at most, with each cluster's share.
    pub slots: Arc<super::limits::StreamSlots>,
    /// Batches per stream per minute, at most, per cluster.
    pub rate: Arc<super::limits::RateLimit>,
    /// A stream on which nothing is sent or acked for this long is closed (it holds a slot).
    pub idle_timeout: std::time::Duration,
}

pub struct IngestService {
    pipeline: Pipeline,
    label_keys: Arc<LabelKeys>,
}

impl IngestService {
    pub fn new(pipeline: Pipeline) -> Self {
        let label_keys = Arc::new(LabelKeys::new(pipeline.stages.owners.clone()));
        Self { pipeline, label_keys }
    }
}

fn rejected(seq: u64, message: String) -> Status {
    let mut md = MetadataMap::new();
    if let Ok(v) = seq.to_string().parse() {
        md.insert(REJECTED_SEQ_TRAILER, v);
    }
    Status::with_metadata(tonic::Code::InvalidArgument, message, md)
}

/// The answer to a message refused before it was decoded, logged and counted: one over the size limit
/// (RESOURCE_EXHAUSTED naming the limit and the size, and the trailer `gpucost-max-batch-bytes`: the agent trims
/// what it sends and sends it again), one whose counts no valid batch has (the codec's INVALID_ARGUMENT,
/// naming the batch), or one that does not decode. `None`: the stream broke (the agent went away).
fn refused_unread(status: &Status, metrics: &Metrics) -> Option<Status> {
    match status.code() {
        tonic::Code::InvalidArgument => {
            metrics.batch_rejected();
            tracing::warn!(error = status.message(), "rejected a batch before decoding it");
            Some(status.clone())
        }
        // tonic's words: "decoded message length too large: found {len} bytes, the limit is: {limit} bytes".
        tonic::Code::OutOfRange => {
            metrics.limit_breach("message_size");
            let found = status.message().split("found ").nth(1).and_then(|r| r.split(' ').next()).unwrap_or("?");
            tracing::warn!(bytes = found, limit = MAX_BATCH_BYTES, "refused a message over the size limit");
            let mut md = MetadataMap::new();
            md.insert(MAX_BATCH_BYTES_HEADER, MAX_BATCH_BYTES.into());
            Some(Status::with_metadata(
                tonic::Code::ResourceExhausted,
                format!(
                    "a message of {found} bytes is over this collector's limit of {MAX_BATCH_BYTES} bytes (the largest valid batch and a margin); not stored: trim the batch below the limit and send it again"
                ),
                md,
            ))
        }
        tonic::Code::Internal if status.message().starts_with("failed to decode") => {
            metrics.batch_rejected();
            tracing::warn!(error = status.message(), "rejected a message that is not a batch");
            Some(Status::invalid_argument(format!("not a UsageBatch: {}", status.message())))
        }
        _ => None,
    }
}

/// A batch in the writer's hands: its boot and sequence, its GPU time and whether it was priced (for the
/// metrics, once stored), and the answer to come.
struct Pending {
    boot_id: String,
    seq: u64,
    /// Its size on the wire.
    bytes: usize,
    gpu_ns: u64,
    unpriced: bool,
    observed: crate::live::Observation,
    received: std::time::Instant,
    stored: oneshot::Receiver<Result<Recorded, LedgerError>>,
}

/// Serves one agent stream; `bound` is the cluster the agent's token may write (`None`: any, insecure mode);
/// `told` the label keys the stream opened with. Only the flow control is here: at most `WINDOW` batches and one
/// largest message in the writer's hands, acks in arrival order, the idle timeout, the stream's last word. What
/// happens to a batch is `admit` (the stream's limits, then the stages) and `answer` (what its storing means).
async fn serve_stream(
    mut inbound: Streaming<UsageBatch>,
    out: mpsc::Sender<Result<Ack, Status>>,
    p: Pipeline,
    bound: Option<String>,
    label_keys: Arc<LabelKeys>,
    mut told: Announced,
) {
    // The trust zone the stream's token authenticates: its cluster (all one zone when insecure). Slots and the
    // batch rate are kept per zone, never per what a batch says of itself.
    let zone = bound.clone().unwrap_or_default();
    /// Gives the stream's slot back when it ends.
    struct Release(Arc<super::limits::StreamSlots>, String);
    impl Drop for Release {
        fn drop(&mut self) {
            self.0.give_back(&self.1);
        }
    }
    let _slot = Release(p.slots.clone(), zone.clone());
    /// Counts the stream as a connected agent while it lasts.
    struct Connected(Arc<Metrics>);
    impl Drop for Connected {
        fn drop(&mut self) {
            self.0.agents_connected.dec();
        }
    }
    p.metrics.agents_connected.inc();
    let _connected = Connected(p.metrics.clone());
    let mut pending: VecDeque<Pending> = VecDeque::new();
    // Wire bytes of the batches in `pending`: the next is read only while under one largest message.
    let mut pending_bytes = 0;
    // The workloads the agent declared on this stream (`gpucost_proto::refs`).
    let mut workloads = StreamWorkloads::default();
    let mut input_done = false;
    let mut last_word: Option<Status> = None;
    // Reset by every batch received and every ack sent. An agent whose intervals are longer than the timeout's
    // third is allowed three of its own intervals between batches, so that its stream is not closed each time.
    let mut allowed_idle = p.idle_timeout;
    let idle = tokio::time::sleep(p.idle_timeout);
    tokio::pin!(idle);
    loop {
        if input_done && pending.is_empty() {
            if let Some(status) = last_word.take() {
                let _ = out.send(Err(status)).await;
            }
            return;
        }
        tokio::select! {
            _ = &mut idle, if !input_done && pending.is_empty() => {
                p.metrics.limit_breach("stream_idle");
                tracing::info!(cluster = %zone.escape_debug(), ?allowed_idle, "closed an agent stream that sent nothing");
                last_word = Some(Status::unavailable(format!(
                    "no batch on this stream for {} s (--stream-idle-timeout): closed, so that an idle stream holds no slot; open a new one when there is a batch to send",
                    allowed_idle.as_secs()
                )));
                input_done = true;
            }
            msg = inbound.message(), if !input_done && pending.len() < WINDOW && pending_bytes < MAX_BATCH_BYTES => match msg {
                Ok(Some(b)) => {
                    let received = std::time::Instant::now();
                    match admit(&p, &zone, bound.as_deref(), &b, &mut workloads) {
                        Ok(batch) => {
                            allowed_idle = idle_allowance(p.idle_timeout, batch.end_ns.saturating_sub(batch.start_ns));
                            idle.as_mut().reset(tokio::time::Instant::now() + allowed_idle);
                            let bytes = prost::Message::encoded_len(&b);
                            pending_bytes += bytes;
                            pending.push_back(Pending {
                                boot_id: batch.boot_id.clone(),
                                seq: batch.seq,
                                bytes,
                                gpu_ns: batch.duration_ns() * batch.devices.iter().filter(|d| !d.is_mig()).count() as u64,
                                unpriced: batch.cost.unpriced.is_some(),
                                observed: crate::live::Observation::of(&batch),
                                received,
                                stored: p.stages.store(batch).await,
                            });
                        }
                        Err(status) => {
                            last_word = Some(status);
                            input_done = true;
                        }
                    }
                }
                Ok(None) => input_done = true,
                Err(status) => {
                    last_word = refused_unread(&status, &p.metrics);
                    if last_word.is_none() {
                        tracing::debug!(code = ?status.code(), message = status.message(), "agent stream ended");
                    }
                    input_done = true;
                }
            },
            outcome = async { (&mut pending.front_mut().expect("guarded by the branch condition").stored).await }, if !pending.is_empty() => {
                let done = pending.pop_front().expect("front was just awaited");
                pending_bytes -= done.bytes;
                let (boot_id, seq) = (done.boot_id.clone(), done.seq);
                let status = match answer(&p, done, outcome) {
                    Ok(status) => status,
                    Err(status) => {
                        let _ = out.send(Err(status)).await;
                        return;
                    }
                };
                let now = label_keys.current();
                let changed = !Arc::ptr_eq(&now, &told);
                let announce = changed.then(|| AnnouncedKeys { keys: now.to_vec() });
                told = now;
                if out.send(Ok(Ack { boot_id, seq, status: status as i32, label_keys: announce })).await.is_err() {
                    return;
                }
                idle.as_mut().reset(tokio::time::Instant::now() + allowed_idle);
            }
        }
    }
}

/// A batch read from a stream of `zone` (a token bound to cluster `bound`), through the stream's limits and the
/// stages up to storing; or the stream's last word, logged and counted: over the zone's batch rate
/// (RESOURCE_EXHAUSTED), for a cluster the token does not cover (PERMISSION_DENIED), from the future
/// (UNAVAILABLE: kept and sent again), naming an undeclared workload (FAILED_PRECONDITION: sent again on a new
/// stream), or invalid (INVALID_ARGUMENT with the rejected sequence number).
fn admit(
    p: &Pipeline,
    zone: &str,
    bound: Option<&str>,
    b: &UsageBatch,
    workloads: &mut StreamWorkloads,
) -> Result<Attributed, Status> {
    let metrics = &p.metrics;
    if !p.rate.admit(zone, p.slots.held(zone), gpucost_types::clock::now_ns()) {
        metrics.limit_breach("agent_rate");
        tracing::warn!(agent = %b.agent_id.escape_debug(), cluster = %zone.escape_debug(), seq = b.seq, per_minute = p.rate.per_minute(), "a cluster's agents are over their batch rate");
        return Err(Status::resource_exhausted(format!(
            "batch agent={} seq={}: more than {} batches a minute per stream from this token's agents (--max-agent-batches-per-minute); it was not stored, send it again later",
            b.agent_id.escape_debug(),
            b.seq,
            p.rate.per_minute()
        )));
    }
    if let Some(allowed) = bound
        && b.node.as_ref().map(|n| n.cluster.as_str()) != Some(allowed)
    {
        metrics.batch_rejected();
        let cluster = b.node.as_ref().map(|n| n.cluster.clone()).unwrap_or_default();
        tracing::warn!(agent = %b.agent_id, seq = b.seq, cluster, allowed, "refused a batch for a cluster its token does not cover");
        return Err(Status::permission_denied(format!(
            "batch agent={} seq={}: this agent's token writes cluster {allowed:?}; it cannot write usage for cluster {cluster:?}",
            b.agent_id, b.seq
        )));
    }
    p.stages.prepare(b, gpucost_types::clock::now_ns(), workloads).map_err(|e| match e.refusal {
        Refusal::Later => {
            // Kept by the agent and sent again: refused for now, not rejected.
            metrics.limit_breach("clock_skew");
            tracing::warn!(agent = %b.agent_id, seq = b.seq, error = %e, "a batch from the future: the agent's clock is ahead");
            Status::unavailable(e.to_string())
        }
        Refusal::Reconnect => {
            // Kept by the agent and sent again on a new stream, which declares its workloads anew.
            metrics.batch_rejected();
            tracing::warn!(agent = %b.agent_id, seq = b.seq, error = %e, declared = workloads.len(), "a batch named an undeclared workload reference");
            Status::failed_precondition(e.to_string())
        }
        _ => {
            metrics.batch_rejected();
            tracing::warn!(agent = %b.agent_id, seq = b.seq, error = %e, "rejected a batch");
            rejected(b.seq, e.to_string())
        }
    })
}

/// What the writer's answer for `done` means for the agent: an ack status (the batch counted and shown live
/// when stored), or the stream's end: INVALID_ARGUMENT for a batch that would bill GPU time twice, UNAVAILABLE
/// (retry later) when the storage failed or the writer stopped.
fn answer(
    p: &Pipeline,
    done: Pending,
    outcome: Result<Result<Recorded, LedgerError>, oneshot::error::RecvError>,
) -> Result<AckStatus, Status> {
    let Pending { boot_id, seq, gpu_ns, unpriced, observed, received, .. } = done;
    let metrics = &p.metrics;
    match outcome {
        Ok(Ok(stored @ (Recorded::Stored | Recorded::Contested(_)))) => {
            // Another cluster's time on the same GPU UUIDs: both are kept, each billed to its own cluster.
            if let Recorded::Contested(conflicts) = stored {
                for c in &conflicts {
                    metrics.conflict(&c.cluster, &c.other_cluster);
                    tracing::warn!(%boot_id, seq, gpu = %c.gpu_uuid, cluster = %c.cluster, other_cluster = %c.other_cluster,
                        "two clusters report the same GPU over the same time; both are stored, each billed to its own cluster (GET /api/v1/conflicts)");
                }
            }
            let now_s = gpucost_types::clock::now_ns() as f64 / 1e9;
            metrics.batch_stored(&observed, gpu_ns, !unpriced, received.elapsed(), now_s);
            p.fleet.update(observed);
            Ok(AckStatus::Stored)
        }
        Ok(Ok(Recorded::Duplicate)) => {
            metrics.batch_duplicate();
            Ok(AckStatus::Duplicate)
        }
        Ok(Err(e)) if e.is_batch_fault() => {
            metrics.batch_rejected();
            tracing::warn!(%boot_id, seq, error = %e, "rejected a batch");
            Err(rejected(seq, e.to_string()))
        }
        Ok(Err(e)) => Err(Status::unavailable(format!("could not store batch seq={seq}: {e}; retry later"))),
        Err(_) => Err(Status::unavailable("the ledger writer stopped; retry later")),
    }
}

/// How long a stream may stay silent after a batch of `interval_ns`: the configured timeout, or three of the
/// agent's intervals when those are longer (at most three hours: an interval is at most an hour).
fn idle_allowance(timeout: std::time::Duration, interval_ns: u64) -> std::time::Duration {
    let three =
        std::time::Duration::from_nanos(interval_ns.saturating_mul(3)).min(std::time::Duration::from_secs(3 * 3_600));
    timeout.max(three)
}

#[tonic::async_trait]
impl Ingest for IngestService {
    type ReportStream = Pin<Box<dyn Stream<Item = Result<Ack, Status>> + Send + 'static>>;

    async fn report(&self, request: Request<Streaming<UsageBatch>>) -> Result<Response<Self::ReportStream>, Status> {
        let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
        let bound = self.pipeline.auth.agent_cluster(header.as_deref()).map_err(|e| {
            self.pipeline.metrics.batch_rejected();
            tracing::warn!(error = %e, "refused an agent stream");
            Status::unauthenticated(format!("agent token: {e}"))
        })?;
        let zone = bound.clone().unwrap_or_default();
        match self.pipeline.slots.take(&zone) {
            Ok(()) => {}
            Err(Full::All) => {
                self.pipeline.metrics.limit_breach("streams");
                return Err(Status::resource_exhausted(format!(
                    "{} agent streams are open, the most this collector takes (--max-streams); retry later",
                    self.pipeline.slots.max()
                )));
            }
            Err(Full::Share { held }) => {
                self.pipeline.metrics.limit_breach("stream_share");
                tracing::warn!(cluster = %zone.escape_debug(), held, "refused an agent stream past its cluster's share of the slots");
                return Err(Status::resource_exhausted(format!(
                    "this token's cluster holds {held} agent streams; the free ones are kept for other clusters (each is guaranteed {} of --max-streams {}); retry later",
                    self.pipeline.slots.guaranteed(),
                    self.pipeline.slots.max()
                )));
            }
        }
        let (tx, rx) = mpsc::channel(WINDOW);
        let keys = self.label_keys.current();
        let (p, announcer) = (self.pipeline.clone(), self.label_keys.clone());
        tokio::spawn(serve_stream(request.into_inner(), tx, p, bound, announcer, keys.clone()));
        let mut response: Response<Self::ReportStream> = Response::new(Box::pin(ReceiverStream::new(rx)));
        // This collector takes workloads by reference (see the proto).
        response.metadata_mut().insert(WORKLOAD_REFS_HEADER, tonic::metadata::MetadataValue::from_static("1"));
        // The largest message it reads.
        response.metadata_mut().insert(MAX_BATCH_BYTES_HEADER, MAX_BATCH_BYTES.into());
        // The label keys the catalog needs: bounded Kubernetes label keys, so always a valid header value.
        if !keys.is_empty()
            && let Ok(v) = keys.join(",").parse()
        {
            response.metadata_mut().insert(LABEL_KEYS_HEADER, v);
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::idle_allowance;
    use std::time::Duration;

    #[test]
    fn an_agent_with_long_intervals_may_stay_silent_for_three_of_them() {
        let timeout = Duration::from_secs(45);
        assert_eq!(idle_allowance(timeout, 15_000_000_000), timeout, "15 s intervals: the timeout");
        assert_eq!(idle_allowance(timeout, 60_000_000_000), Duration::from_secs(180));
        assert_eq!(idle_allowance(timeout, u64::MAX), Duration::from_secs(3 * 3_600), "bounded");
    }
}
