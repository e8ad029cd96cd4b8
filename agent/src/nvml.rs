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
//! - under MIG there is no per-process utilisation, only memory per MIG device;
//! - lists are sized in one call and filled in a second: processes (or samples) that arrive in between
//!   make the second answer `INSUFFICIENT_SIZE`, so the pair is asked again;
//! - a GPU can fall off the bus (`GPU_IS_LOST`) and come back: a device that does not answer is skipped
//!   for that tick, logged and counted once, while the others are read; one that could not be listed at
//!   start is listed when it answers;
//! - `nvmlInit` fails while the driver is still loading (a node just booted, the GPU operator's driver
//!   container not ready): the agent waits for it with backoff rather than exiting.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::enums::gpm::GpmMetricId;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::gpm::{GpmSample, gpm_metrics_get};
use nvml_wrapper::{Device, Nvml};

use crate::reading::{GpuDevice, GpuSample, NodeInfo, ProcessSample, Tick};
use crate::source::{GpuSource, SourceError, SourceHealth};

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

/// Splits `percent` of a device's SM time among processes in proportion to the memory they hold, in
/// whole percents that add up to exactly `percent` (largest remainder). Used where NVML measures the
/// device (or MIG instance) but not its processes: MPS clients, and MIG instances with GPM.
pub fn split_by_memory(percent: u32, memory: &[u64]) -> Vec<u32> {
    let total: u128 = memory.iter().map(|&m| u128::from(m)).sum();
    if memory.is_empty() {
        return Vec::new();
    }
    let weights: Vec<u128> =
        if total == 0 { vec![1; memory.len()] } else { memory.iter().map(|&m| u128::from(m)).collect() };
    let sum: u128 = weights.iter().sum();
    let mut parts: Vec<u32> = weights.iter().map(|w| (u128::from(percent) * w / sum) as u32).collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(u128::from(percent) * weights[i] % sum));
    let short = percent - parts.iter().sum::<u32>();
    for &i in order.iter().take(short as usize) {
        parts[i] += 1;
    }
    parts
}

/// Under MPS the driver sees one context, the MPS server's, so per-process samples (if any) name the
/// server, not its clients. When no client has a sample of its own, the device's utilisation is split
/// among the clients by the memory each holds; the server itself is left at no measured use.
pub fn attribute_mps(procs: &mut [ProcessSample], clients: &[u32], device_util: Option<u32>) {
    if clients.is_empty() || procs.iter().any(|p| clients.contains(&p.pid) && p.sm_util_percent.is_some()) {
        return;
    }
    let Some(util) = device_util else { return };
    let idx: Vec<usize> = (0..procs.len()).filter(|&i| clients.contains(&procs[i].pid)).collect();
    let shares = split_by_memory(util.min(100), &idx.iter().map(|&i| procs[i].used_memory_bytes).collect::<Vec<_>>());
    for (&i, share) in idx.iter().zip(shares) {
        procs[i].sm_util_percent = Some(share);
    }
    for p in procs.iter_mut().filter(|p| !clients.contains(&p.pid)) {
        p.sm_util_percent = None;
    }
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
    /// Leaked on purpose: one per process, alive as long as the process, and GPM samples borrow it.
    nvml: &'static Nvml,
    node: NodeInfo,
    paths: Vec<DevicePath>,
    /// GPUs (NVML indices) that could not be listed yet: asked again every tick until they answer.
    unlisted: Vec<u32>,
    last_seen_us: HashMap<String, u64>,
    /// Per MIG device: the previous GPM sample of its GPU instance, or `None` once GPM proved
    /// unsupported there (pre-Hopper), so it is not asked again.
    gpm: HashMap<String, Option<GpmSample<'static>>>,
    /// Devices (UUID, or `index <n>` for one not listed yet) that did not answer their last reading,
    /// with what went wrong: logged when that changes, not every tick.
    failing: HashMap<String, Failed>,
    health: Arc<SourceHealth>,
}

/// An NVML call that failed on one device.
#[derive(Debug)]
struct Failed {
    call: &'static str,
    error: NvmlError,
}

impl Failed {
    fn lost(&self) -> bool {
        matches!(self.error, NvmlError::GpuLost)
    }
}

