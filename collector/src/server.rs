//! `serve`: the ledger, the gRPC ingest listener and the HTTP listener, started together and stopped
//! together. Raw per-interval rows older than the retention are pruned every few minutes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gpucost_proto::v1::ingest_server::IngestServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::api::{self, AppState};
use crate::cost::book::PriceBook;
use crate::discover::SharedInventory;
#[cfg(feature = "aws")]
use crate::discover::aws::AwsDiscovery;
use crate::ingest::service::{IngestService, Pipeline};
use crate::ingest::validate::Limits;
use crate::ledger::Ledger;
use crate::ledger::sqlite::SqliteLedger;
use crate::ledger::writer::WriterHandle;
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub db: PathBuf,
    pub bucket: Duration,
    pub raw_retention: Duration,
    pub limits: Limits,
    /// The prices in force (catalogue + prices file), loaded and checked at start-up.
    pub prices: Arc<PriceBook>,
    /// AWS discovery, when enabled.
    pub discovery: Option<DiscoveryConfig>,
    /// The catalog and rules that name owners, when configured.
    pub owners: Option<crate::enrich::SharedOwners>,
    /// Writing costs back to MLflow, when configured.
    pub mlflow: Option<MlflowConfig>,
    /// Syncing the catalog from Backstage, when configured (needs `owners`).
    pub backstage: Option<BackstageConfig>,
    /// Cost centres and the parties of the FOCUS export.
    pub reports: crate::api_reports::ReportConfig,
    /// Budgets from the config file, the evaluation interval and the notifiers.
    pub budgets: crate::budget::engine::BudgetConfig,
    /// At most this many series per labelled metric family on `/metrics`.
    pub metrics_max_series: usize,
    /// Agent and API tokens (or `--insecure`).
    pub auth: Arc<crate::auth::Auth>,
    /// TLS for the gRPC port (required unless `--insecure` or `grpc_plaintext`).
    pub tls: Option<crate::tls::TlsFiles>,
    /// Plain-text gRPC although tokens are required: TLS ends at a proxy in front (an ALB).
    pub grpc_plaintext: bool,
    /// Agent streams open at once, at most.
    pub max_streams: usize,
    /// Batches per agent stream per minute, at most, kept per cluster (0: no limit).
    pub max_agent_batches_per_minute: u32,
    /// Longest an HTTP request may take (the live stream excepted).
    pub http_timeout: Duration,
    /// An agent stream on which nothing is sent or acked for this long is closed.
    pub stream_idle_timeout: Duration,
    /// Longest a gRPC connection may take for its TLS handshake and its HTTP/2 preface, and an HTTP one for
    /// a request's headers.
    pub handshake_timeout: Duration,
    /// Connections each port holds at once, at most (checked against the open-file limit at start).
    pub max_grpc_connections: usize,
    pub max_http_connections: usize,
}

#[derive(Debug, Clone)]
pub struct BackstageConfig {
    pub url: String,
    pub token: Option<String>,
    pub every: Duration,
}

