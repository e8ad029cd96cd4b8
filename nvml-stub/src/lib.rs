//! A stand-in for `libnvidia-ml.so.1` at its C interface, so that the agent's NVML source — symbol
//! loading, struct versions, buffer-size retries, error codes, MIG handles, GPM — runs in tests on machines
//! without a GPU. The agent loads it like the driver's library (`--nvml-lib`); nothing in the agent knows.
//!
//! It exports the NVML functions the agent calls through nvml-wrapper 0.13 (which resolves every symbol
//! lazily and panics on calling one that is missing, so each one the agent reaches is here), with nvml.h's
//! layouts and calling conventions: ask for the size with a null buffer, `INSUFFICIENT_SIZE` with the
//! count needed when a buffer is short, `NOT_FOUND` when no utilisation sample is newer than `lastSeen`,
//! `NOT_SUPPORTED`, `GPU_IS_LOST`, `UNINITIALIZED` before `nvmlInit_v2`.
//!
//! What it answers comes from the scenario file named by `GPUCOST_NVML_STUB_SCENARIO` (`scenario.rs`,
//! format in docs/agent.md), read at `nvmlInit_v2`, on the scenario clock: real time since the scenario's
//! `start_unix_ms`. Utilisation sample timestamps are Unix microseconds, as NVML's are.

mod scenario;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{c_char, c_uint, c_ulonglong, c_void};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use scenario::{InitError, MpsRole, Place, Scenario};

/// `nvmlReturn_t` codes (nvml.h).
type Ret = c_uint;
const SUCCESS: Ret = 0;
const ERROR_UNINITIALIZED: Ret = 1;
const ERROR_INVALID_ARGUMENT: Ret = 2;
const ERROR_NOT_SUPPORTED: Ret = 3;
const ERROR_NOT_FOUND: Ret = 6;
const ERROR_INSUFFICIENT_SIZE: Ret = 7;
const ERROR_DRIVER_NOT_LOADED: Ret = 9;
const ERROR_GPU_IS_LOST: Ret = 15;
const ERROR_LIB_RM_VERSION_MISMATCH: Ret = 18;
const ERROR_ARGUMENT_VERSION_MISMATCH: Ret = 25;
const ERROR_UNKNOWN: Ret = 999;

/// `nvmlDevice_t` is an opaque pointer: here `(gpu + 1) << 8 | (mig + 1)`, never dereferenced by callers.
type Handle = *mut c_void;

/// `nvmlProcessInfo_t` as `nvmlDeviceGet{Compute,MPSCompute}RunningProcesses_v3` fill it (nvml.h since
/// R535.104: the v2 layout; `NVML_VALUE_NOT_AVAILABLE` ids outside MIG).
#[repr(C)]
pub struct ProcessInfo {
    pid: c_uint,
    used_gpu_memory: c_ulonglong,
    gpu_instance_id: c_uint,
    compute_instance_id: c_uint,
}

/// `nvmlProcessUtilizationSample_t`.
#[repr(C)]
pub struct ProcessUtilizationSample {
    pid: c_uint,
    time_stamp: c_ulonglong,
    sm_util: c_uint,
    mem_util: c_uint,
    enc_util: c_uint,
    dec_util: c_uint,
}

/// `nvmlMemory_v2_t`; its `version` must be `nvmlMemory_v2` (size | 2 << 24).
#[repr(C)]
pub struct MemoryV2 {
    version: c_uint,
    total: c_ulonglong,
    reserved: c_ulonglong,
    free: c_ulonglong,
    used: c_ulonglong,
}
const MEMORY_V2: c_uint = (std::mem::size_of::<MemoryV2>() as c_uint) | (2 << 24);

/// `nvmlUtilization_t`.
#[repr(C)]
pub struct Utilization {
    gpu: c_uint,
    memory: c_uint,
}

/// `nvmlGpmMetric_t`.
#[repr(C)]
pub struct GpmMetric {
    metric_id: c_uint,
    nvml_return: Ret,
    value: f64,
    short_name: *const c_char,
    long_name: *const c_char,
    unit: *const c_char,
}

