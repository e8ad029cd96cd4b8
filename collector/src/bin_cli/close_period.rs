//! `close-period`: an ended month closed.

use std::path::PathBuf;

use clap::Args;

use super::open::open_existing;

#[derive(Debug, Args)]
pub(crate) struct ClosePeriodArgs {
    /// The ledger: an SQLite file, or a PostgreSQL URL (postgres://user:password@host:5432/db).
    #[arg(long, env = "GPUCOST_DB", default_value = "./gpucost.db", hide_env_values = true)]
    db: PathBuf,
    /// The month, e.g. 2026-10.
    #[arg(long)]
    period: String,
}

pub(crate) fn close_period(a: ClosePeriodArgs) -> anyhow::Result<()> {
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
