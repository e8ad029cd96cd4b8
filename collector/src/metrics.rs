//! The collector's metrics at `/metrics` (Prometheus text format, `prometheus` crate). Names carry their
//! unit: `gpucost_<what>_<unit>`. Money and GPU time are counters fed by every stored batch; GPU readings
//! are gauges of the latest interval; budgets and efficiency are gauges set by their loops; pipeline health
//! covers batches, connected agents, ingest latency and the state of every sync.
//!
//! Label cardinality is bounded: each metric family keeps at most `max_series` label sets; past that, new
//! ones are counted under `other` (so totals stay right). No process ids or pod names are labels.

use std::collections::HashSet;
use std::sync::Mutex;

use prometheus::{
    CounterVec, Encoder, GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use crate::live::Observation;

/// A family's label sets, up to a bound.
struct Bounded {
    seen: Mutex<HashSet<Vec<String>>>,
    max: usize,
}

impl Bounded {
    fn new(max: usize) -> Self {
        Self { seen: Mutex::new(HashSet::new()), max }
    }

    /// `values`, or `other` for every label but the first (the cluster) once the family is full. A label set
    /// already seen costs no allocation (this runs for every stored batch).
    fn admit<'a>(&self, values: &'a [String]) -> std::borrow::Cow<'a, [String]> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(values) {
            return values.into();
        }
        if seen.len() < self.max {
            seen.insert(values.to_vec());
            return values.into();
        }
        values.iter().enumerate().map(|(i, v)| if i == 0 { v.clone() } else { "other".into() }).collect()
    }
}

pub struct Metrics {
    registry: Registry,
    pipeline: Pipeline,
    pub agents_connected: IntGauge,
    money: Money,
    time: Time,
    readings: Readings,
    budgets: Budgets,
    syncs: Syncs,
    jobs: Jobs,
}

/// Pipeline health: batches and their GPU time, ingest latency, agents last seen, limits hit and conflicts.
struct Pipeline {
    batches: IntCounterVec,
    gpu_seconds_priced: CounterVec,
    ingest_seconds: Histogram,
    agent_last_seen: GaugeVec,
    agent_labels: Bounded,
    limit_breaches: IntCounterVec,
    conflicts: IntCounterVec,
    conflict_labels: Bounded,
}

/// Money charged, counted from every stored batch.
struct Money {
    cost: CounterVec,
    idle_cost: CounterVec,
    cost_labels: Bounded,
    unallocated: CounterVec,
}

/// GPU time held, used and observed, counted from every stored batch.
struct Time {
    held: CounterVec,
    used: CounterVec,
    idle_time: CounterVec,
    time_labels: Bounded,
    observed: CounterVec,
}

/// Each GPU's readings over its latest interval.
struct Readings {
    gpu_util: GaugeVec,
    gpu_mem_used: GaugeVec,
    gpu_mem_total: GaugeVec,
    gpu_power: GaugeVec,
    gpu_labels: Bounded,
}

/// Budgets and team efficiency, set by their loops.
struct Budgets {
    efficiency: GaugeVec,
    savings: GaugeVec,
    spend: GaugeVec,
    limit: GaugeVec,
    forecast: GaugeVec,
    alarm: GaugeVec,
    notifications_pending: IntGauge,
}

/// The state of every sync with a peer, and of the catalog in force.
struct Syncs {
    sync_up: GaugeVec,
    sync_last_success: GaugeVec,
    catalog_syncs: IntCounterVec,
    catalog_fetched: GaugeVec,
}

