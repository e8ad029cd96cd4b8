//! Arbitrary bytes as a wire `UsageBatch`: what decodes is validated (with the default limits, received
//! at a fixed time) and must never panic; what validates must hold what `validate` promises of a
//! `Batch`, and pricing it (catalogue prices, every policy) must account for every micro-dollar.

#![no_main]

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use gpucost_rules::book::PriceBook;
use gpucost_rules::priced::price_batch;
use gpucost_rules::share::{hold, split_proportionally};
use gpucost_collector::ingest::validate::{Limits, validate};
use gpucost_types::batch::PPM;
use gpucost_proto::v1 as pb;
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// The receive time: 2027-01-15T08:00:00Z, as in the unit tests; the seeds end their intervals here.
const NOW_NS: u64 = 1_800_000_000 * 1_000_000_000;
/// 2020-01-01T00:00:00Z: `validate` refuses anything older.
const EARLIEST_NS: u64 = 1_577_836_800 * 1_000_000_000;

fn book() -> &'static PriceBook {
    // Parsed once: the catalogue is the same for every input.
    static BOOK: OnceLock<PriceBook> = OnceLock::new();
    BOOK.get_or_init(PriceBook::catalogue_only)
}

/// `GPUCOST_FUZZ_VERBOSE=1`: say what became of each input (to check that the `valid-*` seeds are).
fn verbose() -> bool {
    static VERBOSE: OnceLock<bool> = OnceLock::new();
    *VERBOSE.get_or_init(|| std::env::var_os("GPUCOST_FUZZ_VERBOSE").is_some())
}

