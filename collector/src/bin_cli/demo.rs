//! `demo`: the collector with a simulated fleet streaming to it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use gpucost_agent::sim::FleetSpec;
use gpucost_collector::demo::DemoConfig;
use gpucost_rules::book::PriceBook;
use gpucost_rules::catalog::Catalog;
use tokio::sync::watch;

use super::ledger_args::LedgerArgs;
use super::prices::warn_unmatched;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// gRPC listen address the simulated agents stream to (loopback).
    #[arg(long, default_value = "127.0.0.1:50051")]
    grpc: SocketAddr,
    /// HTTP listen address of the dashboard and the API (loopback).
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Keep the ledger here (default: a fresh temporary folder, removed on exit).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// First replay this much history (e.g. 30d) through the same ingest path.
    #[arg(long, value_parser = humantime::parse_duration)]
    backfill: Option<Duration>,
    /// Interval length used for the backfill.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    backfill_interval: Duration,
    /// Exit once the backfill is stored (for benchmarks and scripted set-ups).
    #[arg(long, requires = "backfill")]
    backfill_only: bool,
    /// How often each simulated agent samples its GPUs.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    sample_interval: Duration,
    /// How often each simulated agent sends a batch (the live part, after any backfill).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    report_interval: Duration,
    /// Seed of the simulated fleet: the same seed gives the same nodes, GPUs and workloads.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Kubernetes clusters the simulated nodes are spread over.
    #[arg(long, default_value_t = 3)]
    clusters: u32,
    /// Simulated GPU nodes, each streaming as its own agent over gRPC.
    #[arg(long, default_value_t = 40)]
    nodes: u32,
    #[command(flatten)]
    ledger: LedgerArgs,
}

impl DemoArgs {
    /// What `config check` checks of a demo file: the fleet, the owner rules and catalog, the budgets.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.nodes > 0, "--nodes must be at least 1");
        self.ledger.owners(None)?;
        self.ledger.budget_config()?;
        Ok(())
    }
}

/// `demo`: the demo prices and budgets unless files are given, the example catalog, an open collector; runs
/// until `stop`.
pub(crate) async fn demo(a: DemoArgs, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    anyhow::ensure!(a.nodes > 0, "--nodes must be at least 1");
    let prices = match &a.ledger.prices {
        Some(path) => gpucost_collector::files::price_book(Some(path)),
        None => PriceBook::with_file_text(Some(include_str!("../../../rules/data/demo-prices.toml")))
            .map_err(|e| format!("demo prices: {e}")),
    }
    .map_err(anyhow::Error::msg)?;
    warn_unmatched(a.ledger.prices.as_deref(), &prices, None);
    let mut budgets = a.ledger.budget_config()?;
    if a.ledger.budgets.is_none() {
        budgets.from_file = gpucost_rules::budget_spec::from_toml(
            "examples/budgets.toml",
            include_str!("../../../examples/budgets.toml"),
        )
        .map_err(anyhow::Error::msg)?;
        budgets.rules = gpucost_rules::alert_spec::from_toml(
            "examples/budgets.toml",
            include_str!("../../../examples/budgets.toml"),
        )
        .map_err(anyhow::Error::msg)?;
        budgets.file = Some("examples/budgets.toml".into());
    }
    let mut config = DemoConfig {
        serve: a.ledger.serve_config(
            a.grpc,
            a.http,
            PathBuf::new(),
            prices,
            a.ledger.owners(Some(Catalog::example()))?,
        ),
        data_dir: a.data_dir,
        fleet: FleetSpec { seed: a.seed, clusters: a.clusters, nodes: a.nodes },
        backfill: a.backfill,
        backfill_interval: a.backfill_interval,
        backfill_only: a.backfill_only,
        sample_interval: a.sample_interval,
        report_interval: a.report_interval,
    };
    config.serve.budgets = budgets;
    config.serve.auth = Arc::new(a.ledger.auth_config(true)?);
    // The demo's own simulated agents replay history as fast as the ledger takes it.
    config.serve.max_agent_batches_per_minute = 0;
    gpucost_collector::demo::run(config, stop).await
}
