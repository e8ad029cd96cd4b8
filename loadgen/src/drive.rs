//! Drives the collector: one `Ingest/Report` stream per simulated node, over a few shared HTTP/2
//! connections, each node sending its interval's batch once the interval has ended, at an offset of its
//! own within the interval (a real fleet's agents do not all report at the same instant). Acks are timed
//! from send to ack; intervals after the warm-up make the measured window, over which the collector's
//! (and Prometheus's) CPU and memory are read from /proc.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gpucost_proto::refs::{WORKLOAD_REFS_HEADER, WorkloadRefs};
use gpucost_proto::v1::ingest_client::IngestClient;
use gpucost_proto::v1::{AckStatus, UsageBatch};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use crate::fleet::{Node, Shape};
use crate::measure;

#[derive(Debug, Clone)]
pub struct Options {
    pub url: String,
    pub token: Option<String>,
    pub shape: Shape,
    pub interval: Duration,
    /// Intervals each node reports, warm-up included.
    pub intervals: u64,
    /// Intervals before the measured window (new nodes, GPUs and workloads are stored then).
    pub warmup: u64,
    pub streams_per_connection: usize,
    /// Send every identity with each process, as agents before workload references did, even to a
    /// collector that takes references.
    pub inline_identities: bool,
    pub collector_pid: Option<u32>,
    /// The collector's PostgreSQL (its postmaster): its and its backends' CPU over the same window.
    pub database_pid: Option<u32>,
    /// Prometheus scraping the exporter in the same run: its pid and its URL.
    pub prometheus: Option<(u32, String)>,
}

#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    stored: AtomicU64,
    duplicate: AtomicU64,
    failed: AtomicU64,
    measured_batches: AtomicU64,
    measured_process_samples: AtomicU64,
    latencies_ms: Mutex<Vec<f64>>,
    warmup_latencies_ms: Mutex<Vec<f64>>,
    first_error: Mutex<Option<String>>,
}

fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Sleeps until unix time `at`.
async fn sleep_until_unix(at: Duration) {
    if let Some(wait) = at.checked_sub(unix_now()) {
        tokio::time::sleep(wait).await;
    }
}

struct InFlight {
    seq: u64,
    sent: Instant,
    processes: u64,
    measured: bool,
}

#[allow(clippy::too_many_arguments)]
async fn node_stream(
    shape: Arc<Shape>,
    index: usize,
    channel: Channel,
    token: Option<Arc<str>>,
    first: u64,
    o: Arc<Options>,
    stats: Arc<Stats>,
) {
    let interval_ns = o.interval.as_nanos() as u64;
    let offset = Duration::from_nanos(interval_ns / shape.nodes.max(1) as u64 * index as u64);
    let mut node = Node::new(&shape, index, first);
    let fail = |e: String, lost: u64| {
        stats.failed.fetch_add(lost, Ordering::Relaxed);
        let mut first = stats.first_error.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(format!("node {index}: {e}"));
        }
    };
    // Identities declared once per stream when the collector takes references, as the agent does.
    let mut refs = None;
    // Opening the stream is retried a few times, as an agent retries with backoff: thousands of nodes connecting at
    // the same instant can overflow the collector's accept queue.
    let mut attempt = 0;
    let (tx, mut acks) = loop {
        let (tx, rx) = mpsc::channel::<UsageBatch>(8);
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        if let Some(t) = &token
            && let Ok(v) = format!("Bearer {t}").parse()
        {
            request.metadata_mut().insert("authorization", v);
        }
        match IngestClient::new(channel.clone()).report(request).await {
            Ok(r) => {
                if !o.inline_identities && r.metadata().get(WORKLOAD_REFS_HEADER).is_some() {
                    refs = Some(WorkloadRefs::new(1_024));
                }
                break (tx, r.into_inner());
            }
            Err(e)
                if matches!(e.code(), tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled)
                    && attempt < 5 =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
            Err(e) => return fail(format!("{} {}", e.code(), e.message()), o.intervals),
        }
    };
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let on_ack = |ack: gpucost_proto::v1::Ack, in_flight: &mut VecDeque<InFlight>| {
        let Some(f) = in_flight.pop_front() else { return };
        if f.seq != ack.seq {
            fail(format!("ack for seq {} while {} was the oldest unacked", ack.seq, f.seq), 0);
        }
        let ms = f.sent.elapsed().as_secs_f64() * 1e3;
        match AckStatus::try_from(ack.status) {
            Ok(AckStatus::Duplicate) => stats.duplicate.fetch_add(1, Ordering::Relaxed),
            _ => stats.stored.fetch_add(1, Ordering::Relaxed),
        };
        if f.measured {
            stats.measured_batches.fetch_add(1, Ordering::Relaxed);
            stats.measured_process_samples.fetch_add(f.processes, Ordering::Relaxed);
            stats.latencies_ms.lock().unwrap_or_else(|p| p.into_inner()).push(ms);
        } else {
            stats.warmup_latencies_ms.lock().unwrap_or_else(|p| p.into_inner()).push(ms);
        }
    };
    for j in 0..o.intervals {
        let k = first + j;
        let send_at = Duration::from_nanos((k + 1) * interval_ns) + offset;
        let wait = sleep_until_unix(send_at);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                _ = &mut wait => break,
                ack = acks.message() => match ack {
                    Ok(Some(a)) => on_ack(a, &mut in_flight),
                    Ok(None) => return fail("the collector ended the stream".into(), o.intervals - j + in_flight.len() as u64),
                    Err(e) => return fail(format!("{} {}", e.code(), e.message()), o.intervals - j + in_flight.len() as u64),
                },
            }
        }
        node.advance_to(&shape, k);
        let mut batch = node.batch(&shape, k, interval_ns, j + 1);
        if let Some(refs) = &mut refs {
            refs.encode(&mut batch);
        }
        let processes = batch.processes.len() as u64;
        in_flight.push_back(InFlight { seq: j + 1, sent: Instant::now(), processes, measured: j >= o.warmup });
        stats.sent.fetch_add(1, Ordering::Relaxed);
        if tx.send(batch).await.is_err() {
            return fail("the stream closed".into(), o.intervals - j);
        }
    }
    drop(tx);
    while !in_flight.is_empty() {
        match tokio::time::timeout(o.interval * 4, acks.message()).await {
            Ok(Ok(Some(a))) => on_ack(a, &mut in_flight),
            Ok(Ok(None)) => return fail("the collector ended the stream before acking".into(), in_flight.len() as u64),
            Ok(Err(e)) => return fail(format!("{} {}", e.code(), e.message()), in_flight.len() as u64),
            Err(_) => return fail("no ack within four intervals".into(), in_flight.len() as u64),
        }
    }
}

