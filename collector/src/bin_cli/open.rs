//! Opening an existing ledger for a one-off command.

/// The ledger `--db` names, for a one-off command: an existing SQLite file, or a PostgreSQL URL; opened with the
/// bucket length it was made with, and no retention pruning.
pub(crate) fn open_existing(db: &std::path::Path) -> anyhow::Result<Box<dyn gpucost_ledger::Ledger>> {
    use gpucost_ledger::SqliteLedger;
    let url = db.to_string_lossy();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        {
            use anyhow::Context;
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

/// Opens the ledger at `db` for an offline command and widens [`from`, `to` or now) to whole buckets.
pub(crate) fn open_range(
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
