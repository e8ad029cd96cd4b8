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
    /// Budget gauges from the last evaluation.
    budgets: std::sync::RwLock<BudgetGauges>,
}

#[derive(Debug, Default)]
struct BudgetGauges {
    budgets: Vec<crate::budget::evaluate::Status>,
    pending_notifications: u64,
}

/// A Prometheus label value: backslash, quote and line feed escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    /// Replaces the budget gauges with the latest evaluation.
    pub fn set_budgets(&self, statuses: &[crate::budget::evaluate::Status], pending_notifications: u64) {
        let mut g = self.budgets.write().unwrap_or_else(|e| e.into_inner());
        g.budgets = statuses.to_vec();
        g.pending_notifications = pending_notifications;
    }

    fn render_budgets(&self, out: &mut String) {
        let g = self.budgets.read().unwrap_or_else(|e| e.into_inner());
        let usd = |m: u128| m as f64 / 1e6;
        for (name, help, pick) in [
            ("gpucost_budget_spend_usd", "GPU spend so far in the budget's period.", 0),
            ("gpucost_budget_limit_usd", "The budget's amount for its period.", 1),
            (
                "gpucost_budget_forecast_usd",
                "Forecast spend for the whole period (spend so far + trailing 7-day rate).",
                2,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            for s in &g.budgets {
                let v = [s.spend, s.budget.amount_micros, s.forecast][pick];
                let (b, period) = (label(&s.budget.name), label(&s.period.label));
                let _ = writeln!(out, "{name}{{budget=\"{b}\",period=\"{period}\"}} {}", usd(v));
            }
        }
        let _ = writeln!(out, "# HELP gpucost_budget_alarm Whether a budget threshold is crossed (1) or not (0).");
        let _ = writeln!(out, "# TYPE gpucost_budget_alarm gauge");
        for s in &g.budgets {
            for (t, alarm) in &s.thresholds {
                let b = label(&s.budget.name);
                let _ = writeln!(
                    out,
                    "gpucost_budget_alarm{{budget=\"{b}\",threshold=\"{}\"}} {}",
                    t.id(),
                    u8::from(*alarm)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP gpucost_alert_notifications_pending Alert notifications not yet delivered (retried with backoff)."
        );
        let _ = writeln!(out, "# TYPE gpucost_alert_notifications_pending gauge");
        let _ = writeln!(out, "gpucost_alert_notifications_pending {}", g.pending_notifications);
    }

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
        self.render_budgets(&mut out);
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
