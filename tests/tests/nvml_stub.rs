//! The agent's NVML source through NVML's C interface: the real agent binary loads the NVML stand-in
//! (`nvml-stub`, a cdylib built with the workspace) with `--source nvml --nvml-lib`, identifies its
//! processes through a fake `/proc` and the Kubernetes API stand-in, and streams to the real collector.
//! Each scenario runs on the stub's clock from a start a few seconds ahead, with every change on an
//! interval boundary, so the test knows the exact truth of every whole interval: held and used
//! GPU-seconds per GPU and per pod, and energy.

use std::time::{Duration, Instant};

use gpucost_agent::reading::{WorkloadIdentity, WorkloadKind};
use gpucost_e2e::nvml_rig::{Expected, GIB, INSTANCE_ID, R_S, Rig, device, start_ahead, unix_ms, used};
use serde_json::json;

/// A process of the scenario, as the test knows it.
struct Proc<'a> {
    pid: u32,
    gpu: usize,
    who: &'a WorkloadIdentity,
    from: Option<u64>,
    until: Option<u64>,
    /// SM percent from each time on.
    sm: Vec<(u64, u64)>,
    late: bool,
}

impl Proc<'_> {
    fn present(&self, t: u64) -> bool {
        self.from.is_none_or(|f| f <= t) && self.until.is_none_or(|u| t < u)
    }

    fn sm_at(&self, t: u64) -> u64 {
        self.sm.iter().take_while(|(f, _)| *f <= t).last().map_or(0, |s| s.1)
    }
}

#[test]
fn eight_time_sliced_gpus_are_charged_to_their_pods_exactly_through_nvmls_c_interface() {
    let mut rig = Rig::new();
    let gpus: Vec<String> = (0..8).map(|i| format!("GPU-8a0c1e2f-0000-4000-8000-00000000000{i}")).collect();
    const P: u64 = 275_000;
    let shared = [rig.pod("vision", "detector-0"), rig.pod("vision", "detector-1"), rig.pod("nlp", "ranker-0")];
    let visitor = rig.pod("research", "notebook-7");
    let two_procs = rig.pod("nlp", "trainer-0");
    let workers = rig.pod("nlp", "ddp-job-0");
    let steady: Vec<WorkloadIdentity> = (5..8).map(|i| rig.pod("batch", &format!("job-{i}"))).collect();

    let p = |pid, gpu, who, from, until, sm: &[(u64, u64)]| Proc {
        pid,
        gpu,
        who,
        from,
        until,
        sm: sm.to_vec(),
        late: false,
    };
    let mut procs = vec![
        // GPU 0: three pods time-sliced.
        p(1000, 0, &shared[0], None, None, &[(0, 20)]),
        p(1001, 0, &shared[1], None, None, &[(0, 30)]),
        p(1002, 0, &shared[2], None, None, &[(0, 40)]),
        // GPU 1: a notebook that arrives at 4 s and leaves at 8 s.
        p(1100, 1, &visitor, Some(4), Some(8), &[(0, 55)]),
        // GPU 2: one pod, two processes.
        p(1200, 2, &two_procs, None, None, &[(0, 25)]),
        p(1201, 2, &two_procs, None, None, &[(0, 35)]),
        // GPU 3: idle.
        // GPU 4: a data-parallel job: one process, then twelve more at 4 s that arrive between NVML's size and
        // fill calls, more than the first buffer holds.
        p(1400, 4, &workers, None, None, &[(0, 10)]),
    ];
    for k in 0..12 {
        procs.push(Proc { late: true, ..p(1401 + k, 4, &workers, Some(4), None, &[(0, 5)]) });
    }
    // GPUs 5..7: one pod each, whose use changes at 6 s.
    for (i, who) in steady.iter().enumerate() {
        let i64 = i as u64;
        procs.push(p(1500 + i as u32, 5 + i, who, None, None, &[(0, 60 + i64), (6, 90 - i64)]));
    }
    for proc in &procs {
        rig.process(proc.pid, proc.who);
    }

    let start = start_ahead(6);
    const INTERVALS: u64 = 6;
    let scenario = json!({
        "start_unix_ms": start,
        "devices": gpus.iter().map(|g| device(g, "NVIDIA A100-SXM4-80GB", 80, P)).collect::<Vec<_>>(),
        "processes": procs.iter().map(|p| json!({
            "pid": p.pid, "device": gpus[p.gpu], "from_s": p.from, "until_s": p.until,
            "sm": p.sm.iter().map(|(t, v)| json!([t, v])).collect::<Vec<_>>(),
            "memory_bytes": 2 * GIB, "arrives_between_calls": p.late,
        })).collect::<Vec<_>>(),
    });

    let mut want = Expected::default();
    for k in 0..INTERVALS {
        let t = k * R_S;
        let observed: Vec<&str> = gpus.iter().map(String::as_str).collect();
        let energy: Vec<(&str, u64)> = gpus.iter().map(|g| (g.as_str(), P * R_S)).collect();
        let holdings: Vec<(&str, String, u64)> = procs
            .iter()
            .filter(|p| p.present(t))
            .map(|p| (gpus[p.gpu].as_str(), rig.key(p.who), used(p.sm_at(t))))
            .collect();
        want.interval(&observed, &energy, &holdings);
    }

    let mut agent = rig.agent(&scenario);
    rig.assert_ledger(&mut agent, start, start + INTERVALS * R_S * 1000, &want);
    // Sanity of the scenario itself: the time-sliced GPU carries three pods, the idle one none.
    assert_eq!(want.truth.workloads.keys().filter(|(g, _)| *g == gpus[0]).count(), 3);
    assert!(want.truth.workloads.keys().all(|(g, _)| *g != gpus[3]));
}