fn failed(call: &'static str) -> impl FnOnce(NvmlError) -> Failed {
    move |error| Failed { call, error }
}

/// `NotFound` / `NotSupported` mean "no value here", not a failure.
fn optional<T>(r: Result<T, NvmlError>) -> Result<Option<T>, NvmlError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(NvmlError::NotFound | NvmlError::NotSupported) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A list NVML sizes in one call and fills in a second, asked again (up to three times) when entries
/// arrived between the two (`INSUFFICIENT_SIZE`).
fn sized<T>(mut call: impl FnMut() -> Result<T, NvmlError>) -> Result<T, NvmlError> {
    let mut tries = 1;
    loop {
        match call() {
            Err(NvmlError::InsufficientSize(_)) if tries < 3 => tries += 1,
            r => return r,
        }
    }
}

/// A device's compute processes as (pid, memory held), MPS clients included.
type Running = Vec<(u32, u64)>;

/// The device's compute processes, and which of their pids are MPS clients.
fn processes(dev: &Device) -> Result<(Running, Vec<u32>), Failed> {
    let mut all = BTreeMap::new();
    let compute =
        optional(sized(|| dev.running_compute_processes())).map_err(failed("nvmlDeviceGetComputeRunningProcesses"))?;
    let mps = optional(sized(|| dev.mps_running_compute_processes()))
        .map_err(failed("nvmlDeviceGetMPSComputeRunningProcesses"))?
        .unwrap_or_default();
    let clients = mps.iter().map(|p| p.pid).collect();
    for p in compute.into_iter().flatten().chain(mps) {
        let mem = match p.used_gpu_memory {
            UsedGpuMemory::Used(b) => b,
            UsedGpuMemory::Unavailable => 0,
        };
        all.entry(p.pid).or_insert(mem);
    }
    Ok((all.into_iter().collect(), clients))
}

/// The GPU instance a MIG device handle belongs to (not wrapped by nvml-wrapper 0.13).
fn gpu_instance_id(nvml: &Nvml, mig: &Device) -> Option<u32> {
    let mut id: std::os::raw::c_uint = 0;
    // SAFETY: `mig` is a live handle from this `nvml`; NVML writes one uint through the pointer.
    let rc = unsafe { nvml.lib().nvmlDeviceGetGpuInstanceId(mig.handle(), &mut id) };
    (rc == 0).then_some(id)
}

/// The first wait for a driver that is not ready, doubling up to [`INIT_BACKOFF_MAX`].
const INIT_BACKOFF: Duration = Duration::from_millis(500);
const INIT_BACKOFF_MAX: Duration = Duration::from_secs(30);

fn unavailable(library: &str, e: &NvmlError) -> SourceError {
    SourceError::NvmlUnavailable { library: library.to_string(), reason: e.to_string() }
}

impl NvmlSource {
    /// The node as reported (to fill in what instance metadata says after NVML is open).
    pub fn node_mut(&mut self) -> &mut NodeInfo {
        &mut self.node
    }

    /// Loads NVML and lists the node's devices. `node` carries what NVML cannot know (cluster, node
    /// name, instance type, ...); its device list is filled here.
    pub fn open(library: &str, node: NodeInfo, health: Arc<SourceHealth>) -> Result<Self, SourceError> {
        let nvml =
            Nvml::builder().lib_path(std::ffi::OsStr::new(library)).init().map_err(|e| unavailable(library, &e))?;
        Self::listed(Box::leak(Box::new(nvml)), node, health)
    }

    /// [`open`](Self::open), waiting with backoff (0.5 s doubling to 30 s) while NVML loads but does not
    /// initialise (the driver still loading). A library that cannot be loaded at all fails at once.
    pub async fn open_when_ready(
        library: &str,
        node: NodeInfo,
        health: Arc<SourceHealth>,
    ) -> Result<Self, SourceError> {
        let mut wait = INIT_BACKOFF;
        for attempt in 1u32.. {
            match Nvml::builder().lib_path(std::ffi::OsStr::new(library)).init() {
                Ok(nvml) => return Self::listed(Box::leak(Box::new(nvml)), node, health),
                Err(e @ (NvmlError::LibloadingError(_) | NvmlError::FailedToLoadSymbol(_))) => {
                    return Err(unavailable(library, &e));
                }
                Err(e) => {
                    tracing::warn!(library, error = %e, attempt, retry_in = ?wait, "NVML is not ready (the driver may still be loading); waiting for it");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(INIT_BACKOFF_MAX);
                }
            }
        }
        unreachable!("the attempts never run out")
    }

