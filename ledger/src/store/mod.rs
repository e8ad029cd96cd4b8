//! The ledger on an SQL engine (`SqlLedger<E>`): one write connection (group commit, a savepoint per
//! batch) and a small pool of readers, each role of [`crate::roles`] implemented once for every engine.
//! [`SqliteLedger`] is the embedded default (one file, WAL mode, `sqlite.rs`); `SqlLedger<PgEngine>` the same
//! ledger on a PostgreSQL database shared by several collectors (`postgres.rs`).
//!
//! By role: `record.rs` stores batches, `read.rs` answers queries, `owners.rs` keeps each workload's owner
//! over time, `closing.rs` and `days.rs` close months and build daily rollups, `reprice.rs` re-prices,
//! `budgets.rs` keeps budgets and their alerts, `bill.rs` the imported AWS bill, `evidence.rs` the right-sizing evidence and each node's EC2 instance, `series.rs` reads one GPU's, node's or workload's history. The SQL is written once for both engines (`sql.rs` says which
//! dialect); what only a shared database needs (advisory locks, leader election) goes through `Db::exclusive`
//! and `Engine::lead`.

use std::sync::Mutex;

use self::ids::{IdCache, Writer};
use self::owners::{owner_row, reattribute_rows};
use crate::sql::{Db, Tx};
use crate::sql_params;

use crate::prelude::*;
use crate::rollup::spread;
use crate::{ClosedPeriod, LedgerError, ReattributeReport, RepriceReport};
use gpucost_rules::owner::{Ownership, UNATTRIBUTED};
use gpucost_types::batch::Identity;

mod bill;
mod budgets;
mod closing;
mod days;
mod evidence;
mod fetched_prices;
mod ids;
mod owners;
#[cfg(feature = "postgres")]
mod postgres;
mod read;
mod record;
mod reprice;
mod series;
mod sqlite;
mod write;

#[cfg(feature = "postgres")]
pub use postgres::PgEngine;
pub use series::{HistoryPoint, HistorySource, HistorySubject};
pub use sqlite::{SqliteEngine, SqliteLedger};

const NS: u64 = 1_000_000_000;
/// The advisory-lock space under which closing, re-pricing and re-attributing take turns (and daily rollups
/// are built).
const HISTORY_LOCK: i32 = 4;
/// `usage_buckets.owner_from` of GPU time stored without owner rules.
const NO_OWNER: i64 = -1;

/// What a ledger runs on: how to open a connection, and how a writer begins a transaction.
pub trait Engine: Send + Sync + 'static {
    type Conn: Db + Send;
    fn connect(&self) -> Result<Self::Conn, LedgerError>;
    /// The statement that begins a write transaction.
    fn begin(&self) -> &'static str;
    /// Whether this process leads `job` (see [`Ledger::lead`]).
    fn lead(&self, _job: &str) -> bool {
        true
    }
}

/// The ledger on an SQL engine: one writer connection (group commit), a small pool of readers.
pub struct SqlLedger<E: Engine> {
    engine: E,
    writer: Mutex<Writer<E::Conn>>,
    readers: Mutex<Vec<E::Conn>>,
    bucket_ns: u64,
    raw_retention_ns: u64,
}

/// Records the bucket length of a new ledger; refuses another one for an existing ledger.
fn check_bucket(db: &impl Db, bucket_ns: u64) -> Result<(), LedgerError> {
    let stored: Option<String> =
        db.opt("SELECT value FROM settings WHERE name = 'bucket_ns'", sql_params![], |r| r.get(0))?;
    match stored {
        None => {
            db.run(
                "INSERT INTO settings (name, value) VALUES ('bucket_ns', $1) ON CONFLICT (name) DO NOTHING",
                sql_params![bucket_ns.to_string()],
            )?;
            Ok(())
        }
        Some(s) if s != bucket_ns.to_string() => {
            let human = |ns: u64| humantime::format_duration(std::time::Duration::from_nanos(ns)).to_string();
            let stored = s.parse().map(human).unwrap_or(s);
            Err(LedgerError::BucketMismatch { stored, configured: human(bucket_ns) })
        }
        Some(_) => Ok(()),
    }
}