/// `nvmlGpmMetricsGet_t` (version 1, up to `NVML_GPM_METRIC_MAX` = 210 metrics).
#[repr(C)]
pub struct GpmMetricsGet {
    version: c_uint,
    num_metrics: c_uint,
    sample1: *mut GpmSample,
    sample2: *mut GpmSample,
    metrics: [GpmMetric; 210],
}
const GPM_METRICS_GET_VERSION: c_uint = 1;
const GPM_METRIC_SM_UTIL: c_uint = 2;

/// What `nvmlGpmSampleAlloc` hands out (opaque to callers): which GPU instance was read, and when.
pub struct GpmSample {
    taken: Option<(Place, f64)>,
}

const NOT_AVAILABLE_ID: c_uint = u32::MAX;
/// A utilisation sample as the driver keeps it: (pid, Unix µs, SM %, memory %).
type Sample = (u32, u64, u32, u32);

/// Generated samples older than this many are dropped from a device's buffer, like the driver's ring.
const SAMPLE_BUFFER: usize = 1024;

/// One process list a caller sizes before filling: late arrivals are missed by the first size query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum List {
    Compute,
    Mps,
    Samples,
}

struct Driver {
    scenario: Scenario,
    start_ms: f64,
    /// `nvmlInit` reference count.
    inits: u32,
    /// Per GPU: utilisation samples generated so far (oldest first), and when the last were generated.
    samples: BTreeMap<usize, (Vec<Sample>, u64)>,
    /// (GPU place, list, pid): late arrivals a size query has already missed once.
    announced: BTreeSet<(Place, List, u32)>,
}

static DRIVER: Mutex<Option<Driver>> = Mutex::new(None);
/// When the library was first loaded into this process: the scenario clock's default zero.
static LOADED_MS: OnceLock<f64> = OnceLock::new();

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

fn lock() -> MutexGuard<'static, Option<Driver>> {
    DRIVER.lock().unwrap_or_else(|e| e.into_inner())
}

impl Driver {
    fn t(&self) -> f64 {
        (now_ms() - self.start_ms) / 1000.0
    }

    /// The place a handle names, if it names one and its GPU answers at `t`.
    fn place(&self, handle: Handle, t: f64) -> Result<Place, Ret> {
        let h = handle as usize;
        let gpu = (h >> 8).checked_sub(1).ok_or(ERROR_INVALID_ARGUMENT)?;
        let device = self.scenario.devices.get(gpu).ok_or(ERROR_INVALID_ARGUMENT)?;
        let mig = match (h & 0xff).checked_sub(1) {
            None => None,
            Some(m) if device.mig.as_ref().is_some_and(|mig| m < mig.devices.len()) => Some(m),
            Some(_) => return Err(ERROR_INVALID_ARGUMENT),
        };
        if self.scenario.is_lost(gpu, t) {
            return Err(ERROR_GPU_IS_LOST);
        }
        Ok(Place { gpu, mig })
    }

    /// The processes a list shows at `t`, with (pid, memory, instance ids); a size query (`sizing`) leaves
    /// out late arrivals not yet missed once.
    fn list(&mut self, place: Place, which: List, t: f64, sizing: bool) -> Vec<ProcessInfo> {
        let in_mig = self.scenario.devices[place.gpu].mig.is_some();
        let mut out = Vec::new();
        let mut late = Vec::new();
        for (p, at) in self.scenario.processes_at(place, t) {
            let listed = match which {
                List::Compute => p.mps != Some(MpsRole::Client),
                List::Mps => p.mps == Some(MpsRole::Client),
                List::Samples => p.sm.is_some(),
            };
            if !listed {
                continue;
            }
            if p.arrives_between_calls && !self.announced.contains(&(place, which, p.pid)) {
                late.push(p.pid);
                if sizing {
                    continue;
                }
            }
            let mig = at.mig.and_then(|m| self.scenario.devices[at.gpu].mig.as_ref()?.devices.get(m));
            out.push(ProcessInfo {
                pid: p.pid,
                used_gpu_memory: p.memory_at(t).unwrap_or(u64::MAX),
                gpu_instance_id: if in_mig {
                    mig.map_or(NOT_AVAILABLE_ID, |m| m.gpu_instance_id)
                } else {
                    NOT_AVAILABLE_ID
                },
                compute_instance_id: if in_mig {
                    mig.map_or(NOT_AVAILABLE_ID, |m| m.compute_instance_id)
                } else {
                    NOT_AVAILABLE_ID
                },
            });
        }
        if sizing {
            self.announced.extend(late.into_iter().map(|pid| (place, which, pid)));
        }
        out
    }

