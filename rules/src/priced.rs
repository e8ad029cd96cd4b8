//! Prices one validated batch: every device's cost over the interval, divided among its holders under
//! each policy, and each holder's share of the energy. A MIG slice costs its share of its parent GPU
//! (`3g.40gb` is 3/7); the parent keeps what no slice covers. Pure.

use crate::book::PriceBook;
use crate::inventory::{Inventory, resolve_instance};
use crate::price::{mig_parts, mig_slices};
use crate::split::{HolderUse, split, split_energy};
use gpucost_types::cost::{BatchCost, DeviceCost, HoldingCost};
use gpucost_types::money::Micros;
use gpucost_types::policy::Policy;
use gpucost_types::stage::{Held, Priced};

/// Prices a held batch. A node whose agent reported no instance type gets it from the cloud inventory
/// when that settles it (`inventory::resolve_instance`), and its price says so.
pub fn price(book: &PriceBook, inventory: Option<&Inventory>, mut held: Held) -> Priced {
    let mut via = None;
    if held.batch.node.instance_type.is_empty()
        && let Some(inv) = inventory
    {
        let b = &mut held.batch;
        let physical: Vec<_> = b.devices.iter().filter(|d| !d.is_mig()).collect();
        let model = physical.first().map(|d| d.model.as_str()).unwrap_or_default();
        if let Some((instance_type, capacity, source)) =
            resolve_instance(inv, book, &b.node, physical.len() as u32, model)
        {
            b.node.instance_type = instance_type;
            if b.node.capacity_type == "unspecified" {
                b.node.capacity_type = capacity;
            }
            via = Some(source);
        }
    }
    let mut cost = price_batch(book, &held);
    if let (Some(via), Some(p)) = (via, cost.price.as_mut()) {
        p.source = format!("{via} → {}", p.source);
    }
    Priced { held, cost }
}

