//! The ledger over a year (issue 11): a year of hourly rollups for a fleet of GPUs (default 512: 64 nodes × 8)
//! and 50 000 Kubernetes workloads, written straight into a SQLite ledger that `SqliteLedger::open` created
//! (the real schema and migrations), then what it costs on disk per GPU-day and how long the reports and
//! queries the collector serves take over it: month chargeback, `/api/v1/costs` for a month, `/api/v1/usage`,
//! the FOCUS export, and the queries the dashboard makes when it opens. Each is timed through the library
//! function its HTTP handler calls and, when the release collector is built, as real HTTP requests to
//! `gpucost-collector serve` on the same file.
//!
//! The data: every workload runs on one GPU for a contiguous span (an hour to four weeks, starting and ending
//! on any second), the spans of each GPU tile its year with idle gaps (75–95 % held), so each GPU-hour has a
//! `gpu_buckets` row and a `usage_buckets` row per workload that held it in that hour. Costs are the shipped
//! AWS catalogue's prices, split as the collector splits one holder's interval (used share × cost; the rest
//! is the holder's idle under `hybrid` and `allocation`, the idle line under `utilization`; time nobody held
//! is unallocated), so every policy reconciles to the fleet's cost to the micro-dollar. Owners
//! (`workload_owners`: 25 teams in 6 departments, 3 % unallocated, 2 % changing team mid-run) and labels
//! (`workload_labels`: app, MLflow model and version, run and experiment) as the collector stores them. Rows
//! of a bucket are written node by node in a different order every hour, as batches arrive.
//!
//! Run: `cargo bench -p gpucost-e2e --bench ledger_year [GPUS]`; build the release collector first
//! (`cargo build --release -p gpucost-collector`) for the HTTP figures. Environment: `LEDGER_YEAR_GPUS`
//! (512), `LEDGER_YEAR_WORKLOADS` (50000), `LEDGER_YEAR_DAYS` (365), `LEDGER_YEAR_RUNS` (15 timed runs after
//! a warm-up; fewer for a query slower than a second), `LEDGER_YEAR_DB` (keep the ledger at this path, or
//! reuse it when it exists), `LEDGER_YEAR_HTTP=0` (skip the HTTP figures). Figures in BENCHMARKS.md.

use gpucost_ledger::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gpucost_collector::http::reports::{ReportConfig, parse_request, render};
use gpucost_ledger::SqliteLedger;
use gpucost_ledger::{CostQuery, Dimension, UsageQuery};
use gpucost_rules::book::PriceBook;
use gpucost_types::batch::{Identity, Node, Workload, WorkloadKind};
use gpucost_types::money::GpuPrice;
use gpucost_types::period::{Cadence, DAY_NS, Period};
use gpucost_types::policy::Policy;
use rusqlite::{Connection, params};

const NS: u64 = 1_000_000_000;
const HOUR: u64 = 3_600 * NS;
const PPM: u64 = 1_000_000;

/// splitmix64: a small, seeded, reproducible generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const CLUSTERS: [(&str, &str, &str); 3] = [
    ("train-use1", "us-east-1", "us-east-1a"),
    ("serve-usw2", "us-west-2", "us-west-2b"),
    ("research-use1", "us-east-1", "us-east-1c"),
];
/// Instance type, GPU model, GPU memory (GiB), board power (W).
const INSTANCES: [(&str, &str, u64, u64); 4] = [
    ("p4d.24xlarge", "NVIDIA A100-SXM4-40GB", 40, 400),
    ("p5.48xlarge", "NVIDIA H100 80GB HBM3", 80, 700),
    ("g6e.48xlarge", "NVIDIA L40S", 48, 350),
    ("p4de.24xlarge", "NVIDIA A100-SXM4-80GB", 80, 400),
];
const DEPARTMENTS: [&str; 6] = ["applied-ml", "research", "platform", "product-ai", "ads", "operations"];
const TEAMS: [&str; 25] = [
    "vision",
    "nlp",
    "speech",
    "recsys",
    "search",
    "ranking",
    "forecasting",
    "fraud",
    "robotics",
    "genai",
    "translation",
    "ocr",
    "maps",
    "safety",
    "pricing",
    "growth",
    "music",
    "video",
    "health",
    "finance-ml",
    "infra-ml",
    "eval",
    "data-quality",
    "ads-ml",
    "assistant",
];
const MODEL_BASES: [&str; 20] = [
    "resnet",
    "vit",
    "bert",
    "t5",
    "llama",
    "mistral",
    "whisper",
    "wav2vec",
    "dlrm",
    "two-tower",
    "tft",
    "xgb-gpu",
    "yolo",
    "sam",
    "clip",
    "diffusion",
    "gpt-neo",
    "marian",
    "layoutlm",
    "deberta",
];
const USERS: [&str; 12] =
    ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// A notebook or a batch job: hours.
    Short,
    /// A training job: days.
    Training,
    /// An inference server: weeks.
    Serving,
}

struct Run {
    gpu: usize,
    start_ns: u64,
    end_ns: u64,
    class: Class,
    /// Mean SM utilisation.
    util_ppm: u64,
}

