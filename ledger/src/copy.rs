//! `gpucost-collector migrate`: copies an SQLite ledger into an empty PostgreSQL one (issue 10), in one
//! PostgreSQL transaction, then checks that every table holds as many rows and that the money and GPU time
//! add up to the same totals on both sides.

use std::path::Path;

use super::LedgerError;
use super::sql::postgres::{self, PgDb};
use super::sql::{Db, Tx, Value, bind};
use crate::sql_params;
use crate::store::SqliteLedger;

/// What a copy did.
#[derive(Debug, Default)]
pub struct CopyReport {
    /// Table, rows copied.
    pub tables: Vec<(String, u64)>,
    /// What was compared after the copy, and the value found on both sides.
    pub checks: Vec<(String, String)>,
}

/// Parents before children (foreign keys); the rest follow in name order.
const FIRST: [&str; 4] = ["settings", "nodes", "gpus", "workloads"];

/// Totals that must survive the copy exactly.
const TOTALS: [(&str, &str); 6] = [
    (
        "GPU time observed (s, rest ns)",
        "SELECT SUM(observed_ns / 1000000000), SUM(observed_ns % 1000000000) FROM gpu_buckets",
    ),
    ("GPU time held (s, rest ns)", "SELECT SUM(held_ns / 1000000000), SUM(held_ns % 1000000000) FROM gpu_buckets"),
    ("cost (µ$)", "SELECT SUM(cost_micros), SUM(idle_micros) FROM gpu_buckets"),
    ("cost per workload (µ$)", "SELECT SUM(used_micros), SUM(hybrid_idle_micros) FROM usage_buckets"),
    ("booked cost (µ$)", "SELECT SUM(used_micros), COUNT(*) FROM booked_usage"),
    ("covered GPU ranges", "SELECT COUNT(*), SUM((end_ns - start_ns) / 1000000000) FROM gpu_coverage"),
];

pub fn sqlite_to_postgres(from: &Path, to_url: &str) -> Result<CopyReport, LedgerError> {
    if !from.exists() {
        return Err(LedgerError::Refused(format!("no SQLite ledger at {}", from.display())));
    }
    // Bring the source to the current schema first (its own migrations), then read it directly.
    let bucket = SqliteLedger::stored_bucket_ns(from)?;
    drop(SqliteLedger::open(from, bucket, u64::MAX)?);
    let src = rusqlite::Connection::open_with_flags(from, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let dst = PgDb::connect(to_url)?;
    postgres::migrate(&dst)?;
    let data: i64 =
        dst.one("SELECT (SELECT COUNT(*) FROM nodes) + (SELECT COUNT(*) FROM settings)", sql_params![], |r| r.get(0))?;
    if data > 0 {
        return Err(LedgerError::Refused(format!(
            "the PostgreSQL ledger at {} is not empty; migrate copies into an empty one only",
            postgres::redact(to_url)
        )));
    }
    let mut tables: Vec<String> = src.all(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'schema_migrations' ORDER BY name",
        sql_params![],
        |r| r.get(0),
    )?;
    tables.sort_by_key(|t| (FIRST.iter().position(|f| f == t).unwrap_or(FIRST.len()), t.clone()));

    let mut report = CopyReport::default();
    let tx = Tx::begin(&dst, "BEGIN")?;
    for t in &tables {
        let cols: Vec<String> =
            src.all(&format!("SELECT name FROM pragma_table_info('{t}') ORDER BY cid"), sql_params![], |r| r.get(0))?;
        let list = cols.join(", ");
        let rows = src.rows(&format!("SELECT {list} FROM {t}"), sql_params![])?;
        // Many rows per INSERT, well under PostgreSQL's 65 535 parameters.
        let per = (30_000 / cols.len().max(1)).max(1);
        for chunk in rows.chunks(per) {
            let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * cols.len());
            let mut groups = Vec::with_capacity(chunk.len());
            for row in chunk {
                let start = values.len();
                values.extend(row.0.iter().cloned());
                groups.push(format!(
                    "({})",
                    (start + 1..=values.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
                ));
            }
            tx.run(&format!("INSERT INTO {t} ({list}) VALUES {}", groups.join(", ")), &bind(&values))?;
        }
        report.tables.push((t.clone(), rows.len() as u64));
    }
    // Identity columns go on from the copied ids.
    let identities: Vec<(String, String)> = tx.all(
        "SELECT table_name::text, column_name::text FROM information_schema.columns
         WHERE table_schema = 'public' AND is_identity = 'YES'",
        sql_params![],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    for (t, c) in identities {
        tx.script(&format!(
            "SELECT setval(pg_get_serial_sequence('{t}', '{c}'), COALESCE((SELECT MAX({c}) FROM {t}), 0) + 1, false)"
        ))?;
    }
    tx.commit()?;

    // Verify: rows per table and the totals, on both sides.
    for (t, n) in &report.tables {
        let there: i64 = dst.one(&format!("SELECT COUNT(*) FROM {t}"), sql_params![], |r| r.get(0))?;
        if there as u64 != *n {
            return Err(LedgerError::Io(format!("table {t}: {n} rows copied, {there} in PostgreSQL")));
        }
    }
    for (what, sql) in TOTALS {
        let (here, there) = (total(&src, sql)?, total(&dst, sql)?);
        if here != there {
            return Err(LedgerError::Io(format!("{what}: {here} in SQLite, {there} in PostgreSQL")));
        }
        report.checks.push((what.to_string(), here));
    }
    Ok(report)
}

/// The first row of a totals query, as text to compare and print.
fn total(db: &impl Db, sql: &str) -> Result<String, LedgerError> {
    let rows = db.rows(sql, sql_params![])?;
    Ok(format!("{:?}", rows.first().map(|r| r.0.iter().map(i64_or_zero).collect::<Vec<_>>())))
}

fn i64_or_zero(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::Real(f) => *f as i64,
        _ => 0,
    }
}