#[test]
fn mps_clients_and_mig_slices_with_and_without_gpm_are_charged_exactly() {
    let mut rig = Rig::new();
    let (l40s, h100, a100) = ("GPU-1405a000-0000-4000-8000-000000000000", "GPU-h100", "GPU-a100");
    let (h1, h2) = ("MIG-1a1a1a1a-0000-4000-8000-000000000001", "MIG-1a1a1a1a-0000-4000-8000-000000000002");
    let (a1, a2) = ("MIG-2b2b2b2b-0000-4000-8000-000000000001", "MIG-2b2b2b2b-0000-4000-8000-000000000002");
    let mps_server = WorkloadIdentity {
        kind: WorkloadKind::SystemdService,
        systemd_unit: "nvidia-mps.service".into(),
        ..Default::default()
    };
    let (client_a, client_b) = (rig.pod("serving", "embedder-0"), rig.pod("serving", "reranker-0"));
    let (slice_c, slice_d, slice_e) = (rig.pod("llm", "chat-0"), rig.pod("llm", "chat-1"), rig.pod("llm", "tiny-0"));
    let (slice_f, slice_g) = (rig.pod("vision", "ocr-0"), rig.pod("vision", "ocr-1"));
    for (pid, who) in [
        (900, &mps_server),
        (901, &client_a),
        (902, &client_b),
        (1001, &slice_c),
        (1002, &slice_d),
        (1003, &slice_e),
        (1004, &slice_f),
        (1005, &slice_g),
    ] {
        rig.process(pid, who);
    }
    let start = start_ahead(6);
    const INTERVALS: u64 = 5;
    const P: u64 = 300_000;
    let scenario = json!({
        "start_unix_ms": start,
        "devices": [
            // MPS: the server holds the context and has the samples; the device is 80 % busy.
            { "uuid": l40s, "name": "NVIDIA L40S", "memory_total_bytes": 48 * GIB, "power_mw": P, "utilization": 80 },
            // Hopper in MIG mode: GPM measures each GPU instance.
            { "uuid": h100, "name": "NVIDIA H100 80GB HBM3", "memory_total_bytes": 80 * GIB, "power_mw": P, "gpm": true,
              "mig": { "devices": [
                { "uuid": h1, "profile": "3g.40gb", "memory_total_bytes": 40 * GIB, "gpu_instance_id": 2, "sm": 60 },
                { "uuid": h2, "profile": "1g.10gb", "memory_total_bytes": 10 * GIB, "gpu_instance_id": 13, "index": 4, "sm": 30 } ] } },
            // Ampere in MIG mode: no GPM, so its slices are held with no measured use.
            { "uuid": a100, "name": "NVIDIA A100-SXM4-40GB", "memory_total_bytes": 40 * GIB, "power_mw": P,
              "mig": { "devices": [
                { "uuid": a1, "profile": "1g.5gb", "memory_total_bytes": 5 * GIB, "gpu_instance_id": 7 },
                { "uuid": a2, "profile": "3g.20gb", "memory_total_bytes": 20 * GIB, "gpu_instance_id": 1 } ] } },
        ],
        "processes": [
            { "pid": 900, "device": l40s, "mps": "server", "sm": 80, "memory_bytes": 300 << 20 },
            { "pid": 901, "device": l40s, "mps": "client", "memory_bytes": GIB },
            { "pid": 902, "device": l40s, "mps": "client", "memory_bytes": 3 * GIB },
            { "pid": 1001, "device": h1, "memory_bytes": GIB },
            { "pid": 1002, "device": h1, "memory_bytes": 2 * GIB },
            { "pid": 1003, "device": h2, "memory_bytes": GIB },
            { "pid": 1004, "device": a1, "memory_bytes": GIB },
            { "pid": 1005, "device": a2, "memory_bytes": 4 * GIB, "from_s": 4 },
        ],
    });

    let mut want = Expected::default();
    for d in [h1, h2, a1, a2] {
        want.device(d);
    }
    for k in 0..INTERVALS {
        let t = k * R_S;
        let mut holdings = vec![
            // The MPS server holds the GPU with no measured use; its clients share the 80 % by memory.
            (l40s, rig.key(&mps_server), 0),
            (l40s, rig.key(&client_a), used(20)),
            (l40s, rig.key(&client_b), used(60)),
            // GPM's 60 % on the 3g.40gb instance split by memory 1:2; the 1g.10gb's 30 % to its one pod.
            (h1, rig.key(&slice_c), used(20)),
            (h1, rig.key(&slice_d), used(40)),
            (h2, rig.key(&slice_e), used(30)),
            (a1, rig.key(&slice_f), 0),
        ];
        if t >= 4 {
            holdings.push((a2, rig.key(&slice_g), 0));
        }
        want.interval(&[l40s, h100, a100], &[(l40s, P * R_S), (h100, P * R_S), (a100, P * R_S)], &holdings);
    }

    let mut agent = rig.agent(&scenario);
    rig.assert_ledger(&mut agent, start, start + INTERVALS * R_S * 1000, &want);
}

