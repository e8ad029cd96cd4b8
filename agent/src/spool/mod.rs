//! The agent's durable queue of batches the collector has not acked yet.
//!
//! Each batch is one file in the spool directory, written to a temporary name, fsynced and renamed before
//! it is sent, and deleted once the collector acks it; so a batch survives an agent restart, a node
//! reboot or a collector outage, and keeps its agent, boot and sequence (the collector's deduplication
//! key). A record is `GCSP` · version · write time · length · CRC-32 · protobuf `UsageBatch`; one that
//! does not read back whole is moved to `quarantine/` and counted, never retried in a loop.
//!
//! Bounded by bytes, batches and age. Over a bound, the spool first merges the oldest consecutive
//! batches of the same holders into coarser ones (see [`merge`]), which keeps every GPU-second; only when
//! nothing is left to merge does it drop the oldest batch, counting the GPU-seconds dropped in its stats,
//! a metric and a log line. A batch already handed to a stream is never merged: the collector may have
//! stored it, and a merged batch overlapping it would be refused.
//!
//! Without a directory the same queue lives in memory only (tests, replays).

pub mod merge;

use std::collections::VecDeque;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gpucost_proto::v1::UsageBatch;
use prost::Message;

const MAGIC: &[u8; 4] = b"GCSP";
const VERSION: u8 = 1;
const HEADER: usize = 4 + 1 + 8 + 4 + 4;
const PROGRESS: &str = "progress";
const SENT_MARK: &str = "sent-mark";
const QUARANTINE: &str = "quarantine";

#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// Where batches are kept; `None`: in memory only.
    pub dir: Option<PathBuf>,
    /// Most bytes of batches kept.
    pub max_bytes: u64,
    /// Most batches kept.
    pub max_batches: usize,
    /// A batch written longer ago than this is dropped (counted).
    pub max_age: Duration,
    /// Longest interval a merge may make (the collector refuses longer ones: `max_interval`, 1 h).
    pub max_merged_ns: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            dir: None,
            max_bytes: 256 << 20,
            max_batches: 17_280,
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_merged_ns: 3_600_000_000_000,
        }
    }
}

/// What the spool did, as counters (shared with the agent's `/metrics`).
#[derive(Debug, Default)]
pub struct SpoolGauges {
    pub batches: AtomicU64,
    pub bytes: AtomicU64,
    pub merged: AtomicU64,
    pub dropped_batches: AtomicU64,
    pub dropped_held_gpu_ns: AtomicU64,
    pub dropped_observed_gpu_ns: AtomicU64,
    pub quarantined: AtomicU64,
    pub write_errors: AtomicU64,
    /// Batches the uplink trimmed to the collector's bounds (`fit`), and the processes it left out of them.
    pub trimmed_batches: AtomicU64,
    pub trimmed_processes: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool directory {dir}: {source}")]
    Dir { dir: PathBuf, source: std::io::Error },
    #[error(
        "spool directory {dir} is in use by another agent (its lock file is held); give each agent its own --spool-dir"
    )]
    Locked { dir: PathBuf },
}

enum Body {
    File(PathBuf),
    Memory(Box<UsageBatch>),
}

struct Entry {
    boot_id: String,
    seq: u64,
    first_seq: u64,
    start_ns: u64,
    end_ns: u64,
    bytes: u64,
    /// Which batches it may merge with ([`merge::signature`]), worked out when first needed.
    signature: Option<u64>,
    /// Found not mergeable with the next one despite equal signatures.
    apart: bool,
    written_ns: u64,
    sent: bool,
    body: Body,
}

