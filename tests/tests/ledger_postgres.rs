//! The ledger's SQL on a real PostgreSQL (issue 10, first part): the SQLite migrations, translated, build the
//! same schema there; the engine-neutral statements bind and read back the same values on both engines.
//! The server is started by the test (initdb on a temporary folder, 127.0.0.1, a free port).

use gpucost_collector::ingest::stages;
use gpucost_ledger::prelude::*;
use std::collections::BTreeMap;

use gpucost_e2e::postgres::Postgres;
use gpucost_ledger::SqliteLedger;
use gpucost_ledger::sql::postgres::{self, PgDb};
use gpucost_ledger::sql::{Db, DbError};
use gpucost_ledger::sql_params;

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
    let versions = gpucost_ledger::migrations::MIGRATIONS.len();
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
            "INSERT INTO gpus (cluster, uuid, node_id, model, memory_total_bytes, mig_parent_uuid, mig_profile) VALUES ($1, $2, $3, $4, $5, $6, $7)
             RETURNING gpu_id",
            sql_params!["c1", "GPU-1", node, "NVIDIA A10G", 24i64 << 30, none, none],
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
            "INSERT INTO agent_boots (cluster, agent_id, boot_id, last_seq, first_seen_ns, last_seen_ns) VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (cluster, agent_id, boot_id) DO UPDATE SET last_seq = CASE WHEN agent_boots.last_seq > excluded.last_seq
               THEN agent_boots.last_seq ELSE excluded.last_seq END, last_seen_ns = excluded.last_seen_ns",
            sql_params!["c1", "a", "b", 7i64, 1i64],
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

const HOUR: u64 = 3_600_000_000_000;
const NS: u64 = 1_000_000_000;

/// An hour of three simulated nodes, one-minute intervals, validated and priced as the ingest does.
fn priced_batches() -> Vec<gpucost_types::stage::Attributed> {
    use gpucost_agent::sampler::{Clock, Sampler};
    use gpucost_agent::sim::{Fleet, FleetSpec, SimSource};
    use gpucost_agent::wire::Framer;
    use gpucost_collector::ingest::validate::{Limits, validate};
    use gpucost_rules::book::PriceBook;
    let start = 1_793_577_600 * NS; // 2026-11-02T00:00:00Z
    let book = PriceBook::catalogue_only();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut out = Vec::new();
    for node in Fleet::generate(FleetSpec { seed: 5, clusters: 1, nodes: 3 }).nodes {
        let agent = node.agent_id.clone();
        let wire = rt.block_on(async {
            let mut s = Sampler::new(
                Box::new(SimSource::new(node, 60 * NS)),
                None,
                std::time::Duration::from_secs(15),
                std::time::Duration::from_secs(60),
                Clock::Virtual { start_unix_nanos: start, pace: std::time::Duration::ZERO },
            );
            let mut f = Framer::new(agent, "boot-1".into());
            let mut v = Vec::new();
            for _ in 0..60 {
                let r = s.next_interval().await.unwrap();
                v.push(f.frame(s.source().node(), r));
            }
            v
        });
        for w in wire {
            let b = validate(&w, start + 2 * HOUR, &Limits::default()).expect("valid");
            out.push(stages::attribute(None, None, stages::price(&book, None, stages::hold(b))));
        }
    }
    out
}

