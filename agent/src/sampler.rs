//! Drives a source on a clock: a sample every `sample_interval`, an interval report every
//! `report_interval`. With the wall clock, intervals end on multiples of the report interval (after a
//! first, partial one), so every node's intervals line up. With a virtual clock (the simulator's
//! replays and backfills) time is computed rather than waited for.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::identify::Identifier;
use crate::interval::IntervalAccumulator;
use crate::reading::{IntervalReport, WorkloadKind};
use crate::source::{GpuSource, SourceError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Real time. `align`: end intervals on multiples of the report interval.
    Wall { align: bool },
    /// Simulated time from `start_unix_nanos`, waiting `pace` of real time after each interval.
    Virtual { start_unix_nanos: u64, pace: Duration },
}

pub fn now_unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

pub struct Sampler {
    source: Box<dyn GpuSource>,
    identifier: Option<Identifier>,
    acc: IntervalAccumulator,
    sample_ns: u64,
    report_ns: u64,
    clock: Clock,
}

impl Sampler {
    pub fn new(
        source: Box<dyn GpuSource>,
        identifier: Option<Identifier>,
        sample: Duration,
        report: Duration,
        clock: Clock,
    ) -> Self {
        let start = match clock {
            Clock::Wall { .. } => now_unix_nanos(),
            Clock::Virtual { start_unix_nanos, .. } => start_unix_nanos,
        };
        let sample_ns = sample.as_nanos() as u64;
        Self {
            source,
            identifier,
            acc: IntervalAccumulator::new(start, sample_ns),
            sample_ns,
            report_ns: report.as_nanos() as u64,
            clock,
        }
    }

    pub fn source(&self) -> &dyn GpuSource {
        self.source.as_ref()
    }

    /// How the identifier's process cache is doing, if there is an identifier.
    pub fn identifier_stats(&self) -> Option<crate::identify::CacheStats> {
        self.identifier.as_ref().map(|i| i.stats())
    }

    fn interval_end(&self) -> u64 {
        let start = self.acc.start_ns();
        match self.clock {
            Clock::Wall { align: true } => (start / self.report_ns + 1) * self.report_ns,
            _ => start + self.report_ns,
        }
    }

    /// Samples until the current interval ends and returns its report.
    pub async fn next_interval(&mut self) -> Result<IntervalReport, SourceError> {
        let start = self.acc.start_ns();
        let end = self.interval_end();
        let mut tick_at = start;
        match self.clock {
            Clock::Virtual { pace, .. } => {
                while tick_at < end {
                    let tick = self.source.sample(tick_at)?;
                    self.acc.add(tick);
                    tick_at += self.sample_ns;
                }
                if !pace.is_zero() {
                    tokio::time::sleep(pace).await;
                }
            }
            Clock::Wall { .. } => {
                while tick_at < end {
                    sleep_until_unix(tick_at).await;
                    let tick = self.source.sample(now_unix_nanos())?;
                    self.acc.add(tick);
                    tick_at += self.sample_ns;
                }
                sleep_until_unix(end).await;
            }
        }
        if let Some(id) = self.identifier.as_mut() {
            id.refresh(&self.source.node().devices, &self.acc.pids()).await;
        }
        Ok(self.close(end))
    }

    /// Ends the current interval now (on shutdown), if it has any samples.
    pub fn close_now(&mut self) -> Option<IntervalReport> {
        (self.acc.ticks() > 0).then(|| {
            let end = now_unix_nanos().max(self.acc.start_ns() + 1);
            self.close(end)
        })
    }

    fn close(&mut self, end: u64) -> IntervalReport {
        let mut report = self.acc.close(end);
        if let Some(id) = self.identifier.as_mut() {
            let live: std::collections::HashSet<u32> = report.processes.iter().map(|p| p.pid).collect();
            for p in &mut report.processes {
                if p.workload.kind == WorkloadKind::Unspecified {
                    let (identity, name) = id.identify(p.pid);
                    p.workload = identity;
                    p.process_name = name;
                }
            }
            id.retain(&live);
            report.allocations = id.allocations();
        } else {
            report.allocations = self.source.allocations();
        }
        report
    }
}

/// Sleeps until the wall clock reads `target`, re-reading it at least every second so that a clock
/// step does not leave us asleep for hours.
async fn sleep_until_unix(target: u64) {
    loop {
        let now = now_unix_nanos();
        if now >= target {
            return;
        }
        tokio::time::sleep(Duration::from_nanos((target - now).min(1_000_000_000))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{Fleet, FleetSpec, SimSource};

    #[tokio::test]
    async fn virtual_intervals_follow_each_other_without_gaps_and_sample_every_tick() {
        let node = Fleet::generate(FleetSpec { seed: 1, clusters: 1, nodes: 1 }).nodes.remove(0);
        let report = Duration::from_secs(15);
        let start = 1_800_000_000_000_000_000 / report.as_nanos() as u64 * report.as_nanos() as u64;
        let mut s = Sampler::new(
            Box::new(SimSource::new(node, report.as_nanos() as u64)),
            None,
            Duration::from_secs(1),
            report,
            Clock::Virtual { start_unix_nanos: start, pace: Duration::ZERO },
        );
        let a = s.next_interval().await.unwrap();
        let b = s.next_interval().await.unwrap();
        assert_eq!(a.interval_start_unix_nanos, start);
        assert_eq!(a.interval_end_unix_nanos, b.interval_start_unix_nanos);
        assert_eq!(b.interval_end_unix_nanos - b.interval_start_unix_nanos, 15_000_000_000);
        assert_eq!(a.sample_count, 15);
        assert!(a.gpus.iter().all(|g| g.sample_count == 15));
    }
}