    fn listed(nvml: &'static Nvml, mut node: NodeInfo, health: Arc<SourceHealth>) -> Result<Self, SourceError> {
        let count = nvml.device_count().map_err(|e| SourceError::Device {
            call: "nvmlDeviceGetCount",
            device: "-".into(),
            reason: e.to_string(),
        })?;
        node.devices.clear();
        let mut source = Self {
            nvml,
            node,
            paths: Vec::new(),
            unlisted: (0..count).collect(),
            last_seen_us: HashMap::new(),
            gpm: HashMap::new(),
            failing: HashMap::new(),
            health,
        };
        source.list_unlisted();
        Ok(source)
    }

    /// Lists the GPUs not listed yet, with their MIG devices; those that do not answer stay unlisted.
    fn list_unlisted(&mut self) {
        for index in std::mem::take(&mut self.unlisted) {
            let key = format!("index {index}");
            match self.list(index) {
                Ok((devices, paths)) => {
                    if self.failing.remove(&key).is_some() {
                        tracing::info!(index, device = %devices[0].uuid, "the GPU answers: reported from now on");
                    }
                    self.node.devices.extend(devices);
                    self.paths.extend(paths);
                }
                Err(e) => {
                    self.unlisted.push(index);
                    self.trouble(&key, None, e);
                }
            }
        }
    }

