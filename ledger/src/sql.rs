//! The ledger's SQL, engine-neutral: statements and their parameters are written once and run on an
//! embedded SQLite or (issue 10) a PostgreSQL database through [`Db`].
//!
//! The dialect both engines accept: `$1 … $n` parameters numbered in order of first appearance (SQLite
//! numbers them that way whatever their digits), `INSERT … ON CONFLICT … DO UPDATE … RETURNING`, `CAST(SUM(…)
//! AS BIGINT)` (PostgreSQL sums BIGINT into NUMERIC), `CASE` instead of two-argument `MAX`/`GREATEST`, and
//! every integer column and parameter 64-bit.

use std::fmt;

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "postgres")]
pub mod rds_iam;

/// A parameter or a column's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

#[derive(Debug)]
pub struct DbError(pub String);

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DbError {}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError(e.to_string())
    }
}

/// A parameter as bound: text borrowed from the caller, never copied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Param<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
}

/// Parameters built at run time, as a statement takes them.
pub fn bind(values: &[Value]) -> Vec<&dyn ToValue> {
    values.iter().map(|v| v as &dyn ToValue).collect()
}

/// What can be bound as a parameter.
pub trait ToValue {
    fn to_param(&self) -> Param<'_>;
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_param(&self) -> Param<'_> {
                Param::Int(*self as i64)
            }
        }
    )*};
}
int_value!(i64, i32, u32, u8, usize);

impl ToValue for bool {
    fn to_param(&self) -> Param<'_> {
        Param::Int(i64::from(*self))
    }
}

impl ToValue for f64 {
    fn to_param(&self) -> Param<'_> {
        Param::Real(*self)
    }
}

impl ToValue for str {
    fn to_param(&self) -> Param<'_> {
        Param::Text(self)
    }
}

impl ToValue for String {
    fn to_param(&self) -> Param<'_> {
        Param::Text(self)
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_param(&self) -> Param<'_> {
        (**self).to_param()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_param(&self) -> Param<'_> {
        self.as_ref().map_or(Param::Null, ToValue::to_param)
    }
}

impl ToValue for Value {
    fn to_param(&self) -> Param<'_> {
        match self {
            Value::Null => Param::Null,
            Value::Int(i) => Param::Int(*i),
            Value::Real(f) => Param::Real(*f),
            Value::Text(s) => Param::Text(s),
        }
    }
}

/// `sql_params![a, b, c]`: the parameters of a statement, in order.
#[macro_export]
macro_rules! sql_params {
    () => { &[] as &[&dyn $crate::sql::ToValue] };
    ($($x:expr),+ $(,)?) => { &[$(&$x as &dyn $crate::sql::ToValue),+] as &[&dyn $crate::sql::ToValue] };
}

/// What a column can be read as.
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Result<Self, DbError>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Result<Self, DbError> {
        match v {
            Value::Int(i) => Ok(*i),
            Value::Real(f) if f.fract() == 0.0 => Ok(*f as i64),
            other => Err(DbError(format!("expected an integer, found {other:?}"))),
        }
    }
}

impl FromValue for u32 {
    fn from_value(v: &Value) -> Result<Self, DbError> {
        let i = i64::from_value(v)?;
        u32::try_from(i).map_err(|_| DbError(format!("{i} does not fit in u32")))
    }
}

impl FromValue for u64 {
    fn from_value(v: &Value) -> Result<Self, DbError> {
        let i = i64::from_value(v)?;
        u64::try_from(i).map_err(|_| DbError(format!("{i} is negative")))
    }
}

impl FromValue for f64 {
    fn from_value(v: &Value) -> Result<Self, DbError> {
        match v {
            Value::Real(f) => Ok(*f),
            Value::Int(i) => Ok(*i as f64),
            other => Err(DbError(format!("expected a number, found {other:?}"))),
        }
    }
}

impl FromValue for String {
    fn from_value(v: &Value) -> Result<Self, DbError> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            other => Err(DbError(format!("expected text, found {other:?}"))),
        }
    }
}

