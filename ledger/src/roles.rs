//! The ledger's interface, one trait per role; [`Ledger`] is all of them. An engine implements each role; a
//! caller names the roles it uses (`use gpucost_ledger::prelude::*` brings them all into scope).

use gpucost_rules::book::Subjects;
use gpucost_rules::owner::Ownership;
use gpucost_rules::reconcile::NodeCheck;
use gpucost_types::batch::Identity;
use gpucost_types::dimension::Dimension;
use gpucost_types::period::Period;
use gpucost_types::policy::Policy;
use gpucost_types::stage::Attributed;

use crate::bill::BillStore;
use crate::budgets::BudgetStore;
use crate::error::LedgerError;
use crate::evidence::EvidenceStore;
use crate::history::{ClosedPeriod, PriceOf, ReattributeReport, RepriceOptions, RepriceReport};
use crate::query::{CostQuery, CostReport, NodePrice, OriginCharge, UsageQuery, UsageReport};
use crate::recorded::{Conflict, Recorded};
use crate::rows::Rows;
use crate::store::{HistoryPoint, HistorySubject};

/// Storing GPU time: batches in, raw rows pruned, daily rollups built. `record` is called from one writer at a time.
pub trait Recording: Send + Sync {
    /// Stores `batches` in one transaction. Each batch is stored whole, recognised as a duplicate, or
    /// rejected with none of its rows kept; the outer error means nothing at all was stored.
    fn record(&self, batches: &[Attributed], now_ns: u64) -> Result<Vec<Result<Recorded, LedgerError>>, LedgerError>;
    /// Deletes raw per-interval rows that ended before `before_ns`; returns how many.
    fn prune_raw(&self, before_ns: u64) -> Result<u64, LedgerError>;
    /// Builds the daily rollups of up to `max_days` days that have ended by `now_ns` and are not built yet, each
    /// holding the writer while it is summed; how many. Reports over whole days read them.
    fn build_daily_rollups(&self, _now_ns: u64, _max_days: usize) -> Result<usize, LedgerError> {
        Ok(0)
    }
}

/// Reading GPU time and cost back, as stored: what reports, the API and the checks read.
pub trait Reading: Send + Sync {
    fn usage(&self, query: &UsageQuery) -> Result<UsageReport, LedgerError>;
    /// Every GPU UUID two clusters reported over the same time, oldest first.
    fn conflicts(&self) -> Result<Vec<Conflict>, LedgerError>;
    /// Costs from the live rollups.
    fn costs(&self, query: &CostQuery) -> Result<CostReport, LedgerError> {
        self.costs_of(&Rows::Live, query)
    }
    /// Costs from the given rollup rows (live, booked by a closed period, or late and not yet booked).
    fn costs_of(&self, rows: &Rows, query: &CostQuery) -> Result<CostReport, LedgerError>;
    /// Per GPU and charge period of `period_ns` (aligned to the epoch, within [from_ns, to_ns)), what the
    /// GPU cost and each holder's part under `policy`, from the live rollups. Ordered by period, cluster,
    /// node, GPU.
    fn allocations(
        &self,
        from_ns: u64,
        to_ns: u64,
        period_ns: u64,
        policy: Policy,
    ) -> Result<Vec<OriginCharge>, LedgerError> {
        self.allocations_of(&Rows::Live, from_ns, to_ns, period_ns, policy)
    }
    fn allocations_of(
        &self,
        rows: &Rows,
        from_ns: u64,
        to_ns: u64,
        period_ns: u64,
        policy: Policy,
    ) -> Result<Vec<OriginCharge>, LedgerError>;
    /// The latest price of every node.
    fn prices(&self) -> Result<Vec<NodePrice>, LedgerError>;
    /// Per node with GPU time in [from_ns, to_ns) (narrowed by GPU-level `filters`), its fleet line against
    /// its physical GPUs' observed time × its price history (`cost::reconcile`).
    fn price_check(
        &self,
        from_ns: u64,
        to_ns: u64,
        filters: &[(Dimension, String)],
    ) -> Result<Vec<NodeCheck>, LedgerError>;
    /// The instance types, regions, GPU models and node labels of the ledger's nodes: what a prices file's
    /// entries can match beyond the catalogue.
    fn price_subjects(&self) -> Result<Subjects, LedgerError>;
    /// The start of every bucket in [from_ns, to_ns) in which `rows` hold observed GPU time, in order:
    /// when any agent reported (a report's coverage, `report::Coverage`).
    fn data_buckets(&self, rows: &Rows, from_ns: u64, to_ns: u64) -> Result<Vec<u64>, LedgerError>;
    /// The rollup bucket length.
    fn bucket_ns(&self) -> u64;
    /// One GPU's, node's or workload's history: a point per bucket in [from_ns, to_ns) with its GPU time (a
    /// workload's per bucket and GPU it held), its rollup's GPU time, energy and cost, and within the raw
    /// retention the mean and maximum utilisation, memory and power of its raw intervals (past it, the mean
    /// utilisation and power from the rollup, the rest unknown). See `store/series.rs`.
    fn history(&self, subject: &HistorySubject, from_ns: u64, to_ns: u64) -> Result<Vec<HistoryPoint>, LedgerError>;
}

