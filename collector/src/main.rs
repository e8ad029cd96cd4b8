//! `gpucost-collector`: see `gpucost-collector --help`.

/// The collector allocates per batch on several threads at once; glibc's malloc spent ~40 % of a
/// backfill in its arena locks (BENCHMARKS.md). mimalloc's thread-local heaps do not contend.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use gpucost_agent::sim::FleetSpec;
use gpucost_collector::demo::{self, DemoConfig};
use gpucost_collector::enrich::mlflow::Auth;
use gpucost_collector::ingest::validate::Limits;
use gpucost_collector::server::{BackstageConfig, DiscoveryConfig, MlflowConfig, ServeConfig, Server};
use gpucost_rules::attribute::Owners;
use gpucost_rules::book::PriceBook;
use gpucost_rules::catalog::Catalog;
use gpucost_rules::owner::Rule;

/// The gpucost collector: ingests GPU usage from agents, stores it, serves the API.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Log format: text, json, or auto (json when stderr is not a terminal).
    #[arg(long, global = true, env = "GPUCOST_LOG_FORMAT", default_value = "auto")]
    log_format: String,
    /// A TOML file that sets any flag of the command (keys are the flags' long names; `config example` prints
    /// one); flags and environment variables override it.
    #[arg(long, global = true, env = "GPUCOST_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the collector.
    Serve(ServeArgs),
    /// Run the collector with a simulated fleet streaming to it.
    Demo(DemoArgs),
    /// Re-price stored history with the current prices (catalogue + --prices), recording what changed.
    Reprice(RepriceArgs),
    /// Re-resolve the owners of stored history with the current catalog.
    Reattribute(ReattributeArgs),
    /// Reports from a ledger file.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Close an ended month: its report never changes; GPU time that arrives late for it is billed in the
    /// next open month as a correction.
    ClosePeriod(ClosePeriodArgs),
    /// Print the SHA-256 of a token read from standard input, for the --auth file.
    HashToken,
    /// Copy an SQLite ledger into an empty PostgreSQL one, verify the copy and say what was copied.
    Migrate(MigrateArgs),
    /// Configuration files: check one without starting, or print a commented one with every setting.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a configuration file as `serve` (or --command) would read it, with the environment, opening
    /// nothing: every key, every value, the files it names and the settings together.
    Check {
        /// The file.
        file: PathBuf,
        /// The command the file is for.
        #[arg(long, default_value = "serve", value_parser = ["serve", "demo"])]
        command: String,
    },
    /// Print a configuration file with every setting of `serve` (or the command given) and its default, commented out.
    Example {
        /// The command the file is for.
        #[arg(default_value = "serve", value_parser = ["serve", "demo", "reprice", "reattribute", "close-period"])]
        command: String,
    },
}

/// The global flags that take a value (so the subcommand can be found among the arguments).
const GLOBALS_WITH_VALUE: &[&str] = &["--log-format", "--config"];

/// Parses the command line over the configuration file it (or GPUCOST_CONFIG) names, if any.
fn parse_cli(argv: &[std::ffi::OsString]) -> Result<Cli, String> {
    use clap::{CommandFactory, FromArgMatches};
    use gpucost_cli::config_file::{self, ConfigFile};
    let mut command = Cli::command();
    if let Some(path) = config_file::path_from(argv, "GPUCOST_CONFIG") {
        let sub = config_file::subcommand_from(argv, GLOBALS_WITH_VALUE).map(|s| s.to_string_lossy().to_string());
        // `config check FILE` reads its own file; the others apply theirs to the command they run.
        if sub.as_deref() != Some("config") {
            let file = ConfigFile::load(&path).map_err(|e| e.to_string())?;
            command = config_file::apply(command, sub.as_deref(), &file).map_err(|e| e.to_string())?;
        }
    }
    let matches = command.try_get_matches_from(argv).unwrap_or_else(|e| e.exit());
    Cli::from_arg_matches(&matches).map_err(|e| e.to_string())
}

/// `config check`: the file applied to `command`, parsed with the environment, and everything `serve` (or
/// `demo`) checks before it opens anything.
fn config_check(file: &std::path::Path, command: &str) -> anyhow::Result<()> {
    use clap::{CommandFactory, FromArgMatches};
    use gpucost_cli::config_file::{self, ConfigFile};
    let parsed = ConfigFile::load(file)?;
    let cmd = config_file::apply(Cli::command(), Some(command), &parsed)?;
    let matches = cmd
        .try_get_matches_from(["gpucost-collector", command])
        .map_err(|e| anyhow::anyhow!("{}: {}", file.display(), e.to_string().trim_start_matches("error: ").trim()))?;
    let cli = Cli::from_arg_matches(&matches)?;
    match cli.command {
        Command::Serve(a) => {
            serve_config(&a)?.validate()?;
        }
        Command::Demo(a) => {
            anyhow::ensure!(a.nodes > 0, "--nodes must be at least 1");
            a.ledger.owners(None)?;
            a.ledger.budget_config()?;
        }
        _ => unreachable!("config check reads serve and demo files"),
    }
    println!("{}: valid for `gpucost-collector {command}` ({} settings)", file.display(), parsed.keys().count());
    Ok(())
}

