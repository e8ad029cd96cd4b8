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

use crate::http::AppState;
use crate::ingest::service::{IngestService, Pipeline};
use crate::ingest::validate::Limits;
use crate::jobs::SharedInventory;
use crate::metrics::Metrics;
use gpucost_ledger::Ledger;
use gpucost_ledger::SqliteLedger;
use gpucost_ledger::writer::WriterHandle;
use gpucost_rules::book::PriceBook;

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
    /// Importing the AWS bill (Data Exports), when configured.
    pub bill: Option<crate::jobs::BillConfig>,
    /// The catalog and rules that name owners, when configured.
    pub owners: Option<crate::enrich::SharedOwners>,
    /// Writing costs back to MLflow, when configured.
    pub mlflow: Option<MlflowConfig>,
    /// MLflow's web UI, for the dashboard's and the models API's links (`--mlflow-ui-url`, else `--mlflow-url`).
    pub mlflow_ui: Option<String>,
    /// Syncing the catalog from Backstage, when configured (needs `owners`).
    pub backstage: Option<BackstageConfig>,
    /// Cost centres and the parties of the FOCUS export.
    pub reports: crate::http::reports::ReportConfig,
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

pub use crate::enrich::backstage::BackstageConfig;
pub use crate::enrich::mlflow::MlflowConfig;
pub use crate::jobs::DiscoveryConfig;

/// The ledger's location for logs: a PostgreSQL URL without its password.
fn redacted_db(db: &std::path::Path) -> String {
    #[cfg(feature = "postgres")]
    return gpucost_ledger::sql::postgres::redact(&db.to_string_lossy());
    #[cfg(not(feature = "postgres"))]
    db.display().to_string()
}

/// A started collector: where it listens, and its tasks.
pub struct Server {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub ledger: Arc<dyn Ledger>,
    tasks: JoinSet<anyhow::Result<()>>,
}

async fn wait_for_stop(mut rx: watch::Receiver<bool>) {
    crate::jobs::stopped(&mut rx).await
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
        if let Some(b) = &self.bill {
            anyhow::ensure!(!b.every.is_zero(), "--bill-import-interval must be more than zero");
            if let crate::jobs::BillSource::S3 { uri, .. } = &b.source {
                anyhow::ensure!(
                    uri.starts_with("s3://") && uri.len() > 5,
                    "--bill-s3 {uri:?}: expected s3://bucket/prefix"
                );
            }
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
        if let Some(ui) = &self.mlflow_ui
            && !(ui.starts_with("http://") || ui.starts_with("https://"))
        {
            anyhow::bail!("--mlflow-ui-url (or --mlflow-url) {ui:?}: give MLflow's http:// or https:// address");
        }
        Ok(())
    }
}

impl Server {
    /// Opens the ledger and binds both listeners; serving starts at once and stops when `shutdown` turns true.
    pub async fn start(config: &ServeConfig, shutdown: watch::Receiver<bool>) -> anyhow::Result<Self> {
        config.validate()?;
        let ledger = open_ledger(config).await?;
        let grpc = bind(config.grpc, "gRPC", "--grpc").await?;
        let http = bind(config.http, "HTTP", "--http").await?;
        let (grpc_addr, http_addr) = (grpc.local_addr()?, http.local_addr()?);
        crate::budget::engine::sync_config_budgets(ledger.as_ref(), &config.budgets, gpucost_types::clock::now_ns())
            .context("storing the config file's budgets")?;

        let mut run = Running {
            ledger: ledger.clone(),
            metrics: Arc::new(Metrics::new(config.metrics_max_series)),
            fleet: Arc::new(crate::live::Fleet::default()),
            shutdown,
            tasks: JoinSet::new(),
        };
        let budget_poke = run.budget_jobs(config, http_addr);
        if let (Some(b), Some(owners)) = (config.backstage.clone(), config.owners.clone()) {
            let sync =
                crate::jobs::catalog_sync::CatalogSync::start(b, owners, ledger.clone(), run.metrics.clone()).await;
            run.supervise(Box::new(sync));
        }
        let inventory = run.discovery(config).await;
        if let Some(b) = &config.bill {
            let job = crate::jobs::bill_import::BillImportJob::new(b, ledger.clone()).await?;
            run.supervise(Box::new(job));
        }
        // File descriptors for both ports' connections: silent connections to one cannot starve the other.
        let (grpc_cap, http_cap) =
            crate::listen::fd_budget(config.max_grpc_connections, config.max_http_connections, 128);
        run.serve_grpc(config, grpc, crate::listen::Admission::new(grpc_cap), inventory.clone())?;
        let app = crate::http::router(AppState {
            ledger: ledger.clone(),
            metrics: run.metrics.clone(),
            inventory,
            owners: config.owners.clone(),
            reports: Arc::new(config.reports.clone()),
            budget_poke,
            fleet: run.fleet.clone(),
            auth: config.auth.clone(),
            http_timeout: config.http_timeout,
            mlflow_ui: config.mlflow_ui.clone(),
            prices: config.prices.clone(),
        });
        let (admission, handshake, stop) =
            (crate::listen::Admission::new(http_cap), config.handshake_timeout, run.shutdown.clone());
        run.tasks.spawn(async move {
            crate::listen::serve_http(http, app, admission, handshake, wait_for_stop(stop)).await;
            Ok(())
        });
        run.housekeeping_jobs(config);
        tracing::info!(%grpc_addr, %http_addr, db = %redacted_db(&config.db), "collector listening");
        Ok(Self { grpc_addr, http_addr, ledger, tasks: run.tasks })
    }

