-- Deduplication and double-billing checks by ranges instead of high-water marks, so that a batch arriving
-- after later ones (a reordered or held-back batch) fills its hole instead of being taken for a resend.
--
-- gpu_coverage: the GPU time recorded per GPU as disjoint ranges [start_ns, end_ns); adjacent ranges are
-- one row, so a GPU reported without gaps has one row. An interval overlapping a range would bill a
-- GPU-second twice and is refused. gpus.covered_until_ns is no longer used.
CREATE TABLE gpu_coverage (
    gpu_id   INTEGER NOT NULL,
    start_ns BIGINT NOT NULL,
    end_ns   BIGINT NOT NULL,
    PRIMARY KEY (gpu_id, start_ns)
) WITHOUT ROWID;
-- What was recorded before ranges were kept: everything up to each GPU's old mark.
INSERT INTO gpu_coverage (gpu_id, start_ns, end_ns) SELECT gpu_id, 0, covered_until_ns FROM gpus WHERE covered_until_ns > 0;

-- boot_seqs: the sequence numbers stored per agent boot as disjoint ranges [first_seq, last_seq], coalesced
-- the same way. A batch whose seq (or, for a batch the agent merged, first_seq..seq) lies in a range was
-- stored before: a resend, acknowledged and not counted again.
CREATE TABLE boot_seqs (
    agent_id  TEXT NOT NULL,
    boot_id   TEXT NOT NULL,
    first_seq BIGINT NOT NULL,
    last_seq  BIGINT NOT NULL,
    PRIMARY KEY (agent_id, boot_id, first_seq)
) WITHOUT ROWID;
INSERT INTO boot_seqs (agent_id, boot_id, first_seq, last_seq) SELECT agent_id, boot_id, 1, last_seq FROM agent_boots;
