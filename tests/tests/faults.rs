//! Fault injection: every test breaks something between the simulated GPU nodes and the ledger, then
//! asserts that the ledger holds exactly the simulator's ground truth: no GPU-second lost, none billed
//! twice. Each prints a `fault-table` row (docs/reliability.md lists them).
//!
//! The agents replay the simulator on a virtual clock, so the truth of any window is known exactly.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gpucost_agent::sim::{Fleet, FleetSpec, GpuTime, Truth};
use gpucost_e2e::{Collector, Proc, agent, bin, free_port};

const SEED: u64 = 5;
const NODES: u32 = 3;
/// 2026-11-02T00:00:00Z.
const START_S: u64 = 1_793_577_600;
const SLOT_S: u64 = 15;
const NS: u64 = 1_000_000_000;

fn spec() -> FleetSpec {
    FleetSpec { seed: SEED, clusters: 1, nodes: NODES }
}

fn rfc3339(s: u64) -> String {
    humantime::format_rfc3339(std::time::UNIX_EPOCH + Duration::from_secs(s)).to_string()
}

/// A simulated node replaying `slots` intervals of `slot_s` from `start_s`, keeping unacked batches in `spool`.
fn sim_args(url: &str, node: u32, start_s: u64, slot_s: u64, slots: u64, pace: &str, spool: &Path) -> Vec<String> {
    let slot = format!("{slot_s}s");
    let sample = if slot_s >= 15 { "1s".to_string() } else { "100ms".to_string() };
    [
        "--source",
        "sim",
        "--collector",
        url,
        "--sim-seed",
        &SEED.to_string(),
        "--sim-nodes",
        &NODES.to_string(),
        "--sim-clusters",
        "1",
        "--sim-node",
        &node.to_string(),
        "--sim-start",
        &rfc3339(start_s),
        "--sim-end",
        &rfc3339(start_s + slots * slot_s),
        "--sim-pace",
        pace,
        "--report-interval",
        &slot,
        "--sample-interval",
        &sample,
        "--spool-dir",
        &spool.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The simulator's truth for `nodes` over the slots [from, to) of `slot_s`, skipping `except` (slot indexes
/// counted from `start_s`).
fn truth(nodes: &[u32], start_s: u64, slot_s: u64, slots: u64, except: &[u64]) -> Truth {
    let fleet = Fleet::generate(spec());
    let mut all = Truth::default();
    for &n in nodes {
        for k in (0..slots).filter(|k| !except.contains(k)) {
            let from = (start_s + k * slot_s) * NS;
            let t = fleet.nodes[n as usize].truth(from, from + slot_s * NS, slot_s * NS);
            add(&mut all, &t);
        }
    }
    all
}

fn add(to: &mut Truth, t: &Truth) {
    let plus = |a: &mut GpuTime, b: &GpuTime| {
        a.observed_ns += b.observed_ns;
        a.held_ns += b.held_ns;
        a.used_ns += b.used_ns;
    };
    for (k, v) in &t.gpus {
        plus(to.gpus.entry(k.clone()).or_default(), v);
    }
    for (k, v) in &t.workloads {
        plus(to.workloads.entry(k.clone()).or_default(), v);
    }
}

/// Compares the ledger with the truth, prints the fault-table row and asserts: held and observed GPU time
/// exact per GPU and per workload; used time exact too, or within `used_ppm` of the held time where the
/// spool merged intervals (a merged interval's mean utilisation is stored in parts per million).
fn assert_no_loss(fault: &str, stored: &Truth, truth: &Truth, used_ppm: u64) {
    let (mut lost, mut twice, mut used_off) = (0u64, 0u64, 0u64);
    let zero = GpuTime::default();
    let keys: std::collections::BTreeSet<_> = stored.workloads.keys().chain(truth.workloads.keys()).collect();
    for k in &keys {
        let s = stored.workloads.get(*k).unwrap_or(&zero);
        let t = truth.workloads.get(*k).unwrap_or(&zero);
        lost += t.held_ns.saturating_sub(s.held_ns);
        twice += s.held_ns.saturating_sub(t.held_ns);
        used_off += s.used_ns.abs_diff(t.used_ns);
    }
    let held: u64 = truth.workloads.values().map(|w| w.held_ns).sum();
    let stored_held: u64 = stored.workloads.values().map(|w| w.held_ns).sum();
    println!(
        "fault-table | {fault} | truth {:.0} held GPU-s | ledger {:.0} held GPU-s | lost {:.3} GPU-s | twice {:.3} GPU-s | used off by {:.6} GPU-s",
        held as f64 / 1e9,
        stored_held as f64 / 1e9,
        lost as f64 / 1e9,
        twice as f64 / 1e9,
        used_off as f64 / 1e9
    );
    assert!(held > 0, "{fault}: the run should have held some GPU time");
    assert_eq!((lost, twice), (0, 0), "{fault}: held GPU-ns lost and billed twice");
    for (uuid, t) in &truth.gpus {
        let s = stored.gpus.get(uuid).unwrap_or(&zero);
        assert_eq!((s.observed_ns, s.held_ns), (t.observed_ns, t.held_ns), "{fault}: GPU {uuid} observed/held");
    }
    for k in &keys {
        let s = stored.workloads.get(*k).unwrap_or(&zero);
        let t = truth.workloads.get(*k).unwrap_or(&zero);
        let allowed = t.held_ns * used_ppm / 1_000_000;
        assert!(
            s.used_ns.abs_diff(t.used_ns) <= allowed,
            "{fault}: {k:?} used {} vs {} (±{allowed})",
            s.used_ns,
            t.used_ns
        );
    }
}

fn stored(c: &Collector, start_s: u64, slot_s: u64, slots: u64) -> Truth {
    gpucost_e2e::stored(c, start_s, start_s + slots * slot_s)
}

fn wait_ok(a: gpucost_e2e::Agent, limit: Duration) -> String {
    let (ok, log) = a.wait(limit);
    assert!(ok, "agent failed:\n{log}");
    log
}

/// The agent's own `/metrics` value of `name` (0 when absent), scraped from `addr`.
fn agent_metric(addr: &str, name: &str) -> f64 {
    let Ok(resp) = ureq::get(&format!("http://{addr}/metrics")).call() else { return -1.0 };
    let text = resp.into_body().read_to_string().unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

#[test]
fn repeated_sigkill_of_the_collector_during_writes() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(&dir.path().join("ledger.db"));
    let (grpc, http) = (c.grpc_port, c.http_port);
    let slots = 300;
    let agents: Vec<_> = (0..NODES)
        .map(|n| {
            let spool = dir.path().join(format!("spool{n}"));
            agent(
                &sim_args(&c.grpc_url(), n, START_S, SLOT_S, slots, "10ms", &spool),
                &dir.path().join(format!("agent{n}.log")),
            )
        })
        .collect();
    let mut c = c;
    for pause_ms in [400, 900, 250, 1300, 600] {
        std::thread::sleep(Duration::from_millis(pause_ms));
        let db = c.kill();
        std::thread::sleep(Duration::from_millis(300));
        c = Collector::start_on(&db, grpc, http);
    }
    let logs: Vec<String> = agents.into_iter().map(|a| wait_ok(a, Duration::from_secs(240))).collect();
    assert!(
        logs.iter().any(|l| l.contains("stream broke") || l.contains("cannot reach")),
        "the kills should be noticed"
    );
    let nodes: Vec<u32> = (0..NODES).collect();
    assert_no_loss(
        "collector SIGKILLed 5 times during writes",
        &stored(&c, START_S, SLOT_S, slots),
        &truth(&nodes, START_S, SLOT_S, slots, &[]),
        0,
    );
}

#[test]
fn agent_sigkilled_mid_batch_and_restarted_resumes_from_its_spool() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(&dir.path().join("ledger.db"));
    let (grpc, http) = (c.grpc_port, c.http_port);
    let slots = 240;
    let spool = dir.path().join("spool");
    let args = sim_args(&c.grpc_url(), 0, START_S, SLOT_S, slots, "15ms", &spool);
    let mut a = agent(&args, &dir.path().join("agent-0.log"));
    let mut c = Some(c);
    for round in 1..=4 {
        std::thread::sleep(Duration::from_millis(600));
        if round == 3 {
            // Once with the collector away, so that the killed agent leaves batches in its spool.
            let db = c.take().expect("collector").kill();
            std::thread::sleep(Duration::from_millis(600));
            drop(a);
            std::thread::sleep(Duration::from_millis(200));
            let left = std::fs::read_dir(&spool)
                .unwrap()
                .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "batch")))
                .count();
            assert!(left > 0, "the killed agent should have left unacked batches in its spool");
            a = agent(&args, &dir.path().join(format!("agent-{round}.log")));
            std::thread::sleep(Duration::from_millis(400));
            c = Some(Collector::start_on(&db, grpc, http));
        } else {
            drop(a); // SIGKILL
            a = agent(&args, &dir.path().join(format!("agent-{round}.log")));
        }
    }
    wait_ok(a, Duration::from_secs(240));
    let resumed = (1..=4)
        .map(|r| std::fs::read_to_string(dir.path().join(format!("agent-{r}.log"))).unwrap_or_default())
        .filter(|l| l.contains("going on from where the last run got to"))
        .count();
    assert!(resumed >= 3, "restarted agents resume their clock from the spool ({resumed} did)");
    let c = c.expect("collector");
    assert_no_loss(
        "agent SIGKILLed 4 times mid-batch (once with the collector down)",
        &stored(&c, START_S, SLOT_S, slots),
        &truth(&[0], START_S, SLOT_S, slots, &[]),
        0,
    );
}

