-- GPU dollars. Every interval is priced at ingest and split under all three policies, so that a query
-- can choose its policy and every policy reconciles to the same fleet cost. Integer micro-dollars.
--
-- gpu_buckets: cost_micros = what the device cost; idle_micros = the utilization policy's idle line
-- (cost nobody used); unallocated_micros = cost while nobody held it; unpriced_ns = observed time without
-- a price (reported, never billed as $0 silently).
ALTER TABLE gpu_buckets ADD COLUMN cost_micros BIGINT NOT NULL DEFAULT 0;
ALTER TABLE gpu_buckets ADD COLUMN idle_micros BIGINT NOT NULL DEFAULT 0;
ALTER TABLE gpu_buckets ADD COLUMN unallocated_micros BIGINT NOT NULL DEFAULT 0;
ALTER TABLE gpu_buckets ADD COLUMN unpriced_ns BIGINT NOT NULL DEFAULT 0;

-- usage_buckets: used_micros = used share × cost (utilization and hybrid); hybrid_idle_micros = the
-- holder's part of the idle rest (hybrid); allocation_used/idle_micros = its memory-weighted charge
-- (allocation); energy_millijoules = its share of the device's energy, by used share.
ALTER TABLE usage_buckets ADD COLUMN used_micros BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_buckets ADD COLUMN hybrid_idle_micros BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_buckets ADD COLUMN allocation_used_micros BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_buckets ADD COLUMN allocation_idle_micros BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_buckets ADD COLUMN energy_millijoules BIGINT NOT NULL DEFAULT 0;

-- The price in force for each node, from when it was first used: a row per change.
CREATE TABLE node_prices (
    node_id                  INTEGER NOT NULL REFERENCES nodes (node_id),
    effective_from_ns        BIGINT NOT NULL,
    instance_micros_per_hour BIGINT,
    gpus                     INTEGER NOT NULL,
    source                   TEXT NOT NULL,
    PRIMARY KEY (node_id, effective_from_ns)
);
