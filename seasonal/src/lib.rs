//! What spend is expected to be, from its own history: Grafana's `augurs` MSTL (a seasonal decomposition
//! with one component per period, e.g. a day and a week of hours) with an AutoETS trend (additive errors,
//! trend none/additive/damped chosen by likelihood). Pure: series in, forecasts and bands out; no I/O, no
//! clock. Money is the caller's: it hands in spend as floating dollars and turns forecasts back into
//! integer micro-dollars (`to_micros`).
//!
//! Its own crate so that `gpucost-rules` (which every crate builds) does not compile `augurs`' linear
//! algebra (nalgebra) for the agent and the CLI; the collector is the only user.

use augurs_core::{Fit, Predict};
use augurs_ets::AutoETS;
use augurs_mstl::MSTLModel;

/// Days of daily spend the seasonal budget forecast needs: two whole weeks, so the weekly component is
/// seen twice (MSTL needs two periods of each seasonality it fits).
pub const MIN_DAYS: usize = 14;

/// The days of a week: the seasonality of daily spend.
pub const WEEK: usize = 7;

/// Why no forecast was made.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// Fewer points than two of the shortest period.
    TooShort { points: usize, needed: usize },
    /// A point is NaN or infinite.
    NotFinite { index: usize },
    /// MSTL or ETS failed to fit (a flat series can make ETS's likelihood degenerate).
    Model(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooShort { points, needed } => write!(f, "{points} points of history; the model needs {needed}"),
            Self::NotFinite { index } => write!(f, "point {index} is not a finite number"),
            Self::Model(e) => write!(f, "the seasonal model did not fit: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// One forecast step: the expected value and the band the model gives it at its level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    pub expected: f64,
    pub lower: f64,
    pub upper: f64,
}

impl Band {
    /// Whether `actual` is outside the band: `Some(true)` above, `Some(false)` below.
    pub fn outside(&self, actual: f64) -> Option<bool> {
        if actual > self.upper {
            Some(true)
        } else if actual < self.lower {
            Some(false)
        } else {
            None
        }
    }
}

/// The periods of `periods` that `points` can fit: those seen at least twice.
pub fn usable_periods(periods: &[usize], points: usize) -> Vec<usize> {
    periods.iter().copied().filter(|p| *p >= 2 && points >= 2 * p).collect()
}

/// Fits MSTL with the usable `periods` and an AutoETS trend to `history` and forecasts the next `horizon`
/// points, each with its band at `level` (0 < level < 1, e.g. 0.99).
pub fn forecast(history: &[f64], periods: &[usize], horizon: usize, level: f64) -> Result<Vec<Band>, Error> {
    if let Some(index) = history.iter().position(|v| !v.is_finite()) {
        return Err(Error::NotFinite { index });
    }
    let usable = usable_periods(periods, history.len());
    if usable.is_empty() {
        let shortest = periods.iter().copied().filter(|p| *p >= 2).min().unwrap_or(2);
        return Err(Error::TooShort { points: history.len(), needed: 2 * shortest });
    }
    if horizon == 0 {
        return Ok(Vec::new());
    }
    let trend = AutoETS::new(1, "AZN").map_err(|e| Error::Model(e.to_string()))?.into_trend_model();
    let fitted = MSTLModel::new(usable, trend).fit(history).map_err(|e| Error::Model(e.to_string()))?;
    let f = fitted.predict(horizon, level).map_err(|e| Error::Model(e.to_string()))?;
    let intervals = f.intervals.ok_or_else(|| Error::Model("no prediction intervals".into()))?;
    let bands: Vec<Band> = f
        .point
        .iter()
        .zip(intervals.lower.iter().zip(&intervals.upper))
        .map(|(e, (l, u))| Band { expected: *e, lower: *l, upper: *u })
        .collect();
    if bands.len() != horizon
        || bands.iter().any(|b| !(b.expected.is_finite() && b.lower.is_finite() && b.upper.is_finite()))
    {
        return Err(Error::Model("the forecast is not finite".into()));
    }
    Ok(bands)
}

/// The spend still to come in a period, forecast from daily spend: `daily` is every whole day's spend up
/// to today (oldest first, at least [`MIN_DAYS`]), `today_left` the part of today still to come (0..=1) and
/// `days_after` the whole days after today left in the period. Today's forecast counts for the part left;
/// a day forecast below zero counts as zero.
pub fn rest_of_period(daily: &[f64], today_left: f64, days_after: usize) -> Result<f64, Error> {
    if daily.len() < MIN_DAYS {
        return Err(Error::TooShort { points: daily.len(), needed: MIN_DAYS });
    }
    let bands = forecast(daily, &[WEEK], days_after + 1, 0.8)?;
    let day = |i: usize| bands[i].expected.max(0.0);
    Ok(day(0) * today_left.clamp(0.0, 1.0) + (1..=days_after).map(day).sum::<f64>())
}

/// Dollars (a model's output) to micro-dollars, rounded; negative or not finite is zero.
pub fn to_micros(usd: f64) -> u128 {
    if usd.is_finite() && usd > 0.0 { (usd * 1e6).round() as u128 } else { 0 }
}

/// Micro-dollars to dollars, the model's input.
pub fn to_usd(micros: u128) -> f64 {
    micros as f64 / 1e6
}

/// Where the latest point stands against what the model expected of it from the points before.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Check {
    pub actual: f64,
    pub band: Band,
}