    /// The GPU's utilisation samples newer than `last_seen` (pid, µs, SM, memory). The driver samples each
    /// process at most every 10 ms, two samples a time around its SM value, so a reader sees several per
    /// process and their mean is the scenario's value.
    fn samples(&mut self, place: Place, t: f64, last_seen: u64, sizing: bool) -> Vec<Sample> {
        let now = now_us();
        let due = self.samples.get(&place.gpu).is_none_or(|(_, at)| now >= at + 10_000);
        if due {
            let fresh: Vec<(u32, u32, u32)> = self
                .scenario
                .processes_at(place, t)
                .filter_map(|(p, _)| Some((p.pid, p.sm.as_ref()?.at(t), p.mem_util.at(t))))
                .collect();
            let (buffer, at) = self.samples.entry(place.gpu).or_default();
            let newest = buffer.last().map_or(0, |s| s.1);
            let stamp = now.max(newest + 2);
            for (pid, sm, mem) in fresh {
                let d = sm.min(100u32.saturating_sub(sm)).min(3);
                buffer.push((pid, stamp - 1, sm - d, mem));
                buffer.push((pid, stamp, sm + d, mem));
            }
            let excess = buffer.len().saturating_sub(SAMPLE_BUFFER);
            buffer.drain(..excess);
            *at = now;
        }
        let shown: BTreeSet<u32> = self.list(place, List::Samples, t, sizing).iter().map(|p| p.pid).collect();
        let buffer = self.samples.get(&place.gpu).map(|(b, _)| b.as_slice()).unwrap_or_default();
        buffer.iter().copied().filter(|s| s.1 > last_seen && shown.contains(&s.0)).collect()
    }
}

/// Runs `f` on the initialised driver at the scenario's current time.
fn with_driver(f: impl FnOnce(&mut Driver, f64) -> Ret) -> Ret {
    let mut guard = lock();
    match guard.as_mut() {
        Some(d) if d.inits > 0 => {
            let t = d.t();
            f(d, t)
        }
        _ => ERROR_UNINITIALIZED,
    }
}

/// Runs `f` on the place `handle` names.
fn on_device(handle: Handle, f: impl FnOnce(&mut Driver, Place, f64) -> Ret) -> Ret {
    with_driver(|d, t| match d.place(handle, t) {
        Ok(place) => f(d, place, t),
        Err(e) => e,
    })
}

fn handle_of(place: Place) -> Handle {
    (((place.gpu + 1) << 8) | place.mig.map_or(0, |m| m + 1)) as Handle
}

/// Copies `text` and its NUL into a caller's buffer of `len` bytes.
///
/// # Safety
/// `buf` must be valid for `len` bytes.
unsafe fn write_str(text: &str, buf: *mut c_char, len: c_uint) -> Ret {
    if buf.is_null() {
        return ERROR_INVALID_ARGUMENT;
    }
    if text.len() + 1 > len as usize {
        return ERROR_INSUFFICIENT_SIZE;
    }
    // SAFETY: the caller's buffer holds `len` bytes, and `text.len() + 1 <= len`.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr().cast::<c_char>(), buf, text.len());
        *buf.add(text.len()) = 0;
    }
    SUCCESS
}

