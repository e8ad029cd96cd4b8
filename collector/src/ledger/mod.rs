//! The ledger: where validated batches become stored GPU time.
//!
//! One narrow interface (`Ledger`) with portable SQL behind it: SQLite is the embedded default; a
//! PostgreSQL backend can implement the same trait so that several collectors share one database.
//! Storage grows with GPUs × workloads × time buckets, not with samples: each interval is rolled up into
//! fixed buckets (`rollup`), and the raw per-interval rows are kept only for a retention period.
//! See `docs/ledger.md` for the schema and why.

#[cfg(feature = "postgres")]
pub mod copy;
pub mod rollup;
pub mod rows;
pub mod sql;
pub mod sqlite;
pub mod writer;

use serde::Serialize;

use crate::model::Batch;

/// What became of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Stored now.
    Stored,
    /// Stored now, while another cluster holds GPU time on one of its GPU UUIDs over the same time. Each cluster
    /// keeps its own (GPUs are per cluster), so neither moves or erases the other's; the pairs are kept for an
    /// operator ([`Ledger::conflicts`]).
    Contested(Vec<Conflict>),
    /// Stored before (same agent, boot and sequence numbers): acknowledged, not counted again.
    Duplicate,
}

/// The same GPU UUID reported by two clusters over the same time: `cluster`'s batches found `other_cluster`'s
/// GPU time there (over [start_ns, end_ns), the span of those batches' intervals).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub gpu_uuid: String,
    pub cluster: String,
    pub other_cluster: String,
    pub start_ns: u64,
    pub end_ns: u64,
    /// How many of `cluster`'s batches overlapped `other_cluster`'s time.
    pub batches: u64,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The batch claims GPU time the ledger already holds: storing it would bill a GPU-second twice.
    #[error(
        "batch {batch}: GPU {gpu} already has usage recorded over [{covered_from_ns}, {covered_until_ns}) ns, which this interval [{start_ns}, {end_ns}) overlaps; an interval is billed once (is another agent reporting this GPU, or did an agent restart and resend old intervals under a new boot id?)"
    )]
    Overlap { batch: String, gpu: String, start_ns: u64, end_ns: u64, covered_from_ns: u64, covered_until_ns: u64 },
    /// A batch standing for several (merged by its agent) of which some, not all, were stored before.
    #[error(
        "batch {batch}: it merges sequence numbers from {first_seq}, and {stored_from}..={stored_to} of this boot were stored before; storing it would bill those twice"
    )]
    SeqOverlap { batch: String, first_seq: u64, stored_from: u64, stored_to: u64 },
    #[error(
        "the ledger was created with {stored} buckets; it cannot be opened with {configured} (use the ledger's bucket size, or a new database)"
    )]
    BucketMismatch { stored: String, configured: String },
    #[error("ledger storage failed: {0}")]
    Storage(#[from] rusqlite::Error),
    #[error("ledger storage failed: {0}")]
    Db(#[from] sql::DbError),
    #[error("ledger storage failed: {0}")]
    Io(String),
    /// A request the ledger's state does not allow (closing a running month, changing a closed one).
    #[error("{0}")]
    Refused(String),
}

impl LedgerError {
    /// Whether the batch itself is at fault (rather than the storage).
    pub fn is_batch_fault(&self) -> bool {
        matches!(self, Self::Overlap { .. } | Self::SeqOverlap { .. })
    }
}

/// Most dimensions that read labels (`label:<key>`, model, model_version, run, experiment) one query may group or
/// filter by: each is a join, and SQLite joins at most 64 tables.
pub const MAX_LABEL_DIMENSIONS: usize = 16;
/// Most filter terms one query may have.
pub const MAX_FILTER_TERMS: usize = 32;

/// What usage can be grouped by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dimension {
    Cluster,
    Node,
    Gpu,
    Workload,
    /// The kind of workload: kubernetes_pod, ecs_task, slurm_job, …
    Kind,
    Namespace,
    Pod,
    /// `<kind>/<name>` of the pod's owning controller (a Deployment, Job, StatefulSet, …).
    Controller,
    Container,
    EcsTask,
    SlurmJob,
    User,
    /// The owner in force when the GPU time was used (`group:default/vision`, `user:default/alice`), and its
    /// team, department, component and system; `unattributed` in each when no owner rule named one.
    Owner,
    Team,
    Department,
    Component,
    System,
    /// The MLflow model and version (pod labels/annotations `mlflow.org/model-name`, `…/model-version`), run
    /// (`mlflow.org/run-id`, else the process's `MLFLOW_RUN_ID`) and experiment (`MLFLOW_EXPERIMENT_ID`).
    Model,
    ModelVersion,
    Run,
    Experiment,
    /// The UTC day (`YYYY-MM-DD`), for daily series.
    Day,
    /// The value of one allow-listed pod label or annotation (`label:<key>`).
    Label(String),
}