#[test]
fn gpus_that_fall_off_the_bus_are_counted_and_reported_again_when_they_return_while_the_others_keep_reporting() {
    let mut rig = Rig::new();
    let gpus = ["GPU-0ff0b050-0000-4000-8000-000000000000", "GPU-0ff0b050-0000-4000-8000-000000000001"];
    let (pascal, resets) = ("GPU-9a5ca100-0000-4000-8000-000000000000", "GPU-4e5e7000-0000-4000-8000-000000000000");
    let late = "GPU-1a7e0000-0000-4000-8000-000000000000";
    let pods: Vec<WorkloadIdentity> = (0..5).map(|i| rig.pod("batch", &format!("job-{i}"))).collect();
    for (i, who) in pods.iter().enumerate() {
        rig.process(2000 + i as u32, who);
    }
    const P: u64 = 200_000;
    let start = start_ahead(6);
    const INTERVALS: u64 = 6;
    let scenario = json!({
        "start_unix_ms": start,
        "devices": [
            device(gpus[0], "NVIDIA A10G", 24, P),
            // Off the bus from 4 s to 8 s.
            json!({ "uuid": gpus[1], "name": "NVIDIA A10G", "memory_total_bytes": 24 * GIB, "power_mw": P, "lost": [[4, 8]] }),
            // Pascal has no energy counter.
            json!({ "uuid": pascal, "name": "Tesla P100-PCIE-16GB", "memory_total_bytes": 16 * GIB, "power_mw": P,
                    "energy": { "supported": false } }),
            // The driver reloads at 6 s: the counter starts again from zero.
            json!({ "uuid": resets, "name": "NVIDIA L4", "memory_total_bytes": 24 * GIB, "power_mw": P,
                    "energy": { "resets_at_s": [6] } }),
            // Already off the bus when the agent starts; answers from 2 s on.
            json!({ "uuid": late, "name": "NVIDIA A10G", "memory_total_bytes": 24 * GIB, "power_mw": P, "lost": [[-1000, 2]] }),
        ],
        "processes": [
            { "pid": 2000, "device": gpus[0], "sm": 50, "memory_bytes": GIB },
            { "pid": 2001, "device": gpus[1], "sm": 70, "memory_bytes": GIB },
            { "pid": 2002, "device": pascal, "sm": 30, "memory_bytes": GIB },
            { "pid": 2003, "device": resets, "sm": 40, "memory_bytes": GIB },
            { "pid": 2004, "device": late, "sm": 45, "memory_bytes": GIB },
        ],
    });

    let mut want = Expected::default();
    for k in 0..INTERVALS {
        let t = k * R_S;
        let lost = (4..8).contains(&t);
        // A GPU off the bus is still on the node, listed and billed: its time is observed (idle, held by no one)
        // while it is lost, so the fleet stays its GPUs' price × time.
        let mut observed = vec![gpus[0], gpus[1], pascal, resets];
        let mut holdings = vec![
            (gpus[0], rig.key(&pods[0]), used(50)),
            (pascal, rig.key(&pods[2]), used(30)),
            (resets, rig.key(&pods[3]), used(40)),
        ];
        // Energy is the counter's rise from the last reading of the previous interval to the last of this one
        // (readings at t and t + 1 s): none across the reset, and after the GPU that was lost comes back, only
        // from its first reading on, not the time it was gone.
        let mut energy = vec![(gpus[0], P * R_S), (resets, if t == 6 { 0 } else { P * R_S })];
        if !lost {
            holdings.push((gpus[1], rig.key(&pods[1]), used(70)));
            energy.push((gpus[1], if t == 8 { P } else { P * R_S }));
        }
        if t >= 2 {
            observed.push(late);
            holdings.push((late, rig.key(&pods[4]), used(45)));
            energy.push((late, if t == 2 { P } else { P * R_S }));
        }
        want.interval(&observed, &energy, &holdings);
    }
    want.device(pascal);

    let mut agent = rig.agent(&scenario);
    rig.assert_ledger(&mut agent, start, start + INTERVALS * R_S * 1000, &want);
    let metrics = rig.agent_metrics();
    assert!(metrics.contains("gpucost_agent_gpu_lost_total 2\n"), "one lost at start, one while running:\n{metrics}");
    let log = rig.agent_log();
    assert!(log.lines().any(|l| l.contains("WARN") && l.contains(gpus[1]) && l.contains("GPU_IS_LOST")), "{log}");
    assert!(log.lines().any(|l| l.contains(gpus[1]) && l.contains("answers again")), "{log}");
    assert!(log.lines().any(|l| l.contains(late) && l.contains("reported from now on")), "{log}");
}