impl Check {
    /// `Some(true)` above the band, `Some(false)` below it, `None` inside.
    pub fn outside(&self) -> Option<bool> {
        self.band.outside(self.actual)
    }
}

/// Fits the model to `series` without its last point and checks that point against the one-step band at
/// `level`: what an anomaly alert fires on.
pub fn check_latest(series: &[f64], periods: &[usize], level: f64) -> Result<Check, Error> {
    let (actual, history) = series.split_last().ok_or(Error::TooShort { points: 0, needed: 2 })?;
    let band = forecast(history, periods, 1, level)?[0];
    Ok(Check { actual: *actual, band })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random stream in [-1, 1) (a 64-bit LCG), so the tests need no RNG crate.
    fn noise(seed: u64) -> impl FnMut() -> f64 {
        let mut s = seed;
        move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        }
    }

    /// Daily spend with a working week: 1000 USD on weekdays, 250 at weekends, ±5 % noise.
    fn weekly_days(days: usize, seed: u64) -> Vec<f64> {
        let mut n = noise(seed);
        (0..days).map(|d| if d % 7 >= 5 { 250.0 } else { 1000.0 } * (1.0 + 0.05 * n())).collect()
    }

    /// Hourly spend with a day (busy 08-20 h) and a week (quiet weekends), ±3 % noise.
    fn weekly_hours(hours: usize, seed: u64) -> Vec<f64> {
        let mut n = noise(seed);
        (0..hours)
            .map(|h| {
                let (day, hour) = (h / 24 % 7, h % 24);
                let base = if (8..20).contains(&hour) { 60.0 } else { 25.0 };
                let week = if day >= 5 { 0.4 } else { 1.0 };
                base * week * (1.0 + 0.03 * n())
            })
            .collect()
    }

    /// The old forecast: the trailing 7 days' rate times the days left.
    fn trailing(daily: &[f64], days_left: usize) -> f64 {
        daily[daily.len() - 7..].iter().sum::<f64>() / 7.0 * days_left as f64
    }

    #[test]
    fn the_seasonal_forecast_of_a_weekly_series_beats_the_trailing_week_line() {
        // Across several cut-off days of a working-week series, the rest-of-month forecast.
        let series = weekly_days(60, 7);
        let (mut seasonal_err, mut trailing_err) = (0.0, 0.0);
        for cut in [16, 20, 23, 27, 31] {
            let left = 12;
            let truth: f64 = series[cut..cut + left].iter().sum();
            let s = rest_of_period(&series[..cut], 1.0, left - 1).unwrap();
            seasonal_err += (s - truth).abs() / truth;
            trailing_err += (trailing(&series[..cut], left) - truth).abs() / truth;
        }
        assert!(seasonal_err < trailing_err, "seasonal {seasonal_err:.4} vs trailing {trailing_err:.4}");
        // A week's forecast from a Friday cut-off sees the weekend: Saturday well under Friday.
        let b = forecast(&series[..40], &[WEEK], 3, 0.8).unwrap();
        assert!(b[0].expected < 600.0 && b[2].expected > 700.0, "{b:?}");
    }

    #[test]
    fn short_or_broken_history_is_refused_by_name() {
        assert_eq!(rest_of_period(&[1.0; 13], 0.5, 3), Err(Error::TooShort { points: 13, needed: 14 }));
        let mut s = weekly_days(20, 1);
        s[4] = f64::NAN;
        assert_eq!(forecast(&s, &[WEEK], 1, 0.9), Err(Error::NotFinite { index: 4 }));
        assert_eq!(usable_periods(&[24, 168], 200), vec![24]);
        assert_eq!(to_micros(-3.0), 0);
        assert_eq!(to_micros(1.2345675), 1_234_568);
    }

    #[test]
    fn a_normal_weekly_rhythm_stays_in_the_band_and_a_spike_does_not() {
        // Three weeks of hours; each hour of the last two days checked against the model of the hours before.
        let series = weekly_hours(24 * 21, 3);
        let mut outside = 0;
        for end in 24 * 19..=series.len() {
            if check_latest(&series[..end], &[24, 168], 0.99).unwrap().outside().is_some() {
                outside += 1;
            }
        }
        assert_eq!(outside, 0, "a weekly rhythm with noise is expected");
        // The same with the last hour tripled: above the band.
        let mut spiked = series.clone();
        *spiked.last_mut().unwrap() *= 3.0;
        let c = check_latest(&spiked, &[24, 168], 0.99).unwrap();
        assert_eq!(c.outside(), Some(true), "{c:?}");
        assert!(c.actual > c.band.upper && c.band.expected < c.actual / 2.0);
    }
}
