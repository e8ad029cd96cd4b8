-- Closed billing periods. Closing a month freezes its rollup rows into booked_usage / booked_gpu under that
-- month (correction = 0), and books there, as corrections (correction = 1), whatever arrived late for
-- months closed before it; so a closed month's report never changes, and late GPU time is billed once, in
-- the first open month after the month it was used in.
CREATE TABLE closed_periods (
    period       TEXT PRIMARY KEY,
    from_ns      BIGINT NOT NULL,
    to_ns        BIGINT NOT NULL,
    closed_at_ns BIGINT NOT NULL
);

CREATE TABLE booked_usage (
    booked_period          TEXT NOT NULL,
    correction             INTEGER NOT NULL,
    bucket_start_ns        BIGINT NOT NULL,
    gpu_id                 INTEGER NOT NULL,
    workload_id            INTEGER NOT NULL,
    node_id                INTEGER NOT NULL,
    held_ns                BIGINT NOT NULL,
    used_ns                BIGINT NOT NULL,
    used_micros            BIGINT NOT NULL,
    hybrid_idle_micros     BIGINT NOT NULL,
    allocation_used_micros BIGINT NOT NULL,
    allocation_idle_micros BIGINT NOT NULL,
    energy_millijoules     BIGINT NOT NULL,
    co2e_mg                BIGINT NOT NULL,
    co2e_known_ns          BIGINT NOT NULL
);
CREATE INDEX booked_usage_by_period ON booked_usage (booked_period, correction);
CREATE INDEX booked_usage_by_key ON booked_usage (bucket_start_ns, gpu_id, workload_id, node_id);

CREATE TABLE booked_gpu (
    booked_period      TEXT NOT NULL,
    correction         INTEGER NOT NULL,
    bucket_start_ns    BIGINT NOT NULL,
    gpu_id             INTEGER NOT NULL,
    node_id            INTEGER NOT NULL,
    observed_ns        BIGINT NOT NULL,
    held_ns            BIGINT NOT NULL,
    used_ns            BIGINT NOT NULL,
    energy_millijoules BIGINT NOT NULL,
    cost_micros        BIGINT NOT NULL,
    idle_micros        BIGINT NOT NULL,
    unallocated_micros BIGINT NOT NULL,
    unpriced_ns        BIGINT NOT NULL
);
CREATE INDEX booked_gpu_by_period ON booked_gpu (booked_period, correction);
CREATE INDEX booked_gpu_by_key ON booked_gpu (bucket_start_ns, gpu_id, node_id);
