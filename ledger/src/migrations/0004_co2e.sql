-- CO2e of each holder's energy, in milligrams, where the region's grid factor is configured (prices file
-- `[[grid]]`); NULL-free: 0 where unknown, with `co2e_known_ns` saying how much held time had a factor.
ALTER TABLE usage_buckets ADD COLUMN co2e_mg BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_buckets ADD COLUMN co2e_known_ns BIGINT NOT NULL DEFAULT 0;