#[test]
fn the_ledger_on_postgresql_stores_and_answers_exactly_as_on_sqlite() {
    use gpucost_ledger::SqlLedger;
    use gpucost_ledger::{CostQuery, Dimension, UsageQuery};
    use gpucost_types::policy::Policy;
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let lite = SqliteLedger::open(&dir.path().join("l.db"), HOUR, 7 * 24 * HOUR).unwrap();
    let post = SqlLedger::open_postgres(&pg.url(), HOUR, 7 * 24 * HOUR).expect("PostgreSQL ledger");
    let batches = priced_batches();
    let now = 1_793_577_600 * NS + 2 * HOUR;
    let outcome = |l: &dyn Ledger, b: &[gpucost_types::stage::Attributed]| -> Vec<String> {
        l.record(b, now).expect("record").into_iter().map(|r| format!("{r:?}")).collect()
    };
    for chunk in batches.chunks(25) {
        assert_eq!(outcome(&lite, chunk), outcome(&post, chunk));
    }
    // A resend is a duplicate on both, and an overlap refused on both.
    let again = outcome(&post, &batches[10..20]);
    assert!(again.iter().all(|o| o == "Ok(Duplicate)"), "{again:?}");
    assert_eq!(outcome(&lite, &batches[10..20]), again);
    let mut overlapping = batches[5].clone();
    overlapping.boot_id = "boot-2".into();
    let (a, b) =
        (outcome(&lite, std::slice::from_ref(&overlapping)), outcome(&post, std::slice::from_ref(&overlapping)));
    assert!(a[0].starts_with("Err(Overlap"), "{a:?}");
    assert_eq!(a, b);

    let (from_ns, to_ns) = (1_793_577_600 * NS, 1_793_577_600 * NS + HOUR);
    for group_by in [
        vec![],
        vec![Dimension::Gpu],
        vec![Dimension::Gpu, Dimension::Workload],
        vec![Dimension::Namespace, Dimension::Team],
    ] {
        let q = UsageQuery { from_ns, to_ns, group_by: group_by.clone() };
        let (x, y) = (lite.usage(&q).unwrap(), post.usage(&q).unwrap());
        assert!(!x.rows.is_empty() || group_by.is_empty(), "{group_by:?}");
        assert_eq!(x, y, "usage by {group_by:?}");
    }
    for policy in [Policy::Utilization, Policy::Hybrid, Policy::Allocation] {
        let q = CostQuery { from_ns, to_ns, group_by: vec![Dimension::Namespace], filters: vec![], policy };
        let (x, y) = (lite.costs(&q).unwrap(), post.costs(&q).unwrap());
        assert!(x.fleet > 0, "priced");
        assert_eq!(x, y, "costs under {policy:?}");
    }
    assert_eq!(lite.prices().unwrap(), post.prices().unwrap());
    let total = lite.usage(&UsageQuery { from_ns, to_ns, group_by: vec![] }).unwrap().totals;
    assert_eq!(total.observed_ns, Some(u128::from(16 * HOUR)), "16 GPUs observed for the hour");
}

/// A simulated node replaying `slots` minutes from 2026-11-02, keeping its unacked batches in `spool`.
fn sim_agent(
    url: &str,
    node: u32,
    slots: u64,
    pace: &str,
    spool: &std::path::Path,
    log: &std::path::Path,
) -> gpucost_e2e::Agent {
    let start = 1_793_577_600u64;
    let t = |s: u64| humantime::format_rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s)).to_string();
    let args: Vec<String> = [
        "--source",
        "sim",
        "--collector",
        url,
        "--sim-seed",
        "5",
        "--sim-nodes",
        "3",
        "--sim-clusters",
        "1",
        "--sim-node",
        &node.to_string(),
        "--sim-start",
        &t(start),
        "--sim-end",
        &t(start + slots * 60),
        "--sim-pace",
        pace,
        "--report-interval",
        "60s",
        "--sample-interval",
        "15s",
        "--spool-dir",
        &spool.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    gpucost_e2e::agent(&args, log)
}

