//! Arbitrary text (lossy UTF-8) as an API query string, decoded as axum's `Query` decodes it: the
//! chargeback request parser and every parameter parser (periods, groupings, policies, dimensions,
//! Backstage intervals) must never panic, and what they accept must read back the same from its own
//! name. The CSV the chargeback writes must read back field for field.

#![no_main]

use std::collections::HashMap;

use gpucost_collector::http::reports::parse_request;
use gpucost_types::policy::Policy;
use gpucost_collector::http::cost_insights::Intervals;
use gpucost_ledger::Dimension;
use gpucost_report::chargeback::{GroupBy, csv_field, csv_rows};
use gpucost_types::period::{Cadence, DAY_NS, Period, civil_from_days, utc};
use libfuzzer_sys::fuzz_target;

/// 2027-01-15T08:00:00Z: the default period is the month holding it.
const NOW_NS: u64 = 1_800_000_000 * 1_000_000_000;

fn period(s: &str) {
    let Ok(p) = Period::parse(s) else { return };
    assert!(p.from_ns < p.to_ns, "{s:?}: {p:?}");
    assert_eq!(p.from_ns % DAY_NS, 0, "{s:?} starts at midnight UTC");
    let cadence = if p.label.contains('W') { Cadence::Weekly } else { Cadence::Monthly };
    match cadence {
        Cadence::Weekly => assert_eq!(p.len_ns(), 7 * DAY_NS, "{s:?}"),
        Cadence::Monthly => assert!((28 * DAY_NS..=31 * DAY_NS).contains(&p.len_ns()), "{s:?}"),
    }
    // The label names the same period, and it is the period of its cadence holding its own start.
    assert_eq!(Period::parse(&p.label).as_ref(), Ok(&p), "{s:?} reads back from its label");
    assert_eq!(Period::containing(cadence, p.from_ns), p, "{s:?}");
}

fn intervals(s: &str) {
    let Ok(iv) = Intervals::parse(s) else { return };
    assert!(iv.periods >= 1 && iv.days >= 1 && iv.periods * iv.days <= 400, "{s:?}: {iv:?}");
    assert!(iv.start_day() <= iv.end_day);
    // The Backstage API turns the days into Unix nanoseconds.
    assert!(iv.end_day.checked_mul(DAY_NS).is_some(), "{s:?}: end day {} is past u64 nanoseconds", iv.end_day);
    let (y, m, d) = civil_from_days(iv.end_day as i64);
    let again = format!("R{}/P{}D/{y:04}-{m:02}-{d:02}", iv.periods, iv.days);
    assert_eq!(Intervals::parse(&again), Ok(iv), "{s:?} as {again:?}");
}

fn parameter(v: &str) {
    period(v);
    intervals(v);
    if let Ok(g) = GroupBy::parse(v) {
        assert_eq!(GroupBy::parse(g.name()), Ok(g));
    }
    if let Some(p) = Policy::parse(v) {
        assert_eq!(p.name(), v);
    }
    if let Some(d) = Dimension::parse(v) {
        assert_eq!(d.name(), v, "a dimension is named as it was asked for");
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let pairs: Vec<(String, String)> = form_urlencoded::parse(text.as_bytes()).into_owned().collect();
    // `Query<HashMap<…>>`: a repeated key keeps its last value.
    let params: HashMap<String, String> = pairs.iter().cloned().collect();

    if let Ok(r) = parse_request(&params, NOW_NS) {
        assert!(r.period.from_ns < r.period.to_ns, "{params:?}: {r:?}");
        match (params.get("period"), params.get("from")) {
            (Some(p), _) => assert_eq!(Period::parse(p).as_ref(), Ok(&r.period)),
            (None, Some(_)) => {
                assert!(r.period.len_ns() <= 400 * DAY_NS);
                assert_eq!(r.period.label, format!("{}/{}", utc(r.period.from_ns), utc(r.period.to_ns)));
            }
            (None, None) => assert_eq!(r.period, Period::containing(Cadence::Monthly, NOW_NS)),
        }
        assert_eq!(GroupBy::parse(r.group_by.name()), Ok(r.group_by));
    }

    parameter(&text);
    for (k, v) in &pairs {
        parameter(k);
        parameter(v);
    }

    // CSV: a row of fields without line breaks reads back as those fields (an empty row is no row).
    let fields: Vec<String> = pairs.iter().flat_map(|(k, v)| [k.clone(), v.clone()]).collect();
    if !fields.iter().any(|f| f.contains(['\r', '\n'])) {
        let row = fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",");
        let rows = csv_rows(&row);
        if row.is_empty() {
            assert!(rows.is_empty());
        } else {
            assert_eq!(rows, vec![fields], "{row:?}");
        }
    }
});
