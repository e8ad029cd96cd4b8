//! The collector's own counters, exposed at `/metrics` in Prometheus' text format. Names carry their
//! unit: `gpucost_<what>_<unit>`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub batches_stored: AtomicU64,
    pub batches_duplicate: AtomicU64,
    pub batches_rejected: AtomicU64,
    /// GPU time ingested on nodes without a price, in nanoseconds.
    pub unpriced_ns: AtomicU64,
    /// GPU time ingested with a price, in nanoseconds.
    pub priced_ns: AtomicU64,
}

impl Metrics {
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let _ = writeln!(out, "# HELP gpucost_batches_total Usage batches received from agents, by outcome.");
        let _ = writeln!(out, "# TYPE gpucost_batches_total counter");
        for (outcome, c) in [
            ("stored", &self.batches_stored),
            ("duplicate", &self.batches_duplicate),
            ("rejected", &self.batches_rejected),
        ] {
            let _ = writeln!(out, "gpucost_batches_total{{outcome=\"{outcome}\"}} {}", get(c));
        }
        let _ = writeln!(
            out,
            "# HELP gpucost_unpriced_gpu_seconds_total GPU time ingested on nodes without a price (billed as nothing until priced)."
        );
        let _ = writeln!(out, "# TYPE gpucost_unpriced_gpu_seconds_total counter");
        let _ = writeln!(out, "gpucost_unpriced_gpu_seconds_total {}", get(&self.unpriced_ns) as f64 / 1e9);
        let _ = writeln!(out, "# HELP gpucost_priced_gpu_seconds_total GPU time ingested with a price.");
        let _ = writeln!(out, "# TYPE gpucost_priced_gpu_seconds_total counter");
        let _ = writeln!(out, "gpucost_priced_gpu_seconds_total {}", get(&self.priced_ns) as f64 / 1e9);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_in_prometheus_text_format() {
        let m = Metrics::default();
        m.batches_stored.fetch_add(3, Ordering::Relaxed);
        m.unpriced_ns.fetch_add(1_500_000_000, Ordering::Relaxed);
        let text = m.render();
        assert!(text.contains("gpucost_batches_total{outcome=\"stored\"} 3\n"), "{text}");
        assert!(text.contains("gpucost_unpriced_gpu_seconds_total 1.5\n"), "{text}");
        assert!(text.contains("# TYPE gpucost_unpriced_gpu_seconds_total counter\n"));
    }
}