#[test]
fn two_collectors_on_one_postgresql_one_killed_mid_stream_bill_every_gpu_second_once() {
    use gpucost_e2e::{Collector, free_port};
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let url = pg.url();
    let shared = std::path::Path::new(&url);
    let a = Collector::start_logged(shared, &dir.path().join("a.log"), free_port(), free_port(), &[], &[]);
    let b = Collector::start_logged(shared, &dir.path().join("b.log"), free_port(), free_port(), &[], &[]);
    let slots = 240; // four hours of one-minute intervals
    let spool = |n: u32| dir.path().join(format!("spool{n}"));
    let log = |n: u32, k: u32| dir.path().join(format!("agent{n}-{k}.log"));
    // Nodes 0 and 1 report to collector A, node 2 to B; B is killed mid-stream and node 2's agent (killed
    // too) comes back on A with its spool: what B stored and never acked is resent to A.
    let n0 = sim_agent(&a.grpc_url(), 0, slots, "5ms", &spool(0), &log(0, 0));
    let n1 = sim_agent(&b.grpc_url(), 1, slots, "5ms", &spool(1), &log(1, 0));
    let n2 = sim_agent(&b.grpc_url(), 2, slots, "5ms", &spool(2), &log(2, 0));
    std::thread::sleep(std::time::Duration::from_millis(700));
    let b_log = b.log.clone();
    drop(b); // SIGKILL
    drop(n1);
    drop(n2);
    let n1 = sim_agent(&a.grpc_url(), 1, slots, "5ms", &spool(1), &log(1, 1));
    let n2 = sim_agent(&a.grpc_url(), 2, slots, "5ms", &spool(2), &log(2, 1));
    for agent in [n0, n1, n2] {
        let (ok, text) = agent.wait(std::time::Duration::from_secs(180));
        assert!(ok, "agent failed:\n{text}");
    }
    // B had acked batches before it died: the restarted agents went on from where B's acks left them.
    let resumed = [log(1, 1), log(2, 1)]
        .iter()
        .filter(|p| std::fs::read_to_string(p).unwrap_or_default().contains("going on from where the last run got to"))
        .count();
    assert!(resumed > 0, "collector B should have stored and acked batches before it was killed");
    let b_text = std::fs::read_to_string(&b_log).unwrap_or_default();
    assert!(
        b_text.contains("PostgreSQL") || b_text.contains("collector listening"),
        "B ran on the shared ledger:\n{b_text}"
    );

    // The same fleet through one collector on SQLite.
    let lite = Collector::start(&dir.path().join("lite.db"));
    let runs: Vec<_> = (0..3u32)
        .map(|n| sim_agent(&lite.grpc_url(), n, slots, "0s", &dir.path().join(format!("lite-spool{n}")), &log(n, 9)))
        .collect();
    for agent in runs {
        let (ok, text) = agent.wait(std::time::Duration::from_secs(180));
        assert!(ok, "agent failed:\n{text}");
    }
    let (from, to) = (1_793_577_600u64, 1_793_577_600 + slots * 60);
    let want = {
        use gpucost_agent::sim::{Fleet, FleetSpec, Truth};
        let mut t = Truth::default();
        for node in Fleet::generate(FleetSpec { seed: 5, clusters: 1, nodes: 3 }).nodes {
            let n = node.truth(from * NS, to * NS, 60 * NS);
            t.gpus.extend(n.gpus);
            t.workloads.extend(n.workloads);
        }
        t
    };
    gpucost_e2e::assert_matches_truth(&gpucost_e2e::stored(&a, from, to), &want);
    gpucost_e2e::assert_matches_truth(&gpucost_e2e::stored(&lite, from, to), &want);
    for path in [
        format!("/api/v1/costs?from={from}&to={to}&group_by=namespace"),
        format!("/api/v1/costs?from={from}&to={to}&group_by=team&policy=hybrid"),
        format!("/api/v1/usage?from={from}&to={to}&group_by=cluster,node"),
    ] {
        let (sa, mut on_pg) = a.get(&path);
        let (sl, mut on_lite) = lite.get(&path);
        // Energy comes from counter deltas between samples: an agent restarted mid-interval misses one sample
        // spacing of it (it bills nothing). GPU-seconds and micro-dollars must match exactly.
        for v in [&mut on_pg, &mut on_lite] {
            for row in v["rows"].as_array_mut().into_iter().flatten() {
                if let Some(o) = row.as_object_mut() {
                    o.remove("energy_kwh");
                    o.remove("co2e_kg");
                }
            }
        }
        assert_eq!((sa, sl), (200, 200), "{path}: {on_pg} / {on_lite}");
        assert_eq!(on_pg, on_lite, "{path}: PostgreSQL (two collectors, one killed) vs SQLite (one collector)");
    }
}