fuzz_target!(|data: &[u8]| {
    let wire = match pb::UsageBatch::decode(data) {
        Ok(w) => w,
        Err(e) if verbose() => return eprintln!("not a UsageBatch: {e}"),
        Err(_) => return,
    };
    let limits = Limits::default();
    let b = match validate(&wire, NOW_NS, &limits) {
        Ok(b) => hold(b),
        Err(e) if verbose() => return eprintln!("rejected: {e}"),
        Err(_) => return,
    };
    if verbose() {
        eprintln!("valid: {} holdings", b.holdings.len());
    }

    // The interval: ordered, plausible, bounded.
    assert!(b.start_ns < b.end_ns);
    assert!(b.start_ns >= EARLIEST_NS);
    assert!(b.duration_ns() <= limits.max_interval_ns);
    assert!(b.end_ns <= NOW_NS + limits.max_clock_skew_ns);
    assert!(b.seq >= 1 && !b.agent_id.is_empty() && !b.boot_id.is_empty());
    assert!((1..=b.seq).contains(&b.first_seq), "first_seq {} of seq {}", b.first_seq, b.seq);

    // Devices: some, each once, every MIG slice's parent a physical device of this node.
    assert!(!b.devices.is_empty() && b.devices.len() <= limits.max_devices);
    let devices: HashMap<&str, &gpucost_types::batch::Device> =
        b.devices.iter().map(|d| (d.uuid.as_str(), d)).collect();
    assert_eq!(devices.len(), b.devices.len(), "device uuids are unique");
    for d in &b.devices {
        assert!(d.memory_total_bytes > 0);
        if let Some(parent) = &d.mig_parent_uuid {
            assert!(!devices[parent.as_str()].is_mig(), "a MIG parent is physical");
        }
    }

    // Readings: on known devices, once each, shares within 0..=100 %.
    let mut seen = HashSet::new();
    for g in &b.gpus {
        assert!(seen.insert(&g.uuid), "one reading per GPU");
        assert!(g.utilization_ppm as u64 <= PPM);
        assert!(g.memory_used_bytes <= devices[g.uuid.as_str()].memory_total_bytes);
    }
    let mut seen = HashSet::new();
    for p in &b.processes {
        assert!(devices.contains_key(p.gpu_uuid.as_str()));
        assert!(seen.insert((&p.gpu_uuid, p.pid)), "a pid once per GPU");
        assert!(p.sm_share_ppm as u64 <= PPM && p.memory_util_ppm as u64 <= PPM);
        assert!(!p.workload.key.is_empty());
    }

    // Holdings: one per (GPU, workload), every process's workload among them, each held for the whole
    // interval and using no more of it; a GPU's holders together use at most the interval.
    let duration = b.duration_ns();
    let mut keys = HashSet::new();
    let mut used_per_gpu: HashMap<&str, u128> = HashMap::new();
    for h in &b.holdings {
        assert!(devices.contains_key(h.gpu_uuid.as_str()), "held GPU {} is a device", h.gpu_uuid);
        assert!(keys.insert((h.gpu_uuid.as_str(), h.workload.key.as_str())), "one holding per (GPU, workload)");
        assert_eq!(h.held_ns, duration);
        assert!(h.used_ns <= h.held_ns, "used {} of {} held", h.used_ns, h.held_ns);
        *used_per_gpu.entry(&h.gpu_uuid).or_default() += u128::from(h.used_ns);
    }
    for p in &b.processes {
        assert!(keys.contains(&(p.gpu_uuid.as_str(), p.workload.key.as_str())), "process {} is held", p.pid);
    }
    for (gpu, used) in &used_per_gpu {
        assert!(*used <= u128::from(duration), "{gpu}: {used} ns used of {duration}");
    }

    // The largest-remainder split adds up exactly, whatever the weights.
    let shares: Vec<u64> = b.processes.iter().map(|p| u64::from(p.sm_share_ppm)).collect();
    let parts = split_proportionally(duration, &shares);
    assert_eq!(parts.len(), shares.len());
    let total: u128 = parts.iter().map(|&p| u128::from(p)).sum();
    assert!(total == u128::from(duration) || shares.iter().all(|&s| s == 0) && total == 0);

    // Pricing: the devices' costs add up to the node's price over the interval (MIG slices take their
    // share of their parent), and each device's cost is divided exactly under every policy.
    let cost = price_batch(book(), &b);
    assert_eq!(cost.devices.len(), b.devices.len());
    assert_eq!(cost.holdings.len(), b.holdings.len());
    let full = cost.price.as_ref().map_or(0, |p| p.cost(b.start_ns, b.end_ns));
    let physical = b.devices.iter().filter(|d| !d.is_mig()).count() as u128;
    let devices_total: u128 = cost.devices.iter().map(|d| u128::from(d.cost)).sum();
    assert_eq!(devices_total, u128::from(full) * physical, "device costs add up to the price");
    for (d, dc) in b.devices.iter().zip(&cost.devices) {
        assert_eq!(d.uuid, dc.uuid);
        let held: Vec<_> = (0..b.holdings.len()).filter(|&i| b.holdings[i].gpu_uuid == d.uuid).collect();
        let sum = |f: &dyn Fn(usize) -> u64| held.iter().map(|&i| u128::from(f(i))).sum::<u128>();
        let c = u128::from(dc.cost);
        if held.is_empty() {
            assert_eq!(u128::from(dc.unallocated), c, "a GPU nobody held is unallocated");
            continue;
        }
        let hc = &cost.holdings;
        assert_eq!(sum(&|i| hc[i].used) + u128::from(dc.idle) + u128::from(dc.unallocated), c, "utilization");
        assert_eq!(sum(&|i| hc[i].used + hc[i].hybrid_idle), c, "hybrid");
        assert_eq!(sum(&|i| hc[i].allocation_used + hc[i].allocation_idle), c, "allocation");
        let energy = b.gpus.iter().find(|g| g.uuid == d.uuid).and_then(|g| g.energy_millijoules).unwrap_or(0);
        assert!(sum(&|i| hc[i].energy_mj) <= u128::from(energy), "energy shares fit the GPU's energy");
    }
});
