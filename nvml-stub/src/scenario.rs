//! The scenario a stub plays: devices, MIG layout, processes arriving and leaving with their SM and memory
//! over time, energy counters and faults, all on the scenario clock (seconds since `start_unix_ms`).
//! Pure: what the driver would answer at a given time; the C functions in `lib.rs` only marshal it.
//! The format is documented in docs/agent.md ("The NVML stand-in").

use std::collections::BTreeSet;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Time zero of the scenario clock (Unix milliseconds); default: when the library was first loaded.
    pub start_unix_ms: Option<u64>,
    #[serde(default = "default_driver_version")]
    pub driver_version: String,
    #[serde(default)]
    pub init: InitSpec,
    pub devices: Vec<DeviceSpec>,
    #[serde(default)]
    pub processes: Vec<ProcessSpec>,
}

fn default_driver_version() -> String {
    "550.127.05".into()
}

/// `nvmlInit_v2` fails with `error` until `fail_until_s` (the driver still loading).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitSpec {
    pub fail_until_s: Option<f64>,
    #[serde(default)]
    pub error: InitError,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InitError {
    #[default]
    DriverNotLoaded,
    LibRmVersionMismatch,
    Unknown,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    pub uuid: String,
    pub name: String,
    pub memory_total_bytes: u64,
    /// Device utilisation (percent); default: the sum of its processes' SM, at most 100.
    pub utilization: Option<Series>,
    #[serde(default = "default_power")]
    pub power_mw: u64,
    #[serde(default)]
    pub energy: EnergySpec,
    /// MIG mode on, with these MIG devices. Without it the GPU answers MIG queries `NOT_SUPPORTED`.
    pub mig: Option<MigSpec>,
    /// GPU performance monitoring (Hopper and later): `nvmlGpmMigSampleGet` works on its MIG instances.
    #[serde(default)]
    pub gpm: bool,
    /// Windows `[from_s, until_s)` in which the GPU has fallen off the bus: every call on it (and its MIG
    /// devices) answers `GPU_IS_LOST`.
    #[serde(default)]
    pub lost: Vec<(f64, f64)>,
}

fn default_power() -> u64 {
    100_000
}

/// NVML's cumulative energy counter (millijoules): `base_mj + power_mw × ⌊t⌋`, advancing once per whole
/// second of the scenario clock; after a reset at `r` (driver reload) it reads `power_mw × (⌊t⌋ − r)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnergySpec {
    #[serde(default = "yes")]
    pub supported: bool,
    #[serde(default = "default_energy_base")]
    pub base_mj: u64,
    #[serde(default)]
    pub resets_at_s: Vec<i64>,
}

impl Default for EnergySpec {
    fn default() -> Self {
        Self { supported: true, base_mj: default_energy_base(), resets_at_s: Vec::new() }
    }
}

fn yes() -> bool {
    true
}

