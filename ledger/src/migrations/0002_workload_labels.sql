-- Allow-listed pod labels and annotations of each workload, one row per label, so that usage can be
-- grouped by any label (`group_by=label:team`) with a plain join, on SQLite and PostgreSQL alike.
CREATE TABLE workload_labels (
    workload_id INTEGER NOT NULL REFERENCES workloads (workload_id),
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (workload_id, key)
);
CREATE INDEX workload_labels_by_key ON workload_labels (key, value);
