-- Each hourly usage row keeps the owner its GPU time was used under (issue 18). Until now a row's owner was
-- looked up at query time as the owner in force at the end of its hour, so an owner change at :46 billed the
-- whole hour to the new owner. `owner_from` names the workload_owners row (its from_ns; -1: no owner) in force
-- for the intervals summed into the row, and is part of the row's key: an hour in which the owner changed has
-- one row per owner, so the ledger still grows with workloads × hours (plus one row per change), not samples.
-- Rows stored before this migration keep the owner they were reported under until now (in force at the end of
-- their hour), so no report moves.
CREATE TABLE usage_buckets_owned (
    bucket_start_ns        BIGINT NOT NULL,
    gpu_id                 INTEGER NOT NULL REFERENCES gpus (gpu_id),
    workload_id            INTEGER NOT NULL REFERENCES workloads (workload_id),
    node_id                INTEGER NOT NULL REFERENCES nodes (node_id),
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
    PRIMARY KEY (bucket_start_ns, gpu_id, workload_id, node_id, owner_from)
);
INSERT INTO usage_buckets_owned (bucket_start_ns, gpu_id, workload_id, node_id, owner_from, held_ns, used_ns, used_micros,
        hybrid_idle_micros, allocation_used_micros, allocation_idle_micros, energy_millijoules, co2e_mg, co2e_known_ns)
    SELECT u.bucket_start_ns, u.gpu_id, u.workload_id, u.node_id,
        COALESCE((SELECT MAX(o.from_ns) FROM workload_owners o WHERE o.workload_id = u.workload_id
            AND o.from_ns < u.bucket_start_ns + (SELECT CAST(s.value AS BIGINT) FROM settings s WHERE s.name = 'bucket_ns')), -1),
        u.held_ns, u.used_ns, u.used_micros, u.hybrid_idle_micros, u.allocation_used_micros, u.allocation_idle_micros,
        u.energy_millijoules, u.co2e_mg, u.co2e_known_ns
    FROM usage_buckets u;
DROP TABLE usage_buckets;
ALTER TABLE usage_buckets_owned RENAME TO usage_buckets;
CREATE INDEX usage_buckets_by_workload ON usage_buckets (workload_id, bucket_start_ns);

-- What closing froze keeps the same owner per row.
ALTER TABLE booked_usage ADD COLUMN owner_from BIGINT NOT NULL DEFAULT -1;
UPDATE booked_usage SET owner_from = COALESCE((SELECT MAX(o.from_ns) FROM workload_owners o
    WHERE o.workload_id = booked_usage.workload_id
      AND o.from_ns < booked_usage.bucket_start_ns + (SELECT CAST(s.value AS BIGINT) FROM settings s WHERE s.name = 'bucket_ns')), -1);