#[test]
fn on_a_shared_ledger_one_collector_sends_each_budget_alert_and_leadership_moves_when_it_dies() {
    use gpucost_e2e::{Collector, Receiver, detector_pod, free_port, g5_batch, send_batches};
    use serde_json::json;
    use std::time::{Duration, Instant};
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(0);
    let catalog = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/catalog");
    let args =
        ["--catalog-dir", catalog.to_str().unwrap(), "--budget-eval-interval", "1s", "--alert-webhook", &hook.url()];
    let env = [("GPUCOST_ALERT_WEBHOOK_SECRET", "leader-election-secret-1")];
    let url = pg.url();
    let shared = std::path::Path::new(&url);
    let start = |name: &str| {
        Collector::start_logged(shared, &dir.path().join(format!("{name}.log")), free_port(), free_port(), &args, &env)
    };
    let (a, b) = (start("a"), start("b"));
    let wait_for = |what: &str, mut done: Box<dyn FnMut() -> bool + '_>| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "{what}: not within 30 s");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let leads = |c: &Collector| {
        std::fs::read_to_string(&c.log).unwrap_or_default().contains("\"job\":\"budget-evaluation\"")
            && std::fs::read_to_string(&c.log).unwrap_or_default().contains("now leads the job")
    };
    let logs = |c: &Collector| std::fs::read_to_string(&c.log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(leads(&a) || leads(&b)) {
        assert!(Instant::now() < deadline, "no leader for the budget evaluation:\nA:\n{}\nB:\n{}", logs(&a), logs(&b));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!(leads(&a) && leads(&b)), "one leader at a time");

    // An hour of the vision team's detector, sent through A; a budget it is past 80 % of, set through B.
    let now = gpucost_types::clock::now_ns() / NS * NS;
    let from = now - 3600 * NS;
    assert_eq!(
        send_batches(&a.grpc_url(), vec![g5_batch("n1", 1, from, now, vec![(0, 90.0, detector_pod("detector-0"))])])
            .len(),
        1
    );
    let put = |c: &Collector, amount: &str| {
        let body = json!({ "scope": { "team": "vision" }, "period": "monthly", "amount_usd": amount,
            "thresholds": [{ "type": "actual", "percent": 80 }] });
        ureq::put(&c.http("/api/v1/budgets/vision-gpu"))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .expect("PUT budget")
            .status()
            .as_u16()
    };
    assert_eq!(put(&b, "0.01"), 201);
    let delivered = || hook.requests().iter().filter(|r| r.status == 200).map(|r| r.body.clone()).collect::<Vec<_>>();
    wait_for("the alarm", Box::new(|| delivered().len() == 1));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(delivered().len(), 1, "both collectors see the alarm; one sends it: {:?}", delivered());
    assert!(delivered()[0].contains("\"ALARM\""), "{:?}", delivered());

    // The leader dies; the other takes over and sends the resolution, once.
    let (leader, survivor) = if leads(&a) { (a, b) } else { (b, a) };
    drop(leader); // SIGKILL: its session, and its locks, go with it
    assert_eq!(put(&survivor, "1000000"), 200);
    wait_for("the resolution from the survivor", Box::new(|| delivered().len() == 2));
    assert!(leads(&survivor), "leadership moved to the surviving collector");
    std::thread::sleep(Duration::from_secs(3));
    let all = delivered();
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all[1].contains("\"OK\""), "{all:?}");
}

