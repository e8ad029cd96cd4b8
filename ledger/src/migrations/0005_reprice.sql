-- Node labels (for prices set per node label, also when re-pricing history), and the record of every
-- re-pricing: what window, how many buckets, the totals before and after, and per node what changed.
ALTER TABLE nodes ADD COLUMN labels_json TEXT NOT NULL DEFAULT '{}';

CREATE TABLE repricings (
    repricing_id INTEGER PRIMARY KEY,
    ran_at_ns    BIGINT NOT NULL,
    from_ns      BIGINT NOT NULL,
    to_ns        BIGINT NOT NULL,
    buckets      BIGINT NOT NULL,
    old_micros   BIGINT NOT NULL,
    new_micros   BIGINT NOT NULL,
    detail_json  TEXT NOT NULL
);