impl Dimension {
    /// Every dimension but `label:<key>`.
    pub const FIXED: [Dimension; 22] = [
        Dimension::Cluster,
        Dimension::Node,
        Dimension::Gpu,
        Dimension::Workload,
        Dimension::Kind,
        Dimension::Namespace,
        Dimension::Pod,
        Dimension::Controller,
        Dimension::Container,
        Dimension::EcsTask,
        Dimension::SlurmJob,
        Dimension::User,
        Dimension::Owner,
        Dimension::Team,
        Dimension::Department,
        Dimension::Component,
        Dimension::System,
        Dimension::Model,
        Dimension::ModelVersion,
        Dimension::Run,
        Dimension::Experiment,
        Dimension::Day,
    ];

    pub fn name(&self) -> String {
        match self {
            Self::Cluster => "cluster".into(),
            Self::Node => "node".into(),
            Self::Gpu => "gpu".into(),
            Self::Workload => "workload".into(),
            Self::Kind => "kind".into(),
            Self::Namespace => "namespace".into(),
            Self::Pod => "pod".into(),
            Self::Controller => "controller".into(),
            Self::Container => "container".into(),
            Self::EcsTask => "ecs_task".into(),
            Self::SlurmJob => "slurm_job".into(),
            Self::User => "user".into(),
            Self::Owner => "owner".into(),
            Self::Team => "team".into(),
            Self::Department => "department".into(),
            Self::Component => "component".into(),
            Self::System => "system".into(),
            Self::Model => "model".into(),
            Self::ModelVersion => "model_version".into(),
            Self::Run => "run".into(),
            Self::Experiment => "experiment".into(),
            Self::Day => "day".into(),
            Self::Label(key) => format!("label:{key}"),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        if let Some(key) = s.strip_prefix("label:") {
            return (!key.is_empty()).then(|| Self::Label(key.to_string()));
        }
        Self::FIXED.into_iter().find(|d| d.name() == s)
    }

    /// Whether this reads a workload's labels (a join per label in a query).
    pub fn reads_labels(&self) -> bool {
        matches!(self, Self::Label(_) | Self::Model | Self::ModelVersion | Self::Run | Self::Experiment)
    }

    /// Whether this says who pays (owner, team, department, component, system: the owner row's column of that
    /// name); its value is `unattributed` for GPU time no owner rule named.
    pub fn names_owner(&self) -> bool {
        matches!(self, Self::Owner | Self::Team | Self::Department | Self::Component | Self::System)
    }

    /// Whether grouping by this needs the per-workload rollup.
    pub fn is_per_workload(&self) -> bool {
        !matches!(self, Self::Cluster | Self::Node | Self::Gpu | Self::Day)
    }

    /// A stored group value as the API shows it (a day's index as `YYYY-MM-DD`).
    pub fn display(&self, value: &str) -> String {
        match (self, value.parse::<u64>()) {
            (Self::Day, Ok(day)) => {
                humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(day * 86_400))
                    .to_string()[..10]
                    .to_string()
            }
            _ => value.to_string(),
        }
    }
}

