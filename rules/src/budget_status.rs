//! Where a budget stands: spend so far in its period, the forecast for the whole period, which thresholds
//! are crossed, and the alert transitions that follow from the states stored before. Pure.
//!
//! Forecast: spend so far in the period plus the spend still to come. With two whole weeks of daily spend
//! the collector forecasts what is to come with a seasonal model that knows the week (`gpucost-seasonal`:
//! MSTL with a weekly period and an ETS trend) and hands it in; without, it is the trailing 7-day spend rate
//! (spend over the 7 days up to now, per nanosecond) times the time left in the period. `forecast_method`
//! says which one each status used.

use serde::{Deserialize, Serialize};

use crate::budget_spec::{Basis, Budget, Threshold};
use gpucost_types::money::usd;
use gpucost_types::period::{Period, utc};

/// The window the forecast's rate is measured over.
pub const TRAILING_NS: u64 = 7 * 86_400 * 1_000_000_000;

/// The forecast from the trailing week, shown with a status that used it.
pub const TRAILING_METHOD: &str =
    "spend so far in the period + (spend over the trailing 7 days / 7 days) × the time left in the period";

/// The seasonal forecast, shown with a status that used it.
pub const SEASONAL_METHOD: &str = "spend so far in the period + the rest of the period forecast day by day by a seasonal model of daily spend (MSTL with a weekly period and an ETS trend, over up to the last 28 whole days)";

/// How forecasts are made (`GET /api/v1/budgets/status`), each status saying which way its own was.
pub const FORECAST_METHOD: &str = "seasonal: spend so far in the period + the rest of the period forecast day by day by a seasonal model of daily spend (MSTL with a weekly period and an ETS trend, over up to the last 28 whole days), when the scope has at least 14 whole days of spend; otherwise trailing: spend so far + (spend over the trailing 7 days / 7 days) × the time left in the period";

#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub budget: Budget,
    pub period: Period,
    pub now_ns: u64,
    pub spend: u128,
    pub trailing: u128,
    pub forecast: u128,
    /// Whether the forecast is the seasonal model's (else the trailing week's).
    pub seasonal: bool,
    /// Each threshold and whether it is crossed.
    pub thresholds: Vec<(Threshold, bool)>,
}

/// Where `budget` stands at `now_ns` in `period`, given its spend so far in the period and over the
/// trailing [`TRAILING_NS`], and the seasonal model's forecast of the rest of the period when there is one.
pub fn status(
    budget: &Budget,
    period: Period,
    now_ns: u64,
    spend: u128,
    trailing: u128,
    seasonal_rest: Option<u128>,
) -> Status {
    let left = u128::from(period.to_ns.saturating_sub(now_ns));
    let forecast = spend + seasonal_rest.unwrap_or_else(|| trailing * left / u128::from(TRAILING_NS));
    let thresholds = budget
        .thresholds
        .iter()
        .map(|t| {
            let value = if t.basis == Basis::Actual { spend } else { forecast };
            (*t, value * 100 >= u128::from(t.percent) * budget.amount_micros)
        })
        .collect();
    Status {
        budget: budget.clone(),
        period,
        now_ns,
        spend,
        trailing,
        forecast,
        seasonal: seasonal_rest.is_some(),
        thresholds,
    }
}

impl Status {
    /// Where the budget stands, as `GET /api/v1/budgets/status` shows it.
    pub fn body(&self) -> StatusBody {
        let pct = |v: u128| (v as f64 * 100.0 / self.budget.amount_micros as f64 * 100.0).round() / 100.0;
        StatusBody {
            budget: self.budget.name.clone(),
            scope: self.budget.scope_spec(),
            period: self.period.label.clone(),
            period_start: utc(self.period.from_ns),
            period_end: utc(self.period.to_ns),
            at: utc(self.now_ns),
            spend_usd: usd(self.spend),
            limit_usd: usd(self.budget.amount_micros),
            forecast_usd: usd(self.forecast),
            spend_pct: pct(self.spend),
            forecast_pct: pct(self.forecast),
            forecast_method: if self.seasonal { SEASONAL_METHOD } else { TRAILING_METHOD },
            trailing_7d_usd: usd(self.trailing),
            thresholds: self
                .thresholds
                .iter()
                .map(|(t, crossed)| ThresholdStatus {
                    id: t.id(),
                    kind: t.basis.name(),
                    percent: t.percent,
                    state: if *crossed { "ALARM" } else { "OK" },
                })
                .collect(),
        }
    }
}

/// A budget's standing in its current period.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct StatusBody {
    /// The budget's name.
    pub budget: String,
    pub scope: crate::budget_spec::ScopeSpec,
    /// `2026-11` or `2026-W48`.
    pub period: String,
    pub period_start: String,
    pub period_end: String,
    /// When it was evaluated (RFC 3339).
    pub at: String,
    pub spend_usd: String,
    pub limit_usd: String,
    pub forecast_usd: String,
    /// Of the limit, two decimals.
    pub spend_pct: f64,
    pub forecast_pct: f64,
    /// How this forecast was made: the seasonal model's (it starts `spend so far in the period + the rest of
    /// the period forecast day by day by a seasonal model`) or the trailing week's.
    pub forecast_method: &'static str,
    /// Spend over the trailing 7 days, which the trailing forecast extends.
    pub trailing_7d_usd: String,
    pub thresholds: Vec<ThresholdStatus>,
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ThresholdStatus {
    /// `actual-80`, `forecast-100`…
    pub id: String,
    /// `actual` or `forecast`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub percent: u32,
    /// `OK` or `ALARM`.
    pub state: &'static str,
}