#[test]
fn an_agent_started_before_the_driver_is_ready_waits_for_nvml_and_then_reports() {
    let mut rig = Rig::new();
    let gpu = "GPU-5107d417-0000-4000-8000-000000000000";
    let pod = rig.pod("ml", "train-0");
    rig.process(3000, &pod);
    const P: u64 = 150_000;
    // The driver is still loading for the agent's first 3 seconds.
    let scenario = json!({
        "start_unix_ms": unix_ms(),
        "init": { "fail_until_s": 3, "error": "DRIVER_NOT_LOADED" },
        "devices": [device(gpu, "NVIDIA L4", 24, P)],
        "processes": [{ "pid": 3000, "device": gpu, "sm": 65, "memory_bytes": GIB }],
    });
    let mut agent = rig.agent(&scenario);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !rig.agent_log().contains("agent started") {
        if let Ok(Some(status)) = agent.proc.0.try_wait() {
            panic!("the agent exited ({status}) instead of waiting for NVML; its log:\n{}", rig.agent_log());
        }
        assert!(Instant::now() < deadline, "NVML never opened; the agent's log:\n{}", rig.agent_log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = rig.agent_log();
    let waits = log.lines().filter(|l| l.contains("WARN") && l.contains("NVML is not ready")).count();
    assert!(waits >= 2, "the agent retried with backoff while the driver loaded:\n{log}");

    // From the first whole interval after NVML opened, every interval is exact.
    let from = start_ahead(R_S);
    const INTERVALS: u64 = 3;
    let mut want = Expected::default();
    for _ in 0..INTERVALS {
        want.interval(&[gpu], &[(gpu, P * R_S)], &[(gpu, rig.key(&pod), used(65))]);
    }
    rig.assert_ledger(&mut agent, from, from + INTERVALS * R_S * 1000, &want);
}

/// The evidence a right-sizing reads, from NVML's C interface to the ledger: a process whose working set
/// grows to 6 GiB for one second of a 2-second interval is stored with that peak, not its 3.5 GiB mean; a
/// process at 40 % SM is busy in every sample, one at 0 % in none; and the node's EC2 instance id, from its
/// Node's `spec.providerID`, is kept for each hour-bucket it reported.
#[test]
fn peak_memory_busy_samples_and_the_instance_id_reach_the_ledger() {
    let mut rig = Rig::new();
    let gpu = "GPU-e1de0ce0-0000-4000-8000-000000000000";
    let (busy, idle) = (rig.pod("ml", "serve-0"), rig.pod("ml", "notebook-0"));
    rig.process(2000, &busy);
    rig.process(2001, &idle);
    let start = start_ahead(6);
    const INTERVALS: u64 = 4;
    // Samples fall just after each whole second of the scenario clock: the 6 GiB is read once, at 3 s.
    let scenario = json!({
        "start_unix_ms": start,
        "devices": [device(gpu, "NVIDIA A10G", 24, 150_000)],
        "processes": [
            { "pid": 2000, "device": gpu, "sm": 40, "memory_steps": [[0, GIB], [2.5, 6 * GIB], [3.5, GIB]] },
            { "pid": 2001, "device": gpu, "sm": 0, "memory_bytes": GIB },
        ],
    });
    let mut want = Expected::default();
    for _ in 0..INTERVALS {
        want.interval(&[gpu], &[(gpu, 150_000 * R_S)], &[(gpu, rig.key(&busy), used(40)), (gpu, rig.key(&idle), 0)]);
    }
    let mut agent = rig.agent(&scenario);
    let to = start + INTERVALS * R_S * 1000;
    rig.assert_ledger(&mut agent, start, to, &want);

    let db =
        rusqlite::Connection::open_with_flags(rig.ledger_path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let ns = |ms: u64| (ms * 1_000_000) as i64;
    // Per workload over the window: the largest peak, the known-peak time, samples and busy samples.
    let evidence = |who: &WorkloadIdentity| -> (i64, i64, i64, i64) {
        db.query_row(
            "SELECT MAX(e.peak_memory_bytes), SUM(e.peak_known_ns), SUM(e.samples), SUM(e.busy_samples)
             FROM workload_evidence e JOIN workloads w ON w.workload_id = e.workload_id
             WHERE w.key = ?1 AND e.bucket_start_ns >= ?2 AND e.bucket_start_ns < ?3",
            rusqlite::params![rig.key(who), ns(start), ns(to)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap()
    };
    let window_ns = (INTERVALS * R_S * 1_000_000_000) as i64;
    let (peak, known, samples, busy_samples) = evidence(&busy);
    assert_eq!((peak, known), ((6 * GIB) as i64, window_ns), "the 6 GiB sample is the peak, known all along");
    assert!(
        samples >= (INTERVALS * R_S) as i64 && busy_samples == samples,
        "busy in every sample: {busy_samples}/{samples}"
    );
    let (peak, _, samples, busy_samples) = evidence(&idle);
    assert_eq!((peak, busy_samples), (GIB as i64, 0), "never busy");
    assert!(samples >= (INTERVALS * R_S) as i64, "{samples}");
    // The interval holding the peak: its mean memory (as stored) is below the peak.
    let mean: i64 = db
        .query_row(
            "SELECT MAX(p.used_memory_bytes) FROM process_intervals p WHERE p.pid = 2000 AND p.start_ns >= ?1 AND p.start_ns < ?2",
            rusqlite::params![ns(start), ns(to)],
            |r| r.get(0),
        )
        .unwrap();
    assert!(mean < (6 * GIB) as i64 && mean > GIB as i64, "the peak interval's mean, {mean}, is not its peak");
    // The instance id, from the Node's providerID, in every bucket of the window.
    let ids: Vec<(String, i64)> = db
        .prepare(
            "SELECT i.instance_id, SUM(i.seen_ns) FROM node_instances i JOIN nodes n ON n.node_id = i.node_id
             WHERE n.name = ?1 AND i.bucket_start_ns >= ?2 AND i.bucket_start_ns < ?3 GROUP BY i.instance_id",
        )
        .unwrap()
        .query_map(rusqlite::params![gpucost_e2e::nvml_rig::NODE, ns(start), ns(to)], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ids, vec![(INSTANCE_ID.to_string(), window_ns)]);
}