struct Fleet {
    nodes: Vec<Node>,
    /// Per node: its GPU model, memory and power, and its price.
    node_kind: Vec<usize>,
    prices: Vec<GpuPrice>,
    /// (node, uuid) per GPU.
    gpus: Vec<(usize, String)>,
    /// Per GPU, its runs' indices into `runs` in time order; `runs` is sorted by start, so a run's index is
    /// its workload's.
    by_gpu: Vec<Vec<usize>>,
    runs: Vec<Run>,
    from_ns: u64,
    to_ns: u64,
}

fn fleet(gpus: usize, workloads: usize, from_ns: u64, to_ns: u64) -> Fleet {
    let mut rng = Rng(0x1ed9_e720_2611);
    let book = PriceBook::catalogue_only();
    let (mut nodes, mut node_kind, mut prices, mut gpu_list) = (vec![], vec![], vec![], vec![]);
    for n in 0..gpus.div_ceil(8) {
        let (cluster, region, zone) = CLUSTERS[n % CLUSTERS.len()];
        let kind = (n / CLUSTERS.len()) % INSTANCES.len();
        let (instance, model, _, _) = INSTANCES[kind];
        let mut labels = BTreeMap::new();
        labels.insert("eks.amazonaws.com/nodegroup".to_string(), format!("gpu-{}", instance.replace('.', "-")));
        let node = Node {
            cluster: cluster.into(),
            name: format!("ip-10-{}-{}-{}.ec2.internal", n % 3, n / 200, 10 + n % 200),
            instance_type: instance.into(),
            capacity_type: "on_demand".into(),
            region: region.into(),
            zone: zone.into(),
            labels,
        };
        prices.push(book.price(&node, model, 8, from_ns).expect("the catalogue prices the bench's instance types"));
        for _ in 0..8.min(gpus - n * 8) {
            let (a, b) = (rng.next(), rng.next());
            let uuid = format!(
                "GPU-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                a >> 32,
                (a >> 16) & 0xffff,
                a & 0xffff,
                b >> 48,
                b & 0xffff_ffff_ffff
            );
            gpu_list.push((n, uuid));
        }
        nodes.push(node);
        node_kind.push(kind);
    }
    // Each GPU's year: its share of the workloads back to back, with idle gaps between them.
    let span_s = (to_ns - from_ns) / NS;
    let mut runs = Vec::with_capacity(workloads);
    for g in 0..gpus {
        let n = workloads / gpus + usize::from(g < workloads % gpus);
        if n == 0 {
            continue;
        }
        let classes: Vec<Class> = (0..n)
            .map(|_| match rng.below(100) {
                0..55 => Class::Short,
                55..90 => Class::Training,
                _ => Class::Serving,
            })
            .collect();
        let lengths: Vec<f64> = classes
            .iter()
            .map(|c| match c {
                Class::Short => rng.range(3_600, 86_400) as f64,
                Class::Training => rng.range(86_400, 7 * 86_400) as f64,
                Class::Serving => rng.range(7 * 86_400, 28 * 86_400) as f64,
            })
            .collect();
        let gaps: Vec<f64> = (0..=n).map(|_| rng.unit().powi(2) + 0.01).collect();
        let held = 0.75 + 0.2 * rng.unit();
        let (sl, sg): (f64, f64) = (lengths.iter().sum(), gaps.iter().sum());
        let mut t = 0u64;
        for i in 0..n {
            t += (gaps[i] / sg * (1.0 - held) * span_s as f64) as u64;
            let len = ((lengths[i] / sl * held * span_s as f64) as u64).max(60);
            let (start, end) = (t.min(span_s - 1), (t + len).min(span_s));
            t += len;
            if start >= end {
                continue;
            }
            let util = match classes[i] {
                Class::Short => rng.range(0, 400_000),
                Class::Training => rng.range(550_000, 950_000),
                Class::Serving => rng.range(100_000, 600_000),
            };
            runs.push(Run {
                gpu: g,
                start_ns: from_ns + start * NS,
                end_ns: from_ns + end * NS,
                class: classes[i],
                util_ppm: util,
            });
        }
    }
    runs.sort_by_key(|r| (r.start_ns, r.gpu));
    let mut by_gpu = vec![Vec::new(); gpus];
    for (i, r) in runs.iter().enumerate() {
        by_gpu[r.gpu].push(i);
    }
    Fleet { nodes, node_kind, prices, gpus: gpu_list, by_gpu, runs, from_ns, to_ns }
}

struct Owner {
    team: usize,
    /// The team it moves to mid-run, if it does.
    moves_to: Option<usize>,
    unallocated: bool,
    rule: &'static str,
}

