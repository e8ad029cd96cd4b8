//! The NVML source: devices (MIG devices included), running compute and MPS processes with their
//! memory, per-process SM samples, and device utilisation, power and energy.
//!
//! NVML facts this module is built around:
//! - the driver ships `libnvidia-ml.so.1`; the unversioned `libnvidia-ml.so` that nvml-wrapper loads
//!   by default exists only with development packages, so the versioned name is loaded explicitly;
//! - `nvmlDeviceGetProcessUtilization` returns the samples newer than the timestamp passed in, and
//!   `NotFound` when there are none; the largest returned timestamp (the driver's clock, not ours) is
//!   carried forward as the next `lastSeen`;
//! - utilisation values above 100 have been seen in the field: they are clamped;
//! - a process absent from the samples had 0 % SM in that period;
//! - under MIG there is no per-process utilisation, only memory per MIG device.

use std::collections::{BTreeMap, HashMap};

use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};

use crate::reading::{GpuDevice, GpuSample, NodeInfo, ProcessSample, Tick};
use crate::source::{GpuSource, SourceError};

/// One per-process utilisation sample as NVML returns it (timestamp in microseconds, driver clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawProcessSample {
    pub pid: u32,
    pub timestamp_us: u64,
    pub sm_util: u32,
    pub mem_util: u32,
}

/// Turns one device's running processes and its utilisation samples since `last_seen_us` into
/// per-process readings for this tick, and returns the `lastSeen` to pass next time.
///
/// `samples` is `None` when NVML answered `NotFound` (no samples in the period). A process with
/// samples but no longer in the running list is still reported (with no memory): it used the GPU.
pub fn fold_process_samples(
    gpu_uuid: &str,
    running: &[(u32, u64)],
    samples: Option<&[RawProcessSample]>,
    last_seen_us: Option<u64>,
) -> (Vec<ProcessSample>, Option<u64>) {
    let mut per_pid: BTreeMap<u32, (u64, u64, u32)> = BTreeMap::new();
    let mut newest = last_seen_us;
    for s in samples.unwrap_or_default() {
        if last_seen_us.is_some_and(|seen| s.timestamp_us <= seen) {
            continue;
        }
        let e = per_pid.entry(s.pid).or_default();
        e.0 += u64::from(s.sm_util.min(100));
        e.1 += u64::from(s.mem_util.min(100));
        e.2 += 1;
        newest = Some(newest.map_or(s.timestamp_us, |n| n.max(s.timestamp_us)));
    }
    let mean = |sum: u64, n: u32| (sum / u64::from(n.max(1))) as u32;
    let mut out: Vec<ProcessSample> = running
        .iter()
        .map(|&(pid, mem)| {
            let s = per_pid.remove(&pid);
            ProcessSample {
                pid,
                gpu_uuid: gpu_uuid.to_string(),
                sm_util_percent: s.map(|(sm, _, n)| mean(sm, n)),
                memory_util_percent: s.map(|(_, m, n)| mean(m, n)),
                used_memory_bytes: mem,
                identity: None,
            }
        })
        .collect();
    out.extend(per_pid.into_iter().map(|(pid, (sm, m, n))| ProcessSample {
        pid,
        gpu_uuid: gpu_uuid.to_string(),
        sm_util_percent: Some(mean(sm, n)),
        memory_util_percent: Some(mean(m, n)),
        used_memory_bytes: 0,
        identity: None,
    }));
    (out, newest)
}

/// The MIG profile from a MIG device's name, e.g. "NVIDIA A100-SXM4-40GB MIG 1g.5gb" → "1g.5gb".
pub fn mig_profile_from_name(name: &str) -> Option<String> {
    let (_, profile) = name.rsplit_once(" MIG ")?;
    Some(profile.trim().to_string())
}

/// Where a device sits in NVML's tree, so its handle can be fetched again each tick.
#[derive(Debug, Clone)]
struct DevicePath {
    index: u32,
    mig_index: Option<u32>,
    uuid: String,
}