/// What a held batch costs at `book`'s prices: each device, and each holding's part under every policy.
pub fn price_batch(book: &PriceBook, b: &Held) -> BatchCost {
    let physical: Vec<&gpucost_types::batch::Device> = b.devices.iter().filter(|d| !d.is_mig()).collect();
    let model = physical.first().map(|d| d.model.as_str()).unwrap_or_default();
    let priced = book.price(&b.node, model, physical.len() as u32, b.start_ns);
    let (price, unpriced) = match priced {
        Ok(p) => (Some(p), None),
        Err(u) => (None, Some(u.reason)),
    };
    let full = price.as_ref().map_or(0, |p| p.cost(b.start_ns, b.end_ns));
    // Each device's whole cost: a physical GPU its price; its MIG slices their share, the parent the rest.
    let mut device_cost: Vec<Micros> = b.devices.iter().map(|d| if d.is_mig() { 0 } else { full }).collect();
    for (pi, parent) in b.devices.iter().enumerate().filter(|(_, d)| !d.is_mig()) {
        let slices: Vec<(usize, u64, u64)> = b
            .devices
            .iter()
            .enumerate()
            .filter(|(_, d)| d.mig_parent_uuid.as_deref() == Some(parent.uuid.as_str()))
            .filter_map(|(i, d)| {
                mig_slices(d.mig_profile.as_deref().unwrap_or_default(), &d.model).map(|(n, total)| (i, n, total))
            })
            .collect();
        if slices.is_empty() {
            continue;
        }
        let (parts, own) = mig_parts(full, &slices.iter().map(|s| (s.1, s.2)).collect::<Vec<_>>());
        for (s, part) in slices.iter().zip(parts) {
            device_cost[s.0] = part;
        }
        device_cost[pi] = own;
    }

    let duration = b.duration_ns();
    let mut holdings = vec![HoldingCost::default(); b.holdings.len()];
    let mut devices = Vec::with_capacity(b.devices.len());
    for (d, &cost) in b.devices.iter().zip(&device_cost) {
        let idx: Vec<usize> = (0..b.holdings.len()).filter(|&i| b.holdings[i].gpu_uuid == d.uuid).collect();
        let uses: Vec<HolderUse> = idx
            .iter()
            .map(|&i| HolderUse { used_ns: b.holdings[i].used_ns, memory_bytes: b.holdings[i].memory_bytes })
            .collect();
        let util = split(cost, duration, &uses, Policy::Utilization);
        let hybrid = split(cost, duration, &uses, Policy::Hybrid);
        let alloc = split(cost, duration, &uses, Policy::Allocation);
        let energy = b.gpus.iter().find(|g| g.uuid == d.uuid).and_then(|g| g.energy_millijoules).unwrap_or(0);
        let (energy_parts, _) = split_energy(energy, duration, &uses);
        for (k, &i) in idx.iter().enumerate() {
            holdings[i] = HoldingCost {
                used: util.holders[k].used,
                hybrid_idle: hybrid.holders[k].idle,
                allocation_used: alloc.holders[k].used,
                allocation_idle: alloc.holders[k].idle,
                energy_mj: energy_parts[k],
                co2e_mg: book.co2e_mg(&b.node.region, energy_parts[k]),
            };
        }
        devices.push(DeviceCost {
            uuid: d.uuid.clone(),
            cost,
            idle: util.idle,
            unallocated: util.unallocated,
            unpriced: unpriced.clone(),
        });
    }
    BatchCost { price, unpriced, devices, holdings }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::share;
    use gpucost_types::batch::{Batch, Device, GpuReading, Identity, Node, ProcessReading, Workload, WorkloadKind};

    const NS: u64 = 1_000_000_000;
    const T0: u64 = 1_800_000_000 * NS;

    fn device(uuid: &str, parent: Option<&str>, profile: Option<&str>) -> Device {
        Device {
            uuid: uuid.into(),
            index: 0,
            model: "NVIDIA A100-SXM4-80GB".into(),
            memory_total_bytes: 80 << 30,
            mig_parent_uuid: parent.map(String::from),
            mig_profile: profile.map(String::from),
        }
    }

    fn batch(devices: Vec<Device>, procs: &[(&str, &str, u32, u64)]) -> Held {
        let node = Node {
            cluster: "c".into(),
            name: "n".into(),
            instance_type: "p4de.24xlarge".into(),
            capacity_type: "on_demand".into(),
            region: "us-east-1".into(),
            zone: String::new(),
            labels: Default::default(),
        };
        let processes: Vec<ProcessReading> = procs
            .iter()
            .enumerate()
            .map(|(i, (gpu, pod, ppm, mem))| ProcessReading {
                gpu_uuid: gpu.to_string(),
                pid: i as u32,
                workload: std::sync::Arc::new(Workload::new(
                    &node,
                    Identity {
                        kind: WorkloadKind::KubernetesPod,
                        namespace: "ns".into(),
                        pod: pod.to_string(),
                        ..Default::default()
                    },
                )),
                sm_share_ppm: *ppm,
                memory_util_ppm: 0,
                used_memory_bytes: *mem,
                peak_memory_bytes: None,
                samples: 0,
                busy_samples: None,
            })
            .collect();
        let gpus = devices
            .iter()
            .map(|d| GpuReading {
                uuid: d.uuid.clone(),
                utilization_ppm: 0,
                memory_used_bytes: 0,
                power_milliwatts: 0,
                energy_millijoules: Some(7_000),
            })
            .collect();
        share::hold(Batch {
            agent_id: "a".into(),
            boot_id: "b".into(),
            seq: 1,
            first_seq: 1,
            node,
            devices,
            start_ns: T0,
            end_ns: T0 + 3_600 * NS,
            gpus,
            processes,
            allocations: Vec::new(),
            instance_id: None,
        })
    }

    fn conserved(c: &BatchCost) -> bool {
        let devices: Micros = c.devices.iter().map(|d| d.cost).sum();
        let charged: Micros = c.holdings.iter().map(|h| h.used + h.hybrid_idle).sum::<Micros>()
            + c.devices.iter().map(|d| d.unallocated).sum::<Micros>();
        let alloc: Micros = c.holdings.iter().map(|h| h.allocation_used + h.allocation_idle).sum::<Micros>()
            + c.devices.iter().map(|d| d.unallocated).sum::<Micros>();
        let util: Micros = c.holdings.iter().map(|h| h.used).sum::<Micros>()
            + c.devices.iter().map(|d| d.idle + d.unallocated).sum::<Micros>();
        devices == charged && devices == alloc && devices == util
    }

    #[test]
    fn an_hour_of_a_p4de_gpu_is_split_and_adds_up_under_every_policy() {
        let b = batch(
            vec![device("GPU-1", None, None), device("GPU-2", None, None)],
            &[("GPU-1", "a", 600_000, 10), ("GPU-1", "b", 200_000, 30)],
        );
        let c = price_batch(&PriceBook::catalogue_only(), &b);
        let per_gpu = 27_447_050 / 8;
        assert_eq!(c.devices.iter().map(|d| d.cost).collect::<Vec<_>>(), vec![per_gpu, per_gpu]);
        assert_eq!(c.devices[1].unallocated, per_gpu, "nobody held GPU-2");
        assert_eq!(c.holdings[0].used + c.holdings[1].used + c.devices[0].idle, per_gpu);
        assert!(conserved(&c));
        assert_eq!(
            c.holdings.iter().map(|h| h.energy_mj).sum::<u64>(),
            7_000 * 8 / 10,
            "energy follows the used share"
        );
    }

    #[test]
    fn a_mig_slice_costs_its_share_of_the_parent_and_the_parent_keeps_the_rest() {
        let devices = vec![
            device("GPU-1", None, None),
            device("MIG-a", Some("GPU-1"), Some("3g.40gb")),
            device("MIG-b", Some("GPU-1"), Some("2g.20gb")),
        ];
        let b = batch(devices, &[("MIG-a", "a", 0, 10 << 30)]);
        let c = price_batch(&PriceBook::catalogue_only(), &b);
        let per_gpu = 27_447_050 / 8;
        let costs: Vec<Micros> = c.devices.iter().map(|d| d.cost).collect();
        assert_eq!(costs.iter().sum::<Micros>(), per_gpu);
        // 3/7 and 2/7 of 3 430 881 µ$, largest remainders first; the parent keeps the uncovered 2/7.
        assert_eq!(costs, vec![980_252, 1_470_377, 980_252]);
        assert_eq!(c.holdings[0].hybrid_idle, costs[1], "the slice's pod holds it idle");
        assert!(conserved(&c));
    }

    #[test]
    fn an_unpriced_node_costs_nothing_and_says_why() {
        let mut b = batch(vec![device("GPU-1", None, None)], &[("GPU-1", "a", 500_000, 1)]);
        b.batch.node.instance_type = "p7.huge".into();
        let c = price_batch(&PriceBook::catalogue_only(), &b);
        assert!(c.unpriced.as_deref().is_some_and(|r| r.contains("p7.huge")));
        assert_eq!(c.devices[0].cost, 0);
        assert!(c.devices[0].unpriced.is_some());
    }
}