    /// One GPU and its MIG devices.
    fn list(&self, index: u32) -> Result<(Vec<GpuDevice>, Vec<DevicePath>), Failed> {
        let dev = self.nvml.device_by_index(index).map_err(failed("nvmlDeviceGetHandleByIndex"))?;
        let uuid = dev.uuid().map_err(failed("nvmlDeviceGetUUID"))?;
        let model = dev.name().map_err(failed("nvmlDeviceGetName"))?;
        let memory = dev.memory_info().map_err(failed("nvmlDeviceGetMemoryInfo"))?;
        let mut devices = vec![GpuDevice {
            uuid: uuid.clone(),
            model: model.clone(),
            memory_total_bytes: memory.total,
            index,
            mig_parent_uuid: None,
            mig_profile: None,
        }];
        let mut paths = vec![DevicePath { index, mig_index: None, uuid: uuid.clone() }];
        let mig_on = optional(dev.mig_mode()).map_err(failed("nvmlDeviceGetMigMode"))?.is_some_and(|m| m.current == 1);
        if !mig_on {
            return Ok((devices, paths));
        }
        let max = dev.mig_device_count().map_err(failed("nvmlDeviceGetMaxMigDeviceCount"))?;
        for mig_index in 0..max {
            let Some(mig) =
                optional(dev.mig_device_by_index(mig_index)).map_err(failed("nvmlDeviceGetMigDeviceHandleByIndex"))?
            else {
                continue;
            };
            let mig_uuid = mig.uuid().map_err(failed("nvmlDeviceGetUUID"))?;
            let name = mig.name().unwrap_or_default();
            let mem = mig.memory_info().map_err(failed("nvmlDeviceGetMemoryInfo"))?;
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
        Ok((devices, paths))
    }

    /// A device that did not answer: counted every time, logged when its trouble starts or changes.
    fn trouble(&mut self, key: &str, path: Option<&DevicePath>, e: Failed) {
        self.health.read_errors.fetch_add(1, Ordering::Relaxed);
        let before = self.failing.get(key);
        let same = before.is_some_and(|b| b.call == e.call && b.error.to_string() == e.error.to_string());
        if same {
            return;
        }
        let was_lost = before.is_some_and(Failed::lost);
        if e.lost() {
            if !was_lost && path.is_none_or(|p| p.mig_index.is_none()) {
                self.health.gpus_lost.fetch_add(1, Ordering::Relaxed);
            }
            tracing::warn!(
                device = key,
                call = e.call,
                "GPU_IS_LOST: the GPU has fallen off the bus or is otherwise inaccessible; not reported until it answers again"
            );
        } else {
            tracing::warn!(device = key, call = e.call, error = %e.error, "cannot read this GPU; not reported until it answers again");
        }
        self.failing.insert(key.to_string(), e);
    }

    fn sample_device(&mut self, path: &DevicePath, tick: &mut Tick) -> Result<(), Failed> {
        let uuid = path.uuid.as_str();
        let parent = self.nvml.device_by_index(path.index).map_err(failed("nvmlDeviceGetHandleByIndex"))?;
        let dev = match path.mig_index {
            Some(i) => parent.mig_device_by_index(i).map_err(failed("nvmlDeviceGetMigDeviceHandleByIndex"))?,
            None => parent,
        };
        let memory = dev.memory_info().map_err(failed("nvmlDeviceGetMemoryInfo"))?;
        let (running, mps_clients) = processes(&dev)?;
        let is_mig_parent =
            path.mig_index.is_none() && self.paths.iter().any(|p| p.index == path.index && p.mig_index.is_some());
        if path.mig_index.is_some() {
            // No per-process utilisation under MIG. On Hopper and later, GPM measures the GPU instance's
            // SM use, split among its processes by memory held; elsewhere its processes hold it, with no
            // measured use.
            let util = self.mig_sm_util(path, &dev);
            let mut procs = fold_process_samples(uuid, &running, None, None).0;
            if let Some(u) = util {
                let shares = split_by_memory(u, &procs.iter().map(|p| p.used_memory_bytes).collect::<Vec<_>>());
                for (p, share) in procs.iter_mut().zip(shares) {
                    p.sm_util_percent = Some(share);
                }
            }
            tick.processes.extend(procs);
            tick.gpus.push(GpuSample {
                uuid: uuid.to_string(),
                utilization_percent: util,
                memory_utilization_percent: None,
                memory_used_bytes: memory.used,
                power_milliwatts: None,
                energy_counter_millijoules: None,
            });
            return Ok(());
        }
        let last = self.last_seen_us.get(uuid).copied();
        let mut raw: Option<Vec<RawProcessSample>> = None;
        if !is_mig_parent {
            raw = optional(sized(|| dev.process_utilization_stats(last)))
                .map_err(failed("nvmlDeviceGetProcessUtilization"))?
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
        }
        let util = optional(dev.utilization_rates()).map_err(failed("nvmlDeviceGetUtilizationRates"))?;
        let power = optional(dev.power_usage()).map_err(failed("nvmlDeviceGetPowerUsage"))?;
        let energy = optional(dev.total_energy_consumption()).map_err(failed("nvmlDeviceGetTotalEnergyConsumption"))?;
        if !is_mig_parent {
            let (mut procs, newest) = fold_process_samples(uuid, &running, raw.as_deref(), last);
            if let Some(n) = newest {
                self.last_seen_us.insert(uuid.to_string(), n);
            }
            attribute_mps(&mut procs, &mps_clients, util.as_ref().map(|u| u.gpu));
            tick.processes.extend(procs);
        }
        tick.gpus.push(GpuSample {
            uuid: uuid.to_string(),
            utilization_percent: util.as_ref().map(|u| u.gpu.min(100)),
            memory_utilization_percent: util.as_ref().map(|u| u.memory.min(100)),
            memory_used_bytes: memory.used,
            power_milliwatts: power.map(u64::from),
            energy_counter_millijoules: energy,
        });
        Ok(())
    }
}

impl NvmlSource {
    /// SM utilisation of a MIG device's GPU instance over the last tick, from GPM (Hopper and later).
    fn mig_sm_util(&mut self, path: &DevicePath, mig: &Device<'static>) -> Option<u32> {
        if matches!(self.gpm.get(&path.uuid), Some(None)) {
            return None;
        }
        let sample = gpu_instance_id(self.nvml, mig).and_then(|gi| {
            let parent = self.nvml.device_by_index(path.index).ok()?;
            parent.gpm_mig_sample(gi).ok()
        });
        let Some(sample) = sample else {
            tracing::info!(device = %path.uuid, "no GPM for this MIG device: its processes hold it without measured use");
            self.gpm.insert(path.uuid.clone(), None);
            return None;
        };
        let previous = self.gpm.insert(path.uuid.clone(), Some(sample)).flatten()?;
        let current = self.gpm.get(&path.uuid)?.as_ref()?;
        let results = gpm_metrics_get(self.nvml, &previous, current, &[GpmMetricId::SmUtil]).ok()?;
        let value = results.into_iter().next()?.ok()?.value;
        value.is_finite().then(|| value.clamp(0.0, 100.0).round() as u32)
    }
}

impl GpuSource for NvmlSource {
    fn node(&self) -> &NodeInfo {
        &self.node
    }

