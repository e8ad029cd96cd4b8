//! Calendar periods in UTC: months (`2026-11`), ISO weeks (`2026-W48`, Monday to Monday) and days, as
//! half-open windows of Unix nanoseconds. Pure arithmetic (proleptic Gregorian calendar), no time zone
//! database: reports, budgets and FOCUS periods are UTC.

const NS: u64 = 1_000_000_000;
pub const DAY_NS: u64 = 86_400 * NS;

/// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day number since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYY-MM-DDTHH:MM:SSZ` (FOCUS's date-time form) of a Unix-nanosecond time.
pub fn utc(ns: u64) -> String {
    let secs = ns / NS;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

/// How a budget or a report period repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cadence {
    Monthly,
    Weekly,
}

/// A half-open UTC window with a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// `2026-11`, `2026-W48`, or `<from>/<to>` for an arbitrary window.
    pub label: String,
    pub from_ns: u64,
    pub to_ns: u64,
}

impl Period {
    /// The calendar month `year-month`.
    pub fn month(year: i64, month: u32) -> Self {
        let (ny, nm) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
        Self {
            label: format!("{year:04}-{month:02}"),
            from_ns: days_from_civil(year, month, 1) as u64 * DAY_NS,
            to_ns: days_from_civil(ny, nm, 1) as u64 * DAY_NS,
        }
    }

    /// The ISO week (Monday 00:00 UTC to the next Monday) holding day number `day`.
    fn week_of_day(day: i64) -> Self {
        // 1970-01-01 was a Thursday: weekday 0 = Monday.
        let monday = day - (day + 3).rem_euclid(7);
        let thursday = monday + 3;
        let (iso_year, _, _) = civil_from_days(thursday);
        let week = (thursday - days_from_civil(iso_year, 1, 1)) / 7 + 1;
        Self {
            label: format!("{iso_year:04}-W{week:02}"),
            from_ns: monday as u64 * DAY_NS,
            to_ns: (monday + 7) as u64 * DAY_NS,
        }
    }

    /// The period of `cadence` that holds `ns`.
    pub fn containing(cadence: Cadence, ns: u64) -> Self {
        let day = (ns / DAY_NS) as i64;
        match cadence {
            Cadence::Monthly => {
                let (y, m, _) = civil_from_days(day);
                Self::month(y, m)
            }
            Cadence::Weekly => Self::week_of_day(day),
        }
    }

    /// The period right after this one of the same cadence.
    pub fn next(&self, cadence: Cadence) -> Self {
        Self::containing(cadence, self.to_ns)
    }

    /// Parses `2026-11` (a month) or `2026-W48` (an ISO week); the error says what was expected.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("period {s:?}: expected a month (2026-11) or an ISO week (2026-W48)");
        let (y, rest) = s.split_once('-').ok_or_else(bad)?;
        // Up to 2553: Unix nanoseconds (u64) end in July 2554.
        let year: i64 = y.parse().ok().filter(|y| (1970..=2553).contains(y)).ok_or_else(bad)?;
        if let Some(w) = rest.strip_prefix('W') {
            let week: i64 = w.parse().map_err(|_| bad())?;
            // Week 1 holds the year's first Thursday (so it holds 4 January).
            let jan4 = days_from_civil(year, 1, 4);
            let monday = jan4 - (jan4 + 3).rem_euclid(7) + (week.clamp(1, 54) - 1) * 7;
            // 1970-W01 starts in 1969, before Unix time.
            if monday < 0 {
                return Err(format!("period {s:?}: starts before 1970"));
            }
            let p = Self::week_of_day(monday);
            if !(1..=53).contains(&week) || !p.label.starts_with(&format!("{year:04}-")) {
                return Err(format!("period {s:?}: {year} has no ISO week {week}"));
            }
            return Ok(p);
        }
        let month: u32 = rest.parse().ok().filter(|m| (1..=12).contains(m)).ok_or_else(bad)?;
        if rest.len() != 2 {
            return Err(bad());
        }
        Ok(Self::month(year, month))
    }

    /// Nanoseconds in the period.
    pub fn len_ns(&self) -> u64 {
        self.to_ns - self.from_ns
    }
}