pub struct NvmlSource {
    nvml: Nvml,
    node: NodeInfo,
    paths: Vec<DevicePath>,
    last_seen_us: HashMap<String, u64>,
}

fn device_err<'a>(call: &'static str, device: &'a str) -> impl FnOnce(NvmlError) -> SourceError + 'a {
    move |e| SourceError::Device { call, device: device.to_string(), reason: e.to_string() }
}

/// `NotFound` / `NotSupported` mean "no value here", not a failure.
fn optional<T>(r: Result<T, NvmlError>) -> Result<Option<T>, NvmlError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(NvmlError::NotFound | NvmlError::NotSupported) => Ok(None),
        Err(e) => Err(e),
    }
}

fn processes(dev: &Device, uuid: &str) -> Result<Vec<(u32, u64)>, SourceError> {
    let mut all = BTreeMap::new();
    let compute =
        optional(dev.running_compute_processes()).map_err(device_err("nvmlDeviceGetComputeRunningProcesses", uuid))?;
    let mps = optional(dev.mps_running_compute_processes())
        .map_err(device_err("nvmlDeviceGetMPSComputeRunningProcesses", uuid))?;
    for p in compute.into_iter().flatten().chain(mps.into_iter().flatten()) {
        let mem = match p.used_gpu_memory {
            UsedGpuMemory::Used(b) => b,
            UsedGpuMemory::Unavailable => 0,
        };
        all.entry(p.pid).or_insert(mem);
    }
    Ok(all.into_iter().collect())
}

impl NvmlSource {
    /// Loads NVML and lists the node's devices. `node` carries what NVML cannot know (cluster, node
    /// name, instance type, ...); its device list is filled here.
    pub fn open(library: &str, mut node: NodeInfo) -> Result<Self, SourceError> {
        let nvml = Nvml::builder()
            .lib_path(std::ffi::OsStr::new(library))
            .init()
            .map_err(|e| SourceError::NvmlUnavailable { library: library.to_string(), reason: e.to_string() })?;
        let mut paths = Vec::new();
        let mut devices = Vec::new();
        let count = nvml.device_count().map_err(device_err("nvmlDeviceGetCount", "-"))?;
        for index in 0..count {
            let dev = nvml.device_by_index(index).map_err(device_err("nvmlDeviceGetHandleByIndex", "-"))?;
            let uuid = dev.uuid().map_err(device_err("nvmlDeviceGetUUID", "-"))?;
            let model = dev.name().map_err(device_err("nvmlDeviceGetName", &uuid))?;
            let memory = dev.memory_info().map_err(device_err("nvmlDeviceGetMemoryInfo", &uuid))?;
            devices.push(GpuDevice {
                uuid: uuid.clone(),
                model: model.clone(),
                memory_total_bytes: memory.total,
                index,
                mig_parent_uuid: None,
                mig_profile: None,
            });
            paths.push(DevicePath { index, mig_index: None, uuid: uuid.clone() });
            let mig_on = optional(dev.mig_mode())
                .map_err(device_err("nvmlDeviceGetMigMode", &uuid))?
                .is_some_and(|m| m.current == 1);
            if !mig_on {
                continue;
            }
            let max = dev.mig_device_count().map_err(device_err("nvmlDeviceGetMaxMigDeviceCount", &uuid))?;
            for mig_index in 0..max {
                let Some(mig) = optional(dev.mig_device_by_index(mig_index))
                    .map_err(device_err("nvmlDeviceGetMigDeviceHandleByIndex", &uuid))?
                else {
                    continue;
                };
                let mig_uuid = mig.uuid().map_err(device_err("nvmlDeviceGetUUID", &uuid))?;
                let name = mig.name().unwrap_or_default();
                let mem = mig.memory_info().map_err(device_err("nvmlDeviceGetMemoryInfo", &mig_uuid))?;
                devices.push(GpuDevice {
                    uuid: mig_uuid.clone(),
                    model: model.clone(),
                    memory_total_bytes: mem.total,
                    index: mig_index,
                    mig_parent_uuid: Some(uuid.clone()),
                    mig_profile: mig_profile_from_name(&name),
                });
                paths.push(DevicePath { index, mig_index: Some(mig_index), uuid: mig_uuid });
            }
        }
        node.devices = devices;
        Ok(Self { nvml, node, paths, last_seen_us: HashMap::new() })
    }