pub struct Spool {
    config: SpoolConfig,
    entries: VecDeque<Entry>,
    bytes: u64,
    /// End of the newest batch ever handed to a stream (persisted): older ones are never merged.
    sent_mark_ns: u64,
    /// End of the newest batch that left the spool (acked, rejected or dropped), persisted before its file
    /// is deleted: with the files still there, where a resumable clock goes on from.
    progress_ns: u64,
    gauges: Arc<SpoolGauges>,
    /// Held for the spool's life: two agents on one directory would send each other's batches.
    _lock: Option<fs::File>,
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// CRC-32 (IEEE 802.3, as zlib and gzip), one table lookup per byte.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc = CRC_TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// A record's bytes: header and the batch.
fn encode(b: &UsageBatch, written_ns: u64) -> Vec<u8> {
    let payload = b.encode_to_vec();
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&written_ns.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let mut summed = written_ns.to_le_bytes().to_vec();
    summed.extend_from_slice(&payload);
    out.extend_from_slice(&crc32(&summed).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// The batch in a record and when it was written, or what is wrong with it.
fn decode(data: &[u8]) -> Result<(UsageBatch, u64), String> {
    if data.len() < HEADER {
        return Err(format!("{} bytes: shorter than a record header", data.len()));
    }
    if &data[..4] != MAGIC {
        return Err("not a spool record (bad magic)".into());
    }
    if data[4] != VERSION {
        return Err(format!("record version {} (this agent reads {VERSION})", data[4]));
    }
    let written = u64::from_le_bytes(data[5..13].try_into().map_err(|_| "header")?);
    let len = u32::from_le_bytes(data[13..17].try_into().map_err(|_| "header")?) as usize;
    let crc = u32::from_le_bytes(data[17..21].try_into().map_err(|_| "header")?);
    let payload = &data[HEADER..];
    if payload.len() != len {
        return Err(format!("{} bytes of batch where the header says {len} (a torn write?)", payload.len()));
    }
    let mut summed = data[5..13].to_vec();
    summed.extend_from_slice(payload);
    if crc32(&summed) != crc {
        return Err("checksum mismatch".into());
    }
    let b = UsageBatch::decode(payload).map_err(|e| format!("not a batch: {e}"))?;
    Ok((b, written))
}

/// Writes `data` to `path` durably: a temporary file, fsynced, renamed over `path`.
fn write_durably(dir: &Path, path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn safe_name(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).take(64).collect()
}

impl Spool {
    /// Opens (creating) the spool, reading back what a previous run left: the batches, oldest first, and
    /// where that run's sampling had got to (the end of its last interval), for a resumable clock.
    pub fn open(config: SpoolConfig, gauges: Arc<SpoolGauges>) -> Result<(Self, Option<u64>), SpoolError> {
        let mut spool =
            Self { config, entries: VecDeque::new(), bytes: 0, sent_mark_ns: 0, progress_ns: 0, gauges, _lock: None };
        let Some(dir) = spool.config.dir.clone() else { return Ok((spool, None)) };
        let err = |source| SpoolError::Dir { dir: dir.clone(), source };
        fs::create_dir_all(&dir).map_err(err)?;
        let lock =
            fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("lock")).map_err(err)?;
        if lock.try_lock().is_err() {
            return Err(SpoolError::Locked { dir });
        }
        spool._lock = Some(lock);
        let read_u64 = |name: &str| fs::read_to_string(dir.join(name)).ok().and_then(|s| s.trim().parse::<u64>().ok());
        spool.sent_mark_ns = read_u64(SENT_MARK).unwrap_or(0);
        spool.progress_ns = read_u64(PROGRESS).unwrap_or(0);
        let mut resume = read_u64(PROGRESS);
        let mut found = Vec::new();
        for item in fs::read_dir(&dir).map_err(err)? {
            let path = item.map_err(err)?.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("tmp") => {
                    // A write cut short: the batch it held is still in memory of nobody; it was never sent.
                    let _ = fs::remove_file(&path);
                }
                Some("batch") => match fs::read(&path).map_err(|e| e.to_string()).and_then(|d| decode(&d)) {
                    Ok((b, written)) => {
                        let bytes = fs::metadata(&path).map_or(0, |m| m.len());
                        found.push((b, written, bytes, path));
                    }
                    Err(problem) => spool.quarantine(&path, &problem),
                },
                _ => {}
            }
        }
        found.sort_by_key(|(b, ..)| (b.interval_start_unix_nanos, b.seq));
        // A merge cut short leaves the merged batch beside the ones it replaced: keep the merged one.
        let covered: Vec<(String, u64, u64)> =
            found.iter().map(|(b, ..)| (b.boot_id.clone(), merge::first_seq(b), b.seq)).collect();
        for (b, written, bytes, path) in found {
            let replaced =
                covered.iter().any(|(boot, first, last)| *boot == b.boot_id && *first <= b.seq && b.seq < *last);
            if replaced {
                let _ = fs::remove_file(&path);
                continue;
            }
            resume = resume.max(Some(b.interval_end_unix_nanos));
            spool.bytes += bytes;
            spool.entries.push_back(Entry {
                boot_id: b.boot_id.clone(),
                seq: b.seq,
                first_seq: merge::first_seq(&b),
                start_ns: b.interval_start_unix_nanos,
                end_ns: b.interval_end_unix_nanos,
                bytes,
                signature: Some(merge::signature(&b)),
                apart: false,
                written_ns: written,
                sent: b.interval_end_unix_nanos <= spool.sent_mark_ns,
                body: Body::File(path),
            });
        }
        if !spool.entries.is_empty() {
            tracing::info!(dir = %dir.display(), batches = spool.entries.len(), bytes = spool.bytes, "spool: sending what the last run left unacked first");
        }
        spool.relieve();
        spool.publish();
        Ok((spool, resume))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The counters it keeps (and the uplink adds to).
    pub fn gauges(&self) -> &SpoolGauges {
        &self.gauges
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Over a bound: a producer that can wait should.
    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.config.max_batches || self.bytes >= self.config.max_bytes
    }

    fn publish(&self) {
        self.gauges.batches.store(self.entries.len() as u64, Ordering::Relaxed);
        self.gauges.bytes.store(self.bytes, Ordering::Relaxed);
    }

    fn quarantine(&self, path: &Path, problem: &str) {
        self.gauges.quarantined.fetch_add(1, Ordering::Relaxed);
        let moved = path.parent().map(|d| d.join(QUARANTINE)).and_then(|q| {
            fs::create_dir_all(&q).ok()?;
            let to = q.join(path.file_name()?);
            fs::rename(path, &to).ok().map(|_| to)
        });
        match moved {
            Some(to) => {
                tracing::error!(file = %path.display(), moved_to = %to.display(), problem, "spool: a corrupt record was quarantined; it is not sent")
            }
            None => {
                let _ = fs::remove_file(path);
                tracing::error!(file = %path.display(), problem, "spool: a corrupt record could not be moved to quarantine; deleted")
            }
        }
    }

    /// A queue in memory only, of at most `max_batches`.
    pub fn memory(max_batches: usize) -> Self {
        let config = SpoolConfig { max_batches: max_batches.max(1), ..Default::default() };
        Self::open(config, Arc::default()).map(|(s, _)| s).expect("a spool without a directory opens")
    }

    /// Keeps `b` until it is acked: on disk when there is a spool directory (in memory if writing fails,
    /// e.g. a full disk), then brings the spool back within its bounds. How many of the oldest batches
    /// that took (merges never touch batches already sent; drops take the oldest).
    pub fn push(&mut self, b: UsageBatch) -> usize {
        let written = now_ns();
        // Encoded only when it goes to disk; in memory its size is worked out.
        let data = self.config.dir.as_ref().map(|_| encode(&b, written));
        let mut entry = Entry {
            boot_id: b.boot_id.clone(),
            seq: b.seq,
            first_seq: merge::first_seq(&b),
            start_ns: b.interval_start_unix_nanos,
            end_ns: b.interval_end_unix_nanos,
            bytes: data.as_ref().map_or(HEADER + b.encoded_len(), Vec::len) as u64,
            signature: None,
            apart: false,
            written_ns: written,
            sent: false,
            body: Body::Memory(Box::new(b)),
        };
        if let (Some(dir), Some(data)) = (self.config.dir.clone(), data) {
            let path = dir.join(format!("{}-{:020}.batch", safe_name(&entry.boot_id), entry.seq));
            let mut attempt = write_durably(&dir, &path, &data);
            if attempt.is_err() && self.make_room(entry.bytes) {
                attempt = write_durably(&dir, &path, &data);
            }
            match attempt {
                Ok(()) => entry.body = Body::File(path),
                Err(e) => {
                    self.gauges.write_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(dir = %dir.display(), seq = entry.seq, error = %e, "spool: cannot write a batch to disk; keeping it in memory until it is acked");
                }
            }
        }
        self.bytes += entry.bytes;
        self.entries.push_back(entry);
        let dropped = self.relieve();
        self.publish();
        dropped
    }

    /// Frees about `need` bytes by merging (never dropping); whether anything was freed.
    fn make_room(&mut self, need: u64) -> bool {
        let before = self.bytes;
        while before.saturating_sub(self.bytes) < need {
            if !self.merge_oldest() {
                break;
            }
        }
        self.bytes < before
    }

    fn over(&self) -> bool {
        self.entries.len() > self.config.max_batches || self.bytes > self.config.max_bytes
    }

    /// Back within bounds: too old batches dropped, then merges, then drops of the oldest; how many dropped.
    fn relieve(&mut self) -> usize {
        let now = now_ns();
        let max_age = self.config.max_age.as_nanos() as u64;
        let mut dropped = 0;
        while self.entries.front().is_some_and(|e| now.saturating_sub(e.written_ns) > max_age) {
            self.drop_front("older than the spool's maximum age (--spool-max-age)");
            dropped += 1;
        }
        while self.over() {
            if !self.merge_oldest() {
                self.drop_front("the spool is full (--spool-max-bytes / --max-pending) and nothing is left to merge");
                dropped += 1;
            }
        }
        dropped
    }

    fn drop_front(&mut self, why: &str) {
        let Some(e) = self.entries.pop_front() else { return };
        self.bytes -= e.bytes;
        let (held, observed) = self.read(&e).map_or((0, 0), |b| merge::gpu_time(&b));
        self.remove_body(&e);
        self.gauges.dropped_batches.fetch_add(1, Ordering::Relaxed);
        self.gauges.dropped_held_gpu_ns.fetch_add(held, Ordering::Relaxed);
        self.gauges.dropped_observed_gpu_ns.fetch_add(observed, Ordering::Relaxed);
        tracing::error!(
            seq = e.seq,
            boot = %e.boot_id,
            start_unix_nanos = e.start_ns,
            end_unix_nanos = e.end_ns,
            held_gpu_seconds = held as f64 / 1e9,
            observed_gpu_seconds = observed as f64 / 1e9,
            why,
            "spool: dropped a batch the collector never acked; these GPU-seconds are lost"
        );
    }

    /// The signature of the batch at `i`, worked out once; `None` if it no longer reads back (then it was
    /// quarantined and taken out).
    fn signature_at(&mut self, i: usize) -> Option<u64> {
        if let Some(sig) = self.entries.get(i)?.signature {
            return Some(sig);
        }
        let sig = merge::signature(&self.read_at(i)?);
        self.entries[i].signature = Some(sig);
        Some(sig)
    }

    /// Merges the oldest pair of mergeable neighbours; whether the spool changed.
    fn merge_oldest(&mut self) -> bool {
        let max = self.config.max_merged_ns;
        let mut i = 0;
        let found = loop {
            if i + 1 >= self.entries.len() {
                return false;
            }
            let (a, b) = (&self.entries[i], &self.entries[i + 1]);
            let cheap = !a.sent
                && !b.sent
                && !a.apart
                && a.boot_id == b.boot_id
                && a.end_ns == b.start_ns
                && b.end_ns - a.start_ns <= max;
            if cheap {
                let (Some(x), Some(y)) = (self.signature_at(i), self.signature_at(i + 1)) else {
                    // One of them could not be read and was quarantined: the spool changed.
                    return true;
                };
                if x == y {
                    break i;
                }
            }
            i += 1;
        };
        let i = found;
        let (Some(a), Some(b)) = (self.read_at(i), self.read_at(i + 1)) else {
            return true;
        };
        let Some(merged) = merge::merge(&a, &b) else {
            // Equal signatures but not mergeable (a pid that changed workload): keep them apart.
            self.entries[i].apart = true;
            return true;
        };
        let written = self.entries[i].written_ns.min(self.entries[i + 1].written_ns);
        let data = encode(&merged, written);
        let new_body = match &self.entries[i + 1].body {
            Body::File(path) => {
                let dir = self.config.dir.clone().unwrap_or_default();
                let mut written = write_durably(&dir, path, &data);
                if written.is_err()
                    && let Body::File(older) = &self.entries[i].body
                {
                    // A full disk: the older half's file makes room for the merged record (the merged
                    // batch is in memory meanwhile).
                    let _ = fs::remove_file(older);
                    written = write_durably(&dir, path, &data);
                }
                match written {
                    Ok(()) => Body::File(path.clone()),
                    Err(e) => {
                        self.gauges.write_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(error = %e, "spool: cannot write a merged batch; keeping it in memory until it is acked");
                        let _ = fs::remove_file(path);
                        Body::Memory(Box::new(merged.clone()))
                    }
                }
            }
            Body::Memory(_) => Body::Memory(Box::new(merged.clone())),
        };
        let old = self.entries.remove(i).expect("index checked");
        self.remove_body(&old);
        let b = &mut self.entries[i];
        self.bytes = self.bytes - old.bytes - b.bytes + data.len() as u64;
        b.bytes = data.len() as u64;
        b.first_seq = old.first_seq;
        b.start_ns = old.start_ns;
        b.written_ns = written;
        b.body = new_body;
        self.gauges.merged.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            first_seq = b.first_seq,
            seq = b.seq,
            seconds = (b.end_ns - b.start_ns) / 1_000_000_000,
            "spool: merged two batches"
        );
        true
    }

    /// Deletes a batch that leaves the spool, after recording that sampling got at least to its end.
    fn remove_body(&mut self, e: &Entry) {
        if let Body::File(path) = &e.body {
            self.advance_progress(e.end_ns);
            let _ = fs::remove_file(path);
        }
    }

    fn advance_progress(&mut self, end_ns: u64) {
        if end_ns <= self.progress_ns {
            return;
        }
        if let Some(dir) = &self.config.dir {
            match write_durably(dir, &dir.join(PROGRESS), end_ns.to_string().as_bytes()) {
                Ok(()) => self.progress_ns = end_ns,
                Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "spool: cannot record progress"),
            }
        }
    }