#[test]
fn a_collector_outage_fills_the_spool_which_merges_then_drains() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let metrics = format!("127.0.0.1:{}", free_port());
    let slots = 200;
    let mut args =
        sim_args(&format!("http://127.0.0.1:{grpc}"), 1, START_S, SLOT_S, slots, "0s", &dir.path().join("spool"));
    args.extend(["--max-pending", "24", "--metrics-addr", &metrics].map(String::from));
    let a = agent(&args, &dir.path().join("agent.log"));
    // Nobody listens: the whole replay goes to the spool, which must stay within 24 batches.
    wait_for("all 200 intervals sampled", Duration::from_secs(60), || {
        agent_metric(&metrics, "gpucost_agent_intervals_total") >= slots as f64
    });
    let spooled = agent_metric(&metrics, "gpucost_agent_spool_batches");
    let merged = agent_metric(&metrics, "gpucost_agent_spool_merged_total");
    let dropped = agent_metric(&metrics, "gpucost_agent_spool_dropped_batches_total");
    println!("outage: {spooled} batches spooled for {slots} intervals, {merged} merges, {dropped} dropped");
    assert!(spooled <= 24.0 && spooled > 0.0, "{spooled}");
    assert!(merged >= (slots / 2) as f64, "{merged} merges");
    assert_eq!(dropped, 0.0);
    let c = Collector::start_on(&dir.path().join("ledger.db"), grpc, http);
    wait_ok(a, Duration::from_secs(120));
    assert_no_loss(
        "collector down for a 50-minute replay: spool of 24 batches merged, then drained",
        &stored(&c, START_S, SLOT_S, slots),
        &truth(&[1], START_S, SLOT_S, slots, &[]),
        1,
    );
}