#[test]
fn migrate_copies_an_sqlite_ledger_into_postgresql_verifies_it_and_refuses_a_second_time() {
    use gpucost_ledger::SqlLedger;
    use gpucost_ledger::{CostQuery, Dimension, UsageQuery};
    use gpucost_types::policy::Policy;
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    let now = 1_793_577_600 * NS + 2 * HOUR;
    {
        let lite = SqliteLedger::open(&path, HOUR, 7 * 24 * HOUR).unwrap();
        lite.record(&priced_batches(), now).unwrap();
    }
    let run = || {
        std::process::Command::new(gpucost_e2e::bin("gpucost-collector"))
            .args(["migrate", "--from"])
            .arg(format!("sqlite://{}", path.display()))
            .args(["--to", &pg.url()])
            .output()
            .expect("run migrate")
    };
    let out = run();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{said}");
    assert!(said.contains("gpu_buckets: ") && said.contains("verified: cost (µ$)"), "{said}");
    assert!(!said.contains("gpucost:gpucost@"), "no password in the output: {said}");
    // Both ledgers answer the same, and the copy takes new batches (identity columns go on).
    let lite = SqliteLedger::open(&path, HOUR, 7 * 24 * HOUR).unwrap();
    let post = SqlLedger::open_postgres(&pg.url(), HOUR, 7 * 24 * HOUR).expect("the copy opens");
    let (from_ns, to_ns) = (1_793_577_600 * NS, 1_793_577_600 * NS + HOUR);
    let q = UsageQuery { from_ns, to_ns, group_by: vec![Dimension::Gpu, Dimension::Workload] };
    assert_eq!(lite.usage(&q).unwrap(), post.usage(&q).unwrap());
    let c = CostQuery { from_ns, to_ns, group_by: vec![Dimension::Team], filters: vec![], policy: Policy::Hybrid };
    assert_eq!(lite.costs(&c).unwrap(), post.costs(&c).unwrap());
    let mut later = priced_batches().into_iter().next().unwrap();
    later.boot_id = "boot-after-migration".into();
    later.seq = 1;
    later.first_seq = 1;
    let (len, start) = (later.end_ns - later.start_ns, later.start_ns + 2 * HOUR);
    later.start_ns = start;
    later.end_ns = start + len;
    let stored = post.record(std::slice::from_ref(&later), now + HOUR).unwrap();
    assert!(matches!(stored[0], Ok(gpucost_ledger::Recorded::Stored)), "{stored:?}");
    // Not twice.
    let again = run();
    let said = String::from_utf8_lossy(&again.stderr).to_string();
    assert!(!again.status.success() && said.contains("is not empty"), "{said}");
}

#[test]
fn a_postgresql_that_takes_only_tls_is_reached_with_sslmode_require_and_its_ca() {
    use gpucost_ledger::SqlLedger;
    let Some(pg) = Postgres::start_tls() else { return };
    let ca = pg.ca.clone().expect("a CA");
    // Over TLS, the server's certificate verified against the test's CA: the ledger opens and stores.
    let url = format!("{}?sslmode=verify-full&sslrootcert={}", pg.url(), ca.display());
    let post = SqlLedger::open_postgres(&url, HOUR, 7 * 24 * HOUR).expect("the ledger over TLS");
    let batches = priced_batches();
    let out = post.record(&batches[..5], 1_793_577_600 * NS + 2 * HOUR).unwrap();
    assert!(out.iter().all(|o| matches!(o, Ok(gpucost_ledger::Recorded::Stored))), "{out:?}");
    // In plain text the server refuses (hostssl only); with TLS but without its CA the certificate is refused.
    let plain = PgDb::connect(&pg.url()).err().expect("plain text refused").to_string();
    assert!(plain.contains("no pg_hba.conf entry") || plain.contains("28000"), "{plain}");
    let untrusted =
        PgDb::connect(&format!("{}?sslmode=require", pg.url())).err().expect("unknown CA refused").to_string();
    assert!(untrusted.to_lowercase().contains("certificate"), "{untrusted}");
    assert!(!untrusted.contains("gpucost:gpucost@"), "{untrusted}");
    let bad = PgDb::connect(&format!("{}?sslmode=sometimes", pg.url())).err().expect("bad sslmode").to_string();
    assert!(bad.contains("sslmode=sometimes is not one of"), "{bad}");
}