/// What `serve` runs with, read and checked: the prices, owner rules, budgets and auth files loaded.
fn serve_config(a: &ServeArgs) -> anyhow::Result<ServeConfig> {
    let prices = gpucost_collector::files::price_book(a.ledger.prices.as_deref()).map_err(anyhow::Error::msg)?;
    warn_unmatched(a.ledger.prices.as_deref(), &prices, None);
    let owners = a.ledger.owners(None)?;
    let mut config = a.ledger.serve_config(a.grpc, a.http, a.db.clone(), prices, owners);
    config.budgets = a.ledger.budget_config()?;
    config.auth = Arc::new(a.ledger.auth_config(false)?);
    Ok(config)
}

#[derive(Debug, Args)]
struct MigrateArgs {
    /// The SQLite ledger: a file, or sqlite://FILE.
    #[arg(long)]
    from: String,
    /// The PostgreSQL ledger: postgres://user:password@host:5432/db (must hold no data yet).
    #[arg(long, hide_env_values = true, env = "GPUCOST_MIGRATE_TO")]
    to: String,
}

fn migrate(a: MigrateArgs) -> anyhow::Result<()> {
    #[cfg(feature = "postgres")]
    {
        let from = PathBuf::from(a.from.strip_prefix("sqlite://").unwrap_or(&a.from));
        anyhow::ensure!(
            a.to.starts_with("postgres://") || a.to.starts_with("postgresql://"),
            "--to must be a postgres:// URL"
        );
        let began = std::time::Instant::now();
        let report = gpucost_ledger::copy::sqlite_to_postgres(&from, &a.to)?;
        let rows: u64 = report.tables.iter().map(|(_, n)| n).sum();
        println!(
            "copied {rows} rows in {} tables from {} to {} in {:.1} s",
            report.tables.len(),
            from.display(),
            gpucost_ledger::sql::postgres::redact(&a.to),
            began.elapsed().as_secs_f64()
        );
        for (t, n) in &report.tables {
            println!("  {t}: {n} rows");
        }
        for (what, value) in &report.checks {
            println!("verified: {what} {value} on both sides");
        }
        Ok(())
    }
    #[cfg(not(feature = "postgres"))]
    {
        let _ = a;
        anyhow::bail!("migrate: this collector was built without the PostgreSQL ledger (cargo feature `postgres`)")
    }
}

#[derive(Debug, Args)]
struct ClosePeriodArgs {
    /// The ledger: an SQLite file, or a PostgreSQL URL (postgres://user:password@host:5432/db).
    #[arg(long, env = "GPUCOST_DB", default_value = "./gpucost.db", hide_env_values = true)]
    db: PathBuf,
    /// The month, e.g. 2026-10.
    #[arg(long)]
    period: String,
}

fn close_period(a: ClosePeriodArgs) -> anyhow::Result<()> {
    let period = gpucost_types::period::Period::parse(&a.period).map_err(anyhow::Error::msg)?;
    let ledger = open_existing(&a.db)?;
    let closed = ledger.close_period(&period, gpucost_types::clock::now_ns())?;
    println!(
        "closed {} ({} to {})",
        closed.period,
        gpucost_types::period::utc(closed.from_ns),
        gpucost_types::period::utc(closed.to_ns)
    );
    Ok(())
}

#[derive(Debug, Subcommand)]
enum ReportCommand {
    /// The chargeback for a period (month by default) as CSV, JSON or a FinOps FOCUS file. Warns on
    /// standard error when the ledger holds no data for part of the period; exits 3 when it holds none.
    Chargeback(ChargebackArgs),
}

#[derive(Debug, Args)]
struct ChargebackArgs {
    /// The ledger: an SQLite file, or a PostgreSQL URL (postgres://user:password@host:5432/db).
    #[arg(long, env = "GPUCOST_DB", default_value = "./gpucost.db", hide_env_values = true)]
    db: PathBuf,
    /// A month (2026-11) or an ISO week (2026-W48); default: the current month. Or --from/--to.
    #[arg(long)]
    period: Option<String>,
    /// Start of an arbitrary window (RFC 3339 or Unix seconds), with --to.
    #[arg(long)]
    from: Option<String>,
    /// End of the window (exclusive).
    #[arg(long)]
    to: Option<String>,
    /// team, department, owner, cost_center, model, namespace or cluster.
    #[arg(long, default_value = "team")]
    group_by: String,
    /// json, csv or focus.
    #[arg(long, default_value = "csv")]
    format: String,
    /// allocation, utilization or hybrid.
    #[arg(long, default_value = "hybrid")]
    policy: String,
    /// Backstage catalog-info.yaml files, for cost centres.
    #[arg(long, env = "GPUCOST_CATALOG_DIR")]
    catalog_dir: Option<PathBuf>,
    /// Write the report here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    report: ReportArgs,
}

/// How reports name cost centres and the parties of the FOCUS export.
#[derive(Debug, Args)]
struct ReportArgs {
    /// The Backstage group annotation holding a team's cost centre (inherited from parent groups).
    #[arg(long, env = "GPUCOST_COST_CENTER_ANNOTATION", default_value = "gpucost.io/cost-center")]
    cost_center_annotation: String,
    /// FOCUS ProviderName and InvoiceIssuerName: the platform that charges teams.
    #[arg(long, env = "GPUCOST_FOCUS_PROVIDER", default_value = "GPU Platform")]
    focus_provider: String,
    /// FOCUS BillingAccountId (not all digits: FOCUS tools read such ids as numbers).
    #[arg(long, env = "GPUCOST_FOCUS_BILLING_ACCOUNT", default_value = "gpucost-chargeback")]
    focus_billing_account: String,
}