/// A usage query over [from_ns, to_ns), both on bucket boundaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    pub from_ns: u64,
    pub to_ns: u64,
    pub group_by: Vec<Dimension>,
}

/// GPU time in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GpuTime {
    /// GPU time observed: `None` when grouped by workload (a workload does not own a GPU's clock).
    pub observed_ns: Option<u128>,
    /// Held: by any workload when grouped by GPU/node/cluster, by this workload when grouped by workload.
    pub held_ns: u128,
    pub used_ns: u128,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// One value per `group_by` dimension, in order.
    pub group: Vec<String>,
    pub time: GpuTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageReport {
    pub rows: Vec<UsageRow>,
    /// Over every GPU in the window, whatever the grouping.
    pub totals: GpuTime,
}

/// A cost query over [from_ns, to_ns), both on bucket boundaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostQuery {
    pub from_ns: u64,
    pub to_ns: u64,
    pub group_by: Vec<Dimension>,
    /// Only rows whose dimension equals the value.
    pub filters: Vec<(Dimension, String)>,
    pub policy: crate::cost::split::Policy,
}

/// What one group of holders was charged, in micro-dollars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostRow {
    pub group: Vec<String>,
    pub used: u128,
    pub idle: u128,
    pub held_ns: u128,
    pub used_ns: u128,
    pub energy_mj: u128,
    /// CO2e of that energy, in milligrams, when a grid factor covered any of it.
    pub co2e_mg: Option<u128>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostReport {
    pub rows: Vec<CostRow>,
    /// The idle line (cost nobody is charged for: `utilization` only), unless filtered by workload.
    pub idle: Option<u128>,
    /// Cost of GPUs nobody held, unless filtered by workload.
    pub unallocated: Option<u128>,
    /// Observed GPU time without a price.
    pub unpriced_ns: u128,
    /// What the GPUs in the window (and the GPU filters) cost.
    pub fleet: u128,
}

/// The price in force for a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePrice {
    pub cluster: String,
    pub node: String,
    pub instance_type: String,
    pub capacity_type: String,
    pub region: String,
    pub effective_from_ns: u64,
    /// `None`: unpriced (the source says why).
    pub instance_micros_per_hour: Option<u64>,
    pub gpus: u32,
    pub source: String,
}

/// What a re-attribution changed: per (old owner, new owner), how many workloads moved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReattributeReport {
    pub workloads: u64,
    pub moved: std::collections::BTreeMap<String, u64>,
}

/// What a re-pricing changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepriceReport {
    pub buckets: u64,
    pub old_micros: u128,
    pub new_micros: u128,
    /// Per node (`cluster/name`): old and new cost over the window.
    pub nodes: std::collections::BTreeMap<String, (u128, u128)>,
    /// Nodes whose priced GPU time the new prices leave unpriced or at $0, and why. A re-pricing with any
    /// is refused unless `RepriceOptions::allow_unpriced`.
    pub unpriced: std::collections::BTreeMap<String, String>,
    /// Every node in the window, re-priced, against its new price history (`cost::reconcile`).
    pub checked: Vec<crate::cost::reconcile::NodeCheck>,
}

impl RepriceReport {
    /// The nodes whose fleet line is not their GPUs' price × time after the re-pricing.
    pub fn unreconciled(&self) -> impl Iterator<Item = &crate::cost::reconcile::NodeCheck> {
        self.checked.iter().filter(|c| !c.holds())
    }

