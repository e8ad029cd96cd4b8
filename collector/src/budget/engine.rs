//! The budget loops: every interval (and whenever a budget changes) evaluate every budget, store the
//! alert transitions with their notifications (one transaction), and keep Alertmanager's firing alerts
//! fresh; beside it, deliver the outbox with retries and backoff until each notification is delivered.

use std::time::Duration;

use super::notify::{self, Notifier};
use gpucost_ledger::budgets::StoredBudget;
use gpucost_ledger::{CostQuery, Ledger, LedgerError};
use gpucost_rules::alert_spec::AlertRules;
use gpucost_rules::budget_spec::Budget;
use gpucost_rules::budget_status::{self as evaluate, Event, Status, TRAILING_NS};
use gpucost_types::dimension::Dimension;
use gpucost_types::period::{DAY_NS, Period};

/// How budgets are evaluated and where alerts go.
#[derive(Debug, Clone)]
pub struct BudgetConfig {
    /// Budgets from the config file, and the file (`config:<path>` is their source).
    pub from_file: Vec<Budget>,
    pub file: Option<String>,
    /// Idle-GPU and spend-anomaly alert rules from the same file.
    pub rules: AlertRules,
    pub notifiers: Vec<Notifier>,
    pub every: Duration,
    /// Per notification attempt.
    pub timeout: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            from_file: vec![],
            file: None,
            rules: AlertRules::default(),
            notifiers: vec![],
            every: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
        }
    }
}

impl BudgetConfig {
    /// How long Alertmanager keeps a firing alert without hearing of it again.
    pub fn firing_for(&self) -> Duration {
        (self.every * 3).max(Duration::from_secs(300))
    }

    fn notifier_names(&self) -> Vec<String> {
        self.notifiers.iter().map(|n| n.name().to_string()).collect()
    }
}

/// Writes the config file's budgets to the store (`config:<path>`), replacing what that file said before
/// and removing the budgets it no longer has.
pub fn sync_config_budgets(ledger: &dyn Ledger, config: &BudgetConfig, now_ns: u64) -> Result<(), LedgerError> {
    let Some(file) = &config.file else { return Ok(()) };
    let source = format!("config:{file}");
    for old in ledger.budgets()?.iter().filter(|b| b.source == source) {
        if !config.from_file.iter().any(|b| b.name == old.name) {
            ledger.delete_budget(&old.name)?;
        }
    }
    for b in &config.from_file {
        ledger.put_budget(
            &StoredBudget { name: b.name.clone(), spec: b.to_json().to_string(), source: source.clone() },
            now_ns,
        )?;
    }
    Ok(())
}

/// The stored budgets, parsed (one that no longer parses is logged and skipped).
pub fn budgets(ledger: &dyn Ledger) -> Result<Vec<Budget>, LedgerError> {
    Ok(ledger
        .budgets()?
        .into_iter()
        .filter_map(|s| {
            let parsed =
                serde_json::from_str(&s.spec).map_err(|e| e.to_string()).and_then(|v| Budget::from_json(&s.name, &v));
            parsed
                .map_err(|e| tracing::warn!(budget = s.name, error = %e, "stored budget does not parse; skipped"))
                .ok()
        })
        .collect())
}

/// What `scope` spent in [from_ns, to_ns) under `policy`.
fn spend(ledger: &dyn Ledger, b: &Budget, from_ns: u64, to_ns: u64) -> Result<u128, LedgerError> {
    let report =
        ledger.costs(&CostQuery { from_ns, to_ns, group_by: vec![], filters: b.scope.clone(), policy: b.policy })?;
    Ok(report.rows.iter().map(|r| r.used + r.idle).sum())
}

/// Whole days of history the seasonal forecast looks back over.
pub const SEASONAL_DAYS: u64 = 28;

/// The daily spend of `b`'s scope over the whole days before today (up to [`SEASONAL_DAYS`], from its first day
/// with spend), oldest first.
fn daily_spend(ledger: &dyn Ledger, b: &Budget, today_ns: u64) -> Result<Vec<u128>, LedgerError> {
    let from = today_ns.saturating_sub(SEASONAL_DAYS * DAY_NS);
    let report = ledger.costs(&CostQuery {
        from_ns: from,
        to_ns: today_ns,
        group_by: vec![Dimension::Day],
        filters: b.scope.clone(),
        policy: b.policy,
    })?;
    let mut days = vec![0u128; SEASONAL_DAYS as usize];
    for r in &report.rows {
        // The day's index since the epoch, as stored.
        let Some(day_ns) = r.group.first().and_then(|d| d.parse::<u64>().ok()).map(|d| d * DAY_NS) else { continue };
        if let Some(i) = day_ns.checked_sub(from).map(|d| (d / DAY_NS) as usize)
            && i < days.len()
        {
            days[i] += r.used + r.idle;
        }
    }
    let first = days.iter().position(|d| *d > 0).unwrap_or(days.len());
    Ok(days.split_off(first))
}

