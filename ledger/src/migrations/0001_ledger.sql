-- The ledger, version 1. Portable SQL: the same statements run on SQLite and PostgreSQL.
-- Times are Unix nanoseconds; utilisation is parts per million.

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE nodes (
    node_id       INTEGER PRIMARY KEY,
    cluster       TEXT NOT NULL,
    name          TEXT NOT NULL,
    instance_type TEXT NOT NULL,
    capacity_type TEXT NOT NULL,
    region        TEXT NOT NULL,
    zone          TEXT NOT NULL,
    UNIQUE (cluster, name)
);

-- covered_until_ns: end of the last interval recorded for this GPU. An interval starting before it
-- would bill the same GPU-second twice, and is refused.
CREATE TABLE gpus (
    gpu_id             INTEGER PRIMARY KEY,
    uuid               TEXT NOT NULL UNIQUE,
    node_id            INTEGER NOT NULL REFERENCES nodes (node_id),
    model              TEXT NOT NULL,
    memory_total_bytes BIGINT NOT NULL,
    mig_parent_uuid    TEXT,
    mig_profile        TEXT,
    covered_until_ns   BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE workloads (
    workload_id     INTEGER PRIMARY KEY,
    key             TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    namespace       TEXT NOT NULL,
    pod             TEXT NOT NULL,
    container       TEXT NOT NULL,
    controller_kind TEXT NOT NULL,
    controller_name TEXT NOT NULL,
    ecs_task_arn    TEXT NOT NULL,
    slurm_job_id    TEXT NOT NULL,
    user_name       TEXT NOT NULL,
    identity_json   TEXT NOT NULL
);

-- Deduplication: the highest sequence number stored per agent boot. Agents send in order, so a batch at
-- or below it was stored before. One row per agent start, not per batch.
CREATE TABLE agent_boots (
    agent_id      TEXT NOT NULL,
    boot_id       TEXT NOT NULL,
    last_seq      BIGINT NOT NULL,
    first_seen_ns BIGINT NOT NULL,
    last_seen_ns  BIGINT NOT NULL,
    PRIMARY KEY (agent_id, boot_id)
);

-- Raw intervals, kept for the raw retention only.
CREATE TABLE gpu_intervals (
    gpu_id             INTEGER NOT NULL REFERENCES gpus (gpu_id),
    start_ns           BIGINT NOT NULL,
    end_ns             BIGINT NOT NULL,
    node_id            INTEGER NOT NULL REFERENCES nodes (node_id),
    utilization_ppm    INTEGER NOT NULL,
    memory_used_bytes  BIGINT NOT NULL,
    power_milliwatts   BIGINT NOT NULL,
    energy_millijoules BIGINT,
    PRIMARY KEY (gpu_id, start_ns)
);
CREATE INDEX gpu_intervals_by_end ON gpu_intervals (end_ns);

CREATE TABLE process_intervals (
    gpu_id            INTEGER NOT NULL REFERENCES gpus (gpu_id),
    start_ns          BIGINT NOT NULL,
    pid               BIGINT NOT NULL,
    end_ns            BIGINT NOT NULL,
    workload_id       INTEGER NOT NULL REFERENCES workloads (workload_id),
    sm_util_ppm       INTEGER NOT NULL,
    memory_util_ppm   INTEGER NOT NULL,
    used_memory_bytes BIGINT NOT NULL,
    PRIMARY KEY (gpu_id, start_ns, pid)
);
CREATE INDEX process_intervals_by_end ON process_intervals (end_ns);

-- Rollups, kept for good: one row per (bucket, GPU) and per (bucket, GPU, workload).
-- observed_ns: time the GPU was seen; held_ns: time any workload held it; used_ns: SM share × time.
CREATE TABLE gpu_buckets (
    bucket_start_ns    BIGINT NOT NULL,
    gpu_id             INTEGER NOT NULL REFERENCES gpus (gpu_id),
    node_id            INTEGER NOT NULL REFERENCES nodes (node_id),
    observed_ns        BIGINT NOT NULL,
    held_ns            BIGINT NOT NULL,
    used_ns            BIGINT NOT NULL,
    energy_millijoules BIGINT NOT NULL,
    PRIMARY KEY (bucket_start_ns, gpu_id, node_id)
);

CREATE TABLE usage_buckets (
    bucket_start_ns BIGINT NOT NULL,
    gpu_id          INTEGER NOT NULL REFERENCES gpus (gpu_id),
    workload_id     INTEGER NOT NULL REFERENCES workloads (workload_id),
    node_id         INTEGER NOT NULL REFERENCES nodes (node_id),
    held_ns         BIGINT NOT NULL,
    used_ns         BIGINT NOT NULL,
    PRIMARY KEY (bucket_start_ns, gpu_id, workload_id, node_id)
);
CREATE INDEX usage_buckets_by_workload ON usage_buckets (workload_id, bucket_start_ns);