/// Syncs the catalog from Backstage now (bounded) and then every `every`. Every catalog fetched is kept in the
/// ledger as the last good copy (`enrich::backstage`); a failed sync keeps the catalog in force, so attribution
/// goes on while Backstage is down, and a collector that starts while Backstage cannot be reached (or answers an
/// error) starts from the kept copy. This returns before ingest starts: no batch is attributed with an empty
/// catalog while a kept one exists. An empty answer after a catalog that named owners is refused as suspect. On
/// a ledger shared by several collectors one of them (the `catalog-sync` leader) fetches; the others take the
/// copy it keeps.
async fn start_backstage_sync(
    b: BackstageConfig,
    owners: crate::enrich::SharedOwners,
    ledger: Arc<dyn Ledger>,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) {
    use crate::enrich::backstage;
    use crate::enrich::catalog::Catalog;
    /// What one pass found: a catalog fetched by this collector (and when), the kept copy when it is newer
    /// than the catalog in force, or nothing new.
    enum Found {
        Fetched(Result<(Catalog, u64), String>),
        Kept(Result<Option<(Catalog, u64)>, String>),
    }
    fn take(owners: &crate::enrich::SharedOwners, catalog: Catalog) {
        owners.write().unwrap_or_else(|e| e.into_inner()).catalog = catalog;
    }
    /// One pass; `Err` says why this collector, due to fetch, has no new catalog.
    async fn sync(
        b: &BackstageConfig,
        owners: &crate::enrich::SharedOwners,
        ledger: &Arc<dyn Ledger>,
        metrics: &Metrics,
        applied_ns: &mut u64,
        fetched_at: &mut Option<std::time::Instant>,
    ) -> Result<(), String> {
        let (url, token, l, o, applied) = (b.url.clone(), b.token.clone(), ledger.clone(), owners.clone(), *applied_ns);
        let fetch_due = fetched_at.is_none_or(|t| t.elapsed() >= b.every);
        let found = tokio::task::spawn_blocking(move || {
            if !l.lead("catalog-sync") {
                return Found::Kept(backstage::kept(l.as_ref()).map(|k| k.filter(|(_, at)| *at > applied)));
            }
            if !fetch_due {
                return Found::Kept(Ok(None));
            }
            let fetched = backstage::fetch(&url, token.as_deref(), Duration::from_secs(20)).and_then(|catalog| {
                if catalog.is_empty() {
                    let in_force = o.read().unwrap_or_else(|e| e.into_inner()).catalog.clone();
                    let kept = backstage::kept(l.as_ref()).ok().flatten().map(|(c, _)| c);
                    if let Some(why) = backstage::suspect(&catalog, Some(&in_force))
                        .or_else(|| backstage::suspect(&catalog, kept.as_ref()))
                    {
                        return Err(format!("{why}; keeping the last good copy"));
                    }
                }
                let at = crate::now_ns();
                if let Err(e) = backstage::keep(l.as_ref(), &catalog, at) {
                    tracing::warn!(error = %e, "cannot keep the catalog in the ledger");
                }
                Ok((catalog, at))
            });
            Found::Fetched(fetched)
        })
        .await;
        if matches!(found, Ok(Found::Fetched(_))) {
            *fetched_at = Some(std::time::Instant::now());
        }
        match found {
            Ok(Found::Fetched(Ok((catalog, at)))) => {
                tracing::debug!(
                    groups = catalog.groups.len(),
                    components = catalog.components.len(),
                    "catalog synced from Backstage"
                );
                take(owners, catalog);
                *applied_ns = at;
                metrics.sync("backstage", true);
                metrics.catalog_synced("backstage", at);
                Ok(())
            }
            Ok(Found::Fetched(Err(e))) => {
                metrics.sync("backstage", false);
                Err(e)
            }
            Ok(Found::Kept(Ok(Some((catalog, at))))) => {
                tracing::debug!(groups = catalog.groups.len(), "catalog taken from the shared ledger");
                take(owners, catalog);
                *applied_ns = at;
                metrics.sync("backstage", true);
                metrics.catalog_synced("ledger", at);
                Ok(())
            }
            Ok(Found::Kept(Ok(None))) => Ok(()),
            Ok(Found::Kept(Err(e))) => {
                tracing::warn!(error = %e, "cannot take the shared catalog from the ledger; keeping ours");
                Ok(())
            }
            Err(e) => {
                metrics.sync("backstage", false);
                Err(format!("Backstage sync panicked: {e}"))
            }
        }
    }
    let (mut applied_ns, mut fetched_at) = (0, None);
    let first = tokio::time::timeout(
        Duration::from_secs(30),
        sync(&b, &owners, &ledger, &metrics, &mut applied_ns, &mut fetched_at),
    )
    .await
    .unwrap_or_else(|_| {
        metrics.sync("backstage", false);
        Err(format!("Backstage at {} did not answer within 30 s", b.url))
    });
    if let Err(error) = first {
        let l = ledger.clone();
        match tokio::task::spawn_blocking(move || backstage::kept(l.as_ref())).await {
            Ok(Ok(Some((catalog, at)))) => {
                let age = Duration::from_secs(crate::now_ns().saturating_sub(at) / 1_000_000_000);
                tracing::warn!(
                    %error,
                    fetched = %crate::report::period::utc(at),
                    age = %humantime::format_duration(age),
                    age_s = age.as_secs(),
                    "cannot sync the catalog from Backstage at start-up; attributing with the last good copy, kept in the ledger"
                );
                take(&owners, catalog);
                applied_ns = at;
                metrics.catalog_synced("ledger", at);
            }
            Ok(Ok(None)) => tracing::warn!(
                %error,
                "cannot sync the catalog from Backstage at start-up, and the ledger keeps no copy of it; attributing \
                 without it (with --catalog-dir's, if given) until a sync succeeds"
            ),
            Ok(Err(kept)) => tracing::warn!(
                %error,
                %kept,
                "cannot sync the catalog from Backstage at start-up, nor read the copy kept in the ledger; attributing \
                 without it (with --catalog-dir's, if given) until a sync succeeds"
            ),
            Err(e) => tracing::warn!(%error, panic = %e, "reading the kept catalog panicked"),
        }
    }
    // Followers look for a newer copy in the ledger more often than the leader fetches one.
    let tick = b.every.min(Duration::from_secs(15));
    tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {
                    if let Err(e) = sync(&b, &owners, &ledger, &metrics, &mut applied_ns, &mut fetched_at).await {
                        tracing::warn!(error = %e, "cannot sync the catalog from Backstage; keeping the last good copy");
                    }
                }
                _ = wait_for_stop(stop.clone()) => return Ok(()),
            }
        }
    });
}

