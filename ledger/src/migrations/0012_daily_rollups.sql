-- Daily rollups: the hourly rollups of a complete day summed per day, for reports over whole days (a month's
-- chargeback reads ~30 rows per holder instead of ~700). Derived, never the record: a day is built from its hourly
-- rows once it has ended (built_days), and unbuilt (its daily rows deleted) whenever its hourly rows or its owners
-- change: a late batch, an owner recorded late, re-pricing, re-attribution. Queries read a day's daily rows only
-- while it is built, and the hourly rows otherwise.
CREATE TABLE built_days (
    day_start_ns BIGINT PRIMARY KEY,
    built_at_ns  BIGINT NOT NULL
);

-- Per (day, GPU, workload, node, owner in force): owner_from is the from_ns of the workload_owners row in force
-- in the hours summed (-1: none), so that the owner of every hour is kept.
CREATE TABLE usage_days (
    day_start_ns           BIGINT NOT NULL,
    gpu_id                 INTEGER NOT NULL,
    workload_id            INTEGER NOT NULL,
    node_id                INTEGER NOT NULL,
    owner_from             BIGINT NOT NULL,
    held_ns                BIGINT NOT NULL,
    used_ns                BIGINT NOT NULL,
    used_micros            BIGINT NOT NULL,
    hybrid_idle_micros     BIGINT NOT NULL,
    allocation_used_micros BIGINT NOT NULL,
    allocation_idle_micros BIGINT NOT NULL,
    energy_millijoules     BIGINT NOT NULL,
    co2e_mg                BIGINT NOT NULL,
    co2e_known_ns          BIGINT NOT NULL,
    PRIMARY KEY (day_start_ns, gpu_id, workload_id, node_id, owner_from)
);

CREATE TABLE gpu_days (
    day_start_ns       BIGINT NOT NULL,
    gpu_id             INTEGER NOT NULL,
    node_id            INTEGER NOT NULL,
    observed_ns        BIGINT NOT NULL,
    held_ns            BIGINT NOT NULL,
    used_ns            BIGINT NOT NULL,
    energy_millijoules BIGINT NOT NULL,
    cost_micros        BIGINT NOT NULL,
    idle_micros        BIGINT NOT NULL,
    unallocated_micros BIGINT NOT NULL,
    unpriced_ns        BIGINT NOT NULL,
    PRIMARY KEY (day_start_ns, gpu_id, node_id)
);
