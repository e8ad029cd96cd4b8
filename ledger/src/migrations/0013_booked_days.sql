-- What closing a month froze, summed per day as well (like usage_days and gpu_days, migration 0012): the closed
-- month's report reads these instead of its booked hourly rows. Months closed before this migration have none and
-- are read from their hourly rows.
CREATE TABLE booked_usage_days (
    booked_period          TEXT NOT NULL,
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
    PRIMARY KEY (booked_period, day_start_ns, gpu_id, workload_id, node_id, owner_from)
);

CREATE TABLE booked_gpu_days (
    booked_period      TEXT NOT NULL,
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
    PRIMARY KEY (booked_period, day_start_ns, gpu_id, node_id)
);