impl ReportArgs {
    fn config(&self) -> gpucost_report::request::ReportConfig {
        gpucost_report::request::ReportConfig {
            cost_center_annotation: self.cost_center_annotation.clone(),
            parties: gpucost_report::focus::Parties {
                provider: self.focus_provider.clone(),
                billing_account_id: self.focus_billing_account.clone(),
                billing_account_name: self.focus_billing_account.clone(),
            },
        }
    }
}

/// The owner rules, in PRODUCT.md's order.
const DEFAULT_OWNER_RULES: &str = "label-selector,kubernetes-id,namespace-owner,ecs-task-tag,slurm-account,unix-user";

/// `--owner-rules` → rules, naming the one that is not known.
fn parse_rules(names: &[String]) -> anyhow::Result<Vec<Rule>> {
    names
        .iter()
        .map(|r| {
            Rule::parse(r).with_context(|| format!("--owner-rules: unknown rule {r:?}; expected {DEFAULT_OWNER_RULES}"))
        })
        .collect()
}

/// Opens the ledger at `db` for an offline command and widens [`from`, `to` or now) to whole buckets.
/// The ledger `--db` names, for a one-off command: an existing SQLite file, or a PostgreSQL URL; opened with the
/// bucket length it was made with, and no retention pruning.
fn open_existing(db: &std::path::Path) -> anyhow::Result<Box<dyn gpucost_ledger::Ledger>> {
    use gpucost_ledger::SqliteLedger;
    let url = db.to_string_lossy();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        {
            let redacted = gpucost_ledger::sql::postgres::redact(&url);
            let ledger = gpucost_ledger::SqlLedger::open_postgres_existing(&url, u64::MAX)
                .with_context(|| format!("opening the PostgreSQL ledger at {redacted} (--db)"))?;
            return Ok(Box::new(ledger));
        }
        #[cfg(not(feature = "postgres"))]
        anyhow::bail!("--db: this collector was built without the PostgreSQL ledger (cargo feature `postgres`)");
    }
    anyhow::ensure!(db.exists(), "no ledger at {} (--db)", db.display());
    Ok(Box::new(SqliteLedger::open(db, SqliteLedger::stored_bucket_ns(db)?, u64::MAX)?))
}

fn open_range(
    db: &std::path::Path,
    from: std::time::SystemTime,
    to: Option<std::time::SystemTime>,
) -> anyhow::Result<(Box<dyn gpucost_ledger::Ledger>, u64, u64)> {
    let ns = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64);
    let ledger = open_existing(db)?;
    let bucket = ledger.bucket_ns();
    let from = ns(from)? / bucket * bucket;
    let to = to.map(ns).transpose()?.unwrap_or_else(gpucost_collector::now_ns).div_ceil(bucket) * bucket;
    anyhow::ensure!(from < to, "--from must be before --to");
    Ok((ledger, from, to))
}

#[derive(Debug, Args)]
struct ReattributeArgs {
    /// The ledger: an SQLite file, or a PostgreSQL URL (postgres://user:password@host:5432/db).
    #[arg(long, env = "GPUCOST_DB", default_value = "./gpucost.db", hide_env_values = true)]
    db: PathBuf,
    /// From this time on (RFC 3339; widened to the bucket it falls in).
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    from: std::time::SystemTime,
    /// Up to this time (default: now).
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    to: Option<std::time::SystemTime>,
    /// Where the catalog to resolve owners with comes from: `folder` (--catalog-dir), `backstage`
    /// (--backstage-url) or `ledger` (the last good Backstage catalog a collector kept in --db). Default: the
    /// one of --catalog-dir and --backstage-url given.
    #[arg(long, value_enum)]
    catalog_from: Option<CatalogFrom>,
    /// The catalog as Backstage catalog-info.yaml files.
    #[arg(long, env = "GPUCOST_CATALOG_DIR")]
    catalog_dir: Option<PathBuf>,
    /// Backstage to read the catalog from, as `serve` takes it.
    #[arg(long, env = "GPUCOST_BACKSTAGE_URL")]
    backstage_url: Option<String>,
    /// Token for Backstage's API (a static external-access token).
    #[arg(long, env = "GPUCOST_BACKSTAGE_TOKEN", hide_env_values = true)]
    backstage_token: Option<String>,
    /// The owner rules, in the order tried (comma-separated).
    #[arg(
        long,
        env = "GPUCOST_OWNER_RULES",
        value_delimiter = ',',
        default_value = DEFAULT_OWNER_RULES
    )]
    owner_rules: Vec<String>,
    /// Show what would change without writing anything.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CatalogFrom {
    Folder,
    Backstage,
    Ledger,
}

