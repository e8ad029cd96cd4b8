//! Folds sampling ticks into one interval report: means over the interval, energy from NVML's
//! cumulative counter, and the processes seen. Pure: no clock, no I/O.
//!
//! Energy is the counter's rise from the last reading of the previous interval to the last of this one; a
//! GPU that had no reading in an interval (off the bus) starts again from its first reading after.
//!
//! A process's SM utilisation is averaged over *every* tick of the interval, with the ticks in which it
//! was absent (or had no NVML sample) counting as 0, so that `sm_util / 100 × interval` is the GPU time
//! it actually used. Memory held is averaged the same way.
//!
//! Beside the means, the evidence a right-sizing needs: a process's peak memory (its largest reading in any
//! tick of the interval, not the mean) and its busy samples (the ticks it was present with an SM reading above
//! zero; a tick without a reading is not busy).

use std::collections::{BTreeMap, HashMap};

use crate::reading::{GpuUsage, IntervalReport, ProcessUsage, Tick, WorkloadIdentity};

#[derive(Default)]
struct GpuAcc {
    samples: u32,
    util_sum: u64,
    util_samples: u32,
    mem_util_sum: u64,
    mem_util_samples: u32,
    mem_used_sum: u128,
    power_sum: u64,
    power_samples: u32,
    last_energy: Option<u64>,
}

#[derive(Default)]
struct ProcAcc {
    samples: u32,
    sm_sum: u64,
    mem_util_sum: u64,
    mem_used_sum: u128,
    mem_used_peak: u64,
    busy: u32,
    identity: Option<WorkloadIdentity>,
}

/// Accumulates the ticks of one interval at a time; `close` yields the report and starts the next.
pub struct IntervalAccumulator {
    start_ns: u64,
    sample_interval_ns: u64,
    ticks: u32,
    gpus: BTreeMap<String, GpuAcc>,
    processes: BTreeMap<(String, u32), ProcAcc>,
    /// Energy counter at the end of the previous interval, per GPU: the baseline for the next delta.
    energy_baseline: HashMap<String, u64>,
}

impl IntervalAccumulator {
    pub fn new(start_ns: u64, sample_interval_ns: u64) -> Self {
        Self {
            start_ns,
            sample_interval_ns,
            ticks: 0,
            gpus: BTreeMap::new(),
            processes: BTreeMap::new(),
            energy_baseline: HashMap::new(),
        }
    }

    pub fn start_ns(&self) -> u64 {
        self.start_ns
    }

    pub fn ticks(&self) -> u32 {
        self.ticks
    }

    /// Processes seen so far in this interval.
    pub fn pids(&self) -> Vec<u32> {
        self.processes.keys().map(|(_, pid)| *pid).collect()
    }

    pub fn add(&mut self, tick: Tick) {
        self.ticks += 1;
        for g in tick.gpus {
            let acc = self.gpus.entry(g.uuid.clone()).or_default();
            acc.samples += 1;
            if let Some(u) = g.utilization_percent {
                acc.util_sum += u64::from(u.min(100));
                acc.util_samples += 1;
            }
            if let Some(u) = g.memory_utilization_percent {
                acc.mem_util_sum += u64::from(u.min(100));
                acc.mem_util_samples += 1;
            }
            acc.mem_used_sum += u128::from(g.memory_used_bytes);
            if let Some(p) = g.power_milliwatts {
                acc.power_sum += p;
                acc.power_samples += 1;
            }
            if let Some(e) = g.energy_counter_millijoules {
                // The first reading ever is the baseline: energy before the agent started is not ours.
                self.energy_baseline.entry(g.uuid.clone()).or_insert(e);
                acc.last_energy = Some(e);
            }
        }
        for p in tick.processes {
            let acc = self.processes.entry((p.gpu_uuid, p.pid)).or_default();
            acc.samples += 1;
            acc.sm_sum += u64::from(p.sm_util_percent.unwrap_or(0).min(100));
            acc.mem_util_sum += u64::from(p.memory_util_percent.unwrap_or(0).min(100));
            acc.mem_used_sum += u128::from(p.used_memory_bytes);
            acc.mem_used_peak = acc.mem_used_peak.max(p.used_memory_bytes);
            acc.busy += u32::from(p.sm_util_percent.is_some_and(|u| u > 0));
            if p.identity.is_some() {
                acc.identity = p.identity;
            }
        }
    }