impl FromValue for bool {
    fn from_value(v: &Value) -> Result<Self, DbError> {
        Ok(i64::from_value(v)? != 0)
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Result<Self, DbError> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// One result row.
pub struct Row(pub Vec<Value>);

impl Row {
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T, DbError> {
        let v = self.0.get(i).ok_or_else(|| DbError(format!("no column {i} in a row of {}", self.0.len())))?;
        T::from_value(v).map_err(|e| DbError(format!("column {i}: {e}")))
    }
}

/// A connection (or a transaction or savepoint on one) that runs the ledger's SQL.
pub trait Db {
    /// Runs a statement; the rows it changed.
    fn run(&self, sql: &str, params: &[&dyn ToValue]) -> Result<usize, DbError>;
    /// Every row a query returns.
    fn rows(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Vec<Row>, DbError>;
    /// Statements separated by `;`, without parameters (migrations).
    fn script(&self, sql: &str) -> Result<(), DbError>;

    /// Whether this connection's process is the database's only writer (an embedded file): then a writer
    /// may trust what it remembers of the tables. A shared database says no.
    fn single_writer(&self) -> bool {
        true
    }

    /// Holds `(space, key)` exclusively until the transaction ends, so that writers sharing the database
    /// check and extend the same coverage one at a time. Nothing to do for a single writer.
    fn exclusive(&self, _space: i32, _key: i64) -> Result<(), DbError> {
        Ok(())
    }

    /// [`exclusive`](Db::exclusive) for several keys, taken in ascending order (so that two writers never
    /// wait on each other crosswise).
    fn exclusive_many(&self, space: i32, keys: &[i64]) -> Result<(), DbError> {
        let mut sorted = keys.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        sorted.into_iter().try_for_each(|k| self.exclusive(space, k))
    }

    /// The first row, or `None`.
    fn opt<T>(
        &self,
        sql: &str,
        params: &[&dyn ToValue],
        f: impl FnOnce(&Row) -> Result<T, DbError>,
    ) -> Result<Option<T>, DbError> {
        self.rows(sql, params)?.first().map(f).transpose()
    }

    /// The first row; an error when there is none.
    fn one<T>(
        &self,
        sql: &str,
        params: &[&dyn ToValue],
        f: impl FnOnce(&Row) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        self.opt(sql, params, f)?.ok_or_else(|| DbError(format!("the query returned no row: {}", first_line(sql))))
    }

    /// Every row, each through `f`.
    fn all<T>(
        &self,
        sql: &str,
        params: &[&dyn ToValue],
        f: impl FnMut(&Row) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError> {
        self.rows(sql, params)?.iter().map(f).collect()
    }
}

/// Applies the `migrations` not applied yet, in order, each in its own transaction with its version row
/// (`translate` adapts a migration to the engine); how many it applied.
pub fn migrate(db: &impl Db, migrations: &[&str], translate: impl Fn(&str) -> String) -> Result<usize, DbError> {
    db.script(&translate(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at_ns INTEGER NOT NULL)",
    ))?;
    let applied: i64 = db.one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[], |r| r.get(0))?;
    let mut n = 0;
    for (i, sql) in migrations.iter().enumerate().skip(applied as usize) {
        let version = i + 1;
        let body = format!(
            "BEGIN;\n{}\nINSERT INTO schema_migrations (version, applied_at_ns) VALUES ({version}, {});\nCOMMIT;",
            translate(sql),
            gpucost_types::clock::now_ns()
        );
        if let Err(e) = db.script(&body) {
            let _ = db.script("ROLLBACK");
            return Err(DbError(format!("ledger migration {version}: {e}")));
        }
        tracing::info!(version, "applied ledger migration");
        n += 1;
    }
    Ok(n)
}

/// A transaction on a connection, rolled back when dropped before `commit`.
pub struct Tx<'a, C: Db> {
    conn: &'a C,
    open: bool,
}

impl<'a, C: Db> Tx<'a, C> {
    /// Begins one with `begin` (`BEGIN`, or SQLite's `BEGIN IMMEDIATE` for a writer).
    pub fn begin(conn: &'a C, begin: &str) -> Result<Self, DbError> {
        conn.script(begin)?;
        Ok(Self { conn, open: true })
    }