#[test]
fn duplicate_and_reordered_batches_are_stored_once() {
    use gpucost_agent::sampler::{Clock, Sampler};
    use gpucost_agent::sim::SimSource;
    use gpucost_agent::wire::Framer;
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(&dir.path().join("ledger.db"));
    let slots = 40u64;
    let node = Fleet::generate(spec()).nodes.swap_remove(2);
    let agent_id = node.agent_id.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let batches: Vec<_> = rt.block_on(async {
        let mut sampler = Sampler::new(
            Box::new(SimSource::new(node, SLOT_S * NS)),
            None,
            Duration::from_secs(1),
            Duration::from_secs(SLOT_S),
            Clock::Virtual { start_unix_nanos: START_S * NS, pace: Duration::ZERO },
        );
        let mut framer = Framer::new(agent_id, "boot-reorder".into());
        let mut out = Vec::new();
        for _ in 0..slots {
            let report = sampler.next_interval().await.expect("interval");
            out.push(framer.frame(sampler.source().node(), report));
        }
        out
    });
    let pick = |ix: &[usize]| ix.iter().map(|&i| batches[i].clone()).collect::<Vec<_>>();
    let streams: Vec<Vec<usize>> = vec![
        (10..20).collect(),
        (0..5).collect(),
        (30..40).collect(),
        (5..15).collect(),        // half resends
        (20..30).rev().collect(), // backwards
        vec![3, 3, 3, 25, 25],    // the same batch thrice in one stream
        (0..40).rev().collect(),  // all again, backwards
    ];
    let (mut stored_acks, mut duplicate_acks) = (0, 0);
    for s in &streams {
        let acks = gpucost_e2e::send_batches(&c.grpc_url(), pick(s));
        assert_eq!(acks.len(), s.len(), "every batch acked");
        for a in acks {
            match gpucost_proto::v1::AckStatus::try_from(a.status) {
                Ok(gpucost_proto::v1::AckStatus::Stored) => stored_acks += 1,
                Ok(gpucost_proto::v1::AckStatus::Duplicate) => duplicate_acks += 1,
                other => panic!("unexpected ack {other:?}"),
            }
        }
    }
    let sent: usize = streams.iter().map(Vec::len).sum();
    assert_eq!((stored_acks, duplicate_acks), (40, sent - 40), "each batch stored once, every repeat a duplicate");
    assert_no_loss(
        &format!("{sent} batches sent for 40 intervals: duplicated, reordered, backwards, over 7 streams"),
        &stored(&c, START_S, SLOT_S, slots),
        &truth(&[2], START_S, SLOT_S, slots, &[]),
        0,
    );
}

