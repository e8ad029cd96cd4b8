-- Who owned each workload, and from when: a row each time the resolved owner changes, so that a cost line
-- keeps the owner in force when its GPU time was used (a catalog change does not rewrite history). `rule`
-- records which ownership rule matched.
CREATE TABLE workload_owners (
    workload_id INTEGER NOT NULL REFERENCES workloads (workload_id),
    from_ns     BIGINT NOT NULL,
    owner       TEXT NOT NULL,
    team        TEXT NOT NULL,
    department  TEXT NOT NULL,
    component   TEXT NOT NULL,
    system      TEXT NOT NULL,
    rule        TEXT NOT NULL,
    PRIMARY KEY (workload_id, from_ns)
);