impl ReattributeArgs {
    /// The catalog to re-attribute with, from the source chosen; refuses an empty one, which would make every
    /// workload of the window unattributed.
    fn catalog(&self, ledger: &dyn gpucost_ledger::Ledger) -> anyhow::Result<Catalog> {
        use gpucost_collector::enrich::backstage;
        let from = match (self.catalog_from, &self.catalog_dir, &self.backstage_url) {
            (Some(from), _, _) => from,
            (None, Some(_), None) => CatalogFrom::Folder,
            (None, None, Some(_)) => CatalogFrom::Backstage,
            (None, Some(_), Some(_)) => {
                anyhow::bail!("both --catalog-dir and --backstage-url are given: choose one with --catalog-from")
            }
            (None, None, None) => anyhow::bail!(
                "no catalog to re-attribute with: give --catalog-dir <folder>, --backstage-url <url>, or \
                 --catalog-from ledger (the last good Backstage catalog a collector kept in the ledger)"
            ),
        };
        let kept = || backstage::kept(ledger).map_err(anyhow::Error::msg);
        let (catalog, source) = match from {
            CatalogFrom::Folder => {
                let dir = self.catalog_dir.as_ref().context("--catalog-from folder needs --catalog-dir")?;
                (
                    gpucost_collector::files::catalog_dir(dir).map_err(anyhow::Error::msg)?,
                    format!("--catalog-dir {}", dir.display()),
                )
            }
            CatalogFrom::Backstage => {
                let url = self.backstage_url.as_ref().context("--catalog-from backstage needs --backstage-url")?;
                let token = self.backstage_token.as_deref();
                let catalog = backstage::fetch(url, token, Duration::from_secs(20)).map_err(|e| {
                    let hint = match kept() {
                        Ok(Some((_, at))) => format!(
                            "; --catalog-from ledger re-attributes with the copy a collector kept, fetched {}",
                            gpucost_types::period::utc(at)
                        ),
                        _ => String::new(),
                    };
                    anyhow::anyhow!("cannot read the catalog: {e}{hint}")
                })?;
                (catalog, format!("Backstage at {url}"))
            }
            CatalogFrom::Ledger => match kept()? {
                Some((catalog, at)) => {
                    println!(
                        "catalog: the copy kept in the ledger, fetched from Backstage {}",
                        gpucost_types::period::utc(at)
                    );
                    (catalog, "the copy kept in the ledger".to_string())
                }
                None => anyhow::bail!(
                    "the ledger at {} keeps no Backstage catalog (a collector keeps one after each successful sync \
                     with --backstage-url); give --catalog-dir or --backstage-url",
                    self.db.display()
                ),
            },
        };
        anyhow::ensure!(
            !catalog.is_empty(),
            "the catalog from {source} is empty: refusing to re-attribute with it (every workload would become \
             unattributed)"
        );
        Ok(catalog)
    }
}

fn report_chargeback(a: ChargebackArgs) -> anyhow::Result<()> {
    use gpucost_report::request::{ChargebackRequest, Window, render};
    let window = Window { period: a.period.as_deref(), from: a.from.as_deref(), to: a.to.as_deref() };
    let req = ChargebackRequest::new(
        window,
        Some(&a.group_by),
        Some(&a.format),
        Some(&a.policy),
        gpucost_types::clock::now_ns(),
    )
    .map_err(anyhow::Error::msg)?;
    let ledger = open_existing(&a.db)?;
    let catalog =
        a.catalog_dir.as_deref().map(gpucost_collector::files::catalog_dir).transpose().map_err(anyhow::Error::msg)?;
    let config = a.report.config();
    let centers = |team: &str| catalog.as_ref()?.cost_center(team, &config.cost_center_annotation);
    let report = render(ledger.as_ref(), &req, &config, &centers)?;
    match &a.out {
        Some(path) => std::fs::write(path, &report.body).with_context(|| format!("writing {}", path.display()))?,
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(report.body.as_bytes()).and_then(|()| out.flush()).context("writing the report")?;
        }
    }
    if let Some(w) = &report.warning {
        eprintln!("warning: {w}");
    }
    if report.coverage.is_empty() {
        // The report is written (all zero) and says so; scripts tell "no data" from "data" by the code.
        std::process::exit(NO_DATA_EXIT_CODE);
    }
    Ok(())
}

/// The exit code of `report chargeback` for a period the ledger holds no GPU time for.
const NO_DATA_EXIT_CODE: i32 = 3;

#[derive(Debug, Args)]
struct RepriceArgs {
    /// The ledger: an SQLite file, or a PostgreSQL URL (postgres://user:password@host:5432/db).
    #[arg(long, env = "GPUCOST_DB", default_value = "./gpucost.db", hide_env_values = true)]
    db: PathBuf,
    /// Re-price from this time on (RFC 3339; widened to the bucket it falls in).
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    from: std::time::SystemTime,
    /// Up to this time (default: now).
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    to: Option<std::time::SystemTime>,
    /// Prices file (TOML) on top of the shipped catalogue.
    #[arg(long, env = "GPUCOST_PRICES")]
    prices: Option<PathBuf>,
    /// Show what would change without writing anything.
    #[arg(long)]
    dry_run: bool,
    /// Apply prices that leave priced GPU time unpriced or at $0 (refused without it, naming the nodes).
    #[arg(long)]
    allow_unpriced: bool,
    /// Re-price with a prices file some of whose entries match nothing known (refused without it).
    #[arg(long)]
    allow_unmatched: bool,
}