    /// Runs until shutdown; the first task to fail stops the collector with its error.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        while let Some(r) = self.tasks.join_next().await {
            r.context("collector task panicked")??;
        }
        Ok(())
    }
}

/// The ledger `--db` names: PostgreSQL for a `postgres://` URL, else the embedded SQLite file (held by this
/// collector alone while it serves).
async fn open_ledger(config: &ServeConfig) -> anyhow::Result<Arc<dyn Ledger>> {
    let bucket_ns = config.bucket.as_nanos() as u64;
    let raw_retention = config.raw_retention.as_nanos() as u64;
    let db = config.db.to_string_lossy();
    if db.starts_with("postgres://") || db.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        {
            let url = db.to_string();
            let redacted = gpucost_ledger::sql::postgres::redact(&url);
            let ledger = tokio::task::spawn_blocking(move || {
                gpucost_ledger::SqlLedger::open_postgres(&url, bucket_ns, raw_retention)
            })
            .await?
            .with_context(|| format!("opening the PostgreSQL ledger at {redacted}"))?;
            return Ok(Arc::new(ledger));
        }
        #[cfg(not(feature = "postgres"))]
        anyhow::bail!("--db {db}: this collector was built without the PostgreSQL ledger (cargo feature `postgres`)")
    }
    let ledger = SqliteLedger::open_serving(&config.db, bucket_ns, raw_retention)
        .with_context(|| format!("opening the ledger at {}", config.db.display()))?;
    Ok(Arc::new(ledger))
}

async fn bind(addr: SocketAddr, what: &str, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen for {what} on {addr} ({flag})"))
}

/// What a starting collector's tasks share: the ledger, the metrics, the live fleet, the one shutdown, and the
/// set of tasks the first failure of which stops the collector.
struct Running {
    ledger: Arc<dyn Ledger>,
    metrics: Arc<Metrics>,
    fleet: Arc<crate::live::Fleet>,
    shutdown: watch::Receiver<bool>,
    tasks: JoinSet<anyhow::Result<()>>,
}

impl Running {
    fn supervise(&mut self, job: Box<dyn crate::jobs::Job>) {
        crate::jobs::supervise(job, self.ledger.clone(), self.metrics.clone(), self.shutdown.clone(), &mut self.tasks);
    }

    /// Budget evaluation and alert delivery; the signal that makes the evaluation run now (a budget changed).
    fn budget_jobs(&mut self, config: &ServeConfig, http_addr: SocketAddr) -> Arc<tokio::sync::Notify> {
        let budget_poke = Arc::new(tokio::sync::Notify::new());
        let budgets = Arc::new(config.budgets.clone());
        let generator_url = format!("http://{http_addr}/api/v1/budgets/status");
        let delivery = Arc::new(tokio::sync::Notify::new());
        let evaluation = crate::jobs::budget_evaluation::BudgetEvaluation::new(
            self.ledger.clone(),
            budgets.clone(),
            generator_url.clone(),
            self.metrics.clone(),
            budget_poke.clone(),
            delivery.clone(),
        );
        let alerts =
            crate::jobs::alert_delivery::AlertDelivery::new(self.ledger.clone(), budgets, generator_url, delivery);
        self.supervise(Box::new(evaluation));
        self.supervise(Box::new(alerts));
        budget_poke
    }

