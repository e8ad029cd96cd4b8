//! The settings `serve` and `demo` share: the ledger, limits, owners, auth, budgets and integrations.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use gpucost_rules::attribute::Owners;
use gpucost_rules::catalog::Catalog;
use gpucost_rules::owner::Rule;

use super::report::ReportArgs;

/// The owner rules, in PRODUCT.md's order.
pub(crate) const DEFAULT_OWNER_RULES: &str =
    "label-selector,kubernetes-id,namespace-owner,ecs-task-tag,slurm-account,unix-user";

/// `--owner-rules` → rules, naming the one that is not known.
pub(crate) fn parse_rules(names: &[String]) -> anyhow::Result<Vec<Rule>> {
    names
        .iter()
        .map(|r| {
            Rule::parse(r).with_context(|| format!("--owner-rules: unknown rule {r:?}; expected {DEFAULT_OWNER_RULES}"))
        })
        .collect()
}

#[derive(Debug, Args)]
pub(crate) struct LedgerArgs {
    /// Rollup bucket length; must divide a day. Fixed when the ledger is created.
    #[arg(long, env = "GPUCOST_BUCKET", default_value = "1h", value_parser = humantime::parse_duration)]
    pub(crate) bucket: Duration,
    /// How long raw per-interval rows are kept (rollups are kept for good).
    #[arg(long, env = "GPUCOST_RAW_RETENTION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub(crate) raw_retention: Duration,
    /// Longest interval one batch may cover.
    #[arg(long, env = "GPUCOST_MAX_INTERVAL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub(crate) max_interval: Duration,
    /// How far in the future a batch may end (agents' clock skew). A batch further ahead is not stored yet:
    /// its agent keeps it and sends it again later.
    #[arg(long, env = "GPUCOST_MAX_CLOCK_SKEW", default_value = "15m", value_parser = humantime::parse_duration)]
    pub(crate) max_clock_skew: Duration,
    /// A folder of Backstage `catalog-info.yaml` files naming owners (groups, components, systems); the demo
    /// uses `examples/catalog/` when none is given.
    #[arg(long, env = "GPUCOST_CATALOG_DIR")]
    pub(crate) catalog_dir: Option<PathBuf>,
    /// The owner rules, in the order tried (comma-separated).
    #[arg(
        long,
        env = "GPUCOST_OWNER_RULES",
        value_delimiter = ',',
        default_value = DEFAULT_OWNER_RULES
    )]
    pub(crate) owner_rules: Vec<String>,
    #[command(flatten)]
    pub(crate) report: ReportArgs,
    /// Agent and API tokens, hashed (TOML: [[agent]] cluster + sha256, [[api]] name + scope + sha256).
    #[arg(long, env = "GPUCOST_AUTH")]
    pub(crate) auth: Option<PathBuf>,
    /// TLS certificate (PEM, chain) for the agents' gRPC port; reloaded when it changes.
    #[arg(long, env = "GPUCOST_TLS_CERT", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for --tls-cert.
    #[arg(long, env = "GPUCOST_TLS_KEY", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Require agents' client certificates to chain to this CA (PEM): mutual TLS.
    #[arg(long, env = "GPUCOST_TLS_CLIENT_CA", requires = "tls_cert")]
    pub(crate) tls_client_ca: Option<PathBuf>,
    /// Agent streams open at once, at most; more are refused (RESOURCE_EXHAUSTED) until one ends.
    #[arg(long, env = "GPUCOST_MAX_STREAMS", default_value_t = 10_000)]
    pub(crate) max_streams: usize,
    /// Batches per minute per agent stream, kept per cluster: a token's agents share a bucket of this many for
    /// each stream they hold, whatever agent ids their batches name (bursts up to a minute's worth; 0: no
    /// limit). A live agent sends 4; a backlog drains at this rate.
    #[arg(long, env = "GPUCOST_MAX_AGENT_BATCHES_PER_MINUTE", default_value_t = 600)]
    pub(crate) max_agent_batches_per_minute: u32,
    /// Longest an HTTP request may take (the live stream excepted); past it, 503.
    #[arg(long, env = "GPUCOST_HTTP_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub(crate) http_request_timeout: Duration,
    /// An agent stream on which nothing is sent or acked for this long is closed (agents send every 15 s and
    /// open a new stream when they have a batch): idle streams hold no slot for long. After a batch whose
    /// interval is longer than a third of this, three of its intervals.
    #[arg(long, env = "GPUCOST_STREAM_IDLE_TIMEOUT", default_value = "45s", value_parser = humantime::parse_duration)]
    pub(crate) stream_idle_timeout: Duration,
    /// Longest a gRPC connection may take for its TLS handshake and its HTTP/2 preface, and an HTTP connection
    /// to send a request's headers (idle keep-alive included); past it the connection is closed.
    #[arg(long, env = "GPUCOST_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) handshake_timeout: Duration,
    /// Connections the gRPC port holds at once (one per agent); past it the port stops accepting until one
    /// closes. Lowered at start-up, with a warning, when the open-file limit cannot hold it.
    #[arg(long, env = "GPUCOST_MAX_GRPC_CONNECTIONS", default_value_t = 10_240)]
    pub(crate) max_grpc_connections: usize,
    /// Connections the HTTP port holds at once; past it the port stops accepting until one closes.
    #[arg(long, env = "GPUCOST_MAX_HTTP_CONNECTIONS", default_value_t = 1_024)]
    pub(crate) max_http_connections: usize,
    /// Serve gRPC in plain text while still requiring tokens, when a proxy in front (an ALB) terminates TLS.
    #[arg(long, env = "GPUCOST_GRPC_PLAINTEXT", conflicts_with = "tls_cert")]
    pub(crate) grpc_plaintext: bool,
    /// Accept people signed in by the AWS ALB's OIDC: the ALB's public-key endpoint, e.g.
    /// https://public-keys.auth.elb.us-east-1.amazonaws.com (the x-amzn-oidc-data header is verified with it).
    #[arg(long, env = "GPUCOST_ALB_OIDC_KEYS")]
    pub(crate) alb_oidc_keys: Option<String>,
    /// The ALB (its ARN) whose OIDC headers are accepted.
    #[arg(long, env = "GPUCOST_ALB_ARN", requires = "alb_oidc_keys")]
    pub(crate) alb_arn: Option<String>,
    /// Signed-in users (email) with admin scope; the others read.
    #[arg(long, env = "GPUCOST_ALB_OIDC_ADMINS", value_delimiter = ',', requires = "alb_oidc_keys")]
    pub(crate) alb_oidc_admins: Vec<String>,
    /// Run without tokens (plain-text gRPC, open API): for development only; logs a warning.
    #[arg(long, env = "GPUCOST_INSECURE")]
    pub(crate) insecure: bool,
    /// At most this many series per labelled metric family on /metrics (past it, new label sets count as `other`).
    #[arg(long, env = "GPUCOST_METRICS_MAX_SERIES", default_value_t = 2000)]
    pub(crate) metrics_max_series: usize,
    /// Budgets file (TOML, `[[budget]]` tables); its budgets can only be changed there, not through the API.
    #[arg(long, env = "GPUCOST_BUDGETS")]
    pub(crate) budgets: Option<PathBuf>,
    /// How often budgets are evaluated (and Alertmanager's firing alerts refreshed).
    #[arg(long, env = "GPUCOST_BUDGET_EVAL_INTERVAL", default_value = "1m", value_parser = humantime::parse_duration)]
    pub(crate) budget_eval_interval: Duration,
    /// Slack-compatible incoming webhook for budget alerts.
    #[arg(long, env = "GPUCOST_ALERT_SLACK_WEBHOOK")]
    pub(crate) alert_slack_webhook: Option<String>,
    /// Generic JSON webhook for budget alerts, signed with HMAC-SHA256 (header X-Gpucost-Signature-256).
    #[arg(long, env = "GPUCOST_ALERT_WEBHOOK", requires = "alert_webhook_secret")]
    pub(crate) alert_webhook: Option<String>,
    /// The webhook's signing secret (prefer the environment variable).
    #[arg(long, env = "GPUCOST_ALERT_WEBHOOK_SECRET", hide_env_values = true)]
    pub(crate) alert_webhook_secret: Option<String>,
    /// Alertmanager to send budget alerts to (POST /api/v2/alerts), e.g. http://alertmanager:9093.
    #[arg(long, env = "GPUCOST_ALERTMANAGER_URL")]
    pub(crate) alertmanager_url: Option<String>,
    /// Backstage to sync the catalog from (owners, teams, components), e.g. http://backstage:7007.
    #[arg(long, env = "GPUCOST_BACKSTAGE_URL")]
    pub(crate) backstage_url: Option<String>,
    /// Token for Backstage's API (a static external-access token).
    #[arg(long, env = "GPUCOST_BACKSTAGE_TOKEN", hide_env_values = true)]
    pub(crate) backstage_token: Option<String>,
    /// How often to sync the catalog from Backstage.
    #[arg(long, env = "GPUCOST_BACKSTAGE_SYNC_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub(crate) backstage_sync_interval: Duration,
    /// MLflow tracking server to write GPU cost back to (tags on runs and model versions). Auth from
    /// MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD, else MLFLOW_TRACKING_TOKEN.
    #[arg(long, env = "GPUCOST_MLFLOW_URL")]
    pub(crate) mlflow_url: Option<String>,
    /// MLflow's web UI, for links to models, versions and runs in the dashboard and `GET /api/v1/models/{name}`
    /// (default: --mlflow-url; set it alone to link without writing back).
    #[arg(long, env = "GPUCOST_MLFLOW_UI_URL")]
    pub(crate) mlflow_ui_url: Option<String>,
    /// How often to write costs back to MLflow.
    #[arg(long, env = "GPUCOST_MLFLOW_WRITEBACK_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub(crate) mlflow_writeback_interval: Duration,
    /// Prices file (TOML): overrides, discounts and region rules on top of the shipped AWS catalogue.
    #[arg(long, env = "GPUCOST_PRICES")]
    pub(crate) prices: Option<PathBuf>,
    /// Discover EKS node groups and ECS GPU container instances through the AWS APIs (standard AWS
    /// credential chain and region), to price nodes whose agent reported no instance type.
    #[arg(long, env = "GPUCOST_AWS_DISCOVERY")]
    pub(crate) aws_discovery: bool,
    /// An AWS-compatible endpoint to discover from instead of AWS (e.g. an emulator).
    #[arg(long, env = "GPUCOST_AWS_ENDPOINT_URL", requires = "aws_discovery")]
    pub(crate) aws_endpoint_url: Option<String>,
    /// How often to repeat discovery.
    #[arg(long, env = "GPUCOST_AWS_DISCOVERY_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub(crate) aws_discovery_interval: Duration,
    /// Import the AWS bill (Data Exports: CUR 2.0 or FOCUS 1.2) from this folder (a copy of the exports'
    /// S3 prefix) every --bill-import-interval.
    #[arg(long, env = "GPUCOST_BILL_DIR", conflicts_with = "bill_s3")]
    pub(crate) bill_dir: Option<PathBuf>,
    /// Import the AWS bill from the bucket and prefix its exports are delivered to, s3://bucket/prefix
    /// (standard AWS credential chain).
    #[arg(long, env = "GPUCOST_BILL_S3")]
    pub(crate) bill_s3: Option<String>,
    /// An S3-compatible endpoint for --bill-s3 instead of AWS's (e.g. an emulator).
    #[arg(long, env = "GPUCOST_BILL_S3_ENDPOINT_URL", requires = "bill_s3")]
    pub(crate) bill_s3_endpoint_url: Option<String>,
    /// Import only this export (its Data Exports name).
    #[arg(long, env = "GPUCOST_BILL_EXPORT")]
    pub(crate) bill_export: Option<String>,
    /// How often to look for new or restated bill deliveries (AWS refreshes an export at least daily).
    #[arg(long, env = "GPUCOST_BILL_IMPORT_INTERVAL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub(crate) bill_import_interval: Duration,
}