/// The workload behind run `i`: its identity (as the agent names a pod) and its owner.
fn workload(f: &Fleet, i: usize, rng: &mut Rng) -> (Workload, Owner) {
    let run = &f.runs[i];
    let node = &f.nodes[f.gpus[run.gpu].0];
    let ns = rng.below(40) as usize;
    let ns_team = ns % TEAMS.len();
    let namespace = if ns < TEAMS.len() { TEAMS[ns].to_string() } else { format!("{}-serving", TEAMS[ns_team]) };
    let suffix = format!("{:05x}", mix(i as u64) & 0xfffff);
    let app = format!("{}-{}", TEAMS[ns_team], MODEL_BASES[rng.below(MODEL_BASES.len() as u64) as usize]);
    let mut labels = BTreeMap::new();
    let mut env = BTreeMap::new();
    labels.insert("app.kubernetes.io/name".to_string(), app.clone());
    let with_model = run.class != Class::Short || rng.chance(20);
    if with_model {
        let model = format!("{}-{}", MODEL_BASES[(mix(i as u64 ^ 0x6d6f) % 20) as usize], rng.range(1, 3));
        labels.insert("mlflow.org/model-name".into(), model);
        labels.insert("mlflow.org/model-version".into(), rng.range(1, 20).to_string());
    }
    let (controller_kind, controller_name, pod, container) = match run.class {
        Class::Training => {
            let job = format!("{app}-train-{i}");
            env.insert("MLFLOW_RUN_ID".into(), format!("{:016x}{:016x}", mix(i as u64), rng.next()));
            env.insert("MLFLOW_EXPERIMENT_ID".into(), rng.range(1, 400).to_string());
            ("Job", job.clone(), format!("{job}-{suffix}"), "trainer")
        }
        Class::Serving => {
            let dep = format!("{app}-serving");
            ("Deployment", dep.clone(), format!("{dep}-7d9f8c{:x}-{suffix}", i), "server")
        }
        Class::Short if rng.chance(50) => {
            let sts = format!("jupyter-{}-{i:x}", USERS[rng.below(USERS.len() as u64) as usize]);
            labels.insert("app.kubernetes.io/name".into(), "jupyter".into());
            ("StatefulSet", sts.clone(), format!("{sts}-0"), "notebook")
        }
        Class::Short => {
            let job = format!("{app}-batch-{i}");
            ("Job", job.clone(), format!("{job}-{suffix}"), "worker")
        }
    };
    let mut namespace_labels = BTreeMap::new();
    namespace_labels.insert("backstage.io/owner".to_string(), format!("group:default/{}", TEAMS[ns_team]));
    let (a, b) = (mix(i as u64 ^ 0x7569), rng.next());
    let identity = Identity {
        kind: WorkloadKind::KubernetesPod,
        namespace,
        pod,
        pod_uid: format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        ),
        container: container.into(),
        controller_kind: controller_kind.into(),
        controller_name,
        labels,
        namespace_labels,
        container_runtime: "containerd".into(),
        container_id: format!("{:016x}{:016x}{:016x}{:016x}", rng.next(), rng.next(), rng.next(), rng.next()),
        env,
        ..Default::default()
    };
    let owner = match rng.below(100) {
        0..3 => Owner { team: 0, moves_to: None, unallocated: true, rule: "unallocated" },
        3..8 => Owner {
            team: rng.below(TEAMS.len() as u64) as usize,
            moves_to: None,
            unallocated: false,
            rule: "label-selector",
        },
        8..10 => Owner {
            team: ns_team,
            moves_to: Some((ns_team + 1 + rng.below(TEAMS.len() as u64 - 1) as usize) % TEAMS.len()),
            unallocated: false,
            rule: "namespace-owner",
        },
        _ => Owner { team: ns_team, moves_to: None, unallocated: false, rule: "namespace-owner" },
    };
    (Workload::new(node, identity), owner)
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Writes the year into the ledger at `path` (created by `SqliteLedger::open`). Returns the seconds it took.
fn generate(path: &Path, f: &Fleet) -> f64 {
    let t0 = Instant::now();
    drop(SqliteLedger::open(path, HOUR, 7 * DAY_NS).expect("create the ledger"));
    let mut db = Connection::open(path).unwrap();
    // A bulk load: no journal, no fsync, a large cache. The collector opens it in WAL mode afterwards.
    db.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;").unwrap();
    let mut rng = Rng(0x0ead_be1f);
    let (from, to) = (f.from_ns, f.to_ns);
    let tx = db.transaction().unwrap();
    let mut node_ids = Vec::new();
    for (i, n) in f.nodes.iter().enumerate() {
        tx.execute(
            "INSERT INTO nodes (cluster, name, instance_type, capacity_type, region, zone, labels_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![n.cluster, n.name, n.instance_type, n.capacity_type, n.region, n.zone, serde_json::to_string(&n.labels).unwrap()],
        )
        .unwrap();
        let id = tx.last_insert_rowid();
        node_ids.push(id);
        let p = &f.prices[i];
        tx.execute(
            "INSERT INTO node_prices (node_id, effective_from_ns, instance_micros_per_hour, gpus, source) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, from as i64, p.instance_micros_per_hour as i64, p.gpus, p.source],
        )
        .unwrap();
        // One agent per node, one boot, a batch every 15 s all year.
        let last_seq = ((to - from) / (15 * NS)) as i64;
        tx.execute(
            "INSERT INTO agent_boots (cluster, agent_id, boot_id, last_seq, first_seen_ns, last_seen_ns) VALUES (?1, ?2, 'boot-1', ?3, ?4, ?5)",
            params![n.cluster, n.name, last_seq, from as i64, to as i64],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO boot_seqs (cluster, agent_id, boot_id, first_seq, last_seq) VALUES (?1, ?2, 'boot-1', 1, ?3)",
            params![n.cluster, n.name, last_seq],
        )
        .unwrap();
    }
    let mut gpu_ids = Vec::new();
    for (node, uuid) in &f.gpus {
        let (_, model, gib, _) = INSTANCES[f.node_kind[*node]];
        tx.execute(
            "INSERT INTO gpus (cluster, uuid, node_id, model, memory_total_bytes) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![f.nodes[*node].cluster, uuid, node_ids[*node], model, (gib << 30) as i64],
        )
        .unwrap();
        let id = tx.last_insert_rowid();
        gpu_ids.push(id);
        tx.execute(
            "INSERT INTO gpu_coverage (gpu_id, start_ns, end_ns) VALUES (?1, ?2, ?3)",
            params![id, from as i64, to as i64],
        )
        .unwrap();
    }
    // Workloads in the order they first appeared, as the collector numbers them.
    let mut workload_ids = Vec::with_capacity(f.runs.len());
    // Per run, the keys of its owner rows (`usage_buckets.owner_from`): from its start, and from the change.
    let mut owner_froms: Vec<(u64, Option<u64>)> = Vec::with_capacity(f.runs.len());
    {
        let mut ins = tx
            .prepare(
                "INSERT INTO workloads (key, kind, namespace, pod, container, controller_kind, controller_name, ecs_task_arn, slurm_job_id, user_name, identity_json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, '', '', ?8, ?9)",
            )
            .unwrap();
        let mut label =
            tx.prepare("INSERT INTO workload_labels (workload_id, key, value) VALUES (?1, ?2, ?3)").unwrap();
        let mut owner = tx
            .prepare(
                "INSERT INTO workload_owners (workload_id, from_ns, owner, team, department, component, system, rule)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, '', ?7)",
            )
            .unwrap();
        for (i, run) in f.runs.iter().enumerate() {
            let (w, o) = workload(f, i, &mut rng);
            let id = &w.identity;
            ins.execute(params![
                w.key,
                id.kind.as_str(),
                id.namespace,
                id.pod,
                id.container,
                id.controller_kind,
                id.controller_name,
                id.user,
                serde_json::to_string(id).unwrap()
            ])
            .unwrap();
            let wid = tx.last_insert_rowid();
            workload_ids.push(wid);
            let env = id.env.iter().map(|(k, v)| (format!("env:{k}"), v));
            for (k, v) in id.labels.iter().map(|(k, v)| (k.clone(), v)).chain(env) {
                label.execute(params![wid, k, v]).unwrap();
            }
            let component = id.labels.get("app.kubernetes.io/name").cloned().unwrap_or_default();
            let row = |team: usize| {
                if o.unallocated {
                    ("unallocated".to_string(), String::new(), String::new(), String::new())
                } else {
                    (
                        format!("group:default/{}", TEAMS[team]),
                        TEAMS[team].to_string(),
                        DEPARTMENTS[team % DEPARTMENTS.len()].to_string(),
                        component.clone(),
                    )
                }
            };
            let (owner_ref, team, department, comp) = row(o.team);
            owner.execute(params![wid, run.start_ns as i64, owner_ref, team, department, comp, o.rule]).unwrap();
            let mut change = None;
            if let Some(t) = o.moves_to {
                let mid = run.start_ns + (run.end_ns - run.start_ns) / 2 / NS * NS;
                let (owner_ref, team, department, comp) = row(t);
                owner.execute(params![wid, mid as i64, owner_ref, team, department, comp, o.rule]).unwrap();
                change = Some(mid);
            }
            owner_froms.push((run.start_ns, change));
        }
    }
    tx.commit().unwrap();

    let mut usage = db
        .prepare(
            "INSERT INTO usage_buckets (bucket_start_ns, gpu_id, workload_id, node_id, owner_from, held_ns, used_ns, used_micros,
               hybrid_idle_micros, allocation_used_micros, allocation_idle_micros, energy_millijoules, co2e_mg, co2e_known_ns)
             VALUES (?1, ?2, ?3, ?4, ?12, ?5, ?6, ?7, ?8, ?7, ?8, ?9, ?10, ?11)",
        )
        .unwrap();
    let mut gpu = db
        .prepare(
            "INSERT INTO gpu_buckets (bucket_start_ns, gpu_id, node_id, observed_ns, held_ns, used_ns, energy_millijoules,
               cost_micros, idle_micros, unallocated_micros, unpriced_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0)",
        )
        .unwrap();
    let mut next = vec![0usize; f.gpus.len()];
    let mut order: Vec<usize> = (0..f.nodes.len()).collect();
    let node_gpus: Vec<Vec<usize>> = {
        let mut v = vec![Vec::new(); f.nodes.len()];
        for (g, (n, _)) in f.gpus.iter().enumerate() {
            v[*n].push(g);
        }
        v
    };
    let hours = (to - from) / HOUR;
    for h in 0..hours {
        if h % 24 == 0 {
            db.execute_batch("BEGIN").unwrap();
        }
        let (hs, he) = (from + h * HOUR, from + (h + 1) * HOUR);
        // Batches arrive node by node, in no fixed order.
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for &n in &order {
            let (_, _, _, watts) = INSTANCES[f.node_kind[n]];
            let price = &f.prices[n];
            let mut rolls = Vec::with_capacity(8);
            for &g in &node_gpus[n] {
                let runs = &f.by_gpu[g];
                while next[g] < runs.len() && f.runs[runs[next[g]]].end_ns <= hs {
                    next[g] += 1;
                }
                let (mut held, mut used, mut energy, mut charged, mut idle) = (0u64, 0u64, 0u64, 0u64, 0u64);
                // A run whose owner changes inside the hour has a row for each owner (as the collector writes it).
                let parts = runs[next[g]..].iter().take_while(|&&r| f.runs[r].start_ns < he).flat_map(|&r| {
                    let run = &f.runs[r];
                    let (s, e) = (run.start_ns.max(hs), run.end_ns.min(he));
                    let (first, change) = owner_froms[r];
                    match change {
                        Some(m) if m > s && m < e => vec![(r, s, m, first), (r, m, e, m)],
                        Some(m) if m <= s => vec![(r, s, e, m)],
                        _ => vec![(r, s, e, first)],
                    }
                });
                for (r, s, e, owner_from) in parts {
                    let run = &f.runs[r];
                    let len = e - s;
                    let noise = (mix(r as u64 ^ (h << 20)) % 200_001) as i64 - 100_000;
                    let util = (run.util_ppm as i64 + noise).clamp(0, PPM as i64) as u64;
                    let used_ns = (u128::from(len) * u128::from(util) / u128::from(PPM)) as u64;
                    let cost = price.cost(s, e);
                    let used_micros = (u128::from(cost) * u128::from(used_ns) / u128::from(len)) as u64;
                    // Board power: 60 W idle up to its rating at full use; mW × s = mJ.
                    let mw = 60_000 + (watts * 1_000 - 60_000) * util / PPM;
                    let seg_energy = mw * len / NS;
                    let own_energy = (u128::from(seg_energy) * u128::from(used_ns) / u128::from(len)) as u64;
                    let co2e_mg = own_energy * 379 / 3_600_000; // 379 g CO2e per kWh
                    usage
                        .execute(params![
                            hs as i64,
                            gpu_ids[g],
                            workload_ids[r],
                            node_ids[n],
                            len as i64,
                            used_ns as i64,
                            used_micros as i64,
                            (cost - used_micros) as i64,
                            own_energy as i64,
                            co2e_mg as i64,
                            len as i64,
                            owner_from as i64
                        ])
                        .unwrap();
                    held += len;
                    used += used_ns;
                    energy += seg_energy;
                    charged += cost;
                    idle += cost - used_micros;
                }
                energy += 60_000 * (HOUR - held) / NS;
                rolls.push((g, held, used, energy, charged, idle));
            }
            for (g, held, used, energy, charged, idle) in rolls {
                let cost = price.cost(hs, he);
                gpu.execute(params![
                    hs as i64,
                    gpu_ids[g],
                    node_ids[n],
                    HOUR as i64,
                    held as i64,
                    used as i64,
                    energy as i64,
                    cost as i64,
                    idle as i64,
                    (cost - charged) as i64
                ])
                .unwrap();
            }
        }
        if h % 24 == 23 || h + 1 == hours {
            db.execute_batch("COMMIT").unwrap();
        }
    }
    drop((usage, gpu));
    db.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
    drop(db);
    t0.elapsed().as_secs_f64()
}

