//! Limits on what agents may ask of the collector: how many streams at once, with a share for each trust zone
//! (the cluster an agent token writes), and how many batches a zone's agents may send per minute (a token
//! bucket). Both are keyed on what the token authenticates, never on what a batch says of itself (its agent
//! id): one token rotating agent ids is one zone. A breach gets `RESOURCE_EXHAUSTED` with what was exceeded,
//! is counted in `gpucost_limit_breaches_total{limit}`, and costs no memory: nothing is queued for it. The
//! agent keeps the batch and sends it again later, so nothing is lost.

use std::collections::HashMap;
use std::sync::Mutex;

/// Batches per stream per minute, as a token bucket per zone: a zone's agents share a bucket as large as a
/// minute's batches for each stream they hold open (bursts up to that), refilled at that rate.
#[derive(Debug)]
pub struct RateLimit {
    per_minute: u32,
    buckets: Mutex<HashMap<String, (f64, u64)>>,
}

impl RateLimit {
    pub fn new(per_minute: u32) -> Self {
        Self { per_minute, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one batch from `zone`'s bucket at `now_ns`, its agents holding `streams` streams; `false` when
    /// it is empty.
    pub fn admit(&self, zone: &str, streams: usize, now_ns: u64) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let cap = f64::from(self.per_minute) * streams.max(1) as f64;
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: zones are the auth file's clusters (or, insecure, one); idle ones are forgotten anyway.
        if b.len() > 100_000 {
            b.retain(|_, (_, at)| now_ns.saturating_sub(*at) < 3_600_000_000_000);
        }
        let (tokens, at) = b.entry(zone.to_string()).or_insert((cap, now_ns));
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

/// Open streams, up to a maximum, shared between trust zones: each of the `zones` is guaranteed
/// ⌊max / (2 × zones)⌋ (at least one); beyond its guarantee a zone borrows free slots, but never those another
/// zone is guaranteed and not using. One zone alone may use them all.
#[derive(Debug)]
pub struct StreamSlots {
    max: usize,
    zones: usize,
    guaranteed: usize,
    open: Mutex<HashMap<String, usize>>,
}

/// Why a stream was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Full {
    /// `max` streams are open.
    All,
    /// The free slots are other zones' guarantees; this zone holds `held`.
    Share { held: usize },
}

impl StreamSlots {
    /// At most `max` streams, shared by `zones` trust zones (the agent tokens' clusters; one when insecure).
    pub fn new(max: usize, zones: usize) -> Self {
        let zones = zones.max(1);
        Self { max, zones, guaranteed: (max / (2 * zones)).max(1), open: Mutex::new(HashMap::new()) }
    }

    /// Takes a slot for a stream of `zone`.
    pub fn take(&self, zone: &str) -> Result<(), Full> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = open.values().sum();
        if total >= self.max {
            return Err(Full::All);
        }
        let held = open.get(zone).copied().unwrap_or(0);
        if held >= self.guaranteed {
            // What the other zones are guaranteed and not using (those with no stream open, all of theirs) is
            // not to be borrowed.
            let others = open.iter().filter(|(z, _)| z.as_str() != zone);
            let (seen, short) =
                others.fold((0, 0), |(k, n), (_, held)| (k + 1, n + self.guaranteed.saturating_sub(*held)));
            let reserved = short + self.zones.saturating_sub(1 + seen) * self.guaranteed;
            if self.max - total <= reserved {
                return Err(Full::Share { held });
            }
        }
        *open.entry(zone.to_string()).or_insert(0) += 1;
        Ok(())
    }

    /// Gives back a slot of `zone`.
    pub fn give_back(&self, zone: &str) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(zone) {
            *n -= 1;
            if *n == 0 {
                open.remove(zone);
            }
        }
    }

    /// Streams `zone`'s agents hold now.
    pub fn held(&self, zone: &str) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).get(zone).copied().unwrap_or(0)
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn guaranteed(&self) -> usize {
        self.guaranteed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zones_bucket_allows_a_minute_burst_per_stream_then_refills_at_the_rate() {
        let r = RateLimit::new(60);
        let t0 = 1_000_000_000_000;
        assert!((0..60).all(|_| r.admit("a", 1, t0)));
        assert!(!r.admit("a", 1, t0), "the burst is spent");
        assert!(r.admit("b", 1, t0), "per zone");
        assert!(!r.admit("a", 1, t0 + 500_000_000), "half a token after half a second");
        assert!(r.admit("a", 1, t0 + 1_000_000_000), "one token a second");
        assert!(RateLimit::new(0).admit("a", 1, t0), "0 means no limit");
        // Two streams: twice the rate.
        assert!(r.admit("a", 2, t0 + 2_000_000_000) && r.admit("a", 2, t0 + 2_000_000_000));
        assert!(!r.admit("a", 2, t0 + 2_000_000_000));
    }

    #[test]
    fn slots_stop_at_the_maximum_and_come_back() {
        let s = StreamSlots::new(2, 1);
        assert_eq!((s.take(""), s.take(""), s.take("")), (Ok(()), Ok(()), Err(Full::All)));
        s.give_back("");
        assert!(s.take("").is_ok());
    }

    #[test]
    fn one_zone_cannot_take_the_slots_other_zones_are_guaranteed() {
        let s = StreamSlots::new(8, 2);
        assert_eq!(s.guaranteed(), 2);
        let alpha: Vec<_> = (0..8).map(|_| s.take("alpha")).collect();
        assert_eq!(alpha.iter().filter(|r| r.is_ok()).count(), 6, "{alpha:?}");
        assert_eq!(alpha[6], Err(Full::Share { held: 6 }));
        assert!(s.take("beta").is_ok() && s.take("beta").is_ok(), "beta's two are there");
        assert_eq!(s.take("beta"), Err(Full::All));
        assert_eq!(s.held("alpha"), 6);
        // With beta idle again, alpha may borrow up to beta's guarantee but not into it.
        s.give_back("beta");
        s.give_back("beta");
        assert_eq!(s.take("alpha"), Err(Full::Share { held: 6 }));
    }

    #[test]
    fn one_zone_alone_may_use_every_slot() {
        let s = StreamSlots::new(4, 1);
        assert!((0..4).all(|_| s.take("").is_ok()));
    }
}
