//! How much the agent costs a busy node: 8 GPUs, 200 GPU processes in pods, identified through a fake
//! `/proc` tree and a filled pod cache, sampled every second and folded into 15-second intervals.
//!
//! Prints CPU time per sampling tick (sampling, folding and — once per interval — identifying every
//! process), peak RSS of the whole process, and the process cache's hit rate, over 24 simulated hours
//! (`GPUCOST_BENCH_HOURS` to change), with CPU per tick and resident memory hour by hour so that any growth
//! shows. Run it with `cargo bench -p gpucost-agent --bench agent_tick`; figures and method in BENCHMARKS.md.

use std::time::Duration;

mod measure;
use measure::{cpu_ns, peak_rss_kib, rss_kib};

use gpucost_agent::identify::pods::{PodCache, PodInfo};
use gpucost_agent::identify::proc::write_fake;
use gpucost_agent::identify::{Identifier, IdentifyConfig};
use gpucost_agent::reading::{CapacityType, GpuDevice, GpuSample, NodeInfo, ProcessSample, Tick};
use gpucost_agent::sampler::{Clock, Sampler};
use gpucost_agent::source::{GpuSource, SourceError};

const GPUS: u32 = 8;
const PROCESSES: u32 = 200;
const TICKS_PER_INTERVAL: u64 = 15;
/// Intervals in an hour.
const HOURLY: u64 = 3_600 / TICKS_PER_INTERVAL;
/// Every interval this many processes exit and are replaced by new ones (new pids: cache misses).
const CHURN: u32 = 4;

/// A node's worth of readings in NVML's shape, without a GPU.
struct BusyNode {
    node: NodeInfo,
    tick: u64,
}

fn pid_of(i: u32, tick: u64) -> u32 {
    let generation = (tick / TICKS_PER_INTERVAL) as u32;
    // The first CHURN processes are replaced every interval.
    if i < CHURN { 100_000 + generation * CHURN + i } else { 10_000 + i }
}

impl GpuSource for BusyNode {
    fn node(&self) -> &NodeInfo {
        &self.node
    }

    fn sample(&mut self, _at: u64) -> Result<Tick, SourceError> {
        self.tick += 1;
        let mut tick = Tick::default();
        for d in &self.node.devices {
            tick.gpus.push(GpuSample {
                uuid: d.uuid.clone(),
                utilization_percent: Some(70),
                memory_utilization_percent: Some(30),
                memory_used_bytes: 40 << 30,
                power_milliwatts: Some(350_000),
                energy_counter_millijoules: Some(self.tick * 350_000),
            });
        }
        for i in 0..PROCESSES {
            tick.processes.push(ProcessSample {
                pid: pid_of(i, self.tick - 1),
                gpu_uuid: self.node.devices[(i % GPUS) as usize].uuid.clone(),
                sm_util_percent: Some((i * 7 + self.tick as u32) % 30),
                memory_util_percent: Some(10),
                used_memory_bytes: 1 << 30,
                identity: None,
            });
        }
        Ok(tick)
    }
}