    /// The batch an entry holds, or what is wrong with its record.
    fn read(&self, e: &Entry) -> Result<UsageBatch, String> {
        match &e.body {
            Body::Memory(b) => Ok((**b).clone()),
            Body::File(path) => fs::read(path).map_err(|e| e.to_string()).and_then(|d| decode(&d)).map(|(b, _)| b),
        }
    }

    /// The batch at `i`; a record that no longer reads back is quarantined and taken out (`None`).
    fn read_at(&mut self, i: usize) -> Option<UsageBatch> {
        let problem = match self.read(self.entries.get(i)?) {
            Ok(b) => return Some(b),
            Err(problem) => problem,
        };
        let e = self.entries.remove(i)?;
        self.bytes -= e.bytes;
        if let Body::File(path) = &e.body {
            self.quarantine(path, &problem);
        }
        self.publish();
        None
    }

    /// The batch at `i` for sending, marked sent (persisted before it leaves: a sent batch is never
    /// merged again). `None` when `i` is past the end; a corrupt record is skipped over.
    pub fn take_for_send(&mut self, i: usize) -> Option<UsageBatch> {
        loop {
            if i >= self.entries.len() {
                return None;
            }
            if let Some(b) = self.read_at(i) {
                let end = self.entries[i].end_ns;
                self.entries[i].sent = true;
                if end > self.sent_mark_ns {
                    self.sent_mark_ns = end;
                    if let Some(dir) = &self.config.dir
                        && let Err(e) = write_durably(dir, &dir.join(SENT_MARK), end.to_string().as_bytes())
                    {
                        tracing::warn!(error = %e, "spool: cannot record what was sent");
                    }
                }
                return Some(b);
            }
        }
    }

