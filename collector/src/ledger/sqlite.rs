//! The ledger on an SQL engine (`SqlLedger<E>`): one write connection (group commit, a savepoint per
//! batch) and a small pool of readers. `SqliteLedger` is the embedded default (one file, WAL mode);
//! `SqlLedger<PgEngine>` the same ledger on a PostgreSQL database shared by several collectors.
//!
//! The SQL is written once for both engines (`ledger/sql.rs` says which dialect); what only a shared
//! database needs (advisory locks, leader election) goes through `Db::exclusive` and `Engine::lead`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::Connection;

use super::sql::{Db, DbError, Tx, Value, bind};
use crate::sql_params;

use super::rollup::{buckets, spread};
use super::rows::{Rows, USAGE_VALUES};
use super::{
    AllocatedCharge, ClosedPeriod, Conflict, CostQuery, CostReport, CostRow, Dimension, GpuTime, Ledger, LedgerError,
    NodePrice, OriginCharge, ReattributeReport, Recorded, RepriceReport, UsageQuery, UsageReport, UsageRow,
};
use crate::cost::split::Policy;
use crate::enrich::owner::{Ownership, Rule, UNATTRIBUTED};
use crate::model::{Batch, Device, Identity, Node, Workload};

/// Schema migrations, applied in order at start-up; each runs once, in its own transaction.
pub const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_ledger.sql"),
    include_str!("migrations/0002_workload_labels.sql"),
    include_str!("migrations/0003_costs.sql"),
    include_str!("migrations/0004_co2e.sql"),
    include_str!("migrations/0005_reprice.sql"),
    include_str!("migrations/0006_owners.sql"),
    include_str!("migrations/0007_budgets.sql"),
    include_str!("migrations/0008_closed_periods.sql"),
    include_str!("migrations/0009_coverage_ranges.sql"),
    include_str!("migrations/0010_shared_catalog.sql"),
    include_str!("migrations/0011_raw_intervals_unkeyed.sql"),
    include_str!("migrations/0012_daily_rollups.sql"),
    include_str!("migrations/0013_booked_days.sql"),
    include_str!("migrations/0014_owner_per_interval.sql"),
    include_str!("migrations/0015_cluster_scoped_claims.sql"),
];

mod budgets;
mod closing;
mod days;
mod reprice;

const NS: u64 = 1_000_000_000;
/// `usage_buckets.owner_from` of GPU time stored without owner rules.
const NO_OWNER: i64 = -1;

/// Ids of rows the writer has already upserted, so a steady stream of batches does not re-write them.
/// Cleared whenever a transaction or savepoint rolls back, since ids it handed out may be gone.
#[derive(Default)]
struct IdCache {
    nodes: HashMap<(String, String), (i64, Node)>,
    /// Per (cluster, GPU UUID): its id, the node it was last seen on, and what it is.
    gpus: HashMap<(String, String), (i64, i64, Device)>,
    /// GPU UUIDs the ledger holds under more than one cluster: only their batches look for other clusters'
    /// time on the same UUID (a single writer sees every GPU row made, so the set is complete).
    contested: HashSet<String>,
    workloads: HashMap<String, (i64, Identity)>,
    /// Last price recorded per node: (µ$/h, GPUs, source).
    prices: HashMap<i64, (Option<i64>, u32, String)>,
    /// Latest owner recorded per workload, and from when (its `workload_owners.from_ns`).
    owners: HashMap<i64, (u64, Ownership)>,
    /// Per GPU, its latest coverage range (the one with the greatest start): the next interval usually
    /// extends it, one UPDATE.
    coverage: HashMap<i64, (i64, i64)>,
    /// Per (cluster, agent, boot), its latest range of stored batch numbers, likewise.
    seqs: HashMap<(String, String, String), (i64, i64)>,
}

struct Writer<C> {
    conn: C,
    ids: IdCache,
}

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

/// The embedded SQLite file.
pub struct SqliteEngine {
    path: PathBuf,
    /// `serve`'s exclusive hold on `<db>.lock` (see [`SqlLedger::open_serving`]), released when the ledger drops
    /// or the process ends, however it ends.
    _serving: Option<std::fs::File>,
}

impl Engine for SqliteEngine {
    type Conn = Connection;

    fn connect(&self) -> Result<Connection, LedgerError> {
        open(&self.path)
    }

    fn begin(&self) -> &'static str {
        // Take the write lock at once: a deferred transaction could fail halfway on a busy database.
        "BEGIN IMMEDIATE"
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

/// The embedded default.
pub type SqliteLedger = SqlLedger<SqliteEngine>;

fn open(path: &Path) -> Result<Connection, LedgerError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // rusqlite keeps 16 prepared statements by default: fewer than the writer and the queries use, so
    // they were prepared again and again.
    conn.set_prepared_statement_cache_capacity(256);
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk (WAL fsynced) before the writer acks its batches, so an acked batch
    // survives a power loss or an OS crash too, not only a killed process. The writer commits batches in
    // groups, so the fsync is paid once per group (BENCHMARKS.md).
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// SQL for grouping or filtering by dimensions: one column expression per dimension, over the aliases
/// `n` (nodes), `g` (gpus), `w` (workloads) and `b` (a bucket table), plus the joins label dimensions
/// need. SQLite numbers `$N` parameters in order of first appearance, not by N, so the label keys are
/// bound first ($1…$k), in the joins, and callers number their own parameters after them.
struct DimSql {
    exprs: Vec<String>,
    joins: String,
    params: Vec<String>,
    /// Whether a dimension needs the owner the row was billed to (joined as `o`).
    owner: bool,
}

/// An owner dimension's value: the owner row's `column`, or [`UNATTRIBUTED`] for GPU time no owner rule named
/// (no row, or a row of no rule; rows stored before issue 18 say `unallocated`).
fn owner_dim(column: &str) -> String {
    format!(
        "CASE WHEN o.owner IS NULL OR o.rule IN ('unattributed', 'unallocated') THEN '{UNATTRIBUTED}' ELSE o.{column} END"
    )
}

impl DimSql {
    fn new(dims: &[&Dimension]) -> Self {
        Self::with(dims, 0)
    }

    /// `first`: parameters numbered before the label keys (they come first in the statement's text). `b` is a
    /// usage rollup (hourly, daily, booked or summed) with the key of the owner row it was billed to in
    /// `b.owner_from`.
    fn with(dims: &[&Dimension], first: usize) -> Self {
        let mut params = Vec::new();
        let mut joins = String::new();
        let mut needs_owner = false;
        // One join per label key, its key bound as the next parameter.
        let mut label = |key: &str| {
            params.push(key.to_string());
            let i = params.len();
            let n = first + i;
            joins.push_str(&format!(
                " LEFT JOIN workload_labels l{i} ON l{i}.workload_id = b.workload_id AND l{i}.key = ${n}"
            ));
            format!("COALESCE(l{i}.value, '')")
        };
        let exprs = dims
            .iter()
            .map(|d| match d {
                Dimension::Cluster => "n.cluster".into(),
                Dimension::Node => "n.name".into(),
                Dimension::Gpu => "g.uuid".into(),
                Dimension::Workload => "w.key".into(),
                Dimension::Kind => "w.kind".into(),
                Dimension::Namespace => "w.namespace".into(),
                // A pod is named with its cluster and namespace: `web-0` runs in many.
                Dimension::Pod => {
                    "CASE WHEN w.pod = '' THEN '' ELSE n.cluster || '/' || w.namespace || '/' || w.pod END".into()
                }
                Dimension::Controller => {
                    "CASE WHEN w.controller_kind = '' THEN '' ELSE w.controller_kind || '/' || w.controller_name END"
                        .into()
                }
                Dimension::Container => "w.container".into(),
                Dimension::EcsTask => "w.ecs_task_arn".into(),
                Dimension::SlurmJob => "w.slurm_job_id".into(),
                Dimension::User => "w.user_name".into(),
                // The owner row's column of the dimension's name (`Dimension::names_owner`).
                Dimension::Owner
                | Dimension::Team
                | Dimension::Department
                | Dimension::Component
                | Dimension::System => {
                    needs_owner = true;
                    owner_dim(&d.name())
                }
                Dimension::Label(key) => label(key),
                Dimension::Model => label("mlflow.org/model-name"),
                Dimension::ModelVersion => label("mlflow.org/model-version"),
                Dimension::Run => {
                    let (annotation, env) = (label("mlflow.org/run-id"), label("env:MLFLOW_RUN_ID"));
                    format!("CASE WHEN {annotation} <> '' THEN {annotation} ELSE {env} END")
                }
                Dimension::Experiment => label("env:MLFLOW_EXPERIMENT_ID"),
                Dimension::Day => "CAST(b.bucket_start_ns / 86400000000000 AS TEXT)".into(),
            })
            .collect();
        if needs_owner {
            joins
                .push_str(" LEFT JOIN workload_owners o ON o.workload_id = b.workload_id AND o.from_ns = b.owner_from");
        }
        Self { exprs, joins, params, owner: needs_owner }
    }
}

fn sum_ns(secs: Option<i64>, rest: Option<i64>) -> u128 {
    (secs.unwrap_or(0) as u128) * u128::from(NS) + rest.unwrap_or(0) as u128
}

impl SqlLedger<SqliteEngine> {
    /// Opens (creating if needed) the ledger at `path`, applying pending migrations. `bucket_ns` must
    /// match the bucket size the ledger was created with.
    pub fn open(path: &Path, bucket_ns: u64, raw_retention_ns: u64) -> Result<Self, LedgerError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| LedgerError::Io(format!("cannot create {}: {e}", dir.display())))?;
        }
        let conn = open(path)?;
        migrate_sqlite(&conn)?;
        check_bucket(&conn, bucket_ns)?;
        Ok(Self::new(SqliteEngine { path: path.to_path_buf(), _serving: None }, conn, bucket_ns, raw_retention_ns))
    }

    /// Opens the ledger for `serve`: as [`Self::open`], holding an exclusive lock on `<db>.lock` for as long as
    /// the ledger lives. A second collector on the same file is refused: each writer trusts its cache of what it
    /// wrote last (coverage, sequence ranges, ids), which another writer would make wrong. Offline commands
    /// (reports, closing, re-pricing, re-attributing) do not take the lock.
    pub fn open_serving(path: &Path, bucket_ns: u64, raw_retention_ns: u64) -> Result<Self, LedgerError> {
        let lock = serving_lock(path)?;
        let mut ledger = Self::open(path, bucket_ns, raw_retention_ns)?;
        ledger.engine._serving = Some(lock);
        Ok(ledger)
    }

    /// The bucket length an existing ledger was created with.
    pub fn stored_bucket_ns(path: &Path) -> Result<u64, LedgerError> {
        let conn = open(path)?;
        let s: String = conn.one("SELECT value FROM settings WHERE name = 'bucket_ns'", sql_params![], |r| r.get(0))?;
        s.parse().map_err(|_| LedgerError::Io(format!("the ledger's bucket setting {s:?} is not a number")))
    }
}

