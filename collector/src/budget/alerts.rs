//! Idle-GPU and spend-anomaly alerts (the budgets file's `[[idle_gpu]]` and `[[anomaly]]` rules), evaluated
//! with the budgets by the collector leading `budget-evaluation`: what is in force now (`idle_gpu` from the
//! ledger's per-GPU, per-bucket allocations; anomalies from each team's/model's/namespace's spend per hour or
//! day against the seasonal model's band, `gpucost-seasonal`), planned against the open alerts
//! (`gpucost_rules::alert`), stored with their notifications in one transaction.

use std::collections::{BTreeMap, HashMap};

use gpucost_ledger::budgets::AlertFilter;
use gpucost_ledger::{CostQuery, Ledger, LedgerError, OriginCharge};
use gpucost_rules::alert::{self, AlertEvent, Change, Firing, Open};
use gpucost_rules::alert_spec::{AnomalyRule, Granularity};
use gpucost_rules::idle_gpu::{self, GpuBucket, HolderTime};
use gpucost_types::dimension::Dimension;
use gpucost_types::money::usd;
use gpucost_types::period::{DAY_NS, utc};
use gpucost_types::policy::Policy;

use super::engine::BudgetConfig;

const HOUR_NS: u64 = 3_600_000_000_000;

/// Hours of history an hourly anomaly model fits (three weeks: the weekly component seen three times).
pub const HOURLY_HISTORY: u64 = 21 * 24;
/// Days of history a daily anomaly model fits.
pub const DAILY_HISTORY: u64 = 28;

/// What each anomaly rule was last evaluated on: the last complete bucket's end and the fleet's spend in it.
/// The verdict changes only when a bucket completes or late data changes the last one, so the model is fitted
/// again only then.
#[derive(Debug, Default)]
pub struct Memo {
    evaluated: HashMap<String, (u64, u128)>,
}

/// The open alerts of `kind`.
pub fn open(ledger: &dyn Ledger, kind: &str) -> Result<Vec<Open>, LedgerError> {
    let filter = AlertFilter { firing: Some(true), kind: Some(kind.into()), limit: 100_000, ..AlertFilter::default() };
    Ok(ledger
        .alerts(&filter)?
        .into_iter()
        .map(|a| Open {
            labels: serde_json::from_str(&a.labels).unwrap_or_default(),
            kind: a.kind,
            key: a.key,
            subject: a.subject,
            summary: a.summary,
            fired_ns: a.fired_ns,
        })
        .collect())
}

fn holder_times(c: &OriginCharge) -> GpuBucket {
    GpuBucket {
        cluster: c.cluster.clone(),
        node: c.node.clone(),
        gpu: c.gpu_uuid.clone(),
        start_ns: c.start_ns,
        holders: c
            .allocations
            .iter()
            .map(|a| HolderTime {
                workload: a.workload.clone(),
                pod: a.pod.clone(),
                namespace: a.namespace.clone(),
                team: a.team.clone(),
                held_ns: a.held_ns,
                used_ns: a.used_ns,
            })
            .collect(),
    }
}

/// The idle-GPU changes at `now_ns`.
fn idle_changes(ledger: &dyn Ledger, config: &BudgetConfig, now_ns: u64) -> Result<Vec<Change>, LedgerError> {
    let open = open(ledger, alert::IDLE_GPU)?;
    if config.rules.idle_gpu.is_empty() && open.is_empty() {
        return Ok(Vec::new());
    }
    let bucket = ledger.bucket_ns();
    let longest = config.rules.idle_gpu.iter().map(|r| r.after.as_nanos() as u64).max().unwrap_or(0);
    let from = now_ns.saturating_sub(longest) / bucket * bucket - bucket;
    let to = now_ns.div_ceil(bucket) * bucket;
    let buckets: Vec<GpuBucket> =
        ledger.allocations(from, to, bucket, Policy::Hybrid)?.iter().map(holder_times).collect();
    let idle = idle_gpu::idle(&buckets, bucket, now_ns);
    let firing: Vec<Firing> = config.rules.idle_gpu.iter().flat_map(|r| idle_gpu::firing(r, &idle)).collect();
    let why = |o: &Open| idle_gpu::why_over(o, &buckets, &config.rules.idle_gpu);
    Ok(alert::plan(alert::IDLE_GPU, &open, &firing, &why, now_ns))
}

/// One holder's cost in one bucket, under an anomaly rule's dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The team, model or namespace.
    pub value: String,
    pub workload: String,
    /// The bucket's index in the window (0 the oldest).
    pub index: usize,
    pub micros: u128,
}