#[test]
fn agent_clock_skew_of_ten_minutes_either_way_loses_nothing() {
    // A virtual clock running at real speed, set ahead of or behind real time, is what a collector sees of
    // an agent whose clock is off. 1 s intervals, paced 1 s.
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(&dir.path().join("ledger.db"));
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let slots = 8;
    let runs = [(0u32, now_s + 600, "+10 min"), (1, now_s - 600, "-10 min")];
    let agents: Vec<_> = runs
        .iter()
        .map(|&(n, start, _)| {
            agent(
                &sim_args(&c.grpc_url(), n, start, 1, slots, "1s", &dir.path().join(format!("spool{n}"))),
                &dir.path().join(format!("agent{n}.log")),
            )
        })
        .collect();
    // And one 8 s ahead of a collector that allows 2 s: refused for now, kept, sent again, stored.
    let strict = Collector::start_with(
        &dir.path().join("strict.db"),
        free_port(),
        free_port(),
        &["--max-clock-skew", "2s"],
        &[],
    );
    let ahead = now_s + 8;
    let early = agent(
        &sim_args(&strict.grpc_url(), 2, ahead, 1, slots, "1s", &dir.path().join("spool2")),
        &dir.path().join("agent2.log"),
    );
    for a in agents {
        wait_ok(a, Duration::from_secs(90));
    }
    let log = wait_ok(early, Duration::from_secs(120));
    assert!(
        log.contains("in the future by the collector"),
        "the early batches should have been refused for now:\n{log}"
    );
    for (n, start, what) in runs {
        // The API widens windows to whole (hour) buckets, which may hold the other node's seconds too: keep
        // this node's GPUs.
        let want = truth(&[n], start, 1, slots, &[]);
        let mut got = stored(&c, start, 1, slots);
        got.gpus.retain(|uuid, _| want.gpus.contains_key(uuid));
        got.workloads.retain(|(uuid, _), _| want.gpus.contains_key(uuid));
        assert_no_loss(&format!("agent clock {what}"), &got, &want, 0);
    }
    assert_no_loss(
        "agent clock +8 s against a collector allowing 2 s (refused, kept, resent)",
        &stored(&strict, ahead, 1, slots),
        &truth(&[2], ahead, 1, slots, &[]),
        0,
    );
}

