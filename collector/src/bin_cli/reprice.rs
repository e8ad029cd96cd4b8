//! `reprice`: stored history re-priced with the current prices.

use gpucost_collector::ingest::stages;
use std::path::PathBuf;

use clap::Args;

use super::open::open_range;
use super::prices::warn_unmatched;

#[derive(Debug, Args)]
pub(crate) struct RepriceArgs {
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

pub(crate) fn reprice(a: RepriceArgs) -> anyhow::Result<()> {
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
    // The price stage's own lookup, as ingest prices a batch.
    let price_of = move |node: &_, model: &str, gpus, at| stages::gpu_price(&book, node, model, gpus, at);
    let report = ledger.reprice(from, to, &price_of, options)?;
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