/// A stored alert state: one per budget, threshold and period that has ever been in ALARM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertState {
    pub budget: String,
    pub threshold: String,
    pub period: String,
    pub alarm: bool,
    /// When it entered its state.
    pub since_ns: u64,
}

/// What notifiers are told of a transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique per transition: receivers can drop a redelivery by it.
    pub id: String,
    pub budget: String,
    pub threshold: String,
    #[serde(rename = "type")]
    pub basis: String,
    pub percent: u32,
    /// `ALARM` or `OK`.
    pub state: String,
    pub reason: String,
    pub period: String,
    pub period_start: String,
    pub period_end: String,
    pub spend_usd: Option<String>,
    pub forecast_usd: Option<String>,
    pub limit_usd: Option<String>,
    pub scope: serde_json::Value,
    /// When the alarm began (for a resolution too).
    pub alarm_since: String,
    pub at: String,
}

/// A change of alert state and the event it sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub state: AlertState,
    pub event: Event,
}

/// The transitions from the stored `states` to what `statuses` say now: a crossed threshold not yet in
/// ALARM for the period fires; an ALARM no longer crossed (the budget was raised, spend was re-priced), of
/// a period that is over, of a threshold or budget that is gone, resolves. Everything else stays, so a
/// threshold fires once per period however often this runs.
pub fn plan(statuses: &[Status], states: &[AlertState], now_ns: u64) -> Vec<Transition> {
    let mut out = Vec::new();
    let stored = |b: &str, t: &str, p: &str| states.iter().find(|s| s.budget == b && s.threshold == t && s.period == p);
    for s in statuses {
        for (t, crossed) in &s.thresholds {
            let id = t.id();
            let before = stored(&s.budget.name, &id, &s.period.label);
            let alarm_before = before.is_some_and(|b| b.alarm);
            if *crossed == alarm_before {
                continue;
            }
            let since = if *crossed { now_ns } else { before.map_or(now_ns, |b| b.since_ns) };
            let reason = if *crossed {
                format!(
                    "{} spend {} USD reached {} % of the {} USD budget",
                    t.basis.name(),
                    usd(if t.basis == Basis::Actual { s.spend } else { s.forecast }),
                    t.percent,
                    usd(s.budget.amount_micros)
                )
            } else {
                format!(
                    "{} spend is back under {} % of the {} USD budget",
                    t.basis.name(),
                    t.percent,
                    usd(s.budget.amount_micros)
                )
            };
            out.push(transition(&s.budget.name, *t, &s.period, *crossed, since, now_ns, reason, Some(s)));
        }
    }
    // ALARMs nothing above speaks for: their budget, threshold or period is gone.
    for st in states.iter().filter(|s| s.alarm) {
        let current = statuses.iter().find(|s| {
            s.budget.name == st.budget
                && s.period.label == st.period
                && s.thresholds.iter().any(|(t, _)| t.id() == st.threshold)
        });
        if current.is_some() {
            continue;
        }
        let reason = match statuses.iter().find(|s| s.budget.name == st.budget) {
            None => "the budget was deleted".to_string(),
            Some(s) if s.period.label != st.period => format!("the period {} is over", st.period),
            Some(_) => "the threshold was removed from the budget".to_string(),
        };
        let Some(t) = parse_threshold_id(&st.threshold) else { continue };
        let period = Period::parse(&st.period).unwrap_or(Period { label: st.period.clone(), from_ns: 0, to_ns: 0 });
        out.push(transition(&st.budget, t, &period, false, st.since_ns, now_ns, reason, None));
    }
    out
}

/// The firing event of a stored alarm, with the numbers `s` has now (to re-post to Alertmanager).
pub fn alarm_event(s: &Status, threshold: &str, since_ns: u64) -> Option<Event> {
    let (t, crossed) = s.thresholds.iter().find(|(t, _)| t.id() == threshold)?;
    if !crossed {
        return None;
    }
    let reason = format!("{} spend is at or over {} % of the budget", t.basis.name(), t.percent);
    Some(transition(&s.budget.name, *t, &s.period, true, since_ns, s.now_ns, reason, Some(s)).event)
}

fn parse_threshold_id(id: &str) -> Option<Threshold> {
    let (basis, pct) = id.split_once('-')?;
    let basis = match basis {
        "actual" => Basis::Actual,
        "forecast" => Basis::Forecast,
        _ => return None,
    };
    Some(Threshold { basis, percent: pct.parse().ok()? })
}