/// Applies pending migrations with foreign keys off, as SQLite's way of rebuilding a table others refer to
/// requires (migration 0015 rebuilds `gpus`), then, when any was applied, checks every foreign key (a scan of
/// the rollups, so not on every start) before turning them on again.
fn migrate_sqlite(conn: &Connection) -> Result<(), LedgerError> {
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    let migrated = super::sql::migrate(conn, MIGRATIONS, str::to_string);
    let broken: Option<String> = match migrated {
        Ok(applied) if applied > 0 => {
            conn.opt("SELECT \"table\" FROM pragma_foreign_key_check LIMIT 1", sql_params![], |r| r.get(0))?
        }
        _ => None,
    };
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrated?;
    match broken {
        Some(table) => Err(LedgerError::Io(format!(
            "after its migrations, the ledger's table {table} names rows that do not exist"
        ))),
        None => Ok(()),
    }
}

/// Takes `<db>.lock` exclusively (an advisory `flock`, which the kernel releases when the process ends) and
/// writes this process's id in it; refused, naming the holder, while another collector holds it.
fn serving_lock(db: &Path) -> Result<std::fs::File, LedgerError> {
    use std::io::{Read, Seek, Write};
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| LedgerError::Io(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let io = |e: std::io::Error| LedgerError::Io(format!("the ledger's lock file {}: {e}", path.display()));
    let mut file =
        std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0).map_err(io)?;
            file.rewind().map_err(io)?;
            writeln!(file, "{}", std::process::id()).map_err(io)?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            Err(LedgerError::Refused(format!(
                "another collector (process {}) serves the ledger {}: an SQLite ledger takes one collector at a time (it holds {}); to run several collectors, share a PostgreSQL ledger (--db postgres://…, docs/ledger.md)",
                holder.trim(),
                db.display(),
                path.display()
            )))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
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

/// The ledger on PostgreSQL (issue 10): the same statements over `postgres`.
#[cfg(feature = "postgres")]
pub struct PgEngine {
    url: String,
    /// The session that holds the leadership locks: they live as long as it does, so a collector that dies
    /// (or loses its database connection) hands its jobs over.
    leader: Mutex<Option<super::sql::postgres::PgDb>>,
}

#[cfg(feature = "postgres")]
impl Engine for PgEngine {
    type Conn = super::sql::postgres::PgDb;

    fn connect(&self) -> Result<Self::Conn, LedgerError> {
        Ok(super::sql::postgres::PgDb::connect(&self.url)?)
    }

    fn begin(&self) -> &'static str {
        "BEGIN"
    }

    fn lead(&self, job: &str) -> bool {
        let mut session = self.leader.lock().unwrap_or_else(|e| e.into_inner());
        if session.is_none() {
            match super::sql::postgres::PgDb::connect(&self.url) {
                Ok(db) => *session = Some(db),
                Err(e) => {
                    tracing::warn!(job, error = %e, "cannot connect to take part in leader election");
                    return false;
                }
            }
        }
        let key = fnv1a(job) as i32;
        let db = session.as_ref().expect("connected above");
        // Held already by this session, or taken now (session-level advisory locks are re-entrant, so ask
        // pg_locks first rather than stacking them).
        let held = db.one(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = 3 AND objid = CAST($1 AS oid)
               AND objsubid = 2 AND pid = pg_backend_pid() AND granted)::int",
            sql_params![i64::from(key as u32)],
            |r| r.get::<i64>(0),
        );
        let taken = match held {
            Ok(1) => return true,
            Ok(_) => db.one("SELECT pg_try_advisory_lock(3, $1)::int", sql_params![key], |r| r.get::<i64>(0)),
            Err(e) => Err(e),
        };
        match taken {
            Ok(1) => {
                tracing::info!(job, "this collector now leads the job");
                true
            }
            Ok(_) => false,
            Err(e) => {
                // The session is gone, and with it any lock it held: start again next time.
                tracing::warn!(job, error = %e, "leader election failed; reconnecting");
                *session = None;
                false
            }
        }
    }
}

#[cfg(feature = "postgres")]
impl SqlLedger<PgEngine> {
    /// Connects to the PostgreSQL ledger at `url`, applying pending migrations.
    pub fn open_postgres(url: &str, bucket_ns: u64, raw_retention_ns: u64) -> Result<Self, LedgerError> {
        let conn = super::sql::postgres::PgDb::connect(url)?;
        super::sql::postgres::migrate(&conn)?;
        check_bucket(&conn, bucket_ns)?;
        Ok(Self::new(PgEngine { url: url.to_string(), leader: Mutex::new(None) }, conn, bucket_ns, raw_retention_ns))
    }

