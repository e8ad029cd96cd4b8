//! `serve`: its flags, and the [`ServeConfig`] they make (for `demo` too).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use gpucost_collector::enrich::mlflow::Auth;
use gpucost_collector::ingest::validate::Limits;
use gpucost_collector::server::{BackstageConfig, DiscoveryConfig, MlflowConfig, ServeConfig, Server};
use gpucost_rules::attribute::Owners;
use gpucost_rules::book::PriceBook;
use tokio::sync::watch;

use super::ledger_args::LedgerArgs;
use super::prices::warn_unmatched;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// gRPC listen address for agents.
    #[arg(long, env = "GPUCOST_GRPC_ADDR", default_value = "0.0.0.0:50051")]
    grpc: SocketAddr,
    /// HTTP listen address (API, health, dashboard).
    #[arg(long, env = "GPUCOST_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http: SocketAddr,
    /// The ledger: an SQLite file, or a PostgreSQL URL (postgres://user:password@host:5432/db) shared by
    /// several collectors.
    #[arg(long, env = "GPUCOST_DB", default_value = "./gpucost.db", hide_env_values = true)]
    db: PathBuf,
    #[command(flatten)]
    ledger: LedgerArgs,
}

/// `serve`: the config checked before anything is opened, then the server until `stop`.
pub(crate) async fn serve(a: &ServeArgs, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let config = serve_config(a)?;
    // Every check that needs no file, port or peer, before any is opened, bound or waited on.
    config.validate()?;
    Server::start(&config, stop).await?.wait().await
}

/// What `serve` runs with, read and checked: the prices, owner rules, budgets and auth files loaded.
pub(crate) fn serve_config(a: &ServeArgs) -> anyhow::Result<ServeConfig> {
    let prices = gpucost_collector::files::price_book(a.ledger.prices.as_deref()).map_err(anyhow::Error::msg)?;
    warn_unmatched(a.ledger.prices.as_deref(), &prices, None);
    let owners = a.ledger.owners(None)?;
    let mut config = a.ledger.serve_config(a.grpc, a.http, a.db.clone(), prices, owners);
    config.budgets = a.ledger.budget_config()?;
    config.auth = Arc::new(a.ledger.auth_config(false)?);
    Ok(config)
}

impl LedgerArgs {
    /// The server's config from these settings, with the budgets and auth left open (the caller sets them).
    pub(crate) fn serve_config(
        &self,
        grpc: SocketAddr,
        http: SocketAddr,
        db: PathBuf,
        prices: PriceBook,
        owners: Option<Owners>,
    ) -> ServeConfig {
        ServeConfig {
            grpc,
            http,
            db,
            bucket: self.bucket,
            raw_retention: self.raw_retention,
            limits: self.limits(),
            prices: Arc::new(prices),
            owners: owners.map(|o| Arc::new(std::sync::RwLock::new(o))),
            backstage: self.backstage(),
            mlflow: self.mlflow(),
            mlflow_ui: self.mlflow_ui_url.clone().or_else(|| self.mlflow_url.clone()),
            reports: self.report.config(),
            budgets: Default::default(),
            metrics_max_series: self.metrics_max_series,
            auth: Arc::new(gpucost_collector::auth::Auth::open()),
            grpc_plaintext: self.grpc_plaintext,
            max_streams: self.max_streams,
            max_agent_batches_per_minute: self.max_agent_batches_per_minute,
            http_timeout: self.http_request_timeout,
            stream_idle_timeout: self.stream_idle_timeout,
            handshake_timeout: self.handshake_timeout,
            max_grpc_connections: self.max_grpc_connections,
            max_http_connections: self.max_http_connections,
            tls: self.tls(),
            discovery: self.aws_discovery.then(|| DiscoveryConfig {
                endpoint_url: self.aws_endpoint_url.clone(),
                every: self.aws_discovery_interval,
            }),
            bill: self.bill(),
        }
    }

    /// What one batch may cover.
    fn limits(&self) -> Limits {
        Limits {
            max_interval_ns: self.max_interval.as_nanos() as u64,
            max_clock_skew_ns: self.max_clock_skew.as_nanos() as u64,
            ..Limits::default()
        }
    }

    /// The Backstage catalog sync, with --backstage-url.
    fn backstage(&self) -> Option<BackstageConfig> {
        self.backstage_url.as_ref().map(|url| BackstageConfig {
            url: url.clone(),
            token: self.backstage_token.clone(),
            every: self.backstage_sync_interval,
        })
    }

    /// The MLflow write-back, with --mlflow-url; its credentials from MLflow's own environment variables.
    fn mlflow(&self) -> Option<MlflowConfig> {
        self.mlflow_url.as_ref().map(|url| MlflowConfig {
            url: url.clone(),
            auth: match (
                std::env::var("MLFLOW_TRACKING_USERNAME"),
                std::env::var("MLFLOW_TRACKING_PASSWORD"),
                std::env::var("MLFLOW_TRACKING_TOKEN"),
            ) {
                (Ok(user), Ok(password), _) => Some(Auth::Basic { user, password }),
                (_, _, Ok(token)) => Some(Auth::Bearer(token)),
                _ => None,
            },
            every: self.mlflow_writeback_interval,
        })
    }

    /// TLS on the gRPC port, with --tls-cert and --tls-key.
    fn tls(&self) -> Option<gpucost_collector::tls::TlsFiles> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(gpucost_collector::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca.clone(),
            }),
            _ => None,
        }
    }
}
