//! `gpucost-collector`: see `gpucost-collector --help`.

/// The collector allocates per batch on several threads at once; glibc's malloc spent ~40 % of a
/// backfill in its arena locks (BENCHMARKS.md). mimalloc's thread-local heaps do not contend.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bin_cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use bin_cli::bill::{BillCommand, bill};
use bin_cli::close_period::{ClosePeriodArgs, close_period};
use bin_cli::config::{ConfigCommand, config};
use bin_cli::demo::{DemoArgs, demo};
use bin_cli::migrate::{MigrateArgs, migrate};
use bin_cli::reattribute::{ReattributeArgs, reattribute};
use bin_cli::report::{ReportCommand, report_chargeback};
use bin_cli::reprice::{RepriceArgs, reprice};
use bin_cli::serve::{ServeArgs, serve};

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
    /// The AWS bill: import Data Exports deliveries (CUR 2.0, FOCUS 1.2) into the ledger.
    #[command(subcommand)]
    Bill(BillCommand),
    /// Print the SHA-256 of a token read from standard input, for the --auth file.
    HashToken,
    /// Copy an SQLite ledger into an empty PostgreSQL one, verify the copy and say what was copied.
    Migrate(MigrateArgs),
    /// Configuration files: check one without starting, or print a commented one with every setting.
    #[command(subcommand)]
    Config(ConfigCommand),
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
        Command::Bill(c) => off_runtime("bill", move || bill(c)),
        Command::HashToken => bin_cli::auth::hash_token(),
        Command::Serve(a) => serve(&a, stop_rx).await,
        Command::Config(c) => config(c),
        Command::Reprice(a) => off_runtime("reprice", move || reprice(a)),
        Command::Reattribute(a) => off_runtime("reattribute", move || reattribute(a)),
        Command::Demo(a) => demo(a, stop_rx).await,
    }
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
