//! `migrate`: an SQLite ledger copied into an empty PostgreSQL one.

use clap::Args;
#[cfg(feature = "postgres")]
use std::path::PathBuf;

#[derive(Debug, Args)]
pub(crate) struct MigrateArgs {
    /// The SQLite ledger: a file, or sqlite://FILE.
    #[arg(long)]
    from: String,
    /// The PostgreSQL ledger: postgres://user:password@host:5432/db (must hold no data yet).
    #[arg(long, hide_env_values = true, env = "GPUCOST_MIGRATE_TO")]
    to: String,
}

pub(crate) fn migrate(a: MigrateArgs) -> anyhow::Result<()> {
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
