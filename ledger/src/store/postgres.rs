//! The shared engine: a PostgreSQL database several collectors write, leaders elected by advisory locks.

use std::sync::Mutex;

use super::record::fnv1a;
use super::{Engine, SqlLedger, check_bucket};
use crate::sql::Db;
use crate::{LedgerError, sql_params};

/// The ledger on PostgreSQL (issue 10): the same statements over `postgres`.
pub struct PgEngine {
    pub(super) url: String,
    /// The session that holds the leadership locks: they live as long as it does, so a collector that dies
    /// (or loses its database connection) hands its jobs over.
    pub(super) leader: Mutex<Option<crate::sql::postgres::PgDb>>,
}

impl Engine for PgEngine {
    type Conn = crate::sql::postgres::PgDb;

    fn connect(&self) -> Result<Self::Conn, LedgerError> {
        Ok(crate::sql::postgres::PgDb::connect(&self.url)?)
    }

    fn begin(&self) -> &'static str {
        "BEGIN"
    }

    fn lead(&self, job: &str) -> bool {
        let mut session = self.leader.lock().unwrap_or_else(|e| e.into_inner());
        if session.is_none() {
            match crate::sql::postgres::PgDb::connect(&self.url) {
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

impl SqlLedger<PgEngine> {
    /// Connects to the PostgreSQL ledger at `url`, applying pending migrations.
    pub fn open_postgres(url: &str, bucket_ns: u64, raw_retention_ns: u64) -> Result<Self, LedgerError> {
        let conn = crate::sql::postgres::PgDb::connect(url)?;
        crate::sql::postgres::migrate(&conn)?;
        check_bucket(&conn, bucket_ns)?;
        Ok(Self::new(PgEngine { url: url.to_string(), leader: Mutex::new(None) }, conn, bucket_ns, raw_retention_ns))
    }

    /// Connects to an existing PostgreSQL ledger with the bucket length it was made with (for one-off commands:
    /// a database no collector has served is refused, not turned into an empty ledger).
    pub fn open_postgres_existing(url: &str, raw_retention_ns: u64) -> Result<Self, LedgerError> {
        let conn = crate::sql::postgres::PgDb::connect(url)?;
        let redacted = crate::sql::postgres::redact(url);
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
