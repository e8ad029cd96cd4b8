//! `gpucost-ledger`: where attributed batches become stored GPU time, and where reports read it back.
//!
//! One interface by role ([`roles`]: recording, reading, history, coordination, budgets) over portable SQL
//! ([`sql`]): [`store`] implements every role once, on any engine — SQLite embedded, or PostgreSQL shared by
//! several collectors. Storage grows with GPUs × workloads × time buckets, not with samples: each interval is
//! rolled up into fixed buckets ([`rollup`]), and the raw per-interval rows are kept only for a retention
//! period. [`writer`] is the single writer thread in front of it (group commit); [`migrations`] the schema.
//! See `docs/ledger.md` for the schema and why. No gRPC, HTTP or AWS SDK here.

pub mod bill;
pub mod budgets;
#[cfg(feature = "postgres")]
pub mod copy;
pub mod error;
pub mod evidence;
pub mod fetched_prices;
pub mod history;
pub mod migrations;
pub mod query;
pub mod recorded;
pub mod roles;
pub mod rollup;
pub mod rows;
pub mod sql;
pub mod store;
pub mod writer;

pub use bill::BillStore;
pub use budgets::BudgetStore;
pub use error::LedgerError;
pub use evidence::EvidenceStore;
pub use fetched_prices::FetchedPriceStore;
pub use gpucost_types::dimension::{Dimension, MAX_FILTER_TERMS, MAX_LABEL_DIMENSIONS};
pub use history::{ClosedPeriod, PriceOf, ReattributeReport, RepriceOptions, RepriceReport};
pub use query::{
    AllocatedCharge, CostQuery, CostReport, CostRow, GpuTime, NodePrice, OriginCharge, UsageQuery, UsageReport,
    UsageRow,
};
pub use recorded::{Conflict, Recorded};
pub use roles::{Coordination, History, Ledger, Reading, Recording};
#[cfg(feature = "postgres")]
pub use store::PgEngine;
pub use store::{Engine, HistoryPoint, HistorySource, HistorySubject, SqlLedger, SqliteEngine, SqliteLedger};

/// Every role of the ledger, for callers that hold a `dyn Ledger`.
pub mod prelude {
    pub use crate::bill::BillStore;
    pub use crate::budgets::BudgetStore;
    pub use crate::evidence::EvidenceStore;
    pub use crate::fetched_prices::FetchedPriceStore;
    pub use crate::roles::{Coordination, History, Ledger, Reading, Recording};
}