#[test]
fn a_corrupt_spool_file_is_quarantined_and_the_rest_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let metrics = format!("127.0.0.1:{}", free_port());
    let spool = dir.path().join("spool");
    let slots = 30;
    let mut args = sim_args(&format!("http://127.0.0.1:{grpc}"), 0, START_S, SLOT_S, slots, "0s", &spool);
    let first = agent(
        &[args.clone(), vec!["--metrics-addr".into(), metrics.clone()]].concat(),
        &dir.path().join("agent-1.log"),
    );
    wait_for("30 intervals spooled", Duration::from_secs(60), || {
        agent_metric(&metrics, "gpucost_agent_spool_batches") >= slots as f64
    });
    drop(first); // SIGKILL, the collector never seen
    let record = |seq: u64| {
        std::fs::read_dir(&spool)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(&format!("-{seq:020}.batch"))))
            .unwrap_or_else(|| panic!("record of seq {seq}"))
    };
    // One record with a flipped byte, one torn in half.
    let flipped = record(5);
    let mut bytes = std::fs::read(&flipped).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&flipped, bytes).unwrap();
    let torn = record(9);
    let bytes = std::fs::read(&torn).unwrap();
    std::fs::write(&torn, &bytes[..bytes.len() / 2]).unwrap();

    let c = Collector::start_on(&dir.path().join("ledger.db"), grpc, http);
    args.extend(["--metrics-addr".to_string(), metrics]);
    let log = wait_ok(agent(&args, &dir.path().join("agent-2.log")), Duration::from_secs(60));
    assert_eq!(log.matches("a corrupt record was quarantined").count(), 2, "{log}");
    for f in [&flipped, &torn] {
        assert!(spool.join("quarantine").join(f.file_name().unwrap()).exists(), "{} quarantined", f.display());
    }
    // Exactly the two corrupt intervals (seq 5 and 9: slots 4 and 8) are missing, nothing else.
    assert_no_loss(
        "two corrupt spool records (a flipped byte, a torn write): quarantined, the other 28 delivered",
        &stored(&c, START_S, SLOT_S, slots),
        &truth(&[0], START_S, SLOT_S, slots, &[4, 8]),
        0,
    );
}