#[derive(Debug, Args)]
struct LedgerArgs {
    /// Rollup bucket length; must divide a day. Fixed when the ledger is created.
    #[arg(long, env = "GPUCOST_BUCKET", default_value = "1h", value_parser = humantime::parse_duration)]
    bucket: Duration,
    /// How long raw per-interval rows are kept (rollups are kept for good).
    #[arg(long, env = "GPUCOST_RAW_RETENTION", default_value = "7d", value_parser = humantime::parse_duration)]
    raw_retention: Duration,
    /// Longest interval one batch may cover.
    #[arg(long, env = "GPUCOST_MAX_INTERVAL", default_value = "1h", value_parser = humantime::parse_duration)]
    max_interval: Duration,
    /// How far in the future a batch may end (agents' clock skew). A batch further ahead is not stored yet:
    /// its agent keeps it and sends it again later.
    #[arg(long, env = "GPUCOST_MAX_CLOCK_SKEW", default_value = "15m", value_parser = humantime::parse_duration)]
    max_clock_skew: Duration,
    /// A folder of Backstage `catalog-info.yaml` files naming owners (groups, components, systems); the demo
    /// uses `examples/catalog/` when none is given.
    #[arg(long, env = "GPUCOST_CATALOG_DIR")]
    catalog_dir: Option<PathBuf>,
    /// The owner rules, in the order tried (comma-separated).
    #[arg(
        long,
        env = "GPUCOST_OWNER_RULES",
        value_delimiter = ',',
        default_value = DEFAULT_OWNER_RULES
    )]
    owner_rules: Vec<String>,
    #[command(flatten)]
    report: ReportArgs,
    /// Agent and API tokens, hashed (TOML: [[agent]] cluster + sha256, [[api]] name + scope + sha256).
    #[arg(long, env = "GPUCOST_AUTH")]
    auth: Option<PathBuf>,
    /// TLS certificate (PEM, chain) for the agents' gRPC port; reloaded when it changes.
    #[arg(long, env = "GPUCOST_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for --tls-cert.
    #[arg(long, env = "GPUCOST_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require agents' client certificates to chain to this CA (PEM): mutual TLS.
    #[arg(long, env = "GPUCOST_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Agent streams open at once, at most; more are refused (RESOURCE_EXHAUSTED) until one ends.
    #[arg(long, env = "GPUCOST_MAX_STREAMS", default_value_t = 10_000)]
    max_streams: usize,
    /// Batches per minute per agent stream, kept per cluster: a token's agents share a bucket of this many for
    /// each stream they hold, whatever agent ids their batches name (bursts up to a minute's worth; 0: no
    /// limit). A live agent sends 4; a backlog drains at this rate.
    #[arg(long, env = "GPUCOST_MAX_AGENT_BATCHES_PER_MINUTE", default_value_t = 600)]
    max_agent_batches_per_minute: u32,
    /// Longest an HTTP request may take (the live stream excepted); past it, 503.
    #[arg(long, env = "GPUCOST_HTTP_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    http_request_timeout: Duration,
    /// An agent stream on which nothing is sent or acked for this long is closed (agents send every 15 s and
    /// open a new stream when they have a batch): idle streams hold no slot for long. After a batch whose
    /// interval is longer than a third of this, three of its intervals.
    #[arg(long, env = "GPUCOST_STREAM_IDLE_TIMEOUT", default_value = "45s", value_parser = humantime::parse_duration)]
    stream_idle_timeout: Duration,
    /// Longest a gRPC connection may take for its TLS handshake and its HTTP/2 preface, and an HTTP connection
    /// to send a request's headers (idle keep-alive included); past it the connection is closed.
    #[arg(long, env = "GPUCOST_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    handshake_timeout: Duration,
    /// Connections the gRPC port holds at once (one per agent); past it the port stops accepting until one
    /// closes. Lowered at start-up, with a warning, when the open-file limit cannot hold it.
    #[arg(long, env = "GPUCOST_MAX_GRPC_CONNECTIONS", default_value_t = 10_240)]
    max_grpc_connections: usize,
    /// Connections the HTTP port holds at once; past it the port stops accepting until one closes.
    #[arg(long, env = "GPUCOST_MAX_HTTP_CONNECTIONS", default_value_t = 1_024)]
    max_http_connections: usize,
    /// Serve gRPC in plain text while still requiring tokens, when a proxy in front (an ALB) terminates TLS.
    #[arg(long, env = "GPUCOST_GRPC_PLAINTEXT", conflicts_with = "tls_cert")]
    grpc_plaintext: bool,
    /// Accept people signed in by the AWS ALB's OIDC: the ALB's public-key endpoint, e.g.
    /// https://public-keys.auth.elb.us-east-1.amazonaws.com (the x-amzn-oidc-data header is verified with it).
    #[arg(long, env = "GPUCOST_ALB_OIDC_KEYS")]
    alb_oidc_keys: Option<String>,
    /// The ALB (its ARN) whose OIDC headers are accepted.
    #[arg(long, env = "GPUCOST_ALB_ARN", requires = "alb_oidc_keys")]
    alb_arn: Option<String>,
    /// Signed-in users (email) with admin scope; the others read.
    #[arg(long, env = "GPUCOST_ALB_OIDC_ADMINS", value_delimiter = ',', requires = "alb_oidc_keys")]
    alb_oidc_admins: Vec<String>,
    /// Run without tokens (plain-text gRPC, open API): for development only; logs a warning.
    #[arg(long, env = "GPUCOST_INSECURE")]
    insecure: bool,
    /// At most this many series per labelled metric family on /metrics (past it, new label sets count as `other`).
    #[arg(long, env = "GPUCOST_METRICS_MAX_SERIES", default_value_t = 2000)]
    metrics_max_series: usize,
    /// Budgets file (TOML, `[[budget]]` tables); its budgets can only be changed there, not through the API.
    #[arg(long, env = "GPUCOST_BUDGETS")]
    budgets: Option<PathBuf>,
    /// How often budgets are evaluated (and Alertmanager's firing alerts refreshed).
    #[arg(long, env = "GPUCOST_BUDGET_EVAL_INTERVAL", default_value = "1m", value_parser = humantime::parse_duration)]
    budget_eval_interval: Duration,
    /// Slack-compatible incoming webhook for budget alerts.
    #[arg(long, env = "GPUCOST_ALERT_SLACK_WEBHOOK")]
    alert_slack_webhook: Option<String>,
    /// Generic JSON webhook for budget alerts, signed with HMAC-SHA256 (header X-Gpucost-Signature-256).
    #[arg(long, env = "GPUCOST_ALERT_WEBHOOK", requires = "alert_webhook_secret")]
    alert_webhook: Option<String>,
    /// The webhook's signing secret (prefer the environment variable).
    #[arg(long, env = "GPUCOST_ALERT_WEBHOOK_SECRET", hide_env_values = true)]
    alert_webhook_secret: Option<String>,
    /// Alertmanager to send budget alerts to (POST /api/v2/alerts), e.g. http://alertmanager:9093.
    #[arg(long, env = "GPUCOST_ALERTMANAGER_URL")]
    alertmanager_url: Option<String>,
    /// Backstage to sync the catalog from (owners, teams, components), e.g. http://backstage:7007.
    #[arg(long, env = "GPUCOST_BACKSTAGE_URL")]
    backstage_url: Option<String>,
    /// Token for Backstage's API (a static external-access token).
    #[arg(long, env = "GPUCOST_BACKSTAGE_TOKEN", hide_env_values = true)]
    backstage_token: Option<String>,
    /// How often to sync the catalog from Backstage.
    #[arg(long, env = "GPUCOST_BACKSTAGE_SYNC_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    backstage_sync_interval: Duration,
    /// MLflow tracking server to write GPU cost back to (tags on runs and model versions). Auth from
    /// MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD, else MLFLOW_TRACKING_TOKEN.
    #[arg(long, env = "GPUCOST_MLFLOW_URL")]
    mlflow_url: Option<String>,
    /// How often to write costs back to MLflow.
    #[arg(long, env = "GPUCOST_MLFLOW_WRITEBACK_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    mlflow_writeback_interval: Duration,
    /// Prices file (TOML): overrides, discounts and region rules on top of the shipped AWS catalogue.
    #[arg(long, env = "GPUCOST_PRICES")]
    prices: Option<PathBuf>,
    /// Discover EKS node groups and ECS GPU container instances through the AWS APIs (standard AWS
    /// credential chain and region), to price nodes whose agent reported no instance type.
    #[arg(long, env = "GPUCOST_AWS_DISCOVERY")]
    aws_discovery: bool,
    /// An AWS-compatible endpoint to discover from instead of AWS (e.g. an emulator).
    #[arg(long, env = "GPUCOST_AWS_ENDPOINT_URL", requires = "aws_discovery")]
    aws_endpoint_url: Option<String>,
    /// How often to repeat discovery.
    #[arg(long, env = "GPUCOST_AWS_DISCOVERY_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    aws_discovery_interval: Duration,
}

