//! What the spool costs: per batch written (encode, write, fsync, rename, directory fsync), read back for
//! sending and deleted on ack; and per merge under pressure. Batches are the simulator's 8-GPU node's, as
//! framed for the wire. Run with `cargo bench -p gpucost-agent --bench spool [DIR]` (DIR: where to put the
//! spool, default a temporary folder; the disk decides the fsync cost). Figures in BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gpucost_agent::sampler::{Clock, Sampler};
use gpucost_agent::sim::{Fleet, FleetSpec, SimSource};
use gpucost_agent::spool::{Spool, SpoolConfig, SpoolGauges};
use gpucost_agent::wire::Framer;
use gpucost_proto::v1::UsageBatch;

mod measure;
use measure::{cpu_ns, peak_rss_kib};

const BATCHES: u64 = 2_000;

fn batches() -> Vec<UsageBatch> {
    // Node 1 of this fleet has 8 GPUs.
    let node = Fleet::generate(FleetSpec { seed: 5, clusters: 1, nodes: 3 }).nodes.swap_remove(1);
    let agent_id = node.agent_id.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let mut sampler = Sampler::new(
            Box::new(SimSource::new(node, 15_000_000_000)),
            None,
            Duration::from_secs(1),
            Duration::from_secs(15),
            Clock::Virtual { start_unix_nanos: 1_793_577_600_000_000_000, pace: Duration::ZERO },
        );
        let mut framer = Framer::new(agent_id, "bench".into());
        let mut out = Vec::new();
        for _ in 0..BATCHES {
            let r = sampler.next_interval().await.expect("interval");
            out.push(framer.frame(sampler.source().node(), r));
        }
        out
    })
}

fn main() {
    let base = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let temp = tempfile::tempdir_in(base.as_deref().unwrap_or("/tmp")).expect("temporary folder");
    let all = batches();
    let bytes: usize = all.iter().map(prost::Message::encoded_len).sum();
    println!("{} batches of the simulator's 8-GPU node, {} bytes each on average", all.len(), bytes / all.len());

    // Write, then read back for sending and ack: the steady path of an outage and its drain.
    let config = SpoolConfig { dir: Some(temp.path().join("a")), ..SpoolConfig::default() };
    let (mut spool, _) = Spool::open(config, Arc::new(SpoolGauges::default())).expect("spool");
    let (cpu, wall) = (cpu_ns(), Instant::now());
    for b in all.iter().cloned() {
        spool.push(b);
    }
    let (push_cpu, push_wall) = (cpu_ns() - cpu, wall.elapsed());
    let (cpu, wall) = (cpu_ns(), Instant::now());
    for i in 0..all.len() {
        spool.take_for_send(i).expect("batch");
    }
    // One ack per batch, as a collector sends them.
    for (i, b) in all.iter().enumerate() {
        spool.ack(&b.boot_id, b.seq, all.len() - i);
    }
    let (drain_cpu, drain_wall) = (cpu_ns() - cpu, wall.elapsed());
    let n = all.len() as u64;
    println!(
        "write (fsync'd): {:.0} µs CPU, {:.0} µs wall per batch; read for sending + ack: {:.0} µs CPU, {:.0} µs wall per batch",
        push_cpu as f64 / n as f64 / 1e3,
        push_wall.as_nanos() as f64 / n as f64 / 1e3,
        drain_cpu as f64 / n as f64 / 1e3,
        drain_wall.as_nanos() as f64 / n as f64 / 1e3
    );

    // Under pressure: 2 000 batches through a spool bounded at 100, merging as it goes.
    let gauges = Arc::new(SpoolGauges::default());
    let config = SpoolConfig { dir: Some(temp.path().join("b")), max_batches: 100, ..SpoolConfig::default() };
    let (mut spool, _) = Spool::open(config, gauges.clone()).expect("spool");
    let (cpu, wall) = (cpu_ns(), Instant::now());
    for b in all.iter().cloned() {
        spool.push(b);
    }
    let (cpu, wall) = (cpu_ns() - cpu, wall.elapsed());
    println!(
        "bounded at 100 batches: {} merges, {} dropped, {} batches left ({} bytes); {:.0} µs CPU, {:.0} µs wall per batch written (writes and merges)",
        gauges.merged.load(std::sync::atomic::Ordering::Relaxed),
        gauges.dropped_batches.load(std::sync::atomic::Ordering::Relaxed),
        spool.len(),
        gauges.bytes.load(std::sync::atomic::Ordering::Relaxed),
        cpu as f64 / n as f64 / 1e3,
        wall.as_nanos() as f64 / n as f64 / 1e3
    );
    println!(
        "peak RSS of the bench process: {:.1} MiB (the {} batches themselves are in memory)",
        peak_rss_kib() as f64 / 1024.0,
        n
    );
}
