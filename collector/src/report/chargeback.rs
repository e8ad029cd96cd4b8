//! Chargeback: for a period, what each team (department, owner, cost centre, model, namespace or cluster)
//! is charged for GPU time: GPU-hours held and used, efficiency, used and idle cost, total and energy, with
//! its top models, plus the explicit `unallocated` and `idle` lines, so that the lines add up to exactly
//! what the fleet cost in the period.
//!
//! - `unallocated`: GPU cost no group can be charged for: GPUs nobody held, and GPU time of workloads
//!   without a value for the grouping (no owner, no model, no namespace…).
//! - `idle`: under the `utilization` policy, the unused cost of held GPUs, which no holder pays (under
//!   `hybrid` and `allocation` the holders carry it as their idle cost, and this line is zero).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::cost::price::usd;
use crate::cost::split::Policy;
use crate::ledger::{CostQuery, CostReport, CostRow, Dimension, Ledger, LedgerError};
use crate::report::period::{Period, utc};

/// How many models are listed per group.
pub const TOP_MODELS: usize = 3;

/// What a chargeback is grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Team,
    Department,
    Owner,
    /// The team's cost centre: a Backstage group annotation on the team or its nearest ancestor.
    CostCenter,
    Model,
    Namespace,
    Cluster,
}