#[derive(Debug, Clone)]
pub struct MlflowConfig {
    pub url: String,
    pub auth: Option<crate::enrich::mlflow::Auth>,
    pub every: Duration,
}

#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// An AWS-compatible endpoint instead of AWS's (an emulator in tests).
    pub endpoint_url: Option<String>,
    pub every: Duration,
}

/// The ledger's location for logs: a PostgreSQL URL without its password.
fn redacted_db(db: &std::path::Path) -> String {
    #[cfg(feature = "postgres")]
    return crate::ledger::sql::postgres::redact(&db.to_string_lossy());
    #[cfg(not(feature = "postgres"))]
    db.display().to_string()
}

/// Runs discovery once now (bounded), then every `every`, keeping the last good inventory.
#[cfg(feature = "aws")]
async fn start_discovery(
    prices: Arc<PriceBook>,
    config: &DiscoveryConfig,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) -> SharedInventory {
    async fn refresh(aws: &AwsDiscovery, shared: &SharedInventory, prices: &PriceBook, metrics: &Metrics) {
        match aws.inventory(&|t| prices.gpus_of(t)).await {
            Ok(inv) => {
                tracing::info!(
                    node_groups = inv.node_groups.len(),
                    ecs_instances = inv.ecs_instances.len(),
                    ecs_tasks = inv.ecs_tasks.len(),
                    "AWS discovery"
                );
                *shared.write().unwrap_or_else(|e| e.into_inner()) = inv;
                metrics.sync("aws", true);
            }
            Err(e) => {
                metrics.sync("aws", false);
                tracing::warn!(error = %e, "AWS discovery failed; keeping the last inventory")
            }
        }
    }
    let inventory = SharedInventory::default();
    let aws = AwsDiscovery::new(config.endpoint_url.as_deref()).await;
    if tokio::time::timeout(Duration::from_secs(60), refresh(&aws, &inventory, &prices, &metrics)).await.is_err() {
        metrics.sync("aws", false);
        tracing::warn!("AWS discovery took over 60 s at start-up; going on without it for now");
    }
    let (every, shared) = (config.every, inventory.clone());
    tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => refresh(&aws, &shared, &prices, &metrics).await,
                _ = wait_for_stop(stop.clone()) => return Ok(()),
            }
        }
    });
    inventory
}

/// A started collector: where it listens, and its tasks.
pub struct Server {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub ledger: Arc<dyn Ledger>,
    tasks: JoinSet<anyhow::Result<()>>,
}

