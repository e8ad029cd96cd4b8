//! Streams batches to the collector over gRPC and forgets a batch only after the collector acked it.
//!
//! Batches wait in the spool (on disk, or in memory), oldest first. On (re)connect every unacked batch is sent again in
//! order; the collector recognises resends by (agent, boot, seq) and acks them without counting them
//! twice. A batch is forgotten only for an ack of that batch on the stream that carried it. A batch the
//! collector rejects as invalid (INVALID_ARGUMENT, trailer `gpucost-rejected-seq` naming a batch sent on that
//! stream) is dropped and logged: sending it again would be rejected again; a rejection that names no batch
//! sent there drops nothing (the stream is started again). Each batch is kept within the collector's bounds
//! as it is sent (`fit`): its message limit (header `gpucost-max-batch-bytes`, else the contract's), learned
//! again from a refusal for size. Connection failures back off
//! exponentially up to `backoff_max`; a collector that stops acking for `ack_timeout` is reconnected.
//! On a collector that takes workload references (response header `gpucost-workload-refs`), each batch is
//! encoded as it is handed to the stream: identities declared once per stream, then named by number
//! (`gpucost_proto::refs`); spooled batches keep theirs inline. The label keys a collector asks for (header
//! `gpucost-label-keys` as the stream opens, an ack's `label_keys` later) are handed to the pod watchers.

use std::time::Duration;

use gpucost_proto::codec::REJECTED_SEQ_TRAILER;
use gpucost_proto::label_keys::{LABEL_KEYS_HEADER, bound, parse_header};
use gpucost_proto::limits::{MAX_BATCH_BYTES, MAX_BATCH_BYTES_HEADER};
use gpucost_proto::refs::{WORKLOAD_REFS_HEADER, WorkloadRefs};
use gpucost_proto::v1::ingest_client::IngestClient;
use gpucost_proto::v1::{Ack, UsageBatch};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

use crate::identify::labels::CollectorKeys;
use crate::spool::Spool;

/// Identities an agent keeps declared on one stream (a node runs far fewer workloads at once).
const WORKLOAD_REFS_PER_STREAM: u32 = 1_024;

#[derive(Debug, Clone)]
pub struct UplinkConfig {
    /// `http://host:port` of the collector's gRPC listener.
    pub endpoint: String,
    /// When the spool is full, stop taking batches (the producer waits) instead of merging or dropping.
    /// For producers that can wait: replays and backfills on a virtual clock, never live sampling.
    pub hold_back: bool,
    /// Most batches sent and not yet acked.
    pub window: usize,
    pub connect_timeout: Duration,
    pub ack_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// The bearer token the collector knows this agent's cluster by.
    pub token: Option<String>,
    /// TLS to the collector (an `https://` endpoint): CA, and client certificate for mutual TLS.
    pub tls: Option<tonic::transport::ClientTlsConfig>,
    /// Where the label keys the collector asks for go (`None`: they are ignored).
    pub label_keys: Option<CollectorKeys>,
}

impl UplinkConfig {
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            hold_back: false,
            window: 64,
            connect_timeout: Duration::from_secs(5),
            ack_timeout: Duration::from_secs(60),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            token: None,
            tls: None,
            label_keys: None,
        }
    }
}

/// What happened to the batches, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UplinkStats {
    pub stored: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub reconnects: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("invalid collector URL {url:?}: {reason} (expected e.g. http://collector:50051)")]
    BadEndpoint { url: String, reason: String },
}

enum StreamEnd {
    /// Input closed and everything acked.
    Done,
    /// Connection or stream broke; back off and reconnect.
    Broken,
}

