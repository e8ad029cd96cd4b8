//! The ledger's schema, one SQL file a migration, applied in order (SQLite as written, PostgreSQL translated by
//! `sql::postgres`). A migration, once released, is never edited: a change is a new file.

/// Schema migrations, applied in order at start-up; each runs once, in its own transaction.
pub const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_ledger.sql"),
    include_str!("migrations/0002_workload_labels.sql"),
    include_str!("migrations/0003_costs.sql"),
    include_str!("migrations/0004_co2e.sql"),
    include_str!("migrations/0005_reprice.sql"),
    include_str!("migrations/0006_owners.sql"),
    include_str!("migrations/0007_budgets.sql"),
    include_str!("migrations/0008_closed_periods.sql"),
    include_str!("migrations/0009_coverage_ranges.sql"),
    include_str!("migrations/0010_shared_catalog.sql"),
    include_str!("migrations/0011_raw_intervals_unkeyed.sql"),
    include_str!("migrations/0012_daily_rollups.sql"),
    include_str!("migrations/0013_booked_days.sql"),
    include_str!("migrations/0014_owner_per_interval.sql"),
    include_str!("migrations/0015_cluster_scoped_claims.sql"),
    include_str!("migrations/0016_alert_history.sql"),
    include_str!("migrations/0017_bill_lines.sql"),
    include_str!("migrations/0018_evidence.sql"),
    // 0019 is taken by other work: it goes before this line when it lands.
    include_str!("migrations/0020_fetched_prices.sql"),
];