/// Changing stored history on purpose, each change checked and recorded: closing a month, re-attributing owners,
/// re-pricing buckets.
pub trait History: Send + Sync {
    /// Closes a month that has ended: freezes its rows, and books the late rows of months closed before it
    /// as its corrections. Refused when it is still running or already closed.
    fn close_period(&self, period: &Period, now_ns: u64) -> Result<ClosedPeriod, LedgerError>;
    fn closed_periods(&self) -> Result<Vec<ClosedPeriod>, LedgerError>;
    /// Re-resolves the owner of every workload active in [from_ns, to_ns) with `resolve` (the current
    /// catalog and rules), from `from_ns` to `to_ns`; the owners before and after the window stay.
    fn reattribute(
        &self,
        from_ns: u64,
        to_ns: u64,
        resolve: &dyn Fn(&Identity) -> Ownership,
        dry_run: bool,
    ) -> Result<ReattributeReport, LedgerError>;
    /// Re-prices the buckets in [from_ns, to_ns) with the price `price_of` gives each node (its GPU model
    /// and physical GPUs) at each bucket's start: each physical GPU its price × its observed time, divided
    /// with its MIG slices (`cost::reprice`), and among holders in each split's proportions; the node's price
    /// history becomes those prices; records what changed. Every node in the window is then checked against
    /// its price history (`cost::reconcile`). Refused, nothing written, when a node does not reconcile, or
    /// when priced GPU time would become unpriced or $0 without `allow_unpriced`. With `dry_run` nothing is
    /// written and the report says what would be refused.
    fn reprice(
        &self,
        from_ns: u64,
        to_ns: u64,
        price_of: &PriceOf,
        options: RepriceOptions,
    ) -> Result<RepriceReport, LedgerError>;
}

/// What collectors sharing one database agree on: who runs a cluster-wide job, the catalog they share, whether
/// the storage answers.
pub trait Coordination: Send + Sync {
    /// Whether this collector runs the cluster-wide job `job` (budget evaluation and alerts, MLflow
    /// write-back, pruning) now: always on an embedded ledger; on a shared database, for one collector at a
    /// time, moving to another when it dies.
    fn lead(&self, _job: &str) -> bool {
        true
    }
    /// Keeps the catalog `source` (`backstage`) as fetched at `synced_at_ns`, for the collectors sharing the
    /// ledger.
    fn put_shared_catalog(&self, source: &str, catalog_json: &str, synced_at_ns: u64) -> Result<(), LedgerError>;
    /// The catalog `source` as last kept, and when it was fetched.
    fn shared_catalog(&self, source: &str) -> Result<Option<(String, u64)>, LedgerError>;
    /// Whether the storage answers.
    fn ping(&self) -> Result<(), LedgerError>;
}

/// The whole ledger: every role. Implementations are safe to share between threads.
pub trait Ledger: Recording + Reading + History + Coordination + BudgetStore + BillStore + EvidenceStore {}

impl<T: Recording + Reading + History + Coordination + BudgetStore + BillStore + EvidenceStore> Ledger for T {}