impl<E: Engine> SqlLedger<E> {
    fn new(engine: E, writer: E::Conn, bucket_ns: u64, raw_retention_ns: u64) -> Self {
        Self {
            engine,
            writer: Mutex::new(Writer { conn: writer, ids: IdCache::default() }),
            readers: Mutex::new(Vec::new()),
            bucket_ns,
            raw_retention_ns,
        }
    }

    fn with_reader<T>(&self, f: impl FnOnce(&E::Conn) -> Result<T, LedgerError>) -> Result<T, LedgerError> {
        let conn = match self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            Some(c) => c,
            None => self.engine.connect()?,
        };
        let out = f(&conn);
        let mut pool = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < 8 {
            pool.push(conn);
        }
        out
    }
}

impl<E: Engine> History for SqlLedger<E> {
    fn close_period(&self, period: &gpucost_types::period::Period, now_ns: u64) -> Result<ClosedPeriod, LedgerError> {
        self.close(period, now_ns)
    }

    fn closed_periods(&self) -> Result<Vec<ClosedPeriod>, LedgerError> {
        self.closed()
    }

    fn reattribute(
        &self,
        from_ns: u64,
        to_ns: u64,
        resolve: &dyn Fn(&Identity) -> Ownership,
        dry_run: bool,
    ) -> Result<ReattributeReport, LedgerError> {
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let Writer { conn, ids } = &mut *guard;
        let tx = Tx::begin(&*conn, self.engine.begin())?;
        tx.exclusive(HISTORY_LOCK, 0)?;
        self.refuse_if_closed("re-attributing", from_ns, to_ns)?;
        let workloads: Vec<(i64, String)> = tx.all(
            "SELECT w.workload_id, w.identity_json FROM workloads w WHERE EXISTS (SELECT 1 FROM usage_buckets b
                   WHERE b.workload_id = w.workload_id AND b.bucket_start_ns >= $1 AND b.bucket_start_ns < $2)",
            sql_params![from_ns as i64, to_ns as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let mut report = ReattributeReport::default();
        for (workload_id, json) in workloads {
            let identity: Identity =
                serde_json::from_str(&json).map_err(|e| LedgerError::Io(format!("workload {workload_id}: {e}")))?;
            let new = resolve(&identity);
            let old_owner = match owner_row(&*tx, workload_id, from_ns as i64)? {
                Some((_, o)) if o.rule != UNATTRIBUTED => o.owner,
                _ => UNATTRIBUTED.to_string(),
            };
            report.workloads += 1;
            if old_owner != new.owner {
                *report.moved.entry(format!("{old_owner} -> {}", new.owner)).or_default() += 1;
            }
            if !dry_run {
                reattribute_rows(&*tx, workload_id, from_ns, to_ns, &new)?;
            }
        }
        if !dry_run {
            // The window's rows moved to another owner row: their days are summed again.
            days::unbuild(&*tx, from_ns, to_ns.saturating_add(days::DAY))?;
            tx.commit()?;
            // The writer's cached owners may be stale now.
            ids.owners.clear();
        }
        Ok(report)
    }

    fn reprice(
        &self,
        from_ns: u64,
        to_ns: u64,
        price_of: &super::PriceOf,
        options: super::RepriceOptions,
    ) -> Result<RepriceReport, LedgerError> {
        self.reprice_window(from_ns, to_ns, price_of, options)
    }
}

impl<E: Engine> Coordination for SqlLedger<E> {
    fn ping(&self) -> Result<(), LedgerError> {
        self.with_reader(|c| Ok(c.one("SELECT 1", sql_params![], |r| r.get::<i64>(0)).map(|_| ())?))
    }

