-- Evidence for right-sizing (issue 24) and the EC2 instance behind each node (issue 25). Rollups like
-- usage_buckets: one row per bucket (an hour by default) and key, merged by upsert as batches arrive, kept for
-- good, and mergeable over any window (sums, maxima, and a histogram). See docs/evidence.md.

-- Per (bucket, GPU, workload, node): the time of the intervals behind the row (held_ns), the highest interval SM
-- share, the largest peak memory among intervals whose peak the agent reported (peak_known_ns: their time; 0:
-- unknown, an older agent), and the samples of its processes with a known busy count and how many were busy.
CREATE TABLE workload_evidence (
    bucket_start_ns   BIGINT NOT NULL,
    gpu_id            INTEGER NOT NULL REFERENCES gpus (gpu_id),
    workload_id       INTEGER NOT NULL REFERENCES workloads (workload_id),
    node_id           INTEGER NOT NULL REFERENCES nodes (node_id),
    held_ns           BIGINT NOT NULL,
    sm_max_ppm        BIGINT NOT NULL,
    peak_memory_bytes BIGINT NOT NULL,
    peak_known_ns     BIGINT NOT NULL,
    samples           BIGINT NOT NULL,
    busy_samples      BIGINT NOT NULL,
    PRIMARY KEY (bucket_start_ns, gpu_id, workload_id, node_id)
);
CREATE INDEX workload_evidence_by_workload ON workload_evidence (workload_id, bucket_start_ns);

-- The distribution of interval SM share, as interval time per 1 %-wide bin: bin 0 holds exactly 0 %, bin k
-- (1..=100) more than k-1 % and at most k %. Sparse: only the bins an interval fell in. Any percentile over any
-- window is read from the summed bins, exact to the bin.
CREATE TABLE workload_sm_bins (
    bucket_start_ns BIGINT NOT NULL,
    gpu_id          INTEGER NOT NULL REFERENCES gpus (gpu_id),
    workload_id     INTEGER NOT NULL REFERENCES workloads (workload_id),
    node_id         INTEGER NOT NULL REFERENCES nodes (node_id),
    bin             INTEGER NOT NULL,
    held_ns         BIGINT NOT NULL,
    PRIMARY KEY (bucket_start_ns, gpu_id, workload_id, node_id, bin)
);

-- The instance id each node reported in each bucket, with the interval time it reported it for: a node name
-- reused by another instance shows both, each in its own buckets (or both in the bucket it changed in).
CREATE TABLE node_instances (
    bucket_start_ns BIGINT NOT NULL,
    node_id         INTEGER NOT NULL REFERENCES nodes (node_id),
    instance_id     TEXT NOT NULL,
    seen_ns         BIGINT NOT NULL,
    PRIMARY KEY (node_id, bucket_start_ns, instance_id)
);
CREATE INDEX node_instances_by_instance ON node_instances (instance_id, bucket_start_ns);