    fn sample_device(&mut self, path: &DevicePath, tick: &mut Tick) -> Result<(), SourceError> {
        let uuid = path.uuid.as_str();
        let parent = self.nvml.device_by_index(path.index).map_err(device_err("nvmlDeviceGetHandleByIndex", uuid))?;
        let dev = match path.mig_index {
            Some(i) => {
                parent.mig_device_by_index(i).map_err(device_err("nvmlDeviceGetMigDeviceHandleByIndex", uuid))?
            }
            None => parent,
        };
        let memory = dev.memory_info().map_err(device_err("nvmlDeviceGetMemoryInfo", uuid))?;
        let running = processes(&dev, uuid)?;
        let is_mig_parent =
            path.mig_index.is_none() && self.paths.iter().any(|p| p.index == path.index && p.mig_index.is_some());
        if path.mig_index.is_some() {
            // No per-process utilisation under MIG: memory only.
            tick.processes.extend(fold_process_samples(uuid, &running, None, None).0);
            tick.gpus.push(GpuSample {
                uuid: uuid.to_string(),
                utilization_percent: None,
                memory_utilization_percent: None,
                memory_used_bytes: memory.used,
                power_milliwatts: None,
                energy_counter_millijoules: None,
            });
            return Ok(());
        }
        if !is_mig_parent {
            let last = self.last_seen_us.get(uuid).copied();
            let raw: Option<Vec<RawProcessSample>> = optional(dev.process_utilization_stats(last))
                .map_err(device_err("nvmlDeviceGetProcessUtilization", uuid))?
                .map(|v| {
                    v.into_iter()
                        .map(|s| RawProcessSample {
                            pid: s.pid,
                            timestamp_us: s.timestamp,
                            sm_util: s.sm_util,
                            mem_util: s.mem_util,
                        })
                        .collect()
                });
            let (procs, newest) = fold_process_samples(uuid, &running, raw.as_deref(), last);
            if let Some(n) = newest {
                self.last_seen_us.insert(uuid.to_string(), n);
            }
            tick.processes.extend(procs);
        }
        let util = optional(dev.utilization_rates()).map_err(device_err("nvmlDeviceGetUtilizationRates", uuid))?;
        tick.gpus.push(GpuSample {
            uuid: uuid.to_string(),
            utilization_percent: util.as_ref().map(|u| u.gpu.min(100)),
            memory_utilization_percent: util.as_ref().map(|u| u.memory.min(100)),
            memory_used_bytes: memory.used,
            power_milliwatts: optional(dev.power_usage())
                .map_err(device_err("nvmlDeviceGetPowerUsage", uuid))?
                .map(u64::from),
            energy_counter_millijoules: optional(dev.total_energy_consumption())
                .map_err(device_err("nvmlDeviceGetTotalEnergyConsumption", uuid))?,
        });
        Ok(())
    }
}

impl GpuSource for NvmlSource {
    fn node(&self) -> &NodeInfo {
        &self.node
    }

