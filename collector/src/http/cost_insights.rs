//! GPU cost in the shapes the Backstage Cost Insights plugin's `CostInsightsApi` uses, so that a Backstage
//! app can show it on team and entity pages with a thin client: `Cost { id, aggregation: [{date, amount}],
//! change: {ratio, amount}, trendline: {slope, intercept} }` over intervals written like `R2/P30D/2026-11-01`
//! (two 30-day periods ending on that date). Pure.

use serde::Serialize;

const DAY_S: u64 = 86_400;

/// `R<periods>/P<days>D/<end date>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intervals {
    pub periods: u64,
    pub days: u64,
    /// The end date (exclusive), as a Unix day number.
    pub end_day: u64,
}

impl Intervals {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("intervals {s:?}: expected R<periods>/P<days>D/<YYYY-MM-DD>, e.g. R2/P30D/2026-11-01");
        let mut parts = s.split('/');
        let periods: u64 =
            parts.next().and_then(|r| r.strip_prefix('R')).and_then(|n| n.parse().ok()).ok_or_else(bad)?;
        let days: u64 = parts
            .next()
            .and_then(|p| p.strip_prefix('P'))
            .and_then(|p| p.strip_suffix('D'))
            .and_then(|n| n.parse().ok())
            .ok_or_else(bad)?;
        let date = parts.next().ok_or_else(bad)?;
        let t = humantime::parse_rfc3339_weak(&format!("{date}T00:00:00Z")).map_err(|_| bad())?;
        let end_day = t.duration_since(std::time::UNIX_EPOCH).map_err(|_| bad())?.as_secs() / DAY_S;
        if parts.next().is_some() || periods == 0 || days == 0 || periods.saturating_mul(days) > 400 {
            return Err(format!("{}; at most 400 days in all", bad()));
        }
        // The API reads the days as Unix nanoseconds (u64), which end in July 2554.
        if end_day > u64::MAX / (DAY_S * 1_000_000_000) {
            return Err(format!("{}; the date is past 2554", bad()));
        }
        Ok(Self { periods, days, end_day })
    }

    pub fn start_day(&self) -> u64 {
        self.end_day.saturating_sub(self.periods * self.days)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DateAggregation {
    pub date: String,
    pub amount: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ChangeStatistic {
    /// (last period − the one before) / the one before; absent when the one before cost nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    pub amount: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Trendline {
    pub slope: f64,
    pub intercept: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Cost {
    pub id: String,
    pub aggregation: Vec<DateAggregation>,
    pub change: ChangeStatistic,
    pub trendline: Trendline,
}

fn date(day: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(day * DAY_S)).to_string()
        [..10]
        .to_string()
}

/// A `Cost` from daily amounts in micro-dollars (`(day number, micros)`, any order, days may be missing).
pub fn daily_cost(id: &str, iv: &Intervals, daily_micros: &[(u64, u128)]) -> Cost {
    let start = iv.start_day();
    let amounts: Vec<f64> = (start..iv.end_day)
        .map(|d| daily_micros.iter().filter(|(day, _)| *day == d).map(|(_, m)| *m).sum::<u128>() as f64 / 1e6)
        .collect();
    let aggregation =
        amounts.iter().enumerate().map(|(i, a)| DateAggregation { date: date(start + i as u64), amount: *a }).collect();
    let per = iv.days as usize;
    let last: f64 = amounts.iter().rev().take(per).sum();
    let before: f64 = amounts.iter().rev().skip(per).take(per).sum();
    let change = ChangeStatistic {
        ratio: (iv.periods > 1 && before > 0.0).then(|| (last - before) / before),
        amount: last - before,
    };
    // Least squares over (day start in Unix milliseconds, amount), as the plugin's example client plots it.
    let xs: Vec<f64> = (0..amounts.len()).map(|i| ((start + i as u64) * DAY_S * 1000) as f64).collect();
    let n = amounts.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, amounts.iter().sum::<f64>() / n);
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    let sxy: f64 = xs.iter().zip(&amounts).map(|(x, y)| (x - mx) * (y - my)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    Cost { id: id.to_string(), aggregation, change, trendline: Trendline { slope, intercept: my - slope * mx } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_as_the_plugin_writes_them() {
        let iv = Intervals::parse("R2/P30D/2026-11-01").unwrap();
        assert_eq!((iv.periods, iv.days), (2, 30));
        assert_eq!(date(iv.end_day), "2026-11-01");
        assert_eq!(date(iv.start_day()), "2026-09-02");
        for bad in [
            "P30D/2026-11-01",
            "R2/P30/2026-11-01",
            "R2/P30D/yesterday",
            "R0/P30D/2026-11-01",
            "R20/P30D/2026-11-01",
            // Found by fuzz/: the product overflowed, and so did a date past 2554 in nanoseconds.
            "R99999999999/P99999999999D/2026-11-01",
            "R2/P30D/5104-11-01",
        ] {
            assert!(Intervals::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_daily_series_fills_missing_days_and_compares_the_periods() {
        let iv = Intervals::parse("R2/P2D/2026-11-05").unwrap();
        let d = iv.start_day();
        let c = daily_cost(
            "group:default/recsys",
            &iv,
            &[(d, 1_000_000), (d + 2, 3_000_000), (d + 3, 1_000_000), (d + 2, 500_000)],
        );
        assert_eq!(
            c.aggregation.iter().map(|a| a.date.as_str()).collect::<Vec<_>>(),
            vec!["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]
        );
        assert_eq!(c.aggregation.iter().map(|a| a.amount).collect::<Vec<_>>(), vec![1.0, 0.0, 3.5, 1.0]);
        assert_eq!(c.change.amount, 3.5);
        assert_eq!(c.change.ratio, Some(3.5));
        assert!(c.trendline.slope > 0.0);
    }
}
