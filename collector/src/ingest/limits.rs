//! Limits on what agents may ask of the collector: how many streams at once, and how many batches per
//! agent per minute (a token bucket). A breach gets `RESOURCE_EXHAUSTED` with what was exceeded, is
//! counted in `gpucost_limit_breaches_total{limit}`, and costs no memory: nothing is queued for it. The
//! agent keeps the batch and sends it again later, so nothing is lost.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Batches per agent per minute, as a token bucket (bursts up to one minute's worth).
#[derive(Debug)]
pub struct RateLimit {
    per_minute: u32,
    buckets: Mutex<HashMap<String, (f64, u64)>>,
}

impl RateLimit {
    pub fn new(per_minute: u32) -> Self {
        Self { per_minute, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one batch from `agent`'s bucket at `now_ns`; `false` when it is empty.
    pub fn admit(&self, agent: &str, now_ns: u64) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let cap = f64::from(self.per_minute);
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: agents idle for an hour are forgotten when the map grows large.
        if b.len() > 100_000 {
            b.retain(|_, (_, at)| now_ns.saturating_sub(*at) < 3_600_000_000_000);
        }
        let (tokens, at) = b.entry(agent.to_string()).or_insert((cap, now_ns));
        *tokens = (*tokens + (now_ns.saturating_sub(*at) as f64 / 60e9) * cap).min(cap);
        *at = now_ns;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }
}

/// Open streams, up to a maximum.
#[derive(Debug)]
pub struct StreamSlots {
    max: usize,
    open: AtomicUsize,
}

impl StreamSlots {
    pub fn new(max: usize) -> Self {
        Self { max, open: AtomicUsize::new(0) }
    }

    /// Takes a slot; `false` when `max` streams are open.
    pub fn take(&self) -> bool {
        if self.open.fetch_add(1, Ordering::SeqCst) >= self.max {
            self.open.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    pub fn give_back(&self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_minute_burst_then_refills_at_the_rate() {
        let r = RateLimit::new(60);
        let t0 = 1_000_000_000_000;
        assert!((0..60).all(|_| r.admit("a", t0)));
        assert!(!r.admit("a", t0), "the burst is spent");
        assert!(r.admit("b", t0), "per agent");
        assert!(!r.admit("a", t0 + 500_000_000), "half a token after half a second");
        assert!(r.admit("a", t0 + 1_000_000_000), "one token a second");
        assert!(RateLimit::new(0).admit("a", t0), "0 means no limit");
    }

    #[test]
    fn slots_stop_at_the_maximum_and_come_back() {
        let s = StreamSlots::new(2);
        assert_eq!((s.take(), s.take(), s.take()), (true, true, false));
        s.give_back();
        assert!(s.take());
    }
}
