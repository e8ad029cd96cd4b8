//! `demo`: the collector on a fresh SQLite file plus a simulated fleet (by default 3 clusters, 40 nodes,
//! 195 GPUs) streaming to it over real gRPC on loopback, exactly as real agents would. With `--backfill`,
//! a stretch of history is first replayed on a virtual clock through the same ingest path.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use gpucost_agent::sampler::{Clock, Sampler};
use gpucost_agent::sim::{Fleet, FleetSpec, SimSource};
use gpucost_agent::spool::Spool;
use gpucost_agent::uplink::UplinkConfig;
use gpucost_agent::wire::Framer;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::server::{ServeConfig, Server};

#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub serve: ServeConfig,
    /// Where the SQLite file goes; `None`: a temporary folder removed on exit.
    pub data_dir: Option<PathBuf>,
    pub fleet: FleetSpec,
    pub backfill: Option<Duration>,
    pub backfill_interval: Duration,
    /// Stop after the backfill instead of streaming live.
    pub backfill_only: bool,
    pub sample_interval: Duration,
    pub report_interval: Duration,
}

/// Replays `span` of history for every node, ending on an interval boundary at or before now.
async fn backfill(config: &DemoConfig, endpoint: &str, span: Duration) -> anyhow::Result<()> {
    let step = config.backfill_interval.as_nanos() as u64;
    let intervals = (span.as_nanos() as u64 / step).max(1);
    let end = gpucost_types::clock::now_ns() / step * step;
    let start = end - intervals * step;
    let began = Instant::now();
    println!(
        "backfilling {} of history ({} intervals of {} per node)…",
        humantime::format_duration(span),
        intervals,
        humantime::format_duration(config.backfill_interval)
    );
    let (_keep, never) = watch::channel(false);
    let mut nodes = JoinSet::new();
    for node in Fleet::generate(config.fleet).nodes {
        let framer = Framer::new(node.agent_id.clone(), format!("backfill-{start}"));
        let ticks = 5;
        let sampler = Sampler::new(
            Box::new(SimSource::new(node, step)),
            None,
            config.backfill_interval / ticks,
            config.backfill_interval,
            Clock::Virtual { start_unix_nanos: start, pace: Duration::ZERO },
        );
        let mut uplink = UplinkConfig::new(endpoint);
        uplink.hold_back = true;
        let spool = Spool::memory(2 * uplink.window);
        nodes.spawn(gpucost_agent::stream_node(sampler, framer, uplink, spool, Some(intervals), never.clone()));
    }
    let mut stats = gpucost_agent::uplink::UplinkStats::default();
    while let Some(r) = nodes.join_next().await {
        let s = r.context("a backfill node panicked")??;
        stats.stored += s.stored;
        stats.rejected += s.rejected;
    }
    anyhow::ensure!(stats.rejected == 0, "{} backfill batches were rejected; see the log", stats.rejected);
    println!("backfilled {} batches in {:.1} s", stats.stored, began.elapsed().as_secs_f64());
    Ok(())
}

pub async fn run(mut config: DemoConfig, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let temp = match &config.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create --data-dir {}", dir.display()))?;
            config.serve.db = dir.join("gpucost.db");
            None
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("gpucost-demo-")
                .tempdir()
                .context("cannot create a temporary data folder")?;
            config.serve.db = t.path().join("gpucost.db");
            Some(t)
        }
    };
    let server = Server::start(&config.serve, shutdown.clone()).await?;
    let endpoint = format!("http://{}", server.grpc_addr);
    let fleet = Fleet::generate(config.fleet);
    println!(
        "gpucost demo: {} simulated nodes with {} GPUs streaming to the collector",
        fleet.nodes.len(),
        fleet.gpu_count()
    );
    println!("  ledger     {}{}", config.serve.db.display(), if temp.is_some() { " (temporary)" } else { "" });
    println!("  gRPC       {endpoint}");
    println!("  dashboard  http://{}/", server.http_addr);
    println!("  usage API  http://{}/api/v1/usage?group_by=workload", server.http_addr);
    println!("  costs API  http://{}/api/v1/costs?group_by=namespace", server.http_addr);
    println!("  chargeback http://{}/api/v1/chargeback?group_by=team&format=csv", server.http_addr);
    println!("  budgets    http://{}/api/v1/budgets/status", server.http_addr);
    if let Some(span) = config.backfill {
        backfill(&config, &endpoint, span).await?;
        // The backfilled days summed now, as the daily-rollups job would over its next runs: reports and the
        // dashboard read a month from 30 daily sums rather than 720 hours each (BENCHMARKS.md).
        let (ledger, began) = (server.ledger.clone(), std::time::Instant::now());
        let days =
            tokio::task::spawn_blocking(move || ledger.build_daily_rollups(gpucost_types::clock::now_ns(), usize::MAX))
                .await?
                .context("summing the backfilled days")?;
        println!("summed {days} backfilled days into daily rollups in {:.1} s", began.elapsed().as_secs_f64());
        if config.backfill_only {
            return Ok(());
        }
    }
    let mut nodes = JoinSet::new();
    for node in fleet.nodes {
        let framer = Framer::new(node.agent_id.clone(), format!("demo-{}", gpucost_types::clock::now_ns()));
        let sampler = Sampler::new(
            Box::new(SimSource::new(node, config.report_interval.as_nanos() as u64)),
            None,
            config.sample_interval,
            config.report_interval,
            Clock::Wall { align: true },
        );
        nodes.spawn(gpucost_agent::stream_node(
            sampler,
            framer,
            UplinkConfig::new(endpoint.clone()),
            Spool::memory(5760),
            None,
            shutdown.clone(),
        ));
    }
    println!("streaming live every {}; Ctrl-C to stop", humantime::format_duration(config.report_interval));
    while let Some(r) = nodes.join_next().await {
        r.context("a simulated node panicked")??;
    }
    server.wait().await?;
    drop(temp);
    Ok(())
}