/// Writes `value` through `out` unless it is null.
///
/// # Safety
/// `out` must be null or valid for a write of `T`.
unsafe fn put<T>(out: *mut T, value: T) -> Ret {
    if out.is_null() {
        return ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: non-null and valid by the caller's contract.
    unsafe { out.write(value) };
    SUCCESS
}

/// The ask-for-size-then-fill convention: with a null buffer or a short one, `INSUFFICIENT_SIZE` and the
/// count needed (`SUCCESS` when there is nothing); else the entries and their count.
///
/// # Safety
/// `count` must be valid; `buf`, when not null, valid for `*count` entries.
unsafe fn fill<T>(entries: Vec<T>, count: *mut c_uint, buf: *mut T) -> Ret {
    if count.is_null() {
        return ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: `count` is valid by the caller's contract.
    let room = unsafe { *count } as usize;
    // SAFETY: as above.
    unsafe { *count = entries.len() as c_uint };
    if entries.is_empty() {
        return SUCCESS;
    }
    if buf.is_null() || room < entries.len() {
        return ERROR_INSUFFICIENT_SIZE;
    }
    for (i, e) in entries.into_iter().enumerate() {
        // SAFETY: `i < entries.len() <= room`, the buffer's length.
        unsafe { buf.add(i).write(e) };
    }
    SUCCESS
}

fn load_scenario() -> Result<Scenario, String> {
    let path = std::env::var_os("GPUCOST_NVML_STUB_SCENARIO")
        .ok_or("GPUCOST_NVML_STUB_SCENARIO is not set: it names the scenario file this stand-in plays")?;
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.to_string_lossy()))?;
    Scenario::parse(&text)
}

/// # Safety
/// Callable any time, like NVML's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlInit_v2() -> Ret {
    let loaded = *LOADED_MS.get_or_init(now_ms);
    let mut guard = lock();
    if guard.is_none() {
        match load_scenario() {
            Ok(scenario) => {
                let start_ms = scenario.start_unix_ms.map_or(loaded, |ms| ms as f64);
                *guard =
                    Some(Driver { scenario, start_ms, inits: 0, samples: BTreeMap::new(), announced: BTreeSet::new() });
            }
            Err(e) => {
                eprintln!("nvml-stub: {e}");
                return ERROR_UNKNOWN;
            }
        }
    }
    let Some(d) = guard.as_mut() else { return ERROR_UNKNOWN };
    if d.scenario.init_fails(d.t()) {
        return match d.scenario.init.error {
            InitError::DriverNotLoaded => ERROR_DRIVER_NOT_LOADED,
            InitError::LibRmVersionMismatch => ERROR_LIB_RM_VERSION_MISMATCH,
            InitError::Unknown => ERROR_UNKNOWN,
        };
    }
    d.inits += 1;
    SUCCESS
}

/// # Safety
/// Callable any time.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlInitWithFlags(_flags: c_uint) -> Ret {
    // SAFETY: no preconditions.
    unsafe { nvmlInit_v2() }
}

/// # Safety
/// Callable any time.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlShutdown() -> Ret {
    with_driver(|d, _| {
        d.inits -= 1;
        SUCCESS
    })
}

/// # Safety
/// Callable any time; the string is static.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlErrorString(result: Ret) -> *const c_char {
    let text: &'static [u8] = match result {
        SUCCESS => b"Success\0",
        ERROR_UNINITIALIZED => b"Uninitialized\0",
        ERROR_INVALID_ARGUMENT => b"Invalid Argument\0",
        ERROR_NOT_SUPPORTED => b"Not Supported\0",
        ERROR_NOT_FOUND => b"Not Found\0",
        ERROR_INSUFFICIENT_SIZE => b"Insufficient Size\0",
        ERROR_DRIVER_NOT_LOADED => b"Driver Not Loaded\0",
        ERROR_GPU_IS_LOST => b"GPU is lost\0",
        ERROR_LIB_RM_VERSION_MISMATCH => b"RM has detected an NVML/RM version mismatch.\0",
        ERROR_ARGUMENT_VERSION_MISMATCH => b"Argument version mismatch\0",
        _ => b"Unknown Error\0",
    };
    text.as_ptr().cast()
}