#[derive(Debug, Args)]
struct ServeArgs {
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

#[derive(Debug, Args)]
struct DemoArgs {
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

impl LedgerArgs {
    /// The owners configuration: the catalog folder's entities (or `fallback`) and the rule order.
    fn owners(&self, fallback: Option<Catalog>) -> anyhow::Result<Option<Owners>> {
        let rules = parse_rules(&self.owner_rules)?;
        let catalog = match &self.catalog_dir {
            Some(dir) => Some(gpucost_collector::files::catalog_dir(dir).map_err(anyhow::Error::msg)?),
            // Filled by the first sync.
            None if self.backstage_url.is_some() => Some(Catalog::default()),
            None => fallback,
        };
        Ok(catalog.map(|catalog| Owners { catalog, rules }))
    }

    /// The tokens from `--auth`, or an open collector with `--insecure` (always for the local demo); refuses
    /// an unprotected setup otherwise.
    fn auth_config(&self, demo: bool) -> anyhow::Result<gpucost_collector::auth::Auth> {
        use gpucost_collector::auth::Auth;
        let mut auth = match &self.auth {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).with_context(|| format!("reading --auth {}", path.display()))?;
                Auth::from_toml(&path.display().to_string(), &text).map_err(anyhow::Error::msg)?
            }
            None => Auth::default(),
        };
        if let Some(keys) = &self.alb_oidc_keys {
            auth.alb = Some(Arc::new(gpucost_collector::auth::alb_oidc::AlbOidc::new(
                keys,
                self.alb_arn.as_deref().unwrap_or_default(),
                self.alb_oidc_admins.clone(),
            )));
        }
        auth.insecure = self.insecure || (demo && self.auth.is_none());
        auth.check_complete().map_err(anyhow::Error::msg)?;
        if auth.insecure && !demo {
            tracing::warn!("--insecure: agents and API clients are not authenticated; use --auth outside development");
        }
        Ok(auth)
    }

