//! `report chargeback`, and the report settings `serve` and `demo` share.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::open::open_existing;

#[derive(Debug, Subcommand)]
pub(crate) enum ReportCommand {
    /// The chargeback for a period (month by default) as CSV, JSON or a FinOps FOCUS file. Warns on
    /// standard error when the ledger holds no data for part of the period; exits 3 when it holds none.
    Chargeback(ChargebackArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ChargebackArgs {
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
pub(crate) struct ReportArgs {
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
    pub(crate) fn config(&self) -> gpucost_report::request::ReportConfig {
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

/// The exit code of `report chargeback` for a period the ledger holds no GPU time for.
const NO_DATA_EXIT_CODE: i32 = 3;

pub(crate) fn report_chargeback(a: ChargebackArgs) -> anyhow::Result<()> {
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