    /// Connects to an existing PostgreSQL ledger with the bucket length it was made with (for one-off commands:
    /// a database no collector has served is refused, not turned into an empty ledger).
    pub fn open_postgres_existing(url: &str, raw_retention_ns: u64) -> Result<Self, LedgerError> {
        let conn = super::sql::postgres::PgDb::connect(url)?;
        let redacted = super::sql::postgres::redact(url);
        let stored: Option<String> =
            conn.opt("SELECT value FROM settings WHERE name = 'bucket_ns'", sql_params![], |r| r.get(0)).map_err(
                |e| LedgerError::Io(format!("no gpucost ledger in {redacted} (start `serve` on it first): {e}")),
            )?;
        let stored = stored
            .ok_or_else(|| LedgerError::Io(format!("no gpucost ledger in {redacted}: it has no bucket setting")))?;
        let bucket_ns = stored
            .parse()
            .map_err(|_| LedgerError::Io(format!("the ledger's bucket setting {stored:?} is not a number")))?;
        drop(conn);
        Self::open_postgres(url, bucket_ns, raw_retention_ns)
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

impl IdCache {
    /// The owner row (`workload_owners.from_ns`) that GPU time of `workload_id` from `at` is billed to, given
    /// the owner `o` resolved for it: the latest row when it names `o` and began by `at`; for a batch that arrives
    /// after a later change, the row in force at `at` when it names `o`; else a new row from `at`. Usage rows
    /// keep that key (`usage_buckets.owner_from`), so recording a change never moves GPU time already stored.
    fn owner_from(&mut self, tx: &impl Db, workload_id: i64, at: u64, o: &Ownership) -> Result<i64, LedgerError> {
        let latest = match self.owners.get(&workload_id) {
            Some(known) => Some(known.clone()),
            None => owner_row(tx, workload_id, i64::MAX)?,
        };
        match &latest {
            Some((from, known)) if *from <= at && known == o => return Ok(*from as i64),
            Some((from, _)) if *from > at => {
                // A late batch: billed to the owner in force when its time was used, the latest row left as it is.
                if let Some((from, known)) = owner_row(tx, workload_id, at as i64)?
                    && known == *o
                {
                    return Ok(from as i64);
                }
                insert_owner(tx, workload_id, at, o)?;
                return Ok(at as i64);
            }
            _ => {}
        }
        insert_owner(tx, workload_id, at, o)?;
        self.owners.insert(workload_id, (at, o.clone()));
        Ok(at as i64)
    }

    fn record_price(&mut self, tx: &impl Db, node_id: i64, b: &Batch) -> Result<(), LedgerError> {
        let price = match (&b.cost.price, &b.cost.unpriced) {
            (Some(p), _) => (Some(p.instance_micros_per_hour as i64), p.gpus, p.source.clone()),
            (None, Some(reason)) => (None, 0, format!("unpriced: {reason}")),
            (None, None) => return Ok(()),
        };
        let last = match self.prices.get(&node_id) {
            Some(known) => Some(known.clone()),
            None => tx
                .opt("SELECT instance_micros_per_hour, gpus, source FROM node_prices WHERE node_id = $1 ORDER BY effective_from_ns DESC LIMIT 1", sql_params![node_id], |r| Ok((r.get::<Option<i64>>(0)?, r.get::<u32>(1)?, r.get::<String>(2)?)))?,
        };
        if last.as_ref() != Some(&price) {
            tx.run(
                "INSERT INTO node_prices (node_id, effective_from_ns, instance_micros_per_hour, gpus, source) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (node_id, effective_from_ns) DO NOTHING", sql_params![node_id, b.start_ns as i64, price.0, price.1, price.2])?;
        }
        self.prices.insert(node_id, price);
        Ok(())
    }

    fn node_id(&mut self, tx: &impl Db, node: &Node) -> Result<i64, LedgerError> {
        let key = (node.cluster.clone(), node.name.clone());
        if let Some((id, known)) = self.nodes.get(&key)
            && known == node
        {
            return Ok(*id);
        }
        let id: i64 = tx.one(
            "INSERT INTO nodes (cluster, name, instance_type, capacity_type, region, zone, labels_json) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (cluster, name) DO UPDATE SET instance_type = excluded.instance_type, capacity_type = excluded.capacity_type,
               region = excluded.region, zone = excluded.zone, labels_json = excluded.labels_json
             RETURNING node_id", sql_params![
                node.cluster,
                node.name,
                node.instance_type,
                node.capacity_type,
                node.region,
                node.zone,
                serde_json::to_string(&node.labels).unwrap_or_else(|_| "{}".into())
            ],
            |r| r.get(0),
        )?;
        self.nodes.insert(key, (id, node.clone()));
        Ok(id)
    }

    /// The id of GPU `d` of `cluster` (a GPU is its cluster's: the same UUID reported by another cluster is
    /// another row), seen now on `node_id`.
    fn gpu_id(&mut self, tx: &impl Db, cluster: &str, node_id: i64, d: &Device) -> Result<i64, LedgerError> {
        let key = (cluster.to_string(), d.uuid.clone());
        if let Some((id, on_node, known)) = self.gpus.get(&key)
            && *on_node == node_id
            && known == d
        {
            return Ok(*id);
        }
        let id: i64 = tx.one(
            "INSERT INTO gpus (cluster, uuid, node_id, model, memory_total_bytes, mig_parent_uuid, mig_profile) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (cluster, uuid) DO UPDATE SET node_id = excluded.node_id, model = excluded.model,
               memory_total_bytes = excluded.memory_total_bytes, mig_parent_uuid = excluded.mig_parent_uuid, mig_profile = excluded.mig_profile
             RETURNING gpu_id", sql_params![cluster, d.uuid, node_id, d.model, d.memory_total_bytes as i64, d.mig_parent_uuid, d.mig_profile], |r| r.get(0))?;
        let clusters: i64 = tx.one("SELECT COUNT(*) FROM gpus WHERE uuid = $1", sql_params![d.uuid], |r| r.get(0))?;
        if clusters > 1 {
            self.contested.insert(d.uuid.clone());
        }
        self.gpus.insert(key, (id, node_id, d.clone()));
        Ok(id)
    }

    fn workload_id(&mut self, tx: &impl Db, w: &Workload) -> Result<i64, LedgerError> {
        // A workload whose identity changed (a relabelled pod) is written again.
        if let Some((id, known)) = self.workloads.get(&w.key)
            && *known == w.identity
        {
            return Ok(*id);
        }
        let i = &w.identity;
        let json = serde_json::to_string(i).map_err(|e| LedgerError::Io(e.to_string()))?;
        let id: i64 = tx.one(
            "INSERT INTO workloads (key, kind, namespace, pod, container, controller_kind, controller_name, ecs_task_arn, slurm_job_id, user_name, identity_json)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (key) DO UPDATE SET kind = excluded.kind, namespace = excluded.namespace, pod = excluded.pod,
               container = excluded.container, controller_kind = excluded.controller_kind,
               controller_name = excluded.controller_name, ecs_task_arn = excluded.ecs_task_arn,
               slurm_job_id = excluded.slurm_job_id, user_name = excluded.user_name, identity_json = excluded.identity_json
             RETURNING workload_id", sql_params![w.key, i.kind.as_str(), i.namespace, i.pod, i.container, i.controller_kind, i.controller_name, i.ecs_task_arn, i.slurm_job_id, i.user, json],
            |r| r.get(0),
        )?;
        tx.run("DELETE FROM workload_labels WHERE workload_id = $1", sql_params![id])?;
        // Pod labels under their own keys; the allow-listed environment (MLFLOW_RUN_ID, …) as `env:<key>`.
        let env = i.env.iter().map(|(k, v)| (format!("env:{k}"), v));
        for (k, v) in i.labels.iter().map(|(k, v)| (k.clone(), v)).chain(env) {
            tx.run("INSERT INTO workload_labels (workload_id, key, value) VALUES ($1, $2, $3)", sql_params![id, k, v])?;
        }
        self.workloads.insert(w.key.clone(), (id, w.identity.clone()));
        Ok(id)
    }
}

/// FNV-1a, 64 bits: a stable key for an advisory lock.
/// The owner row of `workload_id` in force at `at` (the latest that began by then), and from when.
fn owner_row(tx: &impl Db, workload_id: i64, at: i64) -> Result<Option<(u64, Ownership)>, LedgerError> {
    Ok(tx.opt(
        "SELECT from_ns, owner, team, department, component, system, rule FROM workload_owners
         WHERE workload_id = $1 AND from_ns <= $2 ORDER BY from_ns DESC LIMIT 1",
        sql_params![workload_id, at],
        |r| {
            Ok((
                r.get::<i64>(0)? as u64,
                Ownership {
                    owner: r.get(1)?,
                    team: r.get(2)?,
                    department: r.get(3)?,
                    component: r.get(4)?,
                    system: r.get(5)?,
                    rule: Rule::parse(&r.get::<String>(6)?).map_or(UNATTRIBUTED, Rule::name),
                },
            ))
        },
    )?)
}

fn insert_owner(tx: &impl Db, workload_id: i64, from_ns: u64, o: &Ownership) -> Result<(), LedgerError> {
    tx.run(
        "INSERT INTO workload_owners (workload_id, from_ns, owner, team, department, component, system, rule)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (workload_id, from_ns) DO UPDATE SET owner = excluded.owner,
           team = excluded.team, department = excluded.department, component = excluded.component, system = excluded.system,
           rule = excluded.rule",
        sql_params![workload_id, from_ns as i64, o.owner, o.team, o.department, o.component, o.system, o.rule],
    )?;
    Ok(())
}

/// Bills `workload_id`'s GPU time in the buckets of [from_ns, to_ns) to `owner`: one owner row for the window
/// (from `from_ns`, or just after it when the row there is still the owner of time outside the window), the
/// window's usage rows moved onto it (rows of one bucket that were billed to several owners merged), and the
/// window's owner rows that no usage row names any more deleted. Time outside the window keeps its owner rows.
fn reattribute_rows(
    tx: &impl Db,
    workload_id: i64,
    from_ns: u64,
    to_ns: u64,
    owner: &Ownership,
) -> Result<(), LedgerError> {
    let (from, to) = (from_ns as i64, to_ns.min(i64::MAX as u64) as i64);
    let named_outside = |key: i64| -> Result<bool, LedgerError> {
        Ok(tx
            .opt(
                "SELECT 1 FROM usage_buckets WHERE workload_id = $1 AND owner_from = $2
                   AND (bucket_start_ns < $3 OR bucket_start_ns >= $4) LIMIT 1",
                sql_params![workload_id, key, from, to],
                |r| r.get::<i64>(0),
            )?
            .is_some())
    };
    let mut key = from;
    while key < to && named_outside(key)? {
        key += 1;
    }
    insert_owner(tx, workload_id, key as u64, owner)?;
    let values = USAGE_VALUES.join(", ");
    let sums = USAGE_VALUES.iter().map(|v| format!("SUM({v})")).collect::<Vec<_>>().join(", ");
    let adds =
        USAGE_VALUES.iter().map(|v| format!("{v} = usage_buckets.{v} + excluded.{v}")).collect::<Vec<_>>().join(", ");
    // Parameters are numbered in order of first appearance (SQLite binds them that way).
    tx.run(
        &format!(
            "INSERT INTO usage_buckets (bucket_start_ns, gpu_id, workload_id, node_id, owner_from, {values})
             SELECT bucket_start_ns, gpu_id, workload_id, node_id, CAST($1 AS BIGINT), {sums} FROM usage_buckets
             WHERE workload_id = $2 AND bucket_start_ns >= $3 AND bucket_start_ns < $4 AND owner_from <> $1
             GROUP BY bucket_start_ns, gpu_id, workload_id, node_id
             ON CONFLICT (bucket_start_ns, gpu_id, workload_id, node_id, owner_from) DO UPDATE SET {adds}"
        ),
        sql_params![key, workload_id, from, to],
    )?;
    tx.run(
        "DELETE FROM usage_buckets WHERE workload_id = $1 AND bucket_start_ns >= $2 AND bucket_start_ns < $3 AND owner_from <> $4",
        sql_params![workload_id, from, to, key],
    )?;
    tx.run(
        "DELETE FROM workload_owners WHERE workload_id = $1 AND from_ns >= $2 AND from_ns < $3 AND from_ns <> $4
           AND NOT EXISTS (SELECT 1 FROM usage_buckets u WHERE u.workload_id = $1 AND u.owner_from = workload_owners.from_ns)
           AND NOT EXISTS (SELECT 1 FROM usage_days d WHERE d.workload_id = $1 AND d.owner_from = workload_owners.from_ns)",
        sql_params![workload_id, from, to, key],
    )?;
    Ok(())
}

fn fnv1a(s: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

enum Claim {
    /// Recorded now.
    Taken,
    /// Wholly recorded before: a resend.
    Held,
    /// Partly recorded before, in the stored range [from, to]: neither new nor a resend.
    Overlaps { from: u64, to: u64 },
}

/// Records the batch's sequence numbers (first_seq..=seq) for its boot, coalescing ranges. A boot is its
/// cluster's: the same agent and boot ids under another cluster are another boot.
fn claim_seqs(ids: &mut IdCache, tx: &impl Db, b: &Batch) -> Result<Claim, DbError> {
    let (first, last) = (b.first_seq as i64, b.seq as i64);
    let cluster = &b.node.cluster;
    let key = (cluster.clone(), b.agent_id.clone(), b.boot_id.clone());
    // Writers sharing the database take turns per boot (an agent may reconnect to another collector while
    // its old stream is still being stored).
    // (Only a shared database needs it: the embedded ledger's hot path does not pay for the key.)
    if !tx.single_writer() {
        tx.exclusive(2, fnv1a(&format!("{cluster}\u{0}{}\u{0}{}", b.agent_id, b.boot_id)))?;
    }
    if let Some(&(f, l)) = ids.seqs.get(&key).filter(|_| tx.single_writer())
        && l + 1 == first
    {
        // The next batch of the boot's latest range: nothing can lie beyond it.
        tx.run(
            "UPDATE boot_seqs SET last_seq = $1 WHERE cluster = $2 AND agent_id = $3 AND boot_id = $4 AND first_seq = $5",
            sql_params![last, cluster, b.agent_id, b.boot_id, f],
        )?;
        ids.seqs.insert(key, (f, last));
        return Ok(Claim::Taken);
    }
    let before: Option<(i64, i64)> = tx.opt(
        "SELECT first_seq, last_seq FROM boot_seqs WHERE cluster = $1 AND agent_id = $2 AND boot_id = $3 AND first_seq <= $4
             ORDER BY first_seq DESC LIMIT 1",
        sql_params![cluster, b.agent_id, b.boot_id, last],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if let Some((f, l)) = before
        && l >= first
    {
        return Ok(if f <= first && l >= last {
            Claim::Held
        } else {
            Claim::Overlaps { from: f as u64, to: l as u64 }
        });
    }
    let joins_before = before.filter(|&(_, l)| l + 1 == first);
    let after: Option<i64> = tx.opt(
        "SELECT last_seq FROM boot_seqs WHERE cluster = $1 AND agent_id = $2 AND boot_id = $3 AND first_seq = $4",
        sql_params![cluster, b.agent_id, b.boot_id, last + 1],
        |r| r.get(0),
    )?;
    if after.is_some() {
        tx.run(
            "DELETE FROM boot_seqs WHERE cluster = $1 AND agent_id = $2 AND boot_id = $3 AND first_seq = $4",
            sql_params![cluster, b.agent_id, b.boot_id, last + 1],
        )?;
    }
    let new_last = after.unwrap_or(last);
    match joins_before {
        Some((f, _)) => tx.run(
            "UPDATE boot_seqs SET last_seq = $1 WHERE cluster = $2 AND agent_id = $3 AND boot_id = $4 AND first_seq = $5",
            sql_params![new_last, cluster, b.agent_id, b.boot_id, f],
        )?,
        None => tx.run(
            "INSERT INTO boot_seqs (cluster, agent_id, boot_id, first_seq, last_seq) VALUES ($1, $2, $3, $4, $5)",
            sql_params![cluster, b.agent_id, b.boot_id, first, new_last],
        )?,
    };
    let latest: (i64, i64) = tx
        .one(
            "SELECT first_seq, last_seq FROM boot_seqs WHERE cluster = $1 AND agent_id = $2 AND boot_id = $3 ORDER BY first_seq DESC LIMIT 1", sql_params![cluster, b.agent_id, b.boot_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    ids.seqs.insert(key, latest);
    Ok(Claim::Taken)
}

/// Records [start, end) as billed on the GPU, coalescing ranges; the recorded range it overlaps, if any
/// (then nothing is recorded).
fn claim_gpu_time(
    ids: &mut IdCache,
    tx: &impl Db,
    gpu_id: i64,
    start: u64,
    end: u64,
) -> Result<Option<(u64, u64)>, DbError> {
    let (start, end) = (start as i64, end as i64);
    tx.exclusive(1, gpu_id)?;
    if let Some(&(s, e)) = ids.coverage.get(&gpu_id).filter(|_| tx.single_writer())
        && e == start
    {
        // Right after the GPU's latest range: nothing can lie beyond it.
        tx.run("UPDATE gpu_coverage SET end_ns = $1 WHERE gpu_id = $2 AND start_ns = $3", sql_params![end, gpu_id, s])?;
        ids.coverage.insert(gpu_id, (s, end));
        return Ok(None);
    }
    let before: Option<(i64, i64)> = tx.opt(
        "SELECT start_ns, end_ns FROM gpu_coverage WHERE gpu_id = $1 AND start_ns < $2 ORDER BY start_ns DESC LIMIT 1",
        sql_params![gpu_id, end],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if let Some((s, e)) = before
        && e > start
    {
        return Ok(Some((s as u64, e as u64)));
    }
    let joins_before = before.filter(|&(_, e)| e == start);
    let after: Option<i64> =
        tx.opt("SELECT end_ns FROM gpu_coverage WHERE gpu_id = $1 AND start_ns = $2", sql_params![gpu_id, end], |r| {
            r.get(0)
        })?;
    if after.is_some() {
        tx.run("DELETE FROM gpu_coverage WHERE gpu_id = $1 AND start_ns = $2", sql_params![gpu_id, end])?;
    }
    let new_end = after.unwrap_or(end);
    match joins_before {
        Some((s, _)) => tx.run(
            "UPDATE gpu_coverage SET end_ns = $1 WHERE gpu_id = $2 AND start_ns = $3",
            sql_params![new_end, gpu_id, s],
        )?,
        None => tx.run(
            "INSERT INTO gpu_coverage (gpu_id, start_ns, end_ns) VALUES ($1, $2, $3)",
            sql_params![gpu_id, start, new_end],
        )?,
    };
    let latest: (i64, i64) = tx.one(
        "SELECT start_ns, end_ns FROM gpu_coverage WHERE gpu_id = $1 ORDER BY start_ns DESC LIMIT 1",
        sql_params![gpu_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    ids.coverage.insert(gpu_id, latest);
    Ok(None)
}

/// Stands for an absent energy reading in a row of integers (written as NULL).
const NULL_ENERGY: i64 = i64::MIN;

/// Most rows one multi-row statement writes (its parameters stay far below either engine's limit).
const ROWS_PER_STATEMENT: usize = 256;

/// `head VALUES (…), (…) tail` for the rows in `values` (`width` integers each), a statement per
/// [`ROWS_PER_STATEMENT`] rows. In column `nullable`, [`NULL_ENERGY`] is written as NULL.
fn insert_rows(
    tx: &impl Db,
    head: &str,
    width: usize,
    tail: &str,
    values: &[i64],
    nullable: Option<usize>,
) -> Result<(), DbError> {
    for chunk in values.chunks(width * ROWS_PER_STATEMENT) {
        let rows = chunk.len() / width;
        let mut sql = String::with_capacity(head.len() + tail.len() + rows * width * 6 + 16);
        sql.push_str(head);
        sql.push_str(" VALUES ");
        for r in 0..rows {
            sql.push_str(if r == 0 { "(" } else { ", (" });
            for c in 0..width {
                if c > 0 {
                    sql.push_str(", ");
                }
                sql.push('$');
                sql.push_str(&(r * width + c + 1).to_string());
            }
            sql.push(')');
        }
        sql.push(' ');
        sql.push_str(tail);
        let params: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, &v)| if nullable == Some(i % width) && v == NULL_ENERGY { Value::Null } else { Value::Int(v) })
            .collect();
        tx.run(&sql, &bind(&params))?;
    }
    Ok(())
}

/// Extends to `end` the coverage range of each of `gpus` that ends at `start`, in one statement; how many.
fn extend_ranges(tx: &impl Db, gpus: &[i64], start: i64, end: i64) -> Result<usize, DbError> {
    let list = (0..gpus.len()).map(|i| format!("${}", i + 3)).collect::<Vec<_>>().join(", ");
    let mut params = vec![Value::Int(end), Value::Int(start)];
    params.extend(gpus.iter().map(|&g| Value::Int(g)));
    tx.run(&format!("UPDATE gpu_coverage SET end_ns = $1 WHERE end_ns = $2 AND gpu_id IN ({list})"), &bind(&params))
}

/// The usual case for the single writer of an embedded ledger, in one statement: every GPU's latest coverage
/// (as the writer's cache knows it) ends where the interval starts, so each is extended to its end. `false`
/// (nothing written) when that is not known to be so; then each GPU is claimed on its own ([`claim_gpu_time`]).
fn extend_all_coverage(
    ids: &mut IdCache,
    tx: &impl Db,
    gpus: impl Iterator<Item = i64>,
    start: u64,
    end: u64,
) -> Result<bool, DbError> {
    let gpus: Vec<i64> = gpus.collect();
    let mut sorted = gpus.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if gpus.is_empty()
        || sorted.len() != gpus.len()
        || !gpus.iter().all(|g| ids.coverage.get(g).is_some_and(|&(_, e)| e == start as i64))
    {
        return Ok(false);
    }
    let n = extend_ranges(tx, &gpus, start as i64, end as i64)?;
    if n != gpus.len() {
        // The cache was wrong: fail the batch (its writes roll back and the cache is dropped), so that the
        // agent sends it again and it takes the GPU-by-GPU path.
        return Err(DbError(format!("coverage cache out of step: {n} of {} GPU ranges extended", gpus.len())));
    }
    for g in gpus {
        if let Some(r) = ids.coverage.get_mut(&g) {
            r.1 = end as i64;
        }
    }
    Ok(true)
}

/// On a database shared by several writers: claims [start, end) on every GPU in a few round trips (lock
/// them all, read every range that touches the interval, then write), instead of several per GPU. `true`
/// when claimed on all; `false` (nothing written) when a GPU already has time in the interval, so that
/// the GPU-by-GPU path names it.
fn claim_coverage_shared(tx: &impl Db, gpus: &[i64], start: u64, end: u64) -> Result<bool, DbError> {
    let (start, end) = (start as i64, end as i64);
    if gpus.is_empty() {
        return Ok(true);
    }
    tx.exclusive_many(1, gpus)?;
    let list = (0..gpus.len()).map(|i| format!("${}", i + 3)).collect::<Vec<_>>().join(", ");
    let mut params = vec![Value::Int(end), Value::Int(start)];
    params.extend(gpus.iter().map(|&g| Value::Int(g)));
    let touching: Vec<(i64, i64, i64)> = tx.all(
        &format!(
            "SELECT gpu_id, start_ns, end_ns FROM gpu_coverage WHERE start_ns <= $1 AND end_ns >= $2 AND gpu_id IN ({list})"
        ),
        &bind(&params),
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    if touching.iter().any(|&(_, s, e)| s < end && e > start) {
        return Ok(false);
    }
    // Per GPU: the range ending where the interval starts, and the one starting where it ends.
    let mut extend = Vec::new();
    for &g in gpus {
        let before = touching.iter().find(|&&(id, _, e)| id == g && e == start).map(|&(_, s, _)| s);
        let after = touching.iter().find(|&&(id, s, _)| id == g && s == end).map(|&(_, _, e)| e);
        match (before, after) {
            (Some(_), None) => extend.push(g),
            (Some(s), Some(e)) => {
                tx.run("DELETE FROM gpu_coverage WHERE gpu_id = $1 AND start_ns = $2", sql_params![g, end])?;
                tx.run(
                    "UPDATE gpu_coverage SET end_ns = $1 WHERE gpu_id = $2 AND start_ns = $3",
                    sql_params![e, g, s],
                )?;
            }
            (None, Some(e)) => {
                tx.run("DELETE FROM gpu_coverage WHERE gpu_id = $1 AND start_ns = $2", sql_params![g, end])?;
                tx.run(
                    "INSERT INTO gpu_coverage (gpu_id, start_ns, end_ns) VALUES ($1, $2, $3)",
                    sql_params![g, start, e],
                )?;
            }
            (None, None) => {
                tx.run(
                    "INSERT INTO gpu_coverage (gpu_id, start_ns, end_ns) VALUES ($1, $2, $3)",
                    sql_params![g, start, end],
                )?;
            }
        }
    }
    if !extend.is_empty() {
        // The usual case, every GPU's latest range reaching the interval: one statement.
        extend_ranges(tx, &extend, start, end)?;
    }
    Ok(true)
}

/// Writes one batch inside the caller's savepoint.
fn record_one<'b>(
    ids: &mut IdCache,
    tx: &impl Db,
    b: &'b Batch,
    now_ns: u64,
    bucket_ns: u64,
    keep_raw_after_ns: u64,
) -> Result<Recorded, LedgerError> {
    match claim_seqs(ids, tx, b)? {
        Claim::Taken => {}
        Claim::Held => return Ok(Recorded::Duplicate),
        Claim::Overlaps { from, to } => {
            return Err(LedgerError::SeqOverlap {
                batch: b.id(),
                first_seq: b.first_seq,
                stored_from: from,
                stored_to: to,
            });
        }
    }
    tx.run(
        "INSERT INTO agent_boots (cluster, agent_id, boot_id, last_seq, first_seen_ns, last_seen_ns) VALUES ($1, $2, $3, $4, $5, $5)
         ON CONFLICT (cluster, agent_id, boot_id) DO UPDATE SET last_seq = CASE WHEN agent_boots.last_seq > excluded.last_seq
           THEN agent_boots.last_seq ELSE excluded.last_seq END, last_seen_ns = excluded.last_seen_ns",
        sql_params![b.node.cluster, b.agent_id, b.boot_id, b.seq as i64, now_ns as i64],
    )?;
    let node_id = ids.node_id(tx, &b.node)?;
    let (start, end) = (b.start_ns, b.end_ns);
    let parts = buckets(start, end, bucket_ns);
    let keep_raw = end >= keep_raw_after_ns;
    let mut gpu_ids = HashMap::with_capacity(b.devices.len());
    for d in &b.devices {
        gpu_ids.insert(d.uuid.as_str(), ids.gpu_id(tx, &b.node.cluster, node_id, d)?);
    }
    // The interval is billed once: refuse it if any of its GPUs already has time recorded in it.
    let gpus = b.devices.iter().map(|d| gpu_ids[d.uuid.as_str()]);
    let claimed = if tx.single_writer() {
        extend_all_coverage(ids, tx, gpus, start, end)?
    } else {
        claim_coverage_shared(tx, &gpus.collect::<Vec<_>>(), start, end)?
    };
    // Else GPU by GPU, which names the GPU and the range a refused interval overlaps.
    if !claimed {
        for d in &b.devices {
            if let Some((from, to)) = claim_gpu_time(ids, tx, gpu_ids[d.uuid.as_str()], start, end)? {
                return Err(LedgerError::Overlap {
                    batch: b.id(),
                    gpu: d.uuid.clone(),
                    start_ns: start,
                    end_ns: end,
                    covered_from_ns: from,
                    covered_until_ns: to,
                });
            }
        }
    }
    let conflicts = other_clusters_time(ids, tx, b, now_ns)?;

    ids.record_price(tx, node_id, b)?;
    // A batch of a day that has ended may change a day whose daily rollups are built: unbuild it (days.rs).
    let late = start < now_ns / days::DAY * days::DAY;
    if late {
        days::unbuild(tx, start, end)?;
    }

    #[derive(Default)]
    struct GpuRoll {
        observed: bool,
        held: bool,
        used_ns: u64,
        energy_mj: u64,
        cost: u64,
        idle: u64,
        unallocated: u64,
        unpriced: bool,
    }
    // Every device of the node is part of the interval (and of its cost), read or not: a physical GPU the node
    // lists is observed for the interval (the time it is billed for), so that the fleet is its GPUs' price × time.
    let mut rolls: std::collections::BTreeMap<&str, GpuRoll> = std::collections::BTreeMap::new();
    for (i, d) in b.devices.iter().enumerate() {
        let roll = rolls.entry(&d.uuid).or_default();
        roll.observed = !d.is_mig();
        if let Some(c) = b.cost.devices.get(i) {
            roll.cost = c.cost;
            roll.idle = c.idle;
            roll.unallocated = c.unallocated;
            roll.unpriced = c.unpriced.is_some();
        }
    }
    // Rows are gathered and written a statement per table (a statement per row was most of the cost).
    let mut raw_gpus: Vec<i64> = Vec::new();
    for g in &b.gpus {
        // Validation made every reading one of the node's devices: observed above.
        let roll = rolls.entry(&g.uuid).or_default();
        roll.energy_mj = g.energy_millijoules.unwrap_or(0);
        if keep_raw {
            raw_gpus.extend([
                gpu_ids[g.uuid.as_str()],
                start as i64,
                end as i64,
                node_id,
                i64::from(g.utilization_ppm),
                g.memory_used_bytes as i64,
                g.power_milliwatts as i64,
            ]);
            raw_gpus.push(g.energy_millijoules.map_or(NULL_ENERGY, |e| e as i64));
        }
    }
    insert_rows(
        tx,
        "INSERT INTO gpu_intervals (gpu_id, start_ns, end_ns, node_id, utilization_ppm, memory_used_bytes, power_milliwatts, energy_millijoules)",
        8,
        "",
        &raw_gpus,
        Some(7),
    )?;
    // A workload appears on every process and holding of it: resolve its id once per batch.
    let mut workloads: HashMap<&str, i64> = HashMap::new();
    let mut workload_id = |ids: &mut IdCache, w: &'b Workload| -> Result<i64, LedgerError> {
        if let Some(&id) = workloads.get(w.key.as_str()) {
            return Ok(id);
        }
        let id = ids.workload_id(tx, w)?;
        workloads.insert(w.key.as_str(), id);
        Ok(id)
    };
    let mut usage: std::collections::BTreeMap<(i64, i64, i64, i64), [i64; 9]> = std::collections::BTreeMap::new();
    for (k, h) in b.holdings.iter().enumerate() {
        let gpu_id = gpu_ids[h.gpu_uuid.as_str()];
        let workload_id = workload_id(ids, &h.workload)?;
        let roll = rolls.entry(&h.gpu_uuid).or_default();
        roll.held = true;
        roll.used_ns += h.used_ns;
        // The owner this interval's time is billed to (-1: no owner rules).
        let owner_from = match b.owners.get(k) {
            Some(o) => ids.owner_from(tx, workload_id, b.start_ns, o)?,
            None => NO_OWNER,
        };
        let c = b.cost.holdings.get(k).copied().unwrap_or_default();
        let amounts = [
            h.used_ns,
            c.used,
            c.hybrid_idle,
            c.allocation_used,
            c.allocation_idle,
            c.energy_mj,
            c.co2e_mg.unwrap_or(0),
        ]
        .map(|a| spread(a, &parts));
        for (p, (bucket, len)) in parts.iter().enumerate() {
            let row = usage.entry((*bucket as i64, gpu_id, workload_id, owner_from)).or_default();
            row[0] += *len as i64;
            for (n, a) in amounts.iter().enumerate() {
                row[1 + n] += a[p] as i64;
            }
            row[8] += if c.co2e_mg.is_some() { *len as i64 } else { 0 };
        }
    }
    let usage_rows: Vec<i64> = usage
        .iter()
        .flat_map(|(&(bucket, gpu_id, workload_id, owner_from), v)| {
            [bucket, gpu_id, workload_id, node_id, owner_from].into_iter().chain(*v)
        })
        .collect();
    insert_rows(
        tx,
        "INSERT INTO usage_buckets (bucket_start_ns, gpu_id, workload_id, node_id, owner_from, held_ns, used_ns, used_micros,
           hybrid_idle_micros, allocation_used_micros, allocation_idle_micros, energy_millijoules, co2e_mg, co2e_known_ns)",
        14,
        "ON CONFLICT (bucket_start_ns, gpu_id, workload_id, node_id, owner_from) DO UPDATE SET
           held_ns = usage_buckets.held_ns + excluded.held_ns, used_ns = usage_buckets.used_ns + excluded.used_ns,
           used_micros = usage_buckets.used_micros + excluded.used_micros,
           hybrid_idle_micros = usage_buckets.hybrid_idle_micros + excluded.hybrid_idle_micros,
           allocation_used_micros = usage_buckets.allocation_used_micros + excluded.allocation_used_micros,
           allocation_idle_micros = usage_buckets.allocation_idle_micros + excluded.allocation_idle_micros,
           energy_millijoules = usage_buckets.energy_millijoules + excluded.energy_millijoules,
           co2e_mg = usage_buckets.co2e_mg + excluded.co2e_mg, co2e_known_ns = usage_buckets.co2e_known_ns + excluded.co2e_known_ns",
        &usage_rows,
        None,
    )?;
    if keep_raw {
        let mut raw: Vec<i64> = Vec::with_capacity(b.processes.len() * 8);
        for p in &b.processes {
            let workload_id = workload_id(ids, &p.workload)?;
            raw.extend([
                gpu_ids[p.gpu_uuid.as_str()],
                start as i64,
                i64::from(p.pid),
                end as i64,
                workload_id,
                i64::from(p.sm_share_ppm),
                i64::from(p.memory_util_ppm),
                p.used_memory_bytes as i64,
            ]);
        }
        insert_rows(
            tx,
            "INSERT INTO process_intervals (gpu_id, start_ns, pid, end_ns, workload_id, sm_util_ppm, memory_util_ppm, used_memory_bytes)",
            8,
            "",
            &raw,
            None,
        )?;
    }
    let mut gpu_rows: Vec<i64> = Vec::with_capacity(rolls.len() * parts.len() * 11);
    for (uuid, roll) in &rolls {
        let amounts = [roll.used_ns, roll.energy_mj, roll.cost, roll.idle, roll.unallocated].map(|a| spread(a, &parts));
        for (p, (bucket, len)) in parts.iter().enumerate() {
            let a = |n: usize| amounts[n][p] as i64;
            let observed_ns = if roll.observed { *len } else { 0 };
            let held_ns = if roll.held { *len } else { 0 };
            let unpriced_ns = if roll.unpriced { observed_ns } else { 0 };
            gpu_rows.extend([
                *bucket as i64,
                gpu_ids[uuid],
                node_id,
                observed_ns as i64,
                held_ns as i64,
                a(0),
                a(1),
                a(2),
                a(3),
                a(4),
                unpriced_ns as i64,
            ]);
        }
    }
    insert_rows(
        tx,
        "INSERT INTO gpu_buckets (bucket_start_ns, gpu_id, node_id, observed_ns, held_ns, used_ns, energy_millijoules,
           cost_micros, idle_micros, unallocated_micros, unpriced_ns)",
        11,
        "ON CONFLICT (bucket_start_ns, gpu_id, node_id) DO UPDATE SET
           observed_ns = gpu_buckets.observed_ns + excluded.observed_ns, held_ns = gpu_buckets.held_ns + excluded.held_ns,
           used_ns = gpu_buckets.used_ns + excluded.used_ns, energy_millijoules = gpu_buckets.energy_millijoules + excluded.energy_millijoules,
           cost_micros = gpu_buckets.cost_micros + excluded.cost_micros, idle_micros = gpu_buckets.idle_micros + excluded.idle_micros,
           unallocated_micros = gpu_buckets.unallocated_micros + excluded.unallocated_micros,
           unpriced_ns = gpu_buckets.unpriced_ns + excluded.unpriced_ns",
        &gpu_rows,
        None,
    )?;
    Ok(if conflicts.is_empty() { Recorded::Stored } else { Recorded::Contested(conflicts) })
}

/// The GPUs of `b` that another cluster has time on over `b`'s interval, each kept in `gpu_conflicts` for an
/// operator. Looked for only where the ledger holds the UUID under another cluster (on a shared database, always:
/// another collector may have just written it).
fn other_clusters_time(ids: &IdCache, tx: &impl Db, b: &Batch, now_ns: u64) -> Result<Vec<Conflict>, LedgerError> {
    let uuids: Vec<&str> = b
        .devices
        .iter()
        .map(|d| d.uuid.as_str())
        .filter(|u| !tx.single_writer() || ids.contested.contains(*u))
        .collect();
    if uuids.is_empty() {
        return Ok(Vec::new());
    }
    let (cluster, start, end) = (&b.node.cluster, b.start_ns as i64, b.end_ns as i64);
    let list = (0..uuids.len()).map(|i| format!("${}", i + 4)).collect::<Vec<_>>().join(", ");
    let mut params = vec![Value::Text(cluster.clone()), Value::Int(end), Value::Int(start)];
    params.extend(uuids.iter().map(|u| Value::Text(u.to_string())));
    let found: Vec<(String, String)> = tx.all(
        &format!(
            "SELECT DISTINCT g.uuid, g.cluster FROM gpus g JOIN gpu_coverage c ON c.gpu_id = g.gpu_id
             WHERE g.cluster <> $1 AND c.start_ns < $2 AND c.end_ns > $3 AND g.uuid IN ({list}) ORDER BY 1, 2"
        ),
        &bind(&params),
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut conflicts = Vec::with_capacity(found.len());
    for (gpu_uuid, other_cluster) in found {
        tx.run(
            "INSERT INTO gpu_conflicts (gpu_uuid, cluster, other_cluster, start_ns, end_ns, batches, first_seen_ns, last_seen_ns)
             VALUES ($1, $2, $3, $4, $5, 1, $6, $6)
             ON CONFLICT (gpu_uuid, cluster, other_cluster) DO UPDATE SET
               start_ns = CASE WHEN gpu_conflicts.start_ns < excluded.start_ns THEN gpu_conflicts.start_ns ELSE excluded.start_ns END,
               end_ns = CASE WHEN gpu_conflicts.end_ns > excluded.end_ns THEN gpu_conflicts.end_ns ELSE excluded.end_ns END,
               batches = gpu_conflicts.batches + 1, last_seen_ns = excluded.last_seen_ns",
            sql_params![gpu_uuid, cluster, other_cluster, start, end, now_ns as i64],
        )?;
        conflicts.push(Conflict {
            gpu_uuid,
            cluster: cluster.clone(),
            other_cluster,
            start_ns: b.start_ns,
            end_ns: b.end_ns,
            batches: 1,
            first_seen_ns: now_ns,
            last_seen_ns: now_ns,
        });
    }
    Ok(conflicts)
}

impl<E: Engine> Ledger for SqlLedger<E> {
    fn record(&self, batches: &[Batch], now_ns: u64) -> Result<Vec<Result<Recorded, LedgerError>>, LedgerError> {
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let Writer { conn, ids } = &mut *guard;
        let keep_raw_after = now_ns.saturating_sub(self.raw_retention_ns);
        // Most groups store whole: try that first, without a savepoint per batch (each made the engine
        // journal every page a batch touched). If a batch fails, nothing of the try is kept, and the group is
        // stored again batch by batch, each in its own savepoint.
        let whole = (|| -> Result<Option<Vec<Recorded>>, LedgerError> {
            let tx = Tx::begin(&*conn, self.engine.begin())?;
            let mut outcomes = Vec::with_capacity(batches.len());
            for b in batches {
                match record_one(ids, &*tx, b, now_ns, self.bucket_ns, keep_raw_after) {
                    Ok(rec) => outcomes.push(rec),
                    // Rolled back as `tx` drops; the batch-by-batch pass says which batch failed and why.
                    Err(_) => return Ok(None),
                }
            }
            tx.commit()?;
            Ok(Some(outcomes))
        })();
        match whole {
            Ok(Some(outcomes)) => return Ok(outcomes.into_iter().map(Ok).collect()),
            Ok(None) => *ids = IdCache::default(),
            Err(e) => {
                *ids = IdCache::default();
                return Err(e);
            }
        }
        let result = (|| {
            let tx = Tx::begin(&*conn, self.engine.begin())?;
            let mut outcomes = Vec::with_capacity(batches.len());
            for b in batches {
                let sp = tx.savepoint()?;
                match record_one(ids, &*sp, b, now_ns, self.bucket_ns, keep_raw_after) {
                    Ok(rec) => {
                        sp.release()?;
                        outcomes.push(Ok(rec));
                    }
                    Err(e) => {
                        drop(sp); // rolls back this batch's writes, and only them
                        *ids = IdCache::default();
                        outcomes.push(Err(e));
                    }
                }
            }
            tx.commit()?;
            Ok(outcomes)
        })();
        if result.is_err() {
            *ids = IdCache::default();
        }
        result
    }

    fn usage(&self, q: &UsageQuery) -> Result<UsageReport, LedgerError> {
        self.with_reader(|conn| {
            let by_workload = q.group_by.iter().any(Dimension::is_per_workload);
            let dims = DimSql::new(&q.group_by.iter().collect::<Vec<_>>());
            let (cols, label_joins, label_keys) = (&dims.exprs, &dims.joins, &dims.params);
            let (from_p, to_p) = (label_keys.len() + 1, label_keys.len() + 2);
            let select_cols = cols.iter().map(|c| format!("{c}, ")).collect::<String>();
            let group = if cols.is_empty() { String::new() } else { format!("GROUP BY {0} ORDER BY {0}", cols.join(", ")) };
            let split = |c: &str| format!("SUM({c} / 1000000000), SUM({c} % 1000000000)");
            let sql = if by_workload {
                format!(
                    "SELECT {select_cols} NULL, NULL, {}, {} FROM usage_buckets b
                     JOIN gpus g ON g.gpu_id = b.gpu_id JOIN nodes n ON n.node_id = b.node_id JOIN workloads w ON w.workload_id = b.workload_id{label_joins}
                     WHERE b.bucket_start_ns >= ${from_p} AND b.bucket_start_ns < ${to_p} {group}",
                    split("b.held_ns"),
                    split("b.used_ns")
                )
            } else {
                format!(
                    "SELECT {select_cols} {}, {}, {} FROM gpu_buckets b
                     JOIN gpus g ON g.gpu_id = b.gpu_id JOIN nodes n ON n.node_id = b.node_id
                     WHERE b.bucket_start_ns >= $1 AND b.bucket_start_ns < $2 {group}",
                    split("b.observed_ns"),
                    split("b.held_ns"),
                    split("b.used_ns")
                )
            };
            let dims = q.group_by.len();
            let read_time = |r: &crate::ledger::sql::Row, at: usize, observed: bool| -> Result<GpuTime, DbError> {
                Ok(GpuTime {
                    observed_ns: if observed { Some(sum_ns(r.get(at)?, r.get(at + 1)?)) } else { None },
                    held_ns: sum_ns(r.get(at + 2)?, r.get(at + 3)?),
                    used_ns: sum_ns(r.get(at + 4)?, r.get(at + 5)?),
                })
            };
            let mut bound: Vec<Value> = label_keys.iter().map(|k| Value::Text(k.clone())).collect();
            bound.push(Value::Int(q.from_ns as i64));
            bound.push(Value::Int(q.to_ns as i64));
            let rows = conn.all(&sql, &bind(&bound), |r| {
                let group = (0..dims).map(|i| r.get::<String>(i)).collect::<Result<Vec<_>, DbError>>()?;
                Ok(UsageRow { group, time: read_time(r, dims, !by_workload)? })
            })?;
            let totals = conn.one(
                &format!(
                    "SELECT {}, {}, {} FROM gpu_buckets b WHERE b.bucket_start_ns >= $1 AND b.bucket_start_ns < $2",
                    split("b.observed_ns"),
                    split("b.held_ns"),
                    split("b.used_ns")
                ), sql_params![q.from_ns as i64, q.to_ns as i64],
                |r| read_time(r, 0, true))?;
            Ok(UsageReport { rows, totals })
        })
    }

    fn conflicts(&self) -> Result<Vec<Conflict>, LedgerError> {
        self.with_reader(|c| {
            Ok(c.all(
                "SELECT gpu_uuid, cluster, other_cluster, start_ns, end_ns, batches, first_seen_ns, last_seen_ns
                 FROM gpu_conflicts ORDER BY first_seen_ns, gpu_uuid, cluster, other_cluster",
                sql_params![],
                |r| {
                    Ok(Conflict {
                        gpu_uuid: r.get(0)?,
                        cluster: r.get(1)?,
                        other_cluster: r.get(2)?,
                        start_ns: r.get::<i64>(3)? as u64,
                        end_ns: r.get::<i64>(4)? as u64,
                        batches: r.get::<i64>(5)? as u64,
                        first_seen_ns: r.get::<i64>(6)? as u64,
                        last_seen_ns: r.get::<i64>(7)? as u64,
                    })
                },
            )?)
        })
    }

    fn costs_of(&self, source: &Rows, q: &CostQuery) -> Result<CostReport, LedgerError> {
        let (usage_rows, gpu_rows) = (source.usage(), source.gpu());
        self.with_reader(|conn| {
            let (used_col, idle_col) = match q.policy {
                Policy::Utilization => ("b.used_micros", "0"),
                Policy::Hybrid => ("b.used_micros", "b.hybrid_idle_micros"),
                Policy::Allocation => ("b.allocation_used_micros", "b.allocation_idle_micros"),
            };
            let all: Vec<&Dimension> = q.group_by.iter().chain(q.filters.iter().map(|(d, _)| d)).collect();
            // The window's rows are summed per (workload, GPU, node, owner in force[, day]) first, and the
            // dimensions joined onto those few thousand sums rather than onto every hourly row (a month's
            // chargeback went from 1.9 s to a fraction of it over a year of 50 000 workloads: BENCHMARKS.md).
            // Whole days whose daily rollups are built are read from those (days.rs), the rest from the hourly
            // rows; the window's bounds are then written into the statement, else bound as $1 and $2 (they come
            // first in the statement's text).
            // A closed month's report reads the days its closing summed (migration 0013) when it asks for whole days.
            let days::SummedDays { built, usage: usage_days, gpu: gpu_days } =
                days::summed_days(conn, source, q.from_ns, q.to_ns)?;
            let first = if built.is_empty() { 2 } else { 0 };
            let dims = DimSql::with(&all, first);
            let (group_cols, filter_cols) = dims.exprs.split_at(q.group_by.len());
            let k = first + dims.params.len();
            let conds: Vec<String> = filter_cols.iter().enumerate().map(|(i, c)| format!("{c} = ${}", k + i + 1)).collect();
            let conds = if conds.is_empty() { String::new() } else { format!("WHERE {}", conds.join(" AND ")) };
            let select_cols = group_cols.iter().map(|c| format!("{c}, ")).collect::<String>();
            let group = if group_cols.is_empty() { String::new() } else { format!("GROUP BY {0} ORDER BY {0}", group_cols.join(", ")) };
            // Grouped by position: an alias that is also a column's name means the column to PostgreSQL.
            let mut keys = vec!["1", "2", "3"];
            let owner_col = if dims.owner {
                keys.push("4");
                ", u.owner_from AS owner_from".to_string()
            } else {
                String::new()
            };
            let day_col = if all.contains(&&Dimension::Day) {
                keys.push(if keys.len() == 4 { "5" } else { "4" });
                format!(", u.bucket_start_ns / {d} * {d} AS bucket_start_ns", d = days::DAY)
            } else {
                String::new()
            };
            let keys = keys.join(", ");
            let sums = |t: &str| {
                let col = |c: &str| c.replacen("b.", &format!("{t}."), 1);
                format!(
                    "SUM({}) AS used_p, SUM({}) AS idle_p,
                     SUM({t}.held_ns / 1000000000) AS held_s, SUM({t}.held_ns % 1000000000) AS held_r,
                     SUM({t}.used_ns / 1000000000) AS used_s, SUM({t}.used_ns % 1000000000) AS used_r,
                     SUM({t}.energy_millijoules) AS energy_millijoules, SUM({t}.co2e_mg) AS co2e_mg,
                     SUM({t}.co2e_known_ns) AS co2e_known_ns",
                    col(used_col),
                    col(idle_col)
                )
            };
            let hourly = |window: &str| {
                format!(
                    "SELECT u.workload_id, u.gpu_id, u.node_id{owner_col}{day_col}, {} FROM {usage_rows} u WHERE {window} GROUP BY {keys}",
                    sums("u")
                )
            };
            let inner = if built.is_empty() {
                hourly("u.bucket_start_ns >= $1 AND u.bucket_start_ns < $2")
            } else {
                // A built day's rows carry the owner in force (-1: none) and the day's start.
                let daily = format!(
                    "SELECT d.workload_id, d.gpu_id, d.node_id{}{}, {} FROM {usage_days} d WHERE {} GROUP BY {keys}",
                    if owner_col.is_empty() { "" } else { ", d.owner_from AS owner_from" },
                    if day_col.is_empty() { "" } else { ", d.day_start_ns AS bucket_start_ns" },
                    sums("d"),
                    days::within("d.day_start_ns", &built)
                );
                let rest = days::complement(q.from_ns, q.to_ns, &built);
                if rest.is_empty() {
                    daily
                } else {
                    format!("{} UNION ALL {daily}", hourly(&days::within("u.bucket_start_ns", &rest)))
                }
            };
            let sql = format!(
                "SELECT {select_cols} SUM(b.used_p), SUM(b.idle_p), SUM(b.held_s), SUM(b.held_r), SUM(b.used_s), SUM(b.used_r),
                   SUM(b.energy_millijoules), SUM(b.co2e_mg), SUM(b.co2e_known_ns)
                 FROM ({inner}) b
                 JOIN gpus g ON g.gpu_id = b.gpu_id JOIN nodes n ON n.node_id = b.node_id JOIN workloads w ON w.workload_id = b.workload_id{}
                 {conds} {group}",
                dims.joins
            );
            let mut bound: Vec<Value> = Vec::new();
            if built.is_empty() {
                bound.extend([Value::Int(q.from_ns as i64), Value::Int(q.to_ns as i64)]);
            }
            bound.extend(dims.params.iter().map(|p| Value::Text(p.clone())));
            bound.extend(q.filters.iter().map(|(_, v)| Value::Text(v.clone())));
            let n = q.group_by.len();
            let amount = |r: &crate::ledger::sql::Row, i: usize| r.get::<Option<i64>>(i).map(|v| v.unwrap_or(0) as u128);
            let rows = conn
                .all(&sql, &bind(&bound), |r| {
                    Ok(CostRow {
                        group: (0..n).map(|i| r.get::<String>(i)).collect::<Result<Vec<_>, DbError>>()?,
                        used: amount(r, n)?,
                        idle: amount(r, n + 1)?,
                        held_ns: sum_ns(r.get(n + 2)?, r.get(n + 3)?),
                        used_ns: sum_ns(r.get(n + 4)?, r.get(n + 5)?),
                        energy_mj: amount(r, n + 6)?,
                        co2e_mg: match amount(r, n + 8)? {
                            0 => None,
                            _ => Some(amount(r, n + 7)?),
                        },
                    })
                })?;
            let rows = rows.into_iter().filter(|r| n > 0 || r.held_ns > 0 || r.used + r.idle > 0).collect();

            let split = |c: &str| format!("SUM({c} / 1000000000), SUM({c} % 1000000000)");
            // The lines no workload is charged for, over the GPUs the GPU filters select.
            let gpu_filters: Vec<&(Dimension, String)> = q.filters.iter().filter(|(d, _)| !d.is_per_workload()).collect();
            let by_workload = gpu_filters.len() < q.filters.len();
            let gdims = DimSql::new(&gpu_filters.iter().map(|(d, _)| d).collect::<Vec<_>>());
            let gconds: String = gdims.exprs.iter().enumerate().map(|(i, c)| format!("{c} = ${} AND ", i + 1)).collect();
            let (gf, gt) = (gdims.exprs.len() + 1, gdims.exprs.len() + 2);
            let mut gbound: Vec<Value> = gpu_filters.iter().map(|(_, v)| Value::Text(v.clone())).collect();
            gbound.push(Value::Int(q.from_ns as i64));
            gbound.push(Value::Int(q.to_ns as i64));
            // Built days from the daily rows here too.
            let gpu_rows = if built.is_empty() {
                gpu_rows
            } else {
                let cols = crate::ledger::rows::GPU_VALUES.join(", ");
                format!(
                    "(SELECT bucket_start_ns, gpu_id, node_id, {cols} FROM {gpu_rows} x WHERE {}
                      UNION ALL SELECT day_start_ns, gpu_id, node_id, {cols} FROM {gpu_days} y WHERE {})",
                    days::within("bucket_start_ns", &days::complement(q.from_ns, q.to_ns, &built)),
                    days::within("day_start_ns", &built)
                )
            };
            let (fleet, idle, unallocated, unpriced_ns) = conn.one(
                &format!(
                    "SELECT SUM(b.cost_micros), SUM(b.idle_micros), SUM(b.unallocated_micros), {} FROM {gpu_rows} b
                     JOIN gpus g ON g.gpu_id = b.gpu_id JOIN nodes n ON n.node_id = b.node_id
                     WHERE {gconds}b.bucket_start_ns >= ${gf} AND b.bucket_start_ns < ${gt}",
                    split("b.unpriced_ns")
                ),
                &bind(&gbound),
                |r| Ok((amount(r, 0)?, amount(r, 1)?, amount(r, 2)?, sum_ns(r.get(3)?, r.get(4)?))),
            )?;
            let idle = if q.policy == Policy::Utilization { idle } else { 0 };
            Ok(CostReport {
                rows,
                idle: (!by_workload).then_some(idle),
                unallocated: (!by_workload).then_some(unallocated),
                unpriced_ns,
                fleet,
            })
        })
    }

    fn allocations_of(
        &self,
        source: &Rows,
        from_ns: u64,
        to_ns: u64,
        period_ns: u64,
        policy: Policy,
    ) -> Result<Vec<OriginCharge>, LedgerError> {
        self.with_reader(|conn| {
            // Periods of whole days read the days summed by the daily rollups where they are built (as costs do).
            let (mut usage_rows, mut gpu_rows) = (source.usage(), source.gpu());
            if period_ns.is_multiple_of(days::DAY) {
                let days::SummedDays { built, usage: usage_days, gpu: gpu_days } =
                    days::summed_days(conn, source, from_ns, to_ns)?;
                if !built.is_empty() {
                    let rest = days::within("bucket_start_ns", &days::complement(from_ns, to_ns, &built));
                    let (usage_cols, gpu_cols) = (USAGE_VALUES.join(", "), crate::ledger::rows::GPU_VALUES.join(", "));
                    usage_rows = format!(
                        "(SELECT bucket_start_ns, gpu_id, workload_id, node_id, owner_from, {usage_cols} FROM {usage_rows} x WHERE {rest}
                          UNION ALL SELECT day_start_ns, gpu_id, workload_id, node_id, owner_from, {usage_cols} FROM {usage_days} y WHERE {})",
                        days::within("day_start_ns", &built)
                    );
                    gpu_rows = format!(
                        "(SELECT bucket_start_ns, gpu_id, node_id, {gpu_cols} FROM {gpu_rows} x WHERE {rest}
                          UNION ALL SELECT day_start_ns, gpu_id, node_id, {gpu_cols} FROM {gpu_days} y WHERE {})",
                        days::within("day_start_ns", &built)
                    );
                }
            }
            let split = |c: &str| format!("SUM({c} / 1000000000), SUM({c} % 1000000000)");
            let amount = |r: &crate::ledger::sql::Row, i: usize| r.get::<Option<i64>>(i).map(|v| v.unwrap_or(0) as u128);
            let mut origins: Vec<OriginCharge> = Vec::new();
            let mut at: HashMap<(i64, i64, i64), usize> = HashMap::new();
            {
                let sql = format!(
                    // Grouped by the tables' own keys, so that PostgreSQL takes their other columns as determined by them.
                "SELECT b.bucket_start_ns / {period_ns}, g.gpu_id, n.node_id, n.cluster, n.name, n.instance_type,
                            n.capacity_type, n.region, n.zone, g.uuid, g.model, g.mig_profile, SUM(b.cost_micros),
                            {}, {}, {}, SUM(b.energy_millijoules)
                     FROM {gpu_rows} b JOIN gpus g ON g.gpu_id = b.gpu_id JOIN nodes n ON n.node_id = b.node_id
                     WHERE b.bucket_start_ns >= $1 AND b.bucket_start_ns < $2
                     GROUP BY b.bucket_start_ns / {period_ns}, g.gpu_id, n.node_id
                     ORDER BY 1, n.cluster, n.name, g.uuid",
                    split("b.observed_ns"),
                    split("b.held_ns"),
                    split("b.used_ns")
                );
                for r in conn.rows(&sql, sql_params![from_ns as i64, to_ns as i64])? {
                    let r = &r;
                    let p: i64 = r.get(0)?;
                    at.insert((p, r.get(1)?, r.get(2)?), origins.len());
                    let start = p as u64 * period_ns;
                    origins.push(OriginCharge {
                        start_ns: start.max(from_ns),
                        end_ns: (start + period_ns).min(to_ns),
                        cluster: r.get(3)?,
                        node: r.get(4)?,
                        instance_type: r.get(5)?,
                        capacity_type: r.get(6)?,
                        region: r.get(7)?,
                        zone: r.get(8)?,
                        gpu_uuid: r.get(9)?,
                        gpu_model: r.get(10)?,
                        mig_profile: r.get(11)?,
                        cost: amount(r, 12)?,
                        observed_ns: sum_ns(r.get(13)?, r.get(14)?),
                        held_ns: sum_ns(r.get(15)?, r.get(16)?),
                        used_ns: sum_ns(r.get(17)?, r.get(18)?),
                        energy_mj: amount(r, 19)?,
                        allocations: vec![],
                    });
                }
            }
            let (used_col, idle_col) = match policy {
                Policy::Utilization => ("b.used_micros", "0"),
                Policy::Hybrid => ("b.used_micros", "b.hybrid_idle_micros"),
                Policy::Allocation => ("b.allocation_used_micros", "b.allocation_idle_micros"),
            };
            let dims = [
                Dimension::Workload,
                Dimension::Kind,
                Dimension::Namespace,
                Dimension::Pod,
                Dimension::Owner,
                Dimension::Team,
                Dimension::Department,
                Dimension::Model,
                Dimension::ModelVersion,
            ];
            let d = DimSql::new(&dims.iter().collect::<Vec<_>>());
            let k = d.params.len();
            let sql = format!(
                "SELECT b.bucket_start_ns / {period_ns}, g.gpu_id, n.node_id, {}, SUM({used_col}) + SUM({idle_col}), {}, {}
                 FROM {usage_rows} b
                 JOIN gpus g ON g.gpu_id = b.gpu_id JOIN nodes n ON n.node_id = b.node_id JOIN workloads w ON w.workload_id = b.workload_id{}
                 WHERE b.bucket_start_ns >= ${} AND b.bucket_start_ns < ${}
                 GROUP BY b.bucket_start_ns / {period_ns}, g.gpu_id, n.node_id, {}
                 ORDER BY 1, 2, 3, 4",
                d.exprs.join(", "),
                split("b.held_ns"),
                split("b.used_ns"),
                d.joins,
                k + 1,
                k + 2,
                d.exprs.join(", ")
            );
            let mut bound: Vec<Value> = d.params.iter().map(|p| Value::Text(p.clone())).collect();
            bound.push(Value::Int(from_ns as i64));
            bound.push(Value::Int(to_ns as i64));
            for r in conn.rows(&sql, &bind(&bound))? {
                let r = &r;
                let key = (r.get::<i64>(0)?, r.get::<i64>(1)?, r.get::<i64>(2)?);
                let Some(&i) = at.get(&key) else { continue };
                let n = dims.len() + 3;
                origins[i].allocations.push(AllocatedCharge {
                    workload: r.get(3)?,
                    kind: r.get(4)?,
                    namespace: r.get(5)?,
                    pod: r.get(6)?,
                    owner: r.get(7)?,
                    team: r.get(8)?,
                    department: r.get(9)?,
                    model: r.get(10)?,
                    model_version: r.get(11)?,
                    cost: amount(r, n)?,
                    held_ns: sum_ns(r.get(n + 1)?, r.get(n + 2)?),
                    used_ns: sum_ns(r.get(n + 3)?, r.get(n + 4)?),
                });
            }
            Ok(origins)
        })
    }

    fn close_period(&self, period: &crate::report::period::Period, now_ns: u64) -> Result<ClosedPeriod, LedgerError> {
        self.close(period, now_ns)
    }

    fn closed_periods(&self) -> Result<Vec<ClosedPeriod>, LedgerError> {
        self.closed()
    }

    fn prices(&self) -> Result<Vec<NodePrice>, LedgerError> {
        self.with_reader(|conn| {
            let rows = conn.all(
                "SELECT n.cluster, n.name, n.instance_type, n.capacity_type, n.region, p.effective_from_ns, p.instance_micros_per_hour, p.gpus, p.source
                 FROM node_prices p JOIN nodes n ON n.node_id = p.node_id
                 WHERE p.effective_from_ns = (SELECT MAX(q.effective_from_ns) FROM node_prices q WHERE q.node_id = p.node_id)
                 ORDER BY n.cluster, n.name",
                sql_params![],
                |r| {
                    Ok(NodePrice {
                        cluster: r.get(0)?,
                        node: r.get(1)?,
                        instance_type: r.get(2)?,
                        capacity_type: r.get(3)?,
                        region: r.get(4)?,
                        effective_from_ns: r.get::<i64>(5)? as u64,
                        instance_micros_per_hour: r.get::<Option<i64>>(6)?.map(|v| v as u64),
                        gpus: r.get(7)?,
                        source: r.get(8)?,
                    })
                },
            )?;
            Ok(rows)
        })
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
        tx.exclusive(closing::HISTORY_LOCK, 0)?;
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

    fn price_check(
        &self,
        from_ns: u64,
        to_ns: u64,
        filters: &[(Dimension, String)],
    ) -> Result<Vec<crate::cost::reconcile::NodeCheck>, LedgerError> {
        self.check_prices(from_ns, to_ns, filters)
    }

    fn price_subjects(&self) -> Result<crate::cost::book::Subjects, LedgerError> {
        self.subjects()
    }

    fn prune_raw(&self, before_ns: u64) -> Result<u64, LedgerError> {
        let guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let a = guard.conn.run("DELETE FROM gpu_intervals WHERE end_ns < $1", sql_params![before_ns as i64])?;
        let b = guard.conn.run("DELETE FROM process_intervals WHERE end_ns < $1", sql_params![before_ns as i64])?;
        Ok((a + b) as u64)
    }

    fn bucket_ns(&self) -> u64 {
        self.bucket_ns
    }

    fn ping(&self) -> Result<(), LedgerError> {
        self.with_reader(|c| Ok(c.one("SELECT 1", sql_params![], |r| r.get::<i64>(0)).map(|_| ())?))
    }

    fn lead(&self, job: &str) -> bool {
        self.engine.lead(job)
    }

    fn build_daily_rollups(&self, now_ns: u64, max_days: usize) -> Result<usize, LedgerError> {
        self.build_days(now_ns, max_days)
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

    fn data_buckets(&self, source: &Rows, from_ns: u64, to_ns: u64) -> Result<Vec<u64>, LedgerError> {
        self.with_reader(|c| {
            Ok(c.all(
                &format!(
                    "SELECT DISTINCT b.bucket_start_ns FROM {} b
                     WHERE b.bucket_start_ns >= $1 AND b.bucket_start_ns < $2 AND b.observed_ns > 0 ORDER BY 1",
                    source.gpu()
                ),
                sql_params![from_ns as i64, to_ns as i64],
                |r| Ok(r.get::<i64>(0)? as u64),
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
        use crate::ledger::sql::Db;
        use crate::ledger::{Ledger, LedgerError, Recorded};
        const NS: u64 = 1_000_000_000;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = super::open(&path).unwrap();
            crate::ledger::sql::migrate(&conn, &super::MIGRATIONS[..14], str::to_string).unwrap();
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
        use crate::ledger::Ledger;
        use crate::ledger::sqlite::SqliteLedger;
        use crate::model::Batch;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(12))]
            #[test]
            fn arrival_order_and_resends_change_nothing(
                counts in prop::collection::vec(1u64..12, 1..4),
                shares in prop::collection::vec(0u32..=1_000_000, 1..6),
                picks in prop::collection::vec(any::<prop::sample::Index>(), 0..200),
                resends in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
            ) {
                let per_node: Vec<Vec<Batch>> = counts.iter().enumerate().map(|(n, &c)| node_batches(n, c, &shares)).collect();
                let in_order: Vec<Batch> = per_node.iter().flatten().cloned().collect();
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
