//! The ledger on SQLite beside PostgreSQL (issue 10): the same priced batches of the demo fleet (40 nodes,
//! 195 GPUs) stored in groups of 64 as the collector's writer stores them, then the API's main queries.
//!
//! Reports, per engine: CPU per process-sample stored (this process, plus the PostgreSQL server's processes
//! for PostgreSQL: the database's work counts), wall time, and the median and worst latency of usage and cost
//! queries over the day. PostgreSQL 15 is started by the bench (initdb in a temporary folder, 127.0.0.1), as
//! the tests do. Run: `cargo bench -p gpucost-e2e --bench ledger_engines [HOURS]` (default 6). Figures in
//! BENCHMARKS.md.

use gpucost_collector::ingest::stages;
use gpucost_ledger::prelude::*;
use std::time::{Duration, Instant};

use gpucost_agent::sampler::{Clock, Sampler};
use gpucost_agent::sim::{Fleet, FleetSpec, SimSource};
use gpucost_agent::wire::Framer;
use gpucost_collector::ingest::validate::{Limits, validate};
use gpucost_ledger::{CostQuery, Dimension, UsageQuery};
use gpucost_ledger::{SqlLedger, SqliteLedger};
use gpucost_rules::book::PriceBook;
use gpucost_types::policy::Policy;
use gpucost_types::stage::Attributed;

const NS: u64 = 1_000_000_000;
const HOUR: u64 = 3_600 * NS;
const START: u64 = 1_793_577_600 * NS; // 2026-11-02T00:00:00Z
const STEP: u64 = 300 * NS;

fn own_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// User + system CPU of every process named `postgres` (the bench's own server is the only one).
fn postgres_cpu_ns() -> u64 {
    let tick = 1_000_000_000 / 100; // USER_HZ
    let mut total = 0;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        let Some((name, rest)) = stat.split_once(") ") else { continue };
        if !name.ends_with("(postgres") {
            continue;
        }
        let f: Vec<&str> = rest.split_whitespace().collect();
        let (u, s): (u64, u64) =
            (f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0), f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0));
        total += (u + s) * tick;
    }
    total
}

fn batches(hours: u64) -> Vec<Attributed> {
    let book = PriceBook::catalogue_only();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut out = Vec::new();
    for node in Fleet::generate(FleetSpec::demo(7)).nodes {
        let agent = node.agent_id.clone();
        let wire = rt.block_on(async {
            let mut s = Sampler::new(
                Box::new(SimSource::new(node, STEP)),
                None,
                Duration::from_secs(60),
                Duration::from_nanos(STEP),
                Clock::Virtual { start_unix_nanos: START, pace: Duration::ZERO },
            );
            let mut f = Framer::new(agent, "bench".into());
            let mut v = Vec::new();
            for _ in 0..hours * HOUR / STEP {
                let r = s.next_interval().await.unwrap();
                v.push(f.frame(s.source().node(), r));
            }
            v
        });
        for w in wire {
            let b = validate(&w, START + 48 * HOUR, &Limits { max_clock_skew_ns: u64::MAX / 4, ..Limits::default() })
                .unwrap();
            out.push(stages::attribute(None, None, stages::price(&book, None, stages::hold(b))));
        }
    }
    // As agents send: interleaved in time.
    out.sort_by_key(|b| (b.start_ns, b.agent_id.clone()));
    out
}

fn run(name: &str, ledger: &dyn Ledger, batches: &[Attributed], hours: u64, server_cpu: &dyn Fn() -> u64) {
    let samples: usize = batches.iter().map(|b| b.processes.len()).sum();
    let (cpu0, srv0, wall) = (own_cpu_ns(), server_cpu(), Instant::now());
    for group in batches.chunks(64) {
        ledger.record(group, START + 48 * HOUR).expect("record");
    }
    let (cpu, srv, wall) = (own_cpu_ns() - cpu0, server_cpu() - srv0, wall.elapsed());
    println!(
        "{name}: {} batches, {samples} process-samples stored in {:.1} s; CPU {:.1} µs per process-sample ({:.1} µs this process + {:.1} µs database server)",
        batches.len(),
        wall.as_secs_f64(),
        (cpu + srv) as f64 / samples as f64 / 1e3,
        cpu as f64 / samples as f64 / 1e3,
        srv as f64 / samples as f64 / 1e3,
    );
    let to_ns = START + hours * HOUR;
    type Query<'a> = (&'a str, Box<dyn Fn() + 'a>);
    let queries: Vec<Query> = vec![
        (
            "usage by GPU and workload",
            Box::new(|| {
                drop(
                    ledger
                        .usage(&UsageQuery {
                            from_ns: START,
                            to_ns,
                            group_by: vec![Dimension::Gpu, Dimension::Workload],
                        })
                        .unwrap(),
                )
            }),
        ),
        (
            "usage by cluster",
            Box::new(|| {
                drop(ledger.usage(&UsageQuery { from_ns: START, to_ns, group_by: vec![Dimension::Cluster] }).unwrap())
            }),
        ),
        (
            "costs by namespace",
            Box::new(|| {
                drop(
                    ledger
                        .costs(&CostQuery {
                            from_ns: START,
                            to_ns,
                            group_by: vec![Dimension::Namespace],
                            filters: vec![],
                            policy: Policy::Hybrid,
                        })
                        .unwrap(),
                )
            }),
        ),
        (
            "costs by team (owner join)",
            Box::new(|| {
                drop(
                    ledger
                        .costs(&CostQuery {
                            from_ns: START,
                            to_ns,
                            group_by: vec![Dimension::Team],
                            filters: vec![],
                            policy: Policy::Allocation,
                        })
                        .unwrap(),
                )
            }),
        ),
    ];
    for (what, q) in queries {
        let mut times: Vec<Duration> = (0..15)
            .map(|_| {
                let t = Instant::now();
                q();
                t.elapsed()
            })
            .collect();
        times.sort();
        println!(
            "{name}:   {what}: median {:.1} ms, worst {:.1} ms",
            times[7].as_secs_f64() * 1e3,
            times[14].as_secs_f64() * 1e3
        );
    }
}

fn main() {
    let hours: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(6);
    let all = batches(hours);
    println!(
        "the demo fleet (40 nodes, 195 GPUs), {hours} h of 5-minute intervals, priced; groups of 64 per transaction"
    );
    let dir = tempfile::tempdir().unwrap();
    let lite = SqliteLedger::open(&dir.path().join("bench.db"), HOUR, 7 * 24 * HOUR).unwrap();
    run("SQLite", &lite, &all, hours, &|| 0);
    let Some(pg) = gpucost_e2e::postgres::Postgres::start() else {
        println!("PostgreSQL is not installed: only SQLite measured");
        return;
    };
    let post = SqlLedger::open_postgres(&pg.url(), HOUR, 7 * 24 * HOUR).expect("PostgreSQL ledger");
    run("PostgreSQL 15", &post, &all, hours, &postgres_cpu_ns);
}