/// The latest time anything may name, 2262-01-01T00:00:00Z, in Unix seconds: the ledger keeps signed 64-bit
/// nanoseconds (which end in April 2262), and a later time must not wrap around to an earlier one.
pub const LATEST_S: u64 = 9_183_110_400;

/// An instant given as RFC 3339 (`2026-11-01T00:00:00Z`) or Unix seconds, in Unix nanoseconds; errors name
/// `name` and the value.
pub fn parse_instant(name: &str, value: &str) -> Result<u64, String> {
    let late = || format!("{name}={value}: too far in the future; the latest time is 2262-01-01T00:00:00Z");
    if let Ok(secs) = value.parse::<u64>() {
        return if secs <= LATEST_S { Ok(secs * NS) } else { Err(late()) };
    }
    let t = humantime::parse_rfc3339_weak(value)
        .map_err(|e| format!("{name}={value:?}: {e}; expected RFC 3339 (e.g. 2026-11-01T00:00:00Z) or Unix seconds"))?;
    let ns = t.duration_since(std::time::UNIX_EPOCH).map_err(|_| format!("{name}={value}: before 1970"))?.as_nanos();
    if ns > u128::from(LATEST_S * NS) {
        return Err(late());
    }
    Ok(ns as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip_and_match_known_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2026, 11, 1), 20_758);
        assert_eq!(civil_from_days(20_758), (2026, 11, 1));
        for d in [-1000, 0, 59, 60, 11_016, 20_758, 30_000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(utc(1_793_577_600 * NS + 3_723 * NS), "2026-11-02T01:02:03Z");
    }

    #[test]
    fn months_are_calendar_months_and_december_rolls_over() {
        let nov = Period::parse("2026-11").unwrap();
        assert_eq!((utc(nov.from_ns), utc(nov.to_ns)), ("2026-11-01T00:00:00Z".into(), "2026-12-01T00:00:00Z".into()));
        assert_eq!(nov.len_ns(), 30 * DAY_NS);
        let dec = nov.next(Cadence::Monthly);
        assert_eq!((dec.label.as_str(), utc(dec.to_ns).as_str()), ("2026-12", "2027-01-01T00:00:00Z"));
        assert_eq!(Period::parse("2028-02").unwrap().len_ns(), 29 * DAY_NS);
        assert_eq!(Period::containing(Cadence::Monthly, nov.to_ns - 1), nov);
    }

    #[test]
    fn iso_weeks_start_on_monday_and_belong_to_the_year_of_their_thursday() {
        let w = Period::parse("2026-W48").unwrap();
        assert_eq!(utc(w.from_ns), "2026-11-23T00:00:00Z");
        assert_eq!(utc(w.to_ns), "2026-11-30T00:00:00Z");
        // 2027-01-01 is a Friday: it belongs to 2026's last week.
        let p = Period::containing(Cadence::Weekly, days_from_civil(2027, 1, 1) as u64 * DAY_NS);
        assert_eq!(p.label, "2026-W53");
        assert_eq!(Period::parse("2026-W53").unwrap(), p);
        assert!(Period::parse("2025-W53").unwrap_err().contains("has no ISO week 53"));
    }

    #[test]
    fn bad_periods_say_what_was_expected() {
        for s in [
            "2026",
            "2026-13",
            "2026-1",
            "nov",
            "2026-W0",
            "2026-Wx",
            "2026-W-9223372036854775808",
            "1970-W01",
            "3287-W48",
            "9999-12",
        ] {
            let e = Period::parse(s).unwrap_err();
            assert!(e.contains(s), "{e}");
        }
    }
}