    /// Ends the interval at `end_ns` and starts the next one there. Processes come back with the
    /// identity their source gave, or a default one for the agent's identifier to fill.
    pub fn close(&mut self, end_ns: u64) -> IntervalReport {
        let ticks = self.ticks.max(1);
        let mean = |sum: u64, n: u32| if n == 0 { 0.0 } else { sum as f64 / f64::from(n) };
        // A GPU with no energy reading in this interval (lost, or not read) starts from its next reading: the
        // energy of the time it was not read is not the next interval's.
        self.energy_baseline.retain(|uuid, _| self.gpus.get(uuid).is_some_and(|g| g.last_energy.is_some()));
        let gpus = std::mem::take(&mut self.gpus)
            .into_iter()
            .map(|(uuid, a)| {
                let energy_millijoules = a.last_energy.and_then(|last| {
                    let base = self.energy_baseline.insert(uuid.clone(), last)?;
                    // A counter that went backwards was reset (driver reload): the delta is unknown.
                    last.checked_sub(base)
                });
                GpuUsage {
                    utilization_percent: mean(a.util_sum, a.util_samples),
                    memory_utilization_percent: mean(a.mem_util_sum, a.mem_util_samples),
                    memory_used_bytes: (a.mem_used_sum / u128::from(a.samples.max(1))) as u64,
                    power_milliwatts: a.power_sum / u64::from(a.power_samples.max(1)),
                    energy_millijoules,
                    sample_count: a.samples,
                    uuid,
                }
            })
            .collect();
        let processes = std::mem::take(&mut self.processes)
            .into_iter()
            .map(|((gpu_uuid, pid), a)| ProcessUsage {
                pid,
                gpu_uuid,
                sm_util: a.sm_sum as f64 / f64::from(ticks),
                mem_util: a.mem_util_sum as f64 / f64::from(ticks),
                used_memory_bytes: (a.mem_used_sum / u128::from(ticks)) as u64,
                peak_memory_bytes: a.mem_used_peak,
                sample_count: a.samples,
                busy_sample_count: a.busy,
                workload: a.identity.unwrap_or_default(),
                process_name: String::new(),
            })
            .collect();
        let report = IntervalReport {
            interval_start_unix_nanos: self.start_ns,
            interval_end_unix_nanos: end_ns,
            sample_interval_nanos: self.sample_interval_ns,
            sample_count: self.ticks,
            gpus,
            processes,
            allocations: Vec::new(),
        };
        self.start_ns = end_ns;
        self.ticks = 0;
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::{GpuSample, ProcessSample};

    fn gpu(uuid: &str, util: u32, energy: u64) -> GpuSample {
        GpuSample {
            uuid: uuid.into(),
            utilization_percent: Some(util),
            memory_utilization_percent: Some(util / 2),
            memory_used_bytes: 1000,
            power_milliwatts: Some(100_000),
            energy_counter_millijoules: Some(energy),
        }
    }

    fn proc(pid: u32, sm: Option<u32>, mem: u64) -> ProcessSample {
        ProcessSample {
            pid,
            gpu_uuid: "GPU-a".into(),
            sm_util_percent: sm,
            memory_util_percent: sm,
            used_memory_bytes: mem,
            identity: None,
        }
    }

    #[test]
    fn absent_ticks_count_as_zero_utilisation_and_memory() {
        let mut acc = IntervalAccumulator::new(0, 1_000_000_000);
        acc.add(Tick { gpus: vec![gpu("GPU-a", 90, 0)], processes: vec![proc(7, Some(90), 400)] });
        acc.add(Tick { gpus: vec![gpu("GPU-a", 60, 10)], processes: vec![proc(7, None, 400)] });
        acc.add(Tick { gpus: vec![gpu("GPU-a", 0, 20)], processes: vec![] });
        let r = acc.close(3_000_000_000);
        assert_eq!(r.sample_count, 3);
        assert_eq!(r.processes.len(), 1);
        assert_eq!(r.processes[0].sm_util, 30.0);
        assert_eq!(r.processes[0].used_memory_bytes, 266);
        assert_eq!(r.processes[0].sample_count, 2);
        assert_eq!(r.gpus[0].utilization_percent, 50.0);
    }

    #[test]
    fn energy_is_the_counter_delta_across_consecutive_intervals() {
        let mut acc = IntervalAccumulator::new(0, 1);
        acc.add(Tick { gpus: vec![gpu("GPU-a", 0, 5_000)], processes: vec![] });
        acc.add(Tick { gpus: vec![gpu("GPU-a", 0, 5_700)], processes: vec![] });
        assert_eq!(acc.close(2).gpus[0].energy_millijoules, Some(700));
        acc.add(Tick { gpus: vec![gpu("GPU-a", 0, 6_000)], processes: vec![] });
        let second = acc.close(3);
        assert_eq!(second.interval_start_unix_nanos, 2);
        assert_eq!(second.gpus[0].energy_millijoules, Some(300));
    }

    #[test]
    fn a_reset_energy_counter_yields_no_energy_rather_than_a_wrong_one() {
        let mut acc = IntervalAccumulator::new(0, 1);
        acc.add(Tick { gpus: vec![gpu("GPU-a", 0, 9_000)], processes: vec![] });
        acc.close(1);
        acc.add(Tick { gpus: vec![gpu("GPU-a", 0, 100)], processes: vec![] });
        assert_eq!(acc.close(2).gpus[0].energy_millijoules, None);
        acc.add(Tick { gpus: vec![gpu("GPU-a", 0, 400)], processes: vec![] });
        assert_eq!(acc.close(3).gpus[0].energy_millijoules, Some(300));
    }

    #[test]
    fn energy_after_an_interval_without_readings_counts_from_the_first_reading_back() {
        let mut acc = IntervalAccumulator::new(0, 1);
        acc.add(Tick { gpus: vec![gpu("GPU-a", 0, 1_000), gpu("GPU-b", 0, 1_000)], processes: vec![] });
        acc.close(1);
        // GPU-a is off the bus for a whole interval while its counter goes on.
        acc.add(Tick { gpus: vec![gpu("GPU-b", 0, 1_500)], processes: vec![] });
        assert_eq!(acc.close(2).gpus.len(), 1);
        acc.add(Tick { gpus: vec![gpu("GPU-a", 0, 2_200), gpu("GPU-b", 0, 2_000)], processes: vec![] });
        acc.add(Tick { gpus: vec![gpu("GPU-a", 0, 2_400), gpu("GPU-b", 0, 2_500)], processes: vec![] });
        let back = acc.close(3);
        let energy = |uuid: &str| back.gpus.iter().find(|g| g.uuid == uuid).unwrap().energy_millijoules;
        assert_eq!(energy("GPU-a"), Some(200), "from its first reading back, not from before it was lost");
        assert_eq!(energy("GPU-b"), Some(1_000));
    }

    #[test]
    fn peak_memory_is_the_largest_sample_and_busy_counts_samples_with_sm_above_zero() {
        let mut acc = IntervalAccumulator::new(0, 1_000_000_000);
        let ticks = [(Some(40), 2_000), (Some(0), 9_000), (None, 3_000), (Some(1), 1_000)];
        for (sm, mem) in ticks {
            acc.add(Tick { gpus: vec![gpu("GPU-a", 0, 0)], processes: vec![proc(7, sm, mem)] });
        }
        // A tick without the process: neither busy nor memory, but it still counts in the means.
        acc.add(Tick { gpus: vec![gpu("GPU-a", 0, 0)], processes: vec![] });
        let p = &acc.close(5_000_000_000).processes[0];
        assert_eq!(p.peak_memory_bytes, 9_000, "the largest sample, not the mean");
        assert_eq!(p.used_memory_bytes, 3_000, "the mean over all five ticks");
        assert!(p.peak_memory_bytes > p.used_memory_bytes);
        assert_eq!((p.busy_sample_count, p.sample_count), (2, 4), "SM 40 and 1 are busy; 0 and no reading are not");
        // The next interval starts afresh.
        acc.add(Tick { gpus: vec![], processes: vec![proc(7, Some(5), 100)] });
        let next = &acc.close(6_000_000_000).processes[0];
        assert_eq!((next.peak_memory_bytes, next.busy_sample_count, next.sample_count), (100, 1, 1));
    }

    #[test]
    fn out_of_range_utilisation_is_clamped_to_100() {
        let mut acc = IntervalAccumulator::new(0, 1);
        acc.add(Tick { gpus: vec![gpu("GPU-a", 140, 0)], processes: vec![proc(1, Some(250), 0)] });
        let r = acc.close(1);
        assert_eq!(r.gpus[0].utilization_percent, 100.0);
        assert_eq!(r.processes[0].sm_util, 100.0);
    }
}
