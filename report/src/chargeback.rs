//! Chargeback: for a period, what each team (department, owner, cost centre, model, namespace or cluster)
//! is charged for GPU time: GPU-hours charged, held and used, efficiency, used and idle cost, total and
//! energy, with its top models, plus explicit lines for the money no group is charged for, so that the
//! lines add up to exactly what the fleet cost in the period, and their hours to the GPU time observed.
//!
//! Each kind of money has one name in every grouping (docs/chargeback.md, "Four kinds of money"):
//! - `used` and `idle`: columns of every line: what its holders' SM use cost, and the held but unused rest
//!   (under `hybrid` and `allocation` the holders carry it);
//! - `unattributed` (owner groupings: team, department, owner, cost centre): workloads that held a GPU but
//!   that no rule names a payer for; under the other groupings a figure of the report (`totals`);
//! - `unallocated`: GPUs nobody held, their whole cost;
//! - `idle` (a line): under `utilization`, the unused cost of held GPUs, which no holder pays.
//!
//! Workloads with no value for the grouping (no model, a team without a cost centre) are a group line
//! named for it (`(no model)`, `(no cost centre)`), never one of the lines above.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::Coverage;
use gpucost_ledger::prelude::*;
use gpucost_ledger::{AllocatedCharge, CostQuery, CostReport, CostRow, LedgerError, OriginCharge};
use gpucost_rules::share::split_proportionally;
use gpucost_types::dimension::Dimension;
use gpucost_types::money::usd;
use gpucost_types::period::{DAY_NS, Period, utc};
use gpucost_types::policy::Policy;

/// How many models are listed per group.
pub const TOP_MODELS: usize = 3;