impl LedgerArgs {
    /// Bill import, when --bill-dir or --bill-s3 is given.
    pub(crate) fn bill(&self) -> Option<gpucost_collector::jobs::BillConfig> {
        use gpucost_collector::jobs::{BillConfig, BillSource};
        let source = match (&self.bill_dir, &self.bill_s3) {
            (Some(dir), _) => BillSource::Dir(dir.clone()),
            (None, Some(uri)) => BillSource::S3 { uri: uri.clone(), endpoint_url: self.bill_s3_endpoint_url.clone() },
            (None, None) => return None,
        };
        Some(BillConfig { source, export: self.bill_export.clone(), every: self.bill_import_interval })
    }

    /// The owners configuration: the catalog folder's entities (or `fallback`) and the rule order.
    pub(crate) fn owners(&self, fallback: Option<Catalog>) -> anyhow::Result<Option<Owners>> {
        let rules = parse_rules(&self.owner_rules)?;
        let catalog = match &self.catalog_dir {
            Some(dir) => Some(gpucost_collector::files::catalog_dir(dir).map_err(anyhow::Error::msg)?),
            // Filled by the first sync.
            None if self.backstage_url.is_some() => Some(Catalog::default()),
            None => fallback,
        };
        Ok(catalog.map(|catalog| Owners { catalog, rules }))
    }
}