    fn lead(&self, job: &str) -> bool {
        self.engine.lead(job)
    }

    fn put_shared_catalog(&self, source: &str, catalog_json: &str, synced_at_ns: u64) -> Result<(), LedgerError> {
        let guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        guard.conn.run(
            "INSERT INTO shared_catalogs (source, catalog_json, synced_at_ns) VALUES ($1, $2, $3)
             ON CONFLICT (source) DO UPDATE SET catalog_json = excluded.catalog_json, synced_at_ns = excluded.synced_at_ns",
            sql_params![source, catalog_json, synced_at_ns as i64],
        )?;
        Ok(())
    }

    fn shared_catalog(&self, source: &str) -> Result<Option<(String, u64)>, LedgerError> {
        self.with_reader(|c| {
            Ok(c.opt(
                "SELECT catalog_json, synced_at_ns FROM shared_catalogs WHERE source = $1",
                sql_params![source],
                |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)? as u64)),
            )?)
        })
    }
}

/// The storage suite, run on every engine (see its doc).
#[cfg(any(test, feature = "storage-suite"))]
pub mod suite;

#[cfg(test)]
mod tests {
    use super::suite::{self, SqliteStores};

    macro_rules! on_sqlite {
        ($($case:ident),* $(,)?) => { $(#[test] fn $case() { suite::$case(&SqliteStores::new()) })* };
    }
    suite::every_case!(on_sqlite);

    /// Migration 0015 keeps what was stored: GPUs take their node's cluster, batch numbers their agent's, so a
    /// batch stored before it is still a duplicate after it and its GPU time still refuses an overlap.
    #[test]
    fn scoping_claims_by_cluster_keeps_the_ledgers_rows() {
        use super::suite::{HOUR, T0, batch};
        use crate::prelude::*;
        use crate::sql::Db;
        use crate::{LedgerError, Recorded};
        const NS: u64 = 1_000_000_000;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = super::sqlite::open(&path).unwrap();
            crate::sql::migrate(&conn, &crate::migrations::MIGRATIONS[..14], str::to_string).unwrap();
            conn.script(&format!(
                "INSERT INTO settings (name, value) VALUES ('bucket_ns', '{HOUR}');
                 INSERT INTO nodes (node_id, cluster, name, instance_type, capacity_type, region, zone) VALUES (1, 'prod', 'n1', 'g5.xlarge', 'on_demand', 'us-east-1', 'us-east-1a');
                 INSERT INTO gpus (gpu_id, uuid, node_id, model, memory_total_bytes) VALUES (7, 'GPU-1', 1, 'NVIDIA A10G', 1);
                 INSERT INTO gpu_buckets (bucket_start_ns, gpu_id, node_id, observed_ns, held_ns, used_ns, energy_millijoules) VALUES ({T0}, 7, 1, {}, 0, 0, 0);
                 INSERT INTO gpu_coverage (gpu_id, start_ns, end_ns) VALUES (7, {T0}, {});
                 INSERT INTO agent_boots (agent_id, boot_id, last_seq, first_seen_ns, last_seen_ns) VALUES ('n1', 'b', 1, 0, 0);
                 INSERT INTO boot_seqs (agent_id, boot_id, first_seq, last_seq) VALUES ('n1', 'b', 1, 1);",
                15 * NS,
                T0 + 15 * NS
            ))
            .unwrap();
        }
        let l = super::SqliteLedger::open(&path, HOUR, 7 * 24 * HOUR).unwrap();
        let gpus: Vec<(i64, String, String)> = l
            .with_reader(|c| {
                Ok(c.all("SELECT gpu_id, cluster, uuid FROM gpus", crate::sql_params![], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?)
            })
            .unwrap();
        assert_eq!(gpus, [(7, "prod".to_string(), "GPU-1".to_string())]);
        assert_eq!(l.record(&[batch("b", 1, T0, 15 * NS, 0)], T0).unwrap()[0].as_ref().unwrap(), &Recorded::Duplicate);
        assert!(matches!(
            l.record(&[batch("new-boot", 1, T0, 15 * NS, 0)], T0).unwrap()[0],
            Err(LedgerError::Overlap { .. })
        ));
        assert_eq!(
            l.record(&[batch("b", 2, T0 + 15 * NS, 15 * NS, 0)], T0).unwrap()[0].as_ref().unwrap(),
            &Recorded::Stored
        );
        assert_eq!(super::suite::totals(&l).observed_ns, Some(30 * u128::from(NS)), "the old row and the new one");
    }

    /// Issue 19: a second collector on one SQLite file is refused, naming the first and PostgreSQL; the lock
    /// goes with the first.
    #[test]
    fn a_second_collector_on_one_sqlite_file_is_refused_until_the_first_is_gone() {
        use super::suite::HOUR;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let first = super::SqliteLedger::open_serving(&path, HOUR, HOUR).unwrap();
        let e = super::SqliteLedger::open_serving(&path, HOUR, HOUR).err().expect("refused").to_string();
        assert!(e.contains(&format!("another collector (process {}) serves the ledger", std::process::id())), "{e}");
        assert!(e.contains("share a PostgreSQL ledger"), "{e}");
        assert!(super::SqliteLedger::open(&path, HOUR, HOUR).is_ok(), "offline commands still open it");
        drop(first);
        super::SqliteLedger::open_serving(&path, HOUR, HOUR).expect("free again");
    }

    mod order {
        //! Property: whatever order batches from several nodes arrive in, and however often they are
        //! resent, the ledger ends up with the same usage and the same money, and every policy still
        //! reconciles to the fleet's cost.

        use proptest::prelude::*;

        use super::suite::{HOUR, T0, node_batches, snapshot};
        use crate::prelude::*;
        use crate::store::SqliteLedger;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(12))]
            #[test]
            fn arrival_order_and_resends_change_nothing(
                counts in prop::collection::vec(1u64..12, 1..4),
                shares in prop::collection::vec(0u32..=1_000_000, 1..6),
                picks in prop::collection::vec(any::<prop::sample::Index>(), 0..200),
                resends in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
            ) {
                let per_node: Vec<Vec<gpucost_types::stage::Attributed>> = counts.iter().enumerate().map(|(n, &c)| node_batches(n, c, &shares)).collect();
                let in_order: Vec<gpucost_types::stage::Attributed> = per_node.iter().flatten().cloned().collect();
                // Interleave the nodes' streams at random (each node's own batches stay in order, as a
                // stream delivers them), then resend some batches already sent.
                let mut cursors = vec![0usize; per_node.len()];
                let mut shuffled = Vec::new();
                let mut pick = picks.iter();
                while cursors.iter().zip(&per_node).any(|(c, n)| *c < n.len()) {
                    let open: Vec<usize> = (0..per_node.len()).filter(|&n| cursors[n] < per_node[n].len()).collect();
                    let n = open[pick.next().map_or(0, |i| i.index(open.len()))];
                    shuffled.push(per_node[n][cursors[n]].clone());
                    cursors[n] += 1;
                    if let Some(r) = resends.get(shuffled.len() % resends.len().max(1)) {
                        let again = shuffled[r.index(shuffled.len())].clone();
                        shuffled.push(again);
                    }
                }
                let dir = tempfile::tempdir().unwrap();
                let a = SqliteLedger::open(&dir.path().join("a.db"), HOUR, 7 * 24 * HOUR).unwrap();
                let b = SqliteLedger::open(&dir.path().join("b.db"), HOUR, 7 * 24 * HOUR).unwrap();
                a.record(&in_order, T0).unwrap();
                for chunk in shuffled.chunks(3) {
                    for r in b.record(chunk, T0).unwrap() {
                        prop_assert!(r.is_ok(), "{r:?}");
                    }
                }
                prop_assert_eq!(snapshot(&a), snapshot(&b));
            }
        }
    }
}