/// # Safety
/// `version` valid for `length` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetDriverVersion(version: *mut c_char, length: c_uint) -> Ret {
    // SAFETY: the caller's buffer holds `length` bytes.
    with_driver(|d, _| unsafe { write_str(&d.scenario.driver_version, version, length) })
}

/// # Safety
/// `count` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCount_v2(count: *mut c_uint) -> Ret {
    // SAFETY: valid by contract.
    with_driver(|d, _| unsafe { put(count, d.scenario.devices.len() as c_uint) })
}

/// # Safety
/// `device` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex_v2(index: c_uint, device: *mut Handle) -> Ret {
    with_driver(|d, t| {
        let gpu = index as usize;
        if gpu >= d.scenario.devices.len() {
            return ERROR_INVALID_ARGUMENT;
        }
        if d.scenario.is_lost(gpu, t) {
            return ERROR_GPU_IS_LOST;
        }
        // SAFETY: valid by contract.
        unsafe { put(device, handle_of(Place { gpu, mig: None })) }
    })
}

/// # Safety
/// `uuid` valid for `length` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetUUID(device: Handle, uuid: *mut c_char, length: c_uint) -> Ret {
    on_device(device, |d, place, _| {
        let dev = &d.scenario.devices[place.gpu];
        let text = match place.mig.and_then(|m| dev.mig.as_ref()?.devices.get(m)) {
            Some(m) => &m.uuid,
            None => &dev.uuid,
        };
        // SAFETY: the caller's buffer holds `length` bytes.
        unsafe { write_str(text, uuid, length) }
    })
}

/// # Safety
/// `name` valid for `length` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetName(device: Handle, name: *mut c_char, length: c_uint) -> Ret {
    on_device(device, |d, place, _| {
        let dev = &d.scenario.devices[place.gpu];
        let text = match place.mig.and_then(|m| dev.mig.as_ref()?.devices.get(m)) {
            Some(m) => format!("{} MIG {}", dev.name, m.profile),
            None => dev.name.clone(),
        };
        // SAFETY: the caller's buffer holds `length` bytes.
        unsafe { write_str(&text, name, length) }
    })
}

/// # Safety
/// `memory` valid, its `version` set.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo_v2(device: Handle, memory: *mut MemoryV2) -> Ret {
    on_device(device, |d, place, t| {
        if memory.is_null() {
            return ERROR_INVALID_ARGUMENT;
        }
        // SAFETY: valid by contract.
        if unsafe { (*memory).version } != MEMORY_V2 {
            return ERROR_ARGUMENT_VERSION_MISMATCH;
        }
        let dev = &d.scenario.devices[place.gpu];
        let total = match place.mig.and_then(|m| dev.mig.as_ref()?.devices.get(m)) {
            Some(m) => m.memory_total_bytes,
            None => dev.memory_total_bytes,
        };
        let used = d.scenario.memory_used(place, t).min(total);
        // SAFETY: valid by contract.
        unsafe { put(memory, MemoryV2 { version: MEMORY_V2, total, reserved: 0, free: total - used, used }) }
    })
}

/// # Safety
/// `current` and `pending` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMigMode(device: Handle, current: *mut c_uint, pending: *mut c_uint) -> Ret {
    on_device(device, |d, place, _| {
        if place.mig.is_some() || d.scenario.devices[place.gpu].mig.is_none() {
            return ERROR_NOT_SUPPORTED;
        }
        // SAFETY: valid by contract.
        unsafe {
            match put(current, 1) {
                SUCCESS => put(pending, 1),
                e => e,
            }
        }
    })
}

/// # Safety
/// `count` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMaxMigDeviceCount(device: Handle, count: *mut c_uint) -> Ret {
    on_device(device, |d, place, _| match (&d.scenario.devices[place.gpu].mig, place.mig) {
        // SAFETY: valid by contract.
        (Some(mig), None) => unsafe { put(count, mig.max_devices) },
        _ => ERROR_NOT_SUPPORTED,
    })
}