    pub fn commit(mut self) -> Result<(), DbError> {
        self.open = false;
        let done = self.conn.script("COMMIT");
        if done.is_err() {
            let _ = self.conn.script("ROLLBACK");
        }
        done
    }

    /// A savepoint inside: its statements undone alone when it is dropped before `release`.
    pub fn savepoint(&self) -> Result<Savepoint<'_, C>, DbError> {
        self.conn.script("SAVEPOINT batch")?;
        Ok(Savepoint { conn: self.conn, open: true })
    }
}

impl<C: Db> std::ops::Deref for Tx<'_, C> {
    type Target = C;
    fn deref(&self) -> &C {
        self.conn
    }
}

impl<C: Db> Drop for Tx<'_, C> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.script("ROLLBACK");
        }
    }
}

pub struct Savepoint<'a, C: Db> {
    conn: &'a C,
    open: bool,
}

impl<C: Db> Savepoint<'_, C> {
    pub fn release(mut self) -> Result<(), DbError> {
        self.open = false;
        self.conn.script("RELEASE SAVEPOINT batch")
    }
}

impl<C: Db> std::ops::Deref for Savepoint<'_, C> {
    type Target = C;
    fn deref(&self) -> &C {
        self.conn
    }
}

impl<C: Db> Drop for Savepoint<'_, C> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.script("ROLLBACK TO SAVEPOINT batch; RELEASE SAVEPOINT batch");
        }
    }
}

fn first_line(sql: &str) -> &str {
    sql.trim().lines().next().unwrap_or("")
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self {
            Param::Null => ValueRef::Null,
            Param::Int(i) => ValueRef::Integer(i),
            Param::Real(f) => ValueRef::Real(f),
            Param::Text(t) => ValueRef::Text(t.as_bytes()),
        }))
    }
}

fn from_sqlite(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) | ValueRef::Blob(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
    }
}

impl Db for rusqlite::Connection {
    fn run(&self, sql: &str, params: &[&dyn ToValue]) -> Result<usize, DbError> {
        let values = params.iter().map(|p| p.to_param());
        Ok(self.prepare_cached(sql)?.execute(rusqlite::params_from_iter(values))?)
    }

    fn rows(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Vec<Row>, DbError> {
        let values = params.iter().map(|p| p.to_param());
        let mut stmt = self.prepare_cached(sql)?;
        let n = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(values))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(Row((0..n).map(|i| r.get_ref(i).map(from_sqlite)).collect::<Result<_, _>>()?));
        }
        Ok(out)
    }

    fn script(&self, sql: &str) -> Result<(), DbError> {
        Ok(self.execute_batch(sql)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_sqlite_and_errors_name_the_column() {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.script("CREATE TABLE t (a BIGINT, b TEXT, c REAL, d BIGINT)").unwrap();
        let none: Option<i64> = None;
        assert_eq!(
            db.run("INSERT INTO t (a, b, c, d) VALUES ($1, $2, $3, $4)", sql_params![7i64, "x", 1.5f64, none]).unwrap(),
            1
        );
        let (a, b, c, d): (i64, String, f64, Option<i64>) = db
            .one("SELECT a, b, c, d FROM t", sql_params![], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap();
        assert_eq!((a, b.as_str(), c, d), (7, "x", 1.5, None));
        assert!(db.opt("SELECT a FROM t WHERE a = $1", sql_params![8i64], |r| r.get::<i64>(0)).unwrap().is_none());
        let e = db.one("SELECT b FROM t", sql_params![], |r| r.get::<i64>(0)).unwrap_err();
        assert!(e.to_string().contains("column 0"), "{e}");
        assert!(db.one("SELECT a FROM t WHERE a = 0", sql_params![], |r| r.get::<i64>(0)).is_err());
    }
}
