//! `bill import`: AWS Data Exports deliveries (CUR 2.0 or FOCUS 1.2) from a folder or an S3 bucket into the
//! ledger; each delivery imported, replaced (restated) or unchanged, or refused with its file, row and column.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};
use gpucost_collector::bill::import::import_all;
use gpucost_collector::bill::source::Source;
use gpucost_ledger::bill::BillImport;

use super::open::open_existing;

#[derive(Debug, Subcommand)]
pub(crate) enum BillCommand {
    /// Import AWS Data Exports deliveries (CUR 2.0 or FOCUS 1.2, Parquet or gzip CSV, found by their
    /// manifests); a restated billing period replaces the one stored, one already stored changes nothing.
    Import(BillImportArgs),
}

#[derive(Debug, Args)]
pub(crate) struct BillImportArgs {
    /// The ledger: an SQLite file, or a PostgreSQL URL (postgres://user:password@host:5432/db).
    #[arg(long, env = "GPUCOST_DB", default_value = "./gpucost.db", hide_env_values = true)]
    db: PathBuf,
    /// A local copy of the exports' S3 prefix (as `aws s3 sync` leaves it).
    #[arg(long, required_unless_present = "s3", conflicts_with = "s3")]
    dir: Option<PathBuf>,
    /// The bucket and prefix the exports are delivered to, s3://bucket/prefix (standard AWS credential chain).
    #[arg(long)]
    s3: Option<String>,
    /// An S3-compatible endpoint instead of AWS's (e.g. an emulator).
    #[arg(long, env = "GPUCOST_BILL_S3_ENDPOINT_URL", requires = "s3")]
    s3_endpoint_url: Option<String>,
    /// Only this export (its Data Exports name).
    #[arg(long)]
    export: Option<String>,
}

pub(crate) fn bill(c: BillCommand) -> anyhow::Result<()> {
    let BillCommand::Import(a) = c;
    let ledger: Arc<dyn gpucost_ledger::Ledger> = Arc::from(open_existing(&a.db)?);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let results = runtime.block_on(async {
        let source = match (&a.dir, &a.s3) {
            (Some(dir), _) => {
                anyhow::ensure!(dir.is_dir(), "--dir {}: no such folder", dir.display());
                Source::Dir(dir.clone())
            }
            #[cfg(feature = "aws")]
            (None, Some(uri)) => {
                Source::s3(uri, a.s3_endpoint_url.as_deref()).await.map_err(|e| anyhow::anyhow!("--s3: {e}"))?
            }
            #[cfg(not(feature = "aws"))]
            (None, Some(_)) => anyhow::bail!("--s3: this collector was built without AWS (cargo feature `aws`)"),
            (None, None) => anyhow::bail!("give --dir or --s3"),
        };
        Ok(import_all(&source, &ledger, a.export.as_deref(), gpucost_types::clock::now_ns()).await?)
    })?;
    let mut refused = 0;
    for (manifest, r) in &results {
        match r {
            Ok(i) => {
                let what = match i.outcome {
                    BillImport::Imported { lines } => format!("imported {lines} lines from {} files", i.files),
                    BillImport::Replaced { lines, old_lines } => {
                        format!("replaced {old_lines} lines with {lines} from {} files (restated)", i.files)
                    }
                    BillImport::Unchanged => "unchanged".to_string(),
                };
                println!("{} {}: {what} ({manifest})", i.export, i.billing_period);
            }
            Err(e) => {
                refused += 1;
                eprintln!("refused {manifest}: {e}; nothing of it was stored");
            }
        }
    }
    if results.is_empty() {
        println!("no Data Exports manifests found");
    }
    anyhow::ensure!(refused == 0, "{refused} of {} deliveries refused", results.len());
    Ok(())
}