/// # Safety
/// `mig_device` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMigDeviceHandleByIndex(
    device: Handle,
    index: c_uint,
    mig_device: *mut Handle,
) -> Ret {
    on_device(device, |d, place, _| {
        let Some(mig) = d.scenario.devices[place.gpu].mig.as_ref().filter(|_| place.mig.is_none()) else {
            return ERROR_NOT_SUPPORTED;
        };
        if index >= mig.max_devices {
            return ERROR_INVALID_ARGUMENT;
        }
        let found = mig.devices.iter().enumerate().position(|(i, m)| m.index.unwrap_or(i as u32) == index);
        match found {
            // SAFETY: valid by contract.
            Some(m) => unsafe { put(mig_device, handle_of(Place { gpu: place.gpu, mig: Some(m) })) },
            None => ERROR_NOT_FOUND,
        }
    })
}

/// # Safety
/// `id` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceId(device: Handle, id: *mut c_uint) -> Ret {
    on_device(device, |d, place, _| {
        match place.mig.and_then(|m| d.scenario.devices[place.gpu].mig.as_ref()?.devices.get(m)) {
            // SAFETY: valid by contract.
            Some(m) => unsafe { put(id, m.gpu_instance_id) },
            None => ERROR_INVALID_ARGUMENT,
        }
    })
}

/// # Safety
/// `count` valid; `infos` null or valid for `*count` entries.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetComputeRunningProcesses_v3(
    device: Handle,
    count: *mut c_uint,
    infos: *mut ProcessInfo,
) -> Ret {
    on_device(device, |d, place, t| {
        let entries = d.list(place, List::Compute, t, infos.is_null());
        // SAFETY: valid by contract.
        unsafe { fill(entries, count, infos) }
    })
}

/// # Safety
/// `count` valid; `infos` null or valid for `*count` entries.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMPSComputeRunningProcesses_v3(
    device: Handle,
    count: *mut c_uint,
    infos: *mut ProcessInfo,
) -> Ret {
    on_device(device, |d, place, t| {
        let entries = d.list(place, List::Mps, t, infos.is_null());
        // SAFETY: valid by contract.
        unsafe { fill(entries, count, infos) }
    })
}

/// # Safety
/// `count` valid; `samples` null or valid for `*count` entries.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetProcessUtilization(
    device: Handle,
    samples: *mut ProcessUtilizationSample,
    count: *mut c_uint,
    last_seen: c_ulonglong,
) -> Ret {
    on_device(device, |d, place, t| {
        if place.mig.is_some() || d.scenario.devices[place.gpu].mig.is_some() {
            return ERROR_NOT_SUPPORTED;
        }
        if count.is_null() {
            return ERROR_INVALID_ARGUMENT;
        }
        let entries: Vec<ProcessUtilizationSample> = d
            .samples(place, t, last_seen, samples.is_null())
            .into_iter()
            .map(|(pid, time_stamp, sm_util, mem_util)| ProcessUtilizationSample {
                pid,
                time_stamp,
                sm_util,
                mem_util,
                enc_util: 0,
                dec_util: 0,
            })
            .collect();
        if entries.is_empty() {
            // SAFETY: valid by contract.
            unsafe { *count = 0 };
            return ERROR_NOT_FOUND;
        }
        // SAFETY: valid by contract.
        unsafe { fill(entries, count, samples) }
    })
}

/// # Safety
/// `utilization` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetUtilizationRates(device: Handle, utilization: *mut Utilization) -> Ret {
    on_device(device, |d, place, t| {
        if place.mig.is_some() || d.scenario.devices[place.gpu].mig.is_some() {
            return ERROR_NOT_SUPPORTED;
        }
        let gpu = d.scenario.utilization(place.gpu, t);
        // SAFETY: valid by contract.
        unsafe { put(utilization, Utilization { gpu, memory: gpu / 2 }) }
    })
}