/// What Prometheus has appended so far (all sample types), from its own /metrics.
fn prometheus_samples(url: &str) -> Option<f64> {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(10))).build().into();
    let text = agent.get(&format!("{url}/metrics")).call().ok()?.body_mut().read_to_string().ok()?;
    let samples: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("prometheus_tsdb_head_samples_appended_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!samples.is_empty()).then(|| samples.iter().sum())
}

/// A reading of the measured processes at one instant.
#[derive(Debug, Clone, Copy, Default)]
struct Reading {
    collector_cpu: f64,
    database_cpu: f64,
    prometheus_cpu: f64,
    prometheus_samples: f64,
    own_cpu: f64,
}

async fn read(o: &Options) -> Reading {
    let prom = o.prometheus.clone();
    let samples = match &prom {
        Some((_, url)) => {
            let url = url.clone();
            tokio::task::spawn_blocking(move || prometheus_samples(&url)).await.ok().flatten().unwrap_or(0.0)
        }
        None => 0.0,
    };
    Reading {
        collector_cpu: o.collector_pid.and_then(measure::cpu_seconds).unwrap_or(0.0),
        database_cpu: o.database_pid.and_then(measure::tree_cpu_seconds).unwrap_or(0.0),
        prometheus_cpu: prom.and_then(|(pid, _)| measure::cpu_seconds(pid)).unwrap_or(0.0),
        prometheus_samples: samples,
        own_cpu: measure::own_cpu_seconds(),
    }
}