fn default_energy_base() -> u64 {
    1_000_000_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigSpec {
    /// What `nvmlDeviceGetMaxMigDeviceCount` answers; indices without a device answer `NOT_FOUND`.
    #[serde(default = "default_max_mig")]
    pub max_devices: u32,
    pub devices: Vec<MigDeviceSpec>,
}

fn default_max_mig() -> u32 {
    7
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigDeviceSpec {
    /// Its index under the parent (default: its position in the list).
    pub index: Option<u32>,
    pub uuid: String,
    /// e.g. `1g.10gb`: the device's name is the parent's followed by ` MIG <profile>`.
    pub profile: String,
    pub memory_total_bytes: u64,
    pub gpu_instance_id: u32,
    #[serde(default)]
    pub compute_instance_id: u32,
    /// SM utilisation of the GPU instance (percent), as GPM measures it.
    #[serde(default)]
    pub sm: Series,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSpec {
    pub pid: u32,
    /// The UUID of the GPU or MIG device it runs on.
    pub device: String,
    /// Present in [from_s, until_s); open-ended when not given.
    pub from_s: Option<f64>,
    pub until_s: Option<f64>,
    /// SM utilisation in its samples (percent). Without it the process has no samples (MPS clients,
    /// processes on MIG devices, or a process that does nothing).
    pub sm: Option<Series>,
    /// Memory utilisation in its samples (percent).
    #[serde(default)]
    pub mem_util: Series,
    /// GPU memory it holds; `null` is NVML's "not available".
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// GPU memory it holds from each time on, `[[from_s, bytes], ...]` (the first also before its time), in
    /// place of `memory_bytes`: a working set that grows and shrinks between two reads.
    #[serde(default)]
    pub memory_steps: Vec<(f64, u64)>,
    pub mps: Option<MpsRole>,
    /// The first size query after it arrives does not count it (it arrived between NVML's two calls), so
    /// the call that fills the buffer finds more entries than it was sized for.
    #[serde(default)]
    pub arrives_between_calls: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MpsRole {
    /// `nvidia-cuda-mps-server`: listed as a compute process, holds the context, has the samples.
    Server,
    /// A client: listed by `nvmlDeviceGetMPSComputeRunningProcesses` only.
    Client,
}

/// A value over time: a constant, or steps `[[from_s, value], ...]` (the first value also applies before
/// its time).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Series {
    Constant(u32),
    Steps(Vec<(f64, u32)>),
}

impl Default for Series {
    fn default() -> Self {
        Self::Constant(0)
    }
}

impl Series {
    pub fn at(&self, t: f64) -> u32 {
        match self {
            Self::Constant(v) => *v,
            Self::Steps(steps) => {
                steps.iter().take_while(|(from, _)| *from <= t).last().or(steps.first()).map_or(0, |(_, v)| *v)
            }
        }
    }
}

/// Where a process sits: a physical GPU, or a MIG device of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Place {
    pub gpu: usize,
    pub mig: Option<usize>,
}

impl ProcessSpec {
    /// The memory it holds at `t`; `None`: not available.
    pub fn memory_at(&self, t: f64) -> Option<u64> {
        let steps = &self.memory_steps;
        match steps.iter().take_while(|(from, _)| *from <= t).last().or(steps.first()) {
            Some(&(_, bytes)) => Some(bytes),
            None => self.memory_bytes,
        }
    }
}

impl Scenario {
    pub fn parse(text: &str) -> Result<Self, String> {
        let s: Scenario = serde_json::from_str(text).map_err(|e| format!("scenario: {e}"))?;
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<(), String> {
        let mut uuids = BTreeSet::new();
        for d in &self.devices {
            if !uuids.insert(d.uuid.as_str()) {
                return Err(format!("scenario: device {} is listed twice", d.uuid));
            }
            for m in d.mig.iter().flat_map(|m| &m.devices) {
                if !uuids.insert(m.uuid.as_str()) {
                    return Err(format!("scenario: device {} is listed twice", m.uuid));
                }
            }
        }
        for p in &self.processes {
            if self.place(&p.device).is_none() {
                return Err(format!("scenario: process {} runs on unknown device {}", p.pid, p.device));
            }
        }
        Ok(())
    }

    /// The GPU (and MIG device) with this UUID.
    pub fn place(&self, uuid: &str) -> Option<Place> {
        self.devices.iter().enumerate().find_map(|(gpu, d)| {
            if d.uuid == uuid {
                return Some(Place { gpu, mig: None });
            }
            let mig = d.mig.as_ref()?.devices.iter().position(|m| m.uuid == uuid)?;
            Some(Place { gpu, mig: Some(mig) })
        })
    }

    pub fn is_lost(&self, gpu: usize, t: f64) -> bool {
        self.devices[gpu].lost.iter().any(|&(from, until)| from <= t && t < until)
    }

    pub fn init_fails(&self, t: f64) -> bool {
        self.init.fail_until_s.is_some_and(|until| t < until)
    }

    /// Processes present at `t` on `place`; on a physical GPU in MIG mode, also those of its MIG devices.
    pub fn processes_at(&self, place: Place, t: f64) -> impl Iterator<Item = (&ProcessSpec, Place)> {
        self.processes.iter().filter_map(move |p| {
            let at = self.place(&p.device)?;
            let here = at == place || (place.mig.is_none() && at.gpu == place.gpu);
            let present = p.from_s.is_none_or(|f| f <= t) && p.until_s.is_none_or(|u| t < u);
            (here && present).then_some((p, at))
        })
    }

    pub fn utilization(&self, gpu: usize, t: f64) -> u32 {
        match &self.devices[gpu].utilization {
            Some(s) => s.at(t).min(100),
            None => {
                let place = Place { gpu, mig: None };
                self.processes_at(place, t).filter_map(|(p, _)| p.sm.as_ref()).map(|s| s.at(t)).sum::<u32>().min(100)
            }
        }
    }

    pub fn memory_used(&self, place: Place, t: f64) -> u64 {
        self.processes_at(place, t).filter_map(|(p, _)| p.memory_at(t)).sum()
    }

    /// The energy counter at `t`, or `None` where the GPU has none.
    pub fn energy_mj(&self, gpu: usize, t: f64) -> Option<u64> {
        let d = &self.devices[gpu];
        if !d.energy.supported {
            return None;
        }
        let s = t.floor() as i64;
        let p = i128::from(d.power_mw);
        let reading = match d.energy.resets_at_s.iter().filter(|&&r| r <= s).max() {
            Some(&r) => p * i128::from(s - r),
            None => i128::from(d.energy.base_mj) + p * i128::from(s),
        };
        Some(reading.clamp(0, i128::from(u64::MAX)) as u64)
    }

    /// A GPU instance's SM utilisation between two GPM samples: the mean over the whole seconds of the
    /// scenario clock between them, as GPM's counters advance; the value at `t2` when both fall in one second.
    pub fn gpm_sm_util(&self, place: Place, t1: f64, t2: f64) -> f64 {
        let Some(mig) = place.mig.and_then(|m| self.devices[place.gpu].mig.as_ref()?.devices.get(m)) else {
            return 0.0;
        };
        let (from, to) = (t1.floor() as i64, t2.floor() as i64);
        if to <= from {
            return f64::from(mig.sm.at(t2).min(100));
        }
        let total: u64 = (from..to).map(|s| u64::from(mig.sm.at(s as f64).min(100))).sum();
        total as f64 / (to - from) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(json: &str) -> Scenario {
        Scenario::parse(json).unwrap()
    }

    #[test]
    fn a_series_holds_each_value_from_its_time_and_the_first_before_it() {
        let s = Series::Steps(vec![(0.0, 10), (4.0, 70)]);
        assert_eq!((s.at(-1.0), s.at(0.0), s.at(3.9), s.at(4.0), s.at(100.0)), (10, 10, 10, 70, 70));
        assert_eq!(Series::Constant(5).at(9.0), 5);
    }

    #[test]
    fn the_energy_counter_steps_each_second_and_restarts_from_zero_after_a_reset() {
        let s = scenario(
            r#"{"devices":[{"uuid":"GPU-a","name":"NVIDIA H100 80GB HBM3","memory_total_bytes":1,"power_mw":300000,
                "energy":{"base_mj":1000000,"resets_at_s":[6]}},
               {"uuid":"GPU-b","name":"Tesla P100-PCIE-16GB","memory_total_bytes":1,"energy":{"supported":false}}]}"#,
        );
        assert_eq!(s.energy_mj(0, 2.0), Some(1_600_000));
        assert_eq!(s.energy_mj(0, 2.9), Some(1_600_000));
        assert_eq!(s.energy_mj(0, 3.0), Some(1_900_000));
        assert_eq!(s.energy_mj(0, 7.5), Some(300_000));
        assert_eq!(s.energy_mj(1, 7.5), None);
    }

    #[test]
    fn gpm_averages_the_whole_seconds_between_two_samples() {
        let s = scenario(
            r#"{"devices":[{"uuid":"GPU-a","name":"NVIDIA H100 80GB HBM3","memory_total_bytes":1,"gpm":true,
                "mig":{"devices":[{"uuid":"MIG-a","profile":"3g.40gb","memory_total_bytes":1,"gpu_instance_id":2,
                                   "sm":[[0,40],[2,80]]}]}}]}"#,
        );
        let place = Place { gpu: 0, mig: Some(0) };
        assert_eq!(s.gpm_sm_util(place, 0.3, 1.2), 40.0);
        assert_eq!(s.gpm_sm_util(place, 1.3, 3.2), 60.0);
        assert_eq!(s.gpm_sm_util(place, 2.1, 2.2), 80.0);
    }

    #[test]
    fn a_mig_parent_lists_the_processes_of_its_mig_devices() {
        let s = scenario(
            r#"{"devices":[{"uuid":"GPU-a","name":"NVIDIA A100-SXM4-40GB","memory_total_bytes":1,
                "mig":{"devices":[{"uuid":"MIG-a","profile":"1g.5gb","memory_total_bytes":1,"gpu_instance_id":7}]}}],
                "processes":[{"pid":9,"device":"MIG-a","memory_bytes":5,"from_s":1,"until_s":3}]}"#,
        );
        assert_eq!(s.processes_at(Place { gpu: 0, mig: None }, 2.0).count(), 1);
        assert_eq!(s.processes_at(Place { gpu: 0, mig: Some(0) }, 2.0).count(), 1);
        assert_eq!(s.processes_at(Place { gpu: 0, mig: Some(0) }, 3.0).count(), 0, "gone at until_s");
        assert_eq!(s.memory_used(Place { gpu: 0, mig: None }, 1.0), 5);
    }

    #[test]
    fn memory_steps_change_what_a_process_holds_over_time() {
        let s = Scenario::parse(
            r#"{"devices":[{"uuid":"GPU-a","name":"NVIDIA A10G","memory_total_bytes":100}],
                "processes":[{"pid":9,"device":"GPU-a","memory_bytes":1,"memory_steps":[[2.5,60],[3.5,10]]}]}"#,
        )
        .unwrap();
        let at = |t| s.memory_used(Place { gpu: 0, mig: None }, t);
        assert_eq!((at(0.0), at(2.5), at(3.4), at(3.5), at(9.0)), (60, 60, 60, 10, 10));
    }

    #[test]
    fn a_process_on_an_unknown_device_is_refused_naming_it() {
        let e = Scenario::parse(r#"{"devices":[],"processes":[{"pid":1,"device":"GPU-x"}]}"#).unwrap_err();
        assert!(e.contains("GPU-x"), "{e}");
    }
}