fn main() {
    let hours: u64 = std::env::var("GPUCOST_BENCH_HOURS").ok().and_then(|h| h.parse().ok()).unwrap_or(24).max(1);
    let intervals = hours * HOURLY;
    let dir = tempfile::tempdir().expect("temp dir");
    let proc_root = dir.path().join("proc");
    let cache = PodCache::default();
    let mut pods = Vec::new();
    let generations = intervals as u32 + 1;
    let pids: Vec<u32> = (0..PROCESSES)
        .filter(|&i| i >= CHURN)
        .map(|i| pid_of(i, 0))
        .chain((0..generations * CHURN).map(|k| 100_000 + k))
        .collect();
    for (n, pid) in pids.iter().enumerate() {
        let uid = format!("00000000-0000-4000-8000-{n:012x}");
        let cid = format!("{n:064x}");
        let cgroup = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{cid}.scope",
            uid.replace('-', "_")
        );
        write_fake(&proc_root, *pid, 0, u64::from(*pid), "python3", &[("MLFLOW_RUN_ID", "0123456789abcdef")], &cgroup)
            .expect("fake /proc");
        pods.push(PodInfo {
            uid,
            namespace: format!("team-{}", n % 5),
            name: format!("worker-{n}"),
            controller_kind: "Job".into(),
            controller_name: format!("job-{}", n / 8),
            labels: [("team".to_string(), format!("t{}", n % 5))].into(),
            containers: [(cid, "main".to_string())].into(),
        });
    }
    // The watcher's view: the steady pods and the first two generations of churned ones; each interval
    // the next generation is added and the one before the last deleted, as pod events would.
    let steady = (PROCESSES - CHURN) as usize;
    let generation = |g: u64| steady + (g as usize) * CHURN as usize..steady + (g as usize + 1) * CHURN as usize;
    cache.replace_pods(pods[..generation(1).end].to_vec());
    let watcher = cache.clone();
    cache.replace_namespaces((0..5).map(|t| (format!("team-{t}"), Default::default())).collect());

    let devices = (0..GPUS)
        .map(|g| GpuDevice {
            uuid: format!("GPU-{g:08x}-0000-0000-0000-000000000000"),
            model: "NVIDIA H100 80GB HBM3".into(),
            memory_total_bytes: 80 << 30,
            index: g,
            mig_parent_uuid: None,
            mig_profile: None,
        })
        .collect();
    let node = NodeInfo {
        cluster: "bench".into(),
        node_name: "bench-node".into(),
        instance_type: "p5.48xlarge".into(),
        capacity_type: CapacityType::OnDemand,
        region: "us-east-1".into(),
        zone: "us-east-1a".into(),
        devices,
        labels: Default::default(),
        instance_id: String::new(),
    };
    let identifier = Identifier::new(
        IdentifyConfig {
            proc_root,
            passwd: None,
            env_keys: vec!["MLFLOW_RUN_ID".into(), "MLFLOW_EXPERIMENT_ID".into()],
            pod_resources_socket: None,
            gpu_resource_prefix: "nvidia.com/".into(),
            ecs_introspection: None,
        },
        Some(cache),
    );
    let report = Duration::from_secs(TICKS_PER_INTERVAL);
    let mut sampler = Sampler::new(
        Box::new(BusyNode { node, tick: 0 }),
        Some(identifier),
        Duration::from_secs(1),
        report,
        Clock::Virtual {
            start_unix_nanos: 1_800_000_000_000_000_000 / 15_000_000_000 * 15_000_000_000,
            pace: Duration::ZERO,
        },
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let rss_before = peak_rss_kib();
    let cpu_before = cpu_ns();
    let mut processes = 0;
    // (hour, CPU µs per tick in that hour, RSS at its end in KiB)
    let mut hourly: Vec<(u64, f64, u64)> = Vec::new();
    runtime.block_on(async {
        let mut hour_cpu = cpu_ns();
        for i in 1..=intervals {
            if i >= 2 {
                for p in &pods[generation(i)] {
                    watcher.apply_pod(p.clone());
                }
                for p in &pods[generation(i - 2)] {
                    watcher.delete_pod(&p.uid);
                }
            }
            let r = sampler.next_interval().await.expect("interval");
            assert!(r.processes.iter().all(|p| !p.workload.pod.is_empty()), "every process identified");
            processes += r.processes.len();
            if i % HOURLY == 0 {
                let now = cpu_ns();
                hourly.push((
                    i / HOURLY,
                    (now - hour_cpu) as f64 / (HOURLY * TICKS_PER_INTERVAL) as f64 / 1e3,
                    rss_kib(),
                ));
                hour_cpu = now;
            }
        }
    });
    let cpu = cpu_ns() - cpu_before;
    let ticks = intervals * TICKS_PER_INTERVAL;
    let stats = sampler.identifier_stats().expect("identifier");
    println!("node: {GPUS} GPUs, {PROCESSES} GPU processes in pods ({CHURN} replaced per interval), fake /proc");
    println!(
        "{hours} h: {intervals} intervals x {TICKS_PER_INTERVAL} ticks = {ticks} ticks, {processes} process-intervals identified"
    );
    println!(
        "CPU per sampling tick: {:.1} us (sampling + folding + identification, amortised)",
        cpu as f64 / ticks as f64 / 1e3
    );
    println!("CPU per interval: {:.2} ms", cpu as f64 / intervals as f64 / 1e6);
    for (hour, us, rss) in hourly.iter().filter(|(h, _, _)| [1, 2, 6, 12, 18, 24].contains(h) || *h == hours) {
        println!("  hour {hour:>3}: {us:.1} us CPU per tick, RSS {:.1} MiB", *rss as f64 / 1024.0);
    }
    if let (Some(first), Some(last)) = (hourly.first(), hourly.last()) {
        println!(
            "RSS growth from the end of hour 1 to the end of hour {}: {:+.1} MiB",
            last.0,
            (last.2 as f64 - first.2 as f64) / 1024.0
        );
    }
    println!(
        "peak RSS: {:.1} MiB (before the run: {:.1} MiB)",
        peak_rss_kib() as f64 / 1024.0,
        rss_before as f64 / 1024.0
    );
    println!(
        "process cache: {} hits, {} misses, hit rate {:.2} %",
        stats.hits,
        stats.misses,
        100.0 * stats.hits as f64 / (stats.hits + stats.misses).max(1) as f64
    );
}
