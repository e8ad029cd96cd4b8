//! The embedded engine: one SQLite file in WAL mode, held by one serving collector at a time.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::{Engine, SqlLedger, check_bucket};
use crate::sql::Db;
use crate::{LedgerError, sql_params};

/// The embedded SQLite file.
pub struct SqliteEngine {
    pub(super) path: PathBuf,
    /// `serve`'s exclusive hold on `<db>.lock` (see [`SqlLedger::open_serving`]), released when the ledger drops
    /// or the process ends, however it ends.
    pub(super) _serving: Option<std::fs::File>,
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

/// The embedded default.
pub type SqliteLedger = SqlLedger<SqliteEngine>;

pub(super) fn open(path: &Path) -> Result<Connection, LedgerError> {
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
pub(super) fn migrate_sqlite(conn: &Connection) -> Result<(), LedgerError> {
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    let migrated = crate::sql::migrate(conn, crate::migrations::MIGRATIONS, str::to_string);
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
pub(super) fn serving_lock(db: &Path) -> Result<std::fs::File, LedgerError> {
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