/// What the raw readings (`gpu_intervals`, `process_intervals`, kept for the raw retention only) cost per
/// GPU-day at the agent's default 15-second interval: a day of 64 GPUs in a second, scratch ledger.
fn raw_bytes_per_gpu_day(dir: &Path) -> f64 {
    let path = dir.join("raw.db");
    drop(SqliteLedger::open(&path, HOUR, 7 * DAY_NS).expect("create the scratch ledger"));
    let mut db = Connection::open(&path).unwrap();
    // Readings only: no GPU, node or workload rows for them to refer to.
    db.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA foreign_keys = OFF; VACUUM;")
        .unwrap();
    let empty = file_size(&path);
    let mut rng = Rng(0x7a3);
    let gpus = 64u64;
    let t0 = 1_790_000_000 * NS;
    let tx = db.transaction().unwrap();
    {
        let mut g = tx
            .prepare(
                "INSERT INTO gpu_intervals (gpu_id, start_ns, end_ns, node_id, utilization_ppm, memory_used_bytes, power_milliwatts, energy_millijoules)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .unwrap();
        let mut p = tx
            .prepare(
                "INSERT INTO process_intervals (gpu_id, start_ns, pid, end_ns, workload_id, sm_util_ppm, memory_util_ppm, used_memory_bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .unwrap();
        for i in 0..(DAY_NS / (15 * NS)) {
            let (s, e) = (t0 + i * 15 * NS, t0 + (i + 1) * 15 * NS);
            for gpu in 1..=gpus as i64 {
                let util = rng.below(PPM) as i64;
                let mw = 60_000 + rng.below(640_000) as i64;
                let mem = rng.below(80 << 30) as i64;
                g.execute(params![gpu, s as i64, e as i64, (gpu - 1) / 8 + 1, util, mem, mw, mw * 15]).unwrap();
                if rng.chance(85) {
                    p.execute(params![
                        gpu,
                        s as i64,
                        rng.range(1_000, 4_000_000) as i64,
                        e as i64,
                        rng.range(1, 50_000) as i64,
                        util,
                        rng.below(PPM) as i64,
                        mem
                    ])
                    .unwrap();
                }
            }
        }
    }
    tx.commit().unwrap();
    (file_size(&path) - empty) as f64 / gpus as f64
}

/// Runs `q` once to warm up, then `runs` times (fewer when it takes over a second); returns the sorted times.
fn time(runs: usize, mut q: impl FnMut()) -> Vec<Duration> {
    let t = Instant::now();
    q();
    let warm = t.elapsed();
    let n = if warm > Duration::from_secs(3) {
        runs.min(3)
    } else if warm > Duration::from_secs(1) {
        runs.min(5)
    } else {
        runs
    };
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            q();
            t.elapsed()
        })
        .collect();
    times.sort();
    times
}