    /// Why a re-pricing with this report must not be written, if it must not: a node that would not
    /// reconcile, or priced GPU time taken to unpriced or $0 without `allow_unpriced`.
    pub fn refusal(&self, options: RepriceOptions) -> Option<String> {
        let unreconciled: Vec<String> = self.unreconciled().map(ToString::to_string).collect();
        if !unreconciled.is_empty() {
            return Some(format!(
                "re-pricing refused, nothing written: the fleet would not be its GPUs' price × time: {}",
                unreconciled.join("; ")
            ));
        }
        if !options.allow_unpriced && !self.unpriced.is_empty() {
            let nodes: Vec<String> = self.unpriced.iter().map(|(n, why)| format!("{n} ({why})")).collect();
            return Some(format!(
                "re-pricing refused, nothing written: it would take the priced GPU time of {} node(s) to unpriced \
                 or $0: {} (fix the prices file, or allow it with --allow-unpriced)",
                nodes.len(),
                nodes.join("; ")
            ));
        }
        None
    }
}

/// The price of a node (its GPU model and physical GPUs) at a time, or why it has none.
pub type PriceOf =
    dyn Fn(&crate::model::Node, &str, u32, u64) -> Result<crate::cost::price::GpuPrice, crate::cost::book::Unpriced>;

/// How to re-price.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepriceOptions {
    /// Work it out and report, write nothing.
    pub dry_run: bool,
    /// Let prices that leave priced GPU time unpriced or at $0 apply.
    pub allow_unpriced: bool,
}

/// One GPU's cost in one charge period (FOCUS's origin charge) and each holder's part of it (its
/// allocated charges). What the holders' parts leave is idle (GPU time nobody held, and under the
/// `utilization` policy what no holder used). Money in micro-dollars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginCharge {
    pub start_ns: u64,
    pub end_ns: u64,
    pub cluster: String,
    pub node: String,
    pub instance_type: String,
    pub capacity_type: String,
    pub region: String,
    pub zone: String,
    pub gpu_uuid: String,
    pub gpu_model: String,
    pub mig_profile: Option<String>,
    pub cost: u128,
    pub observed_ns: u128,
    pub held_ns: u128,
    pub used_ns: u128,
    pub energy_mj: u128,
    pub allocations: Vec<AllocatedCharge>,
}

/// A holder's part of an origin charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocatedCharge {
    /// The workload key (`pod:<cluster>/<namespace>/<pod>/<container>`, `ecs:<task arn>`, …) and its parts.
    pub workload: String,
    pub kind: String,
    pub namespace: String,
    pub pod: String,
    pub owner: String,
    pub team: String,
    pub department: String,
    pub model: String,
    pub model_version: String,
    pub cost: u128,
    pub held_ns: u128,
    pub used_ns: u128,
}

/// A closed billing period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClosedPeriod {
    pub period: String,
    pub from_ns: u64,
    pub to_ns: u64,
    pub closed_at_ns: u64,
}