    /// Budgets from `--budgets`, the evaluation interval and the notifiers; a bad file is an error naming it.
    fn budget_config(&self) -> anyhow::Result<gpucost_collector::budget::engine::BudgetConfig> {
        use gpucost_collector::budget::notify::Notifier;
        let mut c =
            gpucost_collector::budget::engine::BudgetConfig { every: self.budget_eval_interval, ..Default::default() };
        anyhow::ensure!(!c.every.is_zero(), "--budget-eval-interval must be more than zero");
        if let Some(path) = &self.budgets {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading --budgets {}", path.display()))?;
            c.from_file = gpucost_rules::budget_spec::from_toml(&path.display().to_string(), &text)
                .map_err(anyhow::Error::msg)?;
            c.file = Some(path.display().to_string());
        }
        let url = |flag: &str, u: &str| -> anyhow::Result<String> {
            anyhow::ensure!(
                u.starts_with("http://") || u.starts_with("https://"),
                "{flag}: {u:?} is not an http(s) URL"
            );
            Ok(u.to_string())
        };
        if let Some(u) = &self.alert_slack_webhook {
            c.notifiers.push(Notifier::Slack { url: url("--alert-slack-webhook", u)? });
        }
        if let (Some(u), Some(secret)) = (&self.alert_webhook, &self.alert_webhook_secret) {
            anyhow::ensure!(secret.len() >= 16, "--alert-webhook-secret: use at least 16 characters");
            c.notifiers.push(Notifier::Webhook { url: url("--alert-webhook", u)?, secret: secret.clone() });
        }
        if let Some(u) = &self.alertmanager_url {
            c.notifiers.push(Notifier::Alertmanager { url: url("--alertmanager-url", u)? });
        }
        Ok(c)
    }