/// Runs the load and reports what it measured.
pub async fn run(o: Options) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(o.warmup < o.intervals, "--warmup ({}) must be less than --intervals ({})", o.warmup, o.intervals);
    let o = Arc::new(o);
    let shape = Arc::new(o.shape.clone());
    let interval_ns = o.interval.as_nanos() as u64;
    let first = unix_now().as_nanos() as u64 / interval_ns;
    let connections = shape.nodes.div_ceil(o.streams_per_connection.max(1)).max(1);
    let endpoint = Endpoint::from_shared(o.url.clone())?
        .http2_adaptive_window(true)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10));
    let channels: Vec<Channel> = (0..connections).map(|_| endpoint.connect_lazy()).collect();
    let stats = Arc::new(Stats::default());
    let token: Option<Arc<str>> = o.token.as_deref().map(Arc::from);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..shape.nodes {
        tasks.spawn(node_stream(
            shape.clone(),
            i,
            channels[i % connections].clone(),
            token.clone(),
            first,
            o.clone(),
            stats.clone(),
        ));
    }
    // The measured window opens when the first measured interval's batches start to go out.
    let window_opens = Duration::from_nanos((first + o.warmup + 1) * interval_ns);
    let o2 = o.clone();
    let opening = tokio::spawn(async move {
        sleep_until_unix(window_opens).await;
        let rss = o2.collector_pid.and_then(|p| measure::status_kib(p, "VmRSS"));
        (Instant::now(), read(&o2).await, rss)
    });
    let mut collector_rss_kib: Vec<u64> = Vec::new();
    let mut prometheus_rss_kib: Vec<u64> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            joined = tasks.join_next() => if joined.is_none() { break },
            _ = tick.tick() => {
                if let Some(k) = o.collector_pid.and_then(|p| measure::status_kib(p, "VmRSS")) { collector_rss_kib.push(k) }
                if let Some(k) = o.prometheus.as_ref().and_then(|(p, _)| measure::status_kib(*p, "VmRSS")) { prometheus_rss_kib.push(k) }
            }
        }
    }
    let (opened_at, at_open, _) = opening.await?;
    let at_close = read(&o).await;
    let window_s = opened_at.elapsed().as_secs_f64();
    let samples = stats.measured_process_samples.load(Ordering::Relaxed) as f64;
    let batches = stats.measured_batches.load(Ordering::Relaxed) as f64;
    let mut latencies = std::mem::take(&mut *stats.latencies_ms.lock().unwrap_or_else(|p| p.into_inner()));
    let mut warmup = std::mem::take(&mut *stats.warmup_latencies_ms.lock().unwrap_or_else(|p| p.into_inner()));
    let collector_cpu = at_close.collector_cpu - at_open.collector_cpu;
    let per_sample_us = |cpu: f64, n: f64| if n > 0.0 { (cpu / n * 1e6 * 100.0).round() / 100.0 } else { 0.0 };
    let mib = |k: Option<u64>| k.map(|k| (k as f64 / 1024.0 * 10.0).round() / 10.0);
    let processes_per_node = shape.processes_per_node() as f64;
    let mut report = serde_json::json!({
        "nodes": shape.nodes,
        "gpus_per_node": shape.gpus_per_node,
        "processes_per_gpu": shape.procs_per_gpu,
        "pods_per_node": shape.pods_per_node,
        "churn": shape.churn,
        "interval_s": o.interval.as_secs_f64(),
        "intervals": o.intervals,
        "warmup_intervals": o.warmup,
        "connections": connections,
        "wall_s": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        "batches": {
            "sent": stats.sent.load(Ordering::Relaxed),
            "stored": stats.stored.load(Ordering::Relaxed),
            "duplicate": stats.duplicate.load(Ordering::Relaxed),
            "failed": stats.failed.load(Ordering::Relaxed),
            "first_error": stats.first_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        },
        "window": {
            "seconds": (window_s * 100.0).round() / 100.0,
            "batches_acked": batches,
            "process_samples_acked": samples,
            "acked_batches_per_s": (batches / window_s * 10.0).round() / 10.0,
            "process_samples_per_s": (samples / window_s).round(),
            "offered_batches_per_s": (shape.nodes as f64 / o.interval.as_secs_f64() * 10.0).round() / 10.0,
        },
        "ack_latency_ms": measure::percentiles(&mut latencies),
        "warmup_ack_latency_ms": measure::percentiles(&mut warmup),
        "loadgen": { "cpu_s": ((at_close.own_cpu - at_open.own_cpu) * 100.0).round() / 100.0 },
    });
    if let Some(pid) = o.collector_pid {
        report["collector"] = serde_json::json!({
            "cpu_s": (collector_cpu * 100.0).round() / 100.0,
            "cpu_cores": (collector_cpu / window_s * 1000.0).round() / 1000.0,
            "cpu_us_per_process_sample": per_sample_us(collector_cpu, samples),
            "peak_rss_mib": mib(measure::status_kib(pid, "VmHWM")),
            "rss_mib_max_sampled": mib(collector_rss_kib.iter().max().copied()),
        });
    }
    if o.database_pid.is_some() {
        let cpu = at_close.database_cpu - at_open.database_cpu;
        report["database"] = serde_json::json!({
            "cpu_s": (cpu * 100.0).round() / 100.0,
            "cpu_cores": (cpu / window_s * 1000.0).round() / 1000.0,
            "cpu_us_per_process_sample": per_sample_us(cpu, samples),
        });
    }
    if let Some((pid, _)) = &o.prometheus {
        let cpu = at_close.prometheus_cpu - at_open.prometheus_cpu;
        let appended = at_close.prometheus_samples - at_open.prometheus_samples;
        // A process-sample's worth of Prometheus samples: its 3 process series and its share of its GPU's 5.
        let per_process_sample = 3.0 + 5.0 / shape.procs_per_gpu as f64;
        let process_samples = appended / per_process_sample;
        report["prometheus"] = serde_json::json!({
            "cpu_s": (cpu * 100.0).round() / 100.0,
            "cpu_cores": (cpu / window_s * 1000.0).round() / 1000.0,
            "samples_appended": appended,
            "cpu_us_per_sample": per_sample_us(cpu, appended),
            "process_samples": process_samples.round(),
            "cpu_us_per_process_sample": per_sample_us(cpu, process_samples),
            "peak_rss_mib": mib(measure::status_kib(*pid, "VmHWM")),
            "rss_mib_max_sampled": mib(prometheus_rss_kib.iter().max().copied()),
            "series_per_node": processes_per_node * 3.0 + shape.gpus_per_node as f64 * 5.0,
        });
        if collector_cpu > 0.0 && samples > 0.0 && process_samples > 0.0 {
            let ratio = per_sample_us(cpu, process_samples) / per_sample_us(collector_cpu, samples);
            report["prometheus_to_collector_cpu_ratio"] = serde_json::json!((ratio * 100.0).round() / 100.0);
        }
    }
    Ok(report)
}