/// Runs until `batches` is closed and every batch in it, and in `spool`, has been acked (or rejected).
pub async fn run(
    config: UplinkConfig,
    spool: Spool,
    mut batches: mpsc::Receiver<UsageBatch>,
) -> Result<UplinkStats, UplinkError> {
    let mut endpoint = Endpoint::from_shared(config.endpoint.clone())
        .map_err(|e| UplinkError::BadEndpoint { url: config.endpoint.clone(), reason: e.to_string() })?;
    if let Some(tls) = &config.tls {
        endpoint = endpoint
            .tls_config(tls.clone())
            .map_err(|e| UplinkError::BadEndpoint { url: config.endpoint.clone(), reason: e.to_string() })?;
    }
    let endpoint = endpoint
        .connect_timeout(config.connect_timeout)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .tcp_nodelay(true);
    let mut queue = Queue::new(spool);
    let mut input_open = true;
    let mut backoff = config.backoff_min;
    loop {
        if !input_open && queue.spool.is_empty() {
            return Ok(queue.stats);
        }
        match endpoint.connect().await {
            Ok(channel) => {
                match stream(&config, IngestClient::new(channel), &mut queue, &mut batches, &mut input_open).await {
                    StreamEnd::Done => return Ok(queue.stats),
                    StreamEnd::Broken => {}
                }
                if queue.acked_since_connect {
                    backoff = config.backoff_min;
                }
            }
            Err(e) => {
                tracing::warn!(collector = %config.endpoint, error = %e, pending = queue.spool.len(), "cannot reach the collector; retrying")
            }
        }
        queue.stats.reconnects += 1;
        queue.sent = 0;
        // Keep taking batches while waiting, so sampling never stalls on a slow collector.
        let wait = tokio::time::sleep(backoff);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                _ = &mut wait => break,
                b = batches.recv(), if input_open && queue.has_room(config.hold_back) => match b {
                    Some(b) => queue.push(b),
                    None => input_open = false,
                },
            }
        }
        backoff = (backoff * 2).min(config.backoff_max);
    }
}

struct Queue {
    spool: Spool,
    /// How many of the oldest pending batches were sent on the current stream.
    sent: usize,
    stats: UplinkStats,
    /// Whether the current stream has acked anything: only then is the backoff reset.
    acked_since_connect: bool,
    /// The largest message the collector reads, bytes, as it last said (else the contract's).
    max_bytes: usize,
}

impl Queue {
    fn new(spool: Spool) -> Self {
        Self { spool, sent: 0, stats: UplinkStats::default(), acked_since_connect: false, max_bytes: MAX_BATCH_BYTES }
    }