    fn serve_config(
        &self,
        grpc: SocketAddr,
        http: SocketAddr,
        db: PathBuf,
        prices: PriceBook,
        owners: Option<Owners>,
    ) -> ServeConfig {
        let limits = Limits {
            max_interval_ns: self.max_interval.as_nanos() as u64,
            max_clock_skew_ns: self.max_clock_skew.as_nanos() as u64,
            ..Limits::default()
        };
        ServeConfig {
            grpc,
            http,
            db,
            bucket: self.bucket,
            raw_retention: self.raw_retention,
            limits,
            prices: Arc::new(prices),
            owners: owners.map(|o| Arc::new(std::sync::RwLock::new(o))),
            backstage: self.backstage_url.as_ref().map(|url| BackstageConfig {
                url: url.clone(),
                token: self.backstage_token.clone(),
                every: self.backstage_sync_interval,
            }),
            mlflow: self.mlflow_url.as_ref().map(|url| MlflowConfig {
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
            }),
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
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(gpucost_collector::tls::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: self.tls_client_ca.clone(),
                }),
                _ => None,
            },
            discovery: self.aws_discovery.then(|| DiscoveryConfig {
                endpoint_url: self.aws_endpoint_url.clone(),
                every: self.aws_discovery_interval,
            }),
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        gpucost_cli::shutdown::signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    match cli.command {
        // The one-off commands block, and the PostgreSQL client on a runtime of its own: not on this one.
        Command::Report(ReportCommand::Chargeback(a)) => off_runtime("report chargeback", move || report_chargeback(a)),
        Command::ClosePeriod(a) => off_runtime("close-period", move || close_period(a)),
        Command::Migrate(a) => off_runtime("migrate", move || migrate(a)),
        Command::HashToken => {
            let mut token = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut token).context("reading the token from stdin")?;
            anyhow::ensure!(token.trim().len() >= 16, "a token needs at least 16 characters");
            println!("{}", gpucost_collector::auth::hash_token(&token));
            Ok(())
        }
        Command::Serve(a) => {
            let config = serve_config(&a)?;
            // Every check that needs no file, port or peer, before any is opened, bound or waited on.
            config.validate()?;
            Server::start(&config, stop_rx).await?.wait().await
        }
        Command::Config(ConfigCommand::Check { file, command }) => config_check(&file, &command),
        Command::Config(ConfigCommand::Example { command }) => {
            use clap::CommandFactory;
            print!("{}", gpucost_cli::config_file::example(&Cli::command(), Some(&command)));
            Ok(())
        }
        Command::Reprice(a) => off_runtime("reprice", move || reprice(a)),
        Command::Reattribute(a) => off_runtime("reattribute", move || reattribute(a)),
        Command::Demo(a) => {
            anyhow::ensure!(a.nodes > 0, "--nodes must be at least 1");
            let prices = match &a.ledger.prices {
                Some(path) => gpucost_collector::files::price_book(Some(path)),
                None => PriceBook::with_file_text(Some(include_str!("../../rules/data/demo-prices.toml")))
                    .map_err(|e| format!("demo prices: {e}")),
            }
            .map_err(anyhow::Error::msg)?;
            warn_unmatched(a.ledger.prices.as_deref(), &prices, None);
            let mut budgets = a.ledger.budget_config()?;
            if a.ledger.budgets.is_none() {
                budgets.from_file = gpucost_rules::budget_spec::from_toml(
                    "examples/budgets.toml",
                    include_str!("../../examples/budgets.toml"),
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
            demo::run(config, stop_rx).await
        }
    }
}

/// Warns, naming the file, about every entry of the prices file at `path` that matches nothing known (the
/// catalogue, and `ledger`'s nodes where given); returns them.
fn warn_unmatched(
    path: Option<&std::path::Path>,
    book: &PriceBook,
    ledger: Option<&gpucost_rules::book::Subjects>,
) -> Vec<gpucost_rules::book::Unmatched> {
    let Some(path) = path else { return Vec::new() };
    let unmatched = book.unmatched(ledger);
    for u in &unmatched {
        tracing::warn!(
            file = %path.display(),
            entry = %u.at,
            "prices file {}: {u}: the entry applies to no node unless one reports exactly this",
            path.display()
        );
    }
    unmatched
}

fn reprice(a: RepriceArgs) -> anyhow::Result<()> {
    use gpucost_ledger::RepriceOptions;
    let book = gpucost_collector::files::price_book(a.prices.as_deref()).map_err(anyhow::Error::msg)?;
    let (ledger, from, to) = open_range(&a.db, a.from, a.to)?;
    let unmatched = warn_unmatched(a.prices.as_deref(), &book, Some(&ledger.price_subjects()?));
    let unmatched = match (&a.prices, unmatched.is_empty() || a.allow_unmatched) {
        (Some(path), false) => Some(format!(
            "re-pricing refused, nothing written: {} entr{} of the prices file {} match nothing in the catalogue or \
             the ledger: {} (correct them, or re-price anyway with --allow-unmatched)",
            unmatched.len(),
            if unmatched.len() == 1 { "y" } else { "ies" },
            path.display(),
            unmatched.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
        )),
        _ => None,
    };
    if let (Some(why), false) = (&unmatched, a.dry_run) {
        anyhow::bail!("{why}");
    }
    let options = RepriceOptions { dry_run: a.dry_run, allow_unpriced: a.allow_unpriced };
    let report = ledger.reprice(from, to, &move |node, model, gpus, at| book.price(node, model, gpus, at), options)?;
    let usd = gpucost_types::money::usd;
    for (node, (old, new)) in &report.nodes {
        println!("{node}: {} -> {} USD", usd(*old), usd(*new));
    }
    for (node, why) in &report.unpriced {
        println!("{node}: its priced GPU time goes unpriced or to $0: {why}");
    }
    let dry = if a.dry_run { "dry run: " } else { "" };
    println!("{dry}{} buckets re-priced: {} -> {} USD", report.buckets, usd(report.old_micros), usd(report.new_micros));
    for c in report.unreconciled() {
        println!("not reconciled: {c}");
    }
    println!(
        "{dry}reconciled: {} ({} of {} nodes: fleet cost = their physical GPUs × price × time)",
        report.unreconciled().next().is_none(),
        report.checked.len() - report.unreconciled().count(),
        report.checked.len()
    );
    // A dry run says what the real run would refuse, and fails as it would.
    if let Some(why) = unmatched.or(report.refusal(options)) {
        anyhow::bail!("{dry}{why}");
    }
    Ok(())
}

fn reattribute(a: ReattributeArgs) -> anyhow::Result<()> {
    let rules = parse_rules(&a.owner_rules)?;
    let (ledger, from, to) = open_range(&a.db, a.from, a.to)?;
    let catalog = a.catalog(ledger.as_ref())?;
    let resolve =
        |identity: &gpucost_types::batch::Identity| gpucost_rules::owner::resolve(&catalog, &rules, identity, None);
    let report = ledger.reattribute(from, to, &resolve, a.dry_run)?;
    for (change, n) in &report.moved {
        println!("{change}: {n} workloads");
    }
    println!(
        "{}{} workloads re-attributed, {} moved",
        if a.dry_run { "dry run: " } else { "" },
        report.workloads,
        report.moved.values().sum::<u64>()
    );
    Ok(())
}

/// Runs a blocking one-off command on a thread of its own, outside the async runtime.
fn off_runtime(name: &str, f: impl FnOnce() -> anyhow::Result<()> + Send + 'static) -> anyhow::Result<()> {
    std::thread::spawn(f).join().map_err(|_| anyhow::anyhow!("{name} panicked"))?
}

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match parse_cli(&argv) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    gpucost_collector::logs::init(&cli.log_format);
    // RDS IAM tokens sign with the AWS SDK's credential chain (the ledger, without the SDK, reads the environment).
    #[cfg(feature = "aws")]
    gpucost_collector::discover::use_aws_credential_chain();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
