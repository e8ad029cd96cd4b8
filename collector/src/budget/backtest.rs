//! The budget forecasts' backtest: over a month of daily spend, at chosen days into it, what the trailing-week
//! line and the seasonal model forecast for the whole month against what it came to. Pure.

use gpucost_rules::budget_status::TRAILING_NS;
use gpucost_types::period::DAY_NS;

/// One cut-off day's forecasts of the month's total (micro-dollars) and their errors.
#[derive(Debug, Clone, PartialEq)]
pub struct Cut {
    /// Whole days of the month known (the forecast is made at the end of the last of them).
    pub day: usize,
    pub actual: u128,
    pub trailing: u128,
    /// `None`: fewer than 14 days known, so the collector would fall back to the trailing line.
    pub seasonal: Option<u128>,
}

impl Cut {
    /// |forecast − actual| ÷ actual, in percent.
    pub fn error_pct(&self, forecast: u128) -> f64 {
        (forecast as f64 - self.actual as f64).abs() * 100.0 / (self.actual as f64).max(1.0)
    }
}

/// At each of `days`, the forecasts of `month`'s total (its daily spend, oldest first) from the days before:
/// trailing = known + (last 7 days ÷ 7 days) × the days left (the collector's `budget_status`); seasonal =
/// known + the seasonal model's rest of the month (`engine::seasonal_rest`, at midnight).
pub fn backtest(month: &[u128], days: &[usize]) -> Vec<Cut> {
    let actual: u128 = month.iter().sum();
    days.iter()
        .filter(|d| **d >= 1 && **d < month.len())
        .map(|&day| {
            let known = &month[..day];
            let so_far: u128 = known.iter().sum();
            let week: u128 = known[day.saturating_sub(7)..].iter().sum();
            let left_ns = u128::from((month.len() - day) as u64 * DAY_NS);
            let trailing = so_far + week * left_ns / u128::from(TRAILING_NS);
            let period = gpucost_types::period::Period {
                label: "backtest".into(),
                from_ns: 0,
                to_ns: month.len() as u64 * DAY_NS,
            };
            // At the start of day `day` (whole days 0..day known, none of today spent).
            let seasonal = super::engine::seasonal_rest(known, &period, day as u64 * DAY_NS).map(|rest| so_far + rest);
            Cut { day, actual, trailing, seasonal }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_a_working_week_month_the_seasonal_forecast_errs_less_from_day_14() {
        // Weekdays 1000 USD, weekends 200, the month starting on a Monday and ending on a weekend.
        let month: Vec<u128> = (0..30)
            .map(|d| if d % 7 >= 5 { 200_000_000 } else { 1_000_000_000 } + (d as u128 % 3) * 10_000_000)
            .collect();
        let cuts = backtest(&month, &[7, 14, 21]);
        assert_eq!(cuts.len(), 3);
        assert_eq!(cuts[0].seasonal, None, "7 days: the trailing line");
        for c in &cuts[1..] {
            let s = c.seasonal.expect("14 days or more");
            assert!(c.error_pct(s) < c.error_pct(c.trailing), "{c:?}");
        }
    }
}