    /// AWS discovery, when configured: the inventory it keeps up to date.
    #[cfg(feature = "aws")]
    async fn discovery(&mut self, config: &ServeConfig) -> Option<SharedInventory> {
        let d = config.discovery.as_ref()?;
        let (job, inventory) =
            crate::jobs::aws_discovery::AwsDiscoveryJob::start(config.prices.clone(), d, self.metrics.clone()).await;
        self.supervise(Box::new(job));
        Some(inventory)
    }

    /// Refused by `ServeConfig::validate`: nothing to discover with.
    #[cfg(not(feature = "aws"))]
    async fn discovery(&mut self, _config: &ServeConfig) -> Option<SharedInventory> {
        None
    }

    /// The ingest service on `grpc`: TLS here (its certificate reloaded by a job) or plain text (behind a proxy,
    /// or insecure).
    fn serve_grpc(
        &mut self,
        config: &ServeConfig,
        grpc: TcpListener,
        admission: crate::listen::Admission,
        inventory: Option<SharedInventory>,
    ) -> anyhow::Result<()> {
        let service = IngestServer::new(IngestService::new(Pipeline {
            stages: crate::ingest::stages::Stages {
                limits: config.limits.clone(),
                prices: config.prices.clone(),
                inventory,
                owners: config.owners.clone(),
                writer: WriterHandle::spawn(self.ledger.clone()),
            },
            metrics: self.metrics.clone(),
            fleet: self.fleet.clone(),
            auth: config.auth.clone(),
            slots: Arc::new(crate::ingest::limits::StreamSlots::new(config.max_streams, config.auth.agent_clusters())),
            rate: Arc::new(crate::ingest::limits::RateLimit::new(config.max_agent_batches_per_minute)),
            idle_timeout: config.stream_idle_timeout,
        }))
        // The largest valid batch and a margin (`gpucost_proto::limits`); a larger message is refused unread.
        .max_decoding_message_size(gpucost_proto::limits::MAX_BATCH_BYTES);
        let (stop, metrics, handshake) = (self.shutdown.clone(), self.metrics.clone(), config.handshake_timeout);
        let server = || tonic::transport::Server::builder().http2_keepalive_interval(Some(Duration::from_secs(30)));
        match &config.tls {
            Some(files) => {
                let tls = crate::tls::Reloading::new(files.clone()).map_err(anyhow::Error::msg)?;
                self.supervise(Box::new(crate::jobs::tls_reload::TlsReload::new(tls.clone())));
                let incoming = crate::tls::incoming(grpc, tls, admission, handshake, metrics);
                let serving = server().add_service(service).serve_with_incoming_shutdown(incoming, wait_for_stop(stop));
                self.tasks.spawn(async move { serving.await.context("gRPC server failed") });
            }
            None => {
                if config.grpc_plaintext {
                    tracing::warn!("--grpc-plaintext: gRPC without TLS here; a proxy in front must terminate TLS");
                }
                let incoming = crate::listen::grpc_plain(grpc, admission, handshake, metrics);
                let serving = server().add_service(service).serve_with_incoming_shutdown(incoming, wait_for_stop(stop));
                self.tasks.spawn(async move { serving.await.context("gRPC server failed") });
            }
        }
        Ok(())
    }

    /// The team efficiency gauges, raw pruning, daily rollups and, when configured, MLflow write-back.
    fn housekeeping_jobs(&mut self, config: &ServeConfig) {
        let mut jobs: Vec<Box<dyn crate::jobs::Job>> = vec![
            Box::new(crate::jobs::team_efficiency::TeamEfficiency::new(self.ledger.clone(), self.metrics.clone())),
            Box::new(crate::jobs::recommendation_savings::RecommendationSavings::new(
                self.ledger.clone(),
                config.prices.clone(),
                self.metrics.clone(),
            )),
            Box::new(crate::jobs::prune_raw::PruneRaw::new(self.ledger.clone(), config.raw_retention)),
            Box::new(crate::jobs::daily_rollups::DailyRollups::new(self.ledger.clone())),
        ];
        if let Some(m) = &config.mlflow {
            jobs.push(Box::new(crate::jobs::mlflow_write_back::MlflowWriteBack::new(
                m,
                self.ledger.clone(),
                self.metrics.clone(),
            )));
        }
        for job in jobs {
            self.supervise(job);
        }
    }
}
