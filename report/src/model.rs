//! A model's costs: its versions, the MLflow runs that trained it and what serving it cost, from the ledger's
//! rows for one model grouped by version, run, experiment and day.
//!
//! What is training and what is serving is read from the workloads themselves: GPU time of a workload that
//! carries an MLflow run id (`mlflow.org/run-id`, else the process's `MLFLOW_RUN_ID`) is that run's, which is
//! training (or evaluation) work; GPU time of a workload labelled with the model but with no run is serving.

use std::collections::{BTreeMap, BTreeSet};

use gpucost_ledger::{CostQuery, CostRow, Dimension, LedgerError, prelude::*};
use gpucost_types::policy::Policy;

/// GPU time and its money.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Spend {
    pub held_ns: u128,
    pub used_ns: u128,
    /// Micro-dollars of used GPU time.
    pub used: u128,
    /// Micro-dollars of held but unused GPU time charged to the holder (as the policy splits it).
    pub idle: u128,
}

impl Spend {
    fn add(&mut self, row: &CostRow) {
        self.held_ns += row.held_ns;
        self.used_ns += row.used_ns;
        self.used += row.used;
        self.idle += row.idle;
    }

    fn merge(&mut self, other: &Spend) {
        self.held_ns += other.held_ns;
        self.used_ns += other.used_ns;
        self.used += other.used;
        self.idle += other.idle;
    }

    /// Used plus idle, micro-dollars.
    pub fn total(&self) -> u128 {
        self.used + self.idle
    }

    /// The idle share of the total, in parts per million (`None` when nothing was spent).
    pub fn idle_ppm(&self) -> Option<u128> {
        (self.total() > 0).then(|| self.idle * 1_000_000 / self.total())
    }
}

/// Days seen (`YYYY-MM-DD`, UTC), first and last.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Seen {
    pub first_day: String,
    pub last_day: String,
}

impl Seen {
    fn day(&mut self, day: &str) {
        if self.first_day.is_empty() || day < self.first_day.as_str() {
            self.first_day = day.to_string();
        }
        if day > self.last_day.as_str() {
            self.last_day = day.to_string();
        }
    }
}

/// One version of the model: serving it, and the runs that carried it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VersionCosts {
    /// The `mlflow.org/model-version` label; empty for workloads that named the model but no version.
    pub version: String,
    pub serving: Spend,
    pub training: Spend,
    /// Runs whose workloads were labelled with this version.
    pub runs: BTreeSet<String>,
    pub seen: Seen,
}

/// One MLflow run of the model.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunCosts {
    pub run: String,
    /// The workloads' `MLFLOW_EXPERIMENT_ID` (empty when they gave none).
    pub experiment: String,
    /// The model versions its workloads were labelled with.
    pub versions: BTreeSet<String>,
    pub spend: Spend,
    pub seen: Seen,
}

/// A model's costs over a window.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ModelCosts {
    pub serving: Spend,
    pub training: Spend,
    /// Newest version first (numeric versions by number, others after them by name).
    pub versions: Vec<VersionCosts>,
    /// Most expensive first.
    pub runs: Vec<RunCosts>,
}

/// The grouping [`ModelCosts::from_rows`] reads.
pub const GROUPING: [Dimension; 4] = [Dimension::ModelVersion, Dimension::Run, Dimension::Experiment, Dimension::Day];

impl ModelCosts {
    /// From the ledger's cost rows for one model grouped by [`GROUPING`].
    pub fn from_rows(rows: &[CostRow]) -> Self {
        let mut versions: BTreeMap<String, VersionCosts> = BTreeMap::new();
        let mut runs: BTreeMap<String, RunCosts> = BTreeMap::new();
        let mut out = ModelCosts::default();
        for row in rows {
            let [version, run, experiment, day] = [0, 1, 2, 3].map(|i| row.group.get(i).map_or("", String::as_str));
            // the ledger keys a day by its number since 1970; shown (and compared) as YYYY-MM-DD
            let day = Dimension::Day.display(day);
            let day = day.as_str();
            let v = versions
                .entry(version.to_string())
                .or_insert_with(|| VersionCosts { version: version.to_string(), ..Default::default() });
            v.seen.day(day);
            if run.is_empty() {
                v.serving.add(row);
                out.serving.add(row);
                continue;
            }
            v.training.add(row);
            v.runs.insert(run.to_string());
            out.training.add(row);
            let r =
                runs.entry(run.to_string()).or_insert_with(|| RunCosts { run: run.to_string(), ..Default::default() });
            if r.experiment.is_empty() {
                r.experiment = experiment.to_string();
            }
            r.versions.insert(version.to_string());
            r.spend.add(row);
            r.seen.day(day);
        }
        out.versions = versions.into_values().collect();
        out.versions.sort_by(|a, b| version_order(&b.version).cmp(&version_order(&a.version)));
        out.runs = runs.into_values().collect();
        out.runs.sort_by(|a, b| b.spend.total().cmp(&a.spend.total()).then_with(|| a.run.cmp(&b.run)));
        out
    }