    fn sample(&mut self, _at_unix_nanos: u64) -> Result<Tick, SourceError> {
        let mut tick = Tick::default();
        for path in self.paths.clone() {
            self.sample_device(&path, &mut tick)?;
        }
        Ok(tick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples in the shape nvmlDeviceGetProcessUtilization returns them: several per process per
    /// second, microsecond timestamps on the driver's clock.
    fn recorded() -> Vec<RawProcessSample> {
        vec![
            RawProcessSample { pid: 4242, timestamp_us: 1_732_000_000_100_000, sm_util: 97, mem_util: 41 },
            RawProcessSample { pid: 4243, timestamp_us: 1_732_000_000_100_000, sm_util: 48, mem_util: 20 },
            RawProcessSample { pid: 4242, timestamp_us: 1_732_000_000_266_000, sm_util: 99, mem_util: 43 },
            RawProcessSample { pid: 4243, timestamp_us: 1_732_000_000_266_000, sm_util: 52, mem_util: 22 },
        ]
    }

    #[test]
    fn not_found_means_no_samples_and_every_running_process_has_zero() {
        let (procs, seen) = fold_process_samples("GPU-a", &[(4242, 2 << 30)], None, Some(77));
        assert_eq!(procs.len(), 1);
        assert_eq!(procs[0].sm_util_percent, None);
        assert_eq!(procs[0].used_memory_bytes, 2 << 30);
        assert_eq!(seen, Some(77), "lastSeen stays where it was");
    }

    #[test]
    fn samples_are_averaged_per_process_and_the_newest_driver_timestamp_is_carried_forward() {
        let samples = recorded();
        let (procs, seen) = fold_process_samples("GPU-a", &[(4242, 100), (4243, 200)], Some(&samples), None);
        assert_eq!(procs[0].sm_util_percent, Some(98));
        assert_eq!(procs[1].sm_util_percent, Some(50));
        assert_eq!(procs[1].memory_util_percent, Some(21));
        assert_eq!(seen, Some(1_732_000_000_266_000));
    }

    #[test]
    fn samples_not_newer_than_last_seen_are_ignored() {
        let samples = recorded();
        let (procs, seen) = fold_process_samples("GPU-a", &[(4242, 100)], Some(&samples), Some(1_732_000_000_100_000));
        assert_eq!(procs.iter().find(|p| p.pid == 4242).unwrap().sm_util_percent, Some(99));
        assert_eq!(seen, Some(1_732_000_000_266_000));
    }

    #[test]
    fn values_above_100_are_clamped() {
        let samples = [RawProcessSample { pid: 9, timestamp_us: 5, sm_util: 4_294_967, mem_util: 180 }];
        let (procs, _) = fold_process_samples("GPU-a", &[(9, 1)], Some(&samples), None);
        assert_eq!(procs[0].sm_util_percent, Some(100));
        assert_eq!(procs[0].memory_util_percent, Some(100));
    }

    #[test]
    fn a_process_that_exited_between_ticks_still_reports_the_gpu_time_it_used() {
        let samples = recorded();
        let (procs, _) = fold_process_samples("GPU-a", &[(4242, 100)], Some(&samples), None);
        let gone = procs.iter().find(|p| p.pid == 4243).expect("exited process kept");
        assert_eq!(gone.used_memory_bytes, 0);
        assert_eq!(gone.sm_util_percent, Some(50));
    }

    #[test]
    fn the_mig_profile_is_read_from_the_device_name() {
        assert_eq!(mig_profile_from_name("NVIDIA A100-SXM4-40GB MIG 1g.5gb").as_deref(), Some("1g.5gb"));
        assert_eq!(mig_profile_from_name("NVIDIA H100 80GB HBM3 MIG 3g.40gb").as_deref(), Some("3g.40gb"));
        assert_eq!(mig_profile_from_name("NVIDIA A10G"), None);
    }

    #[test]
    fn opening_nvml_without_a_driver_fails_naming_the_library() {
        let node = NodeInfo {
            cluster: String::new(),
            node_name: String::new(),
            instance_type: String::new(),
            capacity_type: crate::reading::CapacityType::Unspecified,
            region: String::new(),
            zone: String::new(),
            devices: vec![],
        };
        let opened = NvmlSource::open("libnvidia-ml.so.1", node);
        if std::path::Path::new("/dev/nvidiactl").exists() {
            // A GPU machine: the driver loads and lists its GPUs.
            assert!(!opened.expect("NVML opens where a driver is installed").node().devices.is_empty());
        } else {
            let e = opened.err().expect("no driver here: opening must fail");
            assert!(e.to_string().contains("libnvidia-ml.so.1"), "{e}");
        }
    }
}