/// The seasonal model's forecast of the rest of `period` from `daily` (whole days before today), or `None`
/// with fewer than [`gpucost_seasonal::MIN_DAYS`] days or a model that does not fit.
pub fn seasonal_rest(daily: &[u128], period: &Period, now_ns: u64) -> Option<u128> {
    let today_end = (now_ns / DAY_NS + 1) * DAY_NS;
    if daily.len() < gpucost_seasonal::MIN_DAYS || period.to_ns < today_end {
        return None;
    }
    let series: Vec<f64> = daily.iter().map(|d| gpucost_seasonal::to_usd(*d)).collect();
    let today_left = (today_end - now_ns) as f64 / DAY_NS as f64;
    let days_after = ((period.to_ns - today_end) / DAY_NS) as usize;
    match gpucost_seasonal::rest_of_period(&series, today_left, days_after) {
        Ok(usd) => Some(gpucost_seasonal::to_micros(usd)),
        Err(e) => {
            tracing::debug!(error = %e, "no seasonal forecast; the trailing week's instead");
            None
        }
    }
}

/// Where every budget stands at `now_ns`.
pub fn statuses(ledger: &dyn Ledger, budgets: &[Budget], now_ns: u64) -> Result<Vec<Status>, LedgerError> {
    let bucket = ledger.bucket_ns();
    let to = now_ns.div_ceil(bucket) * bucket;
    budgets
        .iter()
        .map(|b| {
            let period = Period::containing(b.cadence, now_ns);
            let so_far = spend(ledger, b, period.from_ns, to)?;
            let trailing = spend(ledger, b, now_ns.saturating_sub(TRAILING_NS) / bucket * bucket, to)?;
            let daily = daily_spend(ledger, b, now_ns / DAY_NS * DAY_NS)?;
            let seasonal = seasonal_rest(&daily, &period, now_ns);
            Ok(evaluate::status(b, period, now_ns, so_far, trailing, seasonal))
        })
        .collect()
}

/// One evaluation: statuses, transitions stored with their notifications. Returns the statuses and how
/// many transitions there were.
pub fn evaluate_once(
    ledger: &dyn Ledger,
    config: &BudgetConfig,
    now_ns: u64,
) -> Result<(Vec<Status>, Vec<Event>), LedgerError> {
    let all = budgets(ledger)?;
    let statuses = statuses(ledger, &all, now_ns)?;
    let transitions = evaluate::plan(&statuses, &ledger.alert_states()?, now_ns);
    ledger.apply_transitions(&transitions, &config.notifier_names(), now_ns)?;
    for t in &transitions {
        tracing::info!(
            budget = t.event.budget,
            threshold = t.event.threshold,
            period = t.event.period,
            state = t.event.state,
            reason = t.event.reason,
            "budget alert"
        );
    }
    Ok((statuses, transitions.into_iter().map(|t| t.event).collect()))
}

/// The budgets' statuses without evaluating transitions (a collector that does not lead the evaluation).
pub fn statuses_only(ledger: &dyn Ledger, _config: &BudgetConfig, now_ns: u64) -> Result<Vec<Status>, LedgerError> {
    let all = budgets(ledger)?;
    statuses(ledger, &all, now_ns)
}

/// The events of alarms in force (for Alertmanager, which forgets a firing alert it is not told of again).
pub fn firing(ledger: &dyn Ledger, statuses: &[Status]) -> Result<Vec<Event>, LedgerError> {
    let states = ledger.alert_states()?;
    Ok(states
        .iter()
        .filter(|s| s.alarm)
        .filter_map(|s| {
            let st = statuses.iter().find(|x| x.budget.name == s.budget && x.period.label == s.period)?;
            evaluate::alarm_event(st, &s.threshold, s.since_ns)
        })
        .collect())
}

/// Delivers what is due; returns how many were delivered. Each failure is retried after a backoff.
pub fn deliver_due(
    ledger: &dyn Ledger,
    config: &BudgetConfig,
    generator_url: &str,
    now_ns: u64,
) -> Result<usize, LedgerError> {
    let mut delivered = 0;
    for n in ledger.due_notifications(now_ns, 100, &config.notifier_names())? {
        let Some(notifier) = config.notifiers.iter().find(|x| x.name() == n.notifier) else { continue };
        let result = notify::Outgoing::parse(&n.event)
            .and_then(|e| notify::send(notifier, &e, generator_url, config.firing_for(), config.timeout));
        if let Err(e) = &result {
            tracing::warn!(notifier = n.notifier, attempt = n.attempts + 1, error = %e, "alert delivery failed; retrying with backoff");
        } else {
            delivered += 1;
        }
        let retry_at = gpucost_types::clock::now_ns() + notify::backoff(n.attempts).as_nanos() as u64;
        ledger.notification_attempted(n.id, result, gpucost_types::clock::now_ns(), retry_at)?;
    }
    Ok(delivered)
}