/// Runs `args` of the agent inside a private mount namespace whose spool folder is a tmpfs of `size`.
fn agent_on_small_disk(spool: &Path, size: &str, args: &[String], log: &Path) -> Option<gpucost_e2e::Agent> {
    std::fs::create_dir_all(spool).unwrap();
    let script = "mount -t tmpfs -o size=\"$1\" gpucost-spool \"$2\" || exit 97; shift 3; exec \"$0\" \"$@\"";
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", script])
        .arg(bin("gpucost-agent"))
        .arg(size)
        .arg(spool)
        .arg("--")
        .args(["--log-format", "json", "--insecure"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    let mut child = cmd.spawn().ok()?;
    std::thread::sleep(Duration::from_millis(300));
    if let Ok(Some(status)) = child.try_wait() {
        eprintln!(
            "cannot mount a tmpfs in a private mount namespace ({status}): {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        return None;
    }
    Some(gpucost_e2e::Agent::from_child(child, log))
}

#[test]
fn a_full_disk_under_the_spool_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let metrics = format!("127.0.0.1:{}", free_port());
    let spool = dir.path().join("spool");
    let slots = 120;
    let mut args = sim_args(&format!("http://127.0.0.1:{grpc}"), 1, START_S, SLOT_S, slots, "0s", &spool);
    args.extend(["--metrics-addr".to_string(), metrics.clone()]);
    let Some(a) = agent_on_small_disk(&spool, "64k", &args, &dir.path().join("agent.log")) else {
        assert!(!under_ci(), "CI=true: this test needs `unshare --mount` and tmpfs (root)");
        return;
    };
    wait_for("120 intervals sampled", Duration::from_secs(60), || {
        agent_metric(&metrics, "gpucost_agent_intervals_total") >= slots as f64
    });
    let write_errors = agent_metric(&metrics, "gpucost_agent_spool_write_errors_total");
    let merged = agent_metric(&metrics, "gpucost_agent_spool_merged_total");
    let dropped = agent_metric(&metrics, "gpucost_agent_spool_dropped_batches_total");
    println!("full disk: {write_errors} batches kept in memory, {merged} merges, {dropped} dropped");
    assert!(merged > 0.0, "a full disk should make the spool merge to find room");
    assert_eq!(dropped, 0.0);
    let c = Collector::start_on(&dir.path().join("ledger.db"), grpc, http);
    let log = wait_ok(a, Duration::from_secs(120));
    assert!(log.contains("No space left") || write_errors == 0.0, "{log}");
    assert_no_loss(
        "spool on a full 64 KiB disk (tmpfs) during an outage: merged to find room",
        &stored(&c, START_S, SLOT_S, slots),
        &truth(&[1], START_S, SLOT_S, slots, &[]),
        1,
    );
}

/// Two network namespaces joined by a veth pair, for an agent and a collector that reach each other only
/// through it; impairments are nftables rules and a tbf shaper on the agent's side. Deleted on drop.
struct Netns {
    agent_ns: String,
    collector_ns: String,
    collector_ip: &'static str,
}

impl Netns {
    fn create() -> Result<Self, String> {
        let id = std::process::id();
        let n = Self { agent_ns: format!("gpc-a{id}"), collector_ns: format!("gpc-c{id}"), collector_ip: "10.231.0.2" };
        let veth_a = format!("gpa{id}");
        let veth_c = format!("gpc{id}");
        let steps: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), n.agent_ns.clone()],
            vec!["netns".into(), "add".into(), n.collector_ns.clone()],
            vec![
                "link".into(),
                "add".into(),
                veth_a.clone(),
                "netns".into(),
                n.agent_ns.clone(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                veth_c.clone(),
                "netns".into(),
                n.collector_ns.clone(),
            ],
        ];
        for s in steps {
            ip(None, &s)?;
        }
        ip(Some(&n.agent_ns), &["addr", "add", "10.231.0.1/30", "dev", &veth_a])?;
        ip(Some(&n.collector_ns), &["addr", "add", "10.231.0.2/30", "dev", &veth_c])?;
        for (ns, dev) in [(&n.agent_ns, &veth_a), (&n.collector_ns, &veth_c)] {
            ip(Some(ns), &["link", "set", "lo", "up"])?;
            ip(Some(ns), &["link", "set", dev, "up"])?;
        }
        n.exec_ok(
            &n.agent_ns,
            "tc",
            &["qdisc", "add", "dev", &veth_a, "root", "tbf", "rate", "2mbit", "burst", "16kbit", "latency", "200ms"],
        )?;
        n.exec_ok(&n.agent_ns, "nft", &["add", "table", "inet", "gpucost"])?;
        n.exec_ok(
            &n.agent_ns,
            "nft",
            &["add", "chain", "inet", "gpucost", "out", "{ type filter hook output priority 0; }"],
        )?;
        n.exec_ok(
            &n.agent_ns,
            "nft",
            &["add", "chain", "inet", "gpucost", "in", "{ type filter hook input priority 0; }"],
        )?;
        Ok(n)
    }

    fn exec_ok(&self, ns: &str, program: &str, args: &[&str]) -> Result<(), String> {
        let out =
            Command::new("ip").args(["netns", "exec", ns, program]).args(args).output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{program} {args:?} in {ns}: {}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    /// Replaces the agent side's packet filter: drop `percent` of packets each way.
    fn loss(&self, percent: u32) {
        self.exec_ok(&self.agent_ns, "nft", &["flush", "table", "inet", "gpucost"]).unwrap();
        if percent == 0 {
            return;
        }
        for chain in ["out", "in"] {
            let rule = if percent >= 100 {
                vec!["drop".to_string()]
            } else {
                vec![
                    "numgen".into(),
                    "random".into(),
                    "mod".into(),
                    "100".into(),
                    "<".into(),
                    percent.to_string(),
                    "drop".into(),
                ]
            };
            let mut args = vec!["add", "rule", "inet", "gpucost", chain];
            args.extend(rule.iter().map(String::as_str));
            self.exec_ok(&self.agent_ns, "nft", &args).unwrap();
        }
    }

    fn spawn(&self, ns: &str, program: &Path, args: &[String], log: &Path) -> Proc {
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("ip netns exec");
        Proc(child)
    }

    /// GET `path` on the collector's HTTP port from inside its namespace.
    fn get(&self, port: u16, path: &str) -> Option<serde_json::Value> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.collector_ns, "curl", "-sf", "--max-time", "5"])
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .output()
            .ok()?;
        out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
    }
}