/// The background jobs' runs.
struct Jobs {
    runs: IntCounterVec,
    failures: IntCounterVec,
    duration: GaugeVec,
    last_success: GaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(2_000)
    }
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> CounterVec {
    let c = CounterVec::new(Opts::new(name, help), labels).expect("a valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("a valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

/// An integer counter whose series for each of `preset` (a value of its one label) exist from the start, at 0.
fn int_counter(r: &Registry, name: &str, help: &str, labels: &[&str], preset: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    for l in preset {
        c.with_label_values(&[*l]);
    }
    c
}

fn int_gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("a valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

const COST: [&str; 5] = ["cluster", "namespace", "team", "owner", "model"];
const TIME: [&str; 3] = ["cluster", "namespace", "team"];
const GPU: [&str; 4] = ["cluster", "node", "gpu", "gpu_model"];

impl Pipeline {
    fn register(r: &Registry, max_series: usize) -> Self {
        let batches = int_counter(
            r,
            "gpucost_batches_total",
            "Usage batches received from agents, by outcome.",
            &["outcome"],
            &["stored", "duplicate", "rejected"],
        );
        let gpu_seconds_priced = counter(
            r,
            "gpucost_ingested_gpu_seconds_total",
            "GPU time ingested, by whether it had a price (unpriced time is billed as nothing until priced).",
            &["priced"],
        );
        let ingest_seconds = Histogram::with_opts(
            HistogramOpts::new("gpucost_ingest_duration_seconds", "From receiving a batch to it being stored.")
                .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
        )
        .expect("a valid metric");
        r.register(Box::new(ingest_seconds.clone())).expect("registered once");
        Self {
            batches,
            gpu_seconds_priced,
            ingest_seconds,
            agent_last_seen: gauge(
                r,
                "gpucost_agent_last_seen_timestamp_seconds",
                "When each agent's last batch was stored.",
                &["agent"],
            ),
            agent_labels: Bounded::new(max_series),
            limit_breaches: int_counter(
                r,
                "gpucost_limit_breaches_total",
                "Requests refused for exceeding a limit, by limit.",
                &["limit"],
                &["streams", "agent_rate", "http_timeout", "clock_skew"],
            ),
            conflicts: int_counter(
                r,
                "gpucost_ingest_conflicts_total",
                "Batches of `cluster` stored while `other_cluster` has GPU time on one of their GPU UUIDs over \
                 the same time (each cluster is billed its own; GET /api/v1/conflicts lists them), per GPU.",
                &["cluster", "other_cluster"],
                &[],
            ),
            conflict_labels: Bounded::new(max_series),
        }
    }
}

impl Money {
    fn register(r: &Registry, max_series: usize) -> Self {
        Self {
            cost: counter(
                r,
                "gpucost_cost_usd_total",
                "GPU cost charged to workloads (used + their idle share, hybrid policy).",
                &COST,
            ),
            idle_cost: counter(
                r,
                "gpucost_idle_cost_usd_total",
                "The idle part of gpucost_cost_usd_total (hybrid policy).",
                &COST,
            ),
            cost_labels: Bounded::new(max_series),
            unallocated: counter(r, "gpucost_unallocated_cost_usd_total", "Cost of GPUs nobody held.", &["cluster"]),
        }
    }
}

impl Time {
    fn register(r: &Registry, max_series: usize) -> Self {
        Self {
            held: counter(r, "gpucost_gpu_held_seconds_total", "GPU time held by workloads.", &TIME),
            used: counter(r, "gpucost_gpu_used_seconds_total", "GPU time used (SM share × time) by workloads.", &TIME),
            idle_time: counter(r, "gpucost_gpu_idle_seconds_total", "GPU time held but not used by workloads.", &TIME),
            time_labels: Bounded::new(max_series),
            observed: counter(
                r,
                "gpucost_gpu_observed_seconds_total",
                "GPU time observed, per GPU model.",
                &["cluster", "node", "gpu_model"],
            ),
        }
    }
}

impl Readings {
    fn register(r: &Registry, max_series: usize) -> Self {
        Self {
            gpu_util: gauge(
                r,
                "gpucost_gpu_utilization_ratio",
                "GPU utilisation over its latest interval (0..1).",
                &GPU,
            ),
            gpu_mem_used: gauge(r, "gpucost_gpu_memory_used_bytes", "GPU memory used at its latest interval.", &GPU),
            gpu_mem_total: gauge(r, "gpucost_gpu_memory_total_bytes", "GPU memory size.", &GPU),
            gpu_power: gauge(r, "gpucost_gpu_power_watts", "GPU power draw over its latest interval.", &GPU),
            gpu_labels: Bounded::new(max_series),
        }
    }
}

impl Budgets {
    fn register(r: &Registry) -> Self {
        let period = ["budget", "period"];
        Self {
            efficiency: gauge(
                r,
                "gpucost_team_efficiency_ratio",
                "Used over held GPU time per team, last hour.",
                &["team"],
            ),
            savings: gauge(
                r,
                "gpucost_recommendation_savings_usd_monthly",
                "Potential monthly saving of right-sizing per team: each workload's largest recommendation, last 14 days.",
                &["team"],
            ),
            spend: gauge(r, "gpucost_budget_spend_usd", "GPU spend so far in the budget's period.", &period),
            limit: gauge(r, "gpucost_budget_limit_usd", "The budget's amount for its period.", &period),
            forecast: gauge(
                r,
                "gpucost_budget_forecast_usd",
                "Forecast spend for the whole period (spend so far + trailing 7-day rate).",
                &period,
            ),
            alarm: gauge(
                r,
                "gpucost_budget_alarm",
                "Whether a budget threshold is crossed (1) or not (0).",
                &["budget", "threshold"],
            ),
            notifications_pending: int_gauge(
                r,
                "gpucost_alert_notifications_pending",
                "Budget alert notifications not yet delivered.",
            ),
        }
    }
}

impl Syncs {
    fn register(r: &Registry) -> Self {
        Self {
            sync_up: gauge(
                r,
                "gpucost_sync_up",
                "Whether the last sync with a peer succeeded (1) or failed (0).",
                &["source"],
            ),
            sync_last_success: gauge(
                r,
                "gpucost_sync_last_success_timestamp_seconds",
                "When the last successful sync with a peer ended.",
                &["source"],
            ),
            catalog_syncs: int_counter(
                r,
                "gpucost_catalog_syncs_total",
                "Catalogs taken on, by where from: `backstage` (fetched by this collector, the sync's leader) \
                 or `ledger` (the last good copy kept in the ledger: the leader's, or this collector's own \
                 when it started while Backstage was down).",
                &["via"],
                &["backstage", "ledger"],
            ),
            catalog_fetched: gauge(
                r,
                "gpucost_catalog_fetched_timestamp_seconds",
                "When the catalog in force was fetched from Backstage, labelled by where this collector took it \
                 from (`backstage` or `ledger`); its age is time() minus this.",
                &["via"],
            ),
        }
    }
}

impl Jobs {
    fn register(r: &Registry) -> Self {
        Self {
            runs: int_counter(
                r,
                "gpucost_job_runs_total",
                "Runs of each background job (`jobs/`), failed or not.",
                &["job"],
                &[],
            ),
            failures: int_counter(
                r,
                "gpucost_job_failures_total",
                "Runs of each background job that failed (logged as WARN).",
                &["job"],
                &[],
            ),
            duration: gauge(
                r,
                "gpucost_job_duration_seconds",
                "How long each background job's last run took.",
                &["job"],
            ),
            last_success: gauge(
                r,
                "gpucost_job_last_success_timestamp_seconds",
                "When each background job last ran without failing (Unix seconds).",
                &["job"],
            ),
        }
    }
}

impl Metrics {
    /// Metrics whose label-set families hold at most `max_series` series each, registered family by family.
    pub fn new(max_series: usize) -> Self {
        let r = Registry::new();
        let pipeline = Pipeline::register(&r, max_series);
        let agents_connected = int_gauge(&r, "gpucost_agents_connected", "Agent streams open now.");
        let build = gauge(&r, "gpucost_build_info", "The collector's version.", &["version"]);
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1.0);
        Self {
            pipeline,
            agents_connected,
            money: Money::register(&r, max_series),
            time: Time::register(&r, max_series),
            readings: Readings::register(&r, max_series),
            budgets: Budgets::register(&r),
            syncs: Syncs::register(&r),
            jobs: Jobs::register(&r),
            registry: r,
        }
    }

    /// A run of the background job `job` took `took`; `ok` when it did not fail.
    pub fn job_ran(&self, job: &str, took: std::time::Duration, ok: bool) {
        self.jobs.runs.with_label_values(&[job]).inc();
        self.jobs.duration.with_label_values(&[job]).set(took.as_secs_f64());
        if ok {
            self.jobs.last_success.with_label_values(&[job]).set(gpucost_types::clock::now_ns() as f64 / 1e9);
        } else {
            self.jobs.failures.with_label_values(&[job]).inc();
        }
    }

    /// A batch of `cluster` stored on a GPU UUID on which `other_cluster` has time over the same interval.
    pub fn conflict(&self, cluster: &str, other_cluster: &str) {
        let labels = [cluster.to_string(), other_cluster.to_string()];
        self.pipeline.conflicts.with_label_values(&self.pipeline.conflict_labels.admit(&labels)).inc();
    }

    /// A catalog taken on, fetched from Backstage at `fetched_at_ns`: by this collector (`backstage`) or read
    /// from the copy kept in the ledger (`ledger`).
    pub fn catalog_synced(&self, via: &str, fetched_at_ns: u64) {
        self.syncs.catalog_syncs.with_label_values(&[via]).inc();
        self.syncs.catalog_fetched.reset();
        self.syncs.catalog_fetched.with_label_values(&[via]).set(fetched_at_ns as f64 / 1e9);
    }

    /// A request refused for exceeding `limit` (`streams`, `agent_rate`, `http_timeout`).
    pub fn limit_breach(&self, limit: &str) {
        self.pipeline.limit_breaches.with_label_values(&[limit]).inc();
    }

    pub fn batch_rejected(&self) {
        self.pipeline.batches.with_label_values(&["rejected"]).inc();
    }

    pub fn batch_duplicate(&self) {
        self.pipeline.batches.with_label_values(&["duplicate"]).inc();
    }

    /// A batch was stored: counts it, its money and GPU time, and sets its GPUs' gauges.
    pub fn batch_stored(&self, o: &Observation, gpu_ns: u64, priced: bool, took: std::time::Duration, now_s: f64) {
        self.pipeline.batches.with_label_values(&["stored"]).inc();
        self.pipeline.ingest_seconds.observe(took.as_secs_f64());
        self.pipeline
            .gpu_seconds_priced
            .with_label_values(&[if priced { "true" } else { "false" }])
            .inc_by(gpu_ns as f64 / 1e9);
        for (labels, total, idle) in &o.costs {
            let l = self.money.cost_labels.admit(labels);
            let l: Vec<&str> = l.iter().map(String::as_str).collect();
            self.money.cost.with_label_values(&l).inc_by(*total as f64 / 1e6);
            self.money.idle_cost.with_label_values(&l).inc_by(*idle as f64 / 1e6);
        }
        for (labels, held, used) in &o.time {
            let l = self.time.time_labels.admit(labels);
            let l: Vec<&str> = l.iter().map(String::as_str).collect();
            self.time.held.with_label_values(&l).inc_by(*held as f64 / 1e9);
            self.time.used.with_label_values(&l).inc_by(*used as f64 / 1e9);
            self.time.idle_time.with_label_values(&l).inc_by(held.saturating_sub(*used) as f64 / 1e9);
        }
        self.money.unallocated.with_label_values(&[&o.cluster]).inc_by(o.unallocated as f64 / 1e6);
        for (model, ns) in &o.observed {
            self.time.observed.with_label_values(&[&o.cluster, &o.node, model]).inc_by(*ns as f64 / 1e9);
        }
        for g in &o.gpus {
            let labels = [g.cluster.clone(), g.node.clone(), g.uuid.clone(), g.model.clone()];
            let l = self.readings.gpu_labels.admit(&labels);
            let l: Vec<&str> = l.iter().map(String::as_str).collect();
            self.readings.gpu_util.with_label_values(&l).set(g.utilization);
            self.readings.gpu_mem_used.with_label_values(&l).set(g.memory_used_bytes as f64);
            self.readings.gpu_mem_total.with_label_values(&l).set(g.memory_total_bytes as f64);
            self.readings.gpu_power.with_label_values(&l).set(g.power_watts);
        }
        let agent = self.pipeline.agent_labels.admit(std::slice::from_ref(&o.agent));
        self.pipeline.agent_last_seen.with_label_values(&[&agent[0]]).set(now_s);
    }

    /// Replaces the budget gauges with the latest evaluation.
    pub fn set_budgets(&self, statuses: &[gpucost_rules::budget_status::Status], pending_notifications: u64) {
        for g in [&self.budgets.spend, &self.budgets.limit, &self.budgets.forecast, &self.budgets.alarm] {
            g.reset();
        }
        for s in statuses {
            let (b, p) = (s.budget.name.as_str(), s.period.label.as_str());
            self.budgets.spend.with_label_values(&[b, p]).set(s.spend as f64 / 1e6);
            self.budgets.limit.with_label_values(&[b, p]).set(s.budget.amount_micros as f64 / 1e6);
            self.budgets.forecast.with_label_values(&[b, p]).set(s.forecast as f64 / 1e6);
            for (t, crossed) in &s.thresholds {
                self.budgets.alarm.with_label_values(&[b, &t.id()]).set(f64::from(u8::from(*crossed)));
            }
        }
        self.budgets.notifications_pending.set(pending_notifications as i64);
    }

    /// Sets each team's efficiency (used ÷ held GPU time).
    pub fn set_efficiency(&self, teams: &[(String, u128, u128)]) {
        self.budgets.efficiency.reset();
        for (team, held, used) in teams.iter().filter(|t| t.1 > 0) {
            let team = if team.is_empty() { gpucost_rules::owner::UNATTRIBUTED } else { team.as_str() };
            self.budgets.efficiency.with_label_values(&[team]).set(*used as f64 / *held as f64);
        }
    }

    /// Sets each team's potential monthly saving (micro-dollars) from right-sizing; a team is one label per
    /// catalog team, so the family is as bounded as the efficiency gauge.
    pub fn set_savings(&self, teams: &[(String, u64)]) {
        self.budgets.savings.reset();
        for (team, micros) in teams {
            let team = if team.is_empty() { gpucost_rules::owner::UNATTRIBUTED } else { team.as_str() };
            self.budgets.savings.with_label_values(&[team]).add(*micros as f64 / 1e6);
        }
    }

    /// Records a sync with `source` (`backstage`, `mlflow`, `aws`).
    pub fn sync(&self, source: &str, ok: bool) {
        self.syncs.sync_up.with_label_values(&[source]).set(f64::from(u8::from(ok)));
        if ok {
            self.syncs.sync_last_success.with_label_values(&[source]).set(gpucost_types::clock::now_ns() as f64 / 1e9);
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_stay_within_their_series_bound_and_keep_the_total() {
        let m = Metrics::new(2);
        let obs = |team: &str| Observation {
            agent: "a".into(),
            cluster: "c".into(),
            node: "n".into(),
            costs: vec![(["c".into(), "ns".into(), team.into(), "o".into(), "m".into()], 1_000_000, 0)],
            ..Default::default()
        };
        for team in ["a", "b", "c", "d"] {
            m.batch_stored(&obs(team), 0, true, std::time::Duration::from_millis(3), 1.0);
        }
        let text = m.render();
        let series = text.lines().filter(|l| l.starts_with("gpucost_cost_usd_total{")).count();
        assert_eq!(series, 3, "two admitted and `other`:\n{text}");
        assert!(text.contains("team=\"other\"} 2"), "{text}");
        assert!(text.contains("gpucost_batches_total{outcome=\"stored\"} 4"));
        assert!(text.contains("gpucost_ingest_duration_seconds_count 4"));
    }
}