    /// Forgets the batch (boot, seq) if it is among the first `sent` (those handed to the stream the ack came
    /// on); whether it was. An ack of anything else (a batch never sent on that stream, or far ahead of what
    /// was) forgets nothing: only an ack of a batch on the stream that carried it does.
    pub fn ack(&mut self, boot_id: &str, seq: u64, sent: usize) -> bool {
        let Some(at) = self.entries.iter().take(sent).position(|e| e.boot_id == boot_id && e.seq == seq) else {
            return false;
        };
        // Its progress written before its file goes.
        if matches!(self.entries[at].body, Body::File(_)) {
            self.advance_progress(self.entries[at].end_ns);
        }
        let e = self.entries.remove(at).expect("found");
        self.bytes -= e.bytes;
        self.remove_body(&e);
        self.publish();
        true
    }

    /// Takes out the batch with `seq` among the first `sent` (one the collector rejected on the stream that
    /// carried it); its (boot, seq). `None`, and nothing taken out, when no batch sent there has that seq.
    pub fn remove_rejected(&mut self, seq: u64, sent: usize) -> Option<(String, u64)> {
        let at = self.entries.iter().take(sent).position(|e| e.seq == seq)?;
        let e = self.entries.remove(at)?;
        self.bytes -= e.bytes;
        self.remove_body(&e);
        self.publish();
        Some((e.boot_id, e.seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpucost_proto::v1::{GpuAllocation, GpuDevice, GpuUsage, NodeInfo, WorkloadIdentity};

    const S: u64 = 1_000_000_000;

    fn batch(boot: &str, seq: u64, start_s: u64, holder: &str) -> UsageBatch {
        UsageBatch {
            agent_id: "n".into(),
            boot_id: boot.into(),
            seq,
            node: Some(NodeInfo {
                node_name: "n".into(),
                devices: vec![GpuDevice { uuid: "GPU-0".into(), memory_total_bytes: 1, ..Default::default() }],
                ..Default::default()
            }),
            interval_start_unix_nanos: start_s * S,
            interval_end_unix_nanos: (start_s + 15) * S,
            gpus: vec![GpuUsage { uuid: "GPU-0".into(), utilization_percent: 30.0, ..Default::default() }],
            allocations: vec![GpuAllocation {
                gpu_uuid: "GPU-0".into(),
                workload: Some(WorkloadIdentity { pod: holder.into(), ..Default::default() }),
                workload_ref: 0,
            }],
            ..Default::default()
        }
    }

    fn open(dir: &Path, max_batches: usize) -> (Spool, Option<u64>, Arc<SpoolGauges>) {
        let gauges = Arc::new(SpoolGauges::default());
        let config = SpoolConfig { dir: Some(dir.to_path_buf()), max_batches, ..Default::default() };
        let (s, resume) = Spool::open(config, gauges.clone()).expect("open");
        (s, resume, gauges)
    }

    fn held(s: &mut Spool) -> u64 {
        (0..s.len()).map(|i| merge::gpu_time(&s.read_at(i).expect("readable")).0).sum()
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn batches_survive_a_restart_in_order_and_leave_on_ack() {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut s, resume, _) = open(dir.path(), 100);
        assert_eq!(resume, None);
        for i in 0..5 {
            s.push(batch("b1", i + 1, i * 15, "p"));
        }
        assert_eq!(s.take_for_send(0).map(|b| b.seq), Some(1));
        assert_eq!(s.take_for_send(1).map(|b| b.seq), Some(2));
        assert!(s.ack("b1", 1, 2) && s.ack("b1", 2, 1));
        drop(s);
        let (mut s, resume, _) = open(dir.path(), 100);
        assert_eq!(resume, Some(75 * S), "the newest batch still spooled ends at 75 s");
        assert_eq!(s.len(), 3);
        let seqs: Vec<u64> = (0..3).map(|i| s.take_for_send(i).expect("batch").seq).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        assert!([3, 4, 5].iter().enumerate().all(|(i, &seq)| s.ack("b1", seq, 3 - i)));
        assert!(s.is_empty());
        drop(s);
        let (s, resume, _) = open(dir.path(), 100);
        assert_eq!((s.len(), resume), (0, Some(75 * S)), "all acked: progress says where sampling got to");
        let left: Vec<_> = fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "batch"))
            .collect();
        assert!(left.is_empty(), "acked batches are deleted: {left:?}");
    }

    #[test]
    fn an_ack_of_a_batch_never_sent_on_the_stream_forgets_nothing() {
        let mut s = Spool::memory(100);
        for i in 0..5 {
            s.push(batch("b1", i + 1, i * 15, "p"));
        }
        assert_eq!(s.take_for_send(0).map(|b| b.seq), Some(1));
        assert!(!s.ack("b1", 5, 1), "far ahead of what was sent");
        assert!(!s.ack("b0", 1, 1), "another boot");
        assert_eq!(s.len(), 5);
        assert!(s.ack("b1", 1, 1));
        assert_eq!(s.len(), 4);
        assert_eq!(s.take_for_send(0).map(|b| b.seq), Some(2), "the next one is still there to send");
    }

    #[test]
    fn a_rejection_takes_out_only_the_sent_batch_it_names() {
        let mut s = Spool::memory(100);
        for i in 0..3 {
            s.push(batch("b1", i + 1, i * 15, "p"));
        }
        assert!(s.take_for_send(0).is_some() && s.take_for_send(1).is_some());
        assert_eq!(s.remove_rejected(3, 2), None, "seq 3 was never sent");
        assert_eq!(s.remove_rejected(2, 2), Some(("b1".into(), 2)));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn over_its_bound_the_spool_merges_before_it_drops_and_keeps_every_gpu_second() {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut s, _, gauges) = open(dir.path(), 4);
        for i in 0..16 {
            s.push(batch("b1", i + 1, i * 15, "p"));
        }
        assert!(s.len() <= 4, "{}", s.len());
        assert_eq!(held(&mut s), 16 * 15 * S, "all 240 GPU-seconds are still there");
        assert_eq!(gauges.dropped_batches.load(Ordering::Relaxed), 0);
        assert!(gauges.merged.load(Ordering::Relaxed) >= 12);
        // The oldest are the coarsest; the newest keep their resolution.
        let first = s.read_at(0).expect("first");
        let last = s.read_at(s.len() - 1).expect("last");
        assert!(first.interval_end_unix_nanos - first.interval_start_unix_nanos >= 60 * S);
        assert_eq!(last.interval_end_unix_nanos - last.interval_start_unix_nanos, 15 * S);
        assert_eq!((merge::first_seq(&first), s.read_at(s.len() - 1).expect("last").seq), (1, 16));
        // And a restart reads the merged records back.
        drop(s);
        let (mut s, _, _) = open(dir.path(), 4);
        assert_eq!(held(&mut s), 16 * 15 * S);
    }

    #[test]
    fn when_nothing_can_merge_the_oldest_is_dropped_and_its_gpu_seconds_counted() {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut s, _, gauges) = open(dir.path(), 2);
        for i in 0..4 {
            // Every interval another holder: nothing may merge.
            s.push(batch("b1", i + 1, i * 15, &format!("p{i}")));
        }
        assert_eq!(s.len(), 2);
        assert_eq!(gauges.dropped_batches.load(Ordering::Relaxed), 2);
        assert_eq!(gauges.dropped_held_gpu_ns.load(Ordering::Relaxed), 30 * S);
        assert_eq!(s.take_for_send(0).map(|b| b.seq), Some(3));
    }