/// The anomalies in force for `rule` over `buckets` buckets of `step_ns` from `from_ns`: each value whose
/// last bucket's spend is outside the band the seasonal model of its earlier buckets (from its first with
/// spend) expects, by at least `min_usd`; named with the three workloads whose spend moved most from their
/// mean per bucket. Pure.
pub fn anomalies(rule: &AnomalyRule, charges: &[Charge], from_ns: u64, step_ns: u64, buckets: usize) -> Vec<Firing> {
    if buckets < 2 {
        return Vec::new();
    }
    let mut series: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut workloads: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    for c in charges.iter().filter(|c| c.index < buckets) {
        let usd = gpucost_seasonal::to_usd(c.micros);
        series.entry(&c.value).or_insert_with(|| vec![0.0; buckets])[c.index] += usd;
        workloads.entry((&c.value, &c.workload)).or_insert_with(|| vec![0.0; buckets])[c.index] += usd;
    }
    let periods: &[usize] = match rule.every {
        Granularity::Hour => &[24, 168],
        Granularity::Day => &[7],
    };
    let dim = rule.by.name();
    let last_start = from_ns + (buckets as u64 - 1) * step_ns;
    let mut out = Vec::new();
    for (value, points) in &series {
        let first = points.iter().position(|p| *p > 0.0).unwrap_or(points.len());
        let points = &points[first..];
        let check = match gpucost_seasonal::check_latest(points, periods, rule.level) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(rule = rule.name, value, error = %e, "no anomaly model for this series");
                continue;
            }
        };
        let Some(above) = check.outside() else { continue };
        let off = gpucost_seasonal::to_micros((check.actual - check.band.expected).abs());
        if off < rule.min_micros {
            continue;
        }
        // The workloads that moved most: last bucket against their mean over the model's window.
        let mut moved: Vec<(&str, f64)> = workloads
            .iter()
            .filter(|((v, _), _)| v == value)
            .map(|((_, w), p)| {
                let p = &p[first..];
                let (last, before) = p.split_last().expect("at least two points");
                (*w, last - before.iter().sum::<f64>() / before.len().max(1) as f64)
            })
            .collect();
        moved.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(b.0)));
        moved.truncate(3);
        let named = moved
            .iter()
            .map(|(w, d)| {
                format!("{w} ({}{} USD)", if *d >= 0.0 { "+" } else { "-" }, usd(gpucost_seasonal::to_micros(d.abs())))
            })
            .collect::<Vec<_>>();
        let labels = BTreeMap::from([
            ("alertname".to_string(), "GpuCostSpendAnomaly".to_string()),
            ("rule".to_string(), rule.name.clone()),
            (dim.clone(), value.to_string()),
            ("granularity".to_string(), rule.every.name().to_string()),
            ("direction".to_string(), if above { "above" } else { "below" }.to_string()),
            ("workloads".to_string(), moved.iter().map(|(w, _)| *w).collect::<Vec<_>>().join(",")),
            ("severity".to_string(), "warning".to_string()),
        ]);
        out.push(Firing {
            kind: alert::ANOMALY,
            key: format!("{}/{dim}={value}/{}", rule.name, rule.every.name()),
            subject: value.to_string(),
            labels,
            summary: format!(
                "{dim} {value} spent {} USD in the {} from {}, {} the {:.0} % band of {} to {} USD its seasonal model expected (expected {} USD); moved most: {}",
                usd(gpucost_seasonal::to_micros(check.actual)),
                rule.every.name(),
                utc(last_start),
                if above { "above" } else { "below" },
                rule.level * 100.0,
                usd(gpucost_seasonal::to_micros(check.band.lower)),
                usd(gpucost_seasonal::to_micros(check.band.upper)),
                usd(gpucost_seasonal::to_micros(check.band.expected)),
                named.join(", ")
            ),
            since_ns: last_start,
        });
    }
    out
}

fn value_of(by: &Dimension, a: &gpucost_ledger::AllocatedCharge) -> String {
    match by {
        Dimension::Team => a.team.clone(),
        Dimension::Model => a.model.clone(),
        _ => a.namespace.clone(),
    }
}