/// The ledger's storage suite (`ledger::sqlite::suite`, the SQLite unit tests run the same cases) on
/// PostgreSQL: each case gets databases of its own on one server.
#[test]
fn the_ledgers_storage_suite_passes_on_postgresql() {
    use gpucost_ledger::LedgerError;
    use gpucost_ledger::store::suite::{self, Stores};
    use gpucost_ledger::{PgEngine, SqlLedger};

    struct PgStores<'a> {
        admin: &'a PgDb,
        port: u16,
        case: usize,
    }
    impl Stores for PgStores<'_> {
        type E = PgEngine;
        fn open(&self, name: &str, bucket_ns: u64, retention_ns: u64) -> Result<SqlLedger<PgEngine>, LedgerError> {
            let db = format!("suite_{}_{name}", self.case);
            let exists: i64 = self
                .admin
                .one("SELECT COUNT(*) FROM pg_database WHERE datname = $1", sql_params![db], |r| r.get(0))
                .expect("pg_database");
            if exists == 0 {
                self.admin.run(&format!("CREATE DATABASE {db}"), sql_params![]).expect("CREATE DATABASE");
            }
            SqlLedger::open_postgres(
                &format!("postgres://gpucost:gpucost@127.0.0.1:{}/{db}", self.port),
                bucket_ns,
                retention_ns,
            )
        }
    }

    let Some(pg) = Postgres::start() else { return };
    let admin = PgDb::connect(&format!("postgres://gpucost:gpucost@127.0.0.1:{}/postgres", pg.port)).expect("connect");
    let mut failed = Vec::new();
    let cases = suite::cases::<PgStores>();
    for (i, (name, case)) in cases.iter().enumerate() {
        let stores = PgStores { admin: &admin, port: pg.port, case: i };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&stores))) {
            Ok(()) => eprintln!("ok      {name}"),
            Err(_) => {
                eprintln!("FAILED  {name}");
                failed.push(*name);
            }
        }
    }
    assert!(failed.is_empty(), "{} of {} cases failed on PostgreSQL: {failed:?}", failed.len(), cases.len());
    assert!(cases.len() >= 17, "the whole suite ran: {}", cases.len());
}