impl GroupBy {
    pub const ALL: [GroupBy; 7] = [
        GroupBy::Team,
        GroupBy::Department,
        GroupBy::Owner,
        GroupBy::CostCenter,
        GroupBy::Model,
        GroupBy::Namespace,
        GroupBy::Cluster,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Team => "team",
            Self::Department => "department",
            Self::Owner => "owner",
            Self::CostCenter => "cost_center",
            Self::Model => "model",
            Self::Namespace => "namespace",
            Self::Cluster => "cluster",
        }
    }

    /// Parses a name (`cost-centre`, `cost_centre` and `cost-center` are taken too); the error lists them.
    pub fn parse(s: &str) -> Result<Self, String> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_").replace("centre", "center");
        Self::ALL.into_iter().find(|g| g.name() == norm).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|g| g.name()).collect();
            format!("group_by: unknown grouping {s:?}; expected one of {}", names.join(", "))
        })
    }

    /// The ledger dimension the grouping is read by (cost centres are read by team, then mapped).
    fn dimension(self) -> Dimension {
        match self {
            Self::Team | Self::CostCenter => Dimension::Team,
            Self::Department => Dimension::Department,
            Self::Owner => Dimension::Owner,
            Self::Model => Dimension::Model,
            Self::Namespace => Dimension::Namespace,
            Self::Cluster => Dimension::Cluster,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LineKind {
    Group,
    Unallocated,
    Idle,
    /// GPU time of an earlier, closed month that arrived after it closed (FOCUS `ChargeClass` Correction).
    Correction,
}

/// One chargeback line. Money in micro-dollars, time in nanoseconds, energy in millijoules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub kind: LineKind,
    /// The group's value; `unallocated` or `idle` for those lines.
    pub name: String,
    pub held_ns: u128,
    pub used_ns: u128,
    pub used: u128,
    pub idle: u128,
    pub energy_mj: u128,
    /// The group's costliest models (name, total), at most [`TOP_MODELS`].
    pub top_models: Vec<(String, u128)>,
}

impl Line {
    pub fn total(&self) -> u128 {
        self.used + self.idle
    }

    fn empty(kind: LineKind, name: &str) -> Self {
        Self {
            kind,
            name: name.to_string(),
            held_ns: 0,
            used_ns: 0,
            used: 0,
            idle: 0,
            energy_mj: 0,
            top_models: vec![],
        }
    }

    fn add(&mut self, r: &CostRow) {
        self.held_ns += r.held_ns;
        self.used_ns += r.used_ns;
        self.used += r.used;
        self.idle += r.idle;
        self.energy_mj += r.energy_mj;
    }

    /// Used GPU time over held GPU time, in percent (`None` when nothing was held).
    pub fn efficiency_pct(&self) -> Option<f64> {
        (self.held_ns > 0).then(|| self.used_ns as f64 * 100.0 / self.held_ns as f64)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chargeback {
    pub period: Period,
    pub group_by: GroupBy,
    pub policy: Policy,
    /// Group lines by descending total, then `unallocated`, then `idle`, then corrections.
    pub lines: Vec<Line>,
    /// When the period was closed (its report no longer changes).
    pub closed_at_ns: Option<u64>,
    /// What the fleet's GPUs cost in the period: the sum of all lines.
    pub fleet: u128,
    /// GPU time observed without a price (not in any line).
    pub unpriced_ns: u128,
}

/// Builds the chargeback from the ledger's cost report by group (`by_group`) and by group and model
/// (`by_model`, for the top models). `map` turns a ledger value into the group's name (a team into its cost
/// centre); `None` or an empty name sends the line to `unallocated`. Pure: no I/O.
pub fn assemble(
    period: Period,
    group_by: GroupBy,
    policy: Policy,
    by_group: &CostReport,
    by_model: &[CostRow],
    map: &dyn Fn(&str) -> Option<String>,
) -> Chargeback {
    let name_of = |v: &str| if v.is_empty() { None } else { map(v).filter(|n| !n.is_empty()) };
    let mut groups: BTreeMap<String, Line> = BTreeMap::new();
    let mut unallocated = Line::empty(LineKind::Unallocated, "unallocated");
    for r in &by_group.rows {
        match name_of(&r.group[0]) {
            Some(n) => groups.entry(n.clone()).or_insert_with(|| Line::empty(LineKind::Group, &n)).add(r),
            None => unallocated.add(r),
        }
    }
    unallocated.idle += by_group.unallocated.unwrap_or(0);
    let mut models: BTreeMap<String, BTreeMap<String, u128>> = BTreeMap::new();
    for r in by_model {
        if let (Some(n), model) = (name_of(&r.group[0]), &r.group[1])
            && !model.is_empty()
        {
            *models.entry(n).or_default().entry(model.clone()).or_default() += r.used + r.idle;
        }
    }
    let mut lines: Vec<Line> = groups
        .into_values()
        .map(|mut l| {
            let mut top: Vec<(String, u128)> = models.remove(&l.name).unwrap_or_default().into_iter().collect();
            top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            top.truncate(TOP_MODELS);
            l.top_models = top;
            l
        })
        .collect();
    lines.sort_by(|a, b| b.total().cmp(&a.total()).then_with(|| a.name.cmp(&b.name)));
    lines.push(unallocated);
    let mut idle = Line::empty(LineKind::Idle, "idle");
    idle.idle = by_group.idle.unwrap_or(0);
    lines.push(idle);
    Chargeback {
        period,
        group_by,
        policy,
        lines,
        closed_at_ns: None,
        fleet: by_group.fleet,
        unpriced_ns: by_group.unpriced_ns,
    }
}

/// A report grouped by (group, …) summed by its first dimension alone. Pure.
pub fn by_first(r: &CostReport) -> CostReport {
    let mut rows: BTreeMap<&str, CostRow> = BTreeMap::new();
    for x in &r.rows {
        let key = x.group.first().map_or("", String::as_str);
        let row = rows.entry(key).or_insert_with(|| CostRow {
            group: vec![key.to_string()],
            used: 0,
            idle: 0,
            held_ns: 0,
            used_ns: 0,
            energy_mj: 0,
            co2e_mg: None,
        });
        row.used += x.used;
        row.idle += x.idle;
        row.held_ns += x.held_ns;
        row.used_ns += x.used_ns;
        row.energy_mj += x.energy_mj;
        row.co2e_mg = match (row.co2e_mg, x.co2e_mg) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
    }
    CostReport {
        rows: rows.into_values().collect(),
        idle: r.idle,
        unallocated: r.unallocated,
        unpriced_ns: r.unpriced_ns,
        fleet: r.fleet,
    }
}

/// Reads the ledger for `period` and builds the chargeback. `cost_center` maps a team to its cost centre.
pub fn build(
    ledger: &dyn Ledger,
    period: Period,
    group_by: GroupBy,
    policy: Policy,
    cost_center: &dyn Fn(&str) -> Option<String>,
) -> Result<Chargeback, LedgerError> {
    let sources = crate::report::sources(ledger, &period)?;
    let query = |(from_ns, to_ns): (u64, u64), group_by: Vec<Dimension>| CostQuery {
        from_ns,
        to_ns,
        group_by,
        filters: vec![],
        policy,
    };
    let d = group_by.dimension();
    let identity = |v: &str| Some(v.to_string());
    let map: &dyn Fn(&str) -> Option<String> = if group_by == GroupBy::CostCenter { cost_center } else { &identity };
    let window = (period.from_ns, period.to_ns);
    // One query by group and model; the group lines are its sums (a second query over the same rows cost
    // as much again).
    let by_model = ledger.costs_of(&sources.own, &query(window, vec![d.clone(), Dimension::Model]))?;
    let mut c = assemble(period.clone(), group_by, policy, &by_first(&by_model), &by_model.rows, map);
    c.closed_at_ns = sources.closed.map(|p| p.closed_at_ns);
    if let Some(rows) = &sources.corrections {
        let all = crate::report::ALL_TIME;
        let by_model = ledger.costs_of(rows, &query(all, vec![d, Dimension::Model]))?;
        let late = assemble(period, group_by, policy, &by_first(&by_model), &by_model.rows, map);
        c.fleet += late.fleet;
        c.unpriced_ns += late.unpriced_ns;
        c.lines.extend(late.lines.into_iter().filter(|l| l.total() > 0 || l.held_ns > 0).map(|mut l| {
            l.kind = LineKind::Correction;
            l
        }));
    }
    Ok(c)
}

fn hours(ns: u128) -> String {
    format!("{:.4}", ns as f64 / 3.6e12)
}

fn kwh(mj: u128) -> String {
    format!("{:.4}", mj as f64 / 3.6e9)
}

impl Chargeback {
    pub const CSV_HEADER: &'static str = "period_start,period_end,group_by,line,group,gpu_hours_held,gpu_hours_used,efficiency_pct,used_usd,idle_usd,total_usd,energy_kwh,top_models";

    /// RFC 4180 CSV, one row per line, money in dollars with six decimals (exact micro-dollars).
    pub fn to_csv(&self) -> String {
        let mut out = String::from(Self::CSV_HEADER);
        out.push_str("\r\n");
        for l in &self.lines {
            let top: Vec<String> = l.top_models.iter().map(|(m, c)| format!("{m}={}", usd(*c))).collect();
            let fields = [
                utc(self.period.from_ns),
                utc(self.period.to_ns),
                self.group_by.name().to_string(),
                format!("{:?}", l.kind).to_ascii_lowercase(),
                l.name.clone(),
                hours(l.held_ns),
                hours(l.used_ns),
                l.efficiency_pct().map(|e| format!("{e:.2}")).unwrap_or_default(),
                usd(l.used),
                usd(l.idle),
                usd(l.total()),
                kwh(l.energy_mj),
                top.join(";"),
            ];
            out.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
            out.push_str("\r\n");
        }
        out
    }

    pub fn to_json(&self) -> Value {
        let lines: Vec<Value> = self
            .lines
            .iter()
            .map(|l| {
                json!({
                    "line": l.kind,
                    "group": l.name,
                    "gpu_hours_held": l.held_ns as f64 / 3.6e12,
                    "gpu_hours_used": l.used_ns as f64 / 3.6e12,
                    "efficiency_pct": l.efficiency_pct(),
                    "used_usd": usd(l.used),
                    "idle_usd": usd(l.idle),
                    "total_usd": usd(l.total()),
                    "total_micros": l.total(),
                    "energy_kwh": l.energy_mj as f64 / 3.6e9,
                    "top_models": l.top_models.iter().map(|(m, c)| json!({ "model": m, "total_usd": usd(*c) })).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "period": self.period.label,
            "closed_at": self.closed_at_ns.map(utc),
            "from": utc(self.period.from_ns),
            "to": utc(self.period.to_ns),
            "group_by": self.group_by.name(),
            "policy": self.policy.name(),
            "lines": lines,
            "total_usd": usd(self.lines.iter().map(Line::total).sum()),
            "fleet_usd": usd(self.fleet),
            "unpriced_gpu_hours": self.unpriced_ns as f64 / 3.6e12,
        })
    }
}

/// The rows of CSV text as these reports write it (RFC 4180, CRLF rows, no line breaks inside a field), each
/// a list of its fields, unquoted.
pub fn csv_rows(text: &str) -> Vec<Vec<String>> {
    text.split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (mut fields, mut cur, mut quoted) = (vec![], String::new(), false);
            let mut chars = line.chars().peekable();
            while let Some(c) = chars.next() {
                match (c, quoted) {
                    ('"', true) if chars.peek() == Some(&'"') => {
                        cur.push('"');
                        chars.next();
                    }
                    ('"', _) => quoted = !quoted,
                    (',', false) => fields.push(std::mem::take(&mut cur)),
                    _ => cur.push(c),
                }
            }
            fields.push(cur);
            fields
        })
        .collect()
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(group: &[&str], used: u128, idle: u128, held_h: u128) -> CostRow {
        CostRow {
            group: group.iter().map(|s| s.to_string()).collect(),
            used,
            idle,
            held_ns: held_h * 3_600_000_000_000,
            used_ns: held_h * 1_800_000_000_000,
            energy_mj: 3_600_000_000,
            co2e_mg: None,
        }
    }

    fn report(rows: Vec<CostRow>, idle: u128, unallocated: u128) -> CostReport {
        let fleet = rows.iter().map(|r| r.used + r.idle).sum::<u128>() + idle + unallocated;
        CostReport { rows, idle: Some(idle), unallocated: Some(unallocated), unpriced_ns: 0, fleet }
    }

    #[test]
    fn a_report_by_group_and_model_sums_to_the_report_by_group() {
        let mut a = row(&["nlp", "m1"], 10, 2, 1);
        a.co2e_mg = Some(5);
        let rows = vec![a, row(&["nlp", ""], 3, 1, 2), row(&["vision", "m2"], 7, 0, 4)];
        let by = by_first(&CostReport { rows, idle: Some(9), unallocated: Some(4), unpriced_ns: 6, fleet: 36 });
        assert_eq!(by.rows.len(), 2);
        let nlp = &by.rows[0];
        assert_eq!((nlp.group[0].as_str(), nlp.used, nlp.idle, nlp.co2e_mg), ("nlp", 13, 3, Some(5)));
        assert_eq!((by.rows[1].group[0].as_str(), by.rows[1].used, by.rows[1].co2e_mg), ("vision", 7, None));
        assert_eq!((by.idle, by.unallocated, by.unpriced_ns, by.fleet), (Some(9), Some(4), 6, 36));
    }

    #[test]
    fn lines_add_up_to_the_fleet_with_explicit_unallocated_and_idle_lines() {
        let r = report(vec![row(&["vision"], 300, 100, 2), row(&["nlp"], 500, 0, 1), row(&[""], 70, 30, 1)], 40, 60);
        let by_model = [row(&["vision", "resnet"], 100, 0, 1), row(&["vision", "vit"], 200, 0, 1)];
        let id = |v: &str| Some(v.to_string());
        let c = assemble(Period::parse("2026-11").unwrap(), GroupBy::Team, Policy::Utilization, &r, &by_model, &id);
        let names: Vec<&str> = c.lines.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["nlp", "vision", "unallocated", "idle"]);
        assert_eq!(c.lines.iter().map(Line::total).sum::<u128>(), c.fleet);
        assert_eq!(c.lines[2].total(), 160, "workloads without a team plus GPUs nobody held");
        assert_eq!(c.lines[3].total(), 40);
        assert_eq!(c.lines[1].top_models, vec![("vit".to_string(), 200), ("resnet".to_string(), 100)]);
        assert_eq!(c.lines[1].efficiency_pct(), Some(50.0));
    }

    #[test]
    fn cost_centres_merge_teams_and_teams_without_one_are_unallocated() {
        let r = report(vec![row(&["vision"], 300, 0, 1), row(&["nlp"], 500, 0, 1), row(&["speech"], 7, 0, 1)], 0, 0);
        let cc = |team: &str| match team {
            "vision" | "nlp" => Some("CC-1100".to_string()),
            _ => None,
        };
        let c = assemble(Period::parse("2026-11").unwrap(), GroupBy::CostCenter, Policy::Hybrid, &r, &[], &cc);
        assert_eq!(c.lines[0].name, "CC-1100");
        assert_eq!(c.lines[0].total(), 800);
        assert_eq!((c.lines[1].name.as_str(), c.lines[1].total()), ("unallocated", 7));
        assert_eq!(c.lines.iter().map(Line::total).sum::<u128>(), c.fleet);
    }

    #[test]
    fn csv_has_one_row_per_line_and_quotes_what_needs_it() {
        let r = report(vec![row(&["a,b"], 1_500_000, 0, 1)], 0, 0);
        let id = |v: &str| Some(v.to_string());
        let c = assemble(Period::parse("2026-11").unwrap(), GroupBy::Team, Policy::Hybrid, &r, &[], &id);
        let csv = c.to_csv();
        let rows: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(rows.len(), 4);
        assert_eq!(
            rows[1],
            "2026-11-01T00:00:00Z,2026-12-01T00:00:00Z,team,group,\"a,b\",1.0000,0.5000,50.00,1.500000,0.000000,1.500000,1.0000,"
        );
        assert!(GroupBy::parse("cost-centre").is_ok());
        assert!(GroupBy::parse("pod").unwrap_err().contains("expected one of team, department"));
    }
}
