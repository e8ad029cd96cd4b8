-- Raw intervals without their primary keys and foreign keys. A key on (GPU, start[, pid]) put each batch's
-- rows on one page of the key's index per GPU, and every commit wrote each page it touched again (most of the
-- writer's I/O); nothing reads raw rows by that key, and coverage (gpu_coverage) already bills each
-- GPU-interval once. The foreign keys cost two index lookups a process row for ids the writer has just
-- taken from those tables. The rows stay in arrival order, with the index by end that pruning uses.
CREATE TABLE gpu_intervals_unkeyed (
    gpu_id             INTEGER NOT NULL,
    start_ns           BIGINT NOT NULL,
    end_ns             BIGINT NOT NULL,
    node_id            INTEGER NOT NULL,
    utilization_ppm    INTEGER NOT NULL,
    memory_used_bytes  BIGINT NOT NULL,
    power_milliwatts   BIGINT NOT NULL,
    energy_millijoules BIGINT
);
INSERT INTO gpu_intervals_unkeyed (gpu_id, start_ns, end_ns, node_id, utilization_ppm, memory_used_bytes, power_milliwatts, energy_millijoules)
    SELECT gpu_id, start_ns, end_ns, node_id, utilization_ppm, memory_used_bytes, power_milliwatts, energy_millijoules FROM gpu_intervals;
DROP TABLE gpu_intervals;
ALTER TABLE gpu_intervals_unkeyed RENAME TO gpu_intervals;
CREATE INDEX gpu_intervals_by_end ON gpu_intervals (end_ns);

CREATE TABLE process_intervals_unkeyed (
    gpu_id            INTEGER NOT NULL,
    start_ns          BIGINT NOT NULL,
    pid               BIGINT NOT NULL,
    end_ns            BIGINT NOT NULL,
    workload_id       INTEGER NOT NULL,
    sm_util_ppm       INTEGER NOT NULL,
    memory_util_ppm   INTEGER NOT NULL,
    used_memory_bytes BIGINT NOT NULL
);
INSERT INTO process_intervals_unkeyed (gpu_id, start_ns, pid, end_ns, workload_id, sm_util_ppm, memory_util_ppm, used_memory_bytes)
    SELECT gpu_id, start_ns, pid, end_ns, workload_id, sm_util_ppm, memory_util_ppm, used_memory_bytes FROM process_intervals;
DROP TABLE process_intervals;
ALTER TABLE process_intervals_unkeyed RENAME TO process_intervals;
CREATE INDEX process_intervals_by_end ON process_intervals (end_ns);