    /// The batch at `i` of the spool as it goes on a stream: within the collector's bounds, its identities
    /// declared by reference where the stream takes them.
    fn take_for_send(&mut self, i: usize, refs: Option<&mut WorkloadRefs>) -> Option<UsageBatch> {
        let mut b = self.spool.take_for_send(i)?;
        let left_out = crate::fit::sanitize(&mut b);
        if let Some(refs) = refs {
            refs.encode(&mut b);
        }
        let trimmed = crate::fit::trim(&mut b, self.max_bytes);
        if left_out > 0 {
            tracing::warn!(
                seq = b.seq,
                labels = left_out,
                "left out label entries the collector would refuse (too long, control characters, over 128 in a map)"
            );
        }
        if trimmed != crate::fit::Trimmed::default() {
            let g = self.spool.gauges();
            g.trimmed_batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            g.trimmed_processes.fetch_add(trimmed.processes as u64, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(
                seq = b.seq,
                processes = trimmed.processes,
                allocations = trimmed.allocations,
                max_bytes = self.max_bytes,
                "a batch was over the collector's limits: sending it without its least used processes (their per-process detail is lost; the GPUs' time is not)"
            );
        }
        Some(b)
    }

    /// Whether to take another batch now: always, unless holding back with a full spool.
    fn has_room(&self, hold_back: bool) -> bool {
        !hold_back || !self.spool.is_full()
    }

    fn push(&mut self, b: UsageBatch) {
        // Merges never touch the batches sent on this stream, but a drop takes the oldest, sent or not.
        let dropped = self.spool.push(b);
        self.sent = self.sent.saturating_sub(dropped);
    }

    /// Forgets the batch `ack` names if it was sent on this stream; whether it was.
    fn ack(&mut self, ack: &Ack) -> bool {
        let forgot = self.spool.ack(&ack.boot_id, ack.seq, self.sent);
        if forgot {
            self.sent -= 1;
        }
        forgot
    }

    fn drop_rejected(&mut self, seq: u64) -> Option<(String, u64)> {
        let dropped = self.spool.remove_rejected(seq, self.sent)?;
        self.sent -= 1;
        Some(dropped)
    }
}

async fn stream(
    config: &UplinkConfig,
    mut client: IngestClient<tonic::transport::Channel>,
    queue: &mut Queue,
    batches: &mut mpsc::Receiver<UsageBatch>,
    input_open: &mut bool,
) -> StreamEnd {
    let (tx, rx) = mpsc::channel::<UsageBatch>(config.window.max(1));
    queue.sent = 0;
    queue.acked_since_connect = false;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(token) = &config.token {
        match format!("Bearer {token}").parse() {
            Ok(v) => {
                request.metadata_mut().insert("authorization", v);
            }
            Err(_) => tracing::error!("the agent token holds characters a header cannot carry; sending none"),
        }
    }
    // A collector that takes workload references gets each identity once per stream.
    let mut refs = None;
    let mut acks = match client.report(request).await {
        Ok(r) => {
            if r.metadata().get(WORKLOAD_REFS_HEADER).is_some() {
                refs = Some(WorkloadRefs::new(WORKLOAD_REFS_PER_STREAM));
            }
            if let Some(max) = max_bytes(r.metadata()) {
                queue.max_bytes = max;
            }
            if let Some(keys) = &config.label_keys {
                let header = r.metadata().get(LABEL_KEYS_HEADER).and_then(|v| v.to_str().ok());
                keys.hear(header.map(parse_header).unwrap_or_default());
            }
            r.into_inner()
        }
        Err(status) => {
            if matches!(status.code(), tonic::Code::Unauthenticated | tonic::Code::PermissionDenied) {
                tracing::error!(collector = %config.endpoint, message = status.message(), "the collector refused this agent's token (--token-file); retrying with backoff");
            } else {
                tracing::warn!(collector = %config.endpoint, code = ?status.code(), message = status.message(), "collector refused the stream");
            }
            return StreamEnd::Broken;
        }
    };
    let ack_deadline = tokio::time::sleep(config.ack_timeout);
    tokio::pin!(ack_deadline);
    loop {
        while queue.sent < config.window && tx.capacity() > 0 {
            let Some(b) = queue.take_for_send(queue.sent, refs.as_mut()) else { break };
            if tx.try_send(b).is_err() {
                if refs.is_some() {
                    // The batch may have declared identities that later batches would name: start over on a
                    // new stream rather than send them references the collector never got.
                    return StreamEnd::Broken;
                }
                break;
            }
            queue.sent += 1;
        }
        if !*input_open && queue.spool.is_empty() {
            return StreamEnd::Done;
        }
        tokio::select! {
            b = batches.recv(), if *input_open && queue.has_room(config.hold_back) => match b {
                Some(b) => queue.push(b),
                None => *input_open = false,
            },
            msg = acks.message() => match msg {
                Ok(Some(ack)) => {
                    if let (Some(keys), Some(asked)) = (&config.label_keys, &ack.label_keys) {
                        keys.hear(bound(asked.keys.iter().map(String::as_str)));
                    }
                    match gpucost_proto::v1::AckStatus::try_from(ack.status) {
                        Ok(gpucost_proto::v1::AckStatus::Duplicate) => queue.stats.duplicates += 1,
                        _ => queue.stats.stored += 1,
                    }
                    if queue.ack(&ack) {
                        queue.acked_since_connect = true;
                        ack_deadline.as_mut().reset(tokio::time::Instant::now() + config.ack_timeout);
                    } else {
                        tracing::warn!(collector = %config.endpoint, boot = %ack.boot_id.escape_debug(), seq = ack.seq, "an ack of a batch not sent on this stream; ignored");
                    }
                }
                Ok(None) => {
                    tracing::warn!(collector = %config.endpoint, "collector ended the stream");
                    return StreamEnd::Broken;
                }
                Err(status) if status.code() == tonic::Code::InvalidArgument => {
                    let seq = status.metadata().get(REJECTED_SEQ_TRAILER).and_then(|v| v.to_str().ok()).and_then(|s| s.parse().ok());
                    match seq.and_then(|seq| queue.drop_rejected(seq)) {
                        Some((_, seq)) => {
                            queue.stats.rejected += 1;
                            tracing::error!(seq, reason = status.message(), "collector rejected a batch as invalid; dropping it");
                        }
                        None => tracing::error!(named = ?seq, reason = status.message(), "collector rejected a batch it does not name among those sent on the stream; keeping them all and starting a new stream"),
                    }
                    return StreamEnd::Broken;
                }
                Err(status) if status.code() == tonic::Code::ResourceExhausted && max_bytes(status.metadata()).is_some() => {
                    queue.max_bytes = max_bytes(status.metadata()).unwrap_or(queue.max_bytes);
                    tracing::error!(collector = %config.endpoint, max_bytes = queue.max_bytes, reason = status.message(), "collector refused a message as too large; sending it again trimmed to its limit");
                    return StreamEnd::Broken;
                }
                Err(status) => {
                    tracing::warn!(collector = %config.endpoint, code = ?status.code(), message = status.message(), "stream broke");
                    return StreamEnd::Broken;
                }
            },
            _ = &mut ack_deadline, if queue.sent > 0 => {
                tracing::warn!(collector = %config.endpoint, timeout = ?config.ack_timeout, "no ack in time; reconnecting");
                return StreamEnd::Broken;
            }
        }
    }
}

/// The message limit a collector names in `md` (`gpucost-max-batch-bytes`), if any and sane.
fn max_bytes(md: &tonic::metadata::MetadataMap) -> Option<usize> {
    let max: usize = md.get(MAX_BATCH_BYTES_HEADER)?.to_str().ok()?.parse().ok()?;
    // Below a kilobyte nothing could be sent at all: not a limit to follow.
    (max >= 1 << 10).then_some(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpucost_proto::v1::{GpuAllocation, WorkloadIdentity};

    fn batch(seq: u64, holder: &str) -> UsageBatch {
        UsageBatch {
            boot_id: "b".into(),
            seq,
            interval_start_unix_nanos: seq * 15,
            interval_end_unix_nanos: seq * 15 + 15,
            allocations: vec![GpuAllocation {
                gpu_uuid: "GPU-0".into(),
                workload: Some(WorkloadIdentity { pod: holder.into(), ..Default::default() }),
                workload_ref: 0,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_drop_under_pressure_keeps_the_sent_count_on_the_batches_actually_sent() {
        let mut q = Queue::new(Spool::memory(2));
        q.push(batch(1, "a"));
        q.push(batch(2, "b"));
        assert_eq!(q.spool.take_for_send(0).map(|b| b.seq), Some(1));
        assert_eq!(q.spool.take_for_send(1).map(|b| b.seq), Some(2));
        q.sent = 2;
        // Nothing can merge (other holders): the oldest, already sent, is dropped.
        q.push(batch(3, "c"));
        assert_eq!(q.sent, 1, "batch 2 is still the one sent; batch 3 is next");
        assert_eq!(q.spool.take_for_send(q.sent).map(|b| b.seq), Some(3));
        assert!(q.ack(&Ack { boot_id: "b".into(), seq: 2, status: 1, label_keys: None }));
        assert_eq!(q.sent, 0);
    }
}
