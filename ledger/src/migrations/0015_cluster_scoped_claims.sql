-- Every claim is scoped by the cluster that wrote it (issue 19): each cluster's agents are a trust zone of their
-- own, and nothing one sends may change another's bill. Until now a GPU was one row per UUID and batch numbers were
-- kept per (agent, boot), so an agent of cluster alpha reporting a GPU UUID of cluster beta moved that GPU onto its
-- own node and claimed its time (beta's real batches were then refused as overlaps), and one that learnt a beta
-- agent's boot id turned beta's next batch into a duplicate that was never stored.
--
-- gpus: one row per (cluster, UUID); its coverage (gpu_coverage, by gpu_id) is therefore per cluster too. The same
-- UUID reported by two clusters over the same time is two rows, each billed to its own cluster, and a conflict for
-- an operator (gpu_conflicts, below). Existing GPUs take the cluster of the node they were last seen on.
-- SQLite cannot drop a UNIQUE constraint, so the table is rebuilt with its ids (the ledger runs migrations with
-- foreign keys off and checks them before it goes on); PostgreSQL drops the foreign keys that name it first and
-- adds them back after.
-- postgresql: ALTER TABLE gpu_buckets DROP CONSTRAINT gpu_buckets_gpu_id_fkey;
-- postgresql: ALTER TABLE usage_buckets DROP CONSTRAINT usage_buckets_owned_gpu_id_fkey;
CREATE TABLE gpus_scoped (
    gpu_id             INTEGER PRIMARY KEY,
    uuid               TEXT NOT NULL,
    node_id            INTEGER NOT NULL REFERENCES nodes (node_id),
    model              TEXT NOT NULL,
    memory_total_bytes BIGINT NOT NULL,
    mig_parent_uuid    TEXT,
    mig_profile        TEXT,
    covered_until_ns   BIGINT NOT NULL DEFAULT 0,
    cluster            TEXT NOT NULL,
    UNIQUE (cluster, uuid)
);
INSERT INTO gpus_scoped (gpu_id, uuid, node_id, model, memory_total_bytes, mig_parent_uuid, mig_profile, covered_until_ns, cluster)
    SELECT g.gpu_id, g.uuid, g.node_id, g.model, g.memory_total_bytes, g.mig_parent_uuid, g.mig_profile, g.covered_until_ns, n.cluster
    FROM gpus g JOIN nodes n ON n.node_id = g.node_id;
DROP TABLE gpus;
ALTER TABLE gpus_scoped RENAME TO gpus;
-- Conflicts are looked up by UUID across clusters.
CREATE INDEX gpus_by_uuid ON gpus (uuid);
-- postgresql: SELECT setval(pg_get_serial_sequence('gpus', 'gpu_id'), (SELECT COALESCE(MAX(gpu_id), 0) + 1 FROM gpus), false);
-- postgresql: ALTER TABLE gpu_buckets ADD CONSTRAINT gpu_buckets_gpu_id_fkey FOREIGN KEY (gpu_id) REFERENCES gpus (gpu_id);
-- postgresql: ALTER TABLE usage_buckets ADD CONSTRAINT usage_buckets_owned_gpu_id_fkey FOREIGN KEY (gpu_id) REFERENCES gpus (gpu_id);

-- Batch numbers per (cluster, agent, boot). Rows stored before take the cluster of the node named like their agent
-- (agents are named after their node unless --agent-id says otherwise) when only one cluster has such a node, else
-- the ledger's only cluster, else none ('': a resend of such a batch is then refused by the coverage guard, which
-- holds its GPU time already).
CREATE TABLE agent_boots_scoped (
    agent_id      TEXT NOT NULL,
    boot_id       TEXT NOT NULL,
    last_seq      BIGINT NOT NULL,
    first_seen_ns BIGINT NOT NULL,
    last_seen_ns  BIGINT NOT NULL,
    cluster       TEXT NOT NULL,
    PRIMARY KEY (cluster, agent_id, boot_id)
);
CREATE TABLE boot_seqs_scoped (
    agent_id  TEXT NOT NULL,
    boot_id   TEXT NOT NULL,
    first_seq BIGINT NOT NULL,
    last_seq  BIGINT NOT NULL,
    cluster   TEXT NOT NULL,
    PRIMARY KEY (cluster, agent_id, boot_id, first_seq)
) WITHOUT ROWID;
CREATE TABLE boot_clusters (agent_id TEXT PRIMARY KEY, cluster TEXT NOT NULL);
INSERT INTO boot_clusters (agent_id, cluster)
    SELECT a.agent_id, COALESCE(
        (SELECT CASE WHEN COUNT(DISTINCT n.cluster) = 1 THEN MIN(n.cluster) END FROM nodes n WHERE n.name = a.agent_id),
        (SELECT CASE WHEN COUNT(DISTINCT n.cluster) = 1 THEN MIN(n.cluster) END FROM nodes n),
        '')
    FROM (SELECT DISTINCT agent_id FROM agent_boots UNION SELECT DISTINCT agent_id FROM boot_seqs) a;
INSERT INTO agent_boots_scoped (agent_id, boot_id, last_seq, first_seen_ns, last_seen_ns, cluster)
    SELECT b.agent_id, b.boot_id, b.last_seq, b.first_seen_ns, b.last_seen_ns, c.cluster
    FROM agent_boots b JOIN boot_clusters c ON c.agent_id = b.agent_id;
INSERT INTO boot_seqs_scoped (agent_id, boot_id, first_seq, last_seq, cluster)
    SELECT s.agent_id, s.boot_id, s.first_seq, s.last_seq, c.cluster
    FROM boot_seqs s JOIN boot_clusters c ON c.agent_id = s.agent_id;
DROP TABLE boot_clusters;
DROP TABLE agent_boots;
ALTER TABLE agent_boots_scoped RENAME TO agent_boots;
DROP TABLE boot_seqs;
ALTER TABLE boot_seqs_scoped RENAME TO boot_seqs;

-- The same GPU UUID reported by two clusters over the same time: both are stored, each billed to its own cluster
-- (neither can move or erase the other's GPU time), and the pair is kept here for an operator
-- (GET /api/v1/conflicts). One row per (UUID, the cluster whose batch found the other's time, the other cluster):
-- the span of the overlapping batches' intervals, how many, and when they were first and last seen.
CREATE TABLE gpu_conflicts (
    gpu_uuid      TEXT NOT NULL,
    cluster       TEXT NOT NULL,
    other_cluster TEXT NOT NULL,
    start_ns      BIGINT NOT NULL,
    end_ns        BIGINT NOT NULL,
    batches       BIGINT NOT NULL,
    first_seen_ns BIGINT NOT NULL,
    last_seen_ns  BIGINT NOT NULL,
    PRIMARY KEY (gpu_uuid, cluster, other_cluster)
);