async fn wait_for_stop(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl ServeConfig {
    /// Refuses a configuration that cannot serve, before anything is opened, bound or waited on: every check
    /// that needs no file, port or peer.
    pub fn validate(&self) -> anyhow::Result<()> {
        #[cfg(not(feature = "aws"))]
        if self.discovery.is_some() {
            anyhow::bail!(
                "--aws-discovery: this collector was built without AWS discovery (cargo feature `aws` of gpucost-collector)"
            );
        }
        let bucket_ns = self.bucket.as_nanos() as u64;
        if bucket_ns == 0 || (86_400 * 1_000_000_000) % bucket_ns != 0 {
            anyhow::bail!("--bucket {:?} must divide a day evenly (e.g. 5m, 15m, 1h)", self.bucket);
        }
        if self.tls.is_none() && !self.auth.insecure && !self.grpc_plaintext {
            anyhow::bail!(
                "gRPC without TLS: give --tls-cert and --tls-key (agents' tokens must not travel in clear), --grpc-plaintext when a proxy in front terminates TLS, or --insecure"
            );
        }
        if self.tls.is_some() && self.grpc_plaintext {
            anyhow::bail!("--grpc-plaintext and --tls-cert: choose one (TLS here, or TLS at a proxy in front)");
        }
        Ok(())
    }
}

impl Server {
    /// Opens the ledger and binds both listeners; serving starts at once and stops when `shutdown` turns true.
    pub async fn start(config: &ServeConfig, shutdown: watch::Receiver<bool>) -> anyhow::Result<Self> {
        config.validate()?;
        let bucket_ns = config.bucket.as_nanos() as u64;
        let raw_retention = config.raw_retention.as_nanos() as u64;
        let db = config.db.to_string_lossy();
        let ledger: Arc<dyn Ledger> = if db.starts_with("postgres://") || db.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            {
                let url = db.to_string();
                let redacted = crate::ledger::sql::postgres::redact(&url);
                Arc::new(
                    tokio::task::spawn_blocking(move || {
                        crate::ledger::sqlite::SqlLedger::open_postgres(&url, bucket_ns, raw_retention)
                    })
                    .await?
                    .with_context(|| format!("opening the PostgreSQL ledger at {redacted}"))?,
                )
            }
            #[cfg(not(feature = "postgres"))]
            anyhow::bail!(
                "--db {db}: this collector was built without the PostgreSQL ledger (cargo feature `postgres`)"
            )
        } else {
            Arc::new(
                SqliteLedger::open_serving(&config.db, bucket_ns, raw_retention)
                    .with_context(|| format!("opening the ledger at {}", config.db.display()))?,
            )
        };
        let grpc = TcpListener::bind(config.grpc)
            .await
            .with_context(|| format!("cannot listen for gRPC on {} (--grpc)", config.grpc))?;
        let http = TcpListener::bind(config.http)
            .await
            .with_context(|| format!("cannot listen for HTTP on {} (--http)", config.http))?;
        let (grpc_addr, http_addr) = (grpc.local_addr()?, http.local_addr()?);

        let writer = WriterHandle::spawn(ledger.clone());
        let metrics = Arc::new(Metrics::new(config.metrics_max_series));
        let fleet = Arc::new(crate::live::Fleet::default());
        let mut tasks = JoinSet::new();
        crate::budget::engine::sync_config_budgets(ledger.as_ref(), &config.budgets, crate::now_ns())
            .context("storing the config file's budgets")?;
        let budget_poke = Arc::new(tokio::sync::Notify::new());
        {
            let (ledger, budgets, metrics, poke, stop) =
                (ledger.clone(), config.budgets.clone(), metrics.clone(), budget_poke.clone(), shutdown.clone());
            let generator_url = format!("http://{http_addr}/api/v1/budgets/status");
            tasks.spawn(async move {
                crate::budget::engine::run(ledger, budgets, generator_url, metrics, poke, stop).await;
                Ok(())
            });
        }
        if let (Some(b), Some(owners)) = (config.backstage.clone(), config.owners.clone()) {
            start_backstage_sync(b, owners, ledger.clone(), metrics.clone(), shutdown.clone(), &mut tasks).await;
        }
        #[cfg(feature = "aws")]
        let inventory = match &config.discovery {
            Some(d) => {
                Some(start_discovery(config.prices.clone(), d, metrics.clone(), shutdown.clone(), &mut tasks).await)
            }
            None => None,
        };
        // Refused above: nothing to discover with.
        #[cfg(not(feature = "aws"))]
        let inventory: Option<SharedInventory> = None;
        // File descriptors for both ports' connections: silent connections to one cannot starve the other.
        let (grpc_cap, http_cap) =
            crate::listen::fd_budget(config.max_grpc_connections, config.max_http_connections, 128);
        let (grpc_admission, http_admission) =
            (crate::listen::Admission::new(grpc_cap), crate::listen::Admission::new(http_cap));
        let handshake = config.handshake_timeout;
        let service = IngestServer::new(IngestService::new(Pipeline {
            writer,
            limits: config.limits.clone(),
            prices: config.prices.clone(),
            inventory: inventory.clone(),
            owners: config.owners.clone(),
            metrics: metrics.clone(),
            fleet: fleet.clone(),
            auth: config.auth.clone(),
            slots: Arc::new(crate::ingest::limits::StreamSlots::new(config.max_streams, config.auth.agent_clusters())),
            rate: Arc::new(crate::ingest::limits::RateLimit::new(config.max_agent_batches_per_minute)),
            idle_timeout: config.stream_idle_timeout,
        }))
        // The largest valid batch and a margin (`gpucost_proto::limits`); a larger message is refused unread.
        .max_decoding_message_size(gpucost_proto::limits::MAX_BATCH_BYTES);
        let stop = shutdown.clone();
        let metrics_for_grpc = metrics.clone();
        match &config.tls {
            Some(files) => {
                let tls = crate::tls::Reloading::new(files.clone()).map_err(anyhow::Error::msg)?;
                let (reloader, stop_reload) = (tls.clone(), shutdown.clone());
                tasks.spawn(async move {
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep(crate::tls::RELOAD_EVERY) => {}
                            _ = wait_for_stop(stop_reload.clone()) => return Ok(()),
                        }
                        match reloader.reload_if_changed() {
                            Some(Ok(())) => tracing::info!("TLS certificate reloaded"),
                            Some(Err(e)) => tracing::warn!(error = %e, "TLS files changed but do not load; keeping the last good ones"),
                            None => {}
                        }
                    }
                });
                tasks.spawn(async move {
                    tonic::transport::Server::builder()
                        .http2_keepalive_interval(Some(Duration::from_secs(30)))
                        .add_service(service)
                        .serve_with_incoming_shutdown(
                            crate::tls::incoming(grpc, tls, grpc_admission, handshake, metrics_for_grpc),
                            wait_for_stop(stop),
                        )
                        .await
                        .context("gRPC server failed")
                });
            }
            None => {
                if config.grpc_plaintext {
                    tracing::warn!("--grpc-plaintext: gRPC without TLS here; a proxy in front must terminate TLS");
                }
                tasks.spawn(async move {
                    tonic::transport::Server::builder()
                        .http2_keepalive_interval(Some(Duration::from_secs(30)))
                        .add_service(service)
                        .serve_with_incoming_shutdown(
                            crate::listen::grpc_plain(grpc, grpc_admission, handshake, metrics_for_grpc),
                            wait_for_stop(stop),
                        )
                        .await
                        .context("gRPC server failed")
                });
            }
        }
        let app = api::router(AppState {
            ledger: ledger.clone(),
            metrics: metrics.clone(),
            inventory,
            owners: config.owners.clone(),
            reports: Arc::new(config.reports.clone()),
            budget_poke: budget_poke.clone(),
            fleet: fleet.clone(),
            auth: config.auth.clone(),
            http_timeout: config.http_timeout,
        });
        let stop = shutdown.clone();
        tasks.spawn(async move {
            crate::listen::serve_http(http, app, http_admission, handshake, wait_for_stop(stop)).await;
            Ok(())
        });
        if let Some(m) = config.mlflow.clone() {
            let (ledger, stop, metrics) = (ledger.clone(), shutdown.clone(), metrics.clone());
            tasks.spawn(async move {
                let client =
                    Arc::new(crate::enrich::mlflow::MlflowClient::new(&m.url, m.auth.clone(), Duration::from_secs(10)));
                let state = Arc::new(std::sync::Mutex::new(crate::enrich::mlflow::WriteBack::default()));
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(m.every) => {}
                        _ = wait_for_stop(stop.clone()) => return Ok(()),
                    }
                    let (ledger, client, state) = (ledger.clone(), client.clone(), state.clone());
                    let pass = tokio::task::spawn_blocking(move || {
                        if !ledger.lead("mlflow-write-back") {
                            return Ok(Default::default());
                        }
                        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
                        crate::enrich::mlflow::write_back(ledger.as_ref(), &client, &mut state)
                    });
                    match pass.await {
                        Ok(Ok(s)) => {
                            metrics.sync("mlflow", s.failed == 0);
                            if s.written + s.failed > 0 {
                                tracing::info!(written = s.written, refused = s.failed, "wrote GPU cost to MLflow")
                            }
                        }
                        Ok(Err(e)) => {
                            metrics.sync("mlflow", false);
                            tracing::warn!(error = %e, "MLflow write-back failed; retrying next time")
                        }
                        Err(_) => metrics.sync("mlflow", false),
                    }
                }
            });
        }
        // Each team's efficiency over the last hour, for /metrics: every minute once it has teams to show, every
        // 10 s until then (at 20 000 nodes the query over the hour's rows took 8 % of the collector's CPU when it
        // ran every 10 s).
        {
            let (ledger, metrics, stop) = (ledger.clone(), metrics.clone(), shutdown.clone());
            tasks.spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(10));
                let mut shown: Option<std::time::Instant> = None;
                loop {
                    tokio::select! {
                        _ = every.tick() => {}
                        _ = wait_for_stop(stop.clone()) => return Ok(()),
                    }
                    if shown.is_some_and(|at| at.elapsed() < Duration::from_secs(60)) {
                        continue;
                    }
                    let (ledger, metrics) = (ledger.clone(), metrics.clone());
                    let teams = tokio::task::spawn_blocking(move || {
                        let bucket = ledger.bucket_ns();
                        let to = crate::now_ns().div_ceil(bucket) * bucket;
                        let q = crate::ledger::CostQuery {
                            from_ns: to.saturating_sub(3_600_000_000_000) / bucket * bucket,
                            to_ns: to,
                            group_by: vec![crate::ledger::Dimension::Team],
                            filters: vec![],
                            policy: crate::cost::split::Policy::Hybrid,
                        };
                        match ledger.costs(&q) {
                            Ok(r) => {
                                metrics.set_efficiency(
                                    &r.rows
                                        .iter()
                                        .map(|r| (r.group[0].clone(), r.held_ns, r.used_ns))
                                        .collect::<Vec<_>>(),
                                );
                                r.rows.len()
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot measure team efficiency");
                                0
                            }
                        }
                    })
                    .await
                    .unwrap_or(0);
                    shown = (teams > 0).then(std::time::Instant::now);
                }
            });
        }
        let pruner = ledger.clone();
        let retention = config.raw_retention.as_nanos() as u64;
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(300));
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = wait_for_stop(stop.clone()) => return Ok(()),
                }
                let ledger = pruner.clone();
                match tokio::task::spawn_blocking(move || {
                    if !ledger.lead("prune-raw") {
                        return Ok(0);
                    }
                    ledger.prune_raw(crate::now_ns().saturating_sub(retention))
                })
                .await
                {
                    Ok(Ok(n)) if n > 0 => tracing::info!(rows = n, "pruned raw intervals past retention"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "pruning raw intervals failed"),
                    _ => {}
                }
                // The daily rollups of days that have ended: 8 a pass, so that a ledger with a long history
                // (each day summed while holding the writer) catches up without stalling ingest (days.rs).
                let ledger = pruner.clone();
                match tokio::task::spawn_blocking(move || {
                    if !ledger.lead("daily-rollups") {
                        return Ok(0);
                    }
                    ledger.build_daily_rollups(crate::now_ns(), 8)
                })
                .await
                {
                    Ok(Ok(n)) if n > 0 => tracing::info!(days = n, "built daily rollups"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "building daily rollups failed"),
                    _ => {}
                }
            }
        });
        tracing::info!(%grpc_addr, %http_addr, db = %redacted_db(&config.db), "collector listening");
        Ok(Self { grpc_addr, http_addr, ledger, tasks })
    }

    /// Runs until shutdown; the first task to fail stops the collector with its error.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        while let Some(r) = self.tasks.join_next().await {
            r.context("collector task panicked")??;
        }
        Ok(())
    }
}