/// Catalog sync on a shared ledger: one collector (the `catalog-sync` leader) fetches from a real Backstage
/// and keeps a copy in the ledger; the other takes that copy and attributes with it without calling
/// Backstage; when the leader dies, the survivor fetches.
#[test]
fn on_a_shared_ledger_one_collector_syncs_the_catalog_and_the_other_takes_its_copy() {
    use gpucost_e2e::{Backstage, Collector, free_port};
    use std::time::{Duration, Instant};
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let catalog = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/catalog").canonicalize().unwrap();
    let files: Vec<_> = ["org.yaml", "components.yaml", "users.yaml"].iter().map(|f| catalog.join(f)).collect();
    let example = gpucost_rules::catalog::Catalog::example();
    let expected = example.groups.len() + example.users.len() + example.systems.len() + example.components.len();
    let Some(backstage) = Backstage::start(dir.path(), &files, expected) else { return };
    let burl = backstage.url();
    let args = ["--backstage-url", &burl, "--backstage-token", Backstage::TOKEN, "--backstage-sync-interval", "1s"];
    let url = pg.url();
    let start = |name: &str| {
        let log = dir.path().join(format!("{name}.log"));
        Collector::start_logged(std::path::Path::new(&url), &log, free_port(), free_port(), &args, &[])
    };
    let (a, b) = (start("a"), start("b"));
    // (fetched from Backstage, taken from the ledger) so far.
    let syncs = |c: &Collector| {
        let (_, text) = c.get_text("/metrics");
        let count = |via: &str| {
            let key = format!("gpucost_catalog_syncs_total{{via=\"{via}\"}} ");
            text.lines().find_map(|l| l.strip_prefix(key.as_str())).map_or(0, |v| v.trim().parse::<u64>().unwrap())
        };
        (count("backstage"), count("ledger"))
    };
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "{what}: not within 30 s");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for("both collectors hold a catalog", &|| {
        let (sa, sb) = (syncs(&a), syncs(&b));
        sa.0 + sa.1 > 0 && sb.0 + sb.1 > 0
    });
    std::thread::sleep(Duration::from_secs(3)); // several sync passes at 1 s
    let (sa, sb) = (syncs(&a), syncs(&b));
    let (leader, follower, fetched, taken) = if sa.0 > 0 { (a, b, sa, sb) } else { (b, a, sb, sa) };
    assert!(fetched.0 >= 2, "the leader fetches every second: {fetched:?}");
    assert_eq!(taken.0, 0, "the follower never calls Backstage: {taken:?}");
    assert!(taken.1 >= 1, "the follower takes the leader's copy: {taken:?}");
    let (_, groups) = follower.get("/api/v1/backstage/user-groups?userId=bob");
    assert_eq!(
        groups,
        serde_json::json!([{ "id": "group:default/nlp" }, { "id": "group:default/research" }]),
        "the follower knows Backstage's users from the copy"
    );
    drop(leader); // SIGKILL: its session and its leadership go with it
    wait_for("the survivor fetches from Backstage", &|| syncs(&follower).0 > 0);
}

#[test]
fn the_one_off_commands_take_a_postgresql_ledger_as_they_take_an_sqlite_file() {
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    let now = 1_793_577_600 * NS + 2 * HOUR;
    SqliteLedger::open(&path, HOUR, 7 * 24 * HOUR).unwrap().record(&priced_batches(), now).unwrap();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(gpucost_e2e::bin("gpucost-collector")).args(args).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string(), text)
    };
    let url = pg.url();
    let lite = path.to_str().unwrap();

    // A database no collector has served is refused, and left as it was.
    let (ok, _, said) = cli(&["close-period", "--db", &url, "--period", "2026-11"]);
    assert!(!ok && said.contains("no gpucost ledger in") && !said.contains("gpucost:gpucost@"), "{said}");
    let (ok, _, said) = cli(&["migrate", "--from", &format!("sqlite://{lite}"), "--to", &url]);
    assert!(ok, "{said}");

    // The same chargeback from both, and a dry-run re-pricing that reconciles on PostgreSQL.
    let chargeback = |db: &str| {
        let (ok, out, said) = cli(&[
            "report",
            "chargeback",
            "--db",
            db,
            "--from",
            "2026-11-02T00:00:00Z",
            "--to",
            "2026-11-02T02:00:00Z",
            "--group-by",
            "team",
            "--format",
            "csv",
        ]);
        assert!(ok, "chargeback on {db}: {said}");
        out
    };
    let (on_sqlite, on_postgres) = (chargeback(lite), chargeback(&url));
    assert!(on_sqlite.lines().count() > 1, "{on_sqlite}");
    assert_eq!(on_postgres, on_sqlite);
    let (ok, out, said) = cli(&["reprice", "--db", &url, "--from", "2026-11-02T00:00:00Z", "--dry-run"]);
    assert!(ok && out.contains("dry run: reconciled: true"), "{said}");
    let (ok, out, said) = cli(&["close-period", "--db", &url, "--period", "2026-11"]);
    assert!(ok && out.starts_with("closed 2026-11"), "{said}");
}