struct Figure {
    what: String,
    median_ms: f64,
    worst_ms: f64,
    runs: usize,
    note: String,
}

fn figure(what: &str, times: &[Duration], note: String) -> Figure {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let f = Figure {
        what: what.to_string(),
        median_ms: ms(times[times.len() / 2]),
        worst_ms: ms(times[times.len() - 1]),
        runs: times.len(),
        note,
    };
    println!(
        "  {:<62} median {:>8.1} ms, worst {:>8.1} ms ({} runs){}",
        f.what,
        f.median_ms,
        f.worst_ms,
        f.runs,
        if f.note.is_empty() { String::new() } else { format!("; {}", f.note) }
    );
    f
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rfc3339(ns: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
}

fn main() {
    let gpus: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(env_or("LEDGER_YEAR_GPUS", 512));
    let workloads: usize = env_or("LEDGER_YEAR_WORKLOADS", 50_000);
    let days: u64 = env_or("LEDGER_YEAR_DAYS", 365);
    let runs: usize = env_or("LEDGER_YEAR_RUNS", 15).max(1);
    let http = std::env::var("LEDGER_YEAR_HTTP").map_or(true, |v| v != "0");
    let scratch = tempfile::tempdir().unwrap();
    let keep = std::env::var_os("LEDGER_YEAR_DB").map(PathBuf::from);
    let path = keep.clone().unwrap_or_else(|| scratch.path().join("year.db"));

    // The year ends at the last whole hour, so that the dashboard's windows (relative to now) hold data.
    let now = gpucost_types::clock::now_ns();
    let mut to_ns = now / HOUR * HOUR;
    println!(
        "ledger_year: {gpus} GPUs ({} nodes × 8), {workloads} workloads, {days} days of hourly rollups",
        gpus.div_ceil(8)
    );
    if path.exists() {
        let db = Connection::open(&path).unwrap();
        to_ns = db.query_row("SELECT MAX(bucket_start_ns) FROM gpu_buckets", [], |r| r.get::<_, i64>(0)).unwrap()
            as u64
            + HOUR;
        println!(
            "reusing {} (ends {}); LEDGER_YEAR_* sizes are not checked against it",
            path.display(),
            rfc3339(to_ns)
        );
    } else {
        let f = fleet(gpus, workloads, to_ns - days * DAY_NS, to_ns);
        println!(
            "generating {} .. {} into {} ({} workloads placed)",
            rfc3339(f.from_ns),
            rfc3339(f.to_ns),
            path.display(),
            f.runs.len()
        );
        let secs = generate(&path, &f);
        println!("generated in {secs:.1} s");
    }
    let from_ns = to_ns - days * DAY_NS;

    // Size: the file after a checkpoint, per GPU-day, and per table and index.
    let db = Connection::open(&path).unwrap();
    db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
    let bytes = file_size(&path);
    let stored_gpu_days: f64 =
        db.query_row("SELECT COUNT(*) FROM gpu_buckets", [], |r| r.get::<_, i64>(0)).unwrap() as f64 * HOUR as f64
            / DAY_NS as f64;
    let mut rows = BTreeMap::new();
    for t in ["gpu_buckets", "usage_buckets", "workloads", "workload_labels", "workload_owners", "gpus", "nodes"] {
        rows.insert(t, db.query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get::<_, i64>(0)).unwrap());
    }
    let mut sizes: Vec<(String, i64)> = db
        .prepare("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    sizes.truncate(8);
    drop(db);
    let per_gpu_day = bytes as f64 / stored_gpu_days;
    println!(
        "size: {:.0} MiB for {stored_gpu_days:.0} GPU-days: {:.1} KiB per GPU-day ({:.0} bytes per GPU-hour)",
        bytes as f64 / 1048576.0,
        per_gpu_day / 1024.0,
        per_gpu_day / 24.0
    );
    println!("  rows: {}", rows.iter().map(|(t, n)| format!("{t} {n}")).collect::<Vec<_>>().join(", "));
    println!(
        "  largest: {}",
        sizes.iter().map(|(n, b)| format!("{n} {:.0} MiB", *b as f64 / 1048576.0)).collect::<Vec<_>>().join(", ")
    );
    let raw = raw_bytes_per_gpu_day(scratch.path());
    println!(
        "  raw readings at 15 s (kept 7 days): {:.2} MiB per GPU-day, so {:.1} GiB for {gpus} GPUs whatever the history",
        raw / 1048576.0,
        raw * 7.0 * gpus as f64 / (1u64 << 30) as f64
    );

    // The periods: the last whole calendar month, and the dashboard's default window (7 days to the next
    // 6-hour mark, a chart bar per 6 hours) and its 90-day team colours.
    let month = Period::containing(Cadence::Monthly, Period::containing(Cadence::Monthly, to_ns).from_ns - 1);
    assert!(month.from_ns >= from_ns, "the ledger must hold the whole month {}", month.label);
    let six = 6 * HOUR;
    let (w_to, w_from) = (now.div_ceil(six) * six, now.div_ceil(six) * six - 7 * DAY_NS);
    let colors_from = now / DAY_NS * DAY_NS - 90 * DAY_NS;
    let hour_up = |t: u64| t.div_ceil(HOUR) * HOUR;

    let ledger = SqliteLedger::open(&path, HOUR, 7 * DAY_NS).unwrap();
    // The daily rollups of every day that has ended, as the collector's background job builds them.
    let t = Instant::now();
    let mut built = 0;
    loop {
        let n = ledger.build_daily_rollups(now, 400).expect("daily rollups");
        built += n;
        if n == 0 {
            break;
        }
    }
    let build_s = t.elapsed().as_secs_f64();
    {
        let db = Connection::open(&path).unwrap();
        db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
    }
    println!(
        "daily rollups: {built} days built in {build_s:.1} s; the file is now {:.0} MiB ({:.1} KiB per GPU-day)",
        file_size(&path) as f64 / 1048576.0,
        file_size(&path) as f64 / stored_gpu_days / 1024.0
    );
    let costs = |from_ns: u64, to_ns: u64, group_by: Vec<Dimension>, policy: Policy| {
        ledger.costs(&CostQuery { from_ns, to_ns, group_by, filters: vec![], policy }).unwrap()
    };
    let team = || vec![Dimension::Team];
    let mut figures = Vec::new();
    println!("library calls (what the HTTP handlers and `report chargeback` call), month {}:", month.label);
    let config = ReportConfig::default();
    let request = |group_by: &str, format: &str| {
        let p: HashMap<String, String> = [("period", month.label.as_str()), ("group_by", group_by), ("format", format)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_request(&p, now).unwrap()
    };
    for (what, group_by) in [("team", "team"), ("namespace", "namespace")] {
        let req = request(group_by, "csv");
        let mut lines = 0;
        let t = time(runs, || lines = render(&ledger, &req, &config, &|_| None).unwrap().body.lines().count() - 1);
        figures.push(figure(
            &format!("month chargeback by {what} (report chargeback, CSV)"),
            &t,
            format!("{lines} lines"),
        ));
    }
    for policy in [Policy::Hybrid, Policy::Utilization, Policy::Allocation] {
        let r = costs(month.from_ns, month.to_ns, vec![Dimension::Namespace], policy);
        let charged: u128 = r.rows.iter().map(|r| r.used + r.idle).sum();
        assert_eq!(charged + r.idle.unwrap() + r.unallocated.unwrap(), r.fleet, "{} reconciles", policy.name());
    }
    for (what, group_by) in [("namespace", vec![Dimension::Namespace]), ("team", team())] {
        let mut n = 0;
        let t = time(runs, || n = costs(month.from_ns, month.to_ns, group_by.clone(), Policy::Hybrid).rows.len());
        figures.push(figure(&format!("/api/v1/costs, month, group_by={what}"), &t, format!("{n} rows")));
    }
    {
        let mut n = 0;
        let t = time(runs, || {
            n = ledger
                .usage(&UsageQuery { from_ns: month.from_ns, to_ns: month.to_ns, group_by: vec![Dimension::Cluster] })
                .unwrap()
                .rows
                .len()
        });
        figures.push(figure("/api/v1/usage, month, group_by=cluster", &t, format!("{n} rows")));
        let t = time(runs, || {
            n = ledger
                .usage(&UsageQuery { from_ns: month.from_ns, to_ns: month.to_ns, group_by: vec![Dimension::Namespace] })
                .unwrap()
                .rows
                .len()
        });
        figures.push(figure("/api/v1/usage, month, group_by=namespace", &t, format!("{n} rows")));
    }
    {
        let req = request("team", "focus");
        let mut size = 0;
        let t = time(runs.min(5), || size = render(&ledger, &req, &config, &|_| None).unwrap().body.len());
        figures.push(figure(
            "month FOCUS export (allocations per GPU-day)",
            &t,
            format!("{:.0} MB of CSV", size as f64 / 1e6),
        ));
    }
    println!("the dashboard on load (7 days to {}, by 6 h; team colours over 90 days):", rfc3339(w_to));
    let dash: Vec<(String, u64, u64, Vec<Dimension>)> = {
        let mut v = vec![
            ("teams' colours: costs by team, 90 days".to_string(), colors_from, hour_up(now), team()),
            ("cluster menu: costs by cluster, 7 days".to_string(), w_from, w_to, vec![Dimension::Cluster]),
            ("top models: costs by model, 7 days".to_string(), w_from, w_to, vec![Dimension::Model]),
            ("teams table: costs by team, 7 days".to_string(), w_from, w_to, team()),
        ];
        for i in 0..28 {
            v.push((format!("cost by team: bar {i}"), w_from + i * six, w_from + (i + 1) * six, team()));
        }
        v
    };
    for (what, f, t, g) in dash.iter().take(4) {
        let times = time(runs, || drop(costs(*f, *t, g.clone(), Policy::Hybrid)));
        figures.push(figure(what, &times, String::new()));
    }
    {
        let t = time(runs, || {
            for (_, f, t, g) in &dash[4..] {
                drop(costs(*f, *t, g.clone(), Policy::Hybrid));
            }
        });
        figures.push(figure("cost by team chart: 28 queries of 6 h, one after another", &t, String::new()));
        let t = time(runs, || {
            for (_, f, t, g) in &dash {
                drop(costs(*f, *t, g.clone(), Policy::Hybrid));
            }
        });
        figures.push(figure("all 32 cost queries, one after another", &t, String::new()));
    }
    drop(ledger);

    if http {
        http_figures(&path, &month, &dash, runs, &mut figures);
    }

    // The month closed (last: it changes the file): its report reads what closing froze, summed per day.
    {
        let ledger = SqliteLedger::open(&path, HOUR, 7 * DAY_NS).unwrap();
        let t = Instant::now();
        match ledger.close_period(&month, now) {
            Ok(_) => println!("closed {} in {:.1} s", month.label, t.elapsed().as_secs_f64()),
            Err(e) => println!("closing {}: {e}", month.label),
        }
        let req = request("team", "csv");
        let mut lines = 0;
        let t = time(runs, || lines = render(&ledger, &req, &config, &|_| None).unwrap().body.lines().count() - 1);
        figures.push(figure(
            "closed month's chargeback by team (report chargeback, CSV)",
            &t,
            format!("{lines} lines"),
        ));
    }

    println!();
    println!("for BENCHMARKS.md (date, GPUs, workloads, GPU-days, bytes per GPU-day, then the figures):");
    println!(
        "| {} | {gpus} | {workloads} | {stored_gpu_days:.0} | {:.0} MiB, **{:.1} KiB per GPU-day** (+ {:.2} MiB per GPU-day raw, for 7 days) |",
        &rfc3339(now)[..10],
        bytes as f64 / 1048576.0,
        per_gpu_day / 1024.0,
        raw / 1048576.0
    );
    println!();
    println!("| query | median | worst | runs | |");
    println!("|---|---|---|---|---|");
    for f in &figures {
        println!("| {} | {:.0} ms | {:.0} ms | {} | {} |", f.what, f.median_ms, f.worst_ms, f.runs, f.note);
    }
    if keep.is_none() {
        drop(scratch);
    }
}

/// The same reports as real HTTP requests to `gpucost-collector serve` on the ledger: month chargeback and
/// costs, and the dashboard's requests on load as a browser makes them (the team colours first, then the
/// rest six at a time).
fn http_figures(
    path: &Path,
    month: &Period,
    dash: &[(String, u64, u64, Vec<Dimension>)],
    runs: usize,
    figures: &mut Vec<Figure>,
) {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).map(|d| d.join("gpucost-collector"));
    if !bin.as_ref().is_some_and(|b| b.exists()) {
        println!("HTTP: no release collector next to the bench (cargo build --release -p gpucost-collector); skipped");
        return;
    }
    let c = gpucost_e2e::Collector::start(path);
    println!("HTTP, to `gpucost-collector serve` on the ledger (release build):");
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(120))).build().into();
    let get = |agent: &ureq::Agent, p: &str| -> usize {
        let mut r = agent.get(&c.http(p)).call().unwrap_or_else(|e| panic!("GET {p}: {e}"));
        assert_eq!(r.status(), 200, "GET {p}");
        r.body_mut().with_config().limit(1 << 30).read_to_string().unwrap().len()
    };
    let iso = |ns: u64| rfc3339(ns);
    let name = |d: &[Dimension]| d.iter().map(Dimension::name).collect::<Vec<_>>().join(",");
    for group_by in ["team", "namespace"] {
        let p = format!("/api/v1/chargeback?period={}&group_by={group_by}&format=csv", month.label);
        let t = time(runs, || {
            get(&agent, &p);
        });
        figures.push(figure(&format!("HTTP: GET /api/v1/chargeback month, by {group_by}, CSV"), &t, String::new()));
    }
    for group_by in ["namespace", "team"] {
        let p = format!("/api/v1/costs?from={}&to={}&group_by={group_by}", iso(month.from_ns), iso(month.to_ns));
        let t = time(runs, || {
            get(&agent, &p);
        });
        figures.push(figure(&format!("HTTP: GET /api/v1/costs month, group_by={group_by}"), &t, String::new()));
    }
    // The page: team colours first (it waits for them up to 2 s), then every panel's requests at once; a
    // browser opens at most six connections to one host.
    let first = format!("/api/v1/costs?from={}&group_by=team", iso(dash[0].1));
    let mut rest: Vec<String> = dash[1..]
        .iter()
        .map(|(_, f, t, g)| format!("/api/v1/costs?from={}&to={}&group_by={}", iso(*f), iso(*t), name(g)))
        .collect();
    rest.extend(["/api/v1/budgets/status", "/api/v1/budgets", "/api/v1/fleet"].map(String::from));
    let t = time(runs, || {
        get(&agent, &first);
    });
    figures.push(figure("HTTP: dashboard, team colours (costs by team, 90 days)", &t, String::new()));
    let agents: Vec<ureq::Agent> = (0..6)
        .map(|_| ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(120))).build().into())
        .collect();
    let t = time(runs, || {
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for a in &agents {
                let (next, rest, get) = (&next, &rest, &get);
                s.spawn(move || {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(p) = rest.get(i) else { break };
                        get(a, p);
                    }
                });
            }
        });
    });
    figures.push(figure(
        &format!("HTTP: dashboard, the other {} requests, 6 at a time", rest.len()),
        &t,
        String::new(),
    ));
    let t = time(runs, || {
        get(&agent, &first);
        for p in &rest {
            get(&agent, p);
        }
    });
    figures.push(figure(
        &format!("HTTP: dashboard, all {} requests one after another", rest.len() + 1),
        &t,
        String::new(),
    ));
    drop(c);
}
