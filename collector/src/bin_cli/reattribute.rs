//! `reattribute`: the owners of stored history re-resolved with the current catalog.

use gpucost_collector::ingest::stages;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use gpucost_rules::catalog::Catalog;

use super::ledger_args::{DEFAULT_OWNER_RULES, parse_rules};
use super::open::open_range;

#[derive(Debug, Args)]
pub(crate) struct ReattributeArgs {
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
    /// Where the catalog comes from: --catalog-from, else the one of --catalog-dir and --backstage-url given.
    fn catalog_source(&self) -> anyhow::Result<CatalogFrom> {
        Ok(match (self.catalog_from, &self.catalog_dir, &self.backstage_url) {
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
        })
    }

    /// The catalog to re-attribute with, from the source chosen; refuses an empty one, which would make every
    /// workload of the window unattributed.
    fn catalog(&self, ledger: &dyn gpucost_ledger::Ledger) -> anyhow::Result<Catalog> {
        use gpucost_collector::enrich::backstage;
        let from = self.catalog_source()?;
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

pub(crate) fn reattribute(a: ReattributeArgs) -> anyhow::Result<()> {
    let rules = parse_rules(&a.owner_rules)?;
    let (ledger, from, to) = open_range(&a.db, a.from, a.to)?;
    let owners = gpucost_rules::attribute::Owners { catalog: a.catalog(ledger.as_ref())?, rules };
    // The attribution stage's own rule, as ingest applies it (no cloud inventory here: ECS tags are not known).
    let resolve = |identity: &gpucost_types::batch::Identity| stages::owner_of(&owners, None, identity);
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