    #[test]
    fn sent_batches_are_never_merged_even_after_a_restart() {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut s, _, _) = open(dir.path(), 100);
        s.push(batch("b1", 1, 0, "p"));
        s.push(batch("b1", 2, 15, "p"));
        assert!(s.take_for_send(0).is_some() && s.take_for_send(1).is_some());
        drop(s);
        let (mut s, _, _) = open(dir.path(), 3);
        for i in 2..6 {
            s.push(batch("b1", i + 1, i * 15, "p"));
        }
        let first = s.read_at(0).expect("first");
        let second = s.read_at(1).expect("second");
        assert_eq!((first.seq, first.first_seq, second.seq, second.first_seq), (1, 0, 2, 0), "sent ones untouched");
        assert_eq!(held(&mut s), 6 * 15 * S);
    }

    #[test]
    fn a_corrupt_record_is_quarantined_and_the_rest_is_sent() {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut s, _, _) = open(dir.path(), 100);
        for i in 0..3 {
            s.push(batch("b1", i + 1, i * 15, "p"));
        }
        drop(s);
        let victim = dir.path().join(format!("b1-{:020}.batch", 2));
        let mut data = fs::read(&victim).expect("record");
        let n = data.len();
        data[n - 3] ^= 0xff;
        fs::write(&victim, data).expect("corrupt it");
        fs::write(dir.path().join("b1-00000000000000000009.tmp"), b"half a write").expect("torn temp file");
        let (mut s, _, gauges) = open(dir.path(), 100);
        assert_eq!(gauges.quarantined.load(Ordering::Relaxed), 1);
        assert_eq!(s.len(), 2);
        assert_eq!((s.take_for_send(0).map(|b| b.seq), s.take_for_send(1).map(|b| b.seq)), (Some(1), Some(3)));
        assert!(dir.path().join("quarantine").join(victim.file_name().expect("name")).exists());
        assert!(!dir.path().join("b1-00000000000000000009.tmp").exists());
    }

    #[test]
    fn a_merge_cut_short_keeps_the_merged_batch_only() {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut s, _, _) = open(dir.path(), 100);
        s.push(batch("b1", 1, 0, "p"));
        s.push(batch("b1", 2, 15, "p"));
        drop(s);
        // As if the agent died after writing the merged record over seq 2 but before deleting seq 1.
        let merged = merge::merge(&batch("b1", 1, 0, "p"), &batch("b1", 2, 15, "p")).expect("mergeable");
        fs::write(dir.path().join(format!("b1-{:020}.batch", 2)), encode(&merged, now_ns())).expect("write");
        let (mut s, _, _) = open(dir.path(), 100);
        assert_eq!(s.len(), 1);
        assert_eq!(held(&mut s), 30 * S);
    }

    #[test]
    fn without_a_directory_it_is_the_same_queue_in_memory() {
        let mut s = Spool::memory(3);
        for i in 0..9 {
            s.push(batch("b1", i + 1, i * 15, "p"));
        }
        assert!(s.len() <= 3);
        assert_eq!(held(&mut s), 9 * 15 * S);
    }
}
