//! The ledger's SQL on a real PostgreSQL (issue 10, first part): the SQLite migrations, translated, build the
//! same schema there; the engine-neutral statements bind and read back the same values on both engines.
//! The server is started by the test (initdb on a temporary folder, 127.0.0.1, a free port).

use std::collections::BTreeMap;

use gpucost_collector::ledger::sql::postgres::{self, PgDb};
use gpucost_collector::ledger::sql::{Db, DbError};
use gpucost_collector::ledger::sqlite::SqliteLedger;
use gpucost_collector::sql_params;
use gpucost_e2e::postgres::Postgres;

/// Table → its columns, in order.
type Schema = BTreeMap<String, Vec<String>>;

fn sqlite_schema(path: &std::path::Path) -> Schema {
    let conn = rusqlite::Connection::open(path).unwrap();
    let tables: Vec<String> = conn
        .all(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
            sql_params![],
            |r| r.get(0),
        )
        .unwrap();
    tables
        .into_iter()
        .map(|t| {
            let cols = conn
                .all(&format!("SELECT name FROM pragma_table_info('{t}') ORDER BY cid"), sql_params![], |r| r.get(0))
                .unwrap();
            (t, cols)
        })
        .collect()
}

fn pg_schema(db: &PgDb) -> Schema {
    let rows: Vec<(String, String)> = db
        .all(
            "SELECT table_name::text, column_name::text FROM information_schema.columns WHERE table_schema = 'public'
             ORDER BY table_name, ordinal_position",
            sql_params![],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let mut s = Schema::new();
    for (t, c) in rows {
        s.entry(t).or_default().push(c);
    }
    s
}

#[test]
fn the_ledgers_migrations_build_the_same_schema_on_postgresql_and_run_once() {
    let Some(pg) = Postgres::start() else { return };
    let db = PgDb::connect(&pg.url()).expect("connect");
    let applied = postgres::migrate(&db).expect("migrations on PostgreSQL");
    let versions = gpucost_collector::ledger::sqlite::MIGRATIONS.len();
    assert_eq!(applied, versions, "every migration applied once");
    assert_eq!(postgres::migrate(&db).expect("again"), 0, "a second start applies nothing");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    SqliteLedger::open(&path, 3_600_000_000_000, 7 * 86_400_000_000_000).expect("SQLite ledger");
    let (lite, post) = (sqlite_schema(&path), pg_schema(&db));
    assert!(lite.len() > 15, "{lite:?}");
    assert_eq!(lite.keys().collect::<Vec<_>>(), post.keys().collect::<Vec<_>>(), "the same tables");
    for (t, cols) in &lite {
        assert_eq!(Some(cols), post.get(t), "columns of {t}");
    }
}

#[test]
fn statements_bind_and_read_the_same_values_on_postgresql_and_sqlite() {
    let Some(pg) = Postgres::start() else { return };
    let pgdb = PgDb::connect(&pg.url()).expect("connect");
    postgres::migrate(&pgdb).expect("migrate");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    SqliteLedger::open(&path, 3_600_000_000_000, 7 * 86_400_000_000_000).expect("SQLite ledger");
    let lite = rusqlite::Connection::open(&path).unwrap();

    fn exercise(db: &impl Db) -> Result<Vec<String>, DbError> {
        let node: i64 = db.one(
            "INSERT INTO nodes (cluster, name, instance_type, capacity_type, region, zone, labels_json) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (cluster, name) DO UPDATE SET instance_type = excluded.instance_type RETURNING node_id",
            sql_params!["c1", "n1", "g5.xlarge", "spot", "us-east-1", "us-east-1a", "{}"],
            |r| r.get(0),
        )?;
        let none: Option<String> = None;
        let gpu: i64 = db.one(
            "INSERT INTO gpus (uuid, node_id, model, memory_total_bytes, mig_parent_uuid, mig_profile) VALUES ($1, $2, $3, $4, $5, $6)
             RETURNING gpu_id",
            sql_params!["GPU-1", node, "NVIDIA A10G", 24i64 << 30, none, none],
            |r| r.get(0),
        )?;
        // Nanoseconds past i32, and a month of a big fleet past i64 when summed whole: the ledger sums seconds
        // and remainders apart.
        for (bucket, held) in [(0i64, 3_599_999_999_999i64), (3_600_000_000_000, 3_600_000_000_000)] {
            db.run(
                "INSERT INTO gpu_buckets (bucket_start_ns, gpu_id, node_id, observed_ns, held_ns, used_ns, energy_millijoules, cost_micros)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                sql_params![bucket, gpu, node, held, held, held / 3, 1_000i64, 1_006_000i64],
            )?;
        }
        let sums = db.one(
            "SELECT SUM(held_ns / 1000000000), SUM(held_ns % 1000000000), SUM(cost_micros), COUNT(*), MAX(bucket_start_ns)
             FROM gpu_buckets WHERE node_id = $1",
            sql_params![node],
            |r| Ok(format!("{:?}", (r.get::<i64>(0)?, r.get::<i64>(1)?, r.get::<i64>(2)?, r.get::<i64>(3)?, r.get::<i64>(4)?))),
        )?;
        let empty = db.one("SELECT SUM(held_ns) FROM gpu_buckets WHERE node_id = $1", sql_params![node + 1], |r| {
            Ok(format!("{:?}", r.get::<Option<i64>>(0)?))
        })?;
        let text = db.one("SELECT CAST(bucket_start_ns / 86400000000000 AS TEXT), mig_profile FROM gpu_buckets b JOIN gpus g ON g.gpu_id = b.gpu_id ORDER BY bucket_start_ns LIMIT 1", sql_params![], |r| {
            Ok(format!("{:?}", (r.get::<String>(0)?, r.get::<Option<String>>(1)?)))
        })?;
        let missing = db.opt("SELECT node_id FROM nodes WHERE name = $1", sql_params!["nope"], |r| r.get::<i64>(0))?;
        let upserted = db.run(
            "INSERT INTO agent_boots (agent_id, boot_id, last_seq, first_seen_ns, last_seen_ns) VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (agent_id, boot_id) DO UPDATE SET last_seq = CASE WHEN agent_boots.last_seq > excluded.last_seq
               THEN agent_boots.last_seq ELSE excluded.last_seq END, last_seen_ns = excluded.last_seen_ns",
            sql_params!["a", "b", 7i64, 1i64],
        )?;
        Ok(vec![sums, empty, text, format!("{missing:?}"), upserted.to_string()])
    }
    let on_sqlite = exercise(&lite).expect("SQLite");
    let on_postgres = exercise(&pgdb).expect("PostgreSQL");
    assert_eq!(on_sqlite, on_postgres);
    assert_eq!(on_sqlite[0], "(7199, 999999999, 2012000, 2, 3600000000000)");
    // An error names the engine's complaint.
    let e = pgdb.run("INSERT INTO gpus (uuid) VALUES ($1)", sql_params!["GPU-2"]).unwrap_err();
    assert!(e.to_string().contains("23502") || e.to_string().contains("null value"), "{e}");
}

#[test]
fn a_wrong_password_is_a_clear_error_without_the_password() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.url().replace("gpucost:gpucost@", "gpucost:not-the-password@");
    let e = PgDb::connect(&url).err().expect("refused");
    let text = e.to_string();
    assert!(text.contains("cannot connect to PostgreSQL at postgres://gpucost:***@127.0.0.1"), "{text}");
    assert!(!text.contains("not-the-password"), "{text}");
}