/// The ledger's interface. Implementations are safe to share between threads; `record` is called from
/// one writer at a time.
pub trait Ledger: Send + Sync + crate::budget::store::BudgetStore {
    /// Stores `batches` in one transaction. Each batch is stored whole, recognised as a duplicate, or
    /// rejected with none of its rows kept; the outer error means nothing at all was stored.
    fn record(&self, batches: &[Batch], now_ns: u64) -> Result<Vec<Result<Recorded, LedgerError>>, LedgerError>;
    fn usage(&self, query: &UsageQuery) -> Result<UsageReport, LedgerError>;
    /// Every GPU UUID two clusters reported over the same time, oldest first.
    fn conflicts(&self) -> Result<Vec<Conflict>, LedgerError>;
    /// Costs from the live rollups.
    fn costs(&self, query: &CostQuery) -> Result<CostReport, LedgerError> {
        self.costs_of(&rows::Rows::Live, query)
    }
    /// Costs from the given rollup rows (live, booked by a closed period, or late and not yet booked).
    fn costs_of(&self, rows: &rows::Rows, query: &CostQuery) -> Result<CostReport, LedgerError>;
    /// Per GPU and charge period of `period_ns` (aligned to the epoch, within [from_ns, to_ns)), what the
    /// GPU cost and each holder's part under `policy`, from the live rollups. Ordered by period, cluster,
    /// node, GPU.
    fn allocations(
        &self,
        from_ns: u64,
        to_ns: u64,
        period_ns: u64,
        policy: crate::cost::split::Policy,
    ) -> Result<Vec<OriginCharge>, LedgerError> {
        self.allocations_of(&rows::Rows::Live, from_ns, to_ns, period_ns, policy)
    }
    fn allocations_of(
        &self,
        rows: &rows::Rows,
        from_ns: u64,
        to_ns: u64,
        period_ns: u64,
        policy: crate::cost::split::Policy,
    ) -> Result<Vec<OriginCharge>, LedgerError>;
    /// Closes a month that has ended: freezes its rows, and books the late rows of months closed before it
    /// as its corrections. Refused when it is still running or already closed.
    fn close_period(&self, period: &crate::report::period::Period, now_ns: u64) -> Result<ClosedPeriod, LedgerError>;
    fn closed_periods(&self) -> Result<Vec<ClosedPeriod>, LedgerError>;
    /// The latest price of every node.
    fn prices(&self) -> Result<Vec<NodePrice>, LedgerError>;
    /// Deletes raw per-interval rows that ended before `before_ns`; returns how many.
    fn prune_raw(&self, before_ns: u64) -> Result<u64, LedgerError>;
    /// Re-resolves the owner of every workload active in [from_ns, to_ns) with `resolve` (the current
    /// catalog and rules), from `from_ns` to `to_ns`; the owners before and after the window stay.
    fn reattribute(
        &self,
        from_ns: u64,
        to_ns: u64,
        resolve: &dyn Fn(&crate::model::Identity) -> crate::enrich::owner::Ownership,
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
    /// Per node with GPU time in [from_ns, to_ns) (narrowed by GPU-level `filters`), its fleet line against
    /// its physical GPUs' observed time × its price history (`cost::reconcile`).
    fn price_check(
        &self,
        from_ns: u64,
        to_ns: u64,
        filters: &[(Dimension, String)],
    ) -> Result<Vec<crate::cost::reconcile::NodeCheck>, LedgerError>;
    /// The instance types, regions, GPU models and node labels of the ledger's nodes: what a prices file's
    /// entries can match beyond the catalogue.
    fn price_subjects(&self) -> Result<crate::cost::book::Subjects, LedgerError>;
    /// Builds the daily rollups of up to `max_days` days that have ended by `now_ns` and are not built yet, each
    /// holding the writer while it is summed; how many. Reports over whole days read them.
    fn build_daily_rollups(&self, _now_ns: u64, _max_days: usize) -> Result<usize, LedgerError> {
        Ok(0)
    }
    /// Keeps the catalog `source` (`backstage`) as fetched at `synced_at_ns`, for the collectors sharing the
    /// ledger.
    fn put_shared_catalog(&self, source: &str, catalog_json: &str, synced_at_ns: u64) -> Result<(), LedgerError>;
    /// The catalog `source` as last kept, and when it was fetched.
    fn shared_catalog(&self, source: &str) -> Result<Option<(String, u64)>, LedgerError>;
    /// The start of every bucket in [from_ns, to_ns) in which `rows` hold observed GPU time, in order:
    /// when any agent reported (a report's coverage, `report::Coverage`).
    fn data_buckets(&self, rows: &rows::Rows, from_ns: u64, to_ns: u64) -> Result<Vec<u64>, LedgerError>;
    /// The rollup bucket length.
    fn bucket_ns(&self) -> u64;
    /// Whether the storage answers.
    fn ping(&self) -> Result<(), LedgerError>;

    /// Whether this collector runs the cluster-wide job `job` (budget evaluation and alerts, MLflow
    /// write-back, pruning) now: always on an embedded ledger; on a shared database, for one collector at a
    /// time, moving to another when it dies.
    fn lead(&self, _job: &str) -> bool {
        true
    }
}