/// The value the ledger gives the owner dimensions (owner, team, department, component, system) for
/// usage of a workload no owner rule named.
pub use gpucost_rules::owner::UNATTRIBUTED;

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

    /// Whether the grouping says who pays: its unattributed money is a line of its own.
    pub fn by_owner(self) -> bool {
        matches!(self, Self::Team | Self::Department | Self::Owner | Self::CostCenter)
    }

    /// The group line of workloads with no value for the grouping.
    pub fn none_name(self) -> &'static str {
        match self {
            Self::Team => "(no team)",
            Self::Department => "(no department)",
            Self::Owner => "(no owner)",
            Self::CostCenter => "(no cost centre)",
            Self::Model => "(no model)",
            Self::Namespace => "(no namespace)",
            Self::Cluster => "(no cluster)",
        }
    }

    /// An allocated charge's value for the grouping, as the ledger groups it.
    fn value_of<'a>(self, origin: &'a OriginCharge, a: &'a AllocatedCharge) -> &'a str {
        match self {
            Self::Team | Self::CostCenter => &a.team,
            Self::Department => &a.department,
            Self::Owner => &a.owner,
            Self::Model => &a.model,
            Self::Namespace => &a.namespace,
            Self::Cluster => &origin.cluster,
        }
    }

    /// The line a ledger value belongs to. `map` names the group (a team's cost centre).
    fn line_of(self, value: &str, map: &dyn Fn(&str) -> Option<String>) -> (LineKind, String) {
        if self.by_owner() && value == UNATTRIBUTED {
            return (LineKind::Unattributed, UNATTRIBUTED.to_string());
        }
        let name = if value.is_empty() { None } else { map(value).filter(|n| !n.is_empty()) };
        (LineKind::Group, name.unwrap_or_else(|| self.none_name().to_string()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LineKind {
    Group,
    /// Workloads that held a GPU but that no owner rule names a payer for (owner groupings).
    Unattributed,
    /// GPUs nobody held.
    Unallocated,
    /// Under `utilization`, the unused cost of held GPUs.
    Idle,
}

/// One chargeback line. Money in micro-dollars, time in nanoseconds, energy in millijoules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub kind: LineKind,
    /// GPU time of an earlier, closed month that arrived after it closed (FOCUS `ChargeClass` Correction).
    pub correction: bool,
    /// The group's value; `unattributed`, `unallocated` or `idle` for those lines.
    pub name: String,
    /// GPU time charged to the line: each GPU's observed time, split among the lines as its dollars are.
    pub charged_ns: u128,
    /// GPU time the line's workloads held (a GPU shared by two holders counts for each).
    pub held_ns: u128,
    pub used_ns: u128,
    pub used: u128,
    pub idle: u128,
    /// The cost of GPUs nobody held (the `unallocated` line only): neither used nor idle.
    pub unallocated: u128,
    pub energy_mj: u128,
    /// The group's costliest models (name, total), at most [`TOP_MODELS`].
    pub top_models: Vec<(String, u128)>,
}

impl Line {
    pub fn total(&self) -> u128 {
        self.used + self.idle + self.unallocated
    }

    fn empty(kind: LineKind, name: &str) -> Self {
        Self {
            kind,
            correction: false,
            name: name.to_string(),
            charged_ns: 0,
            held_ns: 0,
            used_ns: 0,
            used: 0,
            idle: 0,
            unallocated: 0,
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

    /// The `line` column: its kind, or `correction`.
    pub fn label(&self) -> &'static str {
        match (self.correction, self.kind) {
            (true, _) => "correction",
            (_, LineKind::Group) => "group",
            (_, LineKind::Unattributed) => UNATTRIBUTED,
            (_, LineKind::Unallocated) => "unallocated",
            (_, LineKind::Idle) => "idle",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chargeback {
    pub period: Period,
    pub group_by: GroupBy,
    pub policy: Policy,
    /// Group lines by descending total, then `unattributed` (owner groupings), `unallocated`, `idle`, then
    /// corrections.
    pub lines: Vec<Line>,
    /// When the period was closed (its report no longer changes).
    pub closed_at_ns: Option<u64>,
    /// What the fleet's GPUs cost in the period: the sum of all lines.
    pub fleet: u128,
    /// GPU time observed without a price (not in any line's dollars).
    pub unpriced_ns: u128,
    /// GPU time observed in the period, whoever held it: the lines' charged hours plus `uncharged_ns`.
    pub observed_ns: u128,
    /// Observed GPU time that cost nothing (no price, or a price of $0): in no line's hours.
    pub uncharged_ns: u128,
    /// The cost of workloads no rule names a payer for, under any grouping (under owner groupings, the
    /// `unattributed` line's total).
    pub unattributed: u128,
    /// How much of the period the ledger holds data for.
    pub coverage: Coverage,
}

/// What a chargeback is built from, as read from the ledger.
pub struct Readings<'a> {
    /// The cost report by group.
    pub by_group: &'a CostReport,
    /// By group and model (for the top models).
    pub by_model: &'a [CostRow],
    /// Each GPU's cost per day and each holder's part ([`Ledger::allocations_of`]), for the hours.
    pub origins: &'a [OriginCharge],
    pub coverage: Coverage,
}

/// Builds the chargeback from what was read. `map` turns a ledger value into the group's name (a team
/// into its cost centre); `None` or an empty name makes the line `(no …)`. Pure: no I/O.
pub fn assemble(
    period: Period,
    group_by: GroupBy,
    policy: Policy,
    read: Readings,
    map: &dyn Fn(&str) -> Option<String>,
) -> Chargeback {
    let mut groups: BTreeMap<(LineKind, String), Line> = BTreeMap::new();
    fn line(groups: &mut BTreeMap<(LineKind, String), Line>, key: (LineKind, String)) -> &mut Line {
        groups.entry(key).or_insert_with_key(|(kind, name)| Line::empty(*kind, name))
    }
    for r in &read.by_group.rows {
        line(&mut groups, group_by.line_of(&r.group[0], map)).add(r);
    }
    let mut models: BTreeMap<(LineKind, String), BTreeMap<String, u128>> = BTreeMap::new();
    for r in read.by_model {
        if !r.group[1].is_empty() {
            let key = group_by.line_of(&r.group[0], map);
            *models.entry(key).or_default().entry(r.group[1].clone()).or_default() += r.used + r.idle;
        }
    }
    // The hours: each GPU-day's observed time split like its dollars.
    let (mut unallocated, mut idle) =
        (Line::empty(LineKind::Unallocated, "unallocated"), Line::empty(LineKind::Idle, "idle"));
    let (mut observed_ns, mut uncharged_ns, mut unattributed) = (0, 0, 0);
    for o in read.origins {
        observed_ns += o.observed_ns;
        for a in o.allocations.iter().filter(|a| a.owner == UNATTRIBUTED) {
            unattributed += a.cost;
        }
        match charged_time(o, policy) {
            None => uncharged_ns += o.observed_ns,
            Some(t) => {
                for (a, ns) in o.allocations.iter().zip(t.holders) {
                    line(&mut groups, group_by.line_of(group_by.value_of(o, a), map)).charged_ns += ns;
                }
                unallocated.charged_ns += t.unheld;
                idle.charged_ns += t.idle;
            }
        }
    }
    let mut lines: Vec<Line> = Vec::with_capacity(groups.len() + 3);
    let mut unattributed_line = group_by.by_owner().then(|| Line::empty(LineKind::Unattributed, UNATTRIBUTED));
    for (key, mut l) in groups {
        let mut top: Vec<(String, u128)> = models.remove(&key).unwrap_or_default().into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(TOP_MODELS);
        l.top_models = top;
        match (key.0, &mut unattributed_line) {
            (LineKind::Unattributed, Some(u)) => *u = l,
            _ => lines.push(l),
        }
    }
    lines.sort_by(|a, b| b.total().cmp(&a.total()).then_with(|| a.name.cmp(&b.name)));
    unallocated.unallocated = read.by_group.unallocated.unwrap_or(0);
    idle.idle = read.by_group.idle.unwrap_or(0);
    lines.extend(unattributed_line);
    lines.extend([unallocated, idle]);
    Chargeback {
        period,
        group_by,
        policy,
        lines,
        closed_at_ns: None,
        fleet: read.by_group.fleet,
        unpriced_ns: read.by_group.unpriced_ns,
        observed_ns,
        uncharged_ns,
        unattributed,
        coverage: read.coverage,
    }
}

/// An origin's observed time split like its dollars.
struct ChargedTime {
    /// Per allocated charge, in order.
    holders: Vec<u128>,
    /// Time nobody held.
    unheld: u128,
    /// Under `utilization`, held time no holder used.
    idle: u128,
}

/// Splits a GPU-day's observed time: the time nobody held is unallocated; the held time goes to the
/// holders as their dollars do (by their charges; under `utilization` by their used time, the unused rest
/// to the idle line), with largest-remainder rounding, so the parts add up to the observed time exactly.
/// `None` when the GPU-day cost nothing (no price): its time is in no line, like its dollars.
fn charged_time(o: &OriginCharge, policy: Policy) -> Option<ChargedTime> {
    let held = o.held_ns.min(o.observed_ns);
    let mut weights: Vec<u64> = match policy {
        Policy::Utilization => o.allocations.iter().map(|a| a.used_ns as u64).collect(),
        Policy::Hybrid | Policy::Allocation => o.allocations.iter().map(|a| a.cost as u64).collect(),
    };
    let used: u64 = weights.iter().sum();
    weights.push(if policy == Policy::Utilization { (held as u64).saturating_sub(used) } else { 0 });
    if o.cost == 0 || (held > 0 && weights.iter().all(|&w| w == 0)) {
        return None;
    }
    let mut parts: Vec<u128> = split_proportionally(held as u64, &weights).into_iter().map(u128::from).collect();
    let idle = parts.pop().unwrap_or(0);
    Some(ChargedTime { holders: parts, unheld: o.observed_ns - held, idle })
}

/// A report grouped by (d1, …, dk, …) summed by its first `k` dimensions alone. Pure.
pub fn by_leading(r: &CostReport, k: usize) -> CostReport {
    let mut rows: BTreeMap<&[String], CostRow> = BTreeMap::new();
    for x in &r.rows {
        let key = &x.group[..k.min(x.group.len())];
        let row = rows.entry(key).or_insert_with(|| CostRow {
            group: key.to_vec(),
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
    let sources = crate::sources(ledger, &period)?;
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
    let origins = ledger.allocations_of(&sources.own, period.from_ns, period.to_ns, DAY_NS, policy)?;
    let coverage = Coverage::read(ledger, &sources, &period)?;
    let read = Readings { by_group: &by_leading(&by_model, 1), by_model: &by_model.rows, origins: &origins, coverage };
    let mut c = assemble(period.clone(), group_by, policy, read, map);
    c.closed_at_ns = sources.closed.map(|p| p.closed_at_ns);
    if let Some(rows) = &sources.corrections {
        let all = crate::ALL_TIME;
        let by_model = ledger.costs_of(rows, &query(all, vec![d, Dimension::Model]))?;
        let origins = ledger.allocations_of(rows, all.0, all.1, DAY_NS, policy)?;
        let read = Readings {
            by_group: &by_leading(&by_model, 1),
            by_model: &by_model.rows,
            origins: &origins,
            coverage: c.coverage.clone(),
        };
        let late = assemble(period, group_by, policy, read, map);
        c.fleet += late.fleet;
        c.unpriced_ns += late.unpriced_ns;
        c.observed_ns += late.observed_ns;
        c.uncharged_ns += late.uncharged_ns;
        c.unattributed += late.unattributed;
        c.lines.extend(late.lines.into_iter().filter(|l| l.total() > 0 || l.held_ns > 0 || l.charged_ns > 0).map(
            |mut l| {
                l.correction = true;
                l
            },
        ));
    }
    Ok(c)
}

fn hours(ns: u128) -> String {
    format!("{:.4}", ns as f64 / 3.6e12)
}

fn kwh(mj: u128) -> String {
    format!("{:.4}", mj as f64 / 3.6e9)
}

/// The report's money by kind, in micro-dollars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// What holders' SM use cost.
    pub used: u128,
    /// Held but unused GPU time's cost, whoever carries it (holders under `hybrid` and `allocation`, the
    /// `idle` line under `utilization`).
    pub idle: u128,
    /// The part of `idle` no holder pays (the `idle` line).
    pub idle_uncharged: u128,
    pub unattributed: u128,
    pub unallocated: u128,
}

impl Chargeback {
    pub const CSV_HEADER: &'static str = "period_start,period_end,group_by,line,group,gpu_hours_held,gpu_hours_used,efficiency_pct,used_usd,idle_usd,total_usd,energy_kwh,top_models,gpu_hours_charged,coverage_pct,data_from,data_to";

    pub fn totals(&self) -> Totals {
        let sum = |f: &dyn Fn(&Line) -> u128| self.lines.iter().map(f).sum::<u128>();
        Totals {
            used: sum(&|l| l.used),
            idle: sum(&|l| l.idle),
            idle_uncharged: sum(&|l| if l.kind == LineKind::Idle { l.idle } else { 0 }),
            unattributed: self.unattributed,
            unallocated: sum(&|l| l.unallocated),
        }
    }

    /// RFC 4180 CSV, one row per line, money in dollars with six decimals (exact micro-dollars); each row
    /// repeats the report's coverage (its last three columns).
    pub fn to_csv(&self) -> String {
        let mut out = String::from(Self::CSV_HEADER);
        out.push_str("\r\n");
        let coverage = [
            format!("{:.2}", self.coverage.pct()),
            self.coverage.first_ns.map(utc).unwrap_or_default(),
            self.coverage.last_ns.map(utc).unwrap_or_default(),
        ];
        for l in &self.lines {
            let top: Vec<String> = l.top_models.iter().map(|(m, c)| format!("{m}={}", usd(*c))).collect();
            let fields = [
                utc(self.period.from_ns),
                utc(self.period.to_ns),
                self.group_by.name().to_string(),
                l.label().to_string(),
                l.name.clone(),
                hours(l.held_ns),
                hours(l.used_ns),
                l.efficiency_pct().map(|e| format!("{e:.2}")).unwrap_or_default(),
                usd(l.used),
                usd(l.idle),
                usd(l.total()),
                kwh(l.energy_mj),
                top.join(";"),
                hours(l.charged_ns),
            ];
            let row: Vec<String> = fields.iter().chain(&coverage).map(|f| csv_field(f)).collect();
            out.push_str(&row.join(","));
            out.push_str("\r\n");
        }
        out
    }

    /// The report as `GET /api/v1/chargeback?format=json` answers it.
    pub fn body(&self) -> ChargebackBody {
        let lines = self
            .lines
            .iter()
            .map(|l| LineBody {
                line: l.label(),
                group: l.name.clone(),
                gpu_hours_charged: l.charged_ns as f64 / 3.6e12,
                gpu_hours_held: l.held_ns as f64 / 3.6e12,
                gpu_hours_used: l.used_ns as f64 / 3.6e12,
                efficiency_pct: l.efficiency_pct(),
                used_usd: usd(l.used),
                idle_usd: usd(l.idle),
                total_usd: usd(l.total()),
                total_micros: l.total(),
                energy_kwh: l.energy_mj as f64 / 3.6e9,
                top_models: l
                    .top_models
                    .iter()
                    .map(|(m, c)| TopModel { model: m.clone(), total_usd: usd(*c) })
                    .collect(),
            })
            .collect();
        let t = self.totals();
        ChargebackBody {
            period: self.period.label.clone(),
            closed_at: self.closed_at_ns.map(utc),
            from: utc(self.period.from_ns),
            to: utc(self.period.to_ns),
            group_by: self.group_by.name(),
            policy: self.policy.name(),
            lines,
            total_usd: usd(self.lines.iter().map(Line::total).sum()),
            fleet_usd: usd(self.fleet),
            totals: TotalsBody {
                used_usd: usd(t.used),
                idle_usd: usd(t.idle),
                idle_uncharged_usd: usd(t.idle_uncharged),
                unattributed_usd: usd(t.unattributed),
                unallocated_usd: usd(t.unallocated),
                fleet_usd: usd(self.fleet),
            },
            gpu_hours: GpuHours {
                observed: self.observed_ns as f64 / 3.6e12,
                charged: self.lines.iter().map(|l| l.charged_ns).sum::<u128>() as f64 / 3.6e12,
                uncharged: self.uncharged_ns as f64 / 3.6e12,
            },
            unpriced_gpu_hours: self.unpriced_ns as f64 / 3.6e12,
            coverage: self.coverage.body(),
            warning: self.coverage.warning(&self.period),
        }
    }
}

/// `GET /api/v1/chargeback?format=json` (docs/chargeback.md).
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ChargebackBody {
    /// `2026-11`, `2026-W48`, or `<from>/<to>`.
    pub period: String,
    /// When the period was closed (its report no longer changes), or null.
    pub closed_at: Option<String>,
    pub from: String,
    pub to: String,
    pub group_by: &'static str,
    pub policy: &'static str,
    /// Group lines by descending total, then `unattributed` (owner groupings), `unallocated`, `idle` and
    /// `correction` lines.
    pub lines: Vec<LineBody>,
    /// The sum of the lines: the fleet's cost.
    pub total_usd: String,
    pub fleet_usd: String,
    pub totals: TotalsBody,
    pub gpu_hours: GpuHours,
    /// Observed GPU time without a price.
    pub unpriced_gpu_hours: f64,
    pub coverage: crate::CoverageBody,
    /// Set when the ledger holds no data for part or all of the period (also the `Warning` header).
    pub warning: Option<String>,
}

/// A line of the chargeback.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct LineBody {
    /// `group`, `unattributed`, `unallocated`, `idle` or `correction`.
    pub line: &'static str,
    pub group: String,
    /// Its share of each GPU's observed time, split as its dollars are: the lines add up to
    /// `gpu_hours.charged`.
    pub gpu_hours_charged: f64,
    /// Time its workloads held GPUs, a shared GPU counted for each holder.
    pub gpu_hours_held: f64,
    pub gpu_hours_used: f64,
    /// Used over held; null when it held nothing.
    pub efficiency_pct: Option<f64>,
    pub used_usd: String,
    pub idle_usd: String,
    pub total_usd: String,
    pub total_micros: u128,
    pub energy_kwh: f64,
    pub top_models: Vec<TopModel>,
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct TopModel {
    pub model: String,
    pub total_usd: String,
}

/// The money by kind (docs/chargeback.md, "Four kinds of money").
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct TotalsBody {
    pub used_usd: String,
    /// Held but unused GPU time's cost, whoever carries it.
    pub idle_usd: String,
    /// The `idle` line: the part of `idle_usd` no holder pays.
    pub idle_uncharged_usd: String,
    /// Workloads no owner rule names a payer for, under any grouping.
    pub unattributed_usd: String,
    pub unallocated_usd: String,
    pub fleet_usd: String,
}

/// `observed` (every GPU's observed time) = `charged` (the lines' sum) + `uncharged` (time that cost
/// nothing: no price, or a price of $0).
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct GpuHours {
    pub observed: f64,
    pub charged: f64,
    pub uncharged: f64,
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

    const H: u128 = 3_600_000_000_000;

    fn row(group: &[&str], used: u128, idle: u128, held_h: u128) -> CostRow {
        CostRow {
            group: group.iter().map(|s| s.to_string()).collect(),
            used,
            idle,
            held_ns: held_h * H,
            used_ns: held_h * H / 2,
            energy_mj: 3_600_000_000,
            co2e_mg: None,
        }
    }

    fn report(rows: Vec<CostRow>, idle: u128, unallocated: u128) -> CostReport {
        let fleet = rows.iter().map(|r| r.used + r.idle).sum::<u128>() + idle + unallocated;
        CostReport { rows, idle: Some(idle), unallocated: Some(unallocated), unpriced_ns: 0, fleet }
    }

    fn holder(team: &str, model: &str, cost: u128, held_h: u128, used_h: u128) -> AllocatedCharge {
        AllocatedCharge {
            workload: format!("pod:prod/ml/{team}-{model}/main"),
            kind: "kubernetes_pod".into(),
            namespace: "ml".into(),
            pod: format!("{team}-{model}"),
            owner: if team == UNATTRIBUTED { UNATTRIBUTED.into() } else { format!("group:default/{team}") },
            team: team.into(),
            department: String::new(),
            model: model.into(),
            model_version: String::new(),
            cost,
            held_ns: held_h * H,
            used_ns: used_h * H,
        }
    }

    /// A GPU-day observed for `observed_h` hours, held for `held_h`, costing `cost`.
    fn origin(cost: u128, observed_h: u128, held_h: u128, allocations: Vec<AllocatedCharge>) -> OriginCharge {
        OriginCharge {
            start_ns: 0,
            end_ns: DAY_NS,
            cluster: "prod".into(),
            node: "n1".into(),
            instance_type: "g5.xlarge".into(),
            capacity_type: "on_demand".into(),
            region: "us-east-1".into(),
            zone: "us-east-1a".into(),
            gpu_uuid: "GPU-1".into(),
            gpu_model: "NVIDIA A10G".into(),
            mig_profile: None,
            cost,
            observed_ns: observed_h * H,
            held_ns: held_h * H,
            used_ns: 0,
            energy_mj: 0,
            allocations,
        }
    }

    fn coverage(p: &Period) -> Coverage {
        Coverage::of(p, &[p.from_ns], 3_600_000_000_000)
    }

    fn make(
        group_by: GroupBy,
        policy: Policy,
        r: &CostReport,
        by_model: &[CostRow],
        origins: &[OriginCharge],
    ) -> Chargeback {
        let p = Period::parse("2026-11").unwrap();
        let id = |v: &str| Some(v.to_string());
        let read = Readings { by_group: r, by_model, origins, coverage: coverage(&p) };
        assemble(p, group_by, policy, read, &id)
    }

    #[test]
    fn a_report_by_group_and_model_sums_to_the_report_by_group() {
        let mut a = row(&["nlp", "m1"], 10, 2, 1);
        a.co2e_mg = Some(5);
        let rows = vec![a, row(&["nlp", ""], 3, 1, 2), row(&["vision", "m2"], 7, 0, 4)];
        let by = by_leading(&CostReport { rows, idle: Some(9), unallocated: Some(4), unpriced_ns: 6, fleet: 36 }, 1);
        assert_eq!(by.rows.len(), 2);
        let nlp = &by.rows[0];
        assert_eq!((nlp.group[0].as_str(), nlp.used, nlp.idle, nlp.co2e_mg), ("nlp", 13, 3, Some(5)));
        assert_eq!((by.rows[1].group[0].as_str(), by.rows[1].used, by.rows[1].co2e_mg), ("vision", 7, None));
        assert_eq!((by.idle, by.unallocated, by.unpriced_ns, by.fleet), (Some(9), Some(4), 6, 36));
    }

    #[test]
    fn unattributed_unallocated_and_idle_are_lines_of_their_own_that_add_up_to_the_fleet() {
        let r = report(
            vec![row(&["vision"], 300, 100, 2), row(&["nlp"], 500, 0, 1), row(&[UNATTRIBUTED], 70, 30, 1)],
            40,
            60,
        );
        let by_model = [row(&["vision", "resnet"], 100, 0, 1), row(&["vision", "vit"], 200, 0, 1)];
        let c = make(GroupBy::Team, Policy::Utilization, &r, &by_model, &[]);
        let names: Vec<(&str, &str)> = c.lines.iter().map(|l| (l.label(), l.name.as_str())).collect();
        assert_eq!(
            names,
            [
                ("group", "nlp"),
                ("group", "vision"),
                ("unattributed", "unattributed"),
                ("unallocated", "unallocated"),
                ("idle", "idle")
            ]
        );
        assert_eq!(c.lines.iter().map(Line::total).sum::<u128>(), c.fleet);
        assert_eq!(c.lines[2].total(), 100, "workloads no rule names a payer for, alone");
        assert_eq!((c.lines[3].total(), c.lines[3].idle), (60, 0), "GPUs nobody held: neither used nor idle");
        assert_eq!(c.lines[4].total(), 40);
        assert_eq!(c.lines[1].top_models, vec![("vit".to_string(), 200), ("resnet".to_string(), 100)]);
        assert_eq!(c.lines[1].efficiency_pct(), Some(50.0));
        let t = c.totals();
        assert_eq!((t.used, t.idle, t.idle_uncharged, t.unallocated), (870, 170, 40, 60));
    }

    #[test]
    fn workloads_without_a_value_are_a_named_group_and_never_unallocated_or_empty() {
        let r = report(vec![row(&["resnet"], 300, 0, 1), row(&[""], 500, 0, 1), row(&[UNATTRIBUTED], 7, 0, 1)], 0, 9);
        let c = make(GroupBy::Model, Policy::Hybrid, &r, &[], &[]);
        let names: Vec<&str> = c.lines.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            names,
            ["(no model)", "resnet", "unattributed", "unallocated", "idle"],
            "a model named unattributed is a model"
        );
        assert!(c.lines.iter().all(|l| l.kind != LineKind::Unattributed));
    }

    #[test]
    fn cost_centres_merge_teams_and_teams_without_one_are_named_so() {
        let r = report(
            vec![
                row(&["vision"], 300, 0, 1),
                row(&["nlp"], 500, 0, 1),
                row(&["speech"], 7, 0, 1),
                row(&[UNATTRIBUTED], 5, 0, 1),
            ],
            0,
            2,
        );
        let cc = |team: &str| match team {
            "vision" | "nlp" => Some("CC-1100".to_string()),
            _ => None,
        };
        let p = Period::parse("2026-11").unwrap();
        let read = Readings { by_group: &r, by_model: &[], origins: &[], coverage: coverage(&p) };
        let c = assemble(p, GroupBy::CostCenter, Policy::Hybrid, read, &cc);
        let lines: Vec<(&str, u128)> = c.lines.iter().map(|l| (l.name.as_str(), l.total())).collect();
        assert_eq!(
            lines,
            [("CC-1100", 800), ("(no cost centre)", 7), ("unattributed", 5), ("unallocated", 2), ("idle", 0)]
        );
        assert_eq!(c.lines.iter().map(Line::total).sum::<u128>(), c.fleet);
    }

    #[test]
    fn the_lines_hours_split_each_gpus_time_like_its_dollars_and_add_up_to_the_time_observed() {
        // A GPU held 18 of 24 hours by vision (cost 300) and an unattributed workload (cost 100), shared;
        // a second GPU nobody held; a third with no price.
        let origins = [
            origin(500, 24, 18, vec![holder("vision", "vit", 300, 18, 9), holder(UNATTRIBUTED, "", 100, 18, 3)]),
            origin(240, 24, 0, vec![]),
            origin(0, 5, 5, vec![holder("nlp", "", 0, 5, 5)]),
        ];
        let r = report(vec![row(&["vision"], 200, 100, 18), row(&[UNATTRIBUTED], 60, 40, 18)], 0, 340);
        let c = make(GroupBy::Team, Policy::Hybrid, &r, &[], &origins);
        let hours: Vec<(&str, u128)> = c.lines.iter().map(|l| (l.name.as_str(), l.charged_ns / H)).collect();
        assert_eq!(hours, [("vision", 13), ("unattributed", 4), ("unallocated", 30), ("idle", 0)]);
        let charged: u128 = c.lines.iter().map(|l| l.charged_ns).sum();
        assert_eq!(charged + c.uncharged_ns, c.observed_ns);
        assert_eq!((c.observed_ns / H, c.uncharged_ns / H, c.unattributed), (53, 5, 100));
        assert_eq!(c.lines.iter().map(|l| l.held_ns).sum::<u128>() / H, 36, "held hours count a shared GPU per holder");

        // Under utilization the holders' hours are their used time; the unused rest is the idle line's.
        let c = make(GroupBy::Model, Policy::Utilization, &r, &[], &origins);
        let hours: BTreeMap<&str, u128> =
            c.lines.iter().filter(|l| l.charged_ns > 0).map(|l| (l.name.as_str(), l.charged_ns / H)).collect();
        assert_eq!(hours, BTreeMap::from([("(no model)", 3), ("vit", 9), ("unallocated", 30), ("idle", 6)]));
        assert_eq!(c.lines.iter().map(|l| l.charged_ns).sum::<u128>() + c.uncharged_ns, c.observed_ns);
    }

    #[test]
    fn csv_has_one_row_per_line_with_the_coverage_and_quotes_what_needs_it() {
        let r = report(vec![row(&["a,b"], 1_500_000, 0, 1)], 0, 0);
        let c = make(GroupBy::Team, Policy::Hybrid, &r, &[], &[]);
        let csv = c.to_csv();
        let rows = csv_rows(&csv);
        assert_eq!(rows.len(), 5, "header, the group, unattributed, unallocated, idle");
        assert_eq!(rows[0].len(), rows[1].len());
        assert_eq!(
            csv.split("\r\n").nth(1).unwrap(),
            "2026-11-01T00:00:00Z,2026-12-01T00:00:00Z,team,group,\"a,b\",1.0000,0.5000,50.00,1.500000,0.000000,1.500000,1.0000,,0.0000,0.14,2026-11-01T00:00:00Z,2026-11-01T01:00:00Z"
        );
        assert!(GroupBy::parse("cost-centre").is_ok());
        assert!(GroupBy::parse("pod").unwrap_err().contains("expected one of team, department"));
    }
}