/// # Safety
/// `power` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPowerUsage(device: Handle, power: *mut c_uint) -> Ret {
    on_device(device, |d, place, _| match place.mig {
        Some(_) => ERROR_NOT_SUPPORTED,
        // SAFETY: valid by contract.
        None => unsafe { put(power, d.scenario.devices[place.gpu].power_mw as c_uint) },
    })
}

/// # Safety
/// `energy` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetTotalEnergyConsumption(device: Handle, energy: *mut c_ulonglong) -> Ret {
    on_device(device, |d, place, t| match (place.mig, d.scenario.energy_mj(place.gpu, t)) {
        // SAFETY: valid by contract.
        (None, Some(mj)) => unsafe { put(energy, mj) },
        _ => ERROR_NOT_SUPPORTED,
    })
}

/// # Safety
/// `sample` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlGpmSampleAlloc(sample: *mut *mut GpmSample) -> Ret {
    with_driver(|_, _| {
        let s = Box::into_raw(Box::new(GpmSample { taken: None }));
        // SAFETY: valid by contract.
        unsafe { put(sample, s) }
    })
}

/// # Safety
/// `sample` from `nvmlGpmSampleAlloc`, not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlGpmSampleFree(sample: *mut GpmSample) -> Ret {
    if sample.is_null() {
        return ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: allocated by `nvmlGpmSampleAlloc` with `Box::into_raw` and freed once, by contract.
    drop(unsafe { Box::from_raw(sample) });
    SUCCESS
}

/// # Safety
/// `sample` from `nvmlGpmSampleAlloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlGpmMigSampleGet(device: Handle, gpu_instance_id: c_uint, sample: *mut GpmSample) -> Ret {
    on_device(device, |d, place, t| {
        let dev = &d.scenario.devices[place.gpu];
        if !dev.gpm || place.mig.is_some() {
            return ERROR_NOT_SUPPORTED;
        }
        let Some(mig) =
            dev.mig.as_ref().and_then(|m| m.devices.iter().position(|x| x.gpu_instance_id == gpu_instance_id))
        else {
            return ERROR_INVALID_ARGUMENT;
        };
        if sample.is_null() {
            return ERROR_INVALID_ARGUMENT;
        }
        // SAFETY: a live sample from `nvmlGpmSampleAlloc`, by contract.
        unsafe { (*sample).taken = Some((Place { gpu: place.gpu, mig: Some(mig) }, t)) };
        SUCCESS
    })
}

/// # Safety
/// `request` valid; its samples from `nvmlGpmSampleAlloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlGpmMetricsGet(request: *mut GpmMetricsGet) -> Ret {
    with_driver(|d, _| {
        if request.is_null() {
            return ERROR_INVALID_ARGUMENT;
        }
        // SAFETY: valid by contract.
        let r = unsafe { &mut *request };
        if r.version != GPM_METRICS_GET_VERSION {
            return ERROR_ARGUMENT_VERSION_MISMATCH;
        }
        if r.sample1.is_null() || r.sample2.is_null() || r.num_metrics as usize > r.metrics.len() {
            return ERROR_INVALID_ARGUMENT;
        }
        // SAFETY: live samples by contract.
        let (a, b) = unsafe { ((*r.sample1).taken, (*r.sample2).taken) };
        let (Some((p1, t1)), Some((p2, t2))) = (a, b) else { return ERROR_INVALID_ARGUMENT };
        if p1 != p2 {
            return ERROR_INVALID_ARGUMENT;
        }
        for m in r.metrics.iter_mut().take(r.num_metrics as usize) {
            if m.metric_id == GPM_METRIC_SM_UTIL {
                m.nvml_return = SUCCESS;
                m.value = d.scenario.gpm_sm_util(p1, t1.min(t2), t1.max(t2));
                m.short_name = c"SM_UTIL".as_ptr();
                m.long_name = c"SM utilization".as_ptr();
                m.unit = c"%".as_ptr();
            } else {
                m.nvml_return = ERROR_NOT_SUPPORTED;
            }
        }
        SUCCESS
    })
}