#[allow(clippy::too_many_arguments)]
fn transition(
    budget: &str,
    t: Threshold,
    period: &Period,
    alarm: bool,
    since_ns: u64,
    now_ns: u64,
    reason: String,
    s: Option<&Status>,
) -> Transition {
    let state = if alarm { "ALARM" } else { "OK" };
    Transition {
        state: AlertState {
            budget: budget.to_string(),
            threshold: t.id(),
            period: period.label.clone(),
            alarm,
            since_ns: if alarm { now_ns } else { since_ns },
        },
        event: Event {
            id: format!("{budget}/{}/{}/{}/{now_ns}", t.id(), period.label, state.to_ascii_lowercase()),
            budget: budget.to_string(),
            threshold: t.id(),
            basis: t.basis.name().to_string(),
            percent: t.percent,
            state: state.to_string(),
            reason,
            period: period.label.clone(),
            period_start: utc(period.from_ns),
            period_end: utc(period.to_ns),
            spend_usd: s.map(|s| usd(s.spend)),
            forecast_usd: s.map(|s| usd(s.forecast)),
            limit_usd: s.map(|s| usd(s.budget.amount_micros)),
            scope: s.map_or(serde_json::Value::Null, |s| s.budget.to_json()["scope"].clone()),
            alarm_since: utc(since_ns),
            at: utc(now_ns),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget_spec::Budget;
    use gpucost_types::period::DAY_NS;

    fn budget(usd: u64, thresholds: serde_json::Value) -> Budget {
        Budget::from_json(
            "vision",
            &serde_json::json!({ "scope": { "team": "vision" }, "amount_usd": usd, "thresholds": thresholds }),
        )
        .unwrap()
    }

    fn nov() -> Period {
        Period::parse("2026-11").unwrap()
    }

    const USD: u128 = 1_000_000;

    #[test]
    fn the_forecast_adds_the_trailing_weekly_rate_for_the_rest_of_the_period() {
        let b = budget(1000, serde_json::json!([{ "type": "forecast", "percent": 100 }]));
        // Ten days in: 300 spent, 70 in the last 7 days (10/day), 20 days left → 300 + 200.
        let s = status(&b, nov(), nov().from_ns + 10 * DAY_NS, 300 * USD, 70 * USD, None);
        assert_eq!(s.forecast, 500 * USD);
        assert!(!s.thresholds[0].1);
        let s = status(&b, nov(), nov().from_ns + 10 * DAY_NS, 300 * USD, 245 * USD, None);
        assert_eq!(s.forecast, 1000 * USD);
        assert!(s.thresholds[0].1, "exactly 100 % crosses");
        assert_eq!(s.body().forecast_method, TRAILING_METHOD);
        // With the seasonal model's rest of the period (a quiet weekend ahead, say): spend + its forecast.
        let s = status(&b, nov(), nov().from_ns + 10 * DAY_NS, 300 * USD, 245 * USD, Some(150 * USD));
        assert_eq!((s.forecast, s.thresholds[0].1), (450 * USD, false));
        assert!(s.body().forecast_method.contains("seasonal model"));
    }

    #[test]
    fn a_threshold_fires_once_per_period_and_resolves_when_the_budget_is_raised() {
        let b = budget(100, serde_json::json!([{ "type": "actual", "percent": 80 }]));
        let now = nov().from_ns + DAY_NS;
        let s = status(&b, nov(), now, 85 * USD, 0, None);
        let fire = plan(std::slice::from_ref(&s), &[], now);
        assert_eq!(fire.len(), 1);
        assert_eq!((fire[0].event.state.as_str(), fire[0].event.threshold.as_str()), ("ALARM", "actual-80"));
        // Stored: evaluating again changes nothing.
        let states = vec![fire[0].state.clone()];
        assert!(plan(std::slice::from_ref(&s), &states, now + 1).is_empty());
        // Raised to 200: back under 80 %, the alarm resolves, keeping when it began.
        let raised = status(
            &budget(200, serde_json::json!([{ "type": "actual", "percent": 80 }])),
            nov(),
            now + 2,
            85 * USD,
            0,
            None,
        );
        let resolve = plan(&[raised], &states, now + 2);
        assert_eq!(resolve.len(), 1);
        assert_eq!(resolve[0].event.state, "OK");
        assert_eq!(resolve[0].event.alarm_since, utc(now));
    }

    #[test]
    fn alarms_of_an_ended_period_or_a_deleted_budget_resolve() {
        let b = budget(100, serde_json::json!([{ "type": "actual", "percent": 50 }]));
        let old = AlertState {
            budget: "vision".into(),
            threshold: "actual-50".into(),
            period: "2026-10".into(),
            alarm: true,
            since_ns: 1,
        };
        let now = nov().from_ns + DAY_NS;
        let t = plan(&[status(&b, nov(), now, 0, 0, None)], std::slice::from_ref(&old), now);
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].event.period.as_str(), t[0].event.state.as_str()), ("2026-10", "OK"));
        assert!(t[0].event.reason.contains("period 2026-10 is over"));
        let t = plan(&[], &[old], now);
        assert!(t[0].event.reason.contains("deleted"));
    }
}