fn ip(ns: Option<&str>, args: &[impl AsRef<std::ffi::OsStr>]) -> Result<(), String> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    let out = cmd.args(args).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {:?}: {}",
            args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect::<Vec<_>>(),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(None, &["netns", "del", &self.agent_ns]);
        let _ = ip(None, &["netns", "del", &self.collector_ns]);
    }
}

#[test]
fn a_network_partition_with_loss_between_namespaces_loses_nothing() {
    let net = match Netns::create() {
        Ok(n) => n,
        Err(e) => {
            assert!(!under_ci(), "CI=true: this test needs network namespaces, tc and nft (root): {e}");
            eprintln!("skipped: {e}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let http = 8080;
    let db = dir.path().join("ledger.db");
    let collector_args: Vec<String> = [
        "--log-format",
        "json",
        "serve",
        "--insecure",
        "--max-agent-batches-per-minute",
        "0",
        "--grpc",
        &format!("{}:50051", net.collector_ip),
        "--http",
        &format!("127.0.0.1:{http}"),
        "--db",
        &db.display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    let _collector =
        net.spawn(&net.collector_ns, &bin("gpucost-collector"), &collector_args, &dir.path().join("collector.log"));
    wait_for("the collector in its namespace", Duration::from_secs(60), || net.get(http, "/api/v1/fleet").is_some());
    let slots = 200;
    let url = format!("http://{}:50051", net.collector_ip);
    let mut args = sim_args(&url, 0, START_S, SLOT_S, slots, "25ms", &dir.path().join("spool"));
    args.splice(0..0, ["--log-format", "json", "--insecure"].map(String::from));
    let agent_log = dir.path().join("agent.log");
    let mut agent = net.spawn(&net.agent_ns, &bin("gpucost-agent"), &args, &agent_log);
    // 15 % loss each way, then a full partition, then 5 % loss, then a clean link.
    std::thread::sleep(Duration::from_millis(800));
    net.loss(15);
    std::thread::sleep(Duration::from_secs(2));
    net.loss(100);
    std::thread::sleep(Duration::from_secs(6));
    net.loss(5);
    std::thread::sleep(Duration::from_secs(2));
    net.loss(0);
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(s) = agent.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "agent did not finish: {}",
            std::fs::read_to_string(&agent_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "agent failed: {}", std::fs::read_to_string(&agent_log).unwrap_or_default());
    // The ledger, read from inside the collector's namespace.
    let mut t = Truth::default();
    let window = format!("from={START_S}&to={}", START_S + slots * SLOT_S);
    let by_gpu = net.get(http, &format!("/api/v1/usage?{window}&group_by=gpu")).expect("usage by GPU");
    for r in by_gpu["rows"].as_array().unwrap() {
        let g = t.gpus.entry(r["gpu"].as_str().unwrap().to_string()).or_default();
        (g.observed_ns, g.held_ns, g.used_ns) =
            (r["observed_ns"].as_u64().unwrap(), r["held_ns"].as_u64().unwrap(), r["used_ns"].as_u64().unwrap());
    }
    let by_workload =
        net.get(http, &format!("/api/v1/usage?{window}&group_by=gpu,workload")).expect("usage by workload");
    for r in by_workload["rows"].as_array().unwrap() {
        let w = t
            .workloads
            .entry((r["gpu"].as_str().unwrap().to_string(), r["workload"].as_str().unwrap().to_string()))
            .or_default();
        (w.held_ns, w.used_ns) = (r["held_ns"].as_u64().unwrap(), r["used_ns"].as_u64().unwrap());
    }
    let _ = &mut agent;
    assert_no_loss(
        "agent and collector in two network namespaces: 15 % loss, a 6 s partition, 5 % loss, 2 Mbit/s tbf",
        &t,
        &truth(&[0], START_S, SLOT_S, slots, &[]),
        0,
    );
}