    /// Serving and training together.
    pub fn total(&self) -> Spend {
        let mut t = self.serving;
        t.merge(&self.training);
        t
    }
}

/// Sorts numeric versions by number above the others (by name), the unversioned lowest.
fn version_order(v: &str) -> (u8, u64, &str) {
    match v.parse::<u64>() {
        Ok(n) => (2, n, v),
        Err(_) if v.is_empty() => (0, 0, v),
        Err(_) => (1, 0, v),
    }
}

/// The ledger's rows for `model` over the window, filtered by `cluster` when given, as `policy` splits idle.
pub fn model_costs(
    ledger: &dyn Ledger,
    model: &str,
    window: (u64, u64),
    cluster: Option<&str>,
    policy: Policy,
) -> Result<ModelCosts, LedgerError> {
    let mut filters = vec![(Dimension::Model, model.to_string())];
    if let Some(c) = cluster {
        filters.push((Dimension::Cluster, c.to_string()));
    }
    let q = CostQuery { from_ns: window.0, to_ns: window.1, group_by: GROUPING.to_vec(), filters, policy };
    Ok(ModelCosts::from_rows(&ledger.costs(&q)?.rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(version: &str, run: &str, exp: &str, day: &str, used: u128, idle: u128, held_s: u128) -> CostRow {
        CostRow {
            group: vec![version.into(), run.into(), exp.into(), day.into()],
            used,
            idle,
            held_ns: held_s * 1_000_000_000,
            used_ns: held_s * 500_000_000,
            energy_mj: 0,
            co2e_mg: None,
        }
    }

    #[test]
    fn runs_are_training_and_the_rest_is_serving_per_version() {
        let rows = vec![
            row("3", "", "", "2026-11-02", 10_000_000, 2_000_000, 3600),
            row("3", "", "", "2026-11-04", 5_000_000, 0, 1800),
            row("3", "run-a", "7", "2026-11-01", 40_000_000, 1_000_000, 7200),
            row("10", "", "", "2026-11-05", 1_000_000, 1_000_000, 600),
            row("10", "run-b", "7", "2026-11-03", 60_000_000, 0, 9000),
            row("10", "run-b", "7", "2026-11-04", 20_000_000, 0, 3000),
            row("", "", "", "20397", 3_000_000, 0, 60),
        ];
        let m = ModelCosts::from_rows(&rows);
        assert_eq!(m.serving.total(), 22_000_000);
        assert_eq!(m.training.total(), 121_000_000);
        assert_eq!(m.total().total(), 143_000_000);
        assert_eq!(m.total().held_ns, (3600 + 1800 + 7200 + 600 + 9000 + 3000 + 60) * 1_000_000_000);
        // numeric versions newest first, as numbers (10 above 3), the unversioned last
        let versions: Vec<&str> = m.versions.iter().map(|v| v.version.as_str()).collect();
        assert_eq!(versions, ["10", "3", ""]);
        // a day as the ledger keys it (days since 1970) is shown as a date
        assert_eq!(m.versions[2].seen.first_day, "2025-11-05");
        let v3 = &m.versions[1];
        assert_eq!((v3.serving.used, v3.serving.idle), (15_000_000, 2_000_000));
        assert_eq!(v3.training.total(), 41_000_000);
        assert_eq!(v3.runs.iter().collect::<Vec<_>>(), ["run-a"]);
        assert_eq!((v3.seen.first_day.as_str(), v3.seen.last_day.as_str()), ("2026-11-01", "2026-11-04"));
        // runs, most expensive first, with their experiment, versions and days
        assert_eq!(m.runs.len(), 2);
        assert_eq!(m.runs[0].run, "run-b");
        assert_eq!(m.runs[0].spend.total(), 80_000_000);
        assert_eq!(m.runs[0].experiment, "7");
        assert_eq!(m.runs[0].versions.iter().collect::<Vec<_>>(), ["10"]);
        assert_eq!((m.runs[0].seen.first_day.as_str(), m.runs[0].seen.last_day.as_str()), ("2026-11-03", "2026-11-04"));
        assert_eq!(m.runs[1].spend.total(), 41_000_000);
    }

    #[test]
    fn the_idle_share_is_exact_and_absent_without_spend() {
        let s = Spend { held_ns: 1, used_ns: 0, used: 3_000_000, idle: 1_000_000 };
        assert_eq!(s.idle_ppm(), Some(250_000));
        assert_eq!(Spend::default().idle_ppm(), None);
        assert_eq!(ModelCosts::from_rows(&[]), ModelCosts::default());
    }
}
