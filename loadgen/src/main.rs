//! `gpucost-loadgen`: simulates a GPU fleet of up to tens of thousands of nodes against a collector over
//! real gRPC (one agent stream per node, reporting every interval), and reports acked throughput and ack
//! latency, with the collector's CPU per process-sample and memory when given its pid. With `--exporter-port`
//! it also serves the same per-process series in Prometheus's text format, for a side-by-side run with a
//! real Prometheus scraping them (`--prometheus-pid`, `--prometheus-url`). See BENCHMARKS.md and
//! `scripts/bench-fleet`.

mod drive;
mod exporter;
mod fleet;
mod measure;

use std::time::Duration;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "gpucost-loadgen", about = "Simulated GPU nodes streaming usage to a gpucost collector", version)]
struct Args {
    /// The collector's gRPC URL.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    collector: String,
    /// An agent token (sent as `authorization: Bearer …`); none for a collector run with --insecure.
    #[arg(long, env = "GPUCOST_AGENT_TOKEN")]
    token: Option<String>,
    /// Simulated nodes (one agent stream each).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    nodes: u64,
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=64))]
    gpus_per_node: u64,
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    processes_per_gpu: u64,
    /// Pods per node, sharing its GPUs.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pods_per_node: u64,
    /// Chance that a pod is replaced by a new one at each interval.
    #[arg(long, default_value_t = 0.01)]
    churn: f64,
    /// How often each node reports.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Intervals each node reports, warm-up included.
    #[arg(long, default_value_t = 4)]
    intervals: u64,
    /// Intervals before the measured window.
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// Agent streams per HTTP/2 connection.
    #[arg(long, default_value_t = 100)]
    streams_per_connection: usize,
    /// Send each process's whole identity with it, as agents did before workload references (for
    /// before/after figures), even to a collector that takes references.
    #[arg(long)]
    inline_identities: bool,
    #[arg(long, default_value = "loadgen")]
    cluster: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The collector's pid: its CPU and memory over the measured window are reported.
    #[arg(long)]
    collector_pid: Option<u32>,
    /// The collector's PostgreSQL postmaster: its and its backends' CPU over the measured window.
    #[arg(long)]
    database_pid: Option<u32>,
    /// Serve the fleet's per-process series for Prometheus on this port (and the next shards-1).
    #[arg(long)]
    exporter_port: Option<u16>,
    #[arg(long, default_value_t = 10)]
    exporter_shards: usize,
    /// Only serve the exporter (no gRPC load), until killed.
    #[arg(long)]
    exporter_only: bool,
    /// Prometheus's pid and URL: its CPU, memory and appended samples over the same window.
    #[arg(long, requires = "prometheus_url")]
    prometheus_pid: Option<u32>,
    #[arg(long)]
    prometheus_url: Option<String>,
    /// Write the report (JSON) here as well.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!((0.0..=1.0).contains(&a.churn), "--churn {} is not a probability (0..=1)", a.churn);
    anyhow::ensure!(
        a.interval >= Duration::from_millis(100),
        "--interval {:?} is too short (at least 100ms)",
        a.interval
    );
    let shape = fleet::Shape {
        nodes: a.nodes as usize,
        gpus_per_node: a.gpus_per_node as usize,
        procs_per_gpu: a.processes_per_gpu as usize,
        pods_per_node: a.pods_per_node.min(a.gpus_per_node) as usize,
        churn: a.churn,
        cluster: a.cluster.clone(),
        seed: a.seed,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        if let Some(port) = a.exporter_port {
            let (shape, interval, shards) = (shape.clone(), a.interval, a.exporter_shards.max(1));
            let exporter =
                tokio::spawn(async move { exporter::serve(shape, interval, "127.0.0.1", port, shards).await });
            if a.exporter_only {
                return exporter.await?;
            }
        }
        let report = drive::run(drive::Options {
            url: a.collector.clone(),
            token: a.token.clone(),
            shape,
            interval: a.interval,
            intervals: a.intervals,
            warmup: a.warmup,
            streams_per_connection: a.streams_per_connection,
            inline_identities: a.inline_identities,
            collector_pid: a.collector_pid,
            database_pid: a.database_pid,
            prometheus: a.prometheus_pid.zip(a.prometheus_url.clone()),
        })
        .await?;
        let text = serde_json::to_string_pretty(&report)?;
        println!("{text}");
        if let Some(path) = &a.json {
            std::fs::write(path, &text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        }
        let failed = report["batches"]["failed"].as_u64().unwrap_or(0);
        anyhow::ensure!(failed == 0, "{failed} batches were not acked: {}", report["batches"]["first_error"]);
        Ok(())
    })
}