    /// Reads every device that answers; one that does not is left out of this tick (with its MIG devices,
    /// when the GPU itself is lost), so the others are still reported.
    fn sample(&mut self, _at_unix_nanos: u64) -> Result<Tick, SourceError> {
        if !self.unlisted.is_empty() {
            self.list_unlisted();
        }
        let mut tick = Tick::default();
        let mut lost: HashSet<u32> = HashSet::new();
        for path in self.paths.clone() {
            if lost.contains(&path.index) {
                self.health.read_errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let mut reading = Tick::default();
            match self.sample_device(&path, &mut reading) {
                Ok(()) => {
                    if let Some(was) = self.failing.remove(&path.uuid) {
                        tracing::info!(device = %path.uuid, was = %was.error, "the GPU answers again");
                    }
                    tick.gpus.extend(reading.gpus);
                    tick.processes.extend(reading.processes);
                }
                Err(e) => {
                    if e.lost() && path.mig_index.is_none() {
                        lost.insert(path.index);
                    }
                    self.trouble(&path.uuid.clone(), Some(&path), e);
                }
            }
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
    fn splitting_by_memory_adds_up_to_the_whole_and_follows_memory() {
        assert_eq!(split_by_memory(90, &[1 << 30, 2 << 30]), vec![30, 60]);
        assert_eq!(split_by_memory(10, &[1, 1, 1]).iter().sum::<u32>(), 10);
        assert_eq!(split_by_memory(7, &[0, 0]), vec![4, 3], "no memory: equal shares");
        assert!(split_by_memory(50, &[]).is_empty());
    }

    #[test]
    fn mps_clients_share_the_device_by_memory_and_the_server_gets_none() {
        // nvidia-cuda-mps-server (pid 900) holds the context; pids 901 and 902 are its clients.
        let running = [(900, 300 << 20), (901, 1 << 30), (902, 3 << 30)];
        let samples = [RawProcessSample { pid: 900, timestamp_us: 10, sm_util: 80, mem_util: 40 }];
        let (mut procs, _) = fold_process_samples("GPU-a", &running, Some(&samples), None);
        attribute_mps(&mut procs, &[901, 902], Some(80));
        let sm: Vec<(u32, Option<u32>)> = procs.iter().map(|p| (p.pid, p.sm_util_percent)).collect();
        assert_eq!(sm, vec![(900, None), (901, Some(20)), (902, Some(60))]);
    }

    #[test]
    fn mps_clients_with_their_own_samples_keep_them() {
        let running = [(901, 1 << 30), (902, 3 << 30)];
        let samples = [RawProcessSample { pid: 901, timestamp_us: 10, sm_util: 70, mem_util: 0 }];
        let (mut procs, _) = fold_process_samples("GPU-a", &running, Some(&samples), None);
        attribute_mps(&mut procs, &[901, 902], Some(80));
        assert_eq!(procs[0].sm_util_percent, Some(70));
        assert_eq!(procs[1].sm_util_percent, None);
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
            labels: Default::default(),
            instance_id: String::new(),
        };
        let opened = NvmlSource::open("libnvidia-ml.so.1", node, Arc::default());
        if std::path::Path::new("/dev/nvidiactl").exists() {
            // A GPU machine: the driver loads and lists its GPUs.
            assert!(!opened.expect("NVML opens where a driver is installed").node().devices.is_empty());
        } else {
            let e = opened.err().expect("no driver here: opening must fail");
            assert!(e.to_string().contains("libnvidia-ml.so.1"), "{e}");
        }
    }
}