/// The anomaly changes at `now_ns`, for the rules whose latest bucket has not been evaluated yet.
fn anomaly_changes(
    ledger: &dyn Ledger,
    config: &BudgetConfig,
    memo: &mut Memo,
    now_ns: u64,
) -> Result<Vec<Change>, LedgerError> {
    let open = open(ledger, alert::ANOMALY)?;
    let mut out = Vec::new();
    let rule_of = |o: &Open| o.labels.get("rule").cloned().unwrap_or_default();
    // Alerts of rules no longer in the file.
    let gone: Vec<Open> =
        open.iter().filter(|o| !config.rules.anomaly.iter().any(|r| r.name == rule_of(o))).cloned().collect();
    let why_gone = |o: &Open| format!("the anomaly rule {:?} was removed", rule_of(o));
    out.extend(alert::plan(alert::ANOMALY, &gone, &[], &why_gone, now_ns));
    let bucket = ledger.bucket_ns();
    for rule in &config.rules.anomaly {
        let (step, history) = match rule.every {
            Granularity::Hour => (HOUR_NS.max(bucket), HOURLY_HISTORY),
            Granularity::Day => (DAY_NS, DAILY_HISTORY),
        };
        let end = now_ns / step * step;
        let last = ledger.costs(&CostQuery {
            from_ns: end - step,
            to_ns: end,
            group_by: vec![],
            filters: vec![],
            policy: rule.policy,
        })?;
        let seen = (end, last.fleet + last.rows.iter().map(|r| r.used + r.idle).sum::<u128>());
        if memo.evaluated.get(&rule.name) == Some(&seen) {
            continue;
        }
        let from = end.saturating_sub(history * step);
        let charges: Vec<Charge> = ledger
            .allocations(from, end, step, rule.policy)?
            .iter()
            .flat_map(|c| {
                c.allocations.iter().map(move |a| Charge {
                    value: value_of(&rule.by, a),
                    workload: a.workload.clone(),
                    index: ((c.start_ns - from) / step) as usize,
                    micros: a.cost,
                })
            })
            .collect();
        let firing = anomalies(rule, &charges, from, step, history as usize);
        let mine: Vec<Open> = open.iter().filter(|o| rule_of(o) == rule.name).cloned().collect();
        let why = |o: &Open| {
            format!(
                "{}'s spend in the {} from {} is back inside the band its seasonal model expects",
                o.subject,
                rule.every.name(),
                utc(end - step)
            )
        };
        out.extend(alert::plan(alert::ANOMALY, &mine, &firing, &why, now_ns));
        memo.evaluated.insert(rule.name.clone(), seen);
    }
    Ok(out)
}

/// One evaluation of the idle-GPU and anomaly rules: their changes stored with their notifications.
pub fn evaluate_once(
    ledger: &dyn Ledger,
    config: &BudgetConfig,
    memo: &mut Memo,
    now_ns: u64,
) -> Result<Vec<AlertEvent>, LedgerError> {
    let mut changes = idle_changes(ledger, config, now_ns)?;
    changes.extend(anomaly_changes(ledger, config, memo, now_ns)?);
    let names: Vec<String> = config.notifiers.iter().map(|n| n.name().to_string()).collect();
    ledger.apply_alert_changes(&changes, &names, now_ns)?;
    for c in &changes {
        tracing::info!(kind = c.kind, key = c.key, state = c.event.state, reason = c.event.reason, "alert");
    }
    Ok(changes.into_iter().map(|c| c.event).collect())
}

/// The firing events of the open idle-GPU and anomaly alerts (for Alertmanager, which forgets a firing alert
/// it is not told of again).
pub fn firing(ledger: &dyn Ledger, now_ns: u64) -> Result<Vec<AlertEvent>, LedgerError> {
    let mut out: Vec<AlertEvent> =
        open(ledger, alert::IDLE_GPU)?.iter().map(|o| alert::firing_event(o, now_ns)).collect();
    out.extend(open(ledger, alert::ANOMALY)?.iter().map(|o| alert::firing_event(o, now_ns)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three weeks of hourly spend for team vision: a day (busy 08-20 h) and a week (quiet weekends) with a
    /// little deterministic noise, from two workloads.
    fn weekly(spike: bool) -> Vec<Charge> {
        let mut s: u64 = 11;
        let mut out = Vec::new();
        for h in 0..HOURLY_HISTORY as usize {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let noise = 1.0 + 0.03 * (((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0);
            let (day, hour) = (h / 24 % 7, h % 24);
            let base = if (8..20).contains(&hour) { 60.0 } else { 25.0 } * if day >= 5 { 0.4 } else { 1.0 };
            for w in ["train-a", "serve-b"] {
                out.push(Charge {
                    value: "vision".into(),
                    workload: w.into(),
                    index: h,
                    micros: (base * noise / 2.0 * 1e6) as u128,
                });
            }
        }
        if spike {
            let last = HOURLY_HISTORY as usize - 1;
            out.push(Charge { value: "vision".into(), workload: "spiky".into(), index: last, micros: 400_000_000 });
        }
        out
    }

    fn rule() -> AnomalyRule {
        AnomalyRule {
            name: "teams".into(),
            by: Dimension::Team,
            every: Granularity::Hour,
            level: 0.99,
            min_micros: 5_000_000,
            policy: Policy::Hybrid,
        }
    }

    #[test]
    fn a_weekly_rhythm_gives_no_anomaly_and_a_spike_names_its_workload() {
        let n = HOURLY_HISTORY as usize;
        assert!(anomalies(&rule(), &weekly(false), 0, HOUR_NS, n).is_empty());
        let f = anomalies(&rule(), &weekly(true), 0, HOUR_NS, n);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].key, "teams/team=vision/hour");
        assert_eq!(f[0].labels["workloads"].split(',').next(), Some("spiky"));
        assert_eq!(f[0].labels["direction"], "above");
        assert!(f[0].summary.contains("spiky (+400.000000 USD)"), "{}", f[0].summary);
        assert_eq!(f[0].since_ns, (n as u64 - 1) * HOUR_NS);
        // A floor above the spike's distance: nothing.
        let mut high = rule();
        high.min_micros = 1_000_000_000;
        assert!(anomalies(&high, &weekly(true), 0, HOUR_NS, n).is_empty());
    }
}
